"""The study specification: a TOML file (or a built-in preset), validated with clear errors.

A spec names the datasets, the model and optimiser, the methods (a registered loss plus
optional registered transforms and fixed parameters), the tuning budget (trials per method,
the same for every method), the evaluation seeds and the selection metric.  See
``presets/builtin.toml`` for a complete example.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import sys
import warnings
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from lossbench._paths import check_name, read_regular_file
from lossbench.bench.metrics import DECISIONS, selection_metric
from lossbench.bench.plugins import PluginError, check_plugin_name, import_plugins
from lossbench.registry import Choice, FloatRange, IntRange
from lossbench.train.vocabulary import LR_SCHEDULES, MOMENTUM_BELOW, OPTIMIZERS, WEIGHT_DECAY_ON

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# Validation metrics the tuner may maximise, per task kind.
SELECTION_METRICS = {
    "multiclass": ("accuracy", "macro_f1", "balanced_accuracy"),
    "multilabel": ("micro_f1", "macro_f1", "map"),
}
# "python-random": Python's random.Random(seed).choice per parameter and trial, parameters in
# ``search_order`` -- the draw of the EXACT paper's code, for grids of choices only.
SAMPLERS = ("tpe", "random", "python-random")
VAL_SPLITS = ("stratified", "random")  # random: scikit-learn's unstratified train_test_split
TIE_BREAKS = ("earliest", "train_metric")
MAX_HEARTBEAT_S = 86_400  # a day between a running trial's heartbeats at most
MAX_REPEAT_TO_BATCHES = 100_000  # batches per epoch a repeated training set may reach (the EXACT paper's: 500)
MAX_SEEDS = 1_000  # evaluation runs per method, queued at once: far beyond any protocol, short of a typo's millions
MAX_TRIALS = 100_000  # tuning trials per method and epochs per stage: as far beyond, short of a typo's
MAX_EPOCHS = 100_000
SEED_PARAM = "seed"  # a searched "seed" is the tuning run's training seed (the EXACT paper tunes it)
MODEL_PREFIX = "model."  # [search] model.<name>: a model hyperparameter, searched for every method alike
THEN_PREFIX = "then."  # then.loss.<p>, then.<transform>.<p>: a two-stage method's second-stage hyperparameters


class SpecError(ValueError):
    """A spec that cannot run; the message names the field and what was expected."""


class FixedSplitWarning(UserWarning):
    """``resample_splits`` on a data set whose test split is fixed: its final runs keep that split (a
    claim's record says so in its deviations, and the ledger builds its specs without this warning)."""


@dataclass(frozen=True)
class Schedule:
    """A per-epoch geometric schedule of a loss or transform parameter (numpy.geomspace's terms):
    epoch ``e`` of ``E`` uses ``start * (end / start) ** (e / (E - 1))``, or ``e / E`` without the
    endpoint (the EXACT paper's temperature, whose last epoch stops short of ``end``)."""

    start: float
    end: float
    endpoint: bool = True

    def value(self, epoch: int, epochs: int) -> float:
        steps = (epochs - 1) if self.endpoint else epochs
        return self.start * (self.end / self.start) ** (min(epoch, steps) / steps if steps else 0.0)


@dataclass(frozen=True)
class TrainConfig:
    model: str = "linear"
    model_params: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "sgd"
    momentum: float = 0.9
    epochs: int = 16
    batch_size: int = 256
    lr_final: float | None = 1e-4
    lr_schedule: str = "step"  # step: exponential step by step; epoch: once per epoch, lr_final at the last
    weight_decay_on: str = "all"  # weights: only parameters of 2 or more dimensions (not biases); none: no decay, none searched
    repeat_to_batches: int = 0  # > 0: each epoch repeats the data int(this * batch_size / n) times (>= 1)
    drop_last: bool = False
    standardize: bool = False  # re-standardise features on each run's training part (ddof 0, std >= 1e-6)
    # Keep the epoch with the best validation score and report that checkpoint's scores (the
    # flooding paper's rule).  Final runs then hold the validation part out too: they train on
    # the tuning runs' training part, pick the epoch on validation and score it on the test split.
    early_stopping: bool = False


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    max_train: int | None = None  # at most this many training samples: a seeded stratified subset (quick budgets); a cap, so a smaller set is kept whole
    display: str | None = None  # the spec's `label = "..."`: the name in reports and study names

    @property
    def label(self) -> str:
        """Name used in study names and reports (parameters make a different dataset)."""
        if self.display:
            return self.display
        args = dict(self.params, **({"max_train": self.max_train} if self.max_train else {}))
        if not args:
            return self.name
        return f"{self.name}[{','.join(f'{k}={v}' for k, v in sorted(args.items()))}]"


@dataclass(frozen=True)
class TransformSpec:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StageSpec:
    """A method's second stage (``then = {...}``): after the spec's ``[train] epochs`` with the
    method's loss and transforms, the same model trains ``epochs`` more with this loss and these
    transforms.  The second stage starts a fresh optimizer of the spec's kind (fresh momentum or
    Adam moments: the new loss's gradients have another scale than the old one's), at the run's lr
    times ``lr_scale``, and runs the spec's lr schedule over its own epochs with both ends scaled
    by ``lr_scale``; the weight decay is the run's.  Its searched hyperparameters are keyed
    ``then.loss.<p>`` and ``then.<transform>.<p>`` (the method's ``search`` table overrides them)."""

    loss: str
    epochs: int
    params: dict[str, Any] = field(default_factory=dict)
    transforms: tuple[TransformSpec, ...] = ()
    lr_scale: float = 1.0


@dataclass(frozen=True)
class MethodSpec:
    """A method: a registered loss, optional transforms, fixed parameters and search overrides.

    ``params`` fixes loss hyperparameters (removing them from the search); ``search`` replaces a
    registered search range, keyed ``loss.<name>`` or ``<transform>.<name>``.
    """

    name: str
    loss: str
    params: dict[str, Any] = field(default_factory=dict)
    transforms: tuple[TransformSpec, ...] = ()
    search: dict[str, FloatRange | IntRange | Choice] = field(default_factory=dict)
    datasets: tuple[str, ...] | None = None  # restrict to these dataset labels
    schedule: dict[str, Schedule] = field(default_factory=dict)  # keyed like search; set per epoch
    # How held-out logits become predictions (bench.metrics.DECISIONS): the arg-max, or a post-hoc
    # rule such as logit adjustment, so a leaderboard can tell a loss's effect from its decision's.
    decision: str = "argmax"
    then: StageSpec | None = None  # a second stage, fine-tuning the same model (StageSpec)
    # Another method's name: this one trains nothing; its runs are that method's (its choice and its
    # evaluation runs, the same models) read through this method's decision rule, so a post-hoc rule
    # is compared with the arg-max on the same models (Menon et al.'s post-hoc logit adjustment).
    # Its other fields are that method's (what trained its runs).
    runs_of: str | None = None
    # The model's hyperparameters for this method's runs, over [train] model_params (LDAM's cosine output layer)
    model_params: dict[str, Any] = field(default_factory=dict)

    def runs_on(self, dataset: DatasetSpec) -> bool:
        return self.datasets is None or dataset.label in self.datasets or dataset.name in self.datasets


@dataclass(frozen=True)
class Spec:
    name: str
    datasets: tuple[DatasetSpec, ...]
    methods: tuple[MethodSpec, ...]
    train: TrainConfig = TrainConfig()
    search: dict[str, FloatRange | Choice] = field(
        default_factory=lambda: {"lr": FloatRange(1e-3, 1.0, True), "weight_decay": FloatRange(1e-6, 1e-2, True)}
    )
    trials: int = 20
    seeds: int = 5
    sampler: str = "tpe"
    val_fraction: float = 0.2
    val_split: str = "stratified"
    selection_metric: str = "accuracy"
    tie_break: str = "earliest"  # train_metric: equal validation scores (within 1e-6) go to the better fit
    baseline: str | None = None
    seed: int = 0
    heartbeat_interval: int = 10  # seconds between a running trial's heartbeats
    search_order: tuple[str, ...] = ()  # the python-random sampler's draw order (others follow)
    # Final runs load each dataset with seed = <evaluation seed>, a train/test split of its own
    # per seed, so the test scores also vary over splits (tuning keeps the dataset's own split, and
    # seed 0's split is that one: of n seeds, n - 1 are new splits).
    resample_splits: bool = False
    # Modules imported (by name, from this process's sys.path) before any name is resolved: a
    # user's own datasets, models, losses and transforms (bench.plugins).
    plugins: tuple[str, ...] = ()

    def method(self, name: str) -> MethodSpec:
        for m in self.methods:
            if m.name == name:
                return m
        raise SpecError(f"spec {self.name!r} has no method {name!r}")

    def units(self) -> list[tuple[DatasetSpec, MethodSpec]]:
        """Every (dataset, method) pair the study trains, in a stable order (not the methods that read
        another's runs: ``runs_of``)."""
        return [(d, m) for d in self.datasets for m in self.methods if m.runs_on(d) and m.runs_of is None]

    def readers(self, name: str) -> list[MethodSpec]:
        """The methods that read method ``name``'s runs (``runs_of``)."""
        return [m for m in self.methods if m.runs_of == name]

    def read_through(self, name: str) -> tuple[str, ...]:
        """The decision rules that other methods read method ``name``'s runs through (``runs_of``)."""
        return tuple(dict.fromkeys(m.decision for m in self.readers(name)))

    def to_json(self) -> str:
        data = asdict(self)
        # A field added later is left out at its default, as a spec stored before it existed.
        for fields, kind, entries in (
            (_LATER_SPEC_FIELDS, Spec, [data]),
            (_LATER_TRAIN_FIELDS, TrainConfig, [data["train"]]),
            (_LATER_METHOD_FIELDS, MethodSpec, data["methods"]),
        ):
            for entry in entries:
                for key in fields:
                    if entry[key] == _default(kind, key):
                        del entry[key]
        return json.dumps(data, sort_keys=True)

    def fingerprint(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


GROWTH_FIELDS = ("trials", "seeds")  # more of either grows a stored study; so do added datasets and methods


def spec_growth(old: Spec, new: Spec) -> tuple[list[str], list[str]]:
    """How ``new`` differs from the stored ``old``: ``(grown, changed)``.  ``grown`` names what
    a stored study can add while keeping every run it holds (more ``trials``, more ``seeds``,
    datasets and methods that are new by label / name); ``changed`` names anything else (fewer
    trials or seeds, a removed or redefined dataset or method, any other field), each as
    ``where: old -> new``.  Compared as stored (:meth:`Spec.to_json`)."""
    a, b = json.loads(old.to_json()), json.loads(new.to_json())
    grown: list[str] = []
    changed: list[str] = []
    for key in GROWTH_FIELDS:
        if b[key] > a[key]:
            grown.append(f"{key} {a[key]} -> {b[key]}")
        elif b[key] < a[key]:
            changed.append(f"{key}: {a[key]} -> {b[key]} (a study only grows)")
    for kind, olds, news, key in (
        ("dataset", old.datasets, new.datasets, lambda d: d.label),
        ("method", old.methods, new.methods, lambda m: m.name),
    ):
        stored = {key(x): d for x, d in zip(olds, a[f"{kind}s"])}
        given = {key(x): d for x, d in zip(news, b[f"{kind}s"])}
        named = {key(x): x.name for x in (*olds, *news)}  # (a dataset's label names its parameters too)
        for label, item in stored.items():
            if label not in given:
                now = [g for g in given if g not in stored and named[g] == named[label]]  # (a method's name is its key)
                changed.append(f"{kind} {label!r} removed" + (f" (now {now[0]!r}: other parameters make another data set)" if now else ""))
            else:
                changed += _differences(item, given[label], f"{kind} {label!r}")
        grown += [f"{kind} {label!r} added" for label in given if label not in stored]
    # A method added to read stored runs through a decision rule they were not scored by
    stored_names = {m.name for m in old.methods}
    for m in new.methods:
        if m.name not in stored_names and m.runs_of in stored_names and m.decision not in old.read_through(m.runs_of):
            grown.remove(f"method {m.name!r} added")
            changed.append(f"method {m.name!r} added: it reads the stored runs of {m.runs_of!r}, which were not scored "
                           f"by its decision {m.decision!r} (a new study runs them with it)")  # fmt: skip
    rest = [k for k in sorted(a.keys() | b.keys()) if k not in GROWTH_FIELDS + ("datasets", "methods")]
    for k in rest:
        changed += _differences(a.get(k, "(absent)"), b.get(k, "(absent)"), k)
    return grown, changed


def _differences(old: Any, new: Any, where: str) -> list[str]:
    """``where.key: old -> new`` for each leaf where two stored (JSON) values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(old.keys() | new.keys())
                for d in _differences(old.get(k, "(absent)"), new.get(k, "(absent)"), f"{where}.{k}")]  # fmt: skip
    return [] if old == new else [f"{where}: {json.dumps(old)} -> {json.dumps(new)}"]


# Fields (top-level, [train], method) added after specs were first stored: left out of a spec's JSON at their default,
# so a stored study's spec keeps its fingerprint (bench.storage refuses a changed spec).
_LATER_SPEC_FIELDS = ("plugins",)
_LATER_TRAIN_FIELDS = ("early_stopping",)
_LATER_METHOD_FIELDS = ("decision", "then", "runs_of", "model_params")

# ---------------------------------------------------------------------------------------------
# Parsing


def _take(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = ...):
    if key not in table:
        if default is ...:
            raise SpecError(f"{where}: missing required field {key!r}")
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise SpecError(f"{where}: field {key!r} must be {names}, got {value!r}")
    return value


# Types a spec (TOML) value may have for an argument annotated with each name.
_SCALARS: dict[str, tuple[type, ...]] = {"float": (int, float), "int": (int,), "bool": (bool,), "str": (str,),
                                         "None": (type(None),)}  # fmt: skip


def value_kinds(param: inspect.Parameter) -> tuple[tuple[type, ...], bool] | None:
    """The types a spec value of this argument may have (read from its annotation), and whether the
    annotation also names another type (a tensor, given as a list); None when it has none."""
    annotation = param.annotation
    if annotation is inspect.Parameter.empty:
        return None
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    parts = [part.strip() for part in text.split("|")]
    return tuple(t for part in parts for t in _SCALARS.get(part, ())), any(part not in _SCALARS for part in parts)


def check_value(where: str, key: str, value: Any, param: inspect.Parameter) -> None:
    """A spec value for an annotated argument: of a type the annotation names, and finite if a number."""
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{where}: {key} = {value} must be a finite number")
    kinds = value_kinds(param)
    if kinds is None:
        return
    types, other = kinds
    ok = isinstance(value, types) and (bool in types or not isinstance(value, bool))
    if not (ok or (other and isinstance(value, list))):
        listed = ' (a list is written [..., ...]: numbers as [1.0, 2.0], texts quoted as ["a", "b"])' if other and not isinstance(value, list) else ""
        raise SpecError(f"{where}: {key} = {value!r} must be {param.annotation} ({type(value).__name__} given){listed}")


def model_hyperparameter(key: str) -> str | None:
    """The model hyperparameter a search key ``model.<name>`` tunes; None for any other key."""
    name = key[len(MODEL_PREFIX) :] if key.startswith(MODEL_PREFIX) else ""
    return name if name.isidentifier() else None


def _no_unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(allowed)}")


def _range(value: Any, where: str, whole: bool = False) -> FloatRange | IntRange | Choice:
    """A search range or grid; with ``whole`` (a model hyperparameter's: a width, a depth), ends written as
    integers make an integer range (the model's registry is not read here: a report reads specs without it)."""
    if isinstance(value, list):  # (two numbers read as a range, where a user meant two choices: [16, 64])
        raise SpecError(f"{where}: a bare list {value!r} is neither a range nor a grid: write {{choices = {value!r}}} "
                        "for a grid, or {low = ..., high = ...} for a range")  # fmt: skip
    if not isinstance(value, dict):
        raise SpecError(
            f"{where}: a search range is {{low = ..., high = ..., log = false}} or {{choices = [...]}}, got {value!r}"
        )
    _refuse_unquoted_dotted_key(value, where)
    if "choices" in value or "options" in value:  # "options": the stored (JSON) spelling
        return _choices(value, where)
    _no_unknown(value, {"low", "high", "log"}, where)
    low = _take(value, "low", float, where)
    high = _take(value, "high", float, where)
    log = _take(value, "log", bool, where, _default(FloatRange, "log"))
    try:
        if whole and type(value["low"]) is int and type(value["high"]) is int:
            return IntRange(value["low"], value["high"], log)
        return FloatRange(low, high, log)
    except ValueError as error:  # the range's own checks, named by the spec's field
        raise SpecError(f"{where}: {error}") from None


def _choices(value: dict[str, Any], where: str) -> Choice:
    """A grid: numbers, strings or booleans; "default" (None once stored) leaves the parameter unset."""
    key = "choices" if "choices" in value else "options"
    _no_unknown(value, {key}, where)
    options = value[key]
    if not isinstance(options, (list, tuple)) or len(options) < 2:
        raise SpecError(f"{where}: choices must be a list of at least two values, got {options!r} (one value is no "
                        "search: a loss option is fixed in the method's params, and [train] weight_decay_on = 'none' "
                        "trains without weight decay)")  # fmt: skip
    options = tuple(None if o == "default" else o for o in options)
    for o in options:
        if o is not None and not isinstance(o, (int, float, str, bool)):
            raise SpecError(f"{where}: a choice is a number, a string or a boolean, got {o!r}")
        if isinstance(o, float) and not math.isfinite(o):
            raise SpecError(f"{where}: choices must be finite, got {o!r}")
    if len(set(options)) != len(options):
        raise SpecError(f"{where}: choices repeat a value: {list(options)}")
    return Choice(options)


def _refuse_unquoted_dotted_key(value: dict[str, Any], where: str) -> None:
    """A table of tables where a range or schedule goes: TOML reads an unquoted ``loss.gamma = {...}`` so."""
    if value and all(isinstance(v, dict) for v in value.values()):
        first = f"{where.rsplit('.', 1)[-1].rsplit(' ', 1)[-1]}.{next(iter(value))}"
        raise SpecError(f"{where}: holds tables ({', '.join(value)}) where one range or schedule goes: TOML reads an "
                        f'unquoted dotted key as nested tables; quote it ("{first}" = {{...}})')  # fmt: skip


def _schedule(value: Any, where: str) -> Schedule:
    if not isinstance(value, dict):
        raise SpecError(f"{where}: a schedule is {{start = ..., end = ..., endpoint = true}}, got {value!r}")
    _refuse_unquoted_dotted_key(value, where)
    _no_unknown(value, {"start", "end", "endpoint"}, where)
    sched = Schedule(
        _take(value, "start", float, where), _take(value, "end", float, where),
        _take(value, "endpoint", bool, where, _default(Schedule, "endpoint")),
    )  # fmt: skip
    if not (math.isfinite(sched.start) and math.isfinite(sched.end) and sched.start > 0 and sched.end > 0):
        raise SpecError(f"{where}: start and end must be finite and > 0, got {sched.start}, {sched.end}")
    return sched


def _default(cls: type, name: str) -> Any:
    """The dataclass field's default: every spec default is written once, on the dataclass."""
    f = cls.__dataclass_fields__[name]
    return f.default_factory() if f.default_factory is not field().default_factory else f.default


def _one_of(value: Any, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise SpecError(f"{what} must be one of {allowed}, got {value!r}")


def _transform(value: Any, where: str) -> TransformSpec:
    if isinstance(value, str):
        return TransformSpec(value)
    if isinstance(value, dict):
        _no_unknown(value, {"name", "params"}, where)
        return TransformSpec(_take(value, "name", str, where), dict(_take(value, "params", dict, where, {})))
    raise SpecError(f"{where}: a transform is a name or {{name = ..., params = {{...}}}}, got {value!r}")


def _stage(value: Any, where: str) -> StageSpec:
    """A method's ``then = {loss = ..., epochs = N, params = {...}, transforms = [...], lr_scale = 1.0}``."""
    if not isinstance(value, dict):
        raise SpecError(f"{where}: a second stage is {{loss = ..., epochs = N, params = {{...}}, transforms = [...], "
                        f"lr_scale = 1.0}}, got {value!r}")  # fmt: skip
    _no_unknown(value, set(StageSpec.__dataclass_fields__), where)
    epochs = _take(value, "epochs", int, where)
    if epochs < 1:
        raise SpecError(f"{where}: epochs must be >= 1, got {epochs}")
    if epochs > MAX_EPOCHS:
        raise SpecError(f"{where}: epochs must be at most {MAX_EPOCHS:,}, got {epochs:,}")
    lr_scale = _take(value, "lr_scale", float, where, _default(StageSpec, "lr_scale"))
    if not (math.isfinite(lr_scale) and lr_scale > 0):
        raise SpecError(f"{where}: lr_scale must be a finite number > 0, got {lr_scale}")
    return StageSpec(
        loss=_take(value, "loss", str, where), epochs=epochs, params=dict(_take(value, "params", dict, where, {})),
        transforms=tuple(_transform(t, where) for t in _take(value, "transforms", list, where, [])), lr_scale=lr_scale,
    )  # fmt: skip


def parse_spec(data: dict[str, Any], source: str = "spec", *, every_key_written: bool = False) -> Spec:
    """Build a :class:`Spec` from a parsed TOML document, checking every field.

    Every default is the dataclass field's (:func:`_default`), written once.  A setting the study
    would ignore is refused where it is written, even at its default value, unless
    ``every_key_written``: a stored spec (:func:`spec_from_json`) writes every key, so there a key
    says nothing of what its author wrote.
    """
    top = set(Spec.__dataclass_fields__)
    _no_unknown(data, top, source)
    name = _take(data, "name", str, source)
    try:  # the name becomes storage keys and, in `lossbench report`, a folder under --out (a stored one: as it was stored)
        check_name(name, "name", portable=not every_key_written)
    except ValueError as err:
        raise SpecError(f"{source}: {err}") from None
    plugins = tuple(_take(data, "plugins", list, source, []))
    try:  # names checked now, modules imported once the rest of the spec is known good
        for plugin in plugins:
            check_plugin_name(plugin)
    except PluginError as err:
        raise SpecError(f"{source}: {err}") from None

    train_table = _take(data, "train", dict, source, {})
    where = f"{source} [train]"
    _no_unknown(train_table, set(TrainConfig.__dataclass_fields__), where)
    kinds = {"model_params": dict, "momentum": float, "lr_final": float, "drop_last": bool, "standardize": bool}
    values = {
        key: _take(train_table, key, kinds.get(key, type(_default(TrainConfig, key))), where, _default(TrainConfig, key))
        for key in TrainConfig.__dataclass_fields__
        if key != "lr_final"
    }
    lr_final = _take(train_table, "lr_final", float, where, _default(TrainConfig, "lr_final"))
    if lr_final is not None and not (math.isfinite(lr_final) and lr_final >= 0):  # 0 (TOML has no null): constant lr
        raise SpecError(f"{where}: lr_final must be a finite number >= 0, got {lr_final}")
    train = TrainConfig(**{**values, "model_params": dict(values["model_params"])}, lr_final=lr_final or None)
    _one_of(train.optimizer, OPTIMIZERS, f"{where}: optimizer")
    _one_of(train.lr_schedule, LR_SCHEDULES, f"{where}: lr_schedule")
    _one_of(train.weight_decay_on, WEIGHT_DECAY_ON, f"{where}: weight_decay_on")
    if train.epochs < 1 or train.batch_size < 1:
        raise SpecError(f"{where}: epochs and batch_size must be >= 1, got {train.epochs}, {train.batch_size}")
    if train.epochs > MAX_EPOCHS:
        raise SpecError(f"{where}: epochs must be at most {MAX_EPOCHS:,}, got {train.epochs:,}")
    if not 0 <= train.repeat_to_batches <= MAX_REPEAT_TO_BATCHES:
        raise SpecError(f"{where}: repeat_to_batches must lie in [0, {MAX_REPEAT_TO_BATCHES:,}], got {train.repeat_to_batches}")
    if not 0 <= train.momentum < MOMENTUM_BELOW:
        raise SpecError(f"{where}: momentum must lie in [0, {MOMENTUM_BELOW:g}), got {train.momentum}")

    search_table = _take(data, "search", dict, source, None)
    search = _default(Spec, "search")
    if search_table is not None:
        shared = {"lr", "weight_decay", SEED_PARAM}
        unknown = sorted(k for k in search_table if k not in shared and model_hyperparameter(k) is None)
        for k in unknown:  # (model.width = {...} unquoted: a table "model" of tables)
            if isinstance(search_table[k], dict):
                _refuse_unquoted_dotted_key(search_table[k], f"{source} [search].{k}")
        if unknown:
            raise SpecError(f"{source} [search]: unknown field(s) {unknown}; allowed: {sorted(shared)} "
                            f"and {MODEL_PREFIX}<name> for a model hyperparameter")  # fmt: skip
        fixed = sorted(k for k in search_table if model_hyperparameter(k) in train.model_params)
        if fixed:
            raise SpecError(f"{source} [search]: {fixed} searched but fixed in [train] model_params; drop one of the two")
        # (in name order, as the stored spec's JSON reads back: the order the sampler draws them in, whichever
        # process asks, a worker reading the stored spec or the one that wrote it)
        search.update({k: _range(v, f"{source} [search].{k}", whole=model_hyperparameter(k) is not None)
                       for k, v in sorted(search_table.items())})  # fmt: skip
    if train.weight_decay_on == "none":  # training without weight decay: nothing of it to search
        if search_table is not None and "weight_decay" in search_table and "weight_decay" in search:
            raise SpecError(f"{source} [search]: weight_decay is searched but [train] weight_decay_on = 'none' "
                            "decays nothing; drop one of the two")  # fmt: skip
        search.pop("weight_decay", None)
    seed_space = search.get(SEED_PARAM)
    if seed_space is not None and not (
        isinstance(seed_space, Choice) and all(isinstance(o, int) and not isinstance(o, bool) for o in seed_space.options)
    ):
        raise SpecError(f"{source} [search].seed: the seed is searched over integer choices, got {seed_space}")
    for option in seed_space.options if seed_space is not None else ():
        _check_seed(option, f"{source} [search].seed")

    datasets = []
    for i, d in enumerate(_take(data, "datasets", list, source)):
        where = f"{source} datasets[{i}]"
        if isinstance(d, str):
            d = {"name": d}
        if not isinstance(d, dict):
            raise SpecError(f"{where}: a dataset is a name or {{name = ..., params = {{...}}}}, got {d!r}")
        _no_unknown(d, {"name", "params", "max_train", "label"}, where)
        label = _take(d, "label", str, where, None)
        if label is not None:
            try:
                check_name(label, "label", portable=False)  # (its plots' file names are slugs of it)
            except ValueError as err:
                raise SpecError(f"{where}: {err}") from None
        max_train = _take(d, "max_train", int, where, _default(DatasetSpec, "max_train"))
        if max_train is not None and max_train < 2:
            raise SpecError(f"{where}: max_train must be >= 2, got {max_train}")
        datasets.append(
            DatasetSpec(_take(d, "name", str, where), dict(_take(d, "params", dict, where, {})), max_train, label)
        )
        # (a label spelled from parameters: a report's cell, a terminal's line; a stored spec is read as it was stored)
        if not every_key_written and not datasets[-1].label.isprintable():
            raise SpecError(f"{where}: its label {datasets[-1].label!r}, spelled from its parameters, holds "
                            "non-printable characters; give it a label = \"...\"")  # fmt: skip
    if not datasets:
        raise SpecError(f"{source}: 'datasets' is empty; name at least one dataset")

    methods = []
    for i, m in enumerate(_take(data, "methods", list, source)):
        where = f"{source} methods[{i}]"
        if not isinstance(m, dict):
            raise SpecError(f"{where}: a method is a table with at least 'name' and 'loss', got {m!r}")
        _no_unknown(m, set(MethodSpec.__dataclass_fields__), where)
        mname = _take(m, "name", str, where)
        where = f"{source} method {mname!r}"
        # (the name is a table cell, a line of the report, a plot label and a study name)
        if not mname or mname != mname.strip() or not mname.isprintable():
            raise SpecError(f"{where}: a method name must be non-empty, without control characters or surrounding spaces")
        decision = _take(m, "decision", str, where, _default(MethodSpec, "decision"))
        if decision not in DECISIONS:
            raise SpecError(f"{where}: decision must be one of {DECISIONS}, got {decision!r}")
        runs_of = _take(m, "runs_of", str, where, None)
        if runs_of is not None:  # (its other fields are set below, from the method it reads)
            extra = sorted(set(m) - {"name", "runs_of", "decision"})
            if extra:
                raise SpecError(f"{where}: a method with runs_of trains nothing (it reads the runs of {runs_of!r} through "
                                f"its decision rule); it takes only name, runs_of and decision, not {extra}")  # fmt: skip
            methods.append(MethodSpec(name=mname, loss="", decision=decision, runs_of=runs_of))
            continue
        only = _take(m, "datasets", list, where, None)
        if only == []:  # (it would train nothing, and the report would say it runs on all)
            raise SpecError(f"{where}: datasets = [] names no dataset; leave it out to run on every dataset")
        search_m = {k: _range(v, f"{where} search.{k}") for k, v in sorted(_take(m, "search", dict, where, {}).items())}
        schedule = {k: _schedule(v, f"{where} schedule.{k}") for k, v in _take(m, "schedule", dict, where, {}).items()}
        both = sorted(set(schedule) & set(search_m))
        if both:
            raise SpecError(f"{where}: {both} cannot be both searched and scheduled")
        then = _take(m, "then", dict, where, None)
        then = None if then is None else _stage(then, f"{where} then")
        stray = sorted(k for k in search_m if k.startswith(THEN_PREFIX)) if then is None else []
        if stray:
            raise SpecError(f"{where}: search keys {stray} tune a second stage, but the method has no 'then' stage")
        methods.append(
            MethodSpec(
                name=mname,
                loss=_take(m, "loss", str, where),
                params=dict(_take(m, "params", dict, where, {})),
                transforms=tuple(_transform(t, where) for t in _take(m, "transforms", list, where, [])),
                search=search_m,
                datasets=None if only is None else tuple(str(x) for x in only),
                schedule=schedule,
                decision=decision,
                then=then,
                model_params=_method_model_params(m, search, where),
            )
        )
    if not methods:
        raise SpecError(f"{source}: 'methods' is empty; name at least one method")
    names = [m.name for m in methods]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SpecError(f"{source}: method names must be unique; repeated: {dupes}")
    methods = [_reading(m, methods, f"{source} method {m.name!r}") for m in methods]
    labels = [d.label for d in datasets]
    if len(set(labels)) != len(labels):
        raise SpecError(f"{source}: a dataset is listed twice: {labels}")

    kinds = {"val_fraction": float, "baseline": str, "search_order": list}
    scalars = {
        key: _take(data, key, kinds.get(key, type(_default(Spec, key))), source, _default(Spec, key))
        for key in Spec.__dataclass_fields__
        if key not in {"name", "datasets", "methods", "train", "search", "plugins"}
    }
    scalars["search_order"] = tuple(str(k) for k in scalars["search_order"])
    spec = Spec(name=name, datasets=tuple(datasets), methods=tuple(methods), train=train, search=search,
                plugins=plugins, **scalars)  # fmt: skip
    if spec.trials < 1 or spec.seeds < 1:
        raise SpecError(f"{source}: trials and seeds must be >= 1, got {spec.trials}, {spec.seeds}")
    if spec.seeds < 2:
        raise SpecError(f"{source}: seeds must be >= 2 for a confidence interval and a paired test")
    if spec.trials > MAX_TRIALS:
        raise SpecError(f"{source}: trials must be at most {MAX_TRIALS:,}, got {spec.trials:,}")
    if spec.seeds > MAX_SEEDS:
        raise SpecError(f"{source}: seeds must be at most {MAX_SEEDS:,} (each method's evaluation runs, queued at once), "
                        f"got {spec.seeds:,}")  # fmt: skip
    _one_of(spec.sampler, SAMPLERS, f"{source}: sampler")
    _one_of(spec.val_split, VAL_SPLITS, f"{source}: val_split")
    _one_of(spec.tie_break, TIE_BREAKS, f"{source}: tie_break")
    if not 0 < spec.val_fraction <= 0.5:  # (above, the runs tuned would train on less than they validate on)
        raise SpecError(f"{source}: val_fraction must lie in (0, 0.5], got {spec.val_fraction}")
    allowed = sorted({m for ms in SELECTION_METRICS.values() for m in ms})
    if spec.selection_metric not in allowed:
        raise SpecError(f"{source}: selection_metric must be one of {allowed}, got {spec.selection_metric!r}")
    if spec.baseline is not None and spec.baseline not in names:
        raise SpecError(f"{source}: baseline {spec.baseline!r} is not one of the methods {names}")
    if spec.train.early_stopping:
        _check_early_stopping(spec, source)
    if not 1 <= spec.heartbeat_interval <= MAX_HEARTBEAT_S:  # (a stale trial's deadline is a date: past years overflow it)
        raise SpecError(f"{source}: heartbeat_interval must lie in [1, {MAX_HEARTBEAT_S}] seconds, got {spec.heartbeat_interval}")
    _check_seed(spec.seed, source)
    try:  # before the registries are read: what the plugins register resolves like a built-in
        import_plugins(plugins)
    except PluginError as err:
        raise SpecError(f"{source}: {err}") from None
    written = set() if every_key_written else {*data, *(f"train.{key}" for key in train_table)}
    _check_settings_apply(spec, source, written)
    if spec.sampler == "python-random":
        ranges = [k for k, v in search.items() if not isinstance(v, Choice)]
        ranges += [f"{m.name}: {k}" for m in methods for k, v in m.search.items() if not isinstance(v, Choice)]
        if ranges:
            raise SpecError(f"{source}: the python-random sampler draws from choices only; these are ranges: {ranges}")
    return spec


def _check_seed(seed: int, where: str) -> None:
    """The study seed and each searched training seed: a run's seed is derived from the study seed by
    products that must stay in int64, and torch takes a searched one as it is."""
    if not 0 <= seed < 2**32:
        raise SpecError(f"{where}: seed must lie in [0, 2**32), got {seed}")


def _method_model_params(m: dict[str, Any], search: dict[str, Any], where: str) -> dict[str, Any]:
    """A method's own model hyperparameters (``model_params``), none of them searched in [search]."""
    params = dict(_take(m, "model_params", dict, where, {}))
    searched = sorted(name for name in params if f"{MODEL_PREFIX}{name}" in search)
    if searched:
        raise SpecError(f"{where}: model_params {searched} are searched in [search] for every method; drop one of the two")
    return params


def _reading(method: MethodSpec, methods: list[MethodSpec], where: str) -> MethodSpec:
    """A method with ``runs_of`` as the method whose runs it reads (loss, transforms, parameters,
    datasets: what trained them) but for its name and decision rule."""
    if method.runs_of is None:
        return method
    read = next((m for m in methods if m.name == method.runs_of), None)
    if read is None or read.runs_of is not None:
        trained = [m.name for m in methods if m.runs_of is None]
        raise SpecError(f"{where}: runs_of must name a method of the spec that trains, one of {trained}; got {method.runs_of!r}")
    if read.decision == method.decision:
        raise SpecError(f"{where}: it reads the runs of {read.name!r} through that method's own decision "
                        f"{read.decision!r}, which gives its scores again; give it another decision")  # fmt: skip
    return replace(read, name=method.name, decision=method.decision, runs_of=method.runs_of)


def _check_early_stopping(spec: Spec, source: str) -> None:
    """Early stopping chooses one of several epochs by the validation score of that epoch's model."""
    if spec.train.epochs < 2:
        raise SpecError(f"{source} [train]: early_stopping chooses among epochs; epochs = {spec.train.epochs} leaves one")
    if spec.tie_break == "train_metric":
        # The tie break scores the last epoch's model on its training part, not the kept checkpoint.
        raise SpecError(f"{source}: tie_break = 'train_metric' cannot apply with [train] early_stopping "
                        "(it scores the last epoch, not the kept one); use tie_break = 'earliest'")  # fmt: skip


def _check_settings_apply(spec: Spec, source: str, written: set[str]) -> None:
    """Refuse settings the study would silently ignore: at any value but their default, and at that too
    where ``written`` (the keys the spec writes, ``train.<key>`` for [train]'s) holds them."""
    train, where = spec.train, f"{source} [train]"
    if train.optimizer != "sgd" and ("train.momentum" in written or train.momentum != _default(TrainConfig, "momentum")):
        raise SpecError(f"{where}: momentum applies to the sgd optimizer only; {train.optimizer} would ignore it")
    if train.lr_final is None and "train.lr_schedule" in written:  # (stored specs before this check may hold one)
        raise SpecError(f"{where}: lr_schedule shapes the lr's decay to lr_final, and lr_final = 0 keeps the lr "
                        "constant; drop one of the two")  # fmt: skip
    lrs = spec.search.get("lr")
    top = None if lrs is None else max(lrs.options) if isinstance(lrs, Choice) else lrs.high
    if train.lr_final is not None and top is not None and train.lr_final >= top:  # (a run's lr decays to lr_final)
        raise SpecError(f"{where}: lr_final = {train.lr_final:g} is at or above every searched lr (at most {top:g}): "
                        "no run's lr would decay; lower it, or set lr_final = 0 for a constant lr")  # fmt: skip
    labels, names = {d.label for d in spec.datasets}, {d.name for d in spec.datasets}
    known = labels | names
    for m in spec.methods:
        for x in m.datasets or ():
            matched = [d.label for d in spec.datasets if x in (d.label, d.name)] if x in labels and x in names else []
            if len(matched) > 1:  # (one set's label, another's name: the entry would take both)
                raise SpecError(f"{source} method {m.name!r}: datasets entry {x!r} is one data set's label and another's "
                                f"name ({', '.join(matched)}); name them by their labels")  # fmt: skip
        absent = [x for x in m.datasets or () if x not in known]
        if absent:
            raise SpecError(f"{source} method {m.name!r}: datasets {absent} are not datasets of the spec "
                            f"(its datasets: {[d.label for d in spec.datasets]})")  # fmt: skip
    if spec.search_order and spec.sampler != "python-random":
        raise SpecError(f"{source}: search_order is the python-random sampler's draw order; sampler {spec.sampler!r} ignores it")
    from lossbench.data import DATASETS, load_dataset
    from lossbench.data.splits import SEED_BITS, check_split_seed

    for i, d in enumerate(spec.datasets):
        if "data_dir" in d.params:  # the runner passes --data-dir to every loader itself
            raise SpecError(f"{source} datasets[{i}] ({d.name}): params.data_dir cannot be set in a spec; "
                            "the data folder is given by --data-dir")  # fmt: skip
        if d.name not in DATASETS:
            continue  # refused, with the registered names, when loaded
        info = DATASETS.get(d.name)
        arguments = {**inspect.signature(load_dataset).parameters, **inspect.signature(info.loader).parameters}
        for key, value in d.params.items():
            if key in arguments:  # unknown keys: refused, with the dataset's parameters, when loaded
                check_value(f"{source} datasets[{i}] ({d.name})", f"params.{key}", value, arguments[key])
        split = d.params.get("split", arguments["split"].default if "split" in arguments else None)
        if spec.resample_splits and not resamples_split(d):  # (a warning: stored claims resample adult and keep it)
            warnings.warn(f"{source} datasets[{i}] ({d.label}): resample_splits cannot apply, its test split is fixed "
                          f"({'test_path is given' if 'seed' in arguments else 'its loader draws none'}); its final "
                          "runs keep it", FixedSplitWarning, stacklevel=2)  # fmt: skip
        elif spec.resample_splits and split in SEED_BITS:
            last = max(evaluation_seeds(spec))  # (each evaluation seed draws the loader's split)
            try:
                check_split_seed(last, split)
            except ValueError as err:
                raise SpecError(f"{source} datasets[{i}] ({d.name}): resample_splits draws a {split} split per "
                                f"evaluation seed (seed * 1000 + i, up to {last}): {err}; use a smaller seed") from None  # fmt: skip
        # The default metric stands for each task's headline (micro-F1 on multi-label sets); a metric
        # named otherwise must exist for every dataset's task, else another one would be maximised.
        metrics = SELECTION_METRICS.get(info.task, (spec.selection_metric,))
        default = spec.selection_metric == _default(Spec, "selection_metric")
        if (not default or "selection_metric" in written) and spec.selection_metric not in metrics:
            headline = selection_metric(spec.selection_metric, info.task)
            hint = f"; leave selection_metric out to select each task by its headline metric ({headline} here)"
            raise SpecError(f"{source}: selection_metric {spec.selection_metric!r} does not exist for "
                            f"{info.task} dataset {d.label!r} (it has {metrics}){hint if default else ''}")  # fmt: skip


def resamples_split(d: DatasetSpec) -> bool:
    """Whether ``resample_splits`` gives the dataset a train/test split per evaluation seed: its loader
    draws the split by a ``seed`` and no ``test_path`` is given (a set shipped with its test file, as
    adult, mnist or sst2, or compare()'s ``test=``, keeps its split).  A ValueError for a dataset not
    registered in this process."""
    from lossbench.data import get_dataset_info

    return "seed" in get_dataset_info(d.name).params() and d.params.get("test_path") is None


def evaluation_seeds(spec: Spec) -> list[int]:
    """The same seeds for every method, so their test scores pair up seed by seed."""
    return [spec.seed * 1000 + i for i in range(spec.seeds)]


def spec_from_json(text: str) -> Spec:
    """Inverse of :meth:`Spec.to_json` (the form kept in storage)."""
    data = {k: v for k, v in json.loads(text).items() if v is not None}
    if data["train"]["lr_final"] is None:
        data["train"]["lr_final"] = 0.0  # the TOML spelling of "no decay"
    for d in data["datasets"]:
        d["label"] = d.pop("display")
        for key in ("label", "max_train"):
            if d[key] is None:
                del d[key]
    for i, m in enumerate(data["methods"]):
        if m.get("runs_of") is not None:  # (its other fields were the read method's)
            data["methods"][i] = {"name": m["name"], "runs_of": m["runs_of"],
                                  "decision": m.get("decision", _default(MethodSpec, "decision"))}  # (left out at its default)
            continue
        m.pop("runs_of", None)
        m["transforms"] = [{"name": t["name"], "params": t["params"]} for t in m["transforms"]]
        if m["datasets"] is None:
            del m["datasets"]
        if m.get("then") is None:
            m.pop("then", None)
    return parse_spec(data, "stored spec", every_key_written=True)



def load_spec(path: str | Path) -> Spec:
    path = Path(path)
    try:
        raw = read_regular_file(path)
    except OSError as err:
        raise SpecError(f"cannot read spec file {str(path)!r}: {err.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")  # TOML is UTF-8 (a byte-order mark, as some editors write, dropped)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise SpecError(f"{path}:{line}: not UTF-8 text (byte {raw[err.start]:#04x}); a TOML spec must be UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: invalid TOML: {err}") from None
    return parse_spec(data, str(path))


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__package__).joinpath("presets").iterdir() if p.name.endswith(".toml"))


def preset_text(name: str) -> str:
    if name not in preset_names():
        raise SpecError(f"unknown preset {name!r}; available: {preset_names()}")
    return resources.files(__package__).joinpath("presets", f"{name}.toml").read_text()


def load_preset(name: str) -> Spec:
    return parse_spec(tomllib.loads(preset_text(name)), f"preset {name!r}")
