"""The bench's own accuracy against torchmetrics', which it replaces for speed."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_calibration_error,
    multiclass_f1_score,
    multiclass_recall,
)

from lossbench.bench import metrics as metrics_module
from lossbench.bench.metrics import (
    EpochScores,
    accuracy,
    class_probabilities,
    compute_metrics,
    decide,
    f1_thresholds,
    metrics_of_runs,
)
from lossbench.losses._validation import all_finite


def _torchmetrics_accuracy(probs: torch.Tensor, target: torch.Tensor) -> float:
    return float(multiclass_accuracy(probs, target, num_classes=probs.shape[1], average="micro", validate_args=False))


@pytest.mark.parametrize("n,c", [(1, 2), (7, 2), (288, 10), (1001, 3), (5000, 37)])
def test_accuracy_is_torchmetrics_bit_for_bit(n, c):
    gen = torch.Generator().manual_seed(n * 100 + c)
    for _ in range(5):
        logits = torch.randn(n, c, generator=gen)
        # Ties: repeated columns and coarse values, where the arg-max's tie-breaking decides.
        logits[:, -1] = logits[:, 0]
        logits[: n // 2] = logits[: n // 2].round()
        target = torch.randint(0, c, (n,), generator=gen)
        probs = class_probabilities(logits, "multiclass")
        assert accuracy(probs, target) == _torchmetrics_accuracy(probs, target)


def test_accuracy_of_a_single_binary_logit_and_of_no_samples():
    logits, target = torch.tensor([[0.3], [-1.0], [0.0]]), torch.tensor([1, 1, 0])
    probs = class_probabilities(logits, "multiclass")
    assert accuracy(probs, target) == _torchmetrics_accuracy(probs, target)
    empty = torch.empty(0, 3)
    assert accuracy(empty, torch.empty(0, dtype=torch.long)) == 0.0


def test_compute_metrics_accuracy_and_divergence():
    logits, target = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]]), torch.tensor([0, 1, 1])
    assert compute_metrics(logits, target, "multiclass", 2, ("accuracy",)) == {"accuracy": float(torch.tensor(2 / 3)), "diverged": 0.0}
    logits[0, 0] = float("nan")
    out = compute_metrics(logits, target, "multiclass", 2, ("accuracy",))
    assert out["diverged"] == 1.0 and out["accuracy"] != out["accuracy"]
    for task, empty in (("multiclass", torch.zeros(0, dtype=torch.long)), ("multilabel", torch.zeros(0, 2))):
        with pytest.raises(ValueError, match="compute_metrics needs at least one sample"):  # (torchmetrics' reshape error)
            compute_metrics(torch.zeros(0, 2), empty, task, 2)


def test_compute_metrics_argmax_metrics_read_the_logits_and_the_others_the_probabilities():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(500, 6, generator=gen)
    logits[:100, 4] = logits[:100, 1]  # ties, where an arg-max of rounded probabilities could differ
    target = torch.randint(0, 6, (500,), generator=gen)
    kw = {"num_classes": 6, "validate_args": False}
    probs = torch.softmax(logits, dim=1)
    expected = {
        "accuracy": float(multiclass_accuracy(logits, target, average="micro", **kw)),
        "macro_f1": float(multiclass_f1_score(logits, target, average="macro", **kw)),
        "balanced_accuracy": float(multiclass_recall(logits, target, average="macro", **kw)),
        "nll": float(torch.nn.functional.nll_loss(probs.log(), target)),
        "ece": float(multiclass_calibration_error(probs, target, n_bins=15, norm="l1", **kw)),
        "diverged": 0.0,
    }
    assert compute_metrics(logits, target, "multiclass", 6) == expected
    # Each metric alone is the same number as among all of them.
    for name in expected.keys() - {"diverged"}:
        assert compute_metrics(logits, target, "multiclass", 6, (name,))[name] == expected[name]


def test_balanced_accuracy_is_scikit_learns_when_a_class_is_predicted_but_absent():
    from sklearn.metrics import balanced_accuracy_score

    gen = torch.Generator().manual_seed(5)
    for present in ([0, 1], [0, 2, 3], [1, 2, 3, 4]):  # of 5 classes: the predictions reach the others
        target = torch.tensor(present)[torch.randint(0, len(present), (200,), generator=gen)]
        logits = torch.randn(200, 5, generator=gen)
        ours = compute_metrics(logits, target, "multiclass", 5, ("balanced_accuracy",))["balanced_accuracy"]
        with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
            theirs = balanced_accuracy_score(target.numpy(), logits.argmax(1).numpy())
        assert ours == pytest.approx(theirs, rel=1e-6)


def test_compute_metrics_of_a_single_binary_logit_read_its_two_probabilities():
    logits, target = torch.tensor([[0.3], [-1.0], [0.0], [2.0]]), torch.tensor([1, 1, 0, 0])
    out = compute_metrics(logits, target, "multiclass", 2)
    probs = class_probabilities(logits, "multiclass")
    assert out["accuracy"] == accuracy(probs, target) == 0.5
    assert out["macro_f1"] == float(multiclass_f1_score(probs, target, num_classes=2, average="macro"))


@pytest.mark.parametrize("shift", [0.0, 0.7])  # 0.7: a decision rule's shifted scores, which the label metrics read
@pytest.mark.parametrize(
    "metric,task,width",
    [("accuracy", "multiclass", 5), ("macro_f1", "multiclass", 5), ("accuracy", "multiclass", 1), ("micro_f1", "multilabel", 5),
     ("map", "multilabel", 5)],
)  # fmt: skip
def test_epoch_scores_are_compute_metrics_epoch_by_epoch(metric, task, width, shift):
    gen = torch.Generator().manual_seed(width)
    n = 97
    if task == "multilabel":
        target = (torch.rand(n, width, generator=gen) < 0.3).float()
    else:
        target = torch.randint(0, max(width, 2), (n,), generator=gen)
    epochs = [torch.randn(n, width, generator=gen) * scale for scale in (0.1, 1.0, 10.0, 1.0, 3.0)]
    epochs[1] = epochs[1].round()  # ties
    epochs[3][5, 0] = float("nan")  # a diverged epoch, then a recovered one
    epochs[4][7, -1] = -float("inf")
    offsets = shift * torch.linspace(-1, 1, width)
    scores = EpochScores(metric, target, task, max(width, 2))
    for logits in epochs:
        scores.add(logits, decided=logits - offsets)
    expected = [compute_metrics(logits, target, task, max(width, 2), (metric,), logits - offsets)[metric] for logits in epochs]
    if shift and metric != "map":  # (a per-label shift leaves mAP's rankings)
        assert expected[0] != compute_metrics(epochs[0], target, task, max(width, 2), (metric,))[metric]
    got = scores.values()
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g == e or (g != g and e != e)
    assert got[3] != got[3] and got[4] != got[4]  # nan where any logit is non-finite


def test_map_is_scikit_learns_average_precision_of_the_logits_at_any_scale():
    # A float32 sigmoid rounds every logit above ~17 to 1.0: confident rows would tie, and mAP change with the scale.
    from sklearn.metrics import average_precision_score

    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(300, 4, generator=gen) * 40
    target = (torch.rand(300, 4, generator=gen) < torch.sigmoid(logits / 40)).long()
    logits[:60] = logits[:60].round()  # ties
    logits[:, 3] *= 1e30  # near float32's largest
    expected = sum(average_precision_score(target[:, k], logits[:, k]) for k in range(4)) / 4
    for scale in (1.0, 2.0**-10, 2.0**-100):  # (powers of two: the same floats, scaled exactly)
        assert compute_metrics(logits * scale, target, "multilabel", 4, ("map",))["map"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_all_finite_is_isfinite_all(dtype):
    gen = torch.Generator().manual_seed(0)
    assert all_finite(torch.empty(0, 3, dtype=dtype))
    for shape in [(1, 1), (288, 10), (33, 7), (4097,), (3, 5, 2)]:
        x = torch.randn(shape, generator=gen).to(dtype)
        assert all_finite(x)
        for bad in (float("nan"), float("inf"), -float("inf")):
            for flat in {0, x.numel() // 3, x.numel() - 1}:
                y = x.clone()
                y.view(-1)[flat] = bad
                assert not all_finite(y) and not bool(torch.isfinite(y).all())
                assert not all_finite(y.transpose(0, -1))  # non-contiguous


def test_nll_and_bce_count_confident_mistakes_in_full():
    # from the logits in log space: a probability clamped at 1e-12 (1e-7 for bce) capped each sample's loss
    logits, target = torch.tensor([[60.0, 0.0], [0.0, 1.0]]), torch.tensor([1, 1])
    nll = compute_metrics(logits, target, "multiclass", 2, ("nll",))["nll"]
    assert nll == pytest.approx(float(torch.nn.functional.cross_entropy(logits, target)))
    one, labels = torch.tensor([[30.0], [-1.0]]), torch.tensor([[0.0], [1.0]])
    bce = compute_metrics(one, labels, "multilabel", 1, ("bce",))["bce"]
    assert bce == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(one, labels)))
    binary = compute_metrics(torch.tensor([40.0, -2.0]), torch.tensor([0, 0]), "multiclass", 2, ("nll",))["nll"]
    assert binary == pytest.approx((40.0 + math.log1p(math.exp(-40.0)) + math.log1p(math.exp(-2.0))) / 2)


def test_a_multilabel_score_just_above_zero_is_a_positive_label():
    """The rule reads a label as positive above 0 (a threshold shifted onto 0, say): a float32 sigmoid of
    1e-8 is exactly 0.5, which torchmetrics' threshold of 0.5 read as negative."""
    target = torch.tensor([[1, 0], [0, 1], [1, 1]])
    scores = torch.tensor([[1e-8, -1.0], [-1.0, 3e-8], [2.0, 1.0]])
    metrics = compute_metrics(scores, target, "multilabel", 2)
    assert metrics["micro_f1"] == 1.0 and metrics["macro_f1"] == 1.0


