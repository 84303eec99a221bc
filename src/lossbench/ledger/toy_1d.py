"""The EXACT paper's 1-D example (Karpukhin et al., arXiv 2205.09615).

Three points ``{(-0.25, -1), (0, -1), (0.25, +1)}``, a threshold model ``f(x) = (x - b) / T``
that predicts ``sign f``.  Any ``b`` in ``(0, 0.25)`` is 100 % accurate, yet without a
temperature the cross-entropy optimum is ``b = 0.70`` and the hinge optimum is the whole
interval ``[0.75, 1]``, both 2/3 accurate.  A small temperature lets them reach a correct ``b``.

Each loss is evaluated with lossbench's own softmax losses on the two logits ``(-f/2, f/2)``,
for which cross-entropy is the sigmoid cross-entropy ``log(1 + exp(-y f))``, smooth accuracy is
``1 - sigma(y f)``, the hinge is ``max(0, 1 - y f) / 2`` and EXACT with noise ``sigma`` on each logit
is ``1 - Phi(y f / (sqrt(2) sigma))``; the optimum is found by an exhaustive grid over ``b``.  EXACT's
noise plays the role of the temperature, so its rows use ``f = x - b``: with a fixed ``sigma``, and
with ``sigma`` learned, i.e. minimised jointly with ``b`` over a grid of ``b`` times a log-spaced grid
of ``sigma`` (a grid rather than gradient descent, so that the whole optimal set is shown).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from lossbench._table import format_table
from lossbench.losses import cross_entropy, exact, multi_class_hinge, smooth_accuracy

X = torch.tensor([-0.25, 0.0, 0.25], dtype=torch.float64)
Y = torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64)

# name -> total loss over the three points for each threshold; f has shape (grid, 3).
LossOnGrid = Callable[[torch.Tensor], torch.Tensor]


def _softmax_loss(loss) -> LossOnGrid:
    def total(f: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([-f / 2, f / 2], dim=-1).reshape(-1, 2)
        target = (Y > 0).long().repeat(f.shape[0])
        return loss(logits, target, reduction="none").reshape(f.shape).sum(1)

    return total


LOSSES_ON_GRID: dict[str, LossOnGrid] = {
    "cross_entropy": _softmax_loss(cross_entropy),
    "hinge": _softmax_loss(multi_class_hinge),
    "smooth_accuracy": _softmax_loss(smooth_accuracy),
}


@dataclass(frozen=True)
class ToyResult:
    method: str
    temperature: float | None  # None: no temperature (T = 1)
    b_low: float  # the optimal thresholds form [b_low, b_high] on the grid
    b_high: float
    accuracy: float  # accuracy of sign(x - b) at every optimal b (min over them)
    best_accuracy: float  # the most accurate optimal b's (max over them): a loss "finds" 100 % where this is 1
    loss: float
    at_grid_edge: bool  # the loss still decreases beyond the searched range
    sigma: tuple[float, float] | None = None  # EXACT's noise level: (fixed, fixed) or the optimal range
    sigma_learned: bool = False

    @property
    def b(self) -> str:
        if self.b_high - self.b_low < 1e-9:
            return f"{self.b_low:.3f}"
        return f"[{self.b_low:.3f}, {self.b_high:.3f}]"


def accuracy_at(b: torch.Tensor) -> torch.Tensor:
    """Accuracy of ``sign(x - b)`` for each threshold (``f = 0`` counts as wrong)."""
    f = X[None, :] - b[:, None]
    return ((Y[None, :] * f) > 0).double().mean(1)


def solve(
    method: str,
    temperature: float | None,
    grid: torch.Tensor,
    loss_on_grid: LossOnGrid | None = None,
    tolerance: float = 1e-9,
) -> ToyResult:
    """Grid-minimise the method's total loss over ``b`` and describe the optimal set."""
    total_fn = loss_on_grid or LOSSES_ON_GRID[method]
    t = 1.0 if temperature is None else temperature
    f = (X[None, :] - grid[:, None]) / t
    with torch.no_grad():
        total = total_fn(f)
    best = total.min()
    optimal = total <= best + tolerance * max(1.0, abs(float(best)))
    b_opt = grid[optimal]
    edge = bool(optimal[0] or optimal[-1])
    return ToyResult(
        method=method,
        temperature=temperature,
        b_low=float(b_opt.min()),
        b_high=float(b_opt.max()),
        accuracy=float(accuracy_at(b_opt).min()),
        best_accuracy=float(accuracy_at(b_opt).max()),
        loss=float(best),
        at_grid_edge=edge,
    )


