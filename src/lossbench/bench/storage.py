"""Everything a study produces lives in Optuna's storage: a SQLite file by default, any
SQLAlchemy URL (e.g. PostgreSQL) when several workers on several machines share one study.

Layout: one metadata study named after the spec (its user attributes hold the spec itself), and
per (dataset, method) a ``tune`` study (the equal-budget search) and a ``final`` study (the
chosen configuration re-trained with several seeds).  Trials carry their metrics, per-epoch
curves, seed and worker in user attributes, so a report needs nothing but the storage.  The
attribute names and the rules that read them (a run's record, which tuning trial is the chosen
one, which final runs count) live here too: the runner and the reports share them, and reading a
report imports nothing of the runner.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import inspect
import json
import math
import os
import re
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna import distributions
from optuna.distributions import BaseDistribution
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb import models  # Optuna's own tables: the pack methods write its rows
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from lossbench._checks import first_few
from lossbench._paths import inside
from lossbench.bench import processes, stops
from lossbench.bench.metrics import selection_metric, task_of_metrics
from lossbench.bench.processes import WORKER_ATTR
from lossbench.bench.spec import Spec, SpecError, spec_from_json, spec_growth

SPEC_ATTR = "lossbench_spec"
FINGERPRINT_ATTR = "lossbench_fingerprint"
CREATED_ATTR = "lossbench_created"  # when the study was first recorded (unix time): a study deleted and run anew is a new one
HISTORY_ATTR = "lossbench_history"  # the fingerprints a grown study's spec replaced, and what each growth added
DATA_ATTR = "lossbench_data"  # per dataset label, the digest of the data the study's runs trained on
CODE_ATTR = "lossbench_plugins"  # per plugin, the digest of its code the study's runs ran (plugins.code_digests)
DB_FILE = "lossbench.db"
# The storage URL when no --storage is given: a password need not be on the command line (where
# any local user sees it in the process list).
STORAGE_ENV = "LOSSBENCH_STORAGE"
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_PATH_MAX = 512  # SQLite's unix VFS opens file names shorter than this (MAX_PATHNAME), in bytes
EMPTY_FILE_GRACE_S = 2.0  # a worker creating the file this moment leaves it empty for microseconds


def default_storage_url(out_dir: str | Path) -> str:
    """The SQLite file in ``out_dir`` (refused where it or a file SQLite keeps beside it is a link, which
    could point outside it), quoted as a URL: a '?' or '%' in the folder's name is part of the path, not a
    query string or an escape."""
    for beside in ("-wal", "-shm", "-journal"):
        inside(out_dir, DB_FILE + beside)
    database = str(inside(out_dir, DB_FILE))
    try:
        size = len(database.encode())
    except UnicodeEncodeError:  # (a name of bytes that are no UTF-8, as a Latin-1 system wrote it)
        raise ValueError(f"--out {out_dir}: its path is not UTF-8 text, which a storage URL must be; use a folder "
                         "named in UTF-8, or --storage sqlite:///<path>") from None  # fmt: skip
    longest = SQLITE_PATH_MAX - 1 - len("-journal")  # (the journal's path too, beside it)
    if size > longest:
        raise ValueError(f"--out {out_dir}: its database's path has {size} bytes, more than SQLite "
                         f"opens ({longest}); use a shorter --out, or --storage sqlite:///<shorter path>")  # fmt: skip
    return sqlalchemy.engine.URL.create("sqlite", database=database).render_as_string()


def storage_url(given: str | None, out_dir: str | Path | None) -> str:
    """``--storage``, else ``$LOSSBENCH_STORAGE``, else the SQLite file in ``out_dir`` (where
    ``out_dir`` is None, a storage is required)."""
    url = given or os.environ.get(STORAGE_ENV)
    if url:
        return url
    if out_dir is None:
        raise SpecError(f"no storage given: pass --storage URL or set ${STORAGE_ENV}")
    return default_storage_url(out_dir)


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL, which lossbench opens itself (:func:`_sqlite_connection`), else
    None.  Refused: a SQLite database in memory (by any driver), and for this one what would put the
    study elsewhere than the file the URL seems to name: a query string, a path starting with '~'."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):  # not a URL (or a port that is no number): check_storage_url says why
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    if parsed.database in (None, "", ":memory:"):  # (SQLAlchemy opens an empty path in memory too)
        raise SpecError(f"storage {url!r} is a SQLite database in memory: nothing would be kept and local workers "
                        "(--jobs) would not see it; give a file, e.g. sqlite:///study.db")  # fmt: skip
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite"):  # (pysqlite: Python's sqlite3, as lossbench opens it)
        raise SpecError(f"storage {url!r}: lossbench opens SQLite files itself, with Python's sqlite3; give the file "
                        f"as sqlite:///{parsed.database}")  # fmt: skip
    if "?" in url:  # (_sqlite_connection takes no connect arguments: it once made the query part of the file's name)
        raise SpecError(f"storage {url!r}: a SQLite URL takes no query string; give the file alone, "
                        f"e.g. sqlite:///{parsed.database}")  # fmt: skip
    if parsed.database.startswith("~"):
        raise SpecError(f"storage {url!r}: '~' is not expanded in a URL (a folder named '~' would be made); "
                        f"write the path out, e.g. sqlite:///{os.path.expanduser(parsed.database)}")  # fmt: skip
    return Path(parsed.database)


def check_sqlite_file(path: Path, create: bool) -> None:
    """Refuse what SQLite would silently turn into a new, empty database, or fail on later: a
    directory, an empty (0-byte), foreign or corrupt file (SQLite's quick check), a missing one where
    ``create`` is False."""
    if path.is_dir():
        raise SpecError(f"database {path} is a directory, not a SQLite file")
    if not path.exists():
        if not create:
            raise SpecError(f"no results database at {path}")
        return
    if not os.access(path, os.R_OK):
        raise SpecError(f"database {path} cannot be read (permission denied)")
    size = path.stat().st_size
    while size == 0 and time.time() - path.stat().st_mtime < EMPTY_FILE_GRACE_S:
        time.sleep(0.05)  # a fresh empty file: another worker may be creating it right now
        size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if size == 0 and create and any(path.with_name(path.name + end).exists() for end in ("-journal", "-wal")):
        return  # a database killed as SQLite created it: its journal rolls it back to a new one
    if size == 0:
        raise SpecError(f"database {path} is an empty (0-byte) file, not a lossbench database; "
                        "delete it to start a new study there")  # fmt: skip
    if head != SQLITE_MAGIC:
        raise SpecError(f"database {path} is not a SQLite file (it does not start with {SQLITE_MAGIC[:15].decode()!r})")
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            problems = [" ".join(text.split()) for (text,) in db.execute("PRAGMA quick_check(3)")]  # (ms for 15 MB)
    except sqlite3.OperationalError:
        return  # (busy, locked, or a read-only folder: opening the storage says so)
    except sqlite3.DatabaseError as err:
        raise SpecError(f"database {path} is corrupt ({err}); restore it from a copy") from None
    if problems != ["ok"]:
        raise SpecError(f"database {path} is corrupt (SQLite's quick check: {first_few(problems, 3, '; ')}); "
                        "restore it from a copy")  # fmt: skip
    if tables and "studies" not in tables:  # (Optuna's schema; an empty database is a new one)
        raise SpecError(f"database {path} is a SQLite file of something else (tables {first_few(sorted(tables))}), not a lossbench database")


# A failed trial of a dead or interrupted worker queued again with its parameters (and seed), its draw
# kept (``failed_trial``), at most this many times (HeartbeatStorage.fail_trials; Optuna's own stale
# check, which lossbench's runner does not use, the same by its callback).
MAX_RETRIES = 3
# Two processes creating one new database race to create its schema: the loser tries again, at most this often.
SCHEMA_ATTEMPTS = 3
# A retry of a run whose worker was killed (stale) trains, and is started, on its own: a kill fails every run
# of a pack, and counting it against each would give up a whole pack's draws after a few kills that at most
# one of them caused; alone, a later kill counts against the run it hit only.
RETRY_ALONE_ATTR = "retry_alone"
_SCHEMA_RACE = re.compile(r"already exists|UNIQUE constraint failed: alembic_version|duplicate key value", re.IGNORECASE)


def check_storage_url(url: str) -> None:
    """Refuse, before any work, a storage that cannot open for what its URL says: not a URL, an
    unknown database or a missing driver, a SQLite URL :func:`sqlite_path` refuses (in memory, say), or a
    SQLite file SQLite would misread.  Nothing is created and nothing connects (a server that is down is
    found when the storage opens)."""
    path = sqlite_path(url)
    if path is not None:
        check_sqlite_file(path, create=True)
        return
    try:
        from sqlalchemy.engine import make_url

        make_url(_with_driver(url)).get_dialect().import_dbapi()
    except Exception as err:  # (SQLAlchemy's and the drivers' many kinds)
        raise _storage_error(url, err) from None


def _with_driver(url: str) -> str:
    """``url`` with PostgreSQL's driver the ``postgres`` extra installs, psycopg2, where the URL names
    none: SQLAlchemy 2.1 made psycopg 3 the default, so ``postgresql://`` asked for a driver not installed."""
    # (installed, not imported: a psycopg2 that fails to import then says why, not that psycopg 3 is missing)
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def _storage_error(url: str, err: Exception) -> SpecError:
    reason = " ".join(masked_text(str(err), url).split())  # drivers write several lines
    if isinstance(err, ImportError) and url.split("://")[0] in ("postgresql", "postgresql+psycopg2"):
        reason += " (PostgreSQL's driver comes with lossbench's postgres extra: pip install 'lossbench[postgres]')"
    elif isinstance(err, ImportError):
        reason += " (lossbench's storages are SQLite, built in, and PostgreSQL: pip install 'lossbench[postgres]')"
    return SpecError(f"cannot open storage {masked(url)!r}: {type(err).__name__}: {reason}")


def open_storage(
    url: str, heartbeat_interval: int | None = None, *, create: bool = True, reading: bool = False
) -> RDBStorage:
    """An RDB storage; with a heartbeat, trials of a killed worker are failed and retried.

    A trial whose heartbeat stops for ``3 x heartbeat_interval`` seconds is marked failed and a
    copy with the same parameters (and seed) is queued, so an interrupted run is re-done once
    and never counted twice (only complete trials count).  A SQLite file is checked first
    (:func:`check_sqlite_file`); without ``create`` it must exist.  ``reading``: the caller only
    reads (a report), so a SQLite file that cannot be written is opened for reading, not refused.
    """
    engine_kwargs = {}
    path = sqlite_path(url)
    if path is not None and _read_only(path):
        engine_kwargs = {"creator": _read_only_connection(path, reading)}
        check_sqlite_file(path, create)
    elif path is not None:
        check_sqlite_file(path, create)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SpecError(f"cannot create the folder of database {path}: {err.strerror or err}") from None
        engine_kwargs = {"creator": lambda: _sqlite_connection(path)}
    try:
        with warnings.catch_warnings():
            # Heartbeats and their retry callback are marked experimental; they are what we rely on.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            kwargs = {}
            if heartbeat_interval is not None:
                kwargs = {
                    "heartbeat_interval": heartbeat_interval,
                    "grace_period": 3 * heartbeat_interval,
                    "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES),
                }
            for attempt in range(SCHEMA_ATTEMPTS):
                try:
                    return HeartbeatStorage(_with_driver(url), engine_kwargs=engine_kwargs, **kwargs)
                except sqlalchemy.exc.DatabaseError as err:
                    # Two processes creating one new storage's tables at once: the second meets the first's
                    # (a table that "already exists", Optuna's version row twice); the tables are whole by
                    # the time it fails, and opening again finds them.
                    if attempt + 1 == SCHEMA_ATTEMPTS or not _SCHEMA_RACE.search(str(err)):
                        raise
                    time.sleep(0.1 * (attempt + 1))
    except Exception as err:  # SQLAlchemy raises many kinds; all mean the same to the user
        raise _storage_error(url, err) from None
    raise AssertionError("unreachable")  # (the loop returns or raises)


def masked(url: str) -> str:
    """The URL with its password replaced by ***: what any message may show."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: hide anything between ':' and '@'
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def masked_text(text: str, url: str) -> str:
    """``text`` with the URL's password, wherever it appears (as written in the URL or decoded),
    replaced by ***."""
    raw = re.search(r"://[^:/@]*:([^@]*)@", url)
    passwords = {raw.group(1)} if raw else set()
    try:
        from sqlalchemy.engine import make_url

        passwords.add(make_url(url).password)
    except Exception:
        pass
    for password in sorted(p for p in passwords if p):  # any order: *** holds neither
        text = text.replace(password, "***")
    return text


@dataclass(frozen=True)
class Outcome:
    """How a started trial ends: its state, its value (None unless complete) and user attributes."""

    trial_id: int
    state: TrialState
    value: float | None = None
    user_attrs: dict[str, Any] = field(default_factory=dict)


class HeartbeatStorage(RDBStorage):
    """Optuna's RDB storage, with a trial's state taken by conditional updates, trials without a
    heartbeat failed as stale too, and a pack of trials started and finished in a few statements.

    A worker killed after Optuna's ``ask`` created its trial but before the trial's first beat
    leaves a RUNNING trial without a heartbeat row, which Optuna never fails: the study would wait
    on it for ever (:meth:`start_trials` records the first beat with the trial; other tools and
    older workers may not).  Here such a trial is stale once it started more than the grace period ago
    (by the clocks of the worker that started it and the one checking, which should agree to
    within the grace period), and is failed and retried like any other.  A trial started by
    :meth:`start_trials` records its worker process (:mod:`lossbench.bench.processes`): where that process
    is gone from this machine, the trial is stale at once (a killed run resumed here retries its runs
    before asking new draws, as an uninterrupted one would have them).

    The pack methods (:meth:`start_trials`, :meth:`queue_trials`, :meth:`set_trials_params`,
    :meth:`record_heartbeats`, :meth:`finish_trials`) write the rows Optuna's own ``ask``, ``tell``
    and ``enqueue_trial`` write, with Optuna's models, in one transaction per pack instead of a
    dozen statements per trial; every change of a trial's state is still one conditional UPDATE,
    so two workers never both take, or both finish, one trial.
    """

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        """As Optuna's, but a queued trial is taken (WAITING -> RUNNING) and a running one finished
        without values (a stale trial failed) by one conditional UPDATE each.

        Optuna reads the trial's state and then writes the new one; SQLite has no row locks, so two
        workers popping the same queued trial (a retry, an evaluation seed) could both take it and
        both train it, and two failing the same stale trial could both fail it and both queue a retry
        (the draw then trained twice), or fail one its worker had just finished.  One ``UPDATE ...
        WHERE state = WAITING`` (``RUNNING``) lets exactly one succeed.
        """
        if values is None and state == TrialState.RUNNING:
            with self._transaction() as session:
                changed = _take(session, trial_id)
        elif values is None and state.is_finished():
            with self._transaction() as session:
                changed = bool(_finish(session, [trial_id], state, _stored_datetime(datetime.now(), "datetime_complete")))
            if not changed and self.get_trial(trial_id).state == TrialState.WAITING:  # (a queued trial finished: Optuna's)
                return super().set_trial_state_values(trial_id, state, values)
        else:
            return super().set_trial_state_values(trial_id, state, values)
        if not changed:
            self.check_trial_is_updatable(trial_id, self.get_trial(trial_id).state)  # a finished trial raises, as Optuna's
        return changed

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale = super()._get_stale_trial_ids(study_id)
        grace = self.grace_period if self.grace_period is not None else 2 * self.heartbeat_interval
        cutoff = datetime.now() - timedelta(seconds=grace)
        with self._transaction() as session:  # the query Optuna's own check makes, widened
            running = (
                session.query(models.TrialModel)
                .filter(models.TrialModel.state == TrialState.RUNNING)
                .filter(models.TrialModel.study_id == study_id)
                .filter(~models.TrialModel.heartbeats.any())
                .all()
            )
            silent = [t.trial_id for t in running if t.datetime_start is not None and t.datetime_start < cutoff]
            dead = _dead_workers_trials(session, study_id)
        return stale + [trial_id for trial_id in dict.fromkeys(silent + dead) if trial_id not in stale]

    def delete_spec_studies(self, spec_names: Sequence[str]) -> tuple[int, int]:
        """Delete the studies ``spec_names`` and their units' studies (:func:`study_name`) with all their trials,
        in one transaction, so that they run anew with none of their old runs beside the new ones; refused (a
        ``SpecError``, nothing deleted) where a worker runs any of their trials (those a killed worker left
        running count until they are stale).  Returns the numbers of studies and trials deleted."""
        studies, trials = models.StudyModel, models.TrialModel

        def running(session: Session, ids: list[int]) -> list[tuple[int, int]]:
            return session.execute(select(trials.study_id, trials.trial_id).where(
                trials.study_id.in_(ids), trials.state == TrialState.RUNNING)).all()  # fmt: skip

        # The stale trials first, in transactions of their own (a nested one would commit this one's locks): a
        # trial started after is running and not stale, so the check below errs on the side of refusing.
        with self._transaction() as session:
            ran = {study_id for study_id, _ in running(session, _spec_study_ids(session, spec_names))}
        stale = {i for study_id in ran for i in self._get_stale_trial_ids(study_id)}
        with self._transaction() as session:
            ids = sorted(_spec_study_ids(session, spec_names))  # (locked in id order, as fail_trials locks them)
            for study_id in ids:  # no worker starts or finishes a trial of them until this transaction ends
                _lock_study(session, study_id, at_once=True)
            if session.get_bind().dialect.name != "sqlite":  # (taking a queued trial locks its row, not the study's)
                session.execute(select(trials.trial_id).where(trials.study_id.in_(ids)).with_for_update())
            live = [i for _, i in running(session, ids) if i not in stale]
            if live:
                raise SpecError(f"{len(live)} run(s) of {', '.join(map(repr, spec_names))} in progress in a worker: "
                                "stop it, or wait until they end, before running the study anew")  # fmt: skip
            count = session.scalar(select(func.count()).select_from(trials).where(trials.study_id.in_(ids)))
            for study in session.scalars(select(studies).where(studies.study_id.in_(ids))):
                session.delete(study)  # (Optuna's relationships delete its trials, their parameters and attributes)
        return len(ids), count or 0

    def first_run_started(self, spec_name: str) -> float | None:
        """When the first stored run of the study ``spec_name`` started (unix time; None where none is stored):
        the trial of it or its units' studies that started first (not the one made first: a queued seed waits)."""
        trials = models.TrialModel.__table__
        with self._transaction() as session:
            ids = _spec_study_ids(session, [spec_name])
            first = session.scalar(select(trials.c.trial_id).where(
                trials.c.study_id.in_(ids), trials.c.datetime_start.is_not(None)).order_by(trials.c.datetime_start).limit(1))  # fmt: skip
        # (the start as Optuna reads it back: local time, stored as UTC or local by its version)
        return None if first is None else self.get_trial(first).datetime_start.timestamp()

    # -- a pack of trials ----------------------------------------------------------------------

    def state_counts(self, study_id: int) -> dict[TrialState, int]:
        """How many trials of the study are in each state, in one statement: a trial is created or
        changes state only forwards (waiting, running, finished), so any change by any worker
        changes these counts; equal counts mean nothing changed since a worker last looked."""
        with self._transaction() as session:
            return _state_counts(session, study_id)

    def start_trials(
        self, study_id: int, count: int, waiting: Sequence[FrozenTrial], create: bool = True,
        expect: Mapping[TrialState, int] | None = None,
    ) -> list[FrozenTrial] | None:  # fmt: skip
        """Start up to ``count`` trials, each with its first heartbeat, in one transaction: the
        ``waiting`` trials first, in their order (one another worker took meanwhile is skipped),
        then, with ``create``, new ones for the rest.  Returns them as RUNNING frozen trials; None,
        with nothing started, where the study's trials by state are no longer ``expect`` (what the
        caller counted them to decide how many to create: another worker decided meanwhile)."""
        now = datetime.now()
        with self._transaction() as session:
            if expect is not None and not _unchanged(session, study_id, expect):
                return None
            taken = []
            for trial in waiting:
                if len(taken) == count:
                    break
                if _take(session, trial._trial_id, now):
                    running = copy.deepcopy(trial)  # (the caller's is a cached read)
                    running.state, running.datetime_start = TrialState.RUNNING, now
                    taken.append(running)
            new = _insert_trials(session, study_id, count - len(taken) if create else 0, TrialState.RUNNING, now)
            started = taken + [_new_trial(trial_id, number, TrialState.RUNNING, now) for trial_id, number in new]
            if started:  # the beat lands with the trial: no instant where a started trial has none
                session.execute(insert(models.TrialHeartbeatModel.__table__), [{"trial_id": t._trial_id} for t in started])
                # (so that a worker here retries them at once should this one die; a queued trial may hold a
                # copy of a dead trial's record, which names another trial: replaced)
                if processes.can_tell():
                    records = [(t._trial_id, {WORKER_ATTR: processes.this_process(t._trial_id)}) for t in started]
                    system = models.TrialSystemAttributeModel
                    _insert_attrs(session, system, records[: len(taken)], replace=True)
                    _insert_attrs(session, system, records[len(taken) :])
                    for t, (_, record) in zip(started, records):
                        t.system_attrs.update(record)
        return started

    def queue_trials(
        self, study_id: int, fixed_params: dict[str, Any], user_attrs: Sequence[dict[str, Any]],
        expect: Mapping[TrialState, int] | None = None,
    ) -> list[FrozenTrial] | None:  # fmt: skip
        """Queue one WAITING trial per entry of ``user_attrs``, each to run with ``fixed_params``,
        in one transaction: what Optuna's ``enqueue_trial`` stores, for many trials at once.  None,
        with nothing queued, where the study's trials by state are no longer ``expect`` (as
        :meth:`start_trials`: two workers that found the same runs missing would queue them twice)."""
        with self._transaction() as session:
            if expect is not None and not _unchanged(session, study_id, expect):
                return None
            new = _insert_trials(session, study_id, len(user_attrs), TrialState.WAITING, None)
            system = {"fixed_params": fixed_params}
            _insert_attrs(session, models.TrialSystemAttributeModel, [(trial_id, system) for trial_id, _ in new])
            attrs = [(trial_id, a) for (trial_id, _), a in zip(new, user_attrs)]
            _insert_attrs(session, models.TrialUserAttributeModel, attrs)
        return [
            _new_trial(trial_id, number, TrialState.WAITING, None, dict(a), copy.deepcopy(system))
            for (trial_id, number), a in zip(new, user_attrs)
        ]

    def set_trials_params(self, params: Sequence[tuple[int, str, Any, BaseDistribution]]) -> None:
        """Record ``(trial_id, name, value, distribution)`` parameters of started trials in one statement."""
        if params:
            with self._transaction() as session:
                _insert_params(session, params)

    def record_heartbeats(self, trial_ids: Sequence[int]) -> None:
        """One heartbeat for each of the trials (started by :meth:`start_trials`), in one statement."""
        beats = models.TrialHeartbeatModel.__table__
        with self._transaction() as session:
            session.execute(update(beats).where(beats.c.trial_id.in_(trial_ids)).values(heartbeat=func.current_timestamp()))

    def finish_trials(self, outcomes: Sequence[Outcome]) -> list[int]:
        """Finish the trials with their outcomes in one transaction; returns the ids of those
        finished here.  A trial no longer running (failed as stale by another worker while this one
        was paused) is left as it is, its outcome not recorded."""
        complete = _stored_datetime(datetime.now(), "datetime_complete")
        with self._transaction() as session:
            finished: set[int] = set()
            for state in dict.fromkeys(o.state for o in outcomes):  # one UPDATE per state, in a fixed order
                finished |= _finish(session, [o.trial_id for o in outcomes if o.state == state], state, complete)
            done = [o for o in outcomes if o.trial_id in finished]
            _insert_attrs(session, models.TrialUserAttributeModel, [(o.trial_id, o.user_attrs) for o in done], replace=True)
            values = [(o.trial_id, models.TrialValueModel.value_to_stored_repr(o.value)) for o in done if o.value is not None]
            if values:
                rows = [{"trial_id": i, "objective": 0, "value": v, "value_type": kind} for i, (v, kind) in values]
                session.execute(insert(models.TrialValueModel.__table__), rows)
        return [o.trial_id for o in done]

    def fail_trials(self, trials: Sequence[tuple[int, FrozenTrial]], reason: str, retry: bool, counted: bool = True,
                    alone: bool = False) -> list[int]:  # fmt: skip
        """Fail the running trials ``(study_id, trial as stored)`` with the error ``reason`` and, with
        ``retry``, queue a copy of each failed here as Optuna's retry of a stale trial does (its
        parameters and attributes but the error, the draw it retries, at most ``MAX_RETRIES`` times;
        without ``counted``, a run stopped for no fault of its own, the retry is not counted against
        them; with ``alone``, each copy marked to train and start alone, :data:`RETRY_ALONE_ATTR`), in one
        transaction: no worker sees them failed before their retries are queued (it would draw new trials
        in their place).  Returns the ids failed here (the others were no longer running)."""
        complete = _stored_datetime(datetime.now(), "datetime_complete")
        given_up = []
        with self._transaction() as session:
            # The studies' rows first, in a fixed order, as every writer that locks both (the delete of --fresh,
            # a trial's creation) takes them: a retry's creation locks its study after _finish locked the trials
            for study_id in sorted({study_id for study_id, _ in trials}) if retry else ():
                _lock_study(session, study_id)
            failed = _finish(session, [t._trial_id for _, t in trials], TrialState.FAIL, complete)
            _insert_attrs(session, models.TrialUserAttributeModel, [(i, {ERROR_ATTR: reason}) for i in failed], replace=True)
            for study_id, trial in trials if retry else ():
                own = {k: v for k, v in trial.system_attrs.items() if k != WORKER_ATTR}  # (the retry's worker records its own)
                system = {"failed_trial": trial.number, "retry_history": [], **own}
                # (a run killed before its pack stored its parameters never trained: not counted, and retried
                # with its pack-mates, asked together again as before, so that TPE draws what it drew)
                trained = bool(trial.params)
                if alone and trained:
                    system[RETRY_ALONE_ATTR] = True
                if counted and (trained or not alone):
                    system["retry_history"] = [*system["retry_history"], trial.number]
                if trial._trial_id not in failed:
                    continue
                if len(system["retry_history"]) > MAX_RETRIES:
                    given_up.append(f"trial {system['failed_trial']} (failed as trials {system['retry_history']})")
                    continue
                ((copy_id, _),) = _insert_trials(session, study_id, 1, TrialState.WAITING, None)
                _insert_attrs(session, models.TrialSystemAttributeModel, [(copy_id, system)])
                user = {k: v for k, v in trial.user_attrs.items() if k != ERROR_ATTR}
                _insert_attrs(session, models.TrialUserAttributeModel, [(copy_id, user)])
                _insert_params(session, [(copy_id, name, value, trial.distributions[name]) for name, value in trial.params.items()])
        if given_up:  # a tuning draw is then replaced by a new one: the study no longer tunes what it would have
            warnings.warn(f"{len(given_up)} run(s) failed {MAX_RETRIES + 1} times and are not retried again: "
                          f"{', '.join(given_up)}; last error: {reason}", stacklevel=3)  # fmt: skip (3: past stops' wrapper)
        return [t._trial_id for _, t in trials if t._trial_id in failed]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Session]:
        session = self.scoped_session()
        try:
            yield session
            session.commit()
        except BaseException as err:
            _roll_back(session, err)
            raise
        finally:
            session.close()