@pytest.mark.parametrize("together", [True, False], ids=["together", "run by run"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("n", "c"), [(1, 2), (7, 3), (360, 10), (513, 14), (40, 30)])
def test_metrics_of_runs_are_compute_metrics_run_by_run_bit_for_bit(n, c, dtype, together, monkeypatch):
    """A pack's final scores in one pass (or run by run past TOGETHER_MAX): the same floats as each run's own
    compute_metrics, with runs that diverged, predict one class only, tie, or miss classes of the target."""
    monkeypatch.setattr(metrics_module, "TOGETHER_MAX", n * c if together else n * c - 1)
    gen = torch.Generator().manual_seed(n * c)
    logits = torch.randn(8, n, c, generator=gen, dtype=dtype) * torch.tensor([0.1, 1, 4, 30, 1, 1, 1, 1], dtype=dtype)[:, None, None]
    logits[4, :, 0] += 50  # one class predicted everywhere
    logits[5] = logits[5].round()  # ties: the first class of the tie wins
    logits[6, 0, 0] = math.nan
    logits[7, -1, -1] = -math.inf
    target = torch.randint(0, max(1, c - 1), (n,), generator=gen)  # the last class absent from the target
    together = metrics_of_runs(logits, target, c)
    for k in range(len(logits)):
        alone = compute_metrics(logits[k], target, "multiclass", c)
        assert list(together[k]) == list(alone)
        assert all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(together[k].values(), alone.values())), (k, together[k], alone)
        if k < 6:  # (macro-F1 and the recalls by counts of classes: torchmetrics' values, bit for bit)
            kw = {"num_classes": c, "validate_args": False}
            assert alone["macro_f1"] == float(multiclass_f1_score(logits[k], target, average="macro", **kw))
            recall = multiclass_recall(logits[k], target, average=None, **kw)
            assert alone["balanced_accuracy"] == float(metrics_module._balanced(recall, target, c))
    assert together[6]["diverged"] == together[7]["diverged"] == 1.0


