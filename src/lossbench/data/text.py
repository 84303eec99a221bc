"""Text classification tables (TSV/CSV) to padded token-id tensors.

Reading: the delimiter follows the extension (``.tsv`` -> tab, otherwise comma) unless
given.  TSV is read without quote handling (GLUE's files contain bare ``"``), CSV with the
standard double-quote rules.  With ``header=True`` the first row names the columns and
``text_column``/``label_column`` may be names or 0-based indices; without a header they
must be indices.  Blank lines are skipped; a row with a different number of fields than the
header (or the first row) is an error naming the file and line.  GLUE's SST-2 format
(``sentence<TAB>label`` with a header) works with the defaults.

Tokens: lower-cased (``lowercase=True``) runs of word characters, and each other
non-space character on its own (``\\w+|[^\\w\\s]``).  Ids: ``0`` is padding; with a vocabulary
(built on the training file only: tokens seen at least ``min_count`` times, the
``max_vocab`` most frequent, ties broken alphabetically) ``1`` is the out-of-vocabulary id
and known tokens are ``2, 3, ...`` by decreasing frequency; with ``hash_buckets=B`` (the
hashing trick, Weinberger et al. 2009) a token's id is ``1 + crc32(token) mod B``.  Rows are
padded with 0 to a common length: the longest row of either split, or ``max_length``
(longer rows are truncated, keeping their first tokens).

Labels: class order is ``label_names`` when given, else the training labels sorted
(numerically when all are integers); a test label unseen in training is an error.
"""

from __future__ import annotations

import csv
import io
import re
import zlib
from collections import Counter
from itertools import chain
from pathlib import Path
from typing import Any

import torch

from lossbench.data._cache import cached
from lossbench.data._dataset import PAD_ID, Dataset
from lossbench.data._files import read_text

OOV_ID = 1
TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    return TOKEN_RE.findall(text.lower() if lowercase else text)


def _delimiter_for(path: Path) -> str:
    suffixes = [s for s in path.suffixes if s not in (".gz", ".bz2")]
    return "\t" if suffixes and suffixes[-1].lower() == ".tsv" else ","


def _column_index(column: str | int, header: list[str] | None, path: Path, what: str) -> int:
    if isinstance(column, int):
        return column
    if header is None:
        raise ValueError(
            f"{what}={column!r} is a name but {path} is read without a header; pass a 0-based index"
        )
    if column not in header:
        raise ValueError(f"{path}: no column {column!r} in the header ({', '.join(header)}) for {what}")
    return header.index(column)


def read_text_table(
    path: Path | str,
    *,
    text_column: str | int = "sentence",
    label_column: str | int = "label",
    delimiter: str | None = None,
    header: bool = True,
) -> tuple[list[str], list[str], list[int]]:
    """Texts, labels (stripped strings) and the file line of each row."""
    path = Path(path)
    delimiter = delimiter or _delimiter_for(path)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter, quoting=quoting)
    names, width = None, None
    texts, labels, lines = [], [], []
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if width is None:
                width = len(row)
                if header:
                    names = [c.strip() for c in row]
                    t = _column_index(text_column, names, path, "text_column")
                    lab = _column_index(label_column, names, path, "label_column")
                    continue
                t = _column_index(text_column, None, path, "text_column")
                lab = _column_index(label_column, None, path, "label_column")
                for col, what in ((t, "text_column"), (lab, "label_column")):
                    if not -width <= col < width:
                        raise ValueError(f"{what}={col} is out of range for {path} ({width} columns)")
            if len(row) != width:
                raise ValueError(f"{path}:{reader.line_num}: expected {width} fields, got {len(row)}")
            texts.append(row[t])
            labels.append(row[lab].strip())
            lines.append(reader.line_num)
    except csv.Error as err:
        raise ValueError(f"{path}:{reader.line_num}: {err}") from None
    if not texts:
        raise ValueError(f"{path}: no data rows")
    return texts, labels, lines


def _class_order(labels: list[str], label_names: list[str] | None) -> list[str]:
    if label_names is not None:
        return [str(n) for n in label_names]
    unique = set(labels)
    try:
        return sorted(unique, key=int)
    except ValueError:
        return sorted(unique)


def _label_ids(labels: list[str], lines: list[int], classes: list[str], path: Path) -> torch.Tensor:
    index = {c: i for i, c in enumerate(classes)}
    ids = []
    for label, line in zip(labels, lines):
        if label not in index:
            raise ValueError(f"{path}:{line}: label {label!r} is not one of the classes {classes}")
        ids.append(index[label])
    return torch.tensor(ids, dtype=torch.int64)


