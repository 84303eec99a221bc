"""Running a claim: its study through the bench, or its analysis; what each invocation took.

Everything lands in the bench's storage: a bench claim's study is an ordinary lossbench study
(resumable, any number of workers), and one extra study, :data:`LEDGER_STUDY`, keeps per claim,
budget and variation the wall time of every ``lossbench claims run`` and each analysis's result.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import inspect
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
import torch

from lossbench._provenance import provenance
from lossbench.bench.defaults import DEFAULT_PACK
from lossbench.bench.storage import HeartbeatStorage, study_created
from lossbench.ledger.records import Claim

LEDGER_STUDY = "lossbench-ledger"


@dataclass
class AnalysisResult:
    """An analysis claim's measurement and its verdict by the record's ``rule_text``."""

    word: str
    reason: str
    measured: dict[str, Any] = field(default_factory=dict)  # name -> value, as the rule reads them
    details: str = ""  # a markdown table or list of what was measured
    seconds: float = 0.0


def ledger_study(storage: optuna.storages.BaseStorage) -> optuna.Study:
    return optuna.create_study(storage=storage, study_name=LEDGER_STUDY, load_if_exists=True)


def _ledger_attrs(storage: optuna.storages.BaseStorage) -> dict[str, Any]:
    """The ledger study's user attributes, read without writing (a storage that cannot be written is read
    too); none where no claim ran there."""
    try:
        return optuna.load_study(storage=storage, study_name=LEDGER_STUDY).user_attrs
    except KeyError:
        return {}


def _key(kind: str, claim_id: str, budget: str, variation: str = "fixed") -> str:
    return f"{kind}:{claim_id}:{budget}:{variation}"


def _invocation_key(claim: Claim, budget: str, variation: str, invocation: str) -> str:
    """The user attribute of one `claims run` (with ``invocation`` empty: the prefix every one of them has)."""
    return _key("run", claim.id, budget, variation) + f":{invocation}"


def record_invocation(storage, claim: Claim, budget: str, variation: str, started: float, spec_name: str | None) -> str:
    """Records a `claims run` (started at ``started``, its wall time until now) of the claim; returns its id.

    Each invocation is a user attribute of its own (``run:<claim>:<budget>:<variation>:<id>``):
    concurrent invocations of one claim each write only their own, where a read-then-write of one
    list could lose one of them.  Storages written before keep a list per claim (``runs:...``),
    which :func:`invocations` reads alongside."""
    run = {
        "started": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds"),
        "started_at": started, "wall_seconds": round(time.time() - started, 1), "study": spec_name,
        "ended": False,  # (until its wall time is recorded at its end: a killed invocation's end is unknown)
        "decision": claim.decision(), "id": uuid.uuid4().hex, **provenance(),
    }  # fmt: skip
    ledger_study(storage).set_user_attr(_invocation_key(claim, budget, variation, run["id"]), run)
    return run["id"]


def _record_wall_time(storage, claim: Claim, budget: str, variation: str, invocation: str, started: float) -> None:
    """The wall time, until now, of the invocation :func:`record_invocation` recorded as ``invocation``."""
    study = ledger_study(storage)
    key = _invocation_key(claim, budget, variation, invocation)
    study.set_user_attr(key, dict(study.user_attrs[key], wall_seconds=round(time.time() - started, 1), ended=True))


def _start(run: dict[str, Any]) -> tuple[str, float]:
    """An invocation's place in time (a list of an older storage is in that order already: sorts are stable)."""
    return run["started"], run.get("started_at", 0.0)


def invocations(storage, claim: Claim, budget: str, variation: str = "fixed") -> list[dict[str, Any]]:
    """The claim's `claims run` invocations at ``budget`` and ``variation``, first to last."""
    attrs = _ledger_attrs(storage)
    own = _invocation_key(claim, budget, variation, "")
    runs = list(attrs.get(_key("runs", claim.id, budget, variation), []))
    return sorted(runs + [r for key, r in attrs.items() if key.startswith(own)], key=_start)


