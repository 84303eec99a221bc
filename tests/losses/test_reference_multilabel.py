"""Reference tests: ZLPR (dense, sparse), binary cross-entropy, ASL and the n-way m-class loss."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lossbench import losses as L

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True)
IGNORE = -100


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(12, 7, generator=g, dtype=torch.float64)
    t = (torch.rand(12, 7, generator=g) < 0.3).double()
    t[0], t[1] = 0.0, 1.0  # a row without positives and one without negatives
    return x, t


def zlpr_reference(x, t):
    """``log(1 + sum t e^{-s}) + log(1 + sum (1 - t) e^{s})`` row by row, straight from the formula."""
    rows = [
        torch.log(1 + (ti * torch.exp(-xi)).sum()) + torch.log(1 + ((1 - ti) * torch.exp(xi)).sum())
        for xi, ti in zip(x, t)
    ]
    return torch.stack(rows)


def dense_from_sparse(index, num_classes):
    t = torch.zeros(index.shape[0], num_classes + 1, dtype=torch.float64)
    t.scatter_(1, torch.where(index == IGNORE, num_classes, index), 1.0)
    return t[:, :num_classes]


# --- ZLPR, dense labels -------------------------------------------------------------------------


def test_zlpr_hard_labels_equal_the_positive_negative_formula(batch):
    x, t = batch
    expected = torch.stack(
        [
            torch.log(1 + torch.exp(-xi[ti == 1]).sum()) + torch.log(1 + torch.exp(xi[ti == 0]).sum())
            for xi, ti in zip(x, t)
        ]
    )
    torch.testing.assert_close(L.zlpr(x, t, reduction="none"), expected)
    torch.testing.assert_close(L.zlpr(x, t), expected.mean())


def test_zlpr_soft_labels_equal_the_formula(batch):
    x, _ = batch
    t = torch.rand(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(L.zlpr(x, t, reduction="none"), zlpr_reference(x, t))


def test_zlpr_snaps_labels_within_eps_of_zero_and_one(batch):
    x, t = batch
    nearly = t * (1 - 1e-9) + (1 - t) * 1e-9
    assert torch.equal(L.zlpr(x, nearly, reduction="none"), L.zlpr(x, t, reduction="none"))
    # Outside eps the label counts as soft.
    assert not torch.equal(L.zlpr(x, nearly, eps=1e-10, reduction="none"), L.zlpr(x, t, reduction="none"))
    with pytest.raises(ValueError, match="eps"):
        L.zlpr(x, t, eps=0.0)


def test_zlpr_soft_label_stationary_point_is_sigmoid_of_twice_the_logit():
    t = torch.tensor([[0.05, 0.3, 0.5, 0.8, 0.97], [0.6, 0.1, 0.9, 0.4, 0.2]], dtype=torch.float64)
    s = (torch.logit(t) / 2).requires_grad_(True)  # sigmoid(2 s) = t
    L.zlpr(s, t, reduction="sum").backward()
    torch.testing.assert_close(s.grad, torch.zeros_like(s), atol=1e-12, rtol=0)
    # Minimising over s from 0 lands on the same point.
    s = torch.zeros_like(t, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [s], max_iter=500, tolerance_grad=1e-12, tolerance_change=0, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        loss = L.zlpr(s, t, reduction="sum")
        loss.backward()
        return loss

    optimizer.step(closure)
    torch.testing.assert_close(L.zlpr_probabilities(s.detach()), t, atol=1e-6, rtol=0)


def test_zlpr_predict_thresholds_at_zero():
    s = torch.tensor([[-1.0, 0.0, 2.0]])
    assert L.zlpr_predict(s).tolist() == [[False, False, True]]
    torch.testing.assert_close(L.zlpr_probabilities(s), torch.sigmoid(2 * s))


def test_zlpr_half_precision_masks_do_not_overflow():
    x = torch.tensor([[60000.0, -60000.0, 3.0]], dtype=torch.float16, requires_grad=True)
    t = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float16)
    loss = L.zlpr(x, t)
    loss.backward()
    assert loss.dtype == torch.float16 and torch.isfinite(loss) and torch.isfinite(x.grad).all()
    torch.testing.assert_close(loss.float(), torch.log1p(torch.exp(torch.tensor(-3.0))), atol=1e-3, rtol=0)


# --- ZLPR, sparse labels ------------------------------------------------------------------------


@pytest.fixture
def sparse_batch():
    g = torch.Generator().manual_seed(3)
    x = 3 * torch.randn(5, 9, generator=g, dtype=torch.float64)
    index = torch.tensor(
        [[0, 4, 8, 2], [3, IGNORE, IGNORE, IGNORE], [IGNORE] * 4, [7, IGNORE, 1, IGNORE], [5, 6, 0, 1]]
    )
    return x, index


def test_zlpr_sparse_equals_dense_on_the_same_labels(sparse_batch):
    x, index = sparse_batch
    dense = dense_from_sparse(index, x.shape[1])
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    sparse_loss, dense_loss = L.zlpr_sparse(a, index, reduction="none"), L.zlpr(b, dense, reduction="none")
    torch.testing.assert_close(sparse_loss, dense_loss)
    sparse_loss.sum().backward()
    dense_loss.sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_zlpr_sparse_equals_su_log_difference_form_in_double_precision(sparse_batch):
    """Su's sparse formula, exact in float64 at moderate logits: negative term a + log(1 - e^{b - a})."""
    x, index = sparse_batch
    listed = index != IGNORE
    s_pos = x.gather(1, torch.where(listed, index, 0))
    zero = torch.zeros(len(x), 1, dtype=x.dtype)
    a = torch.logsumexp(torch.cat([zero, x], 1), 1)
    b = torch.logsumexp(torch.where(listed, s_pos, -math.inf), 1)
    negative = a + torch.log(-torch.expm1(b - a))
    positive = torch.logsumexp(torch.cat([zero, torch.where(listed, -s_pos, -math.inf)], 1), 1)
    torch.testing.assert_close(L.zlpr_sparse(x, index, reduction="none"), positive + negative)


