"""The ``lossbench`` command line.

Each sub-command imports what it needs when it runs, so ``lossbench losses`` stays fast and
the core install (torch only) can run everything that does not need the bench's extras.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from lossbench._checks import printable
from lossbench._paths import PACKAGE_DIR, keep_matplotlib_at_home
from lossbench._table import format_table
from lossbench.bench import stops
from lossbench.bench.defaults import DEFAULT_JOBS, DEFAULT_OUT, DEFAULT_PACK, DEFAULT_THREADS

LEDGER_OUT = "lossbench-ledger"  # where `lossbench claims` keeps its database and writes the ledger
STORAGE_ENV = "LOSSBENCH_STORAGE"  # bench.storage.STORAGE_ENV (not imported: `lossbench losses` stays light)
STORAGE_HELP = (f"SQLAlchemy URL of the trial storage, e.g. postgresql://user@host/db (default: ${STORAGE_ENV}, "
                f"else sqlite in --out); set ${STORAGE_ENV} instead to keep a password off the command line")  # fmt: skip


def _space(param) -> str:
    """``name=default in [low, high] (log)`` or ``in {a, b}``."""
    space = param.space
    if hasattr(space, "options"):
        where = "{" + ", ".join(map(repr, space.options)) + "}"
    else:
        where = f"[{space.low!r}, {space.high!r}]" + (" log" if space.log else "")
    return f"{param.name}={param.default!r} in {where}"


def _hyperparameter_fields(params, other: str) -> list[tuple[str, str]]:
    """Registered hyperparameters with a search space (tuned by default), those without (fixed at
    their default unless a spec searches them), and every other argument with its default."""
    return [("tuned", "; ".join(_space(p) for p in params if p.space is not None) or "-"),
            ("fixed", "; ".join(f"{p.name}={p.default!r}" for p in params if p.space is None) or "-"),
            ("options", other or "-")]  # fmt: skip


def _described(entries: list[tuple[str, list[tuple[str, str]]]]) -> str:
    """Entries as blocks that fit the terminal (80 columns when output is not one): the name on
    its own line, then each field, wrapped and indented below its label."""
    import shutil
    import textwrap

    width = max(40, shutil.get_terminal_size((80, 24)).columns)
    lines = []
    for name, fields in entries:
        lines.append(name)
        for label, text in fields:
            lines += textwrap.wrap(text, width, initial_indent=f"  {label + ':':<11}", subsequent_indent=" " * 13,
                                   break_on_hyphens=False)  # fmt: skip
    return "\n".join(lines)


def _other_arguments(info, registered: set[str]) -> str:
    """The module's arguments that are no registered hyperparameter (EXACT's sigma_min, say), with defaults."""
    import inspect

    skip = registered | set(info.requires) | {"self", "reduction", "validate", "kwargs"}
    params = inspect.signature(info.module).parameters.values()
    return "; ".join(f"{p.name}={p.default!r}" for p in params if p.name not in skip and p.default is not p.empty)


def cmd_losses(args: argparse.Namespace) -> int:
    from lossbench.losses import LOSSES

    if not args.verbose:
        rows = [(name, info.signature, ",".join(info.tasks), info.reference) for name, info in LOSSES.items()]
        print(format_table(("loss", "signature", "tasks", "reference"), rows))
        return 0
    entries = []
    for name, info in LOSSES.items():
        fields = [("tasks", f"{', '.join(info.tasks)} ({info.signature} signature)"),
                  *_hyperparameter_fields(info.hyperparams, _other_arguments(info, {p.name for p in info.hyperparams}))]
        if info.requires:
            fields.append(("needs", ", ".join(info.requires)))
        entries.append((name, [*fields, ("reference", info.reference)]))
    print(_described(entries))
    return 0


def cmd_transforms(args: argparse.Namespace) -> int:
    from lossbench.train import TRANSFORMS

    if not args.verbose:
        print(format_table(("transform", "stage", "reference"), [(n, i.stage, i.reference) for n, i in TRANSFORMS.items()]))
        return 0
    entries = []
    for name, info in TRANSFORMS.items():
        other = _init_arguments(info.factory, {p.name for p in info.hyperparams})
        entries.append((name, [("stage", info.stage), *_hyperparameter_fields(info.hyperparams, other),
                               ("reference", info.reference)]))  # fmt: skip
    print(_described(entries))
    return 0


def _init_arguments(factory, registered: set[str]) -> str:
    import inspect

    params = inspect.signature(factory.__init__).parameters.values()
    return "; ".join(f"{p.name}={p.default!r}" for p in params if p.name not in registered | {"self"})


def cmd_toy(args: argparse.Namespace) -> int:
    import math

    from lossbench.ledger.toy_1d import results_table, run_toy

    if not all(math.isfinite(t) and t >= 0 for t in args.temperature):
        raise ValueError(f"--temperature values must be finite and >= 0 (0: no temperature), got {args.temperature}")
    if not all(math.isfinite(s) and s > 0 for s in args.sigma):
        raise ValueError(f"--sigma values must be finite and > 0, got {args.sigma}")
    temperatures = [None if t == 0 else t for t in args.temperature]
    print("EXACT paper's 1-D example: points (-0.25,-1), (0,-1), (0.25,+1); model sign((x - b) / T)")
    print(results_table(run_toy(temperatures, exact_sigmas=args.sigma)))
    print("exact: expected accuracy under Gaussian noise sigma on each logit, f = x - b (sigma acts as T)")
    return 0


def _device(name: str):
    """The torch device of --device, refused before any work unless this machine has it."""
    from lossbench.bench.api import resolve_device

    return resolve_device(name, "--device")


def _storage_url(args: argparse.Namespace, out: str | None) -> str:
    """The storage's URL, checked (before any work: see ``check_storage_url``)."""
    from lossbench.bench.storage import check_storage_url, storage_url

    url = storage_url(getattr(args, "storage", None), out)
    check_storage_url(url)
    return url


