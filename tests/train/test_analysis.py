"""The analyses behind the transforms, checked numerically on small float64 networks.

Su (kexue.fm/archives/7643): descending then ascending at lr eps is gradient descent on |grad L|^2
at lr eps^2/2, and descending at eps1 then ascending at eps2 is descent at lr eps1 - eps2 on
L + eps1 eps2 / (2 (eps1 - eps2)) |grad L|^2, both up to O(eps^3).  The error of an O(eps^3)
approximation must shrink by ~8 when eps halves.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lossbench.losses import CrossEntropyLoss, cross_entropy
from lossbench.train import build_step, clip_grad_norm_, clip_scale, grad_norm_sq, weissi_penalty



def tanh_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 4)).double()


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(16, 3, generator=gen, dtype=torch.float64), torch.randint(0, 4, (16,), generator=gen)


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def run_steps(model: nn.Module, lr: float, transforms, n: int = 1) -> dict[str, float]:
    """``n`` plain-SGD steps on the fixed batch; returns the last step's statistics."""
    step = build_step(model, CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=lr), transforms)
    for _ in range(n):
        stats = step(*batch())
    return stats


def penalty_gradient(model: nn.Module) -> torch.Tensor:
    """grad_theta |grad_theta L|^2 at the model's parameters."""
    x, y = batch()
    params = list(model.parameters())
    penalty = grad_norm_sq(cross_entropy(model(x), y), params)
    return torch.cat([g.flatten() for g in torch.autograd.grad(penalty, params)])


def error_ratios(errors: list[float]) -> list[float]:
    return [a / b for a, b in zip(errors, errors[1:])]


EPS = [0.08, 0.04, 0.02]


def test_descent_then_ascent_is_gradient_norm_descent_at_half_eps_squared():
    errors = []
    for eps in EPS:
        model = tanh_mlp()
        theta0, g_pen = flat(model), penalty_gradient(model)
        run_steps(model, eps, [("ascent_descent", {"ascent_ratio": 1.0})], n=2)
        theta2 = flat(model)
        reference = theta0 - eps**2 / 2 * g_pen
        moved = (theta2 - theta0).norm().item()
        errors.append((theta2 - reference).norm().item())
        assert errors[-1] < 0.2 * moved, "the O(eps^2) move must dominate the O(eps^3) error"
    for ratio in error_ratios(errors):
        assert 6.0 < ratio < 10.0, f"error must shrink ~8x when eps halves (O(eps^3)); errors {errors}"


@pytest.mark.parametrize("ascent_ratio", [0.3, 0.7])
def test_su_variant_is_descent_on_penalised_loss(ascent_ratio):
    errors = []
    for eps1 in EPS:
        eps2 = ascent_ratio * eps1
        weight = eps1 * eps2 / (2 * (eps1 - eps2))
        alternating, penalised = tanh_mlp(), tanh_mlp()
        run_steps(alternating, eps1, [("ascent_descent", {"ascent_ratio": ascent_ratio})], n=2)
        run_steps(penalised, eps1 - eps2, [("gradient_penalty", {"weight": weight})])
        errors.append((flat(alternating) - flat(penalised)).norm().item())
    for ratio in error_ratios(errors):
        assert 6.0 < ratio < 10.0, f"error must shrink ~8x when eps halves (O(eps^3)); errors {errors}"


def test_gradient_penalty_step_matches_explicit_double_backprop():
    model, lr, weight = tanh_mlp(), 0.1, 0.3
    x, y = batch()
    params = list(model.parameters())
    loss = cross_entropy(model(x), y)
    g = torch.autograd.grad(loss, params, create_graph=True)
    objective = loss + weight * sum((gi**2).sum() for gi in g)
    expected = flat(model) - lr * torch.cat([t.flatten() for t in torch.autograd.grad(objective, params)])
    stats = run_steps(model, lr, [("gradient_penalty", {"weight": weight})])
    torch.testing.assert_close(flat(model), expected)
    assert stats["gradient_penalty/grad_norm_sq"] == pytest.approx(sum((gi**2).sum() for gi in g).item())


def plain_gradient(model: nn.Module, per_sample_signs: torch.Tensor | None = None) -> torch.Tensor:
    x, y = batch()
    params = list(model.parameters())
    if per_sample_signs is None:
        value = cross_entropy(model(x), y)
    else:
        value = (per_sample_signs * cross_entropy(model(x), y, reduction="none")).mean()
    return torch.cat([g.flatten() for g in torch.autograd.grad(value, params)])


