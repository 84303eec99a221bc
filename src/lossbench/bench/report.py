"""The report: markdown, CSV and a self-contained HTML page, rebuilt from storage alone.

``report.md`` and ``report.html`` are rendered from one list of blocks (:mod:`lossbench._document`),
so they say the same thing; ``leaderboard.csv``, ``runs.csv`` and ``trials.csv`` hold the numbers
behind them, trial by trial.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
import itertools
import json
import math
from pathlib import Path
from typing import Any

from lossbench._document import Block, Heading, Image, Para, Table, to_html, to_markdown
from lossbench._paths import atomic_write, atomic_write_all, inside
from lossbench._provenance import version_line
from lossbench._ranking import RANKED_METHODS
from lossbench.bench.methods import Method, resolve_method
from lossbench.bench.metrics import LOWER_IS_BETTER, METRICS
from lossbench.bench.results import (
    EDGE_FRACTION,
    EDGE_GRID,
    AcrossDatasets,
    DatasetResult,
    MethodResult,
    across_datasets,
    scored_as_diverged,
)
from lossbench.bench.spec import THEN_PREFIX, MethodSpec, Spec, resamples_split
from lossbench.bench.stats import SIGNIFICANCE, format_p
from lossbench.bench.storage import ALONE_ATTR, OWN_VALIDATION, PACKING_OFF, VALIDATION_ATTR, run_record
from lossbench.registry import Choice, FloatRange, SearchSpace

PLOT_KINDS = ("curves", "tuning", "budget")  # per dataset: learning curves, tuning trials, budget curves
REPORT_FILES = ("report.md", "leaderboard.csv", "runs.csv", "trials.csv", "report.html")  # and plots/
# Written beside a report: which study it is, so that a report never replaces files lossbench did not
# write there, nor another study's report.
REPORT_MANIFEST = ".lossbench-report.json"
NOT_RECORDED = "not recorded (runs stored before lossbench recorded it)"


DIGITS = 4  # a score's decimals in the report; a leaderboard prints more where its ranks need them (_digits)


def _fmt(x: float | None, digits: int = DIGITS, sign: str = "") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:{sign}.{digits}f}"


def _digits(result: DatasetResult) -> int:
    """The decimals that print apart every two neighbours in rank that are not tied, and every
    difference from a baseline not tied with it: 4, or more, as ties are judged at the scores' float32
    rounding, far below 4 decimals (0.98124 and 0.98116 both printed 0.9812, ranked 1 and 2)."""
    ranked = [r for r in result.methods if not math.isnan(r.rank)]  # (best first)
    base = next((r for r in ranked if r.method.name == result.baseline), None)
    apart = [(a.summaries[result.metric].mean, b.summaries[result.metric].mean)
             for a, b in itertools.pairwise(ranked) if a.rank != b.rank]  # fmt: skip
    apart += [(abs(r.paired.mean_difference), 0.0) for r in ranked
              if r.paired and r.paired.mean_difference and base and r.rank != base.rank]  # fmt: skip
    digits = DIGITS
    while digits < 17 and any(_fmt(a, digits) == _fmt(b, digits) for a, b in apart):  # (17: any two doubles)
        digits += 1
    return digits


def _value(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else repr(v) if isinstance(v, str) else str(v)


def _params(config: dict | None, edges: dict[str, str] | None = None) -> str:
    if not config:
        return "-"
    edges = edges or {}
    return ", ".join(f"{k}={_value(v)}" + (f" ({edges[k]} edge)" if k in edges else "") for k, v in sorted(config.items()))


def _rank(r: MethodResult) -> str:
    return "-" if math.isnan(r.rank) else f"{r.rank:g}" + (" (tie)" if r.tied else "")


def _vs_baseline(r: MethodResult, baseline: str | None, digits: int = DIGITS) -> str:
    if r.paired is None:
        return "baseline" if r.method.name == baseline else "-"
    p = r.paired
    constant = " (the same on every seed)" if p.same_on_every_seed else ""
    d = [_fmt(x, digits, "+") for x in (p.mean_difference, p.ci_low, p.ci_high)]
    return f"{d[0]} [{d[1]}, {d[2]}]{constant}, p {format_p(p.p_value)}, Holm {format_p(r.p_holm)}"


def paired_summary(result: DatasetResult) -> str:
    """Which methods the paired tests tell apart from the baseline after Holm's correction: the ranking
    orders means, and with few seeds most of its steps are within the noise."""
    tested = [r for r in result.methods if r.paired is not None and not math.isnan(r.p_holm)]
    apart = [r for r in tested if r.p_holm < SIGNIFICANCE]
    level = f"after Holm's correction at {SIGNIFICANCE:g}"
    if not tested and all(r.method.name != result.baseline for r in result.methods):
        return f"No paired test: the baseline `{result.baseline}` does not run on this data set (its `datasets` leave it out)."
    if not tested and not any(r.method.name == result.baseline and r.complete for r in result.methods):
        return f"No paired test: the baseline `{result.baseline}` has no complete runs on this data set."
    if not tested:
        return f"No paired test: no other method has complete runs beside the baseline `{result.baseline}` here."
    if not apart:
        return (f"No method is shown to differ from `{result.baseline}` {level} ({len(tested)} tested): the ranking "
                "above orders means that these seeds do not tell apart from the baseline's.")  # fmt: skip
    said = ", ".join(f"`{r.method.name}` ({'above' if r.paired.mean_difference > 0 else 'below'})" for r in apart)
    rest = len(tested) - len(apart)
    others = (f"; the other {rest} tested {'is' if rest == 1 else 'are'} not" if rest else
              f" ({'the one' if len(tested) == 1 else f'all {len(tested)}'} tested)")  # fmt: skip
    # (over seeds of each method's chosen configuration: a copy of the baseline can differ by its tuning alone)
    return (f"Shown to differ from `{result.baseline}` {level}, each as its tuning chose it (seeds re-train one "
            f"configuration): {said}{others}.")  # fmt: skip


def leaderboard_header(result: DatasetResult) -> list[str]:
    """Column names: fixed words, the metric named in one header only (no collision is possible); the
    paired test's column only where the study names a baseline."""
    paired = [f"vs {result.baseline}: difference [95% CI], p"] if result.baseline is not None else []
    return ["rank", "method", f"test {result.metric}, mean ± std", "95% CI", *paired, "chosen hyperparameters", "trials"]


