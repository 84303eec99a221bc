"""Losses for long-tailed class distributions that use the training-set class counts.

Logit adjustment and balanced softmax add the log class prior to the logits inside
cross-entropy, so the model learns scores calibrated for a *balanced* test distribution;
LDAM subtracts a larger margin from the true-class logit of rarer classes.  All three take
``class_counts`` ``(C,)`` from the training split (priors, i.e. counts divided by their sum,
work equally for the adjustments and LDAM's margins, but not for LDAM's deferred re-weighting,
whose effective-number weights need the counts themselves); every count must be positive.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lossbench.losses._registry import LossModule, loss_module, register_loss
from lossbench.losses._validation import (
    as_counts,
    check_class_counts,
    check_class_weight,
    check_count,
    check_interval,
    check_logits,
    check_positive,
    compute_dtype,
    loss_output,
    reduce,
    softmax_inputs,
)
from lossbench.losses.class_weights import effective_number_weights
from lossbench.losses.cross_entropy import cross_entropy
from lossbench.registry import FloatRange, HyperParam

_MENON = "Menon et al., 'Long-tail learning via logit adjustment', ICLR 2021, arXiv 2007.07314"
_REN = (
    "Ren et al., 'Balanced Meta-Softmax for Long-Tailed Visual Recognition', NeurIPS 2020, arXiv 2007.10740"
)
_CAO = (
    "Cao et al., 'Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss', "
    "NeurIPS 2019, arXiv 1906.07413"
)


def _counts_like(class_counts: torch.Tensor, x: torch.Tensor, validate: bool) -> torch.Tensor:
    """The counts in ``x``'s dtype and device; values are checked only when ``validate``."""
    if validate:
        counts = check_class_counts(class_counts, x.shape[-1])
    else:
        counts = as_counts(class_counts)
        if counts.shape != (x.shape[-1],):
            raise ValueError(f"class_counts must have shape ({x.shape[-1]},), got {tuple(counts.shape)}")
    return counts.to(dtype=x.dtype, device=x.device)


def _log_priors(class_counts: torch.Tensor, x: torch.Tensor, validate: bool) -> torch.Tensor:
    counts = _counts_like(class_counts, x, validate)
    return counts.log() - counts.sum().log()


