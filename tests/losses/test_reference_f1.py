"""Reference tests: soft F1 / Dice (binary, multi-label macro, single-label macro), F1-weighted BCE."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.functional.classification import binary_f1_score, multiclass_f1_score, multilabel_f1_score

from lossbench import losses as L

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True)
EPS = 1e-6


def soft_f1_reference(p, t, eps=EPS):
    """``1 - (2 sum t p + eps) / (sum (t + p) + eps)``: the textbook form with the loss's eps."""
    return 1 - (2 * (t * p).sum() + eps) / ((t + p).sum() + eps)


@pytest.fixture
def multilabel_batch():
    g = torch.Generator().manual_seed(0)
    x = 2 * torch.randn(32, 5, generator=g, dtype=torch.float64)
    t = (torch.rand(32, 5, generator=g) < 0.4).long()
    t[0] = 1  # every label has a positive
    return x, t


def test_soft_f1_equals_formula_on_hard_and_soft_labels(multilabel_batch):
    x, t = multilabel_batch
    torch.testing.assert_close(L.soft_f1(x, t), soft_f1_reference(torch.sigmoid(x), t.double()))
    soft = torch.rand(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(L.soft_f1(x, soft), soft_f1_reference(torch.sigmoid(x), soft))
    assert L.soft_f1(x, t, reduction="none").shape == ()
    assert L.soft_dice is L.soft_f1 and L.SoftDiceLoss is L.SoftF1Loss


def test_soft_f1_at_saturated_logits_is_one_minus_f1(multilabel_batch):
    x, t = multilabel_batch
    hard_logits = 40.0 * torch.sign(x)  # sigmoid is 0 or 1 to double precision
    f1 = binary_f1_score((x > 0).long().flatten(), t.flatten())
    torch.testing.assert_close(L.soft_f1(hard_logits, t), 1 - f1.double(), atol=1e-6, rtol=0)
    macro = multilabel_f1_score((x > 0).long(), t, num_labels=5, average="macro", threshold=0.5)
    torch.testing.assert_close(L.multilabel_soft_f1(hard_logits, t), 1 - macro.double(), atol=1e-6, rtol=0)


def test_multilabel_soft_f1_is_soft_f1_per_label(multilabel_batch):
    x, t = multilabel_batch
    per_label = torch.stack([L.soft_f1(x[:, c], t[:, c]) for c in range(x.shape[1])])
    torch.testing.assert_close(L.multilabel_soft_f1(x, t, reduction="none"), per_label)
    torch.testing.assert_close(L.multilabel_soft_f1(x, t), per_label.mean())
    torch.testing.assert_close(L.multilabel_soft_f1(x, t, reduction="sum"), per_label.sum())
    torch.testing.assert_close(L.multilabel_soft_f1(x[:, 2], t[:, 2]), L.soft_f1(x[:, 2], t[:, 2]))
    # Leading dimensions are pooled; the last one is the label axis.
    torch.testing.assert_close(
        L.multilabel_soft_f1(x.reshape(4, 8, 5), t.reshape(4, 8, 5), reduction="none"), per_label
    )


def test_multilabel_soft_f1_excludes_ignored_entries(multilabel_batch):
    x, t = multilabel_batch
    ignored = t.clone()
    ignored[1::4, 1] = -100
    ignored[2::5, 3] = -100
    kept = ignored != -100
    per_label = torch.stack([L.soft_f1(x[kept[:, c], c], t[kept[:, c], c]) for c in range(x.shape[1])])
    torch.testing.assert_close(L.multilabel_soft_f1(x, ignored, reduction="none"), per_label)


def test_macro_soft_f1_is_soft_f1_per_class_of_the_softmax():
    g = torch.Generator().manual_seed(2)
    x = 2 * torch.randn(40, 4, generator=g, dtype=torch.float64)
    y = torch.arange(40) % 4
    y[5] = y[17] = -100
    kept = y != -100
    p, onehot = torch.softmax(x[kept], 1), F.one_hot(y[kept], 4).double()
    per_class = torch.stack([soft_f1_reference(p[:, c], onehot[:, c]) for c in range(4)])
    torch.testing.assert_close(L.macro_soft_f1(x, y, reduction="none"), per_class)
    torch.testing.assert_close(L.macro_soft_f1(x, y), per_class.mean())
    # At saturated logits it is one minus torchmetrics' macro F1.
    sharp = 60.0 * F.one_hot(x.argmax(1), 4).double()
    macro = multiclass_f1_score(x.argmax(1), y, num_classes=4, average="macro", ignore_index=-100)
    torch.testing.assert_close(L.macro_soft_f1(sharp, y), 1 - macro.double(), atol=1e-6, rtol=0)


def test_group_without_positives_or_mass_is_finite_and_zero():
    x = torch.full((6, 3), -200.0, dtype=torch.float64, requires_grad=True)  # sigmoid underflows to 0
    t = torch.zeros(6, 3)
    loss = L.multilabel_soft_f1(x, t, reduction="none")
    loss.sum().backward()
    torch.testing.assert_close(loss, torch.zeros(3, dtype=torch.float64))
    assert torch.isfinite(x.grad).all()
    # Mass on a label without positives costs (almost) everything.
    x2 = torch.zeros(6, 3, dtype=torch.float64)
    one = torch.tensor(1.0, dtype=torch.float64)
    torch.testing.assert_close(L.multilabel_soft_f1(x2, t), one, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="eps"):
        L.soft_f1(x2, t, eps=0.0)


def test_f1_weighted_bce_equals_weighted_bce_with_the_batch_f1(multilabel_batch):
    x, t = multilabel_batch
    f1 = 1 - soft_f1_reference(torch.sigmoid(x), t.double())
    weight = torch.where(t == 1, 1 - f1 / 2, f1 / 2)
    for reduction in ("none", "mean", "sum"):
        torch.testing.assert_close(
            L.f1_weighted_bce(x, t, reduction=reduction),
            F.binary_cross_entropy_with_logits(x, t.double(), weight=weight, reduction=reduction),
        )


def test_f1_weighted_bce_gradient_is_the_soft_f1_gradient_with_log_probabilities(multilabel_batch):
    """Su's construction: d loss / ds times p (positives) or 1 - p (negatives) is prop. to -dF/ds."""
    x, t = multilabel_batch
    a = x.clone().requires_grad_(True)
    L.f1_weighted_bce(a, t).backward()
    b = x.clone().requires_grad_(True)
    L.soft_f1(b, t).backward()  # gradient of 1 - F
    p = torch.sigmoid(x)
    rescaled = a.grad * torch.where(t == 1, p, 1 - p)
    denominator = (t + p).sum() + EPS  # d(1 - F)/dp_i = -(2 / denominator) (t_i - F/2), exactly
    torch.testing.assert_close(rescaled * x.numel(), b.grad * denominator / 2)
    # And the explicit form at fixed F.
    f1 = 1 - soft_f1_reference(p, t.double())
    expected = -(t * (1 - f1 / 2) * (1 - p) - (1 - t) * (f1 / 2) * p) / x.numel()
    torch.testing.assert_close(a.grad, expected)


def test_f1_weighted_bce_excludes_ignored_entries(multilabel_batch):
    x, t = multilabel_batch
    ignored = t.clone()
    ignored[::3, 0] = -100
    kept = ignored != -100
    for reduction in ("mean", "sum"):
        torch.testing.assert_close(
            L.f1_weighted_bce(x, ignored, reduction=reduction),
            L.f1_weighted_bce(x[kept], t[kept], reduction=reduction),
        )


@st.composite
def logits_and_soft_targets(draw):
    b, c = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    x = draw(st.lists(st.floats(-30, 30), min_size=b * c, max_size=b * c))
    t = draw(st.lists(st.floats(0, 1), min_size=b * c, max_size=b * c))
    return (
        torch.tensor(x, dtype=torch.float64).reshape(b, c),
        torch.tensor(t, dtype=torch.float64).reshape(b, c),
    )


@PROPERTY
@given(data=logits_and_soft_targets())
def test_soft_f1_losses_lie_in_the_unit_interval(data):
    x, t = data
    for loss in (L.soft_f1(x, t), L.multilabel_soft_f1(x, t, reduction="none")):
        assert bool(((loss >= 0) & (loss <= 1)).all()), loss
    y = (t[:, 0] * (x.shape[1] - 1)).round().long()
    per_class = L.macro_soft_f1(x, y, reduction="none")
    assert bool(((per_class >= 0) & (per_class <= 1)).all()), per_class


@PROPERTY
@given(data=logits_and_soft_targets(), seed=st.integers(0, 2**16))
def test_soft_f1_ignores_sample_order_and_follows_label_order(data, seed):
    x, t = data
    g = torch.Generator().manual_seed(seed)
    rows, cols = torch.randperm(x.shape[0], generator=g), torch.randperm(x.shape[1], generator=g)
    torch.testing.assert_close(L.soft_f1(x[rows], t[rows]), L.soft_f1(x, t))
    torch.testing.assert_close(
        L.multilabel_soft_f1(x[rows][:, cols], t[rows][:, cols], reduction="none"),
        L.multilabel_soft_f1(x, t, reduction="none")[cols],
    )
