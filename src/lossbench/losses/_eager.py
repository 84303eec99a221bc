"""Functions that run outside compiled graphs, without loading torch's compiler to say so."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

_F = TypeVar("_F", bound=Callable)


def outside_compiled_graphs(fn: _F) -> _F:
    """``fn`` as ``torch.compiler.disable`` gives it where a compiled graph calls it (the graph breaks there and
    ``fn`` runs eagerly, its own frames uncompiled), without importing ``torch._dynamo`` at import time: that
    decorator imports it, a second of every process's start.  Eagerly ``fn`` is called as it is; traced, the
    call goes through torch's own lazy disable (``torch._compile``, a module the compiler never traces into)."""
    disabled = torch._disable_dynamo(fn)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if torch.compiler.is_compiling():  # (a constant True while the compiler traces this call)
            return disabled(*args, **kwargs)
        return fn(*args, **kwargs)

    return call  # type: ignore[return-value]
