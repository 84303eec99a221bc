"""Whether a trial's worker process is gone (bench/processes.py): sure answers only, on this machine."""

from __future__ import annotations

import subprocess
import sys
import time

import optuna
import pytest

from lossbench.bench import processes
from lossbench.bench.storage import default_storage_url, open_storage

TRIAL = 7
here = processes.this_process(TRIAL)
pytestmark = pytest.mark.skipif(here is None, reason="no /proc to tell processes by (not Linux)")


def _record_of_a_child(wait: bool = True) -> tuple[dict, subprocess.Popen]:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    record = {**here, "pid": child.pid, "start": processes._start_ticks(child.pid)[0]}
    if wait:
        child.stdin.close()
        child.wait()
    return record, child


def test_this_process_is_not_gone():
    assert not processes.gone(here, TRIAL)


def test_an_ended_process_is_gone_and_a_live_one_is_not():
    record, child = _record_of_a_child(wait=False)
    try:
        assert not processes.gone(record, TRIAL)
    finally:
        child.stdin.close()
        child.wait()
    assert processes.gone(record, TRIAL)
    # a copy of the record on another trial (Optuna's retry of a stale trial copies its attributes) names no
    # process of that trial: not gone, whatever its process did
    assert not processes.gone(record, TRIAL + 1)


def test_a_zombie_is_gone():
    record, child = _record_of_a_child(wait=False)
    child.stdin.close()
    # not reaped yet: the pid exists, as a zombie, until wait()
    for _ in range(200):
        state = processes._start_ticks(child.pid)
        if state is not None and state[1] == "Z":
            break
        time.sleep(0.05)
    assert processes.gone(record, TRIAL)
    child.wait()


def test_a_pid_taken_by_a_process_started_later_is_gone():
    assert processes.gone({**here, "start": here["start"] - 1}, TRIAL)  # (this pid, another start time)


@pytest.mark.parametrize("record", [
    None, "text", {}, {**{k: v for k, v in here.items() if k != "machine"}},
    {**here, "machine": "another-host:another-boot:1.2", "pid": 2**22 + 1},  # another machine's: its pid says nothing here
    {**here, "pid": "12"}, {**here, "pid": True}, {**here, "pid": 0}, {**here, "pid": -1}, {**here, "start": 1.5},
    {k: v for k, v in here.items() if k != "trial"},
])  # fmt: skip
def test_what_cannot_be_told_is_not_gone(record):
    assert not processes.gone(record, TRIAL)


def test_a_proc_of_another_pid_namespace_tells_nothing(monkeypatch):
    # /proc mounted from another PID namespace (a sandbox's bind mount of the host's): its numbers are not
    # os.getpid()'s, and a start time read there would be another process's
    monkeypatch.setattr(processes.os, "readlink", lambda path: "1")
    processes._machine.cache_clear()
    try:
        assert processes.this_process(TRIAL) is None and not processes.can_tell()
    finally:
        monkeypatch.undo()
        processes._machine.cache_clear()
    assert processes.can_tell()


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_record_copied_to_a_retry_does_not_fail_the_live_worker_that_takes_it(tmp_path):
    # Optuna's own retry of a stale trial (its fail_stale_trials, which study.optimize runs) copies every system
    # attribute, the dead worker's record with them; the copy taken by Optuna's ask in a live process kept
    # that record, which named a process that was gone: the live trial was failed at once
    url = default_storage_url(tmp_path)
    storage = open_storage(url, 10)
    study = optuna.create_study(storage=storage, study_name="s:tune:a:b")
    code = f"from lossbench.bench.storage import open_storage; open_storage({url!r}, 10).start_trials({study._study_id}, 1, [], True)"
    subprocess.run([sys.executable, "-c", code], check=True)  # a worker that started a trial and died
    assert storage._get_stale_trial_ids(study._study_id) == [1]  # (its process is gone: stale at once)
    optuna.storages.fail_stale_trials(study)
    (copy,) = [t for t in storage.get_all_trials(study._study_id) if t.state == optuna.trial.TrialState.WAITING]
    assert copy.system_attrs[processes.WORKER_ATTR]["trial"] == 1  # (Optuna's copy of the dead trial's record)
    live = study.ask()  # taken by a live process through Optuna's own ask: the copied record stays
    assert live._trial_id == copy._trial_id and storage._get_stale_trial_ids(study._study_id) == []
