"""Local workers: their logs go to --out even before the study has created it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lossbench.bench.workers import LocalWorkers
from tests.bench.conftest import cli, write_spec


@pytest.mark.slow
def test_local_workers_create_the_output_folder_for_their_logs(tmp_path, capfd):
    out = tmp_path / "not-yet" / "made"
    url = f"sqlite:///{tmp_path}/empty.db"
    with LocalWorkers(1, "no-such-study", url, str(out)) as workers:  # no such study: the worker exits non-zero
        pass
    log = out / "no-such-study.worker-1.log"
    assert log.is_file() and log.read_text().strip()
    # the block (the starter's run) ended normally: a failed worker is reported, its log kept, nothing raised
    assert workers.failed == [f"{log} (exit status 2)"]  # (the CLI's exit status for a refused input)
    assert f"1 local worker(s) stopped early, the study completed without them; their output is in {log}" in capfd.readouterr().err


@pytest.mark.slow
def test_a_local_worker_imports_nothing_from_the_working_directory(tmp_path, monkeypatch):
    shared = tmp_path / "shared"  # a folder anyone may write to, such as /tmp
    shared.mkdir()
    marker = tmp_path / "ran"
    (shared / "optuna.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise ImportError('planted')\n")
    monkeypatch.chdir(shared)
    with LocalWorkers(1, "no-such-study", f"sqlite:///{tmp_path}/empty.db", str(tmp_path / "out")) as workers:
        pass
    assert workers.failed  # no such study: the worker exits non-zero
    assert not marker.exists()
    assert "planted" not in (tmp_path / "out" / "no-such-study.worker-1.log").read_text()


def test_workers_started_before_a_refused_log_are_stopped(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "no-such-study.worker-2.log").symlink_to(tmp_path / "elsewhere.log")  # refused before any worker starts
    with pytest.raises(ValueError, match="not inside the output folder"):
        with LocalWorkers(2, "no-such-study", f"sqlite:///{tmp_path}/empty.db", str(out)):
            pass
    assert not (out / "no-such-study.worker-1.log").exists()


def test_a_study_named_like_an_option_reaches_the_worker_as_its_study(tmp_path):
    from lossbench.cli import _local_workers, build_parser, cmd_worker

    parser = build_parser()
    run = parser.parse_args(["run", "--jobs", "2", "--pack", "3", "--data-dir", "d", "--out", str(tmp_path)])
    command = _local_workers(run, "-fast", "sqlite:///x.db").command()
    assert command[1:3] == ["-m", "lossbench"]
    args = parser.parse_args(command[3:])  # (before, argparse took -fast for an option: every worker exited 2)
    assert args.func is cmd_worker and args.study == "-fast" and args.pack == 3 and args.data_dir == "d"


class _FakeWorker:
    """A worker process that writes one line to its log and exits with ``status``."""

    status = 2

    def __init__(self, command, stdout, **_):
        stdout.write("this run's worker\n")
        self.returncode = None

    def wait(self):
        self.returncode = self.status
        return self.status

    def terminate(self):
        pass


@pytest.mark.parametrize("status", [2, 0])
def test_an_earlier_runs_worker_log_is_kept(tmp_path, monkeypatch, capsys, status):
    from lossbench.bench import workers

    monkeypatch.setattr(_FakeWorker, "status", status)
    monkeypatch.setattr(workers.subprocess, "Popen", _FakeWorker)
    out = tmp_path / "out"
    out.mkdir()
    (out / "s.worker-1.log").write_text("the failure the last warning named\n")
    (out / "s.worker-1.previous.log").write_text("older still\n")
    (out / "t.worker-1.log").write_text("another study's failure\n")  # (a claims run's other variation)
    with LocalWorkers(1, "s", "sqlite:///x.db", str(out)) as started:
        pass
    log, previous = out / "s.worker-1.log", out / "s.worker-1.previous.log"
    assert (out / "t.worker-1.log").read_text() == "another study's failure\n"
    assert previous.read_text() == "the failure the last warning named\n"  # (before: truncated, deleted on success)
    err = capsys.readouterr().err
    assert f"note: the earlier run's worker log(s) are now {previous}" in err
    if status:
        assert log.read_text() == "this run's worker\n" and started.failed == [f"{log} (exit status 2)"]
        assert f"output is in {log} (exit status 2); an earlier run's worker output is in {previous}" in err
    else:
        assert not log.exists() and "warning" not in err


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


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # (gone meanwhile)
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped by whoever adopted it, does not)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _workers(pid: int) -> list[int]:
    """The children of ``pid`` that run ``lossbench worker`` (from /proc)."""
    found = []
    for child in _children(pid):
        try:
            words = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:  # (gone meanwhile)
            continue
        if b"worker" in words:
            found.append(child)
    return found


def _wait_for(condition, what: str, limit: float = 300.0) -> None:
    """Wait for a state (a generous limit: a loaded machine is slow, and no test measures time)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_run_leaves_no_local_worker_running(tmp_path, stop):
    """`kill` (SIGTERM) stops `run --jobs 2` as Ctrl-C does, its worker with it (before, the worker went on
    training alone); a run killed outright (SIGKILL, no clean-up possible) loses its worker too, which
    watches for its starter."""
    spec = write_spec(tmp_path / "spec.toml", name="killed", trials=400, epochs=20, batch_size=32, dataset="digits")
    proc = cli("run", str(spec), "--out", str(tmp_path / "out"), "--jobs", "2", "--pack", "1")
    try:
        _wait_for(lambda: _workers(proc.pid), "the local worker to start")
        (worker,) = _workers(proc.pid)  # (not a short-lived git or other child of the starter)
        proc.send_signal(stop)
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == (128 + signal.SIGTERM if stop == signal.SIGTERM else -signal.SIGKILL), out
        _wait_for(lambda: not _running(worker), "the worker to stop")
        if stop == signal.SIGTERM:  # (stopped with it: no log to read)
            assert not list((tmp_path / "out").glob("*.worker-*.log"))
    finally:
        proc.kill()


