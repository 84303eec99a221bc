"""The exact sign-flip test of paired differences that are all the same (shared by the bench's report
and the ledger's rule, which must not load the bench)."""

from __future__ import annotations


def constant_shift_p(n: int, two_sided: bool = True) -> float:
    """The exact sign-flip p-value of n paired differences that are all the same non-zero value, where
    a t-test has no variance (its t is infinite, its p 0): of the ``2**n`` ways to sign them only the
    uniform ones reach their mean, so ``2 / 2**n`` two-sided and ``1 / 2**n`` on the side of the shift."""
    return 2.0 ** (1 - n) if two_sided else 2.0**-n
