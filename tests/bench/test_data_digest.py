"""A stored study resumes or grows only on the data it ran on: a changed file, a relative path read
from another folder or a changed loader would mix two data sets in one leaderboard."""

from __future__ import annotations

import optuna
import pytest
import torch

from lossbench.bench.runner import Runner
from lossbench.bench.spec import SpecError, parse_spec
from lossbench.bench.storage import DATA_ATTR, default_storage_url, open_storage


def _spec(path, seeds=2):
    return parse_spec({
        "name": "mine", "trials": 2, "seeds": seeds, "sampler": "random",
        "train": {"model": "linear", "epochs": 2, "batch_size": 16},
        "datasets": [{"name": "table", "label": "mine", "params": {"path": str(path), "label": "y"}}],
        "methods": [{"name": "ce", "loss": "cross_entropy"}],
    }, "test")  # fmt: skip


def _write(path, flip=False):
    rows = ["a,b,y"] + [f"{i % 7},{(i * 3) % 5},{(i % 2) ^ flip}" for i in range(60)]
    path.write_text("\n".join(rows) + "\n")


def test_a_study_grows_on_its_own_data_and_refuses_other_data(tmp_path):
    data = tmp_path / "mine.csv"
    _write(data)
    storage = open_storage(default_storage_url(tmp_path / "out"), 10)
    Runner(_spec(data), storage, torch.device("cpu")).run()
    stored = optuna.load_study(study_name="mine", storage=storage).user_attrs[DATA_ATTR]
    assert list(stored) == ["mine"]
    Runner(_spec(data, seeds=3), storage, torch.device("cpu"))  # the same data: it grows

    _write(data, flip=True)  # the file changed in place
    trials = len(storage.get_all_trials(storage.get_study_id_from_name("mine:tune:mine:ce")))
    with pytest.raises(SpecError, match=r"dataset 'mine': its data differ from those study 'mine' was run on"):
        Runner(_spec(data, seeds=4), storage, torch.device("cpu"))
    assert optuna.load_study(study_name="mine", storage=storage).user_attrs[DATA_ATTR] == stored  # nothing written
    assert len(storage.get_all_trials(storage.get_study_id_from_name("mine:tune:mine:ce"))) == trials
