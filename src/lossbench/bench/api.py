"""The bench from Python: :func:`compare` runs a study on data and a model held in memory.

``compare(data, model=factory, methods=[...], out=...)`` turns the data into a
``lossbench.data.Dataset`` and the model factory into a registered model, both under names
generated for the call, builds the spec with :func:`lossbench.bench.spec.parse_spec` (every default
is the spec's), and runs what ``lossbench run`` runs: the same checks before any work, the same
runner and storage (the SQLite file in ``out`` unless ``storage`` or ``$LOSSBENCH_STORAGE`` names
another), the same report.  The generated names are registered for the call only.

The device, ``--out`` and pre-flight helpers here are the command line's too (``cli.py``).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dis
import functools
import gc
import hashlib
import inspect
import os
import re
import sys
import tempfile
import types
import warnings
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lossbench._checks import check_count
from lossbench._generators import python_and_numpy_kept
from lossbench._locks import ForkSafeLock
from lossbench._paths import parent_folder_reason, untrusted_reason
from lossbench.bench.defaults import DEFAULT_PACK
from lossbench.bench.plugins import own_code
from lossbench.bench.spec import (
    MODEL_PREFIX,
    Spec,
    SpecError,
    TrainConfig,
    evaluation_seeds,
    parse_spec,
    resamples_split,
)
from lossbench.data import DATASETS, DEFAULT_TEST_FRACTION, Dataset, DatasetInfo, check_test_labels
from lossbench.data.splits import train_test_indices
from lossbench.data.table import MAX_CATEGORIES
from lossbench.models import MODELS, ModelInfo
from lossbench.registry import HyperParam, Registry
from lossbench.train._base import trains

if TYPE_CHECKING:
    from lossbench.bench.execution import DataCache

SOURCE = "in memory (lossbench.bench.compare)"  # a generated dataset's and model's stated origin


def resolve_device(name: str | torch.device, what: str = "device") -> torch.device:
    """The torch device (``auto``: CUDA when available), refused before any work unless this
    machine has it; ``what`` names the input in the message (``--device`` on the command line)."""
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{what} {name!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{what} {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"{what} {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{what} {name}: MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{what} {name!r}: expected auto, cpu, cuda, cuda:N or mps")
    return device


def check_writable_folder(out: str | Path, what: str = "out") -> None:
    """``out`` is a folder this user can write, or can be made: checked before any work, so a run
    never ends unable to write its report (nothing is left here: a probe folder is made and removed)."""
    if not str(out).strip():
        raise ValueError(f"{what} must name a folder, got {str(out)!r}")
    path = Path(out).absolute()
    # A link to nothing does not exist, but no folder can be made through it (mkdir says it exists).
    existing = next(p for p in (path, *path.parents) if p.exists() or p.is_symlink())
    if not existing.exists():
        raise ValueError(f"{what} {out}: {existing} is a link to {os.readlink(existing)}, which does not exist")
    if not existing.is_dir():
        raise ValueError(f"{what} {out}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {out}: {existing} is not writable by this user")
    # --out itself: its owner or another writer could put links in it that send the report elsewhere; any
    # folder above it: its owner, or a writer without the sticky bit, could swap --out for a link, also
    # while a run trains (every folder up to / checked, whether --out exists yet or not, on the way as
    # written too, where a link leads elsewhere: the folder holding the link could swap it)
    reason = untrusted_reason(path) or next(
        (f"{p} is {r}" for p in path.parents if p.exists() and (r := parent_folder_reason(p, os.stat(p)))), None)
    if reason:
        own = reason.startswith(f"{path.resolve()} is ")
        owned = "owned by uid" in reason  # (another user's folder or link: no mode of it helps)
        fix = ("or make this one yours: chown, chmod go-w" if own else "" if owned else
               "or give that folder the sticky bit, chmod +t, as /tmp has, so that what you make there stays yours")
        raise ValueError(f"{what} {out}: {reason}: another user could redirect lossbench's writes from there; use a "
                         f"folder of your own{f' ({fix})' if fix else ''}")  # fmt: skip
    try:  # os.access does not know everything (root in /sys, a read-only mount's ACLs): try
        os.rmdir(tempfile.mkdtemp(prefix=".lossbench-probe-", dir=existing))
    except OSError as err:
        raise ValueError(f"{what} {out}: cannot create a folder in {existing}: {err.strerror or err}") from None


def preflight(spec: Spec, data_dir: str | None) -> DataCache:
    """Every check the runner makes before it stores a spec (the tuning splits' validation parts among
    them, as they load), made against a storage in memory: a refused spec leaves no folder or database behind.
    Returns the data it loaded (on the CPU), for the runner that runs the spec (``Runner(data=...)``)."""
    import optuna

    from lossbench.bench.runner import Runner

    runner = Runner(spec, optuna.storages.InMemoryStorage(), torch.device("cpu"), data_dir=data_dir)
    for dataset in {d.label: d for d, _ in spec.units()}.values():
        if spec.resample_splits and resamples_split(dataset):  # (each seed's split, loaded now, not after tuning)
            for seed in evaluation_seeds(spec):
                try:
                    runner.cache.get(dataset, "final", seed)
                except ValueError as err:
                    raise SpecError(f"dataset {dataset.label!r}, the split of evaluation seed {seed} (resample_splits): "
                                    f"{err}") from None  # fmt: skip
    return runner.cache


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` returns: the spec it ran, the leaderboard (``leaderboard.csv``'s rows
    as a pandas DataFrame, best first per dataset) and the report's files (``report.md`` first)."""

    spec: Spec
    leaderboard: Any  # pandas.DataFrame
    files: tuple[Path, ...]
    storage: str  # the storage URL, its password masked
    complete: bool  # every method has every evaluation seed stored

    @property
    def report(self) -> Path:
        """``report.html``: the report with its plots embedded."""
        return next(p for p in self.files if p.name == "report.html")


