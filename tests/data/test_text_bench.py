"""A text file with a dev file through the bench's data path: the dev rows are the validation
split; ragged documents train one run at a time and say why they do not pack."""

from __future__ import annotations

import math

import torch

from lossbench.bench.execution import DataCache, train_and_score, unpackable
from lossbench.bench.methods import resolve_method
from lossbench.bench.spec import parse_spec

from .writers import write

LINES = "".join(
    f"__label__{'pos' if i % 2 else 'neg'} {'good' if i % 2 else 'bad'} film number{i % 4}\n"
    for i in range(24)
)


def _spec(tmp_path, **params):
    train = write(tmp_path / "train.txt", LINES)
    dev = write(tmp_path / "dev.txt", "__label__pos good\n__label__neg bad\n__label__pos fine good\n")
    return parse_spec(
        {
            "name": "text", "trials": 1, "seeds": 2,
            "train": {"model": "fasttext", "model_params": {"embed_dim": 8}, "optimizer": "adam", "epochs": 3, "batch_size": 8},
            "datasets": [{"name": "fasttext_file", "params": {"path": str(train), "dev_path": str(dev), "cache": False, **params}}],
            "methods": [{"name": "ce", "loss": "cross_entropy"}],
        }
    )  # fmt: skip


def test_the_dev_file_is_what_tuning_scores_on(tmp_path):
    spec = _spec(tmp_path)
    cache = DataCache(spec, torch.device("cpu"))
    tune, final = (cache.get(spec.datasets[0], s) for s in ("tune", "final"))
    assert tune.y_eval.tolist() == [1, 0, 1] and len(tune.y_fit) == 24 - 5  # 5 test lines held out
    assert len(final.y_fit) == 24 - 5 + 3  # the final runs train on training and dev rows
    assert (tune.validation, final.validation) == ("provided", None)  # what the runs record, and the report says
    result = train_and_score(tune, resolve_method(spec.methods[0]), {"lr": 0.05}, spec, seed=0)
    assert math.isfinite(result.metrics["accuracy"])
    reason = unpackable(tune, resolve_method(spec.methods[0]), spec)
    assert reason is not None and "layout='padded'" in reason


def test_padded_layout_packs(tmp_path):
    spec = _spec(tmp_path, layout="padded")
    tune = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    assert tune.x_fit.ndim == 2 and isinstance(tune.x_fit, torch.Tensor)
    assert unpackable(tune, resolve_method(spec.methods[0]), spec) is None
