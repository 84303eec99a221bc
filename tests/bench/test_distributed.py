"""Crash safety and several workers: kill -9 / resume, two workers on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import threading
import time
from collections import Counter

import optuna
import pytest
import sqlalchemy
import torch
from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import Insert, event

from lossbench.bench import processes
from lossbench.bench.execution import run_seed
from lossbench.bench.runner import Runner, draw_index
from lossbench.bench.spec import evaluation_seeds, load_spec
from lossbench.bench.storage import (
    budget_trials,
    default_storage_url,
    final_runs,
    open_storage,
    register_spec,
    run_record,
    set_study_attrs,
    study_name,
)

from .conftest import cli, cli_ok, write_spec


def all_trials(storage, spec):
    out = {}
    for d, m in spec.units():
        for stage in ("tune", "final"):
            out[(stage, m.name)] = optuna.load_study(study_name=study_name(spec.name, stage, d.label, m.name), storage=storage).get_trials()
    return out


def assert_complete_and_counted_once(storage, spec):
    seeds = evaluation_seeds(spec)
    for (stage, method), trials in all_trials(storage, spec).items():
        if stage == "tune":
            assert len(budget_trials(trials, spec.trials)) == spec.trials, method
        else:
            assert sorted(final_runs(trials, seeds)) == seeds, method
        assert not [t for t in trials if t.state == TrialState.RUNNING], f"{method}: trials left running"


def wait_for(predicate, timeout=180.0, poll=0.5):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(poll)
    return False


def fail_stale_later(study: optuna.Study, monkeypatch) -> None:
    """What any worker does to ``study``'s running trials 31 s from now (past a 30 s grace period)."""
    import lossbench.bench.storage as storage_module
    from lossbench.bench.runner import _fail_stale

    real = storage_module.datetime

    class Later(real):
        @classmethod
        def now(cls, tz=None):
            return real.now(tz) + storage_module.timedelta(seconds=31)

    with monkeypatch.context() as patch:
        patch.setattr(storage_module, "datetime", Later)
        _fail_stale(study)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_trial_killed_before_its_first_heartbeat_is_failed_and_retried(tmp_path, monkeypatch):
    # study.ask creates a RUNNING trial without a heartbeat, as a worker killed between creating
    # its trial and the heartbeat thread's first beat leaves it; Optuna alone never fails it.
    from lossbench.bench.runner import _fail_stale

    storage = open_storage(default_storage_url(tmp_path), heartbeat_interval=10)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    orphan = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
    _fail_stale(study)  # within the grace period (30 s): still running
    assert study.get_trials()[0].state == TrialState.RUNNING

    fail_stale_later(study, monkeypatch)
    dead, retry = study.get_trials()
    assert dead.number == orphan.number and dead.state == TrialState.FAIL
    assert retry.state == TrialState.WAITING and retry.params == dead.params
    assert retry.system_attrs.get("failed_trial") == orphan.number


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_retried_tuning_trial_trains_with_its_draws_seed(tmp_path, monkeypatch):
    # A worker killed after creating its tuning trial leaves it running without parameters; once it
    # is failed, its retry is the same draw: it trains with that draw's seed, and the later draws with
    # theirs, as in a study that was never killed.
    spec = load_spec(write_spec(tmp_path / "spec.toml", name="retry", trials=3, epochs=1))
    storage = open_storage(default_storage_url(tmp_path), spec.heartbeat_interval)
    runner = Runner(spec, storage, torch.device("cpu"))
    unit = runner.units[0]
    unit.tune.ask()  # trial 0, its worker killed before the sampler ran
    fail_stale_later(unit.tune, monkeypatch)
    runner.run()
    trials = unit.tune.get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert any("failed_trial" in t.system_attrs for t in done)  # the retry trained
    base = run_seed("tune", 0, spec)
    assert {draw_index(t, trials): run_record(t)["seed"] for t in done} == {k: base + k for k in range(spec.trials)}


def kill_once_running(proc, db, complete: int) -> None:
    """SIGKILL ``proc`` once its SQLite storage ``db`` holds ``complete`` finished trials and a running one."""

    def ready():
        if not db.exists():
            return False
        try:  # (the file read directly: cheap, and never holds up the writer)
            with sqlite3.connect(db, timeout=1) as connection:
                states = dict(connection.execute("SELECT state, COUNT(*) FROM trials GROUP BY state").fetchall())
        except sqlite3.Error:
            return False
        return states.get("COMPLETE", 0) >= complete and states.get("RUNNING", 0) >= 1

    try:
        assert wait_for(ready), proc.stdout.read() if proc.poll() is not None else "timeout"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_kill_minus_9_then_resume(tmp_path):
    # Slow trials (many small batches) so that the kill lands inside one.
    spec_path = write_spec(tmp_path / "spec.toml", name="crash", trials=4, epochs=30, batch_size=16, dataset="digits")
    spec = load_spec(spec_path)
    out = tmp_path / "out"
    storage_url = default_storage_url(out)
    kill_once_running(cli("run", str(spec_path), "--out", str(out)), out / "lossbench.db", complete=2)
    storage = open_storage(storage_url, spec.heartbeat_interval)
    interrupted = [t for ts in all_trials(storage, spec).values() for t in ts if t.state == TrialState.RUNNING]
    assert interrupted  # one run, or a whole pack of them

    output = cli_ok("run", str(spec_path), "--out", str(out))
    assert "crash" in output
    trials = all_trials(storage, spec)
    assert_complete_and_counted_once(storage, spec)
    # Each interrupted trial was failed by its stale heartbeat and queued again with its parameters.
    for victim in interrupted:
        stage_trials = next(ts for ts in trials.values() if any(t.number == victim.number and t.datetime_start == victim.datetime_start for t in ts))
        dead = next(t for t in stage_trials if t.number == victim.number)
        assert dead.state == TrialState.FAIL
        retries = [t for t in stage_trials if t.system_attrs.get("failed_trial") == victim.number]
        # (a worker killed before the sampler ran leaves a trial without parameters: its retry samples them)
        assert len(retries) == 1 and victim.params.items() <= retries[0].params.items()

    # The resumed study tuned what an uninterrupted one tunes: draw k's configuration is what the
    # (random) sampler of draw k gives on a fresh study, whatever was killed and retried before it.
    runner = Runner(spec, storage, torch.device("cpu"))
    expected = {}
    for unit in runner.units:
        space = unit.method.search_space(spec.search)
        expected[unit.method.name] = {}
        for k in range(spec.trials):
            fresh = optuna.create_study(sampler=runner.sampler(unit, k))
            expected[unit.method.name][k] = fresh.ask(space).params
    assert tuned_configs(storage, spec) == expected
    # ... and trained draw k with the seed it has there: a retry's is its draw's, and later draws keep theirs.
    base = run_seed("tune", 0, spec)
    for (stage, _), stage_trials in all_trials(storage, spec).items():
        if stage == "tune":
            done = [t for t in stage_trials if t.state == TrialState.COMPLETE]
            assert {draw_index(t, stage_trials): run_record(t)["seed"] for t in done} == {k: base + k for k in range(spec.trials)}

    # A finished study: running it again trains nothing and reprints the report.
    before = {k: len(v) for k, v in all_trials(storage, spec).items()}
    again = cli_ok("run", str(spec_path), "--out", str(out))
    assert "report:" in again and "ce" in again
    assert before == {k: len(v) for k, v in all_trials(storage, spec).items()}


