"""Results read back from storage: per dataset, each method's runs, summaries and tests.

Every number here is computed from trials in the storage and carries the trial numbers it
came from, so a report can be traced back to the runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from lossbench.bench.metrics import LOWER_IS_BETTER, METRICS, selection_metric
from lossbench.bench.runner import (
    CHOSEN_FROM_ATTR,
    CONFIG_ATTR,
    budget_trials,
    evaluation_seeds,
    final_runs,
    run_record,
)
from lossbench.bench.spec import DatasetSpec, MethodSpec, Spec
from lossbench.bench.stats import PairedTest, Summary, holm, paired_test, ranks, summarize
from lossbench.bench.storage import study_name


def metric_of(trial: FrozenTrial, metric: str) -> float:
    return float(run_record(trial).get("metrics", {}).get(metric, math.nan))


@dataclass
class MethodResult:
    method: MethodSpec
    tune_study: str
    final_study: str
    tune_trials: list[FrozenTrial]  # the equal budget: first `trials` complete, by number
    chosen_trial: int | None
    config: dict[str, Any] | None
    runs: dict[int, FrozenTrial]  # evaluation seed -> final run
    seeds: list[int]
    summaries: dict[str, Summary] = field(default_factory=dict)
    paired: PairedTest | None = None
    p_holm: float = math.nan
    rank: float = math.nan

    @property
    def complete(self) -> bool:
        return len(self.runs) == len(self.seeds)

    def values(self, metric: str) -> list[float]:
        """Test scores by seed order (nan for a diverged run)."""
        return [metric_of(self.runs[s], metric) for s in sorted(self.runs)]

    def budget_curve(self) -> list[float]:
        """Best validation score after each number of tuning trials (1, 2, ... by trial number):
        what a smaller budget would have found, so a report can show which method needs the
        least tuning."""
        best, curve = -math.inf, []
        for trial in sorted(self.tune_trials, key=lambda t: t.number):
            value = trial.value if trial.value is not None and trial.value == trial.value else -math.inf
            best = max(best, value)
            curve.append(best if best > -math.inf else math.nan)
        return curve

    @property
    def diverged_runs(self) -> int:
        return sum(int(metric_of(t, "diverged")) for t in self.runs.values())


@dataclass
class DatasetResult:
    dataset: DatasetSpec
    task: str
    metric: str
    methods: list[MethodResult]  # best first (by rank, then spec order)
    baseline: str | None

    def method(self, name: str) -> MethodResult:
        return next(m for m in self.methods if m.method.name == name)


def _task_of(trials: list[FrozenTrial]) -> str:
    for t in trials:
        metrics = run_record(t).get("metrics", {})
        return "multilabel" if "micro_f1" in metrics else "multiclass"
    return "multiclass"


def collect(spec: Spec, storage: optuna.storages.BaseStorage) -> list[DatasetResult]:
    seeds = evaluation_seeds(spec)
    results = []
    existing = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    for dataset in spec.datasets:
        rows = []
        for method in (m for m in spec.methods if m.runs_on(dataset)):
            tune_name, final_name = (study_name(spec.name, s, dataset.label, method.name) for s in ("tune", "final"))
            tune = optuna.load_study(study_name=tune_name, storage=storage) if tune_name in existing else None
            final = optuna.load_study(study_name=final_name, storage=storage) if final_name in existing else None
            rows.append(
                MethodResult(
                    method=method,
                    tune_study=tune_name,
                    final_study=final_name,
                    tune_trials=budget_trials(tune.get_trials(), spec.trials) if tune else [],
                    chosen_trial=final.user_attrs.get(CHOSEN_FROM_ATTR) if final else None,
                    config=final.user_attrs.get(CONFIG_ATTR) if final else None,
                    runs=final_runs(final.get_trials(), seeds) if final else {},
                    seeds=seeds,
                )
            )
        all_runs = [t for r in rows for t in r.runs.values()] + [t for r in rows for t in r.tune_trials]
        task = _task_of(all_runs)
        metric = selection_metric(spec.selection_metric, task)
        _score(rows, task, metric, spec.baseline)
        order = sorted(range(len(rows)), key=lambda i: (math.inf if math.isnan(rows[i].rank) else rows[i].rank, i))
        results.append(DatasetResult(dataset, task, metric, [rows[i] for i in order], spec.baseline))
    return results


def _score(rows: list[MethodResult], task: str, metric: str, baseline: str | None) -> None:
    for r in rows:
        r.summaries = {m: summarize([v for v in r.values(m) if v == v]) for m in METRICS[task]}
    means = [r.summaries[metric].mean if r.complete else math.nan for r in rows]
    for r, rank in zip(rows, ranks(means, higher_is_better=metric not in LOWER_IS_BETTER)):
        r.rank = rank if r.complete else math.nan
    base = next((r for r in rows if r.method.name == baseline and r.complete), None)
    if base is None:
        return
    tested = []
    for r in rows:
        if r is base or not r.complete:
            continue
        common = sorted(set(r.runs) & set(base.runs))
        a = [metric_of(r.runs[s], metric) for s in common]
        b = [metric_of(base.runs[s], metric) for s in common]
        keep = [i for i in range(len(common)) if a[i] == a[i] and b[i] == b[i]]
        r.paired = paired_test([a[i] for i in keep], [b[i] for i in keep])
        tested.append(r)
    for r, p in zip(tested, holm([r.paired.p_value for r in tested])):
        r.p_holm = p
