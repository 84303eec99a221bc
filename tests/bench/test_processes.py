"""Whether a trial's worker process is gone (bench/processes.py): sure answers only, on this machine."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from lossbench.bench import processes

here = processes.this_process()
pytestmark = pytest.mark.skipif(here is None, reason="no /proc to tell processes by (not Linux)")


def _record_of_a_child(wait: bool = True) -> tuple[dict, subprocess.Popen]:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    record = {**here, "pid": child.pid, "start": processes._start_ticks(child.pid)[0]}
    if wait:
        child.stdin.close()
        child.wait()
    return record, child


def test_this_process_is_not_gone():
    assert not processes.gone(here)


def test_an_ended_process_is_gone_and_a_live_one_is_not():
    record, child = _record_of_a_child(wait=False)
    try:
        assert not processes.gone(record)
    finally:
        child.stdin.close()
        child.wait()
    assert processes.gone(record)


def test_a_zombie_is_gone():
    record, child = _record_of_a_child(wait=False)
    child.stdin.close()
    # not reaped yet: the pid exists, as a zombie, until wait()
    for _ in range(200):
        state = processes._start_ticks(child.pid)
        if state is not None and state[1] == "Z":
            break
        time.sleep(0.05)
    assert processes.gone(record)
    child.wait()


def test_a_pid_taken_by_a_process_started_later_is_gone():
    assert processes.gone({**here, "start": here["start"] - 1})  # (this pid, another start time)


@pytest.mark.parametrize("record", [
    None, "text", {}, {**{k: v for k, v in here.items() if k != "machine"}},
    {**here, "machine": "another-boot:1:2", "pid": 2**22 + 1},  # another machine's: its pid says nothing here
    {**here, "pid": "12"}, {**here, "pid": True}, {**here, "pid": 0}, {**here, "pid": -1}, {**here, "start": 1.5},
])  # fmt: skip
def test_what_cannot_be_told_is_not_gone(record):
    assert not processes.gone(record)
