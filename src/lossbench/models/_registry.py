"""The model registry and ``build_model``."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lossbench._generators import python_and_numpy_kept, seed_python_and_numpy
from lossbench._locks import ForkSafeLock
from lossbench.data._dataset import FEATURE_KINDS
from lossbench.registry import HyperParam, Registry, defaults


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: ``factory(dataset, num_outputs, **hyperparams) -> nn.Module``.

    The module maps a batch of the dataset's features to raw logits ``(B, num_outputs)``.
    """

    name: str
    factory: Callable[..., nn.Module]
    feature_kinds: tuple[str, ...]
    hyperparams: tuple[HyperParam, ...]
    reference: str
    summary: str

    def __post_init__(self) -> None:  # (checked at registration, not where a spec first builds the model)
        where = f"model {self.name!r}"
        if not callable(self.factory) or isinstance(self.factory, nn.Module):
            raise ValueError(f"{where}: factory must be a function (dataset, num_outputs, **hyperparams) -> nn.Module, "
                             f"got {type(self.factory).__name__}")  # fmt: skip
        if not isinstance(self.feature_kinds, tuple) or not self.feature_kinds or any(
                k not in FEATURE_KINDS for k in self.feature_kinds):  # fmt: skip
            raise ValueError(f"{where}: feature_kinds must be a tuple of one or more of {FEATURE_KINDS}, "
                             f"got {self.feature_kinds!r}")  # fmt: skip
        if not isinstance(self.hyperparams, tuple) or any(not isinstance(h, HyperParam) for h in self.hyperparams):
            raise ValueError(f"{where}: hyperparams must be a tuple of lossbench.registry.HyperParam, "
                             f"got {self.hyperparams!r}")  # fmt: skip


MODELS: Registry[ModelInfo] = Registry("model")


def register_model(info: ModelInfo) -> ModelInfo:
    """Add a model to ``MODELS`` under ``info.name`` and return it (a name already registered is a
    ``ValueError``)."""
    return MODELS.add(info.name, info)


_SEEDING = ForkSafeLock(reentrant=True)  # (a factory may build its parts with seeds too)
# The trainable parameters each model name's factory has handed out (while they live): a factory that returns a
# model it returned before (a cache of built models, say) would have every run train the one model in turn.
_HANDED_OUT: dict[str, weakref.WeakValueDictionary[int, torch.Tensor]] = {}


def _new(name: str, module: nn.Module) -> nn.Module:
    """``module``, refused where its factory returned one with its trainable parameters before (frozen ones, a
    pretrained part shared by every run, may be the same)."""
    trained = [p for p in module.parameters() if p.requires_grad] if isinstance(module, nn.Module) else []
    with _SEEDING:
        seen = _HANDED_OUT.setdefault(name, weakref.WeakValueDictionary())
        if any(seen.get(id(p)) is p for p in trained):
            raise ValueError(f"model {name!r} returned a model it returned before (its trainable parameters are the "
                             "same): a factory must build a new model on each call, or every run trains the one model in turn")  # fmt: skip
        seen.update((id(p), p) for p in trained)
    return module


def build_model(
    name: str, dataset: Any, *, num_outputs: int | None = None, seed: int | None = None, **hyperparams: Any
) -> nn.Module:
    """Build model ``name`` for ``dataset`` (a ``lossbench.data.Dataset``: its ``feature_kind``,
    ``input_shape``, ``num_classes``, ``task`` and ``vocab_size`` are used).

    ``num_outputs``: logit width, default ``dataset.num_classes`` (pass 1 for a single-logit
    sigmoid loss on a two-class set).  ``seed``: build under ``torch.manual_seed(seed)`` (Python's and NumPy's
    generators seeded too) without disturbing the global RNG states, one thread at a time; otherwise the global
    RNG initialises the weights.
    Unset hyperparameters take their registered defaults.
    """
    info = MODELS.get(name)
    if dataset.feature_kind not in info.feature_kinds:
        raise ValueError(
            f"model {name!r} takes {'/'.join(info.feature_kinds)} features, dataset {dataset.name!r} "
            f"has {dataset.feature_kind} features"
        )
    known = {p.name for p in info.hyperparams}
    unknown = sorted(set(hyperparams) - known)
    if unknown:
        raise ValueError(
            f"model {name!r} has no hyperparameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    if num_outputs is None:
        num_outputs = dataset.num_classes
    if not (isinstance(num_outputs, int) and num_outputs >= 1):
        raise ValueError(f"num_outputs must be a positive int, got {num_outputs!r}")
    kwargs = {**defaults(info.hyperparams), **hyperparams}
    if seed is None:
        return _new(name, info.factory(dataset, num_outputs, **kwargs))
    # one thread at a time (the generators are the process's), the accelerators' states given back where CUDA runs
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with _SEEDING, torch.random.fork_rng(devices=cuda), python_and_numpy_kept():
        torch.manual_seed(seed)
        seed_python_and_numpy(seed)
        return _new(name, info.factory(dataset, num_outputs, **kwargs))
