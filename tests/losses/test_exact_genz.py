"""EXACT with the paper's estimator (``estimator="genz"``): unbiased against the quadrature, the
closed form at two classes, the paper's construction, randomness, and the loss API."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import special

from lossbench.losses import ExactLoss, exact, get_loss
from lossbench.losses._exact_genz import genz_monte_carlo

# Independent estimates per row (the rows are repeated REPEATS times in one seeded call; each copy
# draws its own uniforms).  The tolerances are fixed from the standard deviation of one estimate
# measured on these rows (16 samples, 4000 copies): at most 0.0114 (3 classes) and 0.0053 (10) for
# P, 0.0081 and 0.0028 for a component of its gradient with respect to the logits.  The tests
# assert that the spread stays below these bounds and that the means lie within 5 standard errors
# (plus 1e-7 for the quadrature's own error) of the quadrature.
REPEATS = 4000
STD_P = {3: 0.012, 10: 0.006}
STD_GRAD = {3: 0.009, 10: 0.003}


def rows(c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = 1.5 * torch.randn(6, c, generator=gen, dtype=torch.float64)
    target = torch.randint(0, c, (6,), generator=gen)
    return logits, target


def win_probability_and_grad(logits, target, **kwargs):
    x = logits.clone().requires_grad_(True)
    p = 1 - exact(x, target, reduction="none", **kwargs)
    (grad,) = torch.autograd.grad(p.sum(), x)
    return p.detach(), grad


@pytest.mark.parametrize("c", [3, 10])
def test_estimate_and_gradient_are_unbiased(c):
    logits, target = rows(c, seed=c)
    p, grad = win_probability_and_grad(logits, target)  # the quadrature (exact to ~1e-7)
    gen = torch.Generator().manual_seed(1)
    est, est_grad = win_probability_and_grad(
        logits.repeat(REPEATS, 1), target.repeat(REPEATS), estimator="genz", generator=gen
    )
    est, est_grad = est.view(REPEATS, 6), est_grad.view(REPEATS, 6, c)
    assert float(est.std(0).max()) <= STD_P[c] and float(est.std(0).max()) > 0
    assert float(est_grad.std(0).max()) <= STD_GRAD[c]
    tol_p, tol_grad = (5 * std / math.sqrt(REPEATS) + 1e-7 for std in (STD_P[c], STD_GRAD[c]))
    torch.testing.assert_close(est.mean(0), p, rtol=0, atol=tol_p)
    torch.testing.assert_close(est_grad.mean(0), grad, rtol=0, atol=tol_grad)


def test_more_samples_shrink_the_noise():
    logits, target = rows(10, seed=10)
    spread = []
    for samples in (4, 64):
        gen = torch.Generator().manual_seed(2)
        est = 1 - exact(logits.repeat(1000, 1), target.repeat(1000), estimator="genz", samples=samples,
                        generator=gen, reduction="none")
        spread.append(est.view(1000, 6).std(0))
    ratio = spread[0] / spread[1]  # sqrt(64 / 4) = 4 for independent samples
    assert bool(((ratio > 3.0) & (ratio < 5.3)).all()), ratio


def test_two_classes_are_the_closed_form():
    # One rival: no variable is drawn, the estimate is Phi(m / sqrt 2) and its derivative exactly.
    d = torch.linspace(-12.0, 12.0, 49, dtype=torch.float64)
    logits = torch.stack([0.3 * d, -0.7 * d], 1).requires_grad_(True)
    target = torch.zeros(len(d), dtype=torch.long)
    sigma = 0.8
    loss = exact(logits, target, sigma=sigma, estimator="genz", reduction="none")
    r = (d / (math.sqrt(2) * sigma)).numpy()
    torch.testing.assert_close(1 - loss.detach(), torch.as_tensor(special.ndtr(r)), rtol=1e-12, atol=1e-15)
    loss.sum().backward()
    # d loss / d s_0 = -phi(r) / (sqrt 2 sigma)
    expected = -torch.exp(-torch.as_tensor(r) ** 2 / 2) / math.sqrt(2 * math.pi) / (math.sqrt(2) * sigma)
    torch.testing.assert_close(logits.grad[:, 0], expected, rtol=1e-12, atol=1e-300)
    torch.testing.assert_close(logits.grad[:, 1], -expected, rtol=1e-12, atol=1e-300)
    quadrature = exact(logits, target, sigma=sigma, reduction="none")
    torch.testing.assert_close(loss, quadrature, rtol=1e-12, atol=1e-15)


def test_margins_are_sorted_as_in_the_paper():
    # The paper's code sorts each row's margins before the sweep: the order of the rivals changes
    # nothing, draw for draw, and the gradient follows its margins.
    gen = torch.Generator().manual_seed(3)
    m = 2.0 * torch.randn(5, 7, generator=gen, dtype=torch.float64)
    perm = torch.randperm(7, generator=gen)
    p1, g1 = genz_monte_carlo(m, 16, torch.Generator().manual_seed(4))
    p2, g2 = genz_monte_carlo(m[:, perm], 16, torch.Generator().manual_seed(4))
    torch.testing.assert_close(p1, p2, rtol=0, atol=0)
    torch.testing.assert_close(g1[:, perm], g2, rtol=0, atol=0)


def test_draws_follow_the_generator_or_the_global_seed():
    logits, target = rows(10, seed=5)
    with_gen = [exact(logits, target, estimator="genz", generator=torch.Generator().manual_seed(7),
                      reduction="none") for _ in range(2)]
    torch.testing.assert_close(with_gen[0], with_gen[1], rtol=0, atol=0)
    state = torch.get_rng_state()
    exact(logits, target, estimator="genz", generator=torch.Generator().manual_seed(8))
    assert torch.equal(torch.get_rng_state(), state)  # an explicit generator leaves the global one alone
    torch.manual_seed(7)
    seeded = [exact(logits, target, estimator="genz", reduction="none")]
    torch.manual_seed(7)
    seeded.append(exact(logits, target, estimator="genz", reduction="none"))
    torch.testing.assert_close(seeded[0], seeded[1], rtol=0, atol=0)
    # the global generator seeded 7 gives the stream of a generator seeded 7
    torch.testing.assert_close(seeded[0], with_gen[0], rtol=0, atol=0)
    assert not torch.equal(seeded[0], exact(logits, target, estimator="genz", reduction="none"))


def test_recipe_reaches_logits_and_sigma_through_the_margins():
    logits, target = rows(6, seed=6)
    x = logits.clone().requires_grad_(True)
    sigma = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    gen = torch.Generator().manual_seed(9)
    exact(x, target, sigma=sigma, estimator="genz", generator=gen, standardize=True).backward()
    assert sigma.grad is not None and float(sigma.grad) != 0 and bool(torch.isfinite(x.grad).all())
    # margin clip: the clipped rivals get no gradient, as with the quadrature
    row = torch.tensor([[3.0, 0.0, 2.5, -4.0]], dtype=torch.float64, requires_grad=True)
    exact(row, torch.tensor([0]), margin=1.0, estimator="genz", generator=gen).backward()
    assert row.grad[0, 1] == 0 and row.grad[0, 3] == 0 and row.grad[0, 2] != 0
    # per-sample sigma, (B,) and (B, 1): the same draws give the same losses
    per_sample = torch.linspace(0.5, 2.0, 6, dtype=torch.float64)
    a = exact(logits, target, sigma=per_sample, estimator="genz", generator=torch.Generator().manual_seed(1),
              reduction="none")
    b = exact(logits, target, sigma=per_sample[:, None], estimator="genz",
              generator=torch.Generator().manual_seed(1), reduction="none")
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_batch_dimensions_equal_the_flat_call():
    gen = torch.Generator().manual_seed(10)
    logits = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 5, (2, 3), generator=gen)
    def run(x, t):
        return exact(x, t, estimator="genz", generator=torch.Generator().manual_seed(1), reduction="none")

    shaped, flat = run(logits, target), run(logits.view(6, 5), target.view(6))
    assert shaped.shape == (2, 3)
    torch.testing.assert_close(shaped, flat.view(2, 3), rtol=0, atol=0)


def test_reduction_and_ignored_targets_as_for_the_quadrature():
    logits, target = rows(5, seed=11)
    target = target.clone()
    target[[1, 4]] = -100
    kept = target != -100

    def run(reduction, x=logits, t=target):
        return exact(x, t, estimator="genz", generator=torch.Generator().manual_seed(3), reduction=reduction)

    none = run("none")
    assert bool((none[~kept] == 0).all())
    torch.testing.assert_close(run("sum"), none.sum())
    torch.testing.assert_close(run("mean"), none.sum() / kept.sum())
    x = logits.clone().requires_grad_(True)
    exact(x, target, estimator="genz").backward()
    assert torch.count_nonzero(x.grad[~kept]) == 0 and torch.count_nonzero(x.grad[kept]) > 0
    half = exact(logits.half(), target, estimator="genz", generator=torch.Generator().manual_seed(3))
    assert half.dtype == torch.float16 and torch.isfinite(half)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"estimator": "monte_carlo"}, "estimator"),
        ({"estimator": "genz", "samples": 0}, "samples"),
        ({"estimator": "genz", "samples": 2.5}, "samples"),
        ({"estimator": "genz", "generator": 3}, "generator"),
        ({"estimator": "genz", "log_loss": True}, "log_loss"),
        ({"estimator": "genz", "log_of_mean": True}, r"log_of_mean=True is not available with estimator='genz'"),
        ({"estimator": "genz", "sigma": 0.0}, "sigma"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    logits, target = rows(4, seed=12)
    with pytest.raises(ValueError, match=match):
        exact(logits, target, **kwargs)
    if "sigma" not in kwargs:
        with pytest.raises(ValueError, match=match):
            ExactLoss(**kwargs)


def test_validation_as_for_the_quadrature():
    logits, target = rows(4, seed=13)
    bad = logits.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        exact(bad, target, estimator="genz")
    with pytest.raises(ValueError, match="class index 4"):
        exact(logits, torch.tensor([0, 1, 4, 2, 0, 1]), estimator="genz")
    assert torch.isfinite(exact(logits, target, estimator="genz", validate=False))


def test_no_second_derivatives():
    logits, target = rows(4, seed=14)
    x = logits.clone().requires_grad_(True)
    loss = exact(x, target, estimator="genz")
    with pytest.raises(RuntimeError, match="second derivatives"):
        torch.autograd.grad(loss, x, create_graph=True)


def test_module_twin_holds_the_option_and_its_generator_state():
    logits, target = rows(5, seed=15)
    module = ExactLoss(sigma=0.8, estimator="genz", samples=8, generator=torch.Generator().manual_seed(5))
    expected = exact(logits, target, sigma=0.8, estimator="genz", samples=8,
                     generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(module(logits, target), expected, rtol=0, atol=0)
    state = module.state_dict()  # the generator's state after one call
    after = module(logits, target)
    resumed = ExactLoss(sigma=0.8, estimator="genz", samples=8, generator=torch.Generator())
    resumed.load_state_dict(state)
    torch.testing.assert_close(resumed(logits, target), after, rtol=0, atol=0)
    assert "estimator='genz'" in repr(module)
    plain = ExactLoss()
    plain.load_state_dict(plain.state_dict())
    with pytest.raises(ValueError, match="generator"):
        plain.load_state_dict(state)


def test_registered_as_a_fixed_option():
    params = {p.name: p for p in get_loss("exact").hyperparams}
    assert params["estimator"].default == "quadrature" and params["estimator"].space is None
    assert "genz" in params["estimator"].doc
    assert params["samples"].default == 16 and params["samples"].space is None


def test_the_benchmark_times_this_implementation():
    bench = pytest.importorskip("benchmarks.bench_exact")
    assert bench.genz_monte_carlo is genz_monte_carlo
