"""The tuner's storage work per trial stays small, and the storage's pack methods write what
Optuna's own ask, tell and enqueue write (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import datetime, timedelta

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import event, select

import lossbench.bench.runner as runner_module
from lossbench.bench.execution import RunResult
from lossbench.bench.runner import Heartbeats, Runner
from lossbench.bench.spec import load_spec
from lossbench.bench.storage import Outcome, default_storage_url, open_storage

from .conftest import write_spec
from .test_distributed import assert_complete_and_counted_once, wait_for

SPACE = {
    "x": FloatDistribution(0.0, 1.0),
    "n": IntDistribution(1, 8, log=True),
    "c": CategoricalDistribution(["a", None, 2.5]),
}
PARAMS = [{"x": 0.25, "n": 4, "c": None}, {"x": 0.75, "n": 1, "c": 2.5}]
RECORD = {"metrics": {"accuracy": 0.5}, "curves": {"train_loss": [1.0, 0.5]}, "seed": 3}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return default_storage_url(tmp_path)
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def away_from_utc(monkeypatch):
    """A local time zone 5:30 from UTC: Optuna 5 stores naive UTC, so a local time stored as it is shows."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _study(storage, tmp_path, label):
    return optuna.create_study(storage=storage, study_name=f"{tmp_path.name}:{label}", direction="maximize")


def _stored(study):
    return [
        (t.number, t.state, t.values, t.params, t.distributions, t.user_attrs, t.system_attrs)
        for t in study.get_trials()
    ]


def _stub_training(monkeypatch):
    def one(split, method, params, spec, seed):
        return RunResult({"accuracy": 0.5, "diverged": 0.0}, {"train_loss": [0.0] * spec.train.epochs}, 0.0)

    monkeypatch.setattr(runner_module, "train_and_score", one)
    monkeypatch.setattr(
        runner_module,
        "train_and_score_packed",
        lambda split, method, runs, spec: [one(split, method, p, spec, s) for p, s in runs],
    )


# Optuna's own ask and tell, with the runner's reads around them, sent 55-65 statements per run.
# This small study (2 units of 8 trials + 2 seeds) sends 12.3 per run one at a time and 3.9 packed (a unit's
# choice of configuration and first reads weigh more than in a larger one); a per-trial read coming back fails the bounds.
@pytest.mark.parametrize("pack, bound", [(1, 16), (8, 8)])  # measured: 12.3 and 3.9 (2026-12-07)
def test_a_study_sends_few_statements_per_run(tmp_path, monkeypatch, pack, bound):
    _stub_training(monkeypatch)
    spec = load_spec(write_spec(tmp_path / "spec.toml", trials=8))
    storage = open_storage(default_storage_url(tmp_path), spec.heartbeat_interval)
    runner = Runner(spec, storage, torch.device("cpu"), pack=pack)
    statements = []
    event.listen(
        storage.engine, "before_cursor_execute", lambda conn, cursor, sql, *rest: statements.append(sql)
    )
    runner.run()
    assert_complete_and_counted_once(storage, spec)
    runs = len(runner.units) * (spec.trials + spec.seeds)
    assert len(statements) / runs <= bound, f"{len(statements) / runs:.1f} statements per run"


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_pack_stores_what_optunas_ask_and_tell_store(url, tmp_path, away_from_utc):
    storage = open_storage(url, heartbeat_interval=10)
    theirs, ours = _study(storage, tmp_path, "optuna"), _study(storage, tmp_path, "pack")
    for params, (state, value) in zip(PARAMS, ((TrialState.COMPLETE, 0.25), (TrialState.PRUNED, None))):
        theirs.enqueue_trial(params)  # Optuna's ask and tell with the same parameters
        trial = theirs.ask(SPACE)
        trial.set_user_attr("run", RECORD)
        theirs.tell(trial, value, state=state)
    started = storage.start_trials(ours._study_id, 2, [])
    assert [(t.number, t.state) for t in started] == [(0, TrialState.RUNNING), (1, TrialState.RUNNING)]
    storage.set_trials_params(
        [(t._trial_id, k, v, SPACE[k]) for t, p in zip(started, PARAMS) for k, v in p.items()]
    )
    done = storage.finish_trials([Outcome(started[0]._trial_id, TrialState.COMPLETE, 0.25, {"run": RECORD}),
                                  Outcome(started[1]._trial_id, TrialState.PRUNED, None, {"run": RECORD})])  # fmt: skip
    assert done == [t._trial_id for t in started]
    # All but the system attributes, where Optuna's trials say they were queued.
    assert [s[:6] for s in _stored(ours)] == [s[:6] for s in _stored(theirs)]
    for a, b in zip(ours.get_trials(), theirs.get_trials()):
        assert a.datetime_start <= a.datetime_complete
        assert abs(a.datetime_start - b.datetime_start) < timedelta(minutes=10)  # same clock, same zone
        assert abs(a.datetime_complete - b.datetime_complete) < timedelta(minutes=10)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_queued_trials_are_what_enqueue_trial_stores_and_optuna_takes_them(url, tmp_path, away_from_utc):
    storage = open_storage(url, heartbeat_interval=10)
    theirs, ours = _study(storage, tmp_path, "optuna"), _study(storage, tmp_path, "pack")
    for seed in (7, 8):
        theirs.enqueue_trial(PARAMS[0], user_attrs={"seed": seed})
    queued = storage.queue_trials(ours._study_id, PARAMS[0], [{"seed": 7}, {"seed": 8}])
    assert _stored(ours) == _stored(theirs)
    assert [(t.number, t.state, t.user_attrs, t.system_attrs) for t in queued] == [
        (t.number, t.state, t.user_attrs, t.system_attrs) for t in ours.get_trials()
    ]
    trial = ours.ask(
        SPACE
    )  # Optuna's own worker takes a queued run (one conditional UPDATE), with its configuration
    assert trial.params == PARAMS[0] and trial.user_attrs == {"seed": 7}
    assert abs(ours.get_trials()[0].datetime_start - datetime.now()) < timedelta(minutes=10)


