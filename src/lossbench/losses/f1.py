"""Soft F1 (= soft Dice) losses and the F1-weighted binary cross-entropy.

Soft F1 replaces the counts of F1 = 2 TP / (2 TP + FP + FN) by their expectations under the
model's probabilities ``p`` (Su, kexue.fm/archives/6620):

    F = 2 sum t p / sum (t + p),        loss = 1 - F = sum [t (1 - p) + (1 - t) p] / sum (t + p)

with the sums over a batch.  This is the soft Sorensen-Dice coefficient (linear denominator;
V-Net's variant squares ``t`` and ``p`` there), so ``soft_dice`` is another name for
:func:`soft_f1`.  The loss is computed in the second form, which avoids the cancellation in
``1 - F`` near ``F = 1``, with ``eps`` added to the denominator:

    loss = (FP + FN) / (2 TP + FP + FN + eps)

A group with no positives and no predicted mass then has loss 0 (F = 1) instead of 0 / 0.  With
the default ``eps = 1e-6`` a group without positives in the batch has loss ``P / (P + eps)``
(``P`` its predicted mass), so it pushes its mass down only once ``P`` is near ``eps``; larger
values (Dice implementations' ``smooth = 1``) make such groups penalise false positives.

These are batch-level losses: soft F1 is not a mean of per-sample terms, is biased on small
batches, and Su recommends it for fine-tuning after cross-entropy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lossbench.losses._registry import loss_module, register_loss
from lossbench.losses._softmax import log_softmax
from lossbench.losses._validation import (
    check_positive,
    loss_output,
    masked_reduce,
    one_hot,
    reduce,
    sigmoid_inputs,
    softmax_inputs,
)
from lossbench.registry import HyperParam

_SOFT_F1_REFERENCE = "Su, kexue.fm/archives/6620 (soft F1 = soft Sorensen-Dice coefficient)"
_EPS = HyperParam("eps", 1e-6, None, "added to the denominator: no positives and no mass give loss 0")


def _soft_f1_error(
    p: torch.Tensor, q: torch.Tensor, t: torch.Tensor, dims: Sequence[int], eps: float
) -> torch.Tensor:
    """``1 - soft F1 = sum [t q + (1 - t) p] / (sum (t + p) + eps)`` over ``dims``, ``q = 1 - p``.

    ``q`` is passed separately so that it can be computed without cancellation (``sigmoid(-s)``).
    ``p``, ``q`` and ``t`` are zero at ignored entries, so those add nothing to either sum.
    """
    dims = tuple(dims)
    return (t * q + (1 - t) * p).sum(dims) / ((t + p).sum(dims) + eps)


def _sigmoid_probabilities(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int, reduction: str, validate: bool, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Checked inputs and ``p = sigmoid(s)``, ``q = sigmoid(-s)``, both zero at ignored entries."""
    x, t, valid = sigmoid_inputs(logits, target, ignore_index, reduction, validate)
    check_positive("eps", eps)
    zero = torch.zeros_like(x)
    p, q = torch.where(valid, torch.sigmoid(x), zero), torch.where(valid, torch.sigmoid(-x), zero)
    return x, p, q, t, valid