# Every call of the storage, Optuna's own included (its cached storage calls private ones too), with stop
# signals held until it returns (bench.stops: an interrupt inside a commit left the transaction half-done
# and SQLite's write lock held).
for _name in dir(HeartbeatStorage):
    if not _name.startswith("__") and inspect.isfunction(inspect.getattr_static(HeartbeatStorage, _name)):  # (methods)
        setattr(HeartbeatStorage, _name, stops.held(getattr(HeartbeatStorage, _name)))


def _stored_datetime(when: datetime, column: str) -> datetime | None:
    """``when`` (local time) as Optuna's ``trials`` table stores it in ``column`` (Optuna 5
    converts to naive UTC on the model; older versions store local time): asked of the model."""
    probe = models.TrialModel(**{column: when})
    key = sqlalchemy.inspect(models.TrialModel).get_property_by_column(models.TrialModel.__table__.c[column]).key
    return getattr(probe, key)


def _finish(session: Session, trial_ids: list[int], state: TrialState, when: datetime | None) -> set[int]:
    """RUNNING -> ``state`` by conditional UPDATE: the ids of the trials this update finished (one
    statement where the database returns updated rows, else one per trial)."""
    trials = models.TrialModel.__table__
    query = update(trials).where(trials.c.trial_id.in_(trial_ids), trials.c.state == TrialState.RUNNING)
    query = query.values(state=state, datetime_complete=when)
    if session.get_bind().dialect.update_returning:
        return {trial_id for (trial_id,) in session.execute(query.returning(trials.c.trial_id))}
    return {trial_id for trial_id in trial_ids if session.execute(query.where(trials.c.trial_id == trial_id)).rowcount}