def leaderboard_rows(result: DatasetResult) -> list[list[str]]:
    """One display row per method, best first (cells in :func:`leaderboard_header`'s order)."""
    rows, digits = [], _digits(result)
    for r in result.methods:
        s = r.summaries.get(result.metric)
        status = "" if r.complete else f" (incomplete: {len(r.runs)}/{len(r.seeds)} seeds)"
        diverged = r.diverged_runs(result.metric)
        if diverged:
            status += f" ({diverged} diverged)"
        final = ",".join(str(r.runs[k].number) for k in sorted(r.runs))
        paired = [_vs_baseline(r, result.baseline, digits)] if result.baseline is not None else []
        rows.append([
            _rank(r), r.method.name + status, f"{_fmt(s.mean, digits)} ± {_fmt(s.std, digits)}" if s else "-",
            f"[{_fmt(s.ci_low, digits)}, {_fmt(s.ci_high, digits)}]" if s else "-", *paired,
            _params(r.config, r.edges), f"tune #{r.chosen_trial}; final #{final}" if r.runs else "-",
        ])  # fmt: skip
    return rows


def _secondary(result: DatasetResult) -> Table:
    other = [m for m in METRICS[result.task] if m != result.metric]
    rows = []
    for r in result.methods:
        cells = []
        for m in other:
            s = r.summaries.get(m)
            cells.append(f"{_fmt(s.mean)} ± {_fmt(s.std)} [{_fmt(s.ci_low)}, {_fmt(s.ci_high)}]" if s and s.n else "-")
        diverged = r.diverged_runs(result.metric)  # (their metrics are nan: these means leave them out)
        left_out = f" ({diverged} of {len(r.runs)} runs diverged, left out)" if diverged else ""
        rows.append([r.method.name + left_out, *cells])
    lower = [m for m in other if m in LOWER_IS_BETTER]
    header = ["method", *(f"test {m}" + (" (lower is better)" if m in lower else "") for m in other)]
    return Table(header, rows)


# -- what every method ran with -------------------------------------------------------------------


def _space(space: FloatRange | SearchSpace) -> str:
    if isinstance(space, Choice):
        return "{" + ", ".join(_value(o) for o in space.options) + "}"
    return f"{_value(space.low)} .. {_value(space.high)}" + (" (log)" if space.log else "")


