"""Seeded splits, long-tail subsampling, feature standardisation and index mini-batches.

Everything here is deterministic given its ``seed`` (a private ``torch.Generator``; the
global RNG is never touched) and works on tensors in memory.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch

from lossbench.data._dataset import VALIDATION_MASK, Dataset

# Held out by loaders whose source has no test split: the protocol of the EXACT paper's UCI
# experiments (Karpukhin et al. 2022, arXiv 2205.09615: train_test_split(test_size=0.2)).
DEFAULT_TEST_FRACTION = 0.2


def _check_fraction(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0 < value < 1):
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}")


# The seeds each split takes: scikit-learn's random_state (NumPy's legacy generator) [0, 2**32);
# torch.Generator.manual_seed up to 2**64 (evaluation seeds, study seed * 1000 + i, outgrow 2**32).
SEED_BITS = {"random": 32, "stratified": 64}


def check_seed(seed: int, bits: int, what: str) -> None:
    """Refuse a ``seed`` outside ``[0, 2**bits)``; ``what`` says who takes it (``for the random split``)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**bits:
        raise ValueError(f"seed must be an int in [0, 2**{bits}) {what}, got {seed!r}")


def check_split_seed(seed: int, split: str) -> None:
    """Refuse a ``seed`` the ``split`` (a key of ``SEED_BITS``) cannot take."""
    check_seed(seed, SEED_BITS[split], f"for the {split} split")


def resolve_test_fraction(test_path: Any, test_fraction: float | None) -> float:
    """The test fraction a loader uses: none with a test file, the default without one.  A loader's
    ``test_fraction`` defaults to None, so one given together with ``test_path`` is refused, not ignored."""
    if test_path is not None:
        if test_fraction is not None:
            raise ValueError(
                f"test_fraction={test_fraction!r} and test_path={str(test_path)!r} exclude each other"
            )
        return 0.0
    if test_fraction is None:
        return DEFAULT_TEST_FRACTION
    _check_fraction("test_fraction", test_fraction)
    return test_fraction


def stratification_groups(y: torch.Tensor) -> torch.Tensor:
    """The group each sample is stratified by.

    Multiclass ``(N,)``: its class.  Multilabel ``(N, C)``: its rarest positive label (ties
    to the lower index), or ``C`` for samples without positives.  Splitting each such group
    proportionally spreads every label's positives close to the requested fraction, in
    particular the rare labels' -- a cheap stand-in for iterative stratification
    (Sechidis, Tsoumakas & Vlahavas 2011) that needs no search.
    """
    if y.ndim == 1:
        return y.long()
    if y.ndim != 2:
        raise ValueError(
            f"y must be (N,) class indices or (N, C) multilabel targets, got shape {tuple(y.shape)}"
        )
    positive = y > 0.5
    freq = positive.sum(0).double()
    rarity = torch.where(
        positive, freq.expand_as(positive), torch.full_like(freq, math.inf).expand_as(positive)
    )
    groups = rarity.argmin(1)
    return torch.where(positive.any(1), groups, torch.full_like(groups, y.shape[1]))


