"""Everything a study produces lives in Optuna's storage: a SQLite file by default, any
SQLAlchemy URL (e.g. PostgreSQL) when several workers on several machines share one study.

Layout: one metadata study named after the spec (its user attributes hold the spec itself), and
per (dataset, method) a ``tune`` study (the equal-budget search) and a ``final`` study (the
chosen configuration re-trained with several seeds).  Trials carry their metrics, per-epoch
curves, seed and worker in user attributes, so a report needs nothing but the storage.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
import warnings
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from lossbench.bench.spec import Spec, SpecError, spec_from_json

SPEC_ATTR = "lossbench_spec"
FINGERPRINT_ATTR = "lossbench_fingerprint"
DB_FILE = "lossbench.db"
# The storage URL when no --storage is given: a password need not be on the command line (where
# any local user sees it in the process list).
STORAGE_ENV = "LOSSBENCH_STORAGE"
SQLITE_MAGIC = b"SQLite format 3\x00"
EMPTY_FILE_GRACE_S = 2.0  # a worker creating the file this moment leaves it empty for microseconds


def default_storage_url(out_dir: str | Path) -> str:
    return f"sqlite:///{(Path(out_dir) / DB_FILE).resolve()}"


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
    """The file of a ``sqlite:///`` URL, else None."""
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def check_sqlite_file(path: Path, create: bool) -> None:
    """Refuse what SQLite would silently turn into a new, empty database, or fail on later: a
    directory, an empty (0-byte) or foreign file, a missing one where ``create`` is False."""
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
    if size == 0:
        raise SpecError(f"database {path} is an empty (0-byte) file, not a lossbench database; "
                        "delete it to start a new study there")  # fmt: skip
    if head != SQLITE_MAGIC:
        raise SpecError(f"database {path} is not a SQLite file (it does not start with {SQLITE_MAGIC[:15].decode()!r})")


def open_storage(url: str, heartbeat_interval: int | None = None, *, create: bool = True) -> RDBStorage:
    """An RDB storage; with a heartbeat, trials of a killed worker are failed and retried.

    A trial whose heartbeat stops for ``3 x heartbeat_interval`` seconds is marked failed and a
    copy with the same parameters (and seed) is queued, so an interrupted run is re-done once
    and never counted twice (only complete trials count).  A SQLite file is checked first
    (:func:`check_sqlite_file`); without ``create`` it must exist.
    """
    engine_kwargs = {}
    path = sqlite_path(url)
    if path is not None:
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
                    "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=3),
                }
            return HeartbeatStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except Exception as err:  # SQLAlchemy raises many kinds; all mean the same to the user
        reason = " ".join(masked_text(str(err), url).split())  # drivers write several lines
        raise SpecError(f"cannot open storage {masked(url)!r}: {type(err).__name__}: {reason}") from None


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


class HeartbeatStorage(RDBStorage):
    """Optuna's RDB storage, where a trial that never recorded a heartbeat can also go stale.

    A worker killed after ``ask`` created its trial but before the heartbeat thread's first beat
    leaves a RUNNING trial without a heartbeat row, which Optuna never fails: the study would wait
    on it for ever.  Here such a trial is stale once it started more than the grace period ago
    (by the clocks of the worker that started it and the one checking, which should agree to
    within the grace period), and is failed and retried like any other.
    """

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        """As Optuna's, but a queued trial is taken (WAITING -> RUNNING) by one conditional UPDATE.

        Optuna reads the trial's state and then writes RUNNING; SQLite has no row locks, so two
        workers popping the same queued trial (a retry, an evaluation seed) could both take it
        and both train it.  One ``UPDATE ... WHERE state = WAITING`` lets exactly one succeed.
        """
        if state != TrialState.RUNNING or values is not None:
            return super().set_trial_state_values(trial_id, state, values)
        from optuna.storages._rdb import models

        session = self.scoped_session()
        try:
            taken = (
                session.query(models.TrialModel)
                .filter(models.TrialModel.trial_id == trial_id, models.TrialModel.state == TrialState.WAITING)
                .update({"state": TrialState.RUNNING, "datetime_start": datetime.now()}, synchronize_session=False)
            )
            session.commit()
        except Exception:
            session.rollback()
            raise
        finally:
            session.close()
        if not taken:
            self.check_trial_is_updatable(trial_id, self.get_trial(trial_id).state)  # a finished trial raises, as Optuna's
        return bool(taken)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        from optuna.storages._rdb import models  # the query Optuna's own check makes, widened

        stale = super()._get_stale_trial_ids(study_id)
        grace = self.grace_period if self.grace_period is not None else 2 * self.heartbeat_interval
        cutoff = datetime.now() - timedelta(seconds=grace)
        session = self.scoped_session()
        try:
            running = (
                session.query(models.TrialModel)
                .filter(models.TrialModel.state == optuna.trial.TrialState.RUNNING)
                .filter(models.TrialModel.study_id == study_id)
                .filter(~models.TrialModel.heartbeats.any())
                .all()
            )
            silent = [t.trial_id for t in running if t.datetime_start is not None and t.datetime_start < cutoff]
        finally:
            session.close()
        return stale + [trial_id for trial_id in silent if trial_id not in stale]


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
    values, SQLite keeps them), checked before a new spec is stored."""
    from optuna.storages._rdb.models import MAX_INDEXED_STRING_LENGTH

    for dataset, method in spec.units():
        name = study_name(spec.name, "final", dataset.label, method.name)  # "final" is the longer stage
        if len(name) > MAX_INDEXED_STRING_LENGTH:
            raise SpecError(
                f"spec {spec.name[:40]!r}: study name {name[:60]!r}... has {len(name)} characters; Optuna "
                f"stores at most {MAX_INDEXED_STRING_LENGTH} (shorten the spec name, the dataset label or the method name)"
            )


def register_spec(storage: RDBStorage, spec: Spec) -> None:
    """Record the spec in storage; refuse a different spec under the same name."""
    study = optuna.create_study(storage=storage, study_name=spec.name, load_if_exists=True)
    stored = study.user_attrs.get(FINGERPRINT_ATTR)
    if stored is None:
        check_study_names(spec)
        study.set_user_attr(SPEC_ATTR, spec.to_json())
        study.set_user_attr(FINGERPRINT_ATTR, spec.fingerprint())
    elif stored != spec.fingerprint():
        raise SpecError(
            f"the storage already holds a study {spec.name!r} run with a different spec; "
            f"give the changed spec a new name, or use another --out / --storage"
        )


def stored_spec(storage: RDBStorage, name: str) -> Spec:
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = stored_spec_names(storage)
        raise SpecError(f"no study {name!r} in this storage; it holds: {known or 'nothing'}") from None
    text = study.user_attrs.get(SPEC_ATTR)
    if text is None:
        raise SpecError(f"study {name!r} in this storage was not created by lossbench")
    return spec_from_json(text)


def stored_spec_names(storage: RDBStorage) -> list[str]:
    names = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if SPEC_ATTR in summary.user_attrs:
            names.append(summary.study_name)
    return sorted(names)