def compare(
    data: Any,
    *,
    methods: Sequence[str | dict[str, Any]] | None = None,
    out: str | Path,
    test: Any = None,
    test_fraction: float | None = None,
    label: str | None = None,
    model: str | Callable[..., nn.Module] | None = None,
    model_search: dict[str, Any] | None = None,
    name: str | None = None,
    dataset_label: str = "data",
    spec: dict[str, Any] | None = None,
    storage: str | None = None,
    device: str | torch.device = "auto",
    pack: int = DEFAULT_PACK,
    progress: bool = False,
    **options: Any,
) -> Comparison:
    """Tune and evaluate ``methods`` on ``data`` with the bench's protocol; see the README.

    ``data``: ``(x, y)`` tensors or NumPy arrays (``x`` ``(N, D)`` or ``(N, C, H, W)``; ``y`` class
    labels ``(N,)`` of any sortable kind, or 0/1 ``(N, C)`` for multi-label), a pandas DataFrame
    whose ``label`` column holds the class (text and category columns are one-hot encoded, at most
    ``MAX_CATEGORIES`` values each; missing cells and date or time columns are refused), or a
    map-style torch ``Dataset`` of ``(x, y)`` pairs.  ``test``: the test split in the same form (a
    test frame's columns of the data's kinds, one-hot over the data's categories only); without it a
    stratified ``test_fraction`` (default ``DEFAULT_TEST_FRACTION``, 0.2) is held out (by seed, so
    ``resample_splits`` works); with it, a ``test_fraction`` is refused.
    ``model``: a registered model name, or a factory ``(dataset, seed, **hyperparameters) ->
    nn.Module`` (``dataset`` a ``lossbench.data.Dataset``; a ``num_outputs`` argument, if it has
    one, gets the logit width a loss needs).  ``model_search``: ``{hyperparameter: space}`` in the
    spec's search syntax (``{"choices": [...]}``, ``{"low": ..., "high": ..., "log": ...}``), the
    spec's ``[search] model.<name>``.  ``methods``: loss names or method tables as a spec has them.
    ``spec``: a spec as a dict (TOML's shape) to start from; ``options``: any other spec field
    (``trials``, ``seeds``, ``plugins``, ...) or ``[train]`` field (``epochs``, ``model_params``,
    ...), overriding ``spec``.  ``name``: the study's name, by default one derived from the spec,
    so the same call resumes its stored study.  The process's torch threads are left as they are.
    Calls from several threads run one after another: the registries they add the data and model to,
    torch's global generator that seeds each run's model, and matplotlib's style are the process's.
    """
    with _ONE_AT_A_TIME:
        return _compare(data, methods, out, test, test_fraction, label, model, model_search, name, dataset_label,
                        spec, storage, device, pack, progress, options)  # fmt: skip


# (see compare's docstring: two calls at once collided in the registries and drew each other's seeds)
_ONE_AT_A_TIME = ForkSafeLock(reentrant=True)


@trains  # (models and data built as normal tensors too, under a caller's inference mode)
def _compare(data, methods, out, test, test_fraction, label, model, model_search, name, dataset_label, spec, storage,
             device, pack, progress, options) -> Comparison:  # fmt: skip
    table = _spec_table(spec, options, methods, model_search)
    if name is not None:
        table["name"] = name
    dataset, loader, digest = _in_memory(data, test, test_fraction, label, dataset_label)
    data_name = f"compare-data-{digest}"
    table["datasets"] = [{"name": data_name, "label": dataset_label}]
    entries: list[tuple[Registry, str, Any]] = [(DATASETS, data_name, DatasetInfo(
        data_name, "builtin", loader, dataset.task, dataset.feature_kind, f"{dataset_label} ({SOURCE})", SOURCE))]  # fmt: skip
    if isinstance(model, nn.Module):  # (callable too: it would be called as a factory, with the data set)
        raise ValueError(f"model must be a registered model name or a factory (dataset, seed, **hyperparameters) -> "
                         f"nn.Module building a fresh one for each run, got a {type(model).__name__} instance")  # fmt: skip
    if callable(model):
        train = table.setdefault("train", {})
        info = _model_info(
            model, dataset.feature_kind, set(table.get("search", {})), set(train.get("model_params", {}))
        )
        entries.append((MODELS, info.name, info))
        train["model"] = info.name
    elif model is not None:
        table.setdefault("train", {})["model"] = model
    del dataset  # (its tensors, a copy of the data the loader gives the runs, are not held through the study)
    with contextlib.ExitStack() as stack:
        for registry, key, entry in entries:
            stack.enter_context(_registered(registry, key, entry))
        study = parse_spec({"name": "compare", **table}, "compare")
        if name is None and "name" not in table:
            study = replace(study, name=f"compare-{study.fingerprint()[:12]}")
        return _run(study, out, storage, resolve_device(device), pack, progress)


