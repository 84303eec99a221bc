"""Folders of documents, one sub-folder per class (as 20 Newsgroups is shipped).

``path/<class>/<document>``: every regular file in a class folder is one document (names
starting with ``.`` are skipped), read as UTF-8 or, failing that, Latin-1 (20 Newsgroups' posts
hold Latin-1 bytes); ``.gz``/``.bz2`` files are decompressed.  Classes are the training folder's
sub-folders; a test (``test_path``) or dev (``dev_path``) folder may hold a subset of them.
Without ``test_path`` a seeded stratified ``test_fraction`` of the documents is held out.
Tokens, ids, layout and the provided validation split as in ``lossbench.data.text``.
"""

from __future__ import annotations

from pathlib import Path

from lossbench.data._dataset import Dataset
from lossbench.data._files import read_text
from lossbench.data.text import DEFAULT_MAX_LENGTH, Documents, encode_text, resolve_test_fraction


def list_documents(folder: Path) -> list[tuple[str, Path]]:
    """``(class, file)`` for every document under ``folder/<class>/``, sorted."""
    if not folder.is_dir():
        raise ValueError(f"text folder not found: {folder}")
    found = []
    classes = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"{folder}: no class sub-folders (expected {folder}/<class>/<document>)")
    for d in classes:
        files = sorted(f for f in d.iterdir() if f.is_file() and not f.name.startswith("."))
        if not files:
            raise ValueError(f"{d}: class folder holds no documents")
        found.extend((d.name, f) for f in files)
    return found


def _documents(listed: list[tuple[str, Path]] | None) -> Documents | None:
    if listed is None:
        return None
    return Documents([read_text(f) for _, f in listed], [c for c, _ in listed], [str(f) for _, f in listed])


def load_text_folder(
    path: Path | str,
    test_path: Path | str | None = None,
    *,
    dev_path: Path | str | None = None,
    test_fraction: float | None = None,
    seed: int = 0,
    label_names: list[str] | None = None,
    tokenizer: str = "word",
    lowercase: bool = True,
    min_count: int = 1,
    max_vocab: int | None = None,
    hash_buckets: int | None = None,
    max_length: int | None = DEFAULT_MAX_LENGTH,
    layout: str = "bags",
    name: str | None = None,
    source: str | None = None,
    cache: bool = True,
) -> Dataset:
    """A text Dataset from ``path/<class>/<document>`` (and a test / dev folder of the same shape)."""
    fraction = resolve_test_fraction(test_path, test_fraction)
    folders = [None if p is None else Path(p) for p in (path, test_path, dev_path)]
    listed = [None if f is None else list_documents(f) for f in folders]
    present = [f for f in folders if f is not None]
    return encode_text(
        lambda: tuple(_documents(x) for x in listed),  # type: ignore[return-value]
        [f for x in listed if x is not None for _, f in x],
        {"format": "folder", "roles": [f is not None for f in folders[1:]]},
        test_fraction=fraction,
        seed=seed,
        label_names=label_names,
        tokenizer=tokenizer,
        lowercase=lowercase,
        min_count=min_count,
        max_vocab=max_vocab,
        hash_buckets=hash_buckets,
        max_length=max_length,
        layout=layout,
        name=name or Path(path).name,
        source=source or f"text folders {', '.join(map(str, present))}",
        cache=cache,
    )
