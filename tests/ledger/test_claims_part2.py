"""Claim records of issue 13 without a module of their own in the tests: the multi-label claims (one
quick budget that reduces the preset."""

from __future__ import annotations

import pytest

from lossbench.ledger.protocol import study_spec
from lossbench.ledger.records import all_claims, get_claim

IDS = ["su-zlpr-thresholds", "su-zlpr-weighted", "su-zlpr-vs-bce", "asl-beats-focal", "asl-focal-beats-bce", "asl-beats-focal-source",
       "asl-focal-beats-bce-source"]


@pytest.mark.parametrize("claim_id", IDS)
def test_each_claim_compares_two_methods_of_its_multilabel_study(claim_id):
    claim = get_claim(claim_id)
    names = [m.name for m in study_spec(claim, "quick").methods]
    assert claim.protocol == "multilabel" and claim.metric in ("macro_f1", "map")
    assert claim.treatment in names and claim.baseline in names and claim.treatment != claim.baseline


def test_the_source_claims_compare_asl_and_focal_at_the_sources_settings():
    # ASL's train.py: AsymmetricLoss(gamma_neg=4, gamma_pos=0, clip=0.05); its focal: gamma 2 both sides, no shift
    methods = {m.name: m for m in study_spec(get_claim("asl-beats-focal"), "quick").methods}
    assert (methods["asl_source"].loss, methods["asl_source"].params) == ("asl", {"gamma_neg": 4.0, "gamma_pos": 0.0, "clip": 0.05})
    assert (methods["focal_source"].loss, methods["focal_source"].params) == ("sigmoid_focal", {"gamma": 2.0, "alpha": None})
    source, tuned = get_claim("asl-beats-focal-source"), get_claim("asl-beats-focal")
    assert (source.treatment, source.baseline, tuned.treatment, tuned.baseline) == ("asl_source", "focal_source", "asl", "focal")
    assert (get_claim("asl-focal-beats-bce-source").treatment, get_claim("asl-focal-beats-bce-source").baseline) == ("focal_source", "bce")


def test_the_claims_share_one_study_per_budget_and_metric_and_the_quick_one_is_smaller():
    claims = [c for c in all_claims() if c.protocol == "multilabel"]
    assert sorted(c.id for c in claims) == sorted(IDS)
    studies = {(c.metric, study_spec(c, "quick").name, study_spec(c, "quick").selection_metric) for c in claims}
    # the mAP claims' trials are chosen by mAP: the macro-F1 study's choice read ASL's shifted probabilities against it
    assert studies == {("macro_f1", "multilabel.quick", "macro_f1"), ("map", "multilabel-map.quick", "map"),
                       ("macro_f1", "multilabel-weighted.quick", "macro_f1")}  # fmt: skip
    # Su's own baseline: BCE with its positive weight searched, read through tuned thresholds
    weighted = {m.name: m for m in study_spec(get_claim("su-zlpr-weighted"), "quick").methods}
    assert weighted["bce_weighted"].decision == "thresholds" and "loss.pos_weight" in weighted["bce_weighted"].search
    quick, paper = study_spec(claims[0], "quick"), study_spec(claims[0], "paper")
    assert quick.trials < paper.trials and quick.seeds < paper.seeds and quick.train.epochs < paper.train.epochs
    decisions = {m.name: m.decision for m in quick.methods}
    assert decisions["bce_thresholds"] == "thresholds" and decisions["zlpr"] == "argmax"


def test_the_weissi_claim_gives_each_method_its_own_regulariser():
    claim = get_claim("su-weissi")
    quick = study_spec(claim, "quick")
    assert quick.train.weight_decay_on == "none" and "weight_decay" not in quick.search
    transforms = {m.name: [t.name for t in m.transforms] for m in quick.methods}
    assert transforms == {"l2": ["l2_penalty"], "weissi": ["weissi"], "plain": []}
    assert claim.treatment == "weissi" and claim.baseline == "l2"
