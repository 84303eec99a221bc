"""The spec options a protocol faithful to a paper's code needs (the EXACT paper's Table 1):
grids, the python-random sampler, the searched seed, tie-breaking, repeated epochs, the per-epoch
lr decay, decay on weights only, per-stage standardisation, per-epoch loss schedules, splits."""

from __future__ import annotations

import math
import random

import optuna
import pytest
import torch
from optuna.trial import TrialState, create_trial

from lossbench.bench.execution import DataCache, repeats, run_seed
from lossbench.bench.methods import resolve_method, set_loss_option
from lossbench.bench.runner import PythonRandomSampler, draw_index, draw_order
from lossbench.bench.spec import Schedule, SpecError, load_preset, parse_spec, spec_from_json
from lossbench.bench.storage import choose
from lossbench.data.splits import random_split
from lossbench.losses import ExactLoss, get_loss
from lossbench.registry import Choice
from lossbench.train import fit
from lossbench.train.loop import make_optimizer

MINIMAL = {"name": "s", "datasets": ["wine"], "methods": [{"name": "ce", "loss": "cross_entropy"}]}


def paper_draws(params: dict[str, list], n: int, seed: int = 0) -> list[dict]:
    """The EXACT paper's hopt: random.seed(seed), then per trial one random.choice per parameter."""
    random.seed(seed)
    return [{name: random.choice(values) for name, values in params.items()} for _ in range(n)]


def test_python_random_sampler_draws_what_the_paper_code_draws():
    grids = {
        "seed": list(range(10)), "weight_decay": [0, 1e-4, 1e-3, 1e-2, 0.1, 1],
        "clip_norm.max_norm": [0.01, 0.1, 1, 10], "lr": [0.01, 0.05, 0.1, 0.5, 1, 5],
    }  # fmt: skip
    sampler = PythonRandomSampler(0, {k: tuple(v) for k, v in grids.items()})
    assert [sampler.draw(k) for k in range(20)] == paper_draws(grids, 20)
    assert PythonRandomSampler(0, {k: tuple(v) for k, v in grids.items()}, 7).params == paper_draws(grids, 20)[7]


def test_the_table1_preset_orders_each_method_as_the_paper_code():
    spec = load_preset("exact-table1")
    exact = resolve_method(spec.method("exact")).search_space(spec.search)
    hinge = resolve_method(spec.method("hinge")).search_space(spec.search)
    # run.py: seed, regularization, clip (not for EXACT), lr, margin (EXACT and hinge only)
    assert draw_order(exact, spec.search_order) == ["seed", "weight_decay", "lr", "loss.margin"]
    assert draw_order(hinge, spec.search_order) == ["seed", "weight_decay", "clip_norm.max_norm", "lr", "loss.margin"]
    assert hinge["loss.margin"].choices[0] is None  # the code's margin None: the loss's own default


def test_a_retried_trial_keeps_its_draw_and_kills_shift_nothing():
    dist = optuna.distributions.CategoricalDistribution([1, 2])
    fresh = [create_trial(state=TrialState.COMPLETE, value=0.0, params={"a": 1}, distributions={"a": dist}) for _ in range(3)]
    failed = create_trial(state=TrialState.FAIL, params={"a": 1}, distributions={"a": dist})
    study = optuna.create_study()
    for t in [fresh[0], failed, fresh[1]]:
        study.add_trial(t)
    study.add_trial(create_trial(state=TrialState.WAITING, system_attrs={"failed_trial": 1}))  # Optuna's retry of #1
    trials = study.get_trials(deepcopy=False)
    assert [draw_index(t, trials) for t in trials] == [0, 1, 2, 1]  # the retry is draw 1 again
    nxt = create_trial(state=TrialState.COMPLETE, value=0.0, params={"a": 1}, distributions={"a": dist})
    study.add_trial(nxt)
    assert draw_index(study.get_trials()[-1], study.get_trials()) == 3


def frozen(number: int, value: float, train: float | None):
    t = create_trial(state=TrialState.COMPLETE, value=value,
                     user_attrs={"run": {"metrics": {} if train is None else {"train_accuracy": train}}})  # fmt: skip
    t.number = number
    return t


