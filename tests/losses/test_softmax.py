"""The class-major log-softmax and cross-entropy give PyTorch's values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lossbench.losses import _softmax

ROWS = 1024  # with 4 to 15 classes: at least CLASS_MAJOR_FROM entries, so the class-major path runs


def test_the_class_major_path_is_taken_only_where_it_pays():
    assert _softmax.class_major(torch.zeros(ROWS, 10))
    assert not _softmax.class_major(torch.zeros(ROWS, _softmax.CLASS_MAJOR_BELOW))  # PyTorch's vectors apply
    assert not _softmax.class_major(torch.zeros(8, 10))  # too small to pay for the transposition
    assert not _softmax.class_major(torch.zeros(2, ROWS, 10))


def _grad(fn, x):
    x = x.clone().requires_grad_()
    out = fn(x)
    (g,) = torch.autograd.grad(out.sum() if out.ndim else out, x)
    return out.detach(), g


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("classes", [4, 7, 10, 15])
def test_log_softmax_matches_pytorch(classes, dtype):
    x = torch.randn(ROWS, classes, generator=torch.Generator().manual_seed(classes), dtype=dtype) * 5
    assert _softmax.class_major(x)
    out, grad = _grad(_softmax.log_softmax, x)
    ref, ref_grad = _grad(lambda t: F.log_softmax(t, dim=1), x)
    # float32: PyTorch's scalar loop adds the classes in the same order (the same bits); float64's
    # last-dimension kernel is vectorised from 8 classes on and rounds differently.
    tol = 0 if dtype == torch.float32 else 4 * torch.finfo(dtype).eps  # an ulp or two
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
    torch.testing.assert_close(grad, ref_grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("classes", [4, 10, 15])
def test_log_softmax_rows_past_the_last_whole_vector_are_within_an_ulp(classes):
    """Rows of a last, partial vector of 16 go through another exp in the class-major kernel: in
    float32 they may round an ulp apart from PyTorch's (every row before them has the same bits)."""
    rows = ROWS + 13
    x = torch.randn(rows, classes, generator=torch.Generator().manual_seed(classes), dtype=torch.float32) * 5
    out, ref = _softmax.log_softmax(x), F.log_softmax(x, dim=1)
    torch.testing.assert_close(out[:ROWS], ref[:ROWS], rtol=0, atol=0)
    torch.testing.assert_close(out, ref, rtol=2 * torch.finfo(torch.float32).eps, atol=1e-6)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"label_smoothing": 0.1}, {"weight": "w"}, {"ignore_index": 1}, {"weight": "w", "label_smoothing": 0.2, "ignore_index": 1}],
    ids=["plain", "smoothing", "weight", "ignore", "all"],
)
def test_cross_entropy_matches_pytorch(kwargs, reduction):
    gen = torch.Generator().manual_seed(0)
    classes = 10
    x = torch.randn(ROWS, classes, generator=gen, dtype=torch.float64) * 3
    y = torch.randint(0, classes, (ROWS,), generator=gen)
    if kwargs.get("weight") == "w":
        kwargs = {**kwargs, "weight": torch.rand(classes, generator=gen, dtype=torch.float64) + 0.5}
    kwargs = {**kwargs, "reduction": reduction}
    out, grad = _grad(lambda t: _softmax.cross_entropy(t, y, **kwargs), x)
    ref, ref_grad = _grad(lambda t: F.cross_entropy(t, y, **kwargs), x)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-13, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-15)


def _rows_and_targets(rows: int, classes: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rows, classes, generator=gen, dtype=dtype) * 4, torch.randint(0, classes, (rows,), generator=gen)


@pytest.mark.parametrize("class_major", [True, False], ids=["class-major", "row-major"])
def test_at_target_is_the_gather_in_either_layout(class_major):
    x, y = _rows_and_targets(ROWS, 10, torch.float64)
    laid = x.t().contiguous().t() if class_major else x  # (the layout log_softmax gives a large call)
    out, grad = _grad(lambda t: _softmax.at_target(t * 1.5, y), laid)
    ref, ref_grad = _grad(lambda t: (t * 1.5).gather(1, y[:, None]).squeeze(1), x)
    assert torch.equal(out, ref) and torch.equal(grad, ref_grad)


def _rival_mass_reference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``log sum_{j != y} p_j`` from the logits, in float64: the rivals' log-sum-exp minus every class's."""
    x = x.double()
    rivals = torch.ones_like(x, dtype=torch.bool).scatter_(1, y[:, None], False)
    return torch.logsumexp(x.masked_fill(~rivals, -torch.inf), dim=1) - torch.logsumexp(x, dim=1)


@pytest.mark.parametrize("rows", [ROWS, 8], ids=["large call", "small call"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_rival_mass_is_the_rivals_log_sum_exp(rows, dtype):
    """Both ways (a large call's shifted sum, a small call's masked logsumexp) give the rivals' log-sum-exp and
    its gradient, also where the true class holds all but 1e-80 of the mass (1 - p_y would round to 0)."""
    x, y = _rows_and_targets(rows, 10, dtype)
    x[::3] = x[::3].scatter(1, y[::3, None], 200.0 if dtype == torch.float64 else 120.0)  # confident rows
    out, grad = _grad(lambda t: _softmax.log_rival_mass(_softmax.log_softmax(t), y), x)
    ref, ref_grad = _grad(lambda t: _rival_mass_reference(t, y), x)
    assert out.dtype == dtype and bool((ref[::3] < -40).all())
    # from log-probabilities of -190 (their ulp 3e-14) in float64; a few ulps in float32
    tol = 1e-13 if dtype == torch.float64 else 16 * torch.finfo(dtype).eps
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
    torch.testing.assert_close(grad.double(), ref_grad.double(), rtol=tol, atol=tol)


@pytest.mark.parametrize("rows", [ROWS, 8], ids=["large call", "small call"])
def test_log_rival_mass_of_rivals_at_minus_inf_and_of_one_class_is_finite_with_a_zero_gradient(rows):
    x, y = _rows_and_targets(rows, 4, torch.float32)
    x[:, 1:] = -torch.inf
    y = torch.zeros_like(y)
    for logits, target in ((x, y), (x[:, :1].expand(rows, 1).clone(), y)):
        logits.requires_grad_()
        log_p = torch.cat([torch.zeros_like(logits[:, :1]), logits[:, 1:] - logits[:, :1]], 1)  # (no -inf - -inf)
        out = _softmax.log_rival_mass(log_p, target)
        (grad,) = torch.autograd.grad(out.sum(), logits)
        assert bool(torch.isfinite(out).all()) and float(out.detach().max()) <= torch.finfo(torch.float32).min / 2
        assert bool((grad == 0).all())
