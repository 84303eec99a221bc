"""The quadrature rules of EXACT's integral and the parameters that place them.

The half-range Gauss-Hermite rule (weight ``exp(-x^2)`` on ``[0, inf)``) is built once per node count
from a Gauss-Legendre discretisation; :func:`_rule` lays it out on both sides of a mode.  The
parameters below (probe widths, Newton's stopping rule, the product floor, the union bound's
threshold, the far margin) are read by the PyTorch path and passed to the fused kernel by
``_exact_native.constants``: one source for both.
"""

from __future__ import annotations

import functools
import math

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


@functools.lru_cache(maxsize=None)
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


@functools.lru_cache(maxsize=None)
def _half_range_hermite_cpu(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of the ``n``-point Gauss rule for ``int_0^inf exp(-x^2) f(x) dx`` (float64).

    The orthogonal polynomials of the half-range weight have no closed-form recurrence; we get
    their recurrence coefficients by the discretised Stieltjes procedure on a 200-point
    Gauss-Legendre discretisation of ``[0, 12]`` (``exp(-144)`` is far below double precision) and
    the rule from the Jacobi matrix (Golub & Welsch 1969; Gautschi, "Orthogonal Polynomials:
    Computation and Approximation", 2004, section 2.2).
    """
    if n < 1:
        raise ValueError(f"the half-range rule needs n >= 1 nodes, got {n}")
    lx, lw = _gauss_legendre_cpu(200)
    length = 12.0
    xs = (lx + 1) * (length / 2)
    ws = lw * (length / 2) * torch.exp(-xs * xs)
    alpha = torch.zeros(n, dtype=torch.float64)
    beta = torch.zeros(n, dtype=torch.float64)
    p_prev, p = torch.zeros_like(xs), torch.ones_like(xs)
    norm_prev = 1.0
    for j in range(n):
        norm = torch.sum(ws * p * p)
        alpha[j] = torch.sum(ws * xs * p * p) / norm
        beta[j] = norm if j == 0 else norm / norm_prev
        p_prev, p = p, (xs - alpha[j]) * p - (beta[j] * p_prev if j > 0 else 0.0)
        norm_prev = norm
    off = torch.sqrt(beta[1:])
    jacobi = torch.diag(alpha) + torch.diag(off, 1) + torch.diag(off, -1)
    nodes, vectors = torch.linalg.eigh(jacobi)
    weights = beta[0] * vectors[0] ** 2
    return nodes, weights


@functools.lru_cache(maxsize=None)
def half_range_rule(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n`` half-range nodes ``x_i`` and the log weights ``log w_i + x_i^2`` (float64, CPU) of
    the rule for ``int_0^inf exp(-x^2) f(x) dx`` applied to ``exp(x^2) f(x)``: what this module's
    rule and the fused kernel both place on each side of the mode."""
    nodes, weights = _half_range_hermite_cpu(n)
    return nodes.contiguous(), (torch.log(weights) + nodes**2).contiguous()



@functools.lru_cache(maxsize=None)
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

