"""load_table on tables of your own that a new user's review found mishandled: a feature constant in the
training rows, unlabelled rows, UTF-16 files, decimal commas, repeated header names; and a second review's:
what the test rows may shape, stray cells in a column of numbers, labels with spaces, values beyond float32,
a class only the test rows have.  The registered uci-* sets keep the EXACT paper's rules (test_uci.py checks
them on the real files)."""

from __future__ import annotations

import codecs
import re
import warnings

import pandas as pd
import pytest
import torch

from lossbench.data import load_table
from lossbench.data.table import STD_FLOOR

from .writers import write

ROWS = "".join(f"{i},{'red' if i % 3 else 'blue'},{'ab'[i % 2]}\n" for i in range(8))


UNIT_ROWS = ROWS.replace("red", "5").replace("blue", "5")


def test_a_feature_constant_in_training_is_centred_not_blown_up(tmp_path):
    # "unit" is 5 in every training row and 7 in a test row
    train = write(tmp_path / "train.csv", "n,unit,kind\n" + UNIT_ROWS)
    test = write(tmp_path / "test.csv", "n,unit,kind\n3,7,a\n4,5,b\n")
    with pytest.warns(UserWarning, match=r"train.csv: feature\(s\) constant in the training rows, centred only "
                                         r"\(not scaled\): 'unit'$"):  # fmt: skip
        data = load_table(train, test_path=test, label="kind")
    unit = data.meta["feature_names"].index("unit")
    assert data.x_test[:, unit].tolist() == [2, 0] and data.x_train[:, unit].abs().max() == 0
    assert data.x_test.abs().max() < 10
    # a rare value that the stratified split puts in the test rows only
    rare = write(tmp_path / "rare.csv", "n,unit,kind\n" + UNIT_ROWS + "9,6,b\n")
    with pytest.warns(UserWarning, match=r"constant in the training rows.*'unit'"):
        data = load_table(rare, label="kind", test_fraction=0.5, seed=2)
    assert 8 in data.meta["test_rows"].tolist() and data.x_test.abs().max() < 10
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


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_a_table_holding_a_nul_character_is_refused_naming_its_line(tmp_path, encoding):
    # (UTF-16 without its byte-order mark reads as ASCII with a NUL after each letter)
    path = write(tmp_path / "t.csv", b"size,kind\n1,x\n2,y\x00\n3,x\n4,y\n")
    with pytest.raises(ValueError, match=r"t.csv:3: the text holds a NUL character"):
        load_table(path, label="kind", encoding=encoding)


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


@pytest.mark.parametrize("first", ["NA,2.5,z", "-,2.5,z", "a,2.5,z"])
def test_a_first_row_with_a_missing_spelling_or_a_decimal_number_is_data_not_a_header(tmp_path, first):
    # "NA,2.5,z" was taken for a header: its row, and class z with it, gone without a word
    path = write(tmp_path / "t.csv", first + "\n" + "".join(f"{i},{i}.5,{'xy'[i % 2]}\n" for i in range(1, 7)))
    cell = first.split(",")[0]
    with pytest.raises(ValueError, match=rf"t.csv:1: column 0 holds numbers and '{cell}', which is not among"):
        load_table(path)
    # a header may still name columns 0, 1 (pandas' to_csv of an array's frame)
    path = write(tmp_path / "h.csv", "0,1,label\n" + "".join(f"{i},{i}.5,{'xy'[i % 2]}\n" for i in range(1, 7)))
    assert load_table(path, standardize=False).meta["feature_names"] == ["0", "1"]


def test_blank_and_comment_lines_inside_a_quoted_field_are_part_of_it(tmp_path):
    # they were dropped before the parser saw the quotes: "a\n\nb" read as "a\nb", rows out of step
    text = 'txt,n,label\n"a\n\nb",1,x\n"a\nb",2,y\n# a comment\n\n"x\n# not one",3,x\nc,4,y\nd,5,x\ne,6,y\n'
    data = load_table(write(tmp_path / "t.csv", text), comment="#", nominal=["txt"], standardize=False)
    assert len(data.y_train) + len(data.y_test) == 6
    assert {"txt-a\n\nb", "txt-a\nb", "txt-x\n# not one"} <= set(data.meta["feature_names"])


