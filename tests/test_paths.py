"""Nothing is written outside the output folder, whatever a spec or a shared storage names."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import optuna
import pytest

from lossbench._paths import (
    NoCacheFolder,
    _private_group,
    atomic_write,
    atomic_write_all,
    check_name,
    inside,
    program_reason,
    read_regular_file,
    trusted_path,
    untrusted_reason,
    user_cache_root,
)
from lossbench._provenance import describe_checkout
from lossbench.losses import _exact_native
from tests.permissions import grant_acl


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a/b", "/abs", "a\\b", "a:b", "tab\there", " pad", "", "x" * 129])
def test_check_name_refuses_what_is_not_one_plain_component(name):
    with pytest.raises(ValueError, match="study name"):
        check_name(name, "study name")


@pytest.mark.parametrize("name", ["builtin", "exact-table1.quick", "my study 2", "étude_α", "conference", "lpt0"])
def test_check_name_accepts_plain_names(name):
    assert check_name(name, "study name") == name


@pytest.mark.parametrize("name", ["a?b", "a*", "x|y", 'say "hi"', "<b>", "trailing.", "con", "NUL", "nul.quick", "Com1", "lpt9 .x", "com¹"])
def test_a_new_name_is_one_every_system_can_use_a_stored_one_need_not_be(name):
    # (a study run on Linux may be reported on Windows, into a folder of its name)
    with pytest.raises(ValueError, match="study name must (be a name every system|not be a name Windows keeps)"):
        check_name(name, "study name")
    assert check_name(name, "study name", portable=False) == name


def test_inside_refuses_every_escape(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert inside(out, "a", "b.png") == (out / "a" / "b.png").resolve()
    for parts in [("..",), ("..", "x"), ("a", "..", "..", "x"), (str(tmp_path / "elsewhere"),)]:
        with pytest.raises(ValueError, match="not inside the output folder"):
            inside(out, *parts)
    (out / "plots").symlink_to(tmp_path)  # a link planted in the output folder
    with pytest.raises(ValueError, match="not inside the output folder"):
        inside(out, "plots", "x.png")


def test_atomic_write_leaves_no_temporary_file_and_the_umask_mode(tmp_path):
    path = tmp_path / "sub" / "f.txt"
    atomic_write(path, "one")
    atomic_write(path, b"two")
    assert path.read_text() == "two" and [p.name for p in path.parent.iterdir()] == ["f.txt"]
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_report_of_a_storage_holding_a_hostile_study_name_writes_nothing_outside(tmp_path):
    """A shared storage may hold any study name: `lossbench report` refuses '..', writes nothing."""
    from lossbench.bench.spec import load_preset
    from lossbench.bench.storage import FINGERPRINT_ATTR, SPEC_ATTR, default_storage_url, open_storage
    from lossbench.cli import main

    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    storage = open_storage(default_storage_url(out))
    spec_json = load_preset("builtin").to_json()
    for name in ("..", "fine"):  # two studies, so each would get its own folder below --out
        study = optuna.create_study(storage=storage, study_name=name)
        study.set_user_attr(SPEC_ATTR, spec_json)
        study.set_user_attr(FINGERPRINT_ATTR, "x")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["report", "--out", str(out)]) == 2
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert [p for p in after if p not in before and out not in (tmp_path / p).parents] == []
    assert not (tmp_path / "deep" / "report.md").exists()


def test_write_report_refuses_a_planted_link_in_the_output_folder(tmp_path):
    from lossbench.bench.report import write_report
    from lossbench.bench.spec import load_preset

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "report.md").symlink_to(elsewhere / "report.md")
    with pytest.raises(ValueError, match="not inside the output folder"):
        write_report(load_preset("builtin"), [], out)
    assert list(elsewhere.iterdir()) == []


def test_a_link_in_the_output_folder_to_a_file_inside_it_is_refused_before_any_run(tmp_path):
    # report.md -> lossbench.db: the report replaced the database (every trial lost); a dangling link was
    # refused only after the whole run; a worker's log linked to the database moved it aside
    from lossbench.bench.report import check_report_folder, write_report
    from lossbench.bench.spec import load_preset
    from lossbench.bench.workers import LocalWorkers

    out = tmp_path / "out"
    out.mkdir()
    (out / "lossbench.db").write_bytes(b"the study")
    (out / "report.md").symlink_to("lossbench.db")
    for check in (lambda: check_report_folder(out, "builtin"), lambda: write_report(load_preset("builtin"), [], out)):
        with pytest.raises(ValueError, match=r"refusing to write .*out/report.md: it is a symbolic link \(to lossbench.db\)"):
            check()
    (out / "report.md").unlink()
    (out / "plots").mkdir()
    (out / "plots" / "wine_curves.png").symlink_to(out / "gone.png")  # dangling
    with pytest.raises(ValueError, match=r"plots/wine_curves.png: it is a symbolic link"):
        check_report_folder(out, "builtin")
    (out / "plots" / "wine_curves.png").unlink()
    (out / "builtin.worker-1.log").symlink_to("lossbench.db")
    with pytest.raises(ValueError, match=r"builtin.worker-1.log: it is a symbolic link"):
        with LocalWorkers(1, "builtin", "sqlite:///x.db", str(out)):
            pass
    assert (out / "lossbench.db").read_bytes() == b"the study"


@pytest.mark.parametrize("beside", ["-wal", "-shm", "-journal"])
def test_a_link_beside_the_database_in_the_output_folder_is_refused(tmp_path, capsys, beside):
    # a dangling -journal link left an empty database behind that blocked every later run; -wal gave a traceback
    from lossbench.cli import main

    out = tmp_path / "out"
    out.mkdir()
    (out / f"lossbench.db{beside}").symlink_to(tmp_path / "elsewhere")
    assert main(["run", "--out", str(out)]) == 2
    line = capsys.readouterr().err.splitlines()[0]
    assert line.startswith("lossbench: error: refusing to write") and "not inside the output folder" in line
    assert sorted(p.name for p in out.iterdir()) == [f"lossbench.db{beside}"]
    (out / f"lossbench.db{beside}").unlink()
    (out / f"lossbench.db{beside}").symlink_to("gone")  # (inside the folder, dangling)
    assert main(["run", "--out", str(out)]) == 2
    assert f"lossbench.db{beside}: it is a symbolic link" in capsys.readouterr().err.splitlines()[0]


def test_storage_errors_never_show_the_password():
    from lossbench.bench.spec import SpecError
    from lossbench.bench.storage import masked, open_storage

    url = "postgresql://alice:s3cret-pw@127.0.0.1:1/nodb"
    assert masked(url) == "postgresql://alice:***@127.0.0.1:1/nodb"
    with pytest.raises(SpecError) as info:
        open_storage(url)
    assert "s3cret-pw" not in str(info.value) and "alice:***@" in str(info.value)
    assert info.value.__cause__ is None  # the original exception, which holds the URL, is not chained


@pytest.mark.parametrize("xdg", ["", "relative/cache", "."])
def test_user_cache_root_ignores_an_empty_or_relative_xdg_cache_home(xdg, monkeypatch, tmp_path):
    """A relative XDG_CACHE_HOME would put the caches below whatever folder a command runs in."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    assert user_cache_root() == tmp_path / ".cache" / "lossbench"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_root() == tmp_path / "xdg" / "lossbench"


