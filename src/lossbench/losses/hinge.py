"""Multi-class hinge loss (Weston-Watkins: a sum over the rivals, as PyTorch's multi_margin_loss)."""

from __future__ import annotations

from functools import partial

import torch

from lossbench.losses._registry import loss_module, register_loss
from lossbench.losses._validation import (
    check_class_weight,
    check_positive,
    loss_output,
    masked_reduce,
    row_param,
    softmax_inputs,
)
from lossbench.registry import Choice, HyperParam

AVERAGES = {"classes": 0, "rivals": 1}  # the divisor: C minus this many


def multi_class_hinge(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    margin: float = 1.0,
    p: int | torch.Tensor = 1,
    weight: torch.Tensor | None = None,
    average: str = "classes",
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """``w_y / C * sum_{j != y} max(0, margin - s_y + s_j) ** p``; ``average="rivals"`` divides by the
    ``C - 1`` rivals instead, as the EXACT paper's code does (``HingeLoss`` in
    ``uci-class/scripts/run.py``: the mean over the rivals' terms), which is not a rescaling the
    learning rate absorbs (the clip, the weight decay and the final lr stay as they are).

    With ``average="classes"`` per-sample values (and ``reduction="sum"``) equal ``torch.nn.functional.multi_margin_loss``.
    One deliberate difference: with class weights, ``reduction="mean"`` divides by the summed
    weights of the non-ignored targets, as every weighted loss in lossbench (and PyTorch's
    cross-entropy) does; ``multi_margin_loss`` divides by the batch size.  Adds ``ignore_index``.

    Args:
        logits: raw scores ``(B, C)``; target: class indices ``(B,)``.
        margin: ``>= 0``, or one per sample ``(B,)``; p: 1 or 2, or one per sample ``(B,)``.
    """
    x, y, valid = softmax_inputs(logits, target, ignore_index, reduction, validate)
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {tuple(AVERAGES)}, got {average!r}")
    if average == "rivals" and x.shape[1] < 2:  # (no rival to average over)
        raise ValueError(f"average='rivals' needs at least 2 classes, got logits of shape {tuple(logits.shape)}")
    # 0: the perceptron loss (the EXACT paper's grid has it)
    margin = row_param("margin", margin, x, partial(check_positive, allow_zero=True), validate)
    p = row_param("p", p, x, _check_power, validate)
    check_class_weight(weight, x.shape[1], validate=validate)
    true = x.gather(1, y[:, None])
    margin_col = margin[:, None] if isinstance(margin, torch.Tensor) else margin
    terms = torch.clamp(margin_col - true + x, min=0)  # (clamp: a tie keeps its subgradient)
    if isinstance(p, torch.Tensor):  # each row's own power, as ** 1 and ** 2 compute it (the same bits)
        terms = torch.where(p[:, None] == 2, terms * terms, terms)
    elif p == 2:
        terms = terms * terms
    # The true class's term out by a 0/1 factor (finite there, but where the true logit is infinite): torch.where
    # over (B, C) took 3x the rest of the loss on the CPU (20 us per 25,600 terms) and its backward as much again.
    rivals = torch.ones_like(terms).scatter_(1, y[:, None], 0.0)
    per_sample = (terms * rivals).sum(1) / (x.shape[1] - AVERAGES[average])
    w_valid = None
    if weight is not None:
        w_valid = torch.where(valid, weight.to(x)[y], torch.zeros_like(per_sample))  # (a CPU weight for CUDA logits)
        per_sample = per_sample * w_valid
    return loss_output(masked_reduce(per_sample, reduction, valid, w_valid), logits)


def _check_power(name: str, value: float) -> None:
    if isinstance(value, bool) or value not in (1, 2):  # (True == 1: a switch is no power)
        raise ValueError(f"{name} must be 1 or 2, got {value!r}")


MultiClassHingeLoss = loss_module(multi_class_hinge, "MultiClassHingeLoss")

register_loss(
    "hinge",
    multi_class_hinge,
    MultiClassHingeLoss,
    signature="softmax",
    reference="PyTorch F.multi_margin_loss; Weston & Watkins 1999",
    hyperparams=(
        HyperParam("margin", 1.0, None, "hinge margin (redundant with the logit scale)"),
        HyperParam("p", 1, Choice((1, 2)), "1: hinge, 2: squared hinge"),
    ),
    row_params=("margin", "p"),
)
