"""A queued trial (a retry, an evaluation seed) is taken by exactly one worker."""

from __future__ import annotations

import threading

import optuna
from optuna.storages._rdb import models
from optuna.trial import TrialState

from lossbench.bench.storage import default_storage_url, open_storage


def test_two_workers_popping_one_queued_trial_take_it_once(tmp_path, monkeypatch):
    url = default_storage_url(tmp_path)
    study = optuna.create_study(storage=open_storage(url, 10), study_name="queue")
    study.enqueue_trial({"x": 1.0})
    (trial_id,) = [t._trial_id for t in study.get_trials()]
    _both_read_first(monkeypatch)
    workers = [open_storage(url, 10) for _ in range(2)]
    taken: list[bool] = []
    threads = [threading.Thread(target=lambda s=s: taken.append(s.set_trial_state_values(trial_id, TrialState.RUNNING)))
               for s in workers]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == [False, True]
    assert workers[0].get_trial(trial_id).state == TrialState.RUNNING


def _both_read_first(monkeypatch):
    """Both workers read the trial before either writes: the interleaving that let Optuna's read-then-
    write change one trial's state for two workers on SQLite (no row locks)."""
    both_read = threading.Barrier(2, timeout=1)
    original = models.TrialModel.find_or_raise_by_id

    def find_then_wait(*args, **kwargs):
        found = original(*args, **kwargs)
        try:
            both_read.wait()
        except threading.BrokenBarrierError:
            pass
        return found

    monkeypatch.setattr(models.TrialModel, "find_or_raise_by_id", find_then_wait)


def test_two_workers_failing_one_stale_trial_fail_it_once(tmp_path, monkeypatch):
    # each that failed it would queue a retry: the draw trained twice, both counted
    url = default_storage_url(tmp_path)
    study = optuna.create_study(storage=open_storage(url, 10), study_name="stale")
    trial_id = study.ask()._trial_id
    _both_read_first(monkeypatch)
    workers = [open_storage(url, 10) for _ in range(2)]
    failed: list[bool] = []

    def fail(storage):
        try:
            failed.append(storage.set_trial_state_values(trial_id, TrialState.FAIL))
        except optuna.exceptions.UpdateFinishedTrialError:  # (what Optuna's stale check expects of the loser)
            failed.append(False)

    threads = [threading.Thread(target=fail, args=(s,)) for s in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(failed) == [False, True]
    assert workers[0].get_trial(trial_id).state == TrialState.FAIL
