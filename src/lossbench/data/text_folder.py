"""Folders of documents, one sub-folder per class (as 20 Newsgroups is shipped).

``path/<class>/<document>``: every regular file in a class folder, its sub-folders' too, is one
document (names starting with ``.`` are skipped), read as UTF-8 or, failing that, Latin-1 (20 Newsgroups' posts
hold Latin-1 bytes); ``.gz``/``.bz2`` files are decompressed.  Classes are the training folder's
sub-folders; a test (``test_path``) or dev (``dev_path``) folder may hold a subset of them.
Without ``test_path`` a seeded stratified ``test_fraction`` of the documents is held out.
Tokens, ids, layout and the provided validation split as in ``lossbench.data.text``.
"""

from __future__ import annotations

import functools
from pathlib import Path

from lossbench.data._dataset import Dataset
from lossbench.data._files import class_folders, files_below, read_text, visible_entries
from lossbench.data.text import Documents, TextOptions, read_splits, text_loader

# Sub-folder names that are a data set's splits, not its classes.
SPLIT_NAMES = frozenset({"train", "test", "dev", "valid", "validation", "val"})


def list_documents(folder: Path) -> list[tuple[str, Path]]:
    """``(class, file)`` for every document under ``folder/<class>/``, sorted."""
    if not folder.is_dir():
        raise ValueError(f"text folder not found: {folder}")
    found = []
    classes = class_folders(folder)
    if not classes:
        raise ValueError(f"{folder}: no class sub-folders (expected {folder}/<class>/<document>)")
    splits = [d for d in classes if d.name.lower() in SPLIT_NAMES]
    if len(splits) >= 2 and all(e.is_dir() for d in splits for e in visible_entries(d)):  # (IMDb's, 20news-bydate's)
        names = ", ".join(d.name for d in splits)
        raise ValueError(f"{folder}: its sub-folders {names} are splits, not classes (each holds only folders); "
                         f"give path={folder / splits[0].name} and test_path= the other")  # fmt: skip
    for d in classes:
        files = files_below(d)
        if not files:
            raise ValueError(f"{d}: class folder holds no documents")
        found.extend((d.name, f) for f in files)
    return found


@text_loader
def load_text_folder(
    path: Path | str,
    test_path: Path | str | None = None,
    *,
    dev_path: Path | str | None = None,
    options: TextOptions,
) -> Dataset:
    """A text Dataset from ``path/<class>/<document>`` (and a test / dev folder of the same shape)."""
    listing = functools.cache(list_documents)  # listed once: the cache key's files, then read

    def documents(folder: Path) -> Documents:
        listed = listing(folder)
        return Documents(
            [read_text(f) for _, f in listed], [c for c, _ in listed], [str(f) for _, f in listed]
        )

    return read_splits(
        (path, test_path, dev_path),
        documents,
        {"format": "folder"},
        options,
        what="text folders",
        name=Path(path).name,
        sources=lambda folder: [f for _, f in listing(folder)],
    )
