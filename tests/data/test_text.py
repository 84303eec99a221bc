"""TSV/CSV text tables written by the tests: tokens, vocabulary, hashing, padding, bad rows,
numeric tables refused, long fields, test fractions and a provided dev file."""

from __future__ import annotations

import warnings

import pytest
import torch

from lossbench.data import load_text_table, tokenize

from .writers import write

TRAIN = 'sentence\tlabel\nGood movie , good cast\t1\nbad plot\t0\nA "good" film .\t1\n\n'
TEST = "sentence\tlabel\ngood but unseen words\t1\nbad\t0\n"


def load(tmp_path, train=TRAIN, test=TEST, suffix=".tsv", **kw):
    return load_text_table(
        write(tmp_path / f"train{suffix}", train), write(tmp_path / f"test{suffix}", test), **kw
    )


def test_tokenize_lowercases_and_splits_punctuation():
    assert tokenize('A "good" film, isn\'t it?') == [
        "a",
        '"',
        "good",
        '"',
        "film",
        ",",
        "isn",
        "'",
        "t",
        "it",
        "?",
    ]


def test_glue_style_tsv_vocabulary_oov_and_padding(tmp_path):
    with pytest.warns(UserWarning, match="60% of the test tokens are unknown"):
        ds = load(tmp_path, layout="padded")
    vocab = ds.meta["vocab"]
    # pad, unk, then by decreasing training frequency, ties alphabetical
    assert vocab[:4] == ["<pad>", "<unk>", "good", '"']
    assert ds.vocab_size == len(vocab) and ds.feature_kind == "text" and ds.x_train.dtype == torch.int64
    ids = {t: i for i, t in enumerate(vocab)}
    assert ds.x_train[1].tolist()[:2] == [ids["bad"], ids["plot"]]
    assert set(ds.x_train[1, 2:].tolist()) == {0}  # padded with 0
    assert ds.x_test[0].tolist()[:4] == [ids["good"], 1, 1, 1]  # unseen test tokens -> OOV id 1
    assert ds.x_train.shape[1] == ds.x_test.shape[1] == 6  # longest row: A " good " film .
    assert ds.y_train.tolist() == [1, 0, 1] and ds.class_names == ["0", "1"]


def test_min_count_and_max_vocab(tmp_path):
    assert load(tmp_path, min_count=2).meta["vocab"] == ["<pad>", "<unk>", "good", '"']
    assert load(tmp_path, max_vocab=1).meta["vocab"] == ["<pad>", "<unk>", "good"]


def test_hashing_ids_are_stable_and_in_range(tmp_path):
    a, b = (load(tmp_path, hash_buckets=7, layout="padded", cache=c) for c in (True, False))
    assert a.vocab_size == 9 and torch.equal(a.x_train, b.x_train)
    nonpad = a.x_train[a.x_train != 0]
    assert nonpad.min() >= 2 and nonpad.max() <= 8  # (bucket 0 is id 2: the out-of-vocabulary id 1 is no bucket)
    assert a.meta["unknown_test_tokens"] == 0.0
    # the same token gets the same id in both splits
    assert a.x_train[0, 0] == a.x_test[0, 0]


def test_max_length_truncates(tmp_path):
    ds = load(tmp_path, max_length=2, layout="padded")
    assert ds.x_train.shape == (3, 2) and ds.x_test.shape == (2, 2)
    # the vocabulary holds the tokens the documents keep: one only past the cut is unknown, as the model never sees it
    kept = {t for row in ds.x_train.tolist() for t in row} - {0, 1}
    assert set(range(2, ds.vocab_size)) == kept
    bags = load(tmp_path, max_length=2)
    assert bags.x_train.lengths.tolist() == [2, 2, 2] and bags.x_test.lengths.tolist() == [2, 1]
    assert torch.equal(bags.x_train.padded(), ds.x_train)


def test_padding_to_one_outlier_is_warned_of_with_the_max_length_to_set(tmp_path):
    """One 5,000-token line made 50,000 rows of 39 tokens 2,048 wide, with only the cut's warning (found by a review)."""
    rows = "".join(f"{i % 2}\t{' '.join(['w'] * (3 + i % 5))}\n" for i in range(200))
    plain = write(tmp_path / "plain.tsv", rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no warning without an outlier)
        assert load_text_table(plain, text_column=1, label_column=0, header=False, layout="padded", cache=False).x_train.shape[1] == 7
    long = write(tmp_path / "long.tsv", rows + f"1\t{' '.join(['w'] * 400)}\n")
    with pytest.warns(UserWarning, match=r"padded to the longest, 400 tokens, where 99 % have at most 7: max_length=7 "):
        load_text_table(long, text_column=1, label_column=0, header=False, layout="padded", cache=False)


