"""load_table on what a review of the own-data path found: a column with no value in a drawn split's training
rows dropped for some seeds only (and silently), an empty Excel sheet's traceback, a class equal to its
column's name refused, a header not found past trailing empty fields."""

from __future__ import annotations

import warnings

import openpyxl
import pytest

from lossbench.data import load_table

from .writers import write

SPARSE = "a,b,y\n" + "".join(f"{i},{7 if i == 3 else ''},{'xz'[i % 2]}\n" for i in range(10))


def _load(path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_table(path, cache=False, **kwargs)
    return data, [str(w.message) for w in caught]


def test_a_column_with_few_values_gives_the_same_features_whatever_the_seed(tmp_path):
    # "b" has one value: the seeds whose split holds it out kept no "b" (silently), the others kept it
    path = write(tmp_path / "sd.csv", SPARSE)
    held_out = 0
    for seed in range(8):
        data, said = _load(path, seed=seed)
        assert data.meta["feature_names"] == ["a", "b"]
        if not data.meta["train_rows"].eq(3).any():  # (row 3 holds b's value: in the test rows)
            held_out += 1
            assert any("no value in the training rows" in s and "'b'" in s and f"seed={seed}" in s for s in said)
            # set to one value in every row: it weighs nothing, its test value included
            assert data.x_train[:, 1].eq(0).all() and data.x_test[:, 1].eq(0).all()
    assert 0 < held_out < 8


def test_a_column_missing_in_every_training_row_is_dropped_with_a_warning(tmp_path):
    train = write(tmp_path / "tr.csv", "a,b,y\n1,,x\n2,,z\n3,,x\n4,,z\n")
    test = write(tmp_path / "te.csv", "a,b,y\n1,5,x\n2,6,z\n")
    data, said = _load(train, test_path=test)
    assert data.meta["feature_names"] == ["a"] and data.meta["all_missing_columns_dropped"] == ["b"]
    assert any("missing in every row of the training file, dropped: ['b']" in s for s in said)


@pytest.mark.parametrize("header", [None, True, False])
def test_an_empty_excel_sheet_is_a_one_line_error(tmp_path, header):
    path = tmp_path / "e.xlsx"
    openpyxl.Workbook().save(path)
    with pytest.raises(ValueError, match=r"e.xlsx: no data rows"):
        load_table(path, header=header, cache=False)


def test_a_class_named_as_its_column_is_a_class_and_a_repeated_header_line_is_refused(tmp_path):
    path = write(tmp_path / "yy.csv", "a,b,y\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n9,10,x\n")
    for header in (None, True):
        data, _ = _load(path, label="y", header=header, test_fraction=0.4)
        assert data.class_names == ["x", "y"] and data.meta["feature_names"] == ["a", "b"]
    twice = write(tmp_path / "twice.csv", "a,b,y\n1,2,x\n3,4,y\na,b,y\n5,6,x\n7,8,y\n")
    with pytest.raises(ValueError, match=r"twice.csv:4: the label 'y' is the label column's name and the row's "
                                         r"other cells repeat the header's"):  # fmt: skip
        load_table(twice, header=True, cache=False)
    # pandas' to_csv with its index: the repeated line's index field is empty, the rest repeat the names
    indexed = write(tmp_path / "ix.csv", ",a,b,y\n0,1,2,x\n1,3,4,y\n,a,b,y\n2,5,6,x\n3,7,8,y\n")
    with pytest.raises(ValueError, match=r"ix.csv:4: the label 'y' is the label column's name"):
        load_table(indexed, header=True, cache=False)


def test_a_header_is_found_where_every_line_ends_with_the_delimiter(tmp_path):
    path = write(tmp_path / "tc.csv", "a,b,y,\n1,2,x,\n3,4,z,\n5,6,x,\n7,8,z,\n9,10,x,\n")
    data, _ = _load(path, label="y", test_fraction=0.4)
    assert data.class_names == ["x", "z"] and data.meta["feature_names"] == ["a", "b"]


def test_a_column_of_dates_is_warned_of_as_it_is_read(tmp_path):
    """Excel gives dates as dates (read as one number each), a CSV as text (a category per date): both were silent."""
    import datetime

    sheet = openpyxl.Workbook()
    sheet.active.append(["when", "a", "y"])
    for i in range(12):
        sheet.active.append([datetime.datetime(2020, 1, i + 1), i, "xz"[i % 2]])
    sheet.save(tmp_path / "d.xlsx")
    data, said = _load(tmp_path / "d.xlsx", test_fraction=0.25)
    assert data.meta["feature_names"] == ["when", "a"]
    assert any("d.xlsx: column 'when' holds dates or durations, read as one number each" in s for s in said), said
    text = write(tmp_path / "d.csv", "when,a,y\n" + "".join(f"2020-01-{i + 1:02d},{i},{'xz'[i % 2]}\n" for i in range(12)))
    data, said = _load(text, test_fraction=0.25)
    assert data.meta["feature_names"][0] == "a" and len(data.meta["feature_names"]) == 1 + 12
    assert any("d.csv: column 'when' holds dates as text ('2020-01-" in s and "a feature per date (12)" in s for s in said)
    plain = write(tmp_path / "p.csv", "kind,a,y\n" + "".join(f"{'uvw'[i % 3]},{i},{'xz'[i % 2]}\n" for i in range(12)))
    assert not [s for s in _load(plain, test_fraction=0.25)[1] if "holds dates" in s]
    versions = write(tmp_path / "v.csv", "version,a,y\n" + "".join(f"1.{i % 3}.2{i % 4},{i},{'xz'[i % 2]}\n" for i in range(12)))
    assert not [s for s in _load(versions, test_fraction=0.25)[1] if "holds dates" in s]  # (1.0.20: no month 0, no year)
