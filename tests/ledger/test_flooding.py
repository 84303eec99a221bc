"""The flooding claims: their records and protocols, the O(eps^3) analysis, the tuning-cost rule."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from lossbench.bench.storage import default_storage_url, open_storage
from lossbench.ledger import analyses, records
from lossbench.ledger.analyses import (
    ascent_descent_is_a_gradient_penalty,
    trials_to_reach,
    tuning_cost_verdict,
)
from lossbench.ledger.protocol import study_spec
from lossbench.ledger.records import Budget, Claim, get_claim
from lossbench.ledger.runs import run_claim, stored_analysis
from lossbench.ledger.sources import flooding as source

SETTINGS = {  # claim -> (early stopping, weight decay)
    "flooding-improves": (False, False), "flooding-improves-es": (True, False),
    "flooding-improves-wd": (False, True), "flooding-improves-es-wd": (True, True),
}  # fmt: skip


@pytest.mark.parametrize("claim_id", list(SETTINGS))
def test_each_flooding_claim_runs_one_of_the_papers_four_settings(claim_id):
    claim = get_claim(claim_id)
    early, decay = SETTINGS[claim_id]
    assert (claim.treatment, claim.baseline, claim.rule.direction) == ("flooding", "ce", "greater")
    assert claim.published == {} and claim.deviations  # directions only, and the differences said
    for budget in ("quick", "paper"):
        spec = study_spec(claim, budget)
        assert spec.train.early_stopping is early
        assert ("weight_decay" in spec.search) is decay and (spec.train.weight_decay_on != "none") is decay
        flood = spec.method("flooding")
        assert [t.name for t in flood.transforms] == ["flooding"]
        grid = flood.search["flooding.b"].options
        assert len(grid) == 20 and min(grid) == 0.01 and max(grid) == 0.20  # the grid of 20 levels
        assert spec.method("ce").transforms == ()


def test_the_four_settings_are_four_studies_and_su_claims_share_one():
    names = {study_spec(get_claim(c), "quick").name for c in SETTINGS}
    assert len(names) == 4
    su = {study_spec(get_claim(c), "quick").name for c in ("su-flooding-penalty", "su-ascent-descent")}
    assert su == {"flooding-su.quick"}
    spec = study_spec(get_claim("su-flooding-penalty"), "quick")
    assert {m.name for m in spec.methods} == {"ce", "flooding", "gradient_penalty", "ascent_descent"}
    assert (spec.train.optimizer, spec.train.momentum) == ("sgd", 0.0)  # the setting of Su's analysis


def test_descent_then_ascent_is_a_penalty_step_to_third_order():
    result = ascent_descent_is_a_gradient_penalty("quick")
    assert result.word == "holds", result.reason
    assert 2.7 <= result.measured["order_with_penalty"] <= 3.3
    assert 1.7 <= result.measured["order_without_penalty"] <= 2.3  # the penalty is what removes eps^2


def test_the_fitted_order_reads_a_power_law():
    eps = [0.1, 0.05, 0.025]
    assert analyses._slope(eps, [3 * e**2 for e in eps]) == pytest.approx(2.0)
    assert analyses._slope(eps, [e**3 for e in eps]) == pytest.approx(3.0)


def test_trials_to_reach():
    assert trials_to_reach([0.80, 0.909, 0.909, 0.91]) == 2  # within half a point of the best
    assert trials_to_reach([0.80, 0.90, 0.908, 0.91]) == 3
    assert trials_to_reach([0.95, 0.95, 0.95]) == 1
    # two samples of 400 below the best, as float32 scores: within 0.005
    best, near = (float(np.float32(c) / np.float32(400)) for c in (363, 361))
    assert trials_to_reach([0.80, near, best]) == 2
    with pytest.raises(ValueError, match="finite last value"):
        trials_to_reach([])


def test_the_tuning_cost_rule_gives_each_word():
    costly = {"a": {"flooding": 5, "gradient_penalty": 1, "ascent_descent": 2}}
    cheap = {"a": {"flooding": 1, "gradient_penalty": 1, "ascent_descent": 3}}
    assert tuning_cost_verdict({**costly, "b": costly["a"]})[0] == "holds"
    assert tuning_cost_verdict({**cheap, "b": cheap["a"]})[0] == "contradicted"
    word, reason = tuning_cost_verdict({"a": costly["a"], "b": cheap["a"]})
    assert word == "inconclusive" and reason == "flooding needs the most trials on a and no more than the cheapest on b"
    middle = {"a": {"flooding": 2, "gradient_penalty": 1, "ascent_descent": 3}}
    assert tuning_cost_verdict(middle)[0] == "inconclusive"
    # a method none of whose trials scored (every one nan) decides nothing on its dataset
    unscored = {"a": {**costly["a"], "ascent_descent": None}}
    word, reason = tuning_cost_verdict({**unscored, "b": costly["a"]})
    assert word == "inconclusive" and reason.endswith("; no finite validation score of some method on a")


def test_the_tuning_cost_analysis_runs_its_study_and_reads_it(monkeypatch, tmp_path):
    tiny = Claim(
        id="tiny-flooding-su", title="t", source="a test", url="-", statement="s", protocol="flooding",
        treatment="gradient_penalty", baseline="ascent_descent",
        budgets={"quick": Budget({**source._SU, "name": "tiny-flooding-su", "datasets": ["wine"], "trials": 3,
                                  "seeds": 2, "train.epochs": 2, "train.model_params": {"width": 8, "depth": 1},
                                  "heartbeat_interval": 1}, "tiny")},
        rule=source.Rule("greater"),
    )  # fmt: skip
    monkeypatch.setitem(records.CLAIMS, tiny.id, tiny)
    monkeypatch.setattr(analyses, "TUNING_STUDY_CLAIM", tiny.id)
    storage = open_storage(default_storage_url(tmp_path))  # as `claims run` opens it for an analysis: no heartbeats
    claim = get_claim("su-flooding-tuning-cost")
    run_claim(claim, "quick", storage, torch.device("cpu"))  # runs the study, then reads its trials
    result = stored_analysis(storage, claim, "quick")
    assert set(result.measured) == {f"wine/{m}" for m in ("ce", "flooding", "gradient_penalty", "ascent_descent")}
    assert "tiny-flooding-su.quick" in result.details
    # The measured trials are those of the stored tuning trials: recomputed here, in draw order, as the
    # first n whose best-so-far validation score is within half a point of the best of all 3.
    from lossbench.bench.results import collect

    (wine,) = collect(study_spec(tiny, "quick"), storage)
    expected = {}
    for r in wine.methods:
        trials = sorted(r.tune_trials, key=lambda t: t.number)
        assert [t.number for t in trials] == [0, 1, 2] and not any("failed_trial" in t.system_attrs for t in trials)
        best_so_far = list(itertools.accumulate((t.value for t in trials), max))
        expected[r.method.name] = next(n for n, v in enumerate(best_so_far, 1) if v >= best_so_far[-1] - 0.005 - 1e-6)
    assert max(expected.values()) > 1  # some method's best came after its first trial: the count is read
    assert {f"wine/{m}": float(n) for m, n in expected.items()} == result.measured
    others = [expected["gradient_penalty"], expected["ascent_descent"]]
    word = ("holds" if expected["flooding"] > max(others) else
            "contradicted" if expected["flooding"] <= min(others) else "inconclusive")  # fmt: skip
    assert result.word == word, result.reason
