"""End-to-end runs of small studies in-process: budget, evaluation, resume, report."""

from __future__ import annotations

import csv
import math

import optuna
import pytest
import torch
from optuna.trial import TrialState

from lossbench.bench.report import PLOT_KINDS, write_report
from lossbench.bench.results import collect
from lossbench.bench.runner import Runner
from lossbench.bench.spec import SpecError, evaluation_seeds, load_spec, parse_spec
from lossbench.bench.storage import (
    default_storage_url,
    open_storage,
    run_record,
    study_name,
)

from .conftest import write_spec


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    spec = load_spec(write_spec(out / "spec.toml"))
    storage = open_storage(default_storage_url(out), spec.heartbeat_interval)
    seen = []
    Runner(spec, storage, torch.device("cpu"), on_trial=lambda unit, stage, r: seen.append((unit, stage))).run()
    return spec, storage, out, seen


def trials_of(storage, spec, stage, method, dataset="wine"):
    return optuna.load_study(study_name=study_name(spec.name, stage, dataset, method), storage=storage).get_trials()


def test_every_method_gets_the_same_budget_and_seeds(finished):
    spec, storage, _, seen = finished
    assert len(seen) == 2 * (spec.trials + spec.seeds)
    for method in ("ce", "hinge"):
        tune = trials_of(storage, spec, "tune", method)
        final = trials_of(storage, spec, "final", method)
        assert [t.state for t in tune] == [TrialState.COMPLETE] * spec.trials
        assert sorted(t.user_attrs["seed"] for t in final) == evaluation_seeds(spec)
        # The chosen configuration is the best of the budget, re-trained unchanged.
        best = max(tune, key=lambda t: (t.value, -t.number))
        assert all(t.params == best.params for t in final)
        for t in tune + final:
            assert {"metrics", "curves", "seed", "worker", "seconds"} <= set(run_record(t))
            assert len(run_record(t)["curves"]["train_loss"]) == spec.train.epochs
    # Tuning trials of different methods share seeds trial by trial; the test split is unseen:
    # their value is the validation accuracy, the final runs' value is the test accuracy.
    assert {run_record(t)["seed"] for t in trials_of(storage, spec, "tune", "ce")} == {
        run_record(t)["seed"] for t in trials_of(storage, spec, "tune", "hinge")
    }


def test_rerunning_a_finished_study_trains_nothing(finished):
    spec, storage, _, _ = finished
    before = {m: len(trials_of(storage, spec, s, m)) for s in ("tune", "final") for m in ("ce", "hinge")}
    ran = []
    Runner(spec, storage, torch.device("cpu"), on_trial=lambda *a: ran.append(a)).run()
    assert ran == []
    assert before == {m: len(trials_of(storage, spec, s, m)) for s in ("tune", "final") for m in ("ce", "hinge")}


def test_report_numbers_trace_to_stored_trials(finished):
    spec, storage, out, _ = finished
    results = collect(spec, storage)
    files = write_report(spec, results, out)
    assert {p.name for p in files} >= {"report.md", "leaderboard.csv", "runs.csv", "report.html"}
    (wine,) = results
    ce = wine.method("ce")
    final = trials_of(storage, spec, "final", "ce")
    accs = [run_record(t)["metrics"]["accuracy"] for t in sorted(final, key=lambda t: t.user_attrs["seed"])]
    assert ce.summaries["accuracy"].mean == pytest.approx(sum(accs) / len(accs))
    hinge = wine.method("hinge")
    assert hinge.paired is not None and hinge.paired.n == spec.seeds
    rows = list(csv.DictReader((out / "runs.csv").open()))
    by_trial = {(r["method"], int(r["trial"])): float(r["accuracy"]) for r in rows}
    for t in final:
        assert by_trial[("ce", t.number)] == pytest.approx(run_record(t)["metrics"]["accuracy"])
    board = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert {r["method"] for r in board} == {"ce", "hinge"}
    assert float(next(r for r in board if r["method"] == "ce")["accuracy_mean"]) == pytest.approx(ce.summaries["accuracy"].mean)
    md = (out / "report.md").read_text()
    assert f"tune #{ce.chosen_trial}" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(PLOT_KINDS)
    assert not math.isnan(wine.method("ce").rank)
    # Budget curve: the best validation score after n trials, in draw order (here: by trial number, no retries).
    values = [t.value for t in sorted(ce.tune_trials, key=lambda t: t.number)]
    assert ce.budget_curve() == [max(values[: n + 1]) for n in range(len(values))]


def test_a_changed_spec_under_the_same_name_is_refused(finished, tmp_path):
    spec, storage, _, _ = finished
    # more epochs is a change, not growth (tests/bench/test_growth.py grows trials, seeds, methods, datasets)
    changed = load_spec(write_spec(tmp_path / "changed.toml", trials=spec.trials, epochs=spec.train.epochs + 1))
    with pytest.raises(SpecError, match="different spec"):
        Runner(changed, storage, torch.device("cpu"))


def test_incompatible_method_is_a_clear_error(tmp_path):
    spec = parse_spec({"name": "bad", "datasets": ["wine"], "methods": [{"name": "z", "loss": "zlpr"}]})
    storage = open_storage(default_storage_url(tmp_path))
    with pytest.raises(SpecError, match="cannot run on a multiclass dataset"):
        Runner(spec, storage, torch.device("cpu"))


