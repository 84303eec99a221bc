"""The claims ledger end to end: records, their protocols, a run through the bench, the judge,
the report, and the `lossbench claims` command."""

from __future__ import annotations

import dataclasses
import datetime
import time
import types

import optuna
import pytest
import torch

from lossbench._document import Para
from lossbench.bench.methods import resolve_method
from lossbench.bench.runner import Runner
from lossbench.bench.spec import SpecError
from lossbench.bench.storage import default_storage_url, open_storage
from lossbench.cli import main
from lossbench.ledger import records
from lossbench.ledger.judge import judge
from lossbench.ledger.protocol import study_spec
from lossbench.ledger.records import BUDGETS, Budget, Claim, Published, all_claims, get_claim
from lossbench.ledger.report import collect_entries, outcome_blocks, write_ledger
from lossbench.ledger.runs import (
    AnalysisResult,
    analysis_wall_time,
    invocations,
    ledger_study,
    record_invocation,
    run_claim,
    store_analysis,
    stored_analysis,
)
from lossbench.ledger.verdict import VERDICTS, Rule


def test_the_ledger_lists_every_claim_of_the_exact_issue():
    ids = {c.id for c in all_claims()}
    assert {"exact-table1", "exact-table2-mnist", "exact-estimator", "su-exact-nlp", "su-exact-logp",
            "su-smooth-accuracy", "su-ce-late", "exact-toy-1d", "su-toy-temperature"} <= ids  # fmt: skip


@pytest.mark.parametrize("claim", all_claims(), ids=lambda c: c.id)
def test_every_claim_names_its_source_in_words(claim):
    fields = (claim.title, claim.source, claim.url, claim.statement)
    assert all(isinstance(f, str) and f.strip() for f in fields) and claim.url.startswith("https://")


@pytest.mark.parametrize("claim", [c for c in all_claims() if c.kind == "bench"], ids=lambda c: c.id)
def test_every_bench_claim_resolves_at_every_budget(claim):
    for budget in BUDGETS:
        for variation in claim.variations:
            spec = study_spec(claim, budget, variation)
            assert spec.name.startswith(f"{spec.name.split('.')[0]}.{budget}")
            names = {m.name for m in spec.methods}
            assert {claim.treatment, claim.baseline} <= names
            for m in spec.methods:
                resolve_method(m)  # every loss, transform, parameter and search key exists
            labels = {d.label for d in spec.datasets}
            if budget == "paper":  # the source's numbers name datasets and methods the protocol has
                for dataset, row in claim.published.items():
                    assert dataset == "mean" or dataset in labels, dataset
                    assert set(row) <= names | {"sklearn"}, row


def test_unknown_claims_and_overrides_are_refused():
    with pytest.raises(ValueError, match="unknown claim 'nope'"):
        get_claim("nope")
    bad = Claim(id="bad", title="t", source="s", url="u", statement="s", protocol="builtin", treatment="hinge",
                baseline="ce", rule=Rule("greater"), budgets={"quick": Budget({"train.epoch": 2})})  # fmt: skip
    with pytest.raises(SpecError, match="'train.epoch' sets nothing"):
        study_spec(bad, "quick")
    bad = Claim(id="bad", title="t", source="s", url="u", statement="s", protocol="builtin", treatment="hinge",
                baseline="ce", rule=Rule("greater"), budgets={"quick": Budget({"methods.keep": ["xx"]})})  # fmt: skip
    with pytest.raises(SpecError, match="methods.keep names"):
        study_spec(bad, "quick")
    with pytest.raises(SpecError, match="--budget must be one of"):
        study_spec(get_claim("exact-table1"), "huge")
    with pytest.raises(ValueError, match="needs"):
        Claim(id="x", title="t", source="s", url="u", statement="s", protocol="builtin")
    with pytest.raises(ValueError, match="higher-is-better metric"):  # (ranks and diverged runs read higher as better)
        Claim(id="x", title="t", source="s", url="u", statement="s", protocol="builtin", metric="nll", treatment="hinge",
              baseline="ce", rule=Rule("less"), budgets={"quick": Budget()})  # fmt: skip


TINY = Claim(
    id="tiny-hinge-vs-ce",
    title="hinge beats cross-entropy on wine",
    source="a test",
    url="-",
    statement="hinge > ce",
    protocol="builtin",
    treatment="hinge",
    baseline="ce",
    published={"wine": {"ce": Published(97.0, 1.0)}},
    budgets={"quick": Budget({"datasets": ["wine"], "trials": 2, "seeds": 3, "train.epochs": 2,
                              "methods.keep": ["ce", "hinge"], "heartbeat_interval": 1}, "tiny")},  # fmt: skip
    rule=Rule("greater", delta=0.01),
)


@pytest.fixture
def tiny_claim(monkeypatch):
    monkeypatch.setitem(records.CLAIMS, TINY.id, TINY)
    return TINY