@pytest.mark.skipif(os.name == "nt", reason="POSIX homes")
@pytest.mark.parametrize(("env", "expected"), [
    ({"HOME": "{tmp}"}, None), ({"HOME": ""}, None),  # (matplotlib reads an empty HOME as /: absolute)
    ({"HOME": "{tmp}", "XDG_CACHE_HOME": "{tmp}/c", "XDG_CONFIG_HOME": "{tmp}/k"}, None),
    ({"HOME": "{tmp}", "XDG_CACHE_HOME": "rel"}, "{tmp}/.cache/matplotlib"),
    ({"HOME": "{tmp}", "MPLCONFIGDIR": "{tmp}/mine", "XDG_CONFIG_HOME": "rel"}, "{tmp}/mine"),
])  # fmt: skip
def test_matplotlib_is_pointed_home_only_where_its_own_rule_reads_a_relative_folder(env, expected, monkeypatch, tmp_path):
    import sys

    from lossbench._paths import keep_matplotlib_at_home

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(sys, "modules", {k: v for k, v in sys.modules.items() if k != "matplotlib"})
    for name in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    keep_matplotlib_at_home()
    assert os.environ.get("MPLCONFIGDIR") == (None if expected is None else expected.format(tmp=tmp_path))


@pytest.mark.skipif(os.name == "nt", reason="POSIX homes")
@pytest.mark.parametrize("variable", ["XDG_CACHE_HOME", "XDG_CONFIG_HOME"])
def test_a_command_leaves_no_matplotlib_folder_below_the_working_folder(variable, tmp_path):
    """matplotlib takes a relative XDG folder as it is: its font cache landed in the working folder."""
    import subprocess
    import sys

    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")}
    env.update({"HOME": str(home), variable: "relative"})
    code = "from lossbench.cli import main; import sys; main(['presets', 'builtin']); assert 'matplotlib' in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(work.iterdir()) == [] and (home / ".cache" / "matplotlib").is_dir()


