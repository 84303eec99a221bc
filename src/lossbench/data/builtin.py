"""Datasets that need no files: scikit-learn's bundled sets and seeded synthetic sets.

Every one gets a seeded stratified train/test split holding out ``test_fraction`` (default
20 %, as for the ARFF sets: the EXACT paper's protocol for sources without a test split),
and its features standardised with the training split's mean and std.
"""

from __future__ import annotations

import torch

from lossbench.data._dataset import Dataset
from lossbench.data.splits import (
    DEFAULT_TEST_FRACTION,
    SEED_BITS,
    check_seed,
    standardize,
    train_test_indices,
)

SKLEARN_SETS = {
    "digits": "load_digits",
    "wine": "load_wine",
    "breast_cancer": "load_breast_cancer",
    "iris": "load_iris",
}


def _tabular(
    name: str,
    task: str,
    x: torch.Tensor,
    y: torch.Tensor,
    class_names: list[str],
    source: str,
    test_fraction: float,
    seed: int,
) -> Dataset:
    train_idx, test_idx = train_test_indices(y, test_fraction, seed)
    x_train, x_test, stats = standardize(x[train_idx], x[test_idx])
    return Dataset(
        name=name,
        task=task,
        x_train=x_train,
        y_train=y[train_idx],
        x_test=x_test,
        y_test=y[test_idx],
        class_names=class_names,
        feature_kind="tabular",
        source=f"{source}; stratified {test_fraction:.0%} test split, seed {seed}; standardised on train",
        meta={"feature_mean": stats["mean"], "feature_std": stats["std"]},
    )


def load_sklearn(name: str, *, test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0) -> Dataset:
    """One of scikit-learn's bundled classification sets: ``digits`` (1797 x 64, 10 classes),
    ``wine`` (178 x 13, 3), ``breast_cancer`` (569 x 30, 2), ``iris`` (150 x 4, 3)."""
    import sklearn.datasets

    if name not in SKLEARN_SETS:
        raise ValueError(f"unknown scikit-learn set {name!r}; known: {', '.join(SKLEARN_SETS)}")
    bunch = getattr(sklearn.datasets, SKLEARN_SETS[name])()
    x = torch.as_tensor(bunch.data, dtype=torch.float64)
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    names = [str(n) for n in bunch.target_names]
    return _tabular(
        name,
        "multiclass",
        x,
        y,
        names,
        f"scikit-learn sklearn.datasets.{SKLEARN_SETS[name]}",
        test_fraction,
        seed,
    )


def _generator_seed(seed: int, data_seed: int | None) -> int:
    """The generator's seed: ``data_seed``, else ``seed`` (checked: the generators take it as random_state,
    NumPy's legacy generator, as the random split does)."""
    chosen = seed if data_seed is None else data_seed
    check_seed(chosen, SEED_BITS["random"], "for scikit-learn's generator")
    return chosen


MAX_VALUES = 10**8  # a synthetic set's n_samples x n_features: 800 MB as drawn (float64), far beyond a benchmark's


def _check_size(n_samples: object, n_features: object) -> None:
    """Counts scikit-learn would refuse with a traceback, or draw until the memory runs out: one line first."""
    for name, value in (("n_samples", n_samples), ("n_features", n_features)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "n_samples" else 1):
            raise ValueError(f"{name} must be an int >= {2 if name == 'n_samples' else 1}, got {value!r}")
    if n_samples * n_features > MAX_VALUES:
        raise ValueError(f"n_samples x n_features must be at most {MAX_VALUES:,}, got {n_samples:,} x {n_features:,}")


def class_weights(num_classes: int, imbalance: float) -> list[float]:
    """Class proportions ``w_i ∝ imbalance^(-i/(C-1))``: the long-tail profile of ``long_tail``."""
    if not imbalance >= 1:
        raise ValueError(f"imbalance must be >= 1 (largest / smallest class), got {imbalance!r}")
    w = [imbalance ** (-i / (num_classes - 1)) for i in range(num_classes)]
    return [v / sum(w) for v in w]


def load_synthetic(
    *,
    n_samples: int = 4000,
    n_features: int = 20,
    n_informative: int = 10,
    n_classes: int = 2,
    imbalance: float = 1.0,
    class_sep: float = 1.0,
    flip_y: float = 0.01,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
    data_seed: int | None = None,
) -> Dataset:
    """``sklearn.datasets.make_classification`` (Guyon 2003's Madelon design), seeded.

    ``imbalance`` is the ratio of the largest to the smallest class, with the exponential
    profile of ``long_tail`` across classes (1 = balanced); ``flip_y`` is the fraction of
    labels randomly reassigned (label noise).  ``seed`` draws the data and the train/test split,
    ``data_seed`` (when given) the data alone: the bench's resampled splits keep the data it drew.
    """
    from sklearn.datasets import make_classification

    data_seed = _generator_seed(seed, data_seed)
    _check_size(n_samples, n_features)
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes!r}")
    if not 1 <= n_informative <= n_features:  # (scikit-learn would blame n_redundant, which is derived here)
        raise ValueError(f"n_informative must lie in [1, n_features={n_features}], got {n_informative!r}")
    x, y = make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=min(2, n_features - n_informative),
        n_classes=n_classes,
        weights=class_weights(n_classes, imbalance),
        class_sep=class_sep,
        flip_y=flip_y,
        random_state=data_seed,
    )
    return _tabular(
        "synthetic",
        "multiclass",
        torch.as_tensor(x),
        torch.as_tensor(y, dtype=torch.int64),
        [str(i) for i in range(n_classes)],
        f"scikit-learn make_classification(n={n_samples}, d={n_features}, C={n_classes}, "
        f"imbalance={imbalance:g}, seed={data_seed})",
        test_fraction,
        seed,
    )


def load_synthetic_multilabel(
    *,
    n_samples: int = 4000,
    n_features: int = 20,
    n_labels: int = 5,
    avg_labels: int = 2,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
    data_seed: int | None = None,
) -> Dataset:
    """``sklearn.datasets.make_multilabel_classification`` (McCallum 1999's generative model), seeded.

    ``avg_labels`` is the mean number of positive labels per sample; samples may have none.  ``seed`` and
    ``data_seed``: as :func:`load_synthetic`'s.
    """
    from sklearn.datasets import make_multilabel_classification

    data_seed = _generator_seed(seed, data_seed)
    _check_size(n_samples, n_features)
    x, y = make_multilabel_classification(
        n_samples=n_samples, n_features=n_features, n_classes=n_labels, n_labels=avg_labels, random_state=data_seed
    )
    return _tabular(
        "synthetic_multilabel",
        "multilabel",
        torch.as_tensor(x, dtype=torch.float64),
        torch.as_tensor(y, dtype=torch.float32),
        [f"label{i}" for i in range(n_labels)],
        f"scikit-learn make_multilabel_classification(n={n_samples}, d={n_features}, "
        f"L={n_labels}, seed={data_seed})",
        test_fraction,
        seed,
    )