def logit_adjusted_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    class_counts: torch.Tensor,
    tau: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Logit-adjusted cross-entropy ``CE(s + tau log pi, y)``, ``pi_c = n_c / sum n``.

    The rarer a class, the more its logit must exceed the others' to be predicted during
    training, so plain ``argmax s`` of the trained model suits a balanced error.  ``tau = 0``
    is cross-entropy; ``tau = 1`` (the paper's default) equals :func:`balanced_softmax`.
    Target: class indices ``(B,)``.

    Reference: Menon et al. 2021, arXiv 2007.07314; Su, kexue.fm/archives/7615.
    """
    x, _, _ = softmax_inputs(logits, target, ignore_index, reduction, validate)
    check_positive("tau", tau, allow_zero=True)
    adjusted = x + tau * _log_priors(class_counts, x, validate)
    out = cross_entropy(adjusted, target, ignore_index=ignore_index, reduction=reduction, validate=False)
    return loss_output(out, logits)


def logit_adjust(
    logits: torch.Tensor, class_counts: torch.Tensor | Sequence[float], tau: float = 1.0
) -> torch.Tensor:
    """Post-hoc logit adjustment ``s - tau log pi`` for a model trained with plain cross-entropy.

    Predict with the argmax of the result: it approximates the Bayes rule for the balanced
    error, ``argmax_y p(x | y)``, when the model's softmax estimates ``p(y | x)``.  ``logits``
    may have any leading shape; the last dimension holds the ``C`` classes.

    Reference: Menon et al. 2021, arXiv 2007.07314 (post-hoc correction).
    """
    check_logits(logits, None, validate=True)
    if logits.ndim == 0:
        raise ValueError("logits must have a last dimension of classes, got a scalar")
    check_positive("tau", tau, allow_zero=True)
    x = logits.to(compute_dtype(logits))
    # logits to predict with, not a loss value: in the model's dtype
    return (x - tau * _log_priors(class_counts, x, validate=True)).to(logits.dtype)


def balanced_softmax(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    class_counts: torch.Tensor,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Balanced softmax cross-entropy ``CE(s + log n_c, y)``.

    Models the training distribution as the balanced one reweighted by the class counts; the
    same loss as :func:`logit_adjusted_cross_entropy` with ``tau = 1`` (``log n_c`` and
    ``log pi_c`` differ by a constant that softmax ignores).  Target: class indices ``(B,)``.

    Reference: Ren et al. 2020, arXiv 2007.10740.
    """
    x, _, _ = softmax_inputs(logits, target, ignore_index, reduction, validate)
    adjusted = x + _counts_like(class_counts, x, validate).log()
    out = cross_entropy(adjusted, target, ignore_index=ignore_index, reduction=reduction, validate=False)
    return loss_output(out, logits)


def ldam(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    class_counts: torch.Tensor,
    max_margin: float = 0.5,
    scale: float = 30.0,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """LDAM loss ``CE(scale * (s - Delta_y e_y), y; weight)`` with margins ``Delta_c ∝ n_c^{-1/4}``.

    The margins are scaled so the rarest class gets ``max_margin``.  Cao et al. apply it to
    cosine logits (normalised features and weights, ``s`` in ``[-1, 1]``) where ``scale = 30``
    sets the softmax temperature; on unnormalised logits ``scale`` multiplies the logits and
    the margins live in logit units.  ``weight`` gives weighted cross-entropy, with the
    weighted mean of PyTorch (see :func:`drw_weights` for the deferred re-weighting schedule).
    Target: class indices ``(B,)``.

    Reference: Cao et al. 2019, arXiv 1906.07413, and their code's ``LDAMLoss``.
    """
    x, y, _ = softmax_inputs(logits, target, ignore_index, reduction, validate)
    check_positive("max_margin", max_margin, allow_zero=True)
    check_positive("scale", scale)
    check_class_weight(weight, x.shape[1], validate=validate)  # (its cross-entropy below does not look at them)
    margins = _counts_like(class_counts, x, validate) ** -0.25
    margins = margins * (max_margin / margins.max())
    adjusted = x.scatter_add(1, y[:, None], -margins[y][:, None])
    out = cross_entropy(
        scale * adjusted,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        validate=False,
    )
    return loss_output(out, logits)


def weighted_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    class_counts: torch.Tensor,
    power: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Class-weighted cross-entropy with weights ``w_c = (n / (C n_c))^power``.

    ``power = 1`` gives scikit-learn's "balanced" weights (:func:`lossbench.losses.
    balanced_class_weights`), the re-weighting baseline of the long-tail literature;
    ``power = 0`` is cross-entropy; values between soften the weights.  ``reduction="mean"`` is
    the mean of the weighted per-sample losses (not PyTorch's division by the summed weights of
    the batch's targets), so a batch's mean never depends on which classes share it and rows
    of packed runs may share one call.  Target: class indices ``(B,)``.

    Reference: PyTorch ``F.cross_entropy(weight=...)``; Su, "Mitigating class imbalance
    via mutual information" (kexue.fm/archives/7615) for re-weighting against logit adjustment.
    """
    x, _, valid = softmax_inputs(logits, target, ignore_index, reduction, validate)
    check_positive("power", power, allow_zero=True)
    counts = _counts_like(class_counts, x, validate)
    weight = (counts.sum() / (counts.numel() * counts)) ** power
    per_sample = cross_entropy(x, target, weight=weight, ignore_index=ignore_index, reduction="none", validate=False)
    return loss_output(reduce(per_sample, reduction, valid), logits)


def drw_weights(
    epoch: int, class_counts: torch.Tensor | Sequence[float], *, start_epoch: int, beta: float = 0.9999
) -> torch.Tensor | None:
    """Deferred re-weighting (DRW): no weights before ``start_epoch``, effective-number weights from it on.

    Pass the result as ``weight=`` to :func:`ldam` (or :func:`lossbench.losses.cross_entropy`)
    each epoch.  Cao et al. train CIFAR for 200 epochs and re-weight from epoch 160 with
    ``beta = 0.9999`` (their code uses ``beta = 0``, i.e. uniform weights, before; same loss).

    Reference: Cao et al. 2019, arXiv 1906.07413, Algorithm 1;
    :func:`lossbench.losses.effective_number_weights`.
    """
    check_count("epoch", epoch, allow_zero=True)
    check_count("start_epoch", start_epoch, allow_zero=True)
    if epoch < start_epoch:
        return None
    return effective_number_weights(class_counts, beta)


LogitAdjustedCrossEntropyLoss = loss_module(logit_adjusted_cross_entropy, "LogitAdjustedCrossEntropyLoss")
BalancedSoftmaxLoss = loss_module(balanced_softmax, "BalancedSoftmaxLoss")
WeightedCrossEntropyLoss = loss_module(weighted_cross_entropy, "WeightedCrossEntropyLoss")


class LDAMLoss(LossModule):
    """Module form of :func:`ldam`; arguments as there, plus the DRW schedule.

    With ``drw_start`` (a fraction of the run in ``(0, 1]``; Cao et al. use 160/200 = 0.8) the
    module applies deferred re-weighting itself: :meth:`set_epoch` (called by the bench before
    each epoch) switches ``weight`` to the effective-number weights (``drw_beta``) from that
    epoch on, by :func:`drw_weights`.
    """

    function = staticmethod(ldam)

    def __init__(self, *, drw_start: float | None = None, drw_beta: float = 0.9999, **kwargs) -> None:
        if isinstance(kwargs.get("class_counts"), (list, tuple)):  # a buffer: it moves with .to(device), and so its weights
            kwargs["class_counts"] = torch.as_tensor(kwargs["class_counts"], dtype=torch.float64)
        super().__init__(**kwargs)
        check_interval("drw_beta", drw_beta, 0.0, 1.0, closed="left")
        if drw_start is not None:
            check_interval("drw_start", drw_start, 0.0, 1.0, closed="right")
            # (a weight=None given is dropped: set_epoch keeps the weights as a buffer, passed beside the options)
            if "weight" in self._buffers or self._options.pop("weight", None) is not None:
                raise ValueError("drw_start schedules the class weights; do not also pass weight=")
        self.drw_start, self.drw_beta = drw_start, drw_beta

    def set_epoch(self, epoch: int, num_epochs: int) -> None:
        if self.drw_start is None:
            return
        start = round(self.drw_start * num_epochs)
        weight = drw_weights(epoch, self.class_counts, start_epoch=start, beta=self.drw_beta)
        # not in the state_dict: set_epoch recomputes it, and a fresh module (no weight before the first
        # call) then loads the state of one that is re-weighting
        weight = None if weight is None else weight.to(self.class_counts.device)
        self._buffers["weight"] = weight  # (register_buffer's, by hand: weight reads as an option, None, until set)
        self._non_persistent_buffers_set.add("weight")


register_loss(
    "logit_adjustment",
    logit_adjusted_cross_entropy,
    LogitAdjustedCrossEntropyLoss,
    signature="softmax",
    reference=_MENON,
    hyperparams=(HyperParam("tau", 1.0, FloatRange(0.0, 2.0), "strength of the log-prior offset"),),
    requires=("class_counts",),
)
register_loss(
    "balanced_softmax",
    balanced_softmax,
    BalancedSoftmaxLoss,
    signature="softmax",
    reference=_REN,
    requires=("class_counts",),
)
register_loss(
    "weighted_cross_entropy",
    weighted_cross_entropy,
    WeightedCrossEntropyLoss,
    signature="softmax",
    reference="PyTorch F.cross_entropy with class weights (n / (C n_c))^power; scikit-learn's 'balanced' at power 1",
    hyperparams=(HyperParam("power", 1.0, FloatRange(0.0, 1.0), "exponent of the balanced class weights"),),
    requires=("class_counts",),
)
register_loss(
    "ldam",
    ldam,
    LDAMLoss,
    signature="softmax",
    reference=_CAO,
    hyperparams=(
        HyperParam("max_margin", 0.5, FloatRange(0.1, 1.0), "margin of the rarest class"),
        HyperParam("scale", 30.0, None, "logit multiplier (inverse temperature), fixed as in the paper"),
    ),
    requires=("class_counts",),
    batch_level_when="drw_start",  # re-weighted, its mean divides by the batch's summed weights
)