def test_a_claim_runs_through_the_bench_and_lands_in_the_ledger(tiny_claim, tmp_path):
    storage = open_storage(default_storage_url(tmp_path), study_spec(tiny_claim, "quick").heartbeat_interval)
    run_claim(tiny_claim, "quick", storage, torch.device("cpu"))
    spec = study_spec(tiny_claim, "quick")
    outcome = judge(tiny_claim, spec, storage, "quick", "fixed")
    # hinge is 3.70 points below ce on these seeds: neither direction nor equivalence within 1 point is shown
    assert outcome.complete and outcome.verdict is not None and outcome.verdict.word == "inconclusive"
    (d,) = outcome.datasets
    assert len(d.treatment.scores) == len(d.baseline.scores) == 3
    assert d.baseline.published == Published(97.0, 1.0) and d.treatment.published is None
    # every number traces to stored trials
    final = optuna.load_study(study_name=d.treatment.final_study, storage=storage)
    assert sorted(t.number for t in final.get_trials() if t.state.is_finished()) == sorted(d.treatment.final_trials)
    assert outcome.runs == 2 * (2 + 3) and outcome.compute_seconds > 0
    # a metric the runs never computed is refused, not read as nan (every run "diverged", an "equivalent" claim)
    with pytest.raises(ValueError, match="the runs of wine / ce have no metric 'micro_f1' \\(their metrics: accuracy"):
        judge(dataclasses.replace(tiny_claim, metric="micro_f1"), spec, storage, "quick", "fixed")
    # a method name the study does not have is refused, not read as a claim with no data set to judge
    with pytest.raises(SpecError, match=f"claim '{TINY.id}': its baseline 'cross_entropy' is not a method of study"):
        judge(dataclasses.replace(tiny_claim, baseline="cross_entropy"), spec, storage, "quick", "fixed")

    # a study whose runs decide other claims too says which, in the outcome's section
    paras = [b.text for b in outcome_blocks(outcome, storage, tmp_path, ["other-claim", "third-claim"]) if isinstance(b, Para)]
    assert "The same runs also decide 2 other claims, each at this budget and split: other-claim, third-claim." in paras
    paras = [b.text for b in outcome_blocks(outcome, storage, tmp_path, ["other-claim"]) if isinstance(b, Para)]
    assert "The same runs also decide the claim other-claim at this budget and split." in paras
    assert not [p for p in (b.text for b in outcome_blocks(outcome, storage, tmp_path) if isinstance(b, Para)) if "also decide" in p]

    # running again resumes: nothing is trained twice, the invocation is recorded
    before = len(final.get_trials())
    run_claim(tiny_claim, "quick", storage, torch.device("cpu"))
    assert len(optuna.load_study(study_name=d.treatment.final_study, storage=storage).get_trials()) == before
    assert len(invocations(storage, tiny_claim, "quick")) == 2

    said: list[str] = []
    md, page = write_ledger(storage, tmp_path / "ledger", "a test storage", said.append)
    assert said[0].startswith("judging claim 1/") and f": {TINY.id}" in " ".join(said)  # (minutes in all: said as it goes)
    text = md.read_text()
    assert f"## {TINY.id}: {TINY.title}" in text and "/ 97.00 ± 1.00" in text
    assert "the source's number after the slash" in text
    # the verdict's reason in the units of the tables: points
    assert f"mean difference {100 * outcome.verdict.effect.estimate:.2f} points" in text
    assert "Differences are hinge - ce in accuracy points." in text
    assert outcome.verdict.word in text and f"#{d.treatment.chosen_trial}" in text
    html = page.read_text()
    assert f"<h2 id='{TINY.id}'>{TINY.id}: {TINY.title}</h2>" in html  # the claim's section, and its row in the summary table
    assert (f"<td><a href='#{TINY.id}'>{TINY.id}</a></td><td>{TINY.title}</td><td>quick</td><td>fixed</td>"
            f"<td><a href='#{TINY.id}.quick.fixed'>inconclusive</a></td>") in html  # (linked to its sections)
    assert f'<a id="{TINY.id}.quick.fixed"></a>\n\n### quick budget, fixed split: inconclusive' in text
    # one dataset ranks nothing: no critical-difference diagram, neither embedded nor written beside the page
    assert "<img" not in html and not list(md.parent.rglob("*.png"))
    assert md.parent == (tmp_path / "ledger").resolve()

    # the record as it was run, or no verdict: another rule, or another protocol under the same study
    changed_rule = dataclasses.replace(tiny_claim, rule=Rule("less", delta=0.01))
    quick = dataclasses.replace(tiny_claim.budgets["quick"], overrides={**tiny_claim.budgets["quick"].overrides, "train.epochs": 50})
    for changed, shown in ((changed_rule, "rule: "), (dataclasses.replace(tiny_claim, budgets={"quick": quick}), "train.epochs")):
        records.CLAIMS[TINY.id] = changed
        with pytest.raises(SpecError, match="was run under another record") as err:
            write_ledger(storage, tmp_path / "ledger", "a test storage")
        assert shown in str(err.value) and "\n" not in str(err.value)
    # a bench claim's rule_text only describes the fields the judge reads: rewording it changes no verdict
    records.CLAIMS[TINY.id] = dataclasses.replace(tiny_claim, rule_text="Reworded.", published={})
    md, _ = write_ledger(storage, tmp_path / "ledger", "a test storage")
    assert "Decision rule, fixed before any run (stored with every run, and unchanged): " in md.read_text()
    # (without the source's numbers the table says so, instead of pointing after a slash)
    assert "the source gives no number for these datasets" in md.read_text() and "after the slash" not in md.read_text()
    records.CLAIMS[TINY.id] = tiny_claim
    # a study run anew tells its history: the invocations whose runs were deleted before its own
    ledger_study(storage).set_user_attr("runs:another-claim:quick:fixed", [
        {"started": "2001-09-09T01:46:40+00:00", "started_at": 1.0e9, "wall_seconds": 5.0, "study": spec.name}])  # fmt: skip
    paras = [b.text for b in outcome_blocks(outcome, storage, tmp_path) if isinstance(b, Para)]
    assert any(p.startswith("Run anew: the runs of its earlier `claims run` invocations (2001-09-09) were deleted") for p in paras)


def test_a_users_own_study_under_a_claims_study_name_is_left_out_not_judged_nor_refused(tiny_claim, tmp_path):
    # (a study `lossbench run` made in a shared storage, under the name a claim's study has)
    spec = study_spec(tiny_claim, "quick")
    storage = open_storage(default_storage_url(tmp_path), spec.heartbeat_interval)
    Runner(spec, storage, torch.device("cpu")).run()
    with pytest.warns(UserWarning, match=f"study '{spec.name}' in this storage was not made by `lossbench claims run` "
                                         f"\\(no invocation .*left out of .*{TINY.id} \\(quick, fixed\\)"):  # fmt: skip
        entries = collect_entries(storage)
    assert [e.outcomes for e in entries if e.claim.id == TINY.id] == [[]]
    # a claims run of that study makes its runs the claim's (resumed: the spec is the same)
    run_claim(tiny_claim, "quick", storage, torch.device("cpu"))
    (entry,) = [e for e in collect_entries(storage) if e.claim.id == TINY.id]
    assert [o.verdict.word for o in entry.outcomes] == ["inconclusive"]


def test_a_study_an_analysis_claim_ran_is_a_claims_study_for_the_bench_claim_that_shares_it(tiny_claim, tmp_path, monkeypatch):
    from lossbench.ledger.analyses import analysis_study

    def analysis(budget, storage, device):  # (an analysis that reads a study of the bench, as the flooding cost's)
        Runner(analysis_study("tiny-analysis", budget), storage, device).run()
        return AnalysisResult("holds", "ran the study")

    reader = Claim(id="tiny-analysis", title="t", source="a test", url="-", statement="s", kind="analysis",
                   protocol="builtin", budgets={"quick": TINY.budgets["quick"]}, analysis=analysis, rule_text="r")  # fmt: skip
    monkeypatch.setitem(records.CLAIMS, reader.id, reader)
    assert analysis_study(reader.id, "quick").name == study_spec(tiny_claim, "quick").name  # (one study, shared)
    storage = open_storage(default_storage_url(tmp_path), study_spec(tiny_claim, "quick").heartbeat_interval)
    run_claim(reader, "quick", storage, torch.device("cpu"))
    (entry,) = [e for e in collect_entries(storage) if e.claim.id == TINY.id]  # (no warning of a study no claim made)
    assert [o.verdict.word for o in entry.outcomes] == ["inconclusive"]


