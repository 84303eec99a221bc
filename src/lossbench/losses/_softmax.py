"""Log-softmax over the classes of ``(B, C)`` logits, fast for few classes on CPU.

PyTorch's CPU kernels reduce over the last dimension in vectors of 16 (float32) classes; below
16 classes they fall back to a scalar loop per row, so on the many rows of a packed step
(K runs x B samples) ``F.log_softmax`` and ``F.cross_entropy`` cost 3-8x what the same reduction
costs over the first dimension, where the vectors run across rows.  Below 16 classes, and where
the call is big enough for the transposition to pay, the classes are put first: the same
arithmetic per row (in float32 the same bits but for the rows of a last, partial vector of 16,
which may round an ulp apart; in float64 the same to round-off: ``tests/losses/test_softmax.py``);
``benchmarks/bench_packing.py step`` measures the gain.
"""

from __future__ import annotations

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
