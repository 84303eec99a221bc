"""Issue 13 claims 7, 8 and 10: soft F1 fine-tuning and the F1-weighted BCE, clipping's speed, MGS fine-tuning."""

from __future__ import annotations

import math

import pytest
import torch

from lossbench.bench.spec import load_preset, parse_spec
from lossbench.bench.storage import open_storage
from lossbench.ledger import analyses
from lossbench.ledger.analyses import analysis_study, clipping_cases, clipping_verdict, epochs_to_target
from lossbench.ledger.protocol import study_spec
from lossbench.ledger.records import get_claim

FINE_TUNING = {  # claim -> (treatment's second-stage loss, transforms)
    "su-soft-f1-finetune": ("macro_soft_f1", ()),
    "su-soft-f1-finetune-multilabel": ("multilabel_soft_f1", ()),
    "mgs-finetune-accuracy": ("cross_entropy", ("mgs",)),
}


@pytest.mark.parametrize("claim_id", sorted(FINE_TUNING))
def test_fine_tuning_claims_differ_from_their_baseline_in_the_second_stage_only(claim_id):
    claim = get_claim(claim_id)
    spec = study_spec(claim, "quick")
    treatment, baseline = spec.method(claim.treatment), spec.method(claim.baseline)
    loss, transforms = FINE_TUNING[claim_id]
    assert treatment.then.loss == loss and tuple(t.name for t in treatment.then.transforms) == transforms
    assert baseline.then.loss == baseline.loss == treatment.loss and not baseline.then.transforms
    # The same total epochs under the same restart: only the second stage's loss or transforms differ.
    assert (treatment.then.epochs, treatment.then.lr_scale) == (baseline.then.epochs, baseline.then.lr_scale)
    assert treatment.datasets == baseline.datasets


def test_the_f1_weighted_bce_claim_compares_single_stage_methods_on_multilabel_sets():
    claim = get_claim("su-f1-weighted-bce")
    spec = study_spec(claim, "quick")
    treatment, baseline = spec.method(claim.treatment), spec.method(claim.baseline)
    assert (treatment.loss, baseline.loss) == ("f1_weighted_bce", "binary_cross_entropy")
    assert treatment.then is None and baseline.then is None
    assert set(treatment.datasets) == {"scene", "synthetic-ml"} and claim.metric == "macro_f1"


@pytest.mark.parametrize("claim_id", [*FINE_TUNING, "su-f1-weighted-bce", "zhang-clipping-accelerates"])
def test_the_quick_budget_reduces_the_paper_protocol(claim_id):
    claim = get_claim(claim_id)
    build = analysis_study if claim.kind == "analysis" else (lambda i, b: study_spec(get_claim(i), b))
    quick, paper = build(claim_id, "quick"), build(claim_id, "paper")
    assert quick.name == f"{claim.protocol}.quick" and paper.name == f"{claim.protocol}.paper"
    # (the clipping analysis keeps its 7 seeds: its sign test needs them)
    assert quick.trials < paper.trials and quick.seeds <= paper.seeds and quick.train.epochs < paper.train.epochs
    assert claim.deviations and (claim.rule is not None or claim.kind == "analysis")


def test_the_clipping_study_trains_the_optimiser_alone():
    spec = load_preset("clipping")
    assert spec.train.lr_final is None and spec.train.weight_decay_on == "none"
    assert {m.name: [t.name for t in m.transforms] for m in spec.methods} == {
        "none": [], "clip": ["clip_norm"], "clip_smooth": ["clip_norm_smooth"]}  # fmt: skip


def test_an_analysis_study_refuses_a_bad_budget_in_one_line():
    with pytest.raises(ValueError, match="--budget must be one of"):
        analysis_study("zhang-clipping-accelerates", "fast")


def test_epochs_to_target_is_the_first_epoch_at_or_below_it():
    assert epochs_to_target([2.0, 1.0, 0.5, 0.4], 0.5) == 3
    assert epochs_to_target([0.1], 0.5) == 1
    assert epochs_to_target([2.0, math.nan, 0.6], 0.5) is None  # never reached (nan: a diverged epoch)
    with pytest.raises(ValueError, match="target must be a training loss > 0"):
        epochs_to_target([1.0], 0.0)


def _epochs(clip: list[float], smooth: list[float], none: list[float]) -> dict:
    return {"d1": {"clip": clip, "clip_smooth": smooth, "none": none}, "d2": {"clip": clip, "clip_smooth": smooth, "none": none}}


