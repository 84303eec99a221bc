"""Built-in sets: scikit-learn's bundled data and the synthetic generators."""

from __future__ import annotations

import pytest
import torch

from lossbench.data import load_dataset

SIZES = {"digits": (1797, 64, 10), "wine": (178, 13, 3), "breast_cancer": (569, 30, 2), "iris": (150, 4, 3)}


@pytest.mark.parametrize("name", SIZES)
def test_sklearn_sets_are_split_and_standardised(name):
    n, d, c = SIZES[name]
    ds = load_dataset(name)
    assert len(ds.y_train) + len(ds.y_test) == n and len(ds.y_test) == round(0.2 * n)
    assert ds.x_train.shape[1] == d and ds.num_classes == c and ds.feature_kind == "tabular"
    assert torch.allclose(ds.x_train.mean(0), torch.zeros(d), atol=1e-5)
    std = ds.x_train.std(0, unbiased=False)
    assert torch.allclose(std[std > 0], torch.ones_like(std[std > 0]), atol=1e-4)
    # stratified: every class keeps its share in the test split (within one sample)
    full = torch.cat([ds.y_train, ds.y_test]).bincount().double()
    assert ((ds.y_test.bincount(minlength=c) - 0.2 * full).abs() <= 1).all()


def test_seed_changes_the_split_and_reproduces_it():
    a, b, c = load_dataset("wine", seed=0), load_dataset("wine", seed=0), load_dataset("wine", seed=1)
    assert torch.equal(a.x_test, b.x_test) and not torch.equal(a.x_test, c.x_test)


def test_synthetic_imbalance_knob():
    ds = load_dataset("synthetic", n_classes=3, imbalance=9.0, flip_y=0.0, n_samples=3000)
    counts = torch.cat([ds.y_train, ds.y_test]).bincount().double()
    assert counts[0] / counts[2] == pytest.approx(9.0, rel=0.05)
    assert counts[0] / counts[1] == pytest.approx(3.0, rel=0.05)
    with pytest.raises(ValueError, match="imbalance must be >= 1"):
        load_dataset("synthetic", imbalance=0.5)


def test_synthetic_multilabel():
    ds = load_dataset("synthetic_multilabel", n_labels=4, n_samples=500)
    assert ds.task == "multilabel" and ds.y_train.shape == (400, 4) and ds.y_train.dtype == torch.float32
    assert ds.class_counts.shape == (4,) and (ds.class_counts > 0).all()


@pytest.mark.parametrize("name", ["synthetic", "synthetic_multilabel"])
@pytest.mark.parametrize("seed", [-1, 2**32])
def test_synthetic_sets_refuse_a_seed_scikit_learn_cannot_take(name, seed):
    with pytest.raises(ValueError, match=rf"seed must be an int in \[0, 2\*\*32\) for scikit-learn's generator, got {seed}"):
        load_dataset(name, seed=seed)


def test_a_test_fraction_holding_out_nothing_is_refused():
    with pytest.raises(ValueError, match=r"test_fraction=0.001 of 150 samples holds out no test sample"):
        load_dataset("iris", test_fraction=0.001)


def test_more_informative_features_than_features_are_refused_by_their_name():
    # scikit-learn blamed n_redundant, which the loader derives: "Got -7 instead"
    with pytest.raises(ValueError, match=r"n_informative must lie in \[1, n_features=3\], got 10"):
        load_dataset("synthetic", n_features=3)
