"""What a training-step transform is and what it sees.

A step is: loss on the batch -> objective transforms (loss wrappers, in order) -> backward ->
gradient transforms (in order) -> update (the optimizer's step, or an update transform such as
MGS that wraps it).  Each transform overrides the hooks of its stage and reports per-step
statistics as 0-d tensors (or Python floats), so that a loop can accumulate them without a host
sync per step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from lossbench.losses._validation import HALF_DTYPES

LossFn = Callable[..., torch.Tensor]
# A packed step's hook for K runs' instances of one transform: objective hooks map the runs'
# values ((K,) means, or (K, B) per-sample) to their objectives (K,); gradient hooks edit the
# stacked gradients (K, ...) in place.  Both put (K,) statistics in the dict.
PackedHook = Callable[[Any, dict[str, torch.Tensor]], Any]

STAGES = ("objective", "gradient", "update")


@dataclass
class StepContext:
    """Everything a transform may read during one step.

    ``params`` are the trainable tensors the optimizer updates (the model's and, when the loss is
    an ``nn.Module`` with parameters, the loss's), in a fixed order shared by all transforms.
    """

    model: nn.Module
    loss: LossFn
    optimizer: torch.optim.Optimizer | None
    params: list[torch.Tensor]
    x: torch.Tensor | None = None
    y: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    step: int = 0
    stats: dict[str, torch.Tensor | float] = field(default_factory=dict)


class Transform:
    """Base of the training-step transforms.

    Subclasses set ``name`` and ``stage`` and override the hook of their stage:

    - ``objective``: ``objective(value, ctx) -> value``; ``value`` is the scalar mini-batch loss,
      or the per-sample losses ``(B,)`` for a transform with ``per_sample = True`` (which must
      come first among the objective transforms).
    - ``gradient``: ``gradients(grads, ctx)`` edits the gradients of ``ctx.params`` in place
      (parameters without a gradient are left out, as the optimizer leaves them).
    - ``update``: ``update(grads, ctx)`` replaces the optimizer step (at most one per step).

    ``bind(ctx)`` is called once when the step is built (to collect weight matrices, allocate
    state on the parameters' device, ...).  Statistics go into ``ctx.stats`` as 0-d tensors
    under ``"<name>/<stat>"``.  State that outlives a step (a moving average, a generator) is in
    ``state_dict()`` and restored by ``load_state_dict()``, before or after ``bind``, so that a resumed
    run continues exactly as the saved one would have; a stateless transform has the empty default.
    """

    name: ClassVar[str] = ""
    stage: ClassVar[str] = "objective"
    per_sample: ClassVar[bool] = False
    # Reads only its own value or gradients (never ctx.model, ctx.params or ctx.optimizer), so it
    # can run once per run inside a packed step (lossbench.train.packed).
    packs: ClassVar[bool] = False

    def bind(self, ctx: StepContext) -> None:
        return None

    def objective(self, value: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        return value

    def gradients(self, grads: list[torch.Tensor], ctx: StepContext) -> None:
        return None

    def update(self, grads: list[torch.Tensor], ctx: StepContext) -> None:
        raise NotImplementedError(f"{type(self).__name__} is not an update transform")

    def state_dict(self) -> dict[str, Any]:
        """What this transform carries from one step to the next (empty: nothing)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        check_state_keys(self, state, ())

    @classmethod
    def packed(cls, runs: Sequence[Transform]) -> PackedHook | None:
        """The K runs' instances applied at once in a packed step (see ``PackedHook``), or None:
        the step applies them run by run."""
        return None

    def record(self, ctx: StepContext, key: str, value: torch.Tensor | float) -> None:
        ctx.stats[f"{self.name}/{key}"] = value.detach() if isinstance(value, torch.Tensor) else value

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def trains(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run with gradients on whatever a caller's ``no_grad`` or inference mode (it trains: under them it
    met an autograd error, or built inference tensors that never learned)."""
    return torch.inference_mode(False)(torch.enable_grad()(fn))


def check_state_keys(transform: Transform, state: Mapping[str, Any], keys: Sequence[str]) -> None:
    """Refuse a state dict whose keys are not ``keys`` (another transform's state, say)."""
    if set(state) != set(keys):
        raise ValueError(
            f"{type(transform).__name__}.load_state_dict expects the keys {sorted(keys)}, got {sorted(state)}"
        )


def _norm_dtype(grads: Sequence[torch.Tensor]) -> torch.dtype | None:
    """float32 for half-precision gradients (a float16 norm overflows past 65504 and a bfloat16 moving
    average stops moving), else None: their own dtype."""
    return torch.float32 if any(g.dtype in HALF_DTYPES for g in grads) else None


def global_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all gradients together, as one vector (0-d tensor, no host sync; float32 at least)."""
    if not grads:
        raise ValueError("grads must hold at least one tensor")
    dtype = _norm_dtype(grads)
    if dtype is None:
        return torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dtype=dtype) for g in grads]))


def run_norms(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """Each run's global L2 norm (K,) of stacked gradients (K, ...), computed as :func:`global_norm`
    computes one run's: the norm of the per-tensor norms."""
    dtype = _norm_dtype(grads)
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1, dtype=dtype) for g in grads], 1), dim=1
    )


