"""Tokenizers for the text loaders: ``word``, ``char`` or a Hugging Face ``tokenizers`` file.

- ``word``: lower-cased (``lowercase=True``) runs of word characters and combining marks (a vowel sign, an
  accent), and each other non-space character on its own, in the text's composed form (NFC); right for
  space-separated languages.
- ``char``: one token per character, whitespace dropped; for Chinese, Japanese, Thai and
  other scripts written without spaces between words.
- a path to a ``tokenizer.json`` saved by the Hugging Face ``tokenizers`` library (``pip
  install tokenizers``, in the ``data`` extra): its normaliser, pre-tokeniser and model split
  the text (``lowercase`` does not apply: the file says how to normalise) and its tokens
  (strings, special tokens not added) go through the loader's vocabulary like any other; the
  file's own unknown token counts as unknown.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TOKENIZERS = ("word", "char")  # the built-in names; anything else must be a tokenizer file


@functools.cache
def _word_re() -> re.Pattern[str]:
    """Runs of word characters or combining marks (Python's ``\\w`` takes no mark: Hindi's vowel signs and
    viramas, Arabic's vowels, a decomposed accent each split a word in characters), and each other non-space
    character; the marks listed from the character database once (about 0.1 s)."""
    marks = [c for c in map(chr, range(sys.maxunicode + 1)) if unicodedata.category(c)[0] == "M"]
    ranges, start = [], marks[0]
    for previous, c in zip(marks, marks[1:] + ["\0"]):
        if ord(c) != ord(previous) + 1:
            ranges.append(re.escape(start) + ("" if previous == start else "-" + re.escape(previous)))
            start = c
    word = "\\w" + "".join(ranges)
    return re.compile(f"[{word}]+|[^{word}\\s]")


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """The ``word`` tokenizer (on the text's composed form, NFC: 'café' typed either way is one token)."""
    text = unicodedata.normalize("NFC", text)
    return _word_re().findall(text.lower() if lowercase else text)


def tokenize_chars(text: str, lowercase: bool = True) -> list[str]:
    """The ``char`` tokenizer: every non-whitespace character."""
    return [c for c in (text.lower() if lowercase else text) if not c.isspace()]


@dataclass(frozen=True)
class Tokenizer:
    """``split(texts) -> token lists``; ``unknown``: a token the tokenizer itself emits for text it
    cannot represent (a file's unk token), mapped to the out-of-vocabulary id."""

    name: str
    split: Callable[[list[str]], list[list[str]]]
    unknown: str | None = None


def get_tokenizer(spec: str | Path, lowercase: bool = True) -> Tokenizer:
    """The tokenizer ``spec`` names: ``"word"``, ``"char"`` or a tokenizer file's path."""
    if spec == "word":
        return Tokenizer("word", lambda texts: [tokenize(t, lowercase) for t in texts])
    if spec == "char":
        return Tokenizer("char", lambda texts: [tokenize_chars(t, lowercase) for t in texts])
    if not isinstance(spec, (str, Path)) or not Path(spec).is_file():
        raise ValueError(
            f"tokenizer must be one of {TOKENIZERS} or the path of a Hugging Face tokenizer.json, "
            f"got {spec!r} (no such file)"
        )
    try:
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError:
        raise ImportError(
            f"tokenizer={str(spec)!r} needs the Hugging Face tokenizers library: pip install tokenizers"
        ) from None
    try:
        hf = HFTokenizer.from_file(str(spec))
    except Exception as err:  # noqa: BLE001 - the library raises a bare Exception for a malformed file
        raise ValueError(f"tokenizer={str(spec)!r}: not a Hugging Face tokenizer file ({err})") from None
    # a file saved with padding or truncation on would pad each split's documents to its longest (its pad token a
    # word, the split's length a feature) or cut them at its own length: the words only, max_length cuts them
    hf.no_padding()
    hf.no_truncation()

    def split(texts: list[str]) -> list[list[str]]:
        return [e.tokens for e in hf.encode_batch(texts, add_special_tokens=False)]

    return Tokenizer(str(spec), split, getattr(hf.model, "unk_token", None))
