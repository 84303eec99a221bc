"""A lean training loop over in-memory tensors, and batched evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Union

import torch
from torch import nn

from lossbench._checks import check_interval, check_positive
from lossbench.losses._validation import HALF_DTYPES
from lossbench.train._base import LossFn, trains
from lossbench.train._registry import TransformSpec
from lossbench.train.step import build_step, make_chain, trainable_parameters
from lossbench.train.vocabulary import LR_SCHEDULES, MOMENTUM_BELOW, OPTIMIZERS, WEIGHT_DECAY_ON

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
    weight_decay_on: str = "all",
) -> torch.optim.Optimizer:
    """``sgd`` (with ``momentum``), ``adam`` or ``adamw``; ``weight_decay`` as each torch optimizer has it.

    ``weight_decay_on="weights"`` decays only parameters of two or more dimensions (weight
    matrices and kernels, not biases), as the EXACT paper's code does; ``"none"`` trains
    without weight decay (a nonzero ``weight_decay`` is then refused).

    ``fused`` (default: where :func:`fused_applies`) selects PyTorch's fused kernel, one call per step instead of several ops
    per parameter: the same update up to rounding, and on small models the step's largest cost.
    """
    check_optimizer(name, lr, [weight_decay], weight_decay_on, momentum)
    params = list(params)
    if fused is None:
        fused = fused_applies(name, params)
    groups: list[Any] = params
    if weight_decay_on == "weights":
        decayed = [p for p in params if p.ndim >= 2]
        groups = [{"params": decayed}, {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=fused)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, fused=fused)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=fused)


def fused_applies(name: str, params: Sequence[torch.Tensor]) -> bool:
    """Whether PyTorch's fused kernel of optimizer ``name`` serves every parameter: dense floating-point
    tensors on a device of ``FUSED_DEVICES``, but not SGD's on the CPU in half precision (torch 2.12-2.13's
    fused SGD skips whole vector blocks of a float16/bfloat16 tensor there, pytorch/pytorch#191763: most
    weights never move).  Fused Adam and AdamW compute half-precision tensors in float32, which their
    other implementations do not (Adam's eps of 1e-8 is 0 in float16: a zero gradient gives 0 / 0)."""
    return bool(params) and all(
        p.is_floating_point() and not p.is_sparse and p.device.type in FUSED_DEVICES
        and not (name == "sgd" and p.device.type == "cpu" and p.dtype in HALF_DTYPES)
        for p in params
    )  # fmt: skip


def check_optimizer(name: str, lr: float, weight_decays: Sequence[float], weight_decay_on: str = "all",
                    momentum: float = 0.0) -> None:  # fmt: skip
    """What :func:`make_optimizer` and the packed optimizer refuse, without building one (the
    first torch optimizer of a process costs about a second: it imports torch's compiler)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS} or a factory params -> Optimizer, got {name!r}")
    check_positive("lr", lr)
    if name == "sgd":  # (Adam's betas are fixed: momentum is not read)
        check_interval("momentum", momentum, 0.0, MOMENTUM_BELOW, closed="left")
    for wd in weight_decays:
        check_positive("weight_decay", wd, allow_zero=True)
    if weight_decay_on not in WEIGHT_DECAY_ON:
        raise ValueError(f"weight_decay_on must be one of {WEIGHT_DECAY_ON}, got {weight_decay_on!r}")
    check_no_decay(weight_decay_on, weight_decays)


@trains
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
    lr_schedule: str = "step",
    weight_decay_on: str = "all",
    repeat: int = 1,
    drop_last: bool = False,
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
    the last; with ``lr_schedule="epoch"`` it decays once per epoch instead, reaching
    ``lr_final`` at the last epoch (a per-epoch StepLR, as the EXACT paper's code).  Either way a run
    whose ``lr`` is at or below ``lr_final``, or with a single step (epoch) to schedule, keeps its
    ``lr``.  An epoch is ``repeat`` passes over the data in one shuffled order
    (``randperm(repeat * n) % n``, as a repeated dataset in a shuffling loader), cut into batches;
    ``drop_last`` drops the last, smaller one.  ``optimizer`` is a name from ``OPTIMIZERS`` (built
    by :func:`make_optimizer`, fused where PyTorch can) or a factory ``params -> Optimizer``,
    which then sets its own learning rate and decay (``lr_final`` is reached from its first
    group's rate).  ``transforms`` as in :func:`build_step`.

    The epoch's row holds the mean over its steps of every step statistic (``loss``, the
    mini-batch mean loss; ``objective``; ``flooding/flooded``, the share of flooded steps; ...),
    plus ``epoch`` and ``lr`` (the last step's).  ``on_epoch_end(epoch, row)`` may add entries
    to the row (validation metrics, say) and stops training by returning True.
    """
    # every argument checked before the model moves or trains
    steps_per_epoch, samples = check_epoch_shape(x_train, y_train, epochs, batch_size, repeat, drop_last)
    check_lr_schedule([lr], lr_final, lr_schedule)
    if isinstance(optimizer, str):
        check_optimizer(optimizer, lr, [weight_decay], weight_decay_on, momentum)
    transforms = make_chain(transforms)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if on_epoch_end is not None and not callable(on_epoch_end):
        raise ValueError(f"on_epoch_end must be a function (epoch, row) or None, got {type(on_epoch_end).__name__}")

    device = torch.device(device) if device is not None else x_train.device
    model.to(device)
    if isinstance(loss, nn.Module):
        loss.to(device)
    x_train, y_train = x_train.to(device), y_train.to(device)

    params = trainable_parameters(model, loss)
    if isinstance(optimizer, str):
        opt = make_optimizer(
            params, optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum, weight_decay_on=weight_decay_on
        )
    elif isinstance(optimizer, torch.optim.Optimizer) or not callable(optimizer):  # (built for other parameters)
        raise ValueError(f"optimizer must be one of {OPTIMIZERS} or a factory params -> Optimizer, "
                         f"got {type(optimizer).__name__} (an optimizer built already: pass lambda params: ...)")  # fmt: skip
    else:
        opt = optimizer(params)
    step = build_step(model, loss, opt, transforms)

    n = x_train.shape[0]
    starts = range(0, steps_per_epoch * batch_size, batch_size)
    per_step = lr_schedule == "step"
    total = epochs * steps_per_epoch if per_step else epochs
    scheduler = None
    lr0 = opt.param_groups[0]["lr"]
    if lr_final is not None and total > 1 and lr_final < lr0:  # (it decays: an lr_final above lr is no ramp)
        gamma = (lr_final / lr0) ** (1.0 / (total - 1))
        scheduler = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
    perm_device = generator.device if generator is not None else torch.device("cpu")

    history: list[dict[str, float]] = []
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(samples, generator=generator, device=perm_device).to(device)
        if repeat > 1:
            perm = perm % n
        values: dict[str, list[torch.Tensor | float]] = {}
        for start in starts:
            idx = perm[start : start + batch_size]
            lr_now = opt.param_groups[0]["lr"]
            for key, value in step.run(_rows(x_train, idx), _rows(y_train, idx)).items():
                values.setdefault(key, []).append(value)
            if scheduler is not None and per_step:
                scheduler.step()
        if scheduler is not None and not per_step:
            scheduler.step()
        row = {key: total / steps_per_epoch for key, total in _totals(values).items()}
        row["epoch"], row["lr"] = epoch, lr_now
        history.append(row)
        if on_epoch_end is not None and on_epoch_end(epoch, row):
            break
    return history


def check_no_decay(weight_decay_on: str, weight_decays: Sequence[float]) -> None:
    if weight_decay_on == "none" and any(wd != 0 for wd in weight_decays):
        raise ValueError(f"weight_decay_on='none' trains without weight decay; got weight_decay {list(weight_decays)}")


def check_lr_schedule(lrs: Sequence[float], lr_final: float | None, lr_schedule: str) -> None:
    for lr in lrs:
        check_positive("lr", lr)
    if lr_final is not None:
        check_positive("lr_final", lr_final)
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")


def check_epoch_shape(
    x_train: torch.Tensor, y_train: torch.Tensor, epochs: int, batch_size: int, repeat: int, drop_last: bool
) -> tuple[int, int]:
    """Refuse a bad epoch layout; returns (steps per epoch, samples per epoch)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    for name, tensor in (("x_train", x_train), ("y_train", y_train)):  # (or a tensor-like batch: token bags, say)
        if not (hasattr(tensor, "to") and len(getattr(tensor, "shape", ()))):
            raise ValueError(f"{name} must be a tensor with one row per sample, got "
                             f"{'a 0-d tensor' if isinstance(tensor, torch.Tensor) else type(tensor).__name__}")  # fmt: skip
    n = x_train.shape[0]
    if n == 0 or y_train.shape[0] != n:
        raise ValueError(
            "x_train and y_train must hold the same positive number of samples, "
            f"got {n} and {y_train.shape[0]}"
        )
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be a positive integer, got {repeat!r}")
    samples = repeat * n
    if drop_last and samples < batch_size:
        raise ValueError(f"drop_last with {samples} samples per epoch < batch_size {batch_size} leaves no batch")
    return (samples // batch_size if drop_last else math.ceil(samples / batch_size)), samples


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
        totals[key] = _sum(numbers[start : start + len(vals)])
        start += len(vals)
    return totals


def _sum(numbers: list[float]) -> float:
    """The exact sum; nan where +inf and -inf meet, inf past the largest double, as the packed trainer's
    float64 sum gives (``math.fsum`` raises on both: a diverging run ended the whole fit)."""
    try:
        return math.fsum(numbers)
    except (ValueError, OverflowError):
        return sum(numbers)


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


def _rows(data: Any, idx: torch.Tensor) -> Any:
    """``data[idx]``; a tensor's rows by ``index_select``, which copies whole rows (advanced
    indexing cost 2-6x as much per batch, most on wide rows such as MNIST's)."""
    return data.index_select(0, idx) if isinstance(data, torch.Tensor) else data[idx]