def _writable_folder(out: str) -> None:
    """--out is a folder this user can write, or can be made (checked before any work)."""
    from lossbench.bench.api import check_writable_folder

    check_writable_folder(out, "--out")


@contextlib.contextmanager
def _named(source: str):
    """A refusal of the spec after it parsed (its model, data and methods checked against each other, or
    against the stored study) names the spec's file, as a refusal while parsing does."""
    from lossbench.bench.spec import SpecError

    try:
        yield
    except ValueError as err:
        if not _ours(err) or str(err).startswith(source):
            raise
        raise SpecError(f"{source}: {err}") from err


def _preflight(spec, data_dir: str | None):
    """The runner's checks against a storage in memory: a refused spec leaves nothing behind.  Returns the data
    they loaded, for the runner."""
    from lossbench.bench.api import preflight

    return preflight(spec, data_dir)


def _finish(spec, storage, out: str) -> int:
    from lossbench.bench.console import print_across, print_leaderboards, status
    from lossbench.bench.report import incomplete, write_report
    from lossbench.bench.results import collect

    results = collect(spec, storage)
    print_leaderboards(results)
    print_across(spec, results)
    try:
        files = write_report(spec, results, out)
    except OSError as err:  # read-only, full, or a folder where a report file goes
        where = f" ({err.filename})" if err.filename else ""  # (a full disk names no file)
        raise ValueError(f"cannot write the report in {out}: {err.strerror or err}{where}; the results "
                         "are stored: `lossbench report --out <folder>` writes it elsewhere") from None  # fmt: skip
    also = ", ".join(p.name for p in files[1:] if p.parent == files[0].parent)
    # (notices, on stderr: stdout keeps the results, `lossbench run > results.txt`)
    status.print(f"report: {files[0]} (also {also} and plots/)", markup=False, highlight=False, soft_wrap=True)  # (a path may hold [])
    missing = incomplete(results)
    if missing:
        status.print(f"[yellow]{len(missing)} method(s) are not complete yet; the report shows what is stored.")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from lossbench.bench.console import run_progress, say_alone, say_unpaired
    from lossbench.bench.report import check_report_folder
    from lossbench.bench.runner import Runner
    from lossbench.bench.spec import load_spec
    from lossbench.bench.storage import open_storage

    if args.spec and args.preset:
        raise ValueError("give a spec file or --preset, not both")
    spec = load_spec(args.spec) if args.spec else _preset(args.preset or "builtin")
    _run_options(args)
    device = _device(args.device)
    _writable_folder(args.out)
    check_report_folder(args.out, spec.name)
    url = _storage_url(args, args.out)
    source = str(Path(args.spec)) if args.spec else f"preset {args.preset or 'builtin'!r}"  # (as its parse names it)
    with _named(source):
        data = _preflight(spec, args.data_dir)  # nothing is created before the spec is known to run
    storage = open_storage(url, spec.heartbeat_interval)
    with _named(source):  # (a spec the stored study refuses)
        runner = Runner(spec, storage, device, data_dir=args.data_dir, pack=args.pack, data=data)
    if runner.grown:
        print(f"{spec.name}: the stored study grows ({'; '.join(runner.grown)}); its stored runs are reused", file=sys.stderr)
    say_alone(runner.alone())
    say_unpaired(spec)
    with _local_workers(args, spec.name, url, spec.plugins), run_progress(f"{spec.name}") as progress:
        runner.run(progress)
    return _finish(runner.spec, storage, args.out)  # the spec it finished: another worker may have grown the study


def _run_options(args: argparse.Namespace) -> None:
    """--pack, --threads and --jobs checked (before any work) and the threads set."""
    from lossbench._checks import check_count
    from lossbench.bench.workers import check_local, set_threads

    check_count("--pack", args.pack)
    check_local("--jobs", getattr(args, "jobs", 1))
    set_threads(args.threads)


def _local_workers(args: argparse.Namespace, study: str, url: str, plugins: Sequence[str] = ()):
    """``--jobs - 1`` worker processes joining ``study``, whose spec names ``plugins`` (a context manager that
    waits for them)."""
    from lossbench.bench.workers import LocalWorkers

    options = ["--pack", str(args.pack), "--threads", str(args.threads), "--device", args.device]
    options += [option for plugin in plugins for option in ("--plugin", plugin)]
    if args.data_dir:
        options += ["--data-dir", args.data_dir]
    return LocalWorkers(args.jobs - 1, study, url, args.out, options)


