"""Paired scores over seeds, as the bench's report and the ledger's rule both read them (the rule must
not load the bench): when two scores, and two differences of them, count as equal."""

from __future__ import annotations

import numpy as np

# Scores within this many float32 epsilons of the largest score count as equal: the bench's scores
# are float32 computations (torchmetrics on float32 logits) stored as doubles, so two runs with the
# same count of correct samples can differ by float32 rounding (and t - b by its own).
_ROUNDING_ULPS = 8


def score_rounding(*scores) -> float:
    """The rounding within which scores of these magnitudes, and their differences, count as equal."""
    largest = max(float(np.abs(np.asarray(s, dtype=float)).max(initial=0.0)) for s in scores)
    return _ROUNDING_ULPS * float(np.finfo(np.float32).eps) * largest


def constant_difference(treatment, baseline, rounding: float | None = None) -> tuple[float | None, float]:
    """The difference ``treatment - baseline`` where it is the same on every seed up to the scores'
    rounding (0.0 where it is within that of 0), else None (the t-test then has variance), and that
    rounding (``rounding`` where given: a report's, over more methods' scores than these two)."""
    t, b = np.asarray(treatment, dtype=float), np.asarray(baseline, dtype=float)
    d, rounding = t - b, score_rounding(t, b) if rounding is None else rounding
    if np.ptp(d) > rounding:
        return None, rounding
    c = float(d.mean())
    return (0.0 if abs(c) <= rounding else c), rounding


def tied_within(values, rounding: float) -> np.ndarray:
    """``values`` with each run of values within ``rounding`` of the run's smallest (in sorted order) made
    equal to it: ties that the scores' rounding cannot tell apart (a rank reads them as tied).  Each value
    is compared with the run's smallest, not with its sorted neighbour: every two values of a run are then
    within ``rounding``, and a chain of small steps (0, 0.6 r, 1.2 r) never ties values more than r apart."""
    x = np.asarray(values, dtype=float).copy()
    if rounding <= 0 or x.size < 2:
        return x
    order = np.argsort(x, kind="stable")
    size = x[order]
    for i in range(1, size.size):
        if size[i] - size[i - 1] <= rounding:  # (size[i - 1] is the run's smallest by now)
            size[i] = size[i - 1]
    x[order] = size
    return x
