"""load_table on what a review of the loaders found mishandled: pandas' to_csv of an array (header 0, 1, 2),
a stray double quote merging rows, a quote inside a field before comment lines, warnings lost to the parse
cache, integer labels beyond 2**53, a placeholder in a headerless file's first row."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from lossbench.data import load_table

from .writers import write


def _array_csv(tmp_path, index: bool, labels: np.ndarray, name: str = "a.csv"):
    x = np.random.default_rng(0).normal(size=(len(labels), 3)).round(3)
    path = tmp_path / name
    pd.DataFrame(np.column_stack([x, labels])).to_csv(path, index=index)
    return path


@pytest.mark.parametrize("index", [False, True])
def test_pandas_to_csv_of_an_array_has_its_header_found(tmp_path, index):
    # header "0,1,2,3" (",0,1,2,3" with the index): read as a data row, a phantom class "3"; the index a feature
    path = _array_csv(tmp_path, index, np.arange(20) % 3)
    assert path.read_text().startswith(",0,1,2,3\n" if index else "0,1,2,3\n")
    data = load_table(path, standardize=False)
    assert data.class_names == ["0", "1", "2"]  # (labels 0.0, 1.0, 2.0: the array is float)
    assert data.meta["feature_names"] == ["0", "1", "2"]  # (the index column dropped)
    assert len(data.y_train) + len(data.y_test) == 20
    # two columns "0,1" name columns over numbers with decimals; over integers they may be a data row
    two = write(tmp_path / "two.csv", "0,1\n" + "".join(f"{i}.5,{i % 2}\n" for i in range(8)))
    assert load_table(two, standardize=False).meta["feature_names"] == ["0"]
    ints = write(tmp_path / "ints.csv", "0,1\n" + "".join(f"{i},{i % 2}\n" for i in range(8)))
    assert len(load_table(ints, standardize=False).meta["train_rows"]) + 2 == 9  # (9 rows, 2 held out)


def test_a_stray_quote_merging_rows_is_refused_naming_its_line(tmp_path):
    rows = 'text,n,label\ngood,1,1\n"Great movie,2,1\nBad one,3,0\n"Awful" indeed,4,0\nok,5,1\n'
    with pytest.raises(ValueError, match=r"q.csv:3: the '\"' that opens a quoted field here swallows the line ends "
                                         r"up to line 5 \(read strictly, the quote closed on line 5 is followed by "
                                         r"'A'\): rows merged by a stray quote"):  # fmt: skip
        load_table(write(tmp_path / "q.csv", rows), nominal=["text"])
    with pytest.raises(ValueError, match=r"e.csv:4: the '\"' that opens a quoted field here is never closed"):
        load_table(write(tmp_path / "e.csv", "a,b,label\n1,2,x\n3,4,y\n5,\"6 x\n7 8 y\n"))
    # a quoted cell spanning lines of text alone is a cell, its row named by its first line
    cell = write(tmp_path / "c.csv", 'a,txt,label\n1,x,p\n2,"two\nlines",q\n3,x,p\n4,y,q\n')
    data = load_table(cell, nominal=["txt"], standardize=False, test_fraction=0.5)
    assert "txt-two\nlines" in data.meta["feature_names"]
    with pytest.raises(ValueError, match=r"c.csv:3: column 'a' holds numbers and 'oops'"):
        load_table(write(tmp_path / "c.csv", cell.read_text().replace("2,", "oops,", 1)), header=True, nominal=["txt"])


def test_a_quote_inside_a_field_opens_nothing_before_comment_lines(tmp_path):
    # 12" screen: the filter's quote state flipped, so the comment lines after it were read as rows
    text = 'colour,desc,n,label\nred,12" screen,1,x\n#note,blah,2,y\nblue,ok,3,y\nred,big,4,x\nblue,ok,5,y\nred,big,6,x\n'
    data = load_table(write(tmp_path / "c.csv", text), comment="#", standardize=False)
    assert len(data.y_train) + len(data.y_test) == 5
    assert not any("#note" in n or "blah" in n for n in data.meta["feature_names"])


def test_warnings_of_the_parse_are_given_on_a_cached_load_too(tmp_path, fresh_cache):
    train = write(tmp_path / "train.csv", "n,colour,label\n1,red,None\n2,blue,y\n3,red,None\n4,blue,y\n")
    test = write(tmp_path / "test.csv", "n,colour,label\n5,green,None\n6,red,y\n")
    for _ in range(2):  # parsed, then from the cache
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load_table(train, test_path=test)
        said = " | ".join(str(w.message) for w in caught)
        assert "train.csv:2: the label 'None' (3 row(s)) is read as a class" in said
        assert "test.csv:2: column 'colour' holds a value no training row has" in said
    assert any(fresh_cache.iterdir())


def test_integer_labels_beyond_2_53_stay_apart(tmp_path):
    big = 2**53
    rows = "".join(f"{i},{big + i % 2}\n" for i in range(8)) + "8,1\n9,1\n"
    data = load_table(write(tmp_path / "b.csv", "a,label\n" + rows), standardize=False)
    assert data.class_names == ["1", str(big), str(big + 1)]
    # read as floats (a row without a label makes the column float): refused, not merged
    with pytest.raises(ValueError, match=r"f.csv:2: label column 'label' holds 9007199254740992.0 read as a "
                                         r"floating-point number, which cannot tell integers from 2\*\*53 on apart"):  # fmt: skip
        load_table(write(tmp_path / "f.csv", "a,label\n" + rows + "10,\n"), missing=[""])


def test_a_placeholder_in_a_headerless_first_row_makes_no_header(tmp_path):
    # ".,2,z": "." over numbers was a column name, and the row's unique label "z" gone
    rows = "1,4,y\n3,5,x\n4,6,y\n5,7,x\n"
    with pytest.raises(ValueError, match=r"p.csv:1: column 0 holds numbers and '.', which is not among"):
        load_table(write(tmp_path / "p.csv", ".,2,z\n" + rows))
    data = load_table(tmp_path / "p.csv", missing=["?", "", "."], standardize=False, test_fraction=0.4)
    assert data.class_names == ["x", "y", "z"]
    # a letter over numbers names a column, but a header "a,2,z" with a label-like "z" is warned of
    with pytest.warns(UserWarning, match=r"l.csv: the first row is read as a header, but its label column's name "
                                         r"'z' is a token like the labels below it \(\['x', 'y'\]\)"):  # fmt: skip
        load_table(write(tmp_path / "l.csv", "a,2,z\n" + rows))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a header of names: nothing to warn of
        load_table(write(tmp_path / "h.csv", "a,b,z\n" + rows), standardize=False)


def _rows(n: int) -> str:
    return "".join(f"{i}.5,plain {i % 2},{'ab'[i % 2]}\n" for i in range(n))


def test_a_multi_line_quoted_cell_holding_the_delimiter_loads(tmp_path):
    # valid RFC 4180, refused by the line-local "quoted text holds the delimiter" test of the rework
    text = 'x,note,label\n1.5,"Hello, world\nsecond line",a\n2.5,plain,b\n' + _rows(6)
    data = load_table(write(tmp_path / "m.csv", text), standardize=False, test_fraction=0.25)
    assert "note-Hello, world\nsecond line" in data.meta["feature_names"]
    assert len(data.y_train) + len(data.y_test) == 8
    # over runs of whitespace too, and in R's write.table (a header of one field fewer: row names)
    ws = write(tmp_path / "w.txt", 'x note label\n1.5 "Hello world\nagain" a\n2.5 plain b\n3.5 plain a\n4.5 x b\n')
    assert "note-Hello world\nagain" in load_table(ws, sep="whitespace", test_fraction=0.5).meta["feature_names"]
    r = write(tmp_path / "r.csv", 'x,note,label\nr1,1.5,"Hello, world\nagain",a\nr2,2.5,plain,b\nr3,3.5,x,a\nr4,4.5,y,b\n')
    assert load_table(r, header=True, test_fraction=0.5).meta["feature_names"][0] == "x"


def test_a_row_over_lines_of_the_wrong_width_is_a_field_count_error_naming_its_line(tmp_path):
    more = 'x,note,label\n' + _rows(3) + '1.5,"Hello, world\nsecond line",a,zz\n' + _rows(3)
    with pytest.raises(ValueError, match=r"m.csv:5: expected 3 fields, got 4 \(the row runs to line 6: a quoted field "
                                         r"holds line ends\)"):  # fmt: skip
        load_table(write(tmp_path / "m.csv", more))
    # (one field fewer on one line is padded, as pandas does; over lines it is refused: rows may be merged there)
    fewer = 'x,note,label\n' + _rows(3) + '1.5,"Hello, world\nsecond line"\n' + _rows(3)
    with pytest.raises(ValueError, match=r"f.csv:5: expected 3 fields, got 2 \(the row runs to line 6"):
        load_table(write(tmp_path / "f.csv", fewer))
    # pandas counts rows, not lines: a row below one over lines is named by its own line (was line 4)
    wide = 'x,note,label\n1.5,"two\nlines",a\n2.5,plain,b,c\n' + _rows(6)
    with pytest.raises(ValueError, match=r"w.csv:4: expected 3 fields, got 4$"):
        load_table(write(tmp_path / "w.csv", wide))


def test_quotes_are_no_rule_where_pandas_ignores_them(tmp_path):
    # a regular-expression sep: pandas' python engine splits lines, quotes and all; the rework refused '"quoted'
    text = 'a::b::label\n1::"quoted::y\n2::plain::z\n3::plain::y\n4::"x::z\n'
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*python.* engine")  # (pandas' note on a regex sep)
        data = load_table(write(tmp_path / "r.txt", text), sep="::", standardize=False, test_fraction=0.5)
    assert 'b-"quoted' in data.meta["feature_names"]


def _integers(rows: int) -> str:
    return "".join(f"{i % 5},{i * 3 % 7},{i % 2 + 2},{i % 4}\n" for i in range(1, rows + 1))


def test_a_header_guessed_from_its_integers_alone_is_warned_of_where_its_label_is_a_label(tmp_path):
    # a headerless file of integers whose first row is 0,1,2,3: read as pandas' to_csv header, a row lost unsaid
    path = write(tmp_path / "i.csv", "0,1,2,3\n" + _integers(11))
    with pytest.warns(UserWarning, match=r"i.csv: the first row \(0,1,2,3\) is read as the header, as pandas' to_csv "
                                         r"writes one for an array, but its label column's name '3' is also a label "
                                         r"below \(.*i.csv:4\): if that row is data, pass header=False"):  # fmt: skip
        data = load_table(path, standardize=False)
    assert len(data.y_train) + len(data.y_test) == 11
    told = load_table(path, header=False, standardize=False)
    assert len(told.y_train) + len(told.y_test) == 12
    # labels written as floats compare as numbers; a label column of text too
    floats = write(tmp_path / "f.csv", "0,1,2,3\n" + "".join(f"{i}.5,{i}.25,{i}.0,{i % 4}.0\n" for i in range(12)))
    with pytest.warns(UserWarning, match=r"f.csv: the first row \(0,1,2,3\) is read as the header"):
        load_table(floats, standardize=False)
    with pytest.warns(UserWarning, match=r"t.csv: the first row \(0,1,2,3\) is read as the header"):
        load_table(write(tmp_path / "t.csv", "0,1,2,3\n" + _integers(11).replace(",0\n", ",x\n")), standardize=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no label 3: nothing to warn of
        load_table(write(tmp_path / "n.csv", "0,1,2,3\n" + _integers(11).replace(",3\n", ",1\n")), standardize=False)


def test_a_repeated_header_of_numbers_is_told_from_a_label_equal_to_its_name(tmp_path):
    # a label "3" among text labels under a column "3" was refused as a repeated header line, a label 3 among
    # numbers not (text compared with a number); now a row repeating every number of the header is the header
    text = "0,1,2,3\n" + _integers(11).replace(",0\n", ",x\n")
    data = load_table(write(tmp_path / "t.csv", text), header=True, standardize=False)
    assert data.class_names == ["1", "2", "3", "x"]
    twice = write(tmp_path / "c.csv", "0,1,2,3\n" + _integers(11) + "0,1,2,3\n" + _integers(5))
    with pytest.raises(ValueError, match=r"c.csv:13: the label 3 is the label column's name and the row's other "
                                         r"cells repeat the header's: a header line read as data; remove it$"):  # fmt: skip
        load_table(twice, header=True)
    with pytest.raises(ValueError, match=r"c.csv:13: .* remove it \(or pass header=False if the first row is data too\)"):
        load_table(twice)
