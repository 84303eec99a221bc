"""Folder-of-documents, fastText and TREC files written by the tests, through the registry too."""

from __future__ import annotations

import codecs

import pytest
import torch

from lossbench.data import load_dataset, load_fasttext_file, load_text_folder, load_trec_file
from lossbench.data.splits import provided_validation

from .writers import write

DOCS = {
    "sci.space": ["Orbit and launch.", "The shuttle launch slipped.", "Mars orbit insertion."],
    "rec.autos": ["Engine oil change.", "My car engine stalls.", "Brakes and oil."],
}


def write_folder(root, docs=DOCS):
    for cls, texts in docs.items():
        for i, text in enumerate(texts):
            write(root / cls / f"{i:05d}", text)
    return root


def test_train_and_test_folders_one_subfolder_per_class(tmp_path):
    train = write_folder(tmp_path / "20news-bydate-train")
    test = write_folder(
        tmp_path / "20news-bydate-test", {"rec.autos": ["oil engine"], "sci.space": ["orbit"]}
    )
    write(train / "sci.space" / ".DS_Store", "\x00\x01")  # hidden files are not documents
    ds = load_text_folder(train, test, cache=False)
    assert ds.class_names == ["rec.autos", "sci.space"] and ds.y_train.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.y_test.tolist() == [0, 1] and ds.name == "20news-bydate-train"
    vocab = ds.meta["vocab"]
    assert ds.x_test[0].tolist() == [vocab.index("oil"), vocab.index("engine")]


def test_latin1_posts_load_and_one_folder_takes_a_test_fraction(tmp_path):
    root = write_folder(tmp_path / "news")
    write(root / "rec.autos" / "latin1", "Caf\xe9 car".encode("latin-1"))
    ds = load_text_folder(root, test_fraction=0.25, seed=3, cache=False)
    assert len(ds.y_train) + len(ds.y_test) == 7 and len(ds.y_test) == 2
    assert ds.y_test.bincount(minlength=2).tolist() == [1, 1]  # stratified
    everything = load_text_folder(
        root, test_fraction=0.25, seed=3, tokenizer="char", hash_buckets=50, cache=False
    )
    assert everything.vocab_size == 52  # (pad, out-of-vocabulary, 50 buckets)


def test_text_that_is_not_utf8_is_read_as_windows_1252():
    # (Windows' "ANSI" text: its curly quotes and dashes, bytes 0x80-0x9f, were Latin-1's control characters,
    # tokens of their own; the five bytes Windows-1252 leaves undefined read as Latin-1 reads them)
    from lossbench.data._files import _decoded

    assert _decoded(b"\x93Caf\xe9\x94 \x96 5 \x80 \x81", "t") == "\u201cCaf\xe9\u201d \u2013 5 \u20ac \x81"


