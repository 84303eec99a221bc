"""load_table on tiny files the tests write: delimiters, headers, label columns, missing values,
nominal columns, non-finite numbers, Excel, splits, standardisation and bad input.

``paper_features`` is an independent re-statement of the EXACT paper's feature rules
(Karpukhin et al. 2022, ``uci-class/src/uci_class/uci.py`` of github.com/ivan-chai/exact),
written column by column with numpy rather than with the loader's pandas joins; test_uci.py
checks the registered UCI sets against it too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.model_selection import train_test_split

from lossbench.data import content_digest, load_dataset, load_table, stratified_split

from .writers import write

MIXED = """\
colour,size,weight,kind
red,1.5,10,b
blue,2.5,?,a
red,,30,b
green,4.5,40,a
?,5.5,50,c
blue,6.5,60,a
red,7.5,70,b
blue,8.5,80,c
green,9.5,90,a
red,10.5,100,b
"""


def paper_features(frame: pd.DataFrame, label) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The paper's features (before split and scaling), stated column by column."""
    frame = frame[frame[label].notna()]
    numeric, nominal = [], []
    for c in frame.columns:
        try:
            values = pd.to_numeric(frame[c])
        except ValueError:
            nominal.append((c, frame[c].fillna("nan").to_numpy()))
        else:
            numeric.append((c, values))
    y_col = dict(numeric + nominal)[label]
    if isinstance(y_col, pd.Series):
        y = y_col.to_numpy().astype(np.int64)
        y = y - y.min()
    else:
        order = sorted(set(y_col))
        y = np.array([order.index(v) for v in y_col])
    blocks, names = [], []
    for c, values in numeric:
        if c != label:
            blocks.append(values.to_numpy(dtype=float))
            names.append(str(c))
    for c, values in nominal:
        if c != label:
            for v in sorted(set(values)):
                blocks.append((values == v).astype(float))
                names.append(f"{c}-{v}")
    x = np.stack(blocks, 1)
    mean = np.nanmean(np.where(np.isnan(x).all(0), 0.0, x), 0)
    keep = ~np.isnan(x).all(0)
    x = np.where(np.isnan(x), mean, x)[:, keep]
    return x, y, [n for n, k in zip(names, keep) if k]


def paper_scaled(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = x_train.mean(0), np.maximum(x_train.std(0), 1e-6)
    return (x_train - mean) / std, (x_test - mean) / std


# --- delimiters and headers ---------------------------------------------------------------------


def test_csv_with_header_label_by_name_and_one_hot(tmp_path):
    path = write(tmp_path / "t.csv", MIXED)
    # (the paper's rules: every row types the columns; "?" is in a test row only)
    ds = load_table(path, label="kind", standardize=False, impute="mean", split="random", test_fraction=0.3,
                    paper_rules=True)  # fmt: skip
    assert ds.class_names == ["a", "b", "c"]
    assert ds.meta["feature_names"] == [
        "size",
        "weight",
        "colour-blue",
        "colour-green",
        "colour-nan",  # "?" is missing: the paper's "nan" category
        "colour-red",
    ]
    x, y, names = paper_features(pd.read_csv(path, na_values=["?"]), "kind")
    assert names == ds.meta["feature_names"]
    train, test = train_test_split(np.arange(10), test_size=0.3, random_state=0)
    assert ds.meta["train_rows"].tolist() == train.tolist()  # scikit-learn's order, not sorted
    assert torch.equal(ds.x_train.double(), torch.from_numpy(x[train]).float().double())
    assert torch.equal(ds.x_test, torch.from_numpy(x[test]).float())
    assert ds.y_train.tolist() == y[train].tolist() and ds.y_test.tolist() == y[test].tolist()


def test_headerless_file_label_last_and_first(tmp_path):
    rows = "1,2,x\n3,4,y\n5,6,x\n7,8,y\n"
    path = write(tmp_path / "t.data", rows)
    last = load_table(path, standardize=False, test_fraction=0.5)
    assert last.class_names == ["x", "y"] and last.meta["feature_names"] == ["0", "1"]
    first = load_table(write(tmp_path / "f.data", "x,1,2\ny,3,4\nx,5,6\ny,7,8\n"), label="first")
    assert first.class_names == ["x", "y"] and first.input_shape == (2,)
    twice = write(tmp_path / "twice.data", rows * 2)  # (a class per label: each in both splits)
    by_index = load_table(twice, label=0, standardize=False, test_fraction=0.5)
    assert by_index.class_names == ["1", "3", "5", "7"]  # numeric labels, numeric order
    assert by_index.meta["feature_names"] == ["1", "2-x", "2-y"]


@pytest.mark.parametrize(
    ("name", "text", "sep"),
    [
        ("t.tsv", "a\tb\tlabel\n1\t2\tx\n3\t4\ty\n5\t6\tx\n7\t8\ty\n", None),
        ("t.txt", "a\tb\tlabel\n1\t2\tx\n3\t4\ty\n5\t6\tx\n7\t8\ty\n", None),  # tab found in the line
        ("t.dat", "a   b label\n 1 2   x\n3  4 y\n5 6 x\n7 8   y\n", None),  # runs of spaces
        ("t.dat", "a b label\n1 2 x\n3 4 y\n5 6 x\n7 8 y\n", "whitespace"),
        ("t.txt", "a;b;label\n1;2;x\n3;4;y\n5;6;x\n7;8;y\n", ";"),
    ],
)
def test_delimiters(tmp_path, name, text, sep):
    ds = load_table(
        write(tmp_path / name, text), sep=sep, standardize=False, split="random", test_fraction=0.5
    )
    assert ds.meta["feature_names"] == ["a", "b"] and ds.class_names == ["x", "y"]
    rows = torch.cat([ds.x_train, ds.x_test])[
        torch.cat([ds.meta["train_rows"], ds.meta["test_rows"]]).argsort()
    ]
    assert rows.tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]


