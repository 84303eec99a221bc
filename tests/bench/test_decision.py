"""Decision rules: a method's label metrics read its logits through its rule (arg-max, post-hoc logit
adjustment or per-label thresholds), while its training, its own loss and its probability metrics
(NLL, ECE, BCE) are those of the logits."""

from __future__ import annotations

import math

import pytest
import torch

from lossbench.bench.execution import DataCache, check_unit, train_and_score
from lossbench.bench.methods import resolve_method
from lossbench.bench.metrics import compute_metrics, decide, f1_thresholds
from lossbench.bench.spec import SpecError, parse_spec


def test_logit_adjustment_subtracts_the_log_prior():
    counts = torch.tensor([90, 10])
    logits = torch.tensor([[0.0, 0.0], [1.0, -1.0], [3.0, 0.0]])
    adjusted = decide(logits, "logit_adjusted", counts)
    assert torch.allclose(adjusted, logits - torch.tensor([math.log(0.9), math.log(0.1)]))
    assert adjusted.argmax(1).tolist() == [1, 1, 0]  # ties and near-ties go to the rare class
    assert decide(logits, "argmax", counts) is logits
    # one binary logit s = log(p1 / p0): adjusted by the log odds of the priors
    s = torch.tensor([0.0, 2.5])
    assert torch.allclose(decide(s, "logit_adjusted", counts), s - math.log(0.1 / 0.9))
    with pytest.raises(ValueError, match="unknown decision rule 'vote'"):
        decide(logits, "vote", counts)


def _spec(**method):
    return parse_spec(
        {
            "name": "decisions", "trials": 2, "seeds": 2, "sampler": "random",
            "train": {"model": "linear", "epochs": 2, "batch_size": 32, "lr_final": 1e-3},
            "datasets": [{"name": "digits", "params": {"long_tail_rho": 20.0}}],
            "methods": [{"name": "ce", "loss": "cross_entropy"}, {"name": "ce_la", "loss": "cross_entropy", **method}],
        }
    )  # fmt: skip


def test_a_method_is_scored_through_its_decision_rule():
    spec = _spec(decision="logit_adjusted")
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "final")
    params = {"lr": 0.1, "weight_decay": 1e-4}
    plain, adjusted = (train_and_score(split, resolve_method(m), params, spec, seed=3) for m in spec.methods)
    # the same training and the same loss on the held-out logits ...
    assert adjusted.curves["train_loss"] == plain.curves["train_loss"]
    assert adjusted.curves["heldout_loss"] == plain.curves["heldout_loss"]
    # ... scored by another rule: the rare classes gain recall; the model's probabilities are the same
    assert adjusted.metrics["balanced_accuracy"] != plain.metrics["balanced_accuracy"]
    assert adjusted.curves["heldout_accuracy"][-1] == pytest.approx(adjusted.metrics["accuracy"])
    assert (adjusted.metrics["nll"], adjusted.metrics["ece"]) == (plain.metrics["nll"], plain.metrics["ece"])


def test_the_rule_is_checked_before_any_run():
    with pytest.raises(SpecError, match="decision must be one of"):
        _spec(decision="vote")
    assert "\"decision\"" not in _spec().to_json()  # the default leaves stored fingerprints as they were
    assert '"decision": "logit_adjusted"' in _spec(decision="logit_adjusted").to_json()
    multilabel = parse_spec(
        {
            "name": "ml", "trials": 1, "seeds": 2, "train": {"model": "linear", "epochs": 1},
            "datasets": ["synthetic_multilabel"],
            "methods": [{"name": "bce", "loss": "binary_cross_entropy", "decision": "logit_adjusted"}],
        }
    )  # fmt: skip
    split = DataCache(multilabel, torch.device("cpu")).get(multilabel.datasets[0], "tune")
    with pytest.raises(SpecError, match="applies to multiclass tasks, not multilabel"):
        check_unit(split, resolve_method(multilabel.methods[0]), multilabel)


@pytest.mark.parametrize("width", [3, 1])
def test_a_decision_rule_feeds_the_label_metrics_and_the_probability_metrics_read_the_logits(width):
    counts = torch.tensor([50, 5, 5][:max(width, 2)])
    logits = torch.randn(40, width, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, max(width, 2), (40,), generator=torch.Generator().manual_seed(1))
    plain = compute_metrics(logits, target, "multiclass", max(width, 2))
    adjusted = compute_metrics(logits, target, "multiclass", max(width, 2), decided=decide(logits, "logit_adjusted", counts))
    assert adjusted.keys() == plain.keys() and adjusted["balanced_accuracy"] != plain["balanced_accuracy"]
    assert (adjusted["nll"], adjusted["ece"]) == (plain["nll"], plain["ece"])  # how labels are read changes no probability
    # multi-label: shifted thresholds change the F1s, not the BCE (nor mAP: a per-label shift keeps each ranking)
    g = torch.Generator().manual_seed(2)
    scores, y = torch.randn(40, 3, generator=g) * 3, (torch.rand(40, 3, generator=g) < 0.3).long()
    plain = compute_metrics(scores, y, "multilabel", 3)
    shifted = compute_metrics(scores, y, "multilabel", 3, decided=decide(scores, "thresholds", None, torch.tensor([-1.5, 0.5, 2.0])))
    assert shifted["micro_f1"] != plain["micro_f1"] and (shifted["bce"], shifted["map"]) == (plain["bce"], plain["map"])