def method_settings(spec: Spec) -> Table:
    """Every method's settings that are not tuned (fixed by the spec, scheduled, or the loss's and
    transforms' defaults) and what is tuned, with the ranges searched; a two-stage method's second
    stage on a row of its own."""
    rows = []
    for m in spec.methods:
        datasets = ", ".join(m.datasets) if m.datasets else "all"
        loss_name = m.loss + (f" (its model: {_params(m.model_params)})" if m.model_params else "")
        if m.runs_of is not None:
            rows.append([m.name, loss_name, "-", "-", "-", f"none: the runs of {m.runs_of}, read through the decision {m.decision}", datasets])
            continue
        method = resolve_method(m)
        tuned = list(method.search_space(spec.search))
        first = [k for k in tuned if not k.startswith(THEN_PREFIX)]
        rows.append([m.name, loss_name, *_stage_settings(spec, method, first, m.schedule), datasets])
        if method.then is not None and m.then is not None:
            then = [k[len(THEN_PREFIX) :] for k in tuned if k.startswith(THEN_PREFIX)]
            name = f"{m.name}, then {m.then.epochs} epoch{'s' if m.then.epochs != 1 else ''} at lr x {_value(m.then.lr_scale)}"
            rows.append([name, m.then.loss, *_stage_settings(spec, method.then, then, {}, THEN_PREFIX), datasets])
    return Table(["method", "loss", "fixed loss settings", "schedules", "transforms", "searched", "datasets"], rows)


def _stage_settings(spec: Spec, method: Method, tuned: list[str], schedule: dict[str, Any], shown_as: str = "") -> list[str]:
    """A stage's fixed loss settings, schedules, transforms and searched keys (``tuned``, as the stage's
    own search space names them; shown with ``shown_as`` before them, as the runs' parameters are named)."""
    m = method.spec
    loss = dict(m.params)
    loss.update({p.name: p.default for p in method.loss.hyperparams
                 if f"loss.{p.name}" not in tuned and p.name not in m.params and f"loss.{p.name}" not in schedule})  # fmt: skip
    schedules = [f"{k}: {_value(s.start)} -> {_value(s.end)} per epoch (geometric"
                 + ("" if s.endpoint else ", the last epoch short of the end") + ")" for k, s in schedule.items()]  # fmt: skip
    transforms = []
    for name, fixed, params in method.transforms:
        settings = {**{p.name: p.default for p in params if f"{name}.{p.name}" not in tuned}, **fixed}
        transforms.append(f"{name}({_params(settings)})" if settings else name)
    searched = [f"{shown_as}{k} in {_space(_searched(spec, method, k))}" for k in tuned]
    return [_params(loss), "; ".join(schedules) or "-", "; ".join(transforms) or "-", "; ".join(searched) or "-"]


def _searched(spec: Spec, method: Method, key: str) -> FloatRange | SearchSpace:
    """The range or grid a key of a stage's search space is searched over, as the spec or the registry gives it."""
    if key in spec.search:
        return spec.search[key]
    if key in method.spec.search:
        return method.spec.search[key]
    prefix, name = key.split(".", 1)
    params = method.loss.hyperparams if prefix == "loss" else next(ps for t, _, ps in method.transforms if t == prefix)
    return next(p.space for p in params if p.name == name)


def study_settings(spec: Spec) -> Table:
    """The spec's study-wide and training settings, shared by every method."""
    top = {k: v for k, v in dataclasses.asdict(spec).items() if k not in ("name", "datasets", "methods", "train", "search")}
    rows = [[k, _value(v)] for k, v in top.items()]
    rows += [[f"train.{k}", _value(v)] for k, v in dataclasses.asdict(spec.train).items()]
    return Table(["setting", "value"], rows)


# -- provenance ---------------------------------------------------------------------------------


def _records(results: list[DatasetResult]):
    for result in results:
        for r in result.trained_methods:
            for t in [*r.tune_trials, *r.runs.values()]:
                yield result, r, t, run_record(t)


def _distinct(values) -> str:
    seen = sorted({str(v) for v in values if v is not None})
    return ", ".join(seen) if seen else NOT_RECORDED