@pytest.mark.parametrize("returning", [True, False], ids=["update-returning", "one-update-per-trial"])
def test_a_trial_failed_as_stale_meanwhile_keeps_its_state(url, tmp_path, monkeypatch, returning):
    storage = open_storage(url, heartbeat_interval=10)
    study = _study(storage, tmp_path, "s")
    started = storage.start_trials(study._study_id, 2, [])
    storage.set_trial_state_values(started[0]._trial_id, TrialState.FAIL)  # another worker found it stale
    if not returning:  # a database that cannot return updated rows
        monkeypatch.setattr(storage.engine.dialect, "update_returning", False)
    done = storage.finish_trials(
        [Outcome(t._trial_id, TrialState.COMPLETE, 1.0, {"run": RECORD}) for t in started]
    )
    assert done == [started[1]._trial_id]
    dead, alive = study.get_trials()
    assert (dead.state, dead.values, dead.user_attrs) == (TrialState.FAIL, None, {})
    assert (alive.state, alive.values, alive.user_attrs) == (TrialState.COMPLETE, [1.0], {"run": RECORD})


def test_workers_starting_trials_at_once_number_them_once_and_take_each_queued_trial_once(url, tmp_path):
    storage = open_storage(url, heartbeat_interval=10)
    study = _study(storage, tmp_path, "s")
    queued = storage.queue_trials(study._study_id, {}, [{"seed": i} for i in range(6)])
    workers = [open_storage(url, heartbeat_interval=10) for _ in range(2)]
    started: list[list] = [[], []]
    together = threading.Barrier(2, timeout=60)

    def work(i):
        together.wait()
        for _ in range(5):
            started[i] += workers[i].start_trials(study._study_id, 3, queued)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [t._trial_id for t in started[0] + started[1]]
    assert len(ids) == 30 and len(set(ids)) == 30  # no trial started twice
    assert {t._trial_id for t in queued} <= set(ids)  # every queued one, once
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(30))  # 6 queued + 24 new, numbered once each
    assert {t._trial_id: t.number for t in trials} == {t._trial_id: t.number for t in started[0] + started[1]}
    assert all(t.state == TrialState.RUNNING for t in trials)
    with storage.scoped_session() as session:
        beating = set(session.execute(select(models.TrialHeartbeatModel.trial_id)).scalars())
    assert set(ids) <= beating


def test_a_running_pack_beats_from_one_thread(tmp_path):
    storage = open_storage(default_storage_url(tmp_path), heartbeat_interval=1)
    study = _study(storage, tmp_path, "s")
    ids = [t._trial_id for t in storage.start_trials(study._study_id, 3, [])]
    beats = models.TrialHeartbeatModel

    def last_beats():
        with storage.scoped_session() as session:
            return dict(
                session.execute(select(beats.trial_id, beats.heartbeat).where(beats.trial_id.in_(ids))).all()
            )

    first = last_beats()
    assert first.keys() == set(ids)
    with Heartbeats(storage) as heartbeats, heartbeats.beating(ids):
        assert wait_for(
            lambda: all(beat > first[i] for i, beat in last_beats().items()), timeout=60, poll=0.2
        )


def test_what_a_runner_knows_of_its_studies_is_what_the_storage_holds(tmp_path, monkeypatch):
    """The runner reads a study again only when its counts of trials by state changed; what it
    keeps meanwhile (its reads, with its own packs finished) must be what a fresh read returns."""
    _stub_training(monkeypatch)
    spec = load_spec(write_spec(tmp_path / "spec.toml", trials=5))
    url = default_storage_url(tmp_path)
    runner = Runner(spec, open_storage(url, spec.heartbeat_interval), torch.device("cpu"), pack=2)
    runner.run()
    fresh = open_storage(url)
    for unit in runner.units:
        for study in (unit.tune, unit.final):
            known = runner._known[study._study_id]
            stored = optuna.load_study(study_name=study.study_name, storage=fresh).get_trials()
            assert [
                (t.number, t.state, t.values, t.params, t.distributions, t.user_attrs, t.system_attrs)
                for t in known
            ] == [
                (t.number, t.state, t.values, t.params, t.distributions, t.user_attrs, t.system_attrs)
                for t in stored
            ]
    # Another worker's change (a queued trial) changes the counts: the next look reads it.
    unit = runner.units[0]
    optuna.load_study(study_name=unit.tune.study_name, storage=fresh).enqueue_trial({"lr": 0.1})
    assert [t.state for t in runner._read(unit.tune)][-1] == TrialState.WAITING


