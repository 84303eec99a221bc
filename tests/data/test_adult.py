"""UCI Adult raw files written by the tests: header line, trailing dots, missing values, bad rows."""

from __future__ import annotations

import pytest
import torch

from lossbench.data import load_adult

from .writers import write

ROW = (
    "{age}, {work}, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, "
    "2174, 0, 40, United-States, {label}"
)


def rows(labels, dot="", work="State-gov"):
    return (
        "\n".join(
            ROW.format(age=30 + i, work=work if i else "?", label=lab + dot) for i, lab in enumerate(labels)
        )
        + "\n\n"
    )


def files(tmp_path, train=None, test=None):
    train = train if train is not None else rows(["<=50K", ">50K", "<=50K"])
    test = test if test is not None else "|1x3 Cross validator\n" + rows([">50K", "<=50K"], dot=".")
    return write(tmp_path / "adult.data", train), write(tmp_path / "adult.test", test)


def test_adult_features_labels_and_missing(tmp_path):
    ds = load_adult(*files(tmp_path))
    assert ds.x_train.shape == (3, 105) and ds.x_test.shape == (2, 105)
    assert ds.class_names == ["<=50K", ">50K"]
    assert ds.y_train.tolist() == [0, 1, 0] and ds.y_test.tolist() == [1, 0]  # test labels end with "."
    names = ds.meta["feature_names"]
    work = [i for i, n in enumerate(names) if n.startswith("workclass=")]
    assert len(work) == 8 and ds.x_train[0, work].sum() == 0  # "?" -> all zeros
    assert ds.x_train[1, names.index("workclass=State-gov")] == 1
    age = torch.tensor([30.0, 31, 32])
    assert torch.allclose(ds.x_train[:, names.index("age")], (age - age.mean()) / age.std(unbiased=False))


def test_wrong_column_count(tmp_path):
    bad = rows(["<=50K"]) + "39, State-gov, 77516\n"
    with pytest.raises(ValueError, match=r"adult.data:3: expected 15 comma-separated values, got 3"):
        load_adult(*files(tmp_path, train=bad))


def test_unknown_nominal_value(tmp_path):
    with pytest.raises(ValueError, match=r"adult.test:3: unknown workclass value 'Astronaut'"):
        load_adult(
            *files(
                tmp_path, test="|1x3 Cross validator\n" + rows([">50K", "<=50K"], dot=".", work="Astronaut")
            )
        )


def test_unknown_label(tmp_path):
    with pytest.raises(ValueError, match=r"adult.data:2: income label '50K' is not one of"):
        load_adult(*files(tmp_path, train=rows(["<=50K", "50K"])))


def test_a_comment_holding_a_line_separator_stays_one_line(tmp_path):
    # str.splitlines splits at U+2028 (and \x85, \x0c): only \n, \r\n and \r end a line here
    ds = load_adult(*files(tmp_path, test="|1x3 Cross\u2028validator\n" + rows([">50K", "<=50K"], dot=".")))
    assert len(ds.y_test) == 2