def test_a_column_of_decimal_comma_numbers_is_refused_with_the_hint(tmp_path):
    # every cell "4,45": read as text, each value one category (a one-hot feature per number), silently
    rows = "".join(f"{i},{i * 7 % 10};{i % 3};{'xy'[i % 2]}\n" for i in range(20))
    path = write(tmp_path / "t.csv", "a;b;label\n" + rows)
    with pytest.raises(ValueError, match=r"t.csv:2: column 'a' holds numbers written with a decimal comma \('0,0'\): "
                                         r"pass decimal=','"):  # fmt: skip
        load_table(path)
    assert load_table(path, decimal=",", standardize=False).x_train.shape[1] == 2
    assert load_table(path, nominal=["a"]).x_train.shape[1] > 2  # (categories, as asked)
    quoted = write(tmp_path / "q.csv", "a,b,label\n" + "".join(f'"{i},5",{i},{"xy"[i % 2]}\n' for i in range(6)))
    with pytest.raises(ValueError, match="decimal comma"):
        load_table(quoted)


def test_repeated_header_names_are_refused(tmp_path):
    path = write(tmp_path / "t.csv", "age,age,height,height,species\n" + "1,2,3,4,x\n5,6,7,8,y\n" * 3)
    with pytest.raises(ValueError, match=r"t.csv:1: the header names column\(s\) 'age', 'height' more than once; "
                                         r"rename them \(pandas would read them as 'age', 'age.1'\)$"):  # fmt: skip
        load_table(path)
    with pytest.raises(ValueError, match=r"t.csv:1: the header names column\(s\) 'age', 'height'"):
        load_table(path, header=True)
    # told: the header row is data; its names are then stray cells in columns of numbers, unless missing
    with pytest.raises(ValueError, match=r"t.csv:1: column 0 holds numbers and 'age', which is not among"):
        load_table(path, header=False, test_fraction=0.5)
    told = load_table(path, header=False, test_fraction=0.5, missing=["age", "height"])
    assert told.class_names == ["species", "x", "y"]
    # an Excel sheet's header too
    pytest.importorskip("openpyxl")
    frame = pd.DataFrame([[1, 2, "x"], [3, 4, "y"], [5, 6, "x"]], columns=["a", "a", "kind"])
    frame.to_excel(tmp_path / "t.xlsx", index=False, sheet_name="s")
    with pytest.raises(ValueError, match=r"t.xlsx: sheet 0: the header names column\(s\) 'a' more than once"):
        load_table(tmp_path / "t.xlsx")
    # the paper's audit_risk.csv repeats Score_B: the uci-* sets read it as pandas does
    assert load_table(path, paper_rules=True, test_fraction=0.5).meta["feature_names"][:2] == ["age", "age.1"]


# --- a second review: what the test rows may shape, stray cells, labels, float32's range, classes ------------


def _seed_holding_out(row: int, n: int, held: bool = True) -> int:
    """A seed for which split="random" (test_fraction 0.2) puts ``row`` of ``n`` in the test rows (``held``)
    or in the training rows."""
    from sklearn.model_selection import train_test_split

    return next(s for s in range(100) if (row in train_test_split(range(n), test_size=0.2, random_state=s)[1]) == held)


def _seed_keeping(row: int, n: int) -> int:
    return _seed_holding_out(row, n, held=False)


