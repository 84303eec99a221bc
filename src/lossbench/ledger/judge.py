"""A bench claim's study read back from storage and judged by the record's rule.

Scores are the stored test metrics of the final runs, seed by seed; a diverged run (non-finite
logits) scores 0, the EXACT paper's rule for a run whose weights became NaN, fixed here before
any run; a dataset where both methods diverged on every seed is inconclusive (added 2026-12-07,
when no stored study had such a dataset).  Every number keeps the trial numbers it came from.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd

from lossbench._ranking import RANKED_METHODS, Ranking, ranking
from lossbench.bench.metrics import METRIC_CHANGES, computed_before_change
from lossbench.bench.results import DatasetResult, MethodResult, collect, metric_of, scored_as_diverged
from lossbench.bench.spec import Spec, SpecError
from lossbench.bench.stats import holm
from lossbench.bench.storage import run_record
from lossbench.ledger.records import Claim, Published
from lossbench.ledger.verdict import (
    POINTS,
    Effect,
    Rule,
    Verdict,
    across_datasets_verdict,
    both_failed,
    paired_verdict,
    score_difference,
    score_rounding,
)

SECONDARY = ("macro_f1", "nll", "ece")  # shown beside the claim's metric in every row


@dataclass
class Cell:
    """One method on one dataset: our scores per seed, the source's number beside them."""

    dataset: str
    method: str
    scores: list[float]  # per evaluation seed, in seed order; diverged runs scored diverged_score(metric)
    diverged: int
    published: Published | None
    secondary: dict[str, float]  # mean over seeds of each secondary metric (diverged runs left out)
    chosen_trial: int | None
    config: dict[str, Any] | None  # the chosen tuning trial's parameters
    final_trials: list[int]
    tune_study: str
    final_study: str
    outdated: tuple[str, ...] = ()  # secondary metrics its runs computed before they changed (left out: nan)

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else math.nan

    @property
    def std(self) -> float:
        """Population std (ddof 0), as the EXACT paper's tables report it."""
        if not self.scores:
            return math.nan
        m = self.mean
        return math.sqrt(sum((s - m) ** 2 for s in self.scores) / len(self.scores))


@dataclass
class DatasetOutcome:
    dataset: str
    treatment: Cell
    baseline: Cell
    verdict: Verdict | None  # None while runs are missing
    # the word the claim counts on this dataset: the verdict's, but for a per-dataset claim over several datasets
    # an opposite that Holm's correction over them does not keep (see every_dataset)
    word: str | None = None
    both_failed: bool = False  # both methods diverged on every seed: the dataset shows nothing about the claim


@dataclass
class Outcome:
    claim: Claim
    spec: Spec
    budget: str
    variation: str
    cells: dict[str, dict[str, Cell]]  # dataset -> method -> cell
    datasets: list[DatasetOutcome]
    verdict: Verdict | None  # the claim's: over datasets when several, else the one dataset's
    ranking: Ranking | None = None
    compute_seconds: float = 0.0  # summed run time of every stored trial of the study
    runs: int = 0
    missing: list[str] = field(default_factory=list)  # "dataset / method" units without all seeds

    @property
    def complete(self) -> bool:
        return not self.missing


def _cell(result: DatasetResult, r: MethodResult, claim: Claim) -> Cell:
    metric, seeds = claim.metric, sorted(r.runs)
    for s in seeds:  # (a metric the runs never computed would read as nan, every run as diverged)
        stored = run_record(r.runs[s]).get("metrics", {})
        if metric not in stored:
            raise ValueError(f"claim {claim.id!r}: the runs of {result.dataset.label} / {r.method.name} have no metric "
                             f"{metric!r} (their metrics: {', '.join(sorted(stored)) or 'none'})")  # fmt: skip
    scored = r.scored(metric)
    scores = [scored[s] for s in seeds]
    diverged = sum(scored_as_diverged(r.runs[s], metric) for s in seeds)
    if any(computed_before_change(metric, t.datetime_start) for t in r.runs.values()):
        raise ValueError(f"claim {claim.id!r}: runs of {result.dataset.label} / {r.method.name} computed {metric} "
                         f"before it changed ({METRIC_CHANGES[metric][1]}); run its study anew (`lossbench claims run {claim.id} --fresh` with its budget and variation)")  # fmt: skip
    secondary, outdated = {}, []
    for m in SECONDARY:
        if any(computed_before_change(m, t.datetime_start) for t in r.runs.values()):
            secondary[m] = math.nan  # (another quantity under its name: left out, not mixed with the current one)
            outdated.append(m)
            continue
        values = [metric_of(t, m) for t in r.runs.values()]
        values = [v for v in values if v == v]
        secondary[m] = sum(values) / len(values) if values else math.nan
    label = result.dataset.label
    return Cell(
        dataset=label, method=r.method.name, scores=scores, diverged=diverged,
        published=claim.published.get(label, {}).get(r.method.name), secondary=secondary,
        chosen_trial=r.chosen_trial, config=r.config, final_trials=[r.runs[s].number for s in sorted(r.runs)],
        tune_study=r.tune_study, final_study=r.final_study, outdated=tuple(outdated),
    )  # fmt: skip


