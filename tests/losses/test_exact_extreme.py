"""EXACT at extreme logits: the limits P -> 1 and P -> 0, finite, with the right gradients.

Rows with target 0 and C classes, the gap g in logit units (sigma 1 unless said):

- "ahead"  ``(g, 0, ..., 0)``: P -> 1, so 1 - P and -log P are 0 with no gradient;
- "behind" ``(-g, 0, ..., 0)``: P -> 0; -log P = (C - 1) g^2 / (2 C) to leading order (the true class's
  noise and the C - 1 rivals' meet at the water level t* = (C - 1) g / C), d(-log P)/ds_0 = -(C - 1) g / C
  and g / C for each rival;
- "rival ahead" ``(0, g, 0, ..., 0)``: P -> 0; -log P = g^2 / 4, its gradient -g/2 and g/2;
- "rival behind" ``(0, -g, 0, ..., 0)``: the far rival drops out: the loss and gradient of the other
  C - 1 classes, all tied (P = 1 / (C - 1)); for C = 2 that is "ahead".

The neglected terms of the leading order are O(C log g) against g^2: below 1e-7 relatively from
g = 1e5 on; at g = 1e3 the references are float64 results (the quadrature is exact there), and
central finite differences check the float64 gradient.  Before the fix these gave NaN losses and
gradients from g = 1e17 in float32 (3 and more classes), NaN gradients from 3e9 in float64 and
wrong ones (off by 1e13) from 1e8 with two classes, wrong or NaN ones from 1e4 in float32 with
ten classes and more, and NaN from 1e9 in float64 with random rivals.
"""

from __future__ import annotations

import math

import pytest
import torch

from lossbench.losses import exact
from tests.losses.test_exact import backend  # noqa: F401  (a fixture: the kernel and the PyTorch path)

GAPS = (1e3, 1e5, 2e9, 3e9, 1e17, 1e30)
CLASSES = (2, 3, 10)
DTYPES = (torch.float32, torch.float64)
SHAPES = ("ahead", "behind", "rival ahead", "rival behind")


