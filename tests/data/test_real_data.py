"""The real datasets in ../shared/data load with the row and class counts of its README.

Each test skips (naming the dataset) where its dataset's files are absent (``need_data``).
Loading also verifies each file against its registered SHA-256.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lossbench.cli import main
from lossbench.data import load_dataset

from .conftest import need_data

# name: (train rows, test rows, classes, per-sample feature shape)
EXPECTED = {
    "mnist": (60000, 10000, 10, (1, 28, 28)),
    "sst2": (67349 + 872, 1821, 2, None),  # train.tsv's phrases, then dev.tsv's sentences (the validation split)
    "adult": (32561, 16281, 2, (105,)),
    "car": (1382, 346, 4, (21,)),  # 1728 rows, 20 % stratified test split
    "letter": (16000, 4000, 26, (16,)),  # 20000 rows
    "scene": (1926, 481, 6, (294,)),  # 2407 rows, 6 labels
}


@pytest.mark.parametrize("name", EXPECTED)
def test_real_dataset_counts(name):
    n_train, n_test, classes, shape = EXPECTED[name]
    ds = load_dataset(name, data_dir=need_data(name))
    assert (len(ds.y_train), len(ds.y_test), ds.num_classes) == (n_train, n_test, classes)
    if shape is not None:
        assert ds.input_shape == shape
    assert torch.isfinite(ds.x_train.float()).all() and torch.isfinite(ds.x_test.float()).all()


def test_mnist_pixels_and_label_counts():
    ds = load_dataset("mnist", data_dir=need_data("mnist"))
    assert ds.x_train.min() == 0 and ds.x_train.max() == 1
    assert ds.class_counts.long().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert ds.y_test.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_sst2_dev_split_and_vocabulary():
    ds = load_dataset("sst2", data_dir=need_data("sst2"), test_split="dev")
    assert len(ds.y_test) == 872 and ds.class_counts.long().tolist() == [29780, 37569]
    assert ds.meta["vocab"][2] == "the" and (ds.x_train[:, 0] != 0).all()


def test_sst2_validates_on_dev_s_sentences_not_on_pieces_of_its_training_phrases():
    from lossbench.data.splits import provided_validation

    shared = need_data("sst2")
    ds, on_dev = load_dataset("sst2", data_dir=shared), load_dataset("sst2", data_dir=shared, test_split="dev")
    fit_idx, val_idx = provided_validation(ds)
    assert val_idx.tolist() == list(range(67349, 67349 + 872))  # dev.tsv's rows, after train.tsv's
    assert torch.equal(ds.y_train[val_idx], on_dev.y_test) and ds.meta["vocab"] == on_dev.meta["vocab"]  # (train.tsv's)
    assert provided_validation(on_dev) is None


def test_uci_class_totals():
    shared = need_data("car", "adult")
    car = load_dataset("car", data_dir=shared)
    assert (car.class_counts + torch.bincount(car.y_test, minlength=4)).long().tolist() == [1210, 384, 69, 65]
    adult = load_dataset("adult", data_dir=shared)
    assert adult.class_counts.long().tolist() == [24720, 7841]


def test_scene_labels():
    ds = load_dataset("scene", data_dir=need_data("scene"))
    assert ds.task == "multilabel" and ds.class_names == [
        "beach",
        "sunset",
        "foliage",
        "field",
        "mountain",
        "urban",
    ]
    total = ds.class_counts + ds.y_test.sum(0)
    assert total.long().tolist() == [427, 364, 397, 433, 533, 431]


def test_datasets_command_sees_the_real_sets(capsys):
    shared = need_data(*EXPECTED)
    assert main(["datasets", "--data-dir", str(shared)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    for name in EXPECTED:
        assert lines[name].split()[4] == "yes", lines[name]


def test_sst2_refuses_a_test_file_other_than_the_pinned_one(tmp_path):
    shared = need_data("sst2")
    folder = tmp_path / "sst2"
    folder.mkdir()
    for name in ("train.tsv", "dev.tsv"):
        (folder / name).symlink_to(Path(shared) / "sst2" / name)
    lines = (Path(shared) / "sst2" / "test.tsv").read_text().splitlines()
    flipped = [lines[0], *(f"{text}\t{1 - int(label)}" for text, label in (line.rsplit("\t", 1) for line in lines[1:]))]
    (folder / "test.tsv").write_text("\n".join(flipped) + "\n")  # every label flipped: the same size, other bytes
    with pytest.raises(ValueError, match="test.tsv: SHA-256"):
        load_dataset("sst2", data_dir=tmp_path, download=False, cache=False)