def _run(
    spec: Spec, out: str | Path, storage: str | None, device: torch.device, pack: int, progress: bool
) -> Comparison:
    """What ``lossbench run`` does after loading its spec, with the leaderboard returned."""
    import optuna
    import pandas as pd

    from lossbench.bench.console import run_progress, say_alone, say_unpaired
    from lossbench.bench.report import check_report_folder, incomplete, leaderboard_records, write_report
    from lossbench.bench.results import collect
    from lossbench.bench.runner import Runner
    from lossbench.bench.storage import check_storage_url, masked, open_storage, storage_url

    check_count("pack", pack)  # (before the storage is made: Runner checks it too late for that)
    check_writable_folder(out)
    check_report_folder(out, spec.name, "out")
    # An earlier call's garbage in cycles (its plots' parser frames, ~9 MB) collected before the runner freezes the
    # heap (gc.freeze): frozen with the rest, it outlived the study, as full passes after the unfreeze are rare.
    gc.collect()
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial otherwise; restored below
    # (each run seeds torch's, Python's and NumPy's generators with its own seed: the caller's are given back as they were)
    cuda = list(range(torch.cuda.device_count())) if device.type == "cuda" else []  # (manual_seed seeds each)
    store = None
    try:
        with torch.random.fork_rng(devices=cuda), python_and_numpy_kept():
            url = storage_url(storage, out)
            check_storage_url(url)
            data = preflight(spec, None)
            store = open_storage(url, spec.heartbeat_interval)
            runner = Runner(spec, store, device, pack=pack, data=data)
            if progress:
                say_alone(runner.alone())
                say_unpaired(spec)
            with run_progress(spec.name) if progress else contextlib.nullcontext(None) as callback:
                runner.run(callback)
        spec = runner.spec  # the spec it finished: another worker may have grown the study
        results = collect(spec, store)
    finally:
        optuna.logging.set_verbosity(verbosity)
        if store is not None:
            _closed(store)
    files = write_report(spec, results, out)
    header, rows = leaderboard_records(results)
    board = pd.DataFrame(rows, columns=header)
    return Comparison(spec, board, tuple(files), masked(url), not incomplete(results))


def _closed(storage) -> None:
    """The call's storage closed: its engine's connections (a SQLite file's descriptors) now, not whenever the
    collector reaches them (a notebook's calls ran out of descriptors)."""
    storage.remove_session()
    storage.engine.dispose()


@contextlib.contextmanager
def _registered(registry: Registry, key: str, entry: Any) -> Iterator[None]:
    registry.add(key, entry)
    try:
        yield
    finally:
        registry.remove(key)


# ---------------------------------------------------------------------------------------------
# The spec


_TRAIN_FIELDS = set(TrainConfig.__dataclass_fields__)
_SPEC_FIELDS = set(Spec.__dataclass_fields__) - {"datasets", "train"}


def _spec_table(
    spec: dict[str, Any] | None, options: dict[str, Any], methods: Any, model_search: Any
) -> dict[str, Any]:
    """The spec as parse_spec takes it: ``spec``, then the keyword options, methods and model search."""
    if spec is not None and not isinstance(spec, dict):
        raise ValueError(f"spec must be a dict shaped as a TOML spec, got {type(spec).__name__}")
    table = copy.deepcopy(spec or {})
    if "datasets" in table:
        raise ValueError("spec: 'datasets' cannot be given to compare: the data passed is the dataset")
    for key, value in options.items():
        if key in _TRAIN_FIELDS and key != "model":
            table.setdefault("train", {})[key] = value
        elif key in _SPEC_FIELDS:
            table[key] = value
        else:
            raise ValueError(f"compare: unknown option {key!r}; spec options: {', '.join(sorted(_SPEC_FIELDS))}; "
                             f"[train] options: {', '.join(sorted(_TRAIN_FIELDS - {'model'}))}")  # fmt: skip
    if methods is not None:
        if isinstance(methods, (str, dict)):
            methods = [methods]
        table["methods"] = [_method(m) for m in methods]
    if model_search:
        if not isinstance(model_search, dict):
            raise ValueError(f"model_search must be a dict {{hyperparameter: space}}, got {model_search!r}")
        table["search"] = {
            **table.get("search", {}),
            **{f"{MODEL_PREFIX}{k}": v for k, v in model_search.items()},
        }
    return table