def row(shape: str, c: int, gap: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    x = torch.zeros(1, c, dtype=dtype)
    column, sign = {"ahead": (0, 1), "behind": (0, -1), "rival ahead": (1, 1), "rival behind": (1, -1)}[shape]
    x[0, column] = sign * gap
    return x


def loss_and_grad(x: torch.Tensor, target: torch.Tensor | None = None, **kwargs):
    x = x.clone().requires_grad_(True)
    target = torch.zeros(x.shape[0], dtype=torch.long) if target is None else target
    loss = exact(x, target, reduction="none", **kwargs)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad


def tied_reference(c: int, log_loss: bool) -> tuple[float, torch.Tensor]:
    """Loss and gradient of the "rival behind" row: C - 1 tied classes, the far rival's column 0."""
    if c == 2:
        return 0.0, torch.zeros(2, dtype=torch.float64)
    loss, grad = loss_and_grad(torch.zeros(1, c - 1, dtype=torch.float64), log_loss=log_loss)
    p = 1.0 / (c - 1)
    assert float(loss) == pytest.approx(-math.log(p) if log_loss else 1.0 - p, rel=1e-7)
    return float(loss), torch.cat([grad[0, :1], torch.zeros(1, dtype=torch.float64), grad[0, 1:]])


def leading_order(shape: str, c: int, gap: float) -> tuple[float, torch.Tensor]:
    """-log P and its gradient far in the tail (shapes "behind" and "rival ahead")."""
    grad = torch.zeros(c, dtype=torch.float64)
    if shape == "behind" and c > 2:
        grad[0], grad[1:] = -(c - 1) * gap / c, gap / c
        return (c - 1) * gap * gap / (2 * c), grad
    # one rival g ahead ("behind" with two classes is the same row)
    grad[0], grad[1] = -gap / 2, gap / 2
    return gap * gap / 4, grad


def check_row(shape, c, gap, dtype, log_loss, loss, grad):
    loss, grad = loss.double()[0], grad.double()[0]
    assert torch.isfinite(grad).all(), (shape, c, gap, dtype, log_loss, grad)
    if shape == "ahead" or (shape == "rival behind" and c == 2):
        assert float(loss) == 0.0 and float(grad.abs().max()) == 0.0
    elif shape == "rival behind":
        # the rule's own accuracy (|P - P_ref| < 2e-7 in float64) against the closed form or rule of C - 1
        value, reference = tied_reference(c, log_loss)
        tol = 2e-6 if dtype == torch.float32 else 2e-7
        assert float(loss) == pytest.approx(value, abs=tol)
        torch.testing.assert_close(grad, reference, rtol=0, atol=10 * tol)
    elif not log_loss:  # P -> 0
        assert float(loss) == 1.0 and float(grad.abs().max()) == 0.0
    else:
        value, reference = leading_order(shape, c, gap)
        if gap < 1e4:  # the leading order is not enough yet: float64's own result (its quadrature)
            value64, reference64 = loss_and_grad(row(shape, c, gap), log_loss=True)
            assert float(value64) == pytest.approx(value, rel=1e-3)
            value, reference = float(value64[0]), reference64[0]
        if value > torch.finfo(dtype).max:  # -log P itself is past the dtype's range: inf, honestly
            assert float(loss) == math.inf
        else:
            assert float(loss) == pytest.approx(value, rel=1e-6)
        # relative to its largest entry; float32's rounding of log h ~ -g^2 limits it at g = 1e3 (the
        # rule's own accuracy in float32 there; from 1e3 on such rows are computed in float64)
        tol = 3e-4 if dtype == torch.float32 and gap < 1e4 else 1e-6
        torch.testing.assert_close(grad, reference, rtol=0, atol=tol * float(reference.abs().max()))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("c", CLASSES)
@pytest.mark.parametrize("log_loss", [False, True], ids=["1-P", "-logP"])
def test_limits_of_the_loss_and_its_gradient(backend, dtype, c, log_loss):
    for gap in GAPS:
        for shape in SHAPES:
            loss, grad = loss_and_grad(row(shape, c, gap, dtype), log_loss=log_loss)
            check_row(shape, c, gap, dtype, log_loss, loss, grad)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_a_batch_of_every_shape_and_gap_has_a_finite_mean(backend, dtype):
    # the reduced loss of a batch mixing the rows above (and the ten-class ones) stays finite
    for c in (3, 10):
        x = torch.cat([row(shape, c, gap, dtype) for shape in SHAPES for gap in GAPS])
        target = torch.zeros(x.shape[0], dtype=torch.long)
        for log_loss in (False, True):
            x_ = x.clone().requires_grad_(True)
            loss = exact(x_, target, log_loss=log_loss, sigma=0.5)
            loss.backward()
            assert torch.isfinite(x_.grad).all()
            assert torch.isfinite(loss) or (log_loss and dtype == torch.float32)  # -log P past 3.4e38
            if not log_loss:
                expected = sum(1.0 - p for p in [1.0] * len(GAPS) + [0.0] * 2 * len(GAPS)) / x.shape[0]
                expected += len(GAPS) * (1.0 - 1.0 / (c - 1)) / x.shape[0]
                assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("c", [3, 10, 100])
@pytest.mark.parametrize("scale", [1e2, 1e3, 1e4, 1e5, 1e7, 1e9, 1e12])
def test_float32_equals_float64_on_random_rivals(backend, c, scale):
    # Random logits times the gap: rows with several rivals far ahead at different margins, the hard
    # case for the rule (float32 went wrong from 1e4 and NaN at 1e17, float64 NaN from 1e9).  float32
    # against float64 on the same (rounded) logits: -log P to 1e-5 relatively, the gradient to 1e-4 of
    # its largest entry (float32's own rounding of log h ~ -m^2 limits it near 1e3).
    gen = torch.Generator().manual_seed(c)
    x64 = (torch.randn(32, c, generator=gen, dtype=torch.float64) * scale).float().double()
    target = torch.randint(0, c, (32,), generator=gen)
    loss32, grad32 = loss_and_grad(x64.float(), target, log_loss=True)
    loss64, grad64 = loss_and_grad(x64, target, log_loss=True)
    assert torch.isfinite(loss64).all() and torch.isfinite(grad64).all() and torch.isfinite(grad32).all()
    finite = loss64 < torch.finfo(torch.float32).max
    assert torch.isinf(loss32[~finite]).all()
    torch.testing.assert_close(loss32.double()[finite], loss64[finite], rtol=1e-5, atol=1e-6)
    norm = grad64.abs().amax(1, keepdim=True).clamp_min(1e-30)
    torch.testing.assert_close(grad32.double() / norm, grad64 / norm, rtol=0, atol=1e-4)


@pytest.mark.parametrize("c", [3, 10])
@pytest.mark.parametrize("scale", [1e3, 1e5, 1e8, 1e12])
def test_float64_gradient_equals_finite_differences(backend, c, scale):
    # -log P is about m^2 (its shape the same at every scale): the central difference with a step of
    # 1e-5 of the scale is exact to about 1e-9 relatively, and its rounding to 1e-11.
    gen = torch.Generator().manual_seed(c + 1)
    x = torch.randn(4, c, generator=gen, dtype=torch.float64) * scale
    target = torch.randint(0, c, (4,), generator=gen)
    _, grad = loss_and_grad(x, target, log_loss=True)
    step = 1e-5 * scale
    for i in range(4):
        for j in range(c):
            up, down = x.clone(), x.clone()
            up[i, j] += step
            down[i, j] -= step
            f = lambda z: float(exact(z[i : i + 1], target[i : i + 1], log_loss=True))  # noqa: E731
            numeric = (f(up) - f(down)) / (2 * step)
            assert numeric == pytest.approx(float(grad[i, j]), rel=1e-6, abs=1e-6 * float(grad[i].abs().max()))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_small_sigma_scales_the_margins_past_the_logits_range(backend, dtype):
    # margins (s_y - s_j) / sigma of 1e33 from float32 logits 1e30 apart: formed without overflow
    for c in (2, 3, 10):
        for shape in SHAPES:
            for log_loss in (False, True):
                loss, grad = loss_and_grad(row(shape, c, 1e30, dtype), log_loss=log_loss, sigma=1e-3)
                assert torch.isfinite(grad).all()
                if shape in ("behind", "rival ahead") and log_loss:
                    assert float(loss) == math.inf if dtype == torch.float32 else float(loss) > 1e60
                    assert float(grad.abs().max()) > 1e30  # about m / 2 / sigma
                else:
                    assert torch.isfinite(loss).all()


def test_double_backward_at_extreme_logits(backend):
    # create_graph (a gradient penalty) differentiates the same rule, or the far rows' formula, again
    for dtype in DTYPES:
        for c in (3, 10):
            x = torch.cat([row(shape, c, gap, dtype) for shape in SHAPES for gap in (1e3, 1e5, 1e9)])
            target = torch.zeros(x.shape[0], dtype=torch.long)
            for log_loss in (False, True):
                first = x.clone().requires_grad_(True)
                (plain,) = torch.autograd.grad(exact(first, target, log_loss=log_loss), first)
                second = x.clone().requires_grad_(True)
                (grad,) = torch.autograd.grad(exact(second, target, log_loss=log_loss), second, create_graph=True)
                norm = plain.abs().amax(1, keepdim=True).clamp_min(1e-30)
                tol = 3e-4 if dtype == torch.float32 else 1e-6  # the rule's accuracy (float32: at g = 1e3)
                torch.testing.assert_close(grad.detach() / norm, plain / norm, rtol=0, atol=tol)
                (grad * grad).sum().backward()
                assert torch.isfinite(second.grad).all()


def test_double_backward_of_confident_rows_at_a_small_sigma(backend):
    # the union bound's rows (Q far below P): their log Phi at margins of 1e4 and more once
    # differentiated into nan where Q underflows (a fifth of the rows in float32)
    for dtype in DTYPES:
        x = (torch.randn(64, 10, generator=torch.Generator().manual_seed(1), dtype=dtype) * 3).requires_grad_(True)
        (grad,) = torch.autograd.grad(exact(x, x.detach().argmax(1), sigma=1e-4), x, create_graph=True)
        (grad * grad).sum().backward()
        assert torch.isfinite(grad).all() and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("gap", [1e4, 1e5, 1e6])
def test_second_derivative_far_in_the_tail(backend, gap):
    # -log P of a rival ahead by m is about m^2 / 4 (sigma 1): d^2 / ds_j^2 = 1/2 there.  The node
    # weights of logsumexp's backward, from terms of size m^2 / 4, once gave 151 at m = 1e5.
    x = torch.tensor([[0.0, gap, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(exact(x, torch.tensor([0]), log_loss=True), x, create_graph=True)
    (second,) = torch.autograd.grad(grad[0, 1], x)
    assert float(grad[0, 1]) == pytest.approx(gap / 2, rel=1e-7)
    assert float(second[0, 1]) == pytest.approx(0.5, rel=1e-4)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_the_paper_estimator_has_the_limits_too(dtype):
    # Genz's Monte Carlo: every draw clipped to [-5, 5], so it had no trouble; kept that way
    for c in (2, 3, 10):
        for gap in GAPS:
            for shape, value in (("ahead", 0.0), ("behind", 1.0), ("rival ahead", 1.0)):
                loss, grad = loss_and_grad(row(shape, c, gap, dtype), estimator="genz")
                assert float(loss) == pytest.approx(value, abs=1e-7) and float(grad.abs().max()) < 1e-7
