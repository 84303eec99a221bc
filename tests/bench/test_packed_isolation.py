"""Runs packed together never see each other: not through a loss that couples its batch's rows
(EXACT's batch standardisation, LDAM-DRW's weighted mean), and not when one of them diverges."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from lossbench.bench.execution import (
    DataCache,
    _shared_loss,
    train_and_score,
    train_and_score_packed,
    unpackable,
)
from lossbench.bench.methods import resolve_method
from lossbench.bench.spec import parse_spec
from lossbench.losses import get_loss

METHODS = [
    {"name": "exact", "loss": "exact", "params": {"standardize": True}, "transforms": ["grad_normalizer"],
     "schedule": {"loss.sigma": {"start": 10.0, "end": 0.01, "endpoint": False}}},
    {"name": "ce", "loss": "cross_entropy", "transforms": ["clip_norm"]},
    {"name": "flooding", "loss": "cross_entropy", "transforms": ["flooding"]},
    {"name": "ldam_drw", "loss": "ldam", "params": {"drw_start": 0.5}},  # a weighted mean from epoch 2 on
]  # fmt: skip


def _spec():
    return parse_spec(
        {
            "name": "isolation", "trials": 3, "seeds": 2, "sampler": "random",
            "train": {"model": "linear", "optimizer": "sgd", "momentum": 0.9, "epochs": 3, "batch_size": 32,
                      "lr_final": 1e-3, "weight_decay_on": "weights"},
            "search": {"lr": {"choices": [0.05, 1e30]}, "weight_decay": {"choices": [0.0, 1e30]}},
            "datasets": ["wine"], "methods": METHODS,
        }
    )  # fmt: skip


@pytest.mark.parametrize("index", range(len(METHODS)))
def test_a_diverging_run_leaves_its_pack_mates_as_they_are_alone(index):
    spec = _spec()
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    method = resolve_method(spec.methods[index])
    assert unpackable(split, method, spec) is None
    sane, wild = {"lr": 0.05, "weight_decay": 0.0}, {"lr": 1e30, "weight_decay": 1e30}
    runs = [(sane, 3), (wild, 4), (sane, 5)]  # equal loss arguments: the runs may share loss calls
    packed = train_and_score_packed(split, method, runs, spec)
    assert packed[1].diverged  # the premise: one pack mate blows up
    for k in (0, 2):
        alone = train_and_score(split, method, runs[k][0], spec, runs[k][1])
        assert not alone.diverged
        for key, value in alone.metrics.items():
            assert packed[k].metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
        for key, values in alone.curves.items():
            assert all(math.isfinite(v) for v in packed[k].curves[key]), key
            assert packed[k].curves[key] == pytest.approx(values, rel=1e-4, abs=1e-5), key


def test_exact_is_batch_level_exactly_when_it_standardises():
    info = get_loss("exact")
    assert info.is_batch_level({"standardize": True})
    assert not info.is_batch_level({"standardize": False}) and not info.is_batch_level({})
    assert get_loss("soft_f1").is_batch_level({}) and not get_loss("cross_entropy").is_batch_level({})
    assert get_loss("ldam").is_batch_level({"drw_start": 0.8}) and not get_loss("ldam").is_batch_level({"drw_start": None})


def test_runs_share_a_loss_call_only_where_the_loss_keeps_each_run_its_own_batch():
    spec = _spec()
    params = [{"lr": 0.05, "weight_decay": 0.0}, {"lr": 1.0, "weight_decay": 0.1}]
    exact, ldam_drw = resolve_method(spec.methods[0]), resolve_method(spec.methods[3])
    assert _shared_loss(exact, params) == [[0, 1]]  # standardised per run, in one call (batch_groups)
    assert _shared_loss(ldam_drw, params) == []  # its weighted mean would mix the runs' rows


def test_runs_that_differ_in_row_parameters_share_a_call():
    exact = resolve_method(_spec().methods[0])
    margins, sigmas = [None, 1.0, 2.0, None, 0.0], [0.5, 2.0, 0.7, 3.0, 0.5]
    params = [{"lr": 0.05, "loss.margin": m, "loss.sigma": s} for m, s in zip(margins, sigmas)]
    # each row of a call takes its run's sigma and margin, None (no clip) as inf
    assert _shared_loss(exact, params) == [[0, 1, 2, 3, 4]]
    without = dataclasses.replace(exact, loss=dataclasses.replace(exact.loss, row_none={}))
    assert sorted(_shared_loss(without, params)) == [[0, 3], [1, 2, 4]]  # a None without a row value: apart
    params[4]["loss.standardize"] = False
    assert sorted(_shared_loss(exact, params)) == [[0, 1, 2, 3], [4]]


def test_a_run_whose_adam_step_overflows_diverges_packed_as_alone():
    """Adam's step is (step m) / denom, as torch.optim orders it: where g * g overflows (here through the
    weight decay's g + wd p), denom is inf and torch's inf / inf makes the run nan; m / denom first would
    give 0 and keep it finite, packed only."""
    spec = _spec()
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, optimizer="adam", momentum=0.0))
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    method = resolve_method(spec.methods[1])
    runs = [({"lr": 0.05, "weight_decay": 0.0}, 3), ({"lr": 1e30, "weight_decay": 1e30}, 4)]
    packed = train_and_score_packed(split, method, runs, spec)
    alone = [train_and_score(split, method, params, spec, seed) for params, seed in runs]
    assert [r.diverged for r in alone] == [False, True]  # the premise
    assert [r.diverged for r in packed] == [r.diverged for r in alone]
    for key, value in alone[0].metrics.items():
        assert packed[0].metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


def test_exact_standardised_in_a_shared_call_gives_each_run_its_value_alone_at_huge_logits():
    """A shared call standardises each run's block in float64, as the kernel alone does: a float32 sum of
    squares would overflow past logits of about 1e19 and stop that run's training, packed only."""
    from lossbench.losses import LOSSES
    from lossbench.train.packed import PackedLosses

    info = LOSSES.get("exact")
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(3, 40, 3, generator=g), torch.randint(0, 3, (40,), generator=g)
    logits[1] *= 1e30
    losses = [info.module(standardize=True, validate=False) for _ in range(3)]
    shared = PackedLosses(losses, [[0, 1, 2]], info.row_params, info.batch_groups, info.row_none)
    alone = torch.stack([loss(logits[k], y, reduction="mean") for k, loss in enumerate(losses)])
    assert shared(logits, y.expand(3, 40)) == pytest.approx(alone, rel=1e-4)
