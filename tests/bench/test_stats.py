import math

import numpy as np
import pytest
from scipy import stats as sps

from lossbench.bench.stats import holm, paired_test, ranks, summarize


def test_summary_matches_student_t_interval():
    x = [0.91, 0.93, 0.90, 0.95, 0.92]
    s = summarize(x)
    low, high = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert s.n == 5 and s.mean == pytest.approx(np.mean(x)) and s.std == pytest.approx(np.std(x, ddof=1))
    assert (s.ci_low, s.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert math.isnan(summarize([0.5]).ci_low) and summarize([]).n == 0


def test_paired_test_matches_scipy_and_handles_degenerate_cases():
    a, b = [0.9, 0.92, 0.91, 0.95], [0.88, 0.9, 0.92, 0.9]
    t = paired_test(a, b)
    assert t.p_value == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert t.mean_difference == pytest.approx(np.mean(np.subtract(a, b)))
    assert paired_test(a, a).p_value == 1.0
    # a shift the same on every seed: no variance, the exact sign-flip test's p (2 of the 2^4 sign patterns)
    constant = paired_test([x + 0.01 for x in b], b)
    assert constant.p_value == 0.125 and constant.ci_low == constant.ci_high == pytest.approx(0.01)
    assert constant.same_on_every_seed
    flips = sps.permutation_test(([0.01] * 4,), np.mean, permutation_type="samples", n_resamples=np.inf)
    assert constant.p_value == pytest.approx(flips.pvalue)  # SciPy's exact sign-flip test
    # the same within the float32 rounding of the scores, as the ledger reads them (numpy's allclose did not)
    rounded = paired_test([0.91, 0.92, 0.9300005], [0.90, 0.91, 0.92])
    assert rounded.p_value == 0.25 and rounded.ci_low == rounded.ci_high
    assert math.isnan(paired_test([1.0], [0.5]).p_value)
    # equal totals of correct samples stored as float32 scores: a mean difference of round-off is 0
    f32 = lambda counts: [float(np.float32(c / 178)) for c in counts]  # noqa: E731
    even = paired_test(f32([121, 153, 119]), f32([119, 157, 117]))
    assert np.mean(np.subtract(f32([121, 153, 119]), f32([119, 157, 117]))) != 0
    assert even.mean_difference == 0.0 and even.ci_low < 0 < even.ci_high
    with pytest.raises(ValueError, match="equally many"):
        paired_test([1.0, 2.0], [1.0])


def test_holm_adjustment():
    # Known example: p = (0.01, 0.04, 0.03) -> (0.03, 0.06, 0.06)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.2, math.nan, 0.01])
    assert adjusted[0] == pytest.approx(0.2) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)


def test_ranks_best_first_with_ties_and_nan_last():
    assert ranks([0.8, 0.9, 0.8, math.nan]) == [2.5, 1.0, 2.5, 4.0]
    assert ranks([0.3, 0.1, math.nan], higher_is_better=False) == [2.0, 1.0, 3.0]


def test_a_mean_difference_within_the_scores_rounding_is_zero_and_not_shown_to_differ():
    # nine differences of 0.95 r and one of -0.1 r (r: the scores' float32 rounding): the report printed
    # +0.0000 beside p < 0.001 and "shown to differ (below)", and tied the two in rank
    from lossbench._paired import score_rounding

    base = np.full(10, 0.5)
    r = score_rounding(base, base)
    method = base + np.array([0.95 * r] * 9 + [-0.1 * r])
    test = paired_test(method, base)
    assert test.mean_difference == 0.0 and test.p_value == 1.0
    assert sps.ttest_rel(method, base).pvalue < 1e-3  # (what the t-test alone said)


def test_a_given_rounding_decides_the_test_as_the_reports_rank_ties_do():
    # a constant +7e-7: beyond the pair's own rounding (4.8e-7), within that of a report whose scores reach 1.0
    from lossbench._paired import score_rounding

    base = np.full(7, 0.5)
    method = base + 7e-7
    assert paired_test(method, base).p_value == pytest.approx(2.0**-6)
    wider = score_rounding(base, np.ones(7))
    test = paired_test(method, base, rounding=wider)
    assert test.mean_difference == 0.0 and test.p_value == 1.0
