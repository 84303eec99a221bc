"""ImageFolder trees written by the tests: grayscale/RGB, sizes, classes, unreadable files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lossbench.data import load_image_folder


def save(path, array, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)
    return array


def gray_tree(root, size=(6, 5)):
    rng = np.random.default_rng(0)
    pixels = {}
    for split, n in (("train", 3), ("test", 1)):
        for cls in ("dog", "cat"):
            for i in range(n):
                pixels[(split, cls, i)] = save(
                    root / split / cls / f"{i}.png", rng.integers(0, 256, size, dtype=np.uint8)
                )
    return pixels


def test_grayscale_tree(tmp_path):
    pixels = gray_tree(tmp_path)
    ds = load_image_folder(tmp_path)
    assert ds.class_names == ["cat", "dog"]  # sorted directory names
    assert ds.x_train.shape == (6, 1, 6, 5) and ds.x_test.shape == (2, 1, 6, 5)
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1, 1] and ds.y_test.tolist() == [0, 1]
    assert torch.equal(ds.x_train[3, 0], torch.from_numpy(pixels[("train", "dog", 0)] / 255.0).float())


def test_rgb_images_give_three_channels_and_can_be_made_gray(tmp_path):
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        save(tmp_path / split / "a" / "x.png", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
        save(tmp_path / split / "b" / "y.jpg", rng.integers(0, 256, (4, 4), dtype=np.uint8), "JPEG")
    rgb = load_image_folder(tmp_path)
    assert rgb.x_train.shape == (2, 3, 4, 4)
    gray = load_image_folder(tmp_path, channels=1)
    assert gray.x_train.shape == (2, 1, 4, 4)
    # a grayscale image converted to RGB repeats its channel
    assert torch.equal(rgb.x_train[1, 0], rgb.x_train[1, 2])


def test_sizes_must_agree_unless_resized(tmp_path):
    gray_tree(tmp_path)
    save(tmp_path / "test" / "cat" / "big.png", np.zeros((9, 9), np.uint8))
    with pytest.raises(ValueError, match=r"big.png: image is 9x9 but earlier images are 6x5; pass size"):
        load_image_folder(tmp_path)
    ds = load_image_folder(tmp_path, size=(4, 3))
    assert ds.x_train.shape == (6, 1, 4, 3) and ds.x_test.shape == (3, 1, 4, 3)


def test_test_class_missing_from_training(tmp_path):
    gray_tree(tmp_path)
    save(tmp_path / "test" / "bird" / "0.png", np.zeros((6, 5), np.uint8))
    with pytest.raises(ValueError, match=r"class 'bird' does not occur in"):
        load_image_folder(tmp_path)


def test_unreadable_image_is_named(tmp_path):
    gray_tree(tmp_path)
    (tmp_path / "train" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"broken.png: not a readable image"):
        load_image_folder(tmp_path)


def test_an_image_past_pillows_size_limit_is_named(tmp_path):
    """A header claiming 20000 x 20000 pixels: Pillow's DecompressionBombError (no OSError) named the file nowhere."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    gray_tree(tmp_path)
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0))
    (tmp_path / "train" / "cat" / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IEND", b""))
    with pytest.raises(ValueError, match=r"bomb.png: not a readable image \(DecompressionBombError: Image size \(400000000 pixels\)"):
        load_image_folder(tmp_path, cache=False)


def test_a_link_to_nothing_is_warned_of_as_it_is_skipped(tmp_path):
    # (left out unsaid: a class's count one lower)
    gray_tree(tmp_path)
    (tmp_path / "train" / "cat" / "moved.png").symlink_to(tmp_path / "gone.png")
    with pytest.warns(UserWarning, match=r"train/cat: links to nothing skipped: \['moved.png'\]"):
        data = load_image_folder(tmp_path, cache=False)
    assert len(data.y_train) == 6


def test_an_image_pillows_parser_refuses_with_a_value_error_is_named(tmp_path):
    # (a text PGM with a typo in its header: Pillow's ValueError came as a traceback, the file unnamed)
    gray_tree(tmp_path)
    (tmp_path / "train" / "cat" / "typo.pgm").write_bytes(b"P2\n6 x\n255\n" + b"0 " * 30)
    with pytest.raises(ValueError, match=r"typo.pgm: not a readable image \(ValueError: invalid literal"):
        load_image_folder(tmp_path, cache=False)


def test_a_photo_turned_by_its_exif_orientation_is_read_as_it_is_shown(tmp_path):
    # (a phone stores its pixels as the sensor read them, and the turn in EXIF: read as stored, the photo was
    # sideways, and refused beside upright ones of the same shape as it is shown)
    upright = np.zeros((8, 6, 3), dtype=np.uint8)
    upright[:4, :, 0] = 255  # red above, blue below
    upright[4:, :, 2] = 255
    for split in ("train", "test"):
        for cls in ("a", "b"):
            save(tmp_path / split / cls / "plain.png", upright)
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright, -1)))  # (8 x 6 turned: 6 high, 8 wide)
    exif = Image.Exif()
    exif[0x0112] = 8  # (turn it a quarter counter-clockwise to show it)
    stored.save(tmp_path / "train" / "a" / "phone.png", exif=exif.tobytes())
    data = load_image_folder(tmp_path, cache=False)
    assert data.input_shape == (3, 8, 6)
    assert all(torch.equal(image, data.x_train[0]) for image in data.x_train)


