"""Image classification trees: ``root/<split>/<class>/<image>`` (torchvision's ImageFolder layout).

Classes are the training split's sub-directories, sorted by name; the test split may use a
subset of them; a class's images are the files in its folder and in the folders below it, as
ImageFolder reads them (a file without an image suffix is skipped, with a warning).  Hidden folders
and files (names starting with ``.``) are skipped, as in ``text_folder``.  Images (``.png .jpg .jpeg
.bmp .gif .tif .tiff .webp .ppm .pgm .pbm``, read with Pillow) become ``float32 (N, C, H, W)`` in ``[0, 1]``:

- channels: ``channels=1`` converts to grayscale (Pillow's ``L``: ITU-R 601-2 luma),
  ``channels=3`` to RGB; ``None`` picks 1 when every image is grayscale, else 3;
- depth: 8-bit images are divided by 255, 16-bit grayscale ones (Pillow's ``I;16`` modes, and
  ``I`` when its values lie in 0..65535) by 65535; ``F`` and wider ``I`` images have no defined
  range and are refused (a ValueError names the file);
- size: ``size=None`` requires every image to have the training split's first image size
  (a ValueError names the first that differs); ``size=(H, W)`` or an int resizes every image
  with bilinear filtering (no cropping, so the aspect ratio may change);
- orientation: an EXIF orientation tag (a phone's photo) is applied, so an image is read as it is shown
  (torchvision's ImageFolder reads the pixels as stored).
"""

from __future__ import annotations

import contextlib
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from lossbench._checks import first_few
from lossbench.data._cache import cached
from lossbench.data._dataset import Dataset
from lossbench.data._files import class_folders, files_below

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
WIDE = 65535  # the full scale of 16-bit grayscale, as 255 is of 8-bit images
PARSE_VERSION = 4  # 2: 16-bit images scaled by 65535 (were clipped at 255); 3: a class's sub-folders read, PPM/PGM/PBM;
# 4: EXIF orientation applied
# images; part of the parse-cache key