def _dead_workers_trials(session: Session, study_id: int) -> list[int]:
    """The study's running trials whose worker process is gone from this machine (:func:`processes.gone`):
    stale at once, without waiting for their heartbeats to age (one statement, none off Linux)."""
    if not processes.can_tell():
        return []
    trials, attrs = models.TrialModel.__table__, models.TrialSystemAttributeModel.__table__
    rows = session.execute(
        select(attrs.c.trial_id, attrs.c.value_json)
        .join(trials, trials.c.trial_id == attrs.c.trial_id)
        .where(trials.c.study_id == study_id, trials.c.state == TrialState.RUNNING, attrs.c.key == WORKER_ATTR)
    ).all()
    return [trial_id for trial_id, value in rows if processes.gone(_json_or_none(value), trial_id)]


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _take(session: Session, trial_id: int, now: datetime | None = None) -> bool:
    """WAITING -> RUNNING by one conditional UPDATE: True for the one worker whose update landed."""
    trials = models.TrialModel.__table__
    start = _stored_datetime(now or datetime.now(), "datetime_start")
    query = update(trials).where(trials.c.trial_id == trial_id, trials.c.state == TrialState.WAITING)
    return bool(session.execute(query.values(state=TrialState.RUNNING, datetime_start=start)).rowcount)


