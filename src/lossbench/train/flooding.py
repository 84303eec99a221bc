"""Flooding on the mini-batch loss (Ishida et al. 2020) and per-sample flooding, iFlood (Xie et al. 2022)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lossbench._checks import check_positive
from lossbench.registry import FloatRange, HyperParam
from lossbench.train._base import PackedHook, StepContext, Transform, hyperparameter, per_run
from lossbench.train._registry import register_transform


def flood(loss: torch.Tensor, b: float) -> torch.Tensor:
    """``|L - b| + b`` on the mini-batch mean loss ``L``.

    Equal to ``L`` above the flood level ``b``; below it the gradient flips sign, so the step
    is gradient ascent on ``L``.  Ishida et al., "Do We Need Zero Training Loss After Achieving
    Zero Training Error?", ICML 2020, arXiv 2002.08709.
    """
    check_positive("b", b, allow_zero=True)
    if loss.ndim != 0:
        raise ValueError(
            f"flood takes the scalar mini-batch loss, got shape {tuple(loss.shape)}; "
            "for per-sample flooding use iflood"
        )
    return (loss - b).abs() + b


def iflood(losses: torch.Tensor, b: float) -> torch.Tensor:
    """``mean_i (|l_i - b| + b)`` over per-sample losses ``l_i`` (iFlood).

    Each sample is flooded on its own: samples below ``b`` are pushed up, the others down, in
    the same step.  Xie et al., "iFlood: A Stable and Effective Regularizer", ICLR 2022.  The
    mean is uniform over the entries given: ignored targets (a zero per-sample loss) would count
    as flooded samples, so drop them before calling.
    """
    check_positive("b", b, allow_zero=True)
    if losses.ndim != 1:
        raise ValueError(
            f"iflood takes per-sample losses of shape (B,), got shape {tuple(losses.shape)}; "
            "call the loss with reduction='none' (batch-level losses have no per-sample values)"
        )
    return ((losses - b).abs() + b).mean()


class Flooding(Transform):
    """Flooding ``|L - b| + b`` on the mini-batch mean loss; logs whether the step was flooded (``L < b``)."""

    name = "flooding"
    packs = True

    def __init__(self, b: float = 0.05) -> None:
        check_positive("b", b, allow_zero=True)
        self.b = b

    def objective(self, value: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        self.record(ctx, "flooded", (value < self.b).to(torch.float32))
        return flood(value, self.b)

    @classmethod
    def packed(cls, runs: Sequence[Transform]) -> PackedHook:
        def hook(values: torch.Tensor, stats: dict[str, torch.Tensor]) -> torch.Tensor:
            b = hyperparameter(runs, "b", values)
            stats[f"{cls.name}/flooded"] = (values < b).detach().to(torch.float32)
            return (values - b).abs() + b

        return hook


class IFlood(Transform):
    """iFlood: per-sample flooding ``mean_i |l_i - b| + b``; logs the share of flooded samples."""

    name = "iflood"
    packs = True
    per_sample = True

    def __init__(self, b: float = 0.05) -> None:
        check_positive("b", b, allow_zero=True)
        self.b = b

    def objective(self, value: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        out = iflood(value, self.b)
        self.record(ctx, "flooded", (value < self.b).to(torch.float32).mean())
        return out

    @classmethod
    def packed(cls, runs: Sequence[Transform]) -> PackedHook:
        def hook(values: torch.Tensor, stats: dict[str, torch.Tensor]) -> torch.Tensor:
            b = per_run(hyperparameter(runs, "b", values), values)
            stats[f"{cls.name}/flooded"] = (values < b).detach().to(torch.float32).mean(1)
            return ((values - b).abs() + b).mean(1)

        return hook


_LEVEL = FloatRange(0.0, 0.3)

register_transform(
    Flooding,
    reference="Ishida et al., ICML 2020, arXiv 2002.08709",
    hyperparams=(HyperParam("b", 0.05, _LEVEL, "flood level of the mini-batch mean loss"),),
)
register_transform(
    IFlood,
    reference="Xie et al., 'iFlood: A Stable and Effective Regularizer', ICLR 2022",
    hyperparams=(HyperParam("b", 0.05, _LEVEL, "flood level of each sample's loss"),),
)