def holm_words(verdicts: list[Verdict]) -> tuple[list[str], list[bool], list[float]]:
    """Each dataset's word where the opposite counts only if Holm's correction over the datasets keeps
    it, whether it was kept, and the Holm-adjusted p-values of the opposite (see :func:`every_dataset`)."""
    alpha = verdicts[0].rule.alpha
    # (a test that is undefined shows nothing: p = 1 in the family, which only makes the others stricter)
    adjusted = holm([1.0 if math.isnan(v.p_opposite) else v.p_opposite for v in verdicts])
    opposed = [v.word == "contradicted" and a <= alpha for v, a in zip(verdicts, adjusted)]
    words = [v.word if v.word != "contradicted" or kept else (v.unopposed or "inconclusive")
             for v, kept in zip(verdicts, opposed)]  # fmt: skip
    return words, opposed, adjusted


def counted_word(word: str, own: Verdict) -> str:
    """The word a case counts with (``word``, from :func:`holm_words`), and its own where Holm's correction
    did not keep its opposite."""
    return word if word == own.word else f"{word} (contradicted alone; not kept by Holm's correction)"


def _defined(pick: Callable[[list[float]], float], values: list[float]) -> float:
    """``pick`` (min or max) of the values that are not nan (a sign test's missing interval), else nan."""
    kept = [v for v in values if not math.isnan(v)]
    return pick(kept) if kept else math.nan


def _zero_variance(v: Verdict) -> str:
    """Says that a p of 0 is the t-test's limit at zero variance, not a measured tail."""
    return f": the same difference on all {v.effect.n} seeds, zero variance" if v.effect.constant else ""


def every_dataset(verdicts: list[Verdict], names: list[str]) -> Verdict:
    """A per-dataset claim over several datasets: it holds where it holds on every dataset.

    The word: ``contradicted`` if the opposite is shown on some dataset after Holm's correction over
    the datasets (any one of k datasets showing the opposite by chance is a union of k tests: without
    the correction a claim with no effect would be contradicted on 3 datasets in about 14 % of
    studies at alpha = 0.05); else ``holds`` if every dataset holds it (each at alpha: every one
    must, so no correction is needed); else ``equivalent`` if every dataset shows equivalence; else
    ``inconclusive``.  A dataset whose opposite the correction does not keep counts with the word its
    rule gives without it (:attr:`Verdict.unopposed`).  The effect shown is the mean of the
    per-dataset estimates, with the lowest and highest ends of the per-dataset intervals
    (``Effect.spans_datasets``: not a confidence interval of that mean).
    """
    alpha = verdicts[0].rule.alpha
    words, opposed, adjusted = holm_words(verdicts)
    if any(opposed):
        word = "contradicted"
    elif all(w == "holds" for w in words):
        word = "holds"
    elif all(w == "equivalent" for w in words):
        word = "equivalent"
    else:
        word = "inconclusive"
    counts = ", ".join(f"{w} on {', '.join(n for n, x in zip(names, words) if x == w)}" for w in dict.fromkeys(words))
    # an "equal" rule's p_opposite is the nearer side's p doubled (each side is tested at alpha / 2): say so,
    # since the dataset's own reason shows the side's p against alpha / 2
    doubled = " (the nearer side's, doubled)" if verdicts[0].rule.direction == "equal" else ""
    shown = [(kept, f"{n} (p = {v.p_opposite:.3g}{doubled}{_zero_variance(v)}, Holm-adjusted {a:.3g})")
             for n, v, a, kept in zip(names, verdicts, adjusted, opposed) if v.word == "contradicted"]  # fmt: skip
    kept_on, dropped = [t for k, t in shown if k], [t for k, t in shown if not k]
    if kept_on:
        reason = (f"contradicted: the claim is per dataset; the opposite is shown on {', '.join(kept_on)} after Holm's "
                  f"correction over the {len(verdicts)} tests at alpha = {alpha:g}.")  # fmt: skip
    else:
        reason = f"{word}: the claim is per dataset; by dataset: {counts}."
    if dropped:  # (beside a kept opposite too: the reader of the reason sees every dataset that showed one)
        reason += (f" The opposite shown on {', '.join(dropped)} alone is not kept by Holm's correction over "
                   f"the {len(verdicts)} tests at alpha = {alpha:g}.")  # fmt: skip
    estimates = [v.effect.estimate for v in verdicts]
    first = verdicts[0].effect
    mean = sum(estimates) / len(estimates)
    signs = [v.effect.method.startswith("sign test") for v in verdicts]
    tests = "sign test over seeds" if all(signs) else "paired t over seeds" + (", or the sign test where counts are censored" if any(signs) else "")
    effect = Effect(mean, _defined(min, [v.effect.ci_low for v in verdicts]), _defined(max, [v.effect.ci_high for v in verdicts]),
                    first.ci_level, _defined(max, [v.effect.p_value for v in verdicts]), len(verdicts),
                    f"per dataset: {tests}; the claim must hold on every dataset (Holm over the datasets "
                    "for the opposite)", spans_datasets=True)  # fmt: skip
    return Verdict(word, verdicts[0].rule, effect, reason)


