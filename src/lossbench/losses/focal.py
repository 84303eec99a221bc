"""Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, arXiv 1708.02002).

``FL(p_t) = -alpha_t (1 - p_t)^gamma log p_t``: cross-entropy with each sample down-weighted by
how well it is already fitted.  The modulating factor is computed as
``exp(gamma * log(1 - p_t))`` with ``log(1 - p_t)`` taken from log-probabilities (the
log-sum-exp of the other classes, or ``logsigmoid(-x)``), never as ``1 - p_t`` of a rounded
probability: so ``gamma`` in ``[0, 1)`` and saturated logits keep finite values and gradients,
and ``gamma = 0`` is cross-entropy exactly, sample by sample (a reduction sums in its own order:
equal up to round-off).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from lossbench.losses._registry import loss_module, register_loss
from lossbench.losses._softmax import at_target, log_rival_mass, log_softmax
from lossbench.losses._validation import (
    check_class_weight,
    check_interval,
    check_number,
    check_positive,
    loss_output,
    masked_reduce,
    one_hot,
    row_param,
    sigmoid_inputs,
    softmax_inputs,
)
from lossbench.registry import FloatRange, HyperParam

_REFERENCE = "Lin et al., 'Focal Loss for Dense Object Detection', ICCV 2017, arXiv 1708.02002"
_GAMMA = HyperParam("gamma", 2.0, FloatRange(0.0, 5.0), "focusing parameter; 0 is cross-entropy")


def _modulating(gamma: float | torch.Tensor, log_rest: torch.Tensor) -> torch.Tensor:
    """``(1 - p)^gamma`` as ``exp(gamma log(1 - p))``; at ``gamma = 0`` it is 1 also where ``log(1 - p)`` is
    ``-inf`` (a masked rival, a saturated logit), where ``0 * -inf`` made the value and gradient NaN."""
    return torch.exp((gamma * log_rest).nan_to_num(nan=0.0))


def focal(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 2.0,
    alpha: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Softmax focal loss ``-alpha_y (1 - p_y)^gamma log p_y``, ``p = softmax(s)``.

    ``log(1 - p_y)`` is the log-sum-exp of the other classes' log-probabilities, exact even
    where ``p_y`` rounds to 1.  With ``gamma = 0`` this is ``F.cross_entropy(s, y, weight=alpha)``,
    including its weighted mean (divided by the summed ``alpha_y`` of the non-ignored targets).

    Args:
        logits: raw scores ``(B, C)``.
        target: class indices ``(B,)``; entries equal to ``ignore_index`` are excluded.
        gamma: focusing parameter ``>= 0``; the paper uses 2.  Also one per sample, ``(B,)``.
        alpha: optional per-class weights ``(C,)`` (e.g. from
            :func:`lossbench.losses.balanced_class_weights`).

    Reference: Lin et al. 2017, arXiv 1708.02002 (multi-class form with per-class alpha).
    """
    x, y, valid = softmax_inputs(logits, target, ignore_index, reduction, validate)
    gamma = row_param("gamma", gamma, x, partial(check_positive, allow_zero=True), validate)
    check_class_weight(alpha, x.shape[1], name="alpha", validate=validate)
    log_p = log_softmax(x)
    log_p_true, log_rest = at_target(log_p, y), log_rival_mass(log_p, y)
    per_sample = -log_p_true * _modulating(gamma, log_rest)
    w_valid = None
    if alpha is not None:
        w_valid = torch.where(valid, alpha.to(x)[y], torch.zeros_like(per_sample))
        per_sample = per_sample * w_valid
    return loss_output(masked_reduce(per_sample, reduction, valid, w_valid), logits)


def _positive_weight(alpha: float | torch.Tensor, x: torch.Tensor, validate: bool) -> torch.Tensor:
    """``alpha`` as a tensor broadcastable against ``x``: a scalar or one value per class (last dim)."""
    if not isinstance(alpha, torch.Tensor) or alpha.ndim == 0:
        check_number("alpha", alpha)  # before float(), which takes a boolean and fails on a string
        check_interval("alpha", float(alpha), 0.0, 1.0)
        if torch.compiler.is_compiling() and not isinstance(alpha, torch.Tensor):  # (0 + alpha: a value traced as it
            return x.new_zeros(()) + alpha  # changes; torch.as_tensor of it compiled a graph per value)
        return torch.as_tensor(alpha, dtype=x.dtype, device=x.device)
    if alpha.ndim != 1 or x.ndim == 0 or alpha.shape[0] != x.shape[-1]:
        expected = f"({x.shape[-1]},)" if x.ndim else "a scalar"
        raise ValueError(f"alpha must be a scalar or a tensor of shape {expected}, got {tuple(alpha.shape)}")
    if validate and not bool(((alpha >= 0) & (alpha <= 1)).all()):
        raise ValueError(f"alpha must hold values in [0, 1], got {alpha.tolist()}")
    return alpha.to(x)