def provenance(results: list[DatasetResult]) -> Table:
    """What the runs were made with, as their records say, and when; and who wrote this report."""
    records = list(_records(results))
    envs = [rec["environment"] for *_, rec in records if "environment" in rec]
    versions = [f"{e['lossbench']}" + (f" (commit {e['commit']})" if e.get("commit") else "") for e in envs]
    times = sorted(t.datetime_complete for _, _, t, _ in records if t.datetime_complete is not None)
    when = f"{times[0]:%Y-%m-%d %H:%M} to {times[-1]:%Y-%m-%d %H:%M}" if times else "-"
    rows = [
        ["report written", f"{dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} by {version_line()}"],
        ["runs finished", when],
        ["lossbench (runs)", _distinct(versions) if envs else NOT_RECORDED],
        ["torch", _distinct(e.get("torch") for e in envs) if envs else NOT_RECORDED],
        ["torch threads per worker", _distinct(e.get("threads") for e in envs) if envs else NOT_RECORDED],
        ["device", _distinct(e.get("device") for e in envs) if envs else NOT_RECORDED],
        ["workers", _distinct(rec.get("worker", "").split(":")[0] or None for *_, rec in records)],
        ["training calls", _packing(records)],
    ]
    return Table(["", ""], rows)


def _packing(records: list[tuple[DatasetResult, MethodResult, Any, dict[str, Any]]]) -> str:
    """How the runs trained, as their records say: packed (the largest pack), and which methods' runs
    trained one at a time and why."""
    sizes = [rec["pack"] for *_, rec in records if "pack" in rec]
    if not sizes:
        return NOT_RECORDED
    alone: dict[str, set[str]] = {}
    for result, r, _, rec in records:
        if ALONE_ATTR in rec:
            alone.setdefault(rec[ALONE_ATTR], set()).add(f"{r.method.name} on {result.dataset.label}")
    parts = [f"packed, up to {max(sizes)} runs per call"] if max(sizes) > 1 else []
    parts += [f"one run at a time ({reason}, --pack 1)" if reason == PACKING_OFF else
              f"one run at a time: {', '.join(sorted(units))} ({reason})" for reason, units in sorted(alone.items())]  # fmt: skip
    return "; ".join(parts) or "one run per call"


def split_sizes(result: DatasetResult) -> str:
    """The training and scored sizes of the tuning and final runs, as their records say."""
    parts = []
    for stage, trials, words in (("tuning", [t for r in result.methods for t in r.tune_trials], ("fit", "validation")),
                                 ("final", [t for r in result.methods for t in r.runs.values()], ("train", "test"))):  # fmt: skip
        sizes = {(s["fit"], s["scored"]) for s in (run_record(t).get("sizes") for t in trials) if s}
        if sizes:
            listed = " or ".join(f"{a} {words[0]} / {b} {words[1]}" for a, b in sorted(sizes))
            parts.append(f"{stage} runs: {listed}")
    if not parts and not any(r.tune_trials or r.runs for r in result.methods):
        return "Samples: no runs stored yet."
    return "Samples: " + "; ".join(parts) + "." if parts else f"Samples: {NOT_RECORDED}."


def across_table(across: AcrossDatasets) -> Table:
    """The methods by mean rank over the data sets, with each one's mean test score and rank on each (in the
    decimals that print apart two means a data set ranks apart, as a leaderboard's do: :func:`_digits`)."""
    r, scores = across.ranking, across.scores
    apart = [(scores.at[label, a], scores.at[label, b]) for label in r.ranks.index
             for a, b in itertools.combinations(r.ranks.columns, 2) if r.ranks.at[label, a] != r.ranks.at[label, b]]  # fmt: skip
    digits = DIGITS
    while digits < 17 and any(_fmt(a, digits) == _fmt(b, digits) for a, b in apart):
        digits += 1
    header = ["mean rank", "method", *(f"{label}: mean (rank)" for label in r.ranks.index)]
    rows = [[f"{r.mean_ranks[name]:.2f}", name, *(f"{_fmt(scores.at[label, name], digits)} ({r.ranks.at[label, name]:g})"
                                                  for label in r.ranks.index)] for name in r.mean_ranks.index]  # fmt: skip
    return Table(header, rows)