def test_csv_with_quotes_and_index_columns_without_header(tmp_path):
    train = '1,"good, really good"\n0,"not ""good"""\n'
    test = '0,"meh"\n'
    ds = load(tmp_path, train, test, suffix=".csv", header=False, text_column=1, label_column=0)
    vocab = ds.meta["vocab"]
    assert vocab[2] == "good" and '"' in vocab and "," in vocab
    assert ds.y_train.tolist() == [1, 0]


def test_label_names_fix_the_class_order_and_gzip_is_read(tmp_path):
    train = write(tmp_path / "train.tsv.gz", "text\tcls\nfoo\tneg\nbar\tpos\n", "gzip")
    test = write(tmp_path / "test.tsv", "text\tcls\nfoo\tpos\n")
    ds = load_text_table(train, test, text_column="text", label_column="cls", label_names=["pos", "neg"])
    assert ds.class_names == ["pos", "neg"] and ds.y_train.tolist() == [1, 0] and ds.y_test.tolist() == [0]


def test_wrong_column_count_names_file_and_line(tmp_path):
    with pytest.raises(ValueError, match=r"train.tsv:3: expected 2 fields, got 3"):
        load(tmp_path, "sentence\tlabel\nok\t1\nbad\t0\textra\n")


def test_unknown_test_label_names_file_and_line(tmp_path):
    with pytest.raises(ValueError, match=r"test.tsv:3: label '2' is not one of the classes \['0', '1'\]"):
        load(tmp_path, test="sentence\tlabel\nfine\t1\nodd\t2\n")


@pytest.mark.parametrize("part", ["test", "dev"])
def test_a_test_or_dev_label_training_never_sees_is_refused_with_label_names_too(tmp_path, part):
    """label_names may name a class no training row has; a test or dev row of it is refused all the same."""
    odd = write(tmp_path / f"{part}.tsv", "sentence\tlabel\nfine\t1\nodd\t2\n")
    kw = {"dev_path": odd, "test": "sentence\tlabel\nfine\t1\n"} if part == "dev" else {"test": odd.read_text()}
    with pytest.raises(ValueError, match=rf"{part}.tsv:3: labels \['2'\] do not occur in the training data"):
        load(tmp_path, label_names=["0", "1", "2"], cache=False, **kw)
    # a class without rows stays a class, with a warning (as the IDX and ARFF loaders give)
    with pytest.warns(UserWarning, match=r"class\(es\) \['2'\] of label_names have no training row") as seen:
        data = load_text_table(write(tmp_path / "all.tsv", TRAIN), test_fraction=0.34, label_names=["0", "1", "2"], cache=False)
    assert data.class_names == ["0", "1", "2"]
    assert [w.filename for w in seen if "label_names" in str(w.message)] == [__file__]  # (the loader's caller)


def test_unlabelled_test_file_is_explained(tmp_path):
    with pytest.raises(ValueError, match=r"test.tsv: no column 'label' in the header \(index, sentence\)"):
        load(tmp_path, test="index\tsentence\n0\tsome text\n")


def test_numeric_table_is_refused_with_a_pointer_to_the_table_loader(tmp_path):
    numbers = "sentence\tlabel\n1.5\t1\n-2\t0\n3e4\t1\n"
    with pytest.raises(
        ValueError, match=r"train.tsv: text column 'sentence' holds only numbers.*'table' loader"
    ):
        load(tmp_path, numbers)
    no_header = "0.1,2.5,1\n0.3,1.5,0\n"
    with pytest.raises(ValueError, match=r"text column 1 holds only numbers"):
        load(tmp_path, no_header, no_header, suffix=".csv", header=False, text_column=1, label_column=2)


def test_csv_fields_longer_than_csvs_default_limit_load(tmp_path):
    import csv

    before = csv.field_size_limit()
    long_text = "word " * 40_000  # 200,000 characters: over csv's default 131,072
    ds = load(tmp_path, f'text,label\n"{long_text}",1\nshort,0\n', "text,label\nword,1\n", suffix=".csv",
              text_column="text", max_length=None)  # fmt: skip
    assert ds.x_train.lengths.tolist() == [40_000, 1]
    assert csv.field_size_limit() == before  # the process-wide limit is restored


