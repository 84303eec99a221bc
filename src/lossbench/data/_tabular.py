"""Turning parsed tabular columns into model features.

Numeric columns are standardised with the training split's mean and std; a missing numeric
value is replaced by the training mean (so it becomes exactly 0).  Nominal columns are
one-hot encoded over their declared categories; a missing nominal value is the all-zero
vector.  Statistics come from the training rows only, so nothing leaks from the test split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lossbench.data.splits import standardize

# The features' dtype is float32: a number larger than this would be inf there (loaders refuse it).
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


@dataclass(frozen=True)
class Column:
    """A parsed column: numeric when ``categories`` is None, nominal otherwise."""

    name: str
    categories: tuple[str, ...] | None = None


def encode_columns(
    values: torch.Tensor, columns: Sequence[Column], train_idx: torch.Tensor, test_idx: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``values``: float64 ``(N, A)``, numbers or category codes, NaN where missing.

    Returns float32 train and test feature matrices and the feature names (``col`` for a
    numeric column, ``col=value`` for each one-hot column), in column order.
    """
    if values.shape[1] != len(columns):
        raise ValueError(f"{values.shape[1]} value columns for {len(columns)} column descriptions")
    blocks, names, numeric = [], [], []
    for j, col in enumerate(columns):
        v = values[:, j]
        missing = torch.isnan(v)
        if col.categories is None:
            train_vals = v[train_idx][~missing[train_idx]]
            fill = train_vals.mean() if len(train_vals) else torch.tensor(0.0, dtype=v.dtype)
            numeric.append(len(names))
            blocks.append(torch.where(missing, fill, v)[:, None])
            names.append(col.name)
        else:
            codes = torch.where(missing, 0, v).long()
            onehot = torch.nn.functional.one_hot(codes, len(col.categories)) * (~missing)[:, None]
            blocks.append(onehot.double())
            names.extend(f"{col.name}={c}" for c in col.categories)
    features = torch.cat(blocks, 1) if blocks else torch.zeros(len(values), 0, dtype=torch.float64)
    x_train, x_test = features[train_idx].float(), features[test_idx].float()
    if numeric:
        idx = torch.tensor(numeric)
        x_train[:, idx], x_test[:, idx], _ = standardize(
            features[train_idx][:, idx], features[test_idx][:, idx]
        )
    return x_train, x_test, names