def soft_f1(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    eps: float = 1e-6,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Binary soft F1 loss ``1 - 2 sum t p / sum (t + p)``, ``p = sigmoid(s)``, over the whole batch.

    Every element of ``logits`` is one decision, so for a ``(B, C)`` multi-label input this is
    the micro-averaged soft F1 (see :func:`multilabel_soft_f1` for the macro average).  Also
    available as ``soft_dice``.

    Args:
        logits: raw scores of any shape.
        target: same shape; 0/1 labels (integers, ``ignore_index`` excluded) or probabilities.
        eps: ``> 0``, added to the denominator (see the module docstring).
        reduction: the loss is one number for the batch: ``"none"`` returns it as a 0-dim
            tensor, and ``"mean"`` and ``"sum"`` return the same value.

    Reference: Su, kexue.fm/archives/6620.
    """
    x, p, q, t, _ = _sigmoid_probabilities(logits, target, ignore_index, reduction, validate, eps)
    loss = _soft_f1_error(p, q, t, range(x.ndim), eps)
    return loss_output(reduce(loss, reduction), logits)


def multilabel_soft_f1(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    eps: float = 1e-6,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Macro soft F1 loss over labels: ``1 - F_c`` per label ``c``, ``F_c`` the soft F1 of column ``c``.

    The last dimension of ``logits`` is the label axis; every other dimension is pooled
    (``(B, C)``: per label over the batch).  A 1-D input is a single label, equal to
    :func:`soft_f1`.

    Args:
        logits: raw scores ``(..., C)``; target: same shape, 0/1 labels (``ignore_index``
            excluded) or probabilities.
        eps: ``> 0``, added to each label's denominator.
        reduction: ``"none"`` returns the ``(C,)`` per-label losses ``1 - F_c``; ``"mean"``
            averages them over labels (one minus the macro soft F1); ``"sum"`` adds them.

    Reference: Su, kexue.fm/archives/6620, averaged over labels as macro F1 is.
    """
    x, p, q, t, _ = _sigmoid_probabilities(logits, target, ignore_index, reduction, validate, eps)
    loss = _soft_f1_error(p, q, t, range(x.ndim - 1) if x.ndim > 1 else range(x.ndim), eps)
    return loss_output(reduce(loss, reduction), logits)


def macro_soft_f1(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    eps: float = 1e-6,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Macro soft F1 loss for single-label classification: ``1 - F_c`` per class, ``p = softmax(s)``.

    ``F_c = 2 sum_b t_bc p_bc / sum_b (t_bc + p_bc)`` with ``t`` the one-hot targets, over the
    non-ignored samples of the batch.

    Args:
        logits: raw scores ``(B, C)``; target: class indices ``(B,)``, ``ignore_index`` excluded.
        eps: ``> 0``, added to each class's denominator.
        reduction: ``"none"`` returns the ``(C,)`` per-class losses ``1 - F_c``; ``"mean"``
            averages them over classes (one minus the macro soft F1); ``"sum"`` adds them.

    Reference: Su, kexue.fm/archives/6620, averaged over classes as macro F1 is.
    """
    x, y, valid = softmax_inputs(logits, target, ignore_index, reduction, validate)
    check_positive("eps", eps)
    keep = valid[:, None]
    log_p = log_softmax(x)
    zero = torch.zeros_like(x)
    p = torch.where(keep, log_p.exp(), zero)
    q = torch.where(keep, -torch.expm1(log_p), zero)
    t = torch.where(keep, one_hot(y, x), zero)
    loss = _soft_f1_error(p, q, t, (0,), eps)
    return loss_output(reduce(loss, reduction), logits)


def f1_weighted_bce(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    eps: float = 1e-6,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """F1-weighted binary cross-entropy ``-[t (1 - F/2) log p + (1 - t) (F/2) log(1 - p)]`` per element.

    ``F`` is the soft F1 of the batch (as :func:`soft_f1`, pooled over every element) under
    stop-gradient.  The gradient of soft F1 is proportional to ``sum (t (1 - F/2) - (1 - t) F/2)
    grad p``; replacing ``grad p`` by ``grad log p`` for positives and ``-grad p`` by
    ``grad log(1 - p)`` for negatives, as cross-entropy does for accuracy, gives this loss.
    Because ``F`` is held constant in the backward pass, the gradient is that of the formula at
    fixed ``F``, not the derivative of the returned value.  Negatives weigh ``F/2 <= 1/2``, so
    while ``F`` is low the loss favours recall.

    Args:
        logits: raw scores of any shape; target: same shape, 0/1 labels (``ignore_index``
            excluded) or probabilities.
        eps: ``> 0``, added to the soft-F1 denominator.
        reduction: ``"none"`` returns the per-element losses; ``"mean"`` averages them over the
            non-ignored elements.

    Reference: Su, kexue.fm/archives/7708.
    """
    x, p, q, t, valid = _sigmoid_probabilities(logits, target, ignore_index, reduction, validate, eps)
    f1 = 1 - _soft_f1_error(p.detach(), q.detach(), t, range(x.ndim), eps)
    per_element = -(t * (1 - f1 / 2) * F.logsigmoid(x) + (1 - t) * (f1 / 2) * F.logsigmoid(-x))
    return loss_output(masked_reduce(per_element, reduction, valid), logits)


SoftF1Loss = loss_module(soft_f1, "SoftF1Loss")
MultilabelSoftF1Loss = loss_module(multilabel_soft_f1, "MultilabelSoftF1Loss")
MacroSoftF1Loss = loss_module(macro_soft_f1, "MacroSoftF1Loss")
F1WeightedBCELoss = loss_module(f1_weighted_bce, "F1WeightedBCELoss")

# Soft F1 is the soft Sorensen-Dice coefficient: the same function under its segmentation name.
soft_dice = soft_f1
SoftDiceLoss = SoftF1Loss

register_loss(
    "soft_f1",
    soft_f1,
    SoftF1Loss,
    signature="sigmoid",
    reference=_SOFT_F1_REFERENCE,
    hyperparams=(_EPS,),
    batch_level=True,
)
register_loss(
    "multilabel_soft_f1",
    multilabel_soft_f1,
    MultilabelSoftF1Loss,
    signature="sigmoid",
    reference=_SOFT_F1_REFERENCE + ", macro-averaged over labels",
    hyperparams=(_EPS,),
    batch_level=True,
)
register_loss(
    "macro_soft_f1",
    macro_soft_f1,
    MacroSoftF1Loss,
    signature="softmax",
    reference=_SOFT_F1_REFERENCE + ", macro-averaged over classes",
    hyperparams=(_EPS,),
    batch_level=True,
)
register_loss(
    "f1_weighted_bce",
    f1_weighted_bce,
    F1WeightedBCELoss,
    signature="sigmoid",
    reference="Su, kexue.fm/archives/7708",
    hyperparams=(_EPS,),
    batch_level=True,  # per element, but weighted by the whole batch's soft F1: no runs' rows in one call
)
