"""The analysis claims' measurements, each judged by the rule its record states.

Each function takes the budget ("quick" or "paper") and returns an :class:`AnalysisResult`.
"""

from __future__ import annotations

import math

import torch

from lossbench.ledger.runs import AnalysisResult
from lossbench.ledger.toy_1d import accuracy_at, results_table, solve

GRID = torch.linspace(-1.0, 2.0, 3001, dtype=torch.float64)  # b in steps of 0.001


def _toy(temperature: float | None) -> tuple[list, float]:
    results = [solve(name, temperature, GRID) for name in ("cross_entropy", "hinge")]
    return results, float(accuracy_at(GRID).max())


def _toy_details(results) -> str:
    return "Optimal thresholds on a grid of b in [-1, 2] (step 0.001):\n\n```\n" + results_table(results) + "\n```"


def toy_cross_entropy_and_hinge_miss(budget: str) -> AnalysisResult:
    """The EXACT paper's claim: without a temperature neither loss finds a 100 %-accurate b."""
    results, best = _toy(None)
    measured = {f"{r.method}_accuracy": r.accuracy for r in results} | {"best_accuracy_on_grid": best}
    misses = [r.method for r in results if r.accuracy < 1.0]
    if best == 1.0 and len(misses) == len(results):
        word, reason = "holds", "both optima are 2/3 accurate while b in (0, 0.25) is 100 % accurate"
    elif len(misses) < len(results):
        word = "contradicted"
        reason = f"{', '.join(r.method for r in results if r.accuracy == 1.0)} reaches a 100 %-accurate optimum"
    else:
        word, reason = "inconclusive", "no threshold on the grid is 100 % accurate"
    cells = ", ".join(f"{r.method}: b in [{r.b_low:.3f}, {r.b_high:.3f}], accuracy {r.accuracy:.3f}" for r in results)
    return AnalysisResult(word, f"{reason} ({cells}).", measured, _toy_details(results))


def toy_temperature_finds_it(budget: str) -> AnalysisResult:
    """Su's answer: with T = 0.1 both losses find a 100 %-accurate b."""
    results, _ = _toy(0.1)
    measured = {f"{r.method}_accuracy": r.accuracy for r in results}
    found = [r for r in results if r.accuracy == 1.0]
    word = "holds" if len(found) == len(results) else "contradicted"
    cells = ", ".join(f"{r.method}: b in [{r.b_low:.3f}, {r.b_high:.3f}], accuracy {r.accuracy:.3f}" for r in results)
    reason = ("with T = 0.1 every optimum is 100 % accurate" if word == "holds"
              else "with T = 0.1 an optimum stays below 100 %")  # fmt: skip
    return AnalysisResult(word, f"{reason} ({cells}).", measured, _toy_details(results))


# --- Su: late in training cross-entropy behaves like smooth accuracy -----------------------------

LATE_RATIO_MAX, LATE_COSINE_MIN = 1.1, 0.9  # "tends to 1": within these at the last epoch
FAR_RATIO, FAR_COSINE = 1.5, 0.5  # beyond these at the last epoch the claim is contradicted


def ce_behaves_like_smooth_accuracy(budget: str) -> AnalysisResult:
    """Along a cross-entropy run (MLP on scikit-learn's digits), per epoch over the training set:
    the mean of ``-log p_y / (1 - p_y)`` and the cosine between the parameter gradients of
    cross-entropy and of smooth accuracy ``1 - p_y``.  Su: both tend to 1."""
    from lossbench.data import load_dataset
    from lossbench.losses import CrossEntropyLoss
    from lossbench.models import build_model
    from lossbench.train import fit

    epochs = 30 if budget == "paper" else 12
    data = load_dataset("digits")
    x, y = data.x_train, data.y_train
    torch.manual_seed(0)
    model = build_model("mlp", data, width=128)
    params = [p for p in model.parameters() if p.requires_grad]
    ratios, cosines = [], []

    def measure(epoch: int, row: dict) -> None:
        log_p = torch.log_softmax(model(x), dim=1).gather(1, y[:, None]).squeeze(1)
        one_minus_p = -torch.expm1(log_p)  # accurate where p_y is near 1
        ratio = (-log_p / one_minus_p.clamp_min(torch.finfo(log_p.dtype).tiny)).mean()
        g_ce = torch.autograd.grad(-log_p.mean(), params, retain_graph=True)
        g_sa = torch.autograd.grad(one_minus_p.mean(), params)
        flat_ce, flat_sa = torch.cat([g.flatten() for g in g_ce]), torch.cat([g.flatten() for g in g_sa])
        ratios.append(float(ratio.detach()))
        cosines.append(float(torch.nn.functional.cosine_similarity(flat_ce, flat_sa, dim=0)))

    fit(model, CrossEntropyLoss(), x, y, epochs=epochs, batch_size=64, optimizer="adam", lr=1e-3,
        generator=torch.Generator().manual_seed(0), on_epoch_end=measure)  # fmt: skip
    first_r, last_r, first_c, last_c = ratios[0], ratios[-1], cosines[0], cosines[-1]
    toward = last_r < first_r and last_c > first_c
    if last_r <= LATE_RATIO_MAX and last_c >= LATE_COSINE_MIN and toward:
        word = "holds"
    elif last_r > FAR_RATIO or last_c < FAR_COSINE:
        word = "contradicted"
    else:
        word = "inconclusive"
    reason = (f"mean -log p_y / (1 - p_y) went from {first_r:.3f} (epoch 1) to {last_r:.3f} (epoch {epochs}); the "
              f"cosine of the two losses' gradients from {first_c:.3f} to {last_c:.3f}")  # fmt: skip
    rows = "\n".join(f"| {i + 1} | {r:.4f} | {c:.4f} |" for i, (r, c) in enumerate(zip(ratios, cosines)))
    details = ("Cross-entropy run: MLP (width 128) on digits' training split, Adam lr 1e-3, batch 64, seed 0.\n\n"
               "| epoch | mean -log p_y / (1 - p_y) | cos(grad CE, grad (1 - p_y)) |\n|---|---|---|\n" + rows)  # fmt: skip
    measured = {"ratio_first": first_r, "ratio_last": last_r, "cosine_first": first_c, "cosine_last": last_c}
    assert all(math.isfinite(v) for v in measured.values())
    return AnalysisResult(word, reason + ".", measured, details)
