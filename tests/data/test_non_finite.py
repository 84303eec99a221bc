"""Non-finite numbers in data files are refused with the file and line (record for IDX).

One ``inf`` in a feature makes every run on the data diverge; ``nan`` written as a number is not
the format's missing value (``?``).  Each test writes its own tiny file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lossbench.data import load_adult, load_dataset, load_idx, parse_arff, read_idx

from .writers import idx_bytes, write, write_idx_set

ARFF_HEAD = "@relation r\n@attribute x numeric\n@attribute class {a,b}\n@data\n"
ADULT_ROW = (
    "{age}, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, "
    "2174, 0, 40, United-States, <=50K\n"
)


@pytest.mark.parametrize("token", ["inf", "-inf", "Infinity", "nan", "1e999"])
def test_arff_refuses_non_finite_with_file_and_line(tmp_path, token):
    path = write(tmp_path / "t.arff", ARFF_HEAD + "1.0, a\n" + f"{token}, b\n")
    with pytest.raises(ValueError, match=rf"t\.arff:6: attribute 'x': '{token}' is not a finite number"):
        parse_arff(path)


def test_arff_sparse_row_refuses_inf(tmp_path):
    path = write(tmp_path / "s.arff", ARFF_HEAD + "{0 inf, 1 b}\n")
    with pytest.raises(ValueError, match=r"s\.arff:5: attribute 'x': 'inf' is not a finite number"):
        parse_arff(path)


@pytest.mark.parametrize("token", ["inf", "nan", "-1e400"])
def test_adult_refuses_non_finite_with_file_and_line(tmp_path, token):
    train = write(tmp_path / "adult.data", ADULT_ROW.format(age=30) + ADULT_ROW.format(age=token))
    test = write(tmp_path / "adult.test", ADULT_ROW.format(age=40))
    with pytest.raises(ValueError, match=rf"adult\.data:2: age '{token}' is not a finite number"):
        load_adult(train, test, cache=False)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_idx_refuses_non_finite_with_file_and_record(tmp_path, bad, dtype):
    a = np.zeros((3, 2, 2), dtype=dtype)
    a[2, 1, 0] = bad
    path = write(tmp_path / "x-idx3-ubyte", idx_bytes(a))
    with pytest.raises(ValueError, match=r"x-idx3-ubyte: record 2 \(index \(2, 1, 0\)\) holds .*not a finite number"):
        read_idx(path)


def test_idx_dataset_with_inf_image_is_refused(tmp_path):
    write_idx_set(tmp_path, gz=False)
    images = np.ones((6, 4, 5), dtype=np.float32)
    images[4, 0, 0] = np.inf
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(images))
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: record 4 "):
        load_idx(*(tmp_path / n for n in names), cache=False)


def test_a_directory_given_for_a_file_is_one_line(tmp_path):
    (tmp_path / "d.arff").mkdir()
    with pytest.raises(ValueError, match=r"cannot read .*d\.arff: Is a directory"):
        parse_arff(tmp_path / "d.arff")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("loader", ["arff", "fasttext_file", "table"])
def test_a_fifo_or_a_device_is_refused_before_it_is_read(tmp_path, loader):
    # a FIFO blocked the loader for ever (nothing writes to it), /dev/zero filled the memory
    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        if not path.exists():
            continue
        with pytest.raises(ValueError, match=r"not a regular file \(a FIFO, socket or device\)"):
            load_dataset(loader, path=str(path))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_spec_file_that_is_a_fifo_is_refused(tmp_path):
    from lossbench.bench.spec import SpecError, load_spec

    os.mkfifo(tmp_path / "spec.toml")
    with pytest.raises(SpecError, match=r"cannot read spec file .*: not a regular file"):
        load_spec(tmp_path / "spec.toml")