@pytest.mark.skipif(os.name == "nt", reason="POSIX homes")
@pytest.mark.parametrize("home", ["", "relhome", None])
def test_user_cache_root_takes_the_password_databases_home_for_an_empty_relative_or_unset_home(home, monkeypatch, tmp_path):
    """Python reads HOME='' as '/' and a relative HOME below the working folder: the caches (and the kernel) were
    made there; without HOME nor an account's home, Path.home()'s RuntimeError was a traceback."""
    import pwd

    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: pwd.struct_passwd(("me", "x", uid, 0, "", str(tmp_path), "/bin/sh")))
    if home is None:
        monkeypatch.delenv("HOME", raising=False)
    else:
        monkeypatch.setenv("HOME", home)
    assert user_cache_root() == tmp_path / ".cache" / "lossbench"

    def no_account(uid):
        raise KeyError(uid)

    monkeypatch.setattr(pwd, "getpwuid", no_account)
    given = "$HOME is unset" if home is None else f"$HOME is {home!r}"
    with pytest.raises(NoCacheFolder, match=rf"no folder for lossbench's cache: \{given} and this user has no home .*XDG_CACHE_HOME"):
        user_cache_root()
    assert issubclass(NoCacheFolder, OSError) and issubclass(NoCacheFolder, ValueError)  # (optional caches / one line)


@pytest.mark.skipif(os.name == "nt", reason="POSIX homes")
def test_a_tilde_in_the_cache_variables_is_the_home_user_cache_root_finds(monkeypatch, tmp_path):
    """expanduser reads HOME='' as '/': XDG_CACHE_HOME=~/xdg put the caches in /xdg."""
    import pwd

    from lossbench.data._files import default_cache_dir, default_data_dir
    from lossbench.losses._exact_native import _kernel_dir

    monkeypatch.setattr(pwd, "getpwuid", lambda uid: pwd.struct_passwd(("me", "x", uid, 0, "", str(tmp_path), "/bin/sh")))
    monkeypatch.setenv("HOME", "")
    monkeypatch.setenv("XDG_CACHE_HOME", "~/xdg")
    assert user_cache_root() == tmp_path / "xdg" / "lossbench"
    for variable, where in (("LOSSBENCH_DATA_DIR", default_data_dir), ("LOSSBENCH_CACHE_DIR", default_cache_dir),
                            ("LOSSBENCH_KERNEL_DIR", _kernel_dir)):  # fmt: skip
        monkeypatch.setenv(variable, "~/mine")
        assert where() == tmp_path / "mine", variable


