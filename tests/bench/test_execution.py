"""One training run of the bench: its curves, read from the device once, against its final scores."""

from __future__ import annotations

import math

import pytest
import torch

from lossbench.bench.execution import DataCache, check_unit, train_and_score
from lossbench.bench.methods import resolve_method
from lossbench.bench.spec import SpecError, parse_spec


def _spec(selection_metric: str = "accuracy", lr_final: float = 1e-4):
    return parse_spec(
        {
            "name": "curves", "trials": 2, "seeds": 2, "selection_metric": selection_metric,
            "train": {"model": "linear", "epochs": 4, "batch_size": 32, "lr_final": lr_final},
            "datasets": ["wine"],
            "methods": [{"name": "ce", "loss": "cross_entropy"}, {"name": "hinge", "loss": "hinge"}],
        }
    )  # fmt: skip


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
@pytest.mark.parametrize("method", [0, 1])
def test_the_last_curve_point_is_the_final_score(metric, method):
    spec = _spec(metric)
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    result = train_and_score(split, resolve_method(spec.methods[method]), {"lr": 0.05, "weight_decay": 1e-4}, spec, seed=3)
    curves = result.curves
    assert set(curves) == {"train_loss", "heldout_loss", f"heldout_{metric}"}
    assert all(len(v) == spec.train.epochs and all(isinstance(x, float) for x in v) for v in curves.values())
    assert curves[f"heldout_{metric}"][-1] == result.metrics[metric]
    assert all(math.isfinite(x) for v in curves.values() for x in v)
    assert result.metrics["diverged"] == 0.0


def test_a_run_trains_alike_whatever_the_size_of_its_held_out_part():
    # EXACT's Monte Carlo estimator on the held-out rows at each epoch's end drew from the training's generator:
    # ten test rows fewer moved the training losses from the second epoch on
    import dataclasses

    spec = parse_spec({"name": "g", "trials": 2, "seeds": 2, "train": {"model": "linear", "epochs": 3, "batch_size": 32},
                       "datasets": ["wine"], "methods": [{"name": "ex", "loss": "exact", "params": {"estimator": "genz"}}]})  # fmt: skip
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "final")
    method, params = resolve_method(spec.methods[0]), {"lr": 0.1, "weight_decay": 1e-4}
    whole = train_and_score(split, method, params, spec, seed=3)
    fewer = dataclasses.replace(split, x_eval=split.x_eval[:-10], y_eval=split.y_eval[:-10])
    assert train_and_score(fewer, method, params, spec, seed=3).curves["train_loss"] == whole.curves["train_loss"]


def test_a_diverging_run_has_nan_curves_and_is_flagged():
    spec = _spec(lr_final=0.0)  # a constant, absurd learning rate: the logits overflow
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    result = train_and_score(split, resolve_method(spec.methods[0]), {"lr": 1e38, "weight_decay": 0.0}, spec, seed=0)
    assert result.metrics["diverged"] == 1.0 and math.isnan(result.metrics["accuracy"])
    assert math.isnan(result.curves["heldout_accuracy"][-1])


@pytest.mark.parametrize("method", [
    {"name": "ova", "loss": "one_vs_all_focal"},
    {"name": "ova", "loss": "cross_entropy", "then": {"loss": "one_vs_all_focal", "epochs": 1}},  # (its second stage)
])  # fmt: skip
def test_a_loss_reading_each_logit_on_its_own_needs_every_logit_free(method):
    def spec(**model_params):
        return parse_spec({
            "name": "ova", "trials": 2, "seeds": 2,
            "train": {"model": "linear", "epochs": 2, "batch_size": 32, "model_params": model_params},
            "datasets": ["wine"], "methods": [method],
        })  # fmt: skip

    fixed = spec()  # (the linear model fixes class 0's logit at 0 for multiclass data by default)
    split = DataCache(fixed, torch.device("cpu")).get(fixed.datasets[0], "tune")
    with pytest.raises(SpecError, match="loss 'one_vs_all_focal' reads each class's logit on its own.*zero_first_logit = false"):
        check_unit(split, resolve_method(fixed.methods[0]), fixed)
    free = spec(zero_first_logit=False)
    check_unit(split, resolve_method(free.methods[0]), free)
    result = train_and_score(split, resolve_method(free.methods[0]), {"lr": 0.05, "weight_decay": 1e-4}, free, seed=3)
    assert result.metrics["diverged"] == 0.0


@pytest.mark.parametrize("extra", [1, -1])
def test_a_model_that_gives_another_width_than_the_loss_needs_is_refused_before_any_run(extra):
    from torch import nn

    from lossbench.models import MODELS, ModelInfo, register_model

    name = f"off_by_{extra}_for_test"
    register_model(ModelInfo(name, lambda ds, k: nn.Linear(ds.input_shape[0], k + extra), ("tabular",), (), "none", "a test"))
    try:
        spec = parse_spec({"name": "wide", "trials": 2, "seeds": 2, "train": {"model": name, "epochs": 1},
                           "datasets": ["wine"], "methods": [{"name": "ce", "loss": "cross_entropy"}]})  # fmt: skip
        split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
        with pytest.raises(SpecError, match=rf"model '{name}' gives outputs of shape \(8, {3 + extra}\) for 8 samples; "
                                            r"loss 'cross_entropy' needs \(8, 3\)"):  # fmt: skip
            check_unit(split, resolve_method(spec.methods[0]), spec)
    finally:
        MODELS.remove(name)


