"""Gradient penalty ``L + lambda |grad_theta L|^2`` by double backpropagation."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lossbench._checks import check_positive
from lossbench.registry import FloatRange, HyperParam
from lossbench.train._base import StepContext, Transform
from lossbench.train._registry import register_transform


def grad_norm_sq(
    value: torch.Tensor, params: Sequence[torch.Tensor], *, create_graph: bool = True
) -> torch.Tensor:
    """``|grad_theta value|^2`` summed over ``params``, differentiable (double backprop) by default.

    Parameters that ``value`` does not depend on contribute zero.
    """
    if value.ndim != 0:
        raise ValueError(f"value must be a scalar loss, got shape {tuple(value.shape)}")
    params = list(params)
    if not params:
        raise ValueError("params must hold at least one tensor")
    grads = torch.autograd.grad(value, params, create_graph=create_graph, allow_unused=True)
    terms = [(g * g).sum() for g in grads if g is not None]
    return torch.stack(terms).sum() if terms else value.new_zeros(())


class GradientPenalty(Transform):
    """``L + weight * |grad_theta L|^2`` over the trained parameters, by double backprop.

    One descent step then one ascent step at lr ``eps`` move the parameters as gradient descent
    on ``|grad L|^2`` at lr ``eps^2 / 2`` would, up to O(eps^3) (Su, kexue.fm/archives/7643); this
    transform penalises the gradient norm explicitly.  Costs about two extra backward passes.
    """

    name = "gradient_penalty"

    def __init__(self, weight: float = 0.01) -> None:
        check_positive("weight", weight, allow_zero=True)
        self.weight = weight

    def objective(self, value: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        penalty = grad_norm_sq(value, ctx.params)
        self.record(ctx, "grad_norm_sq", penalty)
        return value + self.weight * penalty


register_transform(
    GradientPenalty,
    reference="Drucker & LeCun 1992 (double backpropagation); Su, kexue.fm/archives/7643",
    hyperparams=(HyperParam("weight", 0.01, FloatRange(1e-4, 1.0, log=True), "lambda of |grad L|^2"),),
)
