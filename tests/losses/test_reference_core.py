"""Reference tests: cross-entropy, hinge, smooth accuracy, the EXACT paper's relaxations, Poly-1."""

import math
import re

import pytest
import torch
import torch.nn.functional as F

from lossbench import losses as L


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return 3 * torch.randn(16, 5, generator=g, dtype=torch.float64), torch.randint(0, 5, (16,), generator=g)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_cross_entropy_equals_pytorch(batch, label_smoothing, weighted, reduction):
    x, y = batch
    y = y.clone()
    y[3] = -100
    w = torch.linspace(0.5, 2.0, 5, dtype=torch.float64) if weighted else None
    ours = L.cross_entropy(x, y, weight=w, label_smoothing=label_smoothing, reduction=reduction)
    ref = F.cross_entropy(x, y, weight=w, label_smoothing=label_smoothing, reduction=reduction)
    torch.testing.assert_close(ours, ref)


def test_cross_entropy_matches_the_written_formula(batch):
    # (1 - eps) w_y (-log p_y) + eps / C sum_c w_c (-log p_c), mean divided by sum of w_y
    x, y = batch
    eps, w, t = 0.1, torch.linspace(0.5, 2.0, 5, dtype=torch.float64), 2.0
    log_p = torch.log_softmax(x / t, 1)
    per = (1 - eps) * w[y] * -log_p[torch.arange(len(y)), y] + eps / 5 * (w * -log_p).sum(1)
    ours = L.cross_entropy(x, y.int(), weight=w, label_smoothing=eps, temperature=t)
    torch.testing.assert_close(ours, per.sum() / w[y].sum())


def test_cross_entropy_temperature_divides_logits(batch):
    x, y = batch
    torch.testing.assert_close(L.cross_entropy(x, y, temperature=0.25), F.cross_entropy(x / 0.25, y))


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("margin", [1.0, 0.3])
def test_hinge_equals_multi_margin_loss(batch, p, margin):
    x, y = batch
    w = torch.linspace(0.5, 2.0, 5, dtype=torch.float64)
    for kw in ({}, {"weight": w}):
        for reduction in ("none", "sum"):
            torch.testing.assert_close(
                L.multi_class_hinge(x, y, p=p, margin=margin, reduction=reduction, **kw),
                F.multi_margin_loss(x, y, p=p, margin=margin, reduction=reduction, **kw),
            )
    torch.testing.assert_close(L.multi_class_hinge(x, y, p=p, margin=margin), F.multi_margin_loss(x, y, p=p, margin=margin))
    # Weighted mean: divided by the summed weights, the lossbench-wide convention.
    torch.testing.assert_close(
        L.multi_class_hinge(x, y, p=p, weight=w),
        F.multi_margin_loss(x, y, p=p, weight=w, reduction="sum") / w[y].sum(),
    )


@pytest.mark.parametrize("margin", [1.0, 0.0])
def test_hinge_averaged_over_the_rivals_is_the_exact_papers(batch, margin):
    # uci-class/scripts/run.py, HingeLoss: (margin - gt_logits + logits).clip(min=0)[alt_mask].mean()
    x, y = batch
    rivals = torch.ones_like(x, dtype=torch.bool).scatter_(1, y[:, None], False)
    paper = (margin - x.gather(1, y[:, None]) + x).clip(min=0)[rivals].mean()
    torch.testing.assert_close(L.multi_class_hinge(x, y, margin=margin, average="rivals"), paper)
    with pytest.raises(ValueError, match="average must be one of"):
        L.multi_class_hinge(x, y, average="samples")
    with pytest.raises(ValueError, match="average='rivals' needs at least 2 classes"):  # (no rival: it was nan)
        L.multi_class_hinge(x[:, :1], torch.zeros_like(y), average="rivals")


