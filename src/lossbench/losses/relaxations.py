"""Smooth relaxations of the 0-1 loss compared against in the EXACT paper, and Poly-1.

The three relaxations act on the pairwise margins ``d_j = (s_y - s_j) / T`` of the true class
over each rival ``j != y`` and sum a per-margin surrogate of ``1[d_j < 0]`` over the rivals,
as the EXACT paper's code does (arXiv 2205.09615, its ``Relaxed01Loss``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lossbench.losses._registry import loss_module, register_loss
from lossbench.losses._softmax import log_softmax_at
from lossbench.losses._validation import (
    check_bool,
    check_interval,
    check_numbers,
    check_positive,
    check_reduction,
    loss_output,
    masked_reduce,
    row_param,
    softmax_inputs,
)
from lossbench.registry import FloatRange, HyperParam

_TEMPERATURE = HyperParam("temperature", 1.0, FloatRange(0.05, 20.0, log=True), "margins are divided by T")


def _sum_over_rivals(
    surrogate, logits, target, temperature, ignore_index, reduction, validate
) -> torch.Tensor:
    x, y, valid = softmax_inputs(logits, target, ignore_index, reduction, validate)
    check_positive("temperature", temperature)
    margins = (x.gather(1, y[:, None]) - x) / temperature
    rivals = torch.ones_like(x, dtype=torch.bool).scatter_(1, y[:, None], False)
    terms = surrogate(margins)
    per_sample = torch.where(rivals, terms, torch.zeros_like(terms)).sum(1)
    return loss_output(masked_reduce(per_sample, reduction, valid), logits)


def sigmoid_relaxation(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    temperature: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Sigmoid 0-1 relaxation ``sum_{j != y} (1 - sigma((s_y - s_j) / T))``.

    Nguyen & Sanner, "Algorithms for Direct 0-1 Loss Optimization in Binary Classification",
    ICML 2013; multi-class form as in the EXACT paper's baselines.  Target: class indices.
    """
    return _sum_over_rivals(
        lambda d: torch.sigmoid(-d), logits, target, temperature, ignore_index, reduction, validate
    )


