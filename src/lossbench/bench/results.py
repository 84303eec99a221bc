"""Results read back from storage: per dataset, each method's runs, summaries and tests.

Every number here is computed from trials in the storage and carries the trial numbers it
came from, so a report can be traced back to the runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial

from lossbench._paired import score_rounding, tied_within
from lossbench._ranking import RANKED_METHODS, Ranking, ranking
from lossbench.bench.methods import resolve_method
from lossbench.bench.metrics import (
    LOWER_IS_BETTER,
    METRIC_RANGE,
    METRICS,
    diverged_score,
    selection_metric,
    task_of_metrics,
)
from lossbench.bench.spec import SEED_PARAM, DatasetSpec, MethodSpec, Spec, evaluation_seeds
from lossbench.bench.stats import SIGNIFICANCE, PairedTest, Summary, holm, paired_test, ranks, summarize
from lossbench.bench.storage import (
    CHOSEN_FROM_ATTR,
    CONFIG_ATTR,
    budget_trials,
    current_choice,
    draw_number,
    final_runs,
    run_record,
    scored_through,
    stored_study_names,
    study_name,
)


def metric_of(trial: FrozenTrial, metric: str) -> float:
    return float(run_record(trial).get("metrics", {}).get(metric, math.nan))


def run_diverged(trial: FrozenTrial) -> bool:
    """Whether the run's held-out logits were not all finite (a record without the flag: no)."""
    return bool(run_record(trial).get("metrics", {}).get("diverged", 0.0))


def scored_as_diverged(trial: FrozenTrial, metric: str) -> bool:
    """Whether a run counts as diverged when runs are compared on ``metric``: it diverged, or its
    score is nan (then :func:`diverged_score` stands for it)."""
    return math.isnan(metric_of(trial, metric)) or run_diverged(trial)


@dataclass
class MethodResult:
    method: MethodSpec
    tune_study: str
    final_study: str
    tune_trials: list[FrozenTrial]  # the equal budget: first `trials` complete, by draw (storage.budget_trials)
    chosen_trial: int | None
    config: dict[str, Any] | None
    runs: dict[int, FrozenTrial]  # evaluation seed -> final run
    seeds: list[int]
    summaries: dict[str, Summary] = field(default_factory=dict)
    paired: PairedTest | None = None
    p_holm: float = math.nan
    rank: float = math.nan  # 1 = best; tied methods share the best rank they span (1, 2, 2, 4)
    tied: bool = False  # another complete method has the same mean
    edges: dict[str, str] = field(default_factory=dict)  # chosen parameter -> "lower" / "upper" end of its range

    @property
    def complete(self) -> bool:
        return len(self.runs) == len(self.seeds)

    @property
    def trained(self) -> bool:
        """Whether the method trained its runs (not one that reads another's through its decision: ``runs_of``)."""
        return self.method.runs_of is None

    def values(self, metric: str) -> list[float]:
        """Test scores by seed order (nan for a diverged run)."""
        return [metric_of(self.runs[s], metric) for s in sorted(self.runs)]

    def scored(self, metric: str) -> dict[int, float]:
        """Test scores by seed, a diverged run's as :func:`diverged_score` (how runs are compared)."""
        return {s: diverged_score(metric) if scored_as_diverged(t, metric) else metric_of(t, metric) for s, t in self.runs.items()}

    def budget_curve(self) -> list[float]:
        """Best validation score after each number of tuning trials (1, 2, ... in draw order, as the
        budget counts them: a retry in its draw's place): what a smaller budget would have found, so a
        report can show which method needs the least tuning."""
        best, curve = -math.inf, []
        for trial in sorted(self.tune_trials, key=draw_number):
            value = trial.value if trial.value is not None and trial.value == trial.value else -math.inf
            best = max(best, value)
            curve.append(best if best > -math.inf else math.nan)
        return curve

    def diverged_runs(self, metric: str) -> int:
        """The evaluation runs that count as diverged where runs are compared on ``metric`` (as runs.csv marks them)."""
        return sum(scored_as_diverged(t, metric) for t in self.runs.values())


@dataclass
class DatasetResult:
    dataset: DatasetSpec
    task: str
    metric: str
    methods: list[MethodResult]  # best first (by rank, then spec order)
    baseline: str | None

    def method(self, name: str) -> MethodResult:
        return next(m for m in self.methods if m.method.name == name)

    @property
    def trained_methods(self) -> list[MethodResult]:
        """The methods that trained their runs (a method reading another's, ``runs_of``, has none of its own)."""
        return [m for m in self.methods if m.trained]


