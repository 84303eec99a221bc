"""Terminal output with rich: progress while a study runs, the leaderboard when it is done.

On a terminal the progress is a live bar.  Where it is not a terminal (a CI log, a file), a bar
would print nothing until the end, so each (dataset, method) unit prints one line as it finishes
instead.  Progress and notices go to stderr, the leaderboards to stdout.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from lossbench._checks import first_few
from lossbench.bench.report import across_summary, leaderboard_header, leaderboard_rows, paired_summary
from lossbench.bench.results import DatasetResult, across_datasets
from lossbench.bench.spec import Spec

# Rich lays out for 80 columns where stdout is no terminal (`lossbench run > results.txt`, a CI log), which broke a
# leaderboard's paired-test cells over five lines each: a file takes the tables' own width, up to this (COLUMNS,
# where set, still decides).
FILE_WIDTH = 200


def _widened(out: Console, environ: Mapping[str, str]) -> Console:
    if not out.is_terminal and "COLUMNS" not in environ:
        out.width = FILE_WIDTH
    return out


# No emoji codes: a method named "ce:skull:" is printed as written, as the report writes it.
console = _widened(Console(emoji=False), os.environ)
# Progress and notices go to stderr: stdout keeps the results (`lossbench run > results.txt`).
status = Console(stderr=True, emoji=False)

# What Runner.run passes: runs done and in all, the unit (or what the worker waits for), and the
# unit's status after its step ("ran", "waiting", "done").
ProgressCallback = Callable[[int, int, str, str], None]


def say_alone(alone: list[tuple[str, str]]) -> None:
    """One line per unit whose runs train one at a time though packing is on (``Runner.alone``): a
    sweep of such units takes many times longer, and the user may be able to change why."""
    for label, reason in alone:
        status.print(f"{label}: trains one run at a time ({reason})", markup=False, highlight=False, soft_wrap=True)


def say_unpaired(spec: Spec) -> None:
    """A study without a baseline, or whose baseline leaves some data sets out, gets no paired tests (there): said
    as it starts, not only in the report."""
    if spec.baseline is None and len(spec.methods) > 1:
        status.print(f"{spec.name}: no baseline named: the report ranks the methods by their means, with no paired "
                      'tests (set baseline = "<method>" for them)', markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    baseline = next((m for m in spec.methods if m.name == spec.baseline), None)
    left = [d.label for d in spec.datasets if baseline is not None and not baseline.runs_on(d)]
    if left:
        status.print(f"{spec.name}: the baseline {baseline.name!r} does not run on {', '.join(left)}: no paired tests "
                     "there", markup=False, highlight=False, soft_wrap=True)  # fmt: skip


@contextlib.contextmanager
def run_progress(title: str) -> Iterator[ProgressCallback]:
    """A progress bar over all runs (tuning trials + evaluation seeds) of a study on a terminal,
    one line per finished unit elsewhere."""
    if not status.is_terminal:
        yield unit_lines(title, lambda line: status.print(line, markup=False, highlight=False, soft_wrap=True))
        return
    with Progress(
        # Titles and unit labels are text, not markup: "table[path=a.csv]" or a method named "[/x]".
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[unit]}", markup=False),
        console=status,
        transient=False,
    ) as progress:
        task = progress.add_task(title, total=None, unit="")

        def update(done: int, total: int, unit: str, status: str = "ran") -> None:
            progress.update(task, completed=done, total=total, unit=unit)

        yield update


def unit_lines(title: str, emit: Callable[[str], None]) -> ProgressCallback:
    """A progress callback that emits one line the first time each unit is done, e.g.
    ``tiny: wine / ce done (28/36 runs of the study done, 00:01:02 elapsed)``, and one when the
    worker starts waiting for others (again after it ran something).  Units found done before this
    process ran a run (a study resumed, or run again once finished) are said in one line, not as if
    they had just been done."""
    started, finished, waiting, ran = time.monotonic(), set(), False, False
    before: list[str] = []  # units found done before this process ran a run or waited

    def update(done: int, total: int, unit: str, status: str = "ran") -> None:
        nonlocal waiting, ran
        if status in ("ran", "waiting") and not ran:  # (this process at work, or waiting on others': units done from
            ran = True  # now on are said one by one)
            if before:
                emit(f"{title}: {len(before)} unit(s) were done before ({first_few(before, 3, ', ')})")
        if status == "waiting" and not waiting:
            emit(f"{title}: {unit}")
        waiting = status == "waiting" or (waiting and status != "ran")  # (a unit found done again: still waiting)
        if status != "done" or unit in finished:
            return
        finished.add(unit)
        if not ran:
            before.append(unit)
            if done == total:
                emit(f"{title}: every run of the study is done ({total} stored): nothing left to run")
            return
        elapsed = time.strftime("%H:%M:%S", time.gmtime(time.monotonic() - started))
        emit(f"{title}: {unit} done ({done}/{total} runs of the study done, {elapsed} elapsed)")

    return update


def print_leaderboards(results: list[DatasetResult]) -> None:
    """A compact leaderboard per dataset; the report files add hyperparameters and trial ids."""
    for result in results:
        # (as Text: names hold [] and markup; rich's escape() doubled a trailing backslash)
        table = Table(title=Text(f"{result.dataset.label}: test {result.metric}"), title_justify="left")
        header = leaderboard_header(result)
        shown = len(header) - 2  # rank, method, score, CI (, vs baseline): not the hyperparameters and trials
        for key in header[:shown]:
            table.add_column(Text(key), overflow="fold")  # (the baseline's name in "vs <baseline>")
        for row in leaderboard_rows(result):
            table.add_row(*(Text(cell) for cell in row[:shown]))
        console.print(table)
        if result.baseline is not None:  # (the ranking orders means: which of its steps the seeds tell apart)
            console.print(paired_summary(result), markup=False, highlight=False, soft_wrap=True)


def print_across(spec: Spec, results: list[DatasetResult]) -> None:
    """One paragraph per metric ranked over the data sets: the methods by mean rank, and what the ranks tell apart."""
    for across in across_datasets(spec, results):
        r = across.ranking
        ranks = "" if r is None else ": mean rank " + ", ".join(f"{name} {rank:.2f}" for name, rank in r.mean_ranks.items())
        console.print(f"Across the data sets (test {across.metric}){ranks}. {across_summary(across)}",
                      markup=False, highlight=False, soft_wrap=True)  # fmt: skip