def _spec_study_ids(session: Session, spec_names: Sequence[str]) -> list[int]:
    """The ids of the studies ``spec_names`` and of their units' studies (:func:`study_name`)."""
    prefixes = tuple(f"{name}:{stage}:" for name in spec_names for stage in ("tune", "final"))
    studies = models.StudyModel
    # (names compared here: SQL's LIKE ignores case on SQLite)
    return [i for i, name in session.execute(select(studies.study_id, studies.study_name))
            if name in spec_names or name.startswith(prefixes)]  # fmt: skip


def _lock_study(session: Session, study_id: int, at_once: bool = False) -> None:
    """Take the study's row lock until the session's transaction ends, so that writers of what the
    study holds queue instead of interleaving.  SQLite has no row locks (the statement would only
    read): there a transaction's first write takes the one writer lock, which serialises them;
    ``at_once`` takes it now, by a write that changes nothing, so that what the transaction reads
    next no other writer changes before it ends."""
    if session.get_bind().dialect.name != "sqlite":
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
    elif at_once:
        studies = models.StudyModel.__table__
        session.execute(update(studies).where(studies.c.study_id == study_id).values(study_name=studies.c.study_name))


def _state_counts(session: Session, study_id: int) -> dict[TrialState, int]:
    trials = models.TrialModel.__table__
    query = select(trials.c.state, func.count()).where(trials.c.study_id == study_id).group_by(trials.c.state)
    return dict(session.execute(query).all())