def _code_digest(factory: Any) -> str:
    """A digest of what a factory computes: its code (and its nested functions'), defaults and the
    settings it closes over, following partials, bound methods, a class's methods and the functions,
    classes and settings of your own code it reads at module level (a model class, a width constant,
    ``helpers.Net`` of a module of yours; not installed libraries', which their versions pin).
    Addresses in reprs are left out, so the same code gives the same digest in another process."""
    parts: list[bytes] = []
    seen: set[int] = set()
    todo: collections.deque[tuple[str, Any]] = collections.deque()  # (what names it, the object): read in turn

    def text(value: Any) -> str:  # sets in sorted order (their repr's order follows PYTHONHASHSEED)
        if (array := _array_bytes(value)) is not None:  # (a repr elides the middle of a large one)
            return f"{type(value).__name__}({value.dtype}, {tuple(value.shape)}, {hashlib.sha256(array).hexdigest()})"
        if isinstance(value, (set, frozenset)):
            return "{" + ", ".join(sorted(map(text, value))) + "}"
        if isinstance(value, (tuple, list)):
            return "(" + ", ".join(map(text, value)) + ")"
        if isinstance(value, dict):
            return "{" + ", ".join(sorted(f"{text(k)}: {text(v)}" for k, v in value.items())) + "}"
        return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))

    def stable(value: Any) -> bytes:
        return text(value).encode()

    def code_of(code: types.CodeType, names: dict[str, Any]) -> None:
        parts.extend([code.co_code, stable(code.co_names)])
        for const in code.co_consts:
            code_of(const, names) if isinstance(const, types.CodeType) else parts.append(stable(const))
        for name, attr in _globals_read(code):
            value = names.get(name, _MISSING)
            if isinstance(value, types.ModuleType) and attr is not None and own_code(value):
                name, value = f"{name}.{attr}", getattr(value, attr, _MISSING)  # helpers.Net
            if value is not _MISSING:
                todo.append((name, value))

    def function(fn: types.FunctionType) -> None:
        code_of(fn.__code__, fn.__globals__)
        parts.extend([stable(fn.__defaults__), stable(fn.__kwdefaults__)])
        for cell in fn.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                value = None
            # a closed-over setting (a width, a list or dict of them, a tensor) counts by its value as the call
            # finds it, a function or class by its code (make(Net): an edited Net is another study); anything
            # else by its type (a factory that appends settings to a list it closes over makes a new study
            # each call: the price of never taking another configuration's stored runs as its own)
            if isinstance(value, (types.FunctionType, type)):
                todo.append(("", value))
            parts.append(stable(value) if _setting(value) else type(value).__qualname__.encode())

    def state(instance: Any) -> None:  # a callable instance's or a bound method's own: Factory(width=256)
        for attr, member in sorted(getattr(instance, "__dict__", {}).items()):
            parts.append(stable((attr, member)) if _setting(member) else f"{attr}: {type(member).__qualname__}".encode())

    def read(name: str, value: Any) -> None:
        if _setting(value):  # a module-level setting (a width, a list of widths)
            parts.append(stable((name, value)))
            return
        if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)) and not own_code(value):
            # a library's class or function by the name the code reads (ACT = nn.ReLU, then nn.Tanh)
            parts.append(f"{name} = {getattr(value, '__module__', '')}.{getattr(value, '__qualname__', '')}".encode())
            return
        if id(value) in seen or not (isinstance(value, (types.FunctionType, type)) and own_code(value)):
            return
        seen.add(id(value))
        if isinstance(value, types.FunctionType):
            function(value)
            return
        parts.append(value.__qualname__.encode())
        todo.extend(("", base) for base in value.__bases__)
        for attr, member in sorted(vars(value).items()):
            member = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
            member = member.fget if isinstance(member, property) else member
            if isinstance(member, types.FunctionType):
                parts.append(attr.encode())
                function(member)
            elif not attr.startswith("__") and _setting(member):
                parts.append(stable((attr, member)))

    while isinstance(factory, functools.partial):
        parts.append(stable((factory.args, factory.keywords)))
        factory = factory.func
    if isinstance(factory, types.MethodType):  # Net.build (a classmethod), zoo.make: the function, and its class
        owner = factory.__self__
        todo.append(("", owner if isinstance(owner, type) else type(owner)))
        if not isinstance(owner, type):
            state(owner)
        factory = factory.__func__
    if isinstance(factory, types.FunctionType):
        seen.add(id(factory))
        function(factory)  # (even where it is not your own code: its settings count)
    else:  # a class, or an instance whose class is callable
        todo.append(("", factory if isinstance(factory, type) else type(factory)))
        if not isinstance(factory, type):
            state(factory)
    while todo:  # (a worklist, not recursion: a long chain of functions naming each other is fine)
        read(*todo.popleft())
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:8]


_MISSING = object()
_LOADS = {"LOAD_GLOBAL", "LOAD_NAME"}  # the reads of module-level names
_ATTRIBUTE_LOADS = {"LOAD_ATTR", "LOAD_METHOD"}


def _globals_read(code: types.CodeType) -> Iterator[tuple[str, str | None]]:
    """The module-level names ``code`` reads (not its attribute names), each with the attribute read
    from it right after, if any (``helpers.Net``)."""
    instructions = list(dis.get_instructions(code))
    for i, ins in enumerate(instructions):
        if ins.opname in _LOADS:
            after = instructions[i + 1] if i + 1 < len(instructions) else None
            yield ins.argval, after.argval if after is not None and after.opname in _ATTRIBUTE_LOADS else None


def _setting(value: Any) -> bool:
    """A plain value a factory may read as a setting: a number, a string, a tensor or array (by its bytes), or
    a container of them."""
    if isinstance(value, (int, float, complex, str, bytes, bool, type(None))) or _array_bytes(value) is not None:
        return True
    if isinstance(value, (tuple, list, set, frozenset)):
        return all(_setting(v) for v in value)
    return isinstance(value, dict) and all(_setting(k) and _setting(v) for k, v in value.items())


