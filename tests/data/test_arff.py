"""ARFF and MEKA ARFF files written by the tests: encoding, splits, sparse rows, bad files."""

from __future__ import annotations

import pytest
import torch

from lossbench.data import load_arff, load_meka_arff, parse_arff

from .writers import write

ARFF = """% a comment
@RELATION 'tiny set'

@attribute 'size cm' numeric
@attribute colour {red, 'dark blue', green}
@attribute weight REAL
@attribute class {yes,no}

@data
1.0, red, 10, yes
2.0, 'dark blue', ?, no
% comment inside data
3.0, ?, 30, yes
4.0, green, 40, no
5.0, red, 50, yes
6.0, green, 60, no
"""


def test_parse_keeps_codes_and_missing_values(tmp_path):
    t = parse_arff(write(tmp_path / "t.arff", ARFF))
    assert t.relation == "tiny set"
    assert [c.name for c in t.columns] == ["size cm", "colour", "weight", "class"]
    assert t.columns[1].categories == ("red", "dark blue", "green")
    assert t.values.shape == (6, 4)
    assert t.values[1, 1] == 1 and torch.isnan(t.values[1, 2]) and torch.isnan(t.values[2, 1])
    assert t.line_numbers.tolist() == [10, 11, 13, 14, 15, 16]


def test_a_nominal_type_may_follow_its_name_without_a_space(tmp_path):
    # (Weka reads "class{yes,no}"; it was refused as "attribute 'class{yes,no}' has no type")
    glued = ARFF.replace("@attribute class {yes,no}", "@attribute class{yes,no}").replace(
        "@attribute colour {red", "@attribute colour{red")
    t = parse_arff(write(tmp_path / "t.arff", glued))
    assert [c.name for c in t.columns] == ["size cm", "colour", "weight", "class"]
    assert t.columns[1].categories == ("red", "dark blue", "green") and t.columns[3].categories == ("yes", "no")


def test_features_one_hot_and_standardised_on_train(tmp_path):
    path = write(tmp_path / "t.arff", ARFF)
    test_path = write(tmp_path / "test.arff", ARFF.split("@data")[0] + "@data\n7.0, green, ?, no\n")
    ds = load_arff(path, test_path=test_path)
    assert ds.meta["feature_names"] == ["size cm", "colour=red", "colour=dark blue", "colour=green", "weight"]
    assert ds.class_names == ["yes", "no"] and ds.y_train.tolist() == [0, 1, 0, 1, 0, 1]
    size = torch.tensor([1.0, 2, 3, 4, 5, 6])
    expected = (size - size.mean()) / size.std(unbiased=False)
    assert torch.allclose(ds.x_train[:, 0], expected)
    assert ds.x_train[2, 1:4].tolist() == [0, 0, 0]  # missing nominal -> all zeros
    assert ds.x_train[1, 4] == 0  # missing numeric -> training mean -> 0
    assert torch.isclose(ds.x_test[0, 0], (7 - size.mean()) / size.std(unbiased=False))
    assert ds.x_test[0, 1:4].tolist() == [0, 0, 1] and ds.x_test[0, 4] == 0


def test_class_attribute_by_name_or_index(tmp_path):
    path = write(tmp_path / "t.arff", ARFF.replace("3.0, ?, 30", "3.0, green, 30"))
    by_name = load_arff(path, class_attribute="colour", test_fraction=0.5)
    by_index = load_arff(path, class_attribute=1, test_fraction=0.5)
    assert by_name.class_names == ["red", "dark blue", "green"]
    assert torch.equal(by_name.x_train, by_index.x_train)
    with pytest.raises(ValueError, match=r"class attribute 'weight' is numeric"):
        load_arff(path, class_attribute="weight")
    with pytest.raises(ValueError, match=r"class_attribute='nope' is not an attribute"):
        load_arff(path, class_attribute="nope")


def test_missing_class_value_names_the_line(tmp_path):
    # "colour" is missing on line 13
    with pytest.raises(ValueError, match=r"t.arff:13: missing class value"):
        load_arff(write(tmp_path / "t.arff", ARFF), class_attribute="colour")


