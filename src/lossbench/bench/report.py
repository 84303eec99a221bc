"""The report: markdown, CSV and a self-contained HTML page, rebuilt from storage alone."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from pathlib import Path

from lossbench._paths import atomic_write, inside
from lossbench.bench.metrics import METRICS
from lossbench.bench.results import DatasetResult, MethodResult
from lossbench.bench.runner import run_record
from lossbench.bench.spec import Spec


def _fmt(x: float, digits: int = 4) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _params(config: dict | None) -> str:
    if not config:
        return "-"
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(config.items()))


def leaderboard_rows(result: DatasetResult) -> list[dict[str, str]]:
    """One display row per method, best first."""
    rows = []
    for r in result.methods:
        s = r.summaries.get(result.metric)
        status = "" if r.complete else f" (incomplete: {len(r.runs)}/{len(r.seeds)} seeds)"
        if r.diverged_runs:
            status += f" ({r.diverged_runs} diverged)"
        vs = "baseline" if r.method.name == result.baseline else "-"
        if r.paired is not None:
            vs = f"{r.paired.mean_difference:+.4f} (p {_fmt(r.paired.p_value, 3)}, Holm {_fmt(r.p_holm, 3)})"
        rows.append(
            {
                "rank": "-" if math.isnan(r.rank) else f"{r.rank:g}",
                "method": r.method.name + status,
                result.metric: f"{_fmt(s.mean)} ± {_fmt(s.std)}" if s else "-",
                "95% CI": f"[{_fmt(s.ci_low)}, {_fmt(s.ci_high)}]" if s else "-",
                "vs baseline": vs,
                "chosen hyperparameters": _params(r.config),
                "trials": f"tune #{r.chosen_trial}; final #{','.join(str(r.runs[k].number) for k in sorted(r.runs))}"
                if r.runs
                else "-",
            }
        )
    return rows


def markdown(spec: Spec, results: list[DatasetResult]) -> str:
    lines = [
        f"# lossbench report: {spec.name}",
        "",
        f"Protocol: {spec.trials} tuning trials per method ({spec.sampler} sampler) scored on a "
        f"{spec.val_fraction:.0%} stratified validation split; the chosen configuration re-trained "
        f"with {spec.seeds} seeds on the full training split and scored on the test split. Model "
        f"`{spec.train.model}`, optimiser {spec.train.optimizer}, {spec.train.epochs} epochs, batch "
        f"{spec.train.batch_size}. Mean ± sample std over seeds, Student-t 95% CI; paired t-test "
        f"against `{spec.baseline}` over seeds, Holm-adjusted across methods.",
        "",
    ]
    for result in results:
        rows = leaderboard_rows(result)
        lines += [f"## {result.dataset.label} (test {result.metric})", ""]
        if rows:
            keys = list(rows[0])
            lines.append("| " + " | ".join(keys) + " |")
            lines.append("|" + "---|" * len(keys))
            lines += ["| " + " | ".join(row[k].replace("|", "\\|") for k in keys) + " |" for row in rows]
        lines.append("")
        other = [m for m in METRICS[result.task] if m != result.metric]
        lines.append("| method | " + " | ".join(other) + " |")
        lines.append("|" + "---|" * (len(other) + 1))
        for r in result.methods:
            cells = [f"{_fmt(r.summaries[m].mean)} ± {_fmt(r.summaries[m].std)}" if m in r.summaries else "-" for m in other]
            lines.append(f"| {r.method.name} | " + " | ".join(cells) + " |")
        lines += ["", f"![learning curves](plots/{_slug(result)}_curves.png)",
                  f"![tuning trials](plots/{_slug(result)}_tuning.png)",
                  f"![tuning budget](plots/{_slug(result)}_budget.png)", ""]  # fmt: skip
    return "\n".join(lines)


def _slug(result: DatasetResult) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in result.dataset.label)


def leaderboard_csv(results: list[DatasetResult]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    metrics = sorted({m for r in results for m in METRICS[r.task]})
    header = ["dataset", "selection_metric", "rank", "method", "loss", "transforms", "seeds_done",
              "diverged_runs", "mean_difference_vs_baseline", "p_value", "p_holm", "chosen_tune_trial",
              "final_trials", "config"]  # fmt: skip
    for m in metrics:
        header += [f"{m}_mean", f"{m}_std", f"{m}_ci_low", f"{m}_ci_high"]
    writer.writerow(header)
    for result in results:
        for r in result.methods:
            row = [
                result.dataset.label, result.metric, r.rank, r.method.name, r.method.loss,
                "+".join(t.name for t in r.method.transforms), len(r.runs), r.diverged_runs,
                r.paired.mean_difference if r.paired else "", r.paired.p_value if r.paired else "",
                "" if math.isnan(r.p_holm) else r.p_holm, r.chosen_trial,
                " ".join(str(r.runs[k].number) for k in sorted(r.runs)), json.dumps(r.config, sort_keys=True),
            ]  # fmt: skip
            for m in metrics:
                s = r.summaries.get(m)
                row += [s.mean, s.std, s.ci_low, s.ci_high] if s else ["", "", "", ""]
            writer.writerow(row)
    return buf.getvalue()


def runs_csv(results: list[DatasetResult]) -> str:
    """Every final run with its study, trial number and seed: the rows behind the leaderboard."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    metrics = sorted({m for r in results for m in METRICS[r.task]})
    writer.writerow(["dataset", "method", "study", "trial", "seed", "worker", "seconds", *metrics])
    for result in results:
        for r in result.methods:
            for seed in sorted(r.runs):
                t = r.runs[seed]
                record = run_record(t)
                m = record.get("metrics", {})
                writer.writerow([result.dataset.label, r.method.name, r.final_study, t.number, seed,
                                 record.get("worker", ""), record.get("seconds", ""),
                                 *[m.get(k, "") for k in metrics]])  # fmt: skip
    return buf.getvalue()