def test_zlpr_sparse_is_accurate_in_float32_at_confident_positives():
    x = torch.full((1, 20), -5.0, dtype=torch.float64)
    x[0, :3] = 20.0
    index = torch.tensor([[0, 1, 2]])
    exact = L.zlpr(x, dense_from_sparse(index, 20))
    x32 = x.float().requires_grad_(True)
    loss = L.zlpr_sparse(x32, index)
    loss.backward()
    torch.testing.assert_close(loss.double(), exact, rtol=1e-6, atol=0)
    # The negative term does not depend on the positives' logits.
    assert abs(float(x32.grad[0, 0]) + math.exp(-20) / (1 + 3 * math.exp(-20))) < 1e-12


def test_zlpr_sparse_rejects_bad_index_lists(sparse_batch):
    x, index = sparse_batch
    for bad_value in (9, -1):
        bad = index.clone()
        bad[1, 1] = bad_value
        with pytest.raises(ValueError, match=f"class index {bad_value} outside \\[0, 9\\)"):
            L.zlpr_sparse(x, bad)
    repeated = index.clone()
    repeated[3, 2] = 7
    with pytest.raises(ValueError, match="row 3 lists a positive class more than once"):
        L.zlpr_sparse(x, repeated)
    with pytest.raises(ValueError, match="shape"):
        L.zlpr_sparse(x, index[:, 0])


# --- Binary cross-entropy and ASL ---------------------------------------------------------------


