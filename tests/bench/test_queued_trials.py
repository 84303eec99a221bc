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
    # Both workers read the trial before either writes: the interleaving that let Optuna's
    # read-then-write hand one queued trial to two workers on SQLite (no row locks).
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
