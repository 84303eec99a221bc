"""Su's truncated cross-entropy: stop learning from samples that are already fitted well enough.

Hard truncation (Su, kexue.fm/archives/4293): with a threshold ``m`` in ``(0.5, 1)``, a sample
whose true-class probability already exceeds ``m`` contributes neither loss nor gradient, so
training concentrates on the samples near or across the decision boundary (the hinge-loss
idea carried over to cross-entropy).  Softened form (Su, kexue.fm/archives/4733): replace the
step ``theta(-x)`` in the ``m = 0.5`` case by ``sigma(-K x)``; ``K`` sets how sharp the soft
step is (``K -> infinity``: the hard step; ``K -> 0``: half the cross-entropy), and ``K = 1``
is the focal loss with ``gamma = 1``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lossbench.losses._registry import loss_module, register_loss
from lossbench.losses._softmax import log_softmax_at
from lossbench.losses._validation import (
    check_interval,
    check_positive,
    log_of_number,
    loss_output,
    masked_reduce,
    reduce,
    sigmoid_inputs,
    softmax_inputs,
)
from lossbench.registry import FloatRange, HyperParam

_HARD = "Su, 'Text sentiment classification (4): a better loss function', kexue.fm/archives/4293"
_SOFT = "Su, 'From hard truncation of the loss and its softening to focal loss', kexue.fm/archives/4733"
_THRESHOLD = HyperParam(
    "threshold", 0.6, FloatRange(0.51, 0.99), "m: no loss once the true class's probability exceeds m"
)
_SHARPNESS = HyperParam(
    "sharpness",
    1.0,
    FloatRange(0.1, 10.0, log=True),
    "K: slope of the soft step sigma(-K x); 1 = focal gamma 1",
)


def _check_threshold(threshold: float) -> None:
    check_interval("threshold", threshold, 0.5, 1.0, closed="neither")


def hard_truncation(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    threshold: float = 0.6,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Truncated cross-entropy ``-1[p_y <= m] log p_y``, ``p = softmax(s)``, ``m`` = ``threshold``.

    A sample with ``p_y > m`` gives loss 0 and no gradient; the others give plain
    cross-entropy.  ``"mean"`` averages over all non-ignored samples, the truncated ones
    included (as zeros).  ``threshold`` must lie in ``(0.5, 1)``; Su's example
    uses 0.6.  Target: class indices ``(B,)``.

    Reference: Su, kexue.fm/archives/4293 (the softmax case: only the true class's
    probability is compared with ``m``).
    """
    x, y, valid = softmax_inputs(logits, target, ignore_index, reduction, validate)
    _check_threshold(threshold)
    log_p = log_softmax_at(x, y)
    keep = valid & (log_p <= log_of_number(threshold, log_p))
    loss = torch.where(keep, -log_p, torch.zeros_like(log_p))
    return loss_output(reduce(loss, reduction, valid), logits)


def binary_hard_truncation(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    threshold: float = 0.6,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Truncated BCE, elementwise: no loss for a positive with ``p > m`` or a negative with ``p < 1 - m``.

    ``p = sigma(x)``, ``m`` = ``threshold`` in ``(0.5, 1)``; the comparisons are made on the
    logit, ``x > logit(m)`` and ``x < -logit(m)``.  A probability target ``t`` gives
    ``t L_pos + (1 - t) L_neg``.  ``"mean"`` averages over all non-ignored elements.

    Reference: Su, kexue.fm/archives/4293.
    """
    x, t, valid = sigmoid_inputs(logits, target, ignore_index, reduction, validate)
    _check_threshold(threshold)
    edge = log_of_number(threshold / (1 - threshold), x)
    positive = torch.where(x > edge, torch.zeros_like(x), -F.logsigmoid(x))
    negative = torch.where(x < -edge, torch.zeros_like(x), -F.logsigmoid(-x))
    per_element = t * positive + (1 - t) * negative
    return loss_output(masked_reduce(per_element, reduction, valid), logits)


def soft_truncation(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    sharpness: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Softened truncation ``-softmax(-K s)_y log softmax(s)_y``, ``K`` = ``sharpness > 0``.

    With two classes this is :func:`binary_soft_truncation` on the logit difference.  The
    weight is not stopped from carrying gradient, as in the post.  For ``C > 2`` the weight
    is small when ``s_y`` is high relative to the other scores; as ``K`` grows it concentrates
    on samples whose true class has the lowest score, so moderate ``K`` is the useful range.
    Target: class indices ``(B,)``.

    Reference: Su, kexue.fm/archives/4733.
    """
    x, y, valid = softmax_inputs(logits, target, ignore_index, reduction, validate)
    check_positive("sharpness", sharpness)
    log_p = log_softmax_at(x, y)
    # (a -inf logit's -K s is +inf, and softmax's inf - inf NaN: as the largest float it keeps the limit, weight 0 elsewhere)
    weight = F.softmax(torch.nan_to_num(-sharpness * x, nan=math.nan), dim=1).gather(1, y[:, None]).squeeze(1)
    per_sample = -weight * log_p
    return loss_output(masked_reduce(per_sample, reduction, valid), logits)


def binary_soft_truncation(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    sharpness: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Softened truncated BCE, elementwise, ``K`` = ``sharpness > 0``:
    ``-sigma(-K x) log sigma(x)`` for a positive, ``-sigma(K x) log sigma(-x)`` for a negative.

    ``sigma(-K x)`` is the soft version of the step that drops fitted positives (the
    ``m = 0.5`` hard truncation); ``K = 1`` gives ``sigmoid_focal(gamma=1, alpha=None)``.
    A probability target ``t`` gives ``t L_pos + (1 - t) L_neg``.  No stop-gradient on the
    weight, as in the post.

    Reference: Su, kexue.fm/archives/4733.
    """
    x, t, valid = sigmoid_inputs(logits, target, ignore_index, reduction, validate)
    check_positive("sharpness", sharpness)
    positive = -torch.sigmoid(-sharpness * x) * F.logsigmoid(x)
    negative = -torch.sigmoid(sharpness * x) * F.logsigmoid(-x)
    per_element = t * positive + (1 - t) * negative
    return loss_output(masked_reduce(per_element, reduction, valid), logits)


HardTruncationLoss = loss_module(hard_truncation, "HardTruncationLoss")
BinaryHardTruncationLoss = loss_module(binary_hard_truncation, "BinaryHardTruncationLoss")
SoftTruncationLoss = loss_module(soft_truncation, "SoftTruncationLoss")
BinarySoftTruncationLoss = loss_module(binary_soft_truncation, "BinarySoftTruncationLoss")

register_loss(
    "hard_truncation",
    hard_truncation,
    HardTruncationLoss,
    signature="softmax",
    reference=_HARD,
    hyperparams=(_THRESHOLD,),
)
register_loss(
    "binary_hard_truncation",
    binary_hard_truncation,
    BinaryHardTruncationLoss,
    signature="sigmoid",
    reference=_HARD,
    hyperparams=(_THRESHOLD,),
)
register_loss(
    "soft_truncation",
    soft_truncation,
    SoftTruncationLoss,
    signature="softmax",
    reference=_SOFT,
    hyperparams=(_SHARPNESS,),
)
register_loss(
    "binary_soft_truncation",
    binary_soft_truncation,
    BinarySoftTruncationLoss,
    signature="sigmoid",
    reference=_SOFT,
    hyperparams=(_SHARPNESS,),
)
