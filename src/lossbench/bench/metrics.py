"""Test and validation metrics, computed with torchmetrics from raw logits.

The label metrics (accuracy, macro-F1, balanced accuracy; micro/macro-F1 for multi-label) read
the scores of the method's decision rule (:func:`decide`; under arg-max the logits themselves, as
torchmetrics does with any scores: no softmax is paid for them).  The probability metrics (NLL,
ECE, BCE) and mAP read the model's own logits: a decision rule changes how labels are read, not
the model's probabilities or rankings.  Probabilities are formed explicitly (softmax, or sigmoid
for one-logit binary models and multi-label models) for the metrics that read them, so nothing
depends on torchmetrics guessing whether a tensor holds logits.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from datetime import UTC, datetime

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import (
    multiclass_calibration_error,
    multilabel_average_precision,
    multilabel_f1_score,
)

from lossbench._checks import all_finite, largest_magnitude

METRICS = {
    "multiclass": ("accuracy", "macro_f1", "balanced_accuracy", "nll", "ece"),
    "multilabel": ("micro_f1", "macro_f1", "map", "bce"),
}
LOWER_IS_BETTER = frozenset({"nll", "ece", "bce"})
# The values each metric can take (a report clips its intervals to them): the log losses are
# unbounded above, every other metric lies in [0, 1].
METRIC_RANGE = {m: (0.0, math.inf if m in ("nll", "bce") else 1.0) for names in METRICS.values() for m in names}
ECE_BINS = 15  # the expected calibration error's equal-width confidence bins
# Metrics whose computation changed after runs were stored: when (UTC, the change's commit) and what they computed
# before. A run stored earlier holds another quantity under the name, and its logits are not kept to compute it
# again (the claims ledger leaves such values out: lossbench.ledger.judge).
METRIC_CHANGES: dict[str, tuple[datetime, str]] = {
    "nll": (datetime(2026, 12, 5, 5, 1, 27, tzinfo=UTC),
            "from probabilities clamped at 1e-12 (a sample's loss at most 27.6 nats)"),
    "bce": (datetime(2026, 12, 5, 5, 1, 27, tzinfo=UTC),
            "from probabilities clamped at 1e-7 (a label's loss at most 16 nats)"),
    "map": (datetime(2026, 12, 5, 10, 26, 54, tzinfo=UTC),
            "from float32 sigmoid probabilities, which tie every logit above ~17"),
}  # fmt: skip
ARGMAX = frozenset({"accuracy", "macro_f1", "balanced_accuracy"})  # multiclass metrics of the arg-max only
DECIDED = ARGMAX | {"micro_f1"}  # the label metrics: those that read the decision rule's scores


def computed_before_change(metric: str, started: datetime | None) -> bool:
    """Whether a run started at ``started`` computed ``metric`` as it was before its change (:data:`METRIC_CHANGES`).
    A naive ``started`` is local time, as Optuna reads its datetimes back (5.x stores UTC, 4.x local time)."""
    change = METRIC_CHANGES.get(metric)
    return change is not None and started is not None and started.astimezone(UTC) < change[0]


def diverged_score(metric: str) -> float:
    """What a diverged run (non-finite logits, nan metrics) scores in ``metric`` where runs are
    compared: the metric's worst value (0 for every selection metric), so that divergence counts
    against a method in tuning, in the report's ranks and paired tests and in the ledger, instead
    of leaving the seed out."""
    low, high = METRIC_RANGE[metric]
    return high if metric in LOWER_IS_BETTER else low


# Decision rules: how a run's logits become the scores its label metrics (DECIDED) read, and the
# tasks each applies to (its other metrics read the logits themselves, see compute_metrics).
# "argmax" reads the logits as they are (a multi-label logit is positive above 0).
# "logit_adjusted" is the post-hoc logit adjustment of Menon et al. (arXiv 2007.07314, eq. 3)
# with tau = 1: subtract the log prior of each class, estimated on the run's training part, the
# Bayes rule for the balanced error when the model estimates the training posterior.
# "thresholds" gives each label of a multi-label model the threshold that maximises that label's
# F1 on the run's training part (as the EXACT paper's code tunes its thresholds on the data it
# fits), applied to the held-out logits once the run ends.
DECISION_TASKS = {"argmax": ("multiclass", "multilabel"), "logit_adjusted": ("multiclass",), "thresholds": ("multilabel",)}
DECISIONS = tuple(DECISION_TASKS)


def f1_thresholds(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per label of (N, L) ``logits`` and 0/1 ``target``, the logit threshold whose rule "positive
    above it" has the highest F1 on these rows (the first best cut: the highest threshold).

    Predicting the k highest-scored rows positive gives F1 = 2 TP_k / (k + P); the threshold sits
    halfway between the k-th and (k+1)-th scores, which must differ (rows of equal scores fall on
    one side together).  A label with no positive row gets a threshold above every one of these rows'
    scores (none of them predicted positive; a later row scored higher still is).
    """
    scores, order = _at_least_float32(logits.detach()).sort(dim=0, descending=True)
    hits = target.float().gather(0, order).cumsum(0)  # TP_k for k = 1..N, per label
    k = torch.arange(1, len(scores) + 1, device=scores.device, dtype=scores.dtype)[:, None]
    f1 = 2 * hits / (k + hits[-1:])  # P = hits[-1]
    # a cut only where the scores differ: within tied rows no threshold separates them
    ends = torch.cat([scores[:-1] > scores[1:], torch.ones_like(scores[:1], dtype=torch.bool)])
    best = torch.where(ends, f1, -1.0).argmax(dim=0)  # index k - 1 of the first best cut
    above = scores.gather(0, best[None]).squeeze(0)
    # past the last row: 1 lower (below it however large it is: at |logit| > 1e7, 2 lower rounds onto it)
    last = torch.minimum(scores[-1:] - 2, torch.nextafter(scores[-1:], torch.tensor(-math.inf)))
    below = torch.cat([scores[1:], last]).gather(0, best[None]).squeeze(0)
    thresholds = (above + below) / 2
    thresholds = torch.where(thresholds >= above, below, thresholds)  # (neighbouring floats: the midpoint rounds onto above)
    return torch.where(hits[-1] > 0, thresholds, torch.maximum(scores[0] + 1, torch.nextafter(scores[0], torch.tensor(math.inf))))