def across_summary(across: AcrossDatasets) -> str:
    """What the ranks over the data sets tell apart (Friedman's test, then Nemenyi's post hoc), and what they
    leave out."""
    left = []
    if across.waiting:
        left.append(f"{', '.join(across.waiting)} (a method's runs there are not complete yet)")
    if across.partial:
        left.append(f"{', '.join(f'`{name}`' for name in across.partial)} (not run on every data set)")
    left_out = f" Left out: {'; '.join(left)}." if left else ""
    r = across.ranking
    if r is None and len(across.scores.columns) < RANKED_METHODS:
        return (f"No ranking: it takes {RANKED_METHODS} methods run on every data set, and "
                f"{len(across.scores.columns)} are.{left_out}")  # fmt: skip
    if r is None:
        return f"Not ranked yet: a ranking takes two data sets with every method's runs complete.{left_out}"
    k = len(r.mean_ranks)
    if math.isnan(r.friedman_p):
        return f"Every data set ties all {k} methods: there is no ranking to test.{left_out}"
    tested = (f"Over {r.n_datasets} data sets, Friedman's test that the {k} methods rank alike gives p "
              f"{format_p(r.friedman_p)}; Nemenyi's critical difference at {r.alpha:g} is {r.critical_difference:.2f} "
              f"(the largest gap two mean ranks can have is {k - 1})")  # fmt: skip
    order = list(r.mean_ranks.index)
    apart = [f"`{a}` above `{b}`" for i, a in enumerate(order) for b in order[i + 1:] if r.nemenyi_p.at[a, b] <= r.alpha]
    if r.friedman_p > r.alpha:
        return f"{tested}: these data sets do not tell the methods apart by their ranks.{left_out}"
    if not apart:
        return (f"{tested}: Friedman's test rejects that the methods rank alike, but no two mean ranks differ by the "
                f"critical difference: Nemenyi's post hoc tells no pair apart.{left_out}")  # fmt: skip
    return f"{tested}: it tells apart {', '.join(apart)}; no other two.{left_out}"


# -- the document -------------------------------------------------------------------------------


def _protocol(spec: Spec, results: list[DatasetResult]) -> str:
    stopping = spec.train.early_stopping  # (final runs then train on the tuning runs' fit part: execution.DataCache)
    final = ("the tuning runs' fit part (the validation part held out to choose each run's epoch: early stopping)"
             if stopping else "the full training split")  # fmt: skip
    return (f"Protocol: {spec.trials} tuning trials per method ({spec.sampler} sampler) scored on "
            f"{_validation(spec, results)}{' at their best epoch' if stopping else ''}; the chosen configuration "
            f"re-trained with {spec.seeds} seeds on {final} and scored on the test split. Model "
            f"`{spec.train.model}`, optimiser {spec.train.optimizer}, {spec.train.epochs} epochs, batch "
            f"{spec.train.batch_size}. Mean ± sample std over seeds, Student-t 95% CI clipped to the metric's "
            f"range; a diverged run (non-finite logits) counts as the metric's worst value in them, the ranks and "
            f"the tests, and is left out of the secondary metrics; {_paired(spec)}. Tied means share the best rank they span.")  # fmt: skip


def _validation(spec: Spec, results: list[DatasetResult]) -> str:
    """The validation split the tuning runs were scored on, as their records say (a record that does
    not say: the spec's split of the training data)."""
    carved = f"a {100 * spec.val_fraction:g}% {spec.val_split} validation split"
    own = [result.dataset.label for result in results
           if any(run_record(t).get(VALIDATION_ATTR) == OWN_VALIDATION for r in result.methods for t in r.tune_trials)]  # fmt: skip
    if not own:
        return carved
    if len(own) == len(results):
        return "each data set's own validation split"
    return f"{carved} ({', '.join(own)}: the data set's own validation split)"


def _paired(spec: Spec) -> str:
    if spec.baseline is None:
        return "no baseline named, so no paired tests"
    return (f"two-sided paired t-test against `{spec.baseline}` over seeds (difference = method - baseline, with its 95% CI; "
            "a difference the same on every seed, one test example on each, say, leaves the t-test no variance: its "
            "p is then the exact sign-flip test's, 2 / 2^n over n seeds, marked 'the same on every seed'), "
            "Holm-adjusted across every other method of the data "
            "set (one not complete yet counts as p = 1, so a report in progress adjusts no less than the finished "
            f"study). The intervals and tests are over seeds: {_conditional(spec)}")


def _conditional(spec: Spec) -> str:
    """What the intervals over seeds hold fixed: with ``resample_splits`` each seed has a split of its own
    on the data sets whose split it draws (``resamples_split``); the others keep their fixed test split."""
    chosen = "on each method's chosen configuration"
    if not spec.resample_splits:
        return f"conditional on the test split and {chosen}"
    groups: dict[bool | None, list[str]] = {}
    for d in spec.datasets:
        try:
            drawn = resamples_split(d)
        except ValueError:  # (a plugin's dataset, its plugin not imported here)
            drawn = None
        groups.setdefault(drawn, []).append(d.label)
    own = ("each seed with its own train/test split (resample_splits), so they include the variation over splits "
           "(the configuration was chosen on the first split, whose training rows hold most of the others' test rows)")
    if set(groups) == {True}:
        return f"{own}; conditional {chosen}"
    parts = [f"on {', '.join(groups[True])}, {own}"] if True in groups else []
    if False in groups:
        parts.append(f"{', '.join(groups[False])}: the fixed test split on every seed (shipped with the data or given "
                     "as test_path; resample_splits does not draw it), conditional on it")  # fmt: skip
    if None in groups:
        parts.append(f"{', '.join(groups[None])}: not known here (its dataset is not registered: pass --plugins)")
    return f"{'; '.join(parts)}; conditional {chosen}"


