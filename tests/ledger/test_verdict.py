"""The verdict rule on synthetic scores whose truth is known, checked against scipy where it applies."""

import io
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lossbench._ranking import Ranking, cd_diagram_png, ranking
from lossbench.ledger.verdict import (
    POINTS,
    VERDICTS,
    Effect,
    Rule,
    Verdict,
    across_datasets_verdict,
    paired_verdict,
    resampling_note,
    score_difference,
    score_rounding,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def seeds(shift: float, noise: float, n: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed scores: baseline around 0.80, treatment = baseline + shift + its own noise."""
    rng = np.random.default_rng(seed)
    baseline = 0.80 + rng.normal(0, 0.01, n)
    return baseline + shift + rng.normal(0, noise, n), baseline


def datasets(mean: float, sd: float, n: int = 10, seed: int = 0) -> dict[str, float]:
    """Per-dataset mean differences drawn around ``mean``."""
    rng = np.random.default_rng(seed)
    return {f"ds{i}": float(v) for i, v in enumerate(rng.normal(mean, sd, n))}


# --------------------------------------------------------------------------------------------
# Rule and Verdict
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"direction": "better"}, "direction"),
        ({"direction": "greater", "alpha": 0.5}, "alpha"),
        ({"direction": "greater", "alpha": 0.0}, "alpha"),
        ({"direction": "greater", "alpha": math.nan}, "alpha"),
        ({"direction": "greater", "delta": -0.01}, "delta"),
        ({"direction": "greater", "delta": math.inf}, "delta"),
        ({"direction": "equal"}, "delta is required"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Rule(**kwargs)


def test_a_verdict_word_outside_the_vocabulary_is_refused():
    effect = Effect(0.0, 0.0, 0.0, 0.9, math.nan, 3, "x")
    with pytest.raises(ValueError, match="word must be one of"):
        Verdict("maybe", Rule("greater"), effect, "")
    assert VERDICTS == ("holds", "contradicted", "equivalent", "inconclusive")


# --------------------------------------------------------------------------------------------
# One dataset, paired seeds
# --------------------------------------------------------------------------------------------

PAIRED_CASES = [
    # direction, true shift, noise, delta, n seeds, expected word
    ("greater", 0.02, 0.002, None, 10, "holds"),
    ("greater", 0.02, 0.002, 0.005, 10, "holds"),
    ("greater", -0.02, 0.002, None, 10, "contradicted"),
    ("greater", 0.0, 0.001, 0.01, 10, "equivalent"),
    ("greater", 0.0, 0.05, 0.01, 5, "inconclusive"),
    ("greater", 0.0, 0.05, None, 5, "inconclusive"),
    ("less", -0.02, 0.002, None, 10, "holds"),
    ("less", 0.02, 0.002, None, 10, "contradicted"),
    ("less", 0.0, 0.001, 0.01, 10, "equivalent"),
    ("less", 0.0, 0.05, 0.01, 5, "inconclusive"),
    ("equal", 0.0, 0.001, 0.01, 10, "holds"),
    ("equal", 0.05, 0.002, 0.01, 10, "contradicted"),
    ("equal", -0.05, 0.002, 0.01, 10, "contradicted"),
    ("equal", 0.0, 0.05, 0.01, 5, "inconclusive"),
]


@pytest.mark.parametrize(("direction", "shift", "noise", "delta", "n", "expected"), PAIRED_CASES)
def test_paired_verdict_recovers_the_known_truth(direction, shift, noise, delta, n, expected):
    t, b = seeds(shift, noise, n)
    v = paired_verdict(t, b, Rule(direction, delta=delta))
    assert v.word == expected, v.reason
    assert v.reason.startswith(expected + ":")
    assert v.effect.n == n and v.effect.method == f"paired t over {n} seeds"


@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_paired_effect_is_scipys_paired_t_test(alternative):
    t, b = seeds(0.003, 0.004, n=6, seed=3)
    v = paired_verdict(t, b, Rule(alternative, alpha=0.1))
    ref = stats.ttest_rel(t, b, alternative=alternative)
    ci = stats.ttest_rel(t, b).confidence_interval(confidence_level=0.8)  # 1 - 2 alpha
    assert v.effect.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert (v.effect.ci_low, v.effect.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert v.effect.estimate == pytest.approx(np.mean(t - b))
    assert v.effect.ci_level == pytest.approx(0.8)


def test_paired_equal_p_value_is_the_tost_p_value():
    t, b = seeds(0.001, 0.003, n=8, seed=4)
    v = paired_verdict(t, b, Rule("equal", delta=0.004))
    lower = stats.ttest_rel(t + 0.004, b, alternative="greater").pvalue  # D > -delta
    upper = stats.ttest_rel(t - 0.004, b, alternative="less").pvalue  # D < +delta
    assert v.effect.p_value == pytest.approx(max(lower, upper), rel=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_paired_words_agree_with_the_reported_interval(seed):
    # The reported (1 - 2 alpha) interval is the one matching every one-sided test: checkable by eye.
    rng = np.random.default_rng(100 + seed)
    t, b = seeds(rng.uniform(-0.01, 0.01), rng.uniform(0.001, 0.01), n=int(rng.integers(3, 12)), seed=seed)
    delta = 0.006
    g = paired_verdict(t, b, Rule("greater", delta=delta))
    lo, hi = g.effect.ci_low, g.effect.ci_high
    assert (g.word == "holds") == (lo > 0)
    assert (g.word == "contradicted") == (hi < 0)
    assert (g.word == "equivalent") == (lo <= 0 <= hi and -delta < lo and hi < delta)
    e = paired_verdict(t, b, Rule("equal", delta=delta))
    assert (e.word == "holds") == (-delta < lo and hi < delta)
    assert (e.word == "contradicted") == (lo > delta or hi < -delta)


@pytest.mark.parametrize("case", PAIRED_CASES[:6])
def test_less_is_the_mirror_of_greater(case):
    _, shift, noise, delta, n, _ = case
    t, b = seeds(shift, noise, n)
    less = paired_verdict(t, b, Rule("less", delta=delta))
    swapped = paired_verdict(b, t, Rule("greater", delta=delta))
    assert less.word == swapped.word
    assert less.effect.estimate == pytest.approx(-swapped.effect.estimate)
    assert less.effect.p_value == pytest.approx(swapped.effect.p_value)


@pytest.mark.filterwarnings("error")  # scipy's precision-loss warning must not be reached
def test_a_constant_difference_is_decided_by_its_sign():
    t, b = np.full(5, 0.95), np.full(5, 0.93)
    v = paired_verdict(t, b, Rule("greater"))
    assert v.word == "holds" and v.effect.p_value == 0.0
    assert v.effect.ci_low == v.effect.ci_high == v.effect.estimate == pytest.approx(0.02)
    assert "constant difference" in v.effect.method
    assert paired_verdict(t, b, Rule("less", delta=0.05)).word == "contradicted"
    assert paired_verdict(t, b, Rule("equal", delta=0.01)).word == "contradicted"  # 0.02 > delta
    assert paired_verdict(t, b, Rule("equal", delta=0.05)).word == "holds"
    # A constant difference on the margin shows neither side of it, whatever the rounding of 0.95 - 0.93.
    on_margin = paired_verdict(t, b, Rule("equal", delta=0.02))
    assert on_margin.word == "inconclusive" and math.isnan(on_margin.effect.p_value)


@pytest.mark.filterwarnings("error")
def test_differences_equal_up_to_rounding_count_as_constant():
    # 0.91 - 0.90 and 0.94 - 0.93 differ in the last bits, yet both are the score table's 0.01.
    t, b = [0.91, 0.92, 0.93, 0.94], [0.90, 0.91, 0.92, 0.93]
    assert np.ptp(np.subtract(t, b)) > 0
    v = paired_verdict(t, b, Rule("greater"))
    assert v.word == "holds" and v.effect.p_value == 0.0 and v.effect.ci_low == v.effect.ci_high


def float32_accuracy(correct: int, total: int) -> float:
    """An accuracy as the bench stores it: a float32 computation kept as a double."""
    return float(np.float32(correct) / np.float32(total))


@pytest.mark.filterwarnings("error")
def test_float32_scores_are_equal_up_to_their_own_rounding():
    # 95/100 and 94/100 in float32 differ by 0.00999999: on the margin 0.01, as the decimals are.
    t, b = [float32_accuracy(95, 100)] * 3, [float32_accuracy(94, 100)] * 3
    assert np.subtract(t, b)[0] != 0.01
    for scores in ((t, b), ([0.95] * 3, [0.94] * 3)):
        v = paired_verdict(*scores, Rule("equal", delta=0.01))
        assert v.word == "inconclusive" and math.isnan(v.effect.p_value)
    # one sample of 200 better on every seed against a margin of one sample: on the margin too
    up = paired_verdict([float32_accuracy(181, 200)] * 3, [float32_accuracy(180, 200)] * 3, Rule("equal", delta=0.005))
    assert up.word == "inconclusive"
    # the same count of correct samples over three seeds, split differently: the means are equal
    t = np.mean([float32_accuracy(c, 125) for c in (114, 116, 115)])
    b = np.mean([float32_accuracy(115, 125)] * 3)
    assert t != b and score_difference(t, b) == 0.0
    assert score_difference(float32_accuracy(116, 125), b) == pytest.approx(1 / 125, abs=1e-6)


@pytest.mark.filterwarnings("error")
def test_identical_scores_are_exact_equality_never_a_directional_holds():
    s = [0.90, 0.91, 0.93]
    with_margin = paired_verdict(s, s, Rule("greater", delta=0.01))
    assert with_margin.word == "equivalent"
    assert (with_margin.effect.estimate, with_margin.effect.ci_low, with_margin.effect.ci_high) == (0, 0, 0)
    without = paired_verdict(s, s, Rule("greater"))
    assert without.word == "inconclusive" and math.isnan(without.effect.p_value)
    assert "no margin" in without.reason
    assert paired_verdict(s, s, Rule("equal", delta=0.01)).word == "holds"


def test_a_reason_writes_its_differences_in_the_units_asked_for():
    """The ledger reports effects in points: its reasons say the same numbers in the same units."""
    t, b = [0.93, 0.95, 0.94, 0.96], [0.92, 0.93, 0.93, 0.93]
    raw, points = (paired_verdict(t, b, Rule("greater", delta=0.005), **kw) for kw in ({}, {"units": POINTS}))
    assert raw.word == points.word and raw.effect == points.effect
    low, high = raw.effect.ci_low, raw.effect.ci_high
    assert f"CI [{low:.4g}, {high:.4g}]" in raw.reason and "mean difference 0.0175" in raw.reason
    assert f"CI [{100 * low:.2f}, {100 * high:.2f}] points" in points.reason
    assert "mean difference 1.75 points" in points.reason and "points" not in raw.reason
    across = across_datasets_verdict({"a": 0.01, "b": 0.02, "c": 0.0}, Rule("greater", delta=0.005), units=POINTS)
    assert "mean difference 1.00 points" in across.reason and "+-delta = 0.50 points" in across.reason
    fixed = paired_verdict([0.9, 0.9], [0.8, 0.8], Rule("greater"))
    assert "(mean difference 10.00 points," in resampling_note(fixed, paired_verdict([0.8, 0.8], [0.9, 0.9], Rule("greater")), POINTS)


def test_one_seed_is_inconclusive():
    v = paired_verdict([0.95], [0.80], Rule("greater"))
    assert v.word == "inconclusive" and v.effect.n == 1 and math.isnan(v.effect.p_value)
    assert "1 seed" in v.reason


@pytest.mark.parametrize(
    ("treatment", "baseline", "match"),
    [
        ([0.9, 0.91, math.nan], [0.9, 0.9, 0.9], r"treatment\[2\] is nan"),
        ([0.9, 0.91, 0.92], [0.9, math.inf, 0.9], r"baseline\[1\] is inf"),
        ([0.9, 0.91], [0.9, 0.9, 0.9], "same seeds"),
        ([], [], "treatment is empty"),
        ([[0.9, 0.91]], [[0.9, 0.9]], "treatment must be 1-D"),
        (["a", "b"], [0.9, 0.9], "treatment must be numbers"),
    ],
)
def test_bad_scores_are_refused_naming_the_argument(treatment, baseline, match):
    with pytest.raises(ValueError, match=match):
        paired_verdict(treatment, baseline, Rule("greater"))


def test_a_rule_of_the_wrong_type_is_refused():
    with pytest.raises(ValueError, match="rule must be a Rule"):
        paired_verdict([0.9, 0.91], [0.9, 0.9], "greater")


# --------------------------------------------------------------------------------------------
# Several datasets
# --------------------------------------------------------------------------------------------

ACROSS_CASES = [
    # direction, mean, sd, delta, expected word
    ("greater", 0.01, 0.003, None, "holds"),
    ("greater", -0.01, 0.003, None, "contradicted"),
    ("greater", 0.0, 0.001, 0.01, "equivalent"),
    ("greater", 0.0, 0.03, 0.01, "inconclusive"),
    ("less", -0.01, 0.003, None, "holds"),
    ("less", 0.01, 0.003, None, "contradicted"),
    ("equal", 0.0, 0.001, 0.01, "holds"),
    ("equal", 0.05, 0.003, 0.01, "contradicted"),
    ("equal", 0.0, 0.03, 0.01, "inconclusive"),
]


@pytest.mark.parametrize(("direction", "mean", "sd", "delta", "expected"), ACROSS_CASES)
def test_across_datasets_recovers_the_known_truth(direction, mean, sd, delta, expected):
    v = across_datasets_verdict(datasets(mean, sd, seed=1), Rule(direction, delta=delta))
    assert v.word == expected, v.reason
    assert v.effect.n == 10 and "10 of 10 datasets had a non-zero difference" in v.reason


def test_across_effect_is_scipys_wilcoxon_and_bootstrap():
    diffs = datasets(0.004, 0.006, seed=2)
    x = np.array(list(diffs.values()))
    v = across_datasets_verdict(diffs, Rule("greater"), n_resamples=2000, seed=7)
    assert v.effect.estimate == pytest.approx(x.mean())
    # No zeros or ties: the exact null distribution.
    assert v.effect.p_value == stats.wilcoxon(x, alternative="greater", method="exact").pvalue
    ci = stats.bootstrap((x,), np.mean, confidence_level=0.9, n_resamples=2000, rng=7).confidence_interval
    assert (v.effect.ci_low, v.effect.ci_high) == (ci.low, ci.high)
    assert "BCa" in v.effect.method
    assert across_datasets_verdict(pd.Series(diffs), Rule("greater"), n_resamples=2000, seed=7) == v


def test_named_differences_get_one_verdict_in_any_order():
    # (six differences whose bootstrap interval crosses the margin's bound in some orders of the draws: holds, or not)
    diffs = {"d0": -0.0077, "d1": 0.0088, "d2": 0.013, "d3": 0.0113, "d4": 0.0087, "d5": 0.004}
    rule = Rule("greater", 0.05, 0.005)
    orders = [sorted(diffs), ["d0", "d1", "d3", "d4", "d5", "d2"], sorted(diffs, reverse=True)]
    verdicts = {across_datasets_verdict({k: diffs[k] for k in order}, rule) for order in orders}
    assert len(verdicts) == 1
    assert across_datasets_verdict(pd.Series(diffs)[::-1], rule) == verdicts.pop()


def test_zeros_and_ties_get_the_exact_permutation_p_value():
    # Pratt: the zero takes rank 1 and drops out; the rest rank 2, 3, 4 and are all positive, so of
    # the 2**3 equally likely sign patterns only this one reaches T+ = 9: p = 1/8.
    assert across_datasets_verdict([0.0, 0.01, 0.02, 0.03], Rule("greater")).effect.p_value == 1 / 8
    # Ranks 1.5, 1.5, 3, 4 with the first 1.5 negative: T+ = 8.5, reached by 3 of 16 patterns.
    assert across_datasets_verdict([0.01, -0.01, 0.02, 0.03], Rule("greater")).effect.p_value == 3 / 16
    # Two zeros take ranks 1, 2; the rest rank 3, 4, 5 with 5 negative: T+ = 7, reached by {3, 4},
    # {3, 5}, {4, 5} and {3, 4, 5}: p = 4/8.  Dropping the zeros first (zero_method="wilcox") would
    # give ranks 1, 2, 3, T+ = 3 and p = 5/8.
    assert across_datasets_verdict([0.0, 0.0, 0.01, 0.02, -0.03], Rule("greater")).effect.p_value == 1 / 2


def test_rank_test_and_mean_must_agree():
    # Nine small gains and one large loss: the rank test favours the treatment, the mean does not.
    diffs = [0.001 * i for i in range(1, 10)] + [-0.5]
    v = across_datasets_verdict(diffs, Rule("greater"))
    assert v.effect.p_value <= 0.05 and v.effect.ci_low < 0 < v.effect.ci_high
    assert v.word == "inconclusive"


def test_mostly_tied_datasets_report_how_few_differed():
    diffs = {f"ds{i}": 0.0 for i in range(8)} | {"ds3": 0.01}
    v = across_datasets_verdict(diffs, Rule("greater"))
    assert v.word == "inconclusive"
    assert "1 of 8 datasets had a non-zero difference" in v.reason
    assert "2**-1 = 0.5" in v.reason and v.effect.p_value == 0.5


@pytest.mark.parametrize(
    ("n", "rule", "expected"),
    [
        (6, Rule("greater", delta=0.01), "equivalent"),  # Wilcoxon TOST p = 2**-6 <= 0.05
        (6, Rule("greater"), "inconclusive"),
        (6, Rule("equal", delta=0.01), "holds"),
        (4, Rule("greater", delta=0.01), "inconclusive"),  # the Wilcoxon TOST cannot go below 2**-4
    ],
)
def test_all_zero_differences(n, rule, expected):
    v = across_datasets_verdict([0.0] * n, rule)
    assert v.word == expected, v.reason
    assert v.effect.ci_low == v.effect.ci_high == 0.0
    assert f"0 of {n} datasets had a non-zero difference" in v.reason


def test_bca_falls_back_to_the_percentile_interval_when_undefined():
    # So few resamples that all lie on one side of the estimate: BCa's bias correction is infinite.
    diffs = [0.02, 0.0, 0.0, 0.0, 0.02, 0.0, 0.0, 0.01, 0.01]
    v = across_datasets_verdict(diffs, Rule("greater"), n_resamples=4)
    assert "percentile" in v.effect.method
    assert np.isfinite([v.effect.ci_low, v.effect.ci_high]).all()


def test_across_datasets_counts_a_difference_equal_to_the_margin_up_to_rounding():
    # one test sample of 200 is a difference of 0.005 = delta; from float32 accuracies it comes out
    # 0.004999995 or 0.0050000548, and the verdict must not depend on which
    def accuracy(k):  # float32, as the bench stores it
        return float(np.float32(k) / np.float32(200))

    one = [score_difference(accuracy(k), accuracy(k - 1)) for k in range(150, 200)]
    below, above = [d for d in one if d < 0.005], [d for d in one if d > 0.005]
    assert below and above
    rule = Rule("equal", delta=0.005)
    others = {"a": 0.001, "b": 0.002, "c": -0.001, "d": 0.0015}
    rounding = score_rounding(accuracy(199))
    words = {
        name: across_datasets_verdict({**others, "e": e, "f": f}, rule, rounding=rounding).word
        for name, (e, f) in {"exact": (0.005, 0.005), "below": (below[0], below[1]), "above": (above[0], above[1])}.items()
    }
    assert words == {"exact": "inconclusive", "below": "inconclusive", "above": "inconclusive"}


def test_across_datasets_is_reproducible_and_seeded():
    diffs = datasets(0.002, 0.01, seed=5)
    a = across_datasets_verdict(diffs, Rule("greater"), n_resamples=1000, seed=3)
    assert across_datasets_verdict(diffs, Rule("greater"), n_resamples=1000, seed=3) == a
    b = across_datasets_verdict(diffs, Rule("greater"), n_resamples=1000, seed=4)
    assert (b.effect.ci_low, b.effect.ci_high) != (a.effect.ci_low, a.effect.ci_high)


def test_one_dataset_is_inconclusive():
    v = across_datasets_verdict({"iris": 0.03}, Rule("greater"))
    assert v.word == "inconclusive" and "1 dataset" in v.reason


@pytest.mark.parametrize(
    ("diffs", "match"),
    [
        ({"iris": 0.01, "wine": math.nan}, r"differences\['wine'\] is nan"),
        ([0.01, -math.inf], r"differences\[1\] is -inf"),
        ({}, "differences is empty"),
        ("0.01", "differences must be a mapping or sequence"),
    ],
)
def test_bad_differences_are_refused_naming_the_dataset(diffs, match):
    with pytest.raises(ValueError, match=match):
        across_datasets_verdict(diffs, Rule("greater"))


def test_bad_resample_count_is_refused():
    with pytest.raises(ValueError, match="n_resamples"):
        across_datasets_verdict([0.01, 0.02], Rule("greater"), n_resamples=0)


# --------------------------------------------------------------------------------------------
# Ranking many methods over many datasets
# --------------------------------------------------------------------------------------------


def table(n_datasets: int = 8, strengths=(0.0, 0.0, 0.05, 0.0), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    methods = ["ce", "focal", "exact", "hinge", "soft_f1", "dice"][: len(strengths)]
    scores = 0.8 + rng.normal(0, 0.02, (n_datasets, len(strengths))) + np.asarray(strengths)
    return pd.DataFrame(scores, columns=methods, index=[f"ds{i}" for i in range(n_datasets)])


def test_a_dominating_method_ranks_first_and_friedman_rejects():
    scores = table()
    r = ranking(scores)
    assert r.mean_ranks.index[0] == "exact" and r.mean_ranks.iloc[0] == 1.0
    ref_ranks = stats.rankdata(-scores.to_numpy(), axis=1).mean(axis=0)
    assert r.mean_ranks[list(scores.columns)].to_numpy() == pytest.approx(ref_ranks)
    assert r.friedman_p == pytest.approx(stats.friedmanchisquare(*scores.to_numpy().T).pvalue)
    assert r.friedman_p < 0.01
    assert list(r.nemenyi_p.index) == list(r.nemenyi_p.columns) == list(r.mean_ranks.index)
    assert r.n_datasets == 8


def test_critical_difference_matches_demsar_and_the_nemenyi_p_values():
    # Demšar (2006), table 5(a): q_0.05 = 2.569 for 4 classifiers.
    r = ranking(table(n_datasets=8))
    assert r.critical_difference == pytest.approx(2.569 * math.sqrt(4 * 5 / (6 * 8)), rel=1e-3)
    # Nemenyi rejects exactly for the pairs whose mean ranks differ by the critical difference.
    r = ranking(table(n_datasets=12, strengths=(0.0, 0.01, 0.02, 0.03, 0.04), seed=1))
    gaps = np.abs(r.mean_ranks.to_numpy()[:, None] - r.mean_ranks.to_numpy()[None, :])
    significant = r.nemenyi_p.to_numpy() <= r.alpha
    assert significant.any() and not significant.all()
    assert np.array_equal(significant, gaps >= r.critical_difference)


def test_a_table_of_ties_has_no_friedman_p_value():
    scores = pd.DataFrame(np.full((4, 3), 0.9), columns=["a", "b", "c"])
    r = ranking(scores)
    assert (r.mean_ranks == 2.0).all() and math.isnan(r.friedman_p)


@pytest.mark.parametrize(
    ("scores", "match"),
    [
        (table(strengths=(0.0, 0.1)), "at least 3 methods"),
        (table(n_datasets=1), "at least 2 datasets"),
        (
            table().replace({table().loc["ds2", "focal"]: np.nan}),
            r"scores\['focal'\] on dataset 'ds2' is nan",
        ),
        (np.zeros((3, 3)), "scores must be a pandas DataFrame"),
    ],
)
def test_bad_score_tables_are_refused(scores, match):
    with pytest.raises(ValueError, match=match):
        ranking(scores)


def test_cd_diagram_is_a_png_and_leaves_pyplot_alone(tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    backend, figures = matplotlib.get_backend(auto_select=False), plt.get_fignums()
    r = ranking(table())
    png = cd_diagram_png(r)
    assert png.startswith(PNG_SIGNATURE) and len(png) > 1000
    assert cd_diagram_png(r, tmp_path / "cd.png") == (tmp_path / "cd.png").read_bytes() == png
    buffer = io.BytesIO()
    cd_diagram_png(r, buffer)
    assert buffer.getvalue() == png
    assert matplotlib.get_backend(auto_select=False) == backend and plt.get_fignums() == figures
    with matplotlib.rc_context({"text.usetex": True, "axes.facecolor": "red"}):  # (a user's matplotlibrc: ignored)
        assert cd_diagram_png(r) == png
    with pytest.raises(ValueError, match="ranking must be a Ranking"):
        cd_diagram_png(r.mean_ranks)
    assert isinstance(r, Ranking)


def test_importing_the_module_loads_no_torch_no_bench_no_plotting():
    code = (
        "import sys, lossbench.ledger.verdict; "
        "print([m for m in ('torch', 'lossbench.bench', 'matplotlib') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------
# Fixed split vs resampled splits
# --------------------------------------------------------------------------------------------


def test_resampling_note_only_when_the_words_differ():
    rule = Rule("greater", delta=0.01)
    fixed = paired_verdict(*seeds(0.02, 0.002), rule)
    resampled = paired_verdict(*seeds(0.0, 0.05, n=5), rule)
    assert (fixed.word, resampled.word) == ("holds", "inconclusive")
    note = resampling_note(fixed, resampled)
    assert "holds on the source's fixed split" in note and "inconclusive on resampled splits" in note
    assert "\n" not in note
    assert resampling_note(fixed, paired_verdict(*seeds(0.03, 0.002, seed=9), rule)) is None


def test_resampling_note_refuses_verdicts_of_different_rules():
    fixed = paired_verdict(*seeds(0.02, 0.002), Rule("greater"))
    resampled = paired_verdict(*seeds(0.02, 0.002), Rule("greater", alpha=0.01))
    with pytest.raises(ValueError, match="resampled was decided by"):
        resampling_note(fixed, resampled)


def test_a_no_difference_claim_is_contradicted_by_a_side_at_half_alpha():
    """Both sides can reject a true no-difference claim where the margin is small against the noise:
    each is tested at alpha / 2, so together they contradict it at most at alpha."""
    rule = Rule("equal", alpha=0.05, delta=0.005)
    base = np.full(5, 0.80)
    noise = np.array([-0.01, 0.005, 0.0, 0.01, -0.004])
    for shift, word in ((0.014, "inconclusive"), (0.016, "contradicted")):
        t = base + shift + noise
        p_above = stats.ttest_1samp(t - base, 0.005, alternative="greater").pvalue
        v = paired_verdict(t, base, rule)
        assert v.word == word and v.p_opposite == pytest.approx(2 * p_above)
        assert (p_above <= 0.025) == (word == "contradicted"), p_above
    assert "alpha / 2 = 0.025" in v.reason
    # the size: a true no-difference claim with a small margin is contradicted at most at alpha
    rng = np.random.default_rng(0)
    draws = [paired_verdict(0.8 + rng.normal(0, 0.2, 5), np.full(5, 0.8), rule).word for _ in range(2000)]
    assert draws.count("contradicted") / len(draws) < 0.05 + 3 * (0.05 * 0.95 / 2000) ** 0.5


def test_over_datasets_the_reason_says_where_rank_test_and_interval_disagree():
    v = across_datasets_verdict({"a": 0.01, "b": 0.02, "c": 0.015, "d": -0.001, "e": 0.03}, Rule("greater"))
    assert v.word == "inconclusive" and v.effect.ci_low > 0 and v.effect.p_value > 0.05
    assert "for D > 0 the interval agrees but the Wilcoxon test (p > alpha) does not" in v.reason
    agreed = across_datasets_verdict({"a": 0.01, "b": 0.02, "c": 0.015, "d": 0.001, "e": 0.03}, Rule("greater"))
    assert agreed.word == "holds" and "agrees but" not in agreed.reason


def test_differences_within_rounding_of_zero_are_not_counted_as_non_zero():
    v = across_datasets_verdict({"a": 1e-9, "b": 2e-9, "c": 0.02, "d": 0.03}, Rule("greater"), rounding=1e-6)
    assert "2 of 4 datasets had a non-zero difference" in v.reason and "2**-2 = 0.25" in v.reason
    assert v.effect.p_value == 0.25


def test_a_ranking_ties_means_equal_up_to_float32_rounding():
    scores = pd.DataFrame({"a": [0.92, 0.80, 0.70], "b": [0.92 + 2e-8, 0.70, 0.80], "c": [0.90, 0.60, 0.60]},
                          index=["x", "y", "z"])  # fmt: skip
    r = ranking(scores)
    assert r.mean_ranks.to_dict() == {"a": 1.5, "b": 1.5, "c": 3.0}  # (by their last bits: a 5/3, b 4/3)


def test_censored_values_are_bounds_and_the_sign_test_judges_them():
    """A run that never reached its target counts as a stand-in, which is only a lower bound: the
    differences' known signs decide (so the stand-in's value cannot make a difference constant)."""
    from lossbench.ledger.verdict import censored_paired_verdict

    rule = Rule("less", alpha=0.05, delta=1.0)
    for stand_in in (13.0, 14.0, 20.0):  # the same verdict whatever the stand-in
        v = censored_paired_verdict([11, 11, stand_in], [9, 9, 11], rule, censored_from=stand_in)
        assert v.word == "inconclusive" and v.p_opposite == pytest.approx(0.125)  # 3 of 3 slower: 1/8
        assert math.isnan(v.effect.ci_low) and "no interval: a sign test" in v.reason
    # 5 seeds, each known faster (the baseline never reached the target; the treatment did well before)
    v = censored_paired_verdict([5, 6, 5, 7, 5], [13] * 5, rule, censored_from=13)
    assert v.word == "holds" and v.effect.p_value == pytest.approx(1 / 32)
    # the treatment censored and the baseline not far behind it: the sign is unknown, counted against
    v = censored_paired_verdict([13, 13, 13, 13, 13], [12, 12, 12, 12, 15], rule, censored_from=13)
    assert v.word == "inconclusive" and v.effect.p_value == 1.0
    # no censored value: the sign test of the exact differences (never the t-test's constant rule)
    v = censored_paired_verdict([9, 9, 9, 9, 9], [10, 10, 10, 10, 10], rule, censored_from=13)
    assert v.word == "holds" and v.effect.p_value == pytest.approx(1 / 32)
    with pytest.raises(ValueError, match="paired scores need the same seeds"):
        censored_paired_verdict([1, 2], [1], rule, censored_from=13)


def test_a_no_difference_claim_over_datasets_is_contradicted_only_by_its_alpha_over_2_interval():
    """Its sides beyond the margin are tested at alpha / 2: the interval that matches is the (1 - alpha)
    one. Here the 90 % interval lies above +delta and the rank test passes at 0.025, the 95 % one does not."""
    x = [0.0155, 0.0214, -0.0069, 0.0241, 0.0207, 0.0093, 0.012, 0.0164, 0.0213, 0.015, 0.0273, 0.0213]
    v = across_datasets_verdict(dict(zip("abcdefghijkl", x)), Rule("equal", alpha=0.05, delta=0.01))
    assert v.effect.ci_low > 0.01 and v.word == "inconclusive"
    assert "95% CI [0.009516, 0.02006], the sides' interval" in v.reason
    assert "for D > +delta the Wilcoxon test agrees but the interval does not" in v.reason
    # paired seeds: the reason shows the same interval, which the t-test at alpha / 2 matches exactly
    p = paired_verdict([0.93, 0.95, 0.94, 0.96], [0.90, 0.90, 0.91, 0.90], Rule("equal", alpha=0.05, delta=0.01))
    d = np.array([0.93, 0.95, 0.94, 0.96]) - np.array([0.90, 0.90, 0.91, 0.90])
    wide = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert f"95% CI [{wide.low:.4g}, {wide.high:.4g}], the sides' interval" in p.reason


def test_a_reason_says_why_equivalence_is_not_shown_where_the_two_conditions_disagree():
    # the Wilcoxon TOST rejects (p = 0.027) but one large dataset keeps the interval's top above +delta
    x = [0.03, 0.0019, 0.0003, -0.0016, 0.0011, 0.0039, 0.0028, -0.0021, -0.0038, -0.0019, 0.0001]
    v = across_datasets_verdict(x, Rule("greater", 0.05, 0.005), n_resamples=2000)
    assert v.word == "inconclusive" and v.effect.ci_high > 0.005
    assert "for D within +-delta the Wilcoxon TOST agrees but the interval does not" in v.reason


@pytest.mark.filterwarnings("error")
def test_a_difference_on_the_margin_up_to_rounding_is_not_said_to_lie_inside_it():
    t, b = [float(np.float32(0.95))] * 3, [float(np.float32(0.945))] * 3  # 0.005 up to float32's rounding
    above = paired_verdict(t, b, Rule("greater", 0.05, 0.005))
    assert above.word == "holds" and "lies within" not in above.reason
    on_margin = paired_verdict(t, b, Rule("equal", 0.05, 0.005))  # one side is undefined there: no p to print
    assert on_margin.word == "inconclusive" and "undefined on the margin's side" in on_margin.reason


@pytest.mark.parametrize("rounding", [math.nan, -1e-3, math.inf])
def test_across_datasets_refuses_a_rounding_that_is_no_finite_number_at_least_0(rounding):
    with pytest.raises(ValueError, match="rounding must be a finite number >= 0"):
        across_datasets_verdict([0.02, 0.03, 0.04, 0.05, 0.06, 0.07], Rule("greater"), rounding=rounding)


def test_an_equivalence_claim_contradicted_below_names_the_negative_margin_and_one_seed_prints_no_interval():
    from lossbench.ledger.report import effect

    below = paired_verdict([0.90, 0.91, 0.92], [0.95, 0.955, 0.965], Rule("equal", 0.05, 0.005), units=POINTS)
    assert below.word == "contradicted" and "below -delta = -0.50 points" in below.reason
    above = paired_verdict([0.95, 0.955, 0.965], [0.90, 0.91, 0.92], Rule("equal", 0.05, 0.005), units=POINTS)
    assert above.word == "contradicted" and "above +delta = 0.50 points" in above.reason
    assert effect(paired_verdict([0.9], [0.8], Rule("greater", 0.05, 0.005))) == "+10.00 [-, -]"


@pytest.mark.parametrize(("rule", "word"), [(Rule("greater", delta=0.005), "equivalent"), (Rule("greater"), "inconclusive")])
def test_a_difference_of_0_on_every_seed_says_its_directional_p_is_undefined(rule, word):
    v = paired_verdict([0.9, 0.8, 0.7], [0.9, 0.8, 0.7], rule)
    assert v.word == word and "p undefined: the difference is 0 on every seed" in v.reason and "nan" not in v.reason
