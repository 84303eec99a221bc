"""The quadrature rules of EXACT's integral and the parameters that place them.

The half-range Gauss-Hermite rule (weight ``exp(-x^2)`` on ``[0, inf)``) is built once per node count
from a Gauss-Legendre discretisation (see :func:`_half_range_recurrence`); :func:`_rule` lays it out
on both sides of a mode.  The parameters below (probe widths, Newton's stopping rule, the product
floor, the union bound's threshold, the far margin) are read by the PyTorch path and passed to the
fused kernel by ``_exact_native.constants``: one source for both.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch

# Half-width of the secant probes, in Laplace scales, that set the two per-side scales.
_SECANT = 4.5
# The complement's integrand for many tied rivals (hundreds) at moderate margins is a Gaussian-like
# peak with a shoulder that ends in a wall two Laplace scales to its left (the rivals' maximum is
# concentrated): probes at 4.5 scales land past the wall and squeeze the left nodes off the shoulder
# (relative error 3e-3 at 1000 tied rivals, 16 nodes); at 3 scales the worst of 3 to 10^4 tied
# rivals is 4e-5 (2e-6 at 100), and untied rows are unaffected.
_SECANT_COMPLEMENT = 3.0

# Newton stops once every step is below this fraction of the Laplace scale; convergence is
# quadratic, so the last step leaves an error far smaller (the rule only needs the mode roughly).
_NEWTON_TOL = 1.0
_NEWTON_MAX_ITER = 50

# Newton steps on the water level of Newton's start (see _exact_integral._start).
_WATER_STEPS = 1

# log F (see _exact_integral._log_h) is the log of a product of Phi when every node's product stays
# above this floor (far above the smallest normal float, so no partial product loses precision);
# else the sum of the logs.
_PRODUCT_FLOOR = {torch.float32: 2.0**-100, torch.float64: 2.0**-1000}

# Rows whose union bound of Q (the sum over rivals of Phi(-m_j / sqrt2), each the probability that
# that rival alone beats the true class) is below this integrate Q itself: then Q < 1/2 < P.  Above it,
# Q is at least a few percent (0.09 for a thousand tied rivals, 0.025 for a million), so the
# complement of P loses nothing measurable.
_UNION_BOUND = 0.5

# Rows with a rival this far ahead (a margin below minus this) take no rule (the way WAY_FAR): log h is
# about -m^2 / 4 there, and its rounding (m^2 eps) swamps the integrand's shape, so the rule loses its
# accuracy and then overflows (float32: -log P off by 1e-4 relative from margins of 1e4 on, nan from
# 1e17; float64: wrong from 1e9, nan from 1e120).  In float32 such rows are computed in float64; in
# float64 by the leading order of Laplace's method (see _exact_integral._water_level), which is exact
# to 1e-11 relatively (log P) and 1e-7 (gradient, relative to its largest entry) at 1e7, and better
# beyond.
_FAR_MARGIN = {torch.float32: 1e3, torch.float64: 1e7}


def on_cpu(build: Callable[..., Any]) -> Callable[..., Any]:
    """``build`` with the CPU as torch's default device: the tables are the CPU's whatever device a caller made
    the default (``torch.set_default_device("cuda")``: the fused kernel would read a GPU's addresses)."""

    @functools.wraps(build)
    def on_the_cpu(*args: Any) -> Any:
        with torch.device("cpu"):
            return build(*args)

    return on_the_cpu


@functools.lru_cache(maxsize=None)
@on_cpu
def _gauss_legendre_cpu(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Legendre rule on ``[-1, 1]`` by Newton's method on ``P_n`` (float64; no eigensolver)."""
    x = torch.cos(math.pi * (torch.arange(1, n + 1, dtype=torch.float64) - 0.25) / (n + 0.5))
    for _ in range(100):
        p_prev, p = torch.ones_like(x), x.clone()
        for k in range(2, n + 1):
            p_prev, p = p, ((2 * k - 1) * x * p - (k - 1) * p_prev) / k
        dp = n * (x * p - p_prev) / (x * x - 1)
        dx = p / dp
        x = x - dx
        if float(dx.abs().max()) < 1e-15:
            break
    return x, 2 / ((1 - x * x) * dp * dp)


# The half-range rule's recurrence comes from a Gauss-Legendre discretisation of [0, L] with
# L = 2 sqrt(n) + _REACH_MARGIN (the largest of n nodes is about 1.6 sqrt(n): 17.8 at n = 128) and
# max(_DISCRETE_POINTS, 3n) points: the coefficients of n nodes need about 2n + 80 (320 at 128
# nodes; with fewer, the last ones are wrong, 3e-4 relative at 280).  Against a 100-digit
# computation they are exact to 5e-15 relative at 1 to 128 nodes, and to 1e-14 at up to 512 they
# do not move with more points or a wider range.  (200 points on [0, 12] held to about 36 nodes;
# at 128 nodes the largest node was 12.0, not 17.8.)
_DISCRETE_POINTS = 400
_REACH_MARGIN = 8.0
# The polynomials' values are kept as u exp(scale) with |u| below _BIG (a power of two, so rescaling
# rounds nothing): no value overflows and no weight underflows, however many nodes.
_BIG = 2.0**332
_F64 = {"dtype": torch.float64}


@functools.lru_cache(maxsize=None)
@on_cpu
def _half_range_recurrence(n: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Recurrence coefficients of the orthonormal polynomials of ``exp(-x^2)`` on ``[0, inf)``.

    ``alpha`` (n,) is the Jacobi matrix's diagonal, ``off`` (n - 1,) its off-diagonal (``sqrt
    beta_j``) and ``beta_0`` the weight's mass, by the discretised Stieltjes procedure (Gautschi,
    "Orthogonal Polynomials: Computation and Approximation", 2004, section 2.2) on orthonormal
    polynomials, each point's values carried with a scale of their own (at 128 nodes the weight at
    ``L = 30.6`` is ``exp(-938)`` and the polynomials reach ``10^117`` there).
    """
    length = 2 * math.sqrt(n) + _REACH_MARGIN
    lx, lw = _gauss_legendre_cpu(max(_DISCRETE_POINTS, 3 * n))
    xs = (lx + 1) * (length / 2)
    log_w = torch.log(lw * (length / 2)) - xs * xs
    beta0 = float(torch.exp(log_w).sum())
    # p_j(x_k) = u_k exp(scale_k) and omega_k = w_k exp(2 scale_k), so that omega u^2 = w p_j^2
    scale = torch.full_like(xs, -0.5 * math.log(beta0))  # p_0 = beta_0^(-1/2)
    u_prev, u = torch.zeros_like(xs), torch.ones_like(xs)
    omega = torch.exp(log_w + 2 * scale)
    alpha, off = torch.zeros(n, **_F64), torch.zeros(max(n - 1, 0), **_F64)
    for j in range(n):
        alpha[j] = (omega * xs * u * u).sum()
        if j + 1 == n:
            break
        v = (xs - alpha[j]) * u - (off[j - 1] * u_prev if j else 0.0)
        off[j] = (omega * v * v).sum().sqrt()
        u_prev, u = u, v / off[j]
        big = u.abs() > _BIG
        if bool(big.any()):
            shrink = torch.where(big, torch.tensor(1 / _BIG, **_F64), torch.tensor(1.0, **_F64))
            u_prev, u = u_prev * shrink, u * shrink
            scale = scale - torch.log(shrink)
            omega = torch.exp(log_w + 2 * scale)
    return alpha, off, beta0


@functools.lru_cache(maxsize=None)
@on_cpu
def _half_range_log_rule(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and log weights of the ``n``-point Gauss rule for ``int_0^inf exp(-x^2) f(x) dx`` (float64).

    The nodes are the Jacobi matrix's eigenvalues (Golub & Welsch 1969); the weights are
    ``1 / sum_j p_j(x_i)^2`` over the orthonormal polynomials of degree below ``n`` (the Christoffel
    function), which keeps its relative accuracy where the eigenvectors' first components (down to
    6e-70 at 128 nodes) keep only an absolute one (they lost 5e-7 of the smallest weight at 26
    nodes already); the sum is rescaled as it grows and taken in logs, so no weight underflows.
    """
    if n < 1:
        raise ValueError(f"the half-range rule needs n >= 1 nodes, got {n}")
    alpha, off, beta0 = _half_range_recurrence(n)
    jacobi = torch.diag(alpha) + torch.diag(off, 1) + torch.diag(off, -1)
    nodes = torch.linalg.eigvalsh(jacobi)
    p_prev, p = torch.zeros_like(nodes), torch.full_like(nodes, 1 / math.sqrt(beta0))
    total, log_scale = p * p, torch.zeros_like(nodes)
    for j in range(n - 1):
        p_prev, p = p, ((nodes - alpha[j]) * p - (off[j - 1] * p_prev if j else 0.0)) / off[j]
        total = total + p * p
        big = total > _BIG
        if bool(big.any()):
            shrink = torch.where(big, torch.tensor(1 / _BIG, **_F64), torch.tensor(1.0, **_F64))
            p_prev, p, total = p_prev * shrink, p * shrink, total * shrink * shrink
            log_scale = log_scale - 2 * torch.log(shrink)
    return nodes, -(torch.log(total) + log_scale)


