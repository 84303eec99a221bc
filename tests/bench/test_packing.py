"""The bench's packed runs store what the same runs store one at a time."""

from __future__ import annotations

import dataclasses
import math

import optuna
import pytest
import torch
from optuna.trial import TrialState

from lossbench.bench.execution import (
    DataCache,
    check_unit,
    spread_model,
    train_and_score,
    train_and_score_packed,
    unpackable,
)
from lossbench.bench.methods import resolve_method
from lossbench.bench.runner import Runner
from lossbench.bench.spec import SpecError, parse_spec
from lossbench.bench.storage import ALONE_ATTR, RETRY_ALONE_ATTR, open_storage, run_record
from lossbench.losses import LOSSES, loss_module, register_loss
from lossbench.models import MODELS, ModelInfo, register_model
from lossbench.registry import Choice, FloatRange, HyperParam
from tests import user_code
from tests.user_code import (
    counts_weighted_ce,
    ignore_zero_ce,
    mean_only_ce,
    numpy_dropout_ce,
    scale_averaged_ce,
    scale_read_as_a_number_ce,
    scaled_ce,
)

METHODS = [
    {"name": "ce", "loss": "cross_entropy"},
    {"name": "focal", "loss": "focal"},
    {"name": "hinge", "loss": "hinge"},
    {"name": "ce+flooding", "loss": "cross_entropy", "transforms": ["flooding"]},
    {"name": "exact", "loss": "exact", "transforms": ["grad_normalizer"]},
]


def _spec(**extra):
    return parse_spec(
        {
            "name": "packing", "trials": 4, "seeds": 2, "sampler": "random", "tie_break": "train_metric",
            "train": {"model": "linear", "epochs": 3, "batch_size": 32, "lr_final": 1e-3},
            "search": {"lr": {"low": 0.01, "high": 1.0, "log": True}, "weight_decay": {"low": 1e-5, "high": 1e-2, "log": True}},
            "datasets": ["wine"], "methods": METHODS, **extra,
        }
    )  # fmt: skip


def _assert_results_equal(packed, alone):
    assert packed.metrics.keys() == alone.metrics.keys() and packed.curves.keys() == alone.curves.keys()
    for key, value in alone.metrics.items():
        assert packed.metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    for key, values in alone.curves.items():
        assert packed.curves[key] == pytest.approx(values, rel=1e-4, abs=1e-5), key


def _stored_runs(spec, tmp_path, pack: int, name: str) -> dict:
    """Run the study at ``pack``; its complete runs by (method, stage, trial number): (params, record)."""
    storage = open_storage(f"sqlite:///{tmp_path}/{name}{pack}.db", spec.heartbeat_interval)
    runner = Runner(spec, storage, torch.device("cpu"), pack=pack)
    runner.run()
    return {(unit.method.name, stage, t.number): (t.params, run_record(t))
            for unit in runner.units for stage, study in (("tune", unit.tune), ("final", unit.final))
            for t in study.get_trials() if t.state == TrialState.COMPLETE}  # fmt: skip


@pytest.mark.parametrize("index", range(len(METHODS)))
@pytest.mark.parametrize("stage", ["tune", "final"])
def test_a_packed_run_stores_what_it_stores_alone(index, stage):
    spec = _spec()
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], stage)
    method = resolve_method(spec.methods[index])
    assert unpackable(split, method, spec) is None
    space = method.search_space(spec.search)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=index))
    runs = [(study.ask(space).params, 10 + seed) for seed in range(3)]  # each run its own configuration
    packed = train_and_score_packed(split, method, runs, spec)
    for (params, seed), result in zip(runs, packed):
        _assert_results_equal(result, train_and_score(split, method, params, spec, seed))


def test_units_that_cannot_pack_say_why():
    spec = _spec(methods=[{"name": "mgs", "loss": "cross_entropy", "transforms": ["mgs"]},
                          {"name": "genz", "loss": "exact", "params": {"estimator": "genz"}}])  # fmt: skip
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    assert "mgs" in unpackable(split, resolve_method(spec.methods[0]), spec)
    assert "random numbers" in unpackable(split, resolve_method(spec.methods[1]), spec)
    dropout = _spec(train={"model": "mlp", "model_params": {"dropout": 0.3}, "epochs": 1, "batch_size": 32})
    assert "dropout" in unpackable(split, resolve_method(dropout.methods[0]), dropout)


