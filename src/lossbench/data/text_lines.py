"""Label-first line formats: one document per line, its label(s) in front.

- fastText (``fasttext_file``): ``__label__pos some text``; the label is what follows the
  ``label_prefix``.  A line with several labels (``__label__a __label__b text``), or an empty one
  (``__label__ text``), is an error naming the file and line: these loaders are single-label.
- TREC question classification (``trec_file``): ``DESC:manner How did serfdom develop ?``;
  ``label="coarse"`` takes ``DESC`` (6 classes in TREC), ``label="fine"`` the whole
  ``DESC:manner`` (50; fine names such as ``other`` recur under several coarse ones).

Blank lines are skipped; files are read as UTF-8 or, failing that, Latin-1 (TREC's are), and
``.gz``/``.bz2`` are decompressed.  Without ``test_path`` a seeded stratified ``test_fraction``
of the lines is held out; ``dev_path`` is the provided validation split.  Tokens, ids, layout as
in ``lossbench.data.text``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lossbench.data._dataset import Dataset
from lossbench.data._files import read_text, split_lines
from lossbench.data.text import Documents, TextOptions, read_splits, text_loader

TREC_LABELS = ("coarse", "fine")

LineParser = Callable[[str, str], tuple[str, str]]  # (line, "file:line") -> (label, text)


def read_lines(path: Path, parse: LineParser) -> Documents:
    texts, labels, where = [], [], []
    for number, line in enumerate(split_lines(read_text(path)), 1):
        if not line.strip():
            continue
        label, text = parse(line, f"{path}:{number}")
        labels.append(label)
        texts.append(text)
        where.append(f"{path}:{number}")
    if not texts:
        raise ValueError(f"{path}: no labelled lines")
    return Documents(texts, labels, where)


def fasttext_parser(label_prefix: str) -> LineParser:
    def parse(line: str, where: str) -> tuple[str, str]:
        rest, labels = line.lstrip(), []
        while rest.startswith(label_prefix):
            head, *tail = rest.split(None, 1)
            labels.append(head[len(label_prefix) :])
            rest = tail[0] if tail else ""
        if not labels and (later := next((w for w in rest.split() if w.startswith(label_prefix)), None)):
            raise ValueError(f"{where}: its label {later!r} follows the text; a fastText line here starts with "
                             f"exactly one {label_prefix}<label>")  # fmt: skip
        if len(labels) != 1:
            found = "no labels" if not labels else f"{len(labels)} labels ({', '.join(labels)})"
            raise ValueError(
                f"{where}: {found}; a fastText line here starts with exactly one "
                f"{label_prefix}<label> (multi-label lines are not supported)"
            )
        if not labels[0]:  # ("__label__ text": a class named "", as text_table refuses)
            raise ValueError(f"{where}: the label is empty ({label_prefix} with nothing after it)")
        later = next((w for w in rest.split() if w.startswith(label_prefix)), None)
        if later is not None:  # (fastText reads a label anywhere on the line: kept as a word, it would be a feature)
            raise ValueError(f"{where}: a second label {later!r} after the text; a fastText line here starts with "
                             f"exactly one {label_prefix}<label> (multi-label lines are not supported)")  # fmt: skip
        return labels[0], rest

    return parse


def trec_parser(label: str) -> LineParser:
    def parse(line: str, where: str) -> tuple[str, str]:
        head, *rest = line.strip().split(None, 1)  # (a tab after the label, as some copies have, or a space)
        text = rest[0] if rest else ""
        coarse, colon, fine = head.partition(":")
        if not (colon and coarse and fine):
            raise ValueError(f"{where}: expected 'COARSE:fine text' (TREC), got {line[:60]!r}")
        return (coarse if label == "coarse" else head), text

    return parse


def _read_line_splits(
    kind: str,
    parse: LineParser,
    format_params: dict[str, Any],
    paths: tuple[Any, Any, Any],
    options: TextOptions,
) -> Dataset:
    return read_splits(
        paths,
        lambda f: read_lines(f, parse),
        {"format": kind, **format_params},
        options,
        what=f"{kind} files",
        name=Path(paths[0]).stem,
    )


@text_loader
def load_fasttext_file(
    path: Path | str,
    test_path: Path | str | None = None,
    *,
    dev_path: Path | str | None = None,
    label_prefix: str = "__label__",
    options: TextOptions,
) -> Dataset:
    """A text Dataset from fastText ``__label__x text`` lines (see the module docstring)."""
    if not (isinstance(label_prefix, str) and label_prefix.strip() == label_prefix and label_prefix):
        raise ValueError(f"label_prefix must be a non-empty string without spaces, got {label_prefix!r}")
    paths = (path, test_path, dev_path)
    return _read_line_splits(
        "fastText", fasttext_parser(label_prefix), {"label_prefix": label_prefix}, paths, options
    )


@text_loader
def load_trec_file(
    path: Path | str,
    test_path: Path | str | None = None,
    *,
    dev_path: Path | str | None = None,
    label: str = "coarse",
    options: TextOptions,
) -> Dataset:
    """A text Dataset from TREC ``COARSE:fine text`` lines, labelled by the ``label`` level."""
    if label not in TREC_LABELS:
        raise ValueError(f"label must be one of {TREC_LABELS}, got {label!r}")
    return _read_line_splits(
        "TREC", trec_parser(label), {"label": label}, (path, test_path, dev_path), options
    )