def exact_on_grid(sigma: float) -> LossOnGrid:
    """EXACT (``1 - P``) with noise ``sigma`` on each of the two logits."""
    return _softmax_loss(functools.partial(exact, sigma=sigma))


def solve_exact(sigma: float, grid: torch.Tensor) -> ToyResult:
    result = solve("exact", None, grid, exact_on_grid(sigma))
    return dataclasses.replace(result, sigma=(sigma, sigma))


def solve_exact_learned_sigma(grid: torch.Tensor, sigmas: torch.Tensor, tolerance: float = 1e-9) -> ToyResult:
    """Minimise EXACT jointly over ``b`` (``grid``) and ``sigma`` (``sigmas``); describe the optimal set."""
    f = X[None, :] - grid[:, None]
    with torch.no_grad():
        total = torch.stack([exact_on_grid(float(s))(f) for s in sigmas])  # (sigmas, grid)
    best = total.min()
    optimal = total <= best + tolerance * max(1.0, abs(float(best)))
    rows, cols = optimal.nonzero(as_tuple=True)
    b_opt = grid[cols]
    edge = bool(optimal[:, 0].any() or optimal[:, -1].any() or optimal[0].any() or optimal[-1].any())
    return ToyResult(
        method="exact",
        temperature=None,
        b_low=float(b_opt.min()),
        b_high=float(b_opt.max()),
        accuracy=float(accuracy_at(b_opt).min()),
        best_accuracy=float(accuracy_at(b_opt).max()),
        loss=float(best),
        at_grid_edge=edge,
        sigma=(float(sigmas[rows].min()), float(sigmas[rows].max())),
        sigma_learned=True,
    )


def run_toy(
    temperatures: Sequence[float | None] = (None, 0.1),
    grid: torch.Tensor | None = None,
    extra: dict[str, LossOnGrid] | None = None,
    exact_sigmas: Sequence[float] = (1.0, 0.1),
    learn_sigma: bool = True,
    sigma_grid: torch.Tensor | None = None,
) -> list[ToyResult]:
    """Every registered toy method at every temperature, then EXACT at each fixed ``sigma`` and
    with ``sigma`` learned over ``sigma_grid`` (log-spaced 1e-3 to 10 by default); ``extra`` adds methods."""
    grid = torch.linspace(-1.0, 2.0, 3001, dtype=torch.float64) if grid is None else grid
    methods = {**LOSSES_ON_GRID, **(extra or {})}
    results = [solve(name, t, grid, fn) for t in temperatures for name, fn in methods.items()]
    results += [solve_exact(s, grid) for s in exact_sigmas]
    if learn_sigma:
        sigmas = torch.logspace(-3, 1, 41, dtype=torch.float64) if sigma_grid is None else sigma_grid
        results.append(solve_exact_learned_sigma(grid, sigmas))
    return results


def method_label(r: ToyResult) -> str:
    """The method's name, with EXACT's noise level: ``exact(sigma=0.1)``, ``exact(learned_sigma)``."""
    if r.sigma is None:
        return r.method
    return f"{r.method}(learned_sigma)" if r.sigma_learned else f"{r.method}(sigma={r.sigma[0]:g})"


def results_table(results: Sequence[ToyResult]) -> str:
    header = ("method", "temperature", "optimal b", "accuracy", "loss")
    rows = [
        (
            method_label(r),
            "none" if r.temperature is None else f"{r.temperature:g}",
            r.b + (" (grid edge)" if r.at_grid_edge else ""),
            f"{r.accuracy:.3f}",
            f"{r.loss:.4f}",
        )
        for r in results
    ]
    notes = [
        f"{method_label(r)}: optimal sigma in [{r.sigma[0]:.3g}, {r.sigma[1]:.3g}] "
        "(b and sigma minimised jointly on a grid; sigma log-spaced)"
        for r in results
        if r.sigma_learned
    ]
    return "\n".join([format_table(header, rows), *notes])