@pytest.mark.slow
@pytest.mark.skipif(not processes.can_tell(), reason="no /proc to tell processes by (not Linux): the heartbeats decide")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_kill_minus_9_then_resume_at_once_tunes_what_an_uninterrupted_tpe_study_tunes(tmp_path):
    # A worker killed on this machine: its process is gone, so its running trials are stale at once (a
    # heartbeat grace of 30 minutes here) and the resumed study retries them before TPE is asked again.
    # Waiting out the grace instead, it asked TPE's next draws from fewer finished trials than these.
    path = write_spec(tmp_path / "spec.toml", name="crash", trials=6, epochs=8, batch_size=16, dataset="digits")
    path.write_text(path.read_text().replace('sampler = "random"', 'sampler = "tpe"').replace("heartbeat_interval = 1", "heartbeat_interval = 600"))
    spec = load_spec(path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (as the command's workers: the same numbers, so TPE reads the same history)
    try:
        clean = open_storage(default_storage_url(tmp_path / "clean"), spec.heartbeat_interval)
        Runner(spec, clean, torch.device("cpu"), pack=1).run()
        out = tmp_path / "out"
        proc = cli("run", str(path), "--out", str(out), "--pack", "1", "--threads", "1")
        kill_once_running(proc, out / "lossbench.db", complete=1)
        storage = open_storage(default_storage_url(out), spec.heartbeat_interval)
        for (stage, method), trials in all_trials(storage, spec).items():
            running = sorted(t._trial_id for t in trials if t.state == TrialState.RUNNING)
            study = optuna.load_study(study_name=study_name(spec.name, stage, spec.datasets[0].label, method), storage=storage)
            assert sorted(storage._get_stale_trial_ids(study._study_id)) == running, (stage, method)
        Runner(spec, storage, torch.device("cpu"), pack=1).run()
    finally:
        torch.set_num_threads(threads)
    assert_complete_and_counted_once(storage, spec)
    assert tuned_configs(storage, spec) == tuned_configs(clean, spec)
    failed = [t for ts in all_trials(storage, spec).values() for t in ts if t.state == TrialState.FAIL]
    assert failed and all(t.user_attrs["error"].startswith("stale") for t in failed)


def tuned_configs(storage, spec):
    """Per tuning study, the parameters of each complete trial by its draw (retries are their draw)."""
    out = {}
    for (stage, method), trials in all_trials(storage, spec).items():
        if stage == "tune":
            out[method] = {draw_index(t, trials): t.params for t in trials if t.state == TrialState.COMPLETE}
    assert out and all(len(configs) == spec.trials for configs in out.values())
    return out


def two_workers(spec_path, storage_url, out):
    spec = load_spec(spec_path)
    # Register the study first so that the worker can join at once: both start together.
    register_spec(open_storage(storage_url), spec)
    first = cli("run", str(spec_path), "--out", str(out), "--storage", storage_url)
    second = cli("worker", spec.name, "--storage", storage_url)
    out_first, _ = first.communicate(timeout=600)
    out_second, _ = second.communicate(timeout=600)
    assert first.returncode == 0, out_first
    assert second.returncode == 0, out_second
    storage = open_storage(storage_url)
    assert_complete_and_counted_once(storage, spec)
    # Every run was done by one of the two processes (which one ran how many is a race, not an
    # invariant: a packed worker may finish a small study before the other starts).
    workers = Counter(run_record(t).get("worker") for ts in all_trials(storage, spec).values() for t in ts if t.state == TrialState.COMPLETE)
    assert set(workers) <= {f"{socket.gethostname()}:{p.pid}" for p in (first, second)}, workers
    return out_first


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tmp_path):
    spec_path = write_spec(tmp_path / "spec.toml", name="pair", trials=8, epochs=20, batch_size=8, dataset="wine")
    out = tmp_path / "out"
    printed = two_workers(spec_path, default_storage_url(out), out)
    assert "hinge" in printed


@pytest.mark.slow
def test_two_workers_share_one_postgresql_study(tmp_path, postgres_url):
    spec_path = write_spec(tmp_path / "spec.toml", name="pgpair", trials=8, epochs=20, batch_size=8, dataset="wine")
    two_workers(spec_path, postgres_url, tmp_path / "out")
    # The report is rebuilt from the server's storage alone, in a fresh process.
    text = cli_ok("report", "pgpair", "--storage", postgres_url, "--out", str(tmp_path / "report"))
    assert "pgpair" in (tmp_path / "report" / "report.md").read_text() and "ce" in text


def waiting_on_a_lock(storage) -> bool:
    """Whether PostgreSQL reports a session of the storage's database waiting on a lock."""
    with storage.engine.connect() as conn:
        query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        return conn.execute(sqlalchemy.text(query)).scalar() > 0


def held_until_the_other_waits(engine, held_at, first, second, storage) -> dict[str, object]:
    """Run ``first`` = (name, call) in a thread of that name, held after the statement of ``engine`` that
    ``held_at(clause)`` picks until PostgreSQL reports ``storage``'s database waiting on a lock, which ``second``,
    started in a thread of its own meanwhile, must be; returns each one's outcome by name (its value, or the
    exception it raised)."""
    reached, release, results = threading.Event(), threading.Event(), {}

    def hold(conn, clause, *_):
        if threading.current_thread().name == first[0] and held_at(clause):
            reached.set()
            release.wait(300)

    def record(name, call):
        try:
            results[name] = call()
        except Exception as e:  # noqa: BLE001 (reported by the test's assertions)
            results[name] = e

    threads = [threading.Thread(target=record, args=(name, call), name=name) for name, call in (first, second)]
    event.listen(engine, "after_execute", hold)
    try:
        threads[0].start()
        assert reached.wait(300), f"{first[0]} never reached the statement it is held after"
        threads[1].start()
        assert wait_for(lambda: waiting_on_a_lock(storage), timeout=300), (f"{second[0]} never waited for {first[0]}", results)
    finally:
        release.set()
        for thread in threads:
            if thread.ident is not None:  # (started)
                thread.join(300)
        event.remove(engine, "after_execute", hold)  # (not while the held thread is inside it)
    return results


@pytest.mark.slow
def test_workers_storing_a_study_attribute_at_once_take_turns(postgres_url):
    """Two workers that finish a unit's tuning together both store its choice on the final study
    (the same value): the second waits for the first's transaction to end, and does not fail on the
    attribute's key (which it did, once in seven rounds of the suite on a busy machine).  The first
    is held after its insert until the second waits on a lock: PostgreSQL's own account of it."""
    storage = open_storage(postgres_url)
    study = optuna.create_study(study_name="attrs-at-once", storage=storage)
    table = models.StudyUserAttributeModel.__table__

    def store():
        return set_study_attrs(storage, study, {"chosen_from": 3, "config": {"lr": 0.1}})

    results = held_until_the_other_waits(storage.engine, lambda clause: isinstance(clause, Insert) and clause.table is table,
                                         ("first", store), ("second", store), storage)  # fmt: skip
    assert results == {"first": None, "second": None}  # (neither raised)
    assert optuna.load_study(study_name="attrs-at-once", storage=storage).user_attrs == {"chosen_from": 3, "config": {"lr": 0.1}}


@pytest.mark.slow
def test_a_worker_taking_a_queued_run_of_a_study_being_deleted_takes_nothing(postgres_url):
    """claims run --fresh deletes a study after checking that no worker runs it: a worker that took one of its
    queued runs after the check (taking locks the trial's row, not the study's) had that run deleted under it.
    The deleter locks the trials' rows too: the worker waits, then finds the run gone.  The deleter is held after
    its locks until PostgreSQL reports the worker waiting on one."""
    storage, worker = open_storage(postgres_url, heartbeat_interval=10), open_storage(postgres_url, heartbeat_interval=10)
    study = optuna.create_study(study_name="gone.quick:tune:wine:ce", storage=storage)
    study.enqueue_trial({"x": 1.0})
    (queued,) = study.get_trials()
    trials = models.TrialModel.__table__

    def trials_locked(clause):  # (the trials' lock: the study's row is locked just before)
        return getattr(clause, "_for_update_arg", None) is not None and trials in clause.get_final_froms()

    results = held_until_the_other_waits(
        storage.engine, trials_locked, ("deleter", lambda: storage.delete_spec_studies(["gone.quick"])),
        ("taker", lambda: worker.start_trials(study._study_id, 1, [queued], False)), storage,
    )  # fmt: skip
    assert results == {"deleter": (1, 1), "taker": []}


@pytest.mark.slow
def test_a_worker_failing_and_requeuing_its_runs_while_the_study_is_deleted_does_not_deadlock(postgres_url):
    """A stopped worker fails its runs and queues their retries (fail_trials: the trials' rows, then the study's row
    where a retry is created) while claims run --fresh deletes the study (the study's row, then the trials'):
    PostgreSQL found a deadlock.  fail_trials now locks the study first; the worker is held after its update of
    the trials until PostgreSQL reports the deleter waiting."""
    storage, worker = open_storage(postgres_url, heartbeat_interval=10), open_storage(postgres_url, heartbeat_interval=10)
    study = optuna.create_study(study_name="requeued.quick:tune:wine:ce", storage=storage)
    study.enqueue_trial({"x": 1.0})
    (queued,) = study.get_trials()
    (running,) = worker.start_trials(study._study_id, 1, [queued], False)
    trials = models.TrialModel.__table__
    results = held_until_the_other_waits(
        worker.engine, lambda clause: isinstance(clause, sqlalchemy.Update) and clause.table is trials,
        ("failer", lambda: worker.fail_trials([(study._study_id, worker.get_trial(running._trial_id))], "stopped", True)),
        ("deleter", lambda: storage.delete_spec_studies(["requeued.quick"])), storage,
    )  # fmt: skip
    assert results == {"failer": [running._trial_id], "deleter": (1, 2)}  # (the failed run and its queued retry)


def test_a_retry_of_a_trial_that_died_before_sampling_samples_its_own_draw(tmp_path, monkeypatch):
    """The worker picks a trial before Optuna fails a stale one and pops its retry: the retry
    must still sample the dead trial's draw, not the next one (a resumed study = an uninterrupted one)."""
    import lossbench.bench.storage as storage_module

    spec = load_spec(write_spec(tmp_path / "spec.toml", name="race", trials=3, epochs=1))
    storage = open_storage(default_storage_url(tmp_path), spec.heartbeat_interval)
    runner = Runner(spec, storage, torch.device("cpu"))
    for unit in runner.units:
        unit.tune.ask()  # a worker killed right after creating its trial: no parameters, no heartbeat
    real = storage_module.datetime

    class Later(real):  # past the grace period: the orphans are stale
        @classmethod
        def now(cls, tz=None):
            return real.now(tz) + storage_module.timedelta(seconds=60)

    monkeypatch.setattr(storage_module, "datetime", Later)
    runner.run()
    for unit in runner.units:
        trials = unit.tune.get_trials()
        assert any(t.system_attrs.get("failed_trial") == 0 and t.state == TrialState.COMPLETE for t in trials)
        space = unit.method.search_space(spec.search)
        expected = {k: optuna.create_study(sampler=runner.sampler(unit, k)).ask(space).params for k in range(spec.trials)}
        assert {draw_index(t, trials): t.params for t in trials if t.state == TrialState.COMPLETE} == expected


def test_a_worker_paused_past_the_grace_period_goes_on(tmp_path, monkeypatch):
    """Its trial was failed as stale and retried by another worker meanwhile: Optuna cannot record
    the result; the worker warns, drops that run and goes on, and the study completes."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    spec = load_spec(write_spec(tmp_path / "spec.toml", name="paused", trials=2, epochs=1))
    storage = open_storage(default_storage_url(tmp_path), spec.heartbeat_interval)
    runner = Runner(spec, storage, torch.device("cpu"))
    original, paused = Runner._train, []

    def train(self, packs, stored):
        outcomes = original(self, packs, stored)
        if not paused:  # what another worker does while this one sleeps: fail it as stale, queue a retry
            trial = packs[0].started[0]
            paused.append(trial.number)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            RetryHeartbeatStaleTrialCallback()(packs[0].unit.tune, storage.get_trial(trial._trial_id))
        return outcomes

    monkeypatch.setattr(Runner, "_train", train)
    with pytest.warns(RuntimeWarning, match="trial #0 was failed as stale"):
        runner.run()
    assert_complete_and_counted_once(storage, spec)
    (retry,) = [t for t in runner.units[0].tune.get_trials() if t.system_attrs.get("failed_trial") == paused[0]]
    assert retry.state == TrialState.COMPLETE


@pytest.mark.slow
def test_jobs_runs_local_workers_on_one_study(tmp_path):
    """`lossbench run --jobs 2` starts a second local worker on the same storage: the study
    completes with every run counted once, and a successful worker leaves no log behind."""
    spec_path = write_spec(tmp_path / "spec.toml", name="jobs", trials=6, epochs=5, batch_size=16, dataset="wine")
    out = tmp_path / "out"
    cli_ok("run", str(spec_path), "--out", str(out), "--jobs", "2", "--pack", "2")
    assert_complete_and_counted_once(open_storage(default_storage_url(out)), load_spec(spec_path))
    assert not list(out.glob("*.worker-*.log"))


def _ctrl_c_on_the_second_call_then_resume(tmp_path, monkeypatch, spec, trainer: str, pack: int) -> None:
    """Run ``spec`` uninterrupted, then again with a Ctrl-C in the runner's second ``trainer`` call and resumed:
    the resumed study is the uninterrupted one."""
    from lossbench.bench import runner as runner_module

    clean = open_storage(default_storage_url(tmp_path / "clean"), spec.heartbeat_interval)
    Runner(spec, clean, torch.device("cpu"), pack=pack).run()
    storage = open_storage(default_storage_url(tmp_path / "cut"), spec.heartbeat_interval)
    calls, real = [], getattr(runner_module, trainer)

    def interrupted_second_call(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_module, trainer, interrupted_second_call)
    with pytest.raises(KeyboardInterrupt):
        Runner(spec, storage, torch.device("cpu"), pack=pack).run()
    monkeypatch.setattr(runner_module, trainer, real)
    Runner(spec, storage, torch.device("cpu"), pack=pack).run()
    assert_complete_and_counted_once(storage, spec)
    assert tuned_configs(storage, spec) == tuned_configs(clean, spec)


def test_a_ctrl_c_resumes_into_the_uninterrupted_study(tmp_path, monkeypatch):
    # the interrupted pack's trials are failed and queued again, as a dead worker's are: their draws
    # are retried, not skipped (the resumed study once tuned draws 4-7 where the uninterrupted one tunes 0-3)
    spec = load_spec(write_spec(tmp_path / "tiny.toml", trials=4, epochs=1))
    _ctrl_c_on_the_second_call_then_resume(tmp_path, monkeypatch, spec, "train_and_score_packed", pack=2)


def test_a_ctrl_c_inside_a_tpe_batch_resumes_its_retries_before_the_next_batch_is_asked(tmp_path, monkeypatch):
    # trials 4: TPE asks 2 at a time; --pack 1 trains them one after another.  A Ctrl-C on the second run of
    # the first batch queues it again; resumed, its retry once started beside draw 2, which TPE then asked from
    # draw 0 alone (the uninterrupted study asks it from draws 0 and 1): another configuration was tuned.
    path = write_spec(tmp_path / "tiny.toml", trials=4, epochs=1)
    path.write_text(path.read_text().replace('sampler = "random"', 'sampler = "tpe"'))  # (random draws read no history)
    _ctrl_c_on_the_second_call_then_resume(tmp_path, monkeypatch, load_spec(path), "train_and_score", pack=1)


def _clean_and_cut(tmp_path):
    """The tiny spec (ce and hinge share their packs), run once without interruption, and a fresh storage."""
    spec = load_spec(write_spec(tmp_path / "tiny.toml", trials=4, epochs=1))
    clean = open_storage(default_storage_url(tmp_path / "clean"), spec.heartbeat_interval)
    Runner(spec, clean, torch.device("cpu")).run()
    return spec, clean, open_storage(default_storage_url(tmp_path / "cut"), spec.heartbeat_interval)


def _assert_resumes_into(spec, storage, clean):
    Runner(spec, storage, torch.device("cpu"), pack=8).run()
    assert_complete_and_counted_once(storage, spec)
    assert tuned_configs(storage, spec) == tuned_configs(clean, spec)
    done = [t for trials in all_trials(storage, spec).values() for t in trials if t.state == TrialState.COMPLETE]
    assert not [t for t in done if "error" in t.user_attrs], "a retry that completed keeps the failed trial's error"


@pytest.mark.parametrize("culprit, other", [("hinge", "ce"), ("ce", "hinge")])  # trained apart last, and first
def test_an_error_in_a_pack_of_several_units_fails_only_the_unit_that_raises_alone(tmp_path, monkeypatch, culprit, other):
    # the culprit's runs raise in a pack they share with the other unit's: each unit's runs train apart, the
    # other's are recorded, the culprit's fail with the error (their draws used, as a lone unit's are)
    from lossbench.bench import runner as runner_module

    spec, clean, storage = _clean_and_cut(tmp_path)
    real = runner_module.train_and_score_packed

    def fails(split, methods, runs, spec):
        if any(m.name == culprit for m in methods):
            raise RuntimeError(f"{culprit} fell over")
        return real(split, methods, runs, spec)

    monkeypatch.setattr(runner_module, "train_and_score_packed", fails)
    with pytest.warns(RuntimeWarning, match=f"2 units' runs trained together raised RuntimeError: {culprit} fell over"):
        with pytest.raises(RuntimeError, match=f"{culprit} fell over"):
            Runner(spec, storage, torch.device("cpu"), pack=8).run()
    trials = all_trials(storage, spec)
    assert [t.state for t in trials[("tune", other)]] == [TrialState.COMPLETE] * 4
    assert [t.user_attrs.get("error") for t in trials[("tune", culprit)]] == [f"RuntimeError: {culprit} fell over"] * 4
    assert [t.state for t in trials[("tune", culprit)]] == [TrialState.FAIL] * 4
    monkeypatch.setattr(runner_module, "train_and_score_packed", real)
    Runner(spec, storage, torch.device("cpu"), pack=8).run()
    assert_complete_and_counted_once(storage, spec)
    assert tuned_configs(storage, spec)[other] == tuned_configs(clean, spec)[other]


def test_a_pack_of_several_units_that_fails_as_a_whole_trains_them_apart_and_loses_nothing(tmp_path, monkeypatch):
    # the shared pack fails (memory, say) but each unit's runs train alone: nothing fails, the study is
    # the uninterrupted one
    from lossbench.bench import runner as runner_module

    spec, clean, storage = _clean_and_cut(tmp_path)
    real, raised = runner_module.train_and_score_packed, []

    def shared_pack_fails(split, methods, runs, spec):
        if len({m.name for m in methods}) > 1:
            raised.append(1)
            raise MemoryError("the pack did not fit")
        return real(split, methods, runs, spec)

    monkeypatch.setattr(runner_module, "train_and_score_packed", shared_pack_fails)
    with pytest.warns(RuntimeWarning, match="MemoryError: the pack did not fit"):
        Runner(spec, storage, torch.device("cpu"), pack=8).run()
    assert raised  # (each round tries the shared pack first)
    assert not [t for trials in all_trials(storage, spec).values() for t in trials if t.state == TrialState.FAIL]
    assert_complete_and_counted_once(storage, spec)
    assert tuned_configs(storage, spec) == tuned_configs(clean, spec)


def test_an_error_every_unit_raises_alone_too_is_the_packs_and_keeps_every_draw(tmp_path, monkeypatch):
    # the shared pack leaves the device broken: every unit then raises alone too, so no unit is blamed:
    # every run is queued again with its draw (its retries counted), and the study resumes as uncut
    from lossbench.bench import runner as runner_module

    spec, clean, storage = _clean_and_cut(tmp_path)

    def broken(split, methods, runs, spec):
        raise RuntimeError("the device is gone")

    monkeypatch.setattr(runner_module, "train_and_score_packed", broken)
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="the device is gone") as raised:
        Runner(spec, storage, torch.device("cpu"), pack=8).run()
    assert any("each of the 2 units' runs raised apart too: no unit is blamed" in note for note in raised.value.__notes__)
    for method in ("ce", "hinge"):
        trials = all_trials(storage, spec)[("tune", method)]
        assert [t.state for t in trials] == [TrialState.FAIL] * 4 + [TrialState.WAITING] * 4, method
        assert all(t.system_attrs.get("retry_history") == [n] for n, t in enumerate(trials[4:])), method
    monkeypatch.undo()
    _assert_resumes_into(spec, storage, clean)


def test_a_ctrl_c_while_units_train_apart_blames_none_and_keeps_their_errors(tmp_path, monkeypatch):
    from lossbench.bench import runner as runner_module

    spec, clean, storage = _clean_and_cut(tmp_path)

    def ce_fails_then_ctrl_c(split, methods, runs, spec):
        if {m.name for m in methods} == {"hinge"}:
            raise KeyboardInterrupt
        raise RuntimeError("ce fell over")

    monkeypatch.setattr(runner_module, "train_and_score_packed", ce_fails_then_ctrl_c)
    with pytest.warns(RuntimeWarning), pytest.raises(KeyboardInterrupt) as raised:
        Runner(spec, storage, torch.device("cpu"), pack=8).run()
    assert raised.value.__notes__ == ["wine / ce had raised alone (RuntimeError: ce fell over)"]
    for method in ("ce", "hinge"):  # every run queued again, uncounted
        trials = all_trials(storage, spec)[("tune", method)]
        assert [t.state for t in trials] == [TrialState.FAIL] * 4 + [TrialState.WAITING] * 4, method
    monkeypatch.undo()
    _assert_resumes_into(spec, storage, clean)


def test_failed_calls_free_their_memory_before_the_units_train_apart(tmp_path, monkeypatch):
    # the shared pack and then ce alone run out of memory: neither failure's tensors (its frames' locals)
    # are still held when hinge trains alone
    import gc
    import weakref

    from lossbench.bench import runner as runner_module

    spec, _, storage = _clean_and_cut(tmp_path)
    real, held, alive = runner_module.train_and_score_packed, [], []

    def fails_holding_memory():
        activations = torch.zeros(1000)  # (a local of the failing frame, as a pack's tensors are)
        held.append(weakref.ref(activations))
        raise MemoryError("the pack did not fit")

    def packed(split, methods, runs, spec):
        if any(m.name == "ce" for m in methods):
            fails_holding_memory()
        gc.collect()
        alive.append([ref() is not None for ref in held])
        return real(split, methods, runs, spec)

    monkeypatch.setattr(runner_module, "train_and_score_packed", packed)
    with pytest.warns(RuntimeWarning, match="MemoryError"), pytest.raises(MemoryError):
        Runner(spec, storage, torch.device("cpu"), pack=8).run()
    assert alive == [[False, False]]  # hinge's call, after the shared pack's and ce's


@pytest.mark.parametrize("interruption", ["ctrl-c", "grown spec"])
def test_trials_started_for_a_pack_are_queued_again_when_gathering_it_stops(tmp_path, monkeypatch, interruption):
    # ce's trials are started, then looking at hinge (the pack's next unit) raises: ce's are failed by the
    # worker and queued again with their draws, not left running until they go stale
    from lossbench.bench.runner import SpecGrew

    spec, clean, storage = _clean_and_cut(tmp_path)
    runner = Runner(spec, storage, torch.device("cpu"), pack=8)
    hinge = next(u for u in runner.units if u.method.name == "hinge")
    if interruption == "ctrl-c":
        real_read = Runner._read

        def read(self, study):
            if study._study_id == hinge.tune._study_id:
                raise KeyboardInterrupt
            return real_read(self, study)

        monkeypatch.setattr(Runner, "_read", read)
        with pytest.raises(KeyboardInterrupt):
            runner.run()
        stage, error = "tune", "KeyboardInterrupt: "
    else:  # hinge's choice finds the stored spec grown (here: the same spec, which the worker adopts and goes on with)
        real_config, grew = Runner._config, []

        def config(self, unit, budget):
            if unit.method.name == "hinge" and not grew:
                grew.append(1)
                raise SpecGrew(spec)
            return real_config(self, unit, budget)

        monkeypatch.setattr(Runner, "_config", config)
        runner.run()
        stage, error = "final", f"SpecGrew: study {spec.name!r} grew"
    ce = all_trials(storage, spec)[(stage, "ce")]
    assert not [t for t in ce if t.state == TrialState.RUNNING]
    assert {t.user_attrs.get("error") for t in ce if t.state == TrialState.FAIL} == {error}
    monkeypatch.undo()
    _assert_resumes_into(spec, storage, clean)


def test_a_pack_that_raises_queues_no_second_retry_of_a_trial_another_worker_retried(tmp_path, monkeypatch):
    # this worker was paused past the grace period: another failed its ce trials as stale and queued their
    # retries; then its pack (ce's and hinge's runs) is stopped (Ctrl-C): only hinge's trials are queued again here
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    from lossbench.bench import runner as runner_module

    spec, clean, storage = _clean_and_cut(tmp_path)
    real, hit = runner_module.train_and_score_packed, []

    def paused_then_raises(split, methods, runs, spec_):
        if not hit:
            hit.append(1)
            ce = optuna.load_study(study_name=study_name(spec.name, "tune", "wine", "ce"), storage=storage)
            for t in ce.get_trials(states=(TrialState.RUNNING,)):
                storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                RetryHeartbeatStaleTrialCallback(max_retry=3)(ce, storage.get_trial(t._trial_id))
            raise KeyboardInterrupt
        return real(split, methods, runs, spec_)

    monkeypatch.setattr(runner_module, "train_and_score_packed", paused_then_raises)
    with pytest.raises(KeyboardInterrupt):
        Runner(spec, storage, torch.device("cpu"), pack=8).run()
    trials = all_trials(storage, spec)
    for method in ("ce", "hinge"):
        retried = Counter(t.system_attrs["failed_trial"] for t in trials[("tune", method)] if "failed_trial" in t.system_attrs)
        assert sorted(retried) == [0, 1, 2, 3] and set(retried.values()) == {1}, method
    monkeypatch.setattr(runner_module, "train_and_score_packed", real)
    _assert_resumes_into(spec, storage, clean)


@pytest.mark.parametrize("how", ["raises", "gives results without the selection metric"])
def test_a_training_call_that_fails_fails_its_own_runs_only(tmp_path, monkeypatch, how):
    # with --pack 6 the second round holds ce's two final seeds and hinge's four tuning trials, two
    # training calls (their splits differ): hinge's fails after ce's trained (it raises, or its results
    # cannot be recorded: a plugin's bug), so ce's runs are recorded and hinge's fail, their draws used as
    # a lone unit's are (not queued again)
    from lossbench.bench import runner as runner_module

    spec = load_spec(write_spec(tmp_path / "tiny.toml", trials=4, epochs=1))
    storage = open_storage(default_storage_url(tmp_path), spec.heartbeat_interval)
    real = runner_module.train_and_score_packed

    def hinge_tuning_fails(split, methods, runs, spec_):
        hinge = {m.name for m in methods} == {"hinge"} and split.stage == "tune"
        if hinge and how == "raises":
            raise RuntimeError("hinge fell over")
        results = real(split, methods, runs, spec_)
        for result in results if hinge else []:
            del result.metrics["accuracy"]
        return results

    monkeypatch.setattr(runner_module, "train_and_score_packed", hinge_tuning_fails)
    with pytest.raises(RuntimeError if how == "raises" else KeyError, match="hinge fell over" if how == "raises" else "accuracy"):
        Runner(spec, storage, torch.device("cpu"), pack=6).run()
    trials = all_trials(storage, spec)
    assert [t.state for t in trials[("final", "ce")]] == [TrialState.COMPLETE] * 2
    assert [t.state for t in trials[("tune", "hinge")]] == [TrialState.FAIL] * 4
    monkeypatch.setattr(runner_module, "train_and_score_packed", real)
    Runner(spec, storage, torch.device("cpu"), pack=6).run()
    assert_complete_and_counted_once(storage, spec)


def test_a_dead_workers_trials_and_their_retries_appear_together(tmp_path, monkeypatch):
    # Optuna's own stale check commits every failure before it queues the retries: another worker in
    # between saw the trials failed and none queued, and drew new trials in their place
    from lossbench.bench import storage as storage_module
    from lossbench.bench.runner import STALE

    url = default_storage_url(tmp_path)
    storage, other = open_storage(url, heartbeat_interval=10), open_storage(url, heartbeat_interval=10)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    dead = [study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)}) for _ in range(2)]
    real_insert, seen = storage_module._insert_trials, []

    def insert_and_look(session, study_id, count, state, start):
        seen.append([other.get_trial(t._trial_id).state for t in dead])  # what another worker reads meanwhile
        return real_insert(session, study_id, count, state, start)

    monkeypatch.setattr(storage_module, "_insert_trials", insert_and_look)
    fail_stale_later(study, monkeypatch)
    assert seen == [[TrialState.RUNNING] * 2] * 2
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 2 + [TrialState.WAITING] * 2
    assert [t.user_attrs.get("error") for t in trials] == [STALE, STALE, None, None]
    assert [t.system_attrs.get("failed_trial") for t in trials[2:]] == [0, 1]


def test_runs_stopped_for_no_fault_of_their_own_keep_their_draws_however_often(tmp_path, monkeypatch):
    # each Ctrl-C re-queues the pack's runs; a retry's count (at most MAX_RETRIES) is for runs that failed
    from lossbench.bench import runner as runner_module
    from lossbench.bench.storage import MAX_RETRIES

    spec, clean, storage = _clean_and_cut(tmp_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_module, "train_and_score_packed", interrupted)
    for _ in range(MAX_RETRIES + 2):
        with pytest.raises(KeyboardInterrupt):
            Runner(spec, storage, torch.device("cpu"), pack=8).run()
    monkeypatch.undo()
    _assert_resumes_into(spec, storage, clean)


def test_runs_of_the_calls_before_a_failing_call_are_recorded_as_their_call_ends(tmp_path, monkeypatch):
    # at --pack 6, ce's two final runs and hinge's four tuning runs train in two calls: ce's are stored before
    # hinge's call starts (a kill there loses none of them), so the storage failing after it loses nothing
    from lossbench.bench import runner as runner_module
    from lossbench.bench.storage import HeartbeatStorage

    spec = load_spec(write_spec(tmp_path / "tiny.toml", trials=4, epochs=1))
    storage = open_storage(default_storage_url(tmp_path), spec.heartbeat_interval)
    real, real_finish, failed, complete_then = runner_module.train_and_score_packed, HeartbeatStorage.finish_trials, [], []

    def hinge_tuning_fails(split, methods, runs, spec_):  # (ce's final seeds trained in the call before)
        if {m.name for m in methods} == {"hinge"} and split.stage == "tune":
            complete_then.append([t.state for t in all_trials(storage, spec)[("final", "ce")]])
            failed.append(1)
            raise RuntimeError("hinge fell over")
        return real(split, methods, runs, spec_)

    def busy(self, outcomes):
        if failed:
            raise sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("database is locked"))
        return real_finish(self, outcomes)

    monkeypatch.setattr(runner_module, "train_and_score_packed", hinge_tuning_fails)
    monkeypatch.setattr(HeartbeatStorage, "finish_trials", busy)
    with pytest.raises(RuntimeError, match="hinge fell over") as raised:
        Runner(spec, storage, torch.device("cpu"), pack=6).run()
    assert complete_then == [[TrialState.COMPLETE] * 2]  # stored while hinge's call trained
    assert not getattr(raised.value, "__notes__", [])
    trials = all_trials(storage, spec)
    assert [t.state for t in trials[("tune", "hinge")]] == [TrialState.FAIL] * 4
    assert [t.state for t in trials[("final", "ce")]] == [TrialState.COMPLETE] * 2


@pytest.mark.parametrize("apart", [False, True], ids=["packed", "trained apart"])
def test_a_calls_runs_are_stored_before_the_next_call_trains(tmp_path, monkeypatch, apart):
    # at --pack 4 ce's and hinge's final runs train in one call, ce2's tuning runs in the next; where the first
    # call raised and its units trained apart, their runs are stored before the next call as well
    from lossbench.bench import runner as runner_module

    path = write_spec(tmp_path / "tiny.toml", trials=2, epochs=1)
    path.write_text(path.read_text() + '\n[[methods]]\nname = "ce2"\nloss = "cross_entropy"\n')
    spec = load_spec(path)
    storage = open_storage(default_storage_url(tmp_path), spec.heartbeat_interval)
    real, seen = runner_module.train_and_score_packed, []

    class Killed(BaseException):
        """The worker's end (nothing after it is looked at)."""

    def packed(split, methods, runs, spec_):
        names = {m.name for m in methods}
        if apart and split.stage == "final" and names == {"ce", "hinge"}:
            raise RuntimeError("the pack fell over")
        if split.stage == "tune" and names == {"ce2"}:
            seen.append({m: [t.state for t in trials] for (stage, m), trials in all_trials(storage, spec).items()
                         if stage == "final" and m != "ce2"})  # fmt: skip
            raise Killed
        return real(split, methods, runs, spec_)

    monkeypatch.setattr(runner_module, "train_and_score_packed", packed)
    with pytest.raises(Killed), (pytest.warns(RuntimeWarning, match="apart") if apart else contextlib.nullcontext()):
        Runner(spec, storage, torch.device("cpu"), pack=4).run()
    assert seen == [{"ce": [TrialState.COMPLETE] * 2, "hinge": [TrialState.COMPLETE] * 2}]


def test_the_training_error_is_raised_when_recording_the_runs_before_it_fails(tmp_path, monkeypatch):
    # ce and hinge tune in one pack, which raises; apart, ce's runs train and hinge's raise again; recording
    # ce's then fails: hinge's error is the one raised, and ce's runs are queued again, uncounted
    from lossbench.bench import runner as runner_module
    from lossbench.bench.storage import HeartbeatStorage

    spec = load_spec(write_spec(tmp_path / "tiny.toml", trials=4, epochs=1))
    storage = open_storage(default_storage_url(tmp_path), spec.heartbeat_interval)
    real, real_finish, failed = runner_module.train_and_score_packed, HeartbeatStorage.finish_trials, []

    def hinge_tuning_fails(split, methods, runs, spec_):
        if "hinge" in {m.name for m in methods} and split.stage == "tune":
            failed.append(1)
            raise RuntimeError("hinge fell over")
        return real(split, methods, runs, spec_)

    def busy(self, outcomes):
        if len(failed) == 2:  # (hinge raised in the pack and alone)
            raise sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("database is locked"))
        return real_finish(self, outcomes)

    monkeypatch.setattr(runner_module, "train_and_score_packed", hinge_tuning_fails)
    monkeypatch.setattr(HeartbeatStorage, "finish_trials", busy)
    with pytest.raises(RuntimeError, match="hinge fell over") as raised, pytest.warns(RuntimeWarning, match="apart"):
        Runner(spec, storage, torch.device("cpu")).run()
    assert any("recording the runs trained before it failed" in note for note in raised.value.__notes__)
    trials = all_trials(storage, spec)
    assert [t.state for t in trials[("tune", "hinge")]] == [TrialState.FAIL] * 4
    # ce's runs trained but were not recorded: failed and queued again, none left running until stale
    assert [t.state for t in trials[("tune", "ce")]] == [TrialState.FAIL] * 4 + [TrialState.WAITING] * 4
    assert [t.system_attrs.get("retry_history") for t in trials[("tune", "ce")][4:]] == [[]] * 4


