"""Report figures (matplotlib, PNG bytes): learning curves, metric vs. main hyperparameter, budget curves.

Each method keeps one colour in every figure of a report (:func:`method_colours`).
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib import colormaps, style
from matplotlib.colors import to_hex
from matplotlib.figure import Figure  # a bare Figure: no pyplot state, no backend chosen for the process
from matplotlib.ticker import LogFormatter, MaxNLocator, NullLocator
from optuna.distributions import CategoricalDistribution

from lossbench._document import PLOT_STYLE, drawn_as_written
from lossbench.bench.methods import resolve_method
from lossbench.bench.metrics import DECIDED
from lossbench.bench.results import DatasetResult
from lossbench.bench.spec import Spec
from lossbench.bench.storage import run_record
from lossbench.registry import FloatRange

Colours = dict[str, str]


def method_colours(spec: Spec) -> Colours:
    """One colour per method, by its place in the spec: tab10, tab20 beyond ten methods, and beyond twenty
    (where tab20's repeated) as many hues of turbo, spread over it."""
    names = [m.name for m in spec.methods]
    if len(names) > 20:
        return {name: to_hex(colormaps["turbo"](i / (len(names) - 1))) for i, name in enumerate(names)}
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: to_hex(cmap(i)) for i, name in enumerate(names)}


def _mean_curve(runs, key: str) -> tuple[np.ndarray | None, set[int]]:
    """The mean curve over ``runs`` of ``key`` (each epoch's nan values left out: a diverged run's) and
    the indices of the runs left out of some epoch's mean."""
    curves = [run_record(t).get("curves", {}).get(key) for t in runs]
    kept = [k for k, c in enumerate(curves) if c]
    if not kept:
        return None, set()
    length = min(len(curves[k]) for k in kept)
    values = np.array([curves[k][:length] for k in kept], dtype=float)
    counts = (~np.isnan(values)).sum(axis=0)  # (an epoch where every run diverged has no mean: nan, without
    mean = np.where(counts > 0, np.nansum(values, axis=0) / np.maximum(counts, 1), np.nan)  # nanmean's warning)
    return mean, {k for k, row in zip(kept, values) if np.isnan(row).any()}


@style.context(PLOT_STYLE)
def learning_curves(result: DatasetResult, colours: Colours) -> bytes:
    """Mean over evaluation seeds of each method's training loss and test metric per epoch; the title
    says how many runs' nan epochs (diverged) the means leave out.  A method deciding by per-label
    thresholds sets them when its runs end: its epochs read logit 0 (dashed), and a dot gives the mean
    of its final scores, through the thresholds, which the leaderboard ranks."""
    fig = Figure(figsize=(11, 4))
    ax_loss, ax_metric = fig.subplots(1, 2)
    left_out = 0
    for row in result.trained_methods:  # (a method reading another's runs has its curves)
        runs = list(row.runs.values())
        loss, nan_loss = _mean_curve(runs, "train_loss")
        metric, nan_metric = _mean_curve(runs, f"heldout_{result.metric}")
        left_out += len(nan_loss | nan_metric)
        colour = colours[row.method.name]
        if loss is not None:
            ax_loss.plot(np.arange(1, len(loss) + 1), loss, label=drawn_as_written(row.method.name), color=colour)
        if metric is None:
            continue
        epochs = np.arange(1, len(metric) + 1)
        if row.method.decision != "thresholds" or result.metric not in DECIDED:
            ax_metric.plot(epochs, metric, label=drawn_as_written(row.method.name), color=colour)
            continue
        ax_metric.plot(epochs, metric, label=drawn_as_written(f"{row.method.name} (epochs at logit 0; dot: thresholds)"),
                       color=colour, linestyle="--")  # fmt: skip
        final = [run_record(t).get("metrics", {}).get(result.metric, math.nan) for t in runs]
        final = [v for v in final if v == v]
        if final:
            ax_metric.plot([epochs[-1]], [sum(final) / len(final)], marker="o", color=colour)
    for ax in (ax_loss, ax_metric):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.set(xlabel="epoch", ylabel="training loss (each method's own)", title="training loss")
    ax_metric.set(xlabel="epoch", ylabel=f"test {result.metric}", title=f"test {result.metric}")
    beside = _legend(ax_metric, 8)
    note = f"; {left_out} diverged run(s) left out of the epochs where they are nan" if left_out else ""
    fig.suptitle(drawn_as_written(f"{result.dataset.label}: learning curves (mean over seeds{note})"))
    return _png(fig, whole=beside)


