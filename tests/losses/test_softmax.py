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