def test_the_flooding_tuning_cost_analysis_makes_the_penalty_claims_study_a_claims_study(tmp_path, monkeypatch):
    # (it runs su-flooding-penalty's study but has no protocol of its own: it recorded no study, and the penalty
    # claim's verdict was left out as of a study no claims run made)
    from lossbench.ledger import analyses
    from lossbench.ledger.report import _made_by_claims

    claim = get_claim("su-flooding-tuning-cost")

    def stub(budget):
        return AnalysisResult("inconclusive", "not run here")

    monkeypatch.setattr(analyses, "flooding_tuning_cost", stub)
    monkeypatch.setitem(records.CLAIMS, claim.id, dataclasses.replace(claim, analysis=stub))
    name = study_spec(get_claim("su-flooding-penalty"), "quick").name
    storage = open_storage(default_storage_url(tmp_path))
    assert not _made_by_claims(storage, name, "quick")
    run_claim(records.CLAIMS[claim.id], "quick", storage, torch.device("cpu"))
    assert [r["study"] for r in invocations(storage, claim, "quick")] == [name] and _made_by_claims(storage, name, "quick")
    older = open_storage(default_storage_url(tmp_path / "older"))  # (an invocation recorded before: study None)
    record_invocation(older, claim, "quick", "fixed", time.time(), None)
    assert _made_by_claims(older, name, "quick") and not _made_by_claims(older, name, "paper")


def test_a_metric_whose_computation_changed_after_the_runs_is_left_out_or_refused(tiny_claim, tmp_path, monkeypatch):
    # (runs stored before a metric's change hold another quantity under its name: nll from clamped probabilities)
    import datetime

    from lossbench.bench import metrics

    storage = open_storage(default_storage_url(tmp_path), study_spec(tiny_claim, "quick").heartbeat_interval)
    run_claim(tiny_claim, "quick", storage, torch.device("cpu"))
    spec, later = study_spec(tiny_claim, "quick"), datetime.datetime(2100, 1, 1, tzinfo=datetime.timezone.utc)
    monkeypatch.setitem(metrics.METRIC_CHANGES, "nll", (later, "another way"))
    outcome = judge(tiny_claim, spec, storage, "quick", "fixed")
    (d,) = outcome.datasets
    assert d.treatment.outdated == ("nll",) and d.treatment.secondary["nll"] != d.treatment.secondary["nll"]  # nan
    assert d.treatment.secondary["ece"] == d.treatment.secondary["ece"]  # (unchanged metrics kept)
    md, _ = write_ledger(storage, tmp_path / "ledger", "a test storage")
    assert "Left out (-): nll of runs stored before 2100-01-01 00:00 UTC, which computed it another way." in md.read_text()
    monkeypatch.setitem(metrics.METRIC_CHANGES, "accuracy", (later, "another way"))  # the claim's own metric: no verdict
    with pytest.raises(ValueError, match="runs of wine / ce computed accuracy before it changed \\(another way\\)"):
        judge(tiny_claim, spec, storage, "quick", "fixed")


def test_a_run_is_placed_before_or_after_a_metric_change_in_utc_whatever_the_local_zone(monkeypatch):
    # (Optuna reads its datetimes back as naive local time: in Tokyo a run two hours before the change read 9 h later)
    import datetime
    import time

    from lossbench.bench.metrics import METRIC_CHANGES, computed_before_change

    change = METRIC_CHANGES["nll"][0]
    for zone in ("UTC", "Asia/Tokyo", "America/Los_Angeles"):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        for hours, before in ((-2, True), (2, False)):
            local = (change + datetime.timedelta(hours=hours)).astimezone().replace(tzinfo=None)  # as Optuna gives it
            assert computed_before_change("nll", local) is before, (zone, hours)
    monkeypatch.undo()
    time.tzset()


def test_the_report_says_which_runs_stored_the_decision_they_ran_under(tmp_path):
    from lossbench.ledger.report import decision_provenance
    from lossbench.ledger.runs import decision_changes, ledger_study

    storage = open_storage(default_storage_url(tmp_path))
    claim = get_claim("exact-toy-1d")  # an analysis claim: its rule_text is its rule
    assert decision_provenance(storage, claim) == "Decision rule, fixed before any run"
    key = "runs:exact-toy-1d:quick:fixed"
    ledger_study(storage).set_user_attr(key, [{"started": "2026-12-03T20:21:00+00:00", "wall_seconds": 1.0, "study": None}])
    record_invocation(storage, claim, "quick", "fixed", time.time(), None)
    text = decision_provenance(storage, claim)
    assert text.startswith("Decision rule, stored with 1 of the 2 `claims run` invocations that ran its studies (the other "
                           "1, of 2026-12-03, stored no decision of this claim: ")  # fmt: skip
    assert decision_changes(storage, claim, "quick") == []
    reworded = dataclasses.replace(claim, rule_text="Another rule.")
    assert [c.split(":")[0] for c in decision_changes(storage, reworded, "quick")] == ["rule_text"]


def test_a_bench_claims_provenance_counts_the_runs_of_its_studies_by_any_claim(tiny_claim, tmp_path):
    from lossbench.ledger.report import decision_provenance
    from lossbench.ledger.runs import ledger_study

    storage = open_storage(default_storage_url(tmp_path))
    study = study_spec(tiny_claim, "quick").name
    ran = {"started": "2026-12-04T03:00:00+00:00", "wall_seconds": 1.0, "study": study, "decision": {"metric": "x"}}
    ledger_study(storage).set_user_attr("runs:another-claim:quick:fixed", [ran])  # it ran the shared study
    text = decision_provenance(storage, tiny_claim)
    assert ("1 of the 1 `claims run` invocations that ran its studies, of 2026-12-04; made by `claims run` of "
            "another-claim, stored no decision of this claim") in text  # (the claim whose rule those runs stored)
    assert text.startswith("Decision rule, not checked against its runs (")


def test_a_study_deleted_and_run_anew_counts_the_worker_time_of_its_new_runs_only(tiny_claim, tmp_path, monkeypatch):
    """The runs of the invocations before the deletion are gone: their wall time is not the stored study's."""
    from lossbench.bench.storage import register_spec, study_created
    from lossbench.ledger import runs as runs_module
    from lossbench.ledger.runs import ledger_study, replaced_invocations, study_wall_time

    storage = open_storage(default_storage_url(tmp_path))
    spec = study_spec(tiny_claim, "quick")
    old = {"started": "2026-12-03T20:21:00+00:00", "started_at": 1.0e9, "wall_seconds": 50.0, "study": spec.name}
    ledger_study(storage).set_user_attr("runs:another-claim:quick:fixed", [old])  # (a study stored before it was dated)
    assert study_created(storage, spec.name) is None
    assert study_wall_time(storage, spec.name) == (50.0, [old])  # not stored: every invocation counts, as before
    monkeypatch.setattr(runs_module, "time", types.SimpleNamespace(time=lambda: 2.0e9 + 40))
    register_spec(storage, spec)  # run anew (the old study deleted)
    assert study_created(storage, spec.name) >= 1.7e9
    new = record_invocation(storage, tiny_claim, "quick", "fixed", 2.0e9, spec.name)  # its 40 s end after the creation
    wall, runs = study_wall_time(storage, spec.name)
    assert wall == 40.0 and [r.get("id") for r in runs] == [new]
    assert replaced_invocations(storage, spec.name) == [old]  # (the study's history: told on the page beside the new runs)
    killed = {**old, "ended": False}  # (killed with -9 before the study was run anew: against its date, gone all the same)
    ledger_study(storage).set_user_attr("runs:another-claim:quick:fixed", [killed])
    assert replaced_invocations(storage, spec.name) == [killed]


