"""The verdict rule: how the ledger turns re-run scores into one word about a published claim.

A claim says that a *treatment* (a loss, a step transform) scores higher than, lower than, or the
same as a *baseline*.  Before any run its record fixes a :class:`Rule`: the claimed ``direction``
(``"greater"``, ``"less"`` or ``"equal"``), the level ``alpha`` and, optionally, an equivalence
margin ``delta`` in the metric's own units (``0.005`` = half an accuracy point).  The verdict is
one word of :data:`VERDICTS`, its :class:`Effect` and a one-sentence reason.

THE RULE
========

Every conclusion rests on one-sided tests at level ``alpha`` (a test rejects when
``p <= alpha``), and every reported interval is the two-sided ``(1 - 2 alpha)`` confidence
interval (90 % at ``alpha = 0.05``) of the mean difference ``treatment - baseline``.  That is the
interval whose bounds match the one-sided tests (for the t-test exactly: lower bound > 0 <=> the
test of "greater" rejects; the interval inside ``(-delta, delta)`` <=> both tests of TOST
reject), so a reader can check each word on it (over several datasets a word needs a rank test as
well, and the reason says where the two disagree; a no-difference claim is contradicted by a side
tested at ``alpha / 2``, which the ``(1 - alpha)`` interval matches).

Five things may be *shown* (D is the true mean difference):

- *positive*: D > 0 is shown;            *negative*: D < 0 is shown;
- *within*: -delta < D < delta is shown (TOST: D > -delta and D < delta both shown);
- *above*: D > delta is shown;           *below*: D < -delta is shown.

Direction ``"greater"`` (treatment beats baseline):

1. ``holds``        if *positive* is shown;
2. ``contradicted`` if *negative* is shown (the effect is significantly the other way);
3. ``equivalent``   if delta is given and *within* is shown (the claimed gain is not there, and
   any difference is smaller than the margin);
4. ``inconclusive`` otherwise.

The first matching line wins.  Lines 1 and 2 exclude each other (``alpha < 1/2``); a significant
effect inside the margin is still reported as ``holds``/``contradicted``, and the reason says
that it lies within the margin.  Direction ``"less"`` is the mirror image (*negative* holds it,
*positive* contradicts it).

Direction ``"equal"`` (no difference; ``delta`` is required):

1. ``holds``        if *within* is shown (for an ``"equal"`` claim equivalence is the claim);
2. ``contradicted`` if *above* or *below* is shown (the difference is shown to exceed the margin:
   the mirror image of TOST, each side at level ``alpha / 2``: where the margin is small against
   the noise both sides can reject a true no-difference claim, and their chances add up to alpha);
3. ``inconclusive`` otherwise.

What "shown" means depends on the data:

- One dataset, paired seeds (:func:`paired_verdict`): the one-sided Student t-test of the
  per-seed differences ``d = treatment - baseline`` against 0, -delta or +delta (the paired
  t-test; ``scipy.stats.ttest_1samp`` on ``d``, identical to ``ttest_rel``).  Student-t interval.

  Zero variance (every seed gives the same difference, as in tables reporting std 0.00): there is
  no sampling noise to test, so each comparison is decided by the constant ``c`` itself: a
  hypothesis ``D > m`` is shown (p = 0) when ``c > m``, refuted (p = 1) when ``c < m`` and
  undefined (p = nan, not shown) when ``c = m``; the interval is ``[c, c]``.  Hence a nonzero
  constant gives ``holds`` or ``contradicted`` by its sign, and ``d == 0`` everywhere gives
  ``equivalent`` when delta is given (never ``holds`` for a directional claim) and
  ``inconclusive`` otherwise.  This is the t-test's limit as the variance goes to 0, and it
  continues the t-test: differences that nearly are constant get p near 0 from it too.  With few
  seeds and scores that are multiples of one over the test size, a difference of one test example
  on every seed decides a comparison so (the ledger shows it as an interval ``[c, c]``).
  Differences equal up to the scores' rounding (spread <= 8 float32
  epsilons of the largest score, about 1e-6 for scores in [0, 1]: :func:`score_rounding`) count as
  constant, and ``c`` counts as equal to 0 or to +-delta within the same rounding (0.95 - 0.94 is
  a difference of exactly 0.01, also when the two come from float32 computations).

- Several datasets (:func:`across_datasets_verdict`, one mean difference per dataset, the claim
  being about their mean): a comparison is shown when BOTH the one-sided Wilcoxon signed-rank
  test rejects at alpha AND the bootstrap ``(1 - 2 alpha)`` interval of the mean lies on the
  shown side (for *within*: the Wilcoxon TOST rejects on both sides and the interval lies inside
  ``(-delta, delta)``).  The rank test guards against one large dataset carrying the mean; the
  interval guards against a rank shift that the mean does not follow.  Details are in the
  function's docstring.

With fewer than two seeds or datasets nothing can be shown: the verdict is ``inconclusive``.
Scores that are nan or infinite (diverged runs) are refused with a ``ValueError``: how a diverged
run scores is the caller's decision, made before the run.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from lossbench._paired import constant_difference, score_rounding, tied_within

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

VERDICTS = ("holds", "contradicted", "equivalent", "inconclusive")
# The rule's changes made after the project's ledger had runs, each with what it did to that ledger's
# verdicts: a report prints those made after its storage's first runs (a verdict is recomputed from
# stored runs by the rule as it is now).
CHANGES_AFTER_RUNS = (
    ("2026-12-04", "per dataset, scores equal up to float32 rounding count as equal (a difference within it of 0 or "
     "of +-delta is that value)", "no verdict changed"),
    ("2026-12-05", "over datasets, the same rounding for the differences of the means", "no verdict changed "
     "(exact-table1, paper budget: Wilcoxon p 0.789 -> 0.766)"),
    ("2026-12-05", "a per-dataset claim over several datasets is contradicted only where the opposite survives "
     "Holm's correction over them (before: the opposite on any one dataset at alpha)", "flooding-improves, "
     "flooding-improves-wd, su-zlpr-vs-bce and asl-beats-focal moved from contradicted to inconclusive"),
    ("2026-12-05", "over datasets, the bootstrap draws the datasets in name order (before: in the spec's order, on "
     "which an interval depended)", "no verdict changed; intervals moved by at most 0.14 points (menon-la-loss "
     "[+6.76, +15.21] -> [+6.62, +15.07])"),
    ("2026-12-05", "a no-difference claim is contradicted only by a difference beyond its margin shown at alpha / 2 "
     "on that side (before: alpha on each side, up to 2 alpha together)", "no verdict changed"),
    ("2026-12-05", "over datasets, a no-difference claim's side beyond the margin needs its (1 - alpha) bootstrap "
     "interval beyond it, the interval of a test at alpha / 2 (before: the (1 - 2 alpha) one); its reasons show that "
     "interval", "no verdict changed"),
)  # fmt: skip
DIRECTIONS = ("greater", "less", "equal")


@dataclass(frozen=True)
class Units:
    """How a reason writes a difference of scores: ``scale`` times it in the format ``spec``, then
    ``name`` (the decision reads the differences as they are; only their words change)."""

    scale: float = 1.0
    name: str = ""
    spec: str = ".4g"

    def value(self, x: float) -> str:
        return f"{self.scale * x:{self.spec}}" + self.suffix

    def interval(self, low: float, high: float) -> str:
        return f"[{self.scale * low:{self.spec}}, {self.scale * high:{self.spec}}]" + self.suffix

    @property
    def suffix(self) -> str:
        return f" {self.name}" if self.name else ""


POINTS = Units(100.0, "points", ".2f")  # differences of scores in [0, 1], as the ledger's tables give them


def score_difference(treatment: float, baseline: float) -> float:
    """``treatment - baseline``, 0.0 where the two are equal up to :func:`score_rounding`."""
    d = treatment - baseline
    return 0.0 if abs(d) <= score_rounding(treatment, baseline) else d


@dataclass(frozen=True)
class Rule:
    """The decision rule, fixed in the claim record before any run.

    ``direction``: ``"greater"`` (treatment beats baseline), ``"less"`` (treatment scores lower,
    e.g. an error metric), or ``"equal"`` (a no-difference claim).  ``alpha``: the level of every
    one-sided test, in (0, 0.5).  ``delta``: the equivalence margin in the metric's units;
    required for ``"equal"``, optional otherwise (without it a directional claim can never be
    ``equivalent``).
    """

    direction: str
    alpha: float = 0.05
    delta: float | None = None

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if not _is_real(self.alpha) or not 0 < self.alpha < 0.5:
            # alpha >= 0.5 would let "greater" and "less" both be shown.
            raise ValueError(f"alpha must be a number in (0, 0.5), got {self.alpha!r}")
        if self.delta is not None and (not _is_real(self.delta) or not 0 < self.delta < math.inf):
            raise ValueError(f"delta must be a positive finite number or None, got {self.delta!r}")
        if self.direction == "equal" and self.delta is None:
            raise ValueError(
                "delta is required for direction 'equal' (the margin defines 'no difference'), got None"
            )

    @property
    def ci_level(self) -> float:
        """Level of the reported interval, ``1 - 2 alpha``: the one matching the one-sided tests."""
        return 1 - 2 * self.alpha


@dataclass(frozen=True)
class Effect:
    """What a verdict is computed from, kept for the report.

    ``estimate``: mean difference treatment - baseline (over seeds, or over datasets of their
    per-dataset mean differences).  ``ci_low``/``ci_high``: the two-sided ``ci_level`` =
    ``1 - 2 alpha`` interval of it, the interval the decision uses.  ``p_value``: of the test of
    the claim: one-sided in the claimed direction, or the TOST p-value (the larger of the two
    one-sided p-values against -delta and +delta) for ``"equal"``; small always supports the
    claim; nan where undefined.  ``n``: seeds or datasets.  ``method``: the tests, in words.
    ``spans_datasets``: a per-dataset claim over several datasets, whose ``ci_low``/``ci_high``
    are the lowest and highest ends of the per-dataset ``ci_level`` intervals, not an interval of
    ``estimate`` (see ``lossbench.ledger.judge.every_dataset``).  ``constant``: the same difference on
    every seed, decided by its value (zero variance: the t-test's p is 0 or 1).
    """

    estimate: float
    ci_low: float
    ci_high: float
    ci_level: float
    p_value: float
    n: int
    method: str
    spans_datasets: bool = False
    constant: bool = False

    @property
    def interval_label(self) -> str:
        """What ``[ci_low, ci_high]`` is, in words."""
        level = f"{self.ci_level * 100:.0f} %"
        return f"the span of the per-dataset {level} intervals" if self.spans_datasets else f"{level} CI"


@dataclass(frozen=True)
class Verdict:
    """One word of :data:`VERDICTS`, the rule it was decided by, its effect and why."""

    word: str
    rule: Rule
    effect: Effect
    reason: str
    # For combining datasets (``ledger.judge.every_dataset``): the p-value of the test that contradicts
    # the claim (the opposite direction; for "equal", the nearer side beyond the margin; nan: none),
    # and the word the rule gives where that test is not counted.
    p_opposite: float = math.nan
    unopposed: str | None = None

    def __post_init__(self):
        if self.word not in VERDICTS:
            raise ValueError(f"word must be one of {VERDICTS}, got {self.word!r}")


# --------------------------------------------------------------------------------------------
# The decision, shared by both data shapes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shown:
    positive: bool
    negative: bool
    within: bool
    above: bool
    below: bool


def _side(rule: Rule) -> float:
    """The level of each side's test of a difference beyond the margin (contradicting "equal")."""
    return rule.alpha / 2


def _opposite(rule: Rule, tests: _Tests) -> float:
    """The p-value of the test whose rejection contradicts the claim, to compare with alpha (for "equal":
    the nearer side's, doubled: each side is tested at alpha / 2)."""
    if rule.direction == "equal":
        return float(min(1.0, 2 * np.fmin(tests.above, tests.below)))
    return tests.negative if rule.direction == "greater" else tests.positive


def _unopposed(rule: Rule, shown: _Shown) -> str:
    """The word :func:`_decide` gives where the contradicting test is not counted."""
    if rule.direction == "equal":
        return _decide(rule, dataclasses.replace(shown, above=False, below=False))
    return _decide(rule, dataclasses.replace(shown, **{"negative" if rule.direction == "greater" else "positive": False}))


def _decide(rule: Rule, shown: _Shown) -> str:
    if rule.direction == "equal":
        if shown.within:
            return "holds"
        return "contradicted" if shown.above or shown.below else "inconclusive"
    claimed, opposite = (
        (shown.positive, shown.negative) if rule.direction == "greater" else (shown.negative, shown.positive)
    )
    if claimed:
        return "holds"
    if opposite:
        return "contradicted"
    return "equivalent" if shown.within else "inconclusive"


@dataclass(frozen=True)
class _Tests:
    """One-sided p-values for D > 0, D < 0, TOST, D > delta, D < -delta (nan: not computed)."""

    positive: float = math.nan
    negative: float = math.nan
    within: float = math.nan
    above: float = math.nan
    below: float = math.nan

    def claim(self, rule: Rule) -> float:
        return {"greater": self.positive, "less": self.negative, "equal": self.within}[rule.direction]


def _run_tests(p: Callable[[float, str], float], rule: Rule) -> _Tests:
    """The tests the rule's direction decides by; ``p(m, side)`` is the p-value of D > m or D < m."""
    dl = rule.delta
    # TOST; np.maximum keeps a nan (an undefined side), which the builtin max would drop.
    within = math.nan if dl is None else float(np.maximum(p(-dl, "greater"), p(dl, "less")))
    if rule.direction == "equal":
        return _Tests(within=within, above=p(dl, "greater"), below=p(-dl, "less"))
    return _Tests(positive=p(0.0, "greater"), negative=p(0.0, "less"), within=within)


def _rejects(p: float, alpha: float) -> bool:
    return bool(p <= alpha)  # nan compares False: an undefined test shows nothing


def _shown_by(tests: _Tests, rule: Rule) -> _Shown:
    """What one dataset's tests show: each side at alpha, a no-difference claim's sides beyond the margin at alpha / 2."""
    a, side = rule.alpha, _side(rule)
    return _Shown(positive=_rejects(tests.positive, a), negative=_rejects(tests.negative, a),
                  within=_rejects(tests.within, a), above=_rejects(tests.above, side), below=_rejects(tests.below, side))


def _reason(
    word: str, rule: Rule, tests: _Tests, shown: _Shown, low: float, high: float, evidence: str, units: Units,
    sides: tuple[float, float] | None = None, rounding: float = 0.0,
) -> str:
    """One sentence: the word, the decisive test or bound, then the evidence summary.  ``sides``: for an
    "equal" claim, the ``(1 - alpha)`` interval, which matches its tests beyond the margin (each at alpha / 2).
    ``rounding``: the scores' rounding, within which a bound equal to +-delta counts as on the margin."""
    ci = f"{rule.ci_level:.0%} CI {units.interval(low, high)}" if not math.isnan(low) else "no interval: a sign test"
    if sides is not None and word != "holds":
        ci += f"; {1 - rule.alpha:.0%} CI {units.interval(*sides)}, the sides' interval"
    a = f"alpha = {rule.alpha:g}"
    margin = f"+-delta = {units.value(rule.delta)}" if rule.delta is not None else ""
    inside = rule.delta is not None and -rule.delta + rounding < low and high < rule.delta - rounding
    if rule.direction == "equal":
        if word == "holds":
            lead = f"holds: equivalence within {margin} is shown (TOST p = {tests.within:.3g} <= {a}; {ci})"
        elif word == "contradicted":
            side, p, edge = ("above +delta", tests.above, rule.delta) if shown.above else ("below -delta", tests.below, -rule.delta)
            lead = (
                f"contradicted: the difference is shown to lie {side} = {units.value(edge)} "
                f"(p = {p:.3g} <= alpha / 2 = {_side(rule):g} on that side; {ci})"
            )
        else:
            # (a side is undefined where the difference is constant and on the margin: no p to print for it)
            beyond = (f"p = {min(tests.above, tests.below):.3g} on the nearer side"
                      if not (math.isnan(tests.above) or math.isnan(tests.below)) else "undefined on the margin's side")  # fmt: skip
            lead = (
                f"inconclusive: neither equivalence within {margin} (TOST p = {tests.within:.3g}) nor a "
                f"difference beyond it ({beyond}, against alpha / 2 = {_side(rule):g}) is shown at {a} ({ci})"
            )
        return f"{lead}; {evidence}"
    sign, other = (">", "<") if rule.direction == "greater" else ("<", ">")
    p_claim, p_other = tests.claim(rule), (tests.negative if rule.direction == "greater" else tests.positive)
    undefined = math.isnan(p_claim) and math.isnan(p_other)  # (the difference 0 on every seed: no side to test)
    p_claim_shown = "p undefined: the difference is 0 on every seed" if undefined else f"p = {p_claim:.3g}"
    small = f", though it lies within {margin}" if inside else ""
    if word == "holds":
        lead = f"holds: treatment {sign} baseline is shown (one-sided p = {p_claim:.3g} <= {a}; {ci}{small})"
    elif word == "contradicted":
        lead = (
            f"contradicted: the opposite, treatment {other} baseline, is shown "
            f"(one-sided p = {p_other:.3g} <= {a}; {ci}{small})"
        )
    elif word == "equivalent":
        lead = (
            f"equivalent: treatment {sign} baseline is not shown ({p_claim_shown}) but equivalence "
            f"within {margin} is (TOST p = {tests.within:.3g} <= {a}; {ci})"
        )
    else:
        no_margin = (
            "no margin delta was fixed, so equivalence cannot be shown"
            if rule.delta is None
            else f"equivalence within {margin} is not shown (TOST p = {tests.within:.3g})"
        )
        tested = (f"neither treatment {sign} baseline nor the opposite is shown at {a} ({p_claim_shown}; {ci})" if undefined
                  else f"neither treatment {sign} baseline (p = {p_claim:.3g}) nor the opposite (p = {p_other:.3g}) is "
                  f"shown at {a} ({ci})")  # fmt: skip
        lead = f"inconclusive: {tested}, and {no_margin}"
    return f"{lead}; {evidence}"


def _too_few(rule: Rule, estimate: float, n: int, unit: str, method: str) -> Verdict:
    effect = Effect(estimate, math.nan, math.nan, rule.ci_level, math.nan, n, method)
    reason = f"inconclusive: {n} {unit} cannot show anything; at least 2 are needed"
    return Verdict("inconclusive", rule, effect, reason)


def both_failed(rule: Rule, n: int, estimate: float = 0.0) -> Verdict:
    """A dataset where treatment and baseline both diverged on every one of ``n`` seeds: scored as the
    caller's rule scores a diverged run, they give a constant difference that would read as equivalence
    (or, over nothing, as a claimed gain), but two failures show nothing about the claim."""
    effect = Effect(estimate, math.nan, math.nan, rule.ci_level, math.nan, n, f"both diverged on {n} seeds")
    return Verdict("inconclusive", rule, effect, f"inconclusive: both methods diverged on every one of the {n} seeds; "
                   "two failures cannot show a difference or its absence")  # fmt: skip


# --------------------------------------------------------------------------------------------
# One dataset: paired seeds
# --------------------------------------------------------------------------------------------


def paired_verdict(treatment: ArrayLike, baseline: ArrayLike, rule: Rule, *, units: Units = Units()) -> Verdict:
    """Verdict for one dataset from per-seed scores of treatment and baseline (same seeds, same order).

    The differences ``d = treatment - baseline`` are tested with the paired Student t-test
    (``scipy.stats.ttest_1samp`` on ``d`` against 0, -delta and +delta, one-sided), and the
    reported interval is its Student-t ``(1 - 2 alpha)`` interval; the decision is the module's
    rule.  Zero variance of ``d`` is decided by the constant's sign as the module docstring says;
    fewer than two seeds is ``inconclusive``.  ``units``: how the reason writes differences.  Raises
    ``ValueError`` for empty, non-1-D, non-finite (nan: a diverged run) or differently long inputs.
    """
    _check_rule(rule)
    t, b = _paired_scores(treatment, baseline)
    n = t.size
    d = t - b
    if n < 2:
        return _too_few(rule, float(d.mean()), n, "seed", "paired t over 1 seed")

    c, rounding = constant_difference(t, b)  # (0.0: the same score on every seed, up to the scores' rounding)
    constant = c is not None
    sides = None  # (an "equal" claim's (1 - alpha) interval: its sides beyond the margin are tested at alpha / 2)
    if constant:
        estimate, low, high = c, c, c
        sides = (c, c) if rule.direction == "equal" else None
        method = f"constant difference over {n} seeds (zero variance: decided by its value)"
    else:
        estimate = float(d.mean())
        t_test = stats.ttest_1samp(d, 0.0)
        ci = t_test.confidence_interval(rule.ci_level)
        low, high = float(ci.low), float(ci.high)
        if rule.direction == "equal":
            wide = t_test.confidence_interval(1 - rule.alpha)
            sides = (float(wide.low), float(wide.high))
        method = f"paired t over {n} seeds"

    def p(m: float, side: str) -> float:
        """One-sided p of D > m (side "greater") or D < m."""
        if constant:
            return _constant_p(estimate, m, side, rounding)
        return float(stats.ttest_1samp(d, m, alternative=side).pvalue)

    tests = _run_tests(p, rule)
    shown = _shown_by(tests, rule)
    word = _decide(rule, shown)
    evidence = f"{method}, mean difference {units.value(estimate)}"
    effect = Effect(estimate, low, high, rule.ci_level, tests.claim(rule), n, method, constant=constant)
    reason = _reason(word, rule, tests, shown, low, high, evidence, units, sides, rounding)
    return Verdict(word, rule, effect, reason, _opposite(rule, tests), _unopposed(rule, shown))


def censored_paired_verdict(treatment: ArrayLike, baseline: ArrayLike, rule: Rule, *, censored_from: float,
                            units: Units = Units()) -> Verdict:  # fmt: skip
    """:func:`paired_verdict` for values that may be right-censored: a value ``>= censored_from`` is known
    only to be at least that (a run that never reached its target within the epochs it had, counted as
    ``censored_from``).  A seed's difference ``d = treatment - baseline`` is then known, bounded on one side
    (treatment censored: ``d >= censored_from - baseline``; baseline censored: ``d <= treatment -
    censored_from``) or unknown (both).  The t-test of stand-in values would read the stand-in as the value
    (a constant difference it made would decide by itself), so each hypothesis ``D > m`` (D the median
    difference) is tested by the exact sign test on the seeds whose side of ``m`` is known: ``p = P(Binomial(n,
    1/2) >= k)``, ``k`` the seeds known to lie above ``m``, ``n`` all seeds (an unknown or tied seed counts
    against every hypothesis).  So at least 5 seeds are needed to show anything at ``alpha = 0.05`` (3 of 3
    give p = 0.125).  No interval: the differences are bounds; the estimate is the stand-ins' mean difference.
    """
    _check_rule(rule)
    t, b = _paired_scores(treatment, baseline)
    cut_t, cut_b = t >= censored_from, b >= censored_from
    low = np.where(cut_b, -np.inf, np.where(cut_t, censored_from, t) - b)  # d's bounds per seed
    high = np.where(cut_t, np.inf, t - np.where(cut_b, censored_from, b))
    n, censored = t.size, int((cut_t | cut_b).sum())

    def p(m: float, side: str) -> float:
        k = int((low > m).sum() if side == "greater" else (high < m).sum())
        return float(stats.binom.sf(k - 1, n, 0.5))

    tests = _run_tests(p, rule)
    shown = _shown_by(tests, rule)
    word = _decide(rule, shown)
    estimate = float(np.mean(np.minimum(t, censored_from) - np.minimum(b, censored_from)))
    method = f"sign test over {n} seeds, {censored} with a run censored at {censored_from:g}"
    evidence = f"{method}, mean difference of the stand-ins {units.value(estimate)}"
    effect = Effect(estimate, math.nan, math.nan, rule.ci_level, tests.claim(rule), n, method)
    reason = _reason(word, rule, tests, shown, math.nan, math.nan, evidence, units)
    return Verdict(word, rule, effect, reason, _opposite(rule, tests), _unopposed(rule, shown))


def _constant_p(c: float, m: float, side: str, rounding: float) -> float:
    """p-value of the one-sided test of D > m (``side="greater"``) or D < m when d == c on every seed.

    The limit of the t-test as the variance goes to 0: the statistic is +-inf, so p is 0 or 1;
    at ``c == m`` (up to ``rounding``: 0.95 - 0.94 is the margin 0.01) it is 0/0 and undefined.
    (An exact sign-flip p, 1 / 2**n, would not continue the t-test: a difference one example off
    constant on one seed would get the t-test's p, far below 1 / 2**n.)
    """
    if abs(c - m) <= rounding:
        return math.nan
    return 0.0 if (c > m) == (side == "greater") else 1.0


# --------------------------------------------------------------------------------------------
# Several datasets: one mean difference each
# --------------------------------------------------------------------------------------------


def across_datasets_verdict(
    differences: Mapping[str, float] | pd.Series | Sequence[float],
    rule: Rule,
    *,
    rounding: float = 0.0,
    n_resamples: int = 10_000,
    seed: int = 0,
    units: Units = Units(),
) -> Verdict:
    """Verdict for a claim about the mean over datasets (e.g. a table's mean row).

    ``differences``: per dataset, the mean over seeds of treatment - baseline (a mapping from
    dataset name or a pandas Series, taken in name order; or a sequence, in its order).  The
    estimate is their mean.  ``rounding``: the scores' rounding (:func:`score_rounding` of the means
    the differences come from): a difference within it of 0 or of +-delta counts as equal to it, and
    differences within it of each other as tied (one test sample's difference, 0.005 of 200, is
    0.004999995 or 0.0050000548 from float32
    accuracies; by their last bits TOST would hold or not).

    A comparison counts as *shown* (see the module's rule) when both of these agree:

    - the one-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``) of the differences (of
      ``x + delta`` and ``x - delta`` for the margins) rejects at alpha.  Zero differences follow
      Pratt (``zero_method="pratt"``): they take part in the ranking, then drop out of the sum, so
      a dataset where the two tie pushes the others' ranks up instead of vanishing.  The p-value
      comes from the exact null distribution when there are no zeros or ties; otherwise from the
      sign-flip permutation distribution (``scipy.stats.PermutationMethod``), exact when all
      ``2**n`` sign patterns fit in ``n_resamples`` (n <= 13 at the default), beyond that a
      Monte Carlo estimate from ``n_resamples`` patterns drawn with ``seed``.  With k non-zero
      differences no directional p below ``2**-k`` is attainable, which the reason reports;
    - the bootstrap ``(1 - 2 alpha)`` interval of the mean (``scipy.stats.bootstrap``,
      ``n_resamples`` resamples drawn with ``seed``) lies on the shown side: above 0 for
      *positive*, below 0 for *negative*, inside ``(-delta, delta)`` for *within*; for *above*/*below*
      (a no-difference claim's sides, each tested at alpha / 2) the ``(1 - alpha)`` interval lies above
      +delta or below -delta.  The interval is BCa; when BCa's bounds are not finite
      (its bias or acceleration is undefined, as when almost every resampled mean lies on one
      side of the estimate) the percentile interval of the same resamples is used, and
      ``Effect.method`` says so.  All differences equal: the interval is ``[c, c]``.

    All differences zero: the directional tests show nothing, so the verdict is ``equivalent``
    (``holds`` for ``"equal"``) when the Wilcoxon TOST can reject with n datasets (``2**-n <=
    alpha``), else ``inconclusive``.  Fewer than two datasets: ``inconclusive``.  ``units``: how the
    reason writes differences.  Raises ``ValueError`` naming the dataset for a nan or infinite difference.
    """
    _check_rule(rule)
    if not isinstance(n_resamples, numbers.Integral) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not (isinstance(rounding, numbers.Real) and math.isfinite(rounding) and rounding >= 0):  # (nan: no comparison holds)
        raise ValueError(f"rounding must be a finite number >= 0, got {rounding!r}")
    x = _named_differences(differences)
    n = x.size
    if n < 2:
        return _too_few(rule, float(x.mean()), n, "dataset", "Wilcoxon over 1 dataset")

    estimate = float(x.mean())
    nonzero = int(np.count_nonzero(_within_rounding(x, rounding)))  # (as the rank tests count them)
    low, high, interval = _bootstrap_mean(x, rule.ci_level, n_resamples, seed)
    # an "equal" claim's sides beyond the margin: each at alpha / 2, with the (1 - alpha) interval
    sides = _bootstrap_mean(x, 1 - rule.alpha, n_resamples, seed)[:2] if rule.direction == "equal" else (low, high)

    def p(shift: float, side: str) -> float:
        return _wilcoxon_p(_within_rounding(x - shift, rounding), side, n_resamples, seed)

    tests = _run_tests(p, rule)
    a, dl, r = rule.alpha, rule.delta, rounding
    shown = _Shown(
        positive=_rejects(tests.positive, a) and low > r,
        negative=_rejects(tests.negative, a) and high < -r,
        within=dl is not None and _rejects(tests.within, a) and -dl + r < low and high < dl - r,
        above=dl is not None and _rejects(tests.above, _side(rule)) and sides[0] > dl + r,
        below=dl is not None and _rejects(tests.below, _side(rule)) and sides[1] < -dl - r,
    )
    word = _decide(rule, shown)
    method = f"Wilcoxon signed-rank (Pratt zeros) + {interval} of the mean over {n} datasets"
    evidence = (
        f"{method}; {nonzero} of {n} datasets had a non-zero difference, mean difference {units.value(estimate)}"
    )
    floor = 2.0**-nonzero
    if word == "inconclusive" and rule.direction != "equal" and nonzero > 0 and floor > a:
        evidence += (
            f"; with {nonzero} non-zero difference{'s' if nonzero != 1 else ''} no directional p below "
            f"2**-{nonzero} = {floor:.3g} is attainable"
        )
    # a side shown by one of the two conditions alone (the reader sees the interval beside the p-value)
    checks: tuple[tuple[str, float, bool, float, str], ...]
    if rule.direction == "equal":
        checks = (("> +delta", tests.above, sides[0] > dl + r, _side(rule), "alpha / 2"),
                  ("< -delta", tests.below, sides[1] < -dl - r, _side(rule), "alpha / 2"))  # fmt: skip
    else:
        checks = (("> 0", tests.positive, low > r, a, "alpha"), ("< 0", tests.negative, high < -r, a, "alpha"))
    if dl is not None:  # equivalence too needs both
        checks += (("within +-delta", tests.within, -dl + r < low and high < dl - r, a, "alpha"),)
    for name, p_side, beyond, at, said in checks:
        test = "Wilcoxon TOST" if name == "within +-delta" else "Wilcoxon test"
        if _rejects(p_side, at) != beyond:
            evidence += (f"; for D {name} the {'interval' if beyond else test} agrees but the "
                         f"{f'{test} (p > {said})' if beyond else 'interval'} does not, and a comparison is "
                         "shown only where both do")  # fmt: skip
    effect = Effect(estimate, low, high, rule.ci_level, tests.claim(rule), n, method)
    reason = _reason(word, rule, tests, shown, low, high, evidence, units, sides if rule.direction == "equal" else None,
                     rounding)
    return Verdict(word, rule, effect, reason)


def _within_rounding(x: np.ndarray, rounding: float) -> np.ndarray:
    """``x`` with entries within ``rounding`` of 0 set to 0 and magnitudes within ``rounding`` of the
    smallest of their run made equal to it (a zero and a tie, as the scores' rounding cannot tell)."""
    if rounding <= 0:
        return x
    x = np.where(np.abs(x) <= rounding, 0.0, x)
    return np.sign(x) * tied_within(np.abs(x), rounding)


def _wilcoxon_p(x: np.ndarray, side: str, n_resamples: int, seed: int) -> float:
    if not np.any(x):
        # Every sign flip gives the same (empty) sum: nothing can be shown; scipy says p = 1.
        return 1.0
    absx = np.abs(x[x != 0])
    if np.all(x != 0) and np.unique(absx).size == absx.size:
        method = "exact"  # no zeros, no ties: scipy's exact null distribution (fast for any n)
    else:
        # Zeros or ties change the null distribution; "exact" would no longer be exact.
        method = stats.PermutationMethod(n_resamples=n_resamples, rng=seed)
    return float(stats.wilcoxon(x, zero_method="pratt", alternative=side, method=method).pvalue)


def _bootstrap_mean(x: np.ndarray, level: float, n_resamples: int, seed: int) -> tuple[float, float, str]:
    if np.ptp(x) == 0:
        # Every resample of a constant has the same mean; BCa's acceleration would be 0/0.
        return float(x[0]), float(x[0]), "zero-width interval (all differences equal)"
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        # BCa degenerates with scipy warning or dividing 0 by 0; the fallback below is the answer.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(
            (x,), np.mean, confidence_level=level, method="BCa", n_resamples=n_resamples, rng=seed
        )
        ci, interval = res.confidence_interval, "BCa bootstrap interval"
        if not (np.isfinite(ci.low) and np.isfinite(ci.high)):
            res = stats.bootstrap(
                (x,),
                np.mean,
                confidence_level=level,
                method="percentile",
                n_resamples=0,
                bootstrap_result=res,
                rng=seed,
            )
            ci, interval = res.confidence_interval, "percentile bootstrap interval (BCa undefined)"
    return float(ci.low), float(ci.high), interval


