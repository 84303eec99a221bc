"""TSV/CSV text tables written by the tests: tokens, vocabulary, hashing, padding, bad rows."""

from __future__ import annotations

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
    ds = load(tmp_path)
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
    a, b = load(tmp_path, hash_buckets=7), load(tmp_path, hash_buckets=7, cache=False)
    assert a.vocab_size == 8 and torch.equal(a.x_train, b.x_train)
    nonpad = a.x_train[a.x_train != 0]
    assert nonpad.min() >= 1 and nonpad.max() <= 7
    # the same token gets the same id in both splits
    assert a.x_train[0, 0] == a.x_test[0, 0]


def test_max_length_truncates(tmp_path):
    ds = load(tmp_path, max_length=2)
    assert ds.x_train.shape == (3, 2) and ds.x_test.shape == (2, 2)


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


def test_unlabelled_test_file_is_explained(tmp_path):
    with pytest.raises(ValueError, match=r"test.tsv: no column 'label' in the header \(index, sentence\)"):
        load(tmp_path, test="index\tsentence\n0\tsome text\n")