def test_a_call_whose_recording_fails_queues_its_runs_and_the_later_calls_runs_again(tmp_path, monkeypatch):
    # TPE asks 2 tuning runs at once; --pack 1 trains them in two calls, the first recorded as it ends:
    # where that fails, neither run counts against its draw, and the resumed study is the uninterrupted one
    from lossbench.bench import runner as runner_module
    from lossbench.bench.storage import HeartbeatStorage

    path = write_spec(tmp_path / "tiny.toml", trials=4, epochs=1)
    path.write_text(path.read_text().replace('sampler = "random"', 'sampler = "tpe"'))
    spec = load_spec(path)
    clean = open_storage(default_storage_url(tmp_path / "clean"), spec.heartbeat_interval)
    Runner(spec, clean, torch.device("cpu"), pack=1).run()
    storage = open_storage(default_storage_url(tmp_path / "cut"), spec.heartbeat_interval)
    real, real_finish, trained = runner_module.train_and_score, HeartbeatStorage.finish_trials, []

    def counted(*args, **kwargs):
        trained.append(1)
        return real(*args, **kwargs)

    def busy_once(self, outcomes):
        if len(trained) == 1:
            trained.append(0)  # (once)
            raise sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("database is locked"))
        return real_finish(self, outcomes)

    monkeypatch.setattr(runner_module, "train_and_score", counted)
    monkeypatch.setattr(HeartbeatStorage, "finish_trials", busy_once)
    with pytest.raises(sqlalchemy.exc.OperationalError, match="database is locked"):
        Runner(spec, storage, torch.device("cpu"), pack=1).run()
    assert trained == [1, 0]  # the second run of the batch did not train
    (first_unit,) = [ts for (stage, _), ts in all_trials(storage, spec).items() if stage == "tune" and ts]
    assert [t.state for t in first_unit] == [TrialState.FAIL] * 2 + [TrialState.WAITING] * 2
    assert [t.system_attrs["retry_history"] for t in first_unit[2:]] == [[], []]
    monkeypatch.undo()
    Runner(spec, storage, torch.device("cpu"), pack=1).run()
    assert_complete_and_counted_once(storage, spec)
    assert tuned_configs(storage, spec) == tuned_configs(clean, spec)


