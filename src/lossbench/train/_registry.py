"""The transform registry: every training-step transform by name, with defaults and search spaces."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from lossbench.registry import HyperParam, Registry, check_hyperparams, defaults
from lossbench.train._base import STAGES, Transform


@dataclass(frozen=True)
class TransformInfo:
    """A registered transform: its class, reference, and hyperparameters (defaults, search spaces)."""

    name: str
    factory: type[Transform]
    reference: str
    summary: str
    hyperparams: tuple[HyperParam, ...] = ()

    @property
    def stage(self) -> str:
        return self.factory.stage

    @property
    def per_sample(self) -> bool:
        """Needs per-sample loss values (``reduction="none"``), so not usable with batch-level losses."""
        return self.factory.per_sample


TRANSFORMS: Registry[TransformInfo] = Registry("transform")


def register_transform(
    factory: type[Transform],
    *,
    reference: str,
    hyperparams: tuple[HyperParam, ...] = (),
    summary: str | None = None,
) -> TransformInfo:
    """Add a transform class to ``TRANSFORMS`` under its ``name`` and return its entry (public, as
    ``register_loss``).  ``summary`` defaults to the first paragraph of the class docstring; an unknown
    stage, a hyperparameter the constructor does not take, or a name already registered is a
    ``ValueError``."""
    if factory.stage not in STAGES:
        raise ValueError(f"transform {factory.name!r}: stage must be one of {STAGES}, got {factory.stage!r}")
    check_hyperparams(f"transform {factory.name!r}: {factory.__name__}", hyperparams, inspect.signature(factory.__init__).parameters)
    doc = inspect.getdoc(factory) or ""
    info = TransformInfo(
        name=factory.name,
        factory=factory,
        reference=reference,
        summary=summary or doc.split("\n\n")[0].replace("\n", " "),
        hyperparams=hyperparams,
    )
    return TRANSFORMS.add(factory.name, info)


def get_transform(name: str) -> TransformInfo:
    return TRANSFORMS.get(name)


TransformSpec = Union[str, tuple[str, Mapping[str, Any]], Transform]


def make_transform(spec: TransformSpec) -> Transform:
    """A fresh transform from a name, a ``(name, kwargs)`` pair, or an instance (returned as is).

    Registered defaults fill the arguments not given.
    """
    if isinstance(spec, Transform):
        return spec
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif _is_pair(spec):
        name, kwargs = spec[0], dict(spec[1])
    else:
        raise ValueError(
            f"transforms entries must be a name, a (name, kwargs) pair or a Transform, got {spec!r}"
        )
    info = get_transform(name)
    known = set(inspect.signature(info.factory.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(f"transform {name!r} has no argument(s) {unknown}; its arguments: {sorted(known)}")
    return info.factory(**{**defaults(info.hyperparams), **kwargs})


def _is_pair(spec: object) -> bool:
    if not isinstance(spec, Sequence) or len(spec) != 2:
        return False
    return isinstance(spec[0], str) and isinstance(spec[1], Mapping)


def compatible(transform: str, loss_info: Any, kwargs: dict[str, Any] | None = None) -> bool:
    """Whether a transform can wrap a registered loss called with ``kwargs`` (per-sample transforms need
    per-sample losses; a loss batch-level when one of its options is set is, with that option set)."""
    return not (get_transform(transform).per_sample and loss_info.is_batch_level(kwargs or {}))