@pytest.mark.parametrize("pos_weight", [None, 2.5, "per_label", "per_label_list"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_binary_cross_entropy_equals_pytorch(batch, pos_weight, reduction):
    x, t = batch
    if pos_weight in ("per_label", "per_label_list"):  # a list is a tensor written out, as in a spec
        weights = torch.linspace(0.5, 3.0, x.shape[1], dtype=torch.float64)
        pos_weight = weights if pos_weight == "per_label" else weights.tolist()
    ours = L.binary_cross_entropy(x, t, pos_weight=pos_weight, reduction=reduction)
    pw = torch.as_tensor(pos_weight, dtype=torch.float64) if pos_weight is not None else None
    expected = F.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction=reduction)
    torch.testing.assert_close(ours, expected)


def test_binary_cross_entropy_rejects_bad_pos_weight(batch):
    x, t = batch
    with pytest.raises(ValueError, match="pos_weight must be a scalar or have shape \\(7,\\)"):
        L.binary_cross_entropy(x, t, pos_weight=torch.ones(3))
    with pytest.raises(ValueError, match="pos_weight must hold finite non-negative"):
        L.binary_cross_entropy(x, t, pos_weight=-1.0)
    with pytest.raises(ValueError, match="pos_weight must be a number, got True"):
        L.binary_cross_entropy(x, t, pos_weight=[1.0, True])


def asl_official_form(x, y, gamma_neg, gamma_pos, clip):
    """The official implementation's forward (Alibaba-MIIL/ASL, AsymmetricLoss), per element."""
    xs_pos = torch.sigmoid(x)
    xs_neg = 1 - xs_pos
    if clip > 0:
        xs_neg = (xs_neg + clip).clamp(max=1)
    loss = y * torch.log(xs_pos) + (1 - y) * torch.log(xs_neg)
    pt = xs_pos * y + xs_neg * (1 - y)
    return -loss * torch.pow(1 - pt, gamma_pos * y + gamma_neg * (1 - y))


@pytest.mark.parametrize("gammas_clip", [(4, 1, 0.05), (2, 0, 0.2), (0.5, 0.5, 0.0), (0, 0, 0)])
def test_asl_equals_the_official_formula(batch, gammas_clip):
    x, t = batch
    gamma_neg, gamma_pos, clip = gammas_clip
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours = L.asymmetric_loss(a, t, gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip, reduction="sum")
    expected = asl_official_form(b, t, gamma_neg, gamma_pos, clip).sum()
    torch.testing.assert_close(ours, expected)
    ours.backward()
    expected.backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_asl_keeps_the_gradient_of_confidently_wrong_negatives_in_float32():
    # (the weight (sigmoid(s) - clip) ** 4 read sigmoid(s) rounded to 1 from s = 17 in float32: its factor of the
    # gradient was 0, the gradient about 39 % short)
    grads = []
    for dtype in (torch.float32, torch.float64):
        x = torch.tensor([17.0, 20.0, 30.0], dtype=dtype, requires_grad=True)
        L.asymmetric_loss(x, torch.zeros(3), reduction="sum").backward()
        grads.append(x.grad.double())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=0.0)


def test_asl_without_focusing_or_shift_is_binary_cross_entropy(batch):
    x, t = batch
    torch.testing.assert_close(
        L.asymmetric_loss(x, t, gamma_neg=0, gamma_pos=0, clip=0, reduction="none"),
        F.binary_cross_entropy_with_logits(x, t, reduction="none"),
    )


def test_asl_soft_labels_mix_the_two_terms(batch):
    x, _ = batch
    t = torch.rand(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    pos = asl_official_form(x, torch.ones_like(x), 4, 1, 0.05)
    neg = asl_official_form(x, torch.zeros_like(x), 4, 1, 0.05)
    torch.testing.assert_close(L.asymmetric_loss(x, t, reduction="none"), t * pos + (1 - t) * neg)


@pytest.mark.parametrize("gammas", [(4.0, 1.0), (0.5, 0.25)])
def test_asl_is_finite_at_extreme_logits_with_fractional_exponents(gammas):
    x = torch.tensor([1e4, -1e4, 1e4, -1e4, 0.0, -2.9444], requires_grad=True)  # sigmoid(-2.9444) ~ clip
    t = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    loss = L.asymmetric_loss(x, t, gamma_neg=gammas[0], gamma_pos=gammas[1], reduction="sum")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_asl_rejects_bad_hyperparameters(batch):
    x, t = batch
    with pytest.raises(ValueError, match="gamma_neg must be finite and >= 0"):
        L.asymmetric_loss(x, t, gamma_neg=-1)
    with pytest.raises(ValueError, match="clip must lie in \\[0.0, 1.0\\)"):
        L.asymmetric_loss(x, t, clip=1.0)


# --- n-way m-class ------------------------------------------------------------------------------


def nway_reference(x, y):
    """``sum_j log(1 + sum_i sum_{k != j} t_ij e^{s_ik - s_ij})`` by explicit loops."""
    losses = []
    for xb, yb in zip(x, y):
        n, m = xb.shape
        total = 0.0
        for j in range(m):
            inner = sum(
                math.exp(xb[i, k] - xb[i, j]) for i in range(n) if yb[i] == j for k in range(m) if k != j
            )
            total += math.log1p(inner)
        losses.append(total)
    return torch.tensor(losses, dtype=torch.float64)


def test_nway_mclass_equals_the_formula():
    g = torch.Generator().manual_seed(5)
    x = 2 * torch.randn(6, 5, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (6, 5), generator=g)
    torch.testing.assert_close(L.nway_mclass(x, y, reduction="none"), nway_reference(x, y))


def test_nway_mclass_with_two_classes_is_zlpr():
    g = torch.Generator().manual_seed(6)
    x = 2 * torch.randn(8, 6, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (8, 6), generator=g)
    torch.testing.assert_close(
        L.nway_mclass(x, y, reduction="none"), L.zlpr(x[..., 1] - x[..., 0], y.double(), reduction="none")
    )


def test_nway_mclass_ignored_tasks_are_dropped():
    g = torch.Generator().manual_seed(7)
    x = 2 * torch.randn(3, 4, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (3, 4), generator=g)
    ignored = y.clone()
    ignored[0, 1] = ignored[2, 3] = IGNORE
    ignored[1] = IGNORE  # a sample without a labelled task
    expected = [
        L.nway_mclass(x[0:1, [0, 2, 3]], y[0:1, [0, 2, 3]], reduction="sum"),
        torch.tensor(0.0, dtype=torch.float64),
        L.nway_mclass(x[2:3, :3], y[2:3, :3], reduction="sum"),
    ]
    torch.testing.assert_close(L.nway_mclass(x, ignored, reduction="none"), torch.stack(expected))
    torch.testing.assert_close(L.nway_mclass(x, ignored), (expected[0] + expected[2]) / 2)


# --- Properties ---------------------------------------------------------------------------------


@st.composite
def multilabel_case(draw, soft=True):
    b, c = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    x = draw(st.lists(st.floats(-20, 20), min_size=b * c, max_size=b * c))
    labels = st.floats(0, 1) if soft else st.sampled_from([0.0, 1.0])
    t = draw(st.lists(labels, min_size=b * c, max_size=b * c))
    return (
        torch.tensor(x, dtype=torch.float64).reshape(b, c),
        torch.tensor(t, dtype=torch.float64).reshape(b, c),
    )


@PROPERTY
@given(case=multilabel_case(), seed=st.integers(0, 2**16))
def test_zlpr_is_invariant_to_permuting_labels_with_targets(case, seed):
    x, t = case
    perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(seed))
    expected = L.zlpr(x, t, reduction="none")
    torch.testing.assert_close(L.zlpr(x[:, perm], t[:, perm], reduction="none"), expected)


