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
from typing import Any

WORKER_ATTR = "lossbench_worker"  # a started trial's system attribute: this_process() of the worker that started it


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
    """This boot of this kernel and this PID namespace, as one text; None where Linux's files are missing."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
        namespace = os.stat("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{boot}:{namespace.st_dev}:{namespace.st_ino}"


def this_process() -> dict[str, Any] | None:
    """What identifies this process to another on the same machine (None where it cannot be told)."""
    machine, pid = _machine(), os.getpid()
    started = _start_ticks(pid)
    if machine is None or started is None:
        return None
    return {"machine": machine, "pid": pid, "start": started[0]}


def gone(record: Any) -> bool:
    """Whether the process a :func:`this_process` record names has ended: True only where it was made on
    this machine's boot, in this PID namespace, and its process number is free, or a zombie's, or taken
    by a process that started at another time; False wherever that cannot be known."""
    if not isinstance(record, dict) or record.get("machine") is None or record.get("machine") != _machine():
        return False
    pid, start = record.get("pid"), record.get("start")
    if type(pid) is not int or type(start) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # (signal 0: only whether the process exists; a process of another user still does)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    now = _start_ticks(pid)
    return now is not None and (now[0] != start or now[1] in "ZX")
