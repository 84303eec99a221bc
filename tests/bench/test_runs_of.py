"""A method with ``runs_of`` trains nothing: it reads another method's chosen configuration and
evaluation runs through its own decision rule, so its paired test compares one model read two ways
(Menon et al.'s post-hoc logit adjustment of a cross-entropy model)."""

from __future__ import annotations

import csv

import optuna
import pytest
import torch

from lossbench.bench.execution import DataCache, train_and_score
from lossbench.bench.methods import resolve_method
from lossbench.bench.report import method_settings, write_report
from lossbench.bench.results import collect
from lossbench.bench.runner import Runner
from lossbench.bench.spec import SpecError, parse_spec, spec_from_json, spec_growth
from lossbench.bench.storage import DECIDED_ATTR, default_storage_url, open_storage, run_record

READER = {"name": "ce_posthoc", "runs_of": "ce", "decision": "logit_adjusted"}


def _spec(*methods, dataset=None, **top):
    return parse_spec({
        "name": "reads", "trials": 2, "seeds": 2, "sampler": "random", "baseline": "ce",
        "train": {"model": "linear", "epochs": 2, "batch_size": 32, "lr_final": 1e-3},
        "datasets": [dataset or {"name": "digits", "params": {"long_tail_rho": 20.0}}],
        "methods": [{"name": "ce", "loss": "cross_entropy"}, *methods], **top,
    }, "test")  # fmt: skip


def test_a_reader_trains_nothing_and_takes_the_read_methods_loss():
    spec = _spec(READER, {"name": "hinge", "loss": "hinge"})
    reader = spec.method("ce_posthoc")
    assert (reader.loss, reader.runs_of, reader.decision) == ("cross_entropy", "ce", "logit_adjusted")
    assert [m.name for _, m in spec.units()] == ["ce", "hinge"]
    assert spec.read_through("ce") == ("logit_adjusted",) and spec.read_through("hinge") == ()
    stored = spec_from_json(spec.to_json())
    assert stored == spec and stored.fingerprint() == spec.fingerprint()
    assert '"runs_of"' not in _spec().to_json()  # the default leaves stored fingerprints as they were


def test_a_reader_is_the_read_method_but_for_its_name_and_rule_and_reads_back_at_any_rule():
    flooded = {"name": "ce_la", "loss": "cross_entropy", "decision": "logit_adjusted", "transforms": ["flooding"]}
    spec = _spec(flooded, {"name": "ce_la_argmax", "runs_of": "ce_la"})  # (its rule: the default, argmax)
    reader = spec.method("ce_la_argmax")
    assert reader.transforms == spec.method("ce_la").transforms and reader.decision == "argmax"
    stored = spec_from_json(spec.to_json())  # (an argmax reader's rule is left out of the stored form)
    assert stored == spec and stored.fingerprint() == spec.fingerprint()


@pytest.mark.parametrize(
    "method, message",
    [
        ({**READER, "loss": "hinge"}, r"takes only name, runs_of and decision, not \['loss'\]"),
        ({**READER, "runs_of": "nope"}, "runs_of must name a method of the spec that trains"),
        ({**READER, "decision": "argmax"}, "through that method's own decision 'argmax'"),
    ],
)
def test_a_reader_that_cannot_read_is_refused(method, message):
    with pytest.raises(SpecError, match=message):
        _spec(method)


def test_a_reader_of_a_reader_is_refused():
    with pytest.raises(SpecError, match="runs_of must name a method of the spec that trains"):
        _spec(READER, {"name": "again", "runs_of": "ce_posthoc", "decision": "logit_adjusted"})


def test_a_reader_added_to_stored_runs_is_a_change_unless_they_scored_its_rule():
    grown, changed = spec_growth(_spec(), _spec(READER))
    assert not grown and "it reads the stored runs of 'ce', which were not scored by its decision" in changed[0]
    # a second reader of a rule the runs already score, or a reader of a new method, grows the study
    assert spec_growth(_spec(READER), _spec(READER, {**READER, "name": "again"})) == (["method 'again' added"], [])
    new = {"name": "ce2", "loss": "cross_entropy"}
    grown, changed = spec_growth(_spec(), _spec(new, {**READER, "runs_of": "ce2"}))
    assert grown == ["method 'ce2' added", "method 'ce_posthoc' added"] and not changed


def test_the_read_method_scores_each_readers_rule_as_that_rule_scores_it_alone():
    spec = _spec(READER)
    alone = _spec({"name": "ce_la", "loss": "cross_entropy", "decision": "logit_adjusted"})
    params = {"lr": 0.1, "weight_decay": 1e-4}
    final = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "final")
    read = train_and_score(final, resolve_method(spec.method("ce")), params, spec, seed=3)
    by_rule = train_and_score(final, resolve_method(alone.method("ce_la")), params, alone, seed=3)
    assert read.decided["logit_adjusted"] == {k: by_rule.metrics[k] for k in ("accuracy", "macro_f1", "balanced_accuracy")}
    assert read.metrics["balanced_accuracy"] != by_rule.metrics["balanced_accuracy"]  # (the rule changes the labels)
    # only evaluation runs are read: a tuning run scores its own rule alone
    tune = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    assert train_and_score(tune, resolve_method(spec.method("ce")), params, spec, seed=3).decided == {}


def test_a_readers_results_are_the_read_methods_runs_through_its_rule(tmp_path):
    spec = _spec(READER)
    storage = open_storage(default_storage_url(tmp_path), spec.heartbeat_interval)
    runner = Runner(spec, storage, torch.device("cpu"))
    assert runner.total_runs() == spec.trials + spec.seeds  # the reader adds no run
    runner.run()
    (result,) = collect(spec, storage)
    ce, reader = result.method("ce"), result.method("ce_posthoc")
    assert reader.complete and not reader.trained and ce.trained
    assert [t.number for t in reader.runs.values()] == [t.number for t in ce.runs.values()]
    assert (reader.chosen_trial, reader.config, reader.tune_study) == (ce.chosen_trial, ce.config, ce.tune_study)
    for seed, run in reader.runs.items():
        own, record = run_record(ce.runs[seed])["metrics"], run_record(run)
        assert record["metrics"] == {**own, **record[DECIDED_ATTR]["logit_adjusted"]}
    assert reader.summaries["nll"] == ce.summaries["nll"]  # the same models' probabilities
    assert reader.paired is not None and reader.paired.n == spec.seeds  # paired seed by seed, model by model

    write_report(spec, [result], tmp_path / "report")
    with open(tmp_path / "report" / "trials.csv") as f:  # the reader's tuning trials are ce's, listed once
        assert sorted(row["method"] for row in csv.DictReader(f)) == ["ce"] * spec.trials
    with open(tmp_path / "report" / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["method"] for row in rows) == ["ce"] * 2 + ["ce_posthoc"] * 2
    settings = {row[0]: row for row in method_settings(spec).rows}
    assert settings["ce_posthoc"][5] == "none: the runs of ce, read through the decision logit_adjusted"


def test_a_readers_rule_is_checked_against_each_data_sets_task_before_any_run(tmp_path):
    spec = _spec({**READER, "decision": "thresholds"})  # (a multi-label rule, on a multiclass data set)
    storage = open_storage(default_storage_url(tmp_path), spec.heartbeat_interval)
    with pytest.raises(SpecError, match=r"method 'ce_posthoc' on 'digits\[long_tail_rho=20.0\]': decision 'thresholds' applies to multilabel"):
        Runner(spec, storage, torch.device("cpu"))
    assert optuna.get_all_study_summaries(storage, include_best_trial=False) == []  # nothing stored