def decision_changes(storage, claim: Claim, budget: str, variation: str = "fixed") -> list[str]:
    """How the claim's decision (:meth:`Claim.decision`) differs from the one stored with its runs at
    ``budget`` and ``variation`` (``"key: stored -> now"``, for each key that decides it now; runs
    recorded before decisions were stored have none to compare; nor do runs of a study since deleted and run
    anew, ``claims run --fresh``: their runs are gone).  A run made under one of an analysis
    claim's earlier rules (``Claim.amended_from``) is history where a later run was made under the rule
    as it is now: the stored analysis is the latest run's."""
    now, changes = claim.decision(), []
    gone = _runs_gone(storage)
    runs = [r for r in invocations(storage, claim, budget, variation) if not gone(r)]
    earlier = claim.earlier_decisions()
    for i, run in enumerate(runs):
        stored = run.get("decision")
        if stored is None or (stored in earlier and any(r.get("decision") == now for r in runs[i + 1 :])):
            continue
        changes += [f"{k}: {stored.get(k)!r} -> {now[k]!r} (run of {run['started']})"
                    for k in sorted(now) if stored.get(k) != now[k]]  # fmt: skip
    return list(dict.fromkeys(changes))


def _all_by_claim(storage) -> list[tuple[str, dict[str, Any]]]:
    """Every `claims run` this storage recorded, with the claim it ran: (claim id, invocation), first to last."""
    found = []
    for key, value in _ledger_attrs(storage).items():
        kind, _, rest = key.partition(":")
        claim = rest.split(":")[0]
        found += [(claim, r) for r in value] if kind == "runs" else [(claim, value)] if kind == "run" else []
    return sorted(found, key=lambda pair: _start(pair[1]))


def study_invocations(storage, study: str) -> list[tuple[str, dict[str, Any]]]:
    """Every `claims run` of a study whose runs are stored, whichever claim started it (claims share studies):
    (claim id, invocation); of a study deleted and run anew, the invocations that ran on after its stored
    runs began (the others' runs are gone)."""
    return _study_history(storage, study)[False]


def replaced_invocations(storage, study: str) -> list[dict[str, Any]]:
    """The `claims run` invocations of a study whose runs are gone: the study was deleted (``--fresh``, or by
    hand) and run anew after them; its history, told beside the new runs (:func:`study_invocations`)."""
    return [r for _, r in _study_history(storage, study)[True]]


def _study_history(storage, study: str) -> dict[bool, list[tuple[str, dict[str, Any]]]]:
    """The study's `claims run` invocations, (claim id, invocation), by whether their runs are gone."""
    gone, history = _runs_gone(storage), {False: [], True: []}
    for claim, r in _all_by_claim(storage):
        if r.get("study") == study:
            history[gone(r)].append((claim, r))
    return history


def study_wall_time(storage, study: str) -> tuple[float, list[dict[str, Any]]]:
    """Wall time of the `claims run` invocations of a study that made its stored runs (:func:`study_invocations`)."""
    runs = [r for _, r in study_invocations(storage, study)]
    return sum(r["wall_seconds"] for r in runs), runs


def _runs_gone(storage) -> Callable[[dict[str, Any]], bool]:
    """Whether an invocation's runs are gone: it ended before its study's stored runs began (the study deleted and
    run anew); each study's beginning read once."""
    since = functools.cache(lambda study: _runs_since(storage, study))

    def gone(run: dict[str, Any]) -> bool:
        began, dated = (None, True) if run.get("study") is None else since(run["study"])
        if began is None or (not dated and run.get("ended") is False):
            # (a killed invocation's end is unknown: against the first stored run's start, which is all an undated
            # study has, it may have made that run; against the study's date it ended before, or it ran on)
            return False
        started = run.get("started_at") or dt.datetime.fromisoformat(run["started"]).timestamp()  # (older records: to the second)
        return started + run["wall_seconds"] < began

    return gone