def decide(logits: torch.Tensor, rule: str, class_counts: torch.Tensor, thresholds: torch.Tensor | None = None) -> torch.Tensor:
    """The scores decision rule ``rule`` reads from ``logits``: single-label logits ((N, C), or
    one binary logit per row) given the training part's ``class_counts`` (C,) for
    ``logit_adjusted`` (a class with no training sample counts as one, so its adjusted score
    stays finite); multi-label logits shifted by the labels' ``thresholds`` (:func:`f1_thresholds`)
    for ``thresholds``, so that 0 is each label's threshold."""
    if rule == "argmax":
        return logits
    if rule == "thresholds":
        if thresholds is None:
            raise ValueError("decision 'thresholds' needs the labels' thresholds")
        wide = _at_least_float32(logits)  # (in half precision a threshold rounds onto the scores it parts)
        return wide - thresholds.to(wide)
    if rule != "logit_adjusted":
        raise ValueError(f"unknown decision rule {rule!r}; known: {DECISIONS}")
    counts = class_counts.to(device="cpu", dtype=torch.float64).clamp_min(1.0)  # (on the CPU: MPS has no float64)
    log_prior = (counts / counts.sum()).log().to(device=logits.device, dtype=logits.dtype)
    if logits.ndim == 2 and logits.shape[1] == counts.numel():
        return logits - log_prior
    # one logit s = log(p1 / p0) per row: the adjustment is that of the log odds
    return logits - (log_prior[1] - log_prior[0])