def sigmoid_focal(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | torch.Tensor | None = 0.25,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Sigmoid focal loss, elementwise: ``-alpha (1 - p)^gamma log p`` for a positive and
    ``-(1 - alpha) p^gamma log(1 - p)`` for a negative, ``p = sigma(x)``.

    ``log p`` and ``log(1 - p)`` are ``logsigmoid(x)`` and ``logsigmoid(-x)``.  A probability
    target ``t`` gives the expectation ``t FL_pos + (1 - t) FL_neg`` (linear in ``t``, so
    ``gamma = 0, alpha=None`` is BCE with soft targets, up to round-off: ``logsigmoid`` is not the
    formula ``F.binary_cross_entropy_with_logits`` rounds by); for 0/1 targets this equals
    ``torchvision.ops.sigmoid_focal_loss``, which for soft targets instead multiplies BCE by
    ``(1 - p_t)^gamma`` with ``p_t = t p + (1 - t)(1 - p)``.

    ``"mean"`` averages over the non-ignored elements, as ``torchvision`` and PyTorch's BCE do
    with weights: ``alpha`` re-weights positives against negatives, it does not renormalise.
    With ``gamma = 0`` and scalar ``alpha`` this is
    ``(1 - alpha) * F.binary_cross_entropy_with_logits(x, t, pos_weight=alpha / (1 - alpha))``.

    Args:
        logits: raw scores of any shape.
        target: the logits' shape; 0/1 labels (integers, ``ignore_index`` allowed) or
            probabilities in ``[0, 1]``.
        gamma: focusing parameter ``>= 0``; the paper uses 2.
        alpha: weight of positives in ``[0, 1]`` (negatives get ``1 - alpha``); the paper
            uses 0.25 with ``gamma = 2``.  A ``(C,)`` tensor gives one value per class of the
            last dimension (multi-label); ``None`` weights both sides by 1.

    Reference: Lin et al. 2017, arXiv 1708.02002, eq. (5).
    """
    x, t, valid = sigmoid_inputs(logits, target, ignore_index, reduction, validate)
    check_positive("gamma", gamma, allow_zero=True)
    log_p, log_q = F.logsigmoid(x), F.logsigmoid(-x)
    positive = -log_p * _modulating(gamma, log_q)
    negative = -log_q * _modulating(gamma, log_p)
    if alpha is not None:
        a = _positive_weight(alpha, x, validate)
        positive, negative = a * positive, (1 - a) * negative
    per_element = t * positive + (1 - t) * negative
    return loss_output(masked_reduce(per_element, reduction, valid), logits)


def one_vs_all_focal(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 2.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Sigmoid focal loss of each class against the rest, for class-index targets: per sample the
    sum over the ``C`` classes of :func:`sigmoid_focal` (no ``alpha``) on the one-hot target, so
    ``-(1 - p_y)^gamma log p_y - sum_{j != y} p_j^gamma log(1 - p_j)`` with ``p = sigma(s)``.

    The form of BagofTricks-LT's ``FocalLoss`` (lib/loss/loss_impl/focal_loss.py: one-vs-all binary
    cross-entropy on one-hot targets times ``(1 - p)`` for the true class and ``p`` for the others to
    the power ``gamma``, summed over classes, averaged over the batch), the focal loss of its
    long-tailed benchmarks.  Each class's logit counts on its own (not only differences between
    them, as in a softmax loss): a model that fixes one logit (the linear model's
    ``zero_first_logit``) cannot train it.

    Args:
        logits: raw scores ``(B, C)``.
        target: class indices ``(B,)``; entries equal to ``ignore_index`` are excluded.
        gamma: focusing parameter ``>= 0``; BagofTricks-LT uses 2; 0 is one-vs-all binary cross-entropy.
    """
    x, y, valid = softmax_inputs(logits, target, ignore_index, reduction, validate)
    check_positive("gamma", gamma, allow_zero=True)
    # Each class's side picked, not weighted by its 0/1 target: a masked rival's (-inf) positive side
    # is inf, and 0 * inf a NaN in the value and the gradient.
    true = one_hot(y, x, torch.bool)
    log_p, log_q = F.logsigmoid(x), F.logsigmoid(-x)
    negative = (-log_q * _modulating(gamma, log_p)).masked_fill(true, 0).sum(1)
    x_y = x.gather(1, y[:, None]).squeeze(1)
    positive = -F.logsigmoid(x_y) * _modulating(gamma, F.logsigmoid(-x_y))
    return loss_output(masked_reduce(positive + negative, reduction, valid), logits)


FocalLoss = loss_module(focal, "FocalLoss")
SigmoidFocalLoss = loss_module(sigmoid_focal, "SigmoidFocalLoss")
OneVsAllFocalLoss = loss_module(one_vs_all_focal, "OneVsAllFocalLoss")

register_loss("focal", focal, FocalLoss, signature="softmax", reference=_REFERENCE, hyperparams=(_GAMMA,), row_params=("gamma",))
register_loss(
    "sigmoid_focal",
    sigmoid_focal,
    SigmoidFocalLoss,
    signature="sigmoid",
    reference=_REFERENCE,
    hyperparams=(
        _GAMMA,
        HyperParam("alpha", 0.25, FloatRange(0.05, 0.95), "weight of positives (negatives: 1 - alpha)"),
    ),
)
register_loss(
    "one_vs_all_focal",
    one_vs_all_focal,
    OneVsAllFocalLoss,
    signature="softmax",
    reference=f"{_REFERENCE}; the one-vs-all form of Zhang et al.'s BagofTricks-LT (AAAI 2021)",
    hyperparams=(_GAMMA,),
    shift_invariant=False,
)
