"""MGS: optimising a non-differentiable batch metric with gradient-guided sampling (arXiv 2006.03158)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import torch
from torch.func import functional_call, vmap

from lossbench._checks import check_count, check_interval, check_positive
from lossbench.registry import FloatRange, HyperParam, IntRange
from lossbench.train._base import StepContext, Transform, check_state_keys, loss_option
from lossbench.train._registry import register_transform
from lossbench.train.metrics import COSTS, Cost


class MGS(Transform):
    """Replace the optimizer's step by MGS's (Welleck & Cho, arXiv 2006.03158), as its released code takes it.

    With ``g = -grad L~`` the surrogate loss's gradient (after the gradient transforms before this
    one) clipped to total norm ``max_norm``, draw ``n_samples`` candidates ``D_i = g + e_i`` (the
    guided ones, a ``1 - mix`` share rounded up: :func:`guided_candidates`) or ``D_i = e_i`` (the
    rest), ``e_i`` Gaussian noise whose std in each parameter tensor is ``noise`` times the mean
    ``|g|`` of that tensor; evaluate the cost
    ``c = 1 - metric`` on the batch at ``theta + D_i``; weight the candidates by the self-normalised

        w_i ∝ exp(-[c(theta + D_i) - c(theta)] / alpha) / q(D_i),   q = mix N(0, I) + (1 - mix) N(g, I),

    and hand ``-sum_i w_i D_i``, clipped to ``max_norm``, to the optimizer as the parameters'
    gradient.  So the lr scales the step, not the candidates, and ``q`` is the mixture at unit
    variance, whatever the noise's scale: the released code's ``perturb``, ``compute_weight`` and
    ``update`` (wellecks/mgs, ``seq_level/gpt2/guided/utils.py``; its defaults: 4 samples, noise 1
    relative to the mean ``|g|``, ``beta = 1 / alpha = 100``, gradient norm 1, the two components in
    turn).  With the noise that small against unit variance, ``1/q`` spreads the weights little and
    the costs decide.  (Read with ``q`` at the noise's own scale, as SPEC's formula would, ``1/q``
    grows like ``exp(|D|^2 / 2 s^2)`` and spreads over candidates by order ``sqrt(d)`` nats for ``d``
    parameters: the weights collapse onto one candidate whatever its cost.)

    Only the model's parameters are sampled; trained loss parameters take the optimizer's step with
    their own gradient.  Candidates are evaluated in one ``torch.func.vmap`` over
    ``functional_call`` with the model in eval mode (in ``chunk_size`` pieces when given).
    ``metric`` is ``"accuracy"``, ``"macro_f1"`` (see :mod:`lossbench.train.metrics` for the target
    kinds they read: class indices, one logit per binary or multi-label decision; the targets the
    loss ignores, by its ``ignore_index``, are left out) or a callable
    ``(logits (n, *model output), target) -> cost (n,)``.
    """

    name = "mgs"
    stage = "update"

    def __init__(
        self,
        n_samples: int = 4,
        noise: float = 1.0,
        mix: float = 0.5,
        alpha: float = 0.01,
        max_norm: float = 1.0,
        metric: str | Cost = "accuracy",
        chunk_size: int | None = None,
        seed: int | None = None,
    ) -> None:
        check_count("n_samples", n_samples)
        if chunk_size is not None:
            check_count("chunk_size", chunk_size)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        check_positive("noise", noise)
        check_interval("mix", mix, 0.0, 1.0, closed="neither")
        check_positive("alpha", alpha)
        check_positive("max_norm", max_norm)
        if isinstance(metric, str):
            if metric not in COSTS:
                raise ValueError(f"metric must be one of {sorted(COSTS)} or a callable, got {metric!r}")
            self._cost: Cost = COSTS[metric]
        elif callable(metric):
            self._cost = metric
        else:
            raise ValueError(f"metric must be one of {sorted(COSTS)} or a callable, got {metric!r}")
        self.n_samples, self.noise, self.mix, self.alpha, self.max_norm = n_samples, noise, mix, alpha, max_norm
        self.metric, self.chunk_size, self.seed = metric, chunk_size, seed
        self._generator: torch.Generator | None = None
        self._generator_state: torch.Tensor | None = None  # loaded before bind: applied there
        self._names: list[str] = []
        self._sampled: list[torch.Tensor] = []

    def bind(self, ctx: StepContext) -> None:
        if ctx.optimizer is None:
            raise ValueError("mgs wraps an optimizer step; optimizer must not be None")
        trained = {id(p) for p in ctx.params}
        named = [(n, p) for n, p in ctx.model.named_parameters() if id(p) in trained]
        if not named:
            raise ValueError("mgs found no trained model parameters in the optimizer")
        self._names = [n for n, _ in named]
        self._sampled = [p for _, p in named]
        if self.seed is not None:
            self._generator = torch.Generator(device=self._sampled[0].device).manual_seed(self.seed)
            if self._generator_state is not None:
                self._generator.set_state(self._generator_state)

    def state_dict(self) -> dict[str, Any]:
        """The state of the seeded generator that draws the candidates (None before the first bind, or
        without a seed: then the candidates come from torch's global RNG, whose state is the caller's)."""
        return {"generator": None if self._generator is None else self._generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state_keys(self, state, ("generator",))
        saved = state["generator"]
        if saved is not None and self.seed is None:
            raise ValueError("mgs: this state has a seeded generator's state; build the transform with a seed")
        self._generator_state = None if saved is None else saved.clone()
        if self._generator is not None:  # bound: restore now (None: as the seed starts it)
            if saved is None:
                self._generator.manual_seed(self.seed)
            else:
                self._generator.set_state(self._generator_state)

    def update(self, grads: list[torch.Tensor], ctx: StepContext) -> None:
        params = self._sampled
        with torch.no_grad():
            torch.nn.utils.clip_grad_norm_(params, self.max_norm)  # (in place, as the code's mle_grad clips)
            g = [-p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            theta = [p.detach() for p in params]
            deltas, log_q = self._sample(g)
            costs = self._costs(ctx, theta, deltas)
            weights = torch.softmax(-(costs[1:] - costs[0]) / self.alpha - log_q, dim=0)
            for p, d in zip(params, deltas):
                p.grad = -torch.tensordot(weights.to(d.dtype), d[1:], dims=1)
            torch.nn.utils.clip_grad_norm_(params, self.max_norm)
        ctx.optimizer.step()
        self.record(ctx, "cost", costs[0])
        self.record(ctx, "ess", 1.0 / (weights * weights).sum())

    def _sample(self, g: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Candidates ``D`` (with a zero row 0 for theta itself) and ``log q(D)`` up to a constant."""
        n, ref = self.n_samples, g[0]
        guided = torch.tensor(guided_candidates(n, self.mix), dtype=ref.dtype, device=ref.device)
        deltas, squares, along = [], 0.0, 0.0
        for gt in g:
            scale = self.noise * gt.abs().mean()
            e = scale * torch.randn((n, *gt.shape), generator=self._generator, device=gt.device, dtype=gt.dtype)
            d = e + guided.view(-1, *([1] * gt.ndim)) * gt
            squares = squares + d.pow(2).reshape(n, -1).sum(1)  # |D|^2 (reshape: a 0-d parameter's d is (n,))
            along = along + (d * gt).reshape(n, -1).sum(1) - 0.5 * gt.pow(2).sum()  # D.g - |g|^2 / 2
            deltas.append(torch.cat([torch.zeros_like(gt)[None], d]))
        # log q = log(mix e^(-|D|^2/2) + (1 - mix) e^(-|D - g|^2/2)), |D - g|^2 / 2 = |D|^2 / 2 - (D.g - |g|^2 / 2)
        log_q = -0.5 * squares + torch.logaddexp(torch.full_like(along, math.log(self.mix)), math.log1p(-self.mix) + along)
        return deltas, log_q.float()

    def _costs(self, ctx: StepContext, theta: list[torch.Tensor], deltas: list[torch.Tensor]) -> torch.Tensor:
        model, x, y = ctx.model, ctx.x, ctx.y
        names = self._names

        def logits_at(*delta: torch.Tensor) -> torch.Tensor:
            return functional_call(model, {k: t + d for k, t, d in zip(names, theta, delta)}, (x,))

        was_training = model.training
        model.eval()
        try:
            logits = vmap(logits_at, chunk_size=self.chunk_size)(*deltas)
        finally:
            model.train(was_training)
        ignore = loss_option(ctx.loss, "ignore_index")  # (the loss's own: its ignored targets are no decisions)
        if isinstance(self.metric, str) and ignore is not None:
            return self._cost(logits, y, ignore_index=ignore).float()
        return self._cost(logits, y).float()


