"""Packed trials against one run at a time, side by side in one process.

Run from the repository root: ``python benchmarks/bench_packing.py`` (``--help`` for options).
What is measured, and how (wall-clock seconds of ``time.perf_counter``, one torch thread unless
``--threads``; run it on a quiet machine, and read the ratios, which load hits alike only when
the two sides alternate: ``--rounds`` repeats the pair in alternating order and reports medians):

- ``tuner``: the runner's own cost per trial (starting trials, sampling, the run's record,
  finishing, heartbeats, progress reads) on the default SQLite storage, with training replaced by
  a stub that returns a fixed result, for ``--pack 1`` and the default pack: milliseconds per
  trial (wall clock, noisy on a busy machine) and SQL statements per trial (counted with a
  SQLAlchemy ``before_cursor_execute`` listener on the storage's engine: deterministic).  The
  study is the built-in preset's first data set with five methods, tuned with TPE, which the
  runner asks its start-up count (10) of trials at once at every pack (since 2026-12-06: before,
  ``--pack 1`` asked one at a time and TPE suggested differently from the 11th trial on).
  ``--against REV`` measures the tuner of git revision ``REV`` too (its ``src`` exported to a
  temporary folder), each side in its own process, alternating, and prints both side by side.
- ``journal``: Optuna's own ask and tell per trial (no lossbench code; random sampler) on an RDB
  storage in a SQLite file, as lossbench opens it, and on Optuna's ``JournalStorage`` in a
  file, for the record: the journal storage keeps no heartbeats, so a killed worker's trials
  would never be failed and retried, and lossbench does not offer it.
- ``builtin``: the built-in preset end to end (``Runner.run``, 3 data sets x 6 methods x (20
  trials + 5 seeds)), packed and not; and whether the two leaderboards agree (same chosen
  configuration and test scores to round-off: TPE is asked alike at every pack).
- ``where``: where ``Runner.run``'s time goes on the built-in preset, packed and not, side by side
  (``--rounds`` alternating, medians): wall-clock seconds inside the sampler's asks, building the
  runs' models, the epoch-end callbacks (held-out curves), the final scores, EXACT's kernel calls
  and the rest of training (the steps), each by wrapping that function with a timer; what is left
  is storage and bookkeeping.  Costs that packing cannot share bound the ratio ``builtin`` reports.
- ``table1``: the EXACT paper's Table 1 (preset ``exact-table1``, budget ``paper``: 10 sets x 7
  methods x (20 trials + 5 seeds) of 16 epochs of ~500 batches) packed, with trials per minute;
  ``--table1-units N`` times the first data set with its first N methods only, packed and not.
- ``step``: a packed step's pieces (K = 20 runs of 256 rows), each the old way against the way
  the packed step takes now: cross-entropy with the classes last against first, vmap of the
  linear model against its ``packed_forward``, advanced indexing against ``index_select``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from pathlib import Path
from unittest import mock

import optuna
import torch
from optuna.storages.journal import JournalFileBackend
from sqlalchemy import event

from lossbench.bench import execution
from lossbench.bench import runner as runner_module
from lossbench.bench.defaults import DEFAULT_PACK
from lossbench.bench.execution import RunResult
from lossbench.bench.runner import Runner
from lossbench.bench.spec import load_preset
from lossbench.bench.storage import default_storage_url, open_storage, run_record
from lossbench.losses import _exact_native

ROOT = Path(__file__).resolve().parents[1]


def run_study(spec, pack: int, folder: Path, data_dir: str | None = None) -> tuple[float, Runner, int]:
    """Seconds ``Runner.run`` took, the runner, and the SQL statements it sent to the storage."""
    storage = open_storage(default_storage_url(folder), spec.heartbeat_interval)
    runner = Runner(spec, storage, torch.device("cpu"), data_dir=data_dir, pack=pack)
    statements = [0]

    def count(*_):
        statements[0] += 1

    event.listen(storage.engine, "before_cursor_execute", count)
    start = time.perf_counter()
    runner.run()
    seconds = time.perf_counter() - start
    event.remove(storage.engine, "before_cursor_execute", count)
    return seconds, runner, statements[0]


def leaderboard(runner: Runner) -> dict[str, tuple[dict, list[float]]]:
    """Per unit: the chosen configuration and its test accuracies by seed."""
    board = {}
    for unit in runner.units:
        finals = sorted((t for t in unit.final.get_trials() if t.state.name == "COMPLETE"), key=lambda t: t.user_attrs["seed"])
        board[unit.label] = (finals[0].params, [run_record(t)["metrics"]["accuracy"] for t in finals])
    return board


TUNER_PACKS = (1, DEFAULT_PACK)


def tuner_costs() -> dict[int, tuple[float, float]]:
    """Per pack size: (milliseconds, SQL statements) per trial of one stubbed study."""
    spec = load_preset("builtin")
    spec = dataclasses.replace(spec, datasets=spec.datasets[:1], methods=spec.methods[:5])

    def stub_one(split, method, params, spec, seed):
        return RunResult({"accuracy": 0.5, "diverged": 0.0}, {"train_loss": [0.0] * spec.train.epochs}, 0.0)

    def stub_pack(split, method, runs, spec):
        return [stub_one(split, method, p, spec, s) for p, s in runs]

    runs = len(spec.datasets) * len(spec.methods) * (spec.trials + spec.seeds)
    costs = {}
    with mock.patch.object(runner_module, "train_and_score", stub_one), mock.patch.object(runner_module, "train_and_score_packed", stub_pack):
        for pack in TUNER_PACKS:
            with tempfile.TemporaryDirectory() as folder:
                seconds, _, statements = run_study(spec, pack, Path(folder))
            costs[pack] = (seconds / runs * 1000, statements / runs)
    return costs


def bench_tuner(rounds: int, against: str | None, threads: int) -> None:
    """Each round in a fresh process per side (this tree's ``src``, and ``against``'s), alternating."""
    sides = {"this tree": str(ROOT / "src")}
    with tempfile.TemporaryDirectory() as folder:
        if against:
            export = subprocess.run(["git", "-C", str(ROOT), "archive", against, "src"], capture_output=True, check=False)
            if export.returncode != 0:
                raise SystemExit(f"--against {against}: {export.stderr.decode().strip()}")
            with tarfile.open(fileobj=io.BytesIO(export.stdout)) as tar:
                tar.extractall(folder, filter="data")
            sides = {against: str(Path(folder) / "src"), **sides}
        results: dict[str, list[dict[int, tuple[float, float]]]] = {side: [] for side in sides}
        for r in range(rounds):
            for side in list(sides)[:: 1 if r % 2 == 0 else -1]:
                child = subprocess.run(
                    [sys.executable, __file__, "tuner-child", "--threads", str(threads)], capture_output=True, text=True,
                    env={**os.environ, "PYTHONPATH": sides[side]}, check=False,
                )  # fmt: skip
                if child.returncode != 0:
                    raise SystemExit(f"the tuner of {side} failed:\n{child.stderr[-2000:]}")
                results[side].append({int(k): tuple(v) for k, v in json.loads(child.stdout.splitlines()[-1]).items()})
    print(f"tuner: runner cost per trial on SQLite, training stubbed (median of {rounds}; statements are exact)")
    for side, rows in results.items():
        cells = []
        for pack in TUNER_PACKS:
            ms = statistics.median(row[pack][0] for row in rows)
            cells.append(f"pack {pack:>2}: {ms:6.1f} ms, {rows[0][pack][1]:5.1f} statements per trial")
        print(f"  {side:>12}  " + " | ".join(cells))


def bench_journal(trials: int = 200) -> None:
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0), "y": optuna.distributions.FloatDistribution(1e-5, 1.0, log=True)}
    with tempfile.TemporaryDirectory() as folder:
        storages = {
            "RDB (SQLite file)": open_storage(default_storage_url(folder), heartbeat_interval=60),
            "JournalStorage (file)": optuna.storages.JournalStorage(JournalFileBackend(str(Path(folder) / "journal.log"))),
        }
        print(f"journal: Optuna's ask + tell per trial ({trials} trials, random sampler, no lossbench code)")
        for name, storage in storages.items():
            study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna's note that heartbeats belong to study.optimize
                for _ in range(trials):
                    trial = study.ask(space)
                    study.tell(trial, trial.params["x"])
            print(f"  {name:>22}: {(time.perf_counter() - start) / trials * 1000:6.1f} ms per trial")


def bench_builtin(rounds: int) -> None:
    spec = load_preset("builtin")
    times: dict[int, list[float]] = {1: [], DEFAULT_PACK: []}
    boards = {}
    for r in range(rounds):
        for pack in ([1, DEFAULT_PACK] if r % 2 == 0 else [DEFAULT_PACK, 1]):
            with tempfile.TemporaryDirectory() as folder:
                seconds, runner, _ = run_study(spec, pack, Path(folder))
                times[pack].append(seconds)
                boards[pack] = leaderboard(runner)
    one, packed = statistics.median(times[1]), statistics.median(times[DEFAULT_PACK])
    print(f"builtin preset (median of {rounds}): one at a time {one:.1f} s, packed {packed:.1f} s: {one / packed:.1f}x")
    same = [u for u in boards[1] if boards[1][u][0] == boards[DEFAULT_PACK][u][0]]
    print(f"  same chosen configuration in {len(same)} of {len(boards[1])} units")
    for unit in same:
        a, b = boards[1][unit][1], boards[DEFAULT_PACK][unit][1]
        worst = max(abs(x - y) for x, y in zip(a, b))
        print(f"    {unit}: largest test-accuracy difference over seeds {worst:.2e}")
    for unit in boards[1]:
        if unit not in same:
            a, b = boards[1][unit], boards[DEFAULT_PACK][unit]
            print(f"    {unit}: differs (TPE's later draws): mean test accuracy {statistics.mean(a[1]):.4f} "
                  f"one at a time, {statistics.mean(b[1]):.4f} packed")  # fmt: skip


def _timed_sections(totals: dict[str, float]):
    """Patches that add the seconds spent in each section of a study to ``totals`` (see ``where``)."""

    def timer(label, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[label] = totals.get(label, 0.0) + time.perf_counter() - start

        return timed

    def fit_with_timed_callback(fit):
        def call(*args, on_epoch_end=None, **kwargs):
            callback = None if on_epoch_end is None else timer("epoch-end curves", on_epoch_end)
            return timer("training", fit)(*args, on_epoch_end=callback, **kwargs)

        return call

    return [
        mock.patch.object(Runner, "_ask", timer("sampler's asks", Runner._ask)),
        mock.patch.object(execution, "_build_run_model", timer("building models", execution._build_run_model)),
        mock.patch.object(execution._RunScores, "result", timer("final scores", execution._RunScores.result)),
        mock.patch.object(_exact_native, "rows", timer("EXACT's kernel", _exact_native.rows)),
        mock.patch.object(execution, "fit", fit_with_timed_callback(execution.fit)),
        mock.patch.object(execution, "fit_packed", fit_with_timed_callback(execution.fit_packed)),
    ]


def bench_where(rounds: int) -> None:
    spec = load_preset("builtin")
    sections: dict[int, list[dict[str, float]]] = {1: [], DEFAULT_PACK: []}
    for r in range(rounds):
        for pack in ([1, DEFAULT_PACK] if r % 2 == 0 else [DEFAULT_PACK, 1]):
            totals: dict[str, float] = {}
            patches = _timed_sections(totals)
            for patch in patches:
                patch.start()
            try:
                with tempfile.TemporaryDirectory() as folder:
                    totals["Runner.run"], _, _ = run_study(spec, pack, Path(folder))
            finally:
                for patch in patches:
                    patch.stop()
            # EXACT's kernel and the epoch-end curves run inside training: the steps are what is left
            totals["training"] -= totals.get("EXACT's kernel", 0.0) + totals.get("epoch-end curves", 0.0)
            totals["storage and the rest"] = totals["Runner.run"] - sum(v for k, v in totals.items() if k != "Runner.run")
            sections[pack].append(totals)
    print(f"built-in preset, where Runner.run's time goes (seconds, median of {rounds}):")
    print(f"  {'section':>22} {'--pack 1':>9} {f'--pack {DEFAULT_PACK}':>9}")
    for label in sections[1][0]:
        one, packed = (statistics.median(t.get(label, 0.0) for t in sections[p]) for p in (1, DEFAULT_PACK))
        print(f"  {label:>22} {one:9.2f} {packed:9.2f}")


def bench_table1(data_dir: str, units: int | None) -> None:
    spec = load_preset("exact-table1")
    if units:  # the first data set with its first `units` methods
        spec = dataclasses.replace(spec, datasets=spec.datasets[:1], methods=spec.methods[:units])
    runs = len(list(spec.units())) * (spec.trials + spec.seeds)
    packs = [DEFAULT_PACK, 1] if units else [DEFAULT_PACK]
    for pack in packs:
        with tempfile.TemporaryDirectory() as folder:
            seconds, _, _ = run_study(spec, pack, Path(folder), data_dir)
        print(f"table1 ({len(list(spec.units()))} units, {runs} runs) pack {pack}: {seconds / 60:.1f} min, "
              f"{runs / seconds * 60:.0f} runs per minute")


def _per_call(fn, calls: int = 50, rounds: int = 5) -> float:
    """Median over ``rounds`` of the mean seconds per call of ``fn`` (after a warm-up)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def bench_step(k_runs: int = 20, batch: int = 256) -> None:
    """A packed step's pieces, each the old way and the way the packed step takes now, side by
    side: the softmax cross-entropy (forward + backward) of the pack's K x B rows, PyTorch's
    last-dimension kernel against the classes first (``lossbench.losses._softmax``); the forward
    pass of K linear models, vmap of the model against its ``packed_forward``; a step's linear model
    and cross-entropy with each run's outputs together against the outputs first; gathering the
    runs' batches, advanced indexing against ``index_select``; EXACT's batch-standardised loss, one
    call per run against one call for the pack (``batch_groups``)."""
    from torch.nn import functional as F

    from lossbench.losses import _softmax
    from lossbench.models.linear import LinearClassifier
    from lossbench.train import packed as packed_module

    rows = k_runs * batch
    print(f"packed step pieces, K = {k_runs} runs x B = {batch} rows (microseconds per call; ratio old / new)")
    for classes in (2, 4, 7, 10, 15, 16, 26):
        x0 = torch.randn(rows, classes)
        y = torch.randint(0, classes, (rows,))

        def fwd_bwd(ce):
            x = x0.clone().requires_grad_()
            return lambda: torch.autograd.grad(ce(x, y).mean(), x)

        old, new = _per_call(fwd_bwd(lambda x, y: F.cross_entropy(x, y, reduction="none")), 20), _per_call(
            fwd_bwd(lambda x, y: _softmax.cross_entropy(x, y, reduction="none")), 20)  # fmt: skip
        print(f"  cross-entropy, C = {classes:3d}: {old * 1e6:7.0f} -> {new * 1e6:7.0f}  ({old / new:.1f}x)")
    for features, classes in ((21, 4), (64, 10), (100, 2)):
        models = [LinearClassifier(features, classes) for _ in range(k_runs)]
        x = torch.randn(k_runs, batch, features)
        fast = packed_module.PackedModel(models)
        with mock.patch.object(packed_module, "_own_packed_forward", lambda model: None):
            slow = packed_module.PackedModel(models)

        def forward_backward(pack):
            return lambda: torch.autograd.grad(pack(x).square().sum(), pack.params)

        old, new = _per_call(forward_backward(slow)), _per_call(forward_backward(fast))
        print(f"  linear forward + backward, {features} -> {classes}: {old * 1e6:7.0f} -> {new * 1e6:7.0f}  ({old / new:.1f}x)")
    from lossbench.losses import CrossEntropyLoss, ExactLoss
    from lossbench.models import _packed

    for features, classes in ((21, 4), (64, 10)):  # the output layer's layout, a step's model and loss
        weight = torch.randn(k_runs, classes - 1, features, requires_grad=True)
        bias = torch.randn(k_runs, classes - 1, requires_grad=True)
        x, y = torch.randn(k_runs, batch, features), torch.randint(0, classes, (k_runs, batch))
        values = packed_module.PackedLosses([CrossEntropyLoss(validate=False)] * k_runs, [list(range(k_runs))])

        def runs_own():  # each run's rows together, the fixed first logit concatenated (as before)
            logits = _packed.linear(x, weight, bias, False)
            return torch.cat([logits.new_zeros(k_runs, batch, 1), logits], 2)

        def model_and_loss(logits_of):
            return lambda: torch.autograd.grad(values(logits_of(), y).sum(), [weight, bias])

        old = _per_call(model_and_loss(runs_own), 20)
        new = _per_call(model_and_loss(lambda: _packed.linear(x, weight, bias, False, last=True, zeros=1)), 20)
        print(f"  linear model + cross-entropy, {features} -> {classes} (fixed first logit), output layout: "
              f"{old * 1e6:7.0f} -> {new * 1e6:7.0f}  ({old / new:.1f}x)")
    for classes in (4, 7, 10):  # Table 1's EXACT: batch-standardised, one call per run against one per pack
        logits0 = torch.randn(k_runs, batch, classes)
        y = torch.randint(0, classes, (k_runs, batch))
        losses = [ExactLoss(standardize=True, sigma=0.5, margin=1.0, validate=False)] * k_runs
        alone = packed_module.PackedLosses(losses)
        shared = packed_module.PackedLosses(losses, [list(range(k_runs))], batch_groups="groups")

        def loss_step(values):
            x = logits0.clone().requires_grad_()
            return lambda: torch.autograd.grad(values(x, y).sum(), x)

        old, new = _per_call(loss_step(alone), 20), _per_call(loss_step(shared), 20)
        print(f"  EXACT (standardised), C = {classes:3d}: {old * 1e6:7.0f} -> {new * 1e6:7.0f}  ({old / new:.1f}x)")
    for n, features in ((1382, 21), (60000, 784)):
        data = torch.randn(n, features)
        idx = torch.stack([torch.randperm(n)[:batch] for _ in range(k_runs)])
        old, new = _per_call(lambda: data[idx]), _per_call(lambda: packed_module.batch_rows(data, idx))
        print(f"  batch gather, {n} x {features}: {old * 1e6:7.0f} -> {new * 1e6:7.0f}  ({old / new:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parts = ["tuner", "journal", "builtin", "where", "table1", "step"]
    parser.add_argument("parts", nargs="*", default=["tuner", "builtin"], choices=[*parts, "tuner-child"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--against", metavar="REV", help="tuner: measure git revision REV too, side by side")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--table1-units", type=int, default=None)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: expected at least 1")
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.parts == ["tuner-child"]:  # one side of `tuner`, in its own process: a JSON line for the parent
        print(json.dumps(tuner_costs()))
        return
    print(f"torch {torch.__version__}, {args.threads} thread(s), default pack {DEFAULT_PACK}")
    for part in args.parts:
        if part == "tuner":
            bench_tuner(args.rounds, args.against, args.threads)
        elif part == "journal":
            bench_journal()
        elif part == "builtin":
            bench_builtin(args.rounds)
        elif part == "where":
            bench_where(args.rounds)
        elif part == "table1":
            bench_table1(args.data_dir, args.table1_units)
        elif part == "step":
            bench_step()
        else:
            parser.error("tuner-child is the tuner's own sub-process, run alone")


if __name__ == "__main__":
    main()