def _list_split(root: Path, split: str) -> list[tuple[str, list[Path]]]:
    folder = root / split
    if not folder.is_dir():
        raise ValueError(f"image folder split not found: {folder} (root= holds train/<class>/ and test/<class>/ folders of images)")
    classes = []
    for d in class_folders(folder, stacklevel=3):
        files = files_below(d)  # (its sub-folders' too, as torchvision's ImageFolder reads a class)
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise ValueError(f"{d}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        if others := [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]:  # (skipped, as ImageFolder does)
            warnings.warn(f"{d}: {len(others)} file(s) without an image suffix not read: {first_few(p.name for p in others)}",
                          stacklevel=3)  # fmt: skip
        classes.append((d.name, images))
    if not classes:
        raise ValueError(f"{folder}: no class sub-directories")
    return classes


# What Pillow raises for a damaged file, past its OSErrors: a bomb's error, and the parsers' own ValueError (a
# PGM's text header, a TIFF's dimensions, a PNG's oversized text chunk), SyntaxError, struct.error, IndexError.
_DAMAGED = (OSError, ValueError, SyntaxError, struct.error, IndexError, TypeError)
ORIENTATION = 0x0112  # the EXIF tag of how a camera turned the pixels it stored


@contextlib.contextmanager
def _readable(f: Path) -> Iterator[None]:
    """What Pillow raises for the damaged file ``f`` within, as one ValueError naming it."""
    from PIL import Image

    try:
        yield
    except (*_DAMAGED, Image.DecompressionBombError) as err:  # (the bomb's is no OSError)
        raise ValueError(f"{f}: not a readable image ({type(err).__name__}: {err})") from None


def _open(f: Path):
    from PIL import Image

    with _readable(f):
        return Image.open(f)


def _wide_mode(im) -> bool:
    return im.mode in ("I", "F") or im.mode.startswith("I;")


def _wide_gray(im, f: Path):
    """A 16- or 32-bit grayscale image as uint16 pixels: ``convert("L")`` would clip them at 255."""
    import numpy as np

    a = np.asarray(im)
    if a.dtype.kind == "f" or (a.size and (a.min() < 0 or a.max() > WIDE)):
        raise ValueError(
            f"{f}: mode {im.mode} image with values in [{a.min()}, {a.max()}] has no defined range "
            f"(8-bit: 0..255, 16-bit: 0..{WIDE}); save it as an 8- or 16-bit image"
        )
    return a.astype(np.uint16)


def _read_images(files: list[Path], channels: int | None, size: tuple[int, int] | None) -> torch.Tensor:
    """The images as uint8, or uint16 when one is 16-bit (8-bit ones times 257: the same fraction)."""
    import numpy as np
    from PIL import Image, ImageOps

    if channels is None:  # Image.open reads only the header: a cheap first pass
        gray = True
        for f in files:
            with _open(f) as im:
                gray = gray and im.mode in GRAYSCALE_MODES
        channels = 1 if gray else 3
    mode = "L" if channels == 1 else "RGB"
    expected = size
    out = None
    for i, f in enumerate(files):
        wide = None
        with _open(f) as im, _readable(f):  # (its pixels decoded here)
            if im.getexif().get(ORIENTATION, 1) != 1:  # (as it is shown: a phone's photo stores its pixels turned)
                im = ImageOps.exif_transpose(im)
            im = im if _wide_mode(im) else im.convert(mode)
            im.load()
        if _wide_mode(im):
            wide = _wide_gray(im, f)
            im = Image.fromarray(wide.astype(np.float32))  # mode F: resized without clipping
        if size is not None:
            im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        elif expected is None:
            expected = (im.height, im.width)
        elif (im.height, im.width) != expected:
            raise ValueError(
                f"{f}: image is {im.height}x{im.width} but earlier images are {expected[0]}x{expected[1]}; "
                "pass size=[H, W] (a spec or the command line; size=(H, W) in Python) to resize"
            )
        if out is None:
            out = np.empty((len(files), channels, *expected), dtype=np.uint8)
        if wide is not None:
            if out.dtype == np.uint8:
                out = out.astype(np.uint16) * 257  # v / 255 == 257 v / 65535
            out[i] = np.clip(np.rint(np.asarray(im)), 0, WIDE).astype(np.uint16)  # repeated over RGB
        else:
            a = np.asarray(im, dtype=np.uint8)
            a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
            out[i] = a if out.dtype == np.uint8 else a.astype(np.uint16) * 257
    return torch.from_numpy(out)


def load_image_folder(
    root: Path | str,
    *,
    train: str = "train",
    test: str = "test",
    size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    name: str | None = None,
    cache: bool = True,
) -> Dataset:
    """An image Dataset from ``root/<train>/<class>/*`` and ``root/<test>/<class>/*``."""
    root = Path(root)
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    if isinstance(size, int):
        size = (size, size)
    if size is not None and not (len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
        raise ValueError(f"size must be a positive int or (H, W), got {size!r}")
    train_classes, test_classes = _list_split(root, train), _list_split(root, test)
    class_names = [c for c, _ in train_classes]
    index = {c: i for i, c in enumerate(class_names)}
    for c, _ in test_classes:
        if c not in index:
            raise ValueError(f"{root / test / c}: class {c!r} does not occur in {root / train}")
    train_files = [(f, index[c]) for c, files in train_classes for f in files]
    test_files = [(f, index[c]) for c, files in test_classes for f in files]
    all_files = [f for f, _ in train_files + test_files]

    def parse() -> dict[str, torch.Tensor]:
        x = _read_images(all_files, channels, tuple(size) if size else None)
        return {"x": x}

    params = {"train": train, "test": test, "size": size, "channels": channels, "version": PARSE_VERSION}
    x = cached("imagefolder", params, all_files, parse, cache=cache)["x"]
    x = x.float().div_(torch.iinfo(x.dtype).max)  # 255 or 65535: [0, 1] whatever the depth
    y = torch.tensor([c for _, c in train_files + test_files], dtype=torch.int64)
    n = len(train_files)
    return Dataset(
        name=name or root.name,
        task="multiclass",
        x_train=x[:n],
        y_train=y[:n],
        x_test=x[n:],
        y_test=y[n:],
        class_names=class_names,
        feature_kind="image",
        source=f"image folder {root} ({train}/, {test}/)",
    )