def test_f1_thresholds_are_the_best_cut_per_label():
    from sklearn.metrics import f1_score

    g = torch.Generator().manual_seed(2)
    logits = torch.randn(60, 4, generator=g)
    target = (torch.rand(60, 4, generator=g) < torch.tensor([0.5, 0.2, 0.05, 0.0])).long()
    thresholds = f1_thresholds(logits, target)
    for label in range(4):
        s, y = logits[:, label], target[:, label].numpy()
        if y.sum() == 0:
            assert thresholds[label] > s.max()  # nothing is predicted positive
            continue
        cuts = torch.cat([s.sort().values, s.max()[None] + 1])
        best = max(f1_score(y, (s > c).numpy(), zero_division=0) for c in cuts.tolist())
        assert f1_score(y, (s > thresholds[label]).numpy()) == pytest.approx(best)


def _multilabel(**train):
    return parse_spec(
        {
            "name": "ml", "trials": 1, "seeds": 2, "train": {"model": "linear", "epochs": 2, **train},
            "datasets": ["synthetic_multilabel"],
            "methods": [{"name": "bce", "loss": "binary_cross_entropy"},
                        {"name": "bce_thr", "loss": "binary_cross_entropy", "decision": "thresholds"}],
        }
    )  # fmt: skip


def test_thresholds_shift_each_label_and_leave_its_ranking():
    spec = _multilabel()
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "final")
    params = {"lr": 0.1, "weight_decay": 1e-4}
    plain, tuned = (train_and_score(split, resolve_method(m), params, spec, seed=1) for m in spec.methods)
    assert tuned.curves == plain.curves  # the same training; the epochs' curves read threshold 0
    assert (tuned.metrics["map"], tuned.metrics["bce"]) == (plain.metrics["map"], plain.metrics["bce"])  # the model's own logits
    assert tuned.metrics["macro_f1"] != plain.metrics["macro_f1"]


def test_thresholds_are_refused_where_they_cannot_apply():
    spec = _multilabel(early_stopping=True)
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    with pytest.raises(SpecError, match="early_stopping"):
        check_unit(split, resolve_method(spec.methods[1]), spec)
    single = _spec(decision="thresholds")
    split = DataCache(single, torch.device("cpu")).get(single.datasets[0], "tune")
    with pytest.raises(SpecError, match="applies to multilabel tasks, not multiclass"):
        check_unit(split, resolve_method(single.methods[1]), single)


def test_f1_thresholds_with_tied_logits_cut_between_distinct_scores():
    # three rows of one logit (repeated inputs): no threshold puts some of them on each side
    logits = torch.tensor([[2.0], [1.0], [1.0], [1.0], [0.5], [-1.0]])
    target = torch.tensor([[1.0], [1.0], [1.0], [0.0], [0.0], [0.0]])
    threshold = f1_thresholds(logits, target)
    predicted = logits[:, 0] > threshold
    tp = float((predicted & (target[:, 0] == 1)).sum())
    assert 2 * tp / (float(predicted.sum()) + float(target.sum())) == pytest.approx(6 / 7)  # the best cut: all four


def test_f1_thresholds_between_neighbouring_floats_keep_the_upper_row_positive():
    above = 1.0000002384185791
    logits = torch.tensor([[above], [1.0000001192092896], [-3.0]])
    threshold = f1_thresholds(logits, torch.tensor([[1.0], [0.0], [0.0]]))
    assert (logits[:, 0] > threshold).tolist() == [True, False, False]


@pytest.mark.parametrize("scale", [1.0, 1e8, 1e30])
def test_f1_thresholds_past_the_last_or_first_row_hold_at_any_scale(scale):
    # every row positive (label 0: the cut below the last row) or none (label 1: above the first); at 1e8
    # the last row's score minus 2 rounds back onto it
    logits = torch.tensor([[3.0, 1.0], [2.0, 0.5], [1.0, 0.2]]) * scale
    thresholds = f1_thresholds(logits, torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]))
    assert (logits > thresholds).tolist() == [[True, False]] * 3


def test_a_thresholds_run_whose_training_logits_overflow_is_scored_as_diverged(monkeypatch):
    # its held-out logits may be finite; without thresholds its label metrics would read logit 0 instead
    from lossbench.bench import execution

    fitted = execution._thresholds
    overflowing = []

    def fit_part_overflows(fit_logits, split):
        fit_logits = fit_logits.clone()
        fit_logits[0, 0] = math.inf
        overflowing.append(fitted(fit_logits, split))
        return overflowing[-1]

    monkeypatch.setattr(execution, "_thresholds", fit_part_overflows)
    spec = parse_spec(
        {
            "name": "ml", "trials": 1, "seeds": 2, "train": {"model": "linear", "epochs": 2},
            "datasets": ["synthetic_multilabel"],
            "methods": [{"name": "bce", "loss": "binary_cross_entropy"},
                        {"name": "bce_thr", "loss": "binary_cross_entropy", "decision": "thresholds"},
                        {"name": "bce_read", "runs_of": "bce", "decision": "thresholds"}],
        }
    )  # fmt: skip
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "final")
    params = {"lr": 0.1, "weight_decay": 1e-4}
    plain, tuned = (train_and_score(split, resolve_method(m), params, spec, seed=1) for m in spec.methods[:2])
    assert overflowing == [None, None]  # (bce's run scored its reader's rule)
    assert plain.metrics["diverged"] == 0.0 and plain.metrics["macro_f1"] == plain.metrics["macro_f1"]
    assert plain.decided["thresholds"]["diverged"] == 1.0 and math.isnan(plain.decided["thresholds"]["macro_f1"])
    assert tuned.metrics["diverged"] == 1.0 and all(math.isnan(v) for k, v in tuned.metrics.items() if k != "diverged")