def test_test_fraction_splits_one_file_stratified_and_seeded(tmp_path):
    rows = "".join(f"word{i} common\t{i % 2}\n" for i in range(20))
    train = write(tmp_path / "all.tsv", "sentence\tlabel\n" + rows)
    a, b = (load_text_table(train, test_fraction=0.25, seed=s, cache=False) for s in (0, 1))
    assert len(a.y_test) == 5 and len(a.y_train) == 15 and a.y_test.bincount().tolist() in ([2, 3], [3, 2])
    assert a.meta["vocab"] != b.meta["vocab"]  # another seed, another split
    # the vocabulary comes from the training part only: held-out words are unknown
    assert a.vocab_size == 2 + 15 + 1
    with pytest.raises(ValueError, match="test_fraction=0.3 and test_path=.* exclude each other"):
        load_text_table(train, train, test_fraction=0.3)


def test_dev_file_is_the_provided_validation_split(tmp_path):
    from lossbench.data.splits import VALIDATION_MASK, provided_validation, select_train

    dev = write(tmp_path / "dev.tsv", "sentence\tlabel\ngood dev\t1\nbad dev\t0\n")
    ds = load(tmp_path, dev_path=dev)
    assert len(ds.y_train) == 5 and ds.meta[VALIDATION_MASK].tolist() == [False] * 3 + [True] * 2
    fit_idx, val_idx = provided_validation(ds)
    assert fit_idx.tolist() == [0, 1, 2] and val_idx.tolist() == [3, 4]
    assert ds.y_train[val_idx].tolist() == [1, 0]
    kept = select_train(ds, torch.tensor([0, 4]))  # subsamples keep the mask in step
    assert [t.tolist() for t in provided_validation(kept)] == [[0], [1]]
    with pytest.raises(ValueError, match=r"dev.tsv:2: label 'x' is not one of the classes"):
        load(tmp_path, dev_path=write(tmp_path / "dev.tsv", "sentence\tlabel\nodd\tx\n"))


def test_the_data_digest_reads_the_provided_validation_split():
    # rows moved between the training and the dev file leave x_train as it was (dev rows sit in it)
    from dataclasses import replace

    from lossbench.data import Dataset
    from lossbench.data.splits import VALIDATION_MASK

    x, y = torch.arange(8.0).reshape(4, 2), torch.tensor([0, 1, 0, 1])
    plain = Dataset("d", "multiclass", x, y, x, y, ["a", "b"], "tabular", "test")
    two = replace(plain, meta={VALIDATION_MASK: torch.tensor([False, False, True, True])})
    three = replace(plain, meta={VALIDATION_MASK: torch.tensor([False, True, True, True])})
    assert len({plain.digest(), two.digest(), three.digest()}) == 3
    assert replace(plain, meta={"feature_names": ["u", "v"]}).digest() == plain.digest()  # other metadata: no data


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layout": "ragged"}, r"layout must be one of \('bags', 'padded'\), got 'ragged'"),
        ({"tokenizer": "bpe"}, r"tokenizer must be one of \('word', 'char'\) or the path .* got 'bpe'"),
        ({"max_length": 0}, r"max_length must be an int >= 1, got 0"),
        ({"test_fraction": 1.5, "test": None}, r"test_fraction must lie in \(0, 1\), got 1.5"),
    ],
)
def test_bad_options_are_named(tmp_path, kwargs, message):
    train = write(tmp_path / "train.tsv", TRAIN)
    test = kwargs.pop("test", write(tmp_path / "test.tsv", TEST))
    with pytest.raises(ValueError, match=message):
        load_text_table(train, test, **kwargs)


def test_a_column_index_out_of_range_is_refused_by_name_with_a_header_too(tmp_path):
    path = write(tmp_path / "t.tsv", "sentence\tlabel\nok fine\tpos\nbad\tneg\n")
    with pytest.raises(ValueError, match=r"label_column=5 is out of range for .*t.tsv \(2 columns\)"):
        load_text_table(path, text_column=0, label_column=5)


def test_a_relative_path_names_the_dataset_after_its_folder(tmp_path, monkeypatch):
    (tmp_path / "reviews").mkdir()
    write(tmp_path / "reviews" / "train.tsv", TRAIN)
    write(tmp_path / "reviews" / "test.tsv", TEST)
    monkeypatch.chdir(tmp_path / "reviews")
    assert load_text_table("train.tsv", "test.tsv").name == "reviews"  # was '' (Path("train.tsv").parent)
    monkeypatch.chdir(tmp_path)
    assert load_text_table("reviews/train.tsv", "reviews/test.tsv").name == "reviews"