def test_types_and_categories_come_from_the_training_file_only(tmp_path):
    train = write(tmp_path / "train.csv", "a,b,y\n1.5,2,x\n3.25,4,z\n5.1,6,x\n7.7,8,z\n")
    test = write(tmp_path / "test.csv", "a,b,y\n1.5,2,x\nunknown,4,z\n")
    with pytest.raises(ValueError, match=r"test.csv:3: column 'a': 'unknown' is no number, but the training rows "
                                         r"hold only numbers there; list it in missing=\[...\]"):  # fmt: skip
        load_table(train, test_path=test)
    # the paper's rules (the uci-* sets) encode both files together, as its code does
    paper = load_table(train, test_path=test, paper_rules=True)
    assert paper.meta["feature_names"] == ["b", "a-1.5", "a-3.25", "a-5.1", "a-7.7", "a-unknown"]
    # a category only the test rows have is no feature: all zeros there; max_categories counts the training rows'
    train = write(tmp_path / "train.csv", "n,colour,kind\n" + ROWS)
    test = write(tmp_path / "test.csv", "n,colour,kind\n3,green,a\n4,red,b\n")
    data = load_table(train, test_path=test, label="kind", standardize=False, max_categories=2)
    assert data.meta["feature_names"] == ["n", "colour-blue", "colour-red"]
    assert data.x_test.tolist() == [[3, 0, 0], [4, 0, 1]]
    # one file: its every row types the columns before the split, so the features are the same whatever
    # the seed, with the rare value's row in the test rows or not
    rare = write(tmp_path / "rare.csv", "n,colour,kind\n" + ROWS + "9,green,b\n")
    split = [load_table(rare, label="kind", test_fraction=0.5, seed=seed, standardize=False) for seed in range(6)]
    assert len({8 in data.meta["test_rows"].tolist() for data in split}) == 2
    assert all(data.meta["feature_names"] == ["n", "colour-blue", "colour-green", "colour-red"] for data in split)
    rows = "".join(f"{i}.5,{i},{'xy'[i % 2]}\n" for i in range(9)) + "oops,9,x\n"
    odd = write(tmp_path / "odd.csv", "a,b,kind\n" + rows)
    for seed in (_seed_holding_out(9, 10), _seed_keeping(9, 10)):  # the same error wherever the split puts it
        with pytest.raises(ValueError, match=r"odd.csv:11: column 'a' holds numbers and 'oops'"):
            load_table(odd, split="random", seed=seed, test_fraction=0.2)


def test_a_few_stray_cells_in_a_column_of_numbers_are_refused(tmp_path):
    rows = [f"{i},{i * 2}.5,{'xz'[i % 2]}" for i in range(30)]
    rows[2] = "2,-,z"
    path = write(tmp_path / "t.csv", "a,b,y\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"t.csv:4: column 'b' holds numbers and '-', which is not among the table's "
                                         r"missing values: list it in missing=\[...\] to read it as missing"):  # fmt: skip
        load_table(path)
    assert load_table(path, missing=["?", "", "-"]).meta["feature_names"] == ["a", "b"]
    # a decimal comma in a ';' table: the hint says decimal=','
    semi = write(tmp_path / "s.csv", "a;b;y\n" + "".join(f"{i};{i}.5;{'xz'[i % 2]}\n" for i in range(5)) + "1,5;2;x\n")
    with pytest.raises(ValueError, match=r"s.csv:7: column 'a' holds numbers and '1,5'.*, or pass decimal=',' for "
                                         r"numbers written 1,5, or the column in nominal=\[...\]"):  # fmt: skip
        load_table(semi)
    # a value that recurs among numbers is a category (a top-coded "6+"), whatever share of the rows it holds
    top = write(tmp_path / "top.csv", "n,y\n" + "".join(f"{'6+' if i % 16 == 0 else i % 6},{'xz'[i % 2]}\n" for i in range(100)))
    for seed in range(4):
        names = load_table(top, header=True, seed=seed, standardize=False).meta["feature_names"]
        assert names == ["n-0", "n-1", "n-2", "n-3", "n-4", "n-5", "n-6+"]
    # nominal=[...] reads a column as categories whatever it holds: the refused column above, or numbers
    assert load_table(path, nominal=["b"], max_categories=50).input_shape == (1 + 30,)
    assert load_table(path, nominal=[0, "b"], max_categories=50).meta["feature_names"][:2] == ["a-0", "a-1"]
    gaps = write(tmp_path / "g.csv", "a,b,y\n1,2,x\n,3,z\n10,4,x\n2,5,z\n")  # a nominal column of numbers with a gap
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (pandas warns of filling a float column with text)
        data = load_table(gaps, nominal=["a"], standardize=False, test_fraction=0.5)
    assert data.meta["feature_names"] == ["b", "a-1", "a-10", "a-2", "a-nan"]
    for bad, match in ((["y"], "names the label column 'y'"), (["b"], r"names dropped column\(s\) \['b'\]")):
        with pytest.raises(ValueError, match=rf"g.csv: nominal={re.escape(repr(bad))} {match}$"):
            load_table(gaps, nominal=bad, drop=["b"])
    # a missing spelling among numbers is refused whatever else the column holds (it would be a category)
    mixed = write(tmp_path / "m.csv", "a,y\n" + "".join(f"{v},{'xz'[i % 2]}\n" for i, v in enumerate(
        [*range(16), "5more", "NA", "5more", "NA"])))  # fmt: skip
    with pytest.raises(ValueError, match=r"m.csv:19: column 'a' holds numbers and 'NA'"):
        load_table(mixed, header=True)
    # a nominal column whose values are mostly numbers (car's doors: 2, 3, 4, 5more) stays nominal
    doors = write(tmp_path / "d.csv", "doors,y\n" + "".join(f"{'2345'[i % 4].replace('5', '5more')},{'xz'[i % 2]}\n"
                                                           for i in range(16)))  # fmt: skip
    names = load_table(doors, header=True, standardize=False).meta["feature_names"]
    assert names == ["doors-2", "doors-3", "doors-4", "doors-5more"]


