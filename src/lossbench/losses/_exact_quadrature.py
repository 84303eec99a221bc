"""Log-probability that the true class wins the arg-max of Gaussian-perturbed logits, by 1-D quadrature.

Notation: ``m`` (B, R) are the scaled margins ``(s_y - s_j) / sigma`` of the true class over its
``R = C - 1`` rivals; ``Z_0, Z_1, ..., Z_R`` are iid standard normal noises; ``ell(u) = log Phi(u)``
and ``lam(u) = phi(u) / Phi(u)`` (the inverse Mills ratio), ``lam' = -lam (u + lam)``.

The true class wins iff ``Z_0 > M`` with ``M = max_j (Z_j - m_j)``, whose CDF is
``F(t) = prod_j Phi(t + m_j)`` and density ``f_M(t) = F(t) S(t)`` with ``S(t) = sum_j lam(t + m_j)``.
Conditioning on ``Z_0`` gives the textbook integral ``P = int phi(t) F(t) dt``; conditioning on ``M``
instead gives the same number as::

    P = int h(t) dt,   h(t) = Phi(-t) F(t) S(t)
    d log P / d m_j = (1 / P) int h(t) [lam(t + m_j) + lam'(t + m_j) / S(t)] dt

We integrate the second form: when many rivals have similar margins ``F`` is a steep wall (width
about ``1 / sqrt(2 log R)``) inside the bulk of ``phi``, which Gaussian rules resolve only with many
nodes, whereas ``h`` is a smooth single peak (a density times the smooth ``Phi(-t)``).

The rule: find the mode ``mu`` of ``log h`` by Newton's method, take the Laplace scale
``tau = (-d2 log h)^(-1/2)``, measure the drop of ``log h`` at ``mu -+ delta tau`` to set one scale per
side (``h`` is skewed: it falls like a Gaussian of unit width on one side and much faster on the
other), and integrate each half-line with an ``n``-point half-range Gauss-Hermite rule (weight
``exp(-x^2)`` on ``[0, inf)``) in log space.  Everything is a sum of ``O(B (R + 1) K)`` elementwise
terms; the gradient is accumulated in the same pass, so memory is ``O(B R)`` between forward and
backward.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import torch

_SQRT2 = math.sqrt(2.0)
_INV_SQRT2 = 1.0 / _SQRT2
_LOG_INV_SQRT_2PI = -0.5 * math.log(2.0 * math.pi)
_LOG_2_SQRT_PI = math.log(2.0 * math.sqrt(math.pi))

# erfc(x) underflows (or loses relative precision as a subnormal) beyond these arguments; past
# them log erfc(x) = -x^2 - log(sqrt(pi) x) + log(sqrt(pi) x erfcx(x)) with the asymptotic series below.
_TAIL_START = {torch.float32: 9.0, torch.float64: 26.0}
# The double-backward path switches earlier, where erfc(x)^2 (in the derivative of 1/erfc) is normal.
_TAIL_START_TWICE = {torch.float32: 6.0, torch.float64: 18.0}
# Half-width of the secant probes, in Laplace scales, that set the two per-side scales.
_SECANT = 4.5
# Newton stops once every step is below this fraction of the Laplace scale; convergence is
# quadratic, so the last step leaves an error far smaller (the rule only needs the mode roughly).
_NEWTON_TOL = 0.5
_NEWTON_MAX_ITER = 50
# Nodes are evaluated in row blocks of about this many (row, node, rival) terms: the temporaries
# stay in cache, and memory stays O(B R) whatever the batch.
_BLOCK_TERMS = 1 << 18


def _log_erfcx_series_coefficients(terms: int) -> tuple[float, ...]:
    """Coefficients ``c_n`` of ``log(sqrt(pi) x erfcx(x)) ~ sum_n c_n x^(-2n)`` as ``x -> inf``.

    The log of the asymptotic series ``sqrt(pi) x erfcx(x) ~ sum_k (-1)^k (2k - 1)!! / (2 x^2)^k``
    (Abramowitz & Stegun 7.1.23), by the power-series logarithm recurrence.
    """
    a = [Fraction(1)]
    double_factorial = 1
    for k in range(1, terms + 1):
        double_factorial *= 2 * k - 1
        a.append(Fraction((-1) ** k * double_factorial, 2**k))
    c = [Fraction(0)] * (terms + 1)
    for n in range(1, terms + 1):
        c[n] = a[n] - sum(Fraction(k, n) * c[k] * a[n - k] for k in range(1, n))
    return tuple(float(v) for v in c[1:])


# Eight terms: the first omitted one is below 1e-12 at x = 9 and 1e-17 at x = 26.
_TAIL_COEFFS = _log_erfcx_series_coefficients(8)


def _tail_log_erfcx(x: torch.Tensor) -> torch.Tensor:
    """``log(sqrt(pi) x erfcx(x))`` for large ``x`` by the asymptotic series (Horner in ``1/x^2``)."""
    y = 1 / (x * x)
    acc = _TAIL_COEFFS[-1] * y
    for c in reversed(_TAIL_COEFFS[:-1]):
        acc = (acc + c) * y
    return acc


def log_ndtr_and_mills(
    x: torch.Tensor, need_log: bool = True, out: torch.Tensor | None = None, x_max: float | None = None
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``log Phi(u)`` and ``lam(u) = phi(u) / Phi(u)`` at ``u = -sqrt(2) x``, elementwise, without underflow.

    ``Phi(u) = erfc(x) / 2`` is used where it is a normal float; beyond, the asymptotic series of
    ``erfcx``.  The vectorised ``erfc`` is several times faster on CPU than ``torch.special.log_ndtr``.
    The factor 1/2 is applied before the log, so that sums of many ``log Phi`` near 0 do not cancel.
    ``lam`` is written to ``out`` when given; ``x_max`` is an upper bound of ``x`` if known.
    """
    phi = torch.erfc(x).mul_(0.5)
    mills = torch.addcmul(_constant(_LOG_INV_SQRT_2PI, x), x, x, value=-1.0, out=out).exp_().div_(phi)
    log_phi = phi.log_() if need_log else None
    if (float(x.max()) if x_max is None else x_max) > _TAIL_START[x.dtype]:
        # rare: rows far in the tail (a small sigma and a wrong prediction)
        tail = x > _TAIL_START[x.dtype]
        xt = x[tail]
        series = _tail_log_erfcx(xt)
        # lam = sqrt(2/pi) / erfcx(x) = sqrt(2) x exp(-series): no cancellation of two large terms.
        mills[tail] = _SQRT2 * xt * torch.exp(-series)
        if log_phi is not None:
            log_phi[tail] = series - xt.square() - torch.log(xt) - _LOG_2_SQRT_PI
    return log_phi, mills