PLOT_KINDS = ("curves", "tuning", "budget")  # per dataset: learning curves, tuning trials, budget curves


def html_page(spec: Spec, results: list[DatasetResult], plots: dict[str, Path]) -> str:
    """One file: tables plus the PNG plots embedded as data URIs."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>lossbench report: {html.escape(spec.name)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
        "font-size:13px;text-align:left}th{background:#f3f3f3}img{max-width:100%}</style></head><body>",
        f"<h1>lossbench report: {html.escape(spec.name)}</h1>",
    ]
    md = markdown(spec, results).splitlines()
    parts.append(f"<p>{html.escape(md[2])}</p>")
    for result in results:
        rows = leaderboard_rows(result)
        parts.append(f"<h2>{html.escape(result.dataset.label)} (test {result.metric})</h2><table><tr>")
        if rows:
            parts += [f"<th>{html.escape(k)}</th>" for k in rows[0]]
            parts.append("</tr>")
            for row in rows:
                parts.append("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row.values()) + "</tr>")
        parts.append("</table>")
        for kind in PLOT_KINDS:
            path = plots.get(f"{_slug(result)}_{kind}")
            if path and path.exists():
                data = base64.b64encode(path.read_bytes()).decode()
                parts.append(f"<img alt='{kind}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(spec: Spec, results: list[DatasetResult], out_dir: str | Path) -> list[Path]:
    """Write report.md, leaderboard.csv, runs.csv, report.html and plots/ under ``out_dir``.

    Every path is checked to lie inside ``out_dir`` (see ``lossbench._paths.inside``).
    """
    from lossbench.bench.plots import budget_curves, hyperparameter_scatter, learning_curves

    plots: dict[str, Path] = {}
    for result in results:
        slug = _slug(result)
        figures = (learning_curves(result), hyperparameter_scatter(result, spec), budget_curves(result))
        for kind, png in zip(PLOT_KINDS, figures):
            path = inside(out_dir, "plots", f"{slug}_{kind}.png")
            atomic_write(path, png)
            plots[f"{slug}_{kind}"] = path
    files = {
        "report.md": markdown(spec, results),
        "leaderboard.csv": leaderboard_csv(results),
        "runs.csv": runs_csv(results),
        "report.html": html_page(spec, results, plots),
    }
    paths = [inside(out_dir, name) for name in files]
    for path, text in zip(paths, files.values()):
        atomic_write(path, text)
    return paths + list(plots.values())


def incomplete(results: list[DatasetResult]) -> list[MethodResult]:
    return [r for res in results for r in res.methods if not r.complete]