def test_runs_whose_recording_fails_are_queued_again_not_left_running(tmp_path, monkeypatch):
    from lossbench.bench.storage import HeartbeatStorage

    spec, clean, storage = _clean_and_cut(tmp_path)
    real_finish, calls = HeartbeatStorage.finish_trials, []

    def busy_once(self, outcomes):
        calls.append(1)
        if len(calls) == 1:
            raise sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("database is locked"))
        return real_finish(self, outcomes)

    monkeypatch.setattr(HeartbeatStorage, "finish_trials", busy_once)
    with pytest.raises(sqlalchemy.exc.OperationalError, match="database is locked"):
        Runner(spec, storage, torch.device("cpu"), pack=8).run()
    trials = [t for ts in all_trials(storage, spec).values() for t in ts]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert all(t.system_attrs.get("retry_history") == [] for t in trials if t.state == TrialState.WAITING)
    monkeypatch.undo()
    _assert_resumes_into(spec, storage, clean)


def _chosen(storage, spec):
    from lossbench.bench.storage import CONFIG_ATTR

    return {m.name: optuna.load_study(study_name=study_name(spec.name, "final", d.label, m.name), storage=storage).user_attrs[CONFIG_ATTR]
            for d, m in spec.units()}  # fmt: skip


@pytest.mark.parametrize("at", [1, 3, 7, 12])
def test_a_stop_signal_during_a_commit_waits_for_it_and_the_study_resumes_into_the_uninterrupted_one(tmp_path, monkeypatch, at):
    """A signal handled inside SQLAlchemy's commit turned into an AssertionError (the trial failed for good,
    the command exited 1) and kept SQLite's write lock: stop signals wait for the storage call to return."""
    import sqlalchemy.engine.base as engine

    from lossbench.bench import stops

    spec, clean, storage = _clean_and_cut(tmp_path)
    real, commits = engine.RootTransaction._deactivate_from_connection, []

    def deactivate(self):
        if threading.current_thread() is threading.main_thread():
            commits.append(1)
            if len(commits) == at:
                signal.raise_signal(signal.SIGTERM)  # its handler runs at the next bytecode: inside this commit
        return real(self)

    runner = Runner(spec, storage, torch.device("cpu"), pack=8)  # (its studies made: counted from the run's start)
    monkeypatch.setattr(engine.RootTransaction, "_deactivate_from_connection", deactivate)
    with stops.taken(), pytest.raises(stops.Stopped):
        runner.run()
    monkeypatch.undo()
    assert len(commits) >= at
    trials = [t for ts in all_trials(storage, spec).values() for t in ts]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert not [t for t in trials if "Stopped" not in t.user_attrs.get("error", "Stopped")], "failed by another error"
    _assert_resumes_into(spec, storage, clean)
    assert _chosen(storage, spec) == _chosen(clean, spec)