def test_a_stray_quote_merging_rows_is_refused_naming_its_line(tmp_path):
    # csv read leniently: three rows became one text 'Great movie,1\nBad one,0\nAwful" indeed'
    merged = 'text,label\nfine,1\n"Great movie,1\nBad one,0\n"Awful" indeed,0\nok,1\n'
    with pytest.raises(ValueError, match=r"train.csv:3: the '\"' that opens a quoted field here swallows the line "
                                         r"ends up to line 5 \(read strictly, ',' expected after '\"'\)"):  # fmt: skip
        load(tmp_path, merged, "text,label\nok,1\n", suffix=".csv", text_column="text")
    with pytest.raises(ValueError, match=r"test.csv:3: the '\"' that opens a quoted field here swallows the line "
                                         r"ends up to line 3 \(read strictly, unexpected end of data\)"):  # fmt: skip
        load(tmp_path, "text,label\nfine,1\nbad,0\n", 'text,label\nok,1\n"odd,0\n', suffix=".csv", text_column="text")
    # a quoted cell of text over lines, commas and blank lines included, is a cell, its row named by its first line
    cell = 'text,label\nfine,1\n"Dear all,\n\nit was bad, sadly",0\nok,1\n'
    ds = load(tmp_path, cell, "text,label\nok,1\n", suffix=".csv", text_column="text", cache=False)
    assert ds.y_train.tolist() == [1, 0, 1] and "sadly" in ds.meta["vocab"]
    with pytest.raises(ValueError, match=r"test.csv:2: label '2' is not one of the classes"):
        load(tmp_path, cell, 'text,label\n"late\nline",2\n', suffix=".csv", text_column="text", cache=False)


def test_a_multi_line_cell_in_a_row_of_the_wrong_width_is_a_field_count_error(tmp_path):
    # strictly valid CSV: was "rows merged by a stray quote (the row has 3 fields, not 2)"
    wide = 'text,label\nfine,1\n"two\nlines",0,extra\nok,1\n'
    with pytest.raises(ValueError, match=r"train.csv:3: expected 2 fields, got 3 \(the row runs to line 4: a quoted "
                                         r"field holds line ends\)$"):  # fmt: skip
        load(tmp_path, wide, "text,label\nok,1\n", suffix=".csv", text_column="text")
    with pytest.raises(ValueError, match=r"train.csv:3: expected 2 fields, got 1 \("):
        load(tmp_path, 'text,label\nfine,1\n"two\nlines"\nok,1\n', "text,label\nok,1\n", suffix=".csv", text_column="text")


def test_a_headerless_file_read_with_a_header_is_refused(tmp_path):
    # header=True (the default) ate the first row of a file without one
    rows = "good film\tpos\nbad film\tneg\nfine film\tpos\n"
    with pytest.raises(ValueError, match=r"train.tsv:1: the header's label cell 'pos' is also the label of line 3: "
                                         r"a first row of data read as the header\? pass header=False"):  # fmt: skip
        load(tmp_path, rows, TEST, text_column=0, label_column=1)
    assert load(tmp_path, rows, "good\tpos\n", text_column=0, label_column=1, header=False).y_train.tolist() == [1, 0, 1]


def test_label_names_that_repeat_a_name_are_refused(tmp_path):
    # ['1', '0', '1'] made three classes, the last never a target
    with pytest.raises(ValueError, match=r"label_names=\['1', '0', '1'\] names '1' more than once; name each class once"):
        load(tmp_path, label_names=["1", "0", "1"])


@pytest.mark.parametrize("cache", [False, True])
def test_labels_that_differ_only_by_case_are_warned_of_as_the_table_loader_does(tmp_path, cache, monkeypatch):
    # ("yes" and "Yes " loaded as two classes, silently)
    monkeypatch.setenv("LOSSBENCH_CACHE_DIR", str(tmp_path / "cache"))
    rows = "sentence,label\n" + "".join(f"doc {'ab'[i % 2]},{'yes' if i % 3 else 'Yes '}\n" for i in range(12))
    path = write(tmp_path / "t.csv", rows)
    for _ in range(2 if cache else 1):  # (the second load from the parse cache warns too)
        with pytest.warns(UserWarning, match=r"labels 'Yes', 'yes' differ only by case and are 2 classes"):
            load_text_table(path, test_fraction=0.25, cache=cache)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (the classes the user names are as named)
        load_text_table(path, test_fraction=0.25, label_names=["yes", "Yes"], cache=False)