def test_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(ValueError, match=r"text folder not found: .*missing"):
        load_text_folder(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    write(tmp_path / "flat" / "doc.txt", "no class folder")
    with pytest.raises(ValueError, match=r"flat: no class sub-folders"):
        load_text_folder(tmp_path / "flat")


FASTTEXT = "__label__pos good film\n\n__label__neg bad film\n__label__pos\tgreat acting\n__label__neg awful\n"


def test_fasttext_lines_with_a_dev_file_as_the_validation_split(tmp_path):
    train, test = (
        write(tmp_path / "train.txt", FASTTEXT),
        write(tmp_path / "test.txt", "__label__neg bad acting\n"),
    )
    dev = write(tmp_path / "dev.txt", "__label__pos good\n__label__neg bad\n")
    ds = load_fasttext_file(train, test, dev_path=dev, cache=False)
    assert ds.class_names == ["neg", "pos"] and ds.y_train.tolist() == [1, 0, 1, 0, 1, 0]
    fit_idx, val_idx = provided_validation(ds)
    assert fit_idx.tolist() == [0, 1, 2, 3] and val_idx.tolist() == [4, 5]
    vocab = ds.meta["vocab"]
    assert ds.x_train[2].tolist() == [vocab.index("great"), vocab.index("acting")]  # tab after the label


def test_documents_without_a_token_are_warned_of_and_a_training_part_of_only_such_refused(tmp_path):
    # (a file of labels without text loaded as a data set with nothing to learn from, without a word)
    lines = "".join(f"__label__{'ab'[i % 2]} {'good film' if i % 3 else ''}\n" for i in range(12))
    with pytest.warns(UserWarning, match=r": 4 of 12 documents hold no token \(the first: .*t.txt:\d+\)"):
        load_fasttext_file(write(tmp_path / "t.txt", lines), test_fraction=0.25, cache=False)
    empty = "".join(f"__label__{'ab'[i % 2]}\n" for i in range(12))
    with pytest.raises(ValueError, match=r"e.txt:\d+: no training document holds a token \(every text is empty\)"):
        load_fasttext_file(write(tmp_path / "e.txt", empty), test_fraction=0.25, cache=False)


def test_fasttext_several_labels_or_none_on_a_line_are_errors(tmp_path):
    with pytest.raises(
        ValueError, match=r"train.txt:2: 2 labels \(a, b\); a fastText line here starts with exactly one"
    ):
        load_fasttext_file(
            write(tmp_path / "train.txt", "__label__a x\n__label__a __label__b y\n"), cache=False
        )
    with pytest.raises(ValueError, match=r"train.txt:1: no labels"):
        load_fasttext_file(write(tmp_path / "train.txt", "text without label\n"), cache=False)
    # (a line whose only label follows its text was said to hold "no labels")
    with pytest.raises(ValueError, match=r"train.txt:1: its label '__label__b' follows the text; a fastText line"):
        load_fasttext_file(write(tmp_path / "train.txt", "hello __label__b\n"), cache=False)
    ds = load_fasttext_file(
        write(tmp_path / "t.txt", "#A one\n#B two\n" * 3), label_prefix="#", test_fraction=0.34, cache=False
    )
    assert ds.class_names == ["A", "B"]


TREC = "DESC:manner How did serfdom develop ?\nNUM:dist How far is Denver ?\nNUM:date When was it ?\nDESC:def What is it ?\n"


@pytest.mark.parametrize(
    ("level", "classes"),
    [("coarse", ["DESC", "NUM"]), ("fine", ["DESC:def", "DESC:manner", "NUM:date", "NUM:dist"])],
)
def test_trec_coarse_or_fine_labels(tmp_path, level, classes):
    train = write(tmp_path / "train_5500.label", TREC)
    test = write(tmp_path / "TREC_10.label", "NUM:dist How far ?\n")
    ds = load_trec_file(train, test, label=level, label_names=None, cache=False)
    assert ds.class_names == classes and ds.y_test.tolist() == [
        classes.index("NUM" if level == "coarse" else "NUM:dist")
    ]


def test_trec_bad_lines_and_label_level(tmp_path):
    train = write(tmp_path / "train.label", "DESC:manner ok ?\nnot trec at all\n")
    with pytest.raises(ValueError, match=r"train.label:2: expected 'COARSE:fine text' \(TREC\)"):
        load_trec_file(train, train, cache=False)
    with pytest.raises(ValueError, match=r"label must be one of \('coarse', 'fine'\), got 'middle'"):
        load_trec_file(train, label="middle")


def test_every_text_format_is_reachable_by_name(tmp_path):
    lines = write(tmp_path / "ft.txt", FASTTEXT * 3)
    trec = write(tmp_path / "trec.label", TREC * 3)
    root = write_folder(tmp_path / "news")
    for name, params in (
        ("fasttext_file", {"path": str(lines)}),
        ("trec_file", {"path": str(trec), "label": "fine"}),
        ("text_folder", {"path": str(root), "test_fraction": 0.34}),
    ):
        ds = load_dataset(name, cache=False, **params)
        assert ds.feature_kind == "text" and len(ds.y_test) > 0 and isinstance(ds.x_train.ids, torch.Tensor)


def test_a_file_mixing_utf8_and_other_bytes_is_refused_at_its_first_such_line(tmp_path):
    # read as Latin-1, every UTF-8 character of the file would turn into two others
    from lossbench.data._files import read_text

    mixed = write(tmp_path / "mixed.tsv", "sentence\tlabel\ntrès bon café\tpos\n".encode() + "café froid\tneg\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"mixed.tsv:3: byte 0xe9 is not UTF-8, where the file holds UTF-8 characters"):
        read_text(mixed)
    marked = write(tmp_path / "bom.tsv", codecs.BOM_UTF8 + "é\n\n".encode() + b"caf\xe9\n")  # (the mark not counted)
    with pytest.raises(ValueError, match=r"bom.tsv:3: byte 0xe9 is not UTF-8"):
        read_text(marked)
    with pytest.raises(ValueError, match=r"cr.tsv:3: byte 0xe9"):  # lines ended by CR alone
        read_text(write(tmp_path / "cr.tsv", "é é é\r".encode() + b"x\rcaf\xe9\r"))
    assert read_text(write(tmp_path / "latin.tsv", "café froid\tneg\n".encode("latin-1"))) == "café froid\tneg\n"
    # cp1252 French whose "é" before a no-break space and "»" reads as one UTF-8 character: Latin-1 still
    french = "« C'est l'été\xa0»\nça va, ÉTÉ\xa0!\n"
    assert read_text(write(tmp_path / "fr.tsv", french.encode("cp1252"))) == french
    assert read_text(write(tmp_path / "utf8.tsv", codecs.BOM_UTF8 + "café\tneg\n".encode())) == "café\tneg\n"


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32"])
def test_a_text_with_a_utf16_or_utf32_byte_order_mark_is_read_as_such(tmp_path, codec):
    # Windows' "Unicode" text: read as Latin-1 it was a vocabulary of NULs and single letters
    from lossbench.data._files import read_text

    bom = {"utf-16-be": codecs.BOM_UTF16_BE}.get(codec, b"")  # (Python's utf-16 / utf-32 write their own)
    assert read_text(write(tmp_path / "t.txt", bom + "Café froid\nbon\n".encode(codec))) == "Café froid\nbon\n"
    root = tmp_path / "news"
    for cls, texts in DOCS.items():
        for i, text in enumerate(texts):
            write(root / cls / f"{i:05d}", bom + text.encode(codec))
    ds = load_text_folder(root, test_fraction=0.34, seed=0, cache=False)
    assert {"orbit", "engine", "oil"} <= set(ds.meta["vocab"]) and "\x00" not in ds.meta["vocab"]


def test_a_text_holding_nul_characters_is_refused_by_line(tmp_path):
    from lossbench.data._files import read_text

    no_mark = write(tmp_path / "u16.tsv", "sentence\tlabel\ngood\tpos\n".encode("utf-16-le"))  # (valid UTF-8)
    with pytest.raises(ValueError, match=r"u16.tsv:1: the text holds a NUL character: UTF-16 text without its "
                                         r"byte-order mark, or not a text file; save it as UTF-8$"):  # fmt: skip
        read_text(no_mark)
    with pytest.raises(ValueError, match=r"bin.txt:2: the text holds a NUL character"):
        read_text(write(tmp_path / "bin.txt", b"caf\xe9\r\nx\x00y\n"))  # (Latin-1)
    broken = write(tmp_path / "odd.txt", codecs.BOM_UTF16_LE + "ok".encode("utf-16-le") + b"\x00")  # an odd byte
    with pytest.raises(ValueError, match=r"odd.txt: not UTF-16 text after its UTF-16 byte-order mark"):
        read_text(broken)


def test_an_empty_label_is_refused_by_line(tmp_path):
    from lossbench.data.text import read_text_table

    with pytest.raises(ValueError, match=r"t.tsv:3: the label is empty"):
        read_text_table(write(tmp_path / "t.tsv", "sentence\tlabel\ngood\tpos\nbad\t \n"))
    for line in ("__label__ hello there", "__label__"):  # (a class named "")
        with pytest.raises(ValueError, match=r"train.txt:2: the label is empty \(__label__ with nothing after it\)$"):
            load_fasttext_file(write(tmp_path / "train.txt", f"__label__pos good\n{line}\n__label__neg bad\n"), cache=False)


def test_records_split_at_line_ends_only(tmp_path):
    # str.splitlines also splits at U+2028, form feeds and \x85 (a Windows-1252 ellipsis read as Latin-1)
    fasttext = write(tmp_path / "ft.txt", "__label__a one\u2028two\n__label__b three\x0cfour\n" * 2)
    ds = load_fasttext_file(fasttext, test_fraction=0.5, cache=False)
    assert len(ds.y_train) + len(ds.y_test) == 4
    trec = write(tmp_path / "trec.label", b"DESC:manner Why so\x85 ?\nNUM:dist How far ?\n" * 2)  # Latin-1
    ds = load_trec_file(trec, test_fraction=0.5, cache=False)
    assert len(ds.y_train) + len(ds.y_test) == 4


def test_a_one_class_text_table_is_refused_naming_its_files(tmp_path):
    # the set is named by its folder ("d"): the message names the files too
    from lossbench.data.text import load_text_table

    train = write(tmp_path / "d" / "train.tsv", "sentence\tlabel\nhello world\t1\ngood day\t1\n")
    with pytest.raises(ValueError, match=r"dataset 'd' \(text tables .*train.tsv.*\): 1 class\(es\)"):
        load_text_table(train, test_path=train, cache=False)


def test_a_folder_of_split_folders_is_refused_and_loose_files_warned_of(tmp_path):
    # (IMDb's layout, train/<class>/ and test/<class>/, loaded as two classes named train and test, silently;
    # documents beside the class folders were dropped without a word)
    write_folder(tmp_path / "imdb" / "train")
    write_folder(tmp_path / "imdb" / "test")
    with pytest.raises(ValueError, match=r"imdb: its sub-folders test, train are splits, not classes .* give "
                                         r"path=.*imdb/test and test_path= the other"):  # fmt: skip
        load_text_folder(tmp_path / "imdb", cache=False)
    loose = write_folder(tmp_path / "loose")
    write(loose / "README.txt", "about the data")
    with pytest.warns(UserWarning, match=r"loose: 1 file\(s\) beside the class folders not read: \['README.txt'\]"):
        load_text_folder(loose, test_fraction=0.34, cache=False)
