"""Where a run's numbers came from: the commit of lossbench's checkout, marked where its files differ."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from lossbench._provenance import describe_checkout

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                   capture_output=True)  # fmt: skip


def test_a_checkout_with_changes_under_the_package_is_marked_dirty(tmp_path):
    package = tmp_path / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "code.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("elsewhere\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "first")
    commit = describe_checkout(package)
    assert commit and not commit.endswith("-dirty")
    (tmp_path / "notes.txt").write_text("changed outside the package\n")
    assert describe_checkout(package) == commit  # (only the package's own files count)
    (package / "new.py").write_text("y = 2\n")  # not yet committed
    assert describe_checkout(package) == f"{commit}-dirty"
    (package / "new.py").unlink()
    (package / "code.py").write_text("x = 2\n")
    assert describe_checkout(package) == f"{commit}-dirty"


def test_reading_the_checkout_writes_nothing_in_it(tmp_path):
    # git status refreshes a stale index in place (taking .git/index.lock): a write outside --out, and a lock a
    # developer's commit in that checkout could meet
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "code.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "first")
    later = (package / "code.py").stat().st_mtime + 100
    os.utime(package / "code.py", (later, later))  # the same content, its stat data stale in the index
    index = tmp_path / ".git" / "index"
    before = (index.read_bytes(), index.stat().st_mtime_ns)
    assert describe_checkout(package) and not describe_checkout(package).endswith("-dirty")
    assert (index.read_bytes(), index.stat().st_mtime_ns) == before


def test_outside_a_checkout_there_is_no_commit(tmp_path):
    assert describe_checkout(tmp_path) is None


def test_files_no_commit_holds_have_no_commit(tmp_path):
    # lossbench installed (not editable) into an ignored folder of some checkout: that checkout's commit is not its code
    (tmp_path / ".gitignore").write_text("venv/\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "first")
    installed = tmp_path / "venv" / "site" / "pkg"
    installed.mkdir(parents=True)
    (installed / "code.py").write_text("x = 1\n")
    assert describe_checkout(installed) is None


def test_the_provenance_names_the_cpu():
    # (another CPU's vector code rounds otherwise: a long run's scores differ past round-off)
    from lossbench._provenance import cpu_model, provenance

    assert isinstance(cpu_model(), str) and cpu_model().strip() and provenance()["cpu"] == cpu_model()
