"""Run (or join, or resume) a study: tune every method with the same budget, then evaluate.

Any number of workers may run the same spec against one storage.  A worker repeatedly picks a
(dataset, method) unit with work left, runs trials there and records them; it stops when every
unit is complete.  Where a unit packs, the trials asked at once (as many parallel workers would
ask them) and the evaluation seeds train as one batched model (:mod:`lossbench.train.packed`),
together with those of the dataset's other units whose methods share its
:func:`~lossbench.bench.execution.pack_key` (each unit asked as it would be alone).
A pack's trials are started, given their parameters and finished in a few storage statements
(:class:`~lossbench.bench.storage.HeartbeatStorage`), sampled on an in-memory copy of the
study's finished trials, and a unit's study is read again only when another worker changed it.
Tuning runs until the unit's study holds ``spec.trials`` complete trials, and the configuration
is chosen from the first ``spec.trials`` complete trials by trial number, so the budget is equal
for every method even when workers race.  The final stage re-trains the
chosen configuration once per evaluation seed; a seed counts once however often it was run.

A stored study grows (:func:`~lossbench.bench.storage.register_spec`): with more ``trials`` a unit
tunes the extra trials and chooses again from the first ``trials``; each final run records the
tuning trial it re-trains (``tune_trial``), so only the runs of the current choice count (a changed
choice re-trains every seed; the old runs stay stored, unused).  With more ``seeds`` only the new
seeds train; new datasets and methods are new units.  A worker running the spec that was grown
takes the grown one from the storage before it writes a choice, and before it stops.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import gc
import json
import os
import random
import socket
import threading
import time
import traceback
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from lossbench._checks import check_count
from lossbench._provenance import provenance
from lossbench.bench import stops
from lossbench.bench.defaults import DEFAULT_PACK
from lossbench.bench.execution import (
    STAGES,
    DataCache,
    RunResult,
    Split,
    check_unit,
    configuration_unpackable,
    model_config,
    pack_key,
    run_seed,
    runs_that_fit,
    spread_model,
    train_and_score,
    train_and_score_packed,
    unpackable,
)
from lossbench.bench.methods import Method, check_compatible, resolve_method, suggest
from lossbench.bench.metrics import diverged_score, selection_metric
from lossbench.bench.plugins import code_digests
from lossbench.bench.spec import DatasetSpec, MethodSpec, Spec, SpecError, evaluation_seeds, spec_growth
from lossbench.bench.storage import (
    ALONE_ATTR,
    CHOSEN_FROM_ATTR,
    CONFIG_ATTR,
    DECIDED_ATTR,
    DIRECTION,
    PACKING_OFF,
    RETRY_ALONE_ATTR,
    RUN_ATTR,
    VALIDATION_ATTR,
    HeartbeatStorage,
    Outcome,
    budget_trials,
    check_inputs,
    current_choice,
    draw_number,
    final_runs,
    record_inputs,
    register_spec,
    runs_choice,
    set_study_attrs,
    stored_fingerprint,
    stored_spec,
    study_name,
)
from lossbench.losses import LOSSES
from lossbench.train import TRANSFORMS


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def draw_index(trial: FrozenTrial | optuna.Trial, trials: list[FrozenTrial]) -> int:
    """Which fresh draw a tuning trial is: a retried trial (Optuna's retry of a dead worker's
    trial) is the draw of the trial it retries, so kills and retries change no draw."""
    return draw_indexer(trials)(trial)


def draw_indexer(trials: list[FrozenTrial]) -> Callable[[FrozenTrial | optuna.Trial], int]:
    """:func:`draw_index` against ``trials`` for many trials: the fresh draws' numbers sorted once (a scan
    of every trial for each trial of a pack grew with the square of the unit's trials)."""
    fresh = sorted(t.number for t in trials if "failed_trial" not in t.system_attrs)
    return lambda trial: bisect.bisect_left(fresh, draw_number(trial))


