"""Text classification data: labelled documents to token ids, and the TSV/CSV text-table loader.

Every text loader (``text_table`` here, ``text_folder``, ``fasttext_file``, ``trec_file``) reads
labelled documents per split and hands them to :func:`encode_text`, which does the rest alike:

Splits: a test file or folder, else a seeded stratified ``test_fraction`` of the training
documents; a ``dev_path`` is the dataset's provided validation split (its rows follow the
training rows in ``x_train`` and ``meta["validation_mask"]`` marks them: the bench tunes on
the training rows and scores on these instead of splitting).

Tokens (``tokenizer``): ``"word"``, ``"char"`` or a Hugging Face ``tokenizer.json`` file (see
``text_tokens``).  Ids: ``0`` is padding; with a vocabulary (built on the training documents
only: tokens seen at least ``min_count`` times, the ``max_vocab`` most frequent, ties broken
alphabetically) ``1`` is the out-of-vocabulary id and known tokens are ``2, 3, ...`` by
decreasing frequency (the tokens the documents keep, see Layout); with ``hash_buckets=B`` (the
hashing trick, Weinberger et al. 2009) a token's id is ``2 + crc32(token) mod B``.  When more than a
fifth of the test tokens are unknown a warning says which tokenizer to try.

Layout: each document keeps its first ``max_length`` ids (``DEFAULT_MAX_LENGTH``; None keeps
all).  ``layout="bags"`` stores them as flat ids plus offsets (``TokenBags``: memory follows
the tokens kept, not documents x longest); ``layout="padded"`` pads rows with 0 to the longest
kept row, the ``(N, L)`` tensor the bench's packed training needs.

Labels: class order is ``label_names`` when given (each name once), else the training labels sorted
(numerically when all are integers); a test or dev label unseen in training is an error
naming its file and line.

The table reader: the delimiter follows the extension (``.tsv`` -> tab, otherwise comma)
unless given.  TSV is read without quote handling (GLUE's files contain bare ``"``), CSV with
the standard double-quote rules; fields of any length load.  A quoted field over lines is a cell of
text, but one that a strict reading refuses (its closing quote not followed by a delimiter, or none) is rows merged
by a stray quote: an error naming the line where it opens (a row over lines of the wrong width is the
field-count error below, naming its first line).  With ``header=True`` the first row
names the columns and ``text_column``/``label_column`` may be names or 0-based indices; without
a header they must be indices.  A header whose label cell is a label of the rows below is a headerless
file's first row: an error suggesting ``header=False``.  Blank lines are skipped; a row with a different number of
fields than the header (or the first row) is an error naming the file and line.  A text column
holding only numbers is refused (that is a numeric table: the ``table`` loader reads it).
GLUE's SST-2 format (``sentence<TAB>label`` with a header) works with the defaults.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import inspect
import io
import os
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from itertools import chain
from pathlib import Path
from typing import Any

import torch

from lossbench.data._cache import cached
from lossbench.data._dataset import Dataset, check_test_labels, classes_alike_by_case, classes_without_rows
from lossbench.data._files import read_text
from lossbench.data.splits import VALIDATION_MASK, check_split_seed, resolve_test_fraction, train_test_indices
from lossbench.data.text_bags import TokenBags
from lossbench.data.text_tokens import get_tokenizer, tokenize

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "LAYOUTS",
    "OOV_ID",
    "Documents",
    "TextOptions",
    "encode_text",
    "load_text_table",
    "tokenize",
]

OOV_ID = 1
LAYOUTS = ("bags", "padded")
# Tokens kept per document: a bag of embeddings gains little past a few pages, and 20 Newsgroups'
# longest posts (100k characters) would otherwise set the width of every padded row.
DEFAULT_MAX_LENGTH = 2048
# Part of the parse-cache key, bumped when entries parsed before may hold what is now refused.  1: a
# dev or test label training never sees, with label_names too; fastText's empty label (text_lines).  2: rows
# merged by a stray quote, a header whose label cell is a label of the rows below.  3: documents cut at max_length
# counted; a TREC line's tab, a fastText label after the text, a tokenizer file's padding and truncation.  4: the
# word tokenizer keeps combining marks in their words, on the text's NFC form; empty documents counted.
PARSE_VERSION = 4
UNKNOWN_WARN_SHARE = 0.2  # warn above this share of unknown test tokens
CSV_FIELD_LIMIT = 2**31 - 1  # the largest value csv.field_size_limit takes on every platform


@dataclass
class Documents:
    """One split's documents: texts, label strings, and where each comes from (``file:line``)."""

    texts: list[str]
    labels: list[str]
    where: list[str]

    def select(self, idx: list[int]) -> Documents:
        return Documents(
            [self.texts[i] for i in idx], [self.labels[i] for i in idx], [self.where[i] for i in idx]
        )