def build_vocabulary(
    token_lists: list[list[str]], min_count: int = 1, max_vocab: int | None = None
) -> list[str]:
    """``["<pad>", "<unk>", tokens...]``: tokens with ``count >= min_count``, most frequent first."""
    counts = Counter(chain.from_iterable(token_lists))
    kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    return ["<pad>", "<unk>", *kept[:max_vocab]]


def pad(sequences: list[list[int]], length: int) -> torch.Tensor:
    """``int64 (N, length)``, each row's first ``length`` ids followed by ``PAD_ID``."""
    lengths = torch.tensor([min(len(s), length) for s in sequences], dtype=torch.int64)
    out = torch.full((len(sequences), length), PAD_ID, dtype=torch.int64)
    flat = torch.tensor(list(chain.from_iterable(s[:length] for s in sequences)), dtype=torch.int64)
    out[torch.arange(length)[None, :] < lengths[:, None]] = flat
    return out


def load_text_table(
    train_path: Path | str,
    test_path: Path | str,
    *,
    text_column: str | int = "sentence",
    label_column: str | int = "label",
    delimiter: str | None = None,
    header: bool = True,
    label_names: list[str] | None = None,
    lowercase: bool = True,
    min_count: int = 1,
    max_vocab: int | None = None,
    hash_buckets: int | None = None,
    max_length: int | None = None,
    name: str | None = None,
    source: str | None = None,
    cache: bool = True,
) -> Dataset:
    """A text Dataset from a training and a test table (see the module docstring)."""
    for arg, value, low in (
        ("min_count", min_count, 1),
        ("max_vocab", max_vocab, 1),
        ("hash_buckets", hash_buckets, 1),
        ("max_length", max_length, 1),
    ):
        if value is not None and not (isinstance(value, int) and value >= low):
            raise ValueError(f"{arg} must be an int >= {low}, got {value!r}")
    paths = [Path(train_path), Path(test_path)]
    read_args = {
        "text_column": text_column,
        "label_column": label_column,
        "delimiter": delimiter,
        "header": header,
    }
    params: dict[str, Any] = {
        **read_args,
        "label_names": label_names,
        "lowercase": lowercase,
        "min_count": min_count,
        "max_vocab": max_vocab,
        "hash_buckets": hash_buckets,
        "max_length": max_length,
    }

    def parse() -> dict[str, Any]:
        (tr_text, tr_lab, tr_lines), (te_text, te_lab, te_lines) = (
            read_text_table(p, **read_args) for p in paths
        )
        classes = _class_order(tr_lab, label_names)
        y_train = _label_ids(tr_lab, tr_lines, classes, paths[0])
        y_test = _label_ids(te_lab, te_lines, classes, paths[1])
        tr_tok = [tokenize(t, lowercase) for t in tr_text]
        te_tok = [tokenize(t, lowercase) for t in te_text]
        if hash_buckets is not None:
            vocab: list[str] = []
            vocab_size = hash_buckets + 1
            ids = lambda toks: [1 + zlib.crc32(t.encode()) % hash_buckets for t in toks]  # noqa: E731
        else:
            vocab = build_vocabulary(tr_tok, min_count, max_vocab)
            vocab_size = len(vocab)
            index = {t: i for i, t in enumerate(vocab)}
            ids = lambda toks: [index.get(t, OOV_ID) for t in toks]  # noqa: E731
        tr_ids, te_ids = [ids(t) for t in tr_tok], [ids(t) for t in te_tok]
        longest = max(map(len, chain(tr_ids, te_ids)), default=0)
        length = max(1, min(longest, max_length) if max_length else longest)
        return {
            "x_train": pad(tr_ids, length),
            "y_train": y_train,
            "x_test": pad(te_ids, length),
            "y_test": y_test,
            "classes": classes,
            "vocab": vocab,
            "vocab_size": vocab_size,
        }

    p = cached("text", params, paths, parse, cache=cache)
    tokens = "hashing" if hash_buckets else f"vocabulary of {p['vocab_size']} ids (min_count={min_count})"
    return Dataset(
        name=name or paths[0].parent.name,
        task="multiclass",
        x_train=p["x_train"],
        y_train=p["y_train"],
        x_test=p["x_test"],
        y_test=p["y_test"],
        class_names=p["classes"],
        feature_kind="text",
        source=source or f"text tables {paths[0]}, {paths[1]} ({tokens})",
        vocab_size=p["vocab_size"],
        meta={"vocab": p["vocab"]},
    )
