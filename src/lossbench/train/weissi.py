"""Weight regularisers as objective transforms: WEISSI, invariant to the rescalings that leave a
ReLU network unchanged, and the L2 penalty it is compared with (weight decay on the weight
matrices, as an objective term so that a study can give each method its own regulariser)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from lossbench._checks import check_positive
from lossbench.registry import FloatRange, HyperParam
from lossbench.train._base import StepContext, Transform
from lossbench.train._registry import register_transform


def weight_matrices(module: nn.Module) -> list[torch.Tensor]:
    """The trainable weight matrices (and conv kernels) of a module: parameters with 2+ dimensions.

    Biases and normalisation scales (1-D) are left out, as weight decay usually leaves them.
    """
    return [p for p in module.parameters() if p.requires_grad and p.ndim >= 2]


def weissi_penalty(weights: Iterable[torch.Tensor], lambda1: float, lambda2: float) -> torch.Tensor:
    """``lambda1 sum_l log |W_l|_F + lambda2 sum_l |W_l / |W_l|_F|_1``.

    Scaling layer ``l`` (weights and bias) by ``c > 0`` and layer ``l + 1``'s weights by ``1/c``
    leaves a ReLU network's function unchanged; it leaves ``sum_l log |W_l|_F`` unchanged too
    (the product of the norms is kept), and the second term is scale-free per layer, so the
    penalty is invariant where L2 weight decay is not.  Su, kexue.fm/archives/7681, after Liu et
    al. 2020, "Improve Generalization and Robustness of Neural Networks via Weight Scale
    Shifting Invariant Regularizations".
    """
    check_positive("lambda1", lambda1, allow_zero=True)
    check_positive("lambda2", lambda2, allow_zero=True)
    weights = list(weights)
    if not weights:
        raise ValueError("weights must hold at least one weight matrix")
    total = weights[0].new_zeros(())
    for w in weights:
        norm = torch.linalg.vector_norm(w).clamp(min=torch.finfo(w.dtype).tiny)
        total = total + lambda1 * norm.log() + lambda2 * w.abs().sum() / norm
    return total


class Weissi(Transform):
    """Adds the WEISSI penalty over the model's weight matrices to the objective; logs its value."""

    name = "weissi"

    def __init__(self, lambda1: float = 1e-3, lambda2: float = 1e-4) -> None:
        check_positive("lambda1", lambda1, allow_zero=True)
        check_positive("lambda2", lambda2, allow_zero=True)
        self.lambda1, self.lambda2 = lambda1, lambda2
        self._weights: list[torch.Tensor] = []

    def bind(self, ctx: StepContext) -> None:
        self._weights = weight_matrices(ctx.model)
        if not self._weights:
            raise ValueError(f"weissi needs weight matrices; {type(ctx.model).__name__} has none")

    def objective(self, value: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        penalty = weissi_penalty(self._weights, self.lambda1, self.lambda2)
        self.record(ctx, "penalty", penalty)
        return value + penalty


register_transform(
    Weissi,
    reference="Su, kexue.fm/archives/7681; Liu et al. 2020 (weight scale shifting invariant regularizations)",
    hyperparams=(
        HyperParam("lambda1", 1e-3, FloatRange(1e-5, 1e-1, log=True), "weight of sum_l log |W_l|_F"),
        HyperParam("lambda2", 1e-4, FloatRange(1e-6, 1e-2, log=True), "weight of sum_l |W_l / |W_l|_F|_1"),
    ),
)


class L2Penalty(Transform):
    """Adds ``strength / 2 * sum_l |W_l|_F^2`` over the model's weight matrices to the objective:
    with SGD the same update as weight decay ``strength`` on the weights only (biases free)."""

    name = "l2_penalty"

    def __init__(self, strength: float = 1e-4) -> None:
        check_positive("strength", strength, allow_zero=True)
        self.strength = strength
        self._weights: list[torch.Tensor] = []

    def bind(self, ctx: StepContext) -> None:
        self._weights = weight_matrices(ctx.model)
        if not self._weights:
            raise ValueError(f"l2_penalty needs weight matrices; {type(ctx.model).__name__} has none")

    def objective(self, value: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        penalty = 0.5 * self.strength * sum(w.square().sum() for w in self._weights)
        self.record(ctx, "penalty", penalty)
        return value + penalty


register_transform(
    L2Penalty,
    reference="Krogh & Hertz 1991 (weight decay); the baseline of Su, kexue.fm/archives/7681",
    hyperparams=(HyperParam("strength", 1e-4, FloatRange(1e-6, 1e-2, log=True), "weight decay on the weight matrices"),),
)