@dataclass
class AcrossDatasets:
    """The methods ranked over the data sets scored in one ``metric`` (Friedman's test and Nemenyi's post hoc on
    each method's mean test score per data set: :func:`lossbench._ranking.ranking`)."""

    metric: str
    scores: pd.DataFrame  # rows: the data sets ranked over (labels); columns: the methods; the means over seeds
    ranking: Ranking | None  # None until two data sets have every method complete, or where fewer than three run on all
    waiting: list[str]  # data sets left out: a method's runs there are not complete yet
    partial: list[str]  # methods left out: they do not run on every data set of the metric


def across_datasets(spec: Spec, results: list[DatasetResult]) -> list[AcrossDatasets]:
    """One ranking per metric that two or more data sets are scored in, over the methods that run on all of them
    (in the spec's order), where three or more do (the fewest Friedman's test takes: two methods are compared by
    each data set's paired test); where the study has three methods but fewer run everywhere, an entry without a
    ranking that names them."""
    by_metric: dict[str, list[DatasetResult]] = {}
    for result in results:
        by_metric.setdefault(result.metric, []).append(result)
    out = []
    for metric, group in by_metric.items():
        named = [{r.method.name for r in result.methods} for result in group]
        seen = [m.name for m in spec.methods if any(m.name in names for names in named)]
        everywhere = [name for name in seen if all(name in names for names in named)]
        if len(group) < 2 or len(seen) < RANKED_METHODS:
            continue
        # (fewer than three methods on every data set: none ranked, the section says why)
        means = {} if len(everywhere) < RANKED_METHODS else {
            result.dataset.label: [result.method(name).summaries[metric].mean if result.method(name).complete
                                   else math.nan for name in everywhere] for result in group}  # fmt: skip
        labels = [label for label, row in means.items() if all(math.isfinite(v) for v in row)]
        scores = pd.DataFrame([means[label] for label in labels], index=labels, columns=everywhere, dtype=float)
        out.append(AcrossDatasets(  # (a selection metric reads higher as better, as the ranking does: SELECTION_METRICS)
            metric, scores, ranking(scores, alpha=SIGNIFICANCE) if len(labels) >= 2 else None,
            waiting=[label for label in means if label not in labels],
            partial=[name for name in seen if name not in everywhere],
        ))  # fmt: skip
    return out


def _task_of(trials: list[FrozenTrial], dataset: DatasetSpec) -> str:
    """The task its stored runs' metrics say; with none yet, the registered dataset's (a multi-label set's metric
    read as multiclass filed it under accuracy), else multiclass (a plugin's dataset not registered here)."""
    for t in trials:
        return task_of_metrics(run_record(t).get("metrics", {}))
    from lossbench.data import get_dataset_info  # (here only: a report of stored runs reads no data)

    try:
        return get_dataset_info(dataset.name).task
    except ValueError:
        return "multiclass"


def collect(spec: Spec, storage: optuna.storages.BaseStorage) -> list[DatasetResult]:
    seeds = evaluation_seeds(spec)
    results = []
    existing = stored_study_names(storage)
    for dataset in spec.datasets:
        rows = []
        for method in (m for m in spec.methods if m.runs_on(dataset) and m.runs_of is None):
            tune_name, final_name = (study_name(spec.name, s, dataset.label, method.name) for s in ("tune", "final"))
            tune = optuna.load_study(study_name=tune_name, storage=storage) if tune_name in existing else None
            final = optuna.load_study(study_name=final_name, storage=storage) if final_name in existing else None
            # (read only: no copies of the trials, which Optuna makes by default)
            budget = budget_trials(tune.get_trials(deepcopy=False), spec.trials) if tune else []
            attrs = final.user_attrs if final else {}
            chosen, config = attrs.get(CHOSEN_FROM_ATTR), attrs.get(CONFIG_ATTR)
            current = current_choice(spec, budget)
            if current is None or current.number != chosen:  # not chosen yet (a study that grew its trials: not again)
                chosen = config = None
            rows.append(
                MethodResult(
                    method=method,
                    tune_study=tune_name,
                    final_study=final_name,
                    tune_trials=budget,
                    chosen_trial=chosen,
                    config=config,
                    # only the runs of the current choice: a choice that changed re-trained every seed
                    runs=final_runs(final.get_trials(deepcopy=False), seeds, chosen, config) if final and chosen is not None else {},
                    seeds=seeds,
                )
            )
        for r in rows:
            if r.config is not None:
                r.edges = range_edges(r.config, resolve_method(r.method).search_space(spec.search))
        rows = _with_readers(spec, dataset, rows)
        all_runs = [t for r in rows for t in r.runs.values()] + [t for r in rows for t in r.tune_trials]
        task = _task_of(all_runs, dataset)
        metric = selection_metric(spec.selection_metric, task)
        _score(rows, task, metric, spec.baseline)
        order = sorted(range(len(rows)), key=lambda i: (math.inf if math.isnan(rows[i].rank) else rows[i].rank, i))
        results.append(DatasetResult(dataset, task, metric, [rows[i] for i in order], spec.baseline))
    return results