def _over_the_mean(datasets: list[DatasetOutcome], rule: Rule, seeds: int) -> Verdict:
    """A claim about the mean over the datasets, from each dataset's mean difference; a dataset where both methods
    diverged on every seed is left out (its difference of 0 would count as evidence of equivalence), and said."""
    judged = [d for d in datasets if not d.both_failed]
    if not judged:
        return both_failed(rule, seeds)
    differences = {d.dataset: score_difference(d.treatment.mean, d.baseline.mean) for d in judged}
    rounding = score_rounding(*[(d.treatment.mean, d.baseline.mean) for d in judged])
    verdict = across_datasets_verdict(differences, rule, rounding=rounding, units=POINTS)
    left = [d.dataset for d in datasets if d.both_failed]
    if not left:
        return verdict
    return dataclasses.replace(verdict, reason=f"{verdict.reason} Left out: {', '.join(left)}, where both methods "
                               "diverged on every seed (two failures show nothing about the claim).")  # fmt: skip


def judge(claim: Claim, spec: Spec, storage: optuna.storages.BaseStorage, budget: str, variation: str) -> Outcome:
    """Read the study back and apply the claim's rule (per dataset, then over datasets)."""
    for role, name in (("treatment", claim.treatment), ("baseline", claim.baseline)):
        if name not in {m.name for m in spec.methods}:  # (else every data set would be left out: 0 units judged)
            raise SpecError(f"claim {claim.id!r}: its {role} {name!r} is not a method of study {spec.name!r}")
    results = collect(spec, storage)
    cells: dict[str, dict[str, Cell]] = {}
    missing, compute, runs = [], 0.0, 0
    for result in results:
        for r in result.methods:
            cells.setdefault(result.dataset.label, {})[r.method.name] = _cell(result, r, claim)
            if not r.complete:
                missing.append(f"{result.dataset.label} / {r.method.name}")
            for t in [*r.tune_trials, *r.runs.values()] if r.trained else []:  # (a reader's runs are another's)
                compute += float(run_record(t).get("seconds", 0.0))
                runs += 1
    datasets = []
    for label, row in cells.items():
        if claim.treatment not in row or claim.baseline not in row:
            continue
        t, b = row[claim.treatment], row[claim.baseline]
        complete = len(t.scores) == len(b.scores) == spec.seeds
        verdict = paired_verdict(t.scores, b.scores, claim.rule, units=POINTS) if complete else None
        failed = complete and t.diverged == b.diverged == spec.seeds
        if failed:
            verdict = both_failed(claim.rule, spec.seeds, verdict.effect.estimate)
        datasets.append(DatasetOutcome(label, t, b, verdict, verdict.word if verdict else None, failed))
    verdict = None
    if datasets and all(d.verdict is not None for d in datasets):
        if len(datasets) == 1:
            verdict = datasets[0].verdict
        elif claim.scope == "across-datasets":
            verdict = _over_the_mean(datasets, claim.rule, spec.seeds)
        else:
            verdict = every_dataset([d.verdict for d in datasets], [d.dataset for d in datasets])
            for d, word in zip(datasets, holm_words([d.verdict for d in datasets])[0]):
                d.word = word
    table = None
    if claim.ranking and not missing and len(cells) >= 2:
        # (over the methods run on every dataset: a method restricted to some has no rank on the others)
        scores = pd.DataFrame({label: {m: c.mean for m, c in row.items()} for label, row in cells.items()}).T.dropna(axis=1)
        table = ranking(scores, alpha=claim.rule.alpha) if scores.shape[1] >= RANKED_METHODS else None
    return Outcome(claim, spec, budget, variation, cells, datasets, verdict, table, compute, runs, missing)