def polynomial_relaxation(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    temperature: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Cubic 0-1 relaxation ``sum_{j != y} (d^3 / 4 - 3 d / 4 + 1/2)``, ``d = clip((s_y - s_j)/T, -1, 1)``.

    The polynomial goes from 1 at ``d = -1`` to 0 at ``d = 1`` with zero slope at both ends;
    outside ``[-1, 1]`` the loss is flat (no gradient).  Zhao et al., "A Robust Loss Function
    for Multiclass Classification", 2013, as implemented in the EXACT paper's baselines.
    Target: class indices.
    """
    return _sum_over_rivals(
        lambda d: 0.25 * d.clamp(-1, 1) ** 3 - 0.75 * d.clamp(-1, 1) + 0.5,
        logits,
        target,
        temperature,
        ignore_index,
        reduction,
        validate,
    )


def beta_bernoulli_relaxation(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    prior_weight: float | torch.Tensor = 0.5,
    theta: float | torch.Tensor = 0.5,
    temperature: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Beta-Bernoulli relaxation ``sum_{j != y} -log(w theta + (1 - w) sigma((s_y - s_j) / T))``.

    The probability of a correct pairwise decision is a mixture of a prior ``theta`` (weight
    ``w``; both in ``(0, 1)``) and the sigmoid of the margin, so the per-rival loss is bounded by
    ``-log(w theta)``.  Computed as a ``logaddexp`` of log-terms.  ``prior_weight`` and ``theta`` may
    be tensors (learned; see :class:`BetaBernoulliRelaxationLoss`).  Target: class indices.

    Reference: "A New Smooth Approximation to the Zero One Loss with a Probabilistic
    Interpretation" (2020), as implemented in the EXACT paper's baselines.
    """
    for name, value in (("prior_weight", prior_weight), ("theta", theta)):
        _check_probability(name, value, validate)

    def surrogate(d: torch.Tensor) -> torch.Tensor:
        wt = torch.as_tensor(prior_weight, dtype=d.dtype, device=d.device)
        tt = torch.as_tensor(theta, dtype=d.dtype, device=d.device)
        return -torch.logaddexp(torch.log(wt * tt), torch.log1p(-wt) + F.logsigmoid(d))

    return _sum_over_rivals(surrogate, logits, target, temperature, ignore_index, reduction, validate)


def _check_probability(name: str, value: float | torch.Tensor, validate: bool) -> None:
    """``prior_weight`` and ``theta`` of the Beta-Bernoulli relaxation lie in the open ``(0, 1)``: the paper's
    code learns each as a sigmoid, and the module stores their logits (1 would be an infinite one)."""
    check_numbers(name, value)
    if not isinstance(value, torch.Tensor):  # numbers checked as numbers: no tensor, no host sync (torch.compile)
        if not all(0 < v < 1 for v in (value if isinstance(value, (list, tuple)) else (value,))):
            raise ValueError(f"{name} must lie in (0, 1), got {value}")
    elif validate and not bool(((value > 0) & (value < 1)).all()):
        raise ValueError(f"{name} must lie in (0, 1), got {value.tolist()}")


def poly1_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    epsilon: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """Poly-1 loss ``CE + epsilon (1 - p_y)`` (Leng et al., "PolyLoss", ICLR 2022, arXiv 2204.12511).

    ``epsilon = 0`` is cross-entropy; ``epsilon = -1`` removes the first polynomial term of CE's
    Taylor expansion; also one per sample, ``(B,)``.  Target: class indices.
    """
    x, y, valid = softmax_inputs(logits, target, ignore_index, reduction, validate)
    epsilon = row_param("epsilon", epsilon, x, lambda name, v: check_interval(name, v, -1.0, math.inf), validate)
    log_p = log_softmax_at(x, y)
    per_sample = -log_p + epsilon * (1 - log_p.exp())
    return loss_output(masked_reduce(per_sample, reduction, valid), logits)


SigmoidRelaxationLoss = loss_module(sigmoid_relaxation, "SigmoidRelaxationLoss")
PolynomialRelaxationLoss = loss_module(polynomial_relaxation, "PolynomialRelaxationLoss")
Poly1CrossEntropyLoss = loss_module(poly1_cross_entropy, "Poly1CrossEntropyLoss")


class BetaBernoulliRelaxationLoss(nn.Module):
    """Module form of :func:`beta_bernoulli_relaxation` with ``prior_weight`` and ``theta`` learned.

    Both are stored as logits (``w = sigmoid(a)``, ``theta = sigmoid(b)``) initialised at 0.5,
    as in the EXACT paper's code; pass ``learnable=False`` to keep them fixed.  When learned,
    give the module's parameters to the optimiser together with the model's.
    """

    def __init__(
        self,
        *,
        prior_weight: float = 0.5,
        theta: float = 0.5,
        learnable: bool = True,
        temperature: float = 1.0,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("prior_weight", prior_weight), ("theta", theta)):
            _check_probability(name, value, validate=True)
        check_bool("learnable", learnable)
        check_reduction(reduction)
        raw = torch.logit(torch.tensor([prior_weight, theta], dtype=torch.float32))
        if learnable:
            self.raw = nn.Parameter(raw)
        else:
            self.register_buffer("raw", raw)
        self.temperature, self.ignore_index = temperature, ignore_index
        self.reduction, self.validate = reduction, validate

    def forward(self, logits: torch.Tensor, target: torch.Tensor, reduction: str | None = None) -> torch.Tensor:
        # The function's terms from the logits a, b in log space: log(w theta) = logsigmoid(a) + logsigmoid(b),
        # log(1 - w) = logsigmoid(-a).  (sigmoid(a) rounds to 1 in float32 from a = 17 on, a few SGD steps
        # away at the learning rates searched: then log1p(-w) is -inf and its gradient nan.)
        a, b = self.raw.unbind()

        def surrogate(d: torch.Tensor) -> torch.Tensor:
            a_d, b_d = a.to(d.dtype), b.to(d.dtype)
            return -torch.logaddexp(F.logsigmoid(a_d) + F.logsigmoid(b_d), F.logsigmoid(-a_d) + F.logsigmoid(d))

        return _sum_over_rivals(surrogate, logits, target, self.temperature, self.ignore_index,
                                reduction or self.reduction, self.validate)  # fmt: skip

    def option(self, name: str) -> Any:
        """The value this module calls the function's terms with for ``name``, as the generated twins'
        ``option`` (a training step reads ``ignore_index`` to leave ignored samples out); KeyError if none."""
        if name in ("prior_weight", "theta"):
            return torch.sigmoid(self.raw.detach()[("prior_weight", "theta").index(name)])
        return {"temperature": self.temperature, "ignore_index": self.ignore_index, "reduction": self.reduction,
                "validate": self.validate}[name]  # fmt: skip


_EXACT_BASELINES = "baseline in the EXACT paper, arXiv 2205.09615"

register_loss(
    "sigmoid_relaxation",
    sigmoid_relaxation,
    SigmoidRelaxationLoss,
    signature="softmax",
    reference=f"Nguyen & Sanner, ICML 2013; {_EXACT_BASELINES}",
    hyperparams=(_TEMPERATURE,),
)
register_loss(
    "polynomial_relaxation",
    polynomial_relaxation,
    PolynomialRelaxationLoss,
    signature="softmax",
    reference=f"Zhao et al. 2013, 'A Robust Loss Function for Multiclass Classification'; {_EXACT_BASELINES}",
    hyperparams=(_TEMPERATURE,),
)
register_loss(
    "beta_bernoulli_relaxation",
    beta_bernoulli_relaxation,
    BetaBernoulliRelaxationLoss,
    signature="softmax",
    reference=f"'A New Smooth Approximation to the Zero One Loss with a Probabilistic Interpretation' (2020); {_EXACT_BASELINES}",
    hyperparams=(_TEMPERATURE,),
)
register_loss(
    "poly1",
    poly1_cross_entropy,
    Poly1CrossEntropyLoss,
    signature="softmax",
    reference="Leng et al., 'PolyLoss', ICLR 2022, arXiv 2204.12511",
    hyperparams=(HyperParam("epsilon", 1.0, FloatRange(-1.0, 10.0), "weight of the (1 - p_y) term"),),
    row_params=("epsilon",),
)
