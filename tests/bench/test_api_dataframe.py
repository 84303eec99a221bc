"""compare() on a pandas DataFrame: the columns it cannot encode faithfully are refused, one line each,
before any work (a new user's review: dates as nanoseconds, missing text cells, ID columns, a label list)."""

from __future__ import annotations

import datetime

import numpy as np
import pytest
import torch

from lossbench.bench import compare
from lossbench.bench.api import _in_memory
from lossbench.data import DATASETS
from lossbench.data.table import MAX_CATEGORIES

pd = pytest.importorskip("pandas")

TINY = {"trials": 2, "seeds": 2, "epochs": 1, "batch_size": 16, "sampler": "random", "device": "cpu"}


def frame(n: int = 60):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(n, 2)), columns=["a", "b"], index=[f"r{i}" for i in range(n)])
    df["colour"] = rng.choice(["red", "blue"], size=n)
    df["kind"] = np.where(df.a + df.b > 0, "up", "down")
    return df


def refused(tmp_path, df, label="kind"):
    """compare()'s message, checked to be one line and raised before anything was written or registered."""
    out = tmp_path / "out"
    with pytest.raises(ValueError) as err:
        compare(df, label=label, methods=["cross_entropy"], out=out, **TINY)
    assert "\n" not in str(err.value)
    assert not out.exists()
    assert not [n for n in DATASETS.names() if n.startswith("compare-")]
    return str(err.value)


DATES = pd.date_range("2021-01-01", periods=60, freq="D")


@pytest.mark.parametrize(
    "column",
    [DATES, DATES.tz_localize("UTC"), DATES - DATES[0], DATES.to_period("D"),
     [datetime.date(2021, 1, 1 + i % 28) for i in range(60)]],  # an object column of dates: one-hot per date
    ids=["datetime", "datetime-tz", "timedelta", "period", "object-dates"],
)  # fmt: skip
def test_a_date_or_time_column_is_refused(tmp_path, column):
    df = frame()
    df["when"] = column  # (by position)
    message = refused(tmp_path, df)
    assert message.startswith("data: column 'when' holds ") and "convert it to numbers (e.g. days" in message


@pytest.mark.parametrize("values", [list(range(60)), [0.5 * i for i in range(60)], [i if i % 2 else i + 0.5 for i in range(60)]],
                         ids=["integers", "floats", "mixed"])  # fmt: skip
def test_numbers_held_as_python_objects_are_refused_not_one_hot_encoded(tmp_path, values):
    df = frame()
    df["age"] = pd.Series(values, dtype=object, index=df.index)  # (read back from JSON, say): each age would be a category
    message = refused(tmp_path, df)
    assert message.startswith("data: column 'age' holds numbers as Python objects (dtype object)")
    assert "pd.to_numeric(frame['age'])" in message


@pytest.mark.parametrize(
    "column, missing",
    [
        ("colour", None),
        ("colour", np.nan),
        ("colour", pd.NA),
        ("a", np.nan),
        ("shade", np.nan),
        ("flag", None),
    ],
)
def test_a_missing_cell_in_any_column_is_refused_with_its_row_label(tmp_path, column, missing):
    df = frame()
    df["shade"] = pd.Categorical(df["colour"])
    df["flag"] = pd.array(df["a"] > 0, dtype="boolean")
    df.loc["r7", column] = missing
    assert f"data: column {column!r} is missing a value (row 'r7')" in refused(tmp_path, df)


def test_an_infinite_cell_names_its_row_label_as_a_missing_one_does(tmp_path):
    df = frame()
    df.loc["r7", "a"] = np.inf  # (named by its position, 7, where a missing cell of it is named 'r7')
    assert "data: row 'r7', column 'a' is not a finite number" in refused(tmp_path, df)


def test_a_missing_label_names_its_row_label(tmp_path):
    df = frame()
    df.loc["r3", "kind"] = None
    assert "label column 'kind' is missing a value (row 'r3')" in refused(tmp_path, df)


def test_a_text_column_with_more_values_than_the_table_loader_takes_is_refused(tmp_path):
    df = frame(200)
    df["id"] = [f"user{i}" for i in range(200)]
    message = refused(tmp_path, df)
    assert f"column 'id' holds 200 distinct values, more than max_categories={MAX_CATEGORIES}" in message
    # a category column counts the columns one-hot encoding would make: its categories, used or not
    df = frame()
    df["shade"] = pd.Categorical(
        df["colour"], categories=[f"c{i}" for i in range(MAX_CATEGORIES)] + ["red", "blue"]
    )
    assert f"column 'shade' holds {MAX_CATEGORIES + 2} distinct values" in refused(tmp_path, df)


def test_a_text_column_at_the_limit_is_one_hot_encoded():
    df = frame(2 * MAX_CATEGORIES)
    df["id"] = [f"v{i % MAX_CATEGORIES}" for i in range(len(df))]
    data, _, _ = _in_memory(df, None, 0.2, "kind", "d")
    assert data.x_train.shape[1] == 2 + 2 + MAX_CATEGORIES  # a, b, two colours, the ids


def test_a_list_of_label_columns_is_refused_and_multilabel_comes_as_arrays(tmp_path):
    df = frame()
    df["other"] = (df.a > 0).astype(int)
    message = refused(tmp_path, df, label=["kind", "other"])
    assert message.startswith("label=['kind', 'other']: a DataFrame takes one label column")
    assert "(x, y) arrays, y with one 0/1 column per label" in message
    # what the message offers: (x, y) arrays with y of 0/1 columns make a multi-label task
    x = df[["a", "b"]].to_numpy()
    y = np.stack([(df.a > 0), (df.b > 0)], axis=1).astype(np.int64)
    data, _, _ = _in_memory((x, y), None, 0.2, None, "d")
    assert data.task == "multilabel" and data.y_train.shape[1] == 2


def test_boolean_columns_are_features():
    df = frame()
    df["flag"] = df.a > 0  # numpy bool
    df["nullable"] = pd.array(df.b > 0, dtype="boolean")
    df["text_bool"] = pd.Series(list(df.a > 0), index=df.index, dtype=object)  # one-hot, True and False
    data, _, _ = _in_memory(df, df, None, "kind", "d")
    x = data.x_test  # a, b, flag, nullable, then the one-hot blocks: colour, text_bool
    assert x.shape[1] == 2 + 1 + 1 + 2 + 2
    assert torch.equal(x[:, 2], torch.tensor((df.a > 0).tolist(), dtype=torch.float32))
    assert torch.equal(x[:, 3], torch.tensor((df.b > 0).tolist(), dtype=torch.float32))
    assert torch.equal(x[:, 6:].sum(1), torch.ones(len(df)))


def test_a_label_column_named_twice_is_refused(tmp_path):
    df = frame()
    df.insert(0, "kind2", df["kind"])
    df.columns = ["kind", *df.columns[1:]]  # (pandas' frame[label] is then a DataFrame)
    assert refused(tmp_path, df).startswith("data: the DataFrame has 2 columns named 'kind', the label column")


def test_a_test_column_of_another_kind_than_the_datas_is_refused(tmp_path):
    df = frame()
    df["rooms"] = np.arange(len(df)) % 5  # numbers in the data ...
    test = df.copy()
    test["rooms"] = test["rooms"].astype(str)  # ... text in the test frame: 5 and "5" would be other features
    with pytest.raises(ValueError) as err:
        compare(df, test=test, label="kind", methods=["cross_entropy"], out=tmp_path / "out", **TINY)
    assert str(err.value) == "test: column 'rooms' holds text, the data's numbers; give it the data's type"
    assert not (tmp_path / "out").exists()
