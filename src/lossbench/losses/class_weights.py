"""Per-class weights from training-set class counts, for weighted losses (``weight=``, ``alpha=``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lossbench.losses._validation import as_counts, check_class_counts, check_interval


def _counts(class_counts: torch.Tensor | Sequence[float]) -> tuple[torch.Tensor, torch.dtype]:
    """The counts as a float64 vector, and the dtype to return weights in."""
    counts = as_counts(class_counts)
    if counts.ndim != 1 or counts.numel() == 0:
        raise ValueError(
            "class_counts must be a non-empty 1-D sequence of per-class counts, "
            f"got shape {tuple(counts.shape)}"
        )
    check_class_counts(counts, counts.numel())
    dtype = counts.dtype if counts.is_floating_point() else torch.get_default_dtype()
    return counts.to(torch.float64), dtype


def balanced_class_weights(class_counts: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """scikit-learn's "balanced" weights ``w_c = n / (C n_c)`` with ``n = sum_c n_c``.

    A class seen ``n / C`` times (the balanced share) gets weight 1.  Returns a ``(C,)`` float
    tensor on the counts' device (float counts keep their dtype; integer counts give the
    default dtype).  Reference: ``sklearn.utils.class_weight.compute_class_weight("balanced")``.
    """
    counts, dtype = _counts(class_counts)
    return (counts.sum() / (counts.numel() * counts)).to(dtype)


def effective_number_weights(
    class_counts: torch.Tensor | Sequence[float], beta: float = 0.9999
) -> torch.Tensor:
    """Class-balanced weights ``w_c ∝ (1 - beta) / (1 - beta^{n_c})``, normalised to sum to ``C``.

    ``(1 - beta^n) / (1 - beta)`` is the "effective number" of samples of a class of size
    ``n``: it grows like ``n`` for small ``n`` and saturates at ``1 / (1 - beta)``.
    ``beta = 0`` gives uniform weights; ``beta -> 1`` tends to inverse-frequency weights.
    ``beta`` must lie in ``[0, 1)``.  Returns a ``(C,)`` tensor as
    :func:`balanced_class_weights` does.

    Reference: Cui et al., "Class-Balanced Loss Based on Effective Number of Samples",
    CVPR 2019, arXiv 1901.05555 (normalisation as in their and Cao et al.'s code).
    """
    check_interval("beta", beta, 0.0, 1.0, closed="left")
    counts, dtype = _counts(class_counts)
    beta_t = torch.tensor(beta, dtype=torch.float64, device=counts.device)
    # 1 - beta^n as -expm1(n log beta): exact for beta near 1, where beta^n rounds badly.
    weights = (1 - beta_t) / -torch.expm1(counts * torch.log(beta_t))
    return (weights * (counts.numel() / weights.sum())).to(dtype)
