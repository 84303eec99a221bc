"""The special functions of EXACT's quadrature: ``log Phi``, the inverse Mills ratio and their tails.

Throughout, ``x = -u / sqrt2``, so that ``Phi(u) = erfc(x) / 2``; ``lam(u) = phi(u) / Phi(u)``.  The
in-place functions (names ending in ``_``) clamp ``x`` so that no arithmetic leaves the normal floats
(subnormal results send the vectorised ``exp``/``erfc``/``log`` to slow paths); past the switch point
``_TAIL_START`` they take the asymptotic series of ``erfcx``.  The fused kernel reads the same
constants (``_exact_native.constants``).
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch

_SQRT2 = math.sqrt(2.0)
_INV_SQRT2 = 1.0 / _SQRT2
_LOG_INV_SQRT_2PI = -0.5 * math.log(2.0 * math.pi)
_LOG_SQRT_2_OVER_PI = 0.5 * math.log(2.0 / math.pi)
_LOG_2_SQRT_PI = math.log(2.0 * math.sqrt(math.pi))
_LN2 = math.log(2.0)

# erfc(x) underflows (or loses relative precision as a subnormal) beyond these arguments; past
# them log erfc(x) = -x^2 - log(sqrt(pi) x) + log(sqrt(pi) x erfcx(x)) with the asymptotic series below.
_TAIL_START = {torch.float32: 9.0, torch.float64: 26.0}
# Below these arguments erfc(x) = 2 and log Phi = 0 exactly, and exp(-x^2) would leave the normal
# floats (the vectorised exp then takes a slow path, many times slower); x is clamped up to them,
# which changes lam ~ phi(u) < 1e-37 (float32) or 1e-305 (float64) by less than its own size.
_SATURATED = {torch.float32: -9.25, torch.float64: -26.5}
# The double-backward path switches earlier, where erfc(x)^2 (in the derivative of 1/erfc) is normal.
_TAIL_START_TWICE = {torch.float32: 6.0, torch.float64: 18.0}


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



def _saturate_(x: torch.Tensor, high: float) -> tuple[torch.Tensor, bool]:
    """Clamp ``x`` in place from below at the saturation point (see ``_SATURATED``); return what ``erfc``
    sees (``x`` clamped from above at the switch point where ``high``, an upper bound of ``x``, passes
    it) and whether some entries may lie past the switch point."""
    x.clamp_(min=_SATURATED[x.dtype])
    tail = high > _TAIL_START[x.dtype]
    return (x.clamp(max=_TAIL_START[x.dtype]) if tail else x), tail


def _mills_of(body: torch.Tensor, erfc_or_phi: torch.Tensor, log_scale: float, mills: torch.Tensor | None):
    """``lam = exp(log_scale - body^2) / erfc_or_phi`` (written to ``mills`` when given)."""
    log_lam = torch.addcmul(_constant(log_scale, body), body, body, value=-1.0, out=mills)
    return log_lam.exp_().div_(erfc_or_phi)


def ndtr_and_mills_(
    x: torch.Tensor, mills: torch.Tensor | None = None, phi: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``Phi(u)`` and ``lam(u)`` for an ``x`` at most the switch point (``phi`` and ``mills``: buffers)."""
    x.clamp_(min=_SATURATED[x.dtype])
    phi = torch.erfc(x, out=phi).mul_(0.5)
    return phi, _mills_of(x, phi, _LOG_INV_SQRT_2PI, mills)


def erfc_and_mills_(
    x: torch.Tensor, mills: torch.Tensor | None = None, erfc: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``erfc(x) = 2 Phi(u)`` and ``lam(u)`` for an ``x`` at most the switch point (no pass to halve)."""
    x.clamp_(min=_SATURATED[x.dtype])
    erfc = torch.erfc(x, out=erfc)
    return erfc, _mills_of(x, erfc, _LOG_SQRT_2_OVER_PI, mills)


def _log_ndtr_and_mills_(x, high, fix_tail, mills, phi):
    body, tail = _saturate_(x, high)
    # the factor 1/2 before the log, so that sums of many log Phi near 0 do not cancel
    phi = torch.erfc(body, out=phi).mul_(0.5)
    mills = _mills_of(body, phi, _LOG_INV_SQRT_2PI, mills)
    log_phi = phi.log_()
    if tail:  # rows far in the tail (a small sigma and a wrong prediction)
        fix_tail(x, mills, log_phi)
    return log_phi, mills


def log_ndtr_and_mills_(
    x: torch.Tensor, high: float, mills: torch.Tensor | None = None, phi: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``log Phi(u)`` and ``lam(u)``, past the switch point by the series of ``erfcx`` (see
    :func:`_fix_tail`); ``x`` is clamped in place, ``high`` is an upper bound of it, ``phi`` (the buffer
    that ends up holding ``log Phi``) and ``mills`` are written in place when given.  The vectorised
    ``erfc`` is several times faster on CPU than ``torch.special.log_ndtr``."""
    return _log_ndtr_and_mills_(x, high, _fix_tail, mills, phi)


def rough_log_ndtr_and_mills_(
    x: torch.Tensor, high: float, mills: torch.Tensor | None = None, phi: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`log_ndtr_and_mills_` with the tail's first two terms only (see :func:`_approximate_tail`):
    to place the rule, never for the integral itself."""
    return _log_ndtr_and_mills_(x, high, _approximate_tail, mills, phi)


def rough_mills_(
    x: torch.Tensor, high: float, mills: torch.Tensor | None = None, erfc: torch.Tensor | None = None
) -> torch.Tensor:
    """``lam(u)`` alone, the tail approximated (see :func:`_approximate_tail`), for Newton's method;
    ``erfc`` is a buffer for ``erfc(x)``."""
    body, tail = _saturate_(x, high)
    mills = _mills_of(body, torch.erfc(body, out=erfc), _LOG_SQRT_2_OVER_PI, mills)
    if tail:
        _approximate_tail(x, mills, None)
    return mills


def log_ndtr_and_mills(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log Phi(u)`` and ``lam(u) = phi(u) / Phi(u)`` at ``u = -sqrt(2) x``, elementwise, without underflow."""
    if not x.numel():
        return torch.empty_like(x), torch.empty_like(x)
    return log_ndtr_and_mills_(x.clone(memory_format=torch.contiguous_format), float(x.max()))


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



def _log1mexp(a: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(a))`` for ``a <= 0`` (Maechler's two branches; each sees a clamped input, so the
    branch not taken has a finite gradient that ``where`` zeroes)."""
    a = a.clamp(max=0.0)
    near = a > -_LN2
    return torch.where(
        near, torch.log(-torch.expm1(a.clamp(min=-_LN2))), torch.log1p(-torch.exp(a.clamp(max=-_LN2)))
    )


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