def blocks(spec: Spec, results: list[DatasetResult], plots: dict[str, tuple[Path, bytes]],
           acrosses: list[AcrossDatasets]) -> list[Block]:  # fmt: skip
    """The report's document; ``plots``: each figure's path and PNG (written with the report's files);
    ``acrosses``: :func:`across_datasets`'s rankings."""
    out: list[Block] = [Heading(1, f"lossbench report: {spec.name}"), Para(_protocol(spec, results)),
                        Heading(2, "Provenance"), provenance(results),
                        Heading(2, "Methods"), method_settings(spec),
                        Heading(2, "Study settings"), study_settings(spec)]  # fmt: skip
    for result in results:
        out += [Heading(2, f"{result.dataset.label} (test {result.metric})"), Para(split_sizes(result)),
                Table(leaderboard_header(result), leaderboard_rows(result))]  # fmt: skip
        if result.baseline is not None:
            out.append(Para(paired_summary(result)))
        if any(r.edges for r in result.methods):
            out.append(Para(f"(lower edge) / (upper edge): chosen within {EDGE_FRACTION:.0%} of an end of its "
                            "search range (on its sampling scale), or the smallest / largest of a grid of "
                            f"{EDGE_GRID} or more numbers; the best value may lie beyond the range searched."))  # fmt: skip
        if len(METRICS[result.task]) > 1:
            out += [Para("Other test metrics, mean ± std [95% CI]:"), _secondary(result)]
        for kind, alt in zip(PLOT_KINDS, ("learning curves", "tuning trials", "tuning budget")):
            figure = plots.get(f"{_slug(result)}_{kind}")
            if figure is not None:
                out.append(Image(alt, *figure))
    for across in acrosses:
        out.append(Heading(2, f"Across the data sets (test {across.metric})"))
        if across.ranking is not None:
            out += [Para("Each data set ranks the methods by their mean test score (1 = best; tied means share the "
                         "average of the ranks they span, as Friedman's test takes them, where a leaderboard above gives "
                         "them the best); the methods are listed by their mean rank over the data sets."),
                    across_table(across)]  # fmt: skip
        out.append(Para(across_summary(across)))
        figure = plots.get(_ranks_plot(across))
        if figure is not None:
            out.append(Image("critical-difference diagram", *figure))
    return out


def _ranks_plot(across: AcrossDatasets) -> str:
    return f"ranks_{across.metric}"  # (a data set's plots end in one of PLOT_KINDS, never a metric's name)


# A plot's name is the slug plus a digest and "_<kind>.png": far below the 255-byte file name limit.
SLUG_BYTES = 100


def _slug(result: DatasetResult) -> str:
    """The dataset label as a file name: as it is where it is one, else with its other characters replaced
    and a digest of the label added ("wine a" and "wine_a" are two data sets, and two plots).  A label
    longer than ``SLUG_BYTES`` (UTF-8) is cut there, on a character boundary, and gets the digest too; so
    does one with upper case (or any letter case-folding changes): "Adult" and "adult" are one file name
    where case does not count (macOS, Windows), and lower-case labels keep their names."""
    label = result.dataset.label
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)
    if slug == label and len(label.encode()) <= SLUG_BYTES and slug == slug.casefold():
        return slug
    cut = slug.encode()[:SLUG_BYTES].decode(errors="ignore")  # (drops a character the cut split)
    return f"{cut}-{hashlib.sha256(label.encode()).hexdigest()[:8]}"


# -- CSV ----------------------------------------------------------------------------------------


# A text cell starting with one of these is a formula to a spreadsheet (a method named "=1+1"); a leading
# "'" keeps it text.  Numbers are written as they are (-0.5 stays a number).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerows([_csv_cell(v) for v in row] for row in [header, *rows])
    return buf.getvalue()


