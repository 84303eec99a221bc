"""From a claim record to the study the bench runs: the protocol's preset, reduced for a budget.

The study's name says which budget and variation it is (``exact-table1.quick``,
``exact-table1.paper.resampled``), so claims that share a protocol share its runs, and a study
never mixes budgets.
"""

from __future__ import annotations

import copy
import sys
import warnings
from typing import Any

from lossbench.bench.spec import FixedSplitWarning, Spec, SpecError, TrainConfig, parse_spec, preset_text
from lossbench.ledger.records import BUDGETS, Claim

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def preset_document(name: str) -> dict[str, Any]:
    """The preset's TOML document (``lossbench/bench/presets/<name>.toml``)."""
    return tomllib.loads(preset_text(name))


def _override(document: dict[str, Any], key: str, value: Any, where: str) -> None:
    """Set ``train.epochs``-style dotted keys; each must already exist in the preset (no typos).

    Two keys edit the method list: ``methods.keep`` (names to keep, in the preset's order) and
    ``methods.add`` (method tables to append; ``like = "<method>"`` starts from a copy of that
    method, whose ``params`` the new table's update).
    """
    if key == "methods.keep":
        known = [m["name"] for m in document["methods"]]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise SpecError(f"{where}: methods.keep names {unknown}, not methods of the protocol {known}")
        document["methods"] = [m for m in document["methods"] if m["name"] in value]
        return
    if key == "methods.add":
        for table in value:
            table = copy.deepcopy(table)
            base = {}
            if "like" in table:
                like = table.pop("like")
                base = copy.deepcopy(next((m for m in document["methods"] if m["name"] == like), None))
                if base is None:
                    raise SpecError(f"{where}: methods.add: no method {like!r} to start from")
                table["params"] = {**base.get("params", {}), **table.get("params", {})}
            document["methods"].append({**base, **table})
        return
    *path, last = key.split(".")
    table = document
    for part in path:
        if not isinstance(table.get(part), dict):
            raise SpecError(f"{where}: override {key!r} names no table {part!r} of the protocol")
        table = table[part]
    # Any field of the spec (or of its [train] table) may be set; within other tables the key must exist.
    fields = {(): Spec.__dataclass_fields__, ("train",): TrainConfig.__dataclass_fields__}.get(tuple(path), table)
    if last not in fields:
        known = sorted(fields)
        raise SpecError(f"{where}: override {key!r} sets nothing the protocol has (it has {known})")
    table[last] = copy.deepcopy(value)


def quietly_parsed(document: dict[str, Any], where: str) -> Spec:
    """A claim's spec: a data set whose test split is fixed keeps it in the resampled variation, which the
    claim's record says (no warning each time the ledger builds the spec)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FixedSplitWarning)
        return parse_spec(document, where)


def check_run(claim: Claim, budget: str, variation: str = "fixed") -> None:
    """A budget and a variation the claim runs, else a SpecError naming the option."""
    if budget not in BUDGETS:
        raise SpecError(f"--budget must be one of {BUDGETS}, got {budget!r}")
    if variation not in claim.variations:
        raise SpecError(f"claim {claim.id!r} runs the variations {claim.variations}, not {variation!r}")


def study_spec(claim: Claim, budget: str, variation: str = "fixed") -> Spec:
    """The spec a claim runs at ``budget`` ("quick" or "paper") and ``variation``."""
    check_run(claim, budget, variation)
    if claim.kind != "bench" or claim.protocol is None:
        raise SpecError(f"claim {claim.id!r} is an analysis, not a study of the bench")
    where = f"claim {claim.id!r} ({budget})"
    document = preset_document(claim.protocol)
    # "paper" is the protocol as the preset has it, unless the record says otherwise.
    overrides = claim.budgets[budget].overrides if budget in claim.budgets else {}
    for key, value in overrides.items():
        _override(document, key, value, where)
    document["name"] = f"{document['name']}.{budget}" + ("" if variation == "fixed" else f".{variation}")
    if variation == "resampled":
        document["resample_splits"] = True
    return quietly_parsed(document, where)