def _unchanged(session: Session, study_id: int, expect: Mapping[TrialState, int]) -> bool:
    """Whether the study's trials by state are ``expect`` (zero counts left out), read under its lock."""
    _lock_study(session, study_id, at_once=True)
    return _state_counts(session, study_id) == {state: n for state, n in expect.items() if n}


def _insert_trials(
    session: Session, study_id: int, count: int, state: TrialState, start: datetime | None
) -> list[tuple[int, int]]:
    """``(trial_id, number)`` of ``count`` new trials, numbered after every earlier trial of the
    study as Optuna numbers them: each row's number is the study's count of trials as it is
    inserted, under the study's lock (a row lock where the database has them; SQLite's one writer
    lock, which its INSERT takes before it counts, serialises writers there)."""
    if count <= 0:
        return []
    _lock_study(session, study_id)
    trials = models.TrialModel.__table__
    c = trials.c
    row = select(
        func.count(), sqlalchemy.bindparam("sid", type_=c.study_id.type), sqlalchemy.bindparam("state", type_=c.state.type),
        sqlalchemy.bindparam("start", type_=c.datetime_start.type),
    ).select_from(trials).where(c.study_id == sqlalchemy.bindparam("sid"))  # fmt: skip
    when = _stored_datetime(start, "datetime_start") if start is not None else None
    session.execute(insert(trials).from_select(["number", "study_id", "state", "datetime_start"], row),
                    [{"sid": study_id, "state": state, "start": when}] * count)  # fmt: skip
    latest = select(c.trial_id, c.number).where(c.study_id == study_id).order_by(c.trial_id.desc()).limit(count)
    new = [tuple(r) for r in reversed(session.execute(latest).all())]
    if [number for _, number in new] != list(range(new[0][1], new[0][1] + count)):  # the lock let another writer in
        raise RuntimeError(f"study {study_id}: trials created at once got the numbers {[n for _, n in new]}")
    return new