def test_a_study_whose_units_ran_anew_before_studies_were_dated_counts_the_invocations_of_its_stored_runs(
    tiny_claim, tmp_path
):
    """Without the study's date (recorded before it was kept), an invocation that ended before its first
    stored run started made only runs that are gone: its time and decision are not the stored study's."""
    from lossbench.bench.storage import study_name
    from lossbench.ledger.report import decision_provenance
    from lossbench.ledger.runs import replaced_invocations, study_wall_time

    storage = open_storage(default_storage_url(tmp_path))
    spec = study_spec(tiny_claim, "quick")
    gone = {"started": "2001-09-09T01:46:40+00:00", "wall_seconds": 50.0, "study": spec.name}  # (no started_at: older)
    now = time.time() - 5
    kept = {"started": datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(), "started_at": now,
            "wall_seconds": 60.0, "study": spec.name}
    ledger_study(storage).set_user_attr("runs:another-claim:quick:fixed", [gone, kept])
    assert study_wall_time(storage, spec.name) == (110.0, [gone, kept])  # no run stored: nothing to tell them apart
    optuna.create_study(study_name=study_name(spec.name, "tune", "digits", "ce"), storage=storage).ask()
    assert study_wall_time(storage, spec.name) == (60.0, [kept])
    assert "1 of the 1 `claims run` invocations that ran its studies" in decision_provenance(storage, tiny_claim)
    assert replaced_invocations(storage, spec.name) == [gone]
    # an invocation killed with -9 never recorded its end: against the first stored run's start it may have made
    # that run, so it is not called replaced (nor its time left out); one that ended is, as before
    killed = {**gone, "started_at": 1.0e9, "ended": False}
    ledger_study(storage).set_user_attr("runs:another-claim:quick:fixed", [killed, kept])
    assert replaced_invocations(storage, spec.name) == [] and study_wall_time(storage, spec.name) == (110.0, [killed, kept])
    ledger_study(storage).set_user_attr("runs:another-claim:quick:fixed", [{**killed, "ended": True}, kept])
    assert replaced_invocations(storage, spec.name) == [{**killed, "ended": True}]


def test_the_summary_says_which_declared_variation_of_a_run_budget_was_not_run(tmp_path):
    from lossbench._document import Link
    from lossbench.ledger.report import Entry, summary_rows

    claim = dataclasses.replace(TINY, variations=("fixed", "resampled"),
                                budgets={**TINY.budgets, "paper": Budget({}, "the preset as written")})  # fmt: skip
    ran = types.SimpleNamespace(budget="quick", variation="resampled", verdict=None, missing=["wine"], runs=0,
                                compute_seconds=0.0, spec=types.SimpleNamespace(name="nothing-stored"))  # fmt: skip
    rows = summary_rows([Entry(claim, [ran], {})], open_storage(default_storage_url(tmp_path)))
    assert [r[2:5] for r in rows] == [["quick", "resampled", Link("incomplete (1 units)", f"{claim.id}.quick.resampled")],
                                      ["quick", "fixed", "not run"], ["paper", "-", "not run"]]  # (a declared budget nothing ran at, too)
    assert {r[0] for r in rows} == {Link(claim.id, claim.id)}  # (each row's claim links to its section)
    assert {r[1] for r in rows} == {claim.title}
    reading = dataclasses.replace(claim, reading=True)  # (a claim the source does not make in these words: marked)
    rows = summary_rows([Entry(reading, [ran], {})], open_storage(default_storage_url(tmp_path)))
    assert {r[1] for r in rows} == {f"{claim.title} (lossbench's reading of the source)"}


def test_concurrent_claims_runs_each_keep_their_record(tmp_path, monkeypatch):
    from lossbench.ledger import runs as runs_module
    from lossbench.ledger.runs import _record_wall_time, all_invocations, ledger_study

    storage = open_storage(default_storage_url(tmp_path))
    claim = get_claim("exact-toy-1d")
    older = {"started": "2026-12-03T20:21:00+00:00", "wall_seconds": 1.0, "study": None}
    ledger_study(storage).set_user_attr("runs:exact-toy-1d:quick:fixed", [older])  # a storage's records before
    monkeypatch.setattr(runs_module, "time", types.SimpleNamespace(time=lambda: 1.8e9))  # (now, for the wall times)
    # Writing a record reads no other: two invocations of one claim (two processes, say) cannot drop each other's.
    with monkeypatch.context() as no_reads:
        no_reads.setattr(optuna.Study, "user_attrs", property(lambda self: pytest.fail("a record read the others")))
        first = record_invocation(storage, claim, "quick", "fixed", 1.8e9 - 60, None)
        second = record_invocation(storage, claim, "quick", "fixed", 1.8e9 - 30, None)
    _record_wall_time(storage, claim, "quick", "fixed", first, 1.8e9 - 90)
    runs = invocations(storage, claim, "quick")
    assert [r.get("id") for r in runs] == [None, first, second]  # first to last, the older list's among them
    assert [r["wall_seconds"] for r in runs] == [1.0, 90.0, 30.0]  # (the first's own record updated)
    assert [r.get("id") for r in all_invocations(storage)] == [None, first, second]
    assert invocations(storage, claim, "paper") == []


def test_the_ledger_lists_the_rule_changes_made_after_its_storage_first_runs(tmp_path):
    from lossbench.ledger.report import rule_changes
    from lossbench.ledger.runs import ledger_study
    from lossbench.ledger.verdict import CHANGES_AFTER_RUNS

    storage = open_storage(default_storage_url(tmp_path))
    assert rule_changes(storage) == []  # no run: nothing changed under it
    key = "runs:exact-toy-1d:quick:fixed"
    ledger_study(storage).set_user_attr(key, [{"started": "2026-12-03T20:21:00+00:00", "wall_seconds": 1.0, "study": None}])
    intro, listed = rule_changes(storage)
    assert "first runs (2026-12-03)" in intro.text and len(listed.items) == len(CHANGES_AFTER_RUNS)
    assert any("Holm's correction" in item for item in listed.items)
    ledger_study(storage).set_user_attr(key, [{"started": "2099-01-01T00:00:00+00:00", "wall_seconds": 1.0, "study": None}])
    assert rule_changes(storage) == []  # runs made under the rule as it is now