def cmd_worker(args: argparse.Namespace) -> int:
    from lossbench.bench.console import run_progress, status
    from lossbench.bench.runner import Runner
    from lossbench.bench.storage import open_storage, stored_spec
    from lossbench.bench.workers import stop_with_parent

    stop_with_parent()  # a local worker of `run --jobs`: gone with the process that started it
    url = _storage_url(args, None)
    _run_options(args)
    device = _device(args.device)
    # (the plugins it was given, or none: a stored spec naming others is refused unread, as any user of a
    # shared storage may have written it)
    spec = stored_spec(open_storage(url, create=False), args.study, args.plugins)
    storage = open_storage(url, spec.heartbeat_interval, create=False)
    runner = Runner(spec, storage, device, data_dir=args.data_dir, pack=args.pack)
    with run_progress(f"{spec.name} (worker)") as progress:
        runner.run(progress)
    status.print(f"study {spec.name!r} is complete; `lossbench report --storage ...` writes the report", markup=False)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from lossbench.bench.plugins import reading_only

    with contextlib.nullcontext() if args.plugins else reading_only():
        return _report(args)


def _report(args: argparse.Namespace) -> int:
    from lossbench._paths import check_name, inside
    from lossbench.bench.report import check_report_folder
    from lossbench.bench.storage import masked, open_storage, stored_spec, stored_spec_names

    url = _storage_url(args, args.out)
    _writable_folder(args.out)
    storage = open_storage(url, create=False, reading=True)
    names = [args.study] if args.study else stored_spec_names(storage)
    if not names:
        raise ValueError(f"storage {masked(url)!r} holds no lossbench study")
    # A shared storage can hold any name: each must be one plain folder name below --out.
    outs = {name: args.out if len(names) == 1 else str(inside(args.out, check_name(name, "stored study name", portable=False))) for name in names}
    folded: dict[str, str] = {}
    for name in names if len(names) > 1 else ():  # (one folder where case does not count: macOS, Windows)
        if (other := folded.setdefault(name.casefold(), name)) != name:
            raise ValueError(f"studies {other!r} and {name!r} would share one folder where letter case does not count; "
                             "report each by its name, with a folder of its own: lossbench report NAME --out DIR")  # fmt: skip
    specs = {name: stored_spec(storage, name) for name in names}  # (every spec read first: a misspelt study is named as such)
    for name, out in outs.items():  # (and every folder checked before any report is written)
        check_report_folder(out, name)
    for name, out in outs.items():
        _finish(specs[name], storage, out)
    return 0


