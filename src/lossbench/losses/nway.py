"""Su's "n-way m-class" loss: ``n`` single-label ``m``-class decisions per sample, ZLPR-style."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossbench.losses._registry import loss_module, register_loss
from lossbench.losses._validation import (
    check_index_target,
    check_logits,
    check_reduction,
    compute_dtype,
    loss_output,
    reduce,
    without_ignored_rows,
)


def nway_mclass(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """``sum_j log(1 + sum_i sum_{k != j} t_ij e^{s_ik - s_ij})`` per sample, ``t`` the one-hot targets.

    Each sample has ``n`` tasks ``i``, each an ``m``-way classification with logits ``s_i.``.
    Summing over the tasks inside the log, per class ``j``, makes a class shared by many tasks
    contribute about ``log(count)`` rather than ``count`` times a cross-entropy, as ZLPR does for
    labels.  For ``m = 2`` it is :func:`~lossbench.losses.zlpr` on the logits ``s_i1 - s_i0``.
    Computed per class as ``log(1 + sum_{i: y_i = j} e^{r_i})``, with
    ``r_i = logsumexp_{k != y_i}(s_ik - s_{i y_i})``, by log-sum-exps over masked entries.

    Args:
        logits: raw scores ``(B, n, m)``.
        target: class index per task ``(B, n)``; tasks equal to ``ignore_index`` are excluded.
        reduction: over the per-sample losses ``(B,)``; ``"mean"`` averages over the samples
            with at least one non-ignored task (a sample with none has loss 0).

    Reference: Su, kexue.fm/archives/9158 (the hard-label form; his soft-label variants are
    not provided).
    """
    check_reduction(reduction)
    check_logits(logits, 3, validate)
    b, n, m = logits.shape
    target = check_index_target(target, m, (b, n), ignore_index, validate)
    valid = target != ignore_index
    x = without_ignored_rows(logits.to(compute_dtype(logits)), valid, validate)
    y = torch.where(valid, target, torch.zeros_like(target))
    lowest = torch.finfo(x.dtype).min
    rivals = torch.ones_like(x, dtype=torch.bool).scatter_(2, y[..., None], False)
    margins = torch.where(rivals, x - x.gather(2, y[..., None]), torch.full_like(x, lowest))
    rival_mass = torch.logsumexp(margins, dim=2)  # r_i, (B, n)
    # members[b, j, i]: task i of sample b is labelled j (and not ignored).
    members = valid[:, None, :] & (y[:, None, :] == torch.arange(m, device=x.device)[None, :, None])
    grouped = torch.where(members, rival_mass[:, None, :], torch.full_like(members, lowest, dtype=x.dtype))
    loss = F.softplus(torch.logsumexp(grouped, dim=2)).sum(1)  # exactly 0 for a fully ignored sample
    return loss_output(reduce(loss, reduction, valid.any(1)), logits)


NWayMClassLoss = loss_module(nway_mclass, "NWayMClassLoss")

register_loss(
    "nway_mclass",
    nway_mclass,
    NWayMClassLoss,
    signature="nway",
    reference="Su, kexue.fm/archives/9158 (hard-label form)",
)
