"""Word, character and Hugging Face tokenizer-file tokens; the unknown-token warning."""

from __future__ import annotations

import warnings

import pytest

from lossbench.data import load_fasttext_file
from lossbench.data.text_tokens import get_tokenizer, tokenize, tokenize_chars

from .writers import write

# Chinese has no spaces between words: the word tokenizer sees each clause as one token.
TRAIN_ZH = "__label__体育 我喜欢足球比赛\n__label__财经 股票市场今天上涨\n__label__体育 足球队赢了比赛\n__label__财经 市场股票下跌\n"
TEST_ZH = "__label__体育 我喜欢看比赛\n__label__财经 今天股票上涨\n"


def load(tmp_path, train=TRAIN_ZH, test=TEST_ZH, **kw):
    return load_fasttext_file(
        write(tmp_path / "train.txt", train), write(tmp_path / "test.txt", test), cache=False, **kw
    )


def test_word_tokens_keep_their_combining_marks_and_one_spelling_of_an_accent():
    # (Python's \\w takes no combining mark: Hindi's vowel signs, Arabic's vowels and a decomposed accent each split
    # their word into characters, and 'café' typed two ways was two tokens)
    assert tokenize("हिन्दी भाषा") == ["हिन्दी", "भाषा"] and tokenize("مُحَمَّد") == ["مُحَمَّد"]
    assert tokenize("Cafe\u0301 café.") == ["café", "café", "."] and tokenize("it's 3.5!") == ["it", "'", "s", "3", ".", "5", "!"]


def test_char_tokens_drop_whitespace():
    assert tokenize_chars("ＡB 足球\t比赛\n") == ["ａ", "b", "足", "球", "比", "赛"]
    assert get_tokenizer("char", lowercase=False).split(["Ab c"]) == [["A", "b", "c"]]


def test_whole_clause_tokens_warn_and_name_the_char_tokenizer(tmp_path):
    with pytest.warns(
        UserWarning, match=r"100% of the test tokens are unknown .*tokenizer='word'.*try tokenizer='char'"
    ):
        ds = load(tmp_path)
    assert ds.meta["unknown_test_tokens"] == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # characters are shared: no warning
        chars = load(tmp_path, tokenizer="char")
    assert chars.meta["unknown_test_tokens"] == 1 / 12
    vocab = chars.meta["vocab"]
    assert chars.x_test[0].tolist() == [
        vocab.index(c) if c != "看" else 1 for c in "我喜欢看比赛"
    ]  # 看 unseen


def test_a_user_tokenizer_file_from_the_library(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["low lower lowest", "new newer newest", "wide wider widest"],
                            trainers.WordPieceTrainer(vocab_size=60, special_tokens=["[UNK]"]))  # fmt: skip
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    train = "__label__a low lower\n__label__b new newer\n__label__a lowest\n__label__b newest\n"
    with pytest.warns(UserWarning, match=r"of the test tokens are unknown .*try tokenizer='char'"):
        ds = load(tmp_path, train, "__label__a lowerest\n__label__b zzz\n", tokenizer=str(path))
    expected = [
        t for e in tok.encode_batch(["low lower", "new newer"], add_special_tokens=False) for t in e.tokens
    ]
    assert set(expected) <= set(ds.meta["vocab"]) and ds.meta["tokenizer"] == str(path)
    # the file's own [UNK] (for "zzz", whose letters it never saw) is the out-of-vocabulary id, and takes no
    # place in the vocabulary (its training occurrences made it one of the counted tokens)
    assert set(ds.x_test[1].tolist()) == {1}
    unknown_in_training = load(tmp_path, train + "__label__a zzz zzz zzz\n", "__label__a low\n__label__b new\n",
                               tokenizer=str(path))  # fmt: skip
    assert "[UNK]" not in unknown_in_training.meta["vocab"]
    with pytest.raises(ValueError, match=r"tokenizer=.*bad.json.*not a Hugging Face tokenizer file"):
        load(tmp_path, tokenizer=str(write(tmp_path / "bad.json", "{}")))
