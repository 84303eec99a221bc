"""load_table on tables of your own that a new user's review found mishandled: a feature constant in the
training rows, unlabelled rows, UTF-16 files, decimal commas, repeated header names.  The registered
uci-* sets keep the EXACT paper's rules (test_uci.py checks them on the real files)."""

from __future__ import annotations

import codecs
import warnings

import pandas as pd
import pytest

from lossbench.data import load_table
from lossbench.data.table import STD_FLOOR

from .writers import write

ROWS = "".join(f"{i},{'red' if i % 3 else 'blue'},{'ab'[i % 2]}\n" for i in range(8))


def test_a_feature_constant_in_training_is_centred_not_blown_up(tmp_path):
    # "green" is in no training row: its one-hot column is 0 there and 1 in the test row
    train = write(tmp_path / "train.csv", "n,colour,kind\n" + ROWS)
    test = write(tmp_path / "test.csv", "n,colour,kind\n3,green,a\n4,red,b\n")
    with pytest.warns(UserWarning, match=r"train.csv: feature\(s\) constant in the training rows, centred only "
                                         r"\(not scaled\): 'colour-green'$"):  # fmt: skip
        data = load_table(train, test_path=test, label="kind")
    green = data.meta["feature_names"].index("colour-green")
    assert data.x_test[:, green].tolist() == [1, 0] and data.x_train[:, green].abs().max() == 0
    assert data.x_test.abs().max() < 10
    # a rare value that the stratified split puts in the test rows only
    rare = write(tmp_path / "rare.csv", "n,colour,kind\n" + ROWS + "9,green,b\n")
    with pytest.warns(UserWarning, match=r"constant in the training rows.*'colour-green'"):
        data = load_table(rare, label="kind", test_fraction=0.5, seed=2)
    assert data.x_test.abs().max() < 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # unscaled: nothing to warn of
        load_table(train, test_path=test, label="kind", standardize=False)


def test_the_paper_sets_keep_its_std_floor(tmp_path):
    # (the uci-* sets are read through load_table with paper_rules; their data feed stored studies)
    train = write(tmp_path / "train.csv", "n,colour,kind\n" + ROWS)
    test = write(tmp_path / "test.csv", "n,colour,kind\n3,green,a\n4,red,b\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_table(train, test_path=test, label="kind", paper_rules=True)
    green = data.meta["feature_names"].index("colour-green")
    assert data.x_test[0, green].item() == pytest.approx(1 / STD_FLOOR)


def test_unlabelled_rows_are_dropped_with_a_warning_per_file(tmp_path):
    train = write(tmp_path / "train.csv", "a,kind\n1,x\n2,\n3,y\n4,x\n5,\n6,y\n")
    test = write(tmp_path / "test.csv", "a,kind\n1,x\n2,y\n3,\n")
    with pytest.warns(UserWarning) as caught:
        data = load_table(train, test_path=test, label="kind")
    messages = [str(w.message) for w in caught]
    assert any(m.endswith("train.csv: 2 of 6 rows have no label (column 'kind') and are dropped") for m in messages)
    assert any(m.endswith("test.csv: 1 of 3 rows have no label (column 'kind') and are dropped") for m in messages)
    assert data.meta["unlabelled_rows"] == 3 and len(data.y_train) == 4 and len(data.y_test) == 2


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32"])
def test_a_file_with_a_utf16_or_utf32_byte_order_mark_is_read_as_such(tmp_path, codec):
    text = "size,kind\n" + "".join(f"{i},{'xy'[i % 2]}é\n" for i in range(6))
    bom = {"utf-16-be": codecs.BOM_UTF16_BE}.get(codec, b"")  # (Python's utf-16 / utf-32 write their own)
    path = write(tmp_path / "t.csv", bom + text.encode(codec))
    data = load_table(path, label="kind", test_fraction=0.5)
    assert data.class_names == ["xé", "yé"] and data.meta["feature_names"] == ["size"]


def test_a_utf16_file_read_as_another_encoding_says_utf16(tmp_path):
    path = write(tmp_path / "t.csv", "size,kind\n1,x\n2,y\n".encode("utf-16"))
    with pytest.raises(ValueError, match=r"t.csv:1: not ascii text \(byte 0xff\); it starts with a UTF-16 "
                                         r"byte-order mark: pass encoding='utf-16'$"):  # fmt: skip
        load_table(path, encoding="ascii")


def test_a_decimal_comma_table_says_so_and_reads_with_decimal(tmp_path):
    rows = "".join(f"{i},5;{i + 1},25;{'ab'[i % 2]}\n" for i in range(8))
    for name in ("dc.csv", "dc.txt"):
        path = write(tmp_path / name, "age;body weight;kind\n" + rows)
        with pytest.raises(ValueError, match=rf"label='kind' is a column name but .*{name} is read without a header; "
                                             r"pass an index; or, if its numbers have decimal commas \(its first line "
                                             r"holds ';' and no ','\), pass sep=';', decimal=','$"):  # fmt: skip
            load_table(path, label="kind")
        data = load_table(path, label="kind", sep=";", decimal=",", standardize=False)
        assert data.meta["feature_names"] == ["age", "body weight"] and 0.5 in data.x_train[:, 0] % 1
    # label="last": the header line is read as data, and refused with the same hint
    with pytest.raises(ValueError, match=r"looks like a header read as data.*pass sep=';', decimal=','$"):
        load_table(tmp_path / "dc.csv")
    with pytest.raises(ValueError, match=r"decimal must be one character, got ',,'"):
        load_table(tmp_path / "dc.csv", decimal=",,")


def test_repeated_header_names_are_refused(tmp_path):
    path = write(tmp_path / "t.csv", "age,age,height,height,species\n" + "1,2,3,4,x\n5,6,7,8,y\n" * 3)
    with pytest.raises(ValueError, match=r"t.csv:1: the header names column\(s\) 'age', 'height' more than once; "
                                         r"rename them \(pandas would read them as 'age', 'age.1'\)$"):  # fmt: skip
        load_table(path)
    with pytest.raises(ValueError, match=r"t.csv:1: the header names column\(s\) 'age', 'height'"):
        load_table(path, header=True)
    told = load_table(path, header=False, test_fraction=0.5, label="last")  # told: the header row is data
    assert told.class_names == ["species", "x", "y"]
    # an Excel sheet's header too
    pytest.importorskip("openpyxl")
    frame = pd.DataFrame([[1, 2, "x"], [3, 4, "y"], [5, 6, "x"]], columns=["a", "a", "kind"])
    frame.to_excel(tmp_path / "t.xlsx", index=False, sheet_name="s")
    with pytest.raises(ValueError, match=r"t.xlsx: sheet 0: the header names column\(s\) 'a' more than once"):
        load_table(tmp_path / "t.xlsx")
    # the paper's audit_risk.csv repeats Score_B: the uci-* sets read it as pandas does
    assert load_table(path, paper_rules=True, test_fraction=0.5).meta["feature_names"][:2] == ["age", "age.1"]
