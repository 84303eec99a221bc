"""A queued trial (a retry, an evaluation seed) is taken by exactly one worker."""

from __future__ import annotations

import threading

import optuna
import pytest
from optuna.storages._rdb import models
from optuna.trial import TrialState

from lossbench.bench.storage import default_storage_url, open_storage


def test_two_workers_popping_one_queued_trial_take_it_once(tmp_path, monkeypatch):
    url = default_storage_url(tmp_path)
    study = optuna.create_study(storage=open_storage(url, 10), study_name="queue")
    study.enqueue_trial({"x": 1.0})
    (trial_id,) = [t._trial_id for t in study.get_trials()]
    at_once = _both_read_first(monkeypatch)
    workers = [open_storage(url, 10) for _ in range(2)]
    taken: list[bool] = []
    at_once([lambda s=s: taken.append(s.set_trial_state_values(trial_id, TrialState.RUNNING))
             for s in workers])  # fmt: skip
    assert sorted(taken) == [False, True]
    assert workers[0].get_trial(trial_id).state == TrialState.RUNNING


def _both_read_first(monkeypatch):
    """Both workers read the trial before either writes: the interleaving that let Optuna's read-then-
    write change one trial's state for two workers on SQLite (no row locks).  Returns the function
    that runs the workers' calls, each in its own thread, all started before any is joined.

    A worker that reads waits (up to a generous 30 s, for a thread started late on a loaded machine)
    for the other to read too.  An implementation that writes without reading first (one conditional
    UPDATE) has only the loser read, after its update failed: the winner's call then ends without
    reading, and its end releases the waiting loser (breaks the barrier) instead of the timeout."""
    both_read = threading.Barrier(2, timeout=30)
    reached: list[bool] = []
    original = models.TrialModel.find_or_raise_by_id

    def find_then_wait(*args, **kwargs):
        found = original(*args, **kwargs)
        reached.append(True)
        try:
            both_read.wait()
        except threading.BrokenBarrierError:
            pass  # the other worker's call ended: it can no longer read first
        return found

    monkeypatch.setattr(models.TrialModel, "find_or_raise_by_id", find_then_wait)

    def call_then_release(call):
        try:
            call()
        finally:
            both_read.abort()

    def at_once(calls):
        threads = [threading.Thread(target=call_then_release, args=(call,)) for call in calls]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # else the patch is on a method the storage no longer calls and nothing was forced
        assert reached, "no worker read the trial through TrialModel.find_or_raise_by_id"

    return at_once


def test_two_workers_failing_one_stale_trial_fail_it_once(tmp_path, monkeypatch):
    # each that failed it would queue a retry: the draw trained twice, both counted
    url = default_storage_url(tmp_path)
    study = optuna.create_study(storage=open_storage(url, 10), study_name="stale")
    trial_id = study.ask()._trial_id
    at_once = _both_read_first(monkeypatch)
    workers = [open_storage(url, 10) for _ in range(2)]
    failed: list[bool] = []

    def fail(storage):
        try:
            failed.append(storage.set_trial_state_values(trial_id, TrialState.FAIL))
        except optuna.exceptions.UpdateFinishedTrialError:  # (what Optuna's stale check expects of the loser)
            failed.append(False)

    at_once([lambda s=s: fail(s) for s in workers])
    assert sorted(failed) == [False, True]
    assert workers[0].get_trial(trial_id).state == TrialState.FAIL