def test_a_stop_signal_inside_start_trials_fails_and_queues_the_trials_that_call_started(tmp_path, monkeypatch):
    """The stop waited for start_trials to return and was raised there: its trials (hinge's, the pack's second
    unit) were never listed as started, so they stayed RUNNING until stale instead of being queued again."""
    from lossbench.bench import stops
    from lossbench.bench.storage import HeartbeatStorage

    spec, clean, storage = _clean_and_cut(tmp_path)
    inner, calls = HeartbeatStorage.start_trials.__wrapped__, []

    def start_trials(self, *args, **kwargs):
        out = inner(self, *args, **kwargs)  # committed
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGTERM)  # within the held storage call
        return out

    monkeypatch.setattr(HeartbeatStorage, "start_trials", stops.held(start_trials))
    with stops.taken(), pytest.raises(stops.Stopped):
        Runner(spec, storage, torch.device("cpu"), pack=8).run()
    monkeypatch.undo()
    trials = [t for ts in all_trials(storage, spec).values() for t in ts]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert sum(t.state == TrialState.FAIL for t in trials) == sum(t.state == TrialState.WAITING for t in trials) > 0
    _assert_resumes_into(spec, storage, clean)


def test_a_second_stop_signal_during_a_storage_call_stops_at_once():
    from lossbench.bench import stops

    calls = []

    @stops.held
    def storage_call(signals):
        for _ in range(signals):
            signal.raise_signal(signal.SIGTERM)
            calls.append(1)  # not reached after the second

    with stops.taken():
        with pytest.raises(stops.Stopped):
            storage_call(1)
        assert calls == [1]  # the call returned, then stopped
        with pytest.raises(stops.Stopped):
            storage_call(2)
        assert calls == [1, 1]


