"""UCI Adult ("Census Income", Kohavi 1996) in its raw ``adult.data`` / ``adult.test`` format.

Rows are comma-separated values with a space after each comma, no header: 14 attributes (6
numeric, 8 nominal) and the income label (``<=50K`` / ``>50K``; the test file writes
``<=50K.`` / ``>50K.``).  The UCI test file starts with the line ``|1x3 Cross validator``;
lines starting with ``|`` and blank lines are skipped.  ``?`` marks a missing value.

Nominal values must be among those listed in UCI's ``adult.names`` (anything else is an
error naming the file and line).  Features follow ``_tabular``: the 6 numeric attributes are
standardised on the training file (missing -> training mean), the 8 nominal ones one-hot
encoded over the ``adult.names`` categories (missing -> all zeros): 6 + 99 = 105 features.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from lossbench.data._cache import cached
from lossbench.data._dataset import Dataset
from lossbench.data._files import finite_float, read_text, split_lines
from lossbench.data._tabular import Column, encode_columns

# From adult.names (UCI ML Repository), in its order.
ADULT_COLUMNS: tuple[Column, ...] = (
    Column("age"),
    Column(
        "workclass",
        (
            "Private",
            "Self-emp-not-inc",
            "Self-emp-inc",
            "Federal-gov",
            "Local-gov",
            "State-gov",
            "Without-pay",
            "Never-worked",
        ),
    ),
    Column("fnlwgt"),
    Column(
        "education",
        (
            "Bachelors",
            "Some-college",
            "11th",
            "HS-grad",
            "Prof-school",
            "Assoc-acdm",
            "Assoc-voc",
            "9th",
            "7th-8th",
            "12th",
            "Masters",
            "1st-4th",
            "10th",
            "Doctorate",
            "5th-6th",
            "Preschool",
        ),
    ),
    Column("education-num"),
    Column(
        "marital-status",
        (
            "Married-civ-spouse",
            "Divorced",
            "Never-married",
            "Separated",
            "Widowed",
            "Married-spouse-absent",
            "Married-AF-spouse",
        ),
    ),
    Column(
        "occupation",
        (
            "Tech-support",
            "Craft-repair",
            "Other-service",
            "Sales",
            "Exec-managerial",
            "Prof-specialty",
            "Handlers-cleaners",
            "Machine-op-inspct",
            "Adm-clerical",
            "Farming-fishing",
            "Transport-moving",
            "Priv-house-serv",
            "Protective-serv",
            "Armed-Forces",
        ),
    ),
    Column("relationship", ("Wife", "Own-child", "Husband", "Not-in-family", "Other-relative", "Unmarried")),
    Column("race", ("White", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other", "Black")),
    Column("sex", ("Female", "Male")),
    Column("capital-gain"),
    Column("capital-loss"),
    Column("hours-per-week"),
    Column(
        "native-country",
        (
            "United-States",
            "Cambodia",
            "England",
            "Puerto-Rico",
            "Canada",
            "Germany",
            "Outlying-US(Guam-USVI-etc)",
            "India",
            "Japan",
            "Greece",
            "South",
            "China",
            "Cuba",
            "Iran",
            "Honduras",
            "Philippines",
            "Italy",
            "Poland",
            "Jamaica",
            "Vietnam",
            "Mexico",
            "Portugal",
            "Ireland",
            "France",
            "Dominican-Republic",
            "Laos",
            "Ecuador",
            "Taiwan",
            "Haiti",
            "Columbia",
            "Hungary",
            "Guatemala",
            "Nicaragua",
            "Scotland",
            "Thailand",
            "Yugoslavia",
            "El-Salvador",
            "Trinadad&Tobago",
            "Peru",
            "Hong",
            "Holand-Netherlands",
        ),
    ),
)
ADULT_CLASSES = ("<=50K", ">50K")


def parse_adult(path: Path | str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values float64 (N, 14), labels int64 (N,))`` of one raw Adult file; NaN = missing."""
    path = Path(path)
    lookups = [
        None if c.categories is None else {v: float(i) for i, v in enumerate(c.categories)}
        for c in ADULT_COLUMNS
    ]
    width = len(ADULT_COLUMNS) + 1
    values: list[float] = []
    labels: list[int] = []
    for lineno, line in enumerate(split_lines(read_text(path)), 1):
        if not line.strip() or line.startswith("|"):
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != width:
            raise ValueError(f"{path}:{lineno}: expected {width} comma-separated values, got {len(fields)}")
        label = fields[-1].rstrip(".")
        if label not in ADULT_CLASSES:
            raise ValueError(f"{path}:{lineno}: income label {fields[-1]!r} is not one of {ADULT_CLASSES}")
        labels.append(ADULT_CLASSES.index(label))
        for token, lookup, col in zip(fields, lookups, ADULT_COLUMNS):
            if token == "?":
                values.append(math.nan)
            elif lookup is None:
                values.append(finite_float(token, f"{path}:{lineno}", col.name))
            elif token in lookup:
                values.append(lookup[token])
            else:
                raise ValueError(
                    f"{path}:{lineno}: unknown {col.name} value {token!r} "
                    f"(adult.names lists {', '.join(col.categories)})"
                )
    if not labels:
        raise ValueError(f"{path}: no data rows")
    return torch.tensor(values, dtype=torch.float64).reshape(len(labels), -1), torch.tensor(labels)


def load_adult(
    train_path: Path | str,
    test_path: Path | str,
    *,
    name: str = "adult",
    source: str | None = None,
    cache: bool = True,
) -> Dataset:
    """UCI Adult from ``adult.data`` and ``adult.test`` (see the module docstring)."""
    paths = [Path(train_path), Path(test_path)]

    def parse() -> dict[str, torch.Tensor]:
        (x_tr, y_tr), (x_te, y_te) = parse_adult(paths[0]), parse_adult(paths[1])
        return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}

    p = cached("adult", {}, paths, parse, cache=cache)
    values = torch.cat([p["x_train"], p["x_test"]])
    n = len(p["x_train"])
    x_train, x_test, names = encode_columns(
        values, ADULT_COLUMNS, torch.arange(n), torch.arange(n, len(values))
    )
    return Dataset(
        name=name,
        task="multiclass",
        x_train=x_train,
        y_train=p["y_train"],
        x_test=x_test,
        y_test=p["y_test"],
        class_names=list(ADULT_CLASSES),
        feature_kind="tabular",
        source=source or f"UCI Adult files {paths[0]}, {paths[1]}",
        meta={"feature_names": names},
    )
