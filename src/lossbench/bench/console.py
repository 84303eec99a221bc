"""Terminal output with rich: progress while a study runs, the leaderboard when it is done."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from lossbench.bench.report import leaderboard_rows
from lossbench.bench.results import DatasetResult

console = Console()


@contextlib.contextmanager
def run_progress(title: str) -> Iterator[Callable[[int, int, str], None]]:
    """A progress bar over all runs (tuning trials + evaluation seeds) of a study."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[unit]}"),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(title, total=None, unit="")

        def update(done: int, total: int, unit: str) -> None:
            progress.update(task, completed=done, total=total, unit=unit)

        yield update


def print_leaderboards(results: list[DatasetResult]) -> None:
    """A compact leaderboard per dataset; the report files add hyperparameters and trial ids."""
    for result in results:
        table = Table(title=f"{result.dataset.label}: test {result.metric}", title_justify="left")
        for key in ("rank", "method", result.metric, "95% CI", "vs baseline"):
            table.add_column(key, overflow="fold")
        for row in leaderboard_rows(result):
            table.add_row(*(row[k] for k in ("rank", "method", result.metric, "95% CI", "vs baseline")))
        console.print(table)
