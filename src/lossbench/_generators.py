"""Python's and NumPy's global random generators, seeded and given back as torch's are: a model a user
writes may draw its weights from either (NumPy only where it is installed: the core library needs torch)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator


def _numpy():
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def seed_python_and_numpy(seed: int) -> None:
    """Seed Python's and NumPy's generators with ``seed`` (NumPy takes 32 bits of it)."""
    random.seed(seed)
    if (np := _numpy()) is not None:
        np.random.seed(seed % 2**32)


def _states() -> tuple:
    np = _numpy()
    return random.getstate(), None if np is None else np.random.get_state()


@contextlib.contextmanager
def python_and_numpy_kept() -> Iterator[None]:
    """Python's and NumPy's generators given back after the block in the states they had before it."""
    python, numpy = _states()
    try:
        yield
    finally:
        random.setstate(python)
        if numpy is not None:
            _numpy().random.set_state(numpy)


def python_and_numpy_state() -> tuple:
    """Python's and NumPy's generators' states, comparable with ``==`` (to tell whether code drew from either)."""
    python, numpy = _states()
    return python, None if numpy is None else (numpy[0], numpy[1].tobytes(), *numpy[2:])