def test_a_signal_set_to_be_ignored_stays_ignored():
    """Under nohup SIGHUP is ignored: a closed terminal must not stop the run."""
    from lossbench.bench import stops

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stops.taken():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # (taken as Ctrl-C is)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


@pytest.mark.parametrize("option", ["--jobs", "--threads"])
def test_thousands_of_local_workers_or_threads_are_refused_before_any_work(option, tmp_path, capsys):
    from lossbench.cli import main

    most = 4 * (os.cpu_count() or 1)
    out = tmp_path / "out"
    assert main(["run", "--out", str(out), option, str(most + 1)]) == 2
    line = capsys.readouterr().err.splitlines()[0]
    assert line == f"lossbench: error: {option} must be at most {most} (4 per core of this machine's {os.cpu_count()}), got {most + 1}"
    assert not out.exists()


def test_an_interrupted_start_leaves_no_worker_logs(tmp_path, monkeypatch):
    from lossbench.bench import workers

    started = []

    class Interrupted(_FakeWorker):
        def __init__(self, command, stdout, **kwargs):
            if len(started) == 2:
                raise KeyboardInterrupt  # (Ctrl-C while the third worker starts)
            super().__init__(command, stdout, **kwargs)
            started.append(self)

        def wait(self):
            self.returncode = 130  # stopped
            return 130

    monkeypatch.setattr(workers.subprocess, "Popen", Interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        with LocalWorkers(4, "s", "sqlite:///x.db", str(out)):
            pass
    assert len(started) == 2 and list(out.iterdir()) == []


def test_threads_limit_the_native_pools_too():
    # (--threads set torch's alone: scikit-learn's analysis claim ran on every core, OpenMP and BLAS at 2 each)
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from lossbench.bench.workers import NATIVE_THREADS_ENV, set_threads

    before, pools = torch.get_num_threads(), {p["prefix"]: p["num_threads"] for p in threadpool_info()}
    try:
        with pytest.MonkeyPatch.context() as env:  # (set_threads sets the variables pools read as they load)
            for name in NATIVE_THREADS_ENV:
                env.delenv(name, raising=False)
            set_threads(1)
            assert torch.get_num_threads() == 1 and all(p["num_threads"] == 1 for p in threadpool_info())
            assert all(os.environ[name] == "1" for name in NATIVE_THREADS_ENV)
    finally:
        torch.set_num_threads(before)
        threadpool_limits(pools)
    # a pool loaded after the setting (scikit-learn's OpenMP, imported only by the analysis that fits it)
    script = ("from lossbench.bench.workers import set_threads; set_threads(1); import sklearn.linear_model; "
              "from threadpoolctl import threadpool_info; print(max(p['num_threads'] for p in threadpool_info()))")
    clean = {k: v for k, v in os.environ.items() if k not in NATIVE_THREADS_ENV}
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=clean,
                          check=True).stdout.strip() == "1"  # fmt: skip