@pytest.mark.parametrize("option, reason", [("estimator", "random numbers"), ("learn_sigma", "trained parameters")])
def test_a_unit_whose_search_reaches_an_unpackable_loss_does_not_pack(option, reason):
    # The search's first choice packs; runs that draw the second would not train as they do alone.
    choices = {"estimator": ["quadrature", "genz"], "learn_sigma": [False, True]}[option]
    spec = _spec(methods=[{"name": "exact", "loss": "exact", "search": {f"loss.{option}": {"choices": choices}}}])
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    assert reason in unpackable(split, resolve_method(spec.methods[0]), spec)


def test_a_packed_study_chooses_and_scores_what_an_unpacked_one_does(tmp_path):
    spec = _spec(methods=METHODS[:2])
    results = {pack: _stored_runs(spec, tmp_path, pack, "pack") for pack in (1, 8)}
    assert results[1].keys() == results[8].keys()
    for key, (params, record) in results[1].items():
        packed_params, packed_record = results[8][key]
        assert packed_params == params and packed_record["seed"] == record["seed"]
        assert record.get("validation") == packed_record.get("validation") == ("stratified" if key[1] == "tune" else None)
        # the two methods' runs share each pack: 2 x 4 tuning trials, then 2 x 2 seeds
        assert record["pack"] == 1 and packed_record["pack"] == 2 * (4 if key[1] == "tune" else 2)
        for metric, value in record["metrics"].items():
            assert packed_record["metrics"][metric] == pytest.approx(value, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("stage", ["tune", "final"])
def test_runs_of_several_methods_in_one_pack_store_what_they_store_alone(stage):
    spec = _spec()
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], stage)
    methods, runs = [], []
    for index, method_spec in enumerate(spec.methods):
        method = resolve_method(method_spec)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=index))
        for seed in range(2):
            methods.append(method)
            runs.append((study.ask(method.search_space(spec.search)).params, 10 * index + seed))
    packed = train_and_score_packed(split, methods, runs, spec)
    for method, (params, seed), result in zip(methods, runs, packed):
        _assert_results_equal(result, train_and_score(split, method, params, spec, seed))


def test_a_runner_packs_the_methods_of_a_dataset_that_share_a_pack_key(tmp_path):
    methods = [*METHODS[:2], {"name": "iflood", "loss": "cross_entropy", "transforms": ["iflood"]},
               {"name": "mgs", "loss": "cross_entropy", "transforms": ["mgs"]},
               {"name": "two", "loss": "cross_entropy", "then": {"loss": "focal", "epochs": 1}}, METHODS[2]]  # fmt: skip
    spec = _spec(methods=methods, datasets=["wine", "breast_cancer"])
    runner = Runner(spec, optuna.storages.InMemoryStorage(), torch.device("cpu"))
    groups = [[unit.label for unit in group] for group in runner.groups]
    for dataset in ("wine", "breast_cancer"):  # per-sample flooding, a second stage, a transform that cannot pack: apart
        assert [f"{dataset} / {m}" for m in ("ce", "focal", "hinge")] in groups
        for name in ("iflood", "mgs", "two"):
            assert [f"{dataset} / {name}"] in groups
    assert len(groups) == 8


def test_no_training_call_holds_more_runs_than_the_pack_allows(tmp_path):
    # a round gathers each stage's runs up to --pack (the stages train apart: their splits differ)
    spec = _spec(methods=METHODS[:3], trials=3, seeds=3)
    storage = open_storage(f"sqlite:///{tmp_path}/cap.db", spec.heartbeat_interval)
    runner = Runner(spec, storage, torch.device("cpu"), pack=7)
    runner.run()
    packs = [run_record(t)["pack"] for unit in runner.units for study in (unit.tune, unit.final)
             for t in study.get_trials() if t.state == TrialState.COMPLETE]  # fmt: skip
    # 3 runs a unit and stage: two units' together (a third's would not fit), the third unit's alone
    assert len(packs) == 3 * (3 + 3) and max(packs) <= 7 and set(packs) == {3, 6}


