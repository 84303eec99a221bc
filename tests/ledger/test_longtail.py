"""The long-tail claim records: they share one protocol, judge balanced accuracy, and their
quick budget builds a runnable spec."""

from __future__ import annotations

import pytest

from lossbench.bench.spec import load_preset
from lossbench.ledger.protocol import study_spec
from lossbench.ledger.records import all_claims, get_claim

IDS = ["menon-la-loss", "menon-posthoc", "ren-balanced-softmax", "cao-ldam-drw", "botlt-focal", "su-adjust-not-reweight",
       "botlt-focal-sigmoid", "cao-ldam-drw-cosine", "botlt-balanced-softmax"]


@pytest.mark.parametrize("claim_id", IDS)
def test_each_claim_compares_two_methods_of_the_longtail_preset(claim_id):
    claim = get_claim(claim_id)
    preset = load_preset("longtail")
    names = [m.name for m in preset.methods]
    assert claim.protocol == "longtail" and claim.metric == "balanced_accuracy"
    assert claim.treatment in names and claim.baseline in names and claim.treatment != claim.baseline
    assert claim.rule is not None and claim.deviations


def test_the_claims_share_their_runs():
    claims = [c for c in all_claims() if c.protocol == "longtail"]
    assert sorted(c.id for c in claims) == sorted(IDS)
    names = {study_spec(c, budget).name for c in claims for budget in ("quick",)}
    assert names == {"longtail.quick"}
    assert study_spec(claims[0], "paper").name == "longtail.paper"


def test_the_quick_budget_is_a_reduction_of_the_preset():
    quick, paper = study_spec(get_claim("menon-la-loss"), "quick"), study_spec(get_claim("menon-la-loss"), "paper")
    assert quick.trials < paper.trials and quick.seeds < paper.seeds and quick.train.epochs < paper.train.epochs
    assert [d.label for d in quick.datasets] == [d.label for d in paper.datasets]
    assert [d.params for d in quick.datasets] == [d.params for d in paper.datasets]
    posthoc = {m.name: m.decision for m in quick.methods}
    assert posthoc["ce_posthoc"] == "logit_adjusted" and posthoc["ce"] == "argmax"
    assert quick.method("ce_posthoc").runs_of == "ce"  # the same models, read through the adjusted rule (the source)
    # BagofTricks-LT's focal: each class against the rest, gamma 2
    assert (quick.method("focal_sigmoid").loss, quick.method("focal_sigmoid").params) == ("one_vs_all_focal", {"gamma": 2.0})
    assert quick.selection_metric == "balanced_accuracy"
