"""Log-probability that the true class wins the arg-max of Gaussian-perturbed logits, by 1-D quadrature.

Notation: ``m`` (B, C) are the scaled margins ``(s_y - s_j) / sigma`` of the true class over every
class, zero in the true class's own column; ``Z_0, Z_1, ..., Z_R`` are iid standard normal noises
(``R = C - 1`` rivals); ``ell(u) = log Phi(u)`` and ``lam(u) = phi(u) / Phi(u)`` (the inverse Mills
ratio), ``lam' = -lam (u + lam)``.

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
``exp(-x^2)`` on ``[0, inf)``) in log space.  Everything is a sum of ``O(B C K)`` elementwise
terms; the gradient is accumulated in the same pass, so memory is ``O(B C)`` between forward and
backward.

The complement ``Q = 1 - P`` (some rival beats the true class) is the same integral with the true
class's factor mirrored, ``Phi(-t) -> Phi(t)`` (``Phi(t) + Phi(-t) = 1`` and ``f_M`` integrates to 1)::

    Q = int Phi(t) F(t) S(t) dt,   d log Q / d m_j: the same formula with this integrand

a smooth peak again, which the same rule integrates to relative accuracy (its probes set closer,
see ``_SECANT_COMPLEMENT``).  A confident row (``P`` near 1) needs it: ``1 - P`` from ``log P`` has an
absolute error floor of the quadrature's (``-expm1(log P)`` is only as good as ``log P``'s absolute
error, about 1e-9 in float64, where ``Q`` may be 1e-15), while ``log Q`` integrated directly keeps its
relative precision, and so does its gradient.  :func:`log_win_and_lose` integrates ``Q`` for the rows
whose union bound ``U = sum_j Phi(-m_j / sqrt2) >= Q`` is below 1/2, ``P`` for the others (where ``Q``
is then at least a few percent, so ``1 - P`` loses nothing), and takes ``U`` itself far in the tail,
where it equals ``Q`` to rounding; it returns both logs.

Layout: an evaluation at points ``t`` works on ``C + 1`` columns ``x = base + t * steps`` with
``x = -u / sqrt2``: the ``C`` columns of the margins, ``base = -m / sqrt2`` and ``steps = -1 / sqrt2``
(``u = t + m_j``), where the true class's own column holds a sentinel ``base`` far below any
value (saturated: ``log Phi = 0`` exactly and ``lam < 1e-37``, nothing measurable in any sum), and
one appended column for the true class's factor ``Phi(-t)`` (``base = 0``, ``steps = 1 / sqrt2``; for
the complement ``Phi(t)``, ``steps = -1 / sqrt2``).
So the margins need no gather of the rivals and every evaluation is one fused multiply-add per
term.

Cost: the rule needs a few passes over ``(B, C)`` (Newton's start and iterations, the probes) and
one over the ``(B, K, C)`` node terms (an ``erfc``, an ``exp``, a handful of multiply-adds each; the
log of ``F`` is taken once per node, of the product of the ``Phi``).  Rivals saturated at every node
(large margins: a small ``sigma``) are left out of the node pass, and arguments are clamped so that
no arithmetic leaves the normal floats (subnormal results send the vectorised ``exp``/``erfc``/
``log`` to slow paths, many times slower).  The node pass runs in row blocks of up to 2^20 terms
whose temporaries, like Newton's, live in scratch buffers kept between calls (per thread and
dtype, CPU only: three of up to 2^20 terms, 12 MiB in float32, and Newton's five of (B, C + 1)):
allocated afresh on each call, they cost a page fault per 4 KiB page, a third of the time at 100
classes.  Newton's later
iterations take only the rows not yet converged when there are many terms.

This module is the PyTorch implementation (CUDA, half precision, and CPU where the fused kernel of
``_exact_native`` cannot be built); on CPU the kernel runs the same rule row by row, several
times faster.  Here the cost is mostly ``erfc`` and ``exp`` (one each per term) and, at few
classes, the fixed cost of a few hundred small tensor ops.  ``torch.compile`` of the node pass was tried (torch
2.13, inductor's C++ backend, ``dynamic=True``): 14 s to compile on first use, and then 1.6 to
1.9 times slower than the same function run eagerly at 10 to 1000 classes (one thread), so it is
not used.
"""

from __future__ import annotations

import functools
import math
import threading
from fractions import Fraction

import torch

from lossbench.losses import _exact_native
from lossbench.losses._exact_native import NO_INDEX, ONE_MINUS_P, VALUE, WAY_FAR, WAY_P, WAY_Q, WAY_UNION

_SQRT2 = math.sqrt(2.0)
_INV_SQRT2 = 1.0 / _SQRT2
_LOG_INV_SQRT_2PI = -0.5 * math.log(2.0 * math.pi)
_LOG_SQRT_2_OVER_PI = 0.5 * math.log(2.0 / math.pi)
_LOG_2_SQRT_PI = math.log(2.0 * math.sqrt(math.pi))

# erfc(x) underflows (or loses relative precision as a subnormal) beyond these arguments; past
# them log erfc(x) = -x^2 - log(sqrt(pi) x) + log(sqrt(pi) x erfcx(x)) with the asymptotic series below.
_TAIL_START = {torch.float32: 9.0, torch.float64: 26.0}
# Below these arguments erfc(x) = 2 and log Phi = 0 exactly, and exp(-x^2) would leave the normal
# floats (the vectorised exp then takes a slow path, many times slower); x is clamped up to them,
# which changes lam ~ phi(u) < 1e-37 (float32) or 1e-305 (float64) by less than its own size.
_SATURATED = {torch.float32: -9.25, torch.float64: -26.5}
# The double-backward path switches earlier, where erfc(x)^2 (in the derivative of 1/erfc) is normal.
_TAIL_START_TWICE = {torch.float32: 6.0, torch.float64: 18.0}
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
# From this many (row, column) terms on, Newton's later iterations take the unconverged rows only
# (-8% at 1000 classes; below, the gathering costs more than it saves).
_NEWTON_ACTIVE_TERMS = 1 << 16
# Newton steps on the water level of Newton's start (see _start).
_WATER_STEPS = 1
# Nodes are evaluated in row blocks of about this many (row, node, column) terms: memory stays
# O(B C) whatever the batch.  The temporaries live in scratch buffers (a few MiB, kept between
# calls); larger blocks mean fewer ops per term (2^18 to 2^20: -10% at 100 and 1000 classes).
_BLOCK_TERMS = 1 << 20
# Below this many classes every column goes through the node pass (see _drop_saturated).
_DROP_MIN_CLASSES = 24
# log F is the log of a product of Phi when every node's product stays above this floor (far above
# the smallest normal float, so no partial product loses precision); else the sum of the logs.
_PRODUCT_OF_PHI = True
_PRODUCT_FLOOR = {torch.float32: 2.0**-100, torch.float64: 2.0**-1000}
# Up to this many columns the product is of erfc = 2 Phi (at most 2^columns, no overflow; every
# partial product stays above the floor, as the remaining factors are at most 2).
_ERFC_PRODUCT_COLUMNS = {torch.float32: 120, torch.float64: 1000}


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


# Eight terms: the first omitted one is below 1e-12 at x = 9 and 1e-17 at x = 26.  In float32 five
# suffice (the sixth is 5e-10 at x = 9, below float32's resolution).
_TAIL_COEFFS = _log_erfcx_series_coefficients(8)
_TAIL_TERMS = {torch.float32: 5, torch.float64: 8}


def _tail_log_erfcx(x: torch.Tensor) -> torch.Tensor:
    """``log(sqrt(pi) x erfcx(x))`` for large ``x`` by the asymptotic series (Horner in ``1/x^2``)."""
    y = 1 / (x * x)
    acc = _TAIL_COEFFS[-1] * y
    for c in reversed(_TAIL_COEFFS[:-1]):
        acc = (acc + c) * y
    return acc


