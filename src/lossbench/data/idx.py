"""IDX files (the MNIST family's format, LeCun et al. 1998).

An IDX file starts with a 4-byte magic number -- two zero bytes, a type code (0x08 uint8,
0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64) and the number of dimensions
-- then one big-endian uint32 per dimension, then the values, big-endian, row-major.
gzip-compressed files are read transparently.  Images become ``float32 (N, 1, H, W)`` in
``[0, 1]`` (uint8 divided by 255; other types are used as stored).
"""

from __future__ import annotations

import math
import re
import struct
import warnings
from pathlib import Path

import torch

from lossbench.data._cache import cached
from lossbench.data._dataset import Dataset, check_test_labels, classes_without_rows
from lossbench.data._files import read_bytes
from lossbench.data._tabular import FLOAT32_MAX

IDX_TYPES = {
    0x08: ("u1", 1),
    0x09: ("i1", 1),
    0x0B: (">i2", 2),
    0x0C: (">i4", 4),
    0x0D: (">f4", 4),
    0x0E: (">f8", 8),
}
SPLIT_PREFIXES = {"train": ("train",), "test": ("t10k", "test")}
# Labels are read as classes 0 .. the largest; beyond this many classes, and more than SPARSE_LABELS times the
# distinct labels the files hold, they are refused: a stray label (3,000,000) would make millions of classes.
MAX_SPARSE_CLASSES = 1000
SPARSE_LABELS = 10


def read_idx(path: Path | str) -> torch.Tensor:
    """The array stored in an IDX file; ValueError naming the file if it is malformed."""
    import numpy as np

    data = read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES or data[3] == 0:
        raise ValueError(
            f"{path}: not an IDX file (magic number {data[:4].hex() or 'missing'}; expected "
            "00 00 <type 08/09/0b/0c/0d/0e> <ndim>)"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes for {ndim} dimensions)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype, size = IDX_TYPES[data[2]]
    expected = size * math.prod(shape)  # Python ints: a huge header's product does not wrap around
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: header declares shape {shape} ({expected} bytes of data) but the file holds "
            f"{len(data) - header} bytes; it is truncated or corrupt"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        flat = int(np.flatnonzero(~np.isfinite(array))[0])
        index = np.unravel_index(flat, shape)
        raise ValueError(
            f"{path}: record {index[0]} (index {tuple(int(i) for i in index)}) holds "
            f"{array.flat[flat]}, not a finite number"
        )
    return torch.from_numpy(array.astype(array.dtype.newbyteorder("="), copy=True))