def test_metrics_of_runs_leave_one_binary_logit_and_no_rows_to_compute_metrics():
    assert metrics_of_runs(torch.zeros(3, 5, 1), torch.zeros(5, dtype=torch.long), 2) is None
    assert metrics_of_runs(torch.zeros(3, 0, 4), torch.zeros(0, dtype=torch.long), 4) is None


def test_a_small_positive_binary_logit_is_the_positive_class():
    # (its float32 probabilities tie at 0.5, and the arg-max of a tie read it as class 0)
    s, y = torch.tensor([5e-8, 5e-8, -1.0, 1.0]), torch.tensor([1, 1, 0, 0])
    one = compute_metrics(s, y, "multiclass", 2, ("accuracy", "balanced_accuracy", "macro_f1"))
    assert one == compute_metrics(torch.stack([torch.zeros(4), s], 1), y, "multiclass", 2, tuple(one)[:3]) | {"diverged": 0.0}
    assert one["accuracy"] == pytest.approx(0.75)


def test_half_precision_thresholds_part_the_rows_they_were_tuned_on():
    fit, target = torch.tensor([[1.0078125], [1.015625]], dtype=torch.bfloat16), torch.tensor([[0.0], [1.0]])
    scores = decide(fit, "thresholds", torch.ones(1), f1_thresholds(fit, target))
    assert (scores > 0).flatten().tolist() == [False, True]


def test_float64_logits_are_scored_in_float64_alike_packed_and_alone():
    logits, target = torch.tensor([[1e8, 1e8 + 1, 0.0]], dtype=torch.float64), torch.tensor([1])
    alone = compute_metrics(logits, target, "multiclass", 3)
    assert alone["accuracy"] == 1.0 and alone["nll"] == pytest.approx(math.log1p(math.exp(-1)))
    assert metrics_of_runs(logits[None], target, 3)[0]["accuracy"] == 1.0