def test_a_unit_that_trains_one_run_at_a_time_says_why_in_its_records_the_console_and_the_report(tmp_path, capsys):
    from lossbench.bench.console import say_alone
    from lossbench.bench.report import provenance
    from lossbench.bench.results import collect
    spec = _spec(methods=[METHODS[0], {"name": "mgs", "loss": "cross_entropy", "transforms": ["mgs"]}], trials=2, seeds=2,
                 train={"model": "linear", "epochs": 1, "batch_size": 32})  # fmt: skip
    storage = open_storage(f"sqlite:///{tmp_path}/alone.db", spec.heartbeat_interval)
    runner = Runner(spec, storage, torch.device("cpu"), pack=8)
    assert [label for label, _ in runner.alone()] == ["wine / mgs"]
    say_alone(runner.alone())
    assert capsys.readouterr().err.startswith("wine / mgs: trains one run at a time (transform 'mgs' replaces the optimiser step)")
    runner.run()
    records = {unit.method.name: [run_record(t) for study in (unit.tune, unit.final) for t in study.get_trials()]
               for unit in runner.units}  # fmt: skip
    assert {r.get(ALONE_ATTR) for r in records["mgs"]} == {"transform 'mgs' replaces the optimiser step"}
    assert all(ALONE_ATTR not in r for r in records["ce"])
    row = dict(provenance(collect(spec, storage)).rows)["training calls"]
    assert row == "packed, up to 2 runs per call; one run at a time: mgs on wine (transform 'mgs' replaces the optimiser step)"
    off = open_storage(f"sqlite:///{tmp_path}/off.db", spec.heartbeat_interval)
    assert Runner(spec, off, torch.device("cpu"), pack=1).alone() == []  # (the user turned packing off)


def test_tpe_is_asked_alike_for_units_that_pack_and_units_that_do_not(tmp_path, monkeypatch):
    """Runs asked together do not see each other's results: a unit that cannot pack asked its tuning runs one
    at a time got TPE's history after each, its pack-mates' units one update per batch (a protocol per method)."""
    spec = _spec(methods=[METHODS[0], {"name": "gp", "loss": "cross_entropy", "transforms": ["gradient_penalty"]}],
                 sampler="tpe", trials=4, seeds=2, train={"model": "linear", "epochs": 1, "batch_size": 32})  # fmt: skip
    asked: dict[tuple[str, str], list[int]] = {}
    ask = Runner._ask

    def recording(self, unit, stage, trials, started):
        asked.setdefault((unit.method.name, stage), []).append(len(started))
        return ask(self, unit, stage, trials, started)

    monkeypatch.setattr(Runner, "_ask", recording)
    storage = open_storage(f"sqlite:///{tmp_path}/tpe.db", spec.heartbeat_interval)
    runner = Runner(spec, storage, torch.device("cpu"), pack=8)
    assert [label for label, _ in runner.alone()] == ["wine / gp"]
    runner.run()
    assert asked[("ce", "tune")] == asked[("gp", "tune")] == [2, 2]  # TPE's start-up count (half of 4 trials)
    assert asked[("ce", "final")] == [2] and asked[("gp", "final")] == [1, 1]  # (queued seeds: no sampler)
    gp = [run_record(t) for t in runner.units[1].tune.get_trials()]
    assert [r["pack"] for r in gp] == [1] * 4 and all(ALONE_ATTR in r for r in gp)


def test_a_pack_holds_as_many_runs_as_its_held_out_outputs_fit(tmp_path, monkeypatch):
    import types

    from lossbench.bench import execution, runner

    # (5,000 classes, 10,000 held-out rows: 0.4 GB of outputs and temporaries a run, five in a pack's 2 GiB)
    spec = _spec(methods=METHODS[:2], trials=6, seeds=3, tie_break="earliest")
    methods = [resolve_method(m) for m in spec.methods]
    big = types.SimpleNamespace(x_eval=torch.empty(8000, 0), x_val=torch.empty(2000, 0), x_fit=torch.empty(30000, 0),
                                num_classes=5000, stage="tune")  # fmt: skip
    assert execution.runs_that_fit(big, methods, spec) == 5
    # (a tuning run whose ties are broken by the training metric scores its fit part too: 40,000 rows, one)
    assert execution.runs_that_fit(big, methods, dataclasses.replace(spec, tie_break="train_metric")) == 1
    huge = types.SimpleNamespace(x_eval=torch.empty(10**6, 0), x_val=None, x_fit=big.x_fit, num_classes=10**5, stage="final")
    assert execution.runs_that_fit(huge, methods, spec) == 1
    monkeypatch.setattr(runner, "runs_that_fit", lambda split, methods, spec: 2)
    runs = _stored_runs(spec, tmp_path, 64, "fit")
    assert max(record["pack"] for _, record in runs.values()) == 2


