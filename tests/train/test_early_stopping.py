"""Early stopping ([train] early_stopping): a run reports the checkpoint of its best validation epoch,
packed and unpacked alike; final runs hold the validation part out; bad settings are refused."""

from __future__ import annotations

import math

import pytest
import torch

from lossbench.bench.execution import BEST_EPOCH, DataCache, train_and_score, train_and_score_packed
from lossbench.bench.methods import resolve_method
from lossbench.bench.metrics import compute_metrics
from lossbench.bench.spec import SpecError, parse_spec


def _spec(early_stopping=True, **top):
    return parse_spec(
        {
            "name": "stop", "trials": 2, "seeds": 2, **top,
            "train": {"model": "mlp", "model_params": {"width": 32, "depth": 1}, "optimizer": "adam", "epochs": 6,
                      "batch_size": 32, "lr_final": 0.0, "early_stopping": early_stopping},
            "datasets": ["wine"],
            "methods": [{"name": "ce", "loss": "cross_entropy"},
                        {"name": "flood", "loss": "cross_entropy", "transforms": [{"name": "flooding", "params": {"b": 0.1}}]}],
        }
    )  # fmt: skip


# A large constant learning rate makes validation accuracy move up and down between epochs.
RUNS = [({"lr": 0.3, "weight_decay": 0.0}, 1), ({"lr": 0.05, "weight_decay": 1e-4}, 2)]


@pytest.mark.parametrize("stage", ["tune", "final"])
def test_a_run_reports_the_checkpoint_of_its_best_validation_epoch(stage):
    spec = _spec()
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], stage)
    for params, seed in RUNS:
        result = train_and_score(split, resolve_method(spec.methods[0]), params, spec, seed)
        val = result.curves["heldout_accuracy" if stage == "tune" else "val_accuracy"]
        assert len(val) == spec.train.epochs
        best = max(range(len(val)), key=lambda e: (val[e], -e))  # the first epoch of the best score
        assert result.metrics[BEST_EPOCH] == best
        # The reported score is that epoch's held-out score, not the last epoch's.
        assert result.metrics["accuracy"] == result.curves["heldout_accuracy"][best]


def test_final_runs_hold_the_validation_part_out_and_score_the_test_split():
    spec = _spec()
    cache = DataCache(spec, torch.device("cpu"))
    tune, final = cache.get(spec.datasets[0], "tune"), cache.get(spec.datasets[0], "final")
    assert torch.equal(final.x_fit, tune.x_fit) and torch.equal(final.x_val, tune.x_eval)
    assert torch.equal(final.x_eval, tune.dataset.x_test) and tune.x_val is None
    plain = DataCache(_spec(early_stopping=False), torch.device("cpu")).get(spec.datasets[0], "final")
    assert plain.x_val is None and len(plain.y_fit) == len(tune.y_fit) + len(tune.y_eval)


def test_a_run_without_early_stopping_reports_its_last_epoch():
    spec = _spec(early_stopping=False)
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "final")
    result = train_and_score(split, resolve_method(spec.methods[0]), RUNS[0][0], spec, RUNS[0][1])
    assert BEST_EPOCH not in result.metrics and "val_accuracy" not in result.curves
    assert result.metrics["accuracy"] == result.curves["heldout_accuracy"][-1]


@pytest.mark.parametrize("stage", ["tune", "final"])
@pytest.mark.parametrize("method", [0, 1])
def test_packed_and_unpacked_runs_keep_the_same_checkpoint(stage, method):
    spec = _spec()
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], stage)
    m = resolve_method(spec.methods[method])
    alone = [train_and_score(split, m, params, spec, seed) for params, seed in RUNS]
    packed = train_and_score_packed(split, m, RUNS, spec)
    for a, p in zip(alone, packed):
        assert a.metrics[BEST_EPOCH] == p.metrics[BEST_EPOCH]
        assert a.metrics["accuracy"] == pytest.approx(p.metrics["accuracy"], abs=1e-6)
        for key in a.curves:
            assert a.curves[key] == pytest.approx(p.curves[key], rel=1e-4, abs=1e-5)


def test_a_run_whose_every_epoch_diverged_reports_its_last_epoch_as_diverged():
    spec = _spec()
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    result = train_and_score(split, resolve_method(spec.methods[0]), {"lr": 1e38, "weight_decay": 0.0}, spec, 0)
    assert all(math.isnan(v) for v in result.curves["heldout_accuracy"])  # a nan epoch never wins
    assert result.metrics["diverged"] == 1.0 and result.metrics[BEST_EPOCH] == spec.train.epochs - 1


def test_the_kept_scores_are_the_metrics_of_the_kept_logits():
    # compute_metrics on the best epoch's logits is what the run reports, for every metric.
    spec = _spec()
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    from lossbench.bench import execution

    kept = {}
    original = execution._RunScores.result

    def spy(self, fit_logits, seconds):
        kept["logits"] = self.best[2]
        return original(self, fit_logits, seconds)

    execution._RunScores.result = spy
    try:
        result = train_and_score(split, resolve_method(spec.methods[0]), RUNS[0][0], spec, RUNS[0][1])
    finally:
        execution._RunScores.result = original
    expected = compute_metrics(kept["logits"], split.y_eval, split.task, split.num_classes)
    assert {k: result.metrics[k] for k in expected} == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train": {"early_stopping": "yes"}}, "field 'early_stopping' must be bool"),
        ({"train": {"early_stopping": 1}}, "field 'early_stopping' must be bool"),
        ({"train": {"early_stopping": True, "epochs": 1}}, "early_stopping chooses among epochs"),
        ({"train": {"early_stopping": True}, "tie_break": "train_metric"}, "cannot apply with [train] early_stopping"),
    ],
)
def test_bad_early_stopping_settings_are_one_line_errors(change, message):
    doc = {"name": "x", "datasets": ["wine"], "methods": [{"name": "ce", "loss": "cross_entropy"}]}
    doc.update(change)
    with pytest.raises(SpecError) as err:
        parse_spec(doc)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_spec_without_early_stopping_keeps_its_stored_form():
    # Specs stored before the option existed keep their fingerprint: the key appears only when set.
    assert "early_stopping" not in _spec(early_stopping=False).to_json()
    on = _spec(early_stopping=True)
    assert '"early_stopping": true' in on.to_json()
    from lossbench.bench.spec import spec_from_json

    assert spec_from_json(on.to_json()) == on
    assert spec_from_json(_spec(early_stopping=False).to_json()) == _spec(early_stopping=False)
