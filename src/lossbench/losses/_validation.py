"""Argument checks and reductions shared by every loss.

Each check raises ``ValueError`` naming the argument, the bad value and what was expected.
Checks that read tensor values (finiteness, label ranges) run only when ``validate=True``;
shape, dtype and hyperparameter checks are cheap and always run.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch

from lossbench._checks import (  # noqa: F401  (the losses read them from here)
    all_finite,
    check_bool,
    check_count,
    check_interval,
    check_number,
    check_numbers,
    check_positive,
    first_few,
    largest_magnitude,
)

REDUCTIONS = ("none", "mean", "sum")


def row_param(
    name: str, value: float | torch.Tensor, like: torch.Tensor, check: Callable[[str, float], None], validate: bool
) -> float | torch.Tensor:
    """A hyperparameter given as one number, checked by ``check(name, value)``, or one per sample of
    ``like`` (B, ...): a ``(B,)`` tensor (a packed step's rows, each with its run's value), returned
    in ``like``'s dtype; its values are checked when ``validate``.  A 0-d tensor is the number it holds
    (as the losses without per-row values take one), or, when it requires grad, that number for every row."""
    if isinstance(value, torch.Tensor) and value.ndim == 0:
        if value.requires_grad:  # that number for every row, its gradient kept (checked as the rows are)
            if validate:
                check(name, value.item())
            return value.to(device=like.device, dtype=like.dtype).expand(like.shape[0])
        value = value.item()
    if not isinstance(value, torch.Tensor):
        check(name, value)
        return value
    if value.ndim != 1 or value.shape[0] != like.shape[0] or not value.is_floating_point():
        raise ValueError(f"{name} must be a number or a float tensor of shape ({like.shape[0]},), "
                         f"got a {value.dtype} tensor of shape {tuple(value.shape)}")  # fmt: skip
    if validate:
        for v in torch.unique(value).tolist():
            check(name, v)
    return value.to(like.dtype)


def log_of_number(value: float, like: torch.Tensor) -> float | torch.Tensor:
    """``math.log(value)`` of a hyperparameter; under ``torch.compile`` a 0-d tensor of ``like``'s dtype and device
    instead, so that a value changing between calls is traced as a number that varies (``math.log`` of it
    compiled a graph per value).  Eager calls keep the float64 log they had."""
    if torch.compiler.is_compiling():
        return torch.log(like.new_zeros(()) + value)
    return math.log(value)


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


HALF_DTYPES = (torch.float16, torch.bfloat16)


def compute_dtype(logits: torch.Tensor) -> torch.dtype:
    """float32 for half-precision inputs, the input dtype otherwise."""
    return torch.float32 if logits.dtype in HALF_DTYPES else logits.dtype


def loss_output(loss: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """A loss's value as every loss returns it: in the logits' dtype (CONVENTIONS: computed in float32 at
    least, returned in the input dtype).  So a float16 value past 65504 (a sum, or LDAM's scaled margins,
    at logits of 1e4) is inf while its gradient, computed in float32, stays finite: give such losses float32
    logits (``logits.float()``; ``torch.autocast`` passes a model's half-precision logits on as they are)."""
    return loss if loss.dtype == logits.dtype else loss.to(logits.dtype)


def check_logits(logits: torch.Tensor, ndim: int | None, validate: bool, name: str = "logits") -> None:
    check_bool("validate", validate)
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor of raw scores, got dtype {logits.dtype}")
    if ndim is not None and logits.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(logits.shape)}")
    if validate and not all_finite(logits):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")


def check_ignore_index(ignore_index: int, labels: range) -> None:
    """``ignore_index`` is an integer that is no real label (PyTorch allows one; it silently drops a class)."""
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise ValueError(f"ignore_index must be an int, got {ignore_index!r}")
    if not -(2**63) <= ignore_index < 2**63:  # (targets are int64: a larger one would wrap, silently)
        raise ValueError(f"ignore_index={ignore_index} is outside int64, the targets' range")
    if ignore_index in labels:
        raise ValueError(
            f"ignore_index={ignore_index} is a real label (labels are {labels.start}..{labels.stop - 1}): its "
            "targets would be silently dropped; use a value outside them, such as -100"
        )


