"""Studies that grow: more trials, seeds, methods or datasets reuse every stored run, and the
budget stays equal (issue 14)."""

from __future__ import annotations

import dataclasses

import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState

from lossbench.bench import compare
from lossbench.bench.results import collect
from lossbench.bench.runner import Runner
from lossbench.bench.spec import SpecError, evaluation_seeds, parse_spec
from lossbench.bench.storage import (
    CHOSEN_FROM_ATTR,
    CONFIG_ATTR,
    FINGERPRINT_ATTR,
    HISTORY_ATTR,
    choose,
    default_storage_url,
    final_runs,
    open_storage,
    register_spec,
    stored_spec,
    study_name,
)
from lossbench.cli import main
from tests.bench.conftest import write_spec

CPU = torch.device("cpu")
METHODS = [{"name": "ce", "loss": "cross_entropy"}, {"name": "hinge", "loss": "hinge"}]


def spec(trials: int = 2, seeds: int = 2, methods=METHODS, datasets=("wine",), **more):
    return parse_spec({
        "name": "grow", "trials": trials, "seeds": seeds, "sampler": "random", "baseline": "ce",
        "heartbeat_interval": 1, "train": {"model": "linear", "epochs": 1, "batch_size": 64},
        "datasets": list(datasets), "methods": list(methods), **more,
    })  # fmt: skip


def run(s, storage, pack: int = 32) -> list[tuple[str, str]]:
    """Run the spec to the end; the (unit, stage) of every run it trained."""
    ran: list[tuple[str, str]] = []
    Runner(s, storage, CPU, pack=pack, on_trial=lambda unit, stage, _: ran.append((unit, stage))).run()
    return ran


def trials(storage, s, stage: str, method: str, dataset: str = "wine"):
    return optuna.load_study(study_name=study_name(s.name, stage, dataset, method), storage=storage).get_trials()


def snapshot(storage, s) -> dict[tuple[str, str, str], dict[int, tuple]]:
    """Every stored trial per study, by id: its number, state, value and parameters."""
    return {
        (stage, d.label, m.name): {t._trial_id: (t.number, t.state, t.value, t.params) for t in trials(storage, s, stage, m.name, d.label)}
        for d, m in s.units() for stage in ("tune", "final")
    }  # fmt: skip


@pytest.fixture
def storage(tmp_path):
    return open_storage(default_storage_url(tmp_path), 1)


def test_more_seeds_train_only_the_new_seeds(storage):
    small, grown = spec(seeds=2), spec(seeds=3)
    run(small, storage)
    before = snapshot(storage, small)
    ran = run(grown, storage)
    assert sorted(ran) == [("wine / ce", "final"), ("wine / hinge", "final")]  # one new seed per unit, no tuning
    after = snapshot(storage, grown)
    for key, stored in before.items():
        assert {i: after[key][i] for i in stored} == stored, key  # every stored run kept as it was
        assert len(after[key]) == len(stored) + (key[0] == "final"), key
    for r in collect(grown, storage)[0].methods:
        assert r.complete and sorted(r.runs) == evaluation_seeds(grown)
    assert stored_spec(storage, "grow") == grown  # what `lossbench worker` reads


def test_more_trials_tune_only_the_extra_trials_and_the_finals_are_of_the_new_choice(storage):
    small, grown = spec(trials=2), spec(trials=6)
    run(small, storage)
    old_choice = {m: trials(storage, small, "final", m)[0].params for m in ("ce", "hinge")}
    ran = run(grown, storage)
    tuned = [unit for unit, stage in ran if stage == "tune"]
    assert sorted(tuned) == ["wine / ce"] * 4 + ["wine / hinge"] * 4  # the extra trials only
    changed = []
    for r in collect(grown, storage)[0].methods:
        final = trials(storage, grown, "final", r.method.name)
        assert [t.number for t in r.tune_trials] == list(range(6))
        best = choose(r.tune_trials)
        assert (r.chosen_trial, r.config) == (best.number, best.params)
        assert r.complete and all(t.params == best.params for t in r.runs.values())
        finals_ran = sum(1 for unit, stage in ran if unit == f"wine / {r.method.name}" and stage == "final")
        if best.params != old_choice[r.method.name]:
            changed.append(r.method.name)
            # A new choice re-trains every seed; the old choice's runs stay stored, unused.
            assert finals_ran == grown.seeds and len(final) == 2 * grown.seeds
            new = [t for t in final if t.number >= small.seeds]
            assert sorted(t.number for t in r.runs.values()) == [t.number for t in new]
            assert all(t.user_attrs[CHOSEN_FROM_ATTR] == best.number for t in new)
        else:
            assert finals_ran == 0 and len(final) == grown.seeds
    assert changed, "the extra trials changed no unit's choice: this test needs a spec where they do"