def find_idx_files(directory: Path | str) -> dict[str, Path]:
    """The four files of an IDX dataset in ``directory``, by role.

    Roles ``train_images``, ``train_labels``, ``test_images``, ``test_labels`` match
    ``{train|t10k|test}-{images|labels}[-.]idx{3|1}-ubyte[.gz]`` (MNIST's and Fashion-MNIST's
    names, with or without gzip); where a file and its ``.gz`` are both there (one decompressed beside the
    download), the uncompressed one is read.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"IDX directory not found: {directory}")
    files = sorted(p for p in directory.iterdir() if p.is_file())
    found: dict[str, Path] = {}
    for split, prefixes in SPLIT_PREFIXES.items():
        for kind, dims in (("images", 3), ("labels", 1)):
            pattern = re.compile(rf"^(?:{'|'.join(prefixes)})-{kind}[-.]idx{dims}-ubyte(?:\.gz)?$")
            matches = [p for p in files if pattern.match(p.name)]
            role = f"{split}_{kind}"
            if not matches:
                raise ValueError(
                    f"{directory}: no {role.replace('_', ' ')} file (expected e.g. "
                    f"{prefixes[0]}-{kind}-idx{dims}-ubyte.gz)"
                )
            if len({m.name.removesuffix(".gz") for m in matches}) > 1:
                raise ValueError(f"{directory}: several {role} files: {', '.join(m.name for m in matches)}")
            found[role] = matches[0]
    return found


def _parse_idx_pair(images: Path, labels: Path) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3:
        raise ValueError(f"{images}: expected (N, rows, cols) images, got shape {tuple(x.shape)}")
    if y.ndim != 1:
        raise ValueError(f"{labels}: expected (N,) labels, got shape {tuple(y.shape)}")
    if len(x) != len(y):
        raise ValueError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels")
    if len(y) == 0:
        raise ValueError(f"{labels}: no records (0 labels; {images} holds 0 images)")
    if y.is_floating_point() or (len(y) and int(y.min()) < 0):
        raise ValueError(f"{labels}: labels must be non-negative integers")
    return x, y.long()


def load_idx(
    train_images: Path | str,
    train_labels: Path | str,
    test_images: Path | str,
    test_labels: Path | str,
    *,
    class_names: list[str] | None = None,
    name: str = "idx",
    source: str | None = None,
    cache: bool = True,
) -> Dataset:
    """An image Dataset from four IDX files (images ``(N, H, W)``, labels ``(N,)``).

    ``class_names`` defaults to ``"0" .. str(max label)``; without it, labels that would make more than
    ``MAX_SPARSE_CLASSES`` classes and ``SPARSE_LABELS`` times the distinct labels are refused.
    """
    paths = [Path(p) for p in (train_images, train_labels, test_images, test_labels)]

    def parse() -> dict[str, torch.Tensor]:
        x_train, y_train = _parse_idx_pair(paths[0], paths[1])
        x_test, y_test = _parse_idx_pair(paths[2], paths[3])
        if x_train.shape[1:] != x_test.shape[1:]:
            raise ValueError(
                f"{paths[2]}: image size {tuple(x_test.shape[1:])} differs from "
                f"the training images' {tuple(x_train.shape[1:])}"
            )
        return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}

    p = cached("idx", {}, paths, parse, cache=cache)
    for key, path in (("x_train", paths[0]), ("x_test", paths[2])):  # (after the cache: an entry read back too)
        x = p[key]
        beyond = (x.abs() > FLOAT32_MAX).flatten(1).any(1) if x.is_floating_point() and x.dtype.itemsize > 4 else None
        if beyond is not None and bool(beyond.any()):
            record = int(beyond.nonzero()[0])
            raise ValueError(f"{path}: record {record} holds a value beyond float32's range (±{FLOAT32_MAX:.4g}), "
                             "in which the images are read")  # fmt: skip
    if p["x_train"].dtype != p["x_test"].dtype:  # (bytes are scaled to [0, 1], other types read as they are)
        raise ValueError(f"{paths[2]}: images of IDX type {str(p['x_test'].dtype).removeprefix('torch.')}, the training "
                         f"images' {str(p['x_train'].dtype).removeprefix('torch.')}: the two parts would be on different scales")  # fmt: skip
    num_classes = max(int(p["y_train"].max()), int(p["y_test"].max())) + 1
    distinct = len(torch.cat([p["y_train"], p["y_test"]]).unique())
    if class_names is None and num_classes > MAX_SPARSE_CLASSES and num_classes > SPARSE_LABELS * distinct:
        k, y = (1, p["y_train"]) if int(p["y_train"].max()) == num_classes - 1 else (3, p["y_test"])
        raise ValueError(f"{paths[k]}: record {int(y.argmax())} has the label {num_classes - 1}, which would make "
                         f"{num_classes} classes (0 .. the largest) for {distinct} distinct labels; refused above "
                         f"{MAX_SPARSE_CLASSES} classes and {SPARSE_LABELS}x the distinct labels: relabel the files, "
                         "or pass class_names= for every class")  # fmt: skip
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    elif len(class_names) < num_classes:
        k, y = (1, p["y_train"]) if int(p["y_train"].max()) == num_classes - 1 else (3, p["y_test"])
        raise ValueError(
            f"{paths[k]}: record {int(y.argmax())} has the label {num_classes - 1}, but only {len(class_names)} "
            "class names were given"
        )
    check_test_labels(p["y_train"], p["y_test"], list(class_names), f"test_labels={str(paths[3])!r}")
    # (as the ARFF loader warns of declared classes without a row)
    if note := classes_without_rows(p["y_train"], list(class_names), str(paths[1]), why=" (labels are read as 0 .. the largest)"):
        warnings.warn(note, stacklevel=2)

    def images(x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        return x.unsqueeze(1)

    return Dataset(
        name=name,
        task="multiclass",
        x_train=images(p["x_train"]),
        y_train=p["y_train"],
        x_test=images(p["x_test"]),
        y_test=p["y_test"],
        class_names=list(class_names),
        feature_kind="image",
        source=source or f"IDX files in {paths[0].parent}",
    )


def load_idx_dir(
    directory: Path | str,
    *,
    class_names: list[str] | None = None,
    name: str | None = None,
    cache: bool = True,
) -> Dataset:
    """``load_idx`` on the four standard files found in ``directory`` (``find_idx_files``)."""
    f = find_idx_files(directory)
    return load_idx(
        f["train_images"],
        f["train_labels"],
        f["test_images"],
        f["test_labels"],
        class_names=class_names,
        name=name or Path(directory).name,
        cache=cache,
    )
