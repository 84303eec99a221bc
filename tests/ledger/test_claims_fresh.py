"""`lossbench claims run --fresh`: a claim's studies deleted and run anew, nothing else touched."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
from optuna.trial import TrialState

from lossbench.bench import storage as storage_module
from lossbench.bench.spec import SpecError
from lossbench.bench.storage import default_storage_url, open_storage, study_created
from lossbench.cli import main
from lossbench.ledger import records
from lossbench.ledger.protocol import study_spec
from lossbench.ledger.runs import study_wall_time
from tests.ledger.test_ledger import TINY

SHARING = dataclasses.replace(TINY, id="tiny-ce-vs-hinge", treatment="ce", baseline="hinge", published={})


@pytest.fixture
def tiny_claims(monkeypatch):
    monkeypatch.setitem(records.CLAIMS, TINY.id, TINY)
    monkeypatch.setitem(records.CLAIMS, SHARING.id, SHARING)


def _trials(storage, name: str) -> dict[str, int]:
    """Every study of ``name`` (itself and its units) by name, with its number of trials."""
    return {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
            if s.study_name == name or s.study_name.startswith(f"{name}:")}  # fmt: skip


def test_fresh_deletes_the_claims_study_and_runs_it_anew(tiny_claims, tmp_path, capsys):
    out = tmp_path / "ledger"
    args = ["claims", "run", TINY.id, "--out", str(out), "--device", "cpu"]
    assert main(args) == 0
    name = study_spec(TINY, "quick").name
    storage = open_storage(default_storage_url(out))
    first, created = _trials(storage, name), study_created(storage, name)
    assert sum(first.values()) == 2 * (2 + 3)  # two methods' 2 tuning runs and 3 seeds
    capsys.readouterr()

    assert main([*args, "--fresh"]) == 0
    said = capsys.readouterr().out
    assert f"deleted study {name} and its 10 stored runs, to run it anew; it served claims {SHARING.id} too" in said
    assert f"claim {TINY.id} (quick, fixed split): " in said  # judged from the new runs
    storage = open_storage(default_storage_url(out))
    assert _trials(storage, name) == first  # the same studies, each with one run's trials, not two
    assert study_created(storage, name) > created
    _, counted = study_wall_time(storage, name)
    assert len(counted) == 1  # the worker time is the new run's only: the first run's runs are gone


def test_without_fresh_a_second_run_resumes_and_deletes_nothing(tiny_claims, tmp_path, capsys):
    out = tmp_path / "ledger"
    args = ["claims", "run", TINY.id, "--out", str(out), "--device", "cpu"]
    assert main(args) == 0
    name = study_spec(TINY, "quick").name
    created = study_created(open_storage(default_storage_url(out)), name)
    assert main(args) == 0
    assert "deleted study" not in capsys.readouterr().out
    assert study_created(open_storage(default_storage_url(out)), name) == created


def test_deleting_a_study_leaves_other_studies_and_refuses_while_a_worker_runs_it(tmp_path, monkeypatch):
    storage = open_storage(default_storage_url(tmp_path), heartbeat_interval=1)
    names = ["s.quick", "s.quick:tune:wine:ce", "s.quick:final:wine:ce", "s.quick.resampled", "s.quick.resampled:tune:wine:ce",
             "s.quickx:tune:wine:ce", "s_quick:tune:wine:ce", "s.quick:other"]  # fmt: skip
    for n in names:
        optuna.create_study(storage=storage, study_name=n).add_trial(optuna.trial.create_trial(value=1.0))
    running = optuna.load_study(study_name="s.quick:tune:wine:ce", storage=storage).ask()  # (started now: not stale)

    with pytest.raises(SpecError, match="study 's.quick' has 1 run\\(s\\) in progress in a worker"):
        storage.delete_spec_studies("s.quick")
    assert set(_trials(storage, "s.quick")) == {"s.quick", "s.quick:tune:wine:ce", "s.quick:final:wine:ce", "s.quick:other"}

    real = storage_module.datetime

    class Later(real):  # past the grace period: the killed worker's trial is stale
        @classmethod
        def now(cls, tz=None):
            return real.now(tz) + storage_module.timedelta(seconds=60)

    monkeypatch.setattr(storage_module, "datetime", Later)
    assert storage.get_trial(running._trial_id).state == TrialState.RUNNING
    assert storage.delete_spec_studies("s.quick") == (3, 4)
    left = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    assert left == set(names) - {"s.quick", "s.quick:tune:wine:ce", "s.quick:final:wine:ce"}
    assert storage.delete_spec_studies("s.quick") == (0, 0)  # (nothing stored: nothing to do)
