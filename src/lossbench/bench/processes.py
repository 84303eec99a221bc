"""Whether the worker process that started a trial is gone, where this process can tell for sure.

A killed worker leaves its trials running in the storage; any worker fails and retries them once
their heartbeats are a grace period old.  On the same machine, in the same process namespace, a
dead worker's trials need not wait: its process no longer exists (or its number now belongs to a
process started later).  Each trial started records :func:`this_process`; :func:`gone` answers
only where the record was made by a process this one can see (same boot of the same kernel, same
PID namespace: Linux's ``/proc``), and says "not gone" wherever it cannot be sure.
"""

from __future__ import annotations

import functools
import os
import socket
from typing import Any

WORKER_ATTR = "lossbench_worker"  # a started trial's system attribute: this_process() of its worker


def _start_ticks(pid: int) -> tuple[int, str] | None:
    """The process's start time (clock ticks since boot) and state letter, from ``/proc/PID/stat``; None
    where it cannot be read (no such process, another user's under ``hidepid``, no ``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # (the command name before it may hold spaces and parentheses)
    try:
        return int(fields[19]), fields[0]  # (stat's fields 22 and 3: starttime, state)
    except (IndexError, ValueError):
        return None


@functools.cache
def _machine() -> str | None:
    """This host, this boot of its kernel, this PID namespace and time namespace, as one text; None where
    Linux's files are missing, or where ``/proc`` is another PID namespace's (its numbers are not ours)."""
    try:
        if os.readlink("/proc/self") != str(os.getpid()):  # (a /proc mounted from another PID namespace)
            return None
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
        spaces = [os.stat(f"/proc/self/ns/{kind}") for kind in ("pid", "time") if os.path.exists(f"/proc/self/ns/{kind}")]
    except OSError:
        return None
    if not spaces:
        return None
    # (the host's name too: machines restored from one memory snapshot share their boot id; a time namespace
    # shifts the start times /proc gives by its own offset)
    return ":".join([socket.gethostname(), boot, *(f"{st.st_dev}.{st.st_ino}" for st in spaces)])


@functools.cache
def _own_start(pid: int) -> int | None:
    """This process's start time (keyed by its pid: a forked child asks for its own)."""
    started = _start_ticks(pid)
    return None if started is None else started[0]


def can_tell() -> bool:
    """Whether processes on this machine can be told apart here (:func:`this_process` gives a record)."""
    return _machine() is not None and _own_start(os.getpid()) is not None


def this_process(trial_id: int) -> dict[str, Any] | None:
    """What identifies this process, running the trial ``trial_id``, to another on the same machine (None
    where it cannot be told).  The trial's id is part of it: a record copied with a trial's attributes to a
    retry (Optuna's retry of a stale trial copies them all) names no process of the copy."""
    if not can_tell():
        return None
    pid = os.getpid()
    return {"machine": _machine(), "pid": pid, "start": _own_start(pid), "trial": trial_id}


def gone(record: Any, trial_id: int) -> bool:
    """Whether the process a :func:`this_process` record of the trial ``trial_id`` names has ended: True only
    where it was made for this trial, on this machine's boot, in this PID namespace, and its process number
    is free, or a zombie's, or taken by a process that started at another time; False wherever that cannot
    be known."""
    if not isinstance(record, dict) or record.get("trial") != trial_id or type(trial_id) is not int:
        return False
    if record.get("machine") is None or record.get("machine") != _machine():
        return False
    pid, start = record.get("pid"), record.get("start")
    if type(pid) is not int or type(start) is not int or pid <= 0 or os.name == "nt":  # (there os.kill ends the process)
        return False
    try:
        os.kill(pid, 0)  # (signal 0: only whether the process exists; a process of another user still does)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    now = _start_ticks(pid)
    return now is not None and (now[0] != start or now[1] in "ZX")
