"""The EXACT paper's estimator of ``P``: Genz's Monte Carlo for the orthant probability ``P(Z < m)``.

``Z ~ N(0, I + 11^T)`` in ``D = C - 1`` dimensions (``Z_j = eps_j - eps_y``), ``m`` the scaled margins of
the true class over its rivals.  This is the estimator of the paper's released code (github
ivan-chai/exact, ``exact/src/exact_pytorch/integral.py``), step for step:

- the margins of a row are sorted ascending (the strongest rival first), the gradient mapped back;
- separation of variables with the Cholesky factor ``L`` of ``I + 11^T``, whose column ``i`` holds
  ``l_i`` on the diagonal and one value ``a_i`` below it, so ``Z_i = sum_{k<i} a_k e_k + l_i e_i``;
- ``samples`` uniform draws per row and variable, one ``torch.rand(D, samples, B, 1)`` call (the
  paper's shape and order; the last variable's draws are unused, as there);
- variable ``i`` contributes the factor ``Phi(z_i)``, ``z_i = (m_i - sum_{k<i} a_k e_k) / l_i``, and
  ``e_i`` is drawn from ``N(0, 1)`` truncated to ``(-inf, z_i]`` by inversion, clipped to ``[-5, 5]``;
- the ``D`` gradient components come from the same sweep: column ``k`` replaces the factor of
  variable ``k`` by its density ``phi(z_k) / l_k`` and sets ``e_k`` to its limit ``z_k`` (clipped like
  every draw), which conditions the later variables on ``Z_k = m_k``: an unbiased estimate of
  ``dP / dm_k = f_{Z_k}(m_k) P(Z_{-k} < m_{-k} | Z_k = m_k)``, on the same uniforms as the value.

The paper's code works with the mirrored variables (``P(X > 0)`` for ``X ~ N(m, I + 11^T)``, lower
truncation in ``erf`` space); with the same uniforms ``u`` its draws are ``-Phi^-1((1 - u) Phi(z))``, so
this implementation draws ``e = Phi^-1((1 - u) Phi(z))`` and gives the paper's numbers for the same
random state (up to rounding; ``Phi`` and ``Phi^-1`` here keep their relative precision in the
tails, where ``1 - erf`` does not).  Not taken over: ``truncate_classes`` (the paper's option to keep
only the strongest rivals).  Cost: ``D`` sequential steps over ``(samples, B, D + 1)`` buffers,
``O(samples B D^2)``; memory ``O(samples B D)``.
"""

from __future__ import annotations

import functools
import math

import torch

_CLIP = 5.0  # the paper clips every draw (and the gradient columns' limits) to [-5, 5]
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@functools.cache
def _cholesky(dim: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Diagonal ``l_i`` and below-diagonal value ``a_i`` of the Cholesky factor of ``I + 11^T`` (D x D)."""
    diag, below, acc = [], [], 0.0
    for _ in range(dim):
        li = math.sqrt(2.0 - acc)
        ai = (1.0 - acc) / li
        diag.append(li)
        below.append(ai)
        acc += ai * ai
    return tuple(diag), tuple(below)


def genz_monte_carlo(
    margins: torch.Tensor, samples: int = 16, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Genz's estimate of ``P(Z < m)``, ``Z ~ N(0, I + 11^T)``, and of ``dP/dm``: (B,), (B, D).

    ``margins`` (B, D) are the scaled margins of the true class over its ``D`` rivals; no autograd
    (see :class:`GenzProbability`).  The uniforms come from ``generator`` when given, else from
    torch's global generator (``torch.manual_seed`` makes a run reproducible); it must live on the
    margins' device.  ``D = 1`` is exact: ``Phi(m / sqrt 2)`` and its derivative.
    """
    margins = margins.detach()
    b, d = margins.shape
    sorted_margins, order = margins.sort(dim=1)
    diag, below = _cholesky(d)
    uniform = torch.rand(d, samples, b, 1, generator=generator, dtype=margins.dtype, device=margins.device)
    y_sum = margins.new_zeros(samples, b, d + 1)  # sum_{k<i} a_k e_k per sample, row and column
    product = margins.new_ones(samples, b, d + 1)  # columns 0..D-1: the gradient's; D: the value's
    for i in range(d):
        z = (sorted_margins[None, :, i, None] - y_sum).div_(diag[i])
        cdf = torch.special.ndtr(z)
        factor = cdf.clone()
        zi = z[..., i]
        factor[..., i] = torch.exp(-0.5 * zi * zi).mul_(_INV_SQRT_2PI / diag[i])
        product.mul_(factor)
        if i + 1 < d:
            e = torch.special.ndtri(cdf.mul_(torch.rsub(uniform[i], 1.0)))
            e[..., i] = zi
            y_sum.add_(e.clamp_(-_CLIP, _CLIP), alpha=below[i])
    estimate = product.mean(0)
    grad = torch.empty_like(margins).scatter_(1, order, estimate[:, :d])
    return estimate[:, d], grad


class GenzProbability(torch.autograd.Function):
    """``P`` by :func:`genz_monte_carlo` from rival margins (B, D); the backward scales the gradient
    estimated in the same sweep (as the paper's ``PositiveNormalProb``).  The estimate of the gradient
    is no function of the margins that autograd could differentiate again: double backward raises."""

    @staticmethod
    def forward(ctx, margins: torch.Tensor, samples: int, generator: torch.Generator | None):
        p, grad = genz_monte_carlo(margins, samples, generator)
        ctx.save_for_backward(grad)
        return p

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "EXACT's Genz estimator has no second derivatives (its gradient is a Monte Carlo estimate); "
                "use estimator='quadrature' with create_graph=True (e.g. a gradient penalty)"
            )
        (grad,) = ctx.saved_tensors
        return grad_output[:, None] * grad, None, None


def genz_win_probability(
    margins: torch.Tensor, samples: int = 16, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``P`` per row (B,) from rival margins (B, D), differentiable once (see :class:`GenzProbability`)."""
    return GenzProbability.apply(margins, samples, generator)
