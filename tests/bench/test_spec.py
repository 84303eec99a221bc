import re
import tomllib
from pathlib import Path

import pytest

from lossbench.bench.methods import resolve_method
from lossbench.bench.spec import SpecError, load_preset, load_spec, parse_spec, preset_names, spec_from_json

MINIMAL = {"name": "s", "datasets": ["digits"], "methods": [{"name": "ce", "loss": "cross_entropy"}]}


def test_builtin_preset_parses_and_round_trips_through_storage_form():
    spec = load_preset("builtin")
    assert "builtin" in preset_names()
    assert [d.name for d in spec.datasets] == ["digits", "breast_cancer", "wine"]
    assert {"ce", "hinge", "smooth_accuracy", "focal", "ce+flooding", "exact"} <= {m.name for m in spec.methods}
    again = spec_from_json(spec.to_json())
    assert again == spec and again.fingerprint() == spec.fingerprint()


def test_constant_lr_round_trips():
    spec = parse_spec({**MINIMAL, "train": {"lr_final": 0}})
    assert spec.train.lr_final is None and spec_from_json(spec.to_json()) == spec


@pytest.mark.parametrize("name", ["builtin", "exact-uci"])
def test_every_preset_resolves(name):
    spec = load_preset(name)
    for method in spec.methods:
        resolve_method(method)


def test_defaults_fill_in():
    spec = parse_spec(MINIMAL)
    assert spec.trials == 20 and spec.seeds == 5 and spec.train.model == "linear"
    assert set(spec.search) == {"lr", "weight_decay"}
    assert len(spec.units()) == 1


@pytest.mark.parametrize(
    "change, message",
    [
        ({"trials": 0}, "trials and seeds"),
        ({"seeds": 1}, "seeds must be >= 2"),
        ({"trials": "many"}, "'trials' must be int"),
        ({"sampler": "grid"}, "sampler must be one of"),
        ({"selection_metric": "loss"}, "selection_metric must be one of"),
        ({"baseline": "nope"}, "baseline 'nope' is not one of the methods"),
        ({"val_fraction": 1.5}, "val_fraction"),
        ({"val_fraction": 0.99}, r"val_fraction must lie in \(0, 0.5\], got 0.99"),  # (tuning would fit on 1 %)
        ({"colour": "red"}, "unknown field"),
        # (two numbers were read as a range, where a user meant two choices; three were refused)
        ({"search": {"lr": [0.01, 0.1]}}, r"\[search\].lr: a bare list \[0.01, 0.1\] is neither a range nor a grid: "
                                          r"write \{choices = \[0.01, 0.1\]\} for a grid"),
        ({"search": {"model.width": [16, 32, 64]}}, r"a bare list \[16, 32, 64\] is neither a range nor a grid"),
        ({"name": "a:b"}, "name must be"),
        ({"name": ".."}, "name must be"),
        ({"name": "."}, "name must be"),
        ({"name": "/etc/x"}, "name must be"),
        ({"name": "a\\b"}, "name must be"),
        ({"name": "a\nb"}, "name must be"),
        ({"name": ""}, "name must be"),
        ({"name": "x" * 129}, "at most 128 characters"),
        ({"datasets": []}, "'datasets' is empty"),
        ({"methods": [{"name": "ce"}]}, "missing required field 'loss'"),
        ({"methods": [{"name": "x", "loss": "cross_entropy"}, {"name": "x", "loss": "hinge"}]}, "unique"),
        ({"train": {"optimizer": "lbfgs"}}, "optimizer must be one of"),
        ({"train": {"epochs": 0}}, "epochs and batch_size"),
        ({"search": {"lr": {"low": 1.0, "high": 0.1}}}, "needs low < high"),
        ({"search": {"lr": {"low": 0.0, "high": 0.1, "log": True}}}, "log range needs low > 0"),
        ({"search": {"momentum": {"low": 0.1, "high": 0.9}}}, "unknown field"),
        ({"train": {"weight_decay_on": "none"}, "search": {"weight_decay": {"choices": [0.0, 1e-4]}}},
         "weight_decay_on = 'none' decays nothing"),
        ({"train": {"early_stopping": "yes"}}, "'early_stopping' must be bool"),
        ({"train": {"early_stopping": True, "epochs": 1}}, "early_stopping chooses among epochs"),
        ({"seed": 2**62}, "seed must lie in"),
        ({"seed": -1}, "seed must lie in"),
        ({"search": {"seed": {"choices": [0, 2**64 + 1]}}}, r"\[search\]\.seed: seed must lie in .*got 18446744073709551617"),
        ({"search": {"seed": {"choices": [-1, 3]}}}, r"\[search\]\.seed: seed must lie in"),
        ({"heartbeat_interval": 10**11}, "heartbeat_interval must lie in"),
        ({"datasets": [{"name": "table", "params": {"path": "t.csv", "data_dir": "x"}}]},
         r"datasets\[0\] \(table\): params.data_dir .* given by --data-dir"),
    ],
)
def test_bad_specs_name_the_problem(change, message):
    with pytest.raises(SpecError, match=message):
        parse_spec({**MINIMAL, **change})


def test_training_without_weight_decay_searches_none():
    spec = parse_spec({**MINIMAL, "train": {"weight_decay_on": "none"}})
    assert set(spec.search) == {"lr"}
    assert spec_from_json(spec.to_json()) == spec
    method = resolve_method(spec.methods[0])
    assert "weight_decay" not in method.search_space(spec.search)


