"""Batch costs for MGS, vectorised over a leading candidate dimension.

``torchmetrics`` computes these for one prediction set; MGS needs them for many parameter
candidates at once, so they are written here as tensor expressions and tested against
``torchmetrics`` (tests/train/test_mgs.py).

``logits`` carry exactly one leading candidate dimension ``n`` in front of what the model
returns for the batch; the rest of their shape says how to read the target:

- class scores ``(n, *T, C)`` for integer class indices ``T`` (``(B,)``, or ``(B, tasks)``):
  the prediction is the arg-max;
- one logit per decision, ``(n, *T)`` or ``(n, *T, 1)``, for 0/1 (or probability) targets of
  shape ``T`` (binary, multi-label): the prediction is ``logit > 0``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Cost = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _decisions(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, bool]:
    """Predicted and true labels ``(n, N)`` / ``(N,)``, the valid mask, the class count, and
    whether the decisions are per label of a multi-label target."""
    shape, t_shape = tuple(logits.shape[1:]), tuple(target.shape)
    if shape[-1:] == (1,) and shape[:-1] == t_shape:
        logits, shape = logits.squeeze(-1), shape[:-1]
    if shape == t_shape:  # one logit per decision
        valid = torch.ones_like(target, dtype=torch.bool)
        if not target.is_floating_point():
            valid = target != ignore_index
        truth = torch.where(valid, target > 0.5, False).long()
        pred = (logits > 0).long()
        return pred.flatten(1), truth.flatten(), valid.flatten(), 2, target.ndim > 1
    if shape[:-1] == t_shape and not target.is_floating_point():  # class scores
        valid = target != ignore_index
        pred = logits.argmax(-1)
        return pred.flatten(1), torch.where(valid, target, 0).flatten(), valid.flatten(), shape[-1], False
    raise ValueError(
        f"logits {tuple(logits.shape)} (candidates first) do not match target {t_shape}: expected "
        f"(n, *T, C) scores for class indices T, or (n, *T) logits for 0/1 targets T"
    )


def _count_dtype(logits: torch.Tensor) -> torch.dtype:
    """Counts in at least float32: bfloat16 holds integers exactly only up to 256 (one sample in a batch of 1000 lost)."""
    return torch.promote_types(logits.dtype, torch.float32)


def error_rate(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """``1 - accuracy`` per candidate, ``(n, ...) -> (n,)``; for multi-label targets the share
    of wrong label decisions (Hamming loss)."""
    pred, truth, valid, _, _ = _decisions(logits, target, ignore_index)
    correct = (pred == truth) & valid
    return 1 - correct.sum(-1).to(_count_dtype(logits)) / valid.sum().clamp(min=1)


def macro_f1_cost(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """``1 - macro F1`` per candidate, ``(n, ...) -> (n,)``.

    Single-label (and binary): per class ``F1_c = 2 TP / (2 TP + FP + FN)`` over the batch,
    classes with neither targets nor predictions left out of the mean, as ``torchmetrics``'
    macro average does.  Multi-label: the positive class's F1 per label, averaged over every label
    (one with neither targets nor predictions at 0), as ``torchmetrics``' multi-label macro F1.
    """
    pred, truth, valid, num_classes, multilabel = _decisions(logits, target, ignore_index)
    dtype = _count_dtype(logits)
    if multilabel:  # (n, B*L) -> per label: positives only
        labels = target.shape[-1]
        p = (pred * valid).reshape(pred.shape[0], -1, labels).to(dtype)
        t = (truth * valid).reshape(-1, labels).to(dtype)
        tp, denom = (p * t).sum(-2), p.sum(-2) + t.sum(-2)
    else:
        p = F.one_hot(pred, num_classes).to(dtype) * valid[:, None]
        t = F.one_hot(truth, num_classes).to(dtype) * valid[:, None]
        tp, denom = (p * t).sum(-2), p.sum(-2) + t.sum(-2)  # denom = 2 TP + FP + FN
    present = denom > 0
    f1 = torch.where(present, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    # torchmetrics' macro averages: a class absent from targets and predictions is left out, a label is not
    # (its F1 counts as 0), as the bench's reported metric does
    counted = f1.shape[-1] if multilabel else present.sum(-1).clamp(min=1)
    return 1 - f1.sum(-1) / counted


COSTS: dict[str, Cost] = {"accuracy": error_rate, "macro_f1": macro_f1_cost}
