"""The command line refuses user mistakes in one line, before it creates anything, and never
shows a storage password; internal errors keep their traceback (issue 17, items 8 and 9)."""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lossbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "s3cr%40t"  # percent-encoded in the URL: "s3cr@t" once decoded
SECRET_URL = f"postgresql+psycopg2://alice:{PASSWORD}@127.0.0.1:1/lossbench"

SPEC = """name = "{name}"
trials = 2
seeds = 2
sampler = "random"
heartbeat_interval = 1
{top}
[train]
epochs = 1
batch_size = 64

[[datasets]]
name = "wine"

[[methods]]
name = "{method}"
loss = "cross_entropy"
"""


def spec_file(tmp_path: Path, name: str = "tiny", top: str = "", method: str = "ce") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(SPEC.format(name=name, top=top, method=method))
    return path


def refused(capsys, argv: list[str]) -> str:
    """Run the command in-process; it must fail with one 'lossbench: error:' line and return it."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.rstrip("\n").split("\n") if not line.startswith("judging claim ")]  # (progress)
    first, hint = lines
    assert first.startswith("lossbench: error: ") and hint == "(set LOSSBENCH_TRACEBACK=1 for the traceback)"
    return first


@pytest.fixture(autouse=True)
def no_storage_env(monkeypatch):
    monkeypatch.delenv("LOSSBENCH_STORAGE", raising=False)
    monkeypatch.delenv("LOSSBENCH_TRACEBACK", raising=False)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A finished tiny study in a SQLite file named only by $LOSSBENCH_STORAGE."""
    base = tmp_path_factory.mktemp("stored")
    db = base / "elsewhere" / "study.db"
    output = io.StringIO()  # not a terminal, as in a CI log
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        mp.setenv("LOSSBENCH_STORAGE", f"sqlite:///{db}")
        assert main(["run", str(spec_file(base)), "--out", str(base / "out"), "--device", "cpu"]) == 0
    return base, db, output.getvalue()


# -- item 8: the storage URL from the environment, passwords masked everywhere -----------------


