"""The report from a storage written by hand (no training): what it says and how it says it."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import html
import math

import numpy as np
import optuna
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from optuna.distributions import CategoricalDistribution, FloatDistribution
from scipy import stats as sps

from lossbench.bench.metrics import METRICS
from lossbench.bench.plots import hyperparameter_scatter, method_colours
from lossbench.bench.report import (
    _protocol,
    leaderboard_header,
    method_settings,
    paired_summary,
    split_sizes,
    write_report,
)
from lossbench.bench.results import DatasetResult, MethodResult, collect, range_edges
from lossbench.bench.spec import evaluation_seeds, parse_spec
from lossbench.bench.stats import format_p, paired_test, ranks, summarize
from lossbench.bench.storage import (
    CHOSEN_FROM_ATTR,
    CONFIG_ATTR,
    OWN_VALIDATION,
    RUN_ATTR,
    VALIDATION_ATTR,
    study_name,
)

LR = FloatDistribution(1e-3, 1.0, log=True)
WD = FloatDistribution(1e-6, 1e-2, log=True)

# Test accuracy per evaluation seed: "ce" and "tied" tie; "accuracy" (a method named like a metric)
# beats ce by the same margin on every seed (p = 0); "exact" is near 1 (its CI must stay <= 1).
SCORES = {"ce": [0.80, 0.82, 0.84], "tied": [0.84, 0.80, 0.82], "accuracy": [0.85, 0.87, 0.89],
          "exact": [1.0, 0.9, 1.0]}  # fmt: skip
CHOSEN_LR = {"ce": 0.05, "tied": 0.05, "accuracy": 0.99, "exact": 0.05}  # 0.99: at the top of [1e-3, 1]


ENV = {"lossbench": "0.1.0", "commit": "abc1234", "torch": "2.13.0", "threads": 2, "device": "cpu", "host": "h"}


def hand_storage(spec, scores: dict[str, list[float]], chosen_lr: dict[str, float],
                 validation: str | None = None, flag_nan: bool = True, label: str = "wine",
                 storage: optuna.storages.BaseStorage | None = None) -> optuna.storages.BaseStorage:  # fmt: skip
    """Each method's two tuning trials and its final runs' test scores (nan: a diverged run) on wine
    (``label``: the spec's label for it); ``validation``: what the tuning runs' records say of their
    validation split (else nothing); ``flag_nan``: whether a nan score's record says the run diverged
    (a finite model may score nan); ``storage``: one to add them to (else a new one in memory)."""
    storage = optuna.storages.InMemoryStorage() if storage is None else storage
    for name, values in scores.items():
        tune = optuna.create_study(storage=storage, study_name=study_name(spec.name, "tune", label, name), direction="maximize")
        for i, lr in enumerate((0.01, chosen_lr[name])):
            record = {"metrics": {"accuracy": 0.5 + i / 10}, "seed": i, "worker": "h:1", "seconds": 0.1,
                      "environment": ENV, "sizes": {"fit": 114, "scored": 28}}  # fmt: skip
            if validation is not None:
                record[VALIDATION_ATTR] = validation
            tune.add_trial(optuna.trial.create_trial(params={"lr": lr, "weight_decay": 1e-4}, value=0.5 + i / 10,
                                                     distributions={"lr": LR, "weight_decay": WD},
                                                     user_attrs={RUN_ATTR: record}))  # fmt: skip
        final = optuna.create_study(storage=storage, study_name=study_name(spec.name, "final", label, name), direction="maximize")
        config = {"lr": chosen_lr[name], "weight_decay": 1e-4}
        final.set_user_attr(CHOSEN_FROM_ATTR, 1)
        final.set_user_attr(CONFIG_ATTR, config)
        for seed, acc in zip(evaluation_seeds(spec), values):
            metrics = {**{m: acc for m in METRICS["multiclass"]}, "diverged": float(acc != acc and flag_nan)}
            record = {"metrics": metrics, "seed": seed, "worker": "h:1", "seconds": 0.2, "environment": ENV,
                      "sizes": {"fit": 142, "scored": 36}, "curves": {"train_loss": [1.0, 0.5], "heldout_accuracy": [0.5, acc]}}  # fmt: skip
            final.add_trial(optuna.trial.create_trial(params=config, value=acc if acc == acc else 0.0,
                                                      distributions={"lr": LR, "weight_decay": WD},
                                                      user_attrs={RUN_ATTR: record, "seed": seed}))  # fmt: skip
    return storage


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    spec = parse_spec({
        "name": "hand", "trials": 2, "seeds": 3, "baseline": "ce", "datasets": ["wine"],
        "methods": [{"name": "ce", "loss": "cross_entropy"}, {"name": "tied", "loss": "cross_entropy"},
                    {"name": "accuracy", "loss": "cross_entropy"},
                    {"name": "exact", "loss": "exact", "transforms": ["grad_normalizer"],
                     "params": {"sigma": 10.0, "sigma_min": 0.01}}],
    })  # fmt: skip
    out = tmp_path_factory.mktemp("report")
    results = collect(spec, hand_storage(spec, SCORES, CHOSEN_LR))
    write_report(spec, results, out)
    return spec, results, out


def test_a_diverged_run_counts_as_the_worst_score_in_the_rank_and_the_paired_test(tmp_path, monkeypatch):
    # one good seed out of three must not rank a method above one that never diverged
    spec = parse_spec({"name": "wild", "trials": 2, "seeds": 3, "baseline": "ce", "datasets": ["wine"],
                       "methods": [{"name": "ce", "loss": "cross_entropy"}, {"name": "wild", "loss": "cross_entropy"}]})  # fmt: skip
    scores = {"ce": [0.95, 0.95, 0.96], "wild": [math.nan, math.nan, 0.97]}
    (wine,) = collect(spec, hand_storage(spec, scores, {"ce": 0.05, "wild": 0.05}))
    ce, wild = wine.method("ce"), wine.method("wild")
    assert (ce.rank, wild.rank) == (1, 2) and wild.diverged_runs("accuracy") == 2
    (unflagged,) = collect(spec, hand_storage(spec, scores, {"ce": 0.05, "wild": 0.05}, flag_nan=False))
    assert unflagged.method("wild").diverged_runs("accuracy") == 2  # a nan score counts as runs.csv marks it
    assert wild.summaries["accuracy"].n == 3 and wild.summaries["accuracy"].mean == pytest.approx(0.97 / 3)
    assert wild.paired.n == 3 and wild.paired.mean_difference == pytest.approx(np.mean([0 - 0.95, 0 - 0.95, 0.97 - 0.96]))
    assert wild.summaries["nll"].n == 1  # the other metrics summarise the runs that did not diverge
    titles = []
    monkeypatch.setattr(Figure, "suptitle", lambda self, text, **kw: titles.append(text))
    write_report(spec, [wine], tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "| 2 | wild (2 diverged) |" in report
    assert "| wild (2 of 3 runs diverged, left out) |" in report  # the other metrics' table says whose means are partial
    # runs.csv says which runs diverged, so its rows give the leaderboard's numbers
    runs = list(csv.DictReader((tmp_path / "runs.csv").open()))
    assert [(r["method"], r["diverged"], r["accuracy"]) for r in runs][3:] == [("wild", "1", "nan"), ("wild", "1", "nan"),
                                                                               ("wild", "0", "0.97")]  # fmt: skip
    (board,) = [r for r in csv.DictReader((tmp_path / "leaderboard.csv").open()) if r["method"] == "wild"]
    assert float(board["accuracy_mean"]) == pytest.approx(np.mean([0.0 if r["diverged"] == "1" else float(r["accuracy"])
                                                                   for r in runs if r["method"] == "wild"]))  # fmt: skip
    # the CSV says how many runs each mean is over: the ranked metric's counts the diverged runs, the others' not
    assert (board["accuracy_n"], board["macro_f1_n"], board["macro_f1_mean"]) == ("3", "1", "0.97")
    # the learning curves' means leave the diverged runs' nan epochs out, and say so
    assert "wine: learning curves (mean over seeds; 2 diverged run(s) left out of the epochs where they are nan)" in titles


def test_holm_adjusts_over_every_method_of_the_data_set_while_the_study_is_in_progress(tmp_path):
    # the methods not complete yet count as p = 1: a report in progress adjusts no less than the finished one
    names = ["ce", "a", "o0", "o1", "o2"]
    spec = parse_spec({"name": "going", "trials": 2, "seeds": 5, "baseline": "ce", "datasets": ["wine"],
                       "methods": [{"name": n, "loss": "cross_entropy"} for n in names]})  # fmt: skip
    done = {"ce": [0.80, 0.82, 0.81, 0.79, 0.80], "a": [0.83, 0.84, 0.82, 0.82, 0.81],
            **{f"o{i}": [0.80, 0.83, 0.80, 0.79, 0.81] for i in range(3)}}  # fmt: skip
    going = {**done, **{f"o{i}": done[f"o{i}"][:2] for i in range(3)}}
    finished, in_progress = (collect(spec, hand_storage(spec, s, dict.fromkeys(names, 0.05)))[0] for s in (done, going))
    a = in_progress.method("a")
    assert a.paired.p_value == finished.method("a").paired.p_value
    assert a.p_holm == pytest.approx(finished.method("a").p_holm) and a.p_holm == pytest.approx(4 * a.paired.p_value)
    assert math.isnan(in_progress.method("o0").p_holm)
    write_report(spec, [in_progress], tmp_path)
    assert "Holm-adjusted across every other method of the data set (one not complete yet counts as p = 1" in (
        tmp_path / "report.md").read_text()


@pytest.mark.parametrize("stopping", [False, True])
def test_the_protocol_says_which_validation_split_and_training_part_the_runs_had(stopping):
    spec = parse_spec({"name": "own", "trials": 2, "seeds": 3, "datasets": ["wine"], "train": {"early_stopping": stopping},
                       "methods": [{"name": "ce", "loss": "cross_entropy"}]})  # fmt: skip
    carved, own = (collect(spec, hand_storage(spec, {"ce": SCORES["ce"]}, {"ce": 0.05}, v)) for v in (None, OWN_VALIDATION))
    assert "scored on a 20% stratified validation split" in _protocol(spec, carved)  # (a record that does not say: the spec's)
    eighth = dataclasses.replace(spec, val_fraction=0.125)  # (12% before: a whole percent, rounded half to even)
    assert "scored on a 12.5% stratified validation split" in _protocol(eighth, carved)
    assert "scored on each data set's own validation split" in _protocol(spec, own)
    final = ("re-trained with 3 seeds on the tuning runs' fit part (the validation part held out to choose each run's epoch"
             if stopping else "re-trained with 3 seeds on the full training split and scored on the test split")  # fmt: skip
    assert final in _protocol(spec, own)


def test_a_grid_with_default_keeps_every_trial_and_the_chosen_star_on_a_category_axis(monkeypatch):
    # matplotlib drops None (a grid's "default") silently: a trial, and the chosen star, went missing
    spec = parse_spec({"name": "grid", "trials": 4, "seeds": 2, "datasets": ["wine"],
                       "methods": [{"name": "hinge", "loss": "hinge", "search": {"loss.margin": {"choices": ["default", 0.5, 1.0]}},
                                    "params": {"p": 1}}]})  # fmt: skip
    grid = CategoricalDistribution([None, 0.5, 1.0])
    trials = [optuna.trial.create_trial(params={"loss.margin": m, "lr": 0.1}, value=v, distributions={"loss.margin": grid, "lr": LR})
              for m, v in ((None, 0.9), (0.5, 0.7), (1.0, 0.8), (None, 0.6))]  # fmt: skip
    for number, trial in enumerate(trials):
        trial.number = number
    row = MethodResult(spec.methods[0], "t", "f", trials, 0, trials[0].params, {}, [0, 1])
    drawn = []
    scatter = Axes.scatter
    monkeypatch.setattr(Axes, "scatter", lambda self, x, y, **kw: drawn.append((self, list(x), kw.get("label"))) or scatter(self, x, y, **kw))
    hyperparameter_scatter(DatasetResult(spec.datasets[0], "multiclass", "accuracy", [row], None), spec, method_colours(spec))
    (ax, xs, _), (_, star, label) = drawn
    assert xs == [0, 1, 2, 0] and (star, label) == ([0], "chosen")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["default", "0.5", "1"]


def test_a_study_without_a_baseline_claims_no_paired_test(tmp_path):
    spec = parse_spec({"name": "free", "trials": 2, "seeds": 3, "datasets": ["wine"],
                       "methods": [{"name": "ce", "loss": "cross_entropy"}, {"name": "other", "loss": "cross_entropy"}]})  # fmt: skip
    write_report(spec, collect(spec, hand_storage(spec, {"ce": SCORES["ce"], "other": SCORES["tied"]},
                                                  {"ce": 0.05, "other": 0.05})), tmp_path)  # fmt: skip
    md = (tmp_path / "report.md").read_text()
    assert "no baseline named, so no paired tests" in md and "paired t-test" not in md
    assert "| rank | method | test accuracy, mean ± std | 95% CI | chosen hyperparameters | trials |" in md


def test_html_has_every_table_cell_and_heading_of_the_markdown(report):
    _, _, out = report
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    cells = [c.strip().replace("\\|", "|") for line in md.splitlines() if line.startswith("| ") for c in line[2:-2].split(" | ")]
    assert "test macro_f1" in cells  # the secondary metrics are in the markdown ...
    for cell in cells:
        assert html.escape(cell) in page, cell  # ... and so in the HTML, as every other cell
    for line in md.splitlines():
        if line.startswith("#"):
            assert html.escape(line.lstrip("# ")) in page


def test_provenance_and_every_methods_fixed_settings(report):
    md = (report[2] / "report.md").read_text()
    assert "| lossbench (runs) | 0.1.0 (commit abc1234) |" in md and "| device | cpu |" in md
    assert "| torch | 2.13.0 |" in md and "| torch threads per worker | 2 |" in md and "report written" in md
    assert "114 fit / 28 validation" in md and "142 train / 36 test" in md
    assert "| training calls | not recorded" in md  # (these records say no pack size)
    assert "paired t-test against `ce` over seeds" in md
    exact = next(line for line in md.splitlines() if line.startswith("| exact | exact |"))
    assert "sigma=10, sigma_min=0.01" in exact and "grad_normalizer(" in exact and "lr in 0.001 .. 1 (log)" in exact


def test_paired_differences_with_their_ci_and_p_values_never_zero(report):
    _, results, out = report
    md = (out / "report.md").read_text()
    (wine,) = results
    winner = wine.method("accuracy")  # the same difference on its three seeds: the sign-flip test's p, marked
    assert winner.paired.p_value == 0.25 and "(the same on every seed), p 0.250, Holm " in md
    assert "p 0.000" not in md and "Holm 0.000" not in md
    assert f"{winner.paired.mean_difference:+.4f} [" in md
    board = {r["method"]: r for r in csv.DictReader((out / "leaderboard.csv").open())}
    tied = wine.method("tied").paired
    assert float(board["tied"]["difference_ci_low"]) == pytest.approx(tied.ci_low)
    assert tied.ci_low < 0 < tied.ci_high
    # the CSV says which differences have no variance, as the report does
    assert board["accuracy"]["difference_same_on_every_seed"] == "True" and board["tied"]["difference_same_on_every_seed"] == "False"


def test_intervals_stay_in_the_metrics_range(report):
    _, results, out = report
    exact = results[0].method("exact").summaries["accuracy"]
    assert exact.ci_high == 1.0 and exact.mean + 2 * exact.std > 1  # the unclipped interval would pass 1
    for row in csv.DictReader((out / "leaderboard.csv").open()):
        for m in ("accuracy", "macro_f1", "balanced_accuracy", "ece"):
            assert 0.0 <= float(row[f"{m}_ci_low"]) <= float(row[f"{m}_ci_high"]) <= 1.0


def test_tied_ranks_read_naturally_and_a_method_may_be_named_like_a_metric(report):
    _, results, out = report
    (wine,) = results
    assert [r.method.name for r in wine.methods] == ["exact", "accuracy", "ce", "tied"]
    assert [r.rank for r in wine.methods] == [1, 2, 3, 3] and wine.method("ce").tied
    md = (out / "report.md").read_text()
    assert "| 3 (tie) | ce |" in md and "| 3 (tie) | tied |" in md and "| 2 | accuracy |" in md
    assert len(set(leaderboard_header(wine))) == len(leaderboard_header(wine))
    for name in ("leaderboard.csv", "runs.csv", "trials.csv"):
        header = next(csv.reader((out / name).open()))
        assert len(header) == len(set(header)), name
    board = {r["method"]: r for r in csv.DictReader((out / "leaderboard.csv").open())}
    assert float(board["accuracy"]["accuracy_mean"]) == pytest.approx(0.87)


def test_configurations_at_the_edge_of_their_range_are_flagged(report):
    _, results, out = report
    assert results[0].method("accuracy").edges == {"lr": "upper"} and results[0].method("ce").edges == {}
    md = (out / "report.md").read_text()
    assert "lr=0.99 (upper edge)" in md and "lr=0.05," in md and "(lower edge) / (upper edge):" in md
    assert "the smallest / largest of a grid of 3 or more numbers" in md  # (of two, every value is an end)


def test_trials_csv_beside_the_report(report):
    spec, _, out = report
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == len(SCORES) * spec.trials
    for name in SCORES:
        mine = [r for r in rows if r["method"] == name]
        assert [r["chosen"] for r in mine] == ["False", "True"]
        assert float(mine[1]["param.lr"]) == CHOSEN_LR[name] and float(mine[1]["metric.accuracy"]) == 0.6


def test_one_colour_per_method_in_spec_order(report):
    spec = report[0]
    colours = method_colours(spec)
    assert list(colours) == [m.name for m in spec.methods] and len(set(colours.values())) == len(colours)
    many = parse_spec({"name": "m", "datasets": ["wine"], "methods": [{"name": f"m{i}", "loss": "cross_entropy"} for i in range(15)]})
    assert len(set(method_colours(many).values())) == 15
    more = parse_spec({"name": "m", "datasets": ["wine"], "methods": [{"name": f"m{i}", "loss": "cross_entropy"} for i in range(40)]})
    assert len(set(method_colours(more).values())) == 40  # (tab20's colours repeated beyond twenty)


# -- the statistics behind it -------------------------------------------------------------------


def test_format_p():
    assert format_p(0.0) == format_p(0.0009) == "< 0.001"
    assert format_p(0.001) == "0.001" and format_p(0.0123) == "0.012" and format_p(math.nan) == "-"


def test_paired_difference_ci_matches_scipy_and_is_clipped():
    a, b = [0.9, 0.92, 0.91, 0.95], [0.88, 0.9, 0.92, 0.9]
    t = paired_test(a, b)
    ci = sps.ttest_rel(a, b).confidence_interval()
    assert (t.ci_low, t.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    wide = paired_test([1.0, 0.0, 1.0], [0.0, 1.0, 0.0], bounds=(-1.0, 1.0))
    assert wide.ci_low == -1.0 and wide.ci_high == 1.0


def test_summary_interval_clipped_to_bounds():
    s = summarize([1.0, 0.9, 1.0], bounds=(0.0, 1.0))
    low, high = sps.t.interval(0.95, 2, loc=np.mean([1.0, 0.9, 1.0]), scale=sps.sem([1.0, 0.9, 1.0]))
    assert high > 1 and s.ci_high == 1.0 and s.ci_low == pytest.approx(low)


def test_ranks_min_ties():
    assert ranks([0.8, 0.9, 0.8, math.nan], ties="min") == [2.0, 1.0, 2.0, 4.0]


def test_range_edges():
    space = {"lr": LR, "loss.margin": CategoricalDistribution([None, 0.5, 1.0, 5.0]), "loss.p": CategoricalDistribution([1, 2]),
             "seed": CategoricalDistribution([0, 1, 2, 9]), "wd": FloatDistribution(0.0, 1.0)}  # fmt: skip
    assert range_edges({"lr": 1.1e-3, "loss.margin": 5.0, "loss.p": 2, "seed": 9, "wd": 0.5}, space) == {
        "lr": "lower", "loss.margin": "upper"}
    assert range_edges({"lr": 0.03, "loss.margin": None, "wd": 0.97}, space) == {"wd": "upper"}


def test_each_data_set_gets_its_own_plot_files():
    from types import SimpleNamespace

    from lossbench.bench.report import _slug

    def slug(label):
        return _slug(SimpleNamespace(dataset=SimpleNamespace(label=label)))

    assert slug("wine") == "wine" and slug("uci-car_2") == "uci-car_2"  # a file name already: kept
    assert len({slug("wine a"), slug("wine_a"), slug("wine/a")}) == 3  # (one file name for all three before)
    assert all(c.isalnum() or c in "-_" for c in slug("wine a/../b"))
    assert slug("wine a") == "wine_a-" + hashlib.sha256(b"wine a").hexdigest()[:8]  # (stored reports name it)


@pytest.mark.parametrize("label", ["table[path=" + "/very/long/folder" * 12 + "/t.csv]", "ü" * 120, "鳥" * 120, "a" * 130])
def test_a_long_label_gets_a_plot_file_name_the_file_system_takes(tmp_path, label):
    from types import SimpleNamespace

    from lossbench.bench.report import PLOT_KINDS, SLUG_BYTES, _slug

    def slug(label):
        return _slug(SimpleNamespace(dataset=SimpleNamespace(label=label)))

    assert len(slug(label).encode()) <= SLUG_BYTES + 9
    assert slug(label) != slug(label[:-1] + "x")  # distinct labels that share the kept part stay distinct
    for kind in PLOT_KINDS:  # (a name over 255 bytes raised OSError after the whole run)
        (tmp_path / f"{slug(label)}_{kind}.png").write_bytes(b"")



def test_the_console_leaderboard_keeps_a_label_with_brackets(monkeypatch):
    import io

    from rich.console import Console

    from lossbench.bench import console as console_module
    from lossbench.bench.results import DatasetResult
    from lossbench.bench.spec import DatasetSpec

    out = io.StringIO()
    monkeypatch.setattr(console_module, "console", Console(file=out, width=200))
    dataset = DatasetSpec("table", {"label": "target", "path": "mine.csv"})
    assert "[" in dataset.label
    console_module.print_leaderboards([DatasetResult(dataset, "multiclass", "accuracy", [], None)])
    assert f"{dataset.label}: test accuracy" in out.getvalue()


def test_the_progress_bar_shows_titles_and_units_as_written(monkeypatch):
    import io

    from rich.console import Console

    from lossbench.bench import console as console_module

    out = io.StringIO()
    monkeypatch.setattr(console_module, "status", Console(file=out, width=300, force_terminal=True, color_system=None))
    # (before: the bracketed part was taken for a style and dropped, and "[/x]" raised MarkupError)
    with console_module.run_progress("study [/x]") as update:
        update(1, 4, "table[path=a.csv] / ce[/x]", "ran")
    shown = out.getvalue()
    assert "study [/x]" in shown and "table[path=a.csv] / ce[/x]" in shown


def test_means_equal_up_to_float32_rounding_tie_in_the_rank():
    """Two methods with the same count of correct samples can differ in the last bits of a float32 score."""
    spec = parse_spec({"name": "near", "trials": 2, "seeds": 3, "baseline": "ce", "datasets": ["wine"],
                       "methods": [{"name": "ce", "loss": "cross_entropy"}, {"name": "near", "loss": "cross_entropy"},
                                   {"name": "low", "loss": "cross_entropy"}]})  # fmt: skip
    scores = {"ce": [0.80, 0.82, 0.84], "near": [0.80 + 3e-8, 0.82, 0.84], "low": [0.7, 0.7, 0.7]}
    (wine,) = collect(spec, hand_storage(spec, scores, {"ce": 0.05, "near": 0.05, "low": 0.05}))
    assert [(r.method.name, r.rank, r.tied) for r in wine.methods] == [("ce", 1, True), ("near", 1, True), ("low", 3, False)]


def test_a_mean_curve_where_every_run_diverged_is_nan_without_a_warning(monkeypatch, recwarn):
    from lossbench.bench import plots

    monkeypatch.setattr(plots, "run_record", lambda t: t)
    runs = [{"curves": {"train_loss": [1.0, math.nan]}}, {"curves": {"train_loss": [2.0, math.nan]}}]
    mean, left_out = plots._mean_curve(runs, "train_loss")
    assert mean[0] == 1.5 and math.isnan(mean[1]) and left_out == {0, 1}
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]  # (nanmean's "Mean of empty slice")


def test_the_figures_ignore_the_users_matplotlib_settings(tmp_path):
    # a matplotlibrc in the working folder (read when matplotlib is imported) with text.usetex broke every
    # report after all the runs; each figure is drawn in matplotlib's default style instead
    import matplotlib

    spec = parse_spec({"name": "styled", "trials": 2, "seeds": 3, "datasets": ["wine"],
                       "methods": [{"name": "ce", "loss": "cross_entropy"}]})  # fmt: skip
    results = collect(spec, hand_storage(spec, {"ce": SCORES["ce"]}, {"ce": 0.05}, None))
    write_report(spec, results, tmp_path / "plain")
    with matplotlib.rc_context({"text.usetex": True, "axes.facecolor": "red", "lines.linewidth": 9.0}):
        write_report(spec, results, tmp_path / "styled")
    plain = sorted((tmp_path / "plain" / "plots").iterdir())
    assert plain and all(p.read_bytes() == (tmp_path / "styled" / "plots" / p.name).read_bytes() for p in plain)


def test_each_dataset_says_which_methods_the_paired_tests_tell_apart_from_the_baseline(tmp_path):
    # the ranking orders means; with few seeds most of its steps are noise, which the report did not say
    spec = parse_spec({"name": "flat", "trials": 2, "seeds": 5, "baseline": "ce", "datasets": ["wine"],
                       "methods": [{"name": "ce", "loss": "cross_entropy"}, {"name": "same", "loss": "cross_entropy"},
                                   {"name": "better", "loss": "cross_entropy"}]})  # fmt: skip
    ce = [0.90, 0.91, 0.92, 0.90, 0.91]
    scores = {"ce": ce, "same": [0.91, 0.90, 0.92, 0.91, 0.90], "better": [0.95, 0.97, 0.96, 0.98, 0.96]}
    (wine,) = collect(spec, hand_storage(spec, scores, dict.fromkeys(scores, 0.05)))
    assert wine.method("better").p_holm < 0.05 < wine.method("same").p_holm
    write_report(spec, [wine], tmp_path / "apart")
    md = (tmp_path / "apart" / "report.md").read_text()
    assert ("Shown to differ from `ce` after Holm's correction at 0.05, each as its tuning chose it (seeds re-train one "
            "configuration): `better` (above); the other 1 tested is not.") in md  # fmt: skip
    (flat,) = collect(spec, hand_storage(spec, {**scores, "better": ce}, dict.fromkeys(scores, 0.05)))
    write_report(spec, [flat], tmp_path / "flat")
    assert "No method is shown to differ from `ce` after Holm's correction at 0.05 (2 tested)" in (tmp_path / "flat" / "report.md").read_text()
    # a baseline with no runs on the data set: nothing was tested, said so (not "these seeds do not tell apart")
    (alone,) = collect(spec, hand_storage(spec, {k: v for k, v in scores.items() if k != "ce"}, dict.fromkeys(scores, 0.05)))
    assert paired_summary(alone) == "No paired test: the baseline `ce` has no complete runs on this data set."
    # the baseline alone: nothing else to test (it said "No method is shown to differ ... (0 tested)")
    (only,) = collect(spec, hand_storage(spec, {"ce": ce}, {"ce": 0.05}))
    assert paired_summary(only) == "No paired test: no other method has complete runs beside the baseline `ce` here."


def test_a_two_stage_methods_second_stage_has_its_own_settings_row():
    # its searched keys (then.loss.gamma, then.mgs.noise) were looked up among the first stage's: the report raised
    spec = parse_spec({"name": "two", "datasets": ["wine"], "methods": [
        {"name": "ce", "loss": "cross_entropy"},
        {"name": "ce_then_focal", "loss": "cross_entropy",
         "then": {"loss": "focal", "epochs": 2, "lr_scale": 0.1, "transforms": ["mgs"]},
         "search": {"then.mgs.noise": {"low": 0.5, "high": 2.0}}}]})  # fmt: skip
    rows = {r[0]: r for r in method_settings(spec).rows}
    then = rows["ce_then_focal, then 2 epochs at lr x 0.1"]
    assert then[1] == "focal" and "then.loss.gamma in 0 .. 5" in then[5] and "then.mgs.noise in 0.5 .. 2" in then[5]
    assert "mgs(" in then[4] and "noise" not in then[4]  # searched, so not among the fixed settings
    assert "then." not in rows["ce_then_focal"][5] and rows["ce_then_focal"][4] == "-"


def test_a_dataset_with_no_runs_yet_says_so():
    spec = parse_spec({"name": "going", "trials": 2, "seeds": 3, "baseline": "ce", "datasets": ["wine", "breast_cancer"],
                       "methods": [{"name": "ce", "loss": "cross_entropy"}]})  # fmt: skip
    results = collect(spec, hand_storage(spec, {"ce": [0.8, 0.9, 0.85]}, {"ce": 0.05}))
    assert [split_sizes(r) for r in results] == [
        "Samples: tuning runs: 114 fit / 28 validation; final runs: 142 train / 36 test.", "Samples: no runs stored yet."]