def _log_ndtr_and_mills_differentiable(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`log_ndtr_and_mills` with out-of-place ops only, for higher-order derivatives."""
    start = _TAIL_START_TWICE[x.dtype]
    body = x.clamp(max=start)  # both branches stay finite, so neither leaks nan into the gradient
    phi = 0.5 * torch.erfc(body)
    far = x.clamp(min=start)
    series = _tail_log_erfcx(far)
    tail = x > start
    log_phi = torch.where(tail, series - far * far - torch.log(far) - _LOG_2_SQRT_PI, torch.log(phi))
    body_mills = torch.exp(_LOG_INV_SQRT_2PI - body * body) / phi
    mills = torch.where(tail, _SQRT2 * far * torch.exp(-series), body_mills)
    return log_phi, mills


_CONSTANTS: dict[tuple[float, torch.dtype, torch.device], torch.Tensor] = {}


def _constant(value: float, like: torch.Tensor) -> torch.Tensor:
    key = (value, like.dtype, like.device)
    if key not in _CONSTANTS:
        _CONSTANTS[key] = torch.tensor(value, dtype=like.dtype, device=like.device)
    return _CONSTANTS[key]


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
def _rule(n: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Half-range nodes ``x`` (n,), ``log w + x^2`` (n,), the probe pattern ``(0, -delta, delta)`` and
    the side signs ``(-1, 1)``, on ``device``."""
    nodes, weights = _half_range_hermite_cpu(n)
    probes = torch.tensor([0.0, -_SECANT, _SECANT], dtype=torch.float64)
    sides = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    tables = (nodes, torch.log(weights) + nodes**2, probes, sides)
    return tuple(v.to(dtype=dtype, device=device) for v in tables)


@functools.lru_cache(maxsize=None)
def _column_steps(columns: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``dx/dt`` per column: ``-1/sqrt2`` for the rivals, ``+1/sqrt2`` for the true class (last column)."""
    steps = torch.full((columns,), -_INV_SQRT2, dtype=dtype, device=device)
    steps[-1] = _INV_SQRT2
    return steps


def _columns(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` at ``t = 0`` per column, and ``dx/dt``: ``x = base + t * steps`` (B, R + 1).

    At a point ``t`` the argument of ``log Phi`` is ``u = t + m_j`` for a rival and ``u = -t`` for
    the true class (its factor ``Phi(-t)``, appended as the last column), and ``x = -u / sqrt2``:
    one fused multiply-add per evaluation.
    """
    base = torch.cat([m * -_INV_SQRT2, m.new_zeros(m.shape[0], 1)], 1)
    return base, _column_steps(m.shape[1] + 1, m.dtype, m.device)


def _mode(base: torch.Tensor, steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mode of ``log h`` and its Laplace scale (B,) each, by Newton's method.

    ``log h = ell(-t) + sum_j ell(t + m_j) + log S``.  With ``p = -lam' = lam (u + lam)`` and
    ``q = lam'' = p (u + 2 lam) - lam``, summed over rivals into ``S, P, Q``:
    ``(log h)' = S - lam(-t) - P / S`` and ``-(log h)'' = p(-t) + P - Q / S + (P / S)^2``.
    Start: the strongest rival's location ``-min_j m_j`` when every margin is positive (the true
    class usually wins and ``h`` follows ``f_M``), half of it otherwise (``h`` balances ``Phi(-t)``
    against the rival's density).  The curvature is floored at 1/2 (it is at least about 1 near
    the mode), which turns a step from a non-concave point into a bounded ascent step.
    """
    m_min = base[:, :-1].max(1).values * -_SQRT2
    t = torch.where(m_min > 0, -m_min, -0.5 * m_min)
    terms = base.new_empty(3, *base.shape)  # lam, p, q
    lam, p, q = terms.unbind(0)
    for _ in range(_NEWTON_MAX_ITER):
        x = torch.addcmul(base, t[:, None], steps)
        log_ndtr_and_mills(x, need_log=False, out=lam)
        w = torch.add(lam, x, alpha=-_SQRT2)  # u + lam
        torch.mul(lam, w, out=p)
        torch.mul(w.add_(lam), p, out=q).sub_(lam)
        s, big_p, big_q = terms[:, :, :-1].sum(2).unbind(0)
        r = big_p / s
        d1 = s - lam[:, -1] - r
        curvature = torch.addcmul(p[:, -1] + big_p - big_q / s, r, r).clamp_(min=0.5)
        step = d1 / curvature
        t = t + step
        if float((step * d1).max()) <= _NEWTON_TOL**2:  # every |step| <= tol * Laplace scale
            break
    return t, torch.rsqrt(curvature)


def _log_h(center, offsets, base, steps, need_grad: bool):
    """``log h`` at ``t = center + offsets`` (center (B,), offsets (B, N)); optionally the gradient terms.

    Returns ``log h`` (B, N) and, with ``need_grad``, the two factors of the gradient of ``log h``
    with respect to ``m``, ``lam - lam (u + lam) / S``: ``lam`` and ``lam (u + lam)`` (B, N, R + 1)
    and ``S`` (B, N).
    """
    xc = torch.addcmul(base, center[:, None], steps)  # (B, R + 1)
    x = torch.addcmul(xc[:, None, :], offsets[:, :, None], steps)  # (B, N, R + 1); offsets are small
    x_max = xc.max() + offsets.abs().max() * _INV_SQRT2  # a bound on x without a pass over it
    log_phi, lam = log_ndtr_and_mills(x, x_max=float(x_max))
    s = lam[:, :, :-1].sum(2)
    log_h = log_phi.sum(2).add_(torch.log(s))
    if not need_grad:
        return log_h, None
    pw = torch.add(lam, x, alpha=-_SQRT2, out=x).mul_(lam)  # lam (u + lam), in x's buffer
    return log_h, (lam, pw, s)


def log_win_probability_and_grad(m: torch.Tensor, num_nodes: int, need_grad: bool):
    """``log P`` (B,), ``d log P / d m`` (B, R) or None, and the rule ``(mu, offsets, log_weights)``.

    No autograd: the gradient is the quadrature of the gradient integrand at the same nodes.
    """
    base, steps = _columns(m)
    mu, tau = _mode(base, steps)
    nodes, log_w, probes, sides = _rule(num_nodes // 2, m.dtype, m.device)
    log_h_probes, _ = _log_h(mu, tau[:, None] * probes, base, steps, need_grad=False)
    drop = (log_h_probes[:, :1] - log_h_probes[:, 1:]).clamp_min(_SECANT**2 / 2 / 64)
    # A Gaussian of scale s drops by delta^2 tau^2 / (2 s^2) at delta tau (s is at most 8x the
    # Laplace scale); the rule for weight exp(-x^2) steps by sqrt(2) s = delta tau / sqrt(drop).
    step = torch.rsqrt(drop).mul_(tau[:, None] * _SECANT).mul_(sides)  # (B, 2): left, right
    offsets = (step[:, :, None] * nodes).flatten(1)  # (B, K)
    log_weights = (torch.log(step.abs())[:, :, None] + log_w).flatten(1)
    # The (row, node, rival) terms are formed in row blocks that stay in cache and bound memory.
    rows = max(1, _BLOCK_TERMS // (offsets.shape[1] * base.shape[1]))
    log_p, grad = [], []
    for i in range(0, m.shape[0], rows):
        block = slice(i, i + rows)
        log_h, parts = _log_h(mu[block], offsets[block], base[block], steps, need_grad)
        terms = log_weights[block] + log_h
        log_p.append(torch.logsumexp(terms, 1))
        if need_grad:
            lam, pw, s = parts
            omega = torch.softmax(terms, 1)
            # d log P / d m_j = sum_k omega_k (lam_jk - lam_jk (u_jk + lam_jk) / S_k); drop the true class.
            g = torch.bmm(omega[:, None, :], lam).sub_(torch.bmm((omega / s)[:, None, :], pw))
            grad.append(g[:, 0, :-1])
    grad = torch.cat(grad) if need_grad else None
    return torch.cat(log_p), grad, (mu, offsets, log_weights)


def _log_p_at_nodes(m: torch.Tensor, mu: torch.Tensor, offsets: torch.Tensor, log_weights: torch.Tensor):
    """``log P`` from a given rule, by differentiable out-of-place ops (for double backward)."""
    base, steps = _columns(m)
    xc = torch.addcmul(base, mu[:, None], steps)
    x = torch.addcmul(xc[:, None, :], offsets[:, :, None], steps)
    log_phi, lam = _log_ndtr_and_mills_differentiable(x)
    # A node where every rival's lam underflows has weight 0; the clamp keeps its gradient at 0, not nan.
    log_h = log_phi.sum(2) + torch.log(lam[:, :, :-1].sum(2).clamp_min(torch.finfo(m.dtype).tiny))
    return torch.logsumexp(log_weights + log_h, 1)


class WinLogProbability(torch.autograd.Function):
    """``log P(argmax(s + sigma eps) = y)`` from scaled margins (B, R), R >= 2; hand-written backward.

    The forward computes the gradient in the same pass when it is needed and saves that (B, R)
    tensor with the rule's nodes (B, K); the backward scales it by the incoming gradient.  Under
    ``create_graph=True`` (double backprop, e.g. a gradient penalty) the backward instead
    differentiates the quadrature at the same nodes with autograd, so higher derivatives exist;
    that path holds all ``B K (R + 1)`` terms at once.
    """

    @staticmethod
    def forward(ctx, margins: torch.Tensor, num_nodes: int) -> torch.Tensor:
        log_p, grad, rule = log_win_probability_and_grad(margins, num_nodes, ctx.needs_input_grad[0])
        ctx.save_for_backward(margins, grad, *rule)
        return log_p

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        margins, grad, *rule = ctx.saved_tensors
        if not torch.is_grad_enabled():
            return grad_output[:, None] * grad, None
        log_p = _log_p_at_nodes(margins, *rule)
        (grad_margins,) = torch.autograd.grad(log_p, margins, grad_output, create_graph=True)
        return grad_margins, None


def log_win_probability(margins: torch.Tensor, num_nodes: int = 16) -> torch.Tensor:
    """``log P`` per row for scaled margins ``m`` (B, R) of the true class over its R rivals.

    ``R = 1`` is the closed form ``log Phi(m / sqrt 2)``; ``R = 0`` (one class) is ``0``.
    """
    if margins.shape[1] == 0:
        return margins.new_zeros(margins.shape[0])
    if margins.shape[1] == 1:
        return torch.special.log_ndtr(margins[:, 0] * _INV_SQRT2)
    return WinLogProbability.apply(margins, num_nodes)
