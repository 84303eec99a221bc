"""The loss registry: every loss with its module twin, input signature and tuning metadata."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from lossbench.losses._validation import check_number, check_reduction
from lossbench.registry import HyperParam, Registry, check_hyperparams

# What a loss consumes.  The registry drives the bench and the generic tests from these.
SIGNATURES: dict[str, str] = {
    "softmax": "logits (B, C); target (B,) int64 class indices, ignore_index allowed",
    "sigmoid": "logits of any shape; target of the same shape, float in [0, 1] or int in {0, 1, ignore_index}",
    "multilabel": "logits (B, C); target (B, C) float in [0, 1] (hard or soft labels)",
    "multilabel_sparse": "logits (B, C); target (B, K) int64 positive-class indices padded with ignore_index",
    "nway": "logits (B, n, m); target (B, n) int64 class index per task, ignore_index allowed",
}

# Which dataset task kinds a signature can serve ("binary" means a two-class dataset with a
# single logit per sample; a two-class dataset is also "multiclass" for softmax losses).
SIGNATURE_TASKS: dict[str, tuple[str, ...]] = {
    "softmax": ("multiclass",),
    "sigmoid": ("binary", "multilabel"),
    "multilabel": ("multilabel",),
    "multilabel_sparse": ("multilabel",),
    "nway": ("multitask",),
}


@dataclass(frozen=True)
class LossInfo:
    """A registered loss.

    ``requires`` names data-dependent arguments the caller must supply (e.g. ``class_counts``
    from the training split).  ``batch_level`` losses (soft F1, Dice) are not a mean of
    per-sample terms; their ``reduction="none"`` output is documented per loss.
    ``batch_level_when`` names the arguments that make the loss batch-level when set (not None or
    False): EXACT's ``standardize`` (one mean and std over the whole batch) and ``log_of_mean`` (-log of
    the batch's mean P), LDAM's ``drw_start`` (a weighted mean, divided by the batch's summed weights).  ``batch_groups`` names the argument
    with which such a loss takes ``G`` batches stacked in one call, ``G`` equal consecutive blocks of
    rows each computed as its own batch (EXACT's ``groups``): packed runs then share one call.
    ``row_params`` names hyperparameters the function also takes as one value per sample (a ``(B,)``
    tensor): packed runs that differ only there share one loss call, each row with its own run's value.
    ``row_none`` gives, for such a hyperparameter whose None has a value per row, that value (EXACT's
    margin: inf, no clip); a run with another row parameter at None has a call of its own.
    ``shift_invariant``: a softmax-signature loss that reads only the differences between a row's
    logits (adding a constant to a row changes nothing); one that reads each logit on its own (a
    one-vs-all loss) cannot train a model that fixes one of them.
    """

    name: str
    function: Callable[..., torch.Tensor]
    module: type[nn.Module]
    signature: str
    reference: str
    summary: str
    hyperparams: tuple[HyperParam, ...] = ()
    requires: tuple[str, ...] = ()
    batch_level: bool = False
    batch_level_when: tuple[str, ...] = ()
    batch_groups: str | None = None
    row_params: tuple[str, ...] = ()
    row_none: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}), hash=False)  # (read-only)
    shift_invariant: bool = True

    def is_batch_level(self, kwargs: Mapping[str, Any]) -> bool:
        """Whether the loss called with ``kwargs`` couples the samples of its batch, so that
        rows of different runs share one call only as separate groups (``batch_groups``)."""
        return self.batch_level or any(kwargs.get(name) not in (None, False) for name in self.batch_level_when)

    @property
    def tasks(self) -> tuple[str, ...]:
        return SIGNATURE_TASKS[self.signature]


LOSSES: Registry[LossInfo] = Registry("loss")


def register_loss(
    name: str,
    function: Callable[..., torch.Tensor],
    module: type[nn.Module],
    *,
    signature: str,
    reference: str,
    hyperparams: tuple[HyperParam, ...] = (),
    requires: tuple[str, ...] = (),
    batch_level: bool = False,
    batch_level_when: str | tuple[str, ...] = (),
    batch_groups: str | None = None,
    row_params: tuple[str, ...] = (),
    row_none: Mapping[str, float] | None = None,
    summary: str | None = None,
    shift_invariant: bool = True,
) -> LossInfo:
    """Add a loss to ``LOSSES`` under ``name`` and return its entry (public: a loss of your own joins the
    CLI, the tuner and the generic tests the same way).  ``summary`` defaults to the first paragraph of
    the function's docstring; an unknown signature, a hyperparameter or required argument the function
    does not take, or a name already registered is a ``ValueError``."""
    if signature not in SIGNATURES:
        raise ValueError(f"unknown loss signature {signature!r}; known: {sorted(SIGNATURES)}")
    params = inspect.signature(function).parameters
    check_hyperparams(f"loss {name!r}: {function.__name__}", hyperparams, params)
    for r in requires:
        if r not in params:
            raise ValueError(f"loss {name!r}: {function.__name__} has no argument {r!r}")
    unknown = [r for r in row_params if r not in {p.name for p in hyperparams}]
    if unknown:
        raise ValueError(f"loss {name!r}: row_params {unknown} are not among its hyperparameters")
    unknown = [r for r in row_none or {} if r not in row_params]
    if unknown:
        raise ValueError(f"loss {name!r}: row_none {unknown} are not among its row_params")
    for r, value in (row_none or {}).items():
        check_number(f"loss {name!r}: row_none[{r!r}]", value)
    module_params = inspect.signature(module.__init__).parameters  # the module may add options (LDAM's DRW)
    # What the bench passes every loss module: validate= when it builds one (no checks on the hot path),
    # reduction= when it calls one (per-sample losses for the transforms and packed runs)
    forward_params = inspect.signature(module.forward).parameters
    for where, taken, argument in ((module.__name__, module_params, "validate"), (f"{module.__name__}.forward", forward_params, "reduction")):
        if argument not in taken and not any(p.kind is p.VAR_KEYWORD for p in taken.values()):
            raise ValueError(f"loss {name!r}: {where} must take {argument}= (the bench passes it: a loss function "
                             "takes reduction= and validate=, and lossbench.losses.loss_module(function, name) "
                             "builds its module)")  # fmt: skip
    batch_level_when = (batch_level_when,) if isinstance(batch_level_when, str) else tuple(batch_level_when)
    for when in batch_level_when:
        if when not in params and when not in module_params:
            raise ValueError(f"loss {name!r}: neither {function.__name__} nor {module.__name__} takes {when!r}")
    if batch_groups is not None:  # the packed step passes it to the module
        forward = inspect.signature(module.forward).parameters
        module_takes = batch_groups in forward or any(p.kind is p.VAR_KEYWORD for p in forward.values())
        if not (batch_groups in params and module_takes):
            raise ValueError(
                f"loss {name!r}: {function.__name__} and {module.__name__}.forward must both take {batch_groups!r}"
            )
    if batch_level:  # what a training step reads off the module (per-sample transforms refuse it)
        module.batch_level = True
    if batch_level_when:
        module.batch_level_when = batch_level_when
    doc = inspect.getdoc(function) or ""
    info = LossInfo(
        name=name,
        function=function,
        module=module,
        signature=signature,
        reference=reference,
        summary=summary or doc.split("\n\n")[0].replace("\n", " "),
        hyperparams=hyperparams,
        requires=requires,
        batch_level=batch_level,
        batch_level_when=batch_level_when,
        batch_groups=batch_groups,
        row_params=row_params,
        row_none=MappingProxyType(dict(row_none or {})),
        shift_invariant=shift_invariant,
    )
    return LOSSES.add(name, info)


def get_loss(name: str) -> LossInfo:
    return LOSSES.get(name)


class LossModule(nn.Module):
    """Base of the module twins: stores the function's keyword arguments, calls the function.

    Tensor arguments (class weights, class counts, ...) become buffers so that ``.to(device)``
    moves them with the module.  Class counts are cast no lower than float32 when the module is
    (``.half()``, ``.to(torch.bfloat16)``): a half holds whole numbers exactly only up to 2048 and
    none above 65504, and the functions cast the counts to the logits' dtype themselves.
    """

    _KEEPS_DTYPE = ("class_counts",)

    function: Callable[..., torch.Tensor]
    batch_level = False  # set by register_loss: the loss couples its batch's rows (no value per sample of its own)
    batch_level_when: tuple[str, ...] = ()  # set by register_loss: the options that make it batch-level when set

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        signature = _module_signature(type(self))
        try:
            bound = signature.bind(**kwargs)
        except TypeError as err:  # (a misspelt argument: named with the class and what it takes, its own too)
            own = [n for n, p in inspect.signature(type(self).__init__).parameters.items()
                   if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n not in signature.parameters]  # fmt: skip
            raise TypeError(f"{type(self).__name__}: {err}; it takes {', '.join([*signature.parameters, *own])}") from None
        options: dict[str, Any] = {}
        for key, value in bound.arguments.items():
            self._hold(key, value, options)
        # Kept apart so that a call overriding it builds no merged kwargs dict (one per step).
        self._reduction: str | None = options.pop("reduction", None)
        if self._reduction is not None:
            check_reduction(self._reduction)  # when built, not at the first step
        self._options = options  # (last: from here on the arguments read and set as attributes)

    # The function's arguments read and set as attributes, as torch's loss modules have theirs
    # (criterion.reduction = "none"; a scheduled focal.gamma = 1.0): they live in _options, _buffers and _parameters.
    def __getattr__(self, name: str) -> Any:
        if "_options" in self.__dict__ and name in _module_signature(type(self)).parameters:
            if name == "reduction":
                return self._reduction if self._reduction is not None else _module_signature(type(self)).parameters[name].default
            return self.option(name)
        return super().__getattr__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if "_options" not in self.__dict__ or name not in _module_signature(type(self)).parameters:
            super().__setattr__(name, value)
        elif name == "reduction":
            check_reduction(value)
            self.__dict__["_reduction"] = value
        else:
            self._hold(name, value, self._options)

    def _hold(self, name: str, value: Any, options: dict[str, Any]) -> None:
        """An argument where its kind lives, and only there: a parameter (``nn.Parameter``: trained with the
        model, ``trainable_parameters`` finds it), a buffer (another tensor: moved by ``.to(device)``) or one of
        ``options`` (anything else)."""
        for held in (options, self._parameters, self._buffers):
            held.pop(name, None)
        if isinstance(value, nn.Parameter):
            self._parameters[name] = value
        elif isinstance(value, torch.Tensor):
            self._buffers[name] = value
        else:
            options[name] = value

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> LossModule:
        before = {name: self._buffers[name] for name in self._KEEPS_DTYPE if self._buffers.get(name) is not None}
        super()._apply(fn, recurse)
        for name, tensor in before.items():
            moved = self._buffers[name]
            kept = torch.promote_types(moved.dtype, torch.float32)  # (float64 where cast to it; MPS has none)
            if moved.dtype != kept:  # cast from the original: the cast one has lost its values
                self._buffers[name] = tensor.to(device=moved.device, dtype=kept)
        return self

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, reduction: str | None = None, **overrides: Any
    ) -> torch.Tensor:
        """``reduction`` overrides the stored one for this call (per-sample values for iFlood, say), and
        ``overrides`` stored options (a packed step's per-row hyperparameters)."""
        reduction = self._reduction if reduction is None else reduction
        options = {**self._options, **self._buffers, **self._parameters, **overrides}  # (stored tensors: overridable too)
        if reduction is None:
            return self.function(logits, target, **options)
        return self.function(logits, target, reduction=reduction, **options)

    def options(self) -> dict[str, Any]:
        """The options given to the module (tensors included), by name; :meth:`option` reads any one."""
        return {**self._options, **self._buffers, **self._parameters}

    def option(self, name: str) -> Any:
        """The value this module calls its function with for ``name`` (given, or the function's default)."""
        if name in self._options:
            return self._options[name]
        if name in self._buffers:  # (a tensor argument)
            return self._buffers[name]
        if name in self._parameters:  # (a trained one)
            return self._parameters[name]
        return _module_signature(type(self)).parameters[name].default

    def extra_repr(self) -> str:
        options = self._options if self._reduction is None else {**self._options, "reduction": self._reduction}
        return ", ".join(f"{k}={v!r}" for k, v in options.items())


@functools.lru_cache(maxsize=None)  # packed steps read options every step: inspect costs ~50 us a call
def _module_signature(module: type[LossModule]) -> inspect.Signature:
    """:func:`_keyword_signature` of a loss module's function (a class is always hashable; its function may not be)."""
    return _keyword_signature(module.function)


def _keyword_signature(function: Callable[..., Any]) -> inspect.Signature:
    """The function's signature without its two positional inputs (logits, target)."""
    params = list(inspect.signature(function).parameters.values())[2:]
    return inspect.Signature(params)


def loss_module(function: Callable[..., torch.Tensor], name: str) -> type[LossModule]:
    """Build the ``nn.Module`` twin of a functional loss, with the function's keyword signature."""
    sig = _keyword_signature(function)

    def __init__(self: LossModule, *args: Any, **kwargs: Any) -> None:
        if args:
            raise TypeError(f"{name} takes keyword arguments only ({', '.join(sig.parameters)}), got {len(args)} positional")
        LossModule.__init__(self, **kwargs)

    __init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *sig.parameters.values()]
    )
    doc = f"Module form of :func:`{function.__name__}`; arguments as there.\n\n" + (inspect.getdoc(function) or "")
    namespace = {"function": staticmethod(function), "__init__": __init__, "__doc__": doc,
                 "__module__": function.__module__, "__qualname__": name}
    return type(name, (LossModule,), namespace)