@pytest.mark.parametrize("offset, direction", [(0.1, +1.0), (-0.1, -1.0)])
def test_flooding_ascends_below_the_level_and_descends_above(offset, direction):
    model, lr = tanh_mlp(), 0.05
    x, y = batch()
    level = cross_entropy(model(x), y).item() + offset  # offset > 0: the loss is below b
    theta0, grad = flat(model), plain_gradient(model)
    stats = run_steps(model, lr, [("flooding", {"b": level})])
    torch.testing.assert_close(flat(model), theta0 + direction * lr * grad)  # +1: ascent
    assert stats["flooding/flooded"] == (1.0 if direction > 0 else 0.0)
    assert stats["objective"] == pytest.approx(abs(stats["loss"] - level) + level)


def test_iflood_flips_each_sample_below_the_level():
    model, lr = tanh_mlp(), 0.05
    x, y = batch()
    per_sample = cross_entropy(model(x), y, reduction="none").detach()
    level = per_sample.median().item() + 1e-9
    signs = torch.where(per_sample < level, -1.0, 1.0).double()
    theta0, grad = flat(model), plain_gradient(model, signs)
    stats = run_steps(model, lr, [("iflood", {"b": level})])
    torch.testing.assert_close(flat(model), theta0 - lr * grad)
    assert stats["iflood/flooded"] == pytest.approx((per_sample < level).double().mean().item())


@settings(max_examples=60, deadline=None)
@given(log_norm=st.floats(-6, 6), gamma=st.floats(1e-3, 1e3))
def test_clipping_forms_bound_each_other(log_norm, gamma):
    gen = torch.Generator().manual_seed(0)
    params = [nn.Parameter(torch.zeros(shape, dtype=torch.float64)) for shape in ((4, 3), (5,))]
    direction = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
    scale = math.exp(log_norm) / math.sqrt(sum((d**2).sum().item() for d in direction))
    factors = {}
    for smooth in (False, True):
        for p, d in zip(params, direction):
            p.grad = d * scale
        before = clip_grad_norm_(params, gamma, smooth=smooth)
        after = math.sqrt(sum((p.grad**2).sum().item() for p in params))
        factors[smooth] = after / before.item()
        assert factors[smooth] == pytest.approx(clip_scale(before, gamma, smooth=smooth).item(), rel=1e-9)
    hard_factor, smooth_factor = factors[False], factors[True]
    assert hard_factor == pytest.approx(min(1.0, gamma / math.exp(log_norm)), rel=1e-9)
    assert 0.5 * hard_factor * (1 - 1e-12) <= smooth_factor <= hard_factor * (1 + 1e-12)


def test_hard_clipping_equals_torch():
    gen = torch.Generator().manual_seed(3)
    grads = [torch.randn(3, 4, generator=gen) * 10, torch.randn(7, generator=gen) * 10]
    ours = [nn.Parameter(torch.zeros_like(g)) for g in grads]
    theirs = [nn.Parameter(torch.zeros_like(g)) for g in grads]
    for a, b, g in zip(ours, theirs, grads):
        a.grad, b.grad = g.clone(), g.clone()
    torch.testing.assert_close(clip_grad_norm_(ours, 1.5), torch.nn.utils.clip_grad_norm_(theirs, 1.5))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad)


def relu_mlp() -> nn.Sequential:
    torch.manual_seed(4)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).double()


@pytest.mark.parametrize("layer, c", [(0, 3.7), (2, 0.2)])
def test_weissi_is_invariant_to_relu_rescaling_and_l2_is_not(layer, c):
    net = relu_mlp()
    rescaled = relu_mlp()
    with torch.no_grad():
        rescaled[layer].weight.mul_(c)
        rescaled[layer].bias.mul_(c)
        rescaled[layer + 2].weight.div_(c)
    x = torch.randn(32, 4, dtype=torch.float64)
    torch.testing.assert_close(net(x), rescaled(x), msg="the rescaling must leave the function unchanged")

    def weights(m):
        return [m[i].weight for i in (0, 2, 4)]

    penalty, penalty_rescaled = (weissi_penalty(weights(m), 0.7, 0.3) for m in (net, rescaled))
    torch.testing.assert_close(penalty, penalty_rescaled)
    l2, l2_rescaled = (sum((w**2).sum() for w in weights(m)).item() for m in (net, rescaled))
    assert abs(l2 - l2_rescaled) > 0.1 * l2


def test_weissi_transform_adds_its_penalty():
    net = relu_mlp()
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 3, (8,))
    expected = weissi_penalty([net[i].weight for i in (0, 2, 4)], 1e-2, 1e-3).item()
    stats = build_step(net, CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=1e-9),
                       [("weissi", {"lambda1": 1e-2, "lambda2": 1e-3})])(x, y)
    assert stats["weissi/penalty"] == pytest.approx(expected)
    assert stats["objective"] == pytest.approx(stats["loss"] + expected)