@pytest.mark.parametrize("default", [False, True], ids=["access ACL", "default ACL"])
def test_a_folder_another_user_may_write_through_an_acl_is_untrusted(tmp_path, default):
    # with an ACL the mode's group bits are its mask (rwx for a named user shows as the group's): the mode
    # alone read drwxrwx--- as the private group's folder and trusted it
    folder = tmp_path / "kernels"
    folder.mkdir(mode=0o700)
    assert untrusted_reason(folder) is None
    grant_acl(folder, uid=12345, default=default)
    reason = untrusted_reason(folder)
    assert reason is not None and "writable by user 12345 through its" in reason
    reading = tmp_path / "read-only-acl"
    reading.mkdir(mode=0o700)
    grant_acl(reading, uid=12345, perm=0o5, default=default)  # read and search only: nothing to change
    assert untrusted_reason(reading) is None
    if default:  # a folder above with a default ACL gives no one write access to it: trusted below it
        below = folder / "below"
        below.mkdir(mode=0o700)
        for name in ("system.posix_acl_access", "system.posix_acl_default"):  # (what it inherited: removed)
            os.removexattr(below, name)
        assert untrusted_reason(below) is None


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX") or not Path("/proc/self/fd").is_dir(), reason="needs Unix sockets and /proc")
def test_read_regular_file_refuses_sockets_and_folders_and_keeps_no_descriptor(tmp_path):
    # a socket failed with "No such device or address" (open's ENXIO); a folder left its descriptor open
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "s"))
    try:
        with pytest.raises(OSError, match="not a regular file"):
            read_regular_file(tmp_path / "s")
    finally:
        server.close()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        with pytest.raises(IsADirectoryError):
            read_regular_file(tmp_path)
    assert len(os.listdir("/proc/self/fd")) == before
    (tmp_path / "f").write_bytes(b"a\r\nb\x1ac")
    assert read_regular_file(tmp_path / "f") == b"a\r\nb\x1ac"


def _program(folder: Path, name: str, owner: int | None = None) -> Path:
    folder.mkdir(exist_ok=True)
    program = folder / name
    program.write_text("#!/bin/sh\nexit 1\n")
    program.chmod(0o755)
    if owner is not None:
        os.chown(program, owner, owner)
    return program


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_program_another_user_owns_or_could_change_is_not_run(tmp_path, monkeypatch):
    # a compiler (or git) owned by another user passed where no one else could write it: its owner can change it
    theirs = _program(tmp_path / "theirs", "cc", owner=1234)
    assert program_reason(theirs) == f"{theirs} is owned by uid 1234"
    with pytest.raises(RuntimeError, match=f"the C compiler {theirs}: {theirs} is owned by uid 1234, so another"):
        _exact_native._trusted_compiler(str(theirs))
    folder = tmp_path / "folder"
    mine = _program(folder, "cc")
    os.chown(folder, 1234, 1234)  # (its owner may replace the cc in it)
    assert program_reason(mine) == f"{folder} is owned by uid 1234"
    # a link of yours to a link in another's folder to a compiler of yours: its owner may point it elsewhere
    real = _program(tmp_path / "real", "cc")
    middle, link = tmp_path / "middle", tmp_path / "own" / "cc"
    middle.mkdir(), link.parent.mkdir()
    (middle / "cc").symlink_to(real)
    os.chown(middle, 1234, 1234)
    link.symlink_to(middle / "cc")
    assert program_reason(link) == f"{middle} is owned by uid 1234"
    # git too: no commit named from another user's git first on PATH
    _program(tmp_path / "theirs", "git", owner=1234)
    monkeypatch.setenv("PATH", f"{tmp_path / 'theirs'}:{os.environ.get('PATH', '')}")
    assert describe_checkout(Path(__file__).parent) is None