def test_failed_trials_and_their_retries_appear_together(tmp_path, monkeypatch):
    # a retry as Optuna's stale-trial callback makes it (parameters, attributes but the error, the draw it
    # retries, at most MAX_RETRIES times), queued in the transaction that fails the trial: another worker
    # never sees the trial failed and no retry queued (it would draw a new trial in its place)
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    from lossbench.bench import storage as storage_module
    from lossbench.bench.storage import ERROR_ATTR, MAX_RETRIES

    url = default_storage_url(tmp_path)
    storage, other = open_storage(url, 10), open_storage(url, 10)
    study = optuna.create_study(storage=storage, study_name="fail")
    twins = []
    for _ in range(2):  # one failed here, its twin by Optuna's callback
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
        trial.set_user_attr("seed", 3)
        twins.append(storage.get_trial(trial._trial_id))
    real_insert, seen = storage_module._insert_trials, []

    def insert_and_look(session, study_id, count, state, start):
        seen.append(other.get_trial(twins[0]._trial_id).state)  # what another worker reads meanwhile
        return real_insert(session, study_id, count, state, start)

    monkeypatch.setattr(storage_module, "_insert_trials", insert_and_look)
    assert storage.fail_trials([(study._study_id, twins[0])], "RuntimeError: boom", retry=True) == [twins[0]._trial_id]
    assert seen == [TrialState.RUNNING]
    storage.set_trial_state_values(twins[1]._trial_id, TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)(study, storage.get_trial(twins[1]._trial_id))
    ours, optunas = [t for t in study.get_trials() if t.state == TrialState.WAITING]
    assert storage.get_trial(twins[0]._trial_id).user_attrs[ERROR_ATTR] == "RuntimeError: boom"
    assert (ours.params, optunas.params) == (twins[0].params, twins[1].params)
    assert (ours.distributions, ours.user_attrs) == (optunas.distributions, optunas.user_attrs)
    assert ours.system_attrs == {"failed_trial": 0, "retry_history": [0]}
    assert optunas.system_attrs == {"failed_trial": 1, "retry_history": [1]}
    # a trial no longer running is not failed again; one retried MAX_RETRIES times is not queued again
    assert storage.fail_trials([(study._study_id, twins[0])], "again", retry=True) == []
    (tired,) = storage.start_trials(study._study_id, 1, [])  # (a new running trial: ask would take a queued one)
    tired.system_attrs = {"failed_trial": 0, "retry_history": list(range(MAX_RETRIES))}
    with pytest.warns(UserWarning, match=rf"1 run\(s\) failed {MAX_RETRIES + 1} times and are not retried again: trial 0 "
                      rf"\(failed as trials \[0, 1, 2, {tired.number}\]\); last error: tired"):  # (said: a new draw takes its place)
        assert storage.fail_trials([(study._study_id, tired)], "tired", retry=True) == [tired._trial_id]
    assert len([t for t in study.get_trials() if t.state == TrialState.WAITING]) == 2


def test_two_workers_that_counted_the_same_trials_queue_or_create_the_missing_ones_once(tmp_path):
    # both found an evaluation seed missing (or a tuning trial to start) in the same read and both queued it:
    # runs trained twice; now the second, whose count is out of date, queues and creates nothing
    from collections import Counter

    url = default_storage_url(tmp_path)
    study = optuna.create_study(storage=open_storage(url, 10), study_name="counted")
    study.add_trial(optuna.trial.create_trial(value=1.0))
    a, b = (open_storage(url, 10) for _ in range(2))
    sid = study._study_id
    counted = Counter(t.state for t in a.get_all_trials(sid))  # both workers' read, before either writes
    assert len(a.queue_trials(sid, {}, [{"seed": 1}], counted)) == 1
    assert b.queue_trials(sid, {}, [{"seed": 1}], counted) is None
    assert b.start_trials(sid, 2, [], create=True, expect=counted) is None
    assert [t.state for t in b.get_all_trials(sid)] == [TrialState.COMPLETE, TrialState.WAITING]
    now = Counter(t.state for t in b.get_all_trials(sid))
    assert len(b.start_trials(sid, 2, [], create=True, expect=now)) == 2  # counted afresh: made


def test_a_failing_rollback_is_noted_on_the_error_that_failed_the_transaction(tmp_path, monkeypatch):
    """The connection that failed the work fails the rollback too: the work's error is the one raised."""
    storage = open_storage(default_storage_url(tmp_path), None)

    class Gone:
        def commit(self):
            raise OSError("the commit's failure")

        def rollback(self):
            raise ConnectionError("no connection")

        def close(self):
            pass

    monkeypatch.setattr(storage, "scoped_session", lambda: Gone())
    with pytest.raises(OSError, match="the commit's failure") as raised:
        with storage._transaction():
            pass
    assert raised.value.__notes__ == ["the rollback failed too (ConnectionError: no connection)"]