def test_the_clipping_rule_holds_only_when_both_clipped_methods_are_faster_everywhere():
    none = [6, 8, 7, 7, 6, 8, 7]
    assert clipping_verdict(_epochs([2, 3, 2, 3, 2, 3, 2], [3, 3, 2, 4, 3, 3, 2], none))[0].word == "holds"
    word, parts = clipping_verdict(_epochs([2, 3, 2, 3, 2, 3, 2], [6, 9, 7, 8, 6, 9, 7], none))
    assert word != "holds" and parts["d1/clip"].word == "holds" and parts["d1/clip_smooth"].word != "holds"
    slower = [10, 13, 11, 12, 10, 13, 11]  # slower on every seed: p = 1/128 on each of the four comparisons
    overall, parts = clipping_verdict(_epochs(slower, [3, 3, 2, 4, 3, 3, 2], none))
    assert overall.word == "contradicted" and parts["d1/clip"].p_opposite == pytest.approx(1 / 128)
    # slower on 6 of 7 seeds (p = 1/16 alone): over the four comparisons Holm does not keep it
    overall, parts = clipping_verdict(_epochs([9, 10, 11, 9, 10, 11, 2], [3, 3, 2, 4, 3, 3, 2], none))
    assert parts["d1/clip"].word != "holds" and overall.word == "inconclusive"
    # the cases are listed with the word each counts with
    assert "d1/clip_smooth -4.14 (holds)" in clipping_cases(parts)
    same = [6, 8, 7, 7, 6, 8, 7]
    assert clipping_verdict(_epochs(same, same, same))[0].word == "equivalent"  # within one epoch on every seed
    # no run reached the target (each counts 13 = 12 epochs + 1): that shows no equal speed
    overall, parts = clipping_verdict(_epochs(*[[13] * 7] * 3), never=13.0)
    assert overall.word == "inconclusive" and parts["d1/clip"].word == "inconclusive"
    assert "no run of either method reached the target" in parts["d1/clip"].reason


@pytest.mark.parametrize("never", [13.0, 14.0])
def test_a_run_that_never_reached_the_target_is_a_bound_not_a_value(never):
    """A run that never reached the target counts as a bound, whatever its stand-in: the verdict cannot depend
    on the stand-in, and a baseline that never reached it is at least as strong a case as one that just did."""
    reached = {"digits": {"clip": [5.0] * 7, "clip_smooth": [7.0, 8, 5, 7, 8, 5, 6], "none": [12.0] * 7}}
    censored = {"digits": {**reached["digits"], "none": [never] * 7}}
    for epochs in (reached, censored):
        overall, parts = clipping_verdict(epochs, never=never)
        assert overall.word == "holds" and all(v.effect.p_value == pytest.approx(1 / 128) for v in parts.values())
        assert "sign test over 7 seeds" in parts["digits/clip"].reason and overall.effect.method.startswith("per dataset: sign test")
    mixed = {"mnist": {"clip": [never] * 7, "clip_smooth": [11.0, 11, never, 11, 11, never, 11], "none": [9.0, 9, 11, 9, 9, 11, 9]}}
    overall, parts = clipping_verdict(mixed, never=never)
    assert parts["mnist/clip_smooth"].word != "holds" and "2 with a run censored" in parts["mnist/clip_smooth"].reason


def test_the_clipping_analysis_reads_the_stored_training_curves(tmp_path, monkeypatch):
    tiny = parse_spec({
        "name": "clipping-tiny", "trials": 2, "seeds": 2, "sampler": "random", "heartbeat_interval": 1,
        "train": {"model": "linear", "epochs": 4, "batch_size": 64, "lr_final": 0.0, "weight_decay_on": "none"},
        "search": {"lr": {"low": 0.05, "high": 0.5, "log": True}}, "datasets": ["wine"],
        "methods": [{"name": "none", "loss": "cross_entropy"},
                    {"name": "clip", "loss": "cross_entropy", "transforms": ["clip_norm"]},
                    {"name": "clip_smooth", "loss": "cross_entropy", "transforms": ["clip_norm_smooth"]}],
    })  # fmt: skip
    monkeypatch.setattr(analyses, "analysis_study", lambda claim_id, budget: tiny)
    monkeypatch.setattr(analyses, "TARGET_FRACTION", 0.5)  # reachable in 4 epochs of a linear model on wine
    storage = open_storage(f"sqlite:///{tmp_path / 'c.db'}", tiny.heartbeat_interval)
    result = analyses.clipping_accelerates("quick", storage=storage, device=torch.device("cpu"))
    # two seeds cannot show a direction (a sign test's p is at least 1/4) and clip_smooth is more than one
    # epoch slower than none: not the same speed either
    assert result.word == "inconclusive", result.reason
    assert set(result.measured) == {"wine/none", "wine/clip", "wine/clip_smooth"}
    assert all(1 <= v <= tiny.train.epochs + 1 for v in result.measured.values())
    assert "clipping-tiny" in result.details and "wine/clip" in result.reason
    # The measured epochs are those of the stored curves: recomputed here from the final runs.
    from lossbench.bench.results import collect
    from lossbench.bench.storage import run_record

    target = 0.5 * math.log(3)
    none = collect(tiny, storage)[0].method("none")
    reached = [epochs_to_target(run_record(t)["curves"]["train_loss"], target) or 5 for t in none.runs.values()]
    assert result.measured["wine/none"] == pytest.approx(sum(reached) / len(reached))