def check_index_target(
    target: torch.Tensor,
    num_classes: int,
    batch_shape: Sequence[int],
    ignore_index: int,
    validate: bool,
    name: str = "target",
) -> torch.Tensor:
    """Class-index targets: integer dtype, given shape, values in [0, C) or ``ignore_index``
    (which must not be a class: every target of that class would be dropped).  Returns the target
    as int64 (itself when it is): compared in a narrower dtype, ``ignore_index`` would wrap
    (-100 is 156 in uint8, a class of its own)."""
    check_ignore_index(ignore_index, range(num_classes))
    if not isinstance(target, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(target).__name__}")
    if target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(
            f"{name} must hold integer class indices of shape {tuple(batch_shape)}, got dtype "
            f"{target.dtype}; this loss does not take probabilities or one-hot targets"
        )
    if tuple(target.shape) != tuple(batch_shape):
        raise ValueError(f"{name} must have shape {tuple(batch_shape)}, got {tuple(target.shape)}")
    target = target.long()
    if validate and target.numel():
        low, high = torch.aminmax(target)
        if 0 <= int(low) and int(high) < num_classes:  # the common case in one op
            return target
        bad = (target != ignore_index) & ((target < 0) | (target >= num_classes))
        if bool(bad.any()):
            value = int(target[bad][0])
            raise ValueError(
                f"{name} has class index {value} outside [0, {num_classes}) "
                f"(and it is not ignore_index={ignore_index})"
            )
    return target


def check_binary_target(
    target: torch.Tensor, shape: Sequence[int], ignore_index: int, validate: bool, name: str = "target"
) -> None:
    """Sigmoid targets: same shape as the logits; floats in [0, 1] or integers in {0, 1, ignore_index}."""
    check_ignore_index(ignore_index, range(2))
    if not isinstance(target, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(target).__name__}")
    if tuple(target.shape) != tuple(shape):
        raise ValueError(f"{name} must have the logits' shape {tuple(shape)}, got {tuple(target.shape)}")
    if not validate or not target.numel():
        return
    if target.is_floating_point():
        if bool(((target < 0) | (target > 1) | torch.isnan(target)).any()):
            ignored = " (ignore_index marks integer targets only: give them as integers)" if bool((target == ignore_index).any()) else ""
            raise ValueError(f"{name} must hold probabilities in [0, 1]; found values outside{ignored}")
    else:
        t = target.long()
        if bool(((t != 0) & (t != 1) & (t != ignore_index)).any()):
            raise ValueError(
                f"{name} must hold 0/1 labels (or ignore_index={ignore_index}); found {int(t[(t != 0) & (t != 1) & (t != ignore_index)][0])}"
            )


def check_dense_target(target: torch.Tensor, shape: Sequence[int], validate: bool, name: str = "target") -> None:
    """Multi-label / soft targets: float tensor of the logits' shape with values in [0, 1]."""
    if not isinstance(target, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(target).__name__}")
    if not target.is_floating_point():
        raise ValueError(
            f"{name} must be a float tensor of per-class targets in [0, 1] with shape {tuple(shape)}, "
            f"got dtype {target.dtype}; this loss does not take class indices"
        )
    if tuple(target.shape) != tuple(shape):
        raise ValueError(f"{name} must have the logits' shape {tuple(shape)}, got {tuple(target.shape)}")
    if validate and target.numel() and bool(((target < 0) | (target > 1) | torch.isnan(target)).any()):
        raise ValueError(f"{name} must hold values in [0, 1]; found values outside")


def check_class_weight(weight: torch.Tensor | None, num_classes: int, name: str = "weight", validate: bool = True) -> None:
    """Per-class weights: a ``(C,)`` tensor; with ``validate``, of finite non-negative values (reading them waits
    for an accelerator: a hot path's ``validate=False`` skips it)."""
    if weight is None:
        return
    if not isinstance(weight, torch.Tensor) or weight.shape != (num_classes,):
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"{name} must be a tensor of shape ({num_classes},), got {shape}")
    if validate and (bool((weight < 0).any()) or not bool(torch.isfinite(weight).all())):
        raise ValueError(f"{name} must hold finite non-negative values")


def as_counts(counts: object, name: str = "class_counts") -> torch.Tensor:
    """``counts`` as a tensor, refused by name where torch could not read numbers from it (None, text)."""
    if counts is None or isinstance(counts, (str, bytes)):
        raise ValueError(f"{name} must be the per-class counts (or priors), got {counts!r}")
    try:
        return torch.as_tensor(counts)
    except (TypeError, ValueError, RuntimeError) as err:  # (torch's words for a list of text or of None)
        raise ValueError(f"{name} must be the per-class counts (or priors), got {counts!r}") from err


def check_class_counts(counts: torch.Tensor, num_classes: int, name: str = "class_counts") -> torch.Tensor:
    """Per-class training counts (or priors) used to form log-priors: positive and finite."""
    counts = as_counts(counts, name)
    if counts.shape != (num_classes,):
        raise ValueError(f"{name} must have shape ({num_classes},), got {tuple(counts.shape)}")
    if not bool(torch.isfinite(counts).all()) or bool((counts <= 0).any()):
        values = counts.tolist()
        bad = [i for i, c in enumerate(values) if not (math.isfinite(c) and c > 0)]
        raise ValueError(
            f"{name} must be positive and finite for every class (a class never seen has no log-prior and no weight); "
            f"classes {first_few(bad)} have counts {first_few(values[i] for i in bad)}"
        )
    return counts