def _blank(x: float | None) -> Any:
    """None for a missing number (an empty CSV cell; a DataFrame's NaN)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _loss_and_transforms(m: MethodSpec) -> tuple[str, str]:
    """A method's loss and its transforms joined by "+" (a second stage's after ", then ", as the report's
    methods table shows it)."""
    stages = [m] if m.then is None else [m, m.then]
    chains = ["+".join(t.name for t in s.transforms) for s in stages]
    return ", then ".join(s.loss for s in stages), ", then ".join(c or "-" for c in chains) if any(chains) else ""


def leaderboard_records(results: list[DatasetResult]) -> tuple[list[str], list[list[Any]]]:
    """The leaderboard's header and rows, values as they are (None where blank): ``leaderboard.csv``'s
    cells and :func:`lossbench.bench.compare`'s DataFrame (read back from the CSV, a method named
    "None" or "-x" came back NaN or "'-x")."""
    metrics = sorted({m for r in results for m in METRICS[r.task]})
    header = ["dataset", "selection_metric", "rank", "tied", "method", "loss", "transforms", "seeds_done",
              "diverged_runs", "mean_difference_vs_baseline", "difference_ci_low", "difference_ci_high",
              "difference_same_on_every_seed", "p_value", "p_holm", "chosen_tune_trial", "final_trials", "config",
              "at_range_edge"]  # fmt: skip
    # (<metric>_n: the runs summarised: the ranked metric counts a diverged run as its worst score, the
    # others leave it out)
    header += [f"{m}_{s}" for m in metrics for s in ("mean", "std", "ci_low", "ci_high", "n")]
    rows = []
    for result in results:
        for r in result.methods:
            p = r.paired
            row = [
                result.dataset.label, result.metric, _blank(r.rank), r.tied, r.method.name,
                *_loss_and_transforms(r.method), len(r.runs), r.diverged_runs(result.metric),
                p.mean_difference if p else None, _blank(p.ci_low) if p else None, _blank(p.ci_high) if p else None,
                p.same_on_every_seed if p else None, _blank(p.p_value) if p else None, _blank(r.p_holm), r.chosen_trial,
                " ".join(str(r.runs[k].number) for k in sorted(r.runs)), json.dumps(r.config, sort_keys=True),
                json.dumps(r.edges, sort_keys=True),
            ]  # fmt: skip
            for m in metrics:
                s = r.summaries.get(m)
                row += [_blank(s.mean), _blank(s.std), _blank(s.ci_low), _blank(s.ci_high), s.n] if s else [None] * 5
            rows.append(row)
    return header, rows


def leaderboard_csv(results: list[DatasetResult]) -> str:
    return _csv(*leaderboard_records(results))


def runs_csv(results: list[DatasetResult]) -> str:
    """Every final run with its study, trial number and seed: the rows behind the leaderboard.  A run
    with ``diverged`` 1 counts as its ranked metric's worst value there (its metrics here are nan)."""
    metrics = sorted({m for r in results for m in METRICS[r.task]})
    rows = []
    for result in results:
        for r in result.methods:
            for seed in sorted(r.runs):
                t = r.runs[seed]
                record = run_record(t)
                m = record.get("metrics", {})
                rows.append([result.dataset.label, r.method.name, r.final_study, t.number, seed,
                             record.get("worker", ""), record.get("seconds", ""),
                             record.get("environment", {}).get("device", ""), int(scored_as_diverged(t, result.metric)),
                             *[m.get(k, "") for k in metrics]])  # fmt: skip
    return _csv(["dataset", "method", "study", "trial", "seed", "worker", "seconds", "device", "diverged", *metrics], rows)


def trials_csv(results: list[DatasetResult]) -> str:
    """Every tuning trial of the equal budget: its parameters (``param.<name>``), its scores
    (``metric.<name>``: validation, and the training part's where recorded) and whether it was
    chosen.  The prefixes keep parameter and metric names apart from the fixed columns."""
    trials = [(result, r, t) for result in results for r in result.trained_methods for t in r.tune_trials]
    params = sorted({k for _, _, t in trials for k in t.params})
    metrics = sorted({k for _, _, t in trials for k in run_record(t).get("metrics", {})})
    rows = []
    for result, r, t in trials:
        record = run_record(t)
        rows.append([result.dataset.label, r.method.name, r.tune_study, t.number, t.number == r.chosen_trial,
                     _blank(t.value), record.get("seed", ""), record.get("worker", ""), record.get("seconds", ""),
                     *[t.params.get(k, "") for k in params],
                     *[_blank(record.get("metrics", {}).get(k)) for k in metrics]])  # fmt: skip
    header = ["dataset", "method", "study", "trial", "chosen", "validation_score", "seed", "worker", "seconds"]
    return _csv(header + [f"param.{k}" for k in params] + [f"metric.{k}" for k in metrics], rows)


