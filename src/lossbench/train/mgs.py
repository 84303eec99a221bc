"""MGS: optimising a non-differentiable batch metric with gradient-guided sampling (arXiv 2006.03158)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch.func import functional_call, vmap

from lossbench._checks import check_count, check_interval, check_positive
from lossbench.registry import FloatRange, HyperParam, IntRange
from lossbench.train._base import StepContext, Transform, check_state_keys
from lossbench.train._registry import register_transform
from lossbench.train.metrics import COSTS, Cost


class MGS(Transform):
    """Replace the optimizer's step by a cost-weighted mean of sampled candidate updates.

    With ``u`` the update the wrapped optimizer proposes from the surrogate loss's gradient
    (``u = -eta grad L~`` for plain SGD at lr ``eta``), draw ``n_samples`` candidates from the
    mixture ``q = mix N(0, sigma^2 I) + (1 - mix) N(u, sigma^2 I)``, evaluate the cost
    ``c = 1 - metric`` on the batch at ``theta + D_i`` and update by ``sum_i w_i D_i`` with
    self-normalised weights (a softmax of log-weights)

        w_i ∝ exp(-[c(theta + D_i) - c(theta)] / alpha) N(D_i; 0, sigma^2 I) / q(D_i).

    The ``N(0, sigma^2 I)`` factor makes the weights an importance-sampling estimate, with ``q``
    as the proposal, of the cost-tilted random-search step
    ``E_{D ~ N(0, sigma^2 I)}[D e^{-c/alpha}] / E[e^{-c/alpha}]`` (Su, kexue.fm/archives/7521,
    reading optimisation as sampling); ``N(D; 0, sigma^2 I) / q(D) <= 1 / mix`` keeps the weights
    tame.  Read literally as ``e^{-dc/alpha} / q``, the weights carry ``1/q``, which grows like
    ``exp(|D|^2 / 2 sigma^2)`` and spreads over candidates by order ``sqrt(d)`` nats for ``d``
    parameters: they collapse onto one candidate whatever its cost.

    Only the model's parameters are sampled; trained loss parameters take the optimizer's step.
    Candidates are evaluated in one ``torch.func.vmap`` over ``functional_call`` with the model in
    eval mode (in ``chunk_size`` pieces when given); the gradient transforms before this one see
    the surrogate gradient, so clipping shapes ``u``.  ``metric`` is ``"accuracy"``,
    ``"macro_f1"`` (see :mod:`lossbench.train.metrics` for the target kinds they read: class
    indices, one logit per binary or multi-label decision) or a callable
    ``(logits (n, *model output), target) -> cost (n,)``.
    """

    name = "mgs"
    stage = "update"

    def __init__(
        self,
        n_samples: int = 16,
        sigma: float = 0.01,
        mix: float = 0.5,
        alpha: float = 0.01,
        metric: str | Cost = "accuracy",
        chunk_size: int | None = None,
        seed: int | None = None,
    ) -> None:
        check_count("n_samples", n_samples)
        check_positive("sigma", sigma)
        check_interval("mix", mix, 0.0, 1.0, closed="neither")
        check_positive("alpha", alpha)
        if isinstance(metric, str):
            if metric not in COSTS:
                raise ValueError(f"metric must be one of {sorted(COSTS)} or a callable, got {metric!r}")
            self._cost: Cost = COSTS[metric]
        elif callable(metric):
            self._cost = metric
        else:
            raise ValueError(f"metric must be one of {sorted(COSTS)} or a callable, got {metric!r}")
        self.n_samples, self.sigma, self.mix, self.alpha = n_samples, sigma, mix, alpha
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
            theta = [p.detach().clone() for p in params]
            ctx.optimizer.step()
            proposed = [p - t for p, t in zip(params, theta)]
            for p, t in zip(params, theta):
                p.copy_(t)
            deltas, log_ratio = self._sample(proposed)
            costs = self._costs(ctx, theta, deltas)
            log_w = -(costs[1:] - costs[0]) / self.alpha + log_ratio
            weights = torch.softmax(log_w, dim=0)
            for p, t, d in zip(params, theta, deltas):
                p.copy_(t + torch.tensordot(weights.to(d.dtype), d[1:], dims=1))
        self.record(ctx, "cost", costs[0])
        self.record(ctx, "ess", 1.0 / (weights * weights).sum())

    def _sample(self, proposed: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Candidates ``D`` (with a zero row 0 for theta itself) and ``log N(D; 0, s^2) - log q(D)``."""
        n, s, ref = self.n_samples, self.sigma, proposed[0]
        guided = torch.rand(n, generator=self._generator, device=ref.device) >= self.mix
        deltas, excess = [], 0.0
        for u in proposed:
            noise = s * torch.randn((n, *u.shape), generator=self._generator, device=u.device, dtype=u.dtype)
            d = noise + guided.view(-1, *([1] * u.ndim)).to(u.dtype) * u
            # |D|^2 - |D - u|^2 = 2 D.u - |u|^2, formed directly to avoid cancelling large terms
            excess = excess + 2 * (d * u).flatten(1).sum(1) - u.pow(2).sum()
            deltas.append(torch.cat([torch.zeros_like(u)[None], d]))
        # log N(D; 0, s^2) - log q(D) = -log(mix + (1 - mix) N(D; u, s^2) / N(D; 0, s^2))
        log_ratio = -torch.logaddexp(
            torch.full_like(excess, math.log(self.mix)), math.log1p(-self.mix) + excess / (2 * s * s)
        )
        return deltas, log_ratio.float()

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
        return self._cost(logits, y).float()


register_transform(
    MGS,
    reference="arXiv 2006.03158; Su, kexue.fm/archives/7521",
    hyperparams=(
        HyperParam("n_samples", 16, IntRange(4, 64, log=True), "candidate updates per step"),
        HyperParam("sigma", 0.01, FloatRange(1e-4, 0.1, log=True), "std of each mixture component"),
        HyperParam("mix", 0.5, FloatRange(0.1, 0.9), "weight of the unguided N(0, sigma^2 I) component"),
        HyperParam("alpha", 0.01, FloatRange(1e-3, 1.0, log=True), "temperature of the cost weights"),
        HyperParam("metric", "accuracy", None, "cost = 1 - metric: accuracy or macro_f1"),
    ),
)
