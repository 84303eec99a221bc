"""``max_train``: the stratified training subset the ledger's stored studies trained on, and its refusal
of a subset that leaves a class without a sample."""

from __future__ import annotations

import pytest
import torch

from lossbench.bench.execution import subsample_train
from lossbench.data import Dataset, load_dataset, stratified_split


def _toy() -> Dataset:
    y = torch.tensor([i % 3 if i % 5 else 3 for i in range(30)])  # classes of 8, 8, 8 and 6 rows
    x = torch.arange(30.0).unsqueeze(1)  # each row holds its index
    return Dataset("toy", "multiclass", x, y, x[:4], y[:4], ["a", "b", "c", "d"], "tabular", "toy")


@pytest.mark.parametrize(
    ("size", "seed", "rows"),
    [  # the rows drawn before the refusal was added (stored studies trained on them)
        (12, 0, [0, 4, 6, 9, 13, 14, 20, 22, 23, 25, 27, 29]),
        (12, 5, [2, 6, 11, 12, 13, 15, 18, 20, 22, 25, 28, 29]),
        (7, 0, [4, 9, 13, 14, 23, 25, 27]),
        (7, 5, [2, 6, 11, 18, 22, 25, 28]),
    ],
)
def test_a_subset_keeping_every_class_is_the_rows_drawn_before(size, seed, rows):
    sub = subsample_train(_toy(), size, seed)
    assert sub.x_train[:, 0].long().tolist() == rows
    assert (sub.class_counts > 0).all()


def test_the_subset_is_the_validation_side_of_the_stratified_split():
    ds = load_dataset("digits")
    sub = subsample_train(ds, 300, 7)
    _, keep = stratified_split(ds.y_train, val_fraction=300 / len(ds.y_train), seed=7)
    assert torch.equal(sub.x_train, ds.x_train[keep]) and torch.equal(sub.y_train, ds.y_train[keep])


def test_a_subset_that_drops_a_class_is_refused():
    ds = load_dataset("digits", long_tail_rho=100.0)  # classes 8 and 9: 2 and 1 training samples
    with pytest.raises(
        ValueError,
        match=r"^max_train=100 leaves class\(es\) '8', '9' of dataset 'digits-lt100' with no training sample "
        r"\(of 348\); raise max_train$",
    ):
        subsample_train(ds, 100, 0)
    with pytest.raises(ValueError, match=r"^max_train=300 leaves class\(es\) '9' of"):
        subsample_train(ds, 300, 0)