def check_report_folder(out_dir: str | Path, study: str, where: str = "--out") -> None:
    """Refuse a folder where study ``study``'s report would replace files lossbench did not write (a
    report file there without lossbench's manifest or database) or another study's report, or where a
    report file or plot is a symbolic link (see ``lossbench._paths.inside``): before any run, not after."""
    out = Path(out_dir)
    for name in (*REPORT_FILES, REPORT_MANIFEST, "plots"):
        inside(out, name)
    if (out / "plots").is_dir():
        for entry in (out / "plots").iterdir():
            inside(out, "plots", entry.name)
    present = [name for name in REPORT_FILES if (out / name).exists()] + (["plots/"] if (out / "plots").exists() else [])
    manifest = out / REPORT_MANIFEST
    # (the manifest whether or not report files are there yet: another study's report in progress writes
    # it first and its first file a second later, and would have been silently replaced)
    if manifest.is_file():
        try:
            owner = json.loads(manifest.read_text())["study"]
        except (OSError, ValueError, TypeError, KeyError) as err:  # (lossbench writes it whole: someone else's, or damaged)
            reason = err.strerror if isinstance(err, OSError) else "not a report manifest"
            raise ValueError(f"{where} {out}: its report manifest {REPORT_MANIFEST} is unreadable ({reason}); delete it "
                             f"if {out} holds study {study!r}'s report, or give the study another folder") from None  # fmt: skip
        if owner != study:
            raise ValueError(f"{where} {out} holds the report of study {owner!r}; give study {study!r} another folder "
                             "(a storage holding both writes each in its own folder: `lossbench report --out DIR`)")  # fmt: skip
    elif present and not (out / "lossbench.db").exists():  # (a report of an older lossbench sits beside its database)
        raise ValueError(f"{where} {out} holds {', '.join(present)}, which lossbench did not write there; choose a new "
                         "or empty folder, or move them")  # fmt: skip


def write_report(spec: Spec, results: list[DatasetResult], out_dir: str | Path) -> list[Path]:
    """Write report.md, report.html, leaderboard.csv, runs.csv, trials.csv and plots/ under
    ``out_dir`` (report.md first), and the manifest that says whose they are (see
    :func:`check_report_folder`, which refuses a folder first).

    Every path is checked to lie inside ``out_dir`` (see ``lossbench._paths.inside``).
    """
    from lossbench._ranking import cd_diagram_png
    from lossbench.bench.plots import budget_curves, hyperparameter_scatter, learning_curves, method_colours

    check_report_folder(out_dir, spec.name)
    atomic_write(inside(out_dir, REPORT_MANIFEST), json.dumps({"study": spec.name}))

    colours = method_colours(spec)
    plots: dict[str, tuple[Path, bytes]] = {}
    for result in results:
        slug = _slug(result)
        figures = (learning_curves(result, colours), hyperparameter_scatter(result, spec, colours),
                   budget_curves(result, colours))  # fmt: skip
        for kind, png in zip(PLOT_KINDS, figures):
            plots[f"{slug}_{kind}"] = inside(out_dir, "plots", f"{slug}_{kind}.png"), png
    acrosses = across_datasets(spec, results)
    for across in acrosses:
        if across.ranking is not None and not math.isnan(across.ranking.friedman_p):
            name = _ranks_plot(across)
            plots[name] = inside(out_dir, "plots", f"{name}.png"), cd_diagram_png(across.ranking, colours=colours)
    document = blocks(spec, results, plots, acrosses)
    files = {
        "report.md": to_markdown(document, Path(out_dir).resolve()),
        "leaderboard.csv": leaderboard_csv(results),
        "runs.csv": runs_csv(results),
        "trials.csv": trials_csv(results),
        "report.html": to_html(document, f"lossbench report: {spec.name}"),
    }
    paths = [inside(out_dir, name) for name in files]
    # all or none: a disk filling midway leaves the old report whole, not old and new files side by side
    atomic_write_all([*zip(paths, files.values()), *plots.values()])
    return paths + [path for path, _ in plots.values()]


def incomplete(results: list[DatasetResult]) -> list[MethodResult]:
    return [r for res in results for r in res.methods if not r.complete]