def _with_readers(spec: Spec, dataset: DatasetSpec, rows: list[MethodResult]) -> list[MethodResult]:
    """The trained methods' results and, in the spec's order, those of the methods that read their
    runs (``runs_of``): the same tuning trials, choice and evaluation runs, each run's metrics those
    it scored through the reader's decision rule (a run that did not score it is left out)."""
    trained = {r.method.name: r for r in rows}
    out = []
    for method in (m for m in spec.methods if m.runs_on(dataset)):
        if method.runs_of is None:
            out.append(trained[method.name])
            continue
        read = trained[method.runs_of]
        runs = {seed: scored_through(t, method.decision) for seed, t in read.runs.items()}
        out.append(replace(read, method=method, runs={s: t for s, t in runs.items() if t is not None}, edges=dict(read.edges)))
    return out


EDGE_FRACTION = 0.05  # a chosen value this close to an end of its range (on its sampling scale) is at the edge
EDGE_GRID = 3  # a grid's smallest or largest number is an edge from this many numbers on (of two, every value is)


def range_edges(config: dict[str, Any], space: dict[str, optuna.distributions.BaseDistribution]) -> dict[str, str]:
    """The chosen parameters that sit at an end of their search range, each with "lower" or
    "upper": the best may lie beyond it.  A number range is judged on its own scale (log or
    linear), a grid of three or more numbers by its smallest and largest choice; the searched
    seed has no edge that matters."""
    edges = {}
    for key, value in config.items():
        dist = space.get(key)
        if key == SEED_PARAM or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(dist, (optuna.distributions.FloatDistribution, optuna.distributions.IntDistribution)):
            scale = math.log if dist.log else float
            low, high, x = scale(dist.low), scale(dist.high), scale(min(max(value, dist.low), dist.high))
            position = (x - low) / (high - low) if high > low else 0.5
            if position <= EDGE_FRACTION:
                edges[key] = "lower"
            elif position >= 1 - EDGE_FRACTION:
                edges[key] = "upper"
        elif isinstance(dist, optuna.distributions.CategoricalDistribution):
            numbers = [c for c in dist.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
            if len(numbers) >= EDGE_GRID and value in (min(numbers), max(numbers)):
                edges[key] = "lower" if value == min(numbers) else "upper"
    return edges


def _score(rows: list[MethodResult], task: str, metric: str, baseline: str | None) -> None:
    """Each method's summaries, rank and paired test.  In ``metric`` (the one ranked and tested) a
    diverged run counts as :func:`diverged_score`, as in tuning; the other metrics summarise the
    runs that did not diverge (the report says how many did)."""
    for r in rows:
        r.summaries = {
            m: summarize(list(r.scored(m).values()) if m == metric else [v for v in r.values(m) if v == v], bounds=METRIC_RANGE[m])
            for m in METRICS[task]
        }  # fmt: skip
    means = [r.summaries[metric].mean if r.complete else math.nan for r in rows]
    # means equal up to the scores' rounding tie: that of the largest score, as the paired test reads it
    scored = [list(r.scored(metric).values()) for r in rows if r.complete]
    rounding = score_rounding(*scored) if scored else None  # (one threshold for the ranks' ties and the paired tests)
    means = list(tied_within(means, rounding)) if scored else means
    for r, mean, rank in zip(rows, means, ranks(means, higher_is_better=metric not in LOWER_IS_BETTER, ties="min")):
        r.rank = rank if r.complete else math.nan
        r.tied = r.complete and sum(1 for m in means if m == mean) > 1
    low, high = METRIC_RANGE[metric]
    base = next((r for r in rows if r.method.name == baseline and r.complete), None)
    if base is None:
        return
    others = [r for r in rows if r is not base]
    for r in others:
        if r.complete:
            common = sorted(set(r.runs) & set(base.runs))
            mine, theirs = r.scored(metric), base.scored(metric)
            r.paired = paired_test([mine[s] for s in common], [theirs[s] for s in common], bounds=(low - high, high - low),
                                   rounding=rounding)
    # Holm's family is every other method of the data set: one not tested yet (nan) counts as p = 1, so
    # a report of a study in progress never adjusts a p-value less than the finished study would.
    ps = [r.paired.p_value if r.paired is not None else math.nan for r in others]
    for r, p, adjusted in zip(others, ps, holm([1.0 if math.isnan(p) else p for p in ps])):
        r.p_holm = math.nan if math.isnan(p) else adjusted