@contextlib.contextmanager
def _older_objects_frozen() -> Iterator[None]:
    """The objects made before (modules, data sets, the storage's) kept out of the cyclic garbage
    collector's passes until the block ends (``gc.freeze``): each full collection of a run scanned them
    all again, about 0.2 s on the built-in preset.  Left alone where the process froze some itself."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _reseed(sampler: optuna.samplers.BaseSampler, seed: int) -> bool:
    """Put an Optuna TPE or random sampler in the state ``seed`` gives a new one (a sampler's only
    state but for caches of its study's search space): a new one costs about 0.2 ms, two NumPy
    generators seeded from the OS first, and TPE asks one per draw.  False where this Optuna keeps
    its generators elsewhere (the caller builds a new sampler then)."""
    if not isinstance(sampler, (optuna.samplers.TPESampler, optuna.samplers.RandomSampler)):
        return False
    owners = [sampler, getattr(sampler, "_random_sampler", sampler)]  # (TPE's start-up draws: its own random sampler)
    generators = [getattr(getattr(owner, "_rng", None), "rng", None) for owner in owners]
    if not all(isinstance(g, np.random.RandomState) for g in generators):
        return False
    for generator in generators:
        generator.seed(seed)  # (what LazyRandomState(seed) does)
    return True


class PythonRandomSampler(optuna.samplers.BaseSampler):
    """The EXACT paper's search: ``random.seed(seed)``, then per trial one ``random.choice`` per
    parameter in the order of ``grids``.  This sampler gives draw ``k`` (:meth:`Runner.sampler`
    makes one per tuning trial, for the trial's draw)."""

    def __init__(self, seed: int, grids: dict[str, tuple[Any, ...]], k: int = 0) -> None:
        self.seed, self.grids = seed, grids
        self.params = self.draw(k)

    def draw(self, k: int) -> dict[str, Any]:
        rng = random.Random(self.seed)
        for _ in range(k):
            for options in self.grids.values():
                rng.choice(options)
        return {name: rng.choice(options) for name, options in self.grids.items()}

    def infer_relative_search_space(self, study, trial):  # no joint sampling
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.params[param_name]


def _check_search_order(spec: Spec, methods: list[Method]) -> None:
    """Refuse a ``search_order`` name that no method searches and that names no registered loss or
    transform hyperparameter: a misspelt one would leave the draws in another order, silently.  (A
    protocol's name for a method the spec left out, a claim keeping some of its methods, is allowed.)"""
    searched = {k for m in methods for k in m.search_space(spec.search)}
    registered = {f"loss.{h.name}" for n in LOSSES.names() for h in LOSSES.get(n).hyperparams}
    registered |= {f"{n}.{h.name}" for n in TRANSFORMS.names() for h in TRANSFORMS.get(n).hyperparams}
    unknown = [k for k in spec.search_order if k not in searched | registered]
    if unknown:
        raise SpecError(f"{spec.name}: search_order names {unknown}, which no method searches (they search {sorted(searched)})")


def draw_order(space: dict[str, Any], order: tuple[str, ...]) -> list[str]:
    """The space's keys, those named in ``order`` first in that order (the rest as they come)."""
    return [k for k in order if k in space] + [k for k in space if k not in order]


class SpecGrew(Exception):
    """The stored spec grew while this worker ran an older one (carries the stored one)."""

    def __init__(self, spec: Spec) -> None:
        super().__init__(f"study {spec.name!r} grew")
        self.spec = spec


@dataclass
class Unit:
    dataset: DatasetSpec
    method: Method
    tune: optuna.Study
    final: optuna.Study
    pack_reason: str | None = None  # why its runs train one at a time (None: they pack)
    tune_reason: str | None = None  # why its tuning runs do, where its evaluation runs pack

    @property
    def label(self) -> str:
        return f"{self.dataset.label} / {self.method.name}"

    def alone(self, stage: str) -> str | None:
        """Why the unit's runs of ``stage`` train one at a time (None: they pack)."""
        return self.pack_reason or (self.tune_reason if stage == "tune" else None)


@dataclass
class _Started:
    """A unit's trials started by this worker, to train in the next pack (with other units' where
    their runs share a pack)."""

    unit: Unit
    study: optuna.Study
    stage: str
    known: list[FrozenTrial]  # the stage's trials as last read, the started ones included
    started: list[FrozenTrial]
    asked: list[optuna.Trial | None] = field(default_factory=list)

    @property
    def lone_retry(self) -> bool:
        """A killed run's retry (:data:`RETRY_ALONE_ATTR`): started, trained and finished on its own."""
        return any(t.system_attrs.get(RETRY_ALONE_ATTR) for t in self.started)


class Runner:
    """Drives one worker through a spec stored in ``storage``."""

    def __init__(
        self,
        spec: Spec,
        storage: optuna.storages.BaseStorage,
        device: torch.device,
        data_dir: str | None = None,
        on_trial: Callable[[str, str, RunResult], None] | None = None,
        pack: int = DEFAULT_PACK,
        data: DataCache | None = None,
    ) -> None:
        check_count("pack", pack)
        self.storage, self.device, self.pack, self.data_dir = storage, device, pack, data_dir
        self._loaded = data  # (a preflight's of this spec, taken where it loaded on this device: see _resolve)
        self.on_trial = on_trial
        self.environment = {**provenance(), "device": str(device)}  # what each run's record says it ran with
        # Every name, file and pairing is checked before anything is written to the storage.
        resolved = self._resolve(spec)
        in_memory = isinstance(storage, optuna.storages.InMemoryStorage)  # (a spec is only checked there)
        if not in_memory and not (isinstance(storage, HeartbeatStorage) and storage.heartbeat_interval is not None):
            # Without heartbeats a dead worker's trials would never be retried, and a worker that has
            # them would fail this one's live trials as stale.
            raise SpecError("the storage must keep heartbeats: open it with open_storage(url, spec.heartbeat_interval)")
        # the data and plugins checked against the stored study's before the spec is stored (in memory: none stored)
        inputs = None if in_memory else self._inputs(spec)
        self.grown = register_spec(storage, spec)  # what this spec added to the stored study (usually nothing)
        if inputs is not None:
            record_inputs(storage, spec.name, *inputs)
        self._known: dict[int, list[FrozenTrial]] = {}  # per study id, its trials as this worker last read or wrote them
        self._lone: set[str] = set()  # units whose killed run's retry waits to start alone (see _start)
        self._histories: dict[str, _History] = {}  # per unit, what its tuning's samplers read (see _history)
        self._heartbeats: Heartbeats | None = None  # while running
        self._configurations: dict[tuple[str, Any], str | None] = {}  # (unit, model configuration): why alone
        self._setup(resolved)

    def _resolve(self, spec: Spec) -> list[tuple[DatasetSpec, Method]]:
        self.spec, self.seeds = spec, evaluation_seeds(spec)
        loaded, self._loaded = self._loaded, None  # (the data a preflight of this spec loaded: not loaded again)
        same = loaded is not None and (loaded.spec, loaded.device, loaded.data_dir) == (spec, self.device, self.data_dir)
        self.cache = loaded if same else DataCache(spec, self.device, self.data_dir)
        resolved = [(d, self._validated(d, m)) for d, m in spec.units()]
        _check_search_order(spec, [m for _, m in resolved])
        return resolved

    def _setup(self, resolved: list[tuple[DatasetSpec, Method]]) -> None:
        self.units = [self._unit(d, m) for d, m in resolved]
        self.groups = self._pack_groups()
        self._done: dict[str, int] = {}
        # Per unit, once stored in (or read from) storage: the chosen tuning trial and its parameters.
        self._choices: dict[str, tuple[int, dict[str, Any]]] = {}
        self._complete: set[str] = set()  # units whose every run is stored: never read again

    def _check_spec(self) -> None:
        """Raise :class:`SpecGrew` where the stored spec is no longer this worker's (it grew)."""
        if stored_fingerprint(self.storage, self.spec.name) != self.spec.fingerprint():
            raise SpecGrew(stored_spec(self.storage, self.spec.name, self.spec.plugins))

    def _adopt(self, spec: Spec) -> None:
        """Continue with the stored ``spec``, grown from this worker's."""
        _, changed = spec_growth(self.spec, spec)
        if changed:  # (register_spec stores nothing else; a hand-edited storage might)
            raise SpecError(f"study {spec.name!r}: the stored spec changed while this worker ran: {'; '.join(changed[:3])}")
        resolved = self._resolve(spec)
        record_inputs(self.storage, spec.name, *self._inputs(spec))
        self._setup(resolved)

    def _inputs(self, spec: Spec) -> tuple[dict[str, str], dict[str, str]]:
        """The digests of the spec's data and of its plugins' code, checked against the stored study's."""
        data, code = self.cache.digests(), code_digests(spec.plugins)
        check_inputs(self.storage, spec.name, data, code)
        return data, code

    def _validated(self, dataset: DatasetSpec, method_spec: MethodSpec) -> Method:
        method = resolve_method(method_spec)
        if self.spec.sampler == "python-random":  # (the spec checks its own ranges; a loss's registered ones show here)
            ranges = [k for k, d in method.search_space(self.spec.search).items()
                      if not isinstance(d, optuna.distributions.CategoricalDistribution)]  # fmt: skip
            if ranges:
                raise SpecError(f"method {method.name!r}: the python-random sampler draws from choices only; these are "
                                f"ranges: {ranges} (give them choices in the method's search table)")  # fmt: skip
        split = self.cache.get(dataset, "tune")  # fails early on missing files or bad names
        check_compatible(method.loss, split.task, split.num_classes, f"method {method.name!r} on {dataset.label!r}")
        check_unit(split, method, self.spec)  # model, loss and transforms at every end of the search
        return method

    def _unit(self, dataset: DatasetSpec, method: Method) -> Unit:
        names = [study_name(self.spec.name, s, dataset.label, method.name) for s in ("tune", "final")]
        tune, final = (
            optuna.create_study(storage=self.storage, study_name=n, direction=DIRECTION, load_if_exists=True)
            for n in names
        )
        reason = PACKING_OFF if self.pack == 1 else unpackable(self.cache.get(dataset, "tune"), method, self.spec)
        return Unit(dataset, method, tune, final, reason, None if reason else spread_model(method, self.spec))

    def alone(self) -> list[tuple[str, str]]:
        """The units whose runs (all, or their tuning runs) train one at a time though packing is on, and why."""
        return [(u.label, u.alone("tune")) for u in self.units if u.alone("tune") not in (None, PACKING_OFF)]

    def _pack_groups(self) -> list[list[Unit]]:
        """The units whose runs may train in one pack: those of one dataset whose methods share a
        :func:`~lossbench.bench.execution.pack_key` and pack; every other unit alone."""
        groups: dict[Any, list[Unit]] = {}
        for unit in self.units:
            if unit.pack_reason is None:
                key: Any = (unit.dataset.label, pack_key(self.cache.get(unit.dataset, "tune"), unit.method, self.spec))
            else:
                key = id(unit)
            groups.setdefault(key, []).append(unit)
        return list(groups.values())

    def _pack_size(self, unit: Unit, wanted: int, stage: str) -> int:
        """How many runs to ask at once: ``wanted`` within the pack limit; one for a unit that does
        not pack.  TPE is asked its start-up count at once (runs asked together do not see each
        other's results, as with that many parallel workers) whatever the pack (a unit that does not
        pack, or ``--pack 1``, trains them one after another; a smaller pack, in calls of that many):
        neither which methods pack nor ``--pack`` may change how the sampler tunes them."""
        if stage == "tune" and (batch := self._tpe_batch()):
            return max(1, min(batch, wanted))
        return max(1, min(1 if unit.alone(stage) is not None else self.pack, wanted))

    def _tpe_startup(self) -> int:
        return min(10, self.spec.trials // 2 or 1)

    def _tpe_batch(self) -> int:
        """How many tuning runs TPE is asked at once (0 for another sampler: asked by the pack)."""
        return self._tpe_startup() if self.spec.sampler == "tpe" else 0

    # -- progress ------------------------------------------------------------------------------

    def total_runs(self) -> int:
        return len(self.units) * (self.spec.trials + self.spec.seeds)

    def done_runs(self) -> int:
        """Counted runs as of each unit's last look at the storage (no extra queries)."""
        return sum(self._done.values())

    # -- the work loop -------------------------------------------------------------------------

    def run(self, progress: Callable[[int, int, str, str], None] | None = None, poll: float | None = None) -> None:
        """Work until every unit is complete (waiting for other workers' running trials)."""
        if not isinstance(self.storage, HeartbeatStorage):
            raise SpecError(
                "a study runs on a storage from open_storage(url, spec.heartbeat_interval); this one only checks specs"
            )
        poll = poll or min(2.0, float(self.spec.heartbeat_interval))
        with _older_objects_frozen(), stops.taken(("SIGINT",)):  # (Ctrl-C held in storage calls, for a library caller too)
            while True:
                self._heartbeats = Heartbeats(self.storage)
                try:
                    with self._heartbeats:
                        self._work(progress, poll)
                    return
                except SpecGrew as grew:  # no trial of this worker is running: take the grown spec and go on
                    self._adopt(grew.spec)
                finally:
                    self._heartbeats = None

    def _work(self, progress: Callable[[int, int, str, str], None] | None, poll: float) -> None:
        while True:
            worked = waiting = False
            for group in self.groups:
                settled: set[str] = set()  # units done, or waiting for other workers, on this pass
                while True:
                    started, waits = self._gather(group, settled, progress)
                    waiting |= waits
                    if not started:
                        break
                    self._run_pack(started)
                    worked = True
                    if progress:
                        for s in started:
                            progress(self.done_runs(), self.total_runs(), s.unit.label, "ran")
            if not worked and not waiting:
                self._check_spec()  # done with the spec it has: a grown one has more to do
                return
            if not worked:  # the next look at each unit fails the trials that went stale meanwhile
                if progress:
                    progress(self.done_runs(), self.total_runs(), self._waiting_for(), "waiting")
                time.sleep(poll)

    def _waiting_for(self) -> str:
        """What a worker with nothing to start waits for: live workers' trials, or those of a worker on
        another machine (or one this process cannot see) that stopped, until their heartbeats are a grace
        period old (then they are retried here; a stopped worker's on this machine are retried at once)."""
        return (f"waiting for trials running in other workers; a stopped worker's are retried once "
                f"{self.storage.grace_period:g} s without a heartbeat")  # fmt: skip

    def _gather(self, group: list[Unit], settled: set[str],
                progress: Callable[[int, int, str, str], None] | None) -> tuple[list[_Started], bool]:  # fmt: skip
        """The group's next pack: the trials each unit not yet ``settled`` on this pass starts, up to
        ``--pack`` runs per stage (the stages' runs train apart: their splits differ), and whether a
        unit waits for other workers.  A unit done or waiting joins ``settled``."""
        started: list[_Started] = []
        waiting, room = False, {**dict.fromkeys(STAGES, self.pack), "tune": max(self.pack, self._tpe_batch())}
        # A unit holding a killed run's retry goes first, where the retry can start alone (else it waited,
        # and its unit with it, until every unit before it was done: the study's packs lost for the rest).
        order = sorted(group, key=lambda u: u.label not in self._lone)
        try:
            for unit in order:
                if unit.label in settled:
                    continue
                with stops.holding():  # (a stop inside start_trials: its trials listed first, then failed below)
                    status = self._start_next(unit, room, fresh=not started)
                    if isinstance(status, _Started):
                        started.append(status)
                        room[status.stage] -= len(status.started)
                        if status.lone_retry:  # (nothing joins it: a kill during another run would fail it too)
                            break
                if not isinstance(status, _Started) and status != "later":
                    settled.add(unit.label)
                    waiting |= status == "waiting"
                    if progress and status == "done":  # (a unit waiting on others: said once, below, for all)
                        progress(self.done_runs(), self.total_runs(), unit.label, status)
        except BaseException as err:  # (a grown spec, Ctrl-C, the storage): none of them trained
            self._abandon([(s, t) for s in started for t in s.started], err, requeue=True, counted=False)
            raise
        return started, waiting

    def _start_next(self, unit: Unit, room: dict[str, int], fresh: bool) -> _Started | str:
        """Start the unit's next trials if it has work no worker is doing and they fit in its stage's
        ``room`` runs: the started trials, or 'later' (they do not fit), 'waiting' (others are running what
        is left) or 'done'.  One read of the unit's current study per call."""
        if unit.label in self._complete:
            return "done"
        if unit.label not in self._choices:  # still tuning: once chosen, the budget is final
            trials = self._read(unit.tune)
            budget = budget_trials(trials, self.spec.trials)
            self._done[unit.label] = len(budget)
            if len(budget) < self.spec.trials:
                wanted = self.spec.trials - len(budget) - sum(1 for t in trials if t.state == TrialState.RUNNING)
                if wanted <= 0:
                    return "waiting"  # other workers are running the rest: work on another unit meanwhile
                started = self._start(unit, unit.tune, "tune", trials, self._pack_size(unit, wanted, "tune"), room["tune"], fresh)
                # (another worker started or finished some of them since they were read: count them again)
                return self._start_next(unit, room, fresh) if started == "changed" else started
            if any(t.state == TrialState.RUNNING for t in trials):
                return "waiting"  # the choice must see every trial that may still enter the budget
            self._config(unit, budget)
        chosen, config = self._choices[unit.label]
        final = self._read(unit.final)
        done = final_runs(final, self.seeds, chosen, config)
        self._done[unit.label] = self.spec.trials + len(done)
        if len(done) == len(self.seeds):
            self._complete.add(unit.label)
            return "done"
        unfinished = (TrialState.WAITING, TrialState.RUNNING)
        queued = {t.user_attrs.get("seed") for t in final if t.state in unfinished and runs_choice(t, chosen, config)}
        missing = [seed for seed in self.seeds if seed not in done and seed not in queued]
        if missing:
            queued_now = [{"seed": seed, CHOSEN_FROM_ATTR: chosen} for seed in missing]
            queued_here = self.storage.queue_trials(unit.final._study_id, config, queued_now, Counter(t.state for t in final))
            if queued_here is None:  # another worker changed them since they were read (it queued the same seeds, say)
                self._known.pop(unit.final._study_id, None)
                return self._start_next(unit, room, fresh)
            final = final + queued_here
            self._known[unit.final._study_id] = final
        waiting = sum(1 for t in final if t.state == TrialState.WAITING)  # (those of an earlier choice are pruned)
        if not waiting:
            return "waiting"
        return self._start(unit, unit.final, "final", final, self._pack_size(unit, waiting, "final"), room["final"], fresh)

    def _read(self, study: optuna.Study) -> list[FrozenTrial]:
        """The study's trials: as this worker last read or wrote them when the storage's counts of
        trials by state say no other worker changed any since (one statement), else read (Optuna's
        cached read: only new and unfinished trials are fetched); the stale ones failed and retried
        first when any is running (only a running trial goes stale)."""
        sid = study._study_id
        trials = self._known.get(sid)
        if trials is None or self.storage.state_counts(sid) != Counter(t.state for t in trials):
            trials = study.get_trials(deepcopy=False)
        if any(t.state == TrialState.RUNNING for t in trials):
            _fail_stale(study)
            trials = study.get_trials(deepcopy=False)
        self._known[sid] = trials
        return trials

    def sampler(self, unit: Unit, draw: int, reuse: optuna.samplers.BaseSampler | None = None) -> optuna.samplers.BaseSampler:
        """The sampler of a unit's ``draw``-th tuning trial (seeded by the draw alone).  ``reuse``: this
        unit's sampler of another draw on the same study, reseeded for this one where it can be."""
        seed = zlib.crc32(f"{self.spec.seed}:{unit.dataset.label}:{unit.method.name}:{draw}".encode())
        if self.spec.sampler == "python-random":
            space = unit.method.search_space(self.spec.search)
            grids = {k: tuple(space[k].choices) for k in draw_order(space, self.spec.search_order)}
            return PythonRandomSampler(self.spec.seed, grids, draw)
        if reuse is not None and _reseed(reuse, seed):
            return reuse
        if self.spec.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self._tpe_startup())

    def _config(self, unit: Unit, budget: list[FrozenTrial]) -> dict[str, Any]:
        """The unit's choice from its full ``budget``, stored on its final study for the report.
        The choice is the budget's (every worker of one spec makes the same); one stored from another
        budget is replaced, by a worker whose spec is the stored one (a study that grew its trials)."""
        if unit.label in self._choices:  # stored and checked already: the budget is final by now
            return self._choices[unit.label][1]
        best = current_choice(self.spec, budget)
        assert best is not None
        attrs = unit.final.user_attrs  # one storage read
        if attrs.get(CHOSEN_FROM_ATTR) != best.number or attrs.get(CONFIG_ATTR) != best.params:
            self._check_spec()  # a worker of a spec that grew meanwhile takes the grown spec instead of writing
            set_study_attrs(self.storage, unit.final, {CHOSEN_FROM_ATTR: best.number, CONFIG_ATTR: best.params})
        self._choices[unit.label] = (best.number, best.params)
        return best.params

    def _start(self, unit: Unit, study: optuna.Study, stage: str, trials: list[FrozenTrial], size: int,
               room: int, fresh: bool) -> _Started | str:  # fmt: skip
        """Start ``size`` trials (queued ones of ``trials``, the study as last read; new ones only when
        tuning and none is queued) if they fit in ``room`` runs ('later' if not; 'waiting' when there was nothing to
        start: every queued run was taken by another worker meanwhile; 'changed' when new ones were to be made
        and another worker changed the study's trials since ``trials`` were read: nothing started).  A killed
        run's retry starts alone, in a pack of its own (``fresh``: nothing started in this one yet; else 'later')."""
        waiting = [t for t in trials if t.state == TrialState.WAITING]
        lone = [t for t in waiting if t.system_attrs.get(RETRY_ALONE_ATTR)]
        self._lone.discard(unit.label)
        if lone:
            if not fresh:
                self._lone.add(unit.label)  # (first in the next gather)
                return "later"
            waiting, size = lone, 1  # (the first of them another worker has not taken)
        if size > room:
            return "later"
        sid = study._study_id
        self._known.pop(sid, None)  # until the pack is finished as planned: read afresh next time
        # Queued retries start before any new draw: a draw asked beside them would be asked without their results,
        # which an uninterrupted study's next draws see (TPE asks a batch from the batches finished before it).
        create = stage == "tune" and not waiting
        started = self.storage.start_trials(sid, size, waiting, create, Counter(t.state for t in trials) if create else None)
        if started is None:
            return "changed"
        if not started:
            return "waiting"
        known = trials + [t for t in started if t.number >= len(trials)]
        if len(known) != max(t.number for t in known) + 1:  # other workers added trials meanwhile (their
            known = study.get_trials(deepcopy=False)  # draws come before ours): read them
        return _Started(unit, study, stage, known, started)

    def _run_pack(self, packs: list[_Started]) -> None:
        """Ask, train (packed where the units pack: one pack for units of one group) and finish the
        started trials, in a few storage statements (:class:`HeartbeatStorage`).

        A training call that raises fails its runs (queued again with their draws on Ctrl-C); where it
        held several units' runs, each unit's runs train apart first and only those of the units that
        raise alone fail (see :meth:`_train_apart`).  The calls that trained before it are recorded, the
        runs of those after it queued again; then the error is raised.
        A worker paused past the heartbeat grace (suspended, swapped out) finds on waking that
        another worker failed its trial as stale and queued a retry: that run's result cannot be
        recorded.  That run is lost, not the worker: it says so and goes on.
        """
        if self._heartbeats is None:
            raise RuntimeError("trials run within Runner.run, which keeps their heartbeats")
        every = [(p, t) for p in packs for t in p.started]
        stored: dict[tuple[int, int], bool] = {}  # (pack, run) recorded so far -> finished by this worker
        with self._heartbeats.beating([t._trial_id for _, t in every]):
            try:
                for p in packs:
                    p.asked = self._ask(p.unit, p.stage, p.known, p.started)
                self.storage.set_trials_params([
                    (t._trial_id, name, value, distributions[name])
                    for p in packs for t, a in zip(p.started, p.asked) if a is not None
                    for distributions in [a.distributions]  # (a deep copy per read)
                    for name, value in a.params.items() if name not in t.params  # (a retry holds its own)
                ])  # fmt: skip
                outcomes, failure = self._train(packs, stored)
            except BaseException as err:  # nothing trained: the trials fail, the error keeps its traceback
                stopped = stops.stop_in(err) is not None
                self._abandon(every, err, requeue=stopped or len(packs) > 1, counted=not stopped)
                raise
            if failure is not None:
                err, raised, untrained, requeue = failure
                stopped = stops.stop_in(err) is not None
                try:
                    self._finish(packs, outcomes, stored)
                except BaseException as also:  # noqa: BLE001 - the training error is the one to report (its runs still fail)
                    err.add_note(f"recording the runs trained before it failed ({type(also).__name__}: {also})")
                    trained = [(p, p.started[i]) for j, p in enumerate(packs) for i, (o, _) in enumerate(outcomes[j])
                               if o is not None and (j, i) not in stored]  # fmt: skip
                    self._abandon(trained, also, requeue=True, counted=False)  # (not recorded: not their fault)
                self._abandon([(packs[j], packs[j].started[i]) for j, i in raised], err, requeue=stopped or requeue,
                              counted=not stopped)  # fmt: skip
                self._abandon([(packs[j], packs[j].started[i]) for j, i in untrained], err, requeue=True, counted=False)
                raise err
            try:
                self._finish(packs, outcomes, stored)
            except BaseException as err:  # one transaction: none of these was recorded, and none is left running until stale
                self._abandon([(p, p.started[i]) for j, p in enumerate(packs) for i in range(len(p.started)) if (j, i) not in stored],
                              err, requeue=True, counted=False)  # fmt: skip
                raise

    def _finish(self, packs: list[_Started], outcomes: list[list[tuple[Outcome | None, RunResult | None]]],
                stored: dict[tuple[int, int], bool], keys: list[tuple[int, int]] | None = None) -> None:  # fmt: skip
        """Record in one transaction the outcomes of ``keys`` ((pack, run) pairs; default: every one not yet
        ``stored``; an outcome None is a run that did not train, left to the caller), and add them to ``stored``."""
        if keys is None:
            keys = [(j, i) for j, per in enumerate(outcomes) for i, (o, _) in enumerate(per) if o is not None and (j, i) not in stored]
        if not keys:
            return
        finished = set(self.storage.finish_trials([outcomes[j][i][0] for j, i in keys]))
        for j, i in keys:
            p, (outcome, result) = packs[j], outcomes[j][i]
            stored[(j, i)] = outcome.trial_id in finished
            if not stored[(j, i)]:
                warnings.warn(
                    f"{p.unit.label} ({p.stage}): trial #{p.started[i].number} was failed as stale while this worker "
                    "was paused past the heartbeat grace period; its result is dropped and its retry runs instead",
                    RuntimeWarning,
                    stacklevel=3,
                )
            elif result is not None and self.on_trial:
                self.on_trial(p.unit.label, p.stage, result)
        for j, (p, per) in enumerate(zip(packs, outcomes)):
            if any(k[0] == j for k in keys) and all(stored.get((j, i), False) for i in range(len(per))):
                # the storage holds what was read, with these finished
                done = {t.number: _as_finished(t, a, o) for t, a, (o, _) in zip(p.started, p.asked, per)}
                self._known[p.study._study_id] = [done.get(t.number, t) for t in p.known]

    def _abandon(self, trials: list[tuple[_Started, FrozenTrial]], err: BaseException, requeue: bool,
                 counted: bool = True) -> None:  # fmt: skip
        """Fail the started trials with ``err``'s first line; with ``requeue`` queue each again with its
        draw, as a dead worker's trials are, so that the resumed study is the one without the error
        (in the same transaction: :meth:`HeartbeatStorage.fail_trials`; ``counted``: against the
        draw's retries, not for runs stopped for no fault of their own)."""
        if not trials:
            return
        reason = f"{type(err).__name__}: {err}".splitlines()[0][:500]
        try:  # (as stored: a retry copies the parameters recorded so far)
            stored = [(p.study._study_id, self.storage.get_trial(t._trial_id)) for p, t in trials]
            self.storage.fail_trials(stored, reason, requeue, counted)
        except Exception as also:  # noqa: BLE001 - the error being raised is the one to report
            err.add_note(f"the trials could not be marked failed ({type(also).__name__}: {also}); they go stale instead")

    def _ask(
        self, unit: Unit, stage: str, trials: list[FrozenTrial], started: list[FrozenTrial]
    ) -> list[optuna.Trial | None]:
        """Each started trial's parameters, suggested as Optuna's ``Trial`` suggests them, on an
        in-memory copy of the finished ``trials`` (what the samplers read; no storage reads):
        parameters the trial holds (a retry's) or was queued with (an evaluation run's) are kept,
        the rest come from the sampler of the trial's draw.  None for an evaluation trial without a
        seed (queued by something else: it is pruned).

        Trials asked together do not see each other's results, as with that many parallel workers:
        TPE (once past its random start-up trials) suggests from the trials finished before the pack.
        """
        space = unit.method.search_space(self.spec.search)
        history = self._history(unit, trials) if stage == "tune" else optuna.create_study(direction=DIRECTION)
        asked: list[optuna.Trial | None] = []
        draw_of = draw_indexer(trials) if stage == "tune" else None
        for t in started:
            given = {**t.system_attrs.get("fixed_params", {}), **t.params}
            if stage == "final":
                if "seed" not in t.user_attrs or not runs_choice(t, *self._choices[unit.label]):
                    asked.append(None)  # queued by something else, or for a choice since replaced
                    continue
                if not space.keys() <= given.keys():
                    lacking = sorted(space.keys() - given.keys())
                    raise SpecError(f"{unit.label}: evaluation trial #{t.number} was queued without {lacking}")
            else:  # a killed trial's retry is its draw again: a resumed study samples what an uninterrupted one would
                history.sampler = self.sampler(unit, draw_of(t), reuse=history.sampler if asked else None)
            if given:
                history.enqueue_trial(given, skip_if_exists=False)
            trial = history.ask()
            if stage == "tune":  # (failed there before the next pack: also where a suggestion below raises)
                self._histories[unit.label].asked.append(trial)
            for name, dist in space.items():
                suggest(trial, name, dist)
            asked.append(trial)
        return asked

    def _history(self, unit: Unit, trials: list[FrozenTrial]) -> optuna.Study:
        """The in-memory study the unit's samplers read: its finished tuning ``trials``, in their order.  Kept
        from one pack to the next with the trials finished since added (each pack built it anew, and Optuna
        copies every trial it adds: at 1,000 trials a unit, 8 s of its 20 s of tuning overhead); built anew
        where one finished since before the last it holds (in another order the samplers would read another
        history).  The trials its samplers asked before are failed there, which no sampler reads, as the
        samplers' trials of a new build would be absent."""
        finished = [t for t in trials if t.state.is_finished()]
        kept = self._histories.get(unit.label)
        if kept is None or [t.number for t in finished[: len(kept.numbers)]] != kept.numbers:
            kept = self._histories[unit.label] = _History(optuna.create_study(direction=DIRECTION))
        for trial in kept.asked:
            kept.study.tell(trial, state=TrialState.FAIL)
        kept.asked.clear()
        new = finished[len(kept.numbers) :]
        kept.study.add_trials([_for_sampler(t) for t in new])
        kept.numbers += [t.number for t in new]
        return kept.study

    def _train(self, packs: list[_Started], stored: dict[tuple[int, int], bool]) -> tuple[
        list[list[tuple[Outcome | None, RunResult | None]]],
        tuple[BaseException, list[tuple[int, int]], list[tuple[int, int]], bool] | None,
    ]:  # fmt: skip
        """Each started run's outcome: complete with its selection score and record, or pruned where
        it has no parameters.  Runs that share a split and a model configuration train as one pack
        where their units pack.  Where a training call raises: the error, the ``(pack, run)`` indices of
        the runs it fails and of the runs not trained (their outcomes None), the calls after it not
        made, and whether the failed runs are queued again (their draws kept: several units' runs of
        which none is known to be the cause).  A call of several units' runs that raises (but for
        Ctrl-C) is made again unit by unit (:meth:`_train_apart`): a failing method or plugin fails
        its own trials, not those of the methods it shared a pack with.  A call's runs are recorded as it
        ends where calls follow it (``stored``; TPE's batch at a small ``--pack``): a kill in a later call
        loses none of them."""
        prepared: dict[tuple[int, int], tuple[Method, FrozenTrial, dict[str, Any], int, Split]] = {}
        for j, p in enumerate(packs):
            draw_of = draw_indexer(p.known) if p.stage == "tune" else None
            for i, (trial, asked) in enumerate(zip(p.started, p.asked)):
                if asked is None:
                    continue
                draw = draw_of(trial) if draw_of is not None else trial.number
                seed = run_seed(p.stage, draw, self.spec, trial.user_attrs.get("seed"), asked.params)
                resampled = seed if p.stage == "final" and self.spec.resample_splits else None
                split = self.cache.get(p.unit.dataset, p.stage, resampled)
                prepared[(j, i)] = (p.unit.method, trial, asked.params, seed, split)
        outcomes: list[list[tuple[Outcome | None, RunResult | None]]] = [
            [(None if (j, i) in prepared else Outcome(t._trial_id, TrialState.PRUNED), None) for i, t in enumerate(p.started)]
            for j, p in enumerate(packs)
        ]  # fmt: skip
        together: dict[Any, list[tuple[int, int]]] = {}  # packing units' runs, by split and model configuration
        calls: list[list[tuple[int, int]]] = []
        for key, (_, _, params, _, split) in prepared.items():
            if self._alone(packs[key[0]], params, split) is None:
                together.setdefault((id(split), model_config(self.spec, params)), []).append(key)
            else:
                calls.append([key])
        # (a pack holds at most --pack runs, and as many as its held-out outputs fit: TPE's batch, asked whatever
        # the pack, may train in several)
        sizes = {key: min(self.pack, runs_that_fit(prepared[keys[0]][4], [prepared[k][0] for k in keys], self.spec))
                 for key, keys in together.items()}  # fmt: skip
        calls = [keys[i : i + sizes[key]] for key, keys in together.items() for i in range(0, len(keys), sizes[key])] + calls
        for n, keys in enumerate(calls):
            later = [k for rest in calls[n + 1 :] for k in rest]
            units = [[k for k in keys if k[0] == j] for j in dict.fromkeys(j for j, _ in keys)]
            try:
                results = self._train_call(prepared, keys)
            except Exception as err:  # noqa: BLE001 - raised by the caller, once what trained is recorded
                traceback.clear_frames(err.__traceback__)  # its frames' tensors freed (the units may train apart next)
                if len(units) == 1:
                    return outcomes, (err, keys, later, False)
                said = f"{len(units)} units' runs trained together raised {type(err).__name__}: {err}".splitlines()[0]
            except BaseException as err:  # noqa: BLE001 - Ctrl-C: nothing more trains
                return outcomes, (err, keys, later, len(units) > 1)
            else:
                unrecorded = self._record(outcomes, packs, prepared, keys, results)
                if unrecorded is not None:
                    return outcomes, (unrecorded, keys, later, isinstance(unrecorded, KeyboardInterrupt))
                failure = self._store_early(packs, outcomes, stored, keys, later)
                if failure is not None:
                    return outcomes, failure
                continue
            failure = self._train_apart(outcomes, packs, prepared, units, said)
            if failure is not None:
                err, raised, untrained, requeue = failure
                return outcomes, (err, raised, untrained + later, requeue)
            failure = self._store_early(packs, outcomes, stored, keys, later)
            if failure is not None:
                return outcomes, failure
        return outcomes, None

    def _alone(self, started: _Started, params: dict[str, Any], split: Split) -> str | None:
        """Why a run trains one at a time: its unit's reason for the stage, else its model configuration's
        (checked once per unit and configuration, the first time one is trained, with a warning where it
        cannot pack)."""
        unit = started.unit
        if (reason := unit.alone(started.stage)) is not None or not (config := model_config(self.spec, params)):
            return reason
        if (unit.label, config) not in self._configurations:
            reason = configuration_unpackable(split, unit.method, self.spec, params)
            self._configurations[(unit.label, config)] = reason
            if reason is not None:
                warnings.warn(f"{unit.label}: its runs with {dict(config)} train one at a time ({reason})", RuntimeWarning,
                              stacklevel=2)  # fmt: skip
        return self._configurations[(unit.label, config)]

    def _store_early(self, packs: list[_Started], outcomes: list[list[tuple[Outcome | None, RunResult | None]]],
                     stored: dict[tuple[int, int], bool], keys: list[tuple[int, int]], later: list[tuple[int, int]],
                     ) -> tuple[BaseException, list[tuple[int, int]], list[tuple[int, int]], bool] | None:  # fmt: skip
        """Record the call's runs ``keys`` now where calls follow it (``later``); where that fails, the failure to
        return (the call's runs and the later calls' queued again, uncounted: not their fault), their outcomes None."""
        if not later:
            return None
        try:
            self._finish(packs, outcomes, stored, [k for k in keys if outcomes[k[0]][k[1]][0] is not None])
        except BaseException as err:  # noqa: BLE001 - raised by the caller
            unstored = [k for k in keys if k not in stored]
            for j, i in unstored:
                outcomes[j][i] = (None, None)
            return err, [], unstored + later, False
        return None

    def _train_apart(self, outcomes: list[list[tuple[Outcome | None, RunResult | None]]], packs: list[_Started],
                     prepared: dict[tuple[int, int], tuple[Method, FrozenTrial, dict[str, Any], int, Split]],
                     units: list[list[tuple[int, int]]], said: str,
                     ) -> tuple[BaseException, list[tuple[int, int]], list[tuple[int, int]], bool] | None:  # fmt: skip
        """The runs of several units whose call raised (``said``), trained again unit by unit, with a
        warning.  Which unit raised is not known: the units that raise alone while another trains fail
        their trials (their error is their own); where every unit raises alone the error is the pack's
        (a device left broken, say), not a unit's, and every run is queued again (its draw's retries
        counted).  (A later round tries the units' shared pack again: a pack that fails as a whole is
        rare, and a round's verdict needs every unit's runs of that round.)"""
        warnings.warn(f"{said}; training each unit's runs apart instead", RuntimeWarning, stacklevel=4)
        failed: list[tuple[list[tuple[int, int]], BaseException]] = []
        for m, own in enumerate(units):
            try:
                results = self._train_call(prepared, own)
            except Exception as alone:  # noqa: BLE001 - raised by the caller
                traceback.clear_frames(alone.__traceback__)
                failed.append((own, alone))
            except BaseException as stop:  # noqa: BLE001 - Ctrl-C: the units that raised so far are not blamed
                for own_failed, error in failed:
                    stop.add_note(f"{packs[own_failed[0][0]].unit.label} had raised alone ({type(error).__name__}: {error})")
                return stop, own, [k for o, _ in failed for k in o] + [k for rest in units[m + 1 :] for k in rest], True
            else:
                unrecorded = self._record(outcomes, packs, prepared, own, results)
                if unrecorded is not None:  # (the units that raised so far are not blamed, as on Ctrl-C)
                    rest = [k for o, _ in failed for k in o] + [k for r in units[m + 1 :] for k in r]
                    return unrecorded, own, rest, isinstance(unrecorded, KeyboardInterrupt)
        if not failed:
            return None
        err = failed[0][1]
        if len(failed) == len(units):
            err.add_note(f"each of the {len(units)} units' runs raised apart too: no unit is blamed, and each run is "
                         "queued again while its draw has retries left")  # fmt: skip
            return err, [k for own in units for k in own], [], True
        for own, other in failed[1:]:
            err.add_note(f"{packs[own[0][0]].unit.label} raised alone too ({type(other).__name__}: {other})")
        return err, [k for own, _ in failed for k in own], [], False

    def _train_call(self, prepared: dict[tuple[int, int], tuple[Method, FrozenTrial, dict[str, Any], int, Split]],
                    keys: list[tuple[int, int]]) -> list[RunResult]:  # fmt: skip
        """Train the prepared runs ``keys`` (of one split): alone, or as one pack."""
        split = prepared[keys[0]][4]
        if len(keys) == 1:
            return [train_and_score(split, *self._run_args(prepared[keys[0]]))]
        methods, runs = [prepared[k][0] for k in keys], [(prepared[k][2], prepared[k][3]) for k in keys]
        return train_and_score_packed(split, methods, runs, self.spec)

    def _record(self, outcomes: list[list[tuple[Outcome | None, RunResult | None]]], packs: list[_Started],
                prepared: dict[tuple[int, int], tuple[Method, FrozenTrial, dict[str, Any], int, Split]],
                keys: list[tuple[int, int]], results: list[RunResult]) -> BaseException | None:  # fmt: skip
        """Each trained run's outcome: complete, with its selection score and its record (which says its
        pack's size and, for a unit that cannot pack, why it trained alone); all of the call's runs or,
        where forming them raises (a bug), none, and the error returned (to fail them as a training
        error does, not the runs that trained before)."""
        done = []
        try:
            for key, result in zip(keys, results):
                _, trial, _, seed, split = prepared[key]
                record = {"metrics": result.metrics, "curves": result.curves, "seed": seed, "worker": worker_id(),
                          "seconds": round(result.seconds, 4), "pack": len(keys)}  # fmt: skip
                if result.decided:
                    record[DECIDED_ATTR] = result.decided
                alone = self._alone(packs[key[0]], prepared[key][2], split)
                if alone is not None:
                    record[ALONE_ATTR] = alone
                record.update(environment=self.environment, sizes={"fit": len(split.y_fit), "scored": len(split.y_eval)})
                if split.validation is not None:
                    record[VALIDATION_ATTR] = split.validation
                metric = selection_metric(self.spec.selection_metric, split.task)
                value = result.metrics[metric]
                value = value if value == value else diverged_score(metric)  # a diverged run still counts
                done.append((key, (Outcome(trial._trial_id, TrialState.COMPLETE, value, {RUN_ATTR: record}), result)))
        except BaseException as err:  # noqa: BLE001 - returned to the caller, which raises it
            return err
        for (j, i), outcome in done:
            outcomes[j][i] = outcome
        return None

    def _run_args(self, prepared: tuple[Method, FrozenTrial, dict[str, Any], int, Split]) -> tuple[Any, ...]:
        """:func:`train_and_score`'s arguments after the split, for one prepared run."""
        method, _, params, seed, _ = prepared
        return method, params, self.spec, seed


def _as_finished(trial: FrozenTrial, asked: optuna.Trial | None, outcome: Outcome) -> FrozenTrial:
    """The started ``trial`` as the storage holds it once finished with ``outcome``."""
    done = copy.copy(trial)
    if asked is not None:
        done.params = {**trial.params, **asked.params}
        done.distributions = {**trial.distributions, **asked.distributions}
    done.state = outcome.state
    done.values = None if outcome.value is None else [outcome.value]
    done.datetime_complete = datetime.now()
    done.user_attrs = {**trial.user_attrs, **json.loads(json.dumps(outcome.user_attrs))}  # as stored: JSON
    return done


@dataclass
class _History:
    """A unit's sampler history (:meth:`Runner._history`): the study, the numbers of the stored trials it holds,
    in order, and the trials asked of it since it was last brought up to date."""

    study: optuna.Study
    numbers: list[int] = field(default_factory=list)
    asked: list[optuna.Trial] = field(default_factory=list)


def _for_sampler(trial: FrozenTrial) -> FrozenTrial:
    """What a sampler reads of a finished trial (its user attributes, the runs' curves, left out)."""
    light = copy.copy(trial)
    light.user_attrs = {}
    return light


class Heartbeats:
    """The heartbeats of the trials a worker runs, as ``study.optimize`` keeps one trial's: each
    trial beat when it started (:meth:`HeartbeatStorage.start_trials`), then all of a pack's beat
    every ``heartbeat_interval`` seconds, in one statement, from one thread that lives as long as
    the worker runs (the context).  A beat that fails (a busy database) is retried a second later,
    with a warning; only beats missed for the whole grace period let another worker fail the
    trials as stale."""

    RETRY_SECONDS = 1.0

    def __init__(self, storage: HeartbeatStorage) -> None:
        self.storage, self.interval = storage, storage.heartbeat_interval
        self._trial_ids: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="lossbench-heartbeats")

    @contextlib.contextmanager
    def beating(self, trial_ids: list[int]) -> Iterator[None]:
        """The trials beat while the block runs."""
        with self._lock:
            self._trial_ids = list(trial_ids)
        try:
            yield
        finally:
            with self._lock:
                self._trial_ids = []

    def _loop(self) -> None:
        wait = self.interval
        while not self._stop.wait(wait):
            with self._lock:
                trial_ids = self._trial_ids
            try:
                if trial_ids:
                    self.storage.record_heartbeats(trial_ids)
                wait = self.interval
            except Exception as err:  # noqa: BLE001 - said, and retried; the run goes on
                warnings.warn(f"a heartbeat could not be recorded ({type(err).__name__}: {err}); retrying",
                              RuntimeWarning, stacklevel=1)  # fmt: skip
                wait = self.RETRY_SECONDS

    def __enter__(self) -> Heartbeats:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


STALE = "stale: its worker stopped (its process ended here, or it sent no heartbeat for the grace period)"  # a stale trial's error


def _fail_stale(study: optuna.Study) -> None:
    """Fail the study's stale trials (their worker's process ended on this machine, or it stopped beating)
    and queue each again with its draw, in one transaction (:meth:`HeartbeatStorage.fail_trials`): Optuna's
    own check commits the failures before it queues the retries, and another worker in between drew new
    trials in their place."""
    storage = getattr(study._storage, "_backend", study._storage)  # (Optuna wraps an RDB storage in a cache)
    if getattr(storage, "heartbeat_interval", None) is None:  # (no heartbeats: nothing goes stale, as Optuna's)
        return
    stale = storage._get_stale_trial_ids(study._study_id)
    if stale:
        storage.fail_trials([(study._study_id, storage.get_trial(i)) for i in stale], STALE, retry=True, alone=True)