def dataset_requests(words: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """``NAME key=value ... NAME ...`` as (name, parameters): each value a TOML literal (``3``,
    ``0.2``, ``true``, ``"x"``, ``[1, 2]``), else the text as it is (a path, say)."""
    requests: list[tuple[str, dict[str, Any]]] = []
    for word in words:
        key, eq, text = word.partition("=")
        if not eq:
            requests.append((word, {}))
            continue
        if not requests:
            raise ValueError(f"datasets: {word!r} comes before any dataset name; write NAME {word}")
        if not key.isidentifier():
            raise ValueError(f"datasets {requests[-1][0]}: {word!r} is not key=value with a parameter name as key")
        requests[-1][1][key] = _literal(text)
    return requests


def _literal(text: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _check_dataset_parameters(name: str, params: dict[str, Any]) -> None:
    """Every key is the loader's or one of ``load_dataset``'s own (verify, long_tail_rho, ...):
    an unknown one is refused, by name, before anything loads."""
    import inspect

    from lossbench.data import get_dataset_info, load_dataset

    own = [n for n, p in inspect.signature(load_dataset).parameters.items() if p.kind == p.KEYWORD_ONLY and n != "download"]
    accepted = [*get_dataset_info(name).params(), *own]
    unknown = [k for k in params if k not in accepted]
    if "download" in unknown:
        raise ValueError(f"datasets {name}: downloads are on unless --no-download is given (no download= parameter)")
    if unknown:
        raise ValueError(f"datasets {name}: unknown parameter {unknown[0]!r}; it takes {', '.join(accepted)}")
    from lossbench.bench.spec import check_value

    # Typed as a spec's are (False is not TOML's false: it came through as the text 'False', which is true)
    arguments = {**inspect.signature(load_dataset).parameters, **inspect.signature(get_dataset_info(name).loader).parameters}
    for key, value in params.items():
        check_value(f"datasets {name}", key, value, arguments[key])


def dataset_counts(ds, val_fraction: float) -> list[str]:
    """A loaded dataset's sizes, classes and features, and what the bench's tuning split makes of
    its training part at ``val_fraction``."""
    from lossbench.data import TokenBags, stratified_split
    from lossbench.data.splits import provided_validation

    n_train = len(ds.y_train)
    provided = provided_validation(ds)
    how = "its own validation split" if provided else f"val_fraction {val_fraction:g}"
    fit, val = provided or (stratified_split(ds.y_train, val_fraction=val_fraction) if n_train >= 2 else (ds.y_train, ds.y_train[:0]))
    labels = "labels" if ds.task == "multilabel" else "classes"
    if ds.feature_kind == "text":
        layout = ("bags of token ids (layout 'bags'), longest" if isinstance(ds.x_train, TokenBags)
                  else "token ids, padded length")  # fmt: skip
        features = f"{layout} {ds.input_shape[0]}, vocabulary {ds.vocab_size}"
    else:
        n = ds.input_shape[0]
        features = f"{n} feature{'s' * (n != 1)}" if ds.feature_kind == "tabular" else f"images {' x '.join(map(str, ds.input_shape))}"
    return [f"  train {n_train} (the bench tunes on {len(fit)} and validates on {len(val)}: {how}), test {len(ds.y_test)}",
            f"  {ds.num_classes} {labels}; {features}", f"  source: {printable(ds.source)}"]  # fmt: skip


def cmd_datasets(args: argparse.Namespace) -> int:
    import inspect

    from lossbench.data import DATASETS, get_dataset_info, load_dataset

    def default(value: object) -> str:
        return "<required>" if value is inspect.Parameter.empty else repr(value)

    if args.plugins:
        from lossbench.bench.plugins import import_plugins

        import_plugins(args.plugins)

    if args.names:
        from lossbench.bench.spec import Spec  # the bench's default validation fraction

        requests = dataset_requests(args.names)
        for name, params in requests:  # every name and key checked before anything loads
            get_dataset_info(name)
            _check_dataset_parameters(name, params)
        for name, params in requests:
            ds = load_dataset(name, data_dir=args.data_dir, download=args.download, **params)
            print(ds.summary())
            print("\n".join(dataset_counts(ds, Spec.__dataclass_fields__["val_fraction"].default)))
        return 0
    rows = []
    for name, info in DATASETS.items():
        where = str(info.directory(args.data_dir)) if info.kind == "files" else "-"
        row = [name, info.kind, info.task, info.feature_kind, info.availability(args.data_dir), info.source]
        if args.verbose:
            params = ", ".join(f"{k}={default(v)}" for k, v in info.params().items())
            row += [where, params or "-", info.summary]
        rows.append(row)
    header = ["dataset", "kind", "task", "features", "available", "source"]
    print(format_table(header + (["directory", "parameters", "summary"] if args.verbose else []), rows))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from lossbench.bench.spec import load_preset, preset_names, preset_text

    if args.name:
        _preset(args.name)  # an unknown name is a one-line error
        print(preset_text(args.name), end="")
        return 0
    rows = []
    for name in preset_names():
        spec = load_preset(name)
        counts = ((len(spec.datasets), "dataset"), (len(spec.methods), "method"), (spec.trials, "trial"), (spec.seeds, "seed"))
        rows.append((name, ", ".join(f"{n} {word}{'s' * (n != 1)}" for n, word in counts)))
    print(format_table(("preset", "study"), rows))
    return 0


def _preset(name: str):
    """The preset ``name``; a claim's id given for one is refused with the command that runs the claim."""
    from lossbench.bench.spec import load_preset, preset_names

    if name not in preset_names():
        _refuse_claim_id(name)
    return load_preset(name)


def _refuse_claim_id(name: str) -> None:
    """A claim's id given for a preset: refused with the preset its study runs (where the claim has one)."""
    from lossbench.ledger.records import all_claims

    claim = next((c for c in all_claims() if c.id == name), None)
    if claim is None:
        return
    quick = claim.budgets.get("quick")
    study = (f"its study runs preset {claim.protocol!r} (`lossbench presets {claim.protocol}`)"
             + (f", at the quick budget with {quick.note}" if quick else "")) if claim.protocol else "an analysis with no preset"
    raise ValueError(f"{name!r} is a claim, not a preset: {study}; `lossbench claims run {name}` runs it")  # fmt: skip


def _ledger_storage(args: argparse.Namespace, create: bool = True, heartbeat_interval: int | None = None,
                    reading: bool = False):  # fmt: skip
    from lossbench.bench.storage import open_storage

    return open_storage(_storage_url(args, args.out), heartbeat_interval, create=create, reading=reading)


@contextlib.contextmanager
def _judging() -> Iterator[Callable[[str], None]]:
    """Each claim's judging said on stderr as it starts (the whole ledger takes minutes): on a terminal one
    line rewritten and cleared at the end; elsewhere (a CI log) one line per claim, so that a log shows it
    working, and stdout keeps only the table."""
    if not sys.stderr.isatty():
        yield lambda line: print(line, file=sys.stderr, flush=True)
        return
    try:
        yield lambda line: print(f"\r\x1b[K{line}", end="", file=sys.stderr, flush=True)
    finally:
        print("\r\x1b[K", end="", file=sys.stderr, flush=True)


def _no_file_out(args: argparse.Namespace) -> None:
    """Refuse an --out that is a file (where a claims command reads its lossbench.db), in those words."""
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is not a folder")


def cmd_claims(args: argparse.Namespace) -> int:
    from lossbench.ledger.records import all_claims

    _no_file_out(args)
    claims = all_claims()
    rows = []
    status = {}
    given = args.storage or os.environ.get(STORAGE_ENV)
    read = given or args.out and Path(args.out, "lossbench.db").exists()
    if read and not given:  # (--out's database: read only from a folder no other user could have put it in)
        from lossbench._paths import untrusted_reason

        if reason := untrusted_reason(args.out):
            raise ValueError(f"--out {args.out}: {reason}: another user could have put its lossbench.db there; use a "
                             "folder of your own")  # fmt: skip
    if read:
        from lossbench.bench.plugins import reading_only
        from lossbench.ledger.report import collect_entries

        with reading_only(), _judging() as say:  # (as claims report: another spec in a shared storage may name plugins)
            entries = collect_entries(_ledger_storage(args, create=False, reading=True), say)
        for e in entries:
            words = [f"{o.budget}/{o.variation}: {o.verdict.word if o.verdict else 'incomplete'}" for o in e.outcomes]
            words += [f"{b}: {a.word}" for b, a in e.analyses.items()]
            status[e.claim.id] = "; ".join(words) or "not run"
    for c in claims:
        rows.append((c.id, c.kind, c.title, status.get(c.id, "not run")))
    print(format_table(("claim", "kind", "title", "status"), rows))
    if not read:  # ("not run" above means: not in this storage, which does not exist)
        print(f"(no runs read: {Path(args.out or '.', 'lossbench.db')} does not exist. The project's own runs are its "
              "reference ledger, REPRODUCTIONS.md; in a clone, `lossbench claims --storage "
              "sqlite:///reproductions/lossbench.db` reads their status, judging each claim anew: minutes)")  # fmt: skip
    return 0


def cmd_claims_run(args: argparse.Namespace) -> int:
    from lossbench.bench.console import console, run_progress, status
    from lossbench.ledger.protocol import check_run, study_spec
    from lossbench.ledger.records import get_claim
    from lossbench.ledger.runs import run_claim

    claim = get_claim(args.claim)
    variations = tuple(dict.fromkeys(args.variation)) if args.variation else None  # (each once)
    # A bad budget or variation is refused before any work (an analysis's too: its result is stored by budget).
    for variation in variations or claim.variations:
        check_run(claim, args.budget, variation)
    specs = [study_spec(claim, args.budget, v) for v in variations or claim.variations] if claim.kind == "bench" else []
    if claim.kind == "analysis" and claim.protocol is not None:  # (an analysis that reads a study of the bench)
        from lossbench.ledger.analyses import analysis_study

        specs = [analysis_study(claim.id, args.budget)]
    _run_options(args)
    device = _device(args.device)
    _writable_folder(args.out)
    url = _storage_url(args, args.out)
    for spec in specs:
        _preflight(spec, args.data_dir)  # a spec that cannot run (missing files, say) leaves no database behind
    storage = _ledger_storage(args, heartbeat_interval=min((s.heartbeat_interval for s in specs), default=None))
    readers = _delete_studies(storage, _studies_run(claim, args.budget, specs), args.budget, claim.id) if args.fresh else []
    run_claim(claim, args.budget, storage, device, data_dir=args.data_dir, variations=variations, progress=run_progress,
              pack=args.pack, alongside=lambda study: _local_workers(args, study, url))  # fmt: skip
    for line in _verdict_lines(claim, args.budget, variations or claim.variations, storage):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for reader in readers:  # (their stored results were read from the deleted runs)
        run_claim(reader, args.budget, storage, device, data_dir=args.data_dir, progress=run_progress, pack=args.pack)
        for line in _verdict_lines(reader, args.budget, reader.variations, storage):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    status.print(f"claim {claim.id} ({args.budget}) done; `lossbench claims report --out {args.out}"
                  f"{_where(args, out=False)}` writes the ledger",
                  markup=False, highlight=False, soft_wrap=True)  # (a command to paste: never broken across lines)
    return 0


def _where(args: argparse.Namespace, out: bool = True) -> str:
    """The options that name a claims command's storage for another such command: ``--storage`` as given
    (its password masked: $LOSSBENCH_STORAGE keeps one off the command line), else ``--out`` (with ``out``)."""
    from lossbench.bench.storage import masked

    if args.storage:
        return f" --storage {masked(args.storage)}"
    return f" --out {args.out}" if out and not os.environ.get(STORAGE_ENV) else ""


def _delete_studies(storage, names: list[str], budget: str, claim_id: str) -> list:
    """``claims run --fresh``: the stored runs of studies ``names`` deleted, saying so; returns the analysis claims
    that read them (to be judged again from the new runs), and names the other claims that share them."""
    from lossbench.bench.console import console

    sharing, readers = _claims_of_studies(set(names), budget)  # (before anything is deleted)
    sharing, readers = [c for c in sharing if c.id != claim_id], [c for c in readers if c.id != claim_id]
    studies, trials = storage.delete_spec_studies(names)
    if not studies:  # (not run yet)
        return []
    also = f"; claims {', '.join(c.id for c in sharing)} share it" if sharing else ""
    also += f"; analyses {', '.join(c.id for c in readers)} read it and are judged again after it" if readers else ""
    console.print(f"deleted {', '.join(names)} ({studies} studies, {trials} trials) to run anew{also}",
                  markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    return readers


def _studies_run(claim, budget: str, specs: list) -> list[str]:
    """The studies a claim runs at ``budget``: a bench claim's ``specs``, the study an analysis reads (if any)."""
    from lossbench.ledger.analyses import study_read

    if claim.kind == "bench":
        return [s.name for s in specs]
    name = study_read(claim.id, budget)
    return [] if name is None else [name]


def _claims_of_studies(names: set[str], budget: str) -> tuple[list, list]:
    """The bench claims whose runs at ``budget`` are among studies ``names`` (claims of one protocol share a study),
    and the analysis claims that read one of them."""
    from lossbench.ledger.analyses import study_read
    from lossbench.ledger.protocol import study_spec
    from lossbench.ledger.records import all_claims

    sharing, readers = [], []
    for claim in all_claims():
        if claim.kind == "analysis":
            if study_read(claim.id, budget) in names:
                readers.append(claim)
        elif any(study_spec(claim, budget, v).name in names for v in claim.variations):
            sharing.append(claim)
    return sharing, readers


def _verdict_lines(claim, budget: str, variations: Sequence[str], storage) -> list[str]:
    """The verdict of each study just run, by the claim's rule (the ledger's report gives its reasons and cells)."""
    from lossbench.ledger.judge import judge
    from lossbench.ledger.protocol import study_spec
    from lossbench.ledger.report import effect
    from lossbench.ledger.runs import stored_analysis

    if claim.kind == "analysis":
        result = stored_analysis(storage, claim, budget)
        return [f"claim {claim.id} ({budget}): {result.word}"] if result is not None else []
    lines = []
    for variation in variations:
        verdict = judge(claim, study_spec(claim, budget, variation), storage, budget, variation).verdict
        if verdict is not None:
            lines.append(f"claim {claim.id} ({budget}, {variation} split): {verdict.word}, {claim.treatment} - "
                         f"{claim.baseline} {effect(verdict)} points")  # fmt: skip
    return lines


def cmd_claims_report(args: argparse.Namespace) -> int:
    from lossbench.bench.plugins import reading_only
    from lossbench.bench.storage import masked
    from lossbench.ledger.report import check_ledger_folder, write_ledger

    url = args.storage or os.environ.get(STORAGE_ENV)
    _no_file_out(args)
    if url is None and not Path(args.out, "lossbench.db").exists():
        raise ValueError(f"no ledger database in {args.out}; run `lossbench claims run ID --out {args.out}` first")
    _writable_folder(args.out)
    check_ledger_folder(args.out)
    storage = _ledger_storage(args, create=False, reading=True)
    label = f"`{Path(args.out, 'lossbench.db')}`" if url is None else f"`{masked(url)}`"  # never print a password
    with reading_only(), _judging() as say:  # (the ledger's studies use no plugins; a shared storage's may)
        paths = write_ledger(storage, args.out, label, say, _where(args))
    for path in paths:
        print(f"wrote {path}")
    return 0


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose epilog may be a function, called only when the help is shown (the
    run command's list of presets reads the bench's spec module, which other commands need not load)."""

    def format_help(self) -> str:
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()


class _Version(argparse.Action):
    """``--version``: lossbench's version and, in a git checkout, its commit (asked only when given)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from lossbench._provenance import version_line

        print(version_line())
        parser.exit()


def _presets_epilog() -> str:
    from lossbench.bench.spec import preset_names

    return f"presets for --preset: {', '.join(preset_names())} (`lossbench presets NAME` prints one)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lossbench", description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument("--version", action=_Version, help="print lossbench's version (and git commit) and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("losses", help="list every registered loss with its reference")
    p.add_argument("-v", "--verbose", action="store_true", help="also show hyperparameters and search spaces")
    p.set_defaults(func=cmd_losses)

    p = sub.add_parser("transforms", help="list every training-step transform with its reference")
    p.add_argument("-v", "--verbose", action="store_true", help="also show hyperparameters and search spaces")
    p.set_defaults(func=cmd_transforms)

    p = sub.add_parser("toy", help="the EXACT paper's 1-D example: optimal threshold per loss")
    p.add_argument(
        "--temperature",
        type=float,
        nargs="+",
        default=[0.0, 0.1],
        help="temperatures T to try (0 = no temperature); default: 0 0.1",
    )
    p.add_argument(
        "--sigma",
        type=float,
        nargs="+",
        default=[1.0, 0.1],
        help="fixed EXACT noise levels to try (> 0); default: 1 0.1",
    )
    p.set_defaults(func=cmd_toy)

    def common(p: argparse.ArgumentParser, storage_help: str = STORAGE_HELP, jobs: bool = True, storage_default=None) -> None:
        p.add_argument("--storage", help=storage_help, default=storage_default)
        p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
        p.add_argument("--data-dir", help="where dataset files are found or downloaded to")
        p.add_argument("--pack", type=int, default=DEFAULT_PACK,
                       help=f"runs trained at once as one batched model (of one dataset's units that allow it) "
                            f"(default {DEFAULT_PACK}; 1: one run at a time); a speed setting: the sampler is "
                            "asked alike at every pack and each step agrees to float round-off, which long or "
                            "unstable training can carry into its scores (compare studies at one pack)")  # fmt: skip
        p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                       help=f"torch's threads per process, and its OpenMP and BLAS pools' (default {DEFAULT_THREADS}, which "
                            "holds up on a busy machine)")  # fmt: skip
        if jobs:
            p.add_argument("--jobs", type=int, default=DEFAULT_JOBS,
                           help=f"local worker processes on the same storage, this one included (default {DEFAULT_JOBS}); "
                                "with TPE, several tune other configurations than one")  # fmt: skip

    p = sub.add_parser("run", help="run or resume a study and print its leaderboard", epilog=_presets_epilog)
    p.add_argument("spec", nargs="?", help="a study spec (TOML); default: the built-in preset")
    p.add_argument("--preset", help="a built-in spec by name (default: builtin; listed below)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"report directory, and SQLite file when no --storage (default {DEFAULT_OUT})")
    common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("worker", help="join a study stored at --storage from another process or machine")
    p.add_argument("study", help="the study (spec) name")
    p.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE",
                   help="a plugin the stored spec names, in its order (repeatable); a stored spec that names others is "
                        "refused unread, as any user of a shared storage may write names")  # fmt: skip
    common(p, f"SQLAlchemy URL of the shared trial storage (default: ${STORAGE_ENV}, which keeps a password "
              "off the command line; one of the two is required)", jobs=False)  # fmt: skip
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("report", help="rebuild the report from storage alone")
    p.add_argument("study", nargs="?", help="the study name (default: every study in the storage)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"report directory (and SQLite file when no --storage; default {DEFAULT_OUT})")
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--plugins", action="store_true",
                   help="import the plugins the stored specs name (modules on this process's sys.path); without it "
                        "a study whose spec names plugins is refused, as any user of a shared storage may write names")  # fmt: skip
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("presets", help="list the built-in study specs, or print one")
    p.add_argument("name", nargs="?", help="print this preset's TOML")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("claims", help="the claims ledger: list claims, run one, write the ledger")
    out_help = f"ledger directory and its SQLite file (default {LEDGER_OUT})"
    p.add_argument("--out", default=LEDGER_OUT, help=out_help)
    p.add_argument("--storage", help=STORAGE_HELP)
    p.set_defaults(func=cmd_claims)
    claims = p.add_subparsers(dest="claims_command")
    # (a subcommand's --out and --storage default to what `claims` was given before it: SUPPRESS keeps that)
    q = claims.add_parser("run", help="run (or resume, or join) one claim's study")
    q.add_argument("claim", help="a claim id (`lossbench claims` lists them)")
    q.add_argument("--budget", default="quick", help="quick (default: minutes on a CPU) or paper (the source's protocol)")
    q.add_argument("--variation", action="append", help="fixed or resampled (default: every one the claim declares)")
    q.add_argument("--out", default=argparse.SUPPRESS, help=out_help)
    q.add_argument("--fresh", action="store_true",
                   help="delete the stored runs of the studies it runs (or an analysis reads) first, in one transaction, "
                        "and run them anew with this lossbench; claims that share them are judged from the new runs, "
                        "analyses that read them are run again")  # fmt: skip
    common(q, storage_default=argparse.SUPPRESS)
    q.set_defaults(func=cmd_claims_run)
    q = claims.add_parser("report", help="write REPRODUCTIONS.md and reproductions/ledger.html from storage")
    q.add_argument("--out", default=argparse.SUPPRESS, help=out_help)
    q.add_argument("--storage", default=argparse.SUPPRESS, help=STORAGE_HELP)
    q.set_defaults(func=cmd_claims_report)

    p = sub.add_parser(
        "datasets",
        help="list every dataset with its source and local availability, or load the named ones",
    )
    p.add_argument("names", nargs="*", help="datasets to load and summarise, each followed by its parameters as "
                   "key=value (table path=mine.csv label=y); default: list all")  # fmt: skip
    p.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE",
                   help="a module of yours that registers datasets, imported first as a spec's plugins are (repeatable)")  # fmt: skip
    p.add_argument(
        "--data-dir",
        default=None,
        help="directory holding <dataset>/ folders (default: $LOSSBENCH_DATA_DIR, else data/ in lossbench's user cache, "
        "$XDG_CACHE_HOME/lossbench or ~/.cache/lossbench)",
    )
    p.add_argument(
        "--no-download",
        dest="download",
        action="store_false",
        help="fail instead of downloading missing files",
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="also show directories, loader parameters and summaries"
    )
    p.set_defaults(func=cmd_datasets)
    return parser


def _ours(err: BaseException) -> bool:
    """Whether a ValueError is lossbench refusing an input (raised by lossbench's own code), not
    a bug surfacing in a library (which keeps its traceback)."""
    from lossbench.bench.spec import SpecError

    if isinstance(err, SpecError):
        return True
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    package = Path(__file__).resolve().parent
    return tb is not None and package in Path(tb.tb_frame.f_code.co_filename).resolve().parents


def _given_storage(args: argparse.Namespace) -> str | None:
    """The storage URL this command was given, if any (its password is masked in any output)."""
    return getattr(args, "storage", None) or os.environ.get(STORAGE_ENV)


def _masker(url: str | None):
    """A function making a message fit for the terminal: ``url``'s password hidden, characters a terminal
    would act on escaped (:func:`lossbench._checks.printable`)."""
    if not url:
        return printable
    from lossbench.bench.storage import masked_text

    return lambda text: printable(masked_text(text, url))


OPTUNA_COMMANDS = ("run", "worker", "report", "claims")  # the commands that import Optuna


def _quiet_optuna() -> None:
    """Optuna logs every trial at INFO; the progress bar says what matters.  Set by the command
    line, not on import of lossbench, so a library user keeps their own logging."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # (an ASCII or Latin-1 terminal: a '±' or a name it cannot show, escaped
        if isinstance(stream, io.TextIOWrapper):  # instead of a UnicodeEncodeError after the runs, before the report)
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    keep_matplotlib_at_home()  # (nothing written below the working folder: it may be anyone's)
    if args.command in OPTUNA_COMMANDS:
        _quiet_optuna()
    url = _given_storage(args)
    try:
        data_dir = getattr(args, "data_dir", None)
        if data_dir and Path(data_dir).exists() and not Path(data_dir).is_dir():  # (built-in sets never read it)
            raise ValueError(f"--data-dir {data_dir} is not a folder")
        with stops.taken(), _warnings_as_lines(_masker(url)):
            return int(args.func(args) or 0)
    except KeyboardInterrupt as err:
        return _interrupted(err, args.func)
    except BrokenPipeError:  # (`lossbench datasets | head`: the reader has what it wanted)
        # What is left in stdout's buffer cannot be written either: point stdout elsewhere, or Python's
        # own flush at exit prints the same error again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + getattr(signal, "SIGPIPE", 13)  # (Windows has no SIGPIPE)
    except Exception as err:
        if (stop := stops.stop_in(err)) is not None:  # (a library's error raised while the stop was)
            return _interrupted(stop, args.func)
        mask = _masker(url)
        full = _storage_full(err)
        if full is not None and not os.environ.get("LOSSBENCH_TRACEBACK"):
            # (what was stored before stays: the transaction that met the full disk is rolled back)
            print(f"lossbench: error: the storage's disk is full ({mask(full)}); free some space, then "
                  "the same command resumes where it stopped\n(set LOSSBENCH_TRACEBACK=1 for the traceback)", file=sys.stderr)  # fmt: skip
            return 1
        if isinstance(err, ValueError) and _ours(err) and not os.environ.get("LOSSBENCH_TRACEBACK"):
            # bad input (spec, names, files, storage): one clear line, no traceback
            print(f"lossbench: error: {mask(str(err))}\n(set LOSSBENCH_TRACEBACK=1 for the traceback)", file=sys.stderr)
            return 2
        if url is None or mask(url) == url:
            raise  # an internal error keeps its traceback, as Python prints it
        print(mask("".join(traceback.format_exception(err))), end="", file=sys.stderr)  # the password masked
        return 1


def _storage_full(err: BaseException) -> str | None:
    """The database's own words where ``err`` comes of a storage out of disk space (SQLite's SQLITE_FULL,
    PostgreSQL's disk_full), else None; the driver's error is the cause or context of what reaches here."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if getattr(err, "orig", None) is not None:  # (SQLAlchemy's wrapper: the driver's own words)
            err = err.orig
            continue
        text = next(iter(str(err).strip().splitlines()), "")
        if "database or disk is full" in text or type(err).__name__ == "DiskFull":
            return text
        err = err.__cause__ or err.__context__
    return None


@contextlib.contextmanager
def _warnings_as_lines(mask: Callable[[str], str]) -> Iterator[None]:
    """Warnings as ``lossbench: warning: ...`` lines, each text once (Optuna's and torch's catch_warnings
    reset Python's record of those already shown); lossbench's own without the line of its code Python
    prints with them (a user's data is the matter, not where lossbench noticed it), others with their place."""
    shown: set[tuple[type[Warning], str]] = set()
    before = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:  # fmt: skip
        text = mask(str(message)).removeprefix("lossbench: ")  # (a library warning that names lossbench: said once)
        if (category, text) in shown:
            return
        shown.add((category, text))
        ours = Path(filename).resolve().is_relative_to(PACKAGE_DIR)
        print(f"lossbench: warning: {text}" + ("" if ours else f" ({filename}:{lineno})"), file=file or sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = before


def _interrupted(stop: KeyboardInterrupt, command: Callable[..., Any]) -> int:
    # Finished trials are stored; the interrupted one is failed and not counted (the commands that train).
    resumes = "; the same command resumes where it stopped" if command in (cmd_run, cmd_worker, cmd_claims_run) else ""
    print(f"lossbench: interrupted{resumes}", file=sys.stderr)
    return 128 + stop.signum if isinstance(stop, stops.Stopped) else 130


if __name__ == "__main__":
    raise SystemExit(main())
