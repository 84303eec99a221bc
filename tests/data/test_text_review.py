"""Text and image loaders on what a review of them found: a tokenizer file's padding and truncation, a fastText
label after the text, TREC's tab, documents and images in a class's sub-folders, one column as text and label, a
repeated header name, a seed a test file left unchecked, documents cut at max_length without a word."""

from __future__ import annotations

import warnings

import pytest
import torch

from lossbench.data import (
    load_fasttext_file,
    load_image_folder,
    load_text_folder,
    load_text_table,
    load_trec_file,
)

from .writers import write

TABLE = "sentence,label\ngood movie great film word,pos\nbad,neg\ngood,pos\nugly ugly,neg\n"


def test_a_tokenizer_file_saved_with_padding_or_truncation_gives_the_words_only(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers

    words = ["[UNK]", "[PAD]", "good", "movie", "great", "film", "word", "bad", "ugly"]
    saved = {}
    for kind in ("plain", "padding", "truncation"):
        tok = tokenizers.Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        if kind == "padding":
            tok.enable_padding(pad_token="[PAD]", pad_id=1)
        elif kind == "truncation":
            tok.enable_truncation(max_length=2)
        saved[kind] = tmp_path / f"{kind}.json"
        tok.save(str(saved[kind]))
    path = write(tmp_path / "n.csv", TABLE)
    loads = {kind: load_text_table(path, path, tokenizer=str(file), cache=False) for kind, file in saved.items()}
    assert loads["plain"].x_train.lengths.tolist() == [5, 1, 1, 2]
    for kind in ("padding", "truncation"):
        assert loads[kind].meta["vocab"] == loads["plain"].meta["vocab"] and "[PAD]" not in loads[kind].meta["vocab"]
        assert torch.equal(loads[kind].x_train.padded(), loads["plain"].x_train.padded())


def test_a_fasttext_label_after_the_text_is_refused_not_read_as_a_word(tmp_path):
    path = write(tmp_path / "k.txt", "__label__pos good movie __label__neg\n__label__neg bad\n")
    with pytest.raises(ValueError, match=r"k.txt:1: a second label '__label__neg' after the text"):
        load_fasttext_file(path, path, cache=False)


@pytest.mark.parametrize("label, classes", [("fine", ["DESC:manner", "NUM:date"]), ("coarse", ["DESC", "NUM"])])
def test_a_trec_line_with_a_tab_after_its_label(tmp_path, label, classes):
    lines = "DESC:manner\tHow did serfdom develop ?\nDESC:manner\tHow did it go ?\nNUM:date\tWhen was it ?\nNUM:date\tWhen was y ?\n"
    path = write(tmp_path / "m.txt", lines)
    ds = load_trec_file(path, path, label=label, cache=False)
    assert ds.class_names == classes and {"how", "when"} <= set(ds.meta["vocab"])


def test_documents_in_a_class_folders_sub_folders_are_read(tmp_path):
    for split in ("train", "test"):
        write(tmp_path / split / "pos" / "1.txt", "good film")
        write(tmp_path / split / "pos" / "sub" / "3.txt", "nested doc text")
        write(tmp_path / split / "neg" / "2.txt", "bad film")
    ds = load_text_folder(tmp_path / "train", tmp_path / "test", cache=False)
    assert {"nested", "doc", "text"} <= set(ds.meta["vocab"]) and ds.y_train.tolist() == [0, 1, 1]


def test_images_in_a_class_folders_sub_folders_and_in_pgm_are_read_and_other_files_said(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for cls, value in (("a", 10), ("b", 200)):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("L", (4, 4), value).save(tmp_path / split / cls / "1.png")
        (tmp_path / split / "a" / "sub").mkdir()
        Image.new("L", (4, 4), 30).save(tmp_path / split / "a" / "sub" / "3.png")
        Image.new("L", (4, 4), 40).save(tmp_path / split / "a" / "4.pgm")
    write(tmp_path / "train" / "a" / "notes.txt", "not an image")
    with pytest.warns(UserWarning, match=r"train/a: 1 file\(s\) without an image suffix not read: \['notes.txt'\]"):
        ds = load_image_folder(tmp_path, cache=False)
    assert ds.y_train.tolist() == [0, 0, 0, 1] and len(ds.y_test) == 4


def test_one_column_as_text_and_label_and_a_repeated_header_name_are_refused(tmp_path):
    path = write(tmp_path / "d.csv", TABLE)
    with pytest.raises(ValueError, match=r"text_column='label' and label_column='label' are one column"):
        load_text_table(path, path, text_column="label", label_column="label", cache=False)
    with pytest.raises(ValueError, match=r"text_column=-1 and label_column=1 are one column"):
        load_text_table(path, path, text_column=-1, label_column=1, cache=False)
    twice = write(tmp_path / "e.csv", "sentence,label,label\ngood,pos,x\nbad,neg,y\n")
    with pytest.raises(ValueError, match=r"e.csv: the header names column 'label' 2 times, for label_column"):
        load_text_table(twice, twice, cache=False)


def test_a_bad_seed_is_refused_with_a_test_file_too(tmp_path):
    path = write(tmp_path / "t.csv", TABLE)
    for seed in ("abc", -5):
        with pytest.raises(ValueError, match="seed"):
            load_text_table(path, path, seed=seed, cache=False)


def test_documents_cut_at_max_length_are_counted_in_a_warning(tmp_path):
    path = write(tmp_path / "t.csv", TABLE)
    with pytest.warns(UserWarning, match=r"2 of 8 documents are longer than max_length=2 tokens and keep their first 2"):
        load_text_table(path, path, max_length=2)
    with pytest.warns(UserWarning, match=r"2 of 8 documents are longer than max_length=2"):  # (from the parse cache)
        load_text_table(path, path, max_length=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_text_table(path, path, cache=False)