def test_what_the_compiler_runs_is_looked_up_in_folders_no_one_else_can_add_to(tmp_path, monkeypatch):
    # gcc runs "as" and "ld" from PATH: a folder anyone may write (sticky or not) could hold a planted "as"
    open_to_all, sticky, own = tmp_path / "open", tmp_path / "sticky", tmp_path / "own"
    for folder, mode in ((open_to_all, 0o777), (sticky, 0o1777), (own, 0o755)):
        folder.mkdir()
        folder.chmod(mode)
    monkeypatch.setenv("PATH", f"{open_to_all}:{sticky}:{own}:relative:/usr/bin")
    assert trusted_path() == f"{own}:/usr/bin"
    assert _exact_native._compiler_env()["PATH"] == f"{own}:/usr/bin"


def test_a_group_that_is_another_accounts_primary_group_is_not_private(monkeypatch):
    import pwd

    me = pwd.getpwuid(os.geteuid())
    _private_group.cache_clear()
    monkeypatch.setattr(pwd, "getpwall", lambda: [me])
    if not _private_group(me.pw_gid):
        _private_group.cache_clear()
        pytest.skip("this user has no private group")
    _private_group.cache_clear()
    other = pwd.struct_passwd(("other", "x", me.pw_uid + 1, me.pw_gid, "", "/", "/bin/sh"))
    monkeypatch.setattr(pwd, "getpwall", lambda: [me, other])
    assert not _private_group(me.pw_gid)  # (its member list leaves "other" out: the group is theirs as much)
    _private_group.cache_clear()


def test_atomic_write_all_leaves_every_old_file_where_one_write_fails(tmp_path, monkeypatch):
    """A report rewritten onto a full disk kept some old files beside new ones (report.md said 3 trials, report.html
    2); now all or none, and the error names the file (a failed write on an open file names none)."""
    import errno as errno_module

    files = [tmp_path / "a.md", tmp_path / "plots" / "b.png", tmp_path / "c.html"]
    atomic_write_all([(p, f"old {p.name}") for p in files])
    calls, real_fsync = [], os.fsync

    def full_on_the_third(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno_module.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_on_the_third)
    with pytest.raises(OSError, match="No space left on device") as err:
        atomic_write_all([(p, f"new {p.name}") for p in files])
    assert err.value.filename == str(files[2])
    assert [p.read_text() for p in files] == [f"old {p.name}" for p in files]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.md", "b.png", "c.html"]  # (no temporaries)
    monkeypatch.setattr(os, "fsync", real_fsync)
    files[1].unlink()
    files[1].mkdir()  # a folder where a file goes: found before any rename
    with pytest.raises(IsADirectoryError) as err:
        atomic_write_all([(p, f"new {p.name}") for p in files])
    assert err.value.filename == str(files[1]) and files[0].read_text() == "old a.md"
    files[1].rmdir()
    atomic_write_all([(p, f"new {p.name}") for p in files])
    assert [p.read_text() for p in files] == [f"new {p.name}" for p in files]


def test_without_user_ids_as_on_windows_an_output_folder_and_cache_entries_are_taken(monkeypatch, tmp_path):
    """Windows has no os.geteuid: every `lossbench run` failed on it checking --out; and every file's mode reads
    0o666 there, so no parse cache entry was ever taken (parsed again, with a warning, on every load)."""
    from lossbench import _paths
    from lossbench.bench.api import check_writable_folder
    from lossbench.data import _cache
    from lossbench.data._cache import _yours

    monkeypatch.delattr(os, "geteuid")
    monkeypatch.setattr(_paths, "OWNERS", False)
    monkeypatch.setattr(_cache, "OWNERS", False)
    check_writable_folder(tmp_path / "out", "--out")
    assert _yours(os.stat_result((0o100666, 0, 0, 1, 0, 0, 10, 0, 0, 0)))
    assert not _yours(os.stat_result((0o040777, 0, 0, 1, 0, 0, 10, 0, 0, 0)))  # (a folder is no entry)