@pytest.mark.parametrize("layout", ["row-major", "class-major"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hinge_rows_that_meet_every_margin_are_exactly_zero_and_small_terms_keep_their_digits(dtype, layout):
    """The true class's own term is left out, not added and taken off again: a row that meets every margin
    reads exactly 0 at any margin and power (margin 0.7 squared rounds otherwise), a row with one rival just
    inside a large margin keeps that term's digits, with per-row powers too (a packed call's rows)."""
    rows, classes = 2048, 10  # (at least 4096 entries: a packed step's layout and size)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(rows, classes, generator=gen, dtype=dtype)
    y = torch.randint(0, classes, (rows,), generator=gen)
    x = x.scatter(1, y[:, None], 50.0)  # every margin met
    x[1] = 0.0
    x[1, y[1]] = 10.0 - 3e-6  # at margin 10 each rival (at 0) lies about 3e-6 inside it
    if layout == "class-major":
        x = x.t().contiguous().t()
    for margin, p in ((0.7, 2), (0.1, 1), (0.1, torch.tensor([1.0, 2.0], dtype=torch.float64).repeat(rows // 2))):
        out = L.multi_class_hinge(x, y, margin=margin, p=p, reduction="none", validate=False)
        assert out.dtype == dtype and bool((out[2:] == 0).all()) and bool((out >= 0).all())
    out = L.multi_class_hinge(x, y, margin=10.0, reduction="none", validate=False)
    ref = (classes - 1) * (10.0 - float(x[1, y[1]])) / classes  # (the inside as the dtype holds it)
    assert abs(float(out[1]) - ref) < 1e-5 * ref


@pytest.mark.parametrize("p", [3, True])
def test_hinge_rejects_unsupported_p(batch, p):
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        L.multi_class_hinge(*batch, p=p)


def test_smooth_accuracy_is_one_minus_true_class_probability(batch):
    x, y = batch
    p = torch.softmax(x, 1)[torch.arange(len(y)), y]
    torch.testing.assert_close(L.smooth_accuracy(x, y, reduction="none"), 1 - p)


def test_binary_smooth_accuracy_matches_two_logit_softmax_form(batch):
    s = batch[0][:, 0]
    t = (batch[1] % 2).long()
    two = torch.stack([-s / 2, s / 2], 1)
    torch.testing.assert_close(L.binary_smooth_accuracy(s, t, reduction="none"), L.smooth_accuracy(two, t, reduction="none"))
    soft = torch.rand(len(s), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    expected = 1 - (soft * torch.sigmoid(s) + (1 - soft) * (1 - torch.sigmoid(s)))
    torch.testing.assert_close(L.binary_smooth_accuracy(s, soft, reduction="none"), expected)


def test_binary_smooth_accuracy_keeps_a_small_miss_and_its_gradient_in_float32():
    s = torch.tensor([17.0, -17.0, 10.0], requires_grad=True)
    t = torch.tensor([1.0, 0.0, 1.0])
    loss = L.binary_smooth_accuracy(s, t, reduction="none")
    reference = torch.sigmoid(-s.detach().double() * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(loss.double(), reference, rtol=1e-6, atol=0)  # (1 - sigmoid(17) was exactly 0)
    loss.sum().backward()
    assert (s.grad.abs() > 0).all()


def rival_margins(x, y, temperature=1.0):
    """(B, C-1) margins s_y - s_j over the rivals, built by explicit loops (independent of the library)."""
    rows = []
    for i in range(x.shape[0]):
        rows.append(torch.stack([(x[i, y[i]] - x[i, j]) / temperature for j in range(x.shape[1]) if j != y[i]]))
    return torch.stack(rows)


def test_sigmoid_relaxation(batch):
    x, y = batch
    d = rival_margins(x, y, 0.5)
    torch.testing.assert_close(
        L.sigmoid_relaxation(x, y, temperature=0.5, reduction="none"), (1 / (1 + torch.exp(d))).sum(1)
    )


def test_polynomial_relaxation_endpoints_and_formula(batch):
    x, y = batch
    d = rival_margins(x, y).clamp(-1, 1)
    torch.testing.assert_close(L.polynomial_relaxation(x, y, reduction="none"), (0.25 * d**3 - 0.75 * d + 0.5).sum(1))
    two = torch.tensor([[5.0, 0.0], [0.0, 5.0], [0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(
        L.polynomial_relaxation(two, torch.tensor([0, 0, 0]), reduction="none"),
        torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64),
    )


def test_beta_bernoulli_relaxation(batch):
    x, y = batch
    d = rival_margins(x, y)
    w, theta = 0.3, 0.8
    expected = -torch.log(w * theta + (1 - w) / (1 + torch.exp(-d))).sum(1)
    torch.testing.assert_close(
        L.beta_bernoulli_relaxation(x, y, prior_weight=w, theta=theta, reduction="none"), expected
    )
    # Bounded per rival by -log(w theta), however wrong the sample.
    far = torch.tensor([[-1e4, 0.0, 0.0]], dtype=torch.float64)
    value = L.beta_bernoulli_relaxation(far, torch.tensor([0]), prior_weight=w, theta=theta)
    assert float(value) == pytest.approx(-2 * math.log(w * theta), rel=1e-6)


@pytest.mark.parametrize("name", ["prior_weight", "theta"])
@pytest.mark.parametrize("value", [0.0, 1.0, 1.5])
def test_beta_bernoulli_function_and_module_take_one_range(batch, name, value):
    x, y = batch
    message = re.escape(f"{name} must lie in (0, 1), got {value}")
    with pytest.raises(ValueError, match=message):
        L.beta_bernoulli_relaxation(x, y, **{name: value})
    with pytest.raises(ValueError, match=re.escape(f"{name} must lie in (0, 1), got [0.5, {value}]")):
        L.beta_bernoulli_relaxation(x, y, **{name: torch.tensor([0.5, value], dtype=torch.float64)})
    with pytest.raises(ValueError, match=message):
        L.BetaBernoulliRelaxationLoss(**{name: value})
    L.beta_bernoulli_relaxation(x, y, **{name: 0.999})  # inside: taken by both
    L.BetaBernoulliRelaxationLoss(**{name: 0.999})


def test_beta_bernoulli_module_learns_its_mixture(batch):
    x, y = batch
    module = L.BetaBernoulliRelaxationLoss()
    assert sum(p.numel() for p in module.parameters()) == 2
    module(x.float(), y).backward()
    assert module.raw.grad is not None and torch.isfinite(module.raw.grad).all()
    # its value is the function's at w = sigmoid(a), theta = sigmoid(b) ...
    module.raw.data = torch.tensor([0.7, -0.3])
    w, theta = torch.sigmoid(module.raw.detach().double())
    torch.testing.assert_close(module(x.double(), y), L.beta_bernoulli_relaxation(x.double(), y, prior_weight=w, theta=theta))
    # ... and in float32 stays finite, gradient too, where sigmoid(a) rounds to 1 (a >= 17: a few SGD steps away)
    module.raw.data, module.raw.grad = torch.tensor([17.0, 0.0]), None
    value = module(x.float(), y)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(module.raw.grad).all()
    assert list(L.BetaBernoulliRelaxationLoss(learnable=False).parameters()) == []
    with pytest.raises(ValueError, match="learnable must be True or False, got 'no'"):
        L.BetaBernoulliRelaxationLoss(learnable="no")


def test_poly1_is_ce_plus_epsilon_one_minus_p(batch):
    x, y = batch
    p = torch.softmax(x, 1)[torch.arange(len(y)), y]
    ce = F.cross_entropy(x, y, reduction="none")
    torch.testing.assert_close(L.poly1_cross_entropy(x, y, epsilon=2.0, reduction="none"), ce + 2.0 * (1 - p))
    torch.testing.assert_close(L.poly1_cross_entropy(x, y, epsilon=0.0), F.cross_entropy(x, y))
    with pytest.raises(ValueError, match="epsilon"):
        L.poly1_cross_entropy(x, y, epsilon=-2.0)