def test_tie_break_on_the_training_score_as_the_paper_code():
    trials = [frozen(0, 0.9, 0.95), frozen(1, 0.9 + 5e-7, 0.97), frozen(2, 0.9, 0.99), frozen(3, 0.8, 1.0)]
    # in order: #1 is higher (strictly) and replaces #0; #2 is equal within 1e-6 and fits better: replaces #1
    assert choose(trials, "train_metric").number == 2
    assert choose(trials, "earliest").number == 1  # the default: best value, earliest on exact ties
    assert choose([frozen(0, 0.9, None), frozen(1, 0.9, None)], "train_metric").number == 0


def test_tie_break_reads_the_training_score_of_the_metric_the_trials_were_scored_by():
    # a multi-label unit of a spec selecting by "accuracy" is scored by micro-F1, its headline
    def multilabel(number: int, value: float, train: float):
        t = create_trial(state=TrialState.COMPLETE, value=value,
                         user_attrs={"run": {"metrics": {"micro_f1": value, "train_micro_f1": train}}})  # fmt: skip
        t.number = number
        return t

    assert choose([multilabel(0, 0.7, 0.8), multilabel(1, 0.7, 0.9)], "train_metric", "accuracy").number == 1
    assert choose([multilabel(0, 0.7, 0.9), multilabel(1, 0.7, 0.8)], "train_metric", "accuracy").number == 0


def test_searched_seed_is_the_tuning_runs_seed():
    spec = parse_spec({**MINIMAL, "search": {"seed": {"choices": [3, 4]}}})
    assert run_seed("tune", 7, spec, params={"seed": 4, "lr": 0.1}) == 4
    assert run_seed("tune", 7, spec, params={"lr": 0.1}) == 7
    assert run_seed("final", 7, spec, seed=2, params={"seed": 4}) == 2  # evaluation seeds override it


@pytest.mark.parametrize(
    "change, message",
    [
        ({"search": {"seed": {"choices": [0.5, 1.5]}}}, "integer choices"),
        ({"search": {"lr": {"choices": [0.1]}}}, r"at least two values, got \[0.1\] \(one value is no search: .*weight_decay_on"),
        ({"search": {"lr": {"choices": [0.1, 0.1]}}}, "repeat a value"),
        ({"search": {"lr": {"choices": [0.1, float("inf")]}}}, "finite"),
        ({"sampler": "python-random"}, "choices only"),
        ({"val_split": "kfold"}, "val_split must be one of"),
        ({"tie_break": "coin"}, "tie_break must be one of"),
        ({"train": {"lr_schedule": "cosine"}}, "lr_schedule must be one of"),
        ({"train": {"weight_decay_on": "biases"}}, "weight_decay_on must be one of"),
        ({"train": {"repeat_to_batches": -1}}, "repeat_to_batches"),
        ({"train": {"lr_final": float("nan")}}, "lr_final must be a finite number"),
        ({"train": {"optimizer": "adamw"}}, None),  # the README's optimiser list is the loop's
        ({"methods": [{"name": "ce", "loss": "cross_entropy", "schedule": {"loss.x": {"start": 0.0, "end": 1.0}}}]}, "> 0"),
        ({"methods": [{"name": "e", "loss": "exact", "schedule": {"loss.sigma": {"start": 1.0, "end": 0.1}},
                       "search": {"loss.sigma": {"low": 0.1, "high": 1.0}}}]}, "both searched and scheduled"),  # fmt: skip
        ({"datasets": [{"name": "wine", "label": "../x"}]}, "label must be"),
        ({"datasets": [{"name": "wine", "max_train": 1}]}, "max_train"),
    ],
)
def test_protocol_options_are_checked(change, message):
    if message is None:
        parse_spec({**MINIMAL, **change})
        return
    with pytest.raises(SpecError, match=message):
        parse_spec({**MINIMAL, **change})


def test_a_spec_with_every_protocol_option_survives_storage():
    spec = load_preset("exact-table1")
    assert spec_from_json(spec.to_json()) == spec
    assert spec.method("exact").schedule["loss.sigma"] == Schedule(10.0, 0.01, endpoint=False)
    assert isinstance(spec.search["lr"], Choice) and [d.label for d in spec.datasets][0] == "adult"


def test_schedule_values_follow_geomspace():
    import numpy as np

    paper = Schedule(10.0, 0.01, endpoint=False)
    values = [paper.value(e, 16) for e in range(16)]
    np.testing.assert_allclose(values, np.geomspace(10.0, 0.01, 16, endpoint=False), rtol=1e-12)
    assert math.isclose(values[-1], 10 * (0.01 / 10) ** (15 / 16)) and values[-1] > 0.015  # never reaches 0.01
    assert Schedule(10.0, 0.01).value(15, 16) == pytest.approx(0.01)