def test_labels_differing_only_by_spaces_are_one_class(tmp_path):
    path = write(tmp_path / "t.csv", "a,y\n1,x \n2, x\n3,x\n4,z\n5,z\n6, z \n")
    data = load_table(path, test_fraction=0.34)
    assert data.class_names == ["x", "z"]
    dots = write(tmp_path / "d.csv", "a,y\n1,x\n2,z.\n3,x\n4,z\n5,z\n6,x\n")
    with pytest.warns(UserWarning, match=r"d.csv: labels 'z' and 'z.' differ only by a trailing '.'; pass "
                                         r"label_strip='.' if they are one class$"):  # fmt: skip
        assert load_table(dots, test_fraction=0.34).class_names == ["x", "z", "z."]
    assert load_table(dots, test_fraction=0.34, label_strip=".").class_names == ["x", "z"]
    cased = write(tmp_path / "c.csv", "a,y\n1,Yes\n2,yes\n3,No\n4,yes\n5,Yes\n6,No\n")
    with pytest.warns(UserWarning, match=r"c.csv: labels 'Yes', 'yes' differ only by case and are 2 classes; write "
                                         r"them alike if they are one$"):  # fmt: skip
        assert load_table(cased, test_fraction=0.34).class_names == ["No", "Yes", "yes"]


@pytest.mark.parametrize("big", ["1e300", "1.7e308", "-4e38"])
def test_a_value_beyond_float32s_range_is_refused(tmp_path, big):
    path = write(tmp_path / "t.csv", f"a,b,y\n1,2,x\n{big},3,z\n2,4,x\n5,6,z\n")
    for standardize in (False, True):
        value = re.escape(repr(float(big)))
        with pytest.raises(ValueError, match=rf"t.csv:3: column 'a': {value} is beyond float32's range "
                                             r"\(±3.403e\+38\) \(line "):  # fmt: skip
            load_table(path, standardize=standardize)


def test_large_float32_values_standardise_without_overflow(tmp_path):
    path = write(tmp_path / "t.csv", "a,b,y\n3e38,1,x\n-3e38,2,z\n3e38,3,x\n-3e38,4,z\n")
    data = load_table(path, split="random", test_fraction=0.5, seed=0)
    x = torch.cat([data.x_train, data.x_test])
    assert torch.isfinite(x).all() and set(x[:, 0].abs().tolist()) == {1.0}


