"""Functions that run outside compiled graphs, without loading torch's compiler at import time."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

_F = TypeVar("_F", bound=Callable)


def outside_compiled_graphs(fn: _F) -> _F:
    """``fn`` as ``torch.compiler.disable`` gives it (a compiled graph that calls it breaks there, and ``fn``
    runs eagerly, its own frames uncompiled), by torch's own lazy form of it, ``torch._disable_dynamo``: the
    decorator imports ``torch._dynamo`` (about a second) when ``fn`` is first called, not when lossbench is
    imported (``torch.compiler.disable`` does at once: a second of every process's start, EXACT used or not)."""
    return torch._disable_dynamo(fn)  # type: ignore[return-value]