def test_storage_url_comes_from_the_environment(stored, tmp_path, monkeypatch, capsys):
    base, db, _ = stored
    assert db.is_file() and not (base / "out" / "lossbench.db").exists()  # the URL was taken from the variable
    assert (base / "out" / "report.md").is_file()
    monkeypatch.setenv("LOSSBENCH_STORAGE", f"sqlite:///{db}")
    assert main(["report", "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "report.md").is_file()
    assert main(["worker", "tiny", "--device", "cpu"]) == 0  # no --storage needed
    printed = capsys.readouterr()  # (notices on stderr: stdout keeps the results)
    assert "is complete" in printed.err and "is complete" not in printed.out
    assert "report: " in printed.err and "report: " not in printed.out


def test_progress_without_a_terminal_is_one_line_per_finished_unit(stored):
    base, _, output = stored
    done = [line for line in output.splitlines() if " done (" in line]
    assert len(done) == 1 and done[0].startswith("tiny: wine / ce done (4/4 runs of the study done, ")
    report = (base / "out" / "report.md").read_text()  # the runs' own provenance, from storage
    assert "| device | cpu |" in report and "Samples: tuning runs:" in report


def test_worker_needs_a_storage(capsys):
    line = refused(capsys, ["worker", "tiny"])
    assert "--storage" in line and "LOSSBENCH_STORAGE" in line


def test_help_names_the_environment_variable(capsys):
    for command in ("run", "worker", "report"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "LOSSBENCH_STORAGE" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("how", ["option", "environment"])
def test_password_is_masked_in_one_line_errors(how, capsys, monkeypatch, tmp_path):
    if how == "environment":
        monkeypatch.setenv("LOSSBENCH_STORAGE", SECRET_URL)
        argv = ["report", "--out", str(tmp_path)]
    else:
        argv = ["report", "--out", str(tmp_path), "--storage", SECRET_URL]
    line = refused(capsys, argv)
    assert "alice:***@" in line and "s3cr" not in line


def test_password_is_masked_in_an_internal_traceback(capsys, monkeypatch, tmp_path):
    import lossbench.bench.storage as storage

    def broken(url, *args, **kwargs):
        raise RuntimeError(f"driver failed on {url} (password s3cr@t)")

    monkeypatch.setattr(storage, "open_storage", broken)
    monkeypatch.setenv("LOSSBENCH_STORAGE", SECRET_URL)
    assert main(["report", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: driver failed" in err  # an internal error keeps its traceback
    assert "s3cr" not in err and "alice:***@" in err


def test_internal_value_error_keeps_its_traceback(monkeypatch, tmp_path):
    import lossbench.bench.spec as spec_module

    def buggy(path):
        return int("not a number")  # a ValueError raised outside lossbench's code: a bug, not an input

    monkeypatch.setattr(spec_module, "load_spec", buggy)
    with pytest.raises(ValueError, match="invalid literal"):
        main(["run", str(tmp_path / "x.toml"), "--out", str(tmp_path / "out")])


# -- item 9: one line, nothing created ----------------------------------------------------------


def stale_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    old = time.time() - 60
    os.utime(path, (old, old))
    return path


@pytest.mark.parametrize("command", ["run", "report"])
def test_empty_database_is_not_turned_into_a_new_one(command, capsys, tmp_path):
    db = stale_file(tmp_path / "out" / "lossbench.db", b"")
    argv = [command] + ([str(spec_file(tmp_path)), "--device", "cpu"] if command == "run" else [])
    line = refused(capsys, argv + ["--out", str(tmp_path / "out")])
    assert "empty (0-byte)" in line and str(db) in line
    assert db.stat().st_size == 0 and sorted(p.name for p in db.parent.iterdir()) == ["lossbench.db"]


def test_a_database_killed_as_sqlite_created_it_is_a_new_one(capsys, tmp_path):
    # a kill just after SQLite made the file leaves it 0 bytes with its journal: the rerun refused it as empty
    import subprocess
    import sys

    db = tmp_path / "out" / "lossbench.db"
    db.parent.mkdir()
    subprocess.run([sys.executable, "-c", "import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
                    "c.execute('BEGIN'); c.execute('CREATE TABLE x (a)'); os._exit(0)", str(db)], check=True)  # fmt: skip
    assert db.stat().st_size == 0 and (tmp_path / "out" / "lossbench.db-journal").exists()
    stale_file(db, b"")  # (its age: no other worker is creating it)
    assert main(["run", str(spec_file(tmp_path)), "--out", str(db.parent), "--device", "cpu"]) == 0
    assert db.stat().st_size > 0 and (db.parent / "report.md").exists()


def test_foreign_file_or_folder_as_database(capsys, tmp_path):
    stale_file(tmp_path / "a" / "lossbench.db", b"name,value\n1,2\n")
    assert "is not a SQLite file" in refused(capsys, ["report", "--out", str(tmp_path / "a")])
    (tmp_path / "b" / "lossbench.db").mkdir(parents=True)
    assert "is a directory" in refused(capsys, ["report", "--out", str(tmp_path / "b")])


def test_another_programs_sqlite_file_or_a_link_out_of_out_is_refused(capsys, tmp_path):
    db = tmp_path / "a" / "lossbench.db"
    db.parent.mkdir()
    with contextlib.closing(sqlite3.connect(db)) as other:
        other.execute("CREATE TABLE bookmarks (url TEXT)")
    line = refused(capsys, ["run", str(spec_file(tmp_path)), "--out", str(db.parent), "--device", "cpu"])
    assert "SQLite file of something else" in line
    with contextlib.closing(sqlite3.connect(db)) as other:  # left as it was
        assert [name for (name,) in other.execute("SELECT name FROM sqlite_master")] == ["bookmarks"]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "lossbench.db").symlink_to(tmp_path / "elsewhere.db")
    line = refused(capsys, ["run", str(spec_file(tmp_path)), "--out", str(tmp_path / "b"), "--device", "cpu"])
    assert "not inside the output folder" in line and not (tmp_path / "elsewhere.db").exists()


def test_corrupt_database_is_one_line(capsys, tmp_path, stored):
    stale_file(tmp_path / "out" / "lossbench.db", b"SQLite format 3\x00" + b"\xff" * 5000)
    line = refused(capsys, ["report", "--out", str(tmp_path / "out")])
    assert "lossbench.db is corrupt (" in line and "restore it from a copy" in line
    # pages past the schema overwritten: the first reads passed, Optuna's traceback came later
    db = tmp_path / "later" / "lossbench.db"
    db.parent.mkdir()
    with contextlib.closing(sqlite3.connect(stored[1])) as source:
        source.execute("VACUUM INTO ?", (str(db),))  # (one file, the write-ahead log's pages in it)
    data = bytearray(db.read_bytes())
    data[-8192:] = b"\x5a" * 8192
    stale_file(db, bytes(data))
    line = refused(capsys, ["report", "--out", str(db.parent), "--storage", f"sqlite:///{db}"])
    assert f"database {db} is corrupt (SQLite's quick check: " in line


@pytest.mark.parametrize("command", ["run", "datasets"])
def test_a_data_dir_that_is_a_file_is_refused(command, capsys, tmp_path):
    # (built-in sets read no file: the run went on, the option silently ignored)
    (tmp_path / "afile").write_text("not a folder")
    argv = ["run", str(spec_file(tmp_path)), "--out", str(tmp_path / "out"), "--device", "cpu"] if command == "run" else ["datasets", "wine"]
    line = refused(capsys, [*argv, "--data-dir", str(tmp_path / "afile")])
    assert line == f"lossbench: error: --data-dir {tmp_path / 'afile'} is not a folder" and not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_refused_before_work(capsys, tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    line = refused(capsys, ["run", str(spec_file(tmp_path)), "--out", str(tmp_path / "taken" / "out"), "--device", "cpu"])
    assert "is not a folder" in line and "taken" in line


def test_read_only_out_is_refused_before_work(capsys, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: make the check see what another user would
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: real(p, mode) and Path(p) != locked)
    else:
        locked.chmod(0o500)
    line = refused(capsys, ["run", str(spec_file(tmp_path)), "--out", str(locked / "out"), "--device", "cpu"])
    assert "is not writable" in line and not (locked / "out").exists()


def test_a_report_that_cannot_be_written_is_one_line(stored, capsys, tmp_path, monkeypatch):
    _, db, _ = stored
    (tmp_path / ".lossbench-report.json").write_text('{"study": "tiny"}')  # (its own folder, as far as it knows)
    (tmp_path / "report.md").mkdir()  # a folder where the report file goes
    line = refused(capsys, ["report", "--out", str(tmp_path), "--storage", f"sqlite:///{db}"])
    assert "cannot write the report" in line and "lossbench report --out" in line


@pytest.mark.parametrize(
    "top, method, device, expected",
    [
        ("val_fraction = 0.001", "ce", "cpu", "leaves no validation sample"),
        ("val_fraction = 0.01", "ce", "cpu", "too small for class 'class_0'"),
        ("", "m" * 500, "cpu", "Optuna stores at most 512"),
        ("", "ce", "gpu", "--device 'gpu'"),
        ("", "ce", "cuda:99", "--device cuda:99"),
        ("[search]\nlr = { low = 1e-3, high = inf }", "ce", "cpu", "[search].lr: a search range needs finite ends"),
    ],
)
def test_refused_before_any_work_leaves_nothing_behind(top, method, device, expected, capsys, tmp_path):
    out = tmp_path / "out"
    line = refused(capsys, ["run", str(spec_file(tmp_path, top=top, method=method)), "--out", str(out), "--device", device])
    assert expected in line
    assert not out.exists()


def test_spec_that_is_not_utf8(capsys, tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('# caf\xe9\nname = "x"\n'.encode("latin-1"))
    assert f"{path}:1: not UTF-8 text (byte 0xe9)" in refused(capsys, ["run", str(path)])


def test_a_spec_with_a_utf8_byte_order_mark_reads_as_without(tmp_path):
    from lossbench.bench.spec import load_spec

    plain = spec_file(tmp_path)
    marked = tmp_path / "marked.toml"
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())  # (as some Windows editors save UTF-8)
    assert load_spec(marked) == load_spec(plain)


def test_a_ctrl_c_of_a_command_that_stores_nothing_says_only_interrupted(capsys, monkeypatch):
    # "the same command resumes where it stopped" is said of the commands that train (run, worker, claims run)
    from lossbench import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_datasets", interrupted)
    assert cli.main(["datasets"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["lossbench: interrupted"]


@pytest.mark.slow
def test_ctrl_c_prints_one_line(tmp_path):
    """A Ctrl-C in a trial: Optuna's traceback and failure lines are not shown, only lossbench's line."""
    script = (
        "import sys, lossbench.bench.runner as r\n"
        "def interrupted(*a, **k): raise KeyboardInterrupt\n"
        "r.train_and_score = r.train_and_score_packed = interrupted\n"
        "from lossbench.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LOSSBENCH_STORAGE"}
    env.update(PYTHONPATH=str(ROOT / "src"), LOSSBENCH_CACHE_DIR=str(tmp_path / "cache"))
    argv = [sys.executable, "-c", script, "run", str(spec_file(tmp_path)), "--out", str(tmp_path / "out"), "--device", "cpu"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines() == ["lossbench: interrupted; the same command resumes where it stopped"]


def test_out_holding_files_lossbench_did_not_write_is_refused_before_work(capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("my notes")
    (out / "runs.csv").write_text("x,y")
    line = refused(capsys, ["run", str(spec_file(tmp_path)), "--out", str(out), "--device", "cpu"])
    assert "holds report.md, runs.csv, which lossbench did not write there" in line
    assert (out / "report.md").read_text() == "my notes" and sorted(p.name for p in out.iterdir()) == ["report.md", "runs.csv"]


def test_a_second_study_in_the_same_out_does_not_replace_the_first_ones_report(capsys, tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(spec_file(tmp_path, "first")), "--out", str(out), "--device", "cpu"]) == 0
    before = (out / "report.md").read_text()
    capsys.readouterr()
    line = refused(capsys, ["run", str(spec_file(tmp_path, "second")), "--out", str(out), "--device", "cpu"])
    assert "holds the report of study 'first'" in line and (out / "report.md").read_text() == before
    assert main(["run", str(spec_file(tmp_path, "first")), "--out", str(out), "--device", "cpu"]) == 0  # its own: resumed
    capsys.readouterr()
    before = (out / "report.md").read_text()
    line = refused(capsys, ["report", "frist", "--out", str(out)])  # a misspelt study: said as such, not as the folder's
    assert "no study 'frist' in this storage" in line and (out / "report.md").read_text() == before


def test_a_full_disk_while_writing_the_report_is_one_line_without_a_missing_file_name(stored, capsys, tmp_path, monkeypatch):
    import errno

    from lossbench.bench import report

    _, db, _ = stored

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # (a full disk's error names no file)

    monkeypatch.setattr(report, "write_report", full)
    line = refused(capsys, ["report", "--out", str(tmp_path / "r"), "--storage", f"sqlite:///{db}"])
    assert f"cannot write the report in {tmp_path / 'r'}: No space left on device; the results are stored" in line


def test_an_empty_out_is_refused_before_work(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = spec_file(tmp_path)
    line = refused(capsys, ["run", str(spec), "--out", "", "--device", "cpu"])
    assert "--out must name a folder" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == [spec.name]


def test_claims_out_and_storage_given_before_the_subcommand_are_kept():
    from lossbench.cli import LEDGER_OUT, build_parser

    parse = build_parser().parse_args
    assert (parse(["claims", "--out", "A", "run", "c"]).out, parse(["claims", "--storage", "S", "run", "c"]).storage) == ("A", "S")
    assert (parse(["claims", "--out", "A", "report"]).out, parse(["claims", "--storage", "S", "report"]).storage) == ("A", "S")
    assert parse(["claims", "--out", "A", "report", "--out", "B"]).out == "B"  # (the subcommand's own wins)
    defaults = parse(["claims", "run", "c"])
    assert (defaults.out, defaults.storage) == (LEDGER_OUT, None)


@pytest.mark.parametrize("name", ["REPRODUCTIONS.md", "reproductions/ledger.html"])
def test_claims_report_refuses_to_replace_a_ledger_file_lossbench_did_not_write(name, capsys, tmp_path):
    from lossbench.ledger.report import LEDGER_TITLE, check_ledger_folder

    out = tmp_path / "ledger"
    (out / "reproductions").mkdir(parents=True)
    (out / "lossbench.db").write_bytes(b"")
    (out / name).write_text("my notes")
    line = refused(capsys, ["claims", "report", "--out", str(out)])
    assert f"holds {Path(name).name}, which lossbench did not write there" in line
    assert (out / name).read_text() == "my notes"
    (out / "REPRODUCTIONS.md").write_text(f"# {LEDGER_TITLE}\n\nGenerated by ...")  # the ledger's own: replaced
    (out / "reproductions" / "ledger.html").write_text(f"<!doctype html><html><head><title>{LEDGER_TITLE}</title>")
    check_ledger_folder(out)


def test_claims_report_refuses_a_plots_name_beside_no_ledger_of_lossbenchs(capsys, tmp_path):
    from lossbench.ledger.report import check_ledger_folder

    out = tmp_path / "ledger"
    (out / "reproductions").mkdir(parents=True)
    (out / "lossbench.db").write_bytes(b"")
    (out / "reproductions" / "cd-x-quick-fixed.png").write_bytes(b"my figure")
    line = refused(capsys, ["claims", "report", "--out", str(out)])
    assert "holds reproductions/cd-x-quick-fixed.png, which lossbench did not write there" in line
    assert (out / "reproductions" / "cd-x-quick-fixed.png").read_bytes() == b"my figure"
    (out / "REPRODUCTIONS.md").write_text("# lossbench claims ledger\n")  # beside the ledger they belong to: replaced
    check_ledger_folder(out)


def test_an_error_or_warning_line_shows_escape_sequences_as_text_and_names_as_written(capsys, tmp_path):
    # (a spec's key, a file's or a folder's name reach messages as written: they must not drive the terminal)
    spec = spec_file(tmp_path).read_text().replace('loss = "cross_entropy"', 'loss = "cross_entropy"\nsearch = {"\\u001b]0;x\\u0007k" = "bad"}')
    (tmp_path / "esc.toml").write_text(spec)
    line = refused(capsys, ["run", str(tmp_path / "esc.toml"), "--out", str(tmp_path / "out")])
    assert "\x1b" not in line and "\x07" not in line and "search.\\x1b]0;x\\x07k" in line
    from lossbench.bench.console import console, status

    for shown in (console, status):  # (rich's emoji codes: a method named "ce:skull:" printed as named)
        shown.print("ce:skull:", markup=False, highlight=False)
    assert capsys.readouterr() == ("ce:skull:\n", "ce:skull:\n")


def test_claims_reads_the_database_of_an_out_no_other_user_could_write_only(capsys, tmp_path):
    shared = tmp_path / "ledger"
    shared.mkdir()
    (shared / "lossbench.db").write_bytes(b"")  # (planted: its statuses would be listed as the ledger's)
    shared.chmod(0o777)
    line = refused(capsys, ["claims", "--out", str(shared)])
    assert line.startswith(f"lossbench: error: --out {shared}: {shared} is writable by its group and other users")
    assert "another user could have put its lossbench.db there" in line
    shared.chmod(0o755)
    assert main(["claims", "--out", str(tmp_path / "none")]) == 0  # (no database there: nothing read, nothing checked)


def test_a_missing_postgresql_driver_names_the_extra_that_brings_it(monkeypatch):
    from lossbench.bench.spec import SpecError
    from lossbench.bench.storage import open_storage

    monkeypatch.setitem(sys.modules, "psycopg2", None)  # (an import of it fails, as where it is not installed)
    with pytest.raises(SpecError, match=r"ImportError: .*pip install 'lossbench\[postgres\]'") as caught:
        open_storage(SECRET_URL)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(("url", "expected"), [
    ("nosuchdialect://x", "NoSuchModuleError: Can't load plugin: sqlalchemy.dialects:nosuchdialect"),
    ("not a url", "ArgumentError"),
    ("mysql://u@h/db", "ModuleNotFoundError: import of MySQLdb halted; None in sys.modules (lossbench's storages are SQLite, built "
                       "in, and PostgreSQL"),
])  # fmt: skip
def test_a_storage_that_cannot_open_is_refused_before_the_data_loads(url, expected, capsys, tmp_path, monkeypatch):
    from lossbench.bench import api

    loaded = []
    monkeypatch.setattr(api, "preflight", lambda *a: loaded.append(a))
    monkeypatch.setitem(sys.modules, "MySQLdb", None)  # (an import of MySQL's driver fails, installed or not)
    out = tmp_path / "out"
    line = refused(capsys, ["run", str(spec_file(tmp_path)), "--out", str(out), "--device", "cpu", "--storage", url])
    assert f"cannot open storage {url!r}: {expected}" in line
    assert not loaded and not out.exists()


def test_a_postgresql_url_without_a_driver_takes_the_extras_psycopg2():
    """SQLAlchemy 2.1 reads postgresql:// as psycopg 3, which the postgres extra does not install:
    the URL the README gives reaches the server (refused here: no server on port 1), not an ImportError."""
    from lossbench.bench.spec import SpecError
    from lossbench.bench.storage import check_storage_url, open_storage

    url = f"postgresql://alice:{PASSWORD}@127.0.0.1:1/lossbench"
    check_storage_url(url)
    with pytest.raises(SpecError, match="OperationalError") as caught:
        open_storage(url)
    assert PASSWORD not in str(caught.value)


def test_report_of_every_study_reads_every_spec_before_writing_any_report(stored, capsys, tmp_path):
    """A later study whose spec is refused (plugins not asked for) must not leave the earlier ones'
    reports half done: every spec is read before the first report is written."""
    import json
    import shutil

    import optuna

    from lossbench.bench.spec import parse_spec
    from lossbench.bench.storage import SPEC_ATTR, open_storage, register_spec

    base, db, _ = stored
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    storage = open_storage(f"sqlite:///{copy}")
    register_spec(storage, parse_spec({"name": "zz", "datasets": ["wine"], "methods": [{"name": "ce", "loss": "cross_entropy"}]}))
    study = optuna.load_study(study_name="zz", storage=storage)
    study.set_user_attr(SPEC_ATTR, json.dumps({**json.loads(study.user_attrs[SPEC_ATTR]), "plugins": ["lb_never_imported"]}))
    out = tmp_path / "reports"
    line = refused(capsys, ["report", "--storage", f"sqlite:///{copy}", "--out", str(out)])
    assert "lb_never_imported" in line
    assert not out.exists() or not any(out.rglob("*.html"))


def test_report_of_every_study_refuses_two_names_one_folder_where_case_does_not_count(stored, capsys, tmp_path):
    import shutil

    from lossbench.bench.spec import parse_spec
    from lossbench.bench.storage import open_storage, register_spec

    base, db, _ = stored
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    storage = open_storage(f"sqlite:///{copy}")
    for name in ("Wine", "wine"):
        register_spec(storage, parse_spec({"name": name, "datasets": ["wine"], "methods": [{"name": "ce", "loss": "cross_entropy"}]}))
    out = tmp_path / "reports"
    line = refused(capsys, ["report", "--storage", f"sqlite:///{copy}", "--out", str(out)])
    assert "studies 'Wine' and 'wine' would share one folder where letter case does not count" in line
    # (it named an option that does not exist, --study: the name is the report command's argument)
    assert line.endswith("report each by its name, with a folder of its own: lossbench report NAME --out DIR")
    assert not out.exists() or not list(out.iterdir())


@pytest.mark.parametrize(("url", "expected"), [
    ("sqlite:///{tmp}/s/study.db?timeout=60", "a SQLite URL takes no query string; give the file alone, e.g. sqlite:///{tmp}/s/study.db"),
    ("sqlite:///~/lb/x.db", "'~' is not expanded in a URL"),
    ("sqlite://", "is a SQLite database in memory"),
    ("sqlite:///:memory:", "is a SQLite database in memory"),
    # another driver's URL skipped every check (a foreign, empty or in-memory database, a query string)
    ("sqlite+pysqlite:///file:x?mode=memory&uri=true", "a SQLite URL takes no query string"),
    ("sqlite+aiosqlite:///{tmp}/s/study.db", "lossbench opens SQLite files itself, with Python's sqlite3; give the file as "
                                             "sqlite:///{tmp}/s/study.db"),
])  # fmt: skip
@pytest.mark.parametrize("command", ["run", "report", "worker"])
def test_a_sqlite_url_that_would_keep_the_study_elsewhere_is_refused_before_work(url, expected, command, capsys, tmp_path,
                                                                                 monkeypatch):  # fmt: skip
    # a query string became part of the file's name, '~' a folder of that name here, and a database in
    # memory kept nothing (nor could local workers see it): each refused, naming the URL, nothing made
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    url, expected = url.format(tmp=tmp_path), expected.format(tmp=tmp_path)
    out = tmp_path / "out"
    argv = {"run": ["run", str(spec_file(tmp_path)), "--out", str(out), "--device", "cpu"],
            "report": ["report", "--out", str(out)], "worker": ["worker", "tiny", "--device", "cpu"]}[command]  # fmt: skip
    line = refused(capsys, [*argv, "--storage", url])
    assert f"storage {url!r}" in line and expected in line
    assert not out.exists() and not (tmp_path / "s").exists() and list(work.iterdir()) == []


def test_out_through_a_link_to_nothing_is_refused_before_the_storage_is_touched(capsys, tmp_path):
    (tmp_path / "dl").symlink_to(tmp_path / "missing" / "x")  # (mkdir through it fails: "File exists")
    db = tmp_path / "s.db"
    line = refused(capsys, ["run", str(spec_file(tmp_path)), "--out", str(tmp_path / "dl" / "sub"), "--device", "cpu",
                            "--storage", f"sqlite:///{db}"])  # fmt: skip
    assert f"--out {tmp_path / 'dl' / 'sub'}: {tmp_path / 'dl'} is a link to {tmp_path / 'missing' / 'x'}, which does not exist" in line
    assert not db.exists() and not (tmp_path / "missing").exists()


def test_out_where_no_folder_can_be_made_is_refused_before_the_storage_is_touched(capsys, tmp_path, monkeypatch):
    # root in /sys: os.access says writable, mkdir says "Operation not permitted"
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.mkdir

    def mkdir(path, *args, **kwargs):
        if Path(path).parent == locked:
            raise PermissionError(1, "Operation not permitted", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    db = tmp_path / "s.db"
    line = refused(capsys, ["run", str(spec_file(tmp_path)), "--out", str(locked / "out"), "--device", "cpu",
                            "--storage", f"sqlite:///{db}"])  # fmt: skip
    assert f"--out {locked / 'out'}: cannot create a folder in {locked}: Operation not permitted" in line
    assert not db.exists() and list(locked.iterdir()) == []


def test_the_claims_listing_imports_no_plugin_a_shared_storage_names(capsys, tmp_path):
    # `lossbench claims` read a stored study's spec with its plugins imported (claims report and report refuse)
    import json
    import sys
    import time

    import optuna

    from lossbench.bench.storage import FINGERPRINT_ATTR, SPEC_ATTR, open_storage, register_spec
    from lossbench.ledger.protocol import study_spec
    from lossbench.ledger.records import all_claims
    from lossbench.ledger.runs import record_invocation

    claim = next(c for c in all_claims() if c.kind == "bench")
    spec = study_spec(claim, "quick", "fixed")
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    storage = open_storage(url)
    register_spec(storage, spec)
    record_invocation(storage, claim, "quick", "fixed", time.time(), spec.name)  # (the claim's study: its spec is read)
    study = optuna.load_study(study_name=spec.name, storage=storage)
    study.set_user_attr(SPEC_ATTR, json.dumps({**json.loads(study.user_attrs[SPEC_ATTR]), "plugins": ["lb_never_imported"]}))
    study.set_user_attr(FINGERPRINT_ATTR, "another")
    capsys.readouterr()  # (Optuna's note of the study created)
    line = refused(capsys, ["claims", "--storage", url])
    assert "lb_never_imported" in line and "lb_never_imported" not in sys.modules


def test_the_python_random_sampler_refuses_a_losss_registered_range_before_anything_is_stored(capsys, tmp_path):
    # focal's gamma is searched over its registered range: the spec was stored, then every trial failed
    # (FloatDistribution has no choices) and its retries were queued
    spec = spec_file(tmp_path, top='[search]\nlr = { choices = [0.1, 0.01] }\nweight_decay = { choices = [0.0, 0.001] }\n').read_text()
    spec = spec.replace('sampler = "random"', 'sampler = "python-random"') + '\n[[methods]]\nname = "f"\nloss = "focal"\n'
    (tmp_path / "pr.toml").write_text(spec)
    line = refused(capsys, ["run", str(tmp_path / "pr.toml"), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert "method 'f': the python-random sampler draws from choices only; these are ranges: ['loss.gamma']" in line
    assert not (tmp_path / "out").exists()


def test_an_out_another_user_owns_or_may_write_is_refused_before_work(capsys, tmp_path):
    # its owner, or another user allowed to write it, could put links in it that send the report elsewhere
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    line = refused(capsys, ["run", str(spec_file(tmp_path)), "--out", str(shared), "--device", "cpu"])
    assert line.startswith(f"lossbench: error: --out {shared}: {shared} is writable by its group and other users")
    assert "use a folder of your own" in line and list(shared.iterdir()) == []
    if os.geteuid() == 0:  # (root may give a folder away)
        theirs = tmp_path / "theirs"
        theirs.mkdir()
        os.chown(theirs, 12345, -1)
        line = refused(capsys, ["run", str(spec_file(tmp_path)), "--out", str(theirs), "--device", "cpu"])
        assert f"{theirs} is owned by uid 12345, not by you" in line and list(theirs.iterdir()) == []
        # nor may --out be made in it: they could swap the new folder for a link
        line = refused(capsys, ["run", str(spec_file(tmp_path)), "--out", str(theirs / "new"), "--device", "cpu"])
        assert f"{theirs} is owned by uid 12345, neither you (uid 0) nor root" in line and list(theirs.iterdir()) == []
        assert "chmod +t" not in line  # (no mode of another user's folder makes it safe)
    line = refused(capsys, ["run", str(spec_file(tmp_path)), "--out", str(shared / "new"), "--device", "cpu"])
    assert f"{shared} is writable by its group and other users" in line and list(shared.iterdir()) == []
    # nor a folder of the user's own that exists there, or one below it: while a run trains, another user
    # could rename it and put a link to elsewhere in its place (checked only when --out was new, before)
    mine = shared / "mine"
    mine.mkdir(mode=0o755)
    for out in (mine, mine / "sub"):
        line = refused(capsys, ["run", str(spec_file(tmp_path)), "--out", str(out), "--device", "cpu"])
        assert f"{shared} is writable by its group and other users" in line and list(mine.iterdir()) == []
        assert "give that folder the sticky bit, chmod +t" in line  # (a shared folder is not made one's own)
    # nor a link there to a folder of the user's own elsewhere: the link itself could be swapped
    (shared / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    line = refused(capsys, ["run", str(spec_file(tmp_path)), "--out", str(shared / "link"), "--device", "cpu"])
    assert f"{shared} is writable by its group and other users" in line and list((tmp_path / "elsewhere").iterdir()) == []
    sticky = tmp_path / "sticky"  # as /tmp: others cannot rename what this user makes there
    sticky.mkdir()
    sticky.chmod(0o1777)
    if os.geteuid() == 0:  # (root may give a link away) ... but what another user made there stays theirs: a link
        (sticky / "their-link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)  # they could repoint
        os.lchown(sticky / "their-link", 12345, -1)  # (mid-run: the report was written in their folder)
        line = refused(capsys, ["run", str(spec_file(tmp_path)), "--out", str(sticky / "their-link"), "--device", "cpu"])
        assert f"{sticky / 'their-link'} is a link owned by uid 12345, neither you (uid 0) nor root" in line
        assert list((tmp_path / "elsewhere").iterdir()) == [] and "chmod" not in line
    assert main(["run", str(spec_file(tmp_path)), "--out", str(sticky / "out"), "--device", "cpu"]) == 0
    # a folder to be made below one of the user's own is theirs: accepted (and made by the run)
    assert main(["run", str(spec_file(tmp_path)), "--out", str(tmp_path / "new" / "out"), "--device", "cpu"]) == 0


def test_another_studys_manifest_refuses_the_folder_before_its_report_files_are_there(capsys, tmp_path):
    # a study's report in progress writes its manifest first and its files a second later: a second study
    # checking in between saw no report file and replaced the first one's report
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lossbench-report.json").write_text('{"study": "other"}')
    line = refused(capsys, ["run", str(spec_file(tmp_path)), "--out", str(out), "--device", "cpu"])
    assert "holds the report of study 'other'" in line and sorted(p.name for p in out.iterdir()) == [".lossbench-report.json"]


@pytest.mark.parametrize("text", ["", "{not json", "[]", '{"other": 1}'], ids=["empty", "broken", "list", "no study"])
def test_a_damaged_report_manifest_is_named_not_read_as_study_none(capsys, tmp_path, text):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lossbench-report.json").write_text(text)
    line = refused(capsys, ["run", str(spec_file(tmp_path)), "--out", str(out), "--device", "cpu"])
    assert "its report manifest .lossbench-report.json is unreadable (not a report manifest)" in line
    assert "None" not in line and sorted(p.name for p in out.iterdir()) == [".lossbench-report.json"]


def test_a_listing_piped_into_a_reader_that_stops_early_ends_quietly(tmp_path):
    # `lossbench losses | head -1`: a BrokenPipeError traceback and exit status 1 before; now the status a
    # program killed by SIGPIPE has, and nothing on stderr
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "LOSSBENCH_CACHE_DIR": str(tmp_path / "cache")}
    reader = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE)
    reader.wait(timeout=60)  # (gone before the listing is written: its first write meets the closed pipe)
    proc = subprocess.run([sys.executable, "-m", "lossbench", "losses"], stdout=reader.stdin, stderr=subprocess.PIPE,
                          text=True, env=env, timeout=300)  # fmt: skip
    reader.stdin.close()
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr


def test_a_study_without_a_baseline_says_so_as_it_starts(capsys, tmp_path):
    # no baseline, no paired tests: said only in the report's protocol line before
    spec = spec_file(tmp_path, "two")
    spec.write_text(spec.read_text() + '\n[[methods]]\nname = "focal"\nloss = "focal"\n')
    assert main(["run", str(spec), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert "two: no baseline named: the report ranks the methods by their means, with no paired tests" in capsys.readouterr().err
    with_baseline = spec_file(tmp_path, "paired", top='baseline = "ce"')
    with_baseline.write_text(with_baseline.read_text() + '\n[[methods]]\nname = "focal"\nloss = "focal"\n')
    assert main(["run", str(with_baseline), "--out", str(tmp_path / "out2"), "--device", "cpu"]) == 0
    assert "no baseline named" not in capsys.readouterr().err


def test_a_storage_out_of_disk_space_during_a_run_is_one_line_saying_the_command_resumes(capsys, tmp_path, monkeypatch):
    # SQLite's "database or disk is full", met while storing a pack's parameters, printed Optuna's whole traceback
    import sqlite3

    import sqlalchemy

    from lossbench.bench.storage import HeartbeatStorage

    def full(self, params):
        raise sqlalchemy.exc.OperationalError("INSERT INTO trial_params ...", {}, sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(HeartbeatStorage, "set_trials_params", full)
    assert main(["run", str(spec_file(tmp_path)), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0] == ("lossbench: error: the storage's disk is full (database or disk is full); free some "
                                   "space, then the same command resumes where it stopped")  # fmt: skip


def test_a_terminal_that_cannot_show_the_leaderboards_characters_gets_them_escaped(tmp_path):
    """On an ASCII (or Latin-1) stdout the leaderboard's '±' raised UnicodeEncodeError after the runs, before the
    report was written: nothing but the database was left (found by a review)."""
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "lossbench", "run", str(spec_file(tmp_path)), "--out", str(tmp_path / "out"),
                           "--threads", "1"], capture_output=True, env=env, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert b"\\xb1" in done.stdout and (tmp_path / "out" / "report.html").exists()


def test_an_out_sqlite_cannot_open_or_a_url_cannot_hold_is_one_line_before_work(tmp_path, capsys):
    """A database path past SQLite's 512 bytes (its journal's included) failed as 'unable to open database file'
    after --out was made; an --out named in bytes that are no UTF-8 was a traceback (found by a review)."""
    deep = tmp_path
    while len(str(deep / "lossbench.db-journal").encode()) < 512:
        deep = deep / ("d" * min(100, 512 - len(str(deep / "lossbench.db-journal").encode())))
    line = refused(capsys, ["run", str(spec_file(tmp_path)), "--out", str(deep)])
    assert "its database's path has" in line and "more than SQLite opens (503)" in line and not deep.exists()
    latin = os.fsdecode(bytes(tmp_path) + b"/r\xe9sultats")
    line = refused(capsys, ["run", str(spec_file(tmp_path)), "--out", latin])
    assert "its path is not UTF-8 text" in line and not Path(latin).exists()


def test_run_loads_each_data_set_once(tmp_path, monkeypatch):
    """The preflight's runner loaded every data set, then the run's own loaded them again (a large table's parse
    twice; found by a review at scale): the run takes the preflight's data."""
    import collections

    from lossbench.bench import execution

    loads, load = collections.Counter(), execution.load_dataset
    monkeypatch.setattr(execution, "load_dataset", lambda name, **kw: loads.update([name]) or load(name, **kw))
    assert main(["run", str(spec_file(tmp_path)), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert loads and set(loads.values()) == {1}, loads
