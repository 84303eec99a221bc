"""A lean training loop over in-memory tensors, and batched evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Union

import torch
from torch import nn

from lossbench.losses._validation import check_positive
from lossbench.train._base import LossFn
from lossbench.train._registry import TransformSpec
from lossbench.train.step import build_step, trainable_parameters

OPTIMIZERS = ("sgd", "adam", "adamw")

OptimizerSpec = Union[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer]]
EpochCallback = Callable[[int, dict[str, float]], Any]


FUSED_DEVICES = ("cpu", "cuda")  # where PyTorch's fused SGD / Adam / AdamW kernels run


def make_optimizer(
    params: Sequence[nn.Parameter],
    name: str,
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    fused: bool | None = None,
) -> torch.optim.Optimizer:
    """``sgd`` (with ``momentum``), ``adam`` or ``adamw``; ``weight_decay`` as each torch optimizer has it.

    ``fused`` (default: wherever every parameter is a dense floating-point tensor on a device of
    ``FUSED_DEVICES``) selects PyTorch's fused kernel, one call per step instead of several ops
    per parameter: the same update up to rounding, and on small models the step's largest cost.
    """
    check_positive("lr", lr)
    check_positive("weight_decay", weight_decay, allow_zero=True)
    params = list(params)
    if fused is None:
        fused = bool(params) and all(
            p.is_floating_point() and not p.is_sparse and p.device.type in FUSED_DEVICES for p in params
        )
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=fused)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS} or a factory params -> Optimizer, got {name!r}")


def fit(
    model: nn.Module,
    loss: LossFn,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    optimizer: OptimizerSpec = "sgd",
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    lr_final: float | None = None,
    transforms: Sequence[TransformSpec] = (),
    generator: torch.Generator | None = None,
    on_epoch_end: EpochCallback | None = None,
    device: torch.device | str | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` on in-memory tensors; returns one statistics dict per epoch.

    Each epoch draws one ``torch.randperm`` (from ``generator`` when given, for reproducible
    shuffling) and slices mini-batches from the whole tensors, which should already be on the
    device (they are moved there once otherwise).  The optimizer covers the model's trainable
    parameters and the loss's, when the loss is an ``nn.Module``.  With ``lr_final`` the learning
    rate decays exponentially, step by step, from ``lr`` at the first step to ``lr_final`` at
    the last (the EXACT paper's protocol).  ``optimizer`` is a name from ``OPTIMIZERS`` (built
    by :func:`make_optimizer`, fused where PyTorch can) or a factory ``params -> Optimizer``,
    which then sets its own learning rate and decay (``lr_final`` is reached from its first
    group's rate).  ``transforms`` as in :func:`build_step`.

    The epoch's row holds the mean over its steps of every step statistic (``loss``, the
    mini-batch mean loss; ``objective``; ``flooding/flooded``, the share of flooded steps; ...),
    plus ``epoch`` and ``lr`` (the last step's).  ``on_epoch_end(epoch, row)`` may add entries
    to the row (validation metrics, say) and stops training by returning True.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = x_train.shape[0]
    if n == 0 or y_train.shape[0] != n:
        raise ValueError(
            "x_train and y_train must hold the same positive number of samples, "
            f"got {n} and {y_train.shape[0]}"
        )
    check_positive("lr", lr)
    if lr_final is not None:
        check_positive("lr_final", lr_final)

    device = torch.device(device) if device is not None else x_train.device
    model.to(device)
    if isinstance(loss, nn.Module):
        loss.to(device)
    x_train, y_train = x_train.to(device), y_train.to(device)

    params = trainable_parameters(model, loss)
    if isinstance(optimizer, str):
        opt = make_optimizer(params, optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum)
    else:
        opt = optimizer(params)
    step = build_step(model, loss, opt, transforms)

    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    scheduler = None
    if lr_final is not None and total > 1:
        gamma = (lr_final / opt.param_groups[0]["lr"]) ** (1.0 / (total - 1))
        scheduler = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
    perm_device = generator.device if generator is not None else torch.device("cpu")

    history: list[dict[str, float]] = []
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=generator, device=perm_device).to(device)
        values: dict[str, list[torch.Tensor | float]] = {}
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            lr_now = opt.param_groups[0]["lr"]
            for key, value in step.run(x_train[idx], y_train[idx]).items():
                values.setdefault(key, []).append(value)
            if scheduler is not None:
                scheduler.step()
        row = {key: total / steps_per_epoch for key, total in _totals(values).items()}
        row["epoch"], row["lr"] = epoch, lr_now
        history.append(row)
        if on_epoch_end is not None and on_epoch_end(epoch, row):
            break
    return history


def _totals(values: dict[str, list[torch.Tensor | float]]) -> dict[str, float]:
    """Each statistic summed over an epoch's steps, with one host sync per epoch rather than a
    tensor addition per step and statistic (0-d tensors of one dtype and device go through one
    ``stack``; anything else is read value by value)."""
    flat = [v for vals in values.values() for v in vals]
    first = flat[0] if flat else None
    if isinstance(first, torch.Tensor) and all(
        isinstance(v, torch.Tensor) and v.ndim == 0 and v.dtype == first.dtype and v.device == first.device
        for v in flat
    ):
        numbers = torch.stack(flat).tolist()
    else:
        numbers = [float(v) for v in flat]
    totals, start = {}, 0
    for key, vals in values.items():
        totals[key] = math.fsum(numbers[start : start + len(vals)])
        start += len(vals)
    return totals


@torch.no_grad()
def eval_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """The model's outputs on ``x`` in eval mode, without gradients, ``batch_size`` rows at a time.

    The model's train/eval mode is restored afterwards.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    was_training = model.training
    model.eval()
    try:
        if x.shape[0] <= batch_size:
            return model(x)  # one batch: no concatenation copy
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])
    finally:
        model.train(was_training)