def test_empty_class_folder_and_missing_split(tmp_path):
    gray_tree(tmp_path)
    (tmp_path / "train" / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: class folder holds no images"):
        load_image_folder(tmp_path)
    (tmp_path / "train" / "empty").rmdir()
    with pytest.raises(ValueError, match=r"split not found: .*valid .*holds train/<class>/ and test/<class>/"):
        load_image_folder(tmp_path, test="valid")


def test_16_bit_images_are_scaled_by_65535(tmp_path):
    # Pillow's convert("L") clips 16-bit values above 255: both classes would be white.
    dark, bright = np.full((3, 2), 1000, np.uint16), np.full((3, 2), 60000, np.uint16)
    for split in ("train", "test"):
        save(tmp_path / split / "dark" / "0.png", dark)
        save(tmp_path / split / "bright" / "0.png", bright)
    Image.frombytes("I;16B", (2, 3), bright.astype(">u2").tobytes()).save(
        tmp_path / "train" / "bright" / "1.tif"
    )
    save(tmp_path / "train" / "dark" / "1.png", np.full((3, 2), 51, np.uint8))  # 8-bit beside 16-bit
    ds = load_image_folder(tmp_path)
    assert ds.class_names == ["bright", "dark"] and ds.x_train.shape == (4, 1, 3, 2)
    assert ds.x_train[:, 0, 0, 0].tolist() == [
        torch.tensor(60000 / 65535).item(), torch.tensor(60000 / 65535).item(),
        torch.tensor(1000 / 65535).item(), torch.tensor(51 / 255).item(),
    ]  # fmt: skip
    assert torch.equal(load_image_folder(tmp_path, channels=3).x_train[:, 1], ds.x_train[:, 0])
    assert (
        load_image_folder(tmp_path, size=(2, 2)).x_train.amax().item() == torch.tensor(60000 / 65535).item()
    )


@pytest.mark.parametrize(
    ("pixels", "mode"), [(np.full((3, 2), 70000, np.int32), "I"), (np.full((3, 2), 0.5, np.float32), "F")]
)
def test_images_without_a_defined_range_are_refused(tmp_path, pixels, mode):
    gray_tree(tmp_path, size=(3, 2))
    Image.fromarray(pixels).save(tmp_path / "train" / "cat" / "wide.tif")
    with pytest.raises(
        ValueError, match=rf"wide.tif: mode {mode} image with values in .* has no defined range"
    ):
        load_image_folder(tmp_path)


def test_hidden_folders_and_files_are_skipped(tmp_path):
    gray_tree(tmp_path)
    save(tmp_path / "train" / ".ipynb_checkpoints" / "0.png", np.zeros((6, 5), np.uint8))  # no class
    (tmp_path / "train" / "cat" / "._0.png").write_bytes(b"\x00\x05\x16\x07")  # macOS's AppleDouble file: no image
    ds = load_image_folder(tmp_path, cache=False)
    assert ds.class_names == ["cat", "dog"] and len(ds.y_train) == 6


def test_images_beside_the_class_folders_are_warned_of(tmp_path):
    # (an image loose in train/ was dropped without a word, where a non-image in a class folder was warned of)
    gray_tree(tmp_path)
    save(tmp_path / "train" / "stray.png", np.zeros((6, 5), dtype=np.uint8))
    with pytest.warns(UserWarning, match=r"train: 1 file\(s\) beside the class folders not read: \['stray.png'\]"):
        assert len(load_image_folder(tmp_path, cache=False).y_train) == 6