def test_tpe_tunes_alike_whatever_the_pack(tmp_path):
    """--pack is a speed setting: TPE is asked its start-up count at once at every pack (--pack 1 asked one at a
    time, so TPE saw each run's result before the next: another tuning, other chosen configurations), and a pack
    smaller than that trains the asked runs in calls of at most --pack."""
    spec = _spec(methods=METHODS[:2], sampler="tpe", trials=6, seeds=2)
    results = {pack: _stored_runs(spec, tmp_path, pack, "tpe") for pack in (1, 2, 64)}
    for pack, runs in results.items():
        assert max(record["pack"] for _, record in runs.values()) <= pack
    for pack in (2, 64):
        assert results[pack].keys() == results[1].keys()
        for key, (params, record) in results[1].items():
            assert results[pack][key][0] == params, key  # the same draws: TPE saw the same history
            for metric, value in record["metrics"].items():
                assert results[pack][key][1]["metrics"][metric] == pytest.approx(value, rel=1e-4, abs=1e-5)


def _model_search_spec(search, **extra):
    return _spec(**{"methods": METHODS[:2], "train": {"model": "mlp", "model_params": {"depth": 1}, "epochs": 2, "batch_size": 32},
                    "search": {"lr": {"low": 0.01, "high": 1.0, "log": True}, **search}, **extra})  # fmt: skip


def test_a_searched_model_packs_unless_some_configuration_cannot():
    split = DataCache(_spec(), torch.device("cpu")).get(_spec().datasets[0], "tune")

    def reasons(search, **extra):
        spec = _model_search_spec(search, **extra)
        method = resolve_method(spec.methods[0])
        return unpackable(split, method, spec), spread_model(method, spec)

    assert reasons({"model.width": {"choices": list(range(4, 20))}}) == (None, None)  # 16 configurations
    assert "'dropout': 0.3}: it has dropout" in reasons({"model.dropout": {"choices": [0.0, 0.3]}})[0]
    assert "'dropout': 0.25}: it has dropout" in reasons({"model.dropout": {"low": 0.0, "high": 0.5}})[0]
    free = {"train": {"model": "mlp", "epochs": 2, "batch_size": 32}}  # (depth searched, not fixed)
    for search in ({"model.width": {"choices": list(range(4, 21))}},
                   {"model.width": {"choices": [4, 8, 12, 16]}, "model.depth": {"choices": [1, 2, 3, 4, 5]}}):  # fmt: skip
        packs, spread = reasons(search, **free)
        assert packs is None and spread.startswith("tuning runs only: model.") and "more than 16 configurations" in spread
        assert "model.width" in spread
    width = _model_search_spec({"model.width": {"choices": [4, 8]}})
    with pytest.raises(ValueError, match="same searched model hyperparameters"):
        train_and_score_packed(split, resolve_method(width.methods[0]),
                               [({"lr": 0.1, "model.width": 4}, 0), ({"lr": 0.1, "model.width": 8}, 1)], width)  # fmt: skip


def test_a_model_searched_over_many_configurations_tunes_one_run_at_a_time_and_packs_its_seeds(tmp_path):
    spec = _model_search_spec({"model.width": {"choices": list(range(4, 21))}}, methods=[METHODS[0]], trials=3, seeds=3)
    storage = open_storage(f"sqlite:///{tmp_path}/spread.db", spec.heartbeat_interval)
    runner = Runner(spec, storage, torch.device("cpu"), pack=8)
    assert [reason for _, reason in runner.alone()] == [spread_model(resolve_method(spec.methods[0]), spec)]
    runner.run()
    unit = runner.units[0]
    tuning = [run_record(t) for t in unit.tune.get_trials()]
    assert [r["pack"] for r in tuning] == [1] * 3 and all(r[ALONE_ATTR].startswith("tuning runs only") for r in tuning)
    assert [(run_record(t)["pack"], ALONE_ATTR in run_record(t)) for t in unit.final.get_trials()] == [(3, False)] * 3


def test_runs_of_a_searched_model_pack_by_configuration_and_store_what_they_store_alone(tmp_path):
    spec = _model_search_spec({"model.width": {"choices": [4, 8]}})
    results = {pack: _stored_runs(spec, tmp_path, pack, "width") for pack in (1, 8)}
    assert results[1].keys() == results[8].keys()
    tuning = [(params["model.width"], record["pack"]) for (_, stage, _), (params, record) in results[8].items() if stage == "tune"]
    for width in (4, 8):  # both methods' 4 trials together, a pack per width
        assert {pack for w, pack in tuning if w == width} == {sum(w == width for w, _ in tuning)}
    for key, (params, record) in results[1].items():
        packed_params, packed_record = results[8][key]
        assert packed_params == params and record["pack"] == 1
        for metric, value in record["metrics"].items():
            assert packed_record["metrics"][metric] == pytest.approx(value, rel=1e-4, abs=1e-5)


