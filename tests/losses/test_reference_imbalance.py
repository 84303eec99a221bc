"""Reference tests: focal, Su's truncations, class weights, logit adjustment, balanced softmax, LDAM."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from lossbench import losses as L

COUNTS = torch.tensor([500.0, 120.0, 40.0, 9.0, 2.0], dtype=torch.float64)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(16, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (16,), generator=g)
    y[3] = -100
    return x, y


@pytest.fixture
def binary_batch():
    g = torch.Generator().manual_seed(1)
    x = 3 * torch.randn(12, 4, generator=g, dtype=torch.float64)
    hard = torch.randint(0, 2, (12, 4), generator=g)
    soft = torch.rand(12, 4, generator=g, dtype=torch.float64)
    return x, hard, soft


# ---------------------------------------------------------------- focal


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_focal_gamma_zero_is_cross_entropy(batch, reduction, weighted):
    x, y = batch
    alpha = torch.linspace(0.25, 2.0, 5, dtype=torch.float64) if weighted else None
    torch.testing.assert_close(
        L.focal(x, y, gamma=0.0, alpha=alpha, reduction=reduction),
        F.cross_entropy(x, y, weight=alpha, reduction=reduction),
    )


@pytest.mark.parametrize("gamma", [0.25, 1.0, 2.0, 3.7])
def test_focal_matches_the_paper_formula(batch, gamma):
    x, y = batch
    alpha = torch.linspace(0.25, 2.0, 5, dtype=torch.float64)
    kept = y != -100
    p = torch.softmax(x[kept], 1)[torch.arange(int(kept.sum())), y[kept]]
    a = alpha[y[kept]]
    per_sample = -a * (1 - p) ** gamma * torch.log(p)
    ours = L.focal(x, y, gamma=gamma, alpha=alpha, reduction="none")
    torch.testing.assert_close(ours[kept], per_sample)
    assert bool((ours[~kept] == 0).all())
    torch.testing.assert_close(L.focal(x, y, gamma=gamma, alpha=alpha), per_sample.sum() / a.sum())


@pytest.mark.parametrize("gamma", [0.5, 0.25])
def test_focal_is_finite_at_saturated_logits_for_small_gamma(gamma):
    x = torch.tensor([[1e4, 0.0, -1e4], [-1e4, 0.0, 1e4]], requires_grad=True)
    y = torch.tensor([0, 0])
    loss = L.focal(x, y, gamma=gamma, reduction="none")
    loss.sum().backward()
    # Fitted sample: (1 - p)^gamma underflows to 0; wrong sample: -log p_y = 2e4, factor 1.
    torch.testing.assert_close(loss.detach(), torch.tensor([0.0, 2e4]))
    torch.testing.assert_close(x.grad, torch.tensor([[0.0, 0.0, 0.0], [-1.0, 0.0, 1.0]]))
    # The direct power of a rounded probability is what this guards against: d(0^gamma) = inf.
    x2 = x.detach().clone().requires_grad_(True)
    p = torch.softmax(x2, 1)[torch.arange(2), y]
    ((1 - p) ** gamma * -torch.log_softmax(x2, 1)[torch.arange(2), y]).sum().backward()
    assert not bool(torch.isfinite(x2.grad).all())


def test_focal_rejects_bad_arguments(batch):
    x, y = batch
    with pytest.raises(ValueError, match="gamma must be finite and >= 0, got -0.5"):
        L.focal(x, y, gamma=-0.5)
    with pytest.raises(ValueError, match=r"alpha must be a tensor of shape \(5,\)"):
        L.focal(x, y, alpha=torch.ones(4))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_sigmoid_focal_gamma_zero_is_bce(binary_batch, reduction):
    x, hard, soft = binary_batch
    for t in (hard, soft):
        torch.testing.assert_close(
            L.sigmoid_focal(x, t, gamma=0.0, alpha=None, reduction=reduction),
            F.binary_cross_entropy_with_logits(x, t.double(), reduction=reduction),
        )
    # Scalar alpha: weighted BCE with the same (unnormalised) mean.
    a = 0.25
    pos_weight = torch.tensor(a / (1 - a))
    torch.testing.assert_close(
        L.sigmoid_focal(x, soft, gamma=0.0, alpha=a, reduction=reduction),
        (1 - a) * F.binary_cross_entropy_with_logits(x, soft, pos_weight=pos_weight, reduction=reduction),
    )
    alpha_t = a * hard + (1 - a) * (1 - hard)
    torch.testing.assert_close(
        L.sigmoid_focal(x, hard, gamma=0.0, alpha=a, reduction=reduction),
        F.binary_cross_entropy_with_logits(x, hard.double(), weight=alpha_t.double(), reduction=reduction),
    )


def torchvision_sigmoid_focal(x, t, alpha, gamma):
    """torchvision.ops.sigmoid_focal_loss, reduction="none" (re-typed: torchvision is not a dependency)."""
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    alpha_t = alpha * t + (1 - alpha) * (1 - t)
    return alpha_t * loss


@pytest.mark.parametrize("gamma", [0.5, 2.0, 3.0])
def test_sigmoid_focal_matches_torchvision_on_hard_targets(binary_batch, gamma):
    x, hard, _ = binary_batch
    t = hard.double()
    torch.testing.assert_close(
        L.sigmoid_focal(x, hard, gamma=gamma, alpha=0.25, reduction="none"),
        torchvision_sigmoid_focal(x, t, 0.25, gamma),
    )
    per_class = torch.tensor([0.1, 0.25, 0.5, 0.9], dtype=torch.float64)
    torch.testing.assert_close(
        L.sigmoid_focal(x, hard, gamma=gamma, alpha=per_class, reduction="none"),
        torchvision_sigmoid_focal(x, t, per_class, gamma),
    )


def test_sigmoid_focal_soft_target_is_the_expectation_over_labels(binary_batch):
    x, _, soft = binary_batch
    ones, zeros = torch.ones_like(soft), torch.zeros_like(soft)
    positive = L.sigmoid_focal(x, ones, reduction="none")
    negative = L.sigmoid_focal(x, zeros, reduction="none")
    expected = soft * positive + (1 - soft) * negative
    torch.testing.assert_close(L.sigmoid_focal(x, soft, reduction="none"), expected)


@pytest.mark.parametrize("gamma", [0.5, 0.25])
def test_sigmoid_focal_is_finite_at_saturated_logits_for_small_gamma(gamma):
    x = torch.tensor([1e4, -1e4, 1e4, -1e4], requires_grad=True)
    t = torch.tensor([1, 0, 0, 1])
    loss = L.sigmoid_focal(x, t, gamma=gamma, alpha=None, reduction="none")
    loss.sum().backward()
    torch.testing.assert_close(loss.detach(), torch.tensor([0.0, 0.0, 1e4, 1e4]))
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 0.0, 1.0, -1.0]))


def test_sigmoid_focal_rejects_bad_alpha(binary_batch):
    x, hard, _ = binary_batch
    with pytest.raises(ValueError, match=r"alpha must lie in \[0.0, 1.0\], got 1.5"):
        L.sigmoid_focal(x, hard, alpha=1.5)
    with pytest.raises(ValueError, match=r"alpha must be a scalar or a tensor of shape \(4,\)"):
        L.sigmoid_focal(x, hard, alpha=torch.full((3,), 0.5))
    with pytest.raises(ValueError, match=r"alpha must hold values in \[0, 1\]"):
        L.sigmoid_focal(x, hard, alpha=torch.tensor([0.5, 0.5, 0.5, 2.0]))
    with pytest.raises(ValueError, match="gamma"):
        L.sigmoid_focal(x, hard, gamma=-1.0)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_one_vs_all_focal_matches_bagoftricks_lt(batch, gamma):
    # BagofTricks-LT lib/loss/loss_impl/focal_loss.py: BCE on one-hot targets times ((1 - p) label + p (1 - label))^gamma,
    # summed over classes, over the batch size (here over the samples whose target is kept)
    x, y = batch
    kept = y != -100
    label = F.one_hot(y[kept], 5).double()
    p = torch.sigmoid(x[kept])
    per_sample = (F.binary_cross_entropy_with_logits(x[kept], label, reduction="none") * ((1 - p) * label + p * (1 - label)) ** gamma).sum(1)
    ours = L.one_vs_all_focal(x, y, gamma=gamma, reduction="none")
    torch.testing.assert_close(ours[kept], per_sample)
    assert bool((ours[~kept] == 0).all())
    torch.testing.assert_close(L.one_vs_all_focal(x, y, gamma=gamma), per_sample.mean())
    # adding a constant to a row's logits changes it (each class is its own binary problem)
    assert not torch.allclose(L.one_vs_all_focal(x + 1.0, y, gamma=gamma), L.one_vs_all_focal(x, y, gamma=gamma))


def test_focal_module_keeps_alpha_as_a_buffer(batch):
    x, y = batch
    alpha = torch.linspace(0.25, 2.0, 5)
    module = L.FocalLoss(gamma=1.5, alpha=alpha).double()
    assert "alpha" in module.state_dict() and module.alpha.dtype == torch.float64
    torch.testing.assert_close(module(x, y), L.focal(x, y, gamma=1.5, alpha=alpha.double()))


@pytest.mark.parametrize(
    ("cast", "cast_to"),
    [(lambda m: m.half(), torch.float16), (lambda m: m.to(torch.bfloat16), torch.bfloat16),
     (lambda m: m.float(), torch.float32), (lambda m: m.double(), torch.float64)],
)  # fmt: skip
def test_a_cast_module_keeps_its_class_counts(batch, cast, cast_to):
    """A half holds no count above 65504 and rounds those above 2048: the counts are cast no lower than
    float32, which holds them exactly; the class weights follow the cast as PyTorch's own losses' do."""
    x, y = batch
    counts = torch.tensor([70001.0, 2049.0, 300.0, 30.0, 5.0], dtype=torch.float64)
    for make in (L.LogitAdjustedCrossEntropyLoss, L.BalancedSoftmaxLoss):
        module = cast(make(class_counts=counts, reduction="none"))
        assert module.class_counts.dtype == torch.promote_types(cast_to, torch.float32)
        assert torch.equal(module.class_counts.double(), counts)
        torch.testing.assert_close(module(x, y), make(class_counts=counts, reduction="none")(x, y))
    weighted = cast(L.FocalLoss(gamma=1.0, alpha=torch.linspace(0.25, 2.0, 5, dtype=torch.float64)))
    assert weighted.alpha.dtype == cast_to


# ---------------------------------------------------------------- truncation


def test_hard_truncation_drops_samples_above_the_threshold(batch):
    x, y = batch
    m = 0.6
    kept = y != -100
    log_p = torch.log_softmax(x[kept], 1)[torch.arange(int(kept.sum())), y[kept]]
    active = log_p.exp() <= m
    assert 0 < int(active.sum()) < len(active), "the batch must exercise both branches"
    expected = torch.where(active, -log_p, torch.zeros_like(log_p))
    ours = L.hard_truncation(x, y, threshold=m, reduction="none")
    torch.testing.assert_close(ours[kept], expected)
    torch.testing.assert_close(L.hard_truncation(x, y, threshold=m), expected.mean())
    # Truncated samples give no gradient at all; the others give cross-entropy's.
    xg = x.clone().requires_grad_(True)
    L.hard_truncation(xg, y, threshold=m, reduction="sum").backward()
    ce_grad = torch.softmax(x, 1) - F.one_hot(y.clamp(min=0), 5)
    rows = torch.nonzero(kept).squeeze(1)
    torch.testing.assert_close(xg.grad[rows[active]], ce_grad[rows[active]])
    assert bool((xg.grad[rows[~active]] == 0).all())


def test_binary_hard_truncation_follows_the_post():
    m = 0.7
    x = torch.tensor([2.0, 0.5, -0.5, -2.0, 2.0, 0.5, -0.5, -2.0], dtype=torch.float64)
    t = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    p = torch.sigmoid(x)
    bce = F.binary_cross_entropy_with_logits(x, t.double(), reduction="none")
    drop = ((t == 1) & (p > m)) | ((t == 0) & (p < 1 - m))
    assert drop.tolist() == [True, False, False, False, False, False, False, True]
    expected = torch.where(drop, torch.zeros_like(bce), bce)
    torch.testing.assert_close(L.binary_hard_truncation(x, t, threshold=m, reduction="none"), expected)
    soft = torch.full_like(x, 0.3)
    torch.testing.assert_close(
        L.binary_hard_truncation(x, soft, threshold=m, reduction="none"),
        0.3 * expected[:4].repeat(2) + 0.7 * expected[4:].repeat(2),
    )


@pytest.mark.parametrize("threshold", [0.5, 1.0, 0.3, 1.2])
def test_truncation_threshold_must_lie_in_open_half_unit_interval(batch, threshold):
    x, y = batch
    with pytest.raises(ValueError, match=r"threshold must lie in \(0.5, 1.0\)"):
        L.hard_truncation(x, y, threshold=threshold)
    with pytest.raises(ValueError, match="threshold"):
        L.binary_hard_truncation(x, (x > 0).long(), threshold=threshold)


def test_binary_soft_truncation_with_k_one_is_sigmoid_focal_gamma_one(binary_batch):
    x, hard, soft = binary_batch
    for t in (hard, soft):
        torch.testing.assert_close(
            L.binary_soft_truncation(x, t, sharpness=1.0, reduction="none"),
            L.sigmoid_focal(x, t, gamma=1.0, alpha=None, reduction="none"),
        )


def test_binary_soft_truncation_formula_and_its_hard_limit():
    x = torch.tensor([-3.0, -0.7, 0.4, 2.5], dtype=torch.float64)
    k = 2.5
    for label, expected in (
        (1, -torch.sigmoid(-k * x) * torch.log(torch.sigmoid(x))),
        (0, -torch.sigmoid(k * x) * torch.log(torch.sigmoid(-x))),
    ):
        t = torch.full((4,), label)
        torch.testing.assert_close(L.binary_soft_truncation(x, t, sharpness=k, reduction="none"), expected)
    # Large K: the weight becomes the step theta(-x), i.e. hard truncation at m = 0.5.
    t = torch.ones(4, dtype=torch.long)
    step = (x < 0).double() * -F.logsigmoid(x)
    torch.testing.assert_close(L.binary_soft_truncation(x, t, sharpness=200.0, reduction="none"), step)


def test_soft_truncation_formula_and_binary_case(batch):
    x, y = batch
    k = 0.7
    kept = y != -100
    idx = torch.arange(int(kept.sum()))
    expected = -torch.softmax(-k * x[kept], 1)[idx, y[kept]] * torch.log_softmax(x[kept], 1)[idx, y[kept]]
    torch.testing.assert_close(L.soft_truncation(x, y, sharpness=k, reduction="none")[kept], expected)
    # Two classes: the binary form on the logit difference.
    two, t = x[:, :2], y.clamp(min=0) % 2
    diff = two[:, 1] - two[:, 0]
    torch.testing.assert_close(
        L.soft_truncation(two, t, sharpness=k, reduction="none"),
        L.binary_soft_truncation(diff, t, sharpness=k, reduction="none"),
    )
    with pytest.raises(ValueError, match="sharpness must be finite and > 0"):
        L.soft_truncation(x, y, sharpness=0.0)


# ---------------------------------------------------------------- class weights


def test_balanced_class_weights_match_scikit_learn():
    labels = np.random.default_rng(0).choice(6, size=500, p=[0.5, 0.2, 0.15, 0.1, 0.04, 0.01])
    counts = torch.from_numpy(np.bincount(labels, minlength=6))
    expected = compute_class_weight("balanced", classes=np.arange(6), y=labels)
    ours = L.balanced_class_weights(counts)
    assert ours.dtype == torch.get_default_dtype()
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-6)
    assert L.balanced_class_weights(counts.double()).dtype == torch.float64


def test_effective_number_weights():
    counts = [1000, 100, 10, 1]
    beta = 0.999
    raw = np.array([(1 - beta) / (1 - beta**n) for n in counts])
    expected = raw / raw.sum() * len(counts)
    torch.testing.assert_close(L.effective_number_weights(torch.tensor(counts, dtype=torch.float64), beta),
                               torch.from_numpy(expected))
    assert float(L.effective_number_weights(counts, beta).sum()) == pytest.approx(4.0)
    # beta = 0: uniform; beta -> 1: inverse frequency.
    torch.testing.assert_close(L.effective_number_weights(counts, 0.0), torch.ones(4))
    inverse = 1 / torch.tensor(counts, dtype=torch.float64)
    torch.testing.assert_close(
        L.effective_number_weights(torch.tensor(counts, dtype=torch.float64), 1 - 1e-12),
        inverse / inverse.sum() * 4,
        rtol=1e-6,
        atol=0,
    )


@pytest.mark.parametrize("function", [L.balanced_class_weights, L.effective_number_weights])
def test_class_weights_reject_bad_counts(function):
    with pytest.raises(ValueError, match=r"class_counts must be positive.*classes \[1\]"):
        function([5, 0, 3])
    with pytest.raises(ValueError, match="class_counts must be positive"):
        function([5, -2, 3])
    with pytest.raises(ValueError, match="class_counts must be a non-empty 1-D"):
        function([[5, 2, 3]])


@pytest.mark.parametrize("beta", [1.0, -0.1, 1.5])
def test_effective_number_weights_reject_beta_outside_unit_interval(beta):
    with pytest.raises(ValueError, match=rf"beta must lie in \[0.0, 1.0\), got {beta}"):
        L.effective_number_weights([5, 2, 3], beta)


# ---------------------------------------------------------------- logit adjustment, balanced softmax


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_logit_adjustment_tau_zero_is_cross_entropy(batch, reduction):
    x, y = batch
    torch.testing.assert_close(
        L.logit_adjusted_cross_entropy(x, y, class_counts=COUNTS, tau=0.0, reduction=reduction),
        F.cross_entropy(x, y, reduction=reduction),
    )


@pytest.mark.parametrize("tau", [0.5, 1.0, 1.7])
def test_logit_adjustment_adds_scaled_log_priors(batch, tau):
    x, y = batch
    log_prior = torch.log(COUNTS / COUNTS.sum())
    torch.testing.assert_close(
        L.logit_adjusted_cross_entropy(x, y, class_counts=COUNTS, tau=tau, reduction="none"),
        F.cross_entropy(x + tau * log_prior, y, reduction="none"),
    )


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_balanced_softmax_equals_logit_adjustment_with_tau_one(batch, reduction):
    x, y = batch
    ours = L.balanced_softmax(x, y, class_counts=COUNTS, reduction=reduction)
    torch.testing.assert_close(ours, F.cross_entropy(x + torch.log(COUNTS), y, reduction=reduction))
    adjusted = L.logit_adjusted_cross_entropy(x, y, class_counts=COUNTS, tau=1.0, reduction=reduction)
    torch.testing.assert_close(ours, adjusted)
    # Priors instead of counts: the same loss.
    priors = COUNTS / COUNTS.sum()
    torch.testing.assert_close(ours, L.balanced_softmax(x, y, class_counts=priors, reduction=reduction))


def test_post_hoc_logit_adjustment_moves_predictions_to_rare_classes():
    """Three unit-variance Gaussians with priors 0.8 / 0.15 / 0.05; the exact posterior as "model"."""
    means = torch.tensor([-1.5, 0.0, 1.5], dtype=torch.float64)
    priors = torch.tensor([0.8, 0.15, 0.05], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(2000)  # a balanced test set
    x = means[labels] + torch.randn(len(labels), generator=g, dtype=torch.float64)
    log_lik = -0.5 * (x[:, None] - means) ** 2
    posterior_logits = log_lik + torch.log(priors)  # what a CE-trained model estimates, up to a constant

    adjusted = L.logit_adjust(posterior_logits, priors * 1000)
    torch.testing.assert_close(adjusted, log_lik)  # counts are normalised to priors
    before, after = posterior_logits.argmax(1), adjusted.argmax(1)
    torch.testing.assert_close(after, log_lik.argmax(1))  # the balanced-error Bayes rule
    moved = before != after
    assert int(moved.sum()) > 0
    assert bool((priors[after[moved]] < priors[before[moved]]).all()), "moves only go to rarer classes"
    assert int((after == 2).sum()) > int((before == 2).sum())
    assert int((after == 0).sum()) < int((before == 0).sum())

    def balanced_accuracy(pred):
        return float(torch.stack([(pred[labels == c] == c).double().mean() for c in range(3)]).mean())

    assert balanced_accuracy(after) > balanced_accuracy(before) + 0.1
    # tau = 0 changes nothing; fp16 in, fp16 out.
    torch.testing.assert_close(L.logit_adjust(posterior_logits, priors, tau=0.0), posterior_logits)
    assert L.logit_adjust(posterior_logits.half(), priors).dtype == torch.float16


def test_logit_adjust_rejects_bad_inputs():
    s = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="class_counts must be positive"):
        L.logit_adjust(s, [3.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"class_counts must have shape \(3,\)"):
        L.logit_adjust(s, [3.0, 1.0])
    with pytest.raises(ValueError, match="tau must be finite and >= 0"):
        L.logit_adjust(s, [3.0, 2.0, 1.0], tau=-1.0)
    with pytest.raises(ValueError, match="logits"):
        L.logit_adjust(torch.zeros(4, 3, dtype=torch.long), [3.0, 2.0, 1.0])


# ---------------------------------------------------------------- LDAM and DRW


def ldam_by_loop(x, y, counts, max_margin, scale, weight=None):
    """Per-sample LDAM re-derived from the paper, one sample at a time (independent of the library)."""
    raw = [1.0 / float(n) ** 0.25 for n in counts]
    margins = [max_margin * r / max(raw) for r in raw]
    losses, weights = [], []
    for i in range(x.shape[0]):
        if int(y[i]) == -100:
            continue
        c = int(y[i])
        z = [scale * (float(x[i, j]) - (margins[c] if j == c else 0.0)) for j in range(x.shape[1])]
        top = max(z)
        w = 1.0 if weight is None else float(weight[c])
        losses.append(w * (top + math.log(sum(math.exp(v - top) for v in z)) - z[c]))
        weights.append(w)
    return torch.tensor(losses, dtype=torch.float64), sum(weights)


@pytest.mark.parametrize("max_margin, scale", [(0.5, 30.0), (0.8, 5.0), (0.1, 1.0)])
@pytest.mark.parametrize("weighted", [False, True])
def test_ldam_matches_a_per_sample_rederivation(batch, max_margin, scale, weighted):
    x, y = batch
    x = x / 3  # cosine-like logits, as LDAM expects
    weight = L.effective_number_weights(COUNTS, 0.999) if weighted else None
    per_sample, total_weight = ldam_by_loop(x, y, COUNTS.tolist(), max_margin, scale, weight)
    kept = y != -100
    kw = dict(class_counts=COUNTS, max_margin=max_margin, scale=scale, weight=weight)
    torch.testing.assert_close(L.ldam(x, y, reduction="none", **kw)[kept], per_sample)
    torch.testing.assert_close(L.ldam(x, y, **kw), per_sample.sum() / total_weight)


def test_ldam_without_margin_is_scaled_cross_entropy(batch):
    x, y = batch
    torch.testing.assert_close(
        L.ldam(x, y, class_counts=COUNTS, max_margin=0.0, scale=4.0), F.cross_entropy(4.0 * x, y)
    )
    with pytest.raises(ValueError, match="scale must be finite and > 0"):
        L.ldam(x, y, class_counts=COUNTS, scale=0.0)
    with pytest.raises(ValueError, match="max_margin must be finite and >= 0"):
        L.ldam(x, y, class_counts=COUNTS, max_margin=-0.1)


def test_drw_weights_switch_on_at_start_epoch():
    assert L.drw_weights(0, COUNTS, start_epoch=160) is None
    assert L.drw_weights(159, COUNTS, start_epoch=160) is None
    for epoch in (160, 199):
        weights = L.drw_weights(epoch, COUNTS, start_epoch=160)
        torch.testing.assert_close(weights, L.effective_number_weights(COUNTS))
    torch.testing.assert_close(
        L.drw_weights(3, COUNTS, start_epoch=0, beta=0.99), L.effective_number_weights(COUNTS, 0.99)
    )
    with pytest.raises(ValueError, match="epoch must be a non-negative integer, got -1"):
        L.drw_weights(-1, COUNTS, start_epoch=160)
    with pytest.raises(ValueError, match="start_epoch"):
        L.drw_weights(3, COUNTS, start_epoch=2.5)
    with pytest.raises(ValueError, match="epoch must be a non-negative integer, got True"):
        L.drw_weights(True, COUNTS, start_epoch=0)


def test_ldam_module_applies_deferred_reweighting_on_schedule():
    from lossbench.losses import LDAMLoss, drw_weights, ldam

    counts = torch.tensor([100.0, 20.0, 5.0])
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(9, 3, generator=gen), torch.randint(0, 3, (9,), generator=gen)
    loss = LDAMLoss(class_counts=counts, drw_start=0.75)
    for epoch in range(8):
        loss.set_epoch(epoch, 8)
        weight = drw_weights(epoch, counts, start_epoch=6)
        torch.testing.assert_close(loss(x, y), ldam(x, y, class_counts=counts, weight=weight))
        assert (loss.weight is None) == (epoch < 6)
    listed = LDAMLoss(class_counts=counts.tolist(), drw_start=0.75)  # counts as a list, as the function takes them
    assert isinstance(listed.class_counts, torch.Tensor)  # a buffer: it and the weights move with .to(device)
    listed.set_epoch(7, 8)
    torch.testing.assert_close(listed(x, y), ldam(x, y, class_counts=counts, weight=drw_weights(7, counts, start_epoch=6)))
    plain = LDAMLoss(class_counts=counts)
    plain.set_epoch(7, 8)
    torch.testing.assert_close(plain(x, y), ldam(x, y, class_counts=counts))
    with pytest.raises(ValueError, match="drw_start"):
        LDAMLoss(class_counts=counts, drw_start=1.5)
    with pytest.raises(ValueError, match="weight="):
        LDAMLoss(class_counts=counts, drw_start=0.5, weight=torch.ones(3))


def test_ldam_with_deferred_reweighting_round_trips_its_state_dict():
    from lossbench.losses import LDAMLoss

    counts = torch.tensor([100.0, 20.0, 5.0])
    x, y = torch.randn(6, 3, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0, 1, 2])
    saved = LDAMLoss(class_counts=counts, drw_start=0.5)
    saved.set_epoch(7, 8)  # re-weighting
    fresh = LDAMLoss(class_counts=counts, drw_start=0.5)
    fresh.load_state_dict(saved.state_dict())  # (the weights are set_epoch's, not state)
    assert "weight" not in saved.state_dict()
    fresh.set_epoch(7, 8)
    torch.testing.assert_close(fresh(x, y), saved(x, y))
    saved.load_state_dict(LDAMLoss(class_counts=counts, drw_start=0.5).state_dict())  # and back


def test_ldam_with_deferred_reweighting_takes_weight_none():
    # weight=None, the function's default, given beside drw_start: once passed twice from the first set_epoch on
    from lossbench.losses import LDAMLoss, drw_weights, ldam

    counts = torch.tensor([100.0, 10.0, 1.0])
    x, y = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0])
    loss = LDAMLoss(class_counts=counts, drw_start=0.5, weight=None)
    for epoch in range(4):
        loss.set_epoch(epoch, 4)
        torch.testing.assert_close(loss(x, y), ldam(x, y, class_counts=counts, weight=drw_weights(epoch, counts, start_epoch=2)))


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_weighted_cross_entropy_is_pytorch_with_sklearn_balanced_weights(batch, power, reduction):
    from lossbench.losses.imbalance import weighted_cross_entropy

    x, y = batch
    labels = np.repeat(np.arange(len(COUNTS)), COUNTS.long().numpy())
    balanced = compute_class_weight("balanced", classes=np.arange(len(COUNTS)), y=labels)
    weight = torch.tensor(balanced, dtype=x.dtype) ** power
    per_sample = F.cross_entropy(x, y, weight=weight, reduction="none")
    # "mean": the weighted per-sample losses over the counted targets, not over their summed weights
    expected = {"none": per_sample, "sum": per_sample.sum(), "mean": per_sample.sum() / (y != -100).sum()}[reduction]
    torch.testing.assert_close(weighted_cross_entropy(x, y, class_counts=COUNTS, power=power, reduction=reduction), expected)


def test_focal_at_gamma_0_stays_finite_where_a_log_of_one_minus_p_is_minus_inf():
    # (1 - p)^0 is 1 also where log(1 - p) = -inf (a masked rival; a true class with every rival masked):
    # exp(0 * -inf) was NaN in the value and the gradient
    inf = float("inf")
    x = torch.tensor([[2.0, -inf, 0.5]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0])
    value = L.one_vs_all_focal(x, y, gamma=0.0, validate=False)
    value.backward()
    expected = -F.logsigmoid(torch.tensor(2.0, dtype=torch.float64)) - F.logsigmoid(torch.tensor(-0.5, dtype=torch.float64))
    torch.testing.assert_close(value, expected)
    assert torch.isfinite(x.grad).all() and x.grad[0, 1] == 0
    sure = torch.tensor([[3.0, -inf, -inf]], dtype=torch.float64, requires_grad=True)  # p_y = 1: log(1 - p_y) = -inf
    L.focal(sure, y, gamma=0.0, validate=False).backward()
    assert torch.isfinite(sure.grad).all()