def _insert_attrs(session: Session, model: type, attrs: Sequence[tuple[int, dict[str, Any]]], replace: bool = False) -> None:
    """User or system attributes ``(trial_id, {key: value})`` in one statement (JSON, as Optuna
    stores them); with ``replace``, the same keys stored before (a retry's copy) go first."""
    rows = [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for trial_id, a in attrs for k, v in a.items()]
    if not rows:
        return
    table = model.__table__
    if replace:
        pairs = [(r["trial_id"], r["key"]) for r in rows]
        session.execute(delete(table).where(sqlalchemy.tuple_(table.c.trial_id, table.c.key).in_(pairs)))
    session.execute(insert(table), rows)


def _insert_params(session: Session, params: Sequence[tuple[int, str, Any, BaseDistribution]]) -> None:
    """``(trial_id, name, value, distribution)`` parameters in one statement, as Optuna stores them."""
    rows = [
        {"trial_id": trial_id, "param_name": name, "param_value": dist.to_internal_repr(value),
         "distribution_json": distributions.distribution_to_json(dist)}
        for trial_id, name, value, dist in params
    ]  # fmt: skip
    if rows:
        session.execute(insert(models.TrialParamModel.__table__), rows)


def _new_trial(
    trial_id: int, number: int, state: TrialState, start: datetime | None,
    user_attrs: dict[str, Any] | None = None, system_attrs: dict[str, Any] | None = None,
) -> FrozenTrial:  # fmt: skip
    return FrozenTrial(
        number=number, state=state, value=None, values=None, datetime_start=start, datetime_complete=None, params={},
        distributions={}, user_attrs=user_attrs or {}, system_attrs=system_attrs or {}, intermediate_values={},
        trial_id=trial_id,
    )  # fmt: skip


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def _read_only(path: Path) -> bool:
    """Whether an existing database lies where it cannot be written (a read-only file, folder or file system)."""
    return path.is_file() and not (_writable(path) and _writable(path.parent))


def _read_only_connection(path: Path, reading: bool) -> Callable[[], sqlite3.Connection]:
    """Connections for reading a database that cannot be written (a report of a copy on read-only
    media, say); refused, before any work, to a command that writes (not ``reading``).  SQLite reads
    a database in write-ahead-log mode through a shared-memory file beside it, made where the folder
    allows; where it cannot be made and none is there, no process has the database open (a writer
    keeps one), so the file is read as immutable, and a log left beside it cannot be read at all."""
    if not reading:
        raise SpecError(f"database {path} cannot be written (read-only file, folder or file system) and this "
                        "command writes to it; copy it to a writable folder")  # fmt: skip
    uri = path.resolve().as_uri()
    log, shared = (path.with_name(path.name + end) for end in ("-wal", "-shm"))
    if shared.is_file() or _writable(path.parent):
        return lambda: sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
    if log.is_file() and log.stat().st_size > 0:
        raise SpecError(f"database {path} cannot be written and its write-ahead log {log.name} cannot be read there "
                        f"without its {shared.name} file; copy the database with its log to a writable folder")  # fmt: skip
    return lambda: sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)