@pytest.fixture
def weighted_plugin_loss():
    register_loss("counts_weighted_ce_for_test", counts_weighted_ce, loss_module(counts_weighted_ce, "CountsWeightedCE"),
                  signature="softmax", reference="a test", requires=("class_counts",),
                  hyperparams=(HyperParam("power", 1.0, FloatRange(0.5, 2.0)),))  # fmt: skip
    yield "counts_weighted_ce_for_test"
    LOSSES.remove("counts_weighted_ce_for_test")


@pytest.mark.parametrize("stage", ["tune", "final"])
def test_runs_of_a_plugin_loss_whose_mean_is_weighted_store_what_they_store_alone(weighted_plugin_loss, stage):
    # the runs share no call (each run's loss is checked on a few training rows): the unit still packs
    spec = _spec(methods=[{"name": "cw", "loss": weighted_plugin_loss, "params": {"power": 2.0}}])
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], stage)
    method = resolve_method(spec.methods[0])
    assert unpackable(split, method, spec) is None
    runs = [({"lr": 0.3, "weight_decay": 1e-3}, 1), ({"lr": 0.1, "weight_decay": 1e-4}, 2)]
    for (params, seed), result in zip(runs, train_and_score_packed(split, method, runs, spec)):
        _assert_results_equal(result, train_and_score(split, method, params, spec, seed))


@pytest.fixture
def mean_only_plugin_loss():
    register_loss("mean_only_ce_for_test", mean_only_ce, loss_module(mean_only_ce, "MeanOnlyCE"), signature="softmax",
                  reference="a test")  # fmt: skip
    yield "mean_only_ce_for_test"
    LOSSES.remove("mean_only_ce_for_test")


def test_a_plugin_loss_that_ignores_reduction_none_trains_one_run_at_a_time_and_refuses_per_sample_transforms(
    mean_only_plugin_loss, tmp_path
):
    # a pack's runs would share a call with reduction="none" (it crashed reshaping the scalar); alone it trains
    spec = _spec(methods=[{"name": "mean", "loss": mean_only_plugin_loss}], trials=2, seeds=2,
                 train={"model": "linear", "epochs": 1, "batch_size": 32})  # fmt: skip
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    reason = "loss 'mean_only_ce_for_test' returns shape () for reduction='none', not one value per sample (8,)"
    assert unpackable(split, resolve_method(spec.methods[0]), spec) == reason
    storage = open_storage(f"sqlite:///{tmp_path}/s.db", spec.heartbeat_interval)
    runner = Runner(spec, storage, torch.device("cpu"), pack=4)
    runner.run()
    trials = [t for study in (runner.units[0].tune, runner.units[0].final) for t in study.get_trials()]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert all(run_record(t)[ALONE_ATTR] == reason for t in trials)
    # a per-sample transform reads reduction="none" alone too: refused before any run
    iflood = _spec(methods=[{"name": "mean+iflood", "loss": mean_only_plugin_loss, "transforms": ["iflood"]}])
    with pytest.raises(SpecError, match=r"is refused: transform 'iflood' reads per-sample losses; loss "
                                        r"'mean_only_ce_for_test' returns shape \(\) for reduction='none'"):  # fmt: skip
        check_unit(split, resolve_method(iflood.methods[0]), iflood)


def test_a_plugin_loss_without_the_reduction_argument_it_promises_is_refused_before_any_work():
    # a training step calls a loss module with reduction=: such a loss failed in its first trial, after the
    # study was stored (with --pack 1 too)
    def no_reduction_ce(logits, target, *, validate=True):
        return torch.nn.functional.cross_entropy(logits, target)

    register_loss("no_reduction_ce_for_test", no_reduction_ce, loss_module(no_reduction_ce, "NoReductionCE"),
                  signature="softmax", reference="a test")  # fmt: skip
    try:
        spec = _spec(methods=[{"name": "bare", "loss": "no_reduction_ce_for_test"}])
        split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
        with pytest.raises(SpecError, match=r"method 'bare' on .* is refused: .*no_reduction_ce\(\) got an unexpected keyword argument 'reduction'"):
            check_unit(split, resolve_method(spec.methods[0]), spec)
    finally:
        LOSSES.remove("no_reduction_ce_for_test")


@pytest.fixture
def plugin_model(request):
    name = f"{request.param}_for_test"
    cls = user_code.MODELS[request.param]
    register_model(ModelInfo(name, lambda ds, num_outputs: cls(math.prod(ds.input_shape), num_outputs), ("tabular",), (),
                             "a test", request.param))  # fmt: skip
    yield name
    MODELS.remove(name)