class _InPlaceAfterTanh(torch.nn.Linear):
    def forward(self, x):
        h = torch.tanh(super().forward(x))
        return h.mul_(0.5)  # (tanh's backward needs its output: autograd refuses the backward pass)


class _BrokenWhenScoring(torch.nn.Linear):
    def forward(self, x):
        return super().forward(x) if self.training else self.missing(x)


@pytest.mark.parametrize(("model", "mode"), [(_InPlaceAfterTanh, "its backward pass"), (_BrokenWhenScoring, "eval mode")])
def test_a_model_that_fails_in_its_backward_pass_or_in_eval_mode_is_refused_before_any_run(model, mode):
    # (its forward in training mode ran: the first run failed with a traceback after the study was stored)
    from lossbench.models import MODELS, ModelInfo, register_model

    register_model(ModelInfo("broken_for_test", lambda ds, k: model(ds.input_shape[0], k), ("tabular",), (), "none", "a test"))
    try:
        spec = parse_spec({"name": "b", "trials": 2, "seeds": 2, "train": {"model": "broken_for_test", "epochs": 1},
                           "datasets": ["wine"], "methods": [{"name": "ce", "loss": "cross_entropy"}]})  # fmt: skip
        split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
        with pytest.raises(SpecError, match=f"model 'broken_for_test' fails in {mode} on 8 samples of the data: "):
            check_unit(split, resolve_method(spec.methods[0]), spec)
    finally:
        MODELS.remove("broken_for_test")


def test_a_batchnorm_model_whose_epochs_end_with_one_sample_is_refused_before_any_run():
    from torch import nn

    from lossbench.models import MODELS, ModelInfo, register_model

    def normed(ds, k):
        return nn.Sequential(nn.Linear(ds.input_shape[0], 8), nn.BatchNorm1d(8), nn.Linear(8, k))

    register_model(ModelInfo("normed_for_test", normed, ("tabular",), (), "none", "a test"))
    try:
        def spec(**train):
            return parse_spec({"name": "bn", "trials": 2, "seeds": 2, "datasets": ["wine"],
                               "train": {"model": "normed_for_test", "epochs": 1, **train},
                               "methods": [{"name": "ce", "loss": "cross_entropy"}]})  # fmt: skip

        split = DataCache(spec(), torch.device("cpu")).get(spec().datasets[0], "tune")
        fit, final = len(split.y_fit), len(split.y_fit) + len(split.y_eval)
        for n, what in ((fit, "tuning runs'"), (final, "final runs'")):
            bad = spec(batch_size=n - 1)
            with pytest.raises(SpecError, match=f"the {what} {n} training samples leave a last batch of one"):
                check_unit(split, resolve_method(bad.methods[0]), bad)
            ok = spec(batch_size=n - 1, drop_last=True)
            check_unit(split, resolve_method(ok.methods[0]), ok)
    finally:
        MODELS.remove("normed_for_test")


def test_a_multilabel_label_without_a_positive_training_row_is_warned_of(monkeypatch):
    from lossbench.bench import execution
    from lossbench.data import Dataset

    g = torch.Generator().manual_seed(0)
    y = (torch.rand(40, 3, generator=g) > 0.5).float()
    y[:30, 2] = 0.0  # label "c": positive in the test rows only
    data = Dataset("ml", "multilabel", torch.randn(30, 4, generator=g), y[:30], torch.randn(10, 4, generator=g), y[30:],
                   ["a", "b", "c"], "tabular", "test")  # fmt: skip
    monkeypatch.setattr(execution, "load_dataset", lambda *a, **k: data)
    spec = parse_spec({"name": "ml", "trials": 2, "seeds": 2, "datasets": ["synthetic_multilabel"],
                       "methods": [{"name": "bce", "loss": "bce"}]})  # fmt: skip
    with pytest.warns(UserWarning, match=r"dataset 'synthetic_multilabel': label\(s\) \['c'\] have no positive training row"):
        DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")