# --------------------------------------------------------------------------------------------
# Fixed split vs resampled splits
# --------------------------------------------------------------------------------------------


def resampling_note(fixed: Verdict, resampled: Verdict, units: Units = Units()) -> str | None:
    """One line when the verdict depends on the split, else None.

    ``fixed``: the verdict on the source's fixed split (seeds vary only initialisation and data
    order); ``resampled``: on resampled splits (seeds also draw the split).  Both must come from
    the same rule.
    """
    for name, v in (("fixed", fixed), ("resampled", resampled)):
        if not isinstance(v, Verdict):
            raise ValueError(f"{name} must be a Verdict, got {type(v).__name__}")
    if fixed.rule != resampled.rule:
        raise ValueError(
            f"resampled was decided by {resampled.rule}, fixed by {fixed.rule}: compare verdicts of one rule"
        )
    if fixed.word == resampled.word:
        return None
    return (
        f"The verdict depends on the split: {fixed.word} on the source's fixed split "
        f"(mean difference {units.value(fixed.effect.estimate)}, seeds vary initialisation and data order), "
        f"{resampled.word} on resampled splits (mean difference {units.value(resampled.effect.estimate)})."
    )


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _check_rule(rule) -> None:
    if not isinstance(rule, Rule):
        raise ValueError(f"rule must be a Rule, got {type(rule).__name__}")


