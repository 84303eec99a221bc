"""Multi-label losses: ZLPR (dense and sparse labels), binary cross-entropy and ASL.

ZLPR ("zero-bounded log-sum-exp & pairwise rank-based"; Su, kexue.fm/archives/7359, soft labels
kexue.fm/archives/9064, sparse labels in the GPLinker post kexue.fm/archives/8888; Su et al.,
arXiv 2208.02955) generalises softmax cross-entropy to several positives: every positive score
should exceed every negative one and 0 should sit between them, so class ``i`` is predicted iff
``s_i > 0`` and no threshold is tuned.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossbench.losses._registry import loss_module, register_loss
from lossbench.losses._validation import (
    check_dense_target,
    check_index_target,
    check_interval,
    check_logits,
    check_numbers,
    check_positive,
    check_reduction,
    compute_dtype,
    log_of_number,
    loss_output,
    masked_reduce,
    reduce,
    sigmoid_inputs,
)
from lossbench.registry import FloatRange, HyperParam

_ZLPR_REFERENCE = "Su, kexue.fm/archives/7359 and 9064 (soft labels); Su et al., arXiv 2208.02955"


def _log1p_sum_exp(z: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``log(1 + sum_{keep} e^z)`` over the last dimension; 0 where nothing is kept."""
    masked = torch.where(keep, z, torch.full_like(z, torch.finfo(z.dtype).min))
    return F.softplus(torch.logsumexp(masked, dim=-1))