def _fix_tail(x: torch.Tensor, mills: torch.Tensor, log_phi: torch.Tensor | None) -> None:
    """Overwrite the entries with ``x`` past the switch point by the asymptotic series of ``erfcx``.

    ``x``, ``mills`` and ``log_phi`` are contiguous; the entries are gathered once by flat index.
    """
    index = torch.nonzero(x.view(-1) > _TAIL_START[x.dtype]).squeeze_(1)
    xt = x.view(-1).index_select(0, index)
    y = torch.mul(xt, xt).reciprocal_()
    coeffs = _TAIL_COEFFS[: _TAIL_TERMS[x.dtype]]
    series = y * coeffs[-1]
    for c in reversed(coeffs[:-1]):
        series.add_(c).mul_(y)
    # lam = sqrt(2/pi) / erfcx(x) = sqrt(2) x exp(-series): no cancellation of two large terms.
    mills.view(-1).index_copy_(0, index, torch.neg(series).exp_().mul_(xt).mul_(_SQRT2))
    if log_phi is not None:
        log_phi.view(-1).index_copy_(0, index, series.sub_(torch.log(xt)).addcmul_(xt, xt, value=-1.0).sub_(_LOG_2_SQRT_PI))


def _approximate_tail(x: torch.Tensor, mills: torch.Tensor, log_phi: torch.Tensor | None) -> None:
    """Past the switch point, two terms of the series: ``lam ~ sqrt2 (x + 1 / (2x))`` and
    ``log Phi ~ -x^2 - log(2 sqrt(pi) x) - 1 / (2 x^2)``, relative errors below 1e-4.

    Branch-free (no gather of the entries): for placing the rule (Newton's mode, the probes'
    drops), never for the integral itself.
    """
    start = _TAIL_START[x.dtype]
    far = x > start
    xf = x.clamp(min=start)
    half_inv = torch.reciprocal(xf).mul_(0.5)
    torch.where(far, torch.add(xf, half_inv).mul_(_SQRT2), mills, out=mills)
    if log_phi is not None:
        approx = torch.addcmul(torch.log(xf).add_(_LOG_2_SQRT_PI), xf, xf).addcmul_(half_inv, half_inv, value=2.0)
        torch.where(far, approx.neg_(), log_phi, out=log_phi)


