"""Cross-entropy with temperature, label smoothing and class weights."""

from __future__ import annotations

import torch

from lossbench.losses import _softmax
from lossbench.losses._registry import loss_module, register_loss
from lossbench.losses._validation import (
    check_class_weight,
    check_index_target,
    check_interval,
    check_logits,
    check_positive,
    check_reduction,
    compute_dtype,
    loss_output,
    without_ignored_targets,
)
from lossbench.registry import FloatRange, HyperParam


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    temperature: float = 1.0,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Softmax cross-entropy ``-log softmax(s / T)_y`` on class-index targets.

    Label smoothing and class weights follow ``torch.nn.functional.cross_entropy`` exactly:
    with smoothing ``eps`` the per-sample loss is
    ``(1 - eps) w_y (-log p_y) + (eps / C) sum_c w_c (-log p_c)``, and the weighted mean
    divides by the summed weights ``w_y`` of the non-ignored targets.

    Args:
        logits: raw scores ``(B, C)``.
        target: class indices ``(B,)``; entries equal to ``ignore_index`` are excluded.
        weight: optional per-class weights ``(C,)``.
        temperature: ``T > 0``; logits are divided by it (``T < 1`` sharpens).
        label_smoothing: ``eps`` in ``[0, 1]``.

    Reference: PyTorch ``F.cross_entropy``; label smoothing, Szegedy et al. 2016.
    """
    # PyTorch's kernel masks ignore_index itself: only the checks of softmax_inputs are needed.
    check_reduction(reduction)
    check_logits(logits, 2, validate)
    target = check_index_target(target, logits.shape[1], logits.shape[:1], ignore_index, validate)
    dtype = compute_dtype(logits)
    x = logits if logits.dtype == dtype else logits.to(dtype)
    if not validate:  # (an ignored row's -inf: PyTorch's kernel masks its value, not its gradient's nan)
        x = without_ignored_targets(x, target, ignore_index)
    check_positive("temperature", temperature)
    check_interval("label_smoothing", label_smoothing, 0.0, 1.0)
    check_class_weight(weight, x.shape[1], validate=validate)
    # PyTorch's fused kernel is this loss exactly; the temperature only rescales its input.
    scaled = x if temperature == 1.0 else x / temperature
    loss = _softmax.cross_entropy(
        scaled,
        target,
        weight=None if weight is None else weight.to(x),  # (dtype and device: a CPU weight for CUDA logits)
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )
    return loss_output(loss, logits)


CrossEntropyLoss = loss_module(cross_entropy, "CrossEntropyLoss")

register_loss(
    "cross_entropy",
    cross_entropy,
    CrossEntropyLoss,
    signature="softmax",
    reference="PyTorch F.cross_entropy; label smoothing: Szegedy et al. 2016, arXiv 1512.00567",
    hyperparams=(
        HyperParam("temperature", 1.0, None, "logits are divided by T"),
        HyperParam("label_smoothing", 0.0, None, "PyTorch's label smoothing eps"),
    ),
)

register_loss(
    "label_smoothing",
    cross_entropy,
    CrossEntropyLoss,
    signature="softmax",
    reference="Szegedy et al. 2016, arXiv 1512.00567 (PyTorch's definition)",
    summary="Cross-entropy with tuned label smoothing eps (PyTorch's definition).",
    hyperparams=(HyperParam("label_smoothing", 0.0, FloatRange(0.0, 0.3), "smoothing eps (0: cross-entropy, as untuned)"),),
)