def test_seeded_stratified_split(tmp_path):
    rows = "".join(
        f"{i}, {'red' if i % 4 else 'green'}, {i}, {'yes' if i % 4 else 'no'}\n" for i in range(40)
    )
    path = write(tmp_path / "t.arff", ARFF.split("@data")[0] + "@data\n" + rows)
    a, b = load_arff(path, seed=3), load_arff(path, seed=3)
    assert torch.equal(a.x_train, b.x_train) and len(a.y_test) == 8
    assert a.y_test.bincount().tolist() == [6, 2]  # 30 yes / 10 no -> 20 % of each
    assert not torch.equal(load_arff(path, seed=4).x_test, a.x_test)


def test_sparse_rows(tmp_path):
    header = "@relation s\n@attribute a numeric\n@attribute b {x,y}\n@attribute c numeric\n"
    header += "@attribute class {p,q}\n@data\n"
    t = parse_arff(write(tmp_path / "s.arff", header + "{0 2.5, 3 q}\n{1 y}\n{}\n"))
    assert t.values.tolist() == [[2.5, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]]


def test_a_quoted_question_mark_is_a_category_and_a_sparse_value_may_be_quoted(tmp_path):
    # only a bare ? is missing (Weka); a quoted value in a sparse row may hold a comma
    header = "@relation q\n@attribute x numeric\n@attribute c {'?',a,'x,y'}\n@attribute class {p,n}\n@data\n"
    t = parse_arff(write(tmp_path / "q.arff", header + "1,'?',p\n2,?,n\n{0 3, 1 'x,y', 2 n}\n{0 4, 1 '?'}\n"))
    assert t.values[:, 1].tolist()[:1] == [0.0] and torch.isnan(t.values[1, 1])
    assert t.values[2].tolist() == [3.0, 2.0, 1.0] and t.values[3].tolist() == [4.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "row, message",
    [
        ("1.0, purple, 10, yes", r"t.arff:10: unknown nominal value 'purple' for attribute 'colour'"),
        ("1.0, red, 10", r"t.arff:10: expected 4 values, got 3"),
        ("1.0, red, ten, yes", r"t.arff:10: attribute 'weight': 'ten' is not a number"),
        ("1.0, red, 10, yes, {2}", r"t.arff:10: expected 4 values, got 5 \(instance weights"),
        # (a sparse row's weight read as an entry: "sparse entry '{2' does not start with an attribute index")
        ("{0 1.0, 3 yes}, {2}", r"t.arff:10: sparse row with an instance weight \(\{2\}\): instance weights are not supported"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, row, message):
    with pytest.raises(ValueError, match=message):
        parse_arff(write(tmp_path / "t.arff", ARFF.split("@data")[0] + "@data\n" + row + "\n"))


def test_unsupported_attribute_type(tmp_path):
    with pytest.raises(ValueError, match=r"t.arff:2: attribute 'txt' has type 'string'"):
        parse_arff(write(tmp_path / "t.arff", "@relation r\n@attribute txt string\n@data\n"))


MEKA = """@relation 'Toy: -C {c} -R'
@attribute {a} {{0,1}}
@attribute {b} {{0,1}}
@attribute f1 numeric
@attribute f2 numeric
@data
"""


def meka_rows(n=20, leading=True):
    rows = []
    for i in range(n):
        labels = f"{i % 2},{int(i % 3 == 0)}"
        feats = f"{i}.0,{(i * 7) % 5}.0"
        rows.append(f"{labels},{feats}" if leading else f"{feats},{labels}")
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("compress, suffix", [(None, ".arff"), ("bzip2", ".arff.bz2"), ("gzip", ".arff.gz")])
def test_meka_leading_labels_and_compression(tmp_path, compress, suffix):
    path = write(tmp_path / f"toy{suffix}", MEKA.format(c=2, a="L1", b="L2") + meka_rows(), compress)
    ds = load_meka_arff(path, test_fraction=0.25)
    assert ds.task == "multilabel" and ds.class_names == ["L1", "L2"]
    assert ds.y_train.dtype == torch.float32 and ds.y_train.shape == (15, 2) and ds.x_train.shape == (15, 2)
    assert (ds.y_train.sum(0) + ds.y_test.sum(0)).tolist() == [10, 7]


def test_meka_trailing_labels(tmp_path):
    text = MEKA.format(c=-2, a="f1", b="f2").replace("@attribute f1 numeric\n@attribute f2 numeric\n", "")
    text = text.replace(
        "@attribute f1 {0,1}\n@attribute f2 {0,1}\n",
        "@attribute f1 numeric\n@attribute f2 numeric\n@attribute L1 {0,1}\n@attribute L2 {0,1}\n",
    )
    ds = load_meka_arff(write(tmp_path / "t.arff", text + meka_rows(leading=False)))
    assert ds.class_names == ["L1", "L2"] and (ds.y_train.sum(0) + ds.y_test.sum(0)).tolist() == [10, 7]


def test_meka_label_count_problems(tmp_path):
    rows = meka_rows()
    with pytest.raises(ValueError, match=r"label count 9 does not fit 4 attributes"):
        load_meka_arff(write(tmp_path / "a.arff", MEKA.format(c=9, a="L1", b="L2") + rows))
    with pytest.raises(ValueError, match=r"has no MEKA '-C <labels>' option"):
        load_meka_arff(
            write(tmp_path / "b.arff", MEKA.format(c=2, a="L1", b="L2").replace("-C 2", "") + rows)
        )
    # -C 3 makes the numeric f1 (0, 1, 2, ... from line 7 on) a label
    with pytest.raises(ValueError, match=r"c.arff:9: label attribute 'f1' must be 0 or 1"):
        load_meka_arff(write(tmp_path / "c.arff", MEKA.format(c=3, a="L1", b="L2") + rows))
    assert (
        load_meka_arff(
            write(tmp_path / "d.arff", MEKA.format(c=9, a="L1", b="L2") + rows), num_labels=1
        ).num_classes
        == 1
    )


def test_trailing_comments_are_stripped_outside_quotes(tmp_path):
    # Weka ends a line at a % outside quotes, a data line's too; a quoted % is a value's.
    text = ARFF.replace("1.0, red, 10, yes", "1.0, red, 10, yes  % the first row").replace(
        "@attribute weight REAL", "@attribute weight REAL % grams"
    )
    text = text.replace("{red, 'dark blue', green}", "{red, 'dark blue', green, '50% grey'}")
    text = text.replace("4.0, green, 40, no", "4.0, '50% grey', 40, no %, '50% grey'")
    t = parse_arff(write(tmp_path / "t.arff", text))
    plain = parse_arff(write(tmp_path / "plain.arff", ARFF))
    torch.testing.assert_close(
        t.values[[0, 2, 4, 5]], plain.values[[0, 2, 4, 5]], equal_nan=True, rtol=0, atol=0
    )
    assert t.values[3].tolist() == [4.0, 3.0, 40.0, 1.0]  # '50% grey' is the fourth colour


def test_a_file_with_a_single_class_is_refused(tmp_path):
    one = write(tmp_path / "one.arff", "@relation r\n@attribute a numeric\n@attribute c {p,q}\n@data\n1,p\n2,p\n3,p\n")
    with pytest.raises(ValueError, match=r"one.arff: class attribute 'c' holds a single class \('p'\); a classification "
                                         r"table needs at least 2$"):  # fmt: skip
        load_arff(one)
    # with a test file: the training file's classes count, and the test file may show no other
    two = write(tmp_path / "two.arff", "@relation r\n@attribute a numeric\n@attribute c {p,q,s}\n@data\n1,p\n2,q\n")
    test = write(tmp_path / "test.arff", "@relation r\n@attribute a numeric\n@attribute c {p,q,s}\n@data\n1,s\n")
    with pytest.raises(ValueError, match=r"test_path='.*test.arff': labels \['s'\] do not occur in the training data"):
        load_arff(two, test_path=test)


def test_a_value_beyond_float32s_range_is_refused(tmp_path):
    path = write(tmp_path / "t.arff", ARFF.replace("4.0, green, 40", "4.0, green, 1e300"))
    with pytest.raises(ValueError, match=r"t.arff:14: attribute 'weight': 1e\+300 is beyond float32's range"):
        load_arff(path)


def test_a_comment_holding_a_latin1_ellipsis_stays_one_line(tmp_path):
    # byte 0x85 read as Latin-1 is U+0085, at which str.splitlines would split the comment in two
    data = ARFF.replace("% comment inside data", "% comment\x85 inside data").encode("latin-1")
    assert len(parse_arff(write(tmp_path / "t.arff", data)).values) == 6


def test_split_arguments_are_checked_before_the_file_is_read(tmp_path):
    absent, test = tmp_path / "absent.arff", tmp_path / "absent-test.arff"
    for load in (load_arff, load_meka_arff):
        with pytest.raises(ValueError, match=r"test_fraction must lie in \(0, 1\), got 2"):
            load(absent, test_fraction=2)
        with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*64\) for the stratified split, got -1"):
            load(absent, seed=-1)
        with pytest.raises(ValueError, match=r"test_fraction=0.3 and test_path='.*absent-test.arff' exclude each other"):
            load(absent, test_path=test, test_fraction=0.3)  # (was ignored: the test file made the split)


def test_declared_classes_no_row_holds_are_kept_with_a_warning_or_dropped_on_request(tmp_path):
    """`class {yes,no,maybe}` without a `maybe` row: kept by default (stored studies' class sets), named in a
    warning that points at drop_empty_classes, which keeps the classes the rows hold (count-based losses need it)."""
    path = write(tmp_path / "t.arff", ARFF.replace("class {yes,no}", "class {maybe,yes,no}"))
    test_path = write(tmp_path / "test.arff", ARFF.replace("class {yes,no}", "class {maybe,yes,no}"))
    with pytest.warns(UserWarning, match=r"declares class\(es\) \['maybe'\] that no row holds.*drop_empty_classes=True"):
        kept = load_arff(path, test_path=test_path)
    assert kept.class_names == ["maybe", "yes", "no"] and kept.y_train.tolist() == [1, 2, 1, 2, 1, 2]
    dropped = load_arff(path, test_path=test_path, drop_empty_classes=True)
    assert dropped.class_names == ["yes", "no"]
    assert dropped.y_train.tolist() == dropped.y_test.tolist() == [0, 1, 0, 1, 0, 1]
    assert torch.bincount(dropped.y_train, minlength=dropped.num_classes).tolist() == [3, 3]  # (no class of 0 rows)
    split = load_arff(path, test_fraction=0.5, drop_empty_classes=True)
    assert split.class_names == ["yes", "no"] and sorted(set(split.y_test.tolist())) == [0, 1]


def test_a_repeated_attribute_name_is_refused_naming_the_line(tmp_path):
    # accepted (Weka refuses it): class_attribute='a' then meant the first of the two
    text = "@relation r\n@attribute a numeric\n@attribute b numeric\n@attribute a {x,y}\n@data\n1,2,x\n"
    with pytest.raises(ValueError, match=r"r.arff:4: attribute 'a' is declared twice \(first on line 2\); rename one"):
        parse_arff(write(tmp_path / "r.arff", text))


@pytest.mark.parametrize("row", ["{0 1, 0 2, 3 q}", "{3 q, 0 1}"])
def test_sparse_indices_repeated_or_out_of_order_are_refused(tmp_path, row):
    # accepted (Weka refuses both): the last value given for an index silently won
    header = "@relation s\n@attribute a numeric\n@attribute b {x,y}\n@attribute c numeric\n"
    header += "@attribute class {p,q}\n@data\n"
    with pytest.raises(ValueError, match=r"s.arff:7: sparse entry '(0 2|0 1)' comes after index (0|3); a sparse row "
                                         r"lists each attribute index once, in increasing order"):  # fmt: skip
        parse_arff(write(tmp_path / "s.arff", header + row + "\n"))
