"""Writers for the tiny files the format tests read."""

from __future__ import annotations

import bz2
import gzip
import struct
from pathlib import Path

import numpy as np

IDX_CODES = {
    np.dtype("uint8"): 0x08,
    np.dtype("int8"): 0x09,
    np.dtype("int16"): 0x0B,
    np.dtype("int32"): 0x0C,
    np.dtype("float32"): 0x0D,
    np.dtype("float64"): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path: Path, data: bytes | str, compress: str | None = None) -> Path:
    if isinstance(data, str):
        data = data.encode()
    if compress == "gzip":
        data = gzip.compress(data)
    elif compress == "bzip2":
        data = bz2.compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_idx_set(
    directory: Path,
    n_train: int = 6,
    n_test: int = 4,
    size: tuple[int, int] = (4, 5),
    classes: int = 3,
    gz: bool = True,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *size), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % classes).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % classes).astype(np.uint8),
    }
    for name, a in arrays.items():
        write(directory / (name + (".gz" if gz else "")), idx_bytes(a), "gzip" if gz else None)
    return arrays
