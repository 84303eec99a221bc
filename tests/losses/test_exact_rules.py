"""The half-range Gauss-Hermite rules of EXACT's integral (``_exact_rules``) at every node count.

An ``n``-point rule for ``int_0^inf exp(-x^2) f(x) dx`` with positive nodes and weights that
integrates ``x^k`` exactly for ``k < 2n`` is the Gauss rule (there is only one), so the moments
check the whole table; the reference values come from a 100-digit computation (mpmath: the
Chebyshev algorithm on the exact moments, then Newton on the nodes), independent of the float64
construction.
"""

from __future__ import annotations

import math

import pytest
import torch

from lossbench.losses import _exact_native, exact
from lossbench.losses import _exact_rules as exact_rules

# Half-range node counts: num_nodes 2 to the kernel's most (256) and past it, where only the PyTorch
# path goes.
HALF_NODES = (1, 2, 3, 8, 24, 48, 64, 100, _exact_native.MAX_HALF_NODES, 256)

# The 8-node rule (the default num_nodes = 16), to 17 digits.
NODES_8 = (
    0.05297864393185113, 0.26739837216776535, 0.61630288418239987, 1.064246312116224,
    1.5888558622700553, 2.1839211530958584, 2.8631338837080751, 3.6860071627243971,
)  # fmt: skip
WEIGHTS_8 = (
    0.13410918845335956, 0.26833075447263904, 0.27595339798842183, 0.15744828261879035,
    0.04481410991746293, 0.0053679357560253334, 0.00020206364913241077, 1.1925969265953436e-6,
)  # fmt: skip


@pytest.mark.parametrize("n", HALF_NODES)
def test_half_range_rule_is_the_gauss_rule(n):
    nodes, log_w = exact_rules.half_range_rule(n)  # log_w = log w_i + x_i^2, what both paths read
    assert nodes.dtype == log_w.dtype == torch.float64 and nodes.shape == log_w.shape == (n,)
    assert bool(torch.isfinite(nodes).all()) and bool(torch.isfinite(log_w).all())  # weights > 0
    assert bool((nodes > 0).all()) and bool((nodes.diff() > 0).all())
    # sum_i w_i x_i^k against int_0^inf x^k exp(-x^2) dx = Gamma((k + 1) / 2) / 2, k < 2n, in logs:
    # at 128 nodes w_i x_i^k spans 1e-139 to 1e+199.  Measured: at most 3e-13 (1e-13 up to 128).
    k = torch.arange(2 * n, dtype=torch.float64)[:, None]
    log_moments = torch.lgamma((k + 1) / 2) - math.log(2)
    ratio = torch.exp(log_w - nodes**2 + k * torch.log(nodes) - log_moments).sum(1)
    assert float((ratio - 1).abs().max()) < 1e-11


def test_half_range_rule_against_reference_values():
    nodes, log_w = exact_rules.half_range_rule(1)  # the half-Gaussian's mass at its mean
    assert float(nodes[0]) == pytest.approx(1 / math.sqrt(math.pi), rel=1e-15)
    assert float(log_w[0] - nodes[0] ** 2) == pytest.approx(math.log(math.sqrt(math.pi) / 2), abs=1e-15)
    # the default rule, which the stored results were computed with (measured: 1.3e-14)
    nodes, log_w = exact_rules.half_range_rule(8)
    torch.testing.assert_close(nodes, torch.tensor(NODES_8, dtype=torch.float64), rtol=1e-13, atol=0)
    weights = torch.exp(log_w - nodes**2)
    torch.testing.assert_close(weights, torch.tensor(WEIGHTS_8, dtype=torch.float64), rtol=1e-13, atol=0)
    # the most the kernel holds: the first and last nodes, the smallest weight
    nodes, log_w = exact_rules.half_range_rule(128)
    assert float(nodes[0]) == pytest.approx(0.00091166893753645648, rel=1e-11)
    assert float(nodes[-1]) == pytest.approx(17.835123073967999, rel=1e-13)  # 12.0 when it was wrong
    assert float(log_w[-1] - nodes[-1] ** 2) == pytest.approx(math.log(4.2179041495945892e-139), abs=1e-11)


def draw(b: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 logits whose rows are uncertain, confident and far ahead."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, generator=gen, dtype=torch.float64) * 2.0
    target = torch.randint(0, c, (b,), generator=gen)
    ahead = torch.tensor([0.0, 5.0, 40.0], dtype=torch.float64).repeat(b // 3 + 1)[:b]
    logits[torch.arange(b), target] += ahead
    return logits, target


@pytest.mark.parametrize("path", ["default", "pytorch"])
@pytest.mark.parametrize("c,options", [(1000, {"log_loss": True}), (10, {})])
def test_most_nodes_agree_with_fewer(path, c, options, monkeypatch):
    # Converged at 64 nodes, the loss and its gradient may not move at 256 (the kernel's most).  With
    # the rule of a discretised [0, 12], -log P at 1000 classes moved by 3.7e-2 (kernel) and 2.4e-2
    # (PyTorch path), its gradient by 0.37 of its largest entry; measured now: below 1e-14.
    if path == "pytorch":
        monkeypatch.setattr(_exact_native, "enabled", False)
    logits, target = draw(8, c, seed=0)
    results = []
    for num_nodes in (64, 256):
        x = logits.clone().requires_grad_(True)
        loss = exact(x, target, num_nodes=num_nodes, **options)
        loss.backward()
        results.append((loss.detach(), x.grad))
    (loss, grad), (loss_ref, grad_ref) = results[1], results[0]
    torch.testing.assert_close(loss, loss_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad, grad_ref, rtol=0, atol=1e-10 * float(grad_ref.abs().max()))