def test_analysis_claims_store_their_measurement(tmp_path):
    storage = open_storage(default_storage_url(tmp_path))
    for claim_id in ("exact-toy-1d", "su-toy-temperature"):
        claim = get_claim(claim_id)
        run_claim(claim, "quick", storage, torch.device("cpu"))
        result = stored_analysis(storage, claim, "quick")
        # The paper's example as published: CE and hinge miss without T and find it with T = 0.1.
        assert result.word == "holds", result.reason
        assert all(0 <= v <= 1 for v in result.measured.values())


def test_an_analysis_worker_time_sums_its_invocations(tmp_path, monkeypatch):
    from lossbench.ledger import runs as runs_module

    storage = open_storage(default_storage_url(tmp_path))
    claim = get_claim("exact-toy-1d")
    result = AnalysisResult("holds", "why", {}, "", seconds=5.0)
    assert analysis_wall_time(storage, claim, "quick", result) == (5.0, [])  # none recorded: the result's own
    store_analysis(storage, claim, "quick", result)
    now = 1.8e9
    monkeypatch.setattr(runs_module, "time", types.SimpleNamespace(time=lambda: now))  # (now, for the wall times)
    for took in (90.0, 7.0):  # a run that trained its study, then one that read it back
        record_invocation(storage, claim, "quick", "fixed", now - took, None)
    seconds, runs = analysis_wall_time(storage, claim, "quick", result)
    assert [r["wall_seconds"] for r in runs] == [90.0, 7.0] and seconds == 97.0


