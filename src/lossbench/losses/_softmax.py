"""Log-softmax over the classes of ``(B, C)`` logits, fast for few classes on CPU.

PyTorch's CPU kernels reduce over the last dimension in vectors of 16 (float32) classes; below
16 classes they fall back to a scalar loop per row, so on the many rows of a packed step
(K runs x B samples) ``F.log_softmax`` and ``F.cross_entropy`` cost 3-8x what the same reduction
costs over the first dimension, where the vectors run across rows.  Below 16 classes, and where
the call is big enough for the transposition to pay, the classes are put first: the same
arithmetic per row (in float32 the same bits but for the rows of a last, partial vector of 16,
which may round an ulp apart; in float64 the same to round-off: ``tests/losses/test_softmax.py``);
``benchmarks/bench_packing.py step`` measures the gain.  :func:`at_target` and :func:`log_rival_mass`
read such log-probabilities in the layout they lie in.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CLASS_MAJOR_BELOW = 16  # classes: PyTorch's vectorised last-dimension path starts at 16
CLASS_MAJOR_FROM = 4096  # entries (rows x classes): below, the transposition costs more than it saves


def class_major(x: torch.Tensor) -> bool:
    """Whether softmax over ``x``'s classes (dim 1 of ``(B, C)``) runs faster with the classes first."""
    c = x.shape[1]
    return x.device.type == "cpu" and x.ndim == 2 and c < CLASS_MAJOR_BELOW and x.shape[0] * c >= CLASS_MAJOR_FROM


def log_softmax(x: torch.Tensor) -> torch.Tensor:
    """``F.log_softmax(x, dim=1)`` for ``(B, C)`` logits (a transposed view where that is faster)."""
    if class_major(x):
        return x.t().contiguous().log_softmax(0).t()
    return F.log_softmax(x, dim=1)


def cross_entropy(x: torch.Tensor, target: torch.Tensor, **kwargs) -> torch.Tensor:
    """``F.cross_entropy(x, target, **kwargs)`` for ``(B, C)`` logits and ``(B,)`` class indices."""
    if class_major(x):  # PyTorch's (N, C, d) form: one "sample" whose B positions are the rows
        out = F.cross_entropy(x.t().unsqueeze(0), target.unsqueeze(0), **kwargs)
        return out.squeeze(0) if out.ndim else out
    return F.cross_entropy(x, target, **kwargs)


def at_target(values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``values[b, target[b]]`` of ``(B, C)`` values, ``(B,)``, gathered along the layout the values lie in:
    from a class-major view (:func:`log_softmax`'s) the backward's gradient is class-major too, where a
    row-major one waited for a transposing copy before the log-softmax's backward (a third of smooth
    accuracy's step on a packed step's rows)."""
    if values.stride(0) == 1 and values.shape[1] > 1:  # the classes first in memory
        return values.t().gather(0, target[None]).squeeze(0)
    return values.gather(1, target[:, None]).squeeze(1)


def log_softmax_at(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``log softmax(x)_y`` of ``(B, C)`` logits, ``(B,)``."""
    return at_target(log_softmax(x), target)


def log_rival_mass(log_p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``log sum_{j != y} p_j`` ``(B,)`` of log-probabilities ``(B, C)``: a log-sum-exp over the rivals, exact where
    ``p_y`` rounds to 1.  The true class's entry is set to the rivals' largest, whose term ``exp(0) = 1`` comes
    off the sum (which is at least 2 then: a rounding of the sum's, no cancellation), rather than to a
    sentinel: ``exp`` of a value that underflows takes PyTorch's slow path, 7x the normal cost, and a
    sentinel in every row put one in nearly every vector.  A small call (below ``CLASS_MAJOR_FROM`` entries)
    masks the true class with the least float and takes one ``logsumexp``: its extra ops cost more there.
    One class (no rival): ``-inf``'s stand-in, the least float, whose gradient is 0."""
    if log_p.numel() < CLASS_MAJOR_FROM:
        return torch.logsumexp(log_p.scatter(1, target[:, None], torch.finfo(log_p.dtype).min), dim=1)
    v, y = log_p.t(), target[None]  # classes first: the reductions run across the rows
    with torch.no_grad():  # (a log-sum-exp's shift: any constant gives its value, none its gradient)
        floor = torch.finfo(v.dtype).min  # (all rivals at -inf: a finite shift, their terms 0)
        shift = v.scatter(0, y, -math.inf).amax(0, keepdim=True).clamp_(min=floor)
    rest = (v - shift).scatter_(0, y, 0.0).exp().sum(0) - 1  # (in place: the subtraction's backward keeps nothing)
    return shift.squeeze(0) + rest.clamp(min=torch.finfo(v.dtype).tiny).log()
