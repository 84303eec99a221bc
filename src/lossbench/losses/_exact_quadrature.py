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

The modules: ``_exact_special`` (``log Phi``, ``lam`` and their tails), ``_exact_rules`` (the Gauss rules
and the parameters that place them), ``_exact_scratch`` (buffers kept between calls),
``_exact_integral`` (the rule per row: its placement, the node pass, the ways), this one (the autograd
Functions and the entry points) and, on CPU, ``_exact_native`` (the same rule as one fused C kernel).
"""

from __future__ import annotations

import math

import torch

from lossbench.losses import _exact_native
from lossbench.losses._exact_integral import (
    _in_float64,
    _log_p_at_nodes,
    _log_value_and_grad_by_ways,
    _union_least,
    _union_log_q,
    _water_level,
    _ways,
)
from lossbench.losses._exact_native import NO_INDEX, ONE_MINUS_P, VALUE, WAY_FAR, WAY_Q, WAY_UNION
from lossbench.losses._exact_special import _INV_SQRT2, _log1mexp, log_ndtr


def _by_row(value: float | torch.Tensor | None, like: torch.Tensor) -> float | torch.Tensor | None:
    """A scale or clip as it broadcasts against ``like`` (B, C): a per-row ``(B,)`` tensor as a column of its dtype."""
    return value[:, None].to(like.dtype) if isinstance(value, torch.Tensor) else value


def _rows_of(value: float | torch.Tensor | None, index: torch.Tensor) -> float | torch.Tensor | None:
    """A scale or clip for the rows ``index`` of the batch (a per-row tensor's entries there)."""
    return value.index_select(0, index) if isinstance(value, torch.Tensor) else value


def _to_logits(
    grad: torch.Tensor, true_class: torch.Tensor, scale: float | torch.Tensor, kept: torch.Tensor | None = None
) -> torch.Tensor:
    """A gradient with respect to the margins ``min(s_y - s_j, clip) scale`` (B, C) as one with respect
    to the logits ``s`` (in place): ``d m_j / d s_j = -scale``, ``d m_j / d s_y = scale`` (``j != y``), and
    nothing through a clipped margin (``kept`` False; None: none clipped).  ``scale``: a number or one per row."""
    y = true_class[:, None]
    if kept is not None:
        grad.mul_(kept)
    grad = grad.scatter_(1, y, 0.0).mul_(-_by_row(scale, grad))
    return grad.scatter_(1, y, grad.sum(1, keepdim=True).neg_())


def _true_column_zero(d: torch.Tensor, true_class: torch.Tensor) -> torch.Tensor:
    """``d`` with the true class's column 0 (it is ``s_y - s_y``, nan for an infinite ``s_y``, which the
    kernel never forms; its gradient, +1 and -1 to ``s_y``, cancels either way)."""
    return d.masked_fill(torch.zeros_like(d, dtype=torch.bool).scatter_(1, true_class[:, None], True), 0.0)


def _margins_of_logits(
    logits: torch.Tensor, true_class: torch.Tensor, scale: float | torch.Tensor, clip: float | torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The margins ``min(s_y - s_j, clip) scale`` (B, C) of the logits and where no clip binds (None
    without a clip), by out-of-place ops (differentiable); ``scale`` and ``clip``: numbers or one per row."""
    d = _true_column_zero(logits.gather(1, true_class[:, None]) - logits, true_class)
    scale, clip = _by_row(scale, d), _by_row(clip, d)
    if clip is None:
        return d * scale, None
    return d.clamp(max=clip) * scale, d <= clip  # (clamp: a tie keeps its whole gradient, as in the kernel)



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
        if standardize is not None and not bad:  # the margins of standardised logits: (s_y - s_j) / d
            # (with bad targets the kernel computed nothing, d included: refused below)
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
        part_scale, part_clip = _rows_of(scale, index), _rows_of(clip, index)
        m, kept = (part, None) if scale is None else _margins_of_logits(part, y, part_scale, part_clip)
        v, g = _in_float64(m, y, num_nodes, need_grad, scores.dtype)
        v, slope = _loss_of_value(v, ways.index_select(0, index), kind, need_grad)
        value.index_copy_(0, index, v)
        if need_grad:
            g.mul_(slope[:, None] / valid if reduction == "mean" else slope[:, None])
            grad.index_copy_(0, index, g if scale is None else _to_logits(g, y, part_scale, kept))
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
        scores, true_class, num_nodes, need_grad, scale=0.0 if scale is None else scale, clip=math.inf if clip is None else clip,
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


def _standardize(x: torch.Tensor, valid: torch.Tensor, eps: float, groups: int = 1) -> torch.Tensor:
    """``(x - mean) / (std + eps)`` with one unbiased mean/std over the logits of valid rows (B, C), in
    each of ``groups`` equal consecutive blocks of rows; computed in float64, as the CPU kernel does (a
    float32 sum of squares overflows for logits past about 1e19: a run would train alone and not packed)."""
    wide = x.to(torch.float64)
    blocks = wide.reshape(groups, -1, x.shape[1])
    w = valid.to(torch.float64).reshape(groups, -1, 1)
    count = (w.sum((1, 2), keepdim=True) * x.shape[1]).clamp_min(2.0)
    mean = (blocks * w).sum((1, 2), keepdim=True) / count
    var = ((blocks - mean).square() * w).sum((1, 2), keepdim=True) / (count - 1)
    # The floor keeps the gradient finite when every logit is equal (sqrt' is infinite at 0); the logits' own
    # dtype's floor, as the kernel's.
    std = var.clamp_min(torch.finfo(x.dtype).tiny).sqrt()
    return ((blocks - mean) / (std + eps)).reshape(x.shape).to(x.dtype)


class ExactRowsLoss(torch.autograd.Function):
    """EXACT's loss from logits (B, C), C >= 3, in one node: per row ``1 - P`` or ``-log P`` (``kind``)
    with margins ``min(s_y - s_j, clip) scale`` (of the logits standardised by :func:`_standardize` with
    eps ``standardize`` where that is not None: on CPU only, by the kernel), reduced as ``reduction`` says over the rows whose target
    is not ``ignore_index`` (their mean divides by their count).  One call of the kernel on CPU gives
    every row's way, loss and gradient (see ``_exact_native.rows``); the backward scales that gradient.
    Under ``create_graph=True`` it differentiates the quadrature at the same nodes instead, as
    :class:`WinLogProbability` does.  Results equal ``log_win_and_lose``'s followed by the same loss
    and reduction, up to rounding and the rule's own error (the two stop Newton's method at slightly
    different modes: in float64 about 1e-8 relative in ``-log P`` at 100 classes, more with few nodes).
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
                # (a copy, not a view of the saved buffer: a caller's in-place `loss /= steps` must work)
                return out[:b].clone() if reduction == "none" else out[b].clone()
        per_sample, reduced, grad, ways, rule, valid = _rows(
            logits, target, num_nodes, need_grad, scale, clip, None, kind, ignore_index, reduction, native, standardize
        )
        ctx.settings = settings, valid, False
        ctx.save_for_backward(logits, target, ways, grad, *rule)
        return (per_sample if reduced is None else reduced).clone()  # (views of the kernel's buffer: see above)

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
        x = torch.where(keep[:, None], logits, 0.0)  # (an ignored row may hold inf: inf - inf made its gradient nan)
        x = x if standardize is None else _standardize(x, keep, standardize)
        margins = _margins_of_logits(x, y, scale, clip)[0]
        per_sample = _loss_of_value(_log_values_at_rule(margins, y, ways, rule, num_nodes), ways, kind)[0]
        per_sample = torch.where(keep, per_sample, 0.0)
        if reduction != "none":
            per_sample = per_sample.sum() / valid if reduction == "mean" else per_sample.sum()
        (grad_logits,) = torch.autograd.grad(per_sample, logits, grad_out, create_graph=True)
        return grad_logits, None, None


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