@pytest.mark.parametrize("plugin_model, reason", [
    ("eval_syncs", "_for_test' does not run packed (ValueError: EvalSyncs's forward cannot run packed: under torch.func.vmap"),  # (alone it scores in eval mode, and so does a pack)
    ("frozen", "_for_test': its parameter proj is frozen (requires_grad=False)"),
    ("indexed", "_for_test': its parameter perm is not floating-point (torch.int64)"),
    ("unused", "_for_test': its parameter aux.weight gets no gradient (unused by its forward)"),
    ("tied", "_for_test': its parameter b.weight is a.weight (tied or shared parameters)"),
], indirect=["plugin_model"])  # fmt: skip
def test_a_plugin_model_a_pack_cannot_train_as_alone_trains_one_run_at_a_time_and_says_why(plugin_model, reason, tmp_path):
    spec = _spec(methods=METHODS[:1], train={"model": plugin_model, "epochs": 1, "batch_size": 32}, trials=2, seeds=2)
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    assert reason in unpackable(split, resolve_method(spec.methods[0]), spec)
    if plugin_model.startswith("frozen"):  # every run completes, one at a time, its record saying why
        runner = Runner(spec, open_storage(f"sqlite:///{tmp_path}/s.db", spec.heartbeat_interval), torch.device("cpu"), pack=4)
        runner.run()
        trials = [t for study in (runner.units[0].tune, runner.units[0].final) for t in study.get_trials()]
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
        assert all(reason in run_record(t)[ALONE_ATTR] for t in trials)


@pytest.mark.parametrize("plugin_model", ["eval_halves"], indirect=True)
def test_a_plugin_model_whose_forward_reads_its_mode_scores_packed_in_eval_mode_as_alone(plugin_model):
    spec = _spec(methods=METHODS[:1], train={"model": plugin_model, "epochs": 2, "batch_size": 32})
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    method = resolve_method(spec.methods[0])
    assert unpackable(split, method, spec) is None
    runs = [({"lr": 0.1, "weight_decay": 1e-2}, 1), ({"lr": 0.3, "weight_decay": 1e-3}, 2)]
    for (params, seed), result in zip(runs, train_and_score_packed(split, method, runs, spec)):
        _assert_results_equal(result, train_and_score(split, method, params, spec, seed))


def test_a_plugin_loss_or_model_that_raises_on_the_data_is_refused_in_one_line_naming_its_line():
    # torch's RuntimeError from a user's loss or model (a float target, a wrong input width) was a
    # 50-line traceback naming neither the method nor the dataset
    def float_target_ce(logits, target, *, reduction="mean", validate=True):
        return torch.nn.functional.cross_entropy(logits, target.float(), reduction=reduction)

    register_loss("float_target_ce_for_test", float_target_ce, loss_module(float_target_ce, "FloatTargetCE"),
                  signature="softmax", reference="a test")  # fmt: skip
    register_model(ModelInfo("narrow_for_test", lambda ds, num_outputs: torch.nn.Linear(3, num_outputs), ("tabular",), (),
                             "a test", "narrow"))  # fmt: skip
    try:
        spec = _spec(methods=[{"name": "bare", "loss": "float_target_ce_for_test"}])
        split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
        with pytest.raises(SpecError) as err:
            check_unit(split, resolve_method(spec.methods[0]), spec)
        message = str(err.value)
        assert "\n" not in message and message.startswith("method 'bare' on 'wine': the middle of the search space")
        assert "fails: RuntimeError: expected" in message and f"(at {__file__}:" in message
        spec = _spec(methods=METHODS[:1], train={"model": "narrow_for_test", "epochs": 1, "batch_size": 32})
        with pytest.raises(SpecError, match=r"^method 'ce' on 'wine': model 'narrow_for_test' fails on 8 samples of the "
                                            r"data: RuntimeError: mat1 and mat2 shapes cannot be multiplied[^\n]*$"):
            check_unit(split, resolve_method(spec.methods[0]), spec)
    finally:
        LOSSES.remove("float_target_ce_for_test")
        MODELS.remove("narrow_for_test")