def test_a_class_absent_from_the_scoring_rows_is_warned_of(monkeypatch):
    import warnings

    from lossbench.bench import execution
    from lossbench.data import Dataset

    g = torch.Generator().manual_seed(0)
    y_train = torch.tensor([0, 1] * 20 + [2])  # "c": one training row, which the stratified split keeps in training
    y_test = torch.tensor([0, 1] * 5)  # ... and no test row
    data = Dataset("t", "multiclass", torch.randn(41, 4, generator=g), y_train, torch.randn(10, 4, generator=g), y_test,
                   ["a", "b", "c"], "tabular", "test")  # fmt: skip
    monkeypatch.setattr(execution, "load_dataset", lambda *a, **k: data)
    spec = parse_spec({"name": "t", "trials": 2, "seeds": 2, "datasets": ["wine"], "methods": [{"name": "ce", "loss": "cross_entropy"}]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    said = [str(w.message) for w in caught]
    assert len(said) == 2, said
    for part, stage in (("validation", "tune"), ("test", "final")):
        assert any(f"dataset 'wine': class(es) ['c'] have training rows but none in the {part} rows" in m
                   and f"score the {stage} runs" in m for m in said), said  # fmt: skip
    data.y_test[0] = 2  # in the test rows: only the validation part lacks it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    assert [("validation" in str(w.message)) for w in caught] == [True]


def test_a_label_without_positive_scoring_rows_is_warned_of(monkeypatch):
    import warnings

    from lossbench.bench import execution
    from lossbench.data import Dataset

    g = torch.Generator().manual_seed(0)
    y_train = (torch.rand(60, 3, generator=g) < 0.5).float()
    y_test = y_train[:10].clone()
    y_test[:, 2] = 0  # "z": positive training rows, none among the test rows
    data = Dataset("t", "multilabel", torch.randn(60, 4, generator=g), y_train, torch.randn(10, 4, generator=g), y_test,
                   ["x", "y", "z"], "tabular", "test")  # fmt: skip
    monkeypatch.setattr(execution, "load_dataset", lambda *a, **k: data)
    spec = parse_spec({"name": "t", "trials": 2, "seeds": 2, "datasets": ["synthetic_multilabel"],
                       "methods": [{"name": "bce", "loss": "binary_cross_entropy"}]})  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    said = [str(w.message) for w in caught if "none in the" in str(w.message)]
    assert len(said) == 1 and said[0].startswith("dataset 'synthetic_multilabel': label(s) ['z'] have training rows "
                                                 "but none in the test rows (10) that score the final runs: every "
                                                 "method's average precision and F1 of them are 0, predicted or not"), said  # fmt: skip


def test_a_resampled_final_split_of_a_given_test_file_is_the_fixed_one(tmp_path):
    """A table with its test_path draws no split by seed: every evaluation seed reads the one fixed split."""
    rows = "".join(f"{i % 7},{i % 5},{'ab'[i % 2]}\n" for i in range(40))
    (tmp_path / "tr.csv").write_text("a,b,y\n" + rows)
    (tmp_path / "te.csv").write_text("a,b,y\n" + rows[:60])
    table = {"name": "table", "params": {"path": str(tmp_path / "tr.csv"), "test_path": str(tmp_path / "te.csv")}}
    with pytest.warns(UserWarning, match="resample_splits cannot apply"):
        spec = parse_spec({"name": "given", "seeds": 2, "resample_splits": True, "datasets": [table],
                           "methods": [{"name": "ce", "loss": "cross_entropy"}]})  # fmt: skip
    cache = DataCache(spec, torch.device("cpu"))
    assert cache.get(spec.datasets[0], "final", 1) is cache.get(spec.datasets[0], "final")


def test_a_resampled_split_of_a_generated_set_re_splits_the_same_data(monkeypatch):
    """synthetic's seed draws its data and its split: a resampled split keeps the tuning split's data (its data_seed)."""
    from lossbench.bench import execution
    from lossbench.data import load_dataset

    spec = parse_spec({"name": "gen", "seeds": 3, "resample_splits": True,
                       "datasets": [{"name": "synthetic", "params": {"n_samples": 200, "seed": 7}}],
                       "methods": [{"name": "ce", "loss": "cross_entropy"}]})  # fmt: skip
    asked = []
    monkeypatch.setattr(execution, "load_dataset", lambda name, **kw: asked.append(kw) or load_dataset(name, **kw))
    cache = DataCache(spec, torch.device("cpu"))
    fixed, other = cache.get(spec.datasets[0], "final"), cache.get(spec.datasets[0], "final", 1)
    assert [(kw["seed"], kw.get("data_seed")) for kw in asked] == [(7, None), (1, 7)]
    assert "seed=7)" in fixed.dataset.source and "seed=7)" in other.dataset.source  # the same generator call ...
    assert not torch.equal(fixed.dataset.y_test, other.dataset.y_test)  # ... split anew
    # a seed's split keeps the final runs' copy only (a tuning copy per seed was kept for the whole study, unused)
    label = spec.datasets[0].label
    assert set(cache._splits) == {(label, "final", 1), (label, "final", None), (label, "tune", None)}

    def labels(ds):
        return sorted(torch.cat([ds.y_train, ds.y_test]).tolist())

    drawn = load_dataset("synthetic", n_samples=200, seed=1)  # (without data_seed the seed draws other data)
    assert labels(other.dataset) == labels(fixed.dataset) and "seed=1)" in drawn.source