def per_run(values: torch.Tensor, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """(K,) values shaped to broadcast over ``like``'s (K, ...) trailing dimensions, on its device, in
    ``dtype`` (default ``like``'s)."""
    return values.to(like.device, dtype or like.dtype).view(-1, *([1] * (like.ndim - 1)))


def hyperparameter(runs: Sequence[Transform], name: str, like: torch.Tensor) -> torch.Tensor:
    """The runs' values of one hyperparameter as a (K,) tensor of ``like``'s dtype and device, read-only: made
    once per values, dtype and device (a copy to an accelerator at each step waited for the device)."""
    return _values(tuple(float(getattr(t, name)).hex() for t in runs), like.dtype, like.device)


@functools.lru_cache(maxsize=64)
def _values(spelled: tuple[str, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor([float.fromhex(v) for v in spelled], dtype=dtype, device=device)


def scale_(grads: list[torch.Tensor], factor: torch.Tensor | float) -> None:
    """Multiply every gradient in place by a scalar (a Python number or a 0-d tensor)."""
    if grads:
        torch._foreach_mul_(grads, factor)


def packing_refusal(transform: Any) -> str | None:
    """Why a transform (its class or an instance) cannot run in a packed step; None where it can."""
    if transform.stage == "update":
        return f"transform {transform.name!r} replaces the optimiser step"
    if not transform.packs:
        return f"transform {transform.name!r} does not pack (its class leaves Transform.packs False: it may read the model)"
    return None


def reads_per_sample(transforms: Sequence[Any]) -> bool:
    """Whether a step with this chain of transforms (instances or their classes) hands its objective
    transforms the per-sample losses: the first loss wrapper decides, as ``fit`` applies them."""
    objective = [t for t in transforms if t.stage == "objective"]
    return bool(objective) and objective[0].per_sample


def loss_option(loss: LossFn, name: str) -> Any:
    """The value a registered loss's module calls its function with for ``name`` (``option``), or None where
    the loss has no such option (a plain function, or a module without it)."""
    try:
        return loss.option(name)
    except (AttributeError, KeyError):
        return None


def adapted_loss(loss: LossFn) -> LossFn:
    """The loss an adapter feeds (its ``adapted_loss``, as the bench's ``LossAdapter`` has), else ``loss``: what a
    pack inspects (whose code it is, whether it couples its rows), where it calls the adapter."""
    inner = getattr(loss, "adapted_loss", None)
    return loss if inner is None else adapted_loss(inner)


def batch_level(loss: LossFn) -> bool:
    """Whether a registered loss's module couples its batch's rows (always, or with an option set)."""
    loss = adapted_loss(loss)
    if getattr(loss, "batch_level", False):
        return True
    for when in getattr(loss, "batch_level_when", ()):
        value = vars(loss)[when] if when in vars(loss) else loss_option(loss, when)  # (a module's own setting, or its function's)
        if value not in (None, False):
            return True
    return False


def probe_logits(shape: Sequence[int], dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """Finite stand-in logits on which :func:`even_mean` judges a loss: the same for a run alone and in a pack,
    whatever the model's state (a run whose logits are already NaN is a diverged run, not a weighted mean).
    In at least float32: a half-precision model's losses rounded to its dtype differ from their even mean
    by more than the test's tolerance (every loss computes in float32, so the verdict is that of float32)."""
    dtype = torch.promote_types(dtype, torch.float32)
    logits = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    return logits.mul_(2).to(device)


def even_mean(loss: LossFn, logits: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether ``loss(logits, y)`` (its ``reduction="mean"``) is, up to round-off, the even mean of its rows
    of ``reduction="none"`` as a shared call of :class:`PackedLosses` takes it (an elementwise loss's rows: each
    sample's mean), on the whole batch and, for class-index targets, on the rows of each class alone.
    PyTorch's weighted mean (``weight=``, divided by the batch's summed weights) is not, but it agrees where
    the batch's mean weight is 1 (balanced weights on a batch in the data's class proportions); on one
    class's rows it is the mean of the unweighted losses and the rows' even mean is ``w_c`` times that, so
    a class weight other than 1 shows there; so does a mean that leaves out ignored targets' rows.  And
    whether each row's value is its own, the same in a call on part of the batch (a row may not depend on the
    others: one that keeps the hardest half of the batch's samples would read the other runs' rows)."""
    parts = [torch.arange(len(y), device=y.device) % 2 == 0]  # every other row
    if y.ndim == 1 and not y.is_floating_point():
        parts += [y == c for c in torch.unique(y[y >= 0])]
    with torch.no_grad():
        whole = loss(logits, y, reduction="none")
        if whole.ndim == 0 or len(whole) != len(y):  # (no row per sample: soft F1's per-class values)
            return False
        for part in [slice(None), *parts]:
            mean = loss(logits[part], y[part], reduction="mean")
            out = whole if isinstance(part, slice) else loss(logits[part], y[part], reduction="none")
            rows = out.reshape(len(out), -1).mean(1) if out.ndim > 1 else out
            if mean.numel() != 1 or not torch.allclose(mean.reshape(()), rows.mean(), rtol=1e-5, atol=1e-6):
                return False
            if out.shape != whole[part].shape or not torch.allclose(out, whole[part], rtol=1e-5, atol=1e-6):
                return False
    return True


def check_per_sample_loss(transforms: Sequence[Transform], loss: LossFn, run: str = "",
                          batch: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None) -> bool:  # fmt: skip
    """Refuse a chain with a per-sample loss wrapper (iFlood) after another loss wrapper (it would get the
    other's scalar), or first on a batch-level loss (its values per sample would couple the batch), or, given
    logits and class-index targets (``batch()``), on a loss whose mean over the rows it counts is not their
    even mean (a class-weighted mean): the wrapper averages them evenly, so at b = 0 it would not be the
    loss.  ``run`` names the run in the message (a packed step's).  Returns False where the batch's rows
    are all ignored targets, which show nothing of the mean: a later batch's are to be checked."""
    wrappers = [t for t in transforms if t.stage == "objective"]
    late = [t.name for t in wrappers[1:] if t.per_sample]
    if late:
        raise ValueError(f"{run}per-sample transforms {late} must come first among the loss wrappers")
    if reads_per_sample(transforms) and batch_level(loss):
        raise ValueError(f"{wrappers[0].name} needs one loss per sample; {run}{type(loss).__name__} is a batch-level loss")
    if batch is not None and reads_per_sample(transforms):
        logits, y = batch()
        if y.ndim == 1 and not y.is_floating_point():
            ignore = loss_option(loss, "ignore_index")  # (left out of both means: see StepRunner's per-sample values)
            kept = (y >= 0) & (y < logits.shape[-1]) & (y != ignore if ignore is not None else True)
            if not bool(kept.any()):
                return False
            if not even_mean(loss, logits[kept], y[kept]):
                raise ValueError(
                    f"{wrappers[0].name} averages the samples' losses evenly, but the mean of {run}{type(loss).__name__} "
                    "is not their even mean, or a row depends on the others (a class-weighted mean divides by the "
                    "batch's summed weights): at b = 0 it would not be the loss; drop the class weights, or flood the "
                    "mean (flooding)"
                )
    return True