def check_text_options(
    *,
    min_count: int,
    max_vocab: int | None,
    hash_buckets: int | None,
    max_length: int | None,
    layout: str,
    tokenizer: str | Path,
) -> None:
    """Refuse bad encoding options before any file is read."""
    for arg, value, low in (
        ("min_count", min_count, 1),
        ("max_vocab", max_vocab, 1),
        ("hash_buckets", hash_buckets, 1),
        ("max_length", max_length, 1),
    ):
        if value is not None and not (
            isinstance(value, int) and not isinstance(value, bool) and value >= low
        ):
            raise ValueError(f"{arg} must be an int >= {low}, got {value!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    get_tokenizer(tokenizer)  # names a known tokenizer or a readable file


def class_order(labels: list[str], label_names: list[str] | None) -> list[str]:
    if label_names is not None:
        return [str(n) for n in label_names]
    unique = set(labels)
    try:
        return sorted(unique, key=int)
    except ValueError:
        return sorted(unique)


def label_ids(docs: Documents, classes: list[str]) -> torch.Tensor:
    index = {c: i for i, c in enumerate(classes)}
    for label, where in zip(docs.labels, docs.where):
        if label not in index:
            raise ValueError(f"{where}: label {label!r} is not one of the classes {classes}")
    return torch.tensor([index[label] for label in docs.labels], dtype=torch.int64)


def build_vocabulary(
    token_lists: list[list[str]], min_count: int = 1, max_vocab: int | None = None
) -> list[str]:
    """``["<pad>", "<unk>", tokens...]``: tokens with ``count >= min_count``, most frequent first."""
    counts = Counter(chain.from_iterable(token_lists))
    kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    return ["<pad>", "<unk>", *kept[:max_vocab]]


def pad(sequences: list[list[int]], length: int) -> torch.Tensor:
    """``int64 (N, length)``, each row's first ``length`` ids followed by ``PAD_ID``."""
    return TokenBags.from_lists(sequences, length).padded(length)


def _test_split(
    train: Documents, test: Documents | None, test_fraction: float, seed: int, classes: list[str]
) -> tuple[Documents, Documents]:
    if test is not None:
        return train, test
    fit, held = train_test_indices(label_ids(train, classes), test_fraction, seed)
    return train.select(fit.tolist()), train.select(held.tolist())


PADDING_WARN = 4  # a longest document this many times the 99th percentile's length (and past 64 tokens) is warned of


def _warn_long_padding(name: str, lengths: torch.Tensor, length: int) -> None:
    """Padded to the longest document, every row holds ``length`` ids: a few outliers multiply the data's memory
    and each step's work (one 5,000-token line made 50,000 rows of 39 tokens 2,048 wide)."""
    typical = max(1, int(torch.quantile(lengths.double(), 0.99))) if len(lengths) else 1
    if length > 64 and length > PADDING_WARN * typical:
        warnings.warn(f"{name}: every document is padded to the longest, {length} tokens, where 99 % have at most "
                      f"{typical}: max_length={typical} (or layout='bags') would keep the data {length / typical:.0f}x "
                      "smaller", stacklevel=4)  # fmt: skip


def encode_text(
    read: Callable[[], tuple[Documents, Documents | None, Documents | None]],
    sources: list[Path],
    params: dict[str, Any],
    *,
    test_fraction: float,
    seed: int,
    label_names: list[str] | None,
    tokenizer: str | Path,
    lowercase: bool,
    min_count: int,
    max_vocab: int | None,
    hash_buckets: int | None,
    max_length: int | None,
    layout: str,
    name: str,
    source: str,
    cache: bool,
) -> Dataset:
    """A text Dataset from ``read() -> (train, test or None, dev or None)`` (see the module
    docstring); ``sources`` and ``params`` key the parse cache.  The loaders (:func:`text_loader`)
    warn when too many test tokens are unknown (``meta["unknown_test_tokens"]``)."""
    options = {"min_count": min_count, "max_vocab": max_vocab, "hash_buckets": hash_buckets}
    check_text_options(**options, max_length=max_length, layout=layout, tokenizer=tokenizer)
    check_split_seed(seed, "stratified")  # (with a test file too: no setting is silently taken whatever it is)
    names = [str(n) for n in label_names or ()]  # (as class_order names the classes)
    repeated = sorted({n for n in names if names.count(n) > 1}, key=names.index)
    if repeated:  # (one class twice would be two classes, one of them never a target)
        raise ValueError(f"label_names={label_names!r} names {', '.join(map(repr, repeated))} more than once; "
                         "name each class once")  # fmt: skip
    tok = get_tokenizer(tokenizer, lowercase)
    if tok.name not in ("word", "char"):  # a file: its content is part of the cache key
        sources = [*sources, Path(tok.name)]
    params = {
        **params,
        **options,
        "test_fraction": test_fraction,
        "seed": seed,
        "label_names": label_names,
        "tokenizer": str(tokenizer),
        "lowercase": lowercase,
        "max_length": max_length,
        "layout": layout,
        "version": PARSE_VERSION,
    }

    def parse() -> dict[str, Any]:
        train, test, dev = read()
        classes = class_order(train.labels, label_names)
        files = [d for d in (dev, test) if d is not None]
        train, test = _test_split(train, test, test_fraction, seed, classes)
        parts = [train] + ([dev] if dev is not None else []) + [test]
        ys = [label_ids(d, classes) for d in parts]
        for part, y in zip(parts[1:], ys[1:]):  # a dev or test file's label training never sees (in label_names, too)
            unseen = torch.isin(y, ys[0], invert=True).nonzero().flatten()
            if len(unseen) and any(part is f for f in files):
                check_test_labels(ys[0], y, classes, part.where[int(unseen[0])])
        tokens = [tok.split(d.texts) for d in parts]
        first_empty = next((d.where[i] for d, split in zip(parts, tokens) for i, doc in enumerate(split) if not doc), None)
        if all(not doc for split in tokens[:-1] for doc in split):
            raise ValueError(f"{parts[0].where[0]}: no training document holds a token (every text is empty): is the "
                             "text where the loader reads it?")  # fmt: skip
        if hash_buckets is not None:  # (bucket b is id 2 + b: none shares the out-of-vocabulary id)
            vocab: list[str] = []
            vocab_size = hash_buckets + 2
            ids = lambda t: OOV_ID if t == tok.unknown else 2 + zlib.crc32(t.encode()) % hash_buckets
        else:
            # the tokens a model trains on: those kept in a document, and not a tokenizer's own unknown one
            kept = [[t for t in doc[:max_length] if t != tok.unknown] for doc in tokens[0]]
            vocab = build_vocabulary(kept, min_count, max_vocab)
            vocab_size = len(vocab)
            index = {t: i for i, t in enumerate(vocab)}
            ids = lambda t: index.get(t, OOV_ID)
        rows = [[[ids(t) for t in doc] for doc in split] for split in tokens]
        test_ids = list(chain.from_iterable(rows[-1]))
        unknown = sum(i == OOV_ID for i in test_ids) / max(1, len(test_ids))
        x_train = TokenBags.from_lists(list(chain.from_iterable(rows[:-1])), max_length)
        x_test = TokenBags.from_lists(rows[-1], max_length)
        return {
            "train": [x_train.ids, x_train.offsets],
            "test": [x_test.ids, x_test.offsets],
            "y_train": torch.cat(ys[:-1]),
            "y_test": ys[-1],
            "n_dev": len(dev.texts) if dev is not None else 0,
            "classes": classes,
            "vocab": vocab,
            "vocab_size": vocab_size,
            "unknown": unknown,
            "cut": [sum(len(doc) > max_length for doc in split) for split in tokens] if max_length else [],
            "empty": [sum(not doc for doc in split) for split in tokens], "first_empty": first_empty,
        }

    p = cached("text", params, sources, parse, cache=cache)
    if label_names is None and (note := classes_alike_by_case(p["classes"], name)):  # (as the table loader warns)
        warnings.warn(note, stacklevel=3)
    if cut := sum(p["cut"]):
        warnings.warn(f"{name}: {cut} of {len(p['y_train']) + len(p['y_test'])} documents are longer than max_length="
                      f"{max_length} tokens and keep their first {max_length} (max_length=None keeps them whole)",
                      stacklevel=3)  # fmt: skip
    if none := sum(p["empty"]):  # (a model reads nothing there: its bias alone decides)
        warnings.warn(f"{name}: {none} of {len(p['y_train']) + len(p['y_test'])} documents hold no token (the first: "
                      f"{p['first_empty']})", stacklevel=3)  # fmt: skip
    x_train, x_test = TokenBags(*p["train"]), TokenBags(*p["test"])
    if layout == "padded":
        length = max(1, x_train.width, x_test.width)
        _warn_long_padding(name, torch.cat([x_train.lengths, x_test.lengths]), length)
        x_train, x_test = x_train.padded(length), x_test.padded(length)
    meta: dict[str, Any] = {"vocab": p["vocab"], "unknown_test_tokens": p["unknown"], "tokenizer": tok.name}
    if p["n_dev"]:
        mask = torch.zeros(len(p["y_train"]), dtype=torch.bool)
        mask[-p["n_dev"] :] = True
        meta[VALIDATION_MASK] = mask
    ids = "hashing" if hash_buckets else f"vocabulary of {p['vocab_size']} ids (min_count={min_count})"
    return Dataset(
        name=name,
        task="multiclass",
        x_train=x_train,
        y_train=p["y_train"],
        x_test=x_test,
        y_test=p["y_test"],
        class_names=p["classes"],
        feature_kind="text",
        source=f"{source} (tokenizer {tok.name}, {ids})",
        vocab_size=p["vocab_size"],
        meta=meta,
    )


@dataclass(frozen=True)
class TextOptions:
    """The options every text loader takes after its own (see the module docstring); the fields'
    defaults are the loaders' defaults (:func:`text_loader` gives each loader these parameters)."""

    test_fraction: float | None = None
    seed: int = 0
    label_names: list[str] | None = None
    tokenizer: str = "word"
    lowercase: bool = True
    min_count: int = 1
    max_vocab: int | None = None
    hash_buckets: int | None = None
    max_length: int | None = DEFAULT_MAX_LENGTH
    layout: str = "bags"
    name: str | None = None
    source: str | None = None
    cache: bool = True


def text_loader(loader: Callable[..., Dataset]) -> Callable[..., Dataset]:
    """``loader`` with :class:`TextOptions`' fields as keyword-only parameters in place of its
    ``options`` parameter (which receives them as one ``TextOptions``): the signature the dataset
    registry, the CLI and the spec read, each default written once."""
    own = inspect.signature(loader)
    at = list(own.parameters).index("options")
    shared = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
        for f in fields(TextOptions)
    ]
    params = list(own.parameters.values())
    signature = own.replace(parameters=[*params[:at], *shared, *params[at + 1 :]])

    @functools.wraps(loader)
    def load(*args: Any, **kwargs: Any) -> Dataset:
        try:
            arguments = signature.bind(*args, **kwargs)
        except TypeError as err:  # as Python words it for a plain function
            raise TypeError(f"{loader.__name__}() {err}") from None
        arguments.apply_defaults()
        values = dict(arguments.arguments)
        options = TextOptions(**{f.name: values.pop(f.name) for f in fields(TextOptions)})
        dataset = loader(**values, options=options)
        unknown = dataset.meta["unknown_test_tokens"]
        if unknown > UNKNOWN_WARN_SHARE:  # warned here, so the warning names the loader's caller
            warnings.warn(_unknown_message(dataset.name, unknown, dataset.meta["tokenizer"]), stacklevel=2)
        dev = dataset.meta.get(VALIDATION_MASK)
        fitted = dataset.y_train if dev is None else dataset.y_train[~dev]  # (the training rows, not the dev file's)
        if note := classes_without_rows(fitted, dataset.class_names, dataset.name, named=" of label_names"):
            warnings.warn(note, stacklevel=2)  # (as the IDX and ARFF loaders warn)
        return dataset

    load.__signature__ = signature  # type: ignore[attr-defined]
    return load