def _paired_scores(treatment, baseline) -> tuple[np.ndarray, np.ndarray]:
    t, b = _finite_1d("treatment", treatment), _finite_1d("baseline", baseline)
    if t.size != b.size:
        raise ValueError(f"baseline has {b.size} scores but treatment has {t.size}: paired scores need the same seeds")
    return t, b


def _finite_1d(name: str, values) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numbers, got {values!r}") from err
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one score per seed), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: one score per seed is needed")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(
            f"{name}[{bad[0]}] is {arr[bad[0]]}: scores must be finite "
            "(score diverged runs before the verdict)"
        )
    return arr


def _named_differences(differences) -> np.ndarray:
    # Named differences in name order: the bootstrap and a Monte Carlo p draw datasets by position, so
    # the same named differences in another order would get another interval, even another word.
    if isinstance(differences, pd.Series):
        names, values = _by_name(list(differences.index), list(differences.to_numpy()))
    elif isinstance(differences, Mapping):
        names, values = _by_name(list(differences.keys()), list(differences.values()))
    elif isinstance(differences, (str, bytes)) or not isinstance(differences, Sequence | np.ndarray):
        raise ValueError(
            f"differences must be a mapping or sequence of numbers, got {type(differences).__name__}"
        )
    else:
        names, values = list(range(len(differences))), list(differences)
    try:
        x = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"differences must be numbers, got {values!r}") from err
    if x.ndim != 1:
        raise ValueError(f"differences must hold one number per dataset, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("differences is empty: one mean difference per dataset is needed")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(
            f"differences[{names[bad[0]]!r}] is {x[bad[0]]}: every dataset's difference must be finite"
        )
    return x


def _by_name(names: list, values: list) -> tuple[list, list]:
    order = sorted(range(len(names)), key=lambda k: str(names[k]))
    return [names[k] for k in order], [values[k] for k in order]
