"""IDX (MNIST-family) files written by the tests: layouts, dtypes and malformed files."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from lossbench.data import load_dataset, load_idx_dir, read_idx

from .writers import idx_bytes, write, write_idx_set


@pytest.mark.parametrize("gz", [True, False])
def test_idx_directory_loads_images_in_unit_range(tmp_path, gz):
    arrays = write_idx_set(tmp_path, gz=gz)
    ds = load_idx_dir(tmp_path)
    assert ds.x_train.shape == (6, 1, 4, 5) and ds.x_test.shape == (4, 1, 4, 5)
    assert ds.x_train.dtype == torch.float32 and ds.feature_kind == "image"
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.float32) / 255)
    assert torch.equal(ds.x_train[:, 0], expected)
    assert ds.y_train.tolist() == [0, 1, 2, 0, 1, 2] and ds.y_test.tolist() == [0, 1, 2, 0]
    assert ds.class_names == ["0", "1", "2"] and ds.input_shape == (1, 4, 5)


def test_dotted_file_names_are_found(tmp_path):
    arrays = write_idx_set(tmp_path / "src", gz=False)
    for name, a in arrays.items():
        write(tmp_path / "dotted" / name.replace("-idx", ".idx"), idx_bytes(a))
    assert torch.equal(load_idx_dir(tmp_path / "dotted").x_test, load_idx_dir(tmp_path / "src").x_test)


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "float32", "float64"])
def test_read_idx_decodes_big_endian_types(tmp_path, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
    out = read_idx(write(tmp_path / "x-idx3", idx_bytes(a)))
    assert np.array_equal(out.numpy(), a)


def test_bad_magic_number_names_the_file(tmp_path):
    path = write(tmp_path / "bad", b"\x08\x00\x08\x03" + b"\x00" * 20)
    with pytest.raises(ValueError, match=r"bad: not an IDX file \(magic number 08000803"):
        read_idx(path)


def test_truncated_gzip_names_the_file(tmp_path):
    data = gzip.compress(idx_bytes(np.zeros((10, 4, 4), np.uint8)))
    path = write(tmp_path / "train-images-idx3-ubyte.gz", data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz: corrupt or truncated gzip"):
        read_idx(path)


def test_payload_shorter_than_header_declares(tmp_path):
    data = idx_bytes(np.zeros((10, 4, 4), np.uint8))[:-16]
    with pytest.raises(ValueError, match=r"short: header declares shape \(10, 4, 4\) \(160 bytes.*holds 144"):
        read_idx(write(tmp_path / "short", data))


def test_image_label_count_mismatch(tmp_path):
    write_idx_set(tmp_path, gz=False)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(
        ValueError,
        match=r"train-images-idx3-ubyte holds 6 images but .*train-labels-idx1-ubyte holds 5 labels",
    ):
        load_idx_dir(tmp_path, cache=False)


def test_missing_file_is_named(tmp_path):
    write_idx_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError, match=r"no test labels file \(expected e.g. t10k-labels-idx1-ubyte.gz\)"):
        load_idx_dir(tmp_path)


def test_registered_mnist_checks_its_checksums(tmp_path):
    write_idx_set(tmp_path / "mnist", size=(28, 28), classes=10, n_train=20, n_test=10)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz: SHA-256 [0-9a-f]{64} matches none"):
        load_dataset("mnist", data_dir=tmp_path, download=False)
    ds = load_dataset("mnist", data_dir=tmp_path, download=False, verify=False)
    assert ds.x_train.shape == (20, 1, 28, 28) and ds.num_classes == 10


@pytest.mark.parametrize("split", ["train", "t10k"])
def test_a_split_with_zero_records_is_named(tmp_path, split):
    write_idx_set(tmp_path, gz=False)
    write(tmp_path / f"{split}-images-idx3-ubyte", idx_bytes(np.zeros((0, 4, 5), np.uint8)))
    write(tmp_path / f"{split}-labels-idx1-ubyte", idx_bytes(np.zeros(0, np.uint8)))
    with pytest.raises(ValueError, match=rf"^\S*{split}-labels-idx1-ubyte: no records \(0 labels; "):
        load_idx_dir(tmp_path, cache=False)


def test_a_header_whose_size_overflows_64_bits_names_the_file(tmp_path):
    # 65536**4 bytes is 2**64: a product in int64 wraps to 0, which an empty payload matched
    path = write(tmp_path / "huge", bytes([0, 0, 0x08, 4]) + struct.pack(">4I", *[65536] * 4))
    with pytest.raises(ValueError, match=r"huge: header declares shape \(65536, 65536, 65536, 65536\) \(18446744073709551616 "):
        read_idx(path)


def test_a_test_label_training_never_shows_is_refused(tmp_path):
    write_idx_set(tmp_path, gz=False)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.array([0, 1, 2, 3], np.uint8)))
    with pytest.raises(ValueError, match=r"test_labels='.*t10k-labels-idx1-ubyte': labels \['3'\] do not occur in the training"):
        load_idx_dir(tmp_path, cache=False)


def test_labels_that_skip_values_warn_of_the_classes_without_a_row(tmp_path):
    # labels {0, 5}: six classes, four of them without a sample, silently (the ARFF loader warns)
    write_idx_set(tmp_path, gz=False)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.array([0, 5, 0, 5, 0, 5], np.uint8)))
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.array([0, 5, 5, 0], np.uint8)))
    with pytest.warns(UserWarning, match=r"class\(es\) \['1', '2', '3', '4'\] have no training row"):
        data = load_idx_dir(tmp_path, cache=False)
    assert data.num_classes == 6


def test_a_label_far_beyond_the_others_is_refused(tmp_path):
    # one label 3,000,000 made 3,000,001 classes with a warning (2**31 - 1 would exhaust memory)
    write_idx_set(tmp_path, gz=False)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.array([0, 1, 2, 0, 3_000_000, 2], np.int32)))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: record 4 has the label 3000000, which would make "
                                         r"3000001 classes \(0 .. the largest\) for 4 distinct labels; refused above "
                                         r"1000 classes and 10x the distinct labels"):  # fmt: skip
        load_idx_dir(tmp_path, cache=False)
    # labels that skip values within the rule load, with the warning above
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.array([0, 1, 2, 0, 39, 2], np.int32)))
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.array([0, 1, 2, 39], np.int32)))
    with pytest.warns(UserWarning, match="have no training row"):
        assert load_idx_dir(tmp_path, cache=False).num_classes == 40


def test_test_images_of_another_idx_type_than_the_training_images_are_refused(tmp_path):
    # bytes are scaled to [0, 1] and other types read as they are: int16 test images beside uint8 training
    # images were on a 255 times larger scale, silently
    arrays = write_idx_set(tmp_path, gz=False)
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(arrays["t10k-images-idx3-ubyte"].astype(np.int16)))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: images of IDX type int16, the training images' uint8"):
        load_idx_dir(tmp_path, cache=False)


def test_too_few_class_names_name_the_file_that_holds_the_largest_label(tmp_path):
    write_idx_set(tmp_path, gz=False)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.array([0, 1, 0, 1, 0, 1], np.uint8)))
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.array([0, 1, 2, 1], np.uint8)))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte: record 2 has the label 2, but only 2 class names"):
        load_idx_dir(tmp_path, class_names=["a", "b"], cache=False)


@pytest.mark.parametrize("cache", [False, True])
def test_float64_images_beyond_float32s_range_are_refused_naming_the_record(tmp_path, cache, monkeypatch):
    # (finite in float64, they were read as float32's inf; the table and ARFF loaders refuse such values)
    monkeypatch.setenv("LOSSBENCH_CACHE_DIR", str(tmp_path / "cache"))
    arrays = write_idx_set(tmp_path / "set", gz=False)
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        images = arrays[name].astype(np.float64)
        if name.startswith("t10k"):
            images[2, 1, 3] = 1e39
        write(tmp_path / "set" / name, idx_bytes(images))
    for _ in range(2 if cache else 1):  # (a second load reads the parse cache's entry)
        with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: record 2 holds a value beyond float32's range"):
            load_idx_dir(tmp_path / "set", cache=cache)
