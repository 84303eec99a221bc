"""Global-norm gradient clipping, hard and smooth (kexue.fm/archives/7469); EXACT's gradient normaliser."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from lossbench._checks import check_interval, check_positive
from lossbench.registry import FloatRange, HyperParam
from lossbench.train._base import (
    PackedHook,
    StepContext,
    Transform,
    check_state_keys,
    global_norm,
    hyperparameter,
    per_run,
    run_norms,
    scale_,
)
from lossbench.train._registry import register_transform


def clip_scale(norm: torch.Tensor, max_norm: float | torch.Tensor, *, smooth: bool = False) -> torch.Tensor:
    """The factor a clipped gradient of norm ``|g|`` is multiplied by.

    Hard: ``min(1, gamma / |g|)``, computed as ``gamma / max(|g|, gamma)`` (exact, no epsilon);
    smooth: ``gamma / (|g| + gamma)``.  The two bound each other:
    ``min(1, gamma/|g|) / 2 <= gamma / (|g| + gamma) <= min(1, gamma/|g|)``.
    """
    if not isinstance(max_norm, torch.Tensor):  # a (K,) tensor: the packed runs' thresholds, checked each
        check_positive("max_norm", max_norm)
    if smooth:
        return max_norm / (norm + max_norm)
    return max_norm / (torch.maximum(norm, max_norm) if isinstance(max_norm, torch.Tensor) else norm.clamp(min=max_norm))


def clip_grad_norm_(
    parameters: Iterable[torch.Tensor] | torch.Tensor, max_norm: float, *, smooth: bool = False
) -> torch.Tensor:
    """Clip the gradients of ``parameters`` by their global L2 norm, in place; returns that norm.

    ``smooth=False`` is ``torch.nn.utils.clip_grad_norm_``: ``g min(1, gamma / |g|)``;
    ``smooth=True`` rescales every gradient, ``g gamma / (|g| + gamma)``, which is
    continuous in ``g`` and within a factor 2 of the hard form (Su, kexue.fm/archives/7469).
    """
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        raise ValueError("parameters have no gradients to clip; call backward() first")
    norm = global_norm(grads)
    scale_(grads, clip_scale(norm, max_norm, smooth=smooth))
    return norm


class ClipNorm(Transform):
    """Hard global-norm clipping ``g min(1, max_norm / |g|)``; logs the prior norm and the factor."""

    name = "clip_norm"
    packs = True
    stage = "gradient"
    smooth = False

    def __init__(self, max_norm: float = 1.0) -> None:
        check_positive("max_norm", max_norm)
        self.max_norm = max_norm

    def gradients(self, grads: list[torch.Tensor], ctx: StepContext) -> None:
        norm = global_norm(grads)
        factor = clip_scale(norm, self.max_norm, smooth=self.smooth)
        scale_(grads, factor)
        self.record(ctx, "grad_norm", norm)
        self.record(ctx, "scale", factor)

    @classmethod
    def packed(cls, runs: Sequence[Transform]) -> PackedHook:
        def hook(grads: list[torch.Tensor], stats: dict[str, torch.Tensor]) -> None:
            norm = run_norms(grads)
            factor = clip_scale(norm, hyperparameter(runs, "max_norm", norm), smooth=cls.smooth)
            torch._foreach_mul_(grads, [per_run(factor, g) for g in grads])
            stats[f"{cls.name}/grad_norm"], stats[f"{cls.name}/scale"] = norm, factor

        return hook


class SmoothClipNorm(ClipNorm):
    """Smooth global-norm clipping ``g max_norm / (|g| + max_norm)``; logs the prior norm and the factor."""

    name = "clip_norm_smooth"
    smooth = True


class GradientNormalizer(Transform):
    """EXACT's gradient normaliser: ``g <- g / max(m_t, min_norm)``, ``m_t`` an EMA of ``|g|``.

    ``m_1 = |g_1|`` and ``m_t = momentum m_{t-1} + (1 - momentum) |g_t|`` afterwards, the
    current norm included, with the global L2 norm over all trained parameters; defaults
    ``momentum = 0.9``, ``min_norm = 0.01``.  Used by the EXACT paper instead of clipping
    (Karpukhin et al. 2022, arXiv 2205.09615, its code's ``GradientNormalizer``).
    """

    name = "grad_normalizer"
    packs = True
    stage = "gradient"

    def __init__(self, momentum: float = 0.9, min_norm: float = 0.01) -> None:
        check_interval("momentum", momentum, 0.0, 1.0, closed="left")
        check_positive("min_norm", min_norm)
        self.momentum, self.min_norm = momentum, min_norm
        self._moving_norm: torch.Tensor | None = None

    def gradients(self, grads: list[torch.Tensor], ctx: StepContext) -> None:
        norm = global_norm(grads)
        if self._moving_norm is None:
            self._moving_norm = norm.detach().clone()
        else:  # (.to: a restored state may come from another device; a no-op otherwise)
            self._moving_norm = self._moving_norm.to(norm.device)
            self._moving_norm.mul_(self.momentum).add_(norm.detach(), alpha=1 - self.momentum)
        scale_(grads, 1.0 / self._moving_norm.clamp(min=self.min_norm))
        self.record(ctx, "grad_norm", norm)
        self.record(ctx, "moving_norm", self._moving_norm.clone())

    def state_dict(self) -> dict[str, Any]:
        """The moving norm ``m_t`` (None before the first step)."""
        return {"moving_norm": None if self._moving_norm is None else self._moving_norm.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state_keys(self, state, ("moving_norm",))
        norm = state["moving_norm"]
        self._moving_norm = None if norm is None else norm.detach().clone()

    @classmethod
    def packed(cls, runs: Sequence[Transform]) -> PackedHook:
        moving: list[torch.Tensor] = []  # the runs' EMAs (K,), from the first step on

        def hook(grads: list[torch.Tensor], stats: dict[str, torch.Tensor]) -> None:
            norm = run_norms(grads).detach()
            if not moving:  # each run's own EMA goes on (restored, or an earlier fit's), else starts at its norm
                kept = [t._moving_norm for t in runs]
                if all(m is None for m in kept):
                    moving.append(norm.clone())
                else:
                    fresh = torch.tensor([m is None for m in kept], device=norm.device)
                    earlier = torch.stack([norm[k] if m is None else m.to(norm).reshape(()) for k, m in enumerate(kept)])
                    momentum = hyperparameter(runs, "momentum", norm)
                    moving.append(torch.where(fresh, norm, earlier * momentum + norm * (1 - momentum)))
                for k, t in enumerate(runs):  # (views: the state each instance keeps follows the EMA updated in place)
                    t._moving_norm = moving[0][k]
            else:
                momentum = hyperparameter(runs, "momentum", norm)
                moving[0].mul_(momentum).add_(norm * (1 - momentum))
            factor = 1.0 / moving[0].clamp(min=hyperparameter(runs, "min_norm", norm))
            torch._foreach_mul_(grads, [per_run(factor, g) for g in grads])
            stats[f"{cls.name}/grad_norm"], stats[f"{cls.name}/moving_norm"] = norm, moving[0].clone()

        return hook


_MAX_NORM = HyperParam("max_norm", 1.0, FloatRange(0.01, 10.0, log=True), "gamma: the clipping threshold")

register_transform(ClipNorm, reference="Pascanu et al. 2013, arXiv 1211.5063; Su, kexue.fm/archives/7469",
                   hyperparams=(_MAX_NORM,))
register_transform(SmoothClipNorm, reference="Su, kexue.fm/archives/7469", hyperparams=(_MAX_NORM,))
register_transform(
    GradientNormalizer,
    reference="Karpukhin et al., 'EXACT: How to Train Your Accuracy', arXiv 2205.09615 (its code)",
    hyperparams=(
        HyperParam("momentum", 0.9, None, "EMA coefficient of the gradient norm"),
        HyperParam("min_norm", 0.01, None, "floor of the EMA the gradient is divided by"),
    ),
)
