"""Checks of plain argument values (numbers, counts, switches, intervals, finiteness) that the
losses, the transforms, the training loop and the bench share.  Each raises ``ValueError``
naming the argument, the bad value and what was expected.  Loss-specific checks (logits,
targets, reductions) stay in ``lossbench.losses._validation``.
"""

from __future__ import annotations

import importlib
import math
import numbers
import traceback
from collections.abc import Iterable
from pathlib import Path

import torch

from lossbench._paths import PACKAGE_DIR

_LIBRARIES = (PACKAGE_DIR, Path(torch.__file__).resolve().parent, Path(importlib.__file__).resolve().parent)


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message (a one-line error quotes it)."""
    return (str(err).splitlines() or [""])[0]


def raised_at(err: BaseException) -> str:
    """`` (at FILE:LINE)``: the last frame of ``err``'s traceback in code other than lossbench's, torch's and importlib's
    (a plugin's model or loss), so a one-line error still points to the line to fix; '' where none is."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith("<frozen ")
              and not any(Path(f.filename).resolve().is_relative_to(lib) for lib in _LIBRARIES)]  # fmt: skip
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def printable(text: str) -> str:
    """``text`` for a terminal: each character a terminal would act on (an escape sequence's ESC, a bidi
    control, a carriage return) written as its Python escape; line breaks and tabs kept.  A file's name or
    contents, or a spec's keys, reach messages as they are written."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else ascii(c)[1:-1] for c in text)


def largest_magnitude(x: torch.Tensor) -> torch.Tensor:
    """``max |x|`` as a 0-d tensor (``x`` non-empty): finite exactly when every entry is, since
    the maximum propagates nan."""
    return x.detach().abs().max()


def all_finite(x: torch.Tensor) -> bool:
    """Whether ``torch.isfinite(x).all()``, in two cheap ops instead of five (:func:`largest_magnitude`)."""
    return x.numel() == 0 or math.isfinite(float(largest_magnitude(x)))


def _finite(value: float) -> bool:
    """``math.isfinite(value)`` spelled as comparisons (False for nan): under ``torch.compile`` a float
    hyperparameter that changed between calls is traced as a symbolic float, which comparisons guard
    and ``math.isfinite`` cannot take (a graph break, an error with ``fullgraph=True``)."""
    return -math.inf < value < math.inf


def check_number(name: str, value: object) -> None:
    """A real number (or a one-element tensor): a string, a boolean or a tensor of several values
    given for a hyperparameter is refused by name, not by a failed comparison deep inside a loss."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a number or a one-element tensor, got a tensor of shape {tuple(value.shape)}")
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")


def check_numbers(name: str, value: object) -> None:
    """A number, a tensor (of any shape), or a list or tuple of numbers (a tensor written out, as in
    a spec): strings and booleans are refused by name before ``torch.as_tensor`` sees them."""
    if isinstance(value, torch.Tensor):
        return
    for item in value if isinstance(value, (list, tuple)) else (value,):
        check_number(name, item)


def check_bool(name: str, value: object) -> None:
    """A switch given as ``True`` or ``False``: any other value (``"no"``, ``0``, ``None``) is
    refused by name instead of being read by its truthiness."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


def check_count(name: str, value: object, *, allow_zero: bool = False) -> None:
    """An integer ``> 0`` (``>= 0`` with ``allow_zero``); a boolean is no count."""
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a {kind} integer, got {value!r}")


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """``value > 0`` (``>= 0`` with ``allow_zero``) and finite: an infinite gamma, margin, clip
    norm or flood level gives NaN or a silent no-op, never what was meant."""
    check_number(name, value)
    ok = value >= 0 if allow_zero else value > 0
    if not ok or not _finite(value):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")


def check_interval(name: str, value: float, low: float, high: float, *, closed: str = "both") -> None:
    """Check ``value`` lies in the interval; ``closed`` is one of both, left, right, neither."""
    check_number(name, value)
    lo_ok = value >= low if closed in ("both", "left") else value > low
    hi_ok = value <= high if closed in ("both", "right") else value < high
    if not (lo_ok and hi_ok and _finite(value)):
        lb = "[" if closed in ("both", "left") else "("
        rb = "]" if closed in ("both", "right") else ")"
        raise ValueError(f"{name} must lie in {lb}{low}, {high}{rb}, got {value}")


def first_few(items: Iterable[object], limit: int = 5, sep: str | None = None) -> str:
    """``items`` for a message, cut after ``limit`` with how many more: as a list (``['a', 'b'] and 3
    more``), or joined by ``sep`` (``a; b; and 3 more``)."""
    items = list(items)
    if sep is None:
        shown = repr(items[:limit])
        return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
    return sep.join(map(str, items[:limit])) + (f"{sep}and {len(items) - limit} more" if len(items) > limit else "")
