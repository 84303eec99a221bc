"""`lossbench claims run --fresh`: a claim's studies deleted and run anew, nothing else touched."""

from __future__ import annotations

import dataclasses
import time

import optuna
import pytest
from optuna.trial import TrialState

from lossbench.bench import storage as storage_module
from lossbench.bench.spec import SpecError
from lossbench.bench.storage import default_storage_url, open_storage, study_created
from lossbench.cli import main
from lossbench.ledger import records
from lossbench.ledger.analyses import analysis_study, run_study
from lossbench.ledger.protocol import study_spec
from lossbench.ledger.records import Claim
from lossbench.ledger.report import collect_entries
from lossbench.ledger.runs import AnalysisResult, stored_analysis, study_wall_time
from lossbench.ledger.verdict import Rule
from tests.ledger.test_ledger import TINY

SHARING = dataclasses.replace(TINY, id="tiny-ce-vs-hinge", treatment="ce", baseline="hinge", published={})


def _count_final_trials(budget, storage=None, device=None, data_dir=None, pack=None, progress=None):
    """An analysis of TINY's study (the same protocol and budget): the number of its final runs' trials."""
    runner = run_study(analysis_study(READER.id, budget), storage, device, data_dir, pack, progress, "a test")
    finals = sum(len(unit.final.get_trials()) for unit in runner.units)
    return AnalysisResult("holds", "counted", {"finals": finals, "at": time.time()})


READER = Claim(id="tiny-reader", title="t", source="s", url="-", statement="s", kind="analysis", protocol="builtin",
               budgets=TINY.budgets, analysis=_count_final_trials, rule_text="counts")  # fmt: skip


@pytest.fixture
def tiny_claims(monkeypatch):
    for claim in (TINY, SHARING, READER):
        monkeypatch.setitem(records.CLAIMS, claim.id, claim)


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

    assert main(["claims", "run", READER.id, "--out", str(out)]) == 0
    read_before = stored_analysis(storage, READER, "quick").measured["at"]
    capsys.readouterr()
    assert main([*args, "--fresh"]) == 0
    said = capsys.readouterr().out
    assert (f"deleted {name} (5 studies, 10 trials) to run anew; claims {SHARING.id} share it; analyses {READER.id} "
            "read it and are judged again after it") in said  # fmt: skip
    assert f"claim {TINY.id} (quick, fixed split): " in said  # judged from the new runs
    assert f"claim {READER.id} (quick): holds" in said
    storage = open_storage(default_storage_url(out))
    assert _trials(storage, name) == first  # the same studies, each with one run's trials, not two
    assert study_created(storage, name) > created
    _, counted = study_wall_time(storage, name)
    # the worker time is the new run's and the analysis's that read it again only: the first run's runs are gone
    assert len(counted) == 2 and all(r["started_at"] >= study_created(storage, name) for r in counted)
    assert stored_analysis(storage, READER, "quick").measured["at"] > read_before  # read again, from the new runs


def test_fresh_runs_a_changed_record_anew_where_resuming_is_refused(tiny_claims, tmp_path, monkeypatch):
    # the record's decision is checked against the runs' (written before them); fresh runs are the new record's
    out = tmp_path / "ledger"
    args = ["claims", "run", TINY.id, "--out", str(out), "--device", "cpu"]
    assert main(args) == 0
    monkeypatch.setitem(records.CLAIMS, TINY.id, dataclasses.replace(TINY, rule=Rule("greater", delta=0.02)))
    assert main(args) == 0
    with pytest.raises(SpecError, match="was run under another record than it has now"):
        collect_entries(open_storage(default_storage_url(out)))
    assert main([*args, "--fresh"]) == 0
    assert [e for e in collect_entries(open_storage(default_storage_url(out))) if getattr(e, "claim", None) is not None]