def test_a_killed_packs_runs_are_retried_each_alone_and_the_study_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    # a kill fails every run of a pack; counted against each, four kills gave up the whole pack's draws (a
    # review: every method of the data set tuned on other configurations). Retried alone, a later kill
    # counts against the run it hit only
    import sqlalchemy

    from lossbench.bench.runner import _fail_stale

    def killed(runner):  # its heartbeats a minute old, past the grace period: any worker fails its runs as stale
        with runner.storage.engine.begin() as connection:
            connection.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-60 seconds')"))
        for unit in runner.units:
            _fail_stale(unit.tune)

    class Killed(BaseException):
        """The worker's end in the middle of training (a killed process neither trains nor fails anything)."""

    def training_killed(self, packs, stored):
        assert [len(p.started) for p in packs] == [2, 2]  # both units' first TPE batch, their draws stored
        raise Killed

    spec = _spec(methods=METHODS[:2], sampler="tpe", heartbeat_interval=10)
    clean = _stored_runs(spec, tmp_path, 8, "clean")
    storage = open_storage(f"sqlite:///{tmp_path}/killed.db", spec.heartbeat_interval)
    runner = Runner(spec, storage, torch.device("cpu"), pack=8)
    with monkeypatch.context() as patch:
        patch.setattr(Runner, "_train", training_killed)
        patch.setattr(Runner, "_abandon", lambda self, *args, **kwargs: None)
        with pytest.raises(Killed):
            runner.run()
    killed(runner)
    retries = [t for unit in runner.units for t in unit.tune.get_trials() if t.state == TrialState.WAITING]
    assert len(retries) == 4 and all(t.system_attrs[RETRY_ALONE_ATTR] for t in retries)
    assert all(t.system_attrs["retry_history"] == [t.system_attrs["failed_trial"]] for t in retries)
    again = Runner(spec, storage, torch.device("cpu"), pack=8)
    (group,) = again.groups
    (lone,) = again._gather(group, set(), None)[0]  # one retry, alone, though both units have work
    assert len(lone.started) == 1 and lone.started[0].system_attrs[RETRY_ALONE_ATTR]
    killed(again)  # (that one killed too: counted against it alone)
    histories = [t.system_attrs["retry_history"] for u in again.units for t in u.tune.get_trials() if t.state == TrialState.WAITING]
    assert sorted(map(len, histories)) == [1] * 3 + [2]
    again.run()
    resumed = {(unit.method.name, stage, t.number): (t.params, run_record(t))
               for unit in again.units for stage, study in (("tune", unit.tune), ("final", unit.final))
               for t in study.get_trials() if t.state == TrialState.COMPLETE}  # fmt: skip
    tuned = {unit.method.name: unit.tune.get_trials() for unit in again.units}
    retried = [run_record(t)["pack"] for trials in tuned.values() for t in trials
               if t.state == TrialState.COMPLETE and "failed_trial" in t.system_attrs]  # fmt: skip
    assert retried == [1] * 4
    # the retries first, then the units pack again (a unit holding one had waited, one run at a time, for
    # every unit before it to finish); their seeds in packs of 2 or 4, as the units' stages line up
    assert {record["pack"] for (_, stage, _), (_, record) in resumed.items() if stage == "final"} <= {2, 4}
    by_draw = lambda runs: sorted((m, s, str(p), round(r["metrics"]["accuracy"], 4)) for (m, s, _), (p, r) in runs.items())  # noqa: E731
    assert by_draw(resumed) == by_draw(clean)  # the same draws, choices and scores as the uninterrupted study


def test_runs_killed_before_their_draws_were_stored_are_retried_together_and_not_counted(tmp_path):
    # no run of that pack trained; retried alone, each later retry's draw would have seen the one before
    # (TPE drew otherwise, a review found); retried together they are asked as they were
    import sqlalchemy

    from lossbench.bench.runner import _fail_stale

    spec = _spec(methods=METHODS[:2], sampler="tpe", trials=8, heartbeat_interval=10)
    clean = _stored_runs(spec, tmp_path, 8, "clean")
    storage = open_storage(f"sqlite:///{tmp_path}/early.db", spec.heartbeat_interval)
    runner = Runner(spec, storage, torch.device("cpu"), pack=8)
    (group,) = runner.groups
    assert [len(s.started) for s in runner._gather(group, set(), None)[0]] == [4, 4]  # started, not yet asked
    with storage.engine.begin() as connection:
        connection.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-60 seconds')"))
    for unit in runner.units:
        _fail_stale(unit.tune)
    retries = [t for unit in runner.units for t in unit.tune.get_trials() if t.state == TrialState.WAITING]
    assert len(retries) == 8 and not any(RETRY_ALONE_ATTR in t.system_attrs or t.system_attrs["retry_history"] for t in retries)
    again = Runner(spec, storage, torch.device("cpu"), pack=8)
    again.run()
    resumed = {(unit.method.name, stage, t.number): (t.params, run_record(t))
               for unit in again.units for stage, study in (("tune", unit.tune), ("final", unit.final))
               for t in study.get_trials() if t.state == TrialState.COMPLETE}  # fmt: skip
    by_draw = lambda runs: sorted((m, s, str(p), round(r["metrics"]["accuracy"], 4)) for (m, s, _), (p, r) in runs.items())  # noqa: E731
    assert by_draw(resumed) == by_draw(clean)