def test_a_class_only_the_generated_test_split_has_is_warned_of(tmp_path):
    rows = "".join(f"{i},{'xz'[i % 2]}\n" for i in range(18)) + "18,w\n"
    path = write(tmp_path / "t.csv", "a,y\n" + rows)
    seed = _seed_holding_out(18, 19)
    with pytest.warns(UserWarning, match=rf"t.csv: the random split \(test_fraction=0.2, seed={seed}\) puts every row of "
                                         r"classes \['w'\] in the test part: the model never trains on them"):  # fmt: skip
        assert load_table(path, split="random", seed=seed).class_names == ["w", "x", "z"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_table(path).class_names == ["w", "x", "z"]  # (stratified: a class keeps a row in training)


@pytest.mark.parametrize(
    "test, result",
    [("a,c,y\n", "no data rows below its header line"),  # its guess alone: no row below to compare with
     ("a,c,y\n?,red,x\n?,blue,z\n", None)],  # its guess alone: no column holds numbers below a name
)  # fmt: skip
def test_a_test_file_is_read_with_the_training_files_header(tmp_path, test, result):
    train = write(tmp_path / "tr.csv", "a,c,y\n1,red,x\n3,blue,z\n2,red,x\n4,blue,z\n")
    test_path = write(tmp_path / "te.csv", test)
    if result is not None:  # (it read as headerless, and the columns were blamed)
        with pytest.raises(ValueError, match=rf"te.csv: {result}$"):
            load_table(train, test_path=test_path)
        return
    ds = load_table(train, test_path=test_path, standardize=False)
    assert ds.meta["feature_names"] == ["a", "c-blue", "c-red"] and ds.y_test.tolist() == [0, 1]
    assert ds.x_test[:, 0].tolist() == [2.5, 2.5]  # (the training mean: the column is all missing there)


@pytest.mark.parametrize("text", ["a,b,label\n", "label\n", "a,b,label\n\n# note\n"])
@pytest.mark.parametrize("label", ["label", "last"])
def test_a_header_only_file_says_it_has_no_data_rows(tmp_path, text, label):
    # One line with a name in it is a header (with one line there are no rows below to compare it with).
    path = write(tmp_path / "t.csv", text)
    with pytest.raises(ValueError, match=r"t.csv: no data rows below its header line$"):
        load_table(path, label=label, comment="#")


@pytest.mark.parametrize("end", ["\n", "\r\n"])
@pytest.mark.parametrize("hint, sep", [("sep=;", None), ("sep=\t", None), ("sep=;", ";")])
def test_an_excel_delimiter_line_names_the_delimiter_and_is_no_row(tmp_path, hint, sep, end):
    d = hint[-1]
    rows = [f"a{d}b{d}label", f"1{d}2{d}x", f"3{d}4{d}y", f"5{d}6{d}x", f"7{d}8{d}y"]
    path = write(tmp_path / "t.csv", end.join([hint, *rows]) + end)  # (was: "t.csv:2: expected 1 fields, got 3")
    ds = load_table(path, sep=sep, test_fraction=0.5, standardize=False)
    assert ds.meta["feature_names"] == ["a", "b"] and ds.class_names == ["x", "y"]
    assert sorted(ds.x_train[:, 0].tolist() + ds.x_test[:, 0].tolist()) == [1.0, 3.0, 5.0, 7.0]
    bad = write(tmp_path / "bad.csv", end.join([hint, rows[0], rows[1] + d + "9", *rows[2:]]) + end)
    with pytest.raises(ValueError, match=r"bad.csv:3: expected 3 fields, got 4$"):  # lines counted as in the file
        load_table(bad, sep=sep, test_fraction=0.5)
    with pytest.raises(ValueError, match=r"only.csv: no data rows$"):
        load_table(write(tmp_path / "only.csv", hint + end), sep=sep)


def test_a_number_is_one_category_whether_a_file_holds_text_beside_it_or_not(tmp_path):
    # pandas types each file on its own: "1.50" beside "big" stays text, alone it is 1.5; both were
    # encoded, the test rows' as a category training never had (all zeros), without a word
    train = write(tmp_path / "tr.csv", "a,code,label\n1,1.50,x\n2,2.00,y\n3,big,x\n4,1.50,y\n5,2.00,x\n6,big,y\n")
    test = write(tmp_path / "te.csv", "a,code,label\n1,1.50,x\n2,2.00,y\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_table(train, test_path=test, standardize=False)
    assert data.meta["feature_names"] == ["a", "code-1.5", "code-2", "code-big"]
    assert data.x_test.tolist() == [[1, 1, 0, 0], [2, 0, 1, 0]]
    # and the other way: digits in the training file, beside text in the test file
    zips = write(tmp_path / "z.csv", "zip,label\n02134,x\n02135,y\n02134,y\n02135,x\n")
    other = write(tmp_path / "zt.csv", "zip,label\n02134,x\nK1A0B1,y\n")
    with pytest.warns(UserWarning, match=r"zt.csv:3: column 'zip' holds a value no training row has, as do 1 test "
                                         r"row\(s\) in all \(\['K1A0B1'\]\): encoded as none of the training's categories"):  # fmt: skip
        data = load_table(zips, test_path=other, nominal=["zip"], standardize=False)
    assert data.meta["feature_names"] == ["zip-2134", "zip-2135"] and data.x_test.tolist() == [[1, 0], [0, 0]]


def test_a_label_spelled_missing_is_refused_among_numbers_and_warned_of_among_text(tmp_path):
    # R's write.csv writes a missing label NA: it was a class of its own
    rows = "a,b,label\n0.5,1.5,1\n2.5,0.5,2\n1.5,2.5,NA\n0.25,1.25,1\n2.2,0.7,2\n"
    with pytest.raises(ValueError, match=r"n.csv:4: label column 'label' holds numbers and 'NA', one of pandas' "
                                         r"missing spellings; list it in missing=\[...\] if it means no label"):  # fmt: skip
        load_table(write(tmp_path / "n.csv", rows))
    assert load_table(tmp_path / "n.csv", missing=["NA"], test_fraction=0.5).class_names == ["1", "2"]
    text = write(tmp_path / "t.csv", '"","a","label"\n"1",0.5,"x"\n"2",2.5,"y"\n"3",1.5,NA\n"4",0.2,"x"\n"5",2.2,"y"\n')
    with pytest.warns(UserWarning, match=r"t.csv:4: the label 'NA' \(1 row\(s\)\) is read as a class, though it is "
                                         r"one of pandas' missing spellings"):  # fmt: skip
        assert load_table(text, test_fraction=0.4).class_names == ["NA", "x", "y"]


@pytest.mark.parametrize("names", ["0,1", "2019,2020"])
def test_a_header_of_counting_numbers_above_a_text_label_is_a_header(tmp_path, names):
    # pandas' to_csv of an array's frame, or years: read as data, a class 'label' of one row
    body = "0.5,1.5,cat\n2.5,0.5,dog\n1.5,2.5,cat\n0.25,1.25,dog\n2.25,0.75,cat\n1.75,0.5,dog\n"
    data = load_table(write(tmp_path / "h.csv", f"{names},label\n" + body), standardize=False)
    assert data.class_names == ["cat", "dog"] and data.meta["feature_names"] == names.split(",")
    assert len(data.y_train) + len(data.y_test) == 6
    # a header the guess cannot tell (its name repeated below, in another column) is refused, not read as data
    odd = write(tmp_path / "o.csv", f"{names},kind,label\n" + body.replace(",cat", ",kind,cat").replace(",dog", ",b,dog"))
    with pytest.raises(ValueError, match=r"o.csv:1: the first row looks like a header read as data \(numbers that "
                                         r"count up by one as column names do, and its label 'label' is in no other row\)"):  # fmt: skip
        load_table(odd)


def test_a_separator_that_is_no_regular_expression_is_one_line(tmp_path):
    path = write(tmp_path / "t.csv", "a,label\n1,x\n2,y\n")
    with pytest.raises(ValueError, match=r"^sep='\|\+' is neither one character nor a valid regular expression"):
        load_table(path, sep="|+")


@pytest.mark.parametrize("text, options", [
    ("label\nx\ny\nx\ny\n", {"header": True}),
    ("a,b,label\n1,?,x\n2,?,y\n3,?,x\n4,?,y\n", {"label": "label", "drop": ["a"], "missing": ["?"]}),
], ids=["the label alone", "every feature dropped or missing"])  # fmt: skip
def test_a_table_without_a_feature_column_is_refused(tmp_path, text, options):
    path = write(tmp_path / "t.csv", text)
    with pytest.raises(ValueError, match=r"t.csv: no feature column besides the label column 'label'.*nothing to learn from"):
        load_table(path, test_fraction=0.5, **options)


def test_a_summary_shows_class_names_with_control_characters_escaped(tmp_path):
    # (`lossbench datasets` printed a file's class names raw: a terminal's escape sequences, a line break)
    rows = "".join(f"{i},{name}\n" for i in range(8) for name in ("\x1b[31mred", '"a\nb"', "plain"))
    ds = load_table(write(tmp_path / "t.csv", "x,label\n" + rows), test_fraction=0.25)
    summary = ds.summary()
    assert summary.isprintable() and "'\\x1b[31mred'=" in summary and "'a\\nb'=" in summary and "plain=" in summary


@pytest.mark.parametrize("header", ["a,b,y,\n", ""])
def test_lines_ending_in_the_delimiter_leave_the_label_in_the_last_filled_column(tmp_path, header):
    # (every line of many tools' tables ends in a comma: label="last" took the empty column after it and refused
    # the file, "no row has a label in column 'Unnamed: 3'")
    rows = "".join(f"{i},0.{i},{'yes' if i % 2 else 'no'},\n" for i in range(1, 21))
    with pytest.warns(UserWarning, match="missing in every row, dropped"):
        ds = load_table(write(tmp_path / "t.csv", header + rows))
    assert list(ds.class_names) == ["no", "yes"] and ds.x_train.shape[1] == 2
    with pytest.raises(ValueError, match=r"no column left for label='first' after the drops \(the others are empty"):
        load_table(write(tmp_path / "e.csv", "a,b\n,\n,\n,\n"), label="first", header=True)


def test_a_header_name_is_found_without_the_spaces_after_its_delimiter(tmp_path):
    # ("a, b, y": the names are " b" and " y", and label="y" was "no such column ... (columns: a,  b,  y)")
    rows = "".join(f"{i}, 0.{i}, {'yes' if i % 2 else 'no'}\n" for i in range(1, 21))
    ds = load_table(write(tmp_path / "t.csv", "a, b, y\n" + rows), label="y", drop=["b"])
    assert list(ds.class_names) == ["no", "yes"] and ds.x_train.shape[1] == 1
    with pytest.raises(ValueError, match=r"label='z': no such column"):
        load_table(write(tmp_path / "t.csv", "a, b, y\n" + rows), label="z")


def test_a_note_above_the_table_is_named_with_the_comment_option_that_skips_it(tmp_path):
    # ("t.csv:2: expected 1 fields, got 3" said nothing of the note line that set the width)
    path = write(tmp_path / "t.csv", "# exported by tool\na,b,y\n" + ROWS)
    with pytest.raises(ValueError, match=r"t.csv:2: expected 1 fields, got 3 \(line 1, '# exported by tool', sets the "
                                         r"width: a note above the table\? pass comment='#'\)$"):  # fmt: skip
        load_table(path, cache=False)
    assert list(load_table(path, comment="#", cache=False).class_names) == ["a", "b"]
    # (a header's empty first cell before a ';' delimiter is no note)
    rows = "".join(f"{i};0.{i};{'yes' if i % 2 else 'no'}\n" for i in range(12)) + "12;0.5;no;extra\n"
    with pytest.raises(ValueError, match=r"s.csv:14: expected 3 fields, got 4$"):
        load_table(write(tmp_path / "s.csv", ";a;y\n" + rows), cache=False)