def test_a_retried_draw_keeps_its_place_in_the_budget_and_in_ties():
    """A killed run's retry is numbered after the draws that followed it: by number the budget and a tie
    would go otherwise than in the uninterrupted study."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from lossbench.bench.storage import choose

    def trial(number, lr, failed=None, value=1.0):
        t = create_trial(value=value, params={"lr": lr}, distributions={"lr": FloatDistribution(0.01, 1.0)},
                         system_attrs={} if failed is None else {"failed_trial": failed})  # fmt: skip
        t.number = number
        return t

    # draw 0 was killed (trial 0), trials 1-3 are draws 1-3, trial 4 retries draw 0: every value ties
    retried = [trial(1, 0.2), trial(2, 0.3), trial(3, 0.4), trial(4, 0.1, failed=0)]
    assert [t.params["lr"] for t in budget_trials(retried, 3)] == [0.1, 0.2, 0.3]
    for tie_break in ("earliest", "train_metric"):
        assert choose(retried, tie_break).params["lr"] == 0.1
    # the budget curve reads the draws in that order too: the retried draw 0 first
    from lossbench.bench.results import MethodResult
    from lossbench.bench.spec import MethodSpec

    scored = [trial(1, 0.2, value=0.5), trial(2, 0.3, value=0.7), trial(4, 0.1, failed=0, value=0.9)]
    result = MethodResult(MethodSpec("ce", "cross_entropy"), "tune", "final", scored, None, None, {}, [])
    assert result.budget_curve() == [0.9, 0.9, 0.9]


def test_a_tuning_draw_whose_training_raises_is_failed_with_its_error_and_a_new_draw_takes_its_place(tmp_path, monkeypatch):
    from lossbench.bench import runner as runner_module
    from lossbench.bench.storage import ERROR_ATTR

    spec = load_spec(write_spec(tmp_path / "tiny.toml", trials=3, epochs=1))
    storage = open_storage(default_storage_url(tmp_path), spec.heartbeat_interval)
    real, doomed = runner_module.train_and_score, []

    def fails_on_one_draw(split, method, params, spec_, seed):
        if split.stage == "tune" and method.name == "ce":
            doomed.append(doomed[0] if doomed else params["lr"])  # (ce's first draw is the doomed one)
            if params["lr"] == doomed[0]:
                raise RuntimeError("this draw always fails")
        return real(split, method, params, spec_, seed)

    monkeypatch.setattr(runner_module, "train_and_score", fails_on_one_draw)
    with pytest.raises(RuntimeError, match="this draw always fails"):  # (a training error stops the run, said)
        Runner(spec, storage, torch.device("cpu"), pack=1).run()
    Runner(spec, storage, torch.device("cpu"), pack=1).run()  # the same command again finishes the study
    assert_complete_and_counted_once(storage, spec)
    tune = all_trials(storage, spec)[("tune", "ce")]
    (failed,) = [t for t in tune if t.state == TrialState.FAIL]
    assert failed.params["lr"] == doomed[0] and "this draw always fails" in failed.user_attrs[ERROR_ATTR]
    assert doomed[0] not in [t.params["lr"] for t in budget_trials(tune, spec.trials)]  # a new draw took its place


@pytest.mark.parametrize("message", ["table studies already exists", "UNIQUE constraint failed: alembic_version.version_num"])
def test_a_storage_whose_tables_another_process_is_creating_opens_after_it(tmp_path, monkeypatch, message):
    # two `lossbench run` started together on a new SQLite file both create Optuna's tables: the second
    # failed with one of these errors (about one start in four) where opening again finds the tables whole
    from lossbench.bench import storage as storage_module

    real, calls = storage_module.HeartbeatStorage, []

    def racing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            real(*args, **kwargs)  # (the other process's tables, made meanwhile)
            raise sqlalchemy.exc.OperationalError("CREATE TABLE studies", {}, Exception(message))
        return real(*args, **kwargs)

    monkeypatch.setattr(storage_module, "HeartbeatStorage", racing)
    storage = storage_module.open_storage(f"sqlite:///{tmp_path}/new.db", 1)
    assert len(calls) == 2 and storage.get_all_studies() == []
    calls.clear()

    def broken(*args, **kwargs):  # another database error is no race: reported at once
        calls.append(1)
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("disk I/O error"))

    monkeypatch.setattr(storage_module, "HeartbeatStorage", broken)
    with pytest.raises(Exception, match="disk I/O error"):
        storage_module.open_storage(f"sqlite:///{tmp_path}/other.db", 1)
    assert len(calls) == 1