def read_splits(
    paths: tuple[Path | str, Path | str | None, Path | str | None],
    documents: Callable[[Path], Documents],
    params: dict[str, Any],
    options: TextOptions,
    *,
    what: str,
    name: str,
    sources: Callable[[Path], list[Path]] = lambda path: [path],
) -> Dataset:
    """A text Dataset from the ``(train, test or None, dev or None)`` paths, each read by
    ``documents``.  ``params`` (the format and its parse options) and the files ``sources``
    lists per path key the parse cache; ``name`` and ``what`` (``"text tables"``) name the
    dataset and its source unless ``options`` does."""
    fraction = resolve_test_fraction(paths[1], options.test_fraction)
    files = [None if p is None else Path(p) for p in paths]
    present = [f for f in files if f is not None]
    keyed = [s for f in present for s in sources(f)]
    encoding = {
        f.name: getattr(options, f.name)
        for f in fields(options)
        if f.name not in ("test_fraction", "name", "source")
    }
    return encode_text(
        lambda: tuple(None if f is None else documents(f) for f in files),  # type: ignore[return-value]
        keyed,
        {**params, "roles": [f is not None for f in files[1:]]},
        test_fraction=fraction,
        name=options.name or name,
        source=options.source or f"{what} {', '.join(map(str, present))}",
        **encoding,
    )