def _half_range_hermite_cpu(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of the ``n``-point Gauss rule for ``int_0^inf exp(-x^2) f(x) dx`` (float64).

    The orthogonal polynomials of the half-range weight have no closed-form recurrence; see
    :func:`_half_range_recurrence` and :func:`_half_range_log_rule`.
    """
    nodes, log_weights = _half_range_log_rule(n)
    return nodes, torch.exp(log_weights)


@functools.lru_cache(maxsize=None)
@on_cpu
def half_range_rule(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n`` half-range nodes ``x_i`` and the log weights ``log w_i + x_i^2`` (float64, CPU) of
    the rule for ``int_0^inf exp(-x^2) f(x) dx`` applied to ``exp(x^2) f(x)``: what this module's
    rule and the fused kernel both place on each side of the mode."""
    nodes, log_weights = _half_range_log_rule(n)
    return nodes.contiguous(), (log_weights + nodes**2).contiguous()


@functools.lru_cache(maxsize=None)
@on_cpu
def _rule(
    n: int, dtype: torch.dtype, device: torch.device, secant: float = _SECANT
) -> tuple[torch.Tensor, ...]:
    """Tables of the rule with ``n`` half-range nodes ``x_i`` per side, on ``device``.

    ``probes`` (3,): ``(0, -delta, delta)``; ``drops`` (3, 2): ``log h`` at the probes times this is
    the drop to each side; ``nodes`` (2, K): ``offsets = scale @ nodes`` places ``-x_i`` scaled by
    the left scale and ``x_i`` by the right one; ``sides`` (2, K): ``log scale @ sides + log_w`` are
    the log weights, ``log_w`` (K,) = ``log w_i + x_i^2`` on both sides.
    """
    nodes, log_w = half_range_rule(n)
    zeros = torch.zeros(n, dtype=torch.float64)
    ones = torch.ones(n, dtype=torch.float64)
    tables = (
        torch.tensor([0.0, -secant, secant], dtype=torch.float64),
        torch.tensor([[1.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64),
        torch.stack([torch.cat([-nodes, zeros]), torch.cat([zeros, nodes])]),
        torch.stack([torch.cat([ones, zeros]), torch.cat([zeros, ones])]),
        torch.cat([log_w, log_w]),
    )
    return tuple(v.to(dtype=dtype, device=device) for v in tables)
