"""Many methods over many data sets: Friedman's test, Nemenyi's post hoc and the critical-difference
diagram (Demšar 2006), as the bench's report and the ledger both rank methods (the ledger's rule must not
load the bench: this module loads neither)."""

from __future__ import annotations

import io
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pandas as pd
from scipy import stats

from lossbench._paired import score_rounding, tied_within


@dataclass(frozen=True, eq=False)
class Ranking:
    """Friedman/Nemenyi ranking of several methods over several datasets (Demšar 2006).

    ``mean_ranks``: per method, its rank averaged over datasets (1 = best score on a dataset,
    ties share the average rank), sorted best first.  ``friedman_statistic``/``friedman_p``: the
    Friedman chi-square test that all methods rank alike (nan when every dataset ties all
    methods).  ``nemenyi_p``: the Nemenyi post-hoc p-value for each pair of methods, in
    ``mean_ranks`` order.  ``critical_difference``: the Nemenyi critical difference at ``alpha``:
    two methods differ (Nemenyi p <= alpha) exactly when their mean ranks differ by at least it.
    """

    mean_ranks: pd.Series
    friedman_statistic: float
    friedman_p: float
    nemenyi_p: pd.DataFrame
    critical_difference: float
    alpha: float
    n_datasets: int
    ranks: pd.DataFrame  # each method's rank on each dataset (rows), the columns in ``mean_ranks`` order


RANKED_METHODS = 3  # the fewest methods a ranking takes: scipy's Friedman test needs 3


def ranking(scores: pd.DataFrame, *, alpha: float = 0.05) -> Ranking:
    """Rank methods (columns) over datasets (rows) from scores where higher is better.

    Friedman test: ``scipy.stats.friedmanchisquare``; post hoc: ``scikit_posthocs.
    posthoc_nemenyi_friedman``; critical difference ``q_alpha * sqrt(k (k + 1) / (6 N))`` with
    ``q_alpha`` the studentized-range quantile over sqrt(2) (``scipy.stats.studentized_range``),
    k methods and N datasets.  At least 3 methods (scipy's Friedman test needs 3; compare two
    methods with :func:`lossbench.ledger.verdict.across_datasets_verdict`, the Wilcoxon test Demšar recommends for a
    pair) and 2 datasets; every score finite.
    """
    import scikit_posthocs  # imported here: it pulls in matplotlib, which the ledger's verdicts don't need

    if not isinstance(scores, pd.DataFrame):
        raise ValueError(
            f"scores must be a pandas DataFrame (rows datasets, columns methods), got {type(scores).__name__}"
        )
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    n, k = scores.shape
    if k < RANKED_METHODS:
        raise ValueError(
            f"scores must have at least {RANKED_METHODS} methods (columns) for the Friedman test, "
            f"got {k}: {list(scores.columns)}"
        )
    if n < 2:
        raise ValueError(f"scores must have at least 2 datasets (rows), got {n}")
    if scores.columns.has_duplicates:
        raise ValueError(
            f"scores has duplicate method names: {list(scores.columns[scores.columns.duplicated()])}"
        )
    try:
        values = scores.to_numpy(dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"scores must be numeric, got dtypes {dict(scores.dtypes)}") from err
    bad = ~np.isfinite(values)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(
            f"scores[{scores.columns[j]!r}] on dataset {scores.index[i]!r} is {values[i, j]}: "
            "every score must be finite"
        )

    # means equal up to the scores' rounding (the same count of correct samples) tie, as the verdicts read them
    rounding = score_rounding(values)
    values = np.stack([tied_within(row, rounding) for row in values])
    scores = pd.DataFrame(values, index=scores.index, columns=scores.columns)
    each = scores.rank(axis=1, ascending=False, method="average")
    mean_ranks = each.mean(axis=0).sort_values(kind="stable")
    if np.all(values == values[:, :1]):
        stat, p = math.nan, math.nan  # every dataset ties all methods: chi-square is 0/0
    else:
        res = stats.friedmanchisquare(*values.T)
        stat, p = float(res.statistic), float(res.pvalue)
    order = list(mean_ranks.index)
    # Nemenyi ranks ascending, we rank descending: the pairwise |rank differences| are the same.
    nemenyi = scikit_posthocs.posthoc_nemenyi_friedman(scores).loc[order, order]
    q_alpha = stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    cd = float(q_alpha * math.sqrt(k * (k + 1) / (6 * n)))
    return Ranking(mean_ranks, stat, p, nemenyi, cd, alpha, n, each[order])


def cd_diagram_png(
    ranking: Ranking, path: str | os.PathLike | BinaryIO | None = None, colours: Mapping[str, str] | None = None
) -> bytes:
    """Critical-difference diagram (``scikit_posthocs.critical_difference_diagram``) as PNG bytes.

    Methods joined by a bar are not significantly different (Nemenyi p > alpha); the title gives
    the critical difference; each label the method's mean rank to two decimals, as the tables print it.
    ``colours``: each method's colour (a report's other figures' where given; else by rank).  Also written
    to ``path`` (a file name or a binary file) when given.  Draws on a bare ``matplotlib.figure.Figure``,
    so pyplot's state and the process's backend are left alone.
    """
    import scikit_posthocs
    from matplotlib import style
    from matplotlib.figure import Figure

    from lossbench._document import PLOT_STYLE, drawn_as_written

    if not isinstance(ranking, Ranking):
        raise ValueError(f"ranking must be a Ranking from ranking(), got {type(ranking).__name__}")
    k = len(ranking.mean_ranks)
    drawn = {name: drawn_as_written(name) for name in ranking.mean_ranks.index}  # ('$' in a name broke the report)
    palette = None if colours is None else {drawn[name]: colours[name] for name in drawn}
    with style.context(PLOT_STYLE):
        fig = Figure(figsize=(7, 1.2 + 0.3 * k))
        ax = fig.add_subplot()
        # The critical difference goes in the title: scikit-posthocs draws its bar over the tick labels.
        scikit_posthocs.critical_difference_diagram(
            ranking.mean_ranks.rename(index=drawn), ranking.nemenyi_p.rename(index=drawn, columns=drawn),
            alpha=ranking.alpha, ax=ax, color_palette=palette,
            label_fmt_left="{label} ({rank:.2f})", label_fmt_right="({rank:.2f}) {label}",
        )  # fmt: skip
        ax.set_title(
            f"mean rank over {ranking.n_datasets} datasets (1 = best); Nemenyi critical difference "
            f"{ranking.critical_difference:.2f} at alpha = {ranking.alpha:g}",
            pad=24, fontsize="medium",
        )  # fmt: skip
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight", dpi=150)
    png = buf.getvalue()
    if path is not None:
        if hasattr(path, "write"):
            path.write(png)
        else:
            with open(path, "wb") as f:
                f.write(png)
    return png