def _sqlite_connection(path: Path) -> sqlite3.Connection:
    """A connection tuned for several local workers sharing one file.

    Write-ahead logging lets readers proceed while a worker writes, and ``synchronous=NORMAL``
    skips the fsync of every commit (a transaction survives a killed process; only a power
    cut can lose the last few).  The timeout makes a busy writer wait instead of failing.
    """
    conn = sqlite3.connect(str(path), timeout=120, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def study_name(spec_name: str, stage: str, dataset: str, method: str) -> str:
    return f"{spec_name}:{stage}:{dataset}:{method}"


def check_study_names(spec: Spec) -> None:
    """Every study name fits Optuna's column (VARCHAR(512): PostgreSQL and MySQL refuse longer
    values, SQLite keeps them) and is its unit's own, checked before a new spec is stored: a ``:`` in
    a method's name or a data set's parameters can spell two units' names alike, and the second
    unit's runs would be the first's."""
    from optuna.storages._rdb.models import MAX_INDEXED_STRING_LENGTH

    units: dict[str, tuple[str, str]] = {}
    for dataset, method in spec.units():
        name = study_name(spec.name, "final", dataset.label, method.name)  # "final" is the longer stage
        other = units.setdefault(name, (dataset.label, method.name))
        if other != (dataset.label, method.name):
            raise SpecError(
                f"spec {spec.name[:40]!r}: method {method.name!r} on {dataset.label!r} and method {other[1]!r} on "
                f"{other[0]!r} would share the study {name!r}; rename a method or give a data set a label"
            )
        if len(name) > MAX_INDEXED_STRING_LENGTH:
            raise SpecError(
                f"spec {spec.name[:40]!r}: study name {name[:60]!r}... has {len(name)} characters; Optuna "
                f"stores at most {MAX_INDEXED_STRING_LENGTH} (shorten the spec name, the dataset label or the method name)"
            )


def register_spec(storage: optuna.storages.BaseStorage, spec: Spec) -> list[str]:
    """Record the spec in storage; refuse a different spec under the same name, unless it grows the
    stored one (:func:`~lossbench.bench.spec.spec_growth`: more trials or seeds, new datasets or
    methods, all else equal), which then replaces it, the replaced fingerprints kept in order under
    ``lossbench_history``.  Returns what grew (empty for a new or an unchanged spec)."""
    study = optuna.create_study(storage=storage, study_name=spec.name, load_if_exists=True)
    attrs = study.user_attrs
    stored = attrs.get(FINGERPRINT_ATTR)
    if stored is None:
        check_study_names(spec)
        set_study_attrs(storage, study, {SPEC_ATTR: spec.to_json(), FINGERPRINT_ATTR: spec.fingerprint(),
                                         CREATED_ATTR: time.time()})  # fmt: skip
        return []
    if stored == spec.fingerprint():
        return []
    other = other_plugins(attrs[SPEC_ATTR], spec.plugins)
    grown, changed = ([], [other]) if other else spec_growth(spec_from_json(attrs[SPEC_ATTR]), spec)
    if changed:
        raise SpecError(
            f"the storage already holds a study {spec.name!r} run with a different spec ({first_few(changed, 3, '; ')}); a stored study "
            f"only grows (more trials or seeds, new datasets or methods); give the changed spec a new name, "
            f"or use another --out / --storage"
        )
    check_study_names(spec)
    grown = grown or ["datasets or methods reordered"]
    history = [*attrs.get(HISTORY_ATTR, []), {"fingerprint": stored, "grown": grown}]
    set_study_attrs(storage, study, {HISTORY_ATTR: history, SPEC_ATTR: spec.to_json(), FINGERPRINT_ATTR: spec.fingerprint()})
    return grown


def check_inputs(storage: optuna.storages.BaseStorage, name: str, data: dict[str, str],
                 code: dict[str, str]) -> dict[str, dict[str, str]]:  # fmt: skip
    """Refuse data or plugin code that differ from those stored study ``name`` ran with (a changed file, a
    relative path read from another folder, a changed loader, an edited model: its runs would mix two
    data sets, or two models, in one leaderboard), before anything is written.  ``data``: per dataset
    label, the digest of its data; ``code``: per plugin, that of its code.  Returns the study attributes
    that hold them: the stored digests and those new to the study."""
    try:
        attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(name))
    except KeyError:  # a new study
        attrs = {}
    stored_data, stored_code = attrs.get(DATA_ATTR, {}), attrs.get(CODE_ATTR, {})
    remedy = "give the spec a new name, or use another --out / --storage"
    for label, digest in data.items():
        if stored_data.get(label, digest) != digest:
            raise SpecError(f"dataset {label!r}: its data differ from those study {name!r} was run on (digest {digest}, "
                            f"stored {stored_data[label]}): a changed file, a relative path read from another folder or "
                            f"a changed loader; {remedy}")  # fmt: skip
    for plugin, digest in code.items():
        if stored_code.get(plugin, digest) != digest:
            raise SpecError(f"plugin {plugin!r}: its code differs from the code study {name!r} was run with (digest "
                            f"{digest}, stored {stored_code[plugin]}): its runs would mix two versions of it; {remedy}")  # fmt: skip
    return {DATA_ATTR: {**stored_data, **data}, CODE_ATTR: {**stored_code, **code}}


def record_inputs(storage: optuna.storages.BaseStorage, name: str, data: dict[str, str], code: dict[str, str]) -> None:
    """Store the digests :func:`check_inputs` checked with study ``name``, merged with those stored now
    (read again: another worker may have stored new data sets' meanwhile, and its merge stays)."""
    attrs = check_inputs(storage, name, data, code)
    study = optuna.load_study(study_name=name, storage=storage)
    changed = {key: value for key, value in attrs.items() if study.user_attrs.get(key, {}) != value}
    if changed:
        set_study_attrs(storage, study, changed)