@PROPERTY
@given(case=multilabel_case(soft=False), seed=st.integers(0, 2**16))
def test_zlpr_sparse_equals_dense_on_any_hard_labels(case, seed):
    x, t = case
    g = torch.Generator().manual_seed(seed)
    width = x.shape[1] + 1  # room for padding in every row
    rows = []
    for row in t:
        positives = row.nonzero().flatten()
        positives = positives[torch.randperm(len(positives), generator=g)]  # any order
        padded = torch.cat([positives, torch.full((width - len(positives),), IGNORE)])
        rows.append(padded[torch.randperm(width, generator=g)])  # padding anywhere
    index = torch.stack(rows)
    torch.testing.assert_close(L.zlpr_sparse(x, index, reduction="none"), L.zlpr(x, t, reduction="none"))


@PROPERTY
@given(case=multilabel_case(soft=False), raise_by=st.floats(0, 10))
def test_asl_falls_as_positives_rise_and_rises_as_negatives_rise(case, raise_by):
    x, t = case
    before = L.asymmetric_loss(x, t, reduction="none")
    after = L.asymmetric_loss(x + raise_by, t, reduction="none")
    assert bool((after[t == 1] <= before[t == 1] + 1e-12).all())
    assert bool((after[t == 0] >= before[t == 0] - 1e-12).all())


@st.composite
def nway_case(draw):
    b, n, m = draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(2, 4))
    x = draw(st.lists(st.floats(-20, 20), min_size=b * n * m, max_size=b * n * m))
    y = draw(st.lists(st.integers(0, m - 1), min_size=b * n, max_size=b * n))
    return torch.tensor(x, dtype=torch.float64).reshape(b, n, m), torch.tensor(y).reshape(b, n)


@PROPERTY
@given(case=nway_case(), seed=st.integers(0, 2**16), shift=st.floats(-50, 50))
def test_nway_mclass_invariances(case, seed, shift):
    """Permuting tasks (with their targets) and shifting one task's logits change nothing."""
    x, y = case
    g = torch.Generator().manual_seed(seed)
    expected = L.nway_mclass(x, y, reduction="none")
    perm = torch.randperm(x.shape[1], generator=g)
    torch.testing.assert_close(L.nway_mclass(x[:, perm], y[:, perm], reduction="none"), expected)
    shifted = x.clone()
    shifted[:, int(torch.randint(0, x.shape[1], (1,), generator=g))] += shift
    torch.testing.assert_close(L.nway_mclass(shifted, y, reduction="none"), expected)
