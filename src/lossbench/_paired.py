"""Paired scores over seeds, as the bench's report and the ledger's rule both read them (the rule must
not load the bench): when two scores count as equal, and the exact test of a difference that is the
same on every seed."""

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


def constant_shift_p(n: int, two_sided: bool = True) -> float:
    """The exact sign-flip p-value of n paired differences that are all the same non-zero value, where
    a t-test has no variance (its t is infinite, its p 0): of the ``2**n`` ways to sign them only the
    uniform ones reach their mean, so ``2 / 2**n`` two-sided and ``1 / 2**n`` on the side of the shift."""
    return 2.0 ** (1 - n) if two_sided else 2.0**-n
