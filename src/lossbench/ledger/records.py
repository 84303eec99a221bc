"""A claim is data: its source, the source's numbers, the protocol and the decision rule.

Everything in a record is written before any run and nothing in it is derived from our results.
Code elsewhere turns a record into a study (``ledger.protocol``), reads the study back and
applies the record's rule (``ledger.judge``).

Two kinds of claim:

- ``bench`` claims compare methods of a protocol spec (a preset of ``lossbench.bench``) on its
  datasets: treatment against baseline, per dataset (paired over seeds) and, with
  ``scope = "across-datasets"``, over the datasets (a table's mean); a ``ranking`` adds
  Friedman + Nemenyi over every method of the spec.
- ``analysis`` claims measure something that is not a leaderboard (an optimum on a grid, a
  curve along a run); their ``analysis`` function returns the measured values and the verdict
  by the rule written in the record's ``rule_text``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lossbench.bench.metrics import LOWER_IS_BETTER, METRICS
from lossbench.ledger.verdict import Rule

BUDGETS = ("quick", "paper")
VARIATIONS = ("fixed", "resampled")  # the source's split with seeds; a new split per seed
KINDS = ("bench", "analysis")
SCOPES = ("per-dataset", "across-datasets")


@dataclass(frozen=True)
class Published:
    """A number as the source prints it (percent for accuracies), with its spread if given."""

    mean: float
    std: float | None = None


@dataclass(frozen=True)
class Budget:
    """How a budget changes the protocol: keys of the spec overridden (``train.epochs`` reaches
    into a table), and a sentence saying what the reduction is and why it is enough."""

    overrides: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Claim:
    id: str
    title: str
    source: str  # paper or post, and where in it (table, section)
    url: str
    statement: str  # the claim, in the source's words where possible
    kind: str = "bench"
    # The claim tested is lossbench's reading of the source (a question its text prompts, a gain it implies but
    # does not report), not one the source makes: marked on the ledger page; the statement says which part is whose.
    reading: bool = False
    # bench claims
    protocol: str | None = None  # preset name: the source's protocol at the paper budget
    metric: str = "accuracy"
    treatment: str | None = None
    baseline: str | None = None
    scope: str = "per-dataset"
    ranking: bool = False  # Friedman + Nemenyi over every method of the protocol
    published: dict[str, dict[str, Published]] = field(default_factory=dict)  # dataset -> method -> number
    budgets: dict[str, Budget] = field(default_factory=dict)  # "paper" and "quick"
    variations: tuple[str, ...] = ("fixed",)
    # analysis claims: (budget) -> AnalysisResult
    analysis: Callable[[str], Any] | None = None
    # the decision rule, fixed before any run
    rule: Rule | None = None
    rule_text: str = ""
    deviations: tuple[str, ...] = ()  # where our protocol or data differ from the source, and why
    # An analysis claim's earlier rule texts, in order: its runs made under one of them are history once a
    # later run was made under the rule as it is now (a deviation says what changed, when and why).
    amended_from: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.id!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "bench":
            missing = [k for k in ("protocol", "treatment", "baseline", "rule") if getattr(self, k) is None]
            if missing or "quick" not in self.budgets:
                raise ValueError(f"claim {self.id!r}: a bench claim needs {missing or ['a quick budget']}")
            if self.scope not in SCOPES:
                raise ValueError(f"claim {self.id!r}: scope must be one of {SCOPES}, got {self.scope!r}")
            known = sorted({m for names in METRICS.values() for m in names} - LOWER_IS_BETTER)
            if self.metric not in known:  # (the ranking and a diverged run's score read higher as better)
                raise ValueError(f"claim {self.id!r}: metric must be a higher-is-better metric, one of {known}; got {self.metric!r}")
        elif self.analysis is None or not self.rule_text:
            raise ValueError(f"claim {self.id!r}: an analysis claim needs its function and rule_text")
        if self.amended_from and self.kind != "analysis":
            raise ValueError(f"claim {self.id!r}: amended_from lists earlier rule texts of an analysis claim")
        if self.rule_text in self.amended_from or len(set(self.amended_from)) < len(self.amended_from):
            raise ValueError(f"claim {self.id!r}: amended_from lists earlier rule texts, each once, not the current one")
        bad = sorted(set(self.variations) - set(VARIATIONS))
        if bad:
            raise ValueError(f"claim {self.id!r}: unknown variations {bad}; known: {VARIATIONS}")


    def decision(self) -> dict[str, Any]:
        """What decides the claim's verdict, fixed before its runs: stored with each run (``ledger.runs``),
        and the report refuses to judge runs made under another.  An analysis claim is decided by its
        ``rule_text``; a bench claim by the fields the judge reads (its ``rule_text`` only describes them)."""
        if self.kind == "analysis":
            return _analysis_decision(self.rule_text)
        return {"metric": self.metric, "treatment": self.treatment, "baseline": self.baseline, "scope": self.scope,
                "ranking": self.ranking, "rule": dataclasses.asdict(self.rule)}  # fmt: skip

    def earlier_decisions(self) -> list[dict[str, Any]]:
        """The decisions of its earlier rules (``amended_from``), as :meth:`decision` gave them."""
        return [_analysis_decision(text) for text in self.amended_from]


def _analysis_decision(rule_text: str) -> dict[str, Any]:
    return {"rule_text": rule_text}


CLAIMS: dict[str, Claim] = {}


CLAIM_ID = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")  # (the ledger's anchors join an id, a budget and a split with '.')


def register_claim(claim: Claim) -> Claim:
    if not CLAIM_ID.fullmatch(claim.id):
        raise ValueError(f"claim id {claim.id!r}: lower-case letters and digits in words joined by '-'")
    if claim.id in CLAIMS:
        raise ValueError(f"claim {claim.id!r} is registered twice")
    CLAIMS[claim.id] = claim
    return claim


def get_claim(claim_id: str) -> Claim:
    _load_sources()
    if claim_id not in CLAIMS:
        raise ValueError(f"unknown claim {claim_id!r}; `lossbench claims` lists them: {', '.join(CLAIMS)}")
    return CLAIMS[claim_id]


def all_claims() -> list[Claim]:
    _load_sources()
    return list(CLAIMS.values())


def _load_sources() -> None:
    from lossbench.ledger import sources  # noqa: F401  (registers every record)
