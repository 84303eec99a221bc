"""A process-wide lock that a forked child takes anew."""

from __future__ import annotations

import os
import threading
from typing import Any


class ForkSafeLock:
    """A lock (``reentrant``: an RLock) for ``with``; a child forked while another thread held it gets a free one
    (the held one would stay held there for good: the child's first ``with`` would wait forever)."""

    def __init__(self, reentrant: bool = False) -> None:
        self._make = threading.RLock if reentrant else threading.Lock
        self._lock = self._make()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._lock = self._make()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc: Any) -> None:
        self._lock.release()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()
