"""Packed trials against one run at a time, side by side in one process.

Run from the repository root: ``python benchmarks/bench_packing.py`` (``--help`` for options).
What is measured, and how (wall-clock seconds of ``time.perf_counter``, one torch thread unless
``--threads``; run it on a quiet machine, and read the ratios, which load hits alike only when
the two sides alternate: ``--rounds`` repeats the pair in alternating order and reports medians):

- ``tuner``: the runner's own cost per trial (ask, sampling, the run's record, tell, heartbeats,
  progress reads) on the default SQLite storage, with training replaced by a stub that returns a
  fixed result, for ``--pack 1`` and the default pack.
- ``builtin``: the built-in preset end to end (``Runner.run``, 3 data sets x 6 methods x (20
  trials + 5 seeds)), packed and not; and whether the two leaderboards agree (same chosen
  configuration and test scores to round-off).  The preset tunes with TPE, which is asked its
  start-up count (10) of trials at once when packed: the first 10 draws are the same, the last 10
  see 10 finished trials instead of 10 to 19, so the chosen configurations may differ there.
- ``table1``: the EXACT paper's Table 1 (preset ``exact-table1``, budget ``paper``: 10 sets x 7
  methods x (20 trials + 5 seeds) of 16 epochs of ~500 batches) packed, with trials per minute;
  ``--table1-units N`` times the first data set with its first N methods only, packed and not.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import optuna
import torch

from lossbench.bench import runner as runner_module
from lossbench.bench.defaults import DEFAULT_PACK
from lossbench.bench.execution import RunResult
from lossbench.bench.runner import Runner, run_record
from lossbench.bench.spec import load_preset
from lossbench.bench.storage import default_storage_url, open_storage


def run_study(spec, pack: int, folder: Path, data_dir: str | None = None) -> tuple[float, Runner]:
    storage = open_storage(default_storage_url(folder), spec.heartbeat_interval)
    runner = Runner(spec, storage, torch.device("cpu"), data_dir=data_dir, pack=pack)
    start = time.perf_counter()
    runner.run()
    return time.perf_counter() - start, runner


def leaderboard(runner: Runner) -> dict[str, tuple[dict, list[float]]]:
    """Per unit: the chosen configuration and its test accuracies by seed."""
    board = {}
    for unit in runner.units:
        finals = sorted((t for t in unit.final.get_trials() if t.state.name == "COMPLETE"), key=lambda t: t.user_attrs["seed"])
        board[unit.label] = (finals[0].params, [run_record(t)["metrics"]["accuracy"] for t in finals])
    return board


def bench_tuner(rounds: int) -> None:
    spec = load_preset("builtin")
    spec = dataclasses.replace(spec, datasets=spec.datasets[:1], methods=spec.methods[:5])

    def stub_one(split, method, params, spec, seed):
        return RunResult({"accuracy": 0.5, "diverged": 0.0}, {"train_loss": [0.0] * spec.train.epochs}, 0.0)

    def stub_pack(split, method, runs, spec):
        return [stub_one(split, method, p, spec, s) for p, s in runs]

    runs = len(spec.datasets) * len(spec.methods) * (spec.trials + spec.seeds)
    times: dict[int, list[float]] = {1: [], DEFAULT_PACK: []}
    with mock.patch.object(runner_module, "train_and_score", stub_one), mock.patch.object(runner_module, "train_and_score_packed", stub_pack):
        for r in range(rounds):
            for pack in ([1, DEFAULT_PACK] if r % 2 == 0 else [DEFAULT_PACK, 1]):
                with tempfile.TemporaryDirectory() as folder:
                    seconds, _ = run_study(spec, pack, Path(folder))
                times[pack].append(seconds / runs * 1000)
    print(f"tuner: runner cost per trial on SQLite, training stubbed ({runs} runs, median of {rounds})")
    for pack, ms in times.items():
        print(f"  pack {pack:>2}: {statistics.median(ms):6.1f} ms per trial")


def bench_builtin(rounds: int) -> None:
    spec = load_preset("builtin")
    times: dict[int, list[float]] = {1: [], DEFAULT_PACK: []}
    boards = {}
    for r in range(rounds):
        for pack in ([1, DEFAULT_PACK] if r % 2 == 0 else [DEFAULT_PACK, 1]):
            with tempfile.TemporaryDirectory() as folder:
                seconds, runner = run_study(spec, pack, Path(folder))
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


def bench_table1(data_dir: str, units: int | None) -> None:
    spec = load_preset("exact-table1")
    if units:  # the first data set with its first `units` methods
        spec = dataclasses.replace(spec, datasets=spec.datasets[:1], methods=spec.methods[:units])
    runs = len(list(spec.units())) * (spec.trials + spec.seeds)
    packs = [DEFAULT_PACK, 1] if units else [DEFAULT_PACK]
    for pack in packs:
        with tempfile.TemporaryDirectory() as folder:
            seconds, _ = run_study(spec, pack, Path(folder), data_dir)
        print(f"table1 ({len(list(spec.units()))} units, {runs} runs) pack {pack}: {seconds / 60:.1f} min, "
              f"{runs / seconds * 60:.0f} runs per minute")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("parts", nargs="*", default=["tuner", "builtin"], choices=["tuner", "builtin", "table1"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--table1-units", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"torch {torch.__version__}, {args.threads} thread(s), default pack {DEFAULT_PACK}")
    for part in args.parts:
        if part == "tuner":
            bench_tuner(args.rounds)
        elif part == "builtin":
            bench_builtin(args.rounds)
        else:
            bench_table1(args.data_dir, args.table1_units)


if __name__ == "__main__":
    main()