def _array_bytes(value: Any) -> bytes | None:
    """A tensor's or a NumPy array's values as bytes (None for anything else, and an array of objects)."""
    if isinstance(value, torch.Tensor):
        try:
            return value.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes()
        except (RuntimeError, TypeError):  # (a sparse, quantized or meta tensor: by its type, as any other object)
            return None
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray) and value.dtype != object:
        return np.ascontiguousarray(value).tobytes()
    return None


def _method(m: Any) -> dict[str, Any]:
    if isinstance(m, str):
        return {"name": m, "loss": m}
    if isinstance(m, dict):
        return dict(m)
    raise ValueError(f"methods: a method is a loss name or a method table (dict), got {m!r}")


def _model_info(
    factory: Callable[..., nn.Module], feature_kind: str, search: set[str], fixed: set[str]
) -> ModelInfo:
    """A model entry for ``factory(dataset, seed, **hyperparameters)``; every searched or fixed
    hyperparameter is one the factory takes, every one it needs is given."""
    name = f"{getattr(factory, '__module__', None) or 'model'}.{getattr(factory, '__qualname__', type(factory).__name__)}"
    name += f"-{_code_digest(factory)}"  # an edited factory is another model: its study is not the old one resumed
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        raise ValueError(
            f"model {name}: its signature cannot be read; give a function (dataset, seed, **hyperparameters)"
        ) from None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 and not any(p.kind == p.VAR_POSITIONAL for p in params):
        raise ValueError(
            f"model {name}: a model factory takes (dataset, seed, **hyperparameters); it takes {[p.name for p in params]}"
        )
    named = {p.name: p for p in params[2:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    outputs = named.pop("num_outputs", None) is not None
    given = {k[len(MODEL_PREFIX) :] for k in search if k.startswith(MODEL_PREFIX)} | fixed
    if not any(p.kind == p.VAR_KEYWORD for p in params):
        unknown = sorted(given - set(named))
        if unknown:
            raise ValueError(
                f"model {name} has no hyperparameter {unknown[0]!r}; it takes {sorted(named) or 'none'}"
            )
    needed = sorted(k for k, p in named.items() if p.default is p.empty and k not in given)
    if needed:
        raise ValueError(f"model {name}: hyperparameter {needed[0]!r} has no default; search it (model_search) "
                         "or fix it (model_params)")  # fmt: skip
    hyper = [HyperParam(k, None if p.default is p.empty else p.default) for k, p in named.items()]
    hyper += [HyperParam(k, None) for k in sorted(given - set(named))]  # taken by its **kwargs

    def build(dataset: Dataset, num_outputs: int, **hyperparameters: Any) -> nn.Module:
        if not outputs and num_outputs != dataset.num_classes:
            raise ValueError(f"model {name} gives one logit per class, but the loss needs {num_outputs} "
                             "(one for a sigmoid loss on two classes): let it take num_outputs")  # fmt: skip
        extra = {"num_outputs": num_outputs} if outputs else {}
        # The bench seeds torch's generator with the run's seed before it builds the model.
        module = factory(dataset, torch.initial_seed(), **extra, **hyperparameters)
        if not isinstance(module, nn.Module):
            raise TypeError(f"model {name} returned {type(module).__name__}, not a torch.nn.Module")
        return module  # (one it returned before is refused by build_model)

    return ModelInfo(
        name, build, (feature_kind,), tuple(hyper), SOURCE, f"{name}, a model factory given to compare"
    )


# ---------------------------------------------------------------------------------------------
# The data


def _in_memory(data: Any, test: Any, test_fraction: float | None, label: str | None, dataset_label: str
               ) -> tuple[Dataset, Callable[..., Dataset], str]:  # fmt: skip
    """The data as a Dataset (split at seed 0), its loader and a digest of its content."""
    if test is not None and test_fraction is not None:  # (as the file loaders refuse a test_path with one)
        raise ValueError(f"test_fraction={test_fraction!r} and test= exclude each other: the test split is given")
    test_fraction = DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction
    x, y = _arrays(data, label, "data")
    if test is not None:
        x_test, y_test = _arrays(test, label, "test")
        if _is_frame(data) != _is_frame(test):
            raise ValueError("test: give it as the data is given, both as DataFrames or neither")
        if _is_frame(data):  # the test frame's columns encoded as the data's
            x_test = _test_frame_features(data, test, label)
        if x_test.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"test: its samples have shape {tuple(x_test.shape[1:])}, the data's {tuple(x.shape[1:])}"
            )
        for part, what in ((y, "data"), (y_test, "test")):
            _labels(part, what)  # each checked on its own, before they are joined
    else:
        x_test, y_test = x[:0], y[:0]
    kind = _feature_kind(x, "data")
    task, y_all, classes = _labels(_joined(y, y_test), "data")
    y, y_test = y_all[: len(x)], y_all[len(x) :]
    if task == "multilabel" and len(y) and bool((y.sum(1) == 1).all()):  # (the training rows decide the task)
        warnings.warn("data: every label row holds exactly one 1 (one-hot): read as multi-label, one decision per "
                      "label; for one class per sample give class indices, y.argmax(1)", stacklevel=3)  # fmt: skip
    if test is not None and task == "multiclass":
        check_test_labels(y, y_test, classes, "test")
    digest = hashlib.sha256()
    for part in (x, y, x_test, y_test):
        digest.update(str((part.dtype, tuple(part.shape))).encode())
        digest.update(part.contiguous().numpy().tobytes())
    digest.update(repr((classes, None if test is not None else test_fraction)).encode())

    def make(
        x_train: torch.Tensor, y_train: torch.Tensor, x_held: torch.Tensor, y_held: torch.Tensor, how: str
    ) -> Dataset:
        return Dataset(
            dataset_label, task, x_train, y_train, x_held, y_held, classes, kind, f"{SOURCE}, {how}"
        )

    if test is not None:

        def loader() -> Dataset:
            return make(x, y, x_test, y_test, "test split given")
    else:

        def loader(seed: int = 0) -> Dataset:  # resample_splits loads it with each evaluation seed
            train_idx, test_idx = train_test_indices(y, test_fraction, seed)
            return make(
                x[train_idx],
                y[train_idx],
                x[test_idx],
                y[test_idx],
                f"test_fraction={test_fraction:g}, seed={seed}",
            )

    return loader(), loader, digest.hexdigest()[:12]


def _joined(y: Any, y_test: Any) -> Any:
    if isinstance(y, torch.Tensor) and isinstance(y_test, torch.Tensor):
        if y.shape[1:] != y_test.shape[1:]:
            raise ValueError(f"test: its label rows have shape {tuple(y_test.shape[1:])}, the data's {tuple(y.shape[1:])}")
        return torch.cat([y, y_test])  # (the common dtype: each part's values were checked as labels)
    values = [v.item() if isinstance(v, torch.Tensor) else v for v in [*y, *y_test]]
    if len(y_test) and len({isinstance(v, str) for v in values}) > 1:  # (each part's own mix: _labels)
        raise ValueError("test: its labels and the data's must be both names or both numbers")
    return values




def _is_frame(obj: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(obj, pd.DataFrame)


def _test_frame_features(data: Any, test: Any, label: str) -> torch.Tensor:
    """The test frame's features encoded as the data's: its columns matched to the data's by name, each
    numbers where the data's are (else one would be a number in training and a category in test), one-hot
    over the data's categories only, as the table loader's (nothing from the test rows shapes the
    features: a category the data lacks is all zeros)."""
    ours, theirs = set(map(str, data.columns)), set(map(str, test.columns))
    missing, extra = sorted(ours - theirs), sorted(theirs - ours)
    if missing or extra:
        raise ValueError(f"test: its columns differ from the data's (missing {missing}, extra {extra})")
    test = test[list(data.columns)]
    for name in data.columns:
        kinds = ["text" if _one_hot_encoded(f[name]) else "numbers" for f in (data, test)]
        if name != label and kinds[0] != kinds[1]:
            raise ValueError(f"test: column {name!r} holds {kinds[1]}, the data's {kinds[0]}; give it the data's type")
    x_test, _ = _frame(test, label, "test", list(_one_hot(data.drop(columns=[label])).columns))
    return x_test


def _arrays(obj: Any, label: str | None, what: str) -> tuple[torch.Tensor, Any]:
    """Features as a float32 tensor and labels (a tensor, or an object array of names)."""
    pd = sys.modules.get("pandas")  # a DataFrame can only come from a process that imported pandas
    if pd is not None and isinstance(obj, pd.DataFrame):
        return _frame(obj, label, what)
    if label is not None:
        raise ValueError(f"label={label!r} names a DataFrame column, but {what} is a {type(obj).__name__}")
    if isinstance(obj, torch.utils.data.Dataset):
        if not hasattr(obj, "__len__"):
            raise ValueError(f"{what}: a torch Dataset must be map-style (with __len__ and __getitem__)")
        items = [obj[i] for i in range(len(obj))]
        if not items or not all(isinstance(it, (tuple, list)) and len(it) == 2 for it in items):
            raise ValueError(f"{what}: a torch Dataset must yield (x, y) pairs and hold at least one")
        features = [torch.as_tensor(a) for a, _ in items]
        odd = next((i for i, a in enumerate(features) if a.shape != features[0].shape), None)
        if odd is not None:  # (torch.stack's own error named no input)
            raise ValueError(f"{what}: the torch Dataset's samples differ in shape: item 0's x is "
                             f"{tuple(features[0].shape)}, item {odd}'s {tuple(features[odd].shape)}; "
                             "lossbench stacks them into one tensor (pad or resize them to one shape)")  # fmt: skip
        x = torch.stack(features)
        labels = [b for _, b in items]
        odd = next((i for i, b in enumerate(labels) if isinstance(b, torch.Tensor) and b.shape != labels[0].shape), None)
        if odd is not None and isinstance(labels[0], torch.Tensor):
            raise ValueError(f"{what}: the torch Dataset's labels differ in shape: item 0's y is "
                             f"{tuple(labels[0].shape)}, item {odd}'s {tuple(labels[odd].shape)}")  # fmt: skip
        y = (
            torch.stack(labels).detach().cpu()  # (a Dataset may yield its labels on an accelerator)
            if all(isinstance(b, torch.Tensor) for b in labels)
            else _tensor_or_names(labels)
        )
    elif isinstance(obj, (tuple, list)) and len(obj) == 2:
        x, y = _tensor_or_names(obj[0]), _tensor_or_names(obj[1])
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{what}: features must be numbers, got {x.dtype} values")  # noqa: TRY004 - bad input
    else:
        raise ValueError(f"{what}: expected (x, y) tensors or arrays, a pandas DataFrame with label=, or a "
                         f"map-style torch Dataset; got {type(obj).__name__}")  # fmt: skip
    if len(x) != len(y):
        raise ValueError(f"{what}: x has {len(x)} rows but y has {len(y)}")
    if len(y) == 0:
        raise ValueError(f"{what}: no rows")
    _refuse_missing_labels(y, what)
    return _features(x.detach().cpu(), what), y


def _refuse_missing_labels(y: Any, what: str) -> None:
    """A label that is None or NaN, named before the labels are read as classes (a None among names
    would read as a number, a NaN as a fraction)."""
    import numpy as np

    if isinstance(y, torch.Tensor):
        gaps = torch.isnan(y).reshape(len(y), -1).any(1).tolist() if y.is_floating_point() else []
    else:
        gaps = [v is None or (isinstance(v, (float, np.floating)) and bool(np.isnan(v))) for v in y]
    if any(gaps):
        i = gaps.index(True)
        raise ValueError(f"{what}: the labels (y) are missing a value at sample {i} ({y[i]!r}); give every sample a label")


def _tensor_or_names(value: Any) -> Any:
    """A tensor (a copy, on the CPU) of numbers, or an object array of names (text labels)."""
    import numpy as np

    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    array = np.array(value)  # a copy, writable
    return torch.from_numpy(array) if array.dtype.kind in "biuf" else array.astype(object)


def _one_hot_encoded(column: Any) -> bool:
    """Whether ``pd.get_dummies`` one-hot encodes the column (text or category), else it stays numbers."""
    import pandas as pd

    return isinstance(column.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(column.dtype)


def _one_hot(others: Any, columns: list[str] | None = None) -> Any:
    """The features, text and category columns one-hot; with ``columns`` (the data's), over those only."""
    import pandas as pd

    features = pd.get_dummies(others, dtype=float)
    return features if columns is None else features.reindex(columns=columns, fill_value=0.0)


def _frame(frame: Any, label: str | None, what: str, columns: list[str] | None = None) -> tuple[torch.Tensor, Any]:
    """Features and labels of a DataFrame; ``columns``: the data's one-hot columns, for a test frame."""
    import numpy as np
    import pandas as pd

    if label is None:
        raise ValueError(f"{what}: a DataFrame needs label=, the name of its label column")
    if not isinstance(label, Hashable):  # a list of columns: pandas would raise "unhashable type"
        raise ValueError(
            f"label={label!r}: a DataFrame takes one label column; for a multi-label task give (x, y) "
            f"arrays, y with one 0/1 column per label"
        )
    if label not in frame.columns:
        raise ValueError(
            f"label={label!r} is no column of the {what} DataFrame; its columns: {list(map(str, frame.columns))}"
        )
    if list(frame.columns).count(label) > 1:  # (frame[label] would be a DataFrame)
        raise ValueError(f"{what}: the DataFrame has {list(frame.columns).count(label)} columns named {label!r}, "
                         "the label column; rename or drop all but one")  # fmt: skip
    labels = frame[label]
    if labels.isna().any():
        raise ValueError(
            f"{what}: label column {label!r} is missing a value (row {_first(frame, labels.isna())!r})"
        )
    others = frame.drop(columns=[label])
    for name, column in others.items():
        category = isinstance(column.dtype, pd.CategoricalDtype)
        encoded = _one_hot_encoded(column)
        kind = pd.api.types.infer_dtype(column)  # (missing cells skipped)
        if column.dtype == object and kind in _NUMBERS:
            raise ValueError(f"{what}: column {name!r} holds numbers as Python objects (dtype object), which would be "
                             f"one-hot encoded as categories; convert it, e.g. frame[{name!r}] = "
                             f"pd.to_numeric(frame[{name!r}])")  # fmt: skip
        if (not encoded and column.dtype.kind not in "biuf") or kind in _TIMES:
            # dates would come as nanoseconds (~1e18), swamping every other feature, or one-hot per date
            raise ValueError(
                f"{what}: column {name!r} holds {kind} values, not numbers or text; convert it to numbers "
                f"(e.g. days since a date) or drop it"
            )
        if column.isna().any():  # one-hot encoding would turn a missing text cell into all zeros
            raise ValueError(
                f"{what}: column {name!r} is missing a value (row {_first(frame, column.isna())!r}); "
                f"fill or drop missing cells first"
            )
        count = len(column.cat.categories) if category else column.nunique() if encoded else 0
        if count > MAX_CATEGORIES:  # the table loader's limit: an ID column is no category
            raise ValueError(
                f"{what}: column {name!r} holds {count} distinct values, more than max_categories="
                f"{MAX_CATEGORIES} for one-hot encoding; drop it or encode it as numbers"
            )
    features = _one_hot(others, columns)
    if features.shape[1] == 0:
        raise ValueError(f"{what}: the DataFrame has no column besides the label column {label!r}")
    try:
        x = torch.from_numpy(np.array(features.to_numpy(dtype=np.float64)))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what}: a feature column does not convert to numbers: {err}") from None
    numeric = labels.dtype.kind in "biuf"
    y = _tensor_or_names(labels.to_numpy()) if numeric else labels.map(str).to_numpy(dtype=object)
    return _features(x, what, list(map(str, features.columns)), features.index), y


# pandas.api.types.infer_dtype's names for numbers (of a column of objects: read as numbers, not categories)
_NUMBERS = frozenset({"integer", "floating", "mixed-integer-float", "decimal", "complex"})
# pandas.api.types.infer_dtype's names for dates and times (of a typed column or one of objects)
_TIMES = frozenset({"datetime64", "datetime", "date", "time", "timedelta64", "timedelta", "period"})


def _first(frame: Any, mask: Any) -> Any:
    """The label of the first row where ``mask`` holds (as ``frame.loc`` takes it)."""
    return frame.index[mask.to_numpy()].tolist()[0]


def _features(x: torch.Tensor, what: str, columns: list[str] | None = None, index: Any = None) -> torch.Tensor:
    """``x`` as float32 features, checked (``columns``: the names, ``index``: a frame's row labels, which
    an error names as ``frame.loc`` takes them)."""
    if not (
        x.is_floating_point()
        or x.dtype in (torch.bool, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
    ):
        raise ValueError(f"{what}: features must be numbers, got {x.dtype}")
    if not x.is_floating_point() and x.dtype != torch.bool and len(x) and int(x.abs().max()) > 2**24:
        # (features are float32: an id such as 16777217 would round to another)
        raise ValueError(f"{what}: integer features reach {int(x.abs().max())}, beyond 2**24, which float32 (the "
                         "features' type) cannot hold exactly; rescale them or map them to smaller ids")  # fmt: skip
    x = x.to(torch.float32, copy=True)  # never a view of the caller's array (features are float32)
    bad = (~torch.isfinite(x)).reshape(len(x), -1)
    if bad.any():
        row, col = (int(i) for i in bad.nonzero()[0])
        where = f"column {columns[col]!r}" if columns else f"feature {col}"
        label = row if index is None else index[row : row + 1].tolist()[0]
        raise ValueError(
            f"{what}: row {label!r}, {where} is not a finite number (missing values must be filled first)"
        )
    return x


IMAGE_CHANNELS = (1, 3, 4)  # grey, RGB, RGBA: an image's channel count, first or (refused) last


def _feature_kind(x: torch.Tensor, what: str) -> str:
    if x.ndim == 2:
        return "tabular"
    if x.ndim == 4:
        if x.shape[1] not in IMAGE_CHANNELS and x.shape[-1] in IMAGE_CHANNELS:  # (NumPy's and PIL's layout)
            raise ValueError(f"{what}: images of shape {tuple(x.shape)} look channels-last; give them as (samples, "
                             "channels, height, width), e.g. x.permute(0, 3, 1, 2) or np.moveaxis(x, -1, 1)")  # fmt: skip
        if len(x) and float(x.max()) > 1.0:  # (the built-in image sets and models take [0, 1])
            warnings.warn(f"{what}: image values reach {float(x.max()):g}; the built-in image sets are in [0, 1] "
                          "(8-bit pixels divided by 255), which the models' learning rates assume", stacklevel=4)  # fmt: skip
        return "image"
    raise ValueError(
        f"{what}: x has shape {tuple(x.shape)}; expected (samples, features) or (samples, channels, height, width)"
    )


def _labels(y: Any, what: str) -> tuple[str, torch.Tensor, list[str]]:
    """The task, the labels as the bench keeps them and the class names (sorted label values)."""
    import numpy as np

    if getattr(y, "ndim", None) == 2 and y.shape[1] == 1:  # (y.reshape(-1, 1), df[["label"]].values)
        raise ValueError(f"{what}: labels of shape {tuple(y.shape)}: one column reads as one multi-label label; pass "
                         "y.ravel(), shape (samples,), for class labels (two classes: binary)")  # fmt: skip
    if isinstance(y, torch.Tensor) and y.ndim == 2:
        if not ((y == 0) | (y == 1)).all():
            raise ValueError(f"{what}: 2-D labels are multi-label rows and hold 0 and 1 only")
        return "multilabel", y.to(torch.float32), [str(j) for j in range(y.shape[1])]
    values = y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y, dtype=object)
    if values.ndim != 1:
        raise ValueError(
            f"{what}: labels must have shape (samples,) or (samples, labels), got {values.shape}"
        )
    if values.dtype == object and len({isinstance(v, str) for v in values.tolist()}) > 1:  # (np.unique cannot sort them)
        raise ValueError(f"{what}: its labels mix names and numbers; give them as one or the other")
    if values.dtype.kind == "f" and not np.all(np.isfinite(values) & (values == np.round(values))):
        raise ValueError(f"{what}: labels are class labels (integers or names), not fractions: {values[:5]}")
    classes, codes = np.unique(values, return_inverse=True)
    names = [str(int(c)) if isinstance(c, (float, np.floating)) else str(c) for c in classes.tolist()]
    return "multiclass", torch.as_tensor(codes.reshape(-1), dtype=torch.int64), names