def test_fresh_deletes_every_variation_or_none(tiny_claims, tmp_path, monkeypatch):
    both = dataclasses.replace(TINY, variations=("fixed", "resampled"))
    monkeypatch.setitem(records.CLAIMS, TINY.id, both)
    out = tmp_path / "ledger"
    assert main(["claims", "run", TINY.id, "--out", str(out), "--device", "cpu"]) == 0
    storage = open_storage(default_storage_url(out), heartbeat_interval=1)
    names = [study_spec(both, "quick", v).name for v in both.variations]
    created = [study_created(storage, n) for n in names]
    unit = next(n for n in _trials(storage, names[1]) if ":tune:" in n)
    running = optuna.load_study(study_name=unit, storage=storage).ask()  # a live worker's run of the second
    assert main(["claims", "run", TINY.id, "--out", str(out), "--device", "cpu", "--fresh"]) == 2
    assert [study_created(storage, n) for n in names] == created  # neither deleted
    storage.set_trial_state_values(running._trial_id, TrialState.FAIL)
    assert main(["claims", "run", TINY.id, "--out", str(out), "--device", "cpu", "--fresh"]) == 0
    assert all(study_created(storage, n) > c for n, c in zip(names, created))


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
             "s.quickx:tune:wine:ce", "s_quick:tune:wine:ce", "s.quick:other", "S.QUICK:tune:wine:ce"]  # fmt: skip
    for n in names:
        optuna.create_study(storage=storage, study_name=n).add_trial(optuna.trial.create_trial(value=1.0))
    running = optuna.load_study(study_name="s.quick:tune:wine:ce", storage=storage).ask()  # (started now: not stale)

    with pytest.raises(SpecError, match="1 run\\(s\\) of 's.quick' in progress in a worker"):
        storage.delete_spec_studies(["s.quick"])
    assert set(_trials(storage, "s.quick")) == {"s.quick", "s.quick:tune:wine:ce", "s.quick:final:wine:ce", "s.quick:other"}

    real = storage_module.datetime

    class Later(real):  # past the grace period: the killed worker's trial is stale
        @classmethod
        def now(cls, tz=None):
            return real.now(tz) + storage_module.timedelta(seconds=60)

    monkeypatch.setattr(storage_module, "datetime", Later)
    assert storage.get_trial(running._trial_id).state == TrialState.RUNNING
    assert storage.delete_spec_studies(["s.quick"]) == (3, 4)
    left = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    assert left == set(names) - {"s.quick", "s.quick:tune:wine:ce", "s.quick:final:wine:ce"}
    assert storage.delete_spec_studies(["s.quick"]) == (0, 0)  # (nothing stored: nothing to do)


def test_a_run_a_worker_starts_while_the_stale_runs_are_read_is_not_deleted(tmp_path, monkeypatch):
    # the live-run check read the stale runs in a transaction of its own nested in the delete's, which committed
    # the delete's locks, and read the running ones before it: a run started then was neither, and was deleted
    url = default_storage_url(tmp_path)
    storage, worker = open_storage(url, heartbeat_interval=1), open_storage(url, heartbeat_interval=1)
    study = optuna.create_study(storage=storage, study_name="s.quick:tune:wine:ce")
    study.add_trial(optuna.trial.create_trial(value=1.0))
    study.ask()  # a killed worker's run (no heartbeat): stale once the grace period is past
    real, started = storage_module.datetime, []

    class Later(real):
        @classmethod
        def now(cls, tz=None):
            return real.now(tz) + storage_module.timedelta(seconds=60)

    monkeypatch.setattr(storage_module, "datetime", Later)
    stale = storage_module.HeartbeatStorage._get_stale_trial_ids

    def a_worker_starts_a_run_meanwhile(self, study_id):
        if not started:
            started.append(worker.start_trials(study._study_id, 1, [], True))
        return stale(self, study_id)

    monkeypatch.setattr(storage_module.HeartbeatStorage, "_get_stale_trial_ids", a_worker_starts_a_run_meanwhile)
    with pytest.raises(SpecError, match="1 run\\(s\\) of 's.quick' in progress in a worker"):
        storage.delete_spec_studies(["s.quick"])
    assert len(optuna.load_study(study_name="s.quick:tune:wine:ce", storage=storage).get_trials()) == 3