def zlpr(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    eps: float = 1e-7,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """ZLPR multi-label loss ``log(1 + sum_i t_i e^{-s_i}) + log(1 + sum_i (1 - t_i) e^{s_i})`` per sample.

    With 0/1 labels this is ``log(1 + sum_{pos} e^{-s_j}) + log(1 + sum_{neg} e^{s_i})``; predict
    class ``i`` iff ``s_i > 0`` (:func:`zlpr_predict`).  With soft labels ``t`` in [0, 1] the loss
    is stationary exactly at ``t_i = sigmoid(2 s_i)`` for every ``i``, so :func:`zlpr_probabilities`
    returns ``sigmoid(2 s)``.  Both sums are log-sum-exps of ``log t_i - s_i`` and
    ``log(1 - t_i) + s_i``; labels below ``eps`` count as exactly 0 and above ``1 - eps`` as
    exactly 1 (their term is masked out, as in Su's code with ``eps = 1e-7``).

    Args:
        logits: raw scores ``(B, C)``; target: ``(B, C)`` floats in [0, 1], hard or soft.
        eps: in ``(0, 0.5)``, the snapping threshold for labels.
        reduction: over the per-sample losses ``(B,)``.

    Reference: Su, kexue.fm/archives/7359 and (soft labels) 9064; Su et al., arXiv 2208.02955.
    """
    check_reduction(reduction)
    check_logits(logits, 2, validate)
    check_dense_target(target, logits.shape, validate)
    check_interval("eps", eps, 0.0, 0.5, closed="neither")
    x = logits.to(compute_dtype(logits))
    t = target.to(x.dtype)
    positive, negative = t >= eps, t <= 1 - eps
    log_t = torch.where(negative, torch.log(t.clamp(eps, 1)), torch.zeros_like(t))
    log_not_t = torch.where(positive, torch.log1p(-t.clamp(0, 1 - eps)), torch.zeros_like(t))
    loss = _log1p_sum_exp(log_t - x, positive) + _log1p_sum_exp(log_not_t + x, negative)
    return loss_output(reduce(loss, reduction), logits)


def zlpr_sparse(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """ZLPR on hard labels given as lists of positive classes: equals :func:`zlpr` on the dense labels.

    Su's sparse form avoids the negatives' mask by writing the negative term as
    ``a + log(1 - e^{b - a})`` with ``a = logsumexp([0, s_all])``, ``b = logsumexp(s_pos)``.  In
    float32 that difference cancels once the positives are confident: with three positives at
    ``s = 20`` and 17 negatives at ``s = -5`` it returns 4.98 instead of 0.108 and pushes the
    positives down.  This function builds the negatives' mask from the index lists instead (one
    boolean per logit) and sums only over the negatives, which is exact; the labels stay sparse.

    Args:
        logits: raw scores ``(B, C)``.
        target: ``(B, K)`` int64 positive-class indices per sample, padded with ``ignore_index``;
            indices must not repeat within a row (checked when ``validate``).
        reduction: over the per-sample losses ``(B,)``.

    Reference: Su, kexue.fm/archives/8888 (the GPLinker post, where the sparse form appears).
    """
    check_reduction(reduction)
    check_logits(logits, 2, validate)
    if not isinstance(target, torch.Tensor) or target.ndim != 2 or target.shape[0] != logits.shape[0]:
        shape = tuple(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
        raise ValueError(
            f"target must have shape ({logits.shape[0]}, K) of positive-class indices for logits of shape "
            f"{tuple(logits.shape)}, got {shape}"
        )
    b, c = logits.shape
    target = check_index_target(target, c, target.shape, ignore_index, validate)
    listed = target != ignore_index
    if validate:
        _check_no_repeats(target, listed, ignore_index)
    x = logits.to(compute_dtype(logits))
    # Padding points at a spare column C, dropped after the scatter.
    index = torch.where(listed, target, torch.full_like(target, c)).long()
    positive = torch.zeros(b, c + 1, dtype=torch.bool, device=x.device).scatter(1, index, True)[:, :c]  # (out of place: vmap)
    s_pos = x.gather(1, torch.where(listed, index, torch.zeros_like(index)))
    loss = _log1p_sum_exp(-s_pos, listed) + _log1p_sum_exp(x, ~positive)
    return loss_output(reduce(loss, reduction), logits)


def _check_no_repeats(target: torch.Tensor, listed: torch.Tensor, ignore_index: int) -> None:
    if target.shape[1] < 2:
        return
    ordered, _ = torch.where(listed, target, torch.full_like(target, -1)).sort(dim=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if bool(repeated.any()):
        row = int(repeated.any(1).nonzero()[0])
        raise ValueError(
            f"target row {row} lists a positive class more than once ({target[row].tolist()}); "
            f"expected distinct indices padded with ignore_index={ignore_index}"
        )


def zlpr_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Calibrated probabilities of a ZLPR-trained model: ``sigmoid(2 s)`` (the soft-label optimum)."""
    return torch.sigmoid(2 * logits)


def zlpr_predict(logits: torch.Tensor) -> torch.Tensor:
    """ZLPR's decision rule: class ``i`` is present iff ``s_i > 0``."""
    return logits > 0


def binary_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    pos_weight: torch.Tensor | float | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Binary cross-entropy on logits ``-[w t log sigmoid(s) + (1 - t) log sigmoid(-s)]`` per element.

    Equals ``torch.nn.functional.binary_cross_entropy_with_logits`` and adds ``ignore_index``
    for integer targets (``"mean"`` averages over the non-ignored elements).

    Args:
        logits: raw scores of any shape; target: same shape, 0/1 labels or probabilities.
        pos_weight: optional weight ``w >= 0`` of the positive term: a scalar or one per label
            (shape ``(C,)`` for logits ``(..., C)``).

    Reference: PyTorch ``F.binary_cross_entropy_with_logits``.
    """
    x, t, valid = sigmoid_inputs(logits, target, ignore_index, reduction, validate)
    positive_term = t * F.logsigmoid(x)
    if pos_weight is not None:
        check_numbers("pos_weight", pos_weight)
        # (in the logits' dtype, checked where it was given: a CPU weight for CUDA logits costs no sync)
        w = torch.as_tensor(pos_weight, dtype=x.dtype)
        labels = x.shape[-1] if x.ndim else 1
        if w.ndim > 1 or w.numel() not in (1, labels):
            raise ValueError(
                f"pos_weight must be a scalar or have shape ({labels},), got shape {tuple(w.shape)}"
            )
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise ValueError(f"pos_weight must hold finite non-negative values, got {w.tolist()}")
        positive_term = w.to(x) * positive_term
    per_element = -(positive_term + (1 - t) * F.logsigmoid(-x))
    return loss_output(masked_reduce(per_element, reduction, valid), logits)


def asymmetric_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma_neg: float = 4.0,
    gamma_pos: float = 1.0,
    clip: float = 0.05,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Asymmetric loss (ASL) ``-[t (1 - p)^g+ log p + (1 - t) p_m^g- log(1 - p_m)]`` per element.

    ``p = sigmoid(s)``; negatives use the shifted probability ``p_m = max(p - clip, 0)``, which
    discards easy negatives (``p <= clip``) altogether and down-weights the rest by ``p_m^g-``.
    ``log p``, ``(1 - p)^g+`` and (for ``clip = 0``) ``p^g-`` come from ``logsigmoid``;
    ``log(1 - p_m) = min(log(sigmoid(-s) + clip), 0)`` is a log-add-exp.  The focusing weights
    keep their gradient, as in the paper's gradient analysis (the official ``AsymmetricLoss`` can
    detach them, ``disable_torch_grad_focal_loss``, which its ``train.py`` sets; the authors call it
    an option they experimented with, not the paper's loss: github Alibaba-MIIL/ASL issue 31).  Soft labels mix the positive and
    negative terms linearly; the official code instead interpolates ``gamma`` and ``p_t``, which
    agrees for 0/1 labels.  The official code returns the sum over elements
    (``reduction="sum"``).

    Args:
        logits: raw scores of any shape; target: same shape, 0/1 labels or probabilities.
        gamma_neg, gamma_pos: focusing exponents ``>= 0`` for negatives and positives.
        clip: probability margin ``m`` in ``[0, 1)`` of the negatives.

    Reference: Ridnik et al., "Asymmetric Loss For Multi-Label Classification", ICCV 2021,
    arXiv 2009.14119.
    """
    x, t, valid = sigmoid_inputs(logits, target, ignore_index, reduction, validate)
    check_positive("gamma_neg", gamma_neg, allow_zero=True)
    check_positive("gamma_pos", gamma_pos, allow_zero=True)
    check_interval("clip", clip, 0.0, 1.0, closed="left")
    log_p, log_not_p = F.logsigmoid(x), F.logsigmoid(-x)
    positive = torch.exp(gamma_pos * log_not_p) * log_p
    if clip > 0:
        log_clip = log_of_number(clip, x)  # (a number, filled as before; a 0-d tensor while compiling, broadcast)
        log_clip = torch.full_like(x, log_clip) if isinstance(log_clip, float) else log_clip
        log_not_p_m = torch.logaddexp(log_not_p, log_clip).clamp(max=0)
        # The clamp keeps p_m ** gamma_neg's gradient finite where p_m = 0; log(1 - p_m) = 0 there.
        # (p - clip as (1 - clip) - sigmoid(-s): sigmoid(s) rounds to 1 from s = 17 in float32, and its gradient to 0)
        weight_neg = ((1 - clip) - torch.sigmoid(-x)).clamp(min=torch.finfo(x.dtype).tiny) ** gamma_neg
    else:
        log_not_p_m, weight_neg = log_not_p, torch.exp(gamma_neg * log_p)
    per_element = -(t * positive + (1 - t) * weight_neg * log_not_p_m)
    return loss_output(masked_reduce(per_element, reduction, valid), logits)


ZLPRLoss = loss_module(zlpr, "ZLPRLoss")
SparseZLPRLoss = loss_module(zlpr_sparse, "SparseZLPRLoss")
BinaryCrossEntropyLoss = loss_module(binary_cross_entropy, "BinaryCrossEntropyLoss")
AsymmetricLoss = loss_module(asymmetric_loss, "AsymmetricLoss")

register_loss("zlpr", zlpr, ZLPRLoss, signature="multilabel", reference=_ZLPR_REFERENCE)
register_loss(
    "zlpr_sparse",
    zlpr_sparse,
    SparseZLPRLoss,
    signature="multilabel_sparse",
    reference="Su, kexue.fm/archives/8888 (sparse labels) and 7359; Su et al., arXiv 2208.02955",
)
register_loss(
    "binary_cross_entropy",
    binary_cross_entropy,
    BinaryCrossEntropyLoss,
    signature="sigmoid",
    reference="PyTorch F.binary_cross_entropy_with_logits",
)
register_loss(
    "asl",
    asymmetric_loss,
    AsymmetricLoss,
    signature="sigmoid",
    reference="Ridnik et al., 'Asymmetric Loss For Multi-Label Classification', ICCV 2021, arXiv 2009.14119",
    hyperparams=(
        HyperParam("gamma_neg", 4.0, FloatRange(0.0, 6.0), "focusing exponent of the negatives"),
        HyperParam("gamma_pos", 1.0, FloatRange(0.0, 2.0), "focusing exponent of the positives"),
        HyperParam("clip", 0.05, FloatRange(0.0, 0.2), "probability shift m of the negatives"),
    ),
)
