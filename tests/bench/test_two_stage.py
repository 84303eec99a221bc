"""Two-stage methods (``then = {...}``): train with one loss, then fine-tune the same model with another."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch

from lossbench.bench.execution import (
    DataCache,
    check_unit,
    train_and_score,
    train_and_score_packed,
    unpackable,
)
from lossbench.bench.methods import resolve_method
from lossbench.bench.spec import SpecError, parse_spec, spec_from_json
from lossbench.bench.storage import FINGERPRINT_ATTR, SPEC_ATTR

STORED = Path(__file__).resolve().parents[2] / "reproductions" / "lossbench.db"
PARAMS = {"lr": 0.05, "weight_decay": 1e-4}


def _spec(*methods: dict, epochs: int = 3, **train) -> object:
    return parse_spec({
        "name": "two-stage", "trials": 2, "seeds": 2,
        "train": {"model": "linear", "epochs": epochs, "batch_size": 32, **train},
        "datasets": ["wine"], "methods": list(methods) or [{"name": "ce", "loss": "cross_entropy"}],
    })  # fmt: skip


def _method(then: dict | None = None, **extra) -> dict:
    return {"name": "m", "loss": "cross_entropy", **({"then": then} if then else {}), **extra}


def _run(spec, params=PARAMS, seed=3):
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    return train_and_score(split, resolve_method(spec.methods[0]), params, spec, seed)


def test_a_two_stage_run_is_stage_one_alone_for_its_first_epochs_and_then_goes_on():
    alone = _run(_spec(_method()))
    soft_f1 = _run(_spec(_method({"loss": "macro_soft_f1", "epochs": 2})))
    more_ce = _run(_spec(_method({"loss": "cross_entropy", "epochs": 2})))
    for two in (soft_f1, more_ce):
        for key, curve in alone.curves.items():
            assert len(two.curves[key]) == 5 and two.curves[key][:3] == curve  # bit for bit: same seed, same draws
    # The second stage trains on: its losses differ by loss, and the model is not stage one's.
    assert soft_f1.curves["train_loss"][3:] != more_ce.curves["train_loss"][3:]
    assert more_ce.curves["heldout_loss"][3:] != alone.curves["heldout_loss"][-1:] * 2


def test_lr_scale_changes_the_second_stage_only():
    full = _run(_spec(_method({"loss": "cross_entropy", "epochs": 2})))
    small = _run(_spec(_method({"loss": "cross_entropy", "epochs": 2, "lr_scale": 0.01})))
    assert small.curves["train_loss"][:3] == full.curves["train_loss"][:3]
    assert small.curves["train_loss"][3:] != full.curves["train_loss"][3:]
    # A hundredth of the step moves the model less: its held-out loss stays nearer stage one's end.
    end = full.curves["heldout_loss"][2]
    assert abs(small.curves["heldout_loss"][4] - end) < abs(full.curves["heldout_loss"][4] - end)


def test_a_packed_two_stage_unit_trains_as_its_runs_alone():
    spec = _spec(_method({"loss": "macro_soft_f1", "epochs": 2}))
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    method = resolve_method(spec.methods[0])
    assert unpackable(split, method, spec) is None
    runs = [(PARAMS, 3), ({"lr": 0.1, "weight_decay": 0.0}, 4)]
    packed = train_and_score_packed(split, method, runs, spec)
    for (params, seed), together in zip(runs, packed):
        alone = train_and_score(split, method, params, spec, seed)
        assert together.curves["train_loss"] == pytest.approx(alone.curves["train_loss"], rel=1e-4, abs=1e-6)
        assert together.metrics["accuracy"] == pytest.approx(alone.metrics["accuracy"])


def test_a_second_stage_that_cannot_pack_says_why():
    spec = _spec(_method({"loss": "cross_entropy", "epochs": 1, "transforms": ["mgs"]}))
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    assert unpackable(split, resolve_method(spec.methods[0]), spec) == "transform 'mgs' replaces the optimiser step"


def test_the_second_stage_is_searched_under_its_prefix():
    spec = _spec(_method({"loss": "focal", "epochs": 1, "transforms": ["clip_norm"]},
                         search={"then.loss.gamma": {"low": 0.5, "high": 1.5}}))  # fmt: skip
    space = resolve_method(spec.methods[0]).search_space(spec.search)
    assert {"then.loss.gamma", "then.clip_norm.max_norm"} <= set(space)
    assert (space["then.loss.gamma"].low, space["then.loss.gamma"].high) == (0.5, 1.5)
    assert not any(k.startswith(("loss.", "clip_norm.")) for k in space)  # stage one (cross-entropy) has none
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    check_unit(split, resolve_method(spec.methods[0]), spec)  # every end builds
    gammas = [_run(spec, {**PARAMS, "then.loss.gamma": g, "then.clip_norm.max_norm": 1.0}) for g in (0.5, 1.5)]
    assert gammas[0].curves["train_loss"][:3] == gammas[1].curves["train_loss"][:3]
    assert gammas[0].curves["train_loss"][3] != gammas[1].curves["train_loss"][3]


@pytest.mark.parametrize(
    ("method", "message"),
    [
        (_method({"loss": "cross_entropy", "epochs": 0}), "then: epochs must be >= 1, got 0"),
        (_method({"loss": "cross_entropy"}), "then: missing required field 'epochs'"),
        (_method({"loss": "cross_entropy", "epochs": 1, "lr_scale": -1.0}), "lr_scale must be a finite number > 0"),
        (_method({"loss": "cross_entropy", "epochs": 1, "step": 2}), "unknown field(s) ['step']"),
        (_method({"loss": "cross_entropy", "epochs": 1.5}), "field 'epochs' must be int"),
        (_method(search={"then.loss.gamma": {"low": 0, "high": 1}}), "search keys ['then.loss.gamma'] tune a second stage, but"),
        ({**_method(), "then": "focal"}, "field 'then' must be dict"),
    ],
)
def test_a_bad_second_stage_is_one_line_naming_it(method, message):
    with pytest.raises(SpecError, match=None) as err:
        _spec(method)
    assert message in str(err.value) and "\n" not in str(err.value) and "'m'" in str(err.value)


@pytest.mark.parametrize(
    ("then", "search", "message"),
    [
        ({"loss": "no_such_loss", "epochs": 1}, {}, "method 'm then': unknown loss 'no_such_loss'"),
        ({"loss": "focal", "epochs": 1}, {"then.loss.nope": {"low": 0, "high": 1}}, "method 'm then': search key 'loss.nope'"),
        ({"loss": "focal", "epochs": 1, "params": {"nope": 1}}, {}, "loss 'focal' has no parameter 'nope'"),
        ({"loss": "cross_entropy", "epochs": 1, "transforms": ["nope"]}, {}, "unknown transform 'nope'"),
    ],
)
def test_a_second_stage_the_registries_refuse_is_one_line(then, search, message):
    spec = _spec(_method(then, search=search))
    with pytest.raises(SpecError) as err:
        resolve_method(spec.methods[0])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_second_stage_whose_loss_reads_other_logits_is_refused_before_any_run():
    spec = _spec(_method({"loss": "binary_cross_entropy", "epochs": 1}))  # wine has three classes
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    with pytest.raises(SpecError, match="its second stage: loss 'binary_cross_entropy'"):
        check_unit(split, resolve_method(spec.methods[0]), spec)


@pytest.mark.parametrize(
    ("params", "then", "stage"),
    [
        # stage two goes on improving: one of its epochs wins
        (PARAMS, {"loss": "cross_entropy", "epochs": 3}, 2),
        # stage one reaches the best at once, and stage two's ten-fold step makes it worse
        ({"lr": 0.5, "weight_decay": 1e-4}, {"loss": "cross_entropy", "epochs": 3, "lr_scale": 10.0}, 1),
    ],
)
def test_early_stopping_chooses_among_both_stages_epochs(params, then, stage):
    result = _run(_spec(_method(then), early_stopping=True), params)
    (key,) = [k for k in result.curves if k.startswith("heldout_") and k != "heldout_loss"]
    curve, metric = result.curves[key], key.removeprefix("heldout_")
    assert len(result.curves["train_loss"]) == len(curve) == 6
    best = curve.index(max(curve))  # the first best epoch: a tie keeps the earlier
    assert (best < 3) == (stage == 1)  # the case is the one it is meant to be
    assert result.metrics["best_epoch"] == best
    assert result.metrics[metric] == pytest.approx(curve[best])


def test_a_spec_without_a_second_stage_keeps_its_fingerprint_and_one_with_it_round_trips():
    plain = _spec(_method())
    assert "then" not in json.loads(plain.to_json())["methods"][0]  # as a spec stored before the field existed
    staged = _spec(_method({"loss": "focal", "epochs": 2, "params": {"gamma": 1.0}, "transforms": ["clip_norm"],
                            "lr_scale": 0.1}, search={"then.clip_norm.max_norm": {"low": 0.1, "high": 1.0}}))  # fmt: skip
    again = spec_from_json(staged.to_json())
    assert again == staged and again.fingerprint() == staged.fingerprint() != plain.fingerprint()


@pytest.mark.skipif(not STORED.exists(), reason="no stored ledger database in this checkout")
def test_every_stored_spec_keeps_its_stored_fingerprint():
    # immutable: read the file as it is, creating no -wal/-shm beside it
    with sqlite3.connect(f"file:{STORED}?immutable=1", uri=True) as db:
        rows = db.execute(
            "SELECT s.value_json, f.value_json FROM study_user_attributes s JOIN study_user_attributes f "
            "ON s.study_id = f.study_id AND s.key = ? AND f.key = ?", (SPEC_ATTR, FINGERPRINT_ATTR),
        ).fetchall()  # fmt: skip
    assert rows
    for spec_json, fingerprint in rows:
        assert spec_from_json(json.loads(spec_json)).fingerprint() == json.loads(fingerprint)


def test_the_leaderboard_names_both_stages_loss_and_transforms():
    from lossbench.bench.report import _loss_and_transforms

    spec = _spec(_method(), _method({"loss": "focal", "epochs": 1, "transforms": ["mgs"]}, name="ce+mgs"),
                 _method({"loss": "focal", "epochs": 1}, name="two", transforms=["flooding"]))  # fmt: skip
    assert [_loss_and_transforms(m) for m in spec.methods] == [
        ("cross_entropy", ""), ("cross_entropy, then focal", "-, then mgs"), ("cross_entropy, then focal", "flooding, then -")]