def reduce(
    loss: torch.Tensor,
    reduction: str,
    valid: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reduce per-element losses that are already zero at ignored positions.

    ``mean`` divides by the summed ``weight`` of valid elements when weights are given (as
    PyTorch's weighted cross-entropy does), by the number of ``valid`` elements otherwise.
    A mean over zero valid elements is nan, as in PyTorch.
    """
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if weight is not None:
        return loss.sum() / weight.sum()
    if valid is not None:
        return loss.sum() / valid.sum()
    return loss.mean()


def masked_reduce(
    loss: torch.Tensor,
    reduction: str,
    valid: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Zero the per-element losses at ignored positions (``valid`` False), then :func:`reduce`."""
    return reduce(torch.where(valid, loss, 0.0), reduction, valid, weight)


def softmax_inputs(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int, reduction: str, validate: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check a (logits (B, C), class-index target (B,)) pair.

    Returns the logits in the compute dtype (an ignored row's as :func:`without_ignored_rows` gives it), the
    target with ignored entries replaced by 0 (safe to ``gather`` with) and the boolean mask of valid entries.
    """
    check_reduction(reduction)
    check_logits(logits, 2, validate)
    target = check_index_target(target, logits.shape[1], logits.shape[:1], ignore_index, validate)
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    return without_ignored_rows(logits.to(compute_dtype(logits)), valid, validate), safe, valid


def without_ignored_rows(x: torch.Tensor, valid: torch.Tensor, validate: bool) -> torch.Tensor:
    """Logits ``(B, C)`` with the rows ``valid`` leaves out as zeros, where they could hold non-finite values
    (without ``validate``, which refuses them): a loss computes those rows at a placeholder and masks them
    out, and an ``inf * 0`` there would still put NaN in the batch's statistics and gradients.  ``valid``
    may also mask entries (its shape the logits', or their leading dimensions: an n-way loss's tasks)."""
    # (on the CPU a check is cheaper than the copy, which most calls do not need; not where the check could
    # not be made, under torch.compile or torch.func: a host sync there breaks the graph or the transform)
    if validate or (x.device.type == "cpu" and not traced(valid) and bool(valid.all())):
        return x
    return torch.where(valid.reshape(*valid.shape, *(1,) * (x.ndim - valid.ndim)), x, 0.0)


def one_hot(target: torch.Tensor, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Class-index targets ``(B,)`` as one-hot rows shaped as ``like`` ``(B, C)`` (its dtype, or ``dtype``): by
    an out-of-place scatter, which ``torch.func.vmap`` batches, where ``F.one_hot`` reads the targets' values."""
    return torch.zeros_like(like, dtype=dtype).scatter(1, target[:, None], 1)


def without_ignored_targets(x: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """:func:`without_ignored_rows` (unvalidated) for class-index targets, cheap in the common case of a hot
    path: on the CPU, targets all >= 0 with a negative ``ignore_index`` need no mask (one min, a third of the
    cost of a comparison and an all: 8 against 24 us for 5120 targets)."""
    if x.device.type == "cpu" and len(target) and not traced(target) and ignore_index < 0 <= int(target.min()):
        return x
    return without_ignored_rows(x, target != ignore_index, False)


def traced(t: torch.Tensor) -> bool:
    """Whether ``t`` is seen by ``torch.compile`` or a ``torch.func`` transform (vmap, grad), where reading its
    values on the host (a shortcut's check) would break the graph or fail the transform."""
    return torch.compiler.is_compiling() or functorch_wrapped(t)


def functorch_wrapped(t: torch.Tensor) -> bool:
    """Whether ``t`` is a ``torch.func`` transform's tensor (vmap's batched, grad's wrapped)."""
    wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)  # (no public API says so)
    return bool(wrapped is not None and wrapped(t))


def sigmoid_inputs(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int, reduction: str, validate: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check an elementwise (logits, 0/1-or-probability target) pair of equal shapes.

    Returns the logits in the compute dtype, the target as floats of that dtype (ignored
    entries set to 0) and the boolean mask of valid entries.
    """
    check_reduction(reduction)
    check_logits(logits, None, validate)
    check_binary_target(target, logits.shape, ignore_index, validate)
    dtype = compute_dtype(logits)
    x = logits.to(dtype)
    if target.is_floating_point():  # (probabilities: nothing is ignored)
        valid = torch.ones_like(target, dtype=torch.bool)
        t = target.to(dtype)
    else:
        valid = target != ignore_index
        t = torch.where(valid, target, torch.zeros_like(target)).to(dtype)
        x = without_ignored_rows(x, valid, validate)
    return x, t, valid
