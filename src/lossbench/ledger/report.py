"""The ledger: every claim's verdict, our numbers beside the source's, from storage alone.

``lossbench claims report`` writes ``REPRODUCTIONS.md`` and a self-contained
``reproductions/ledger.html`` (critical-difference plots embedded; the PNGs beside it for the
markdown) under ``--out``.  Both are rendered from one list of
blocks (``lossbench._document``), so they say the same thing.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna

from lossbench._checks import first_few
from lossbench._document import (
    Block,
    Bullets,
    Heading,
    Image,
    Link,
    Markdown,
    Para,
    Table,
    to_html,
    to_markdown,
)
from lossbench._paths import atomic_write_all, inside
from lossbench._ranking import cd_diagram_png
from lossbench.bench.metrics import METRIC_CHANGES
from lossbench.bench.spec import Spec, SpecError, spec_growth
from lossbench.bench.storage import stored_fingerprint, stored_spec, stored_spec_names
from lossbench.ledger.analyses import analysis_study, study_read
from lossbench.ledger.judge import SECONDARY, Cell, DatasetOutcome, Outcome, counted_word, judge
from lossbench.ledger.protocol import study_spec
from lossbench.ledger.records import BUDGETS, Claim, all_claims
from lossbench.ledger.runs import (
    AnalysisResult,
    all_invocations,
    analysis_wall_time,
    decision_changes,
    invocations,
    provenance,
    replaced_invocations,
    stored_analysis,
    study_invocations,
    study_wall_time,
)
from lossbench.ledger.verdict import CHANGES_AFTER_RUNS, POINTS, Verdict, resampling_note

LEDGER_TITLE = "lossbench claims ledger"
ASSETS = "reproductions"  # beside REPRODUCTIONS.md: the HTML ledger and the plots
CD_PLOTS = "cd-*.png"  # the critical-difference plots' names there (* = claim-budget-variation)
REFERENCE = f"`{ASSETS}/lossbench.db`"  # the storage of the project's own REPRODUCTIONS.md

# --- numbers as the ledger prints them ---------------------------------------------------------


def pct(x: float, digits: int = 2) -> str:
    return "-" if x is None or math.isnan(x) else f"{POINTS.scale * x:.{digits}f}"


def _num(x: float, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def ours(cell: Cell) -> str:
    text = f"{pct(cell.mean)} ± {pct(cell.std)}"
    return text + (f" ({cell.diverged} diverged)" if cell.diverged else "")


def paper(cell: Cell) -> str:
    p = cell.published
    if p is None:
        return "-"
    return f"{p.mean:.2f}" + (f" ± {p.std:.2f}" if p.std is not None else "")


CONSTANT = "the same on every seed"  # an effect's cell where every seed gives the same difference


def effect(v: Verdict | None) -> str:
    if v is None:
        return "-"
    e, scale = v.effect, POINTS.scale
    low, high = ("-" if math.isnan(end) else f"{scale * end:+.2f}" for end in (e.ci_low, e.ci_high))
    if e.spans_datasets:  # (no interval of the mean: the datasets' own intervals decide such a claim)
        return f"{scale * e.estimate:+.2f} (span {low} .. {high})"
    if e.constant:  # (zero variance: an interval of zero width, which measures no precision)
        return f"{scale * e.estimate:+.2f} ({CONSTANT})"
    return f"{scale * e.estimate:+.2f} [{low}, {high}]"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def rule_text(claim: Claim) -> str:
    if claim.rule is None:
        return claim.rule_text
    r = claim.rule
    delta = f", equivalence margin delta = {pct(r.delta)} points" if r.delta else ""
    word = {"greater": "higher than", "less": "lower than", "equal": "the same as"}[r.direction]
    combine = ("over several datasets the claim is about their mean difference (Wilcoxon signed-rank and a "
               "bootstrap interval)" if claim.scope == "across-datasets"
               else "over several datasets it must hold on every one, and the opposite shown on one contradicts it after "
               "Holm's correction over the datasets (lossbench.ledger.judge.every_dataset)")  # fmt: skip
    tests = (f"equivalence (two one-sided tests at alpha = {r.alpha}{delta}), contradicted by a difference beyond the "
             f"margin on either side at alpha / 2" if r.direction == "equal"
             else f"one-sided tests at alpha = {r.alpha}{delta}")  # fmt: skip
    return (f"{claim.treatment} scores {word} {claim.baseline} in test {claim.metric}; {tests} "
            f"(lossbench.ledger.verdict); {combine}") + (f". {claim.rule_text}" if claim.rule_text else "")  # fmt: skip


# --- what the storage holds ------------------------------------------------------------------


@dataclass
class Entry:
    claim: Claim
    outcomes: list[Outcome]  # bench claims: one per (budget, variation) run
    analyses: dict[str, AnalysisResult]  # analysis claims: budget -> result


def collect_entries(storage: optuna.storages.BaseStorage, progress: Callable[[str], None] | None = None) -> list[Entry]:
    """Every claim's stored runs judged by its record, which must be the one they ran under (the
    decision and the protocol: a verdict comes from the rule fixed before the run).  ``progress`` is
    told each claim as its judging starts (the whole ledger takes minutes).  A study under a claim's
    study name that no `claims run` made (a user's own study in a shared storage) is not the claim's:
    warned of and left out, the other claims judged."""
    stored = set(stored_spec_names(storage))
    foreign: dict[str, list[str]] = {}
    entries = []
    claims = all_claims()
    for n, claim in enumerate(claims, 1):
        if progress is not None:
            progress(f"judging claim {n}/{len(claims)}: {claim.id}")
        outcomes, analyses = [], {}
        for budget in BUDGETS:
            if claim.kind == "analysis":
                result = stored_analysis(storage, claim, budget)
                if result is not None:
                    _check_unchanged(claim, budget, "fixed", decision_changes(storage, claim, budget))
                    if claim.protocol is not None:  # (an analysis of a study of the bench: that study's protocol too)
                        _check_unchanged(claim, budget, "fixed", _study_changes(storage, analysis_study(claim.id, budget), stored))
                    analyses[budget] = result
                continue
            for variation in claim.variations:
                spec = study_spec(claim, budget, variation)
                if spec.name in stored and not _made_by_claims(storage, spec.name, budget):
                    foreign.setdefault(spec.name, []).append(f"{claim.id} ({budget}, {variation})")
                elif spec.name in stored:
                    _check_unchanged(claim, budget, variation, decision_changes(storage, claim, budget, variation))
                    _check_unchanged(claim, budget, variation, _study_changes(storage, spec, stored))
                    outcomes.append(judge(claim, spec, storage, budget, variation))
        entries.append(Entry(claim, outcomes, analyses))
    for name, left_out in foreign.items():
        warnings.warn(f"study {name!r} in this storage was not made by `lossbench claims run` (no invocation of a claim "
                      f"recorded for its runs): not judged, left out of {first_few(left_out, 3, '; ')}", stacklevel=2)  # fmt: skip
    return entries




def _made_by_claims(storage, study: str, budget: str) -> bool:
    """Whether a `claims run` made the stored study: one recorded it, or (recorded before analyses named the
    study they ran) an analysis claim that runs it was run at ``budget``."""
    return bool(study_invocations(storage, study)) or any(
        c.kind == "analysis" and study_read(c.id, budget) == study and invocations(storage, c, budget) for c in all_claims())


def _study_changes(storage, spec: Spec, stored: set[str]) -> list[str]:
    """How the stored study of ``spec``'s name differs from ``spec`` (none where it is not stored)."""
    if spec.name not in stored or stored_fingerprint(storage, spec.name) == spec.fingerprint():
        return []
    grown, changed = spec_growth(stored_spec(storage, spec.name), spec)
    return [f"study {spec.name!r}: {c}" for c in changed + grown]


def _check_unchanged(claim: Claim, budget: str, variation: str, changes: list[str]) -> None:
    if changes:
        shown = first_few(changes, 3, "; ")
        raise SpecError(
            f"claim {claim.id!r} ({budget}, {variation}) was run under another record than it has now ({shown}); "
            "a verdict judges runs by the rule and protocol fixed before them: restore the record, or run the "
            "changed claim into another --storage"
        )


# --- the ledger ----------------------------------------------------------------------------------


READING = "lossbench's reading of the source"  # said of a claim marked ``reading`` (records.Claim)


def section_anchor(claim_id: str, budget: str | None = None, variation: str | None = None) -> str:
    """The anchor of a claim's section, or of one of its outcomes (a budget; a bench claim's split too): parts
    joined by '.', which no claim id holds (with '-', claim 'a' at budget 'quick' would be claim 'a-quick')."""
    return ".".join(p for p in (claim_id, budget, variation) if p)


def summary_rows(entries: list[Entry], storage) -> list[list[str | Link]]:
    """One row per claim, budget and split: the claim linked to its section, the verdict to its outcome's."""
    rows: list[list[str | Link]] = []
    for e in entries:
        c = e.claim
        claim = Link(c.id, section_anchor(c.id))
        title = f"{c.title} ({READING})" if c.reading else c.title
        if not e.outcomes and not e.analyses:
            rows.append([claim, title, "-", "-", "not run", "-", "-", "-"])
        for budget in BUDGETS if e.outcomes else ():
            at = [o for o in e.outcomes if o.budget == budget]
            for o in at:
                word = o.verdict.word if o.verdict else f"incomplete ({len(o.missing)} units)"
                rows.append([claim, title, o.budget, o.variation, Link(word, section_anchor(c.id, o.budget, o.variation)),
                             effect(o.verdict), f"{o.runs} runs, {duration(o.compute_seconds)}",
                             duration(study_wall_time(storage, o.spec.name)[0])])  # fmt: skip
            # a declared variation of a budget run, or a declared budget, that nothing was run at (a GPU-scale paper budget)
            if at:
                missing = [v for v in c.variations if v not in {o.variation for o in at}]
            else:
                missing = ["-"] if budget in c.budgets else []
            rows += [[claim, title, budget, v, "not run", "-", "-", "-"] for v in missing]
        for budget, a in e.analyses.items():
            rows.append([claim, title, budget, "-", Link(a.word, section_anchor(c.id, budget)), "-", "-",
                         duration(analysis_wall_time(storage, c, budget, a)[0])])  # fmt: skip
    return rows


def decision_provenance(storage, claim: Claim) -> str:
    """What shows that the claim's decision rule preceded its runs: the decision each of its `claims run`
    invocations stores (the report refuses runs stored under another), or, for runs that stored none (made
    before decisions were stored, or by another claim that shares the study), only the record's history."""
    if claim.kind == "bench":
        studies = {study_spec(claim, b, v).name for b in BUDGETS if b in claim.budgets for v in claim.variations}
        runs = [(owner, r) for name in sorted(studies) for owner, r in study_invocations(storage, name)]
    else:
        runs = [(claim.id, r) for b in BUDGETS for r in invocations(storage, claim, b)]
    bare = [r["started"][:10] for owner, r in runs if owner != claim.id or r.get("decision") is None]
    earlier = claim.earlier_decisions()
    amended = [r["started"][:10] for owner, r in runs if owner == claim.id and r.get("decision") in earlier]
    if amended:  # (decision_changes accepts them only where a later run was made under this rule)
        return (f"Decision rule, amended after {len(amended)} of its {len(runs)} `claims run` invocations (of "
                f"{', '.join(sorted(set(amended)))}, made under an earlier rule; "
                f"{len(bare)} stored none): the verdict is that of the latest run, under the rule as it is now; "
                "the deviations say what changed and why. The rule now")  # fmt: skip
    if claim.amended_from:  # (the runs under its earlier rules are no longer stored: the record says it all the same)
        times = len(claim.amended_from)
        return (f"Decision rule, amended {times} time{'s' if times != 1 else ''} (the deviations say what changed and "
                f"why; {len(runs) - len(bare)} of the {len(runs)} stored `claims run` invocations stored the rule as it is "
                "now). The rule now")  # fmt: skip
    if not bare:
        return "Decision rule, fixed before any run" + (" (stored with every run, and unchanged)" if runs else "")
    dates, evidence = ", ".join(sorted(set(bare))), "for those the record's history and its deviations are the evidence"
    others = sorted({owner for owner, _ in runs if owner != claim.id})  # (claims that share a study ran it, with their rules)
    if others:
        dates += f"; made by `claims run` of {', '.join(others)}"
    if len(bare) < len(runs):  # (a run made by another claim of a shared study stored that claim's decision)
        return (f"Decision rule, stored with {len(runs) - len(bare)} of the {len(runs)} `claims run` invocations that ran "
                f"its studies (the other {len(bare)}, of {dates}, stored no decision of this claim: {evidence})")  # fmt: skip
    return (f"Decision rule, not checked against its runs ({len(bare)} of the {len(runs)} `claims run` invocations "
            f"that ran its studies, of {dates}, stored no decision of this claim: {evidence})")  # fmt: skip


def claim_blocks(e: Entry, storage, out: Path, deciders: dict[str, list[str]] | None = None, where: str = "") -> list[Block]:
    """A claim's section; ``deciders``: per study name, the claims whose verdicts its runs give (shared studies)."""
    c = e.claim
    blocks: list[Block] = [
        Heading(2, f"{c.id}: {c.title}", section_anchor(c.id)),
        Para(f"Source: {c.source} ({c.url}). Claim: {c.statement}"
             + (f" (This claim is {READING}: the source does not make it in these words; the statement says "
                "which part is the source's.)" if c.reading else "")),
        Para(f"{decision_provenance(storage, c)}: {rule_text(c).rstrip('.')}."),
    ]
    if c.kind == "bench":
        budgets = "; ".join(f"{b}: {c.budgets[b].note}" for b in BUDGETS if b in c.budgets)
        blocks.append(Para(f"Protocol: preset `{c.protocol}` (`lossbench presets` lists it). Budgets: {budgets or '-'}"))
    if c.deviations:
        blocks += [Para("Where lossbench differs from the source:"), Bullets(list(c.deviations))]
    for budget, a in e.analyses.items():
        blocks += [Heading(3, f"{budget}: {a.word}", section_anchor(c.id, budget)), Para(a.reason)]
        if a.details:
            blocks.append(Markdown(a.details))
        seconds, runs = analysis_wall_time(storage, c, budget, a)
        summed = f" ({len(runs)} `lossbench claims run` invocations summed; the last {duration(a.seconds)})" if len(runs) > 1 else ""
        blocks.append(Para(f"Took {duration(seconds)}{summed}."))
    fixed = {o.budget: o for o in e.outcomes if o.variation == "fixed"}
    for o in e.outcomes:
        blocks += outcome_blocks(o, storage, out, [d for d in (deciders or {}).get(o.spec.name, []) if d != c.id])
        if o.variation != "fixed" and o.budget in fixed and o.verdict and fixed[o.budget].verdict:
            note = resampling_note(fixed[o.budget].verdict, o.verdict, POINTS)
            blocks.append(Para((note or "The verdict is the same on resampled splits as on the fixed split.")
                               + " (The resampled runs' seed 0 trains and tests on the fixed split, as every seed "
                               "of a data set whose loader takes no seed does, and their configurations were tuned "
                               f"on the fixed split, {_same_choices(fixed[o.budget], o)}: a check of the split's part, "
                               "not an independent study.)"))  # fmt: skip
    if not e.outcomes and not e.analyses:
        blocks.append(Para(f"Not run yet: `lossbench claims run {c.id} --budget quick{where}`."))
    return blocks


def _same_choices(fixed: Outcome, resampled: Outcome) -> str:
    """Whether the resampled study's tuning (again on the fixed split) chose what the fixed study's did,
    unit by unit; a unit not tuned yet in either study is named apart."""
    other, untuned = [], []
    for d in dict.fromkeys([*fixed.cells, *resampled.cells]):
        for m in dict.fromkeys([*fixed.cells.get(d, {}), *resampled.cells.get(d, {})]):
            a, b = (o.cells.get(d, {}).get(m) for o in (fixed, resampled))
            configs = [None if c is None else c.config for c in (a, b)]
            if None in configs:
                untuned.append(f"{d} / {m}")
            elif configs[0] != configs[1]:
                other.append(f"{d} / {m}")
    said = "where they made the fixed study's choices"
    if other:
        said += f" but for {', '.join(other)} (another configuration chosen)"
    if untuned:
        said += f"; not tuned yet in one of the two studies: {', '.join(untuned)}"
    return said


def _dataset_word(d: DatasetOutcome | None) -> str:
    """The word the claim counts on a dataset, and the dataset's own where Holm's correction dropped its opposite."""
    return "-" if d is None or d.verdict is None else counted_word(d.word, d.verdict)


def outcome_blocks(o: Outcome, storage, out: Path, shared_with: Sequence[str] = ()) -> list[Block]:
    """One outcome's section; ``shared_with``: the other claims whose verdicts the same study's runs give."""
    c = o.claim
    scope = "over the datasets" if len(o.datasets) > 1 else "on the dataset"
    variation = ("the source's fixed split; seeds vary initialisation and data order" if o.variation == "fixed"
                 else "a new train/test split per seed; seeds vary the split too")  # fmt: skip
    word = o.verdict.word if o.verdict else "incomplete"
    blocks: list[Block] = [Heading(3, f"{o.budget} budget, {o.variation} split: {word}", section_anchor(c.id, o.budget, o.variation))]
    if o.verdict:
        e = o.verdict.effect
        spans = (f"; their mean over the datasets {effect(o.verdict)} ({e.interval_label}; {e.method})"
                 if e.spans_datasets else "")  # (the reason itself gives the interval otherwise)  # fmt: skip
        blocks.append(Para(f"Verdict {scope} ({variation}): {o.verdict.reason.rstrip('.')}. Differences are "
                           f"{c.treatment} - {c.baseline} in {c.metric} points{spans}."))  # fmt: skip
    if o.missing:
        blocks.append(Para(f"Incomplete: {', '.join(o.missing)} lack runs; `lossbench claims run {c.id} "
                           f"--budget {o.budget}` resumes."))  # fmt: skip
    wall, runs = study_wall_time(storage, o.spec.name)
    blocks.append(Para(f"Study `{o.spec.name}`: {o.runs} runs, {duration(o.compute_seconds)} of training summed over "
                       f"runs, {duration(wall)} of worker time (wall time summed over {len(runs)} "
                       f"invocation(s) of `lossbench claims run`{_last_run(runs)})."))  # fmt: skip
    replaced = sorted({r["started"][:10] for r in replaced_invocations(storage, o.spec.name)})
    if replaced:  # (the study's history: what its numbers no longer are)
        blocks.append(Para(f"Run anew: the runs of its earlier `claims run` invocations ({', '.join(replaced)}) were "
                           "deleted before these (with `claims run --fresh`, or by hand, after a change of the code, a "
                           "metric or the protocol), and none of them is counted here."))  # fmt: skip
    if shared_with:  # (the same runs, another treatment, baseline or rule: read together, they are not independent)
        which = (f"the claim {shared_with[0]}" if len(shared_with) == 1
                 else f"{len(shared_with)} other claims, each")  # fmt: skip
        blocks.append(Para(f"The same runs also decide {which} at this budget and split"
                           + (f": {', '.join(shared_with)}." if len(shared_with) > 1 else ".")))  # fmt: skip
    methods = [m.name for m in o.spec.methods]
    show_paper = any(cell.published for row in o.cells.values() for cell in row.values())
    # (a claim on the mean over the datasets: a dataset's own paired word informs, it does not count)
    last = "verdict (a dataset's own, not counted; the mean's: the claim's)" if c.scope == "across-datasets" else "verdict"
    header = ["dataset"] + [f"{m} ours{' / paper' if show_paper else ''}" for m in methods] + [f"{c.treatment} - {c.baseline}", last]
    by_dataset = {d.dataset: d for d in o.datasets}
    rows = []
    for label, row in o.cells.items():
        d = by_dataset.get(label)
        cells = [ours(row[m]) + (f" / {paper(row[m])}" if show_paper else "") if m in row else "-" for m in methods]
        rows.append([label, *cells, effect(d.verdict) if d else "-", _dataset_word(d)])
    if o.cells:
        means = ["mean"] + [f"{pct(_mean([r[m].mean for r in o.cells.values() if m in r]))}"
                            + (f" / {_published_mean(c, m)}" if show_paper else "") for m in methods] + [effect(o.verdict), word]  # fmt: skip
        rows.append(means)
        published = ("the source's number after the slash" if show_paper
                     else "the source gives no number for these datasets")  # fmt: skip
        blocks.append(Para(f"Test {c.metric} in percent, mean ± std (ddof 0) over {o.spec.seeds} seeds; {published}. "
                           "Effects: mean paired difference in points with its interval."))  # fmt: skip
        blocks.append(Table(header, rows))
        sec_header = ["dataset", "method", *SECONDARY, "chosen tuning trial", "final trials", "study"]
        sec_rows = []
        for label, row in o.cells.items():
            for m in (c.treatment, c.baseline):
                if m in row:
                    cell = row[m]
                    sec_rows.append([label, m, *(_num(cell.secondary[k]) for k in SECONDARY),
                                     f"#{cell.chosen_trial}" if cell.chosen_trial is not None else "-",
                                     ",".join(map(str, cell.final_trials)) or "-", cell.final_study])  # fmt: skip
        blocks += [Para("Secondary metrics (means over seeds) and the trials behind each number:"), Table(sec_header, sec_rows)]
        outdated = sorted({m for row in o.cells.values() for cell in row.values() for m in cell.outdated})
        if outdated:
            blocks.append(Para("Left out (-): " + "; ".join(
                f"{m} of runs stored before {METRIC_CHANGES[m][0]:%Y-%m-%d %H:%M} UTC, which computed it {METRIC_CHANGES[m][1]}"
                for m in outdated) + ". The runs' logits are not kept; `lossbench claims run ... --fresh` runs the study anew."))  # fmt: skip
    if o.ranking is not None:
        r = o.ranking
        ranks = ", ".join(f"{m} {v:.2f}" for m, v in r.mean_ranks.items())
        apart = [m for m in methods if m not in r.mean_ranks]  # (judge ranks the methods run on every dataset)
        which = f"the methods run on every dataset (not {', '.join(apart)})" if apart else "all methods"
        blocks.append(Para(f"Ranking of {which} over {r.n_datasets} datasets (mean rank, 1 = best): {ranks}. "
                           f"Friedman p = {_num(r.friedman_p)}; Nemenyi critical difference {r.critical_difference:.2f} "
                           f"at alpha = {r.alpha}."))  # fmt: skip
        path = inside(out, ASSETS, CD_PLOTS.replace("*", f"{c.id}-{o.budget}-{o.variation}"))
        blocks.append(Image(f"critical difference diagram, {c.id} ({o.budget}, {o.variation})", path, cd_diagram_png(r)))
    return blocks


def _last_run(runs: list[dict]) -> str:
    if not runs:
        return ""
    r = max(runs, key=lambda run: run["started"])  # (runs come claim by claim, each claim's in time order)
    commit = f", commit {r['commit']}" if r.get("commit") else ""
    # (a study's trials keep no commit: every invocation's says which code its runs may have come from)
    commits = list(dict.fromkeys(run["commit"] for run in sorted(runs, key=lambda run: run["started"]) if run.get("commit")))
    every = f"; the invocations ran at commits {', '.join(commits)}" if len(commits) > 1 else ""
    # (a record's commit corrected after the fact keeps why, and the report says it)
    corrected = "".join(f"; {run['commit']}: {run['correction']}" for run in runs if run.get("correction"))
    return f", the last on {r['host']}{f' ({cpu})' if (cpu := r.get('cpu')) else ''} with {r['threads']} torch thread(s), lossbench {r['lossbench']}{commit}{every}{corrected}"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _published_mean(c: Claim, method: str) -> str:
    mean_row = c.published.get("mean", {}).get(method)
    return f"{mean_row.mean:.2f}" if mean_row else "-"


def rule_changes(storage) -> list[Block]:
    """The rule's changes made after this storage's first `claims run` (a verdict is recomputed from stored
    runs by the rule as it is now), each with what it did to the project's reference ledger."""
    started = [r["started"][:10] for r in all_invocations(storage)]
    later = [(day, what, effect) for day, what, effect in CHANGES_AFTER_RUNS if started and min(started) <= day]
    if not later:
        return []
    return [Para(f"The rule changed after this storage's first runs ({min(started)}); every bench claim's verdict "
                 "below is the rule's as it is now (judged anew from its stored runs), an analysis claim's as judged "
                 "at its last `lossbench claims run`. What each change did to the project's reference ledger "
                 f"({REFERENCE}) as it stood that day (studies run anew since show their own numbers):"),
            Bullets([f"{day}: {what}; {effect}." for day, what, effect in later])]  # fmt: skip


def ledger_blocks(entries: list[Entry], storage, out: Path, storage_label: str, where: str = "") -> list[Block]:
    info = provenance()
    # an effect's interval is the (1 - 2 alpha) one of its claim's rule (verdict.py)
    levels = {f"{1 - 2 * e.claim.rule.alpha:.0%}".replace("%", " %") for e in entries if e.claim.rule is not None}
    level = levels.pop() if len(levels) == 1 else "1 - 2 alpha"
    blocks: list[Block] = [
        Heading(1, LEDGER_TITLE),
        Para(f"Generated by `lossbench claims report` from the runs stored in {storage_label} on "
             f"{dt.date.today().isoformat()} (lossbench {info['lossbench']}, torch {info['torch']}). Every claim "
             "is a record (`src/lossbench/ledger/sources/`), written before its runs unless its section says otherwise "
             "(its decision-rule line says which runs stored the rule, its deviations what was added after); its "
             "verdict comes from the record's rule (`src/lossbench/ledger/verdict.py`): holds, contradicted, equivalent "
             "or inconclusive (a no-difference claim holds where the difference is shown to lie within its margin; "
             "'equivalent' is that outcome for a claim of a direction). A direction is shown only where the claim's "
             "test and the interval agree. Budgets: `quick` is a cut-down run for a CPU in minutes, `paper` the "
             "protocol as the claim's preset writes it (its section says where that differs from the source); "
             "splits: `fixed` keeps one train/test split for every seed, `resampled` draws a new one per seed. "
             f"Effects are treatment minus baseline in points of the claim's metric with their {level} interval; for a "
             "claim that must hold on each of several datasets, the mean of the per-dataset effects with the span from "
             f"the lowest to the highest end of their {level} intervals (no interval of that mean: the datasets decide). "
             "A difference the same on every seed (one test example on each, say) has no variance: the rule decides it "
             "by its sign, as the t-test's limit (p = 0, an interval of zero width), however few the seeds, where an "
             f"exact sign-flip test could give no p below 2^-n over n seeds (one-sided); its effect reads '{CONSTANT}'. "
             "Training time is the runs' own time summed, worker time the wall time of the `lossbench claims run` "
             f"invocations summed. A title marked ({READING}) is a claim the source does not make in those words: a "
             "question its text prompts, or a gain it implies without reporting one."),  # fmt: skip
        *rule_changes(storage),
        Table(["claim", "title", "budget", "split", "verdict", f"effect, points [{level} interval] or (span)", "training time",
               "worker time"],
              summary_rows(entries, storage)),  # fmt: skip
    ]
    deciders: dict[str, list[str]] = {}
    for e in entries:
        for o in e.outcomes:
            deciders.setdefault(o.spec.name, []).append(e.claim.id)
    for e in entries:
        blocks += claim_blocks(e, storage, out, deciders, where)
    return blocks


def _ledger_files(out_dir: str | Path) -> tuple[Path, Path]:
    out = inside(out_dir)
    return inside(out, "REPRODUCTIONS.md"), inside(out, ASSETS, "ledger.html")


def check_ledger_folder(out_dir: str | Path, where: str = "--out") -> None:
    """Refuse a folder where the ledger would replace a REPRODUCTIONS.md or ledger.html that lossbench
    did not write (the ledger's own begin with its title), or a critical-difference plot's name beside no
    ledger of lossbench's (a PNG carries no mark of its own: the ledger it belongs to is its mark)."""
    files = _ledger_files(out_dir)
    for path, mark in zip(files, (f"# {LEDGER_TITLE}", f"<title>{LEDGER_TITLE}</title>")):
        if path.is_file() and mark not in path.read_bytes()[:4096].decode(errors="replace"):
            raise ValueError(f"{where} {out_dir} holds {path.name}, which lossbench did not write there; choose a new "
                             "or empty folder, or move it")  # fmt: skip
    plots = sorted(files[1].parent.glob(CD_PLOTS)) if files[1].parent.is_dir() else []
    if plots and not any(path.is_file() for path in files):
        raise ValueError(f"{where} {out_dir} holds {ASSETS}/{plots[0].name}, which lossbench did not write there (no "
                         "ledger beside it); choose a new or empty folder, or move it")  # fmt: skip


def write_ledger(storage: optuna.storages.BaseStorage, out_dir: str | Path, storage_label: str,
                 progress: Callable[[str], None] | None = None, where: str = "") -> list[Path]:  # fmt: skip
    """Write REPRODUCTIONS.md, and reproductions/ledger.html with the plots, under ``out_dir`` (refused
    first where they would replace files lossbench did not write: :func:`check_ledger_folder`);
    ``progress`` as :func:`collect_entries` takes it; ``where``: the options that name this storage in the
    command a claim not run yet is run with (" --out DIR", say)."""
    check_ledger_folder(out_dir)
    out = inside(out_dir)
    entries = collect_entries(storage, progress)
    blocks = ledger_blocks(entries, storage, out, storage_label, where)
    md, page = _ledger_files(out)
    # All or none (a full disk midway leaves the old ledger whole), renamed in this order: the plots after the
    # markdown, which marks them as the ledger's (see check_ledger_folder): an interrupted report leaves no plot
    # without its ledger, which the next one would refuse as not lossbench's.
    images = [(b.path, b.data) for b in blocks if isinstance(b, Image) and b.data is not None]
    atomic_write_all([(md, to_markdown(blocks, out)), *images, (page, to_html(blocks, LEDGER_TITLE))])
    return [md, page]