def _unknown_message(name: str, share: float, tokenizer: str) -> str:
    hint = {
        "word": "for Chinese, Japanese or Thai text try tokenizer='char'; else a subword tokenizer file "
        "(tokenizer='path/to/tokenizer.json')",
        "char": "try a subword tokenizer file (tokenizer='path/to/tokenizer.json')",
    }.get(tokenizer, "try tokenizer='char', or a tokenizer file trained on text like this")
    return (
        f"dataset {name!r}: {share:.0%} of the test tokens are unknown to the training vocabulary "
        f"(tokenizer={tokenizer!r}); {hint}"
    )


# --- the TSV/CSV text-table reader -------------------------------------------------------------


@contextlib.contextmanager
def _long_csv_fields() -> Iterator[None]:
    """csv refuses fields over 131,072 characters by default; the whole file is in memory anyway,
    so lift the limit while reading and restore the caller's (it is process-wide)."""
    previous = csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


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
    if header.count(column) > 1:  # (as the table loader refuses a repeated header name: which one is meant?)
        raise ValueError(f"{path}: the header names column {column!r} {header.count(column)} times, for {what}; "
                         "rename one, or pass a 0-based index")  # fmt: skip
    return header.index(column)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _refuse_merged_rows(
    row: list[str], raw: list[str], start: int, path: Path, delimiter: str
) -> None:
    """Refuse a row whose quoted field swallowed line ends where a stray quote merged rows: read strictly, the
    quote closes where no delimiter follows (``"Awful" indeed``) or never.  A quoted cell of text that spans
    lines is read as it is, and a wrong field count there is the caller's plain field-count error (a strict
    reading cannot tell merged rows from a multi-line cell in a row of the wrong width)."""
    try:
        strict = list(csv.reader(raw, delimiter=delimiter, strict=True))
    except csv.Error as err:
        why = f"read strictly, {err}"
    else:
        if len(strict) == 1:
            return
        why = f"read strictly, {len(strict)} rows"
    field = next((i for i, f in enumerate(row) if "\n" in f or "\r" in f), 0)
    opened = start + sum(f.count("\n") for f in row[:field])
    raise ValueError(f"{path}:{opened}: the '\"' that opens a quoted field here swallows the line ends up to line "
                     f"{start + len(raw) - 1} ({why}): rows merged by a stray quote; close it, write it twice (\"\") "
                     "inside a quoted field, or remove it")  # fmt: skip


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
    raw = io.StringIO(read_text(path), newline="").readlines()  # (kept: a row spanning lines is read again)
    reader = csv.reader(iter(raw), delimiter=delimiter, quoting=quoting)
    names, width, header_at = None, None, None
    texts, labels, lines = [], [], []
    end = 0  # the last line of the row before
    try:
        with _long_csv_fields():
            for row in reader:
                start, end = end + 1, reader.line_num
                if any("\n" in f or "\r" in f for f in row):  # a quoted field spans lines: text, or merged rows
                    _refuse_merged_rows(row, raw[start - 1 : end], start, path, delimiter)
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if width is None:
                    width = len(row)
                    names = [c.strip() for c in row] if header else None
                    header_at = start
                    t = _column_index(text_column, names, path, "text_column")
                    lab = _column_index(label_column, names, path, "label_column")
                    for col, what in ((t, "text_column"), (lab, "label_column")):  # (an index, with a header too)
                        if not -width <= col < width:
                            raise ValueError(f"{what}={col} is out of range for {path} ({width} columns)")
                    if t % width == lab % width:  # (the labels would be the text: every test row right)
                        raise ValueError(f"{path}: text_column={text_column!r} and label_column={label_column!r} are "
                                         "one column; the text and the label are two")  # fmt: skip
                    if header:
                        continue
                if len(row) != width:  # (a row over lines is named by its first, as below)
                    over = f" (the row runs to line {end}: a quoted field holds line ends)" if end > start else ""
                    raise ValueError(f"{path}:{start}: expected {width} fields, got {len(row)}{over}")
                if not row[lab].strip():  # (it would become a class named "")
                    raise ValueError(f"{path}:{reader.line_num}: the label is empty")
                texts.append(row[t])
                labels.append(row[lab].strip())
                lines.append(start)
    except csv.Error as err:
        raise ValueError(f"{path}:{reader.line_num}: {err}") from None
    if not texts:
        raise ValueError(f"{path}: no data rows")
    if names is not None and names[lab] in labels:  # (a headerless file's first row read as its header)
        again = lines[labels.index(names[lab])]
        raise ValueError(f"{path}:{header_at}: the header's label cell {names[lab]!r} is also the label of line {again}: "
                         "a first row of data read as the header? pass header=False (and column indices)")  # fmt: skip
    if all(_is_number(s) or not s.strip() for s in texts):
        column = names[t] if names else t
        raise ValueError(
            f"{path}: text column {column!r} holds only numbers, no text; for a numeric table use the "
            f"'table' loader (lossbench datasets table path={path})"
        )
    return texts, labels, lines


@text_loader
def load_text_table(
    train_path: Path | str,
    test_path: Path | str | None = None,
    *,
    dev_path: Path | str | None = None,
    text_column: str | int = "sentence",
    label_column: str | int = "label",
    delimiter: str | None = None,
    header: bool = True,
    options: TextOptions,
) -> Dataset:
    """A text Dataset from a training table and a test table (or a ``test_fraction`` of the
    training one), with an optional dev table as the validation split (see the module docstring)."""
    read_args = {
        "text_column": text_column,
        "label_column": label_column,
        "delimiter": delimiter,
        "header": header,
    }

    def documents(path: Path) -> Documents:
        texts, labels, lines = read_text_table(path, **read_args)
        return Documents(texts, labels, [f"{path}:{n}" for n in lines])

    return read_splits(
        (train_path, test_path, dev_path),
        documents,
        {"format": "table", **read_args},
        options,
        what="text tables",
        # the folder's name, also for a relative path ("train.tsv"); a file at / gives its stem
        name=Path(os.path.abspath(train_path)).parent.name or Path(train_path).stem,
    )
