"""EXACT's integral by quadrature, per row, without autograd: the rule's placement and node pass,
the complement, the union bound and the far rows (the PyTorch path; see ``_exact_quadrature`` for the
integrand and the ways a row takes).

The rule: find the mode ``mu`` of ``log h`` by Newton's method, take the Laplace scale
``tau = (-d2 log h)^(-1/2)``, measure the drop of ``log h`` at ``mu -+ delta tau`` to set one scale per
side (``h`` is skewed: it falls like a Gaussian of unit width on one side and much faster on the
other), and integrate each half-line with an ``n``-point half-range Gauss-Hermite rule (weight
``exp(-x^2)`` on ``[0, inf)``, see ``_exact_rules``) in log space.  Everything is a sum of
``O(B C K)`` elementwise terms; the gradient is accumulated in the same pass, so memory is ``O(B C)``
between forward and backward.

Layout: an evaluation at points ``t`` works on ``C + 1`` columns ``x = base + t * steps`` with
``x = -u / sqrt2``: the ``C`` columns of the margins, ``base = -m / sqrt2`` and ``steps = -1 / sqrt2``
(``u = t + m_j``), where the true class's own column holds a sentinel ``base`` far below any
value (saturated: ``log Phi = 0`` exactly and ``lam < 1e-37``, nothing measurable in any sum), and
one appended column for the true class's factor ``Phi(-t)`` (``base = 0``, ``steps = 1 / sqrt2``; for
the complement ``Phi(t)``, ``steps = -1 / sqrt2``).  So the margins need no gather of the rivals and
every evaluation is one fused multiply-add per term.

Cost: the rule needs a few passes over ``(B, C)`` (Newton's start and iterations, the probes) and
one over the ``(B, K, C)`` node terms (an ``erfc``, an ``exp``, a handful of multiply-adds each; the
log of ``F`` is taken once per node, of the product of the ``Phi``).  Rivals saturated at every node
(large margins: a small ``sigma``) are left out of the node pass, and arguments are clamped so that
no arithmetic leaves the normal floats (see ``_exact_special``).  The node pass runs in row blocks of
up to 2^20 terms whose temporaries, like Newton's, live in scratch buffers kept between calls (see
``_exact_scratch``).  Newton's later iterations take only the rows not yet converged when there are
many terms.  On CPU the fused kernel of ``_exact_native`` runs the same rule row by row where it
applies; what each choice here was measured to save is in ``docs/exact-quadrature.md``.
"""

from __future__ import annotations

import functools
import math

import torch

from lossbench.losses import _exact_native
from lossbench.losses._exact_native import WAY_FAR, WAY_P, WAY_Q, WAY_UNION
from lossbench.losses._exact_rules import (
    _FAR_MARGIN,
    _NEWTON_MAX_ITER,
    _NEWTON_TOL,
    _PRODUCT_FLOOR,
    _SECANT,
    _SECANT_COMPLEMENT,
    _UNION_BOUND,
    _WATER_STEPS,
    _rule,
)
from lossbench.losses._exact_scratch import _scratch
from lossbench.losses._exact_special import (
    _INV_SQRT2,
    _SATURATED,
    _SQRT2,
    _TAIL_START,
    _constant,
    _log_ndtr_and_mills_differentiable,
    _mills_ratio,
    erfc_and_mills_,
    log_ndtr_and_mills_,
    ndtr_and_mills_,
    rough_log_ndtr_and_mills_,
    rough_mills_,
)

# From this many (row, column) terms on, Newton's later iterations take the unconverged rows only
# (below, the gathering costs more than it saves).
_NEWTON_ACTIVE_TERMS = 1 << 16
# Nodes are evaluated in row blocks of about this many (row, node, column) terms: memory stays
# O(B C) whatever the batch.  The temporaries live in scratch buffers (a few MiB, kept between
# calls); larger blocks mean fewer ops per term.
_BLOCK_TERMS = 1 << 20
# Below this many classes every column goes through the node pass (see _drop_saturated).
_DROP_MIN_CLASSES = 24
# log F is the log of a product of Phi while every node's product stays above _PRODUCT_FLOOR;
# else the sum of the logs (a switch for the tests).
_PRODUCT_OF_PHI = True
# Up to this many columns the product is of erfc = 2 Phi (at most 2^columns, no overflow; every
# partial product stays above the floor, as the remaining factors are at most 2).
_ERFC_PRODUCT_COLUMNS = {torch.float32: 120, torch.float64: 1000}


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
        rough_mills_(x, float(x.max()), mills=lam, erfc=phi)
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