def test_tpe_suggests_from_a_history_kept_between_packs_what_it_suggests_from_one_built_anew(tmp_path, monkeypatch):
    # (each pack built the samplers' history anew, Optuna copying every finished trial: quadratic in a unit's trials)
    import hashlib
    import json

    def one(split, method, params, spec, seed):  # (scores that differ by configuration: TPE's history matters)
        score = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).digest()[0] / 255
        return RunResult({"accuracy": score, "diverged": 0.0}, {"train_loss": [0.0] * spec.train.epochs}, 0.0)

    monkeypatch.setattr(runner_module, "train_and_score", one)
    monkeypatch.setattr(runner_module, "train_and_score_packed", lambda split, method, runs, spec: [one(split, method, p, spec, s) for p, s in runs])
    spec = dataclasses.replace(load_spec(write_spec(tmp_path / "spec.toml", trials=24)), sampler="tpe")

    def tuned(name: str, pack: int) -> list:
        runner = Runner(spec, open_storage(default_storage_url(tmp_path / name), spec.heartbeat_interval), torch.device("cpu"), pack=pack)
        runner.run()
        read = 0
        for unit in runner.units:  # (what the samplers read last: the tuning trials finished by then, in order)
            kept = [t for t in runner._histories[unit.label].study.get_trials() if t.state == TrialState.COMPLETE]
            stored, read = unit.tune.get_trials(), read + len(kept)
            assert [(t.params, t.values) for t in kept] == [(t.params, t.values) for t in stored[: len(kept)]]
        assert read > 0
        return [(unit.label, [t.params for t in unit.tune.get_trials()]) for unit in runner.units]

    kept = {pack: tuned(f"kept{pack}", pack) for pack in (2, 64)}
    keeping = Runner._history

    def anew(self, unit, trials):  # (the history built anew at every pack, as before)
        self._histories.pop(unit.label, None)
        return keeping(self, unit, trials)

    monkeypatch.setattr(Runner, "_history", anew)
    assert kept[2] == kept[64] == tuned("anew2", 2)


def test_the_study_names_of_a_storage_are_read_without_its_trials(tmp_path, monkeypatch):
    # (Optuna's study summaries read every trial of every study: 10 s of a report at 20,000 trials, twice)
    from lossbench.bench.results import collect
    from lossbench.bench.storage import stored_spec_names

    _stub_training(monkeypatch)
    spec = load_spec(write_spec(tmp_path / "spec.toml", trials=3))
    storage = open_storage(default_storage_url(tmp_path), spec.heartbeat_interval)
    Runner(spec, storage, torch.device("cpu")).run()
    monkeypatch.setattr(optuna, "get_all_study_summaries", None)  # (called: a TypeError)
    with monkeypatch.context() as reads:
        reads.setattr(type(storage), "get_all_trials", lambda *a, **k: pytest.fail("a trial read to list the studies"))
        assert stored_spec_names(storage) == [spec.name]
    assert len(collect(spec, storage)) == len(spec.datasets)  # (its studies' trials read, no other's)


def test_a_worker_whose_count_of_a_units_runs_is_out_of_date_reads_them_again_and_queues_none_twice(tmp_path, monkeypatch):
    # another worker queues a unit's evaluation seeds between this one's read and its queue_trials: this one
    # queued them too, and both copies trained
    from lossbench.bench.storage import HeartbeatStorage

    from .test_distributed import all_trials

    _stub_training(monkeypatch)
    spec = load_spec(write_spec(tmp_path / "spec.toml", trials=2))
    storage = open_storage(default_storage_url(tmp_path), spec.heartbeat_interval)
    real, raced = HeartbeatStorage.queue_trials, []

    def another_worker_first(self, study_id, fixed_params, user_attrs, expect=None):
        if study_id not in raced:
            raced.append(study_id)
            real(self, study_id, fixed_params, user_attrs)  # (its own read was current)
        return real(self, study_id, fixed_params, user_attrs, expect)

    monkeypatch.setattr(HeartbeatStorage, "queue_trials", another_worker_first)
    Runner(spec, storage, torch.device("cpu"), pack=1).run()
    assert len(raced) == len(spec.units())
    for (stage, method), trials in all_trials(storage, spec).items():
        if stage == "final":
            seeds = [t.user_attrs["seed"] for t in trials]
            assert sorted(seeds) == sorted(set(seeds)) and all(t.state == TrialState.COMPLETE for t in trials), method
