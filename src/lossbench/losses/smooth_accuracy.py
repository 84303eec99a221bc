"""Smooth accuracy: the expected 0-1 accuracy under the model's own predictive distribution."""

from __future__ import annotations

import torch

from lossbench.losses._registry import loss_module, register_loss
from lossbench.losses._softmax import log_softmax_at
from lossbench.losses._validation import loss_output, masked_reduce, sigmoid_inputs, softmax_inputs

_REFERENCE = "Su, 'How to train your accuracy', kexue.fm/archives/9098"


def smooth_accuracy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """``1 - softmax(s)_y``: one minus the smooth (expected) accuracy.

    Bounded in [0, 1]; its gradient vanishes on confidently wrong samples, unlike
    cross-entropy's.  Target: class indices ``(B,)``.  Computed as ``1 - p_y`` (one op fewer than the
    rivals' sum): below about 1e-6 a float32 value keeps few digits, which no training step feels.
    """
    x, y, valid = softmax_inputs(logits, target, ignore_index, reduction, validate)
    p_true = log_softmax_at(x, y).exp()
    return loss_output(masked_reduce(1 - p_true, reduction, valid), logits)


def binary_smooth_accuracy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """``1 - [t sigma(s) + (1 - t) sigma(-s)]`` elementwise, for a single logit per decision.

    Target: same shape as the logits, 0/1 labels or probabilities ``t`` in [0, 1].
    """
    x, t, valid = sigmoid_inputs(logits, target, ignore_index, reduction, validate)
    # (the miss itself, not 1 minus the hit: 1 - sigmoid(17) is 0 in float32, sigmoid(-17) is 4e-8)
    miss = t * torch.sigmoid(-x) + (1 - t) * torch.sigmoid(x)
    return loss_output(masked_reduce(miss, reduction, valid), logits)


SmoothAccuracyLoss = loss_module(smooth_accuracy, "SmoothAccuracyLoss")
BinarySmoothAccuracyLoss = loss_module(binary_smooth_accuracy, "BinarySmoothAccuracyLoss")

register_loss("smooth_accuracy", smooth_accuracy, SmoothAccuracyLoss, signature="softmax", reference=_REFERENCE)
register_loss(
    "binary_smooth_accuracy",
    binary_smooth_accuracy,
    BinarySmoothAccuracyLoss,
    signature="sigmoid",
    reference=_REFERENCE,
)