def test_spec_file_errors(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec file"):
        load_spec(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed")
    with pytest.raises(SpecError, match="invalid TOML"):
        load_spec(bad)
    good = tmp_path / "good.toml"
    good.write_text('name = "g"\ndatasets = ["wine"]\n[[methods]]\nname = "ce"\nloss = "cross_entropy"\n')
    assert load_spec(good).datasets[0].name == "wine"
    with pytest.raises(SpecError, match="unknown preset"):
        load_preset("nope")


def test_method_restricted_to_datasets():
    spec = parse_spec(
        {**MINIMAL, "datasets": ["digits", "wine"],
         "methods": [{"name": "ce", "loss": "cross_entropy"}, {"name": "f", "loss": "focal", "datasets": ["wine"]}]}
    )  # fmt: skip
    assert [(d.name, m.name) for d, m in spec.units()] == [("digits", "ce"), ("wine", "ce"), ("wine", "f")]


def test_readme_example_spec_is_valid():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"```toml\n(.*?)```", readme, re.S).group(1)
    spec = parse_spec(tomllib.loads(block), "README example")
    assert [m.name for m in spec.methods] == ["ce", "focal", "ce+flooding", "ce+mgs", "ce+posthoc"]
    then = spec.method("ce+mgs").then
    assert then.epochs == 2 and then.lr_scale == 0.1 and [t.name for t in then.transforms] == ["mgs"]
    assert spec.method("ce+posthoc").decision == "logit_adjusted" and spec.method("ce").decision == "argmax"
    assert spec.train.early_stopping is False and spec.train.weight_decay_on == "all"
    focal = resolve_method(spec.method("focal"))
    assert focal.search_space(spec.search)["loss.gamma"].high == 3.0
    assert "flooding.b" in resolve_method(spec.method("ce+flooding")).search_space(spec.search)


def test_methods_may_fix_module_options_such_as_exacts_sigma_schedule():
    spec = parse_spec({**MINIMAL, "methods": [{"name": "e", "loss": "exact", "params": {"sigma": 10.0, "sigma_min": 0.01}}]})
    method = resolve_method(spec.methods[0])
    space = method.search_space(spec.search)
    assert "loss.sigma" not in space and "loss.margin" in space
    loss = method.build_loss({"lr": 0.1}, {}, "multiclass").loss
    loss.set_epoch(15, 16)
    assert loss.sigma == 0.01


def test_resampled_splits_refuse_evaluation_seeds_the_loaders_split_cannot_take():
    """Each evaluation seed (seed * 1000 + i) draws the loader's split: scikit-learn's random split takes
    seeds below 2**32, so a large spec seed would fail only after the tuning."""
    spec = {**MINIMAL, "seed": 5_000_000, "resample_splits": True}
    table = {"name": "table", "params": {"path": "t.csv", "split": "random"}}
    with pytest.raises(SpecError, match=r"datasets\[0\] \(table\): resample_splits draws a random split .* up to 5000000004"):
        parse_spec({**spec, "datasets": [table]})
    stratified = {"name": "table", "params": {"path": "t.csv"}}  # (the table's default split takes seeds below 2**64)
    assert parse_spec({**spec, "datasets": [stratified]}).seed == 5_000_000
    assert parse_spec({**spec, "seed": 4_000_000, "datasets": [table]}).seed == 4_000_000


def test_resampled_splits_warn_of_each_dataset_whose_test_split_is_fixed():
    """A set shipped with its test file, or given a test_path, keeps its split: say so, do not ignore it."""
    spec = {**MINIMAL, "seed": 5_000_000, "resample_splits": True}
    given = {"name": "table", "params": {"path": "t.csv", "test_path": "u.csv", "split": "random"}, "label": "given"}
    with pytest.warns(UserWarning) as caught:
        parse_spec({**spec, "datasets": ["wine", "adult", given]})
    messages = [str(w.message) for w in caught]
    assert messages == [
        "spec datasets[1] (adult): resample_splits cannot apply, its test split is fixed (its loader draws none); "
        "its final runs keep it",
        "spec datasets[2] (given): resample_splits cannot apply, its test split is fixed (test_path is given); "
        "its final runs keep it",
    ]  # (and the given split's seed, which its loader never draws, is not refused)


def test_a_range_with_whole_ends_for_a_whole_number_hyperparameter_is_searched_in_whole_numbers():
    # TOML's { low = 4, high = 8 } reached Optuna as floats: 6.0 samples, refused as no positive integer
    import optuna

    spec = parse_spec({"name": "x", "datasets": ["wine"], "methods": [
        {"name": "m", "loss": "cross_entropy", "transforms": ["mgs"], "search": {"mgs.n_samples": {"low": 4, "high": 8}}},
        {"name": "h", "loss": "hinge", "search": {"loss.p": {"low": 1, "high": 2}, "loss.margin": {"low": 0, "high": 2}}},
    ]})  # fmt: skip
    mgs, hinge = (resolve_method(m).search_space(spec.search) for m in spec.methods)
    assert mgs["mgs.n_samples"] == optuna.distributions.IntDistribution(4, 8)
    assert hinge["loss.p"] == optuna.distributions.IntDistribution(1, 2)
    assert hinge["loss.margin"] == optuna.distributions.FloatDistribution(0.0, 2.0)  # (a decimal hyperparameter)
