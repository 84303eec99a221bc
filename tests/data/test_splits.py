"""Stratified splits, long-tail subsampling, standardisation and index mini-batches."""

from __future__ import annotations

import re

import pytest
import torch

from lossbench.data import (
    Dataset,
    iterate_minibatches,
    long_tail,
    long_tail_counts,
    standardize,
    stratified_split,
)
from lossbench.data.splits import random_split, train_test_indices


def labels(counts):
    return torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])[
        torch.randperm(sum(counts), generator=torch.Generator().manual_seed(0))
    ]


def test_stratified_split_partitions_and_keeps_proportions():
    y = labels([50, 30, 17, 3])
    tr, va = stratified_split(y, val_fraction=0.2, seed=0)
    assert torch.equal(torch.sort(torch.cat([tr, va])).values, torch.arange(len(y)))
    assert len(va) == 20 and tr.dtype == va.dtype == torch.int64
    assert (torch.diff(tr) > 0).all() and (torch.diff(va) > 0).all()
    assert ((y[va].bincount(minlength=4).double() - 0.2 * torch.tensor([50, 30, 17, 3])).abs() < 1).all()


def test_stratified_split_is_seeded():
    y = labels([40, 40])
    assert torch.equal(stratified_split(y, seed=5)[1], stratified_split(y, seed=5)[1])
    assert not torch.equal(stratified_split(y, seed=5)[1], stratified_split(y, seed=6)[1])


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, "3"])
def test_random_split_refuses_a_seed_scikit_learn_cannot_take(seed):
    with pytest.raises(ValueError, match=rf"^seed must be an int in \[0, 2\*\*32\) for the random split, got {re.escape(repr(seed))}$"):
        random_split(10, 0.2, seed)


def test_stratified_split_takes_seeds_past_2_32_but_not_negative_ones():
    y = labels([40, 40])
    assert len(stratified_split(y, seed=2**40)[1]) == 16  # (evaluation seeds grow past 2**32)
    for seed in (-1, 2**64, 0.5):
        with pytest.raises(ValueError, match=r"^seed must be an int in \[0, 2\*\*64\) for the stratified split"):
            stratified_split(y, seed=seed)


def test_singleton_class_stays_in_training():
    y = labels([20, 1])
    tr, va = stratified_split(y, val_fraction=0.5)
    assert (y[tr] == 1).sum() == 1 and len(va) == 10


def test_multilabel_split_spreads_every_label():
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(1000, 5, generator=g) < torch.tensor([0.5, 0.2, 0.05, 0.02, 0.01])).float()
    tr, va = stratified_split(y, val_fraction=0.2, seed=0)
    assert len(va) == 200
    share = y[va].sum(0) / y.sum(0)
    assert ((share - 0.2).abs() < 0.08).all(), share  # rare labels included


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5])
def test_bad_fraction(bad):
    with pytest.raises(ValueError, match=f"val_fraction must lie in \\(0, 1\\), got {bad}"):
        stratified_split(torch.zeros(10, dtype=torch.long), val_fraction=bad)


def dataset(counts, task="multiclass"):
    y = labels(counts)
    x = torch.arange(len(y), dtype=torch.float32)[:, None]
    return Dataset("toy", task, x, y, x[:5], y[:5], [str(i) for i in range(len(counts))], "tabular", "test")


def test_long_tail_follows_the_exponential_profile():
    ds = dataset([100] * 10)
    lt = long_tail(ds, rho=10, seed=0)
    # n_i = floor(100 * 10^(-i/9)), Cui et al. 2019
    expected = [int(100 * 10 ** (-i / 9)) for i in range(10)]
    assert lt.class_counts.long().tolist() == expected == [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
    assert torch.equal(lt.x_test, ds.x_test) and lt.name == "toy-lt10"
    # the kept samples are real training samples with their own labels
    assert torch.equal(ds.y_train[lt.x_train[:, 0].long()], lt.y_train)


def test_long_tail_is_seeded_and_respects_available_counts():
    ds = dataset([30, 100, 100])
    a, b, c = long_tail(ds, 4, seed=1), long_tail(ds, 4, seed=1), long_tail(ds, 4, seed=2)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert long_tail_counts(torch.tensor([30, 100, 100]), 4).tolist() == [30, 15, 7]
    assert long_tail(ds, 1).class_counts.tolist() == [30, 30, 30]


def test_long_tail_rejects_bad_input():
    with pytest.raises(ValueError, match="rho must be a finite number >= 1"):
        long_tail(dataset([5, 5]), rho=0.5)
    for seed in (-1, 2**64, 1.5, True):  # (1.5 was read as 1 and recorded as 1.5; 2**64 failed inside torch)
        with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*64\) for the long-tail subsample"):
            long_tail(dataset([5, 5]), rho=2, seed=seed)
    y = torch.eye(2)[torch.tensor([0, 1, 0])]
    ml = Dataset(
        "ml", "multilabel", torch.zeros(3, 1), y, torch.zeros(3, 1), y, ["a", "b"], "tabular", "test"
    )
    with pytest.raises(ValueError, match="needs a single-label dataset"):
        long_tail(ml)


def test_standardize_uses_training_statistics():
    train = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    tr, te, stats = standardize(train, torch.tensor([[5.0, 6.0]]))
    assert tr.tolist() == [[-1.0, 0.0], [1.0, 0.0]]
    assert te.tolist() == [[3.0, 1.0]]  # constant column: std treated as 1
    assert stats["mean"].tolist() == [2.0, 5.0]


def test_iterate_minibatches_covers_every_index_once():
    g = torch.Generator().manual_seed(0)
    batches = list(iterate_minibatches(10, 4, g))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.sort(torch.cat(batches)).values, torch.arange(10))
    assert [len(b) for b in iterate_minibatches(10, 4, drop_last=True)] == [4, 4]
    ordered = list(iterate_minibatches(5, 2, shuffle=False))
    assert [b.tolist() for b in ordered] == [[0, 1], [2, 3], [4]]
    again = list(iterate_minibatches(10, 4, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))


@pytest.mark.parametrize(
    ("y", "fraction", "why"),
    [
        (torch.tensor([0, 0, 1, 1]), 0.1, r"the fraction is too small \(round\(4 \* 0.1\) = 0\)"),
        (torch.arange(5), 0.5, r"no class has two samples"),
    ],
)
def test_a_test_split_holding_out_nothing_is_refused(y, fraction, why):
    with pytest.raises(ValueError, match=rf"test_fraction={fraction:g} of {len(y)} samples holds out no test sample: {why}"):
        train_test_indices(y, fraction, 0)
    # stratified_split itself returns the empty part: the bench refuses an empty validation part naming
    # the spec's val_fraction (bench.methods.check_validation_part)
    assert len(stratified_split(y, fraction)[1]) == 0


def test_standardize_finds_a_constant_column_whose_float_std_is_not_zero():
    # ten copies of 123456.789: torch's std is 1.5e-11, so the column was scaled and a test value 123457 became 1e10
    train = torch.full((10, 1), 123456.789, dtype=torch.float64)
    assert train.std(0, unbiased=False).item() > 1e-12  # (the case: not 0)
    _, te, stats = standardize(train, torch.tensor([[123457.0]], dtype=torch.float64))
    assert stats["constant"].tolist() == [True] and stats["std"].tolist() == [1.0]
    assert te.item() == pytest.approx(0.211, abs=1e-3)
    # tiny values that differ are no constant
    _, _, stats = standardize(torch.tensor([[0.0], [1e-13]], dtype=torch.float64), torch.zeros(1, 1))
    assert stats["constant"].tolist() == [False]
