"""EXACT: expected accuracy under Gaussian logit noise, computed exactly by 1-D quadrature.

Karpukhin et al., "EXACT: How to Train Your Accuracy", arXiv 2205.09615.  The paper's code
estimates the probability by Genz Monte Carlo (noisy; cost ``B C^2`` per Monte Carlo sample); here
it is a deterministic quadrature of a one-dimensional integral, linear in ``C``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lossbench.losses._exact_quadrature import (
    WinLogProbability,
    fused_from_logits,
    log_win_probability_of_columns,
)
from lossbench.losses._registry import register_loss
from lossbench.losses._validation import check_positive, masked_reduce, softmax_inputs
from lossbench.registry import Choice, FloatRange, HyperParam


def exact(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    sigma: float | torch.Tensor = 1.0,
    margin: float | None = None,
    log_loss: bool = False,
    standardize: bool = False,
    eps: float = 1e-6,
    num_nodes: int = 16,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate: bool = True,
) -> torch.Tensor:
    """EXACT loss ``1 - P(y|x)`` (or ``-log P(y|x)``), ``P`` = probability that ``argmax(s + sigma eps) = y``.

    Derivation: with ``eps ~ N(0, I_C)`` and scaled margins ``m_j = (s_y - s_j) / sigma`` for the
    rivals ``j != y``, condition on the true class's noise ``eps_y = t``: the other noises must
    stay below ``t + m_j``, independently, so

        P = int phi(t) prod_{j != y} Phi(t + m_j) dt,

    a one-dimensional integral (the paper's ``(C - 1)``-dimensional orthant probability of
    ``N(m, I + 11^T)`` collapses because the covariance is one common factor plus noise).  For
    two classes ``P = Phi((s_y - s_other) / (sqrt(2) sigma))`` exactly.  We integrate the
    equivalent form conditioned on the strongest rival (smooth even when many rivals are tied),
    in log space with ``log Phi``, by half-range Gauss-Hermite rules on each side of the
    integrand's mode, so ``-log P`` keeps its relative accuracy far in the tail.  Against
    adaptive quadrature (QUADPACK) on margins in ``[-20, 20]`` with up to 100 classes,
    ``|P - P_ref| < 2e-7`` and the relative error of ``-log P`` is below 1e-7 down to
    ``P = 1e-100`` with the default 16 nodes in float64; float32 adds its rounding (about 1e-6).
    ``benchmarks/bench_exact.py`` measures the accuracy/speed trade-off of ``num_nodes``.  The
    gradient with respect to the margins is integrated in the same pass (hand-written backward,
    memory ``O(B C)``); gradients reach the logits and ``sigma``, and double backprop (a gradient
    penalty) works.  On CPU (float32/float64) the quadrature runs as one fused C kernel, compiled
    with the system's C compiler on first use and cached; where none is available (a warning
    says why), on CUDA and in half precision it runs as PyTorch operations.  Both compute the same
    rule (see ``_exact_native``; ``LOSSBENCH_EXACT_KERNEL=0`` turns the kernel off).

    The paper's recipe, each part optional:

    - ``margin``: ``m_j = min(s_y - s_j, margin) / sigma``; clipped entries get no gradient.
    - ``sigma``: a float (fixed, or set per epoch with :func:`exact_sigma_schedule`), a scalar
      tensor (learned; :class:`ExactLoss` can hold it as ``log sigma``) or a ``(B,)`` tensor
      (per-sample, e.g. from a head).
    - ``standardize``: logits become ``(s - mean) / (std + eps)`` with one scalar mean and standard
      deviation over all non-ignored logits of the batch (as the paper's code does); the loss of a
      sample then depends on the rest of the batch.
    - The paper's gradient normaliser ``g / max(EMA_0.9(|g|), 0.01)`` is a training-step transform
      and lives in ``lossbench.train`` (``"grad_normalizer"``).

    Args:
        logits: raw scores ``(B, C)``, ``C >= 2``.
        target: class indices ``(B,)``; entries equal to ``ignore_index`` are excluded.
        sigma: noise standard deviation ``> 0``: float, scalar tensor or ``(B,)`` tensor.
        margin: optional clip ``> 0`` of ``s_y - s_j`` (in logit units, before dividing by sigma).
        log_loss: return ``-log P`` instead of ``1 - P``.
        standardize: batch standardisation of the logits (see above).
        eps: added to the batch standard deviation when standardising.
        num_nodes: quadrature nodes (even, ``>= 2``), half on each side of the mode.

    ``reduction="mean"`` averages over the non-ignored samples (the expected error rate).
    """
    x, y, valid = softmax_inputs(logits, target, ignore_index, reduction, validate)
    b, c = x.shape
    if c < 2:
        raise ValueError(f"logits must have at least 2 classes, got shape {tuple(logits.shape)}")
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 2 or num_nodes % 2:
        raise ValueError(f"num_nodes must be an even integer >= 2, got {num_nodes!r}")
    if margin is not None:
        check_positive("margin", margin)
    sigma = _check_sigma(sigma, b, x, validate)
    if standardize:
        check_positive("eps", eps)
        x = _standardize(x, valid, eps)
    if margin is None and not isinstance(sigma, torch.Tensor) and fused_from_logits(x, num_nodes):
        log_p = WinLogProbability.apply(x, y, num_nodes, 1.0 / sigma)  # margins formed in the kernel
    else:
        d = x.gather(1, y[:, None]) - x  # s_y - s_j for every class j, zero at j = y
        if margin is not None:
            d = d.clamp(max=margin)
        if isinstance(sigma, torch.Tensor):
            m = d / (sigma[:, None] if sigma.ndim == 1 else sigma)
        else:
            m = d if sigma == 1.0 else d / sigma
        log_p = log_win_probability_of_columns(m, y, num_nodes)
    per_sample = -log_p if log_loss else -torch.expm1(log_p)
    return masked_reduce(per_sample, reduction, valid).to(logits.dtype)


def _check_sigma(
    sigma: float | torch.Tensor, batch: int, like: torch.Tensor, validate: bool
) -> float | torch.Tensor:
    if not isinstance(sigma, torch.Tensor):
        check_positive("sigma", sigma)
        if not math.isfinite(sigma):
            raise ValueError(f"sigma must be finite, got {sigma}")
        return float(sigma)
    if not sigma.is_floating_point() or sigma.shape not in ((), (batch,)):
        raise ValueError(
            f"sigma must be a positive float, a scalar tensor or a ({batch},) float tensor, "
            f"got a tensor of shape {tuple(sigma.shape)} and dtype {sigma.dtype}"
        )
    if validate and not bool(((sigma > 0) & torch.isfinite(sigma)).all()):
        raise ValueError("sigma must be finite and > 0; found a value outside")
    return sigma.to(like.dtype)


def _standardize(x: torch.Tensor, valid: torch.Tensor, eps: float) -> torch.Tensor:
    """``(x - mean) / (std + eps)`` with one unbiased mean/std over the logits of valid rows."""
    w = valid.to(x.dtype)[:, None]
    count = (w.sum() * x.shape[1]).clamp_min(2.0)
    mean = (x * w).sum() / count
    var = ((x - mean).square() * w).sum() / (count - 1)
    # The floor keeps the gradient finite when every logit is equal (sqrt' is infinite at 0).
    return (x - mean) / (var.clamp_min(torch.finfo(x.dtype).tiny).sqrt() + eps)


def exact_sigma_schedule(
    epoch: float, num_epochs: int, sigma0: float = 10.0, sigma_min: float = 0.01
) -> float:
    """Noise level for ``epoch`` (0-based, may be fractional): exponential from ``sigma0`` to ``sigma_min``.

    ``sigma(e) = sigma0 * (sigma_min / sigma0) ** (e / (num_epochs - 1))``, so epoch 0 uses
    ``sigma0`` and the last epoch ``sigma_min``; later epochs stay at ``sigma_min``.  The defaults
    are the EXACT paper's tabular setting (standard deviation 10 down to 0.01 over the run).
    """
    if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
        raise ValueError(f"num_epochs must be an integer >= 1, got {num_epochs!r}")
    if not epoch >= 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    check_positive("sigma0", sigma0)
    check_positive("sigma_min", sigma_min)
    fraction = min(1.0, epoch / (num_epochs - 1)) if num_epochs > 1 else 0.0
    return sigma0 * (sigma_min / sigma0) ** fraction


class ExactLoss(nn.Module):
    """Module form of :func:`exact`; arguments as there, plus ``learn_sigma``.

    With ``learn_sigma=True`` the noise level is a parameter stored as ``log sigma`` (initialised at
    ``sigma``); give the module's parameters to the optimiser with the model's.  Otherwise
    ``self.sigma`` is a plain float that a schedule may overwrite between epochs, e.g.
    ``loss.sigma = exact_sigma_schedule(epoch, num_epochs)``.  With ``sigma_min`` the module
    runs the paper's schedule itself: :meth:`set_epoch` (called by the bench before each epoch)
    sets ``sigma`` from the initial value down to ``sigma_min`` by :func:`exact_sigma_schedule`.
    ``forward(..., sigma=s)`` overrides the stored value for one call (a ``(B,)`` tensor from a
    noise head, say).
    """

    def __init__(
        self,
        *,
        sigma: float = 1.0,
        learn_sigma: bool = False,
        sigma_min: float | None = None,
        margin: float | None = None,
        log_loss: bool = False,
        standardize: bool = False,
        eps: float = 1e-6,
        num_nodes: int = 16,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        super().__init__()
        check_positive("sigma", sigma)
        if sigma_min is not None:
            check_positive("sigma_min", sigma_min)
            if learn_sigma:
                raise ValueError("sigma_min schedules a fixed sigma; it cannot be combined with learn_sigma")
        self.sigma0, self.sigma_min = float(sigma), sigma_min
        if learn_sigma:
            self.log_sigma = nn.Parameter(torch.tensor(math.log(sigma)))
            self.sigma = None
        else:
            self.log_sigma = None
            self.sigma = float(sigma)
        self.margin, self.log_loss, self.standardize, self.eps = margin, log_loss, standardize, eps
        self.num_nodes, self.ignore_index = num_nodes, ignore_index
        self.reduction, self.validate = reduction, validate

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        reduction: str | None = None,
        sigma: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        if sigma is None:
            sigma = self.log_sigma.exp() if self.log_sigma is not None else self.sigma
        return exact(
            logits,
            target,
            sigma=sigma,
            margin=self.margin,
            log_loss=self.log_loss,
            standardize=self.standardize,
            eps=self.eps,
            num_nodes=self.num_nodes,
            ignore_index=self.ignore_index,
            reduction=reduction or self.reduction,
            validate=self.validate,
        )

    def set_epoch(self, epoch: int, num_epochs: int) -> None:
        """Follow the sigma schedule, when ``sigma_min`` was given (otherwise nothing changes)."""
        if self.sigma_min is not None:
            self.sigma = exact_sigma_schedule(epoch, num_epochs, self.sigma0, self.sigma_min)

    def extra_repr(self) -> str:
        sigma = "learned" if self.log_sigma is not None else self.sigma
        return (
            f"sigma={sigma}, margin={self.margin}, log_loss={self.log_loss}, "
            f"standardize={self.standardize}"
        )


register_loss(
    "exact",
    exact,
    ExactLoss,
    signature="softmax",
    reference=(
        "Karpukhin et al., 'EXACT: How to Train Your Accuracy', arXiv 2205.09615 "
        "(computed by 1-D quadrature instead of the paper's Monte Carlo)"
    ),
    hyperparams=(
        HyperParam("sigma", 1.0, FloatRange(0.01, 10.0, log=True), "std of the Gaussian noise on the logits"),
        HyperParam(
            "margin", None, Choice((None, 0.5, 1.0, 2.0, 5.0)), "clip of s_y - s_j before dividing by sigma"
        ),
        HyperParam(
            "standardize", False, Choice((False, True)), "one mean/std standardisation of the batch's logits"
        ),
        HyperParam("log_loss", False, None, "-log P instead of 1 - P"),
        HyperParam("num_nodes", 16, None, "quadrature nodes"),
    ),
)