def test_loss_options_change_between_epochs():
    twin = get_loss("sigmoid_relaxation").module(temperature=10.0)
    logits, target = torch.randn(8, 4, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 4
    before = twin(logits, target)
    set_loss_option(twin, "temperature", 0.5)
    assert not torch.allclose(before, twin(logits, target))
    exact = ExactLoss(sigma=10.0)
    set_loss_option(exact, "sigma", 0.1)
    assert exact.sigma == 0.1
    with pytest.raises(SpecError, match="no option 'nope'"):
        set_loss_option(twin, "nope", 1.0)


def test_repeat_and_drop_last_make_the_epoch_and_the_lr_decays_per_epoch():
    torch.manual_seed(0)
    x, y = torch.randn(100, 5), torch.randint(0, 3, (100,))
    model = torch.nn.Linear(5, 3)
    seen, lrs = [], []
    from lossbench.losses import CrossEntropyLoss

    class Spy(CrossEntropyLoss):
        def forward(self, logits, target, reduction=None):
            seen.append(len(target))
            return super().forward(logits, target, reduction)

    history = fit(model, Spy(), x, y, epochs=4, batch_size=32, lr=0.5, lr_final=1e-3, lr_schedule="epoch",
                  repeat=3, drop_last=True, on_epoch_end=lambda e, row: lrs.append(row["lr"]))  # fmt: skip
    assert len(history) == 4 and seen == [32] * (4 * (300 // 32))  # 9 full batches of 3 x 100 samples per epoch
    gamma = (1e-3 / 0.5) ** (1 / 3)
    assert lrs == pytest.approx([0.5 * gamma**e for e in range(4)])  # held per epoch, lr_final at the last
    assert repeats(parse_spec({**MINIMAL, "train": {"repeat_to_batches": 500}}), 26048) == 4  # int(500*256/n)
    assert repeats(parse_spec(MINIMAL), 26048) == 1


def test_weight_decay_on_weights_leaves_biases_alone():
    model = torch.nn.Linear(4, 2)
    opt = make_optimizer(list(model.parameters()), "sgd", lr=0.1, weight_decay=0.5, weight_decay_on="weights")
    decays = {tuple(p.shape): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decays == {(2, 4): 0.5, (2,): 0.0}


def test_random_validation_split_is_scikit_learns_and_stages_are_standardised_on_their_part():
    from sklearn.model_selection import train_test_split

    fit_idx, val_idx = random_split(50, 0.2, 0)
    ref_fit, ref_val = train_test_split(list(range(50)), test_size=0.2, random_state=0)
    assert fit_idx.tolist() == ref_fit and val_idx.tolist() == ref_val
    spec = parse_spec({**MINIMAL, "val_split": "random", "train": {"standardize": True}})
    cache = DataCache(spec, torch.device("cpu"))
    for stage in ("tune", "final"):
        split = cache.get(spec.datasets[0], stage)
        torch.testing.assert_close(split.x_fit.double().mean(0), torch.zeros(13, dtype=torch.float64), atol=1e-6, rtol=0)
        torch.testing.assert_close(split.x_fit.double().std(0, unbiased=False), torch.ones(13, dtype=torch.float64), atol=1e-5, rtol=0)
    assert len(cache.get(spec.datasets[0], "tune").y_eval) == math.ceil(0.2 * len(cache.get(spec.datasets[0], "final").y_fit))
    assert [cache.get(spec.datasets[0], s).validation for s in ("tune", "final")] == ["random", None]  # (what runs record)


def test_max_train_subsamples_training_data_only():
    spec = parse_spec({**MINIMAL, "datasets": [{"name": "digits", "max_train": 300, "label": "digits"}]})
    cache = DataCache(spec, torch.device("cpu"))
    final = cache.get(spec.datasets[0], "final")
    from lossbench.data import load_dataset

    assert len(final.y_fit) == 300 and len(final.y_eval) == len(load_dataset("digits").y_test)  # test kept whole
    assert torch.bincount(final.y_fit).min() >= 25  # stratified


@pytest.mark.parametrize(
    "change, message",
    [
        ({"train": {"model": "mlp", "model_params": {"depth": -1}}}, "model 'mlp'"),
        ({"methods": [{"name": "f", "loss": "focal", "search": {"loss.gamma": {"low": -1.0, "high": 2.0}}}]}, "loss.gamma = -1.0"),
        ({"methods": [{"name": "f", "loss": "cross_entropy", "transforms": ["flooding"],
                       "search": {"flooding.b": {"choices": [0.1, -0.2]}}}]}, "flooding.b = -0.2"),  # fmt: skip
        ({"search": {"lr": {"choices": [0.1, 0.0]}}}, "lr = 0.0"),
    ],
)
def test_a_spec_that_cannot_run_is_refused_before_anything_is_stored(tmp_path, change, message):
    from lossbench.bench.runner import Runner
    from lossbench.bench.storage import default_storage_url, open_storage, stored_spec_names

    spec = parse_spec({**MINIMAL, **change})
    storage = open_storage(default_storage_url(tmp_path))
    with pytest.raises(SpecError, match=message):
        Runner(spec, storage, torch.device("cpu"))
    assert stored_spec_names(storage) == []  # nothing registered: the corrected spec may reuse the name


def test_every_method_of_the_table1_preset_passes_its_unit_check():
    """Every end of every grid of the paper's protocol builds and runs (margin 0 included)."""
    from lossbench.bench.execution import Split, check_unit
    from lossbench.data import load_dataset

    spec = load_preset("exact-table1")
    data = load_dataset("wine")
    split = Split(data, "tune", data.x_train, data.y_train, data.x_test, data.y_test, torch.bincount(data.y_train).float())
    for m in spec.methods:
        check_unit(split, resolve_method(m), spec)


def test_a_python_random_study_tunes_the_paper_codes_draws(tmp_path):
    from lossbench.bench.runner import Runner
    from lossbench.bench.storage import default_storage_url, open_storage

    grids = {"seed": [0, 1, 2, 3], "weight_decay": [0.0, 0.001], "lr": [0.01, 0.1, 1.0]}
    spec = parse_spec({**MINIMAL, "trials": 3, "seeds": 2, "sampler": "python-random", "train": {"epochs": 1},
                       "search_order": list(grids), "search": {k: {"choices": v} for k, v in grids.items()}})  # fmt: skip
    runner = Runner(spec, open_storage(default_storage_url(tmp_path), spec.heartbeat_interval), torch.device("cpu"))
    runner.run()
    trials = sorted(runner.units[0].tune.get_trials(), key=lambda t: t.number)
    assert [t.params for t in trials] == paper_draws(grids, 3)


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_a_sampler_reseeded_for_another_draw_draws_what_a_new_one_draws(tmp_path, sampler):
    """A pack's asks reuse one sampler, reseeded draw by draw: each draw, TPE's past its start-up
    trials included, is what that draw's own new sampler suggests there (the pack's earlier asks
    running in the same study: TPE reads them)."""
    from lossbench.bench.methods import suggest
    from lossbench.bench.runner import Runner
    from lossbench.bench.storage import default_storage_url, open_storage

    spec = parse_spec({**MINIMAL, "trials": 8, "sampler": sampler})  # TPE starts from its 4th trial
    runner = Runner(spec, open_storage(default_storage_url(tmp_path), spec.heartbeat_interval), torch.device("cpu"))
    unit = runner.units[0]
    space = unit.method.search_space(spec.search)
    gen = random.Random(0)
    history = [
        create_trial(state=TrialState.COMPLETE, value=gen.random(), distributions=space,
                     params={name: dist.to_external_repr(gen.uniform(dist.low, dist.high)) if hasattr(dist, "low")
                             else dist.choices[0] for name, dist in space.items()})
        for _ in range(6)
    ]  # fmt: skip

    def ask(study: optuna.Study, chosen: optuna.samplers.BaseSampler) -> dict:
        study.sampler = chosen
        trial = study.ask()
        for name, dist in space.items():
            suggest(trial, name, dist)
        return trial.params

    def study_of_history() -> optuna.Study:
        study = optuna.create_study(direction="maximize")
        study.add_trials(history)
        return study

    alone = study_of_history()
    new = [ask(alone, runner.sampler(unit, k)) for k in range(12)]
    shared, reused, samplers = study_of_history(), [], []
    for k in range(12):
        samplers.append(runner.sampler(unit, k, reuse=samplers[-1] if samplers else None))
        reused.append(ask(shared, samplers[-1]))
    assert len({id(s) for s in samplers}) == 1
    assert reused == new
    assert len({repr(p) for p in new}) == 12