def test_header_guess_and_override(tmp_path):
    numeric = write(tmp_path / "n.csv", "w,h,label\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n")
    assert load_table(numeric).meta["feature_names"] == ["w", "h"]  # names over numbers
    nominal = write(tmp_path / "c.csv", "colour,label\nred,x\nblue,y\nred,x\nblue,y\n")
    with pytest.raises(
        ValueError,
        match=r"c.csv:1: the first row looks like a header read as data .*'label' is in no other row",
    ):
        load_table(nominal, test_fraction=0.4)  # all text: guessed as data, but "label" is in no other row
    told = load_table(nominal, header=True, test_fraction=0.5)
    assert told.class_names == ["x", "y"] and told.meta["feature_names"] == ["colour-blue", "colour-red"]
    with pytest.raises(
        ValueError, match=r"label='label' is a column name but .*c.csv is read without a header"
    ):
        load_table(nominal, header=False, label="label")


def test_pandas_index_column_is_a_header_and_dropped(tmp_path):
    # df.to_csv() writes the index under an empty first header field; "" there is no missing name.
    frame = pd.DataFrame(
        {"a": np.arange(8) // 2 % 2, "b": np.arange(8) % 3 + 0.25, "label": list("xyxyxyxy")}
    )
    path = tmp_path / "p.csv"
    frame.to_csv(path)
    assert path.read_text().startswith(",a,b,label\n")
    ds = load_table(path, standardize=False, split="random", test_fraction=0.25)
    assert ds.class_names == ["x", "y"] and ds.meta["feature_names"] == ["a", "b"]  # index dropped
    rows = ds.meta["train_rows"]
    assert ds.x_train.tolist() == frame[["a", "b"]].to_numpy(np.float32)[rows.numpy()].tolist()
    # positions count the index column; label="first" is the first column after it
    assert load_table(path, label=3, drop=[2], standardize=False).meta["feature_names"] == ["a"]
    first = load_table(path, label="first", header=True, standardize=False)
    assert first.class_names == ["0", "1"] and first.meta["feature_names"] == ["b", "label-x", "label-y"]
    xlsx = tmp_path / "p.xlsx"
    frame.to_excel(xlsx)
    assert load_table(xlsx, standardize=False).meta["feature_names"] == ["a", "b"]


def test_r_write_table_row_names_read_with_header_true(tmp_path):
    # R's write.table writes row names under no header field (one field fewer there): pandas reads them as the index
    path = write(tmp_path / "r.csv", "a,b,label\nr1,1,2,x\nr2,3,4,y\nr3,5,6,x\nr4,7,8,y\n")
    ds = load_table(path, header=True, standardize=False, test_fraction=0.5)
    assert ds.meta["feature_names"] == ["a", "b"] and ds.class_names == ["x", "y"]


def test_header_read_as_data_is_refused(tmp_path):
    # a repeated header line (files concatenated): its label is the label column's name
    twice = write(tmp_path / "t.csv", "a,label\n1,x\n2,y\na,label\n3,x\n4,y\n")
    with pytest.raises(ValueError, match=r"t.csv:4: the label 'label' is the label column's name"):
        load_table(twice, header=True)
    # a guessed "no header" (a missing name) whose first row's label is in no other row, in either file
    test = write(tmp_path / "test.csv", "a,?,label\n5,6,x\n7,8,y\n")
    train = write(tmp_path / "train.csv", "a,?,label\n1,2,x\n3,4,y\n5,6,x\n")
    with pytest.raises(ValueError, match=r"train.csv:1: the first row looks like a header read as data"):
        load_table(train, test_path=test)
    assert load_table(train, test_path=test, header=True).class_names == ["x", "y"]
    # told: the row is data; its "a" is then a stray cell in a column of numbers, unless it means missing
    with pytest.raises(ValueError, match=r"train.csv:1: column 0 holds numbers and 'a', which is not among"):
        load_table(train, test_path=test, header=False)
    told = load_table(train, test_path=test, header=False, missing=["?", "", "a"])
    assert told.num_classes == 3 and told.meta["feature_names"] == ["0", "1"]


def test_drop_by_index_and_name_and_label_after_drops(tmp_path):
    path = write(tmp_path / "t.csv", "id,a,label,b\n1,0.5,x,3\n2,1.5,y,4\n3,2.5,x,5\n4,3.5,y,6\n")
    ds = load_table(path, drop=[0, "b"], label="last", test_fraction=0.5)
    assert ds.class_names == ["x", "y"] and ds.meta["feature_names"] == ["a"]
    with pytest.raises(ValueError, match=r"label='b' names a dropped column of .*t.csv"):
        load_table(path, drop=["b"], label="b")
    with pytest.raises(
        ValueError, match=r"drop='nope': no such column in .*t.csv \(columns: id, a, label, b\)"
    ):
        load_table(path, drop=["nope"])
    with pytest.raises(ValueError, match=r"label=7: .*t.csv has 4 columns"):
        load_table(path, label=7)


def test_comment_lines_label_strip_and_strip(tmp_path):
    train = write(tmp_path / "a.data", "1, x, <=5\n2, y, >5\n3, ?, <=5\n\n")
    test = write(tmp_path / "a.test", "|a comment line\n4, y, >5.\n5, x, <=5.\n")
    raw = load_table(train, test_path=test, comment="|", label_strip=".", standardize=False)
    assert raw.class_names == ["<=5", ">5"] and raw.y_test.tolist() == [1, 0]
    # Without strip the cells keep the space after the comma: " ?" is a category, not missing.
    assert raw.meta["feature_names"] == ["0", "1- ?", "1- x", "1- y"]
    stripped = load_table(train, test_path=test, comment="|", label_strip=".", strip=True, standardize=False)
    assert stripped.meta["feature_names"] == ["0", "1-nan", "1-x", "1-y"]
    assert stripped.meta["split"].startswith("test file")


# --- missing values and non-finite numbers ---------------------------------------------------------


def test_missing_values_impute_rules(tmp_path):
    train = write(tmp_path / "t.data", "1,?,x\n2,,y\n?,6,x\n4,8,y\n")
    test = write(tmp_path / "t.test", "10,10,x\n")
    everything = load_table(train, test_path=test, impute="mean", standardize=False)
    assert everything.x_train[2, 0] == pytest.approx((1 + 2 + 4 + 10) / 4)  # the paper's: all rows
    assert everything.x_train[:2, 1].tolist() == [8, 8]  # "?" and "" are missing by default
    train_only = load_table(train, test_path=test, impute="train_mean", standardize=False)
    assert train_only.x_train[2, 0] == pytest.approx(7 / 3) and train_only.x_train[0, 1] == 7
    with pytest.raises(ValueError, match=r"t.data:1: column '1' is missing a value; pass impute="):
        load_table(train, test_path=test, impute="error")
    custom = write(tmp_path / "na.csv", "a,label\nNA,x\n2,y\n?,x\n4,y\n")
    with pytest.raises(ValueError, match=r"na.csv:2: column 'a' is missing a value"):
        load_table(custom, missing=("NA", "?"), impute="error")
    # "?" is text, a stray cell among numbers unless it means missing
    with pytest.raises(ValueError, match=r"na.csv:4: column 'a' holds numbers and '\?', which is not among"):
        load_table(custom, header=True, missing=("NA",), test_fraction=0.5)


def test_all_missing_column_is_dropped_and_unlabelled_rows_too(tmp_path):
    path = write(tmp_path / "t.csv", "a,b,label\n1,?,x\n2,?,y\n3,?,\n4,?,x\n5,?,y\n")
    ds = load_table(path, standardize=False, test_fraction=0.5)
    assert ds.meta["feature_names"] == ["a"] and ds.meta["all_missing_columns_dropped"] == ["b"]
    assert ds.meta["unlabelled_rows"] == 1 and len(ds.y_train) + len(ds.y_test) == 4


@pytest.mark.parametrize(
    ("bad", "value"), [("inf", "inf"), ("-inf", "-inf"), ("1e999", "inf"), ("-Infinity", "-inf")]
)
def test_non_finite_numbers_are_refused_with_file_line_and_column(tmp_path, bad, value):
    path = write(tmp_path / "t.csv", f"a,b,label\n1,2,x\n\n3,{bad},y\n5,6,x\n")
    with pytest.raises(
        ValueError, match=rf"t.csv:4: column 'b': {value} is not a finite number \(line '3,{bad},y'\)$"
    ):
        load_table(path)


def test_non_finite_in_headerless_test_file_names_that_file(tmp_path):
    train = write(tmp_path / "a.data", "1,x\n2,y\n")
    test = write(tmp_path / "a.test", "3,x\n1e999,y\n")
    with pytest.raises(ValueError, match=r"a.test:2: column 0: inf is not a finite number"):
        load_table(train, test_path=test)


# --- Excel ---------------------------------------------------------------------------------------


def test_xlsx_through_pandas(tmp_path):
    frame = pd.DataFrame(
        {
            "area": [1.0, 2.0, 3.0, None, 5.0, 6.0],
            "shape": ["round", "oval", "round", "oval", "round", "oval"],
            "Class": ["B", "A", "B", "A", "C", "C"],
        }
    )
    path = tmp_path / "t.xlsx"
    frame.to_excel(path, index=False, sheet_name="beans")
    ds = load_table(path, label="Class", standardize=False, split="random", test_fraction=0.5, impute="mean")
    assert ds.class_names == ["A", "B", "C"] and ds.meta["feature_names"] == [
        "area",
        "shape-oval",
        "shape-round",
    ]
    x, y, _ = paper_features(frame, "Class")
    train, test = train_test_split(np.arange(6), test_size=0.5, random_state=0)
    assert np.allclose(ds.x_train.numpy(), x[train]) and ds.y_test.tolist() == y[test].tolist()
    assert load_table(path, sheet="beans", label="Class").num_classes == 3
    with pytest.raises(ValueError, match=r"t.xlsx: cannot read sheet 'nope'"):
        load_table(path, sheet="nope")


@pytest.mark.parametrize("chunk", [1, 2, 1 << 16])
def test_content_digest_spells_each_cell(monkeypatch, chunk):
    """The bytes hashed, spelled out by hand: names, then rows of cells (numbers as repr(float), missing
    as nothing), whatever the column's dtype and however many rows are hashed at once."""
    import hashlib

    import lossbench.data.table as table

    monkeypatch.setattr(table, "_DIGEST_CELLS", chunk * 8)  # (chunk rows of the frame's 8 columns)
    frame = pd.DataFrame({
        "f": [1.5, float("nan"), -0.0], "i": np.array([3, -2**62, 7]), "u": np.array([2**63 + 2, 0, 1], dtype=np.uint64),
        "b": [True, False, True], "s": ["x|y", None, ""], "mixed": ["a", 2, 2.5],
        "Int64": pd.array([None, 4, 5], dtype="Int64"), "cat": pd.Categorical(["p", None, "q"]),
    })  # fmt: skip
    rows = ["1.5\x1f3.0\x1f9.223372036854776e+18\x1fTrue\x1fx|y\x1fa\x1f\x1fp",
            "\x1f-4.611686018427388e+18\x1f0.0\x1fFalse\x1f\x1f2.0\x1f4.0\x1f",
            "-0.0\x1f7.0\x1f1.0\x1fTrue\x1f\x1f2.5\x1f5.0\x1fq"]  # fmt: skip
    spelled = "\x1d" + "\x1f".join(frame.columns) + "".join("\x1e" + r for r in rows)
    assert content_digest(frame) == hashlib.sha256(spelled.encode()).hexdigest()
    both = "\x1d" + "\x1f".join(frame.columns) + "\x1e" + rows[0] + "\x1d" + "\x1f".join(frame.columns) + "\x1e" + rows[0]
    assert content_digest(frame.iloc[:1], frame.iloc[:1]) == hashlib.sha256(both.encode()).hexdigest()
    assert content_digest(pd.DataFrame(index=range(2))) == hashlib.sha256("\x1d\x1e\x1e".encode()).hexdigest()


def test_content_digest_ignores_excel_metadata(tmp_path):
    frame = pd.DataFrame({"a": [1, 2, 3], "label": ["x", "y", "x"]})
    one, two = tmp_path / "one.xlsx", tmp_path / "two.xlsx"
    frame.to_excel(one, index=False)
    with pd.ExcelWriter(two) as writer:
        frame.to_excel(writer, index=False)
        writer.book.properties.creator = "someone else"
        writer.book.properties.title = "a copy"
    assert one.read_bytes() != two.read_bytes()
    a = load_table(one, label="label", test_fraction=0.34)
    b = load_table(two, label="label", test_fraction=0.34)
    assert a.meta["content_sha256"] == b.meta["content_sha256"] == content_digest(frame)
    crlf = write(tmp_path / "t.csv", "a,label\r\n1,x\r\n2,y\r\n3,x\r\n")
    assert load_table(crlf, test_fraction=0.34).meta["content_sha256"] == a.meta["content_sha256"]
    assert load_table(one, label="label", test_fraction=0.34, content_sha256=a.meta["content_sha256"])
    with pytest.raises(
        ValueError, match=r"one.xlsx: the parsed cells have SHA-256 [0-9a-f]{64}, expected 0+;"
    ):
        load_table(one, label="label", content_sha256="0" * 64)


# --- splits and standardisation --------------------------------------------------------------------


def test_random_and_stratified_splits(tmp_path):
    rows = "".join(f"{i},{'abc'[i % 3] if i < 24 else 'a'}\n" for i in range(30))
    path = write(tmp_path / "t.data", rows)
    rnd = load_table(path, split="random", seed=3, test_fraction=0.2)
    train, test = train_test_split(np.arange(30), test_size=0.2, random_state=3)
    assert (
        rnd.meta["train_rows"].tolist() == train.tolist() and rnd.meta["test_rows"].tolist() == test.tolist()
    )
    strat = load_table(path, split="stratified", seed=3, test_fraction=0.2)
    y = torch.cat([strat.y_train, strat.y_test])[
        torch.cat([strat.meta["train_rows"], strat.meta["test_rows"]]).argsort()
    ]
    expected = stratified_split(y, val_fraction=0.2, seed=3)
    assert strat.meta["train_rows"].tolist() == expected[0].tolist()
    assert strat.meta["test_rows"].tolist() == expected[1].tolist()
    assert "random split, test_fraction=0.2, seed=3" in rnd.meta["split"]


def test_standardisation_on_training_rows_ddof0_constant_columns_centred(tmp_path):
    train = write(tmp_path / "a.data", "1,5,x\n2,5,y\n4,5,x\n")
    test = write(tmp_path / "a.test", "3,7,y\n")
    with pytest.warns(UserWarning, match=r"a.data: feature\(s\) constant in the training rows, centred only \(not scaled\): '1'$"):
        ds = load_table(train, test_path=test)
    a = np.array([1.0, 2.0, 4.0])
    assert np.allclose(ds.x_train[:, 0].numpy(), (a - a.mean()) / a.std(ddof=0))
    assert ds.x_test[0, 0].item() == pytest.approx((3 - a.mean()) / a.std(ddof=0))
    assert ds.x_train[:, 1].tolist() == [0, 0, 0]  # constant in training: centred, divided by 1
    assert ds.x_test[0, 1].item() == pytest.approx(7 - 5)  # (the paper's floor made it 2e6: the uci-* sets only)
    assert ds.meta["standardization"]["std"][1].item() == 1
    raw = load_table(train, test_path=test, standardize=False)
    assert raw.x_train.tolist() == [[1, 5], [2, 5], [4, 5]] and raw.meta["standardization"] is None


def test_test_file_gets_the_training_files_one_hot_columns(tmp_path):
    train = write(tmp_path / "a.data", "red,1,x\nblue,2,y\n")
    test = write(tmp_path / "a.test", "green,3,y\nred,4,x\n")
    ds = load_table(train, test_path=test, standardize=False)
    assert ds.meta["feature_names"] == ["1", "0-blue", "0-red"]  # "green", in no training row: all zeros
    assert ds.x_test.tolist() == [[3, 0, 0], [4, 0, 1]] and len(ds.y_train) == 2


# --- bad input -----------------------------------------------------------------------------------


def test_bad_paths(tmp_path):
    with pytest.raises(ValueError, match=r"path='.*nope.csv': no such file"):
        load_table(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match=r"path='.*' is a directory, expected a table file"):
        load_table(tmp_path)
    good = write(tmp_path / "t.csv", "a,label\n1,x\n2,y\n")
    with pytest.raises(ValueError, match=r"test_path='.*missing.csv': no such file"):
        load_table(good, test_path=tmp_path / "missing.csv")


def test_non_utf8_text_names_the_line(tmp_path):
    path = write(tmp_path / "t.csv", "a,label\n1,x\n2,caf\xe9\n3,x\n4,caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"t.csv:3: not utf-8 text \(byte 0xe9\); pass encoding="):
        load_table(path)
    ds = load_table(path, encoding="latin-1", test_fraction=0.5)
    assert ds.class_names == ["café", "x"]
    # a binary file is no text in any encoding: said so, not sent after encoding= (NumPy's .npy header)
    binary = write(tmp_path / "x.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'}\n" + bytes(16))
    with pytest.raises(ValueError, match=r"x.npy:1: the text holds a NUL character: .* or not a text file"):
        load_table(binary, label=0)


def test_single_class_and_bad_labels(tmp_path):
    with pytest.raises(ValueError, match=r"t.csv: label column 'label' holds a single class \('x'\)"):
        load_table(write(tmp_path / "t.csv", "a,label\n1,x\n2,x\n3,x\n"))
    with pytest.raises(
        ValueError, match=r"r.csv:3: label column 'y' holds the non-integer number 2.5; a class label must be"
    ):
        load_table(write(tmp_path / "r.csv", "a,y\n1,1\n2,2.5\n3,1\n"))


def test_too_many_fields_and_short_rows(tmp_path):
    with pytest.raises(ValueError, match=r"t.csv:4: expected 3 fields, got 5"):
        load_table(write(tmp_path / "t.csv", "a,b,label\n1,2,x\n\n3,4,y,5,6\n"))
    # A short row is padded with missing values (pandas); without a label it is dropped.
    ds = load_table(
        write(tmp_path / "s.csv", "a,b,label\n1,2,x\n3\n4,5,y\n6,7,x\n8,9,y\n"), test_fraction=0.5
    )
    assert ds.meta["unlabelled_rows"] == 1


def test_too_many_categories_and_option_checks(tmp_path):
    rows = "".join(f"v{i},{'xy'[i % 2]}\n" for i in range(6))
    path = write(tmp_path / "t.data", rows)
    test = write(tmp_path / "t.test", "v7,x\n")  # (the training rows' values count)
    with pytest.raises(
        ValueError, match=r"t.data: column 0 is not numeric and holds 6 distinct values, more than max"
    ):
        load_table(path, test_path=test, max_categories=5)
    assert load_table(path, test_path=test, max_categories=6).input_shape == (6,)
    for bad, match in (
        ({"impute": "median"}, r"impute='median', expected one of"),
        ({"split": "kfold"}, r"split='kfold', expected one of"),
        ({"test_fraction": 1.5}, r"test_fraction must lie in \(0, 1\)"),
        ({"sep": ""}, r"^sep='' separates nothing"),
        ({"split": "random", "seed": -1}, r"^seed must be an int in \[0, 2\*\*32\) for the random split, got -1$"),
        ({"split": "random", "seed": 2**32}, r"^seed must be an int in \[0, 2\*\*32\)"),
    ):
        with pytest.raises(ValueError, match=match):
            load_table(path, **bad)


def test_a_column_of_numbers_names_its_first_other_cell(tmp_path):
    # a "NA" the missing values do not list would make a column of ages one category per age
    rows = "".join(f"{i},{18 + i},{'xy'[i % 2]}\n" for i in range(8))
    path = write(tmp_path / "t.csv", "a,age,kind\n" + rows.replace(",20,", ",NA,"))
    with pytest.raises(ValueError, match=r"t.csv:4: column 'age' holds numbers and 'NA', which is not among the table's "
                                         r"missing values: list it in missing=\[...\]"):  # fmt: skip
        load_table(path, label="kind")
    assert load_table(path, label="kind", missing=["?", "", "NA"]).input_shape == (2,)
    nbsp = write(tmp_path / "s.csv", "a,b,kind\n" + rows.replace(",20,", ",20\xa0,"))  # a number only once stripped
    data = load_table(nbsp, label="kind")
    assert data.input_shape == (1 + 8,)  # (nominal, as before: one column per value of the file)
    path = write(tmp_path / "u.csv", "a,b,kind\n" + rows.replace(",20,", ",abc,").replace(",21,", ",abd,"))
    with pytest.raises(ValueError, match=r"u.csv:4: column 'b' is not numeric \(this line holds 'abc'\) and holds "
                                         r"8 distinct"):  # fmt: skip
        load_table(path, label="kind", max_categories=5)


def test_a_label_column_of_ids_is_named_as_such_where_it_leaves_no_test_rows(tmp_path):
    path = write(tmp_path / "ids.csv", "x,id\n" + "".join(f"{i / 3},row{i}\n" for i in range(30)))
    with pytest.raises(ValueError, match=r"ids.csv: the stratified split .* of 30 labelled rows leaves the test split "
                                         r"empty \(each of the 30 rows is a class of its own: is the label column an id\?\)"):  # fmt: skip
        load_table(path, label="id", cache=False)


def test_one_hot_features_past_the_cells_lossbench_encodes_are_refused_before_encoding(tmp_path, monkeypatch):
    from lossbench.data import table

    rows = "".join(f"{i},{'abcdef'[i % 6]},{'uvw'[i % 3]},{'xy'[i % 2]}\n" for i in range(12))
    path = write(tmp_path / "t.csv", "a,b,c,kind\n" + rows)
    monkeypatch.setattr(table, "MAX_ONEHOT_CELLS", 12 * 8)  # (b's 6 features fit; c's 3 more do not)
    with pytest.raises(ValueError, match=r"t.csv: column 'c''s 3 values bring the one-hot features to 9 over 12 rows, "
                                         r"0.0 GiB as float64 \(at most 0 GiB\); drop it"):  # fmt: skip
        load_table(path, label="kind", cache=False)
    assert load_table(path, label="kind", drop=["c"], cache=False).input_shape == (1 + 6,)


def test_test_file_with_other_columns(tmp_path):
    train = write(tmp_path / "a.csv", "a,label\n1,x\n2,y\n")
    test = write(tmp_path / "b.csv", "a,b,label\n1,2,x\n")
    with pytest.raises(
        ValueError, match=r"b.csv has columns \['a', 'b', 'label'\], but .*a.csv has \['a', 'label'\]"
    ):
        load_table(train, test_path=test)


# --- the registered format and the cache ---------------------------------------------------------


def test_registered_as_the_table_format(tmp_path):
    path = write(tmp_path / "t.csv", MIXED)
    ds = load_dataset("table", path=str(path), label="kind", split="random")
    assert ds.name == "t" and ds.num_classes == 3 and len(ds.y_test) == 2
    with pytest.raises(ValueError, match=r"dataset 'table' needs parameter\(s\) path"):
        load_dataset("table")


def test_parse_cache_returns_the_same_dataset(tmp_path, fresh_cache):
    path = write(tmp_path / "t.csv", MIXED)
    first = load_table(path, label="kind")
    assert any(fresh_cache.glob("table-*.pt"))
    second = load_table(path, label="kind")
    assert torch.equal(first.x_train, second.x_train) and first.class_names == second.class_names
    uncached = load_table(path, label="kind", cache=False)
    assert torch.equal(first.x_test, uncached.x_test)


def test_a_value_is_one_category_in_both_files(tmp_path):
    # pandas reads each file on its own: a 1 is the float 1.0 where its file has a missing cell in the
    # column and the text "1" where its file has text there; it must stay one category (and one class)
    train = write(tmp_path / "train.csv", "c,v,y\n1,0.5,3\nx,0.7,5\nw,0.1,3\n2,0.2,5\n1,0.3,\n")
    test = write(tmp_path / "test.csv", "c,v,y\n1,0.2,3\n,0.4,5\n")
    with pytest.warns(UserWarning, match="1 of 5 rows have no label"):
        data = load_table(train, test_path=test, label="y", standardize=False, cache=False)
    assert data.meta["feature_names"] == ["v", "c-1", "c-2", "c-w", "c-x"]
    assert data.x_train[0, 1] == data.x_test[0, 1] == 1  # c = 1 in both files
    assert data.class_names == ["3", "5"] and data.y_test.tolist() == [0, 1]


def test_a_test_file_class_the_training_file_never_shows_is_refused(tmp_path):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("a,y\n1,cat\n2,dog\n3,cat\n4,dog\n")
    test.write_text("a,y\n1,cat\n5,bird\n")
    with pytest.raises(ValueError, match=r"test_path=.*test.csv': labels \['bird'\] do not occur in the training data"):
        load_table(train, test_path=test, label="y")
    test.write_text("a,y\n1,cat\n5,dog\n")
    assert load_table(train, test_path=test, label="y").class_names == ["cat", "dog"]


@pytest.mark.parametrize("suffix", [".csv", ".txt"])
def test_a_semicolon_separated_file_is_read_with_semicolons(tmp_path, suffix):
    path = tmp_path / f"semi{suffix}"
    path.write_text("a;b;target\n1;2;x\n3;4;y\n5;6;x\n7;8;y\n")
    data = load_table(path, label="target", standardize=False, test_fraction=0.5)
    assert data.class_names == ["x", "y"] and data.x_train.shape[1] == 2


def test_a_missing_relative_path_names_the_folder_it_was_read_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=rf"path='data/mine.csv': no such file \(a relative path, read from {tmp_path}\)"):
        load_table("data/mine.csv")


def test_a_whitespace_table_whose_header_holds_a_semicolon_stays_whitespace(tmp_path):
    path = tmp_path / "ws.txt"
    path.write_text("f1 f2 cls;grp\n" + "".join(f"{i} {i + 1} {'ab'[i % 2]}\n" for i in range(10)))
    data = load_table(path, label="last", standardize=False)
    assert data.class_names == ["a", "b"] and data.x_train.shape[1] == 2


def test_a_test_fraction_beside_a_test_file_is_refused(tmp_path):
    # the test file's rows are the test split: a test_fraction given with it was ignored without a word
    train = write(tmp_path / "train.csv", "a,y\n" + "".join(f"{i},{'pq'[i % 2]}\n" for i in range(20)))
    test = write(tmp_path / "test.csv", "a,y\n1,p\n2,q\n")
    with pytest.raises(ValueError, match=r"test_fraction=0.5 and test_path='.*test.csv' exclude each other"):
        load_table(train, test_path=test, test_fraction=0.5)
    assert load_table(train, test_path=test).x_test.shape == (2, 1)
    assert load_table(train, test_fraction=0.5).x_test.shape == (10, 1)