def test_adding_a_method_and_a_dataset_adds_only_their_units(storage):
    small = spec()
    grown = spec(methods=[*METHODS, {"name": "focal", "loss": "focal"}], datasets=("wine", "iris"))
    run(small, storage)
    before = snapshot(storage, small)
    ran = run(grown, storage)
    new_units = {"wine / focal", "iris / ce", "iris / hinge", "iris / focal"}
    assert {unit for unit, _ in ran} == new_units
    assert sorted(stage for _, stage in ran) == ["final"] * 8 + ["tune"] * 8  # 2 trials + 2 seeds per new unit
    after = snapshot(storage, grown)
    assert {k: after[k] for k in before} == before
    assert [r.complete for d in collect(grown, storage) for r in d.methods] == [True] * 6
    history = optuna.load_study(study_name="grow", storage=storage).user_attrs[HISTORY_ATTR]
    assert history == [{"fingerprint": small.fingerprint(), "grown": ["dataset 'iris' added", "method 'focal' added"]}]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"search": {"lr": {"low": 0.01, "high": 1.0, "log": True}}}, "search.lr.low: 0.001 -> 0.01"),
        ({"seeds": 2}, "seeds: 3 -> 2 (a study only grows)"),
        ({"methods": [METHODS[0], {"name": "hinge", "loss": "hinge", "params": {"margin": 2.0}}]}, "method 'hinge'.params"),
        ({"methods": METHODS[:1]}, "method 'hinge' removed"),
        ({"datasets": [{"name": "wine", "max_train": 100}]},
         "dataset 'wine' removed (now 'wine[max_train=100]': other parameters make another data set)"),
        ({"trials": 3, "sampler": "tpe"}, "sampler: \"random\" -> \"tpe\""),  # growth with another change: refused
    ],
)
def test_a_change_that_is_not_growth_is_refused_in_one_line(change, named):
    storage = optuna.storages.InMemoryStorage()
    register_spec(storage, spec(seeds=3))
    fingerprint = optuna.load_study(study_name="grow", storage=storage).user_attrs[FINGERPRINT_ATTR]
    with pytest.raises(SpecError) as err:
        register_spec(storage, spec(**{"trials": 2, "seeds": 3, **change}))
    message = str(err.value)
    assert "\n" not in message and "'grow'" in message and "different spec" in message and named in message
    assert optuna.load_study(study_name="grow", storage=storage).user_attrs[FINGERPRINT_ATTR] == fingerprint


def leaderboard(s, storage) -> list[tuple]:
    return [
        (d.dataset.label, r.method.name, r.rank, r.chosen_trial, r.config, [round(v, 6) for v in r.values(d.metric)])
        for d in collect(s, storage) for r in d.methods
    ]  # fmt: skip


def test_a_grown_study_gives_the_leaderboard_of_the_grown_spec_run_from_scratch(tmp_path):
    small = spec(trials=2, seeds=2)
    grown = spec(trials=4, seeds=3, methods=[*METHODS, {"name": "focal", "loss": "focal"}])
    resumed = open_storage(default_storage_url(tmp_path / "resumed"), 1)
    fresh = open_storage(default_storage_url(tmp_path / "fresh"), 1)
    run(small, resumed, pack=1)  # one run at a time in both: packs of other sizes differ by round-off
    run(grown, resumed, pack=1)
    run(grown, fresh, pack=1)
    assert leaderboard(grown, resumed) == leaderboard(grown, fresh)
    assert [r.complete for r in collect(grown, resumed)[0].methods] == [True] * 3


def test_a_worker_running_the_old_spec_takes_the_grown_one(storage):
    small, grown = spec(trials=2, seeds=2), spec(trials=3, seeds=3)
    ran: list[tuple[str, str]] = []
    old = Runner(small, storage, CPU, on_trial=lambda unit, stage, _: ran.append((unit, stage)))
    run(grown, storage)  # another worker grows the study (and finishes it) meanwhile
    grown_counts = {k: len(v) for k, v in snapshot(storage, grown).items()}
    old.run()
    assert old.spec == grown and ran == []  # it found the grown study finished: nothing of the old spec ran
    assert {k: len(v) for k, v in snapshot(storage, grown).items()} == grown_counts
    for m in ("ce", "hinge"):
        final = optuna.load_study(study_name=study_name("grow", "final", "wine", m), storage=storage)
        tune = [t for t in trials(storage, grown, "tune", m) if t.state == TrialState.COMPLETE]
        assert final.user_attrs[CHOSEN_FROM_ATTR] == choose(tune[:3]).number
        assert final.user_attrs[CONFIG_ATTR] == choose(tune[:3]).params
        runs = final_runs(final.get_trials(), evaluation_seeds(grown), choose(tune[:3]).number, choose(tune[:3]).params)
        assert sorted(runs) == evaluation_seeds(grown)


@pytest.mark.parametrize("entry", ["run", "compare"])
def test_the_report_is_of_the_spec_the_runner_finished_where_the_study_grew_meanwhile(tmp_path, monkeypatch, entry):
    original = Runner.run

    def grown_meanwhile(self, *args, **kwargs):  # another worker grows the stored study as this one starts
        register_spec(self.storage, dataclasses.replace(self.spec, trials=self.spec.trials + 1, seeds=self.spec.seeds + 1))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Runner, "run", grown_meanwhile)
    if entry == "run":
        assert main(["run", str(write_spec(tmp_path / "tiny.toml", trials=2, epochs=1)), "--out", str(tmp_path)]) == 0
    else:
        x, y = torch.randn(60, 3, generator=torch.Generator().manual_seed(0)), torch.arange(60) % 2
        result = compare((x, y), methods=["cross_entropy", "hinge"], out=tmp_path, trials=2, seeds=2, epochs=1,
                         sampler="random", device="cpu")  # fmt: skip
        assert result.complete and result.spec.seeds == 3
    board = pd.read_csv(tmp_path / "leaderboard.csv")  # the grown study's finished runs, every method ranked
    assert (board["seeds_done"] == 3).all() and board["rank"].notna().all()