def test_runs_of_one_method_in_separate_loss_calls_train_grouped_and_come_back_in_order():
    """EXACT runs with and without standardize share no loss call: interleaved, the pack trains them grouped
    (no gather of the whole pack's logits each step) and returns each run's result in the caller's order."""
    from lossbench.bench.execution import _by_loss_call

    spec = _spec()
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    ce, exact = resolve_method(spec.methods[0]), resolve_method(spec.methods[4])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    runs = [({**study.ask(exact.search_space(spec.search)).params, "loss.standardize": k % 2 == 1}, 20 + k) for k in range(4)]
    runs = [({"lr": 0.1, "weight_decay": 1e-4}, 1)] + runs
    methods = [ce] + [exact] * 4
    assert _by_loss_call(methods, runs, spec) == [0, 1, 3, 2, 4]
    assert _by_loss_call([ce] + [exact] * 2, [runs[0], runs[1], runs[3]], spec) is None  # (already grouped)
    packed = train_and_score_packed(split, methods, runs, spec)
    for method, (params, seed), result in zip(methods, runs, packed):
        _assert_results_equal(result, train_and_score(split, method, params, spec, seed))


@pytest.mark.parametrize("function, reason", [
    (scaled_ce, None),
    (scale_read_as_a_number_ce, "given one scale per row, raises"),
    (scale_averaged_ce, "), gives its rows other values than with each row's own"),
])  # fmt: skip
def test_a_plugin_losss_row_option_is_checked_to_be_kept_row_by_row(fresh_registries, function, reason):
    # (row_params were taken at their word: a loss reading its row option as one number failed mid-study with a
    # traceback at --pack 64, one averaging them trained every run of a shared call on the mean, silently)
    register_loss("row_scale_for_test", function, loss_module(function, "RowScale"), signature="softmax",
                  reference="a test", hyperparams=(HyperParam("scale", 1.0, FloatRange(0.5, 5.0)),),
                  row_params=("scale",))  # fmt: skip
    spec = _spec(methods=[{"name": "rs", "loss": "row_scale_for_test"}])
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    found = unpackable(split, resolve_method(spec.methods[0]), spec)
    assert found is None if reason is None else reason in found and found.startswith("loss 'row_scale_for_test'")


def test_a_plugin_loss_that_tunes_or_defaults_ignore_index_to_a_class_is_refused(fresh_registries):
    # (the bench owns ignore_index; a registration's search space chose 0, a default of 0 dropped class 0: silently)
    register_loss("ignore_zero_for_test", ignore_zero_ce, loss_module(ignore_zero_ce, "IgnoreZero"),
                  signature="softmax", reference="a test")  # fmt: skip
    with pytest.raises(SpecError, match=r"loss 'ignore_zero_for_test' defaults ignore_index to 0, a class index"):
        resolve_method(_spec(methods=[{"name": "z", "loss": "ignore_zero_for_test"}]).methods[0])
    tuned = lambda logits, target, *, ignore_index=-100, reduction="mean", validate=True: ignore_zero_ce(  # noqa: E731
        logits, target, ignore_index=ignore_index, reduction=reduction)
    register_loss("ignore_tuned_for_test", tuned, loss_module(tuned, "IgnoreTuned"), signature="softmax",
                  reference="a test", hyperparams=(HyperParam("ignore_index", -100, Choice((-100, 0))),))  # fmt: skip
    with pytest.raises(SpecError, match=r"registers a search space for ignore_index, which the bench sets"):
        resolve_method(_spec(methods=[{"name": "t", "loss": "ignore_tuned_for_test"}]).methods[0])


def test_a_plugin_loss_drawing_from_numpy_trains_one_run_at_a_time(fresh_registries):
    # (only torch's generators were watched: a loss drawing from NumPy's packed, its runs sharing one stream)
    register_loss("numpy_dropout_for_test", numpy_dropout_ce, loss_module(numpy_dropout_ce, "NumpyDropout"),
                  signature="softmax", reference="a test")  # fmt: skip
    spec = _spec(methods=[{"name": "np", "loss": "numpy_dropout_for_test"}])
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    assert unpackable(split, resolve_method(spec.methods[0]), spec) == "loss 'numpy_dropout_for_test' draws random numbers"