def test_the_claims_command(tmp_path, capsys):
    assert main(["claims", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # "not run" says where it looked: a storage that does not exist, and where the project's own runs are
    assert "exact-table1" in out and f"no runs read: {tmp_path / 'lossbench.db'} does not exist" in out
    assert "--storage sqlite:///reproductions/lossbench.db" in out
    assert main(["claims", "run", "nope", "--out", str(tmp_path)]) == 2
    assert main(["claims", "run", "exact-table1", "--budget", "huge", "--out", str(tmp_path)]) == 2
    empty = tmp_path / "no-data"
    empty.mkdir()  # the data set's files are missing: found out before a database is created
    assert main(["claims", "run", "exact-table1", "--variation", "fixed", "--data-dir", str(empty), "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "lossbench.db").exists()  # refused before anything was written
    assert main(["claims", "report", "--out", str(tmp_path)]) == 2
    (tmp_path / "a-file").write_text("x")
    assert main(["claims", "report", "--out", str(tmp_path / "a-file")]) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path / 'a-file'} is not a folder" in err
    assert "unknown claim 'nope'" in err and "--budget must be one of" in err and "no ledger database" in err
    assert "adult" in err


def test_the_commands_a_claims_command_suggests_name_its_storage(tmp_path, capsys, monkeypatch):
    # a `claims run --storage URL` suggested `claims report --out DIR` (no ledger database there), and a report's
    # "not run yet" a `claims run` into the default folder (the report read would still say "not run")
    monkeypatch.delenv("LOSSBENCH_STORAGE", raising=False)
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert main(["claims", "run", "exact-toy-1d", "--storage", url, "--out", str(tmp_path / "o")]) == 0
    assert f"`lossbench claims report --out {tmp_path / 'o'} --storage {url}` writes the ledger" in capsys.readouterr().err  # (a notice: stderr)
    out = tmp_path / "ledger"
    assert main(["claims", "run", "exact-toy-1d", "--out", str(out)]) == 0
    assert main(["claims", "report", "--out", str(out)]) == 0
    assert f"Not run yet: `lossbench claims run su-toy-temperature --budget quick --out {out}`." in (
        out / "REPRODUCTIONS.md").read_text()  # fmt: skip


def test_a_per_dataset_claim_must_hold_on_every_dataset():
    from lossbench.ledger.judge import every_dataset
    from lossbench.ledger.verdict import paired_verdict

    rule = Rule("greater", delta=0.01)
    up = paired_verdict([0.90, 0.91, 0.92, 0.90], [0.80, 0.80, 0.81, 0.80], rule)  # holds
    down = paired_verdict([0.70, 0.71, 0.70, 0.72], [0.80, 0.80, 0.81, 0.80], rule)  # contradicted
    flat = paired_verdict([0.80, 0.80, 0.81, 0.80], [0.80, 0.80, 0.81, 0.80], rule)  # equivalent
    assert (up.word, down.word, flat.word) == ("holds", "contradicted", "equivalent")
    assert every_dataset([up, up], ["a", "b"]).word == "holds"
    assert every_dataset([up, down], ["a", "b"]).word == "contradicted"
    assert every_dataset([flat, flat], ["a", "b"]).word == "equivalent"
    mixed = every_dataset([up, flat], ["a", "b"])
    assert mixed.word == "inconclusive" and "holds on a" in mixed.reason and "equivalent on b" in mixed.reason
    # its interval runs from the lowest to the highest end of the per-dataset ones: not called a CI
    span = every_dataset([up, down], ["a", "b"]).effect
    assert (span.ci_low, span.ci_high) == (down.effect.ci_low, up.effect.ci_high)
    assert span.spans_datasets and span.interval_label == "the span of the per-dataset 90 % intervals"
    assert not up.effect.spans_datasets and up.effect.interval_label == "90 % CI"


def test_a_dataset_decided_by_a_constant_difference_is_named_so():
    """p = 0 from the same difference on every seed is the t-test's limit at zero variance: the verdict says so."""
    from lossbench.ledger.judge import every_dataset
    from lossbench.ledger.verdict import paired_verdict

    rule = Rule("greater", delta=0.005)
    constant = paired_verdict([0.95, 0.94, 0.96], [0.96, 0.95, 0.97], rule)  # one point lower on each seed
    varied = paired_verdict([0.70, 0.71, 0.70], [0.80, 0.80, 0.80], rule)
    assert constant.effect.constant and not varied.effect.constant and constant.p_opposite == 0.0
    reason = every_dataset([constant, varied], ["a", "b"]).reason
    assert "a (p = 0: the same difference on all 3 seeds, zero variance, Holm-adjusted 0)" in reason
    assert "b (p = " in reason and reason.count("zero variance") == 1


def test_an_equal_claims_opposite_names_its_doubled_p_as_such():
    """An "equal" rule tests each side at alpha / 2 and compares the nearer side's p, doubled, with alpha:
    the dataset's own reason shows the side's p, the summary the doubled one, and says which it is."""
    from lossbench.ledger.judge import every_dataset
    from lossbench.ledger.verdict import paired_verdict

    rule = Rule("equal", delta=0.005)
    apart = paired_verdict([0.92, 0.93, 0.925, 0.94, 0.935], [0.90, 0.90, 0.905, 0.91, 0.90], rule)
    assert apart.word == "contradicted"
    side = float(apart.reason.split("(p = ")[1].split(" ")[0])
    assert apart.p_opposite == pytest.approx(2 * side, rel=1e-2)
    reason = every_dataset([apart, apart], ["a", "b"]).reason
    assert f"a (p = {apart.p_opposite:.3g} (the nearer side's, doubled), Holm-adjusted" in reason


def test_the_opposite_on_one_of_several_datasets_contradicts_only_after_holms_correction():
    """Any of k datasets showing the opposite by chance is a union of k tests: at alpha = 0.05 a claim
    without any effect would be contradicted on 3 datasets in about 14 % of studies without the correction."""
    from lossbench.ledger.judge import every_dataset
    from lossbench.ledger.verdict import paired_verdict

    rule = Rule("greater", delta=0.005)
    base = [0.80, 0.80, 0.80]
    weak = paired_verdict([0.79, 0.785, 0.795], base, rule)  # the opposite at p = 0.037 alone
    none = paired_verdict([0.80, 0.81, 0.79], base, rule)  # nothing shown
    strong = paired_verdict([0.70, 0.71, 0.70], base, rule)  # the opposite at p = 0.0006
    assert weak.word == "contradicted" and 0.01 < weak.p_opposite < 0.05 and weak.unopposed == "inconclusive"
    assert none.word == "inconclusive" and strong.word == "contradicted" and strong.p_opposite < 0.05 / 3
    assert every_dataset([weak], ["a"]).word == "contradicted"  # one dataset: its own test
    kept = every_dataset([weak, weak], ["a", "b"])  # Holm: 2 x p > 0.05 for the smaller, the larger stays
    assert kept.word == "inconclusive" and "not kept by Holm's correction over the 2 tests" in kept.reason
    # the report's per-dataset column gives the word the claim counts, as its sentence does
    from lossbench.ledger.judge import DatasetOutcome, holm_words
    from lossbench.ledger.report import _dataset_word

    assert holm_words([weak, weak])[:2] == (["inconclusive", "inconclusive"], [False, False])
    assert holm_words([weak, strong])[:2] == (["contradicted", "contradicted"], [True, True])
    dropped = DatasetOutcome("a", None, None, weak, holm_words([weak, weak])[0][0])
    assert _dataset_word(dropped) == "inconclusive (contradicted alone; not kept by Holm's correction)"
    assert _dataset_word(DatasetOutcome("a", None, None, weak, "contradicted")) == "contradicted"
    assert every_dataset([weak, none, strong], ["a", "b", "c"]).word == "contradicted"
    held = every_dataset([strong, none, none], ["a", "b", "c"])
    assert held.word == "contradicted" and "the opposite is shown on a" in held.reason and "Holm-adjusted" in held.reason
    both = every_dataset([strong, weak, none], ["a", "b", "c"])  # a's opposite kept, b's not: both named
    assert both.word == "contradicted" and "the opposite is shown on a (p = " in both.reason
    assert "The opposite shown on b (p = " in both.reason and "alone is not kept by Holm's correction" in both.reason
    # a dataset whose opposite is not kept counts with the word its rule gives without it
    tiny = paired_verdict([0.7995, 0.7996, 0.7994, 0.7995], [0.80] * 4, rule)  # opposite and within both shown
    assert tiny.word == "contradicted" and tiny.unopposed == "equivalent"
    flat = paired_verdict([0.80, 0.80, 0.81], [0.80, 0.80, 0.81], rule)
    assert flat.word == "equivalent" and every_dataset([tiny, flat], ["a", "b"]).word == "contradicted"  # 2 x 0.0006
    assert every_dataset([tiny, flat, weak, weak], list("abcd")).word == "contradicted"
    assert every_dataset([dataclasses.replace(tiny, p_opposite=0.03), flat], ["a", "b"]).word == "equivalent"


def test_the_last_run_named_is_the_newest_whichever_claim_ran_it():
    from lossbench.ledger.report import _last_run

    runs = [{"started": "2026-12-05T13:05:00+00:00", "host": "new", "threads": 1, "lossbench": "0.1.0", "commit": "b-dirty"},
            {"started": "2026-12-04T09:00:00+00:00", "host": "old", "threads": 1, "lossbench": "0.1.0", "commit": "a"}]  # fmt: skip
    assert _last_run(runs) == (", the last on new with 1 torch thread(s), lossbench 0.1.0, commit b-dirty; the invocations "
                               "ran at commits a, b-dirty")  # (the study's trials keep none: each run's code is one of these)
    assert _last_run(runs[:1]) == ", the last on new with 1 torch thread(s), lossbench 0.1.0, commit b-dirty"
    # a commit corrected after the fact (recorded before changed checkouts were named -dirty) says why
    runs[1] = {**runs[1], "commit": "c", "correction": "recorded as a, which lacks the code it ran"}
    assert _last_run(runs).endswith("ran at commits c, b-dirty; c: recorded as a, which lacks the code it ran")


def test_the_resampled_note_names_the_units_whose_tuning_chose_otherwise():
    from types import SimpleNamespace

    from lossbench.ledger.report import _same_choices

    def outcome(configs):
        return SimpleNamespace(cells={d: {m: SimpleNamespace(config=c) for m, c in row.items()} for d, row in configs.items()})

    fixed = outcome({"car": {"ce": {"lr": 0.1}, "exact": {"lr": 0.2}}, "wine": {"ce": {"lr": 0.3}, "exact": {"lr": 0.4}}})
    assert _same_choices(fixed, fixed) == "where they made the fixed study's choices"
    other = outcome({"car": {"ce": {"lr": 0.1}, "exact": {"lr": 0.5}}, "wine": {"ce": {"lr": 0.3}, "exact": {"lr": 0.4}}})
    assert _same_choices(fixed, other).endswith("but for car / exact (another configuration chosen)")
    # a unit whose tuning has not finished (no choice yet) in either study is not called another choice
    unfinished = outcome({"car": {"ce": {"lr": 0.1}, "exact": None}, "wine": {"ce": {"lr": 0.3}}})
    for a, b in ((fixed, unfinished), (unfinished, fixed)):
        assert _same_choices(a, b) == ("where they made the fixed study's choices; not tuned yet in one of the two "
                                       "studies: car / exact, wine / exact")  # fmt: skip


def test_runs_under_an_amended_rule_are_history_only_once_a_later_run_used_the_rule_as_it_is(tmp_path):
    """An analysis claim's earlier rule texts (amended_from): its runs under one of them are accepted
    where a later run was made under the current rule (whose stored analysis the ledger shows)."""
    from lossbench.ledger.report import decision_provenance
    from lossbench.ledger.runs import decision_changes

    storage = open_storage(default_storage_url(tmp_path))
    old = get_claim("exact-toy-1d")
    new = dataclasses.replace(old, rule_text="The amended rule.", amended_from=(old.rule_text,))
    record_invocation(storage, old, "quick", "fixed", time.time(), None)
    assert [c.split(":")[0] for c in decision_changes(storage, new, "quick")] == ["rule_text"]  # not judged again yet
    record_invocation(storage, new, "quick", "fixed", time.time(), None)
    assert decision_changes(storage, new, "quick") == []
    assert decision_provenance(storage, new).startswith("Decision rule, amended after 1 of its 2 `claims run` invocations")
    record_invocation(storage, old, "quick", "fixed", time.time(), None)  # the earlier rule again, last: refused
    assert [c.split(":")[0] for c in decision_changes(storage, new, "quick")] == ["rule_text"]
    reworded = dataclasses.replace(new, rule_text="Yet another rule.")  # an unlisted change: refused as before
    assert decision_changes(storage, reworded, "quick")
    with pytest.raises(ValueError, match="amended_from lists earlier rule texts of an analysis claim"):
        dataclasses.replace(get_claim("exact-table1"), amended_from=("x",))
    for listed in [(new.rule_text,), (old.rule_text, old.rule_text)]:  # the current one, or one twice
        with pytest.raises(ValueError, match="each once, not the current one"):
            dataclasses.replace(new, amended_from=listed)


def test_a_bench_claims_decision_is_stored_before_its_runs_and_an_interrupted_one_keeps_it(tiny_claim, tmp_path, monkeypatch):
    """A `claims run` that is interrupted (or whose runs a worker finishes) has stored the decision it
    ran under: the report's check of a changed record cannot be passed by resuming under another."""
    from lossbench.bench.runner import Runner
    from lossbench.ledger.runs import invocations

    storage = open_storage(default_storage_url(tmp_path), study_spec(tiny_claim, "quick").heartbeat_interval)

    def interrupted(self, progress=None):
        assert [r["decision"] for r in invocations(storage, tiny_claim, "quick")] == [tiny_claim.decision()]
        raise KeyboardInterrupt

    monkeypatch.setattr(Runner, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_claim(tiny_claim, "quick", storage, torch.device("cpu"))
    (stored,) = invocations(storage, tiny_claim, "quick")
    assert stored["decision"] == tiny_claim.decision() and stored["wall_seconds"] >= 0 and stored["id"]


def test_an_amended_rule_is_said_so_whatever_runs_are_stored(tmp_path):
    # the runs made under the earlier rules may be gone (another storage, a new database): the record still says it
    from lossbench.ledger.report import decision_provenance

    storage = open_storage(default_storage_url(tmp_path))
    old = get_claim("exact-toy-1d")
    new = dataclasses.replace(old, rule_text="The amended rule.", amended_from=(old.rule_text, "An older rule."))
    record_invocation(storage, new, "quick", "fixed", time.time(), None)
    assert decision_provenance(storage, new).startswith("Decision rule, amended 2 times (the deviations say what changed")
    assert decision_provenance(storage, old) == "Decision rule, fixed before any run (stored with every run, and unchanged)"


def test_an_analysis_claims_budget_and_variation_are_refused_before_any_work(tmp_path, capsys):
    # an analysis's result is stored by budget: one under an unknown budget would never be read
    assert main(["claims", "run", "exact-toy-1d", "--budget", "foo", "--out", str(tmp_path)]) == 2
    assert main(["claims", "run", "exact-toy-1d", "--variation", "bogus", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "lossbench.db").exists()
    err = capsys.readouterr().err
    assert "--budget must be one of" in err and "runs the variations ('fixed',), not 'bogus'" in err


def test_an_analysis_of_a_bench_study_is_refused_when_that_studys_protocol_changed(tmp_path, monkeypatch):
    from lossbench.bench.storage import register_spec
    from lossbench.ledger.analyses import analysis_study
    from lossbench.ledger.report import collect_entries
    from lossbench.ledger.runs import AnalysisResult, store_analysis

    claim = next(c for c in all_claims() if c.kind == "analysis" and c.protocol is not None)
    storage = open_storage(default_storage_url(tmp_path))
    spec = analysis_study(claim.id, "quick")
    register_spec(storage, dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=spec.train.epochs + 1)))
    record_invocation(storage, claim, "quick", "fixed", time.time(), None)
    store_analysis(storage, claim, "quick", AnalysisResult("inconclusive", "stored"))
    with pytest.raises(SpecError, match=rf"claim {claim.id!r} \(quick, fixed\) was run under another record.*train.epochs"):
        collect_entries(storage)


def test_an_interrupted_ledger_report_leaves_no_plot_that_the_next_one_would_refuse(tmp_path, monkeypatch):
    # the critical-difference plots are written after REPRODUCTIONS.md, which marks them as the ledger's: a
    # report interrupted before it left plots beside no ledger, and every later report refused the folder
    from lossbench._document import Image, Para
    from lossbench.ledger import report as ledger_report

    out = tmp_path / "ledger"
    plot = out.resolve() / "reproductions" / "cd-x-quick-fixed.png"
    monkeypatch.setattr(ledger_report, "collect_entries", lambda storage, progress=None: [])
    monkeypatch.setattr(ledger_report, "ledger_blocks", lambda *a: [Para("text"), Image("cd", plot, b"\x89PNG bytes")])

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(ledger_report, "to_markdown", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_ledger(None, out, "a test storage")
    assert not plot.exists()
    ledger_report.check_ledger_folder(out)  # (the next report may write)
    monkeypatch.undo()
    monkeypatch.setattr(ledger_report, "collect_entries", lambda storage, progress=None: [])
    monkeypatch.setattr(ledger_report, "ledger_blocks", lambda *a: [Para("text"), Image("cd", plot, b"\x89PNG bytes")])
    md, page = write_ledger(None, out, "a test storage")
    assert plot.read_bytes() == b"\x89PNG bytes" and "cd-x-quick-fixed.png" in md.read_text()
    assert "data:image/png;base64," in page.read_text()


def test_claims_run_ends_with_the_verdict_of_each_study_it_ran(tiny_claim, tmp_path, capsys):
    # it said only "done"; the verdict took a second command (claims report)
    assert main(["claims", "run", tiny_claim.id, "--out", str(tmp_path / "bench"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith(f"claim {tiny_claim.id} (quick, fixed split): "))
    word = line.split(": ", 1)[1].split(",")[0]
    assert word in VERDICTS and " points" in line and "hinge - ce " in line
    assert main(["claims", "run", "exact-toy-1d", "--out", str(tmp_path / "analysis")]) == 0
    assert "claim exact-toy-1d (quick): holds" in capsys.readouterr().out


def test_a_studys_first_run_is_the_one_that_started_first_not_the_one_made_first(tmp_path):
    # (a queued evaluation seed is made before a tuning trial that starts before it)
    from lossbench.bench.storage import study_name

    storage = open_storage(default_storage_url(tmp_path))
    at = datetime.datetime(2026, 12, 7, 4, 0, 0)  # naive local time, as Optuna gives it back
    for stage, seconds in (("final", 3.0), ("tune", 1.5)):
        study = optuna.create_study(study_name=study_name("s", stage, "wine", "ce"), storage=storage)
        start = at + datetime.timedelta(seconds=seconds)
        study.add_trial(optuna.trial.FrozenTrial(
            number=0, state=optuna.trial.TrialState.COMPLETE, value=1.0, values=None, datetime_start=start,
            datetime_complete=start, params={}, distributions={}, user_attrs={}, system_attrs={},
            intermediate_values={}, trial_id=0))  # fmt: skip
    assert storage.first_run_started("s") == (at + datetime.timedelta(seconds=1.5)).timestamp()


def test_a_per_dataset_claims_summary_effect_reads_as_a_span_not_an_interval():
    # "contradicted | +2.59 [-2.44, +8.98]" read as an interval of the mean that contradicted a claim it covers
    from lossbench.ledger.report import effect
    from lossbench.ledger.verdict import Effect, Verdict

    span = Effect(0.0259, -0.0244, 0.0898, 0.9, 0.01, 3, "per dataset", spans_datasets=True)
    assert effect(Verdict("contradicted", Rule("greater"), span, "")) == "+2.59 (span -2.44 .. +8.98)"
    mean = dataclasses.replace(span, spans_datasets=False)
    assert effect(Verdict("inconclusive", Rule("greater"), mean, "")) == "+2.59 [-2.44, +8.98]"


def test_an_effect_the_same_on_every_seed_reads_so_not_as_an_interval_of_zero_width():
    # "-5.56 [-5.56, -5.56]" from three seeds read as a precise effect: zero variance measures no precision
    from lossbench.ledger.report import effect
    from lossbench.ledger.verdict import paired_verdict

    constant = paired_verdict([0.9444] * 3, [1.0] * 3, Rule("greater", 0.05, 0.005))
    assert constant.effect.constant and effect(constant) == "-5.56 (the same on every seed)"
    assert effect(paired_verdict([0.94, 0.95, 0.93], [1.0] * 3, Rule("greater", 0.05, 0.005))).endswith("]")


def test_judging_without_a_terminal_is_one_line_per_claim_on_stderr(tmp_path, capsys):
    """A CI log shows the ledger's minutes of judging as they go (stderr, a line per claim); stdout keeps the table."""
    from lossbench.bench.storage import default_storage_url, open_storage
    from lossbench.ledger.records import all_claims

    open_storage(default_storage_url(tmp_path), None)  # an empty storage: each claim judged "not run"
    assert main(["claims", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    claims = all_claims()
    lines = err.splitlines()
    assert lines[0] == f"judging claim 1/{len(claims)}: {claims[0].id}" and len(lines) == len(claims)
    assert "\r" not in err and "judging" not in out and claims[-1].id in out


def test_a_run_that_fails_keeps_its_error_when_its_wall_time_cannot_be_recorded_either(tiny_claim, tmp_path, monkeypatch):
    """A storage that fails the run fails the wall time's write too: the run's error is raised, the other noted."""
    from lossbench.ledger import runs as runs_module

    storage = open_storage(default_storage_url(tmp_path), study_spec(tiny_claim, "quick").heartbeat_interval)

    def run(self, *args, **kwargs):
        raise RuntimeError("the run's own failure")

    def record(*args, **kwargs):
        raise OSError("disk full")

    from lossbench.bench.runner import Runner

    monkeypatch.setattr(Runner, "run", run)
    monkeypatch.setattr(runs_module, "_record_wall_time", record)
    with pytest.raises(RuntimeError, match="the run's own failure") as raised:
        run_claim(tiny_claim, "quick", storage, torch.device("cpu"))
    assert raised.value.__notes__ == ["its wall time was not recorded either (OSError: disk full)"]


def test_a_dataset_where_both_methods_diverged_on_every_seed_is_inconclusive(tmp_path, monkeypatch):
    """Each diverged run scores 0, so two failures give a constant difference 0: read as equivalence within
    the margin before (equivalent), though nothing was learned about the claim."""
    overrides = {**TINY.budgets["quick"].overrides, "search.lr": {"low": 1e36, "high": 1e38}, "train.epochs": 4}  # (inf logits)
    claim = dataclasses.replace(TINY, id="tiny-diverged", budgets={"quick": Budget(overrides, "tiny")})
    monkeypatch.setitem(records.CLAIMS, claim.id, claim)
    spec = study_spec(claim, "quick")
    storage = open_storage(default_storage_url(tmp_path), spec.heartbeat_interval)
    run_claim(claim, "quick", storage, torch.device("cpu"))
    outcome = judge(claim, spec, storage, "quick", "fixed")
    (d,) = outcome.datasets
    assert d.treatment.diverged == d.baseline.diverged == 3 and d.treatment.scores == d.baseline.scores == [0.0] * 3
    assert outcome.verdict.word == "inconclusive" and "both methods diverged on every one of the 3 seeds" in outcome.verdict.reason


def test_a_claim_over_the_mean_of_the_datasets_leaves_out_those_where_both_methods_diverged():
    """Both diverged on every seed: each scored 0, a difference of 0 that would count as evidence of equivalence
    in a claim over the mean of the datasets (two such datasets beside three small differences made an "equal"
    claim hold)."""
    from lossbench.ledger.judge import Cell, DatasetOutcome, _over_the_mean
    from lossbench.ledger.verdict import both_failed, paired_verdict

    rule = Rule("equal", alpha=0.05, delta=0.005)

    def dataset(name, treatment, baseline, failed=False):
        cells = [Cell(name, m, scores, 3 if failed else 0, None, {}, None, None, [], "t", "f")
                 for m, scores in (("t", treatment), ("b", baseline))]  # fmt: skip
        verdict = both_failed(rule, 3) if failed else paired_verdict(treatment, baseline, rule)
        return DatasetOutcome(name, *cells, verdict, verdict.word, failed)

    judged = [dataset("d3", [0.9] * 3, [0.9] * 3), dataset("d4", [0.901] * 3, [0.9] * 3),
              dataset("d5", [0.898] * 3, [0.9] * 3)]  # fmt: skip
    failed = [dataset("d1", [0.0] * 3, [0.0] * 3, True), dataset("d2", [0.0] * 3, [0.0] * 3, True)]
    alone = _over_the_mean(judged, rule, 3)
    verdict = _over_the_mean(failed + judged, rule, 3)
    assert alone.word == verdict.word == "inconclusive"  # (3 datasets: no Wilcoxon p below 1/8)
    assert verdict.effect == alone.effect
    assert verdict.reason == alone.reason + (" Left out: d1, d2, where both methods diverged on every seed (two "
                                             "failures show nothing about the claim).")  # fmt: skip
    assert _over_the_mean(failed, rule, 3).word == "inconclusive"
