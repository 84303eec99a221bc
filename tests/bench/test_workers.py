"""Local workers: their logs go to --out even before the study has created it."""

from __future__ import annotations

import pytest

from lossbench.bench.workers import LocalWorkers


@pytest.mark.slow
def test_local_workers_create_the_output_folder_for_their_logs(tmp_path):
    out = tmp_path / "not-yet" / "made"
    url = f"sqlite:///{tmp_path}/empty.db"
    with pytest.raises(RuntimeError, match="local worker"):  # no such study: the worker exits non-zero
        with LocalWorkers(1, "no-such-study", url, str(out)):
            pass
    log = out / "worker-1.log"
    assert log.is_file() and log.read_text().strip()


@pytest.mark.slow
def test_a_local_worker_imports_nothing_from_the_working_directory(tmp_path, monkeypatch):
    shared = tmp_path / "shared"  # a folder anyone may write to, such as /tmp
    shared.mkdir()
    marker = tmp_path / "ran"
    (shared / "optuna.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise ImportError('planted')\n")
    monkeypatch.chdir(shared)
    with pytest.raises(RuntimeError, match="local worker"):  # no such study: the worker exits non-zero
        with LocalWorkers(1, "no-such-study", f"sqlite:///{tmp_path}/empty.db", str(tmp_path / "out")):
            pass
    assert not marker.exists()
    assert "planted" not in (tmp_path / "out" / "worker-1.log").read_text()


def test_workers_started_before_a_refused_log_are_stopped(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "worker-2.log").symlink_to(tmp_path / "elsewhere.log")  # refused before any worker starts
    with pytest.raises(ValueError, match="not inside the output folder"):
        with LocalWorkers(2, "no-such-study", f"sqlite:///{tmp_path}/empty.db", str(out)):
            pass
    assert not (out / "worker-1.log").exists()


def test_workers_see_the_working_directory_only_where_this_process_does(tmp_path, monkeypatch):
    import sys

    from lossbench.bench.workers import worker_environment

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.setattr(sys, "path", ["/somewhere/else", *sys.path[1:]])  # the lossbench script: no cwd
    assert "PYTHONPATH" not in worker_environment("sqlite:///x.db")
    monkeypatch.setattr(sys, "path", ["", *sys.path[1:]])  # python -m lossbench run here: its plugins may be here
    env = worker_environment("sqlite:///x.db")
    assert env["PYTHONPATH"] == str(tmp_path) and env["PYTHONSAFEPATH"] == "1"