def _log_h(x_center: torch.Tensor, offsets: torch.Tensor, steps: torch.Tensor, high: float, need_grad: bool):
    """``log h`` (B, N) and ``S`` (B, N) at ``center + offsets`` (B, N), from ``x`` at the center
    (B, C + 1); with ``need_grad`` also the factors of the gradient of ``log h`` with respect to
    ``m``, ``lam - lam (u + lam) / S``: ``lam`` and ``u + lam`` (B, N, C + 1) each (the last
    column, the true class's factor, is no margin), in scratch buffers.

    The small offsets are added last, so that a far-out center does not round the nodes' positions
    relative to each other (each column's ``x`` is rounded alike at every node).  ``high`` is an
    upper bound of ``x``.
    """
    return _log_h_by(log_ndtr_and_mills_, x_center, offsets, steps, high, need_grad)


def _probe_log_h(
    x_center: torch.Tensor, offsets: torch.Tensor, steps: torch.Tensor, high: float
) -> torch.Tensor:
    """:func:`_log_h` (its value alone) with the far tail approximated: to place the rule."""
    return _log_h_by(rough_log_ndtr_and_mills_, x_center, offsets, steps, high, False)[0]


def _log_h_by(log_ndtr_and_mills, x_center, offsets, steps, high, need_grad):
    """:func:`_log_h` with ``log_ndtr_and_mills`` where ``log F`` is a sum of logs."""
    b, n, w = offsets.shape[0], offsets.shape[1], x_center.shape[1]
    x = torch.addcmul(x_center[:, None, :], offsets[:, :, None], steps, out=_scratch("x", (b, n, w), x_center))
    # log F = log of the product of Phi: one log per node instead of one per term, unless some
    # node's product leaves the safe range (then the terms' logs are summed after all).  With few
    # columns the product is of erfc = 2 Phi, scaled by 2^-w after (exact): no pass to halve.
    product = _PRODUCT_OF_PHI and high <= _TAIL_START[x.dtype]
    halve = not product or w > _ERFC_PRODUCT_COLUMNS[x.dtype]
    lam_buffer, phi_buffer = _scratch("lam", (b, n, w), x), _scratch("phi", (b, n, w), x)
    if not product:  # log Phi
        phi, lam = log_ndtr_and_mills(x, high, lam_buffer, phi_buffer)
    elif halve:  # Phi
        phi, lam = ndtr_and_mills_(x, lam_buffer, phi_buffer)
    else:  # erfc = 2 Phi
        phi, lam = erfc_and_mills_(x, lam_buffer, phi_buffer)
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
    log_h = _probe_log_h(x_mu, spread, steps, x_mu_max + float(spread.max()) * _INV_SQRT2)
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
    return _logsumexp_of_huge(log_weights + log_h)


def _logsumexp_of_huge(a: torch.Tensor) -> torch.Tensor:
    """``torch.logsumexp(a, 1)`` whose gradient's weights sum to 1 also where the terms are huge (log h is
    about ``-m^2 / 4`` far in the tail): logsumexp's backward takes ``exp(a_k - result)``, and at 1e9
    the rounding of ``a_k`` and of the result moves those weights by 1e-6, which a second derivative
    multiplies by ``m^2``.  Shifted by the largest term (without gradient) the weights come from small
    differences."""
    top = a.detach().amax(1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return torch.logsumexp(a - top, 1) + top.squeeze(1)




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
    # (log Phi(-m / sqrt2) at x = m / 2: torch's log_ndtr differentiates into exp(-x^2 / 2 - log_ndtr(x)),
    # two huge terms whose rounding overflows far in the tail, nan where Q underflows)
    log_phi, _ = _log_ndtr_and_mills_differentiable(m * 0.5)
    return _logsumexp_of_huge(torch.where(rival, log_phi, -math.inf))





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
    # a rival infinitely far ahead (an infinite logit): P is 0 and has no gradient, the limit the kernel gives
    lost = torch.isneginf(m).any(1)
    log_p = log_p.masked_fill(lost, -math.inf)
    return log_p, below.masked_fill_(lost[:, None], 0.0).neg_() if need_grad else None


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


