"""Local parallelism: extra worker processes on this machine, joined to the same storage.

``lossbench run --jobs N`` (and ``lossbench claims run --jobs N``) starts ``N - 1`` workers
(``python -m lossbench worker``) beside the process that shows the progress; every worker runs
units of the same study through the storage, as workers on other machines do, with crash safety
unchanged.  The storage URL reaches them through the environment, never their command line (a
password would show in ``ps``).  Each worker's output goes to a log file in the output folder,
kept when the worker fails; the next run of the study moves it to ``<study>.worker-N.previous.log``
(named by the study: the studies of one ``claims run`` share an output folder).

Threads: torch's default of one thread per core makes each small run fight every other process
for the cores, so each process uses ``defaults.DEFAULT_THREADS`` unless told otherwise.
"""

from __future__ import annotations

import _thread
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import torch

from lossbench._checks import check_count
from lossbench._paths import inside
from lossbench.bench.defaults import STOP_SIGNALS
from lossbench.bench.storage import STORAGE_ENV


def check_local(name: str, count: int) -> None:
    """A count of threads or local workers: a positive integer, at most 4 per core of this machine (more
    only slows the work down; a typo's thousands exhaust the machine)."""
    check_count(name, count)
    most = 4 * (os.cpu_count() or 1)
    if count > most:
        raise ValueError(f"{name} must be at most {most} (4 per core of this machine's {os.cpu_count()}), got {count}")


NATIVE_THREADS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")  # read as a pool loads


def set_threads(threads: int) -> None:
    """torch's intra-op threads for this process (checked: :func:`check_local`), and the native thread pools'
    (OpenMP, BLAS: scikit-learn's and NumPy's) alike, which torch's setting leaves alone: those loaded already
    through threadpoolctl, those loaded later (scikit-learn's OpenMP, imported by the analysis that fits it) by
    the variables they read as they load."""
    check_local("--threads", threads)
    torch.set_num_threads(threads)
    from threadpoolctl import threadpool_limits  # (scikit-learn's dependency: installed with the bench)

    threadpool_limits(threads)
    os.environ.update(dict.fromkeys(NATIVE_THREADS_ENV, str(threads)))


PARENT_ENV = "LOSSBENCH_PARENT_PID"  # a local worker's starter: the worker stops when it is gone
# How a worker stopped with this process exits: Ctrl-C, or a stop signal (kill, its process group's SIGHUP).
STOPPED = (130, *(code for s in STOP_SIGNALS if hasattr(signal, s) for code in (128 + getattr(signal, s), -getattr(signal, s))))


def stop_with_parent(poll: float = 1.0) -> None:
    """In a local worker, stop as ``kill`` would stop it once the process that started it is gone
    (killed with SIGKILL, say, which leaves it no time to stop its workers): a daemon thread watches
    the parent's pid and interrupts the main thread (the runner re-queues the trials it holds)."""
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            threading.Event().wait(poll)
        _thread.interrupt_main(signal.SIGTERM)

    threading.Thread(target=watch, name="lossbench-parent-watch", daemon=True).start()


def worker_environment(storage_url: str) -> dict[str, str]:
    """A local worker's environment.  Workers run with PYTHONSAFEPATH (python's -P): no import from the
    working directory (python -m puts it first on sys.path, and a shared folder such as /tmp may hold a
    module another user planted there), unless this process itself imports from it (it was started with
    python -m there): then the workers see what it sees, its plugins included, through PYTHONPATH."""
    env = {**os.environ, STORAGE_ENV: storage_url, "PYTHONUNBUFFERED": "1", "PYTHONSAFEPATH": "1", PARENT_ENV: str(os.getpid())}
    here = os.getcwd()
    if sys.path and sys.path[0] in ("", here):
        env["PYTHONPATH"] = os.pathsep.join([here, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env


class LocalWorkers:
    """``count`` worker processes on study ``study`` in ``storage_url``; a context manager that
    waits for them on exit (and stops them if the block raised, Ctrl-C included).

    The block is the starter's own run, which returns once every unit of the study is complete (the
    trials of a worker that died were failed by their heartbeats and run again): a worker that failed
    then (killed by the system, say) costs time, not results, so it is reported in one line on
    stderr, its log kept, and listed in :attr:`failed`, and the caller goes on to its report."""

    def __init__(self, count: int, study: str, storage_url: str, out: str, options: Sequence[str] = ()) -> None:
        self.count, self.study, self.url, self.out, self.options = count, study, storage_url, out, list(options)
        self._procs: list[tuple[subprocess.Popen, Path]] = []
        self.failed: list[str] = []  # "<log> (exit status N)" of each worker that failed
        self.previous: list[Path] = []  # the logs an earlier run left, moved to <study>.worker-N.previous.log

    def command(self) -> list[str]:
        """A worker's command line: the study after ``--``, so that a name such as ``-fast`` is not an option."""
        return [sys.executable, "-m", "lossbench", "worker", *self.options, "--", self.study]

    def __enter__(self) -> LocalWorkers:
        env = worker_environment(self.url)
        Path(self.out).mkdir(parents=True, exist_ok=True)  # the workers' logs go there before the study writes anything
        logs = [inside(self.out, f"{self.study}.worker-{i + 1}.log") for i in range(self.count)]  # every path checked before any start
        previous = [inside(self.out, f"{self.study}.worker-{i + 1}.previous.log") for i in range(self.count)]
        # A log an earlier run left is a failed (or killed) worker's, which its warning sent the user to read.
        self.previous = []
        for log, old in zip(logs, previous):
            if log.exists():
                os.replace(log, old)
                self.previous.append(old)
        if self.previous:
            print(f"note: the earlier run's worker log(s) are now {', '.join(map(str, self.previous))}",
                  file=sys.stderr, flush=True)  # fmt: skip
        try:
            for log in logs:
                # (O_NOFOLLOW: a link planted at the log's name would truncate what it points to)
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
                with os.fdopen(os.open(log, flags, 0o666), "w", encoding="utf-8") as stream:
                    proc = subprocess.Popen(self.command(), env=env, stdout=stream, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)  # fmt: skip
                self._procs.append((proc, log))
        except BaseException:
            for proc, log in self._procs:  # (no __exit__ follows a failed __enter__: none may run on alone)
                proc.terminate()
                if proc.wait() == 0 or proc.returncode in STOPPED:  # (stopped by us: nothing to read)
                    log.unlink(missing_ok=True)
            for log in logs[len(self._procs) :]:  # (opened, its worker not started)
                log.unlink(missing_ok=True)
            raise
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None:
            for proc, _ in self._procs:
                proc.terminate()
        for proc, log in self._procs:
            if proc.wait() == 0 or (kind is not None and proc.returncode in STOPPED):  # (stopped by us: nothing to read)
                log.unlink(missing_ok=True)
            elif kind is None:
                self.failed.append(f"{log} (exit status {proc.returncode})")
        if self.failed:
            earlier = f"; an earlier run's worker output is in {', '.join(map(str, self.previous))}" if self.previous else ""
            print(f"warning: {len(self.failed)} local worker(s) stopped early, the study completed without them; their "
                  f"output is in {', '.join(self.failed)}{earlier}", file=sys.stderr, flush=True)  # fmt: skip
