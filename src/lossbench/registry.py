"""Name -> component registries and declarative hyperparameter search spaces.

One registry per component kind (losses, transforms, datasets, models), in the spirit of
timm's registry: everything is reachable by string name, and the defaults and search space
of a hyperparameter live with the registration.  This module imports nothing heavy so that
any sub-package can use it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, Union

T = TypeVar("T")


@dataclass(frozen=True)
class FloatRange:
    """A continuous search range ``[low, high]``, optionally log-uniform."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"a search range needs finite ends, got low={self.low}, high={self.high}")
        if not self.low < self.high:
            raise ValueError(f"a search range needs low < high, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got low={self.low}")

    def __contains__(self, value: object) -> bool:
        return isinstance(value, (int, float)) and self.low <= value <= self.high


@dataclass(frozen=True)
class IntRange:
    """An integer search range ``[low, high]`` (both inclusive)."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"IntRange needs low < high, got low={self.low}, high={self.high}")
        if self.log and self.low < 1:
            raise ValueError(f"a log range of integers needs low >= 1, got low={self.low}")

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.low <= value <= self.high


@dataclass(frozen=True)
class Choice:
    """A categorical search space."""

    options: tuple[Any, ...]

    def __post_init__(self) -> None:
        if len(self.options) < 2:
            raise ValueError(f"Choice needs at least two options, got {self.options!r}")

    def __contains__(self, value: object) -> bool:
        return value in self.options


SearchSpace = Union[FloatRange, IntRange, Choice]


@dataclass(frozen=True)
class HyperParam:
    """A tunable (or fixed, when ``space`` is None) hyperparameter of a component."""

    name: str
    default: Any
    space: SearchSpace | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        if self.space is not None and self.default is not None and self.default not in self.space:
            raise ValueError(
                f"hyperparameter {self.name!r}: default {self.default!r} lies outside its "
                f"search space {self.space!r}"
            )


def check_hyperparams(owner: str, hyperparams: Sequence[HyperParam], parameters: Mapping[str, inspect.Parameter]) -> None:
    """Each hyperparameter is an argument of its ``owner``'s signature (``parameters``), with its default where the
    signature has one: a listing or a report that shows the registered default must show what a call without it
    computes."""
    for p in hyperparams:
        if p.name not in parameters:
            raise ValueError(f"{owner} has no argument {p.name!r}")
        own = parameters[p.name].default
        if own is not inspect.Parameter.empty and own != p.default:
            raise ValueError(f"{owner}: hyperparameter {p.name!r} is registered with default {p.default!r}, "
                             f"its signature's is {own!r}")


class Registry(Generic[T]):
    """An ordered name -> entry mapping with clear errors for unknown or duplicate names."""

    every: list[Registry[Any]] = []  # (a plugin whose import fails takes back what it registered, in each)

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        Registry.every.append(self)

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered (lossbench's own, or registered before: "
                             "give yours another name)")  # fmt: skip
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> T:
        """Take ``name`` out again (a registration made for one run only) and return its entry."""
        entry = self.get(name)
        del self._entries[name]
        return entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise ValueError(f"unknown {self.kind} {name!r}; registered: {known}") from None

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def values(self) -> list[T]:
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def defaults(params: Sequence[HyperParam]) -> dict[str, Any]:
    """The default value of every hyperparameter, by name."""
    return {p.name: p.default for p in params}
