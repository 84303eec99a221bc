"""Summary statistics over evaluation seeds and paired tests against the baseline (SciPy)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from lossbench._paired import constant_difference


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


def summarize(values: Sequence[float], confidence: float = 0.95,
              bounds: tuple[float, float] = (-math.inf, math.inf)) -> Summary:
    """Mean, sample std and a Student-t confidence interval for the mean (nan-free input), the
    interval clipped to ``bounds``, the range the metric can take (a mean cannot leave it)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    low, high = _t_interval(x, confidence)
    return Summary(n, mean, std, max(low, bounds[0]), min(high, bounds[1]))


def _t_interval(x: np.ndarray, confidence: float) -> tuple[float, float]:
    """Student-t interval for the mean of ``x`` (two or more values)."""
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1)) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return float(x.mean()) - half, float(x.mean()) + half


@dataclass(frozen=True)
class PairedTest:
    n: int
    mean_difference: float  # method - baseline
    p_value: float
    ci_low: float = math.nan  # Student-t interval of the mean difference
    ci_high: float = math.nan

    @property
    def same_on_every_seed(self) -> bool:
        """A non-zero difference the same on every seed: no variance, p the sign-flip test's (see paired_test)."""
        return self.mean_difference != 0 and self.ci_low == self.ci_high


def sign_flip_p(n: int) -> float:
    """Two-sided p of the exact sign-flip test when all ``n`` paired differences are equal and non-zero."""
    return 2.0 ** (1 - n)


def paired_test(method: Sequence[float], baseline: Sequence[float], confidence: float = 0.95,
                bounds: tuple[float, float] = (-math.inf, math.inf), rounding: float | None = None) -> PairedTest:
    """Two-sided paired t-test over seeds (each seed fixes initialisation and data order), with the
    Student-t interval of the mean difference clipped to ``bounds`` (for a metric in [lo, hi] a
    difference lies in [lo - hi, hi - lo]).

    Identical scores on every seed give p = 1; fewer than two pairs give nan.  A non-zero difference
    that is the same on every seed (within the scores' float32 rounding) leaves the t-test no variance
    (its limit, p = 0, would read 2 seeds as conclusive): p is then the exact sign-flip permutation
    test's, 2 / 2^n (of the 2^n equally likely signs, all alike is the most extreme pair of
    outcomes), the least p that test can give with n seeds; the report marks it.  The two tests differ
    there: differences that vary by one test example get the t-test's p, which may be smaller.  A mean
    difference within the rounding is 0 with p = 1, however the differences vary below it.  ``rounding``:
    the scores' float32 rounding, by default these two methods' (a report ties its ranks by all of theirs,
    and passes that, so that a rank tie and the test read one threshold).
    """
    a, b = np.asarray(method, dtype=float), np.asarray(baseline, dtype=float)
    if len(a) != len(b):
        raise ValueError(f"paired_test needs equally many scores, got {len(a)} and {len(b)}")
    n = len(a)
    if n < 2:
        return PairedTest(n, float(np.mean(a - b)) if n else math.nan, math.nan)
    diff = a - b
    shift, rounding = constant_difference(a, b, rounding)  # (the ledger's rule: scores are float32 computations)
    if shift is not None:  # the same difference on every seed: the t-test has no variance
        if shift == 0.0:
            return PairedTest(n, 0.0, 1.0, 0.0, 0.0)
        return PairedTest(n, shift, sign_flip_p(n), shift, shift)  # (the ledger's own test, verdict.py, reads the limit 0)
    low, high = _t_interval(diff, confidence)
    low, high, mean = max(low, bounds[0]), min(high, bounds[1]), float(diff.mean())
    if abs(mean) <= rounding:  # (equal totals give a mean of float32 round-off: 0, not shown to differ from 0)
        return PairedTest(n, 0.0, 1.0, low, high)
    return PairedTest(n, mean, float(stats.ttest_rel(a, b).pvalue), low, high)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (nan entries are left out of the family and stay nan)."""
    p = np.asarray(p_values, dtype=float)
    idx = [i for i in np.argsort(p) if not math.isnan(p[i])]
    m = len(idx)
    adjusted = np.full(len(p), math.nan)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def ranks(means: Sequence[float], higher_is_better: bool = True, ties: str = "average") -> list[float]:
    """Rank 1 = best; nan ranks last.  Ties share the average rank (2.5, for statistics over
    ranks), or with ``ties="min"`` the best rank they share (1, 2, 2, 4: how a table reads)."""
    x = np.asarray(means, dtype=float)
    key = np.where(np.isnan(x), -np.inf, x if higher_is_better else -x)
    return stats.rankdata(-key, method=ties).tolist()


P_FLOOR = 0.001  # smaller p-values print as "< 0.001": three decimals would say 0.000
SIGNIFICANCE = 0.05  # the level at which the report says a method differs from the baseline (Holm-adjusted)


def format_p(p: float) -> str:
    """A p-value for a table: three decimals, "< 0.001" below that, "-" where there is none."""
    if p is None or math.isnan(p):
        return "-"
    return f"< {P_FLOOR:g}" if p < P_FLOOR else f"{p:.3f}"