def study_created(storage: optuna.storages.BaseStorage, name: str) -> float | None:
    """When study ``name`` was first recorded (unix time; None where it is not stored, or was stored before
    this was recorded)."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    return storage.get_study_user_attrs(study_id).get(CREATED_ATTR)


def stored_fingerprint(storage: optuna.storages.BaseStorage, name: str) -> str | None:
    """The fingerprint of the spec stored as study ``name`` (None where there is none)."""
    study_id = storage.get_study_id_from_name(name)
    return storage.get_study_user_attrs(study_id).get(FINGERPRINT_ATTR)


def set_study_attrs(storage: optuna.storages.BaseStorage, study: optuna.Study, attrs: dict[str, Any]) -> None:
    """Set the study's user attributes together: in one transaction in an RDB storage, so a reader
    never sees some of them new and the others old.  Workers that set the same attribute at once
    (each storing a unit's choice as it finishes tuning) take turns: otherwise, under PostgreSQL,
    each deletes the old row before either inserts, and the second insert breaks the key's uniqueness."""
    if not isinstance(storage, RDBStorage):
        for key, value in attrs.items():  # (in memory: one process, nothing reads in between)
            study.set_user_attr(key, value)
        return
    table = models.StudyUserAttributeModel.__table__
    rows = [{"study_id": study._study_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()]
    with contextlib.closing(storage.scoped_session()) as session:
        try:
            _lock_study(session, study._study_id)
            session.execute(delete(table).where(table.c.study_id == study._study_id, table.c.key.in_(list(attrs))))
            session.execute(insert(table), rows)
            session.commit()
        except BaseException as err:
            _roll_back(session, err)
            raise


def _roll_back(session: Session, err: BaseException) -> None:
    """Roll back the session whose work raised ``err``: where the rollback fails too (the connection that
    failed the work is gone), ``err`` stays the error raised and the rollback's is noted on it."""
    try:
        session.rollback()
    except Exception as also:
        err.add_note(f"the rollback failed too ({type(also).__name__}: {also})")


def other_plugins(text: str, plugins: Sequence[str]) -> str | None:
    """How the stored spec ``text`` differs by its plugins from ``plugins``, else None: told before it is
    parsed, as parsing imports its plugins and a shared storage's spec may name any module."""
    stored = json.loads(text).get("plugins") or []
    return None if stored == list(plugins) else f"plugins {stored} against {list(plugins)}"


def stored_spec(storage: RDBStorage, name: str, plugins: Sequence[str] | None = None) -> Spec:
    """The spec stored as ``name``; given the ``plugins`` the caller runs with, one that names others is
    refused unparsed (:func:`other_plugins`)."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = stored_spec_names(storage)
        raise SpecError(f"no study {name!r} in this storage; it holds: {known or 'nothing'}") from None
    text = study.user_attrs.get(SPEC_ATTR)
    if text is None:
        raise SpecError(f"study {name!r} in this storage was not created by lossbench")
    other = None if plugins is None else other_plugins(text, plugins)
    if other:
        stored = json.loads(text).get("plugins") or []
        fix = f"; if you trust them, give {' '.join(f'--plugin {p}' for p in stored)}, in this order" if stored else ""
        raise SpecError(f"study {name!r}: the stored spec is not this one ({other}); refused unread{fix}")
    try:
        return spec_from_json(text)
    except ValueError as err:  # (its plugins refused by a command that only reads, say: which study's)
        raise type(err)(f"study {name!r}: {err}") from None


def stored_spec_names(storage: RDBStorage) -> list[str]:
    # (the studies alone: Optuna's study summaries read every trial of every study, 10 s at 20,000 trials)
    return sorted(study.study_name for study in storage.get_all_studies() if SPEC_ATTR in study.user_attrs)


def stored_study_names(storage: optuna.storages.BaseStorage) -> set[str]:
    """Every study's name in ``storage``, its trials unread (see :func:`stored_spec_names`)."""
    return {study.study_name for study in storage.get_all_studies()}


# -- what a stored study holds, and which of its trials count (read by the runner and the report alike) --

CONFIG_ATTR = "config"  # the chosen parameters, stored on the final study
CHOSEN_FROM_ATTR = "tune_trial"  # the chosen tuning trial's number: on the final study, and on each final run
ERROR_ATTR = "error"  # a failed trial's reason, one line
DIRECTION = "maximize"  # of every study: the selection metrics are scores, higher is better
RUN_ATTR = "run"  # a trial's record: metrics, curves, seed, worker, seconds, pack (one write)
ALONE_ATTR = "alone"  # in the record of a run whose unit cannot pack: why it trained one run at a time
PACKING_OFF = "packing is off"  # that reason under --pack 1
VALIDATION_ATTR = "validation"  # in the record of a run with a validation part: the spec's val_split, or:
OWN_VALIDATION = "provided"  # the data set's own validation split (a dev file)
DECIDED_ATTR = "decided"  # in the record of an evaluation run others read (runs_of): per rule, its label metrics


def scored_through(trial: FrozenTrial, rule: str) -> FrozenTrial | None:
    """A copy of the stored run whose metrics are those it scored through decision ``rule`` (for a
    method that reads it, ``runs_of``); None for a run that did not score that rule."""
    record = run_record(trial)
    decided = record.get(DECIDED_ATTR, {}).get(rule)
    if decided is None:
        return None
    copied = copy.copy(trial)
    copied.user_attrs = {**trial.user_attrs, RUN_ATTR: {**record, "metrics": {**record.get("metrics", {}), **decided}}}
    return copied


def run_record(trial: FrozenTrial) -> dict[str, Any]:
    """What a finished run stored: ``metrics``, ``curves``, ``seed``, ``worker``, ``seconds``, ``pack``,
    ``environment`` (versions, threads, device), ``sizes`` (``fit``, ``scored``) and, where the run
    had a validation part, ``validation`` (how it was drawn, ``VALIDATION_ATTR``); an evaluation run
    that other methods read (``runs_of``), ``decided`` (``DECIDED_ATTR``)."""
    return trial.user_attrs.get(RUN_ATTR, {})


def draw_number(trial: FrozenTrial) -> int:
    """Where a tuning trial's draw comes in the study: its number, or a retry's the number of the trial it
    retries (a retry is numbered after the draws that followed its trial: by number, a killed and resumed
    study would budget and break ties otherwise than an uninterrupted one)."""
    return trial.system_attrs.get("failed_trial", trial.number)


def budget_trials(trials: list[FrozenTrial], budget: int) -> list[FrozenTrial]:
    """The first ``budget`` complete trials by draw (:func:`draw_number`): the method's equal tuning budget."""
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=draw_number)
    return complete[:budget]


TIE_TOLERANCE = 1e-6  # validation scores this close are equal (the EXACT paper's EPS)


def choose(trials: list[FrozenTrial], tie_break: str = "earliest", metric: str = "accuracy") -> FrozenTrial:
    """Best validation score; ties go to the earliest draw (:func:`draw_number`).

    With ``tie_break="train_metric"`` the trials are scanned in order as the EXACT paper's code
    does: a trial replaces the best when its validation score is higher, or equal within 1e-6
    with a strictly higher score on the part it was trained on (the metric it was scored by: the
    task's headline where the task lacks ``metric``).
    """
    if tie_break == "earliest":
        return max(trials, key=lambda t: (t.value, -draw_number(t)))
    best, best_val, best_fit = None, -math.inf, -math.inf
    for t in sorted(trials, key=draw_number):
        scores = run_record(t).get("metrics", {})
        fit = scores.get(f"train_{selection_metric(metric, task_of_metrics(scores))}", math.nan)
        fit = -math.inf if math.isnan(fit) else fit
        if t.value > best_val or (abs(t.value - best_val) < TIE_TOLERANCE and fit > best_fit):
            best, best_val, best_fit = t, t.value, fit
    assert best is not None
    return best


def current_choice(spec: Spec, budget: list[FrozenTrial]) -> FrozenTrial | None:
    """The configuration's tuning trial chosen from a unit's ``budget`` (:func:`budget_trials`);
    None while the budget is not full (a study that grew its trials is still tuning)."""
    if len(budget) < spec.trials:
        return None
    return choose(budget, spec.tie_break, spec.selection_metric)


def runs_choice(trial: FrozenTrial, chosen: int, config: dict[str, Any]) -> bool:
    """Whether a final run re-trains the chosen tuning trial ``chosen`` (configuration ``config``):
    by the tuning trial it records, or, for a run stored before runs recorded it (when a study's
    choice never changed), by its parameters (those it was queued with, for one not yet run)."""
    if CHOSEN_FROM_ATTR in trial.user_attrs:
        return trial.user_attrs[CHOSEN_FROM_ATTR] == chosen
    return {**trial.system_attrs.get("fixed_params", {}), **trial.params} == config


def final_runs(
    trials: list[FrozenTrial], seeds: list[int], chosen: int | None = None, config: dict[str, Any] | None = None
) -> dict[int, FrozenTrial]:
    """One complete run per evaluation seed (the earliest, should a seed have been run twice); with
    ``chosen`` and ``config``, only runs of that choice (:func:`runs_choice`)."""
    runs: dict[int, FrozenTrial] = {}
    wanted = set(seeds)
    for t in sorted(trials, key=lambda t: t.number):
        seed = t.user_attrs.get("seed")
        mine = chosen is None or runs_choice(t, chosen, config or {})
        if t.state == TrialState.COMPLETE and seed in wanted and seed not in runs and mine:
            runs[seed] = t
    return runs
