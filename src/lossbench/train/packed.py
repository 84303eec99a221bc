"""Packed training: K runs of one architecture trained at once, as one batched model.

A sweep is hundreds of small independent runs; one at a time, each step of each run pays
Python, autograd and kernel-launch costs that dwarf its arithmetic.  Packed, the K runs' weights
are stacked (``torch.func.stack_module_state``) and one ``vmap``-ed ``functional_call`` computes
every run's logits on its own mini-batch; one backward pass gives every run's gradients.

Each run keeps what it would have alone: its initialisation (the caller builds its model under
its own seed), its data order (its own generator), its learning rate, weight decay and lr
schedule, its loss and transforms, its statistics.  A run's loss, gradient transforms and update
read only its own slice, so a diverging run leaves the others as they would be unpacked
(``tests/train/test_packed.py`` trains runs both ways and compares them).
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.optim.adam import adam as adam_update
from torch.optim.adamw import adamw as adamw_update
from torch.optim.sgd import sgd as sgd_update

from lossbench._checks import first_line
from lossbench._paths import PACKAGE_DIR  # (lossbench's own code: its losses' means are tested, _own_loss)
from lossbench.losses._validation import compute_dtype
from lossbench.train._base import (
    LossFn,
    StepContext,
    Transform,
    adapted_loss,
    batch_level,
    check_per_sample_loss,
    even_mean,
    loss_option,
    packing_refusal,
    per_run,
    probe_logits,
    reads_per_sample,
    trains,
)
from lossbench.train._registry import TransformSpec, make_transform
from lossbench.train.loop import check_epoch_shape, check_lr_schedule, check_optimizer, fused_applies

PackedEpochCallback = Callable[[int, list[dict[str, float]]], Any]
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's and AdamW's defaults
PER_RUN_FROM = 1 << 16  # elements of one run's parameter from which the optimiser updates it run by run (CPU)
# Per-class weights whose weighted mean divides by the batch's summed weights of its targets (cross-entropy's
# weight, focal's alpha): a shared call's even mean over a run's rows is not that mean.  PackedLosses goes by
# these names only where it has no probe batch to check each loss itself on (see mean_probe).
CLASS_WEIGHTS = ("weight", "alpha")
PROBE_ROWS = 300  # at most this many rows in mean_probe's batch


def unpackable_model(model: nn.Module) -> str | None:
    """Why ``model`` cannot be packed (None when it can): vmap-ed runs share no state, so a model
    with buffers (BatchNorm's running statistics) or live dropout (whose draws would differ from
    the run's own) trains only one run at a time; a pack trains every parameter as a float leaf of
    its own, so a model with a parameter that is not floating-point, frozen (``requires_grad=False``:
    alone the optimiser leaves it, packed it would be trained or fail) or tied to another (the same
    Parameter under two names: a pack's copy of the model unties it) does too, and so does an
    ``nn.Embedding`` with ``padding_idx`` or ``max_norm`` where vmap maps the model."""
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        return f"it has buffers ({', '.join(buffers[:3])})"
    dropout = [n for n, m in model.named_modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]
    if dropout:
        return f"it has dropout ({', '.join(dropout[:3])})"
    first: dict[int, str] = {}  # each Parameter's first name
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            return f"its parameter {name} is {first[id(p)]} (tied or shared parameters)"
        first[id(p)] = name
        if not p.is_floating_point():
            return f"its parameter {name} is not floating-point ({p.dtype})"
        if not p.requires_grad:
            return f"its parameter {name} is frozen (requires_grad=False)"
    if _own_packed_forward(model) is None:  # (vmap: torch's rule for an embedding keeps run 0's padding row only)
        for name, m in model.named_modules():
            if isinstance(m, nn.Embedding) and (m.padding_idx is not None or m.max_norm is not None):
                what = "padding_idx (vmap would train the other runs' padding rows)" if m.padding_idx is not None else \
                    "max_norm (it renormalises the table in place)"
                return f"its embedding {name} has {what}"
    return None


def faster_alone(model: nn.Module) -> str | None:
    """Why ``model``'s runs train faster one at a time though they pack (None where packing pays): on
    the CPU a pack's gradient of its runs' embedding tables is written to memory whole every step,
    where a run's own stays in cache (su-sst2's quick study, fastText with a 13,829 x 64 table: 11.2 s
    packed, 9.3 s run by run)."""
    tables = [n for n, m in model.named_modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))
              and m.weight.device.type == "cpu" and m.weight.numel() >= PER_RUN_FROM]  # fmt: skip
    return f"its embedding table ({tables[0]}) trains faster one run at a time on the CPU" if tables else None


def _own_packed_forward(model: nn.Module) -> Callable[..., torch.Tensor] | None:
    """``model.packed_forward`` (``lossbench.models._packed``) when the class that defines it also
    defines ``forward``: a subclass that changes ``forward`` alone is mapped by vmap."""
    owner = {name: next((c for c in type(model).__mro__ if name in vars(c)), None) for name in ("forward", "packed_forward")}
    return model.packed_forward if owner["packed_forward"] is not None and owner["packed_forward"] is owner["forward"] else None


class PackedModel:
    """K models of one architecture as stacked parameters ``(K, ...)``; ``self(x)`` maps each
    run's batch ``x[k]`` through run ``k``'s weights, :meth:`eval_logits` one shared input.  Every
    run computes as ``models[0]`` does with its own parameters: the models must be of one class and
    configured alike (the bench packs runs of one ``model_config``)."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        if not models:
            raise ValueError("a pack needs at least one model")
        for model in models:
            reason = unpackable_model(model)
            if reason is not None:
                raise ValueError(f"{type(model).__name__} cannot be packed: {reason}")
        shapes = [[(n, p.shape) for n, p in m.named_parameters()] for m in models]
        if any(s != shapes[0] for s in shapes[1:]):
            raise ValueError("packed models must have the same parameters and shapes")
        if any(type(m) is not type(models[0]) for m in models):  # (the pack runs models[0]'s forward for all)
            raise ValueError(f"packed models must be of one class, got {sorted({type(m).__name__ for m in models})}")
        params, _ = stack_module_state(list(models))
        self.names = list(params)
        self.params = [params[n] for n in self.names]  # leaf tensors (K, ...), requires_grad
        self.size = len(models)
        self._base = copy.deepcopy(models[0]).to("meta").train()  # (training mode, as fit trains; eval_logits: eval mode)

        fast = _own_packed_forward(self._base)
        if fast is not None:  # the model's batched matrix products: vmap's cost per call is most of a small step
            self._each = lambda p, x: fast(dict(zip(self.names, p)), x, shared=False)
            self._shared = lambda p, x: fast(dict(zip(self.names, p)), x, shared=True)
            return

        def call(p: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(self._base, dict(zip(self.names, p)), (x,))

        self._each = self._explained(vmap(call))
        self._shared = self._explained(vmap(call, in_dims=(0, None)))

    def _explained(self, mapped: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """``mapped`` whose failures under vmap (``.item()``, a random op, data-dependent control flow) say
        what they mean for a pack, instead of vmap's advice on its own flags."""
        name = type(self._base).__name__

        def run(p: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            try:
                return mapped(p, x)
            except RuntimeError as err:
                if not str(err).startswith("vmap"):
                    raise
                raise ValueError(f"{name}'s forward cannot run packed: under torch.func.vmap it raised "
                                 f"{str(err).splitlines()[0]!r}; train it with fit, one run at a time") from err

        return run

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(K, B, ...)`` inputs, one batch per run -> ``(K, B, outputs)``, in training mode."""
        return self._each(self.params, x)

    @torch.no_grad()
    def eval_logits(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Every run's outputs on the same ``x``: ``(K, N, outputs)``, ``batch_size`` rows at a time, in eval
        mode (as :func:`lossbench.train.eval_logits` scores a run alone; a forward may read ``self.training``)."""
        self._base.eval()
        try:
            if x.shape[0] <= batch_size:
                return self._shared(self.params, x)
            return torch.cat([self._shared(self.params, x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)], 1)
        finally:
            self._base.train()

    def run_params(self, k: int) -> list[torch.Tensor]:
        """Views of run ``k``'s parameters (in-place edits reach the pack)."""
        return [p[k] for p in self.params]

    @torch.no_grad()
    def unstack_into(self, models: Sequence[nn.Module]) -> None:
        """Copy each run's trained weights into its own model."""
        for k, model in enumerate(models):
            for (_, target), source in zip(model.named_parameters(), self.run_params(k)):
                target.copy_(source)


class PackedOptimizer:
    """``sgd`` (momentum, no dampening), ``adam`` and ``adamw`` as torch.optim computes them, with
    each run's own learning rate and weight decay: ``lr`` per step and ``weight_decays`` are (K,).

    ``weight_decay_on="weights"`` decays only the parameters a run holds with two or more
    dimensions, and ``"none"`` refuses any decay, as :func:`lossbench.train.make_optimizer` does.
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        name: str,
        weight_decays: torch.Tensor,
        *,
        momentum: float = 0.9,
        weight_decay_on: str = "all",
    ) -> None:
        check_optimizer(name, 1.0, weight_decays.tolist(), weight_decay_on, momentum)  # (each run's lr is checked by fit_packed)
        self.name, self.momentum, self.params = name, momentum, list(params)
        decays = bool((weight_decays != 0).any())
        decaying = [decays and (weight_decay_on == "all" or p.ndim >= 3) for p in self.params]
        self._decay = [per_run(weight_decays, p, compute_dtype(p)) if d else None for p, d in zip(self.params, decaying)]
        # (run by run: each run's decay as given, in double, as torch.optim takes a run's number)
        self._run_decays = [weight_decays.tolist() if d else [0.0] * len(weight_decays) for d in decaying]
        self._state: list[dict[str, torch.Tensor]] = [{} for _ in self.params]
        self._steps = 0

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor], lr: torch.Tensor) -> None:
        """One update of every run: ``lr`` is each run's learning rate now, ``(K,)`` in double."""
        self._steps += 1
        first, rates = self._steps == 1, None
        for p, g, wd, run_decays, state in zip(self.params, grads, self._decay, self._run_decays, self._state):
            if first:
                self._start(p, state)
            if p.device.type != "cpu" or p[0].numel() < PER_RUN_FROM or not fused_applies(self.name, [p]):
                self._update(p, g, lr, wd, state, first)
                continue
            # A large parameter (an embedding table) run by run: each run's slice stays in cache, where the
            # whole pack's went to memory several times a step; by torch.optim's fused kernels, with the run's
            # own numbers, as a run alone takes them (su-sst2's packed Adam steps took 4-5x the runs' own).
            rates = lr.tolist() if rates is None else rates
            g = g.contiguous()  # (the fused kernels read a run's slice as contiguous: vmap's gradients may be strided)
            for k in range(len(p)):
                if self.name == "sgd":  # (a zeroed buffer: momentum x 0 + g is the first step's g, as torch's own start)
                    sgd_update([p[k]], [g[k]], [state["momentum"][k] if self.momentum else None], fused=True,
                               weight_decay=run_decays[k], momentum=self.momentum, lr=rates[k], dampening=0.0,
                               nesterov=False, maximize=False)  # fmt: skip
                    continue
                adam = adamw_update if self.name == "adamw" else adam_update
                adam([p[k]], [g[k]], [state["exp_avg"][k]], [state["exp_avg_sq"][k]], [], [state["step"][k]], fused=True,
                     amsgrad=False, beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1], lr=rates[k], weight_decay=run_decays[k],
                     eps=ADAM_EPS, maximize=False)  # fmt: skip

    def _start(self, p: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        if self.name == "sgd" and self.momentum:
            state["momentum"] = torch.zeros_like(p)
        elif self.name != "sgd":
            state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
            state["step"] = torch.zeros(len(p), dtype=torch.float32, device=p.device)  # (each run's, for the fused kernel)

    def _update(self, p: torch.Tensor, g: torch.Tensor, lr: torch.Tensor, wd: torch.Tensor | None,
                state: dict[str, torch.Tensor], first: bool) -> None:  # fmt: skip
        """One update of a pack's parameter ``p``, each run with its ``lr`` ((K,)) and ``wd`` (broadcasting
        against it), as torch.optim computes it; a half-precision parameter and its state in float32, stored
        back, as torch's fused kernels compute them (in float16, Adam's eps of 1e-8 is 0, and each run's lr
        would be rounded alike at every step)."""
        if compute_dtype(p) == p.dtype:
            self._apply(p, g, per_run(lr, p), wd, state, first)
            return
        wide = {name: t.float() for name, t in state.items()}
        work = p.float()
        self._apply(work, g.float(), per_run(lr, work), wd, wide, first)
        p.copy_(work)
        for name, t in wide.items():
            state[name].copy_(t)

    def _apply(self, p: torch.Tensor, g: torch.Tensor, lr: torch.Tensor, wd: torch.Tensor | None,
               state: dict[str, torch.Tensor], first: bool) -> None:  # fmt: skip
        if self.name == "sgd":
            if wd is not None:
                g = g + wd * p
            if self.momentum:
                buf = state["momentum"]
                if first:  # (torch.optim's buffer starts as the first gradient)
                    buf.copy_(g)
                else:
                    buf.mul_(self.momentum).add_(g)
                g = buf
            p.sub_(lr * g)
            return
        if wd is not None:
            if self.name == "adamw":
                p.mul_(1 - lr * wd)
            else:
                g = g + wd * p
        beta1, beta2 = ADAM_BETAS
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(g, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        step_size = lr / (1 - beta1**self._steps)
        denom = exp_avg_sq.sqrt().div_(math.sqrt(1 - beta2**self._steps)).add_(ADAM_EPS)
        # torch.optim's addcdiv: p - (step m) / denom, in that order (m / denom first is 0 where torch's is inf / inf:
        # a run that overflows would stay finite packed and diverge alone)
        p.sub_(exp_avg.mul(step_size).div_(denom))


@trains
def fit_packed(
    packed: PackedModel,
    losses: Sequence[LossFn] | PackedLosses,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lrs: Sequence[float],
    generators: Sequence[torch.Generator],
    optimizer: str = "sgd",
    weight_decays: Sequence[float] | None = None,
    momentum: float = 0.9,
    lr_final: float | None = None,
    lr_schedule: str = "step",
    weight_decay_on: str = "all",
    repeat: int = 1,
    drop_last: bool = False,
    transforms: Sequence[Sequence[TransformSpec]] | None = None,
    shared_loss: Sequence[Sequence[int]] | None = None,
    row_options: Sequence[str] = (),
    batch_groups: str | None = None,
    row_none: Mapping[str, float] | None = None,
    on_epoch_end: PackedEpochCallback | None = None,
) -> list[list[dict[str, float]]]:
    """Train the pack's K runs as :func:`lossbench.train.fit` trains each alone; returns each
    run's history (one statistics dict per epoch, as ``fit``'s).

    Run ``k`` trains with ``losses[k]``, ``transforms[k]`` (of transforms that declare ``packs``,
    each with its own hyperparameters; runs may differ in their chains, as runs of several methods,
    but not in whether the first objective transform is per-sample),
    ``lrs[k]``, ``weight_decays[k]`` and draws its epochs' orders from ``generators[k]``; the
    remaining arguments are ``fit``'s and hold for every run.  ``shared_loss`` lists groups of
    runs whose losses are the same function (same class and arguments) of per-sample terms: a
    group's rows go through one call with ``reduction="none"`` instead of one call per run (runs
    whose loss's mean is not an even mean of their rows, checked on a few rows of ``y_train``, keep calls
    of their own: see :class:`PackedLosses`; so do runs whose targets ``y_train`` hold their loss's ``ignore_index``).
    ``row_options`` names loss options in which a group's runs may differ: each call reads every
    run's value (``loss.option(name)``) and passes them as one ``(rows,)`` tensor (``name=...``), each
    row with its run's value (``row_none``: the value that stands for a None there, if any).  ``batch_groups`` names the loss argument that takes a group's number of
    runs, for a batch-level loss that computes each run's rows as its own batch (see
    ``lossbench.losses.LossInfo``): such a loss may then be shared too.
    ``losses`` may instead be a :class:`PackedLosses`, which holds the runs' losses and how they share
    calls (the caller evaluates with it too); the four arguments after ``transforms`` are then left out.
    ``on_epoch_end(epoch, rows)`` gets every run's row (it may add to them; evaluate with
    ``packed.eval_logits``) and stops every run by returning True.

    A pack trains the models' parameters only: a loss with trainable parameters is refused.  A loss
    that draws random numbers (EXACT's ``estimator="genz"``) draws from one stream for every run, so
    not what it draws alone: the caller keeps such losses out (``lossbench.bench.execution.unpackable``).
    Build the losses with ``validate=False``, as the bench does: a validating loss checks a shared call's
    logits, so one run's non-finite logits would stop every run sharing its call, where trained alone
    only that run stops.
    """
    device = packed.params[0].device
    for loss in losses.losses if isinstance(losses, PackedLosses) else losses:
        if isinstance(loss, nn.Module):
            loss.to(device)  # (before a user's loss is checked on the probe's rows, on the pack's device)
    probe = functools.cache(lambda: mean_probe(packed, x_train, y_train))
    if isinstance(losses, PackedLosses):
        if shared_loss is not None or row_options or batch_groups is not None or row_none:
            raise ValueError("shared_loss, row_options, batch_groups and row_none come with the PackedLosses, not beside it")
        grouped = losses
    else:
        grouped = PackedLosses(losses, shared_loss, row_options, batch_groups, row_none, probe)
    losses = grouped.losses
    k_runs = packed.size
    weight_decays = [0.0] * k_runs if weight_decays is None else list(weight_decays)
    transforms = [[] for _ in range(k_runs)] if transforms is None else transforms
    if not (len(losses) == len(lrs) == len(generators) == len(weight_decays) == len(transforms) == k_runs):
        raise ValueError(f"a pack of {k_runs} runs needs {k_runs} losses, lrs, generators, weight decays and transform lists")
    shared = [k for k, g in enumerate(generators) if any(g is other for other in generators[:k])]
    if shared:  # (each would draw its epoch order after the others' draws: none the order it has alone)
        raise ValueError(f"run {shared[0]} shares its generator with an earlier run: give each run its own")
    owner: dict[int, int] = {}
    for k, chain in enumerate(transforms):  # (a transform's state, a moving norm say, is its run's)
        for t in chain:
            if isinstance(t, Transform) and owner.setdefault(id(t), k) != k:
                raise ValueError(f"runs {owner[id(t)]} and {k} share one {type(t).__name__} object: give each run its "
                                 "own (or the transform's name)")  # fmt: skip
    for k, loss in enumerate(losses):
        trained = [name for name, p in loss.named_parameters() if p.requires_grad] if isinstance(loss, nn.Module) else []
        if trained:  # (its gradient is never taken: they would stay as they are)
            raise ValueError(f"run {k}'s loss {type(loss).__name__} has trainable parameters {trained}: a pack trains "
                             "the models' only (train it with fit, or freeze them)")  # fmt: skip
    check_lr_schedule(lrs, lr_final, lr_schedule)
    steps_per_epoch, samples = check_epoch_shape(x_train, y_train, epochs, batch_size, repeat, drop_last)
    n = x_train.shape[0]
    x_train, y_train = x_train.to(device), y_train.to(device)

    ignoring = _ignoring(losses, y_train)
    step = _PackedStep(packed, transforms, grouped.apart(ignoring), probe)  # (alone, a run's mean counts its kept targets)
    if step.per_sample and ignoring:
        raise ValueError("a per-sample transform of a packed run averages over every sample, and some targets are "
                         "at the loss's ignore_index: train these runs one at a time (fit drops them)")  # fmt: skip
    # The runs' lr and decay in double, as a run alone has them: on the device, but on the CPU where the
    # device has no double (MPS)
    numbers = torch.device("cpu") if device.type == "mps" else device
    opt = PackedOptimizer(
        packed.params, optimizer, torch.tensor(weight_decays, dtype=torch.float64, device=numbers),
        momentum=momentum, weight_decay_on=weight_decay_on,
    )  # fmt: skip
    per_step = lr_schedule == "step"
    total = epochs * steps_per_epoch if per_step else epochs
    # Each run's exponential decay as ExponentialLR computes it: lr <- lr * gamma, in float64.
    gammas = [
        (lr_final / lr) ** (1.0 / (total - 1)) if lr_final is not None and total > 1 and lr_final < lr else 1.0
        for lr in lrs
    ]
    lr_now = torch.tensor(list(lrs), dtype=torch.float64, device=numbers)
    gamma = torch.tensor(gammas, dtype=torch.float64, device=numbers)
    decays = any(g != 1.0 for g in gammas)
    starts = range(0, steps_per_epoch * batch_size, batch_size)

    # The batches go into the same memory every step: a fresh (K, B, ...) block each step is large
    # enough that the allocator maps new pages, and their first touch cost more than the copy.
    rows = k_runs * min(batch_size, samples)  # a batch larger than the epoch is the epoch
    x_buffer, y_buffer = x_train.new_empty(rows * x_train[0].numel()), y_train.new_empty(rows * y_train[0].numel())
    histories: list[list[dict[str, float]]] = [[] for _ in range(k_runs)]
    for epoch in range(epochs):
        perms = torch.stack([torch.randperm(samples, generator=g, device=g.device).to(device) for g in generators])
        if repeat > 1:
            perms = perms % n
        values: dict[str, list[torch.Tensor]] = {}
        recorded: dict[str, set[int]] = {}  # the runs that recorded each statistic this epoch (as fit: those only)
        lr_last = lr_now
        for start in starts:
            idx = perms[:, start : start + batch_size]
            lr_last = lr_now
            x, y = batch_rows(x_train, idx, x_buffer), batch_rows(y_train, idx, y_buffer)
            stats, runs = step.run(x, y, opt, lr_now)
            for key, value in stats.items():
                values.setdefault(key, []).append(value)
                recorded.setdefault(key, set()).update(runs.get(key, range(k_runs)))
            if decays and per_step:
                lr_now = lr_now * gamma
        if decays and not per_step:
            lr_now = lr_now * gamma
        sums = {key: torch.stack(vals).double().sum(0).tolist() for key, vals in values.items()}
        lrs_last = lr_last.tolist()
        rows = []
        for k in range(k_runs):
            row = {key: s[k] / steps_per_epoch for key, s in sums.items() if k in recorded[key]}
            row["epoch"], row["lr"] = epoch, lrs_last[k]
            histories[k].append(row)
            rows.append(row)
        if on_epoch_end is not None and on_epoch_end(epoch, rows):
            break
    return histories


def _ignoring(losses: Sequence[LossFn], y: torch.Tensor) -> set[int]:
    """The runs whose loss's ``ignore_index`` is among the targets ``y`` (one look at them per value)."""
    ignores = [loss_option(loss, "ignore_index") for loss in losses]
    found = {value: bool((y == value).any()) for value in set(ignores) - {None}}
    return {k for k, value in enumerate(ignores) if value is not None and found[value]}


def mean_probe(packed: PackedModel, x: torch.Tensor, y: torch.Tensor,
               size: int = PROBE_ROWS) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """A small batch on which :class:`PackedLosses` checks that a run's loss is the even mean of its rows
    (:func:`even_mean`): for class-index targets, rows of every class in ``y``, unevenly (one row of the first
    class, two of the second, three of the third, one of the fourth, ...; at most ``size`` rows), and a row of
    each negative value ``y`` holds (an ``ignore_index``: a loss that leaves such rows out of its mean shows
    there); other targets: the first ``size`` rows; with random logits of the pack's output shape, on its
    device."""
    if y.ndim == 1 and not y.is_floating_point():
        rows = [(y == c).nonzero().flatten()[:1] for c in torch.unique(y[y < 0]).tolist()]
        for i, c in enumerate(torch.unique(y[y >= 0]).tolist()):
            if sum(map(len, rows)) >= size:
                break
            rows.append((y == c).nonzero().flatten()[: i % 3 + 1])
        idx = torch.cat(rows) if rows else torch.arange(min(size, len(y)), device=y.device)
    else:
        idx = torch.arange(min(size, len(y)), device=y.device)
    device = packed.params[0].device
    shape = packed.eval_logits(x[idx.to(x.device)].to(device)).shape[1:]  # (the rows together: a model may normalise them)
    return probe_logits(shape, packed.params[0].dtype, device), y[idx].to(device)


@functools.lru_cache(maxsize=None)
def _defined_in_lossbench(code: Any) -> bool:
    try:
        return Path(inspect.getfile(code)).resolve().is_relative_to(PACKAGE_DIR)
    except TypeError:  # (a partial, a built-in: not lossbench's own)
        return False


def _own_loss(loss: LossFn) -> bool:
    """Whether ``loss`` is lossbench's own, by where its code is defined (a loss module's function, else its
    class; a plain function's own code, which a ``functools.wraps`` wrapper does not take from what it wraps):
    a test checks their means with :func:`even_mean`, and a pack reads their class weights by name instead of
    probing each run.  An adapter's loss is judged, not the adapter."""
    loss = adapted_loss(loss)
    code = getattr(type(loss), "function", None) if isinstance(loss, nn.Module) else loss
    return _defined_in_lossbench(type(loss) if code is None else code)


def _row_dtype(like: torch.Tensor) -> torch.dtype:
    """The dtype of a shared call's row options: double on the CPU (EXACT's kernel takes sigma in double), else the
    logits'."""
    return torch.float64 if like.device.type == "cpu" else like.dtype


def row_values_unkept(loss: LossFn, values: Mapping[str, tuple[Any, Any]], logits: torch.Tensor,
                      y: torch.Tensor) -> str | None:  # fmt: skip
    """Why a pack's shared call of a user's ``loss`` would not give each run's rows its own value of a row option
    (None where it does, or where the loss is lossbench's own: the tests check those): for each ``values[name] =
    (a, b)``, a call with ``a`` for the first half of the rows and ``b`` for the rest must give each half what a
    call with its value alone gives (a loss that read the option as one number failed mid-study, or averaged it)."""
    if _own_loss(loss):
        return None
    half = len(y) // 2
    for name, (a, b) in values.items():
        per_row = torch.tensor([a] * half + [b] * (len(y) - half), dtype=_row_dtype(logits), device=logits.device)
        try:
            with torch.no_grad():
                shared = loss(logits, y, reduction="none", **{name: per_row})
                alone = torch.cat([loss(logits[:half], y[:half], reduction="none", **{name: a}),
                                   loss(logits[half:], y[half:], reduction="none", **{name: b})])  # fmt: skip
        except Exception as err:  # noqa: BLE001 - a user's loss: any failure means its runs train one at a time
            return f"given one {name} per row, raises {type(err).__name__}: {first_line(err)}"
        if shared.shape != alone.shape or not torch.allclose(shared.double(), alone.double(), rtol=1e-4, atol=1e-6):
            return f"given one {name} per row ({a!r} and {b!r}), gives its rows other values than with each row's own"
    return None


def stretches(keys: Sequence[Any]) -> list[tuple[int, int]]:
    """``(start, stop)`` of each stretch of equal neighbouring keys (a pack's runs of one method)."""
    bounds = [0, *(k for k in range(1, len(keys)) if keys[k] != keys[k - 1]), len(keys)]
    return list(zip(bounds, bounds[1:]))


def batch_rows(data: torch.Tensor, idx: torch.Tensor, buffer: torch.Tensor | None = None) -> torch.Tensor:
    """``data[idx]`` for (K, B) row indices: the runs' batches, (K, B, ...), written into the leading
    part of the flat ``buffer`` where one is given.  ``index_select`` of the flat indices copies whole
    rows; advanced indexing cost 4-6x as much per batch."""
    flat, shape = idx.reshape(-1), (*idx.shape, *data.shape[1:])
    if buffer is None:
        return data.index_select(0, flat).view(shape)
    out = buffer[: idx.numel() * data[0].numel()].view(flat.numel(), *data.shape[1:])
    return torch.index_select(data, 0, flat, out=out).view(shape)


class _CallOptions(NamedTuple):
    """How one group's shared call passes its runs' options (see :class:`PackedLosses`)."""

    row_options: tuple[str, ...]
    batch_groups: str | None
    row_none: dict[str, float]


class PackedLosses:
    """The K runs' losses on their own rows: ``self(logits, y)`` with logits ``(K, B, C)`` and targets
    ``(K, B, ...)`` gives each run's mean loss ``(K,)`` (``per_sample``: its per-sample losses, ``(K, B)``).

    Runs in one group of ``shared_loss`` (see :func:`fit_packed`) go through one call with
    ``reduction="none"``, their row options (``row_options``; a None as ``row_none`` says) one value per row and, with
    ``batch_groups``, the group's number of runs under that name; any other run through a call of its own.
    A shared call averages each run's rows evenly, so a run whose loss's ``reduction="mean"`` is not that even
    mean keeps a call of its own: a user's loss checked on the logits and targets ``probe()`` gives (called only
    for such a loss: :func:`mean_probe`, :func:`even_mean`); lossbench's own losses, and any without a probe,
    where they have per-class weights
    (``CLASS_WEIGHTS``, a mean divided by their sum); once, so
    a loss whose mean changes mid-run must say so otherwise (LDAM's deferred re-weighting is batch-level).
    So does a run whose loss is batch-level without ``batch_groups`` (its rows would mix with the group's), and
    runs whose targets hold the loss's ``ignore_index`` (:meth:`for_targets`; :func:`fit_packed`
    splits them apart for its training targets; call it with other targets before scoring them).
    """

    def __init__(self, losses: Sequence[LossFn], shared_loss: Sequence[Sequence[int]] | None = None,
                 row_options: Sequence[str] = (), batch_groups: str | None = None,
                 row_none: Mapping[str, float] | None = None,
                 probe: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:  # fmt: skip
        self.losses = list(losses)
        # each group's row option's last tensor (by rows, device, dtype), with its values: they change only with a schedule
        self._row_tensors: dict[tuple[Any, ...], tuple[tuple[Any, ...], torch.Tensor]] = {}
        groups = [sorted(g) for g in shared_loss or () if len(g) > 1]
        _check_shared(self.losses, groups, {*row_options, batch_groups})
        grouped = {k for group in groups for k in group}
        groups += [[k] for k in range(len(self.losses)) if k not in grouped]
        options = _CallOptions(tuple(row_options), batch_groups, dict(row_none or {}))
        alone = {k for k in grouped if batch_groups is None and batch_level(self.losses[k])}
        for k in grouped - alone:
            loss = self.losses[k]
            if probe is None or _own_loss(loss):  # (lossbench's losses: their means are even but for class weights)
                uneven = any(isinstance(loss_option(loss, name), torch.Tensor) for name in CLASS_WEIGHTS)
            else:  # a user's loss: checked on the probe's rows
                uneven = not even_mean(loss, *probe())
            if uneven:
                alone.add(k)
        self._set_groups(_apart([(group, options) for group in groups], alone))

    @classmethod
    def join(cls, parts: Sequence[PackedLosses]) -> PackedLosses:
        """One PackedLosses of the parts' runs, in order (runs of several methods in one pack): each
        part's groups keep their own row options."""
        joined, offset, groups = cls([]), 0, []
        for part in parts:
            groups += [([k + offset for k in group], options) for group, options in zip(part.groups, part._options)]
            joined.losses += part.losses
            offset += len(part.losses)
        joined._set_groups(groups)
        return joined

    def for_targets(self, y: torch.Tensor) -> PackedLosses:
        """These losses for targets ``y`` (held-out ones, say): the runs whose ``ignore_index`` occurs in ``y``
        in calls of their own (:meth:`apart`; a shared call would count ignored rows as zeros)."""
        return self.apart(_ignoring(self.losses, y))

    def apart(self, runs: Collection[int]) -> PackedLosses:
        """These losses with each of ``runs`` in a call of its own (where it shared one): self where none did."""
        if not any(k in runs for group in self.groups if len(group) > 1 for k in group):
            return self
        split = copy.copy(self)
        split._set_groups(_apart(list(zip(self.groups, self._options)), runs))
        return split

    def _set_groups(self, groups: Sequence[tuple[list[int], _CallOptions]]) -> None:
        self.groups, self._options = [g for g, _ in groups], [o for _, o in groups]
        order = [k for group in self.groups for k in group]
        self._order = None if order == sorted(order) else torch.tensor(order)  # the runs, group after group
        self._unsort = None if self._order is None else torch.argsort(self._order)

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, per_sample: bool = False) -> torch.Tensor:
        batch, chunks = logits.shape[1], []
        if len(self.groups) == 1:  # every run: no split (its backward would copy the whole pack)
            pieces = [(logits, y)]
        else:  # one split into the groups (its backward writes the pack's gradient once; a slice's, each a whole copy)
            if self._order is not None:  # groups not in run order: one gather puts them so
                self._order = self._order.to(logits.device)  # (once)
                logits, y = logits.index_select(0, self._order), y.index_select(0, self._order)
            sizes = [len(group) for group in self.groups]
            pieces = list(zip(logits.split(sizes), y.split(sizes)))
        for group, options, (lg, yg) in zip(self.groups, self._options, pieces):
            first = group[0]
            if len(group) == 1 and not per_sample:
                chunks.append(self.losses[first](lg[0], yg[0], reduction="mean").reshape(1))
                continue
            overrides = self._row_values(group, batch, lg, options) if options.row_options else {}
            if options.batch_groups is not None:
                overrides[options.batch_groups] = len(group)
            out = self.losses[first](lg.flatten(0, 1), yg.flatten(0, 1), reduction="none", **overrides)
            # one value per sample; elementwise losses (multi-label): a sample's mean
            rows = out.view(len(group), batch) if out.ndim == 1 else out.reshape(len(group), batch, -1).mean(2)
            chunks.append(rows if per_sample else rows.mean(1))
        values = torch.cat(chunks)
        if self._unsort is None:
            return values
        self._unsort = self._unsort.to(values.device)  # once: a copy to the GPU each step would cost a sync
        return values[self._unsort]

    def _row_values(self, group: Sequence[int], batch: int, like: torch.Tensor, options: _CallOptions) -> dict[str, torch.Tensor]:
        """The row options in which the group's runs differ now, one value per row of the group's call."""
        overrides = {}
        for name in options.row_options:
            values = [self.losses[k].option(name) for k in group]
            if any(v != values[0] for v in values):
                values = [options.row_none.get(name) if v is None else v for v in values]
                if None in values:
                    raise ValueError(f"loss option {name!r} is None for some runs of a shared call and has no value per row (row_none)")
                dtype = _row_dtype(like)
                key = (tuple(group), name, batch, like.device, dtype)
                numbers = all(type(v) in (int, float) for v in values)  # (tensors would compare by identity)
                spelled = tuple(map(repr, values))  # (repr tells -0.0 from 0.0, which == does not)
                last = self._row_tensors.get(key)
                if numbers and last is not None and last[0] == spelled:
                    overrides[name] = last[1]
                    continue
                overrides[name] = torch.tensor(values, dtype=dtype, device=like.device).repeat_interleave(batch)
                if numbers:
                    self._row_tensors[key] = (spelled, overrides[name])
        return overrides


def _check_shared(losses: Sequence[LossFn], groups: Sequence[Sequence[int]], per_row: Collection[str | None]) -> None:
    """A group's one call takes its first run's options for every run: the others must have the same loss
    and options, but those given per row (the bench groups runs so; a caller of fit_packed might not)."""
    for group in groups:
        first = losses[group[0]]
        for k in group[1:]:
            other, name = losses[k], None
            if (type(other), type(getattr(other, "loss", None))) != (type(first), type(getattr(first, "loss", None))):
                name = "its loss"
            elif hasattr(first, "options") and hasattr(other, "options"):
                name = next((f"option {n!r}" for n in sorted({*first.options(), *other.options()} - set(per_row))
                             if not _same_option(first.option(n), other.option(n))), None)  # fmt: skip
            if name is not None:
                raise ValueError(f"shared_loss group {list(group)}: run {k} differs from run {group[0]} in {name}, which "
                                 f"is no row option: one call would give it run {group[0]}'s")  # fmt: skip


def _same_option(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and bool(torch.equal(a, b))
    return a == b


def _apart(groups: Sequence[tuple[list[int], _CallOptions]],
           runs: Collection[int]) -> list[tuple[list[int], _CallOptions]]:  # fmt: skip
    """``groups`` (each with its call options) with each of ``runs`` in a group of its own."""
    out = []
    for group, options in groups:
        rest = [k for k in group if k not in runs]
        out += ([(rest, options)] if rest else []) + [([k], options) for k in group if k in runs]
    return out


class _Segment:
    """The runs ``start:stop`` of a pack that share one chain of transforms (one method's runs):
    per position in the chain, the runs' instances and their packed hook (None: run by run)."""

    def __init__(self, start: int, stop: int, runs: Sequence[Sequence[Any]], contexts: Sequence[StepContext],
                 whole: bool) -> None:  # fmt: skip
        self.start, self.stop, self.whole = start, stop, whole
        self.chain = [([ts[j] for ts in runs], type(runs[0][j]).packed([ts[j] for ts in runs])) for j in range(len(runs[0]))]
        self.run_by_run = any(hook is None for _, hook in self.chain)
        self.per_sample = reads_per_sample(runs[0])
        self.contexts = list(contexts)

    def part(self, tensor: torch.Tensor) -> torch.Tensor:
        """The segment's runs of a pack-wide tensor (K, ...)."""
        return tensor if self.whole else tensor[self.start : self.stop]

    def objective(self, values: torch.Tensor, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor,
                  stats: dict[str, torch.Tensor]) -> torch.Tensor:  # fmt: skip
        if self.run_by_run:  # only transforms without a packed hook read the runs' contexts
            for k, ctx in enumerate(self.contexts):
                ctx.x, ctx.y, ctx.logits, ctx.stats = x[k], y[k], logits[k], {}
        for runs, hook in self.chain:
            if runs[0].stage != "objective":
                continue
            if hook is not None:
                values = hook(values, stats)
            else:
                values = torch.stack([t.objective(values[k], self.contexts[k]) for k, t in enumerate(runs)])
        if values.ndim != 1:
            raise ValueError(f"each run's objective must be a scalar, got shape {tuple(values.shape[1:])}")
        return values

    def gradients(self, grads: list[torch.Tensor], stats: dict[str, torch.Tensor]) -> None:
        """The gradient transforms, in place on the segment's slices of the pack's gradients."""
        for runs, hook in self.chain:
            if runs[0].stage != "gradient":
                continue
            if hook is not None:
                hook(grads, stats)
            else:
                for k, t in enumerate(runs):
                    t.gradients([g[k] for g in grads], self.contexts[k])

    def finish(self, values: torch.Tensor, stats: dict[str, torch.Tensor]) -> dict[str, list[int]]:
        """The step's statistics completed (in ``stats``); returns, for those only some of the segment's
        runs recorded (a run-by-run transform's), the runs that did (numbered within the pack)."""
        stats["objective"] = values.detach() if self.chain else stats["loss"]
        some: dict[str, list[int]] = {}
        if self.run_by_run:
            for key in sorted({key for ctx in self.contexts for key in ctx.stats}):
                stats[key] = torch.stack([torch.as_tensor(ctx.stats.get(key, 0.0), dtype=torch.float32, device=values.device)
                                          for ctx in self.contexts])  # fmt: skip
                runs = [self.start + k for k, ctx in enumerate(self.contexts) if key in ctx.stats]
                if len(runs) < len(self.contexts):
                    some[key] = runs
            for ctx in self.contexts:
                ctx.step += 1
                ctx.x = ctx.y = ctx.logits = None
        return some


class _PackedStep:
    """One step of every run: logits -> each run's loss -> its objective transforms -> one
    backward of their sum -> each run's gradient transforms on its slice -> the packed update.

    Runs may differ in their chain of transforms (a pack of several methods); each stretch of runs
    with one chain is a segment, its runs with their own hyperparameters.  A transform whose class
    has a packed hook (:meth:`Transform.packed`) runs once for the segment's runs, any other once
    per run on the run's own value or gradient slices.  A run's statistics are its own segment's.
    """

    def __init__(
        self,
        packed: PackedModel,
        transforms: Sequence[Sequence[TransformSpec]],
        values: PackedLosses,
        probe: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        self.packed, self.values = packed, values
        runs = [[make_transform(t) for t in ts] for ts in transforms]
        refused = next((r for ts in runs for t in ts for r in [packing_refusal(t)] if r is not None), None)
        if refused is not None:
            raise ValueError(f"a packed step cannot run it: {refused}")
        contexts = [
            StepContext(model=packed._base, loss=loss, optimizer=None, params=packed.run_params(k))
            for k, loss in enumerate(values.losses)
        ]
        for k, (ts, loss) in enumerate(zip(runs, values.losses)):
            check_per_sample_loss(ts, loss, f"run {k}'s ", probe)
        for ts, ctx in zip(runs, contexts):
            for t in ts:
                t.bind(ctx)
        spans = stretches([[type(t) for t in ts] for ts in runs])
        self.segments = [_Segment(a, b, runs[a:b], contexts[a:b], whole=len(spans) == 1) for a, b in spans]
        flags = {s.per_sample for s in self.segments}
        if len(flags) > 1:
            raise ValueError("runs whose first objective transform is per-sample and runs whose is not cannot share a pack")
        self.per_sample = flags.pop()

    def run(self, x: torch.Tensor, y: torch.Tensor, opt: PackedOptimizer,
            lr: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, list[int]]]:  # fmt: skip
        """One step; returns the statistics, one value per run ``(K,)`` (0 where a run recorded none),
        and, for those not every run recorded, the runs that did."""
        logits = self.packed(x)
        values = self.values(logits, y, self.per_sample)
        loss = (values.mean(1) if values.ndim == 2 else values).detach()
        parts = [{"loss": s.part(loss)} for s in self.segments]
        objectives = [s.objective(s.part(values), s.part(x), s.part(y), s.part(logits), st) for s, st in zip(self.segments, parts)]
        total = objectives[0] if len(objectives) == 1 else torch.cat(objectives)
        grads = list(torch.autograd.grad(total.sum(), self.packed.params, allow_unused=True))
        unused = [name for name, g in zip(self.packed.names, grads) if g is None]
        if unused:  # (alone the optimiser skips such a parameter; a pack would decay and step it)
            raise ValueError(f"the model's parameter {unused[0]} gets no gradient (its forward leaves it out): "
                             "a pack cannot train it as alone; train such a model with fit, one run at a time")
        for s, st in zip(self.segments, parts):
            s.gradients([s.part(g) for g in grads], st)
        opt.step(grads, lr)
        some = [s.finish(v, st) for s, st, v in zip(self.segments, parts, objectives)]
        if len(parts) == 1:
            return parts[0], some[0]
        return self._merge(parts, some)

    def _merge(self, parts: Sequence[dict[str, torch.Tensor]],
               some: Sequence[dict[str, list[int]]]) -> tuple[dict[str, torch.Tensor], dict[str, list[int]]]:  # fmt: skip
        """The segments' statistics as pack-wide (K,) tensors (0 where a segment has none), and the runs
        that recorded each one that not every run did."""
        merged, runs = {}, {}
        for key in dict.fromkeys(key for st in parts for key in st):
            like = next(st[key] for st in parts if key in st)
            pieces, holders = [], []
            for s, st, partial in zip(self.segments, parts, some):
                if key in st:
                    pieces.append(st[key].reshape(s.stop - s.start))
                    holders += partial.get(key, range(s.start, s.stop))
                else:
                    pieces.append(like.new_zeros(s.stop - s.start))
            merged[key] = torch.cat(pieces)
            if len(holders) < self.packed.size:
                runs[key] = holders
        return merged, runs