def _log_ndtr_and_mills_(
    x: torch.Tensor,
    high: float,
    need_log: bool = True,
    mills: torch.Tensor | None = None,
    exact: bool = True,
    log: bool = True,
    phi: torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``log Phi(u)`` (if ``need_log``; ``Phi(u)`` itself with ``log=False``, for an ``x`` that stays
    below the switch point) and ``lam(u) = phi(u) / Phi(u)`` at ``u = -sqrt(2) x``.

    ``Phi(u) = erfc(x) / 2`` is used where it is a normal float; beyond, the asymptotic series of
    ``erfcx`` (``exact=False``: its first two terms, see :func:`_approximate_tail`).  The vectorised
    ``erfc`` is several times faster on CPU than ``torch.special.log_ndtr``.  The factor 1/2 is
    applied before the log, so that sums of many ``log Phi`` near 0 do not cancel.  ``x`` is clamped
    in place from below at the saturation point (see ``_SATURATED``) and ``erfc`` sees it clamped
    from above at the switch point, so that no arithmetic leaves the normal floats.  ``high`` is an
    upper bound of ``x``; ``mills`` and ``phi`` (the buffer of ``Phi``) are written in place when given.
    With ``need_log=False`` and ``log=False`` the first result is ``erfc(x) = 2 Phi(u)``.
    """
    x.clamp_(min=_SATURATED[x.dtype])
    tail = high > _TAIL_START[x.dtype]
    body = x.clamp(max=_TAIL_START[x.dtype]) if tail else x
    if need_log:
        phi = torch.erfc(body, out=phi).mul_(0.5)
        log_scale = _constant(_LOG_INV_SQRT_2PI, x)
    else:  # lam = sqrt(2 / pi) exp(-x^2) / erfc(x)
        phi = torch.erfc(body, out=phi)
        log_scale = _constant(_LOG_SQRT_2_OVER_PI, x)
    mills = torch.addcmul(log_scale, body, body, value=-1.0, out=mills).exp_().div_(phi)
    if not log:
        return phi, mills
    log_phi = phi.log_() if need_log else None
    if tail:  # rows far in the tail (a small sigma and a wrong prediction)
        (_fix_tail if exact else _approximate_tail)(x, mills, log_phi)
    return log_phi, mills


def log_ndtr_and_mills(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log Phi(u)`` and ``lam(u) = phi(u) / Phi(u)`` at ``u = -sqrt(2) x``, elementwise, without underflow."""
    if not x.numel():
        return torch.empty_like(x), torch.empty_like(x)
    return _log_ndtr_and_mills_(x.clone(memory_format=torch.contiguous_format), float(x.max()))


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


class _ScratchBuffers(threading.local):
    def __init__(self) -> None:
        # (slot, dtype, inference mode) -> (shape of the last view, that view, the flat buffer)
        self.buffers: dict[tuple[str, torch.dtype, bool], tuple[tuple[int, ...], torch.Tensor, torch.Tensor]] = {}


_SCRATCH = _ScratchBuffers()
# Scratch buffers between these sizes are kept: below, allocation is cheap (the allocator reuses
# freed memory without new pages); above, they are allocated per call instead of held.
_SCRATCH_MIN_BYTES = 1 << 16
_SCRATCH_MAX_BYTES = 1 << 25


def _scratch(slot: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """An uninitialised CPU tensor of ``shape`` kept between calls under the name ``slot`` (per thread,
    dtype and inference mode: an inference tensor cannot be written outside inference mode), or a
    fresh one (other devices, small or very large sizes).

    The node pass's temporaries are large (a block is megabytes): freshly allocated, every call
    maps new pages and takes a page fault on each (a third of the time at 100 classes); kept,
    they are written in place.  Tensors that leave the module (results, saved tensors) are never
    scratch.  Two slots never alias, so the buffers of one call are independent.
    """
    key = (slot, like.dtype, torch.is_inference_mode_enabled())
    entry = _SCRATCH.buffers.get(key)
    if entry is not None and entry[0] == shape and like.device.type == "cpu":
        return entry[1]
    n = math.prod(shape)
    size = n * like.element_size()
    if like.device.type != "cpu" or not _SCRATCH_MIN_BYTES <= size <= _SCRATCH_MAX_BYTES:
        return like.new_empty(shape)
    flat = entry[2] if entry is not None and entry[2].numel() >= n else like.new_empty(n)
    view = flat[:n].view(shape)
    _SCRATCH.buffers[key] = (shape, view, flat)
    return view


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


@functools.lru_cache(maxsize=None)
def _steps(columns: int, dtype: torch.dtype, device: torch.device, complement: bool = False) -> torch.Tensor:
    """``dx / dt`` per column (C + 1,): ``-1 / sqrt2`` for the margins' columns, ``1 / sqrt2`` last
    (the true class's factor ``Phi(-t)``; ``-1 / sqrt2`` for the complement's ``Phi(t)``)."""
    steps = torch.full((columns + 1,), -_INV_SQRT2, dtype=dtype, device=device)
    steps[-1] = -_INV_SQRT2 if complement else _INV_SQRT2
    return steps


def _columns(m: torch.Tensor, true_class: torch.Tensor) -> torch.Tensor:
    """``base`` (B, C + 1): ``-m / sqrt2``, the sentinel in the true class's column, 0 appended."""
    base = torch.nn.functional.pad(m * -_INV_SQRT2, (0, 1))
    # x = sentinel + t * steps is far below the saturation point whatever t: clamped up to it,
    # log Phi = 0 exactly and lam < 1e-37 (float32), so the column adds nothing to the sums.
    return base.scatter_(1, true_class[:, None], torch.finfo(m.dtype).min / 4)


def _start(base: torch.Tensor, complement: bool = False) -> torch.Tensor:
    """Newton's start (B, 1) from two approximations of the mode of ``h``; it only saves iterations.

    With ``b_j = -m_j / sqrt2`` and ``m_1`` the strongest rival's margin:

    - ``h = Phi(-t) f_M(t)`` with ``f_M`` the density of the rivals' maximum, approximated by the
      maximum of ``n`` normals tied at ``m_1`` (rivals behind count by ``2 Phi(m_1 - m_j)``): a bump
      near ``-m = -m_1 + c`` with ``c = Phi^-1(1 - 1/n)`` and squared width ``beta^2 = 1 / (1 + c^2)``
      (the maximum of 2, 10 or 100 normals has variance 0.68, 0.34, 0.18; this gives 1, 0.38,
      0.16).  The mode of ``Phi(-t) exp(-(t + m)^2 / (2 beta^2))`` solves ``t + m + beta^2 lam(-t) = 0``;
      one Newton step from ``-m`` (exact when the true class is far ahead; ``-m / 2`` for one
      rival far ahead).
    - Rivals in their Gaussian left tails: ``log Phi(v) ~ -v^2 / 2`` for ``v << 0`` turns ``log h``
      into ``-t^2 / 2 - sum_j (t + m_j)^2 / 2`` over the rivals with ``t + m_j < 0``; its maximum
      solves ``phi(t) = t + sum_j min(t + m_j, 0) = 0`` (a wrong prediction with a small sigma: the
      true class's noise and the leading rivals' meet halfway).  ``phi`` is concave and increasing,
      so Newton steps from ``-m_1 / 2`` climb towards the root without passing it; taken where
      ``m_1 < 0``.

    For the complement's ``Phi(t) f_M(t)`` the mode of ``Phi(t) exp(-(t + m)^2 / (2 beta^2))`` solves
    ``t + m - beta^2 lam(t) = 0``: one Newton step from ``-m`` again (``-m_1 / 2`` for one rival far
    behind, the confident rows it serves; ``-m`` for a rival far ahead, where ``Phi(t)`` is about 1).
    """
    rivals = base[:, :-1]
    top = rivals.amax(1, keepdim=True)  # -m_1 / sqrt2
    count = torch.erfc(top - rivals).sum(1, keepdim=True).clamp_(min=2.0)
    c = torch.special.ndtri(torch.rsub(count.reciprocal_(), 1.0))
    beta2 = torch.addcmul(_constant(1.0, c), c, c).reciprocal_()
    bump = c.add_(top, alpha=_SQRT2)  # -m
    if complement:
        # lam(t) = sqrt(2 / pi) / erfcx(-t / sqrt2) (erfcx overflows to inf far right: lam = 0, p = 0)
        lam = torch.div(_constant(math.sqrt(2.0 / math.pi), c), torch.special.erfcx(bump * -_INV_SQRT2))
        p = torch.add(lam, bump).mul_(lam).clamp_(0.0, 1.0)  # p(t), in (0, 1)
        return torch.addcdiv(bump, beta2 * lam, torch.addcmul(_constant(1.0, c), beta2, p))
    # lam(-t) = sqrt(2 / pi) / erfcx(t / sqrt2) holds for every t (0 far left, t far right).
    lam = torch.div(_constant(math.sqrt(2.0 / math.pi), c), torch.special.erfcx(bump * _INV_SQRT2))
    p = torch.sub(lam, bump).mul_(lam).clamp_(0.0, 1.0)  # p(-t), in (0, 1)
    start = torch.addcdiv(bump, beta2 * lam, torch.addcmul(_constant(1.0, c), beta2, p), value=-1.0)
    t = top * _INV_SQRT2  # -m_1 / 2: the root for one rival
    for _ in range(_WATER_STEPS):
        excess = torch.sub(rivals, t, alpha=_INV_SQRT2).clamp_(min=0.0)  # -min(t + m_j, 0) / sqrt2
        active = torch.sign(excess).sum(1, keepdim=True)
        t = torch.addcmul(excess.sum(1, keepdim=True).mul_(_SQRT2), active, t).div_(active.add_(1.0))
    return torch.where(top > 0, torch.maximum(start, t), start)


def _mode(
    base: torch.Tensor, steps: torch.Tensor, complement: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mode of ``log h`` and its curvature ``-d2 log h`` there (B,) each, by Newton's method.

    ``log h = ell(-t) + sum_j ell(t + m_j) + log S``.  With ``p = -lam' = lam (u + lam)`` and
    ``q = lam'' = p (u + 2 lam) - lam``, summed over rivals into ``S, P, Q``:
    ``(log h)' = S - lam(-t) - P / S`` and ``-(log h)'' = p(-t) + P - Q / S + (P / S)^2``.
    For the complement (``ell(t)`` first, ``steps`` from ``_steps(..., complement=True)``) the
    true class's terms are taken at ``t`` and ``lam(t)`` enters the slope with a plus sign.
    The curvature is floored at 1/2 (it is at least about 1 near the mode), which turns a step
    from a non-concave point into a bounded ascent step.

    The iterations after the first go on with the rows not yet converged only, when there are
    many terms per iteration (most rows converge in one or two steps; a few take four or five).
    """
    t = _start(base, complement)  # (B, 1) throughout
    shrink = base.numel() >= _NEWTON_ACTIVE_TERMS
    rows = None  # the rows still iterating, where shrink (None: all)
    sub_base, sub_t, curvature = base, t, None
    for _ in range(_NEWTON_MAX_ITER):
        terms = _scratch("newton", (3, *sub_base.shape), sub_base)  # lam, p, -q per column
        lam, p, neg_q = terms.unbind(0)
        x = torch.addcmul(sub_base, sub_t, steps, out=_scratch("newton x", sub_base.shape, sub_base))
        phi = _scratch("newton phi", sub_base.shape, sub_base)
        _log_ndtr_and_mills_(x, float(x.max()), need_log=False, mills=lam, exact=False, phi=phi)
        w = torch.add(lam, x, alpha=-_SQRT2, out=x)  # u + lam
        torch.mul(lam, w, out=p)
        torch.addcmul(lam, p, w.add_(lam), value=-1.0, out=neg_q)
        true = terms.narrow(2, -1, 1)  # lam, p, -q of the true class's factor Phi(-t)
        if complement:  # lam(t) of the true class's Phi(t) may exceed the rivals' sum by 1e30: no subtraction
            s, big_p, big_neg_q = terms.narrow(2, 0, terms.shape[2] - 1).sum(2, keepdim=True)
        else:
            # over the rivals (the sentinel adds nothing)
            s, big_p, big_neg_q = terms.sum(2, keepdim=True).sub_(true)
        lam_0, p_0, _ = true
        r = big_p / s
        d1 = (s + lam_0 if complement else s - lam_0).sub_(r)
        sub_curvature = torch.addcmul(big_neg_q.div_(s).add_(big_p).add_(p_0), r, r).clamp_(min=0.5)
        step = d1 / sub_curvature
        if rows is None:
            t, curvature = t + step, sub_curvature
        else:
            t.index_add_(0, rows, step)
            curvature.index_copy_(0, rows, sub_curvature)
        # every |step| <= tol * Laplace scale
        if not shrink:
            if float((step * d1).max()) <= _NEWTON_TOL**2:
                break
            sub_t = t
            continue
        going = torch.nonzero(step.mul_(d1).squeeze_(1) > _NEWTON_TOL**2).squeeze_(1)
        if not going.numel():
            break
        rows = going if rows is None else rows[going]
        sub_base, sub_t = base.index_select(0, rows), t.index_select(0, rows)
    return t[:, 0], curvature[:, 0]


def _log_h(
    x_center: torch.Tensor, offsets: torch.Tensor, steps: torch.Tensor, high: float, need_grad: bool, exact: bool = True
):
    """``log h`` (B, N) and ``S`` (B, N) at ``center + offsets`` (B, N), from ``x`` at the center
    (B, C + 1); with ``need_grad`` also the factors of the gradient of ``log h`` with respect to
    ``m``, ``lam - lam (u + lam) / S``: ``lam`` and ``u + lam`` (B, N, C + 1) each (the last
    column, the true class's factor, is no margin), in scratch buffers.

    The small offsets are added last, so that a far-out center does not round the nodes' positions
    relative to each other (each column's ``x`` is rounded alike at every node).  ``high`` is an
    upper bound of ``x``; ``exact=False`` approximates the far tail (to place the rule).
    """
    b, n, w = offsets.shape[0], offsets.shape[1], x_center.shape[1]
    x = torch.addcmul(x_center[:, None, :], offsets[:, :, None], steps, out=_scratch("x", (b, n, w), x_center))
    # log F = log of the product of Phi: one log per node instead of one per term, unless some
    # node's product leaves the safe range (then the terms' logs are summed after all).  With few
    # columns the product is of erfc = 2 Phi, scaled by 2^-w after (exact): no pass to halve.
    product = _PRODUCT_OF_PHI and high <= _TAIL_START[x.dtype]
    halve = not product or w > _ERFC_PRODUCT_COLUMNS[x.dtype]
    buffers = {"mills": _scratch("lam", (b, n, w), x), "phi": _scratch("phi", (b, n, w), x)}
    phi, lam = _log_ndtr_and_mills_(x, high, need_log=halve, exact=exact, log=not product, **buffers)
    s = lam[:, :, :-1].sum(2)
    if not product:
        log_f = phi.sum(2)
    else:
        f = phi.prod(2)
        if not halve:
            f.mul_(2.0**-w)
        if float(f.min()) >= _PRODUCT_FLOOR[x.dtype]:
            log_f = f.log_()
        else:
            log_f = (phi if halve else phi.mul_(0.5)).log_().sum(2)
    log_h = log_f.add_(torch.log(s))
    if not need_grad:
        return log_h, s, None
    return log_h, s, (lam, torch.add(lam, x, alpha=-_SQRT2, out=x))  # u + lam, in x's buffer


def _log_p_and_grad(
    m: torch.Tensor, true_class: torch.Tensor, num_nodes: int, need_grad: bool, complement: bool = False
):
    """``log P`` (B,), ``d log P / d m`` (B, C) or None, and the rule ``(mu, offsets, log_weights)``:
    the center (B,), the nodes' offsets and log weights (B, K).  With ``complement`` the same for
    ``Q = 1 - P``.

    No autograd: the gradient is the quadrature of the gradient integrand at the same nodes.  Its
    true column is 0 or below 1e-37 (the sentinel's floor): the true class's margin is no variable.
    On CPU the fused kernel of ``_exact_native`` does the same where it applies.
    """
    if _exact_native.applies(m, num_nodes):
        ways = torch.ones_like(true_class, dtype=torch.int64) if complement else None
        return _exact_native.log_p_and_grad(m, true_class, num_nodes, need_grad, ways=ways)
    base = _columns(m, true_class)
    steps = _steps(m.shape[1], m.dtype, m.device, complement)
    mu, curvature = _mode(base, steps, complement)
    tau = torch.rsqrt(curvature)
    secant = _SECANT_COMPLEMENT if complement else _SECANT
    probes, drops, nodes, sides, log_w = _rule(num_nodes // 2, m.dtype, m.device, secant)
    x_mu = torch.addcmul(base, mu[:, None], steps)  # (B, C + 1)
    x_mu_max = float(x_mu.max())
    spread = torch.outer(tau, probes)
    log_h, _, _ = _log_h(x_mu, spread, steps, x_mu_max + float(spread.max()) * _INV_SQRT2, False, exact=False)
    drop = torch.mm(log_h, drops).clamp_(min=secant**2 / 2 / 64)  # (B, 2): left, right
    # A Gaussian of scale s drops by delta^2 tau^2 / (2 s^2) at delta tau (s is at most 8x the
    # Laplace scale); the rule for weight exp(-x^2) steps by sqrt(2) s = delta tau / sqrt(drop).
    scale = torch.rsqrt(drop).mul_(tau[:, None] * secant)
    offsets = torch.mm(scale, nodes)  # (B, K)
    log_weights = torch.addmm(log_w, torch.log(scale), sides)
    high = x_mu_max + float(offsets.abs().max()) * _INV_SQRT2  # a bound of x without a pass over it
    x_mu, steps, restore = _drop_saturated(x_mu, offsets, complement)
    # The (row, node, column) terms are formed in row blocks that bound memory.
    rows = max(1, _BLOCK_TERMS // (offsets.shape[1] * x_mu.shape[1]))
    log_p, grad = [], []
    for i in range(0, m.shape[0], rows):
        block = slice(i, i + rows) if rows < m.shape[0] else slice(None)
        log_h, s, parts = _log_h(x_mu[block], offsets[block], steps, high, need_grad)
        terms = log_h.add_(log_weights[block])
        log_p.append(torch.logsumexp(terms, 1))
        if need_grad:
            lam, v = parts
            omega = torch.softmax(terms, 1)
            # d log P / d m_j = sum_k lam_jk (omega_k - omega_k (u_jk + lam_jk) / S_k)
            v = torch.addcmul(omega[:, :, None], v, omega.div(s).neg_()[:, :, None], out=v)
            grad.append(v.mul_(lam).sum(1)[:, :-1])
    grad = (torch.cat(grad) if len(grad) > 1 else grad[0]) if need_grad else None
    log_p = torch.cat(log_p) if len(log_p) > 1 else log_p[0]
    if grad is not None and restore is not None:
        grad = restore(grad)
    return log_p, grad, (mu, offsets, log_weights)


def _drop_saturated(x_mu: torch.Tensor, offsets: torch.Tensor, complement: bool = False):
    """Leave out of the node pass the rivals saturated at every node, when that halves the columns.

    A rival's ``x = x_mu - offset / sqrt2`` is largest at the leftmost node; when it is below the
    saturation point there, the rival is clamped at every node: ``log Phi = 0`` exactly and its
    ``lam`` is the floor ``phi(13.1) < 1e-37`` (float32; ``1e-300`` in float64), so it changes no sum
    by more than that and its gradient is about as small: the rival counts as absent and gets a zero
    gradient.  The kept rivals of each row move to the front of ``width`` columns (the rest of a
    shorter row is padded with the sentinel), followed by one padding column and the true class's
    factor.  Returns ``x`` at the center (B, width + 2), the matching ``steps`` and a function
    mapping the compact gradient (B, width + 1) back to (B, C), or ``(x_mu, steps, None)``.
    """
    b, c = x_mu.shape[0], x_mu.shape[1] - 1
    steps = _steps(c, x_mu.dtype, x_mu.device, complement)
    if c < _DROP_MIN_CLASSES:  # a few columns cost little next to the bookkeeping
        return x_mu, steps, None
    kept = (x_mu[:, :-1] - offsets.amin(1, keepdim=True) * _INV_SQRT2) > _SATURATED[x_mu.dtype]
    width = int(kept.sum(1).max())
    if 2 * (width + 2) > c + 1:
        return x_mu, steps, None
    index = torch.where(kept, kept.cumsum(1).sub_(1), width)  # dropped rivals land in column width
    compact = x_mu.new_full((b, width + 2), torch.finfo(x_mu.dtype).min / 4).scatter_(1, index, x_mu[:, :-1])
    compact[:, width] = torch.finfo(x_mu.dtype).min / 4
    compact[:, -1] = x_mu[:, -1]

    def restore(grad: torch.Tensor) -> torch.Tensor:
        grad[:, width] = 0.0
        return grad.gather(1, index)

    return compact, _steps(width + 1, x_mu.dtype, x_mu.device, complement), restore


def _log_p_at_nodes(
    m: torch.Tensor,
    true_class: torch.Tensor,
    mu: torch.Tensor,
    offsets: torch.Tensor,
    log_weights: torch.Tensor,
    complement: bool | torch.Tensor = False,
) -> torch.Tensor:
    """``log P`` (``log Q`` with ``complement``, a bool or one per row) from a given rule, by
    differentiable out-of-place ops (for double backward)."""
    rival = torch.ones_like(m).scatter_(1, true_class[:, None], 0.0)  # the true column is no margin
    t = mu[:, None] + offsets
    log_phi, lam = _log_ndtr_and_mills_differentiable((t[:, :, None] + m[:, None, :]) * -_INV_SQRT2)
    if isinstance(complement, torch.Tensor):
        sign = torch.where(complement, -_INV_SQRT2, _INV_SQRT2).to(t.dtype)[:, None]
    else:
        sign = -_INV_SQRT2 if complement else _INV_SQRT2
    log_phi_true, _ = _log_ndtr_and_mills_differentiable(t * sign)
    s = (lam * rival[:, None, :]).sum(2)
    # A node where every rival's lam underflows has weight 0; the clamp keeps its gradient at 0, not nan.
    log_h = (log_phi * rival[:, None, :]).sum(2) + log_phi_true + torch.log(s.clamp_min(torch.finfo(m.dtype).tiny))
    return torch.logsumexp(log_weights + log_h, 1)


def _to_logits(grad: torch.Tensor, true_class: torch.Tensor, scale: float, kept: torch.Tensor | None = None) -> torch.Tensor:
    """A gradient with respect to the margins ``min(s_y - s_j, clip) scale`` (B, C) as one with respect
    to the logits ``s`` (in place): ``d m_j / d s_j = -scale``, ``d m_j / d s_y = scale`` (``j != y``), and
    nothing through a clipped margin (``kept`` False; None: none clipped)."""
    y = true_class[:, None]
    if kept is not None:
        grad.mul_(kept)
    grad = grad.scatter_(1, y, 0.0).mul_(-scale)
    return grad.scatter_(1, y, grad.sum(1, keepdim=True).neg_())


def _margins_of_logits(
    logits: torch.Tensor, true_class: torch.Tensor, scale: float, clip: float | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The margins ``min(s_y - s_j, clip) scale`` (B, C) of the logits and where no clip binds (None
    without a clip), by out-of-place ops (differentiable)."""
    d = logits.gather(1, true_class[:, None]) - logits
    if clip is None:
        return d * scale, None
    return d.clamp(max=clip) * scale, d <= clip


def _union_log_q_and_grad(m: torch.Tensor, true_class: torch.Tensor, need_grad: bool):
    """``log sum_j Phi(-m_j / sqrt2)`` over the rivals (B,): the union bound of ``Q``, equal to ``log Q``
    to rounding far in the tail (see :func:`log_win_and_lose`), and its gradient with respect to ``m``
    (B, C) or None, ``-lam(u_j) exp(log Phi(u_j) - log Q) / sqrt2`` at ``u_j = -m_j / sqrt2``: no
    difference of two logs of size ``m^2 / 4`` (their rounding alone is 1e7 at ``m = 1e12`` in float64).
    In float64; where ``Q`` underflows (margins past 1e154) the gradient is 0, the limit of what
    multiplies it (``Q``, or ``Q / P``)."""
    y = true_class[:, None]
    u = m.double().mul_(-_INV_SQRT2)
    log_phi = torch.special.log_ndtr(u).scatter_(1, y, -math.inf)
    log_q = torch.logsumexp(log_phi, 1)
    if not need_grad:
        return log_q.to(m.dtype), None
    grad = log_phi.sub_(log_q[:, None]).exp_().mul_(_mills_ratio(u)).mul_(-_INV_SQRT2)
    grad.masked_fill_(torch.isneginf(log_q)[:, None], 0.0)
    return log_q.to(m.dtype), grad.to(m.dtype)


def _union_log_q(m: torch.Tensor, true_class: torch.Tensor) -> torch.Tensor:
    """:func:`_union_log_q_and_grad`'s value by differentiable out-of-place ops (for double backward)."""
    rival = torch.ones_like(m, dtype=torch.bool).scatter_(1, true_class[:, None], False)
    return torch.logsumexp(torch.where(rival, torch.special.log_ndtr(m * -_INV_SQRT2), -math.inf), 1)


# Rows with a rival this far ahead (a margin below minus this) take no rule (the way WAY_FAR): log h is
# about -m^2 / 4 there, and its rounding (m^2 eps) swamps the integrand's shape, so the rule loses its
# accuracy and then overflows (float32: -log P off by 1e-4 relative from margins of 1e4 on, nan from
# 1e17; float64: wrong from 1e9, nan from 1e120).  In float32 such rows are computed in float64; in
# float64 by the leading order of Laplace's method (see _water_level), which is exact to 1e-11
# relatively (log P) and 1e-7 (gradient, relative to its largest entry) at 1e7, and better beyond.
_FAR_MARGIN = {torch.float32: 1e3, torch.float64: 1e7}


def _water_level(m: torch.Tensor, true_class: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log P`` (B,) far in the tail and ``-d log P / d m`` (B, C), from margins ``m`` (B, C) (zero in
    the true column; any float dtype, differentiable in ``m``).

    With rivals far ahead, ``log Phi(t + m_j) ~ -(t + m_j)^2 / 2`` for those below the true class's
    noise ``t``, so ``log P ~ max_t [-t^2 / 2 - sum_j min(t + m_j, 0)^2 / 2]``: the true class's noise
    and the leading rivals' meet at the water level ``t* = -sum_A m_j / (1 + |A|)`` of the active set
    ``A = {j : t* + m_j < 0}``, found over the sorted margins.  The neglected terms are ``O(C log |m|)``
    against ``|log P| ~ m^2``; the gradient is ``-(t* + m_j)`` on ``A`` (the maximum's envelope).
    """
    rivals = m.detach().scatter(1, true_class[:, None], math.inf)
    with torch.no_grad():
        s = rivals.sort(1).values  # the true column (inf) last
        size = torch.arange(1, m.shape[1] + 1, dtype=m.dtype, device=m.device)
        level = s.cumsum(1).div_(size + 1).neg_()  # t* for the k strongest rivals active, k = 1..C
        count = (level + s < 0).sum(1, keepdim=True)  # inf and nan (inf - inf) count as false
        active = rivals <= s.gather(1, (count - 1).clamp_(min=0))
    t = -(m * active).sum(1, keepdim=True) / (count + 1)
    below = (t + m) * active
    return -0.5 * (t[:, 0] * t[:, 0] + (below * below).sum(1)), below


def _in_float64(m64: torch.Tensor, true_class: torch.Tensor, num_nodes: int, need_grad: bool, dtype: torch.dtype):
    """Each row's log P or log Q (as float64's ways say) and gradient from float64 margins, in ``dtype``."""
    value, grad, _ = _log_value_and_grad_by_ways(m64, true_class, num_nodes, need_grad, _ways(m64, true_class))
    return value.to(dtype), None if grad is None else grad.to(dtype)


def _far_log_p_and_grad(m: torch.Tensor, true_class: torch.Tensor, num_nodes: int, need_grad: bool):
    """``log P`` (B,) and its gradient with respect to ``m`` (B, C) or None for rows of the way WAY_FAR:
    below float64 by float64's ways, in float64 by :func:`_water_level`."""
    if m.dtype != torch.float64:
        return _in_float64(m.double(), true_class, num_nodes, need_grad, m.dtype)
    log_p, below = _water_level(m, true_class)
    return log_p, below.neg_() if need_grad else None


def _log_value_and_grad_by_ways(
    m: torch.Tensor, true_class: torch.Tensor, num_nodes: int, need_grad: bool, ways: torch.Tensor
):
    """As :func:`_log_p_and_grad` with a way per row (see :func:`log_win_and_lose`), by PyTorch ops:
    the rows of each way computed together (the rule of the union bound and of far rows is zeros)."""
    b, c = m.shape
    groups = [(k, torch.nonzero(ways == k).squeeze(1)) for k in (WAY_P, WAY_Q, WAY_UNION, WAY_FAR)]
    groups = [(k, index) for k, index in groups if index.numel()]
    k_nodes = 2 * (num_nodes // 2)
    if len(groups) == 1 and groups[0][1].numel() == b:
        groups = [(groups[0][0], None)]
    value = m.new_empty(b)
    grad = m.new_zeros(b, c) if need_grad else None
    rule = (m.new_zeros(b), m.new_zeros(b, k_nodes), m.new_zeros(b, k_nodes))
    for k, index in groups:
        part = m if index is None else m.index_select(0, index)
        target = true_class if index is None else true_class.index_select(0, index)
        r = None
        if k == WAY_UNION:
            v, g = _union_log_q_and_grad(part, target, need_grad)
        elif k == WAY_FAR:
            v, g = _far_log_p_and_grad(part, target, num_nodes, need_grad)
        else:
            v, g, r = _log_p_and_grad(part, target, num_nodes, need_grad, complement=k == WAY_Q)
        if index is None:
            value, grad = v, g
            rule = r if r is not None else rule
            continue
        value.index_copy_(0, index, v)
        if need_grad:
            grad.index_copy_(0, index, g)
        if r is not None:
            for whole, piece in zip(rule, r):
                whole.index_copy_(0, index, piece)
    return value, grad, rule


def _loss_of_value(value: torch.Tensor, ways: torch.Tensor, kind: int, need_slope: bool = False):
    """What ``kind`` asks of a row (see ``_exact_native.rows``) from its ``log P`` (ways WAY_P, WAY_FAR)
    or ``log Q`` (WAY_Q, WAY_UNION), by out-of-place ops (differentiable), and with ``need_slope`` its
    derivative with respect to that log (the kernel's ``row_loss``)."""
    if kind == VALUE:
        return value, (torch.ones_like(value) if need_slope else None)
    of_q = (ways == WAY_Q) | (ways == WAY_UNION)
    if kind == ONE_MINUS_P:  # -expm1(log P) or exp(log Q); slopes -P and Q
        p_or_q = torch.exp(value)
        return torch.where(of_q, p_or_q, -torch.expm1(value)), (torch.where(of_q, p_or_q, -p_or_q) if need_slope else None)
    other = _log1mexp(value)  # log P of a row of Q
    slope = torch.where(of_q, torch.exp(value - other), -1.0) if need_slope else None  # d(-log P) = (Q / P) d log Q
    return torch.where(of_q, -other, -value), slope


def _rows(
    scores: torch.Tensor,
    true_class: torch.Tensor,
    num_nodes: int,
    need_grad: bool,
    scale: float | None = None,
    clip: float | None = None,
    ways: torch.Tensor | None = None,
    kind: int = VALUE,
    ignore_index: int = NO_INDEX,
    reduction: str = "none",
    native: tuple | None = None,
    standardize: float | None = None,
):
    """Per row what ``kind`` asks (see ``_exact_native.rows``), its mean or sum as ``reduction`` says (None
    for "none"), the gradient of the rows' values or of that with respect to the scores (B, C) or None,
    the ways, the rule ``(mu, offsets, log_weights)`` and the number of rows whose target is not
    ``ignore_index``; by the kernel where it applies (``native``: the result of its call, if made), else
    by PyTorch ops.  ``scores`` are margins, or logits with ``scale`` (and an optional ``clip``, see
    :func:`_margins_of_logits`); ``ways`` None: chosen here.  Rows whose target is ``ignore_index`` give
    zeros; another target outside ``[0, C)`` is refused.  ``standardize`` (its eps; by the kernel only):
    the logits standardised first (see ``_exact_native.rows``)."""
    b, c = scores.shape
    if native is None and _exact_native.applies(scores, num_nodes):
        native = _native_rows(
            scores, true_class, num_nodes, need_grad, scale, clip, ways, kind, ignore_index, reduction, standardize
        )
    if native is not None:
        out, ways, (valid, bad, far), (mean, d, per_std) = native
        if standardize is not None:  # the margins of standardised logits: (s_y - s_j) / d
            scale, clip = scale / d, None if clip is None else clip * d
        value, reduced, grad, rule = _exact_native.views(out, b, c, num_nodes, need_grad)
        reduced = None if reduction == "none" else reduced
    else:
        true_class = true_class.long()
        keep = true_class != ignore_index
        valid, far = int(keep.sum()), 0
        bad = valid - int((keep & (true_class >= 0) & (true_class < c)).sum())
        if bad == 0:
            y = torch.where(keep, true_class, 0) if valid < b else true_class
            if scale is None:
                m, kept = scores.detach(), None
            else:
                m, kept = _margins_of_logits(scores.detach(), y, scale, clip)
            ways = _ways(m, y) if ways is None else ways
            value, grad, rule = _log_value_and_grad_by_ways(m, y, num_nodes, need_grad, ways)
            value, slope = _loss_of_value(value, ways, kind, need_grad)
            if need_grad:
                grad = grad.mul_(slope[:, None] / valid if reduction == "mean" else slope[:, None])
                grad = grad if scale is None else _to_logits(grad, y, scale, kept)
            if valid < b:
                value = value.masked_fill(~keep, 0.0)
                if need_grad:
                    grad.masked_fill_(~keep[:, None], 0.0)
            reduced = None if reduction == "none" else value.new_empty(())
    if bad:
        raise ValueError(
            f"target has {bad} class indices outside [0, {c}) that are not ignore_index={ignore_index}"
        )
    if far:  # rows the kernel left: log P far in the tail, from float64 margins (see _FAR_MARGIN)
        index = torch.nonzero(ways == WAY_FAR).squeeze(1)
        y = true_class.index_select(0, index).long()
        part = scores.detach().index_select(0, index).double()
        m, kept = (part, None) if scale is None else _margins_of_logits(part, y, scale, clip)
        v, g = _in_float64(m, y, num_nodes, need_grad, scores.dtype)
        v, slope = _loss_of_value(v, ways.index_select(0, index), kind, need_grad)
        value.index_copy_(0, index, v)
        if need_grad:
            g.mul_(slope[:, None] / valid if reduction == "mean" else slope[:, None])
            grad.index_copy_(0, index, g if scale is None else _to_logits(g, y, scale, kept))
            if standardize is not None:  # the standardisation's part, as the kernel adds it without far rows
                rows = (true_class != ignore_index)[:, None]
                centred = torch.where(rows, scores.detach().double() - mean, 0.0)
                grad.add_((centred * (-float((grad.double() * centred).sum()) / d * per_std)).to(grad.dtype))
    if reduced is not None and (far or native is None):  # as the kernel sums: in float64, in row order
        total = value.sum(dtype=torch.float64)
        reduced.copy_(total / valid if reduction == "mean" else total)
    return value, reduced, grad, ways, rule, valid


def _native_rows(scores, true_class, num_nodes, need_grad, scale, clip, ways, kind, ignore_index, reduction, standardize=None):
    """One kernel call (see ``_exact_native.rows``), the ways chosen there unless given."""
    return _exact_native.rows(
        scores, true_class, num_nodes, need_grad, scale=scale or 0.0, clip=math.inf if clip is None else clip,
        kind=kind, ways=ways, least=None if ways is not None else _union_least(scores.shape[1], scores.dtype),
        ignore_index=ignore_index, reduction=reduction, standardize=standardize is not None,
        eps=standardize or 0.0,
    )  # fmt: skip


def _log_values_at_rule(
    margins: torch.Tensor, true_class: torch.Tensor, ways: torch.Tensor, rule: tuple[torch.Tensor, ...], num_nodes: int
) -> torch.Tensor:
    """Each row's ``log P`` or ``log Q`` (as its way says) at the given rule, by differentiable ops (the
    double-backward path): the union bound's formula for its rows, the far rows' own (see
    :func:`_far_log_p_and_grad`)."""
    far = ways == WAY_FAR
    any_far = bool(far.any())
    safe = torch.where(far[:, None], 0.0, margins) if any_far else margins  # no inf or nan to leak through where
    # in float64 whatever the dtype: log h is about -m^2 at a wrong prediction with a small sigma, and
    # float32's rounding of the nodes' positions there (1e-4 at m = 1e3) moves the weights by percents
    rule64 = [r.double() for r in rule]
    value = _log_p_at_nodes(safe.double(), true_class, *rule64, complement=ways == WAY_Q).to(margins.dtype)
    union = ways == WAY_UNION
    if bool(union.any()):
        value = torch.where(union, _union_log_q(margins, true_class), value)
    if any_far:
        index = torch.nonzero(far).squeeze(1)
        m, y = margins.index_select(0, index), true_class.index_select(0, index)
        if m.dtype == torch.float64:
            v = _water_level(m, y)[0]
        else:  # as the forward: float64's rule, taken without gradient
            m64 = m.double()
            ways64 = _ways(m64.detach(), y)
            rule64 = _log_value_and_grad_by_ways(m64.detach(), y, num_nodes, False, ways64)[2]
            v = _log_values_at_rule(m64, y, ways64, rule64, num_nodes).to(m.dtype)
        value = value.index_put((index,), v)
    return value


class WinLogProbability(torch.autograd.Function):
    """``log P(argmax(s + sigma eps) = y)`` and ``log Q = log(1 - P)`` per row from scaled margins (B, C)
    (zero in the true column ``y``), C >= 3; hand-written backward.  With ``scale`` the input is the
    logits (B, C) instead (and an optional ``clip``, see :func:`_margins_of_logits`): the fused CPU kernel
    forms the margins itself and returns the gradient with respect to the logits (the margins' tensor,
    its gather and their backward cost more than the kernel at ten classes); the PyTorch path forms
    them and maps the gradient back the same way.  Each row takes its way (see :func:`log_win_and_lose`);
    the other log of each row is formed by ``log(1 - exp(.))`` without autograd ops.

    The forward computes the gradient in the same pass when it is needed and saves that (B, C) tensor
    with the rule's nodes (B, K); the backward scales it by the incoming gradient.  Under
    ``create_graph=True`` (double backprop, e.g. a gradient penalty) the backward instead
    differentiates the quadrature at the same nodes (see :func:`_log_values_at_rule`) with autograd, so
    higher derivatives exist; that path holds all ``B K C`` terms at once.
    """

    @staticmethod
    def forward(ctx, scores, true_class, num_nodes, scale=None, clip=None):
        value, _, grad, ways, rule, _ = _rows(scores, true_class, num_nodes, ctx.needs_input_grad[0], scale, clip)
        ctx.settings = num_nodes, scale, clip
        lost = (ways == WAY_Q) | (ways == WAY_UNION)
        other = _log1mexp(value)
        slope = torch.sub(value, other).exp_().neg_()  # d other / d value = -exp(value - other)
        one = torch.ones_like(slope)
        ctx.save_for_backward(scores, true_class, ways, grad, torch.where(lost, slope, one), torch.where(lost, one, slope), *rule)
        return torch.where(lost, other, value), torch.where(lost, value, other)

    @staticmethod
    def backward(ctx, grad_log_p, grad_log_q):
        scores, true_class, ways, grad, d_log_p, d_log_q, *rule = ctx.saved_tensors
        if not torch.is_grad_enabled():  # of the value: log P or log Q as the way says
            g = torch.addcmul(grad_log_p * d_log_p, grad_log_q, d_log_q)
            return g[:, None] * grad, None, None, None, None
        num_nodes, scale, clip = ctx.settings
        margins = scores if scale is None else _margins_of_logits(scores, true_class, scale, clip)[0]
        value = _log_values_at_rule(margins, true_class, ways, rule, num_nodes)
        lost, other = (ways == WAY_Q) | (ways == WAY_UNION), _log1mexp(value)
        outputs = (torch.where(lost, other, value), torch.where(lost, value, other))
        (grad_scores,) = torch.autograd.grad(outputs, scores, (grad_log_p, grad_log_q), create_graph=True)
        return grad_scores, None, None, None, None


def _standardize(x: torch.Tensor, valid: torch.Tensor, eps: float) -> torch.Tensor:
    """``(x - mean) / (std + eps)`` with one unbiased mean/std over the logits of valid rows."""
    w = valid.to(x.dtype)[:, None]
    count = (w.sum() * x.shape[1]).clamp_min(2.0)
    mean = (x * w).sum() / count
    var = ((x - mean).square() * w).sum() / (count - 1)
    # The floor keeps the gradient finite when every logit is equal (sqrt' is infinite at 0).
    return (x - mean) / (var.clamp_min(torch.finfo(x.dtype).tiny).sqrt() + eps)


class ExactRowsLoss(torch.autograd.Function):
    """EXACT's loss from logits (B, C), C >= 3, in one node: per row ``1 - P`` or ``-log P`` (``kind``)
    with margins ``min(s_y - s_j, clip) scale`` (of the logits standardised by :func:`_standardize` with
    eps ``standardize`` where that is not None: on CPU only, by the kernel), reduced as ``reduction`` says over the rows whose target
    is not ``ignore_index`` (their mean divides by their count).  One call of the kernel on CPU gives
    every row's way, loss and gradient (see ``_exact_native.rows``); the backward scales that gradient.
    Under ``create_graph=True`` it differentiates the quadrature at the same nodes instead, as
    :class:`WinLogProbability` does.  Results equal ``log_win_and_lose``'s followed by the same loss
    and reduction, up to rounding.
    """

    @staticmethod
    def forward(ctx, logits, target, settings):
        # (the settings in one argument: fewer for the backward to pass back)
        num_nodes, scale, clip, kind, reduction, ignore_index, standardize = settings
        need_grad = ctx.needs_input_grad[0]
        native = None
        if _exact_native.applies(logits, num_nodes):
            native = _native_rows(
                logits, target, num_nodes, need_grad, scale, clip, None, kind, ignore_index, reduction, standardize
            )
            out, ways, (valid, bad, far), _ = native
            if not (bad or far):  # the common case, lean: the outputs' views made only where needed
                b = logits.shape[0]
                ctx.settings = settings, valid, True
                ctx.save_for_backward(logits, target, ways, out)
                return out[:b] if reduction == "none" else out[b]
        per_sample, reduced, grad, ways, rule, valid = _rows(
            logits, target, num_nodes, need_grad, scale, clip, None, kind, ignore_index, reduction, native, standardize
        )
        ctx.settings = settings, valid, False
        ctx.save_for_backward(logits, target, ways, grad, *rule)
        return per_sample if reduced is None else reduced

    @staticmethod
    def backward(ctx, grad_out):
        logits, target, ways, *saved = ctx.saved_tensors
        (num_nodes, scale, clip, kind, reduction, ignore_index, standardize), valid, packed = ctx.settings
        b, c = logits.shape
        if packed:
            grad, rule = None, None
        else:
            grad, *rule = saved
        if not torch.is_grad_enabled():  # the gradient of the rows' values, or of their mean or sum
            if packed:
                grad = _exact_native.gradient_of(saved[0], b, c, num_nodes)
            return grad * (grad_out[:, None] if reduction == "none" else grad_out), None, None
        if packed:
            rule = _exact_native.views(saved[0], b, c, num_nodes, False)[3]
        keep = target != ignore_index
        y = torch.where(keep, target, 0).long()
        x = logits if standardize is None else _standardize(logits, keep, standardize)
        margins = _margins_of_logits(x, y, scale, clip)[0]
        per_sample = _loss_of_value(_log_values_at_rule(margins, y, ways, rule, num_nodes), ways, kind)[0]
        per_sample = torch.where(keep, per_sample, 0.0)
        if reduction != "none":
            per_sample = per_sample.sum() / valid if reduction == "mean" else per_sample.sum()
        (grad_logits,) = torch.autograd.grad(per_sample, logits, grad_out, create_graph=True)
        return grad_logits, None, None


# Rows whose union bound of Q (the sum over rivals of Phi(-m_j / sqrt2), each the probability that
# that rival alone beats the true class) is below this integrate Q itself: then Q < 1/2 < P.  Above it,
# Q is at least a few percent (0.09 for a thousand tied rivals, 0.025 for a million), so the
# complement of P loses nothing measurable.
_UNION_BOUND = 0.5
_LN2 = math.log(2.0)
# Far in the tail the union bound is Q itself: two rivals both beating the true class is rarer than
# one by about exp(-m_1^2 / 12) (m_1 the smallest margin; the joint event's exponent is m^2 / 3
# against m^2 / 4), so its relative error is below (R - 1) exp(-m_1^2 / 12) (10 to 20 times below
# it, measured against 40-digit quadrature at 2 to 1000 tied rivals).  Rows where that is below the
# dtype's epsilon take it: exact to rounding, O(C) per row, and free of the rule's one limit there:
# rivals clamped at the saturation point add their floor lam (1e-37 in float32) to S, which
# dominates the complement's integrand once the rivals' u at the nodes passes the saturation point
# (margins beyond 2 u_sat - 8 = 18 in float32 and 67 in float64; the union bound takes over at 14 to
# 19 and 21 to 25).
_SATURATED_U = {dtype: -_SQRT2 * x for dtype, x in _SATURATED.items()}


def _log1mexp(a: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(a))`` for ``a <= 0`` (Maechler's two branches; each sees a clamped input, so the
    branch not taken has a finite gradient that ``where`` zeroes)."""
    a = a.clamp(max=0.0)
    near = a > -_LN2
    return torch.where(
        near, torch.log(-torch.expm1(a.clamp(min=-_LN2))), torch.log1p(-torch.exp(a.clamp(max=-_LN2)))
    )


@functools.lru_cache(maxsize=None)
def _union_least(c: int, dtype: torch.dtype) -> float:
    """The smallest margin of a row that takes the union bound (see ``_SATURATED_U``): where
    ``(C - 2) exp(-m_1^2 / 12)`` is below the dtype's epsilon, and before the saturated rivals' floor."""
    eps = torch.finfo(dtype).eps
    return min(math.sqrt(12.0 * (math.log(max(c - 2, 1)) - math.log(eps))), 2.0 * _SATURATED_U[dtype] - 8.0)


def _ways(m: torch.Tensor, true_class: torch.Tensor) -> torch.Tensor:
    """The way of each row of margins ``m`` (B, C >= 3) in :func:`log_win_and_lose` (B,) int64: WAY_P the
    rule for ``P``, WAY_Q the complement's rule for ``Q``, WAY_UNION the union bound of ``Q``, WAY_FAR no
    rule (a rival more than ``_FAR_MARGIN`` ahead: see :func:`_far_log_p_and_grad`)."""
    # + 1/2: the true class's own column adds Phi(0)
    lose = torch.special.ndtr(m * -_INV_SQRT2).sum(1) < _UNION_BOUND + 0.5
    # Where lose holds every margin is positive, and the smallest's square passes the bound of the
    # union bound's error iff the smallest passes its square root.
    least = m.scatter(1, true_class[:, None], math.inf).amin(1)
    ways = torch.where(lose, torch.where(least > _union_least(m.shape[1], m.dtype), WAY_UNION, WAY_Q), WAY_P)
    return ways.masked_fill_(least < -_FAR_MARGIN[m.dtype], WAY_FAR)


def log_win_and_lose(
    scores: torch.Tensor, true_class: torch.Tensor, num_nodes: int = 16, scale: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log P, log Q)`` per row, ``Q = 1 - P``, each to relative precision.

    ``scores`` are scaled margins (B, C) over every class (zero in the true class's column) or, with
    ``scale``, the logits (see :class:`WinLogProbability`).  Each row takes one of four ways, chosen
    on its margins without gradient (by the kernel on CPU; by :func:`_ways` otherwise):

    - union bound of ``Q`` at least 1/2: the rule for ``P``, and ``log Q = log(-expm1(log P))``;
    - below 1/2 (a confident row): the complement's rule for ``Q``, ``log P = log1p(-Q)``;
    - far in the tail, where the union bound equals ``Q`` to rounding: that bound, in closed form;
    - a rival more than ``_FAR_MARGIN`` ahead: see :func:`_far_log_p_and_grad`.

    All of them go through one call of :class:`WinLogProbability` (of the fused kernel on CPU).

    ``C = 2`` is the closed form ``Phi(+-m_rival / sqrt 2)`` (see :func:`log_ndtr`).
    """
    b, c = scores.shape
    y = true_class[:, None]
    if b == 0:
        empty = scores.sum(1) * 0.0
        return empty, empty
    if c == 2:
        margin = scores.sum(1) if scale is None else (scores.gather(1, y) - scores).sum(1) * scale
        return log_ndtr(margin * _INV_SQRT2), log_ndtr(margin * -_INV_SQRT2)
    # Q is at least a few percent where the way is WAY_P (log P < 0 with room to spare), below 1/2 elsewhere
    return WinLogProbability.apply(scores, true_class, num_nodes, scale)


def _mills_ratio(z: torch.Tensor) -> torch.Tensor:
    """``phi(z) / Phi(z)`` by out-of-place ops, finite for every finite ``z`` (``-z`` far left, 0 far
    right): ``sqrt(2 / pi) / erfcx(-z / sqrt2)`` for ``z <= 0`` and ``exp(log phi(z) - log Phi(z))`` above
    (each branch sees a clamped input)."""
    left = z.clamp(max=0.0)
    right = z.clamp(min=0.0)
    return torch.where(
        z > 0,
        torch.exp(_LOG_INV_SQRT_2PI - 0.5 * right * right - torch.special.log_ndtr(right)),
        math.sqrt(2.0 / math.pi) / torch.special.erfcx(left * -_INV_SQRT2),
    )


class _LogNdtr(torch.autograd.Function):
    """``torch.special.log_ndtr`` with the derivative ``phi(z) / Phi(z)`` of :func:`_mills_ratio`: torch's
    own, ``exp(-(log Phi(z) + z^2 / 2)) / sqrt(2 pi)``, cancels two terms of size ``z^2 / 2`` (wrong
    beyond ``|z| = 1e3`` in float32 and ``1e8`` in float64, nan from ``1e10``)."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return torch.special.log_ndtr(z)

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return grad * _mills_ratio(z)


def log_ndtr(z: torch.Tensor) -> torch.Tensor:
    """``log Phi(z)``, with a derivative that is right (and finite) for every finite ``z``."""
    return _LogNdtr.apply(z)


def log_win_probability_of_columns(
    margins: torch.Tensor, true_class: torch.Tensor, num_nodes: int = 16
) -> torch.Tensor:
    """``log P`` per row from margins ``m`` (B, C) over every class, zero in the true class's column.

    ``C = 2`` is the closed form ``log Phi(m_rival / sqrt 2)``.
    """
    if margins.shape[1] == 2:
        return log_ndtr(margins.sum(1) * _INV_SQRT2)  # the true column is zero
    return WinLogProbability.apply(margins, true_class, num_nodes)[0]


def log_win_probability(margins: torch.Tensor, num_nodes: int = 16) -> torch.Tensor:
    """``log P`` per row for scaled margins ``m`` (B, R) of the true class over its R rivals.

    ``R = 1`` is the closed form ``log Phi(m / sqrt 2)``; ``R = 0`` (one class) is ``0``.
    """
    b, r = margins.shape
    if r == 0:
        return margins.new_zeros(b)
    columns = torch.cat([margins, margins.new_zeros(b, 1)], 1)
    true_class = torch.full((b,), r, dtype=torch.long, device=margins.device)
    return log_win_probability_of_columns(columns, true_class, num_nodes)