def selection_metric(requested: str, task: str) -> str:
    """The spec's selection metric where the task has it, else the task's headline metric."""
    return requested if requested in METRICS[task] else METRICS[task][0]


def task_of_metrics(metrics: Mapping[str, float]) -> str:
    """The task of a stored run from its metrics (a record names no task): only multi-label runs
    have micro-F1."""
    return "multilabel" if "micro_f1" in metrics else "multiclass"


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32, or in its own dtype where that is wider (float64 logits keep what float32 would lose)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def class_probabilities(logits: torch.Tensor, task: str, log: bool = False) -> torch.Tensor:
    """(N, C) probabilities; a single binary logit s becomes (sigma(-s), sigma(s)).  ``log``: their logs,
    from the logits (a probability of 1e-30 keeps its log)."""
    logits = _at_least_float32(logits)
    if task == "multilabel":
        return F.logsigmoid(logits) if log else torch.sigmoid(logits)
    if logits.ndim == 1 or logits.shape[-1] == 1:
        s = logits.reshape(-1)
        return torch.stack([F.logsigmoid(-s), F.logsigmoid(s)] if log else [torch.sigmoid(-s), torch.sigmoid(s)], dim=1)
    return torch.log_softmax(logits, dim=1) if log else torch.softmax(logits, dim=1)


def accuracy(scores: torch.Tensor, target: torch.Tensor) -> float:
    """Micro accuracy of (N, C) scores (logits or probabilities) against class indices, bit for
    bit as torchmetrics' ``multiclass_accuracy(scores, target, average="micro")``: the arg-max of
    the scores, then correct / total as a float32 division (0 for no samples).  Written out
    because torchmetrics' generic path costs several times more, and the curves score every
    epoch (tests/bench/test_metrics.py checks the two agree).
    """
    total = target.numel()
    if total == 0:
        return 0.0
    return _accuracy(int((scores.argmax(dim=1) == target).sum()), total)


def _accuracy(correct: int, total: int) -> float:
    # IEEE division is correctly rounded: numpy's float32 quotient is torch's, without two more ops.
    return float(np.float32(correct) / np.float32(total))


