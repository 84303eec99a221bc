"""One training step built from a loss, a chain of named transforms and an optimizer."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from lossbench.train._base import (
    LossFn,
    StepContext,
    Transform,
    check_per_sample_loss,
    loss_option,
    probe_logits,
    reads_per_sample,
)
from lossbench.train._registry import TransformSpec, make_transform


def make_chain(transforms: Sequence[TransformSpec] | TransformSpec | None) -> list[Transform]:
    """The transforms of a step, built from a list of names, ``(name, kwargs)`` pairs or instances (a name or
    an instance alone too; None for none) and checked as a chain: at most one update transform."""
    if transforms is None:
        return []
    if isinstance(transforms, (str, Transform)):
        transforms = [transforms]
    elif isinstance(transforms, Mapping) or not isinstance(transforms, Iterable):
        raise ValueError(f"transforms must be a list of names, (name, kwargs) pairs or Transforms, got {transforms!r}")
    chain = [make_transform(t) for t in transforms]
    updates = [t.name for t in chain if t.stage == "update"]
    if len(updates) > 1:
        raise ValueError(f"at most one update transform per step, got {updates}")
    return chain


def trainable_parameters(model: nn.Module, loss: LossFn) -> list[nn.Parameter]:
    """The model's trainable parameters, then the loss's (when it is a module), without repeats."""
    seen: set[int] = set()
    params = []
    modules = [model, loss] if isinstance(loss, nn.Module) else [model]
    for module in modules:
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


def takes_reduction(loss: LossFn) -> bool:
    """Whether ``loss(logits, target, reduction=...)`` is a call the loss takes (every lossbench loss;
    ``torch.nn.CrossEntropyLoss()`` sets its reduction when built instead).  A callable whose
    signature Python cannot read is taken at its word."""
    try:
        params = inspect.signature(loss.forward if isinstance(loss, nn.Module) else loss).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == "reduction" and p.kind != p.POSITIONAL_ONLY or p.kind == p.VAR_KEYWORD for p in params)


def _name(loss: LossFn) -> str:
    return type(loss).__name__ if isinstance(loss, nn.Module) else getattr(loss, "__name__", repr(loss))


class TrainStep:
    """``step(x, y)``: loss -> objective transforms -> backward -> gradient transforms -> update.

    Objective transforms wrap the loss in the order given; gradient transforms edit the
    gradients in the order given; the update is ``optimizer.step()`` unless an update transform
    (MGS) is in the chain.  ``run`` returns the step's statistics as 0-d tensors (no host sync);
    calling the step returns them as floats.  ``"loss"`` is the mini-batch mean loss before any
    wrapper, ``"objective"`` what was differentiated; transform statistics are keyed
    ``"<transform>/<stat>"``.  The caller sets the model's train/eval mode.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: LossFn,
        optimizer: torch.optim.Optimizer,
        transforms: Sequence[TransformSpec] = (),
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.transforms = make_chain(transforms)
        self._objective = [t for t in self.transforms if t.stage == "objective"]
        self._gradient = [t for t in self.transforms if t.stage == "gradient"]
        updates = [t for t in self.transforms if t.stage == "update"]
        self._update = updates[0] if updates else None
        check_per_sample_loss(self._objective, loss)
        self._per_sample = reads_per_sample(self._objective)
        self._mean_checked = False  # (on the first batch with a target that is not ignored)
        self._takes_reduction = takes_reduction(loss)
        if self._per_sample and not self._takes_reduction:
            first = next(t for t in self._objective if t.per_sample)
            raise ValueError(f"{first.name} needs one loss per sample: the loss {_name(loss)} takes no reduction= "
                             "argument (lossbench's losses do, as reduction='none')")  # fmt: skip
        self._needs_grads = bool(self._gradient) or self._update is not None

        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        if isinstance(loss, nn.Module):
            missing = [n for n, p in loss.named_parameters() if p.requires_grad and id(p) not in in_optimizer]
            if missing:
                raise ValueError(
                    f"the loss has trainable parameters {missing} that the optimizer does not update; "
                    "build the optimizer from trainable_parameters(model, loss)"
                )
        params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.ctx = StepContext(model=model, loss=loss, optimizer=optimizer, params=params)
        for t in self.transforms:
            t.bind(self.ctx)

    def run(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor | float]:
        for name, given in (("x", x), ("y", y)):  # (an empty batch would step on nan statistics; x may be no tensor)
            if isinstance(given, torch.Tensor) and (given.ndim == 0 or len(given) == 0):
                raise ValueError(f"{name} must be a batch of at least one sample, got shape {tuple(given.shape)}")
        ctx = self.ctx
        ctx.x, ctx.y, ctx.stats = x, y, {}
        ctx.logits = logits = self.model(x)
        if self._takes_reduction:
            value = self.loss(logits, y, reduction="none" if self._per_sample else "mean")
        else:  # (a plain PyTorch loss, say: its own reduction)
            value = self.loss(logits, y)
        if self._per_sample:
            if not self._mean_checked:  # (a class-weighted mean shows on the first batch's classes)
                probe = lambda: (probe_logits(logits.shape, logits.dtype, logits.device), y)  # noqa: E731
                self._mean_checked = check_per_sample_loss(self._objective, self.loss, batch=probe)
            value = self._per_sample_values(value, y, logits)
        raw = value.detach() if value.ndim == 0 else value.detach().mean()
        for t in self._objective:
            value = t.objective(value, ctx)
        if value.ndim != 0:
            raise ValueError(f"the objective must be a scalar, got shape {tuple(value.shape)}")
        self.optimizer.zero_grad(set_to_none=True)
        value.backward()
        if self._needs_grads:  # only transforms read the gradient list
            grads = [p.grad for p in ctx.params if p.grad is not None]
            for t in self._gradient:
                t.gradients(grads, ctx)
        if self._update is None:
            self.optimizer.step()
        else:
            self._update.update(grads, ctx)
        ctx.stats["loss"] = raw
        ctx.stats["objective"] = value.detach() if self._objective else raw  # unwrapped: the same value
        ctx.step += 1
        ctx.x = ctx.y = ctx.logits = None
        return ctx.stats

    def _per_sample_values(self, value: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Each sample's loss, ``(samples,)``, for a per-sample transform: the mean over a sample's
        entries (elementwise, multi-label losses), and only the samples the loss counts (a target at its
        ``ignore_index`` gives 0 with reduction="none": it would count as a flooded sample)."""
        batch = logits.shape[0]
        if value.shape[:1] != (batch,):
            raise ValueError(
                f"{self._objective[0].name} needs one loss per sample, shape {(batch,)}; the loss "
                f"returned shape {tuple(value.shape)} for reduction='none' (batch-level losses have none)"
            )
        ignore = loss_option(self.loss, "ignore_index")
        if ignore is not None and value.ndim == 1 and y.ndim > 1 and y.shape == logits.shape[:-1]:
            # a class index per task (n-way, (B, n)): a sample counts where one of its tasks does (its
            # mean's count); index lists padded with it (sparse multi-label, (B, K)) drop no sample
            return value[(y != ignore).flatten(1).any(1)]
        if ignore is None or y.shape != value.shape:  # (probability targets: nothing is ignored)
            return value.flatten(1).mean(1) if value.ndim > 1 else value
        kept = y != ignore
        if value.ndim == 1:
            return value[kept]
        counts = kept.flatten(1).sum(1)
        return ((value * kept).flatten(1).sum(1) / counts.clamp_min(1))[counts > 0]

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        return {k: float(v) for k, v in self.run(x, y).items()}

    def state_dict(self) -> dict[str, Any]:
        """What the step carries from one call to the next: its count of steps (Su's ascent/descent
        alternates on it) and each transform's state, in the chain's order.  The model's and the
        optimizer's states are theirs to save."""
        return {"step": self.ctx.step, "transforms": [t.state_dict() for t in self.transforms]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (of a step with the same chain of transforms)."""
        if set(state) != {"step", "transforms"}:
            raise ValueError(f"state must be a TrainStep.state_dict() (keys 'step' and 'transforms'), got keys {sorted(state)}")
        if len(state["transforms"]) != len(self.transforms):
            raise ValueError(f"state is that of a step with {len(state['transforms'])} transform(s); this step has "
                             f"{len(self.transforms)}")  # fmt: skip
        for t, saved in zip(self.transforms, state["transforms"]):
            t.load_state_dict(saved)
        self.ctx.step = int(state["step"])

    def __repr__(self) -> str:
        return f"TrainStep(transforms={self.transforms!r}, optimizer={type(self.optimizer).__name__})"


def build_step(
    model: nn.Module,
    loss: LossFn,
    optimizer: torch.optim.Optimizer,
    transforms: Sequence[TransformSpec] = (),
) -> TrainStep:
    """A training step from transforms given by name, ``(name, kwargs)`` or instance.

    Example::

        step = build_step(model, CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1),
                          transforms=[("flooding", {"b": 0.05}), ("clip_norm", {"max_norm": 1.0})])
        for x, y in batches:
            stats = step(x, y)   # {"loss": ..., "objective": ..., "flooding/flooded": ..., ...}
    """
    return TrainStep(model, loss, optimizer, transforms)