@style.context(PLOT_STYLE)
def hyperparameter_scatter(result: DatasetResult, spec: Spec, colours: Colours) -> bytes:
    """Validation metric of every tuning trial against the method's main hyperparameter."""
    rows = [r for r in result.trained_methods if r.tune_trials]
    cols = min(3, max(1, len(rows)))
    nrows = max(1, math.ceil(len(rows) / cols))
    fig = Figure(figsize=(4 * cols, 3.2 * nrows))
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax, row in zip(axes.flat, rows):
        method = resolve_method(row.method)
        key = method.main_hyperparameter(spec.search)
        dist = method.search_space(spec.search).get(key)
        grid = list(dist.choices) if isinstance(dist, CategoricalDistribution) else None
        xs = [_on_axis(t.params.get(key), grid) for t in row.tune_trials]
        ys = [t.value for t in row.tune_trials]
        ax.scatter(xs, ys, s=18, alpha=0.7, color=colours[row.method.name])
        chosen = [t for t in row.tune_trials if t.number == row.chosen_trial]
        if chosen:
            ax.scatter([_on_axis(chosen[0].params.get(key), grid)], [chosen[0].value], s=90, marker="*", color="black",
                       label="chosen")  # fmt: skip
            ax.legend(fontsize=7)
        if grid is not None:
            ax.set_xticks(range(len(grid)), [drawn_as_written("default" if c is None else f"{c:g}" if _number(c) else c) for c in grid])
            ax.set_xlim(-0.5, len(grid) - 0.5)
        elif getattr(dist, "log", False) or (isinstance(spec.search.get(key), FloatRange) and spec.search[key].log):
            ax.set_xscale("log")
            positive = [x for x in xs if x is not None and x > 0]
            if positive and max(positive) >= 10 * min(positive):
                # decades only, labelled in plain text: the minor ticks and their mathtext labels
                # were most of the figure's drawing time (under a decade they are its only labels)
                ax.xaxis.set_major_formatter(LogFormatter(labelOnlyBase=True))
                ax.xaxis.set_minor_locator(NullLocator())
        ax.set(xlabel=drawn_as_written(key), ylabel=f"validation {result.metric}", title=drawn_as_written(row.method.name))
    for ax in list(axes.flat)[len(rows) :]:
        ax.axis("off")
    fig.suptitle(drawn_as_written(f"{result.dataset.label}: tuning trials"))
    return _png(fig)


def _on_axis(value, grid: list | None):
    """Where a trial's value sits on the x axis: a range's value as it is; a grid's choice by its place
    on a category axis, as matplotlib would drop None (the grid's "default") silently, and with it the
    trial and the chosen star."""
    if grid is None:
        return value
    return grid.index(value) if value in grid else math.nan


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@style.context(PLOT_STYLE)
def budget_curves(result: DatasetResult, colours: Colours) -> bytes:
    """Each method's best validation score after n tuning trials, n = 1 .. the budget."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for row in result.trained_methods:
        curve = row.budget_curve()
        if curve:
            ax.plot(np.arange(1, len(curve) + 1), curve, marker=".", label=drawn_as_written(row.method.name), color=colours[row.method.name])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="tuning trials spent", ylabel=f"best validation {result.metric}",
           title=drawn_as_written(f"{result.dataset.label}: tuning budget"))  # fmt: skip
    return _png(fig, whole=_legend(ax, 8))


LEGEND_INSIDE = 10  # methods a legend lists inside its axes; more go beside them


def _legend(ax, fontsize: int) -> bool:
    """The axes' legend, or where no method has a curve yet (a study in progress) a note saying so; True where
    the legend went beside the axes."""
    handles = ax.get_legend_handles_labels()[0]
    if len(handles) > LEGEND_INSIDE:  # (beside the axes, in columns: forty methods' legend covered them, cut off)
        ax.legend(fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.02, 1), ncol=-(-len(handles) // 25))
        return True
    if handles:
        ax.legend(fontsize=fontsize)
    else:
        ax.text(0.5, 0.5, "no finished runs yet", ha="center", va="center", transform=ax.transAxes)
    return False


def _png(fig, whole: bool = False) -> bytes:
    """The figure as PNG bytes; ``whole``: cropped to all it draws (a legend beside the axes), a second drawing
    of it, so only then."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight" if whole else None)
    return buf.getvalue()