def _grouped_permutation(
    groups: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ordered by group, randomly within each group, and each one's rank in its group."""
    n = groups.numel()
    perm = torch.randperm(n, generator=generator)
    order = perm[torch.argsort(groups[perm], stable=True)]
    sorted_groups = groups[order]
    _, counts = torch.unique_consecutive(sorted_groups, return_counts=True)
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    return order, torch.arange(n) - starts


def stratified_split(
    y: torch.Tensor, val_fraction: float = 0.2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded stratified split of ``range(N)`` into sorted ``(train_idx, val_idx)`` int64 tensors.

    Each group (see ``stratification_groups``: the class, or for multilabel targets the
    rarest positive label) sends ``floor(n_g * val_fraction)`` samples to validation, and the
    remaining ``round(N * val_fraction)`` total is handed out by largest remainder; a group
    always keeps at least one sample in training (a singleton stays there).
    """
    _check_fraction("val_fraction", val_fraction)
    check_split_seed(seed, "stratified")
    groups = stratification_groups(y.detach().cpu())
    n = groups.numel()
    if n < 2:
        raise ValueError(f"stratified_split needs at least 2 samples, got {n}")
    _, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    quota = counts.double() * val_fraction
    alloc = torch.minimum(quota.floor().long(), (counts - 1).clamp(min=0))
    room = (counts - 1).clamp(min=0) - alloc
    short = round(n * val_fraction) - int(alloc.sum())
    for g in torch.argsort(quota - quota.floor(), descending=True, stable=True).tolist():
        if short <= 0:
            break
        if room[g] > 0:
            alloc[g] += 1
            short -= 1
    generator = torch.Generator().manual_seed(int(seed))
    order, rank = _grouped_permutation(inverse, generator)
    is_val = rank < alloc[inverse[order]]
    return order[~is_val].sort().values, order[is_val].sort().values


def train_test_indices(y: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The seeded stratified train/test split used for sources that ship without one; a split that
    would hold out no test sample is refused (``stratified_split`` leaves that to its callers: the
    bench names the spec's ``val_fraction`` for an empty validation part)."""
    _check_fraction("test_fraction", test_fraction)
    train_idx, test_idx = stratified_split(y, val_fraction=test_fraction, seed=seed)
    if len(test_idx) == 0:
        n = len(train_idx)
        if round(n * test_fraction):  # (a class's only sample stays in training)
            why = "no class has two samples"
        else:
            why = f"the fraction is too small (round({n} * {test_fraction:g}) = 0)"
        raise ValueError(f"test_fraction={test_fraction:g} of {n} samples holds out no test sample: {why}")
    return train_idx, test_idx


def provided_validation(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(fit_idx, val_idx)`` of the dataset's own validation split; None when it has none."""
    mask = ds.meta.get(VALIDATION_MASK)
    if mask is None:
        return None
    if mask.dtype != torch.bool or tuple(mask.shape) != (len(ds.y_train),):
        raise ValueError(
            f"dataset {ds.name!r}: meta[{VALIDATION_MASK!r}] is {mask.dtype} {tuple(mask.shape)}, "
            f"expected bool ({len(ds.y_train)},)"
        )
    if mask.all() or not mask.any():
        raise ValueError(f"dataset {ds.name!r}: its provided validation split leaves no rows to fit or to score")
    return (~mask).nonzero().flatten(), mask.nonzero().flatten()


def select_train(ds: Dataset, keep: torch.Tensor, **changes) -> Dataset:
    """The dataset with training rows ``keep`` only (a provided validation mask follows them)."""
    meta = dict(changes.pop("meta", ds.meta))
    if VALIDATION_MASK in meta:
        meta[VALIDATION_MASK] = meta[VALIDATION_MASK][keep.to(meta[VALIDATION_MASK].device)]
    return replace(ds, x_train=ds.x_train[keep], y_train=ds.y_train[keep], meta=meta, **changes)


def random_split(n: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's unstratified ``train_test_split(range(n), test_size, random_state=seed)``.

    Index tensors in scikit-learn's (shuffled) order: the split a source made this way, as the
    EXACT paper's code does for its test and validation splits.
    """
    from sklearn.model_selection import train_test_split

    _check_fraction("test_fraction", test_fraction)
    check_split_seed(seed, "random")
    fit, held = train_test_split(range(n), test_size=test_fraction, random_state=seed)
    return torch.as_tensor(fit, dtype=torch.int64), torch.as_tensor(held, dtype=torch.int64)


def long_tail_counts(counts: torch.Tensor, rho: float) -> torch.Tensor:
    """Per-class sizes of the exponential profile ``n_i = n_max * rho^(-i / (C - 1))``.

    Class 0 is the head.  ``n_max`` is the largest value for which every class still has
    ``n_i`` samples available (the full class-0 count for a balanced set), and
    ``n_i = max(1, floor(n_max * rho^(-i/(C-1))))`` as in Cui et al. 2019 (arXiv 1901.05555),
    so the ratio of the largest to the smallest class is ``rho`` up to rounding.
    """
    c = counts.numel()
    if c < 2:
        raise ValueError(f"long_tail needs at least 2 classes, got {c}")
    factors = [(1.0 / rho) ** (i / (c - 1)) for i in range(c)]
    avail = counts.long().tolist()
    n_max = min(math.floor(a / f) for a, f in zip(avail, factors))
    return torch.tensor([min(a, max(1, int(n_max * f))) for a, f in zip(avail, factors)])


def long_tail(ds: Dataset, rho: float = 100.0, seed: int = 0) -> Dataset:
    """A seeded long-tailed subsample of the training split; the test split is unchanged.

    Class ``i`` keeps ``n_i = n_max * rho^(-i/(C-1))`` randomly chosen training samples (see
    ``long_tail_counts``): the exponential profile of Cui et al. 2019, "Class-Balanced Loss
    Based on Effective Number of Samples" (arXiv 1901.05555), used by the CIFAR-LT and
    MNIST-LT benchmarks.  Feature standardisation, where the loader applied one, keeps the
    statistics of the full training split.
    """
    if ds.task != "multiclass":
        raise ValueError(f"long_tail needs a single-label dataset, {ds.name!r} is {ds.task}")
    if not (isinstance(rho, (int, float)) and math.isfinite(rho) and rho >= 1):
        raise ValueError(f"rho must be a finite number >= 1, got {rho!r}")
    check_seed(seed, 64, "for the long-tail subsample (long_tail_seed)")
    counts = ds.class_counts
    if (counts == 0).any():
        empty = [ds.class_names[i] for i in torch.nonzero(counts == 0).flatten().tolist()]
        raise ValueError(f"long_tail: classes {empty} of {ds.name!r} have no training samples")
    target = long_tail_counts(counts.cpu(), rho)
    generator = torch.Generator().manual_seed(int(seed))
    y = ds.y_train.cpu()
    order, rank = _grouped_permutation(y, generator)
    keep = order[rank < target[y[order]]].sort().values.to(ds.y_train.device)
    meta = {**ds.meta, "long_tail": {"rho": rho, "seed": seed, "counts": target.tolist()}}
    return select_train(
        ds,
        keep,
        name=f"{ds.name}-lt{rho:g}",
        source=f"{ds.source}; long-tail subsample rho={rho:g}, seed={seed}",
        meta=meta,
    )


def standardize(
    train: torch.Tensor, test: torch.Tensor, min_std: float | None = None
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Standardise columns with the training split's mean and std (ddof 0).

    Columns constant on the training split (``stats["constant"]``) get std 1: centred only, so a
    test value unseen in training keeps its size.  With ``min_std`` every std is floored there
    instead (the EXACT paper's code uses 1e-6, so such a value stands out by a factor of a million).
    """
    t64 = train.double()
    mean = t64.mean(0) if len(t64) else torch.zeros(t64.shape[1:], dtype=torch.float64)
    std = t64.std(0, unbiased=False) if len(t64) else torch.ones_like(mean)
    # exact: the std of equal values need not be 0 (ten copies of 123456.789: 1.5e-11), and a threshold on it
    # would also catch columns of tiny but different values
    constant = (t64.amax(0) == t64.amin(0)) if len(t64) else torch.zeros_like(mean, dtype=torch.bool)
    if min_std is not None:
        std = std.clamp(min=min_std)
    else:
        std = torch.where(constant, torch.ones_like(std), std)
    scale = lambda x: ((x.double() - mean) / std).float()  # noqa: E731
    return scale(train), scale(test), {"mean": mean.float(), "std": std.float(), "constant": constant}


def iterate_minibatches(
    n: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    *,
    shuffle: bool = True,
    drop_last: bool = False,
    device: torch.device | str | None = None,
) -> Iterator[torch.Tensor]:
    """Index tensors covering ``range(n)`` once, in random order when ``shuffle``.

    Slice in-memory tensors with them (``x[idx]``) instead of a per-sample DataLoader: one
    gather per batch.  ``device`` moves the permutation there once, so indexing tensors that
    live on a GPU costs no transfer per batch.
    """
    if not (isinstance(batch_size, int) and batch_size > 0):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if device is not None:
        order = order.to(device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]
