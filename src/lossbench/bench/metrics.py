"""Test and validation metrics, computed with torchmetrics from raw logits.

Probabilities are formed explicitly (softmax, or sigmoid for one-logit binary models and
multi-label models) before they reach torchmetrics, so nothing depends on torchmetrics guessing
whether a tensor holds logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_calibration_error,
    multiclass_f1_score,
    multiclass_recall,
    multilabel_average_precision,
    multilabel_f1_score,
)

METRICS = {
    "multiclass": ("accuracy", "macro_f1", "balanced_accuracy", "nll", "ece"),
    "multilabel": ("micro_f1", "macro_f1", "map", "bce"),
}
LOWER_IS_BETTER = frozenset({"nll", "ece", "bce"})


def selection_metric(requested: str, task: str) -> str:
    """The spec's selection metric where the task has it, else the task's headline metric."""
    return requested if requested in METRICS[task] else METRICS[task][0]


def class_probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """(N, C) probabilities; a single binary logit s becomes (sigma(-s), sigma(s))."""
    logits = logits.float()
    if task == "multilabel":
        return torch.sigmoid(logits)
    if logits.ndim == 1 or logits.shape[-1] == 1:
        s = logits.reshape(-1)
        return torch.stack([torch.sigmoid(-s), torch.sigmoid(s)], dim=1)
    return torch.softmax(logits, dim=1)


def compute_metrics(logits: torch.Tensor, target: torch.Tensor, task: str, num_classes: int) -> dict[str, float]:
    """Every metric of the task kind; a run whose logits are not finite is reported as diverged."""
    logits, target = logits.detach().cpu(), target.detach().cpu()
    if not bool(torch.isfinite(logits).all()):
        return {name: float("nan") for name in METRICS[task]} | {"diverged": 1.0}
    probs = class_probabilities(logits, task)
    if task == "multilabel":
        t = target.long()
        return {
            "micro_f1": float(multilabel_f1_score(probs, t, num_labels=num_classes, average="micro")),
            "macro_f1": float(multilabel_f1_score(probs, t, num_labels=num_classes, average="macro")),
            "map": float(multilabel_average_precision(probs, t, num_labels=num_classes, average="macro")),
            "bce": float(F.binary_cross_entropy(probs.clamp(1e-7, 1 - 1e-7), target.float())),
            "diverged": 0.0,
        }
    return {
        "accuracy": float(multiclass_accuracy(probs, target, num_classes=num_classes, average="micro")),
        "macro_f1": float(multiclass_f1_score(probs, target, num_classes=num_classes, average="macro")),
        "balanced_accuracy": float(multiclass_recall(probs, target, num_classes=num_classes, average="macro")),
        "nll": float(F.nll_loss(probs.clamp_min(1e-12).log(), target)),
        "ece": float(multiclass_calibration_error(probs, target, num_classes=num_classes, n_bins=15, norm="l1")),
        "diverged": 0.0,
    }
