"""Summary statistics over evaluation seeds and paired tests against the baseline (SciPy)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean, sample std and a Student-t confidence interval for the mean (nan-free input)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class PairedTest:
    n: int
    mean_difference: float  # method - baseline
    p_value: float


def paired_test(method: Sequence[float], baseline: Sequence[float]) -> PairedTest:
    """Two-sided paired t-test over seeds (each seed fixes initialisation and data order).

    Identical scores on every seed give p = 1; fewer than two pairs give nan.
    """
    a, b = np.asarray(method, dtype=float), np.asarray(baseline, dtype=float)
    if len(a) != len(b):
        raise ValueError(f"paired_test needs equally many scores, got {len(a)} and {len(b)}")
    n = len(a)
    if n < 2:
        return PairedTest(n, float(np.mean(a - b)) if n else math.nan, math.nan)
    diff = a - b
    if np.allclose(diff, diff[0]) and np.isclose(diff[0], 0.0):
        return PairedTest(n, 0.0, 1.0)
    if np.allclose(diff, diff[0]):  # a constant non-zero shift: t is infinite
        return PairedTest(n, float(diff.mean()), 0.0)
    return PairedTest(n, float(diff.mean()), float(stats.ttest_rel(a, b).pvalue))


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


def ranks(means: Sequence[float], higher_is_better: bool = True) -> list[float]:
    """Rank 1 = best; ties share the average rank; nan ranks last."""
    x = np.asarray(means, dtype=float)
    key = np.where(np.isnan(x), -np.inf, x if higher_is_better else -x)
    return stats.rankdata(-key, method="average").tolist()