def _multiclass(name: str, probs: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """``probs`` are (N, C) probabilities, or any (N, C) scores for the metrics in ``ARGMAX``."""
    kw = {"num_classes": num_classes, "validate_args": False}
    if name == "accuracy":
        return accuracy(probs, target)
    if name == "macro_f1":
        return float(_macro_f1(*_class_stats(probs.argmax(-1), target, num_classes)))
    if name == "balanced_accuracy":
        # The mean recall over the classes in the target (scikit-learn's balanced_accuracy_score), as
        # torchmetrics' macro recall computes it but for its weights: those also count a class that is
        # predicted yet absent from the target, as a recall of 0.
        return float(_balanced(_recalls(*_class_stats(probs.argmax(-1), target, num_classes)), target, num_classes))
    if name == "nll":  # (probs: the log-probabilities here, see compute_metrics: a capped log under-counts)
        return float(F.nll_loss(probs, target))
    if name == "ece":
        return float(multiclass_calibration_error(probs, target, n_bins=ECE_BINS, norm="l1", **kw))
    raise ValueError(f"unknown multiclass metric {name!r}; known: {METRICS['multiclass']}")


def _class_stats(preds: torch.Tensor, target: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """True positives, false positives and false negatives (int64, (..., C)) of (..., N) predicted classes
    against the (N,) target, for each leading index (a pack's runs) at once.  By counts of classes, in memory
    N + C: torchmetrics' global counts go through a C x C confusion matrix (12.6 GB at 40,000 classes), its
    sample-wise ones through (runs, N, C) one-hot tensors."""
    lead = preds.shape[:-1]
    offsets = torch.arange(math.prod(lead), device=preds.device).view(*lead, 1) * num_classes
    predicted, true = (preds + offsets).flatten(), (target.expand_as(preds) + offsets).flatten()
    size = math.prod(lead) * num_classes
    tp = torch.bincount(true[predicted == true], minlength=size).view(*lead, num_classes)
    return tp, torch.bincount(predicted, minlength=size).view(*lead, num_classes) - tp, \
        torch.bincount(true, minlength=size).view(*lead, num_classes) - tp  # fmt: skip


def _safe_divide(num: torch.Tensor, denom: torch.Tensor) -> torch.Tensor:
    """``num / denom`` in float32 (at least), 0 where ``denom`` is 0, as torchmetrics divides."""
    num = num if num.is_floating_point() else num.float()
    denom = denom if denom.is_floating_point() else denom.float()
    return torch.where(denom != 0, num / denom, torch.zeros((), dtype=num.dtype, device=num.device))


def _macro_f1(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """The mean F1 over the classes predicted or in the target, from :func:`_class_stats`: torchmetrics'
    ``multiclass_f1_score(average="macro")``, operation for operation (bit for bit: tests/bench/test_metrics.py)."""
    score = _safe_divide(2.0 * tp, 2.0 * tp + 1.0 * fn + fp)
    weights = torch.ones_like(score)
    weights[tp + fp + fn == 0] = 0.0
    return _safe_divide(weights * score, weights.sum(-1, keepdim=True)).sum(-1)


def _recalls(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """Each class's recall (0 where it is absent from the target), as torchmetrics' ``multiclass_recall(average=None)``."""
    return _safe_divide(tp, tp + fn)


def _balanced(recall: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The mean of (..., C) per-class recalls over the classes present in ``target`` (0 where none is)."""
    present = (torch.bincount(target, minlength=num_classes) > 0).to(recall.dtype)
    if not present.any():
        return recall.new_zeros(recall.shape[:-1])
    return (recall * present / present.sum()).sum(-1)


def _multilabel(name: str, probs: torch.Tensor, target: torch.Tensor, num_labels: int) -> float:
    kw = {"num_labels": num_labels, "validate_args": False}
    if name in ("micro_f1", "macro_f1"):
        return float(multilabel_f1_score(probs, target.long(), average=name[:5], **kw))
    if name == "map":  # (probs: the logits' ranks here, see compute_metrics)
        return float(multilabel_average_precision(probs, target.long(), average="macro", **kw))
    if name == "bce":  # (probs: the logits here, see compute_metrics)
        return float(F.binary_cross_entropy_with_logits(probs, target.float()))
    raise ValueError(f"unknown multilabel metric {name!r}; known: {METRICS['multilabel']}")


def compute_metrics(
    logits: torch.Tensor, target: torch.Tensor, task: str, num_classes: int, names: tuple[str, ...] | None = None,
    decided: torch.Tensor | None = None,
) -> dict[str, float]:  # fmt: skip
    """The named metrics (default: all of the task kind) and ``diverged`` (1.0 for non-finite logits).

    ``decided``: the scores the method's decision rule reads from ``logits`` (:func:`decide`; by
    default the logits), which the label metrics (``DECIDED``) read; the others read ``logits``.
    A diverged run's metrics are nan: the runner scores it as the worst value and the report
    counts it.
    """
    names = METRICS[task] if names is None else names
    if len(target) == 0:  # (torchmetrics fails on no rows; the bench refuses an empty split before this)
        raise ValueError("compute_metrics needs at least one sample, got an empty target")
    logits = logits.detach() if logits.requires_grad else logits  # held-out logits come without a graph
    decided = logits if decided is None else decided.detach()
    if not all_finite(logits):
        return {name: float("nan") for name in names} | {"diverged": 1.0}
    if task == "multilabel":
        # (the labels themselves: a label is positive where its score is above 0, and a float32 sigmoid of a
        # score below ~6e-8 is exactly 0.5, which the F1s' threshold would read as negative)
        probs = (decided > 0).float() if set(names) & DECIDED else None
        read = {"bce": logits.float(), "map": ranks_in_unit(logits) if "map" in names else None}
        return {name: _multilabel(name, read.get(name, probs), target, num_classes) for name in names} | {"diverged": 0.0}
    # A single binary logit s: its probabilities are (sigma(-s), sigma(s)); its labels the arg-max of (-s, s), which
    # is s > 0 (the float32 sigmoid of an s below ~6e-8 is 0.5 both ways, an arg-max tie read as class 0)
    wide = logits.ndim == 2 and logits.shape[1] > 1
    probs = functools.cache(lambda: class_probabilities(logits, task))

    def read(name: str) -> torch.Tensor:
        if name == "nll":
            return class_probabilities(logits, task, log=True)
        if name not in DECIDED:
            return probs()
        return decided if wide else torch.stack([-decided.reshape(-1), decided.reshape(-1)], dim=1)

    return {name: _multiclass(name, read(name), target, num_classes) for name in names} | {"diverged": 0.0}


# Rows x classes up to which metrics_of_runs scores a pack's runs together: its softmax and log-softmax are
# two more (runs, rows, classes) tensors, where one run at a time holds one run's (and small packs gain most:
# 10 classes, 360 rows: 0.25 ms a run together against 0.6 ms alone).
TOGETHER_MAX = 1 << 14


def metrics_of_runs(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> list[dict[str, float]] | None:
    """:func:`compute_metrics` of each of K runs' (K, N, C) single-label logits against one target, read
    by arg-max, in a few calls for every run instead of a dozen per run (bit for bit the same values:
    every run's class counts and calibration bins at once;
    tests/bench/test_metrics.py compares them), where rows x classes is at most TOGETHER_MAX (beyond it, run by run).
    None where that does not apply (one binary logit per row)."""
    k_runs, rows, classes = logits.shape
    if classes < 2 or rows == 0:
        return None
    if rows * classes > TOGETHER_MAX:  # (one run at a time: the same values, by definition)
        return [compute_metrics(run, target, "multiclass", num_classes) for run in logits]
    finite = [math.isfinite(v) for v in logits.detach().abs().amax((1, 2)).tolist()]  # (as all_finite: before the cast)
    logits = _at_least_float32(logits.detach())
    targets = target.expand(k_runs, -1)
    preds = logits.argmax(dim=2)
    correct = (preds == targets).sum(1).tolist()
    stats = _class_stats(preds, target, num_classes)
    f1, balanced = _macro_f1(*stats).tolist(), _balanced(_recalls(*stats), target, num_classes).tolist()
    log_probs = torch.log_softmax(logits, dim=2)
    probs = torch.softmax(logits, dim=2)
    confidence, predicted = probs.max(dim=2)
    ece = _calibration_errors(confidence.float(), (predicted == targets).float()).tolist()  # (torchmetrics: float32)
    out = []
    for k in range(k_runs):
        if not finite[k]:
            out.append({name: float("nan") for name in METRICS["multiclass"]} | {"diverged": 1.0})
            continue
        values = {"accuracy": _accuracy(correct[k], rows), "macro_f1": f1[k],
                  "balanced_accuracy": balanced[k], "nll": float(F.nll_loss(log_probs[k], target)), "ece": ece[k]}  # fmt: skip
        out.append({name: values[name] for name in METRICS["multiclass"]} | {"diverged": 0.0})
    return out


def _calibration_errors(confidence: torch.Tensor, correct: torch.Tensor, bins: int = ECE_BINS) -> torch.Tensor:
    """Each row's expected calibration error (L1, ``bins`` equal bins) as torchmetrics'
    ``multiclass_calibration_error`` computes it for one run (its ``_binning_bucketize``), for (K, N)
    top-class confidences and 0/1 correctness at once."""
    edges = torch.linspace(0, 1, bins + 1, dtype=confidence.dtype, device=confidence.device)
    index = torch.bucketize(confidence, edges, right=True) - 1
    zeros = confidence.new_zeros(len(confidence), bins + 1)
    count = zeros.scatter_add(1, index, torch.ones_like(confidence))
    mean_confidence = torch.nan_to_num(zeros.scatter_add(1, index, confidence) / count)
    accuracy = torch.nan_to_num(zeros.scatter_add(1, index, correct) / count)
    return (torch.abs(accuracy - mean_confidence) * (count / count.sum(1, keepdim=True))).sum(1)


def ranks_in_unit(logits: torch.Tensor) -> torch.Tensor:
    """(N, L) scores in [0, 1] that order each label's rows exactly as its logits do, ties included:
    the number of the label's logits below each, over N.  Average precision reads only that order;
    torchmetrics reads scores in [0, 1] as they are, and a float32 sigmoid would tie every logit
    above ~17 at 1.0 (confident rows tie, and AP would change with the logits' scale)."""
    columns = logits.T.contiguous()  # (in their own dtype: a cast could tie them)
    below = torch.searchsorted(columns.sort(dim=1).values, columns)  # the first index >= each: the count below
    # (float32 on MPS, which has no float64: counts below 2^24 over one N keep their order exactly)
    return below.T.to(torch.float32 if logits.device.type == "mps" else torch.float64) / max(len(logits), 1)


class EpochScores:
    """One metric of each epoch's held-out logits, read from the device once, at the end.

    Held-out accuracy of (N, C) logits, the usual selection metric, is kept per epoch as two
    0-d tensors on the device (the correct count and :func:`largest_magnitude` of the logits,
    finite exactly when every logit is): no host sync per epoch, and the values are those of
    :func:`compute_metrics`, nan for an epoch with non-finite logits.  Any other metric is
    computed by :func:`compute_metrics` as each epoch ends.  A pack's runs may count their epoch
    together (:meth:`count_runs`) and each add its own count.
    """

    def __init__(self, metric: str, target: torch.Tensor, task: str, num_classes: int) -> None:
        self.metric, self.target, self.task, self.num_classes = metric, target, task, num_classes
        self._counts: list[torch.Tensor] = []
        self._largest: list[torch.Tensor] = []
        self._values: list[float] = []
        self._deferred: bool | None = None  # decided by the first epoch's logits (their shape holds for the run)

    def deferred(self, logits: torch.Tensor) -> bool:
        """Whether the epochs' metric is the deferred accuracy (decided by the first epoch's logits)."""
        if self._deferred is None:
            self._deferred = (
                self.metric == "accuracy" and self.task == "multiclass" and self.target.numel() > 0
                and logits.ndim == 2 and logits.shape[1] > 1
            )  # fmt: skip
        return self._deferred

    def count_runs(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The deferred accuracy's count and largest magnitude ``(K,)`` of K runs' logits ``(K, N, C)``
        against this target, in two ops each instead of two per run (for :meth:`add`'s ``counted``)."""
        detached = logits.detach()
        return (detached.argmax(dim=2) == self.target).sum(1), detached.abs().amax((1, 2))

    def add(self, logits: torch.Tensor, counted: tuple[torch.Tensor, torch.Tensor] | None = None,
            decided: torch.Tensor | None = None) -> None:  # fmt: skip
        """One epoch's held-out logits (N, C) and their ``decided`` scores (as :func:`compute_metrics`
        takes them); ``counted``: their count and largest magnitude where a pack computed them
        (:meth:`count_runs`, of the logits as they are; used only for the deferred accuracy)."""
        if self.deferred(logits):
            scores = logits if decided is None else decided
            count, largest = counted if counted is not None else ((scores.argmax(dim=1) == self.target).sum(), largest_magnitude(logits))
            self._counts.append(count)
            self._largest.append(largest)
        else:
            self._values.append(compute_metrics(logits, self.target, self.task, self.num_classes, (self.metric,), decided)[self.metric])

    def values(self) -> list[float]:
        """The epochs' values, in order."""
        if not self._deferred:
            return list(self._values)
        total = self.target.numel()
        counts, largest = torch.stack(self._counts).tolist(), torch.stack(self._largest).tolist()
        return [_accuracy(c, total) if math.isfinite(m) else math.nan for c, m in zip(counts, largest)]
