"""Stopping a study: Ctrl-C, ``kill`` and a closed terminal all stop it as Ctrl-C does, but never inside
a storage call.

Raised inside a commit, an interrupt leaves SQLAlchemy's transaction half-done: SQLAlchemy turns it into
an ``AssertionError`` (the runner took it for a training error and failed the trial for good, and the
command exited 1), and on SQLite the interrupted connection keeps the database's write lock (the
clean-up then waited out the busy timeout, and other workers with it).  So while the main thread is in
a storage call (:func:`held`) a stop signal is kept and raised when the call returns; a second one
raises at once.  Stdlib only: the command line imports it.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from lossbench.bench.defaults import STOP_SIGNALS

F = TypeVar("F", bound=Callable[..., Any])


class Stopped(KeyboardInterrupt):
    """A stop by a signal other than Ctrl-C (``kill``, a closed terminal), taken as Ctrl-C is: the
    same clean-up (the held trials queued again, local workers stopped), exit status 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_depth = 0  # storage calls in progress on the main thread
_pending: int | None = None  # a stop signal that came during one


def _interrupt(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if signum == signal.SIGINT else Stopped(signum)


def _on_signal(signum: int, frame: Any) -> None:
    global _pending
    if _depth and _pending is None:  # (Python runs the handler on the main thread)
        _pending = signum
        return
    raise _interrupt(signum)


@contextlib.contextmanager
def holding() -> Iterator[None]:
    """Within the block, stop signals on the main thread are held and raised when it ends: a storage call,
    or one and what must follow it before a stop can be taken (the trials it started kept where the
    clean-up finds them, to fail and queue them again)."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending is not None:
            signum, _pending = _pending, None
            raise _interrupt(signum)


def held(function: F) -> F:
    """``function`` (a storage call) with stop signals on the main thread held until it returns."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        with holding():
            return function(*args, **kwargs)

    return call  # type: ignore[return-value]


@contextlib.contextmanager
def taken(names: Sequence[str] = ("SIGINT", *STOP_SIGNALS)) -> Iterator[None]:
    """Within the block the signals ``names`` stop the process as Ctrl-C does (:class:`Stopped` for all
    but SIGINT), held during storage calls.  A signal set to be ignored stays so (nohup's SIGHUP, which
    a closed terminal must not turn into a stop), and so does one whose handler is not Python's default
    (a caller's own); outside the main thread, where handlers cannot be set, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    defaults = (signal.SIG_DFL, signal.default_int_handler, _on_signal)
    numbers = [getattr(signal, name) for name in names if hasattr(signal, name)]
    before = {s: signal.signal(s, _on_signal) for s in numbers if signal.getsignal(s) in defaults}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


def stop_in(err: BaseException) -> KeyboardInterrupt | None:
    """The stop ``err`` is, or that was being raised when ``err`` was (a library that caught the interrupt
    and raised its own error: the stop is what happened); None if neither."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return seen
        seen = seen.__context__
    return None
