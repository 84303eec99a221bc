"""Batch costs for MGS, vectorised over a leading candidate dimension.

``torchmetrics`` computes these for one prediction set; MGS needs them for many parameter
candidates at once (``(n, B, C)`` logits), so they are written here as tensor expressions and
tested against ``torchmetrics`` (tests/train/test_mgs.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Cost = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.ndim < 2 or target.ndim != 1 or logits.shape[-2] != target.shape[0]:
        raise ValueError(
            f"logits must be (..., B, C) and target (B,) class indices; got {tuple(logits.shape)} "
            f"and {tuple(target.shape)}"
        )
    if target.is_floating_point():
        raise ValueError(f"target must hold integer class indices, got dtype {target.dtype}")


def error_rate(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """``1 - accuracy`` of ``argmax`` predictions, per leading index: ``(..., B, C) -> (...)``."""
    _check(logits, target)
    valid = target != ignore_index
    correct = (logits.argmax(-1) == target) & valid
    return 1 - correct.sum(-1).to(logits.dtype) / valid.sum().clamp(min=1)


def macro_f1_cost(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """``1 - macro F1`` of ``argmax`` predictions, per leading index: ``(..., B, C) -> (...)``.

    Per class ``F1_c = 2 TP / (2 TP + FP + FN)``; classes with neither targets nor predictions in
    the batch are left out of the mean, as ``torchmetrics``' macro average does.
    """
    _check(logits, target)
    num_classes = logits.shape[-1]
    valid = target != ignore_index
    truth = torch.nn.functional.one_hot(torch.where(valid, target, 0), num_classes).to(logits.dtype)
    truth = truth * valid[:, None]
    pred = torch.nn.functional.one_hot(logits.argmax(-1), num_classes).to(logits.dtype) * valid[:, None]
    tp = (pred * truth).sum(-2)
    denom = pred.sum(-2) + truth.sum(-2)  # 2 TP + FP + FN
    present = denom > 0
    f1 = torch.where(present, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    return 1 - f1.sum(-1) / present.sum(-1).clamp(min=1)


COSTS: dict[str, Cost] = {"accuracy": error_rate, "macro_f1": macro_f1_cost}