def _runs_since(storage, study: str) -> tuple[float | None, bool]:
    """Since when the study's stored runs were made, and whether that is the study's date: when the study was
    recorded (anew, where it was deleted and run again), or, for a study recorded before that time was kept, when
    its first stored run started (its units' studies deleted and run again by hand left their record as it was)."""
    created = study_created(storage, study)
    if created is None and isinstance(storage, HeartbeatStorage):
        return storage.first_run_started(study), False
    return created, True


def all_invocations(storage) -> list[dict[str, Any]]:
    """Every `claims run` this storage recorded."""
    return [r for _, r in _all_by_claim(storage)]


def analysis_wall_time(storage, claim: Claim, budget: str, result: AnalysisResult) -> tuple[float, list[dict[str, Any]]]:
    """Wall time of every `claims run` of an analysis summed, as :func:`study_wall_time`'s (the result's
    own where none is recorded): a run that only read back a stored study adds its seconds, it does not
    replace the time the study took."""
    runs = invocations(storage, claim, budget)
    return (sum(r["wall_seconds"] for r in runs) if runs else result.seconds), runs


def store_analysis(storage, claim: Claim, budget: str, result: AnalysisResult) -> None:
    ledger_study(storage).set_user_attr(_key("analysis", claim.id, budget), asdict(result))


def stored_analysis(storage, claim: Claim, budget: str) -> AnalysisResult | None:
    data = _ledger_attrs(storage).get(_key("analysis", claim.id, budget))
    return AnalysisResult(**data) if data else None


def run_claim(
    claim: Claim,
    budget: str,
    storage: optuna.storages.BaseStorage,
    device: torch.device,
    data_dir: str | None = None,
    variations: tuple[str, ...] | None = None,
    progress: Callable[[str], Any] | None = None,
    pack: int = DEFAULT_PACK,
    alongside: Callable[[str], contextlib.AbstractContextManager] | None = None,
) -> None:
    """Run (or resume, or join) the claim at ``budget``: every variation it declares; ``pack``
    as :class:`lossbench.bench.runner.Runner` takes it; ``alongside(study)``
    is entered around each study's run (local workers joining it, say).

    ``progress(title)`` returns a context manager yielding the bench's ``(done, total, unit)``
    callback, once per study (``lossbench.bench.console.run_progress`` is one).
    """
    from lossbench.bench.runner import Runner
    from lossbench.ledger.analyses import study_read
    from lossbench.ledger.protocol import study_spec

    if claim.kind == "analysis":
        started = time.time()
        # An analysis that reads a study of the bench takes where to run it: the arguments it names.
        context = {"storage": storage, "device": device, "data_dir": data_dir, "pack": pack, "progress": progress}
        wanted = inspect.signature(claim.analysis).parameters
        result = claim.analysis(budget, **{k: v for k, v in context.items() if k in wanted})
        result.seconds = round(time.time() - started, 1)
        store_analysis(storage, claim, budget, result)
        # (the bench study it ran, where it ran one: a bench claim sharing that study counts these runs as made by a claim)
        record_invocation(storage, claim, budget, "fixed", started, study_read(claim.id, budget))
        return
    # Build every variation's runner first: a bad spec or a missing file stops before any work.
    runners = []
    for variation in variations or claim.variations:
        spec = study_spec(claim, budget, variation)
        runners.append((variation, spec, Runner(spec, storage, device, data_dir=data_dir, pack=pack)))
    for variation, spec, runner in runners:
        # The decision is stored before the runs (an interrupted run's too), the wall time when they stop.
        started = time.time()
        invocation = record_invocation(storage, claim, budget, variation, started, spec.name)
        try:
            with alongside(spec.name) if alongside else contextlib.nullcontext():
                if progress is None:
                    runner.run()
                else:
                    with progress(f"{claim.id} ({budget}, {variation})") as update:
                        runner.run(update)
        except BaseException as err:
            try:
                _record_wall_time(storage, claim, budget, variation, invocation, started)
            except Exception as also:  # (a storage that failed the run likely fails this too: the run's error comes first)
                err.add_note(f"its wall time was not recorded either ({type(also).__name__}: {also})")
            raise
        _record_wall_time(storage, claim, budget, variation, invocation, started)