def guided_candidates(n: int, mix: float) -> list[int]:
    """Which of ``n`` candidates are guided (1) or noise only (0): ``ceil(n (1 - mix))`` guided ones spread
    evenly, the first one guided (the released code's ``i % 2 == 0`` at mix 0.5, odd ``n`` included)."""
    share = 1 - Fraction(repr(float(mix)))  # (exact: 1 - 0.7 is 0.30000000000000004 in floats)
    return [math.ceil((i + 1) * share) - math.ceil(i * share) for i in range(n)]


register_transform(
    MGS,
    reference="arXiv 2006.03158; Su, kexue.fm/archives/7521",
    hyperparams=(
        HyperParam("n_samples", 4, IntRange(4, 64, log=True), "candidate updates per step"),
        HyperParam("noise", 1.0, FloatRange(0.1, 10.0, log=True), "the noise's std, in units of each tensor's mean |g|"),
        HyperParam("mix", 0.5, FloatRange(0.1, 0.9), "share of unguided candidates (noise only), and their weight in q"),
        HyperParam("alpha", 0.01, FloatRange(1e-3, 1.0, log=True), "temperature of the cost weights (1 / beta)"),
        HyperParam("max_norm", 1.0, None, "norm the gradient and the update are clipped to"),
        HyperParam("metric", "accuracy", None, "cost = 1 - metric: accuracy or macro_f1"),
    ),
)