def test_unknown_names_are_clear_errors(tmp_path):
    storage = open_storage(default_storage_url(tmp_path))
    for methods, message in (
        ([{"name": "x", "loss": "nope"}], "unknown loss 'nope'"),
        ([{"name": "x", "loss": "cross_entropy", "transforms": ["nope"]}], "unknown transform 'nope'"),
        ([{"name": "x", "loss": "cross_entropy", "params": {"gama": 1}}], "has no parameter 'gama'"),
        ([{"name": "x", "loss": "focal", "search": {"loss.gama": {"low": 0, "high": 1}}}], r"names no tunable parameter; use one of \['loss.alpha', 'loss.gamma'\]$"),
        ([{"name": "x", "loss": "focal", "search": {"loss.ignore_index": {"low": 0, "high": 1}}}], "loss.ignore_index cannot be searched"),
        ([{"name": "x", "loss": "focal", "schedule": {"loss.ignore_index": {"start": 1.0, "end": 2.0}}}],
         "loss.ignore_index cannot be scheduled"),
        ([{"name": "x", "loss": "macro_soft_f1", "transforms": ["iflood"]}], "needs per-sample losses"),
        # EXACT's registered search draws standardize (batch-level) too: a packed trial of it would fail its mates
        ([{"name": "x", "loss": "exact", "transforms": ["iflood"]}], r"with standardize set \(its search may set it"),
    ):
        spec = parse_spec({"name": "bad", "datasets": ["wine"], "methods": methods})
        with pytest.raises(SpecError, match=message):
            Runner(spec, storage, torch.device("cpu"))


def test_a_storage_without_heartbeats_is_refused(tmp_path):
    """Its trials would never go stale when the worker dies, and a worker with heartbeats would
    fail its live trials as stale (they have none): refused before anything is stored."""
    spec = parse_spec({"name": "nobeat", "datasets": ["wine"], "methods": [{"name": "ce", "loss": "cross_entropy"}]})
    storage = open_storage(default_storage_url(tmp_path))
    with pytest.raises(SpecError, match="heartbeats"):
        Runner(spec, storage, torch.device("cpu"))
    assert optuna.get_all_study_names(storage) == []


def test_a_storage_in_memory_checks_a_spec_but_runs_nothing():
    """The command line checks a spec against a storage in memory; running needs the pack methods
    and heartbeats of open_storage's storage."""
    spec = parse_spec({"name": "mem", "datasets": ["wine"], "methods": [{"name": "ce", "loss": "cross_entropy"}]})
    runner = Runner(spec, optuna.storages.InMemoryStorage(), torch.device("cpu"))
    with pytest.raises(SpecError, match="open_storage"):
        runner.run()


def test_a_failed_trial_stores_its_reason(tmp_path, monkeypatch):
    import lossbench.bench.runner as runner_module

    spec = parse_spec({"name": "fails", "trials": 2, "seeds": 2, "datasets": ["wine"],
                       "methods": [{"name": "ce", "loss": "cross_entropy"}]})  # fmt: skip
    storage = open_storage(default_storage_url(tmp_path), spec.heartbeat_interval)
    runner = Runner(spec, storage, torch.device("cpu"))

    def broken(*args, **kwargs):
        raise RuntimeError("the device fell over\nsecond line")

    monkeypatch.setattr(runner_module, "train_and_score", broken)
    monkeypatch.setattr(runner_module, "train_and_score_packed", broken)
    with pytest.raises(RuntimeError, match="fell over"):
        runner.run()
    failed = [t for t in runner.units[0].tune.get_trials() if t.state == TrialState.FAIL]
    assert failed and all(t.user_attrs["error"] == "RuntimeError: the device fell over" for t in failed)


@pytest.mark.parametrize("frozen_before", [False, True])
def test_a_run_keeps_older_objects_out_of_the_garbage_collectors_passes_and_restores_it(tmp_path, frozen_before):
    import gc

    spec = load_spec(write_spec(tmp_path / "spec.toml", trials=1, epochs=1))
    storage = open_storage(default_storage_url(tmp_path), spec.heartbeat_interval)
    seen = []
    runner = Runner(spec, storage, torch.device("cpu"), on_trial=lambda *_: seen.append(gc.get_freeze_count()))
    if frozen_before:  # the process froze its own: the run leaves that to it
        gc.freeze()
    try:
        runner.run()
        assert seen and all(count > 0 for count in seen)
        assert (gc.get_freeze_count() > 0) == frozen_before  # (frozen objects freed meanwhile leave the count)
    finally:
        gc.unfreeze()


def test_a_waiting_worker_says_when_a_stopped_workers_trials_are_retried(tmp_path):
    # a worker waiting for the trials of another (on another machine, where it cannot see the process) says
    # for how long at most: a stopped worker's are retried once their heartbeats are the grace period old
    spec = load_spec(write_spec(tmp_path / "spec.toml"))  # (heartbeat_interval = 1)
    runner = Runner(spec, open_storage(default_storage_url(tmp_path / "out"), spec.heartbeat_interval), torch.device("cpu"))
    assert runner._waiting_for() == ("waiting for trials running in other workers; a stopped worker's are retried once "
                                     "3 s without a heartbeat")  # fmt: skip
