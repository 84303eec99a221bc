"""The report's files show the spec's names as written, and print what its ranks say (no training)."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.text import Text

from lossbench._paired import tied_within
from lossbench.bench.report import _protocol, _slug, leaderboard_rows, write_report
from lossbench.bench.results import collect
from lossbench.bench.spec import SpecError, parse_spec
from tests.bench.test_report import hand_storage


def study(names: list[str], label: str | None = None, baseline: str | None = None, **top):
    """A hand-made spec on wine (``label``: its label) with these methods, all cross-entropy."""
    dataset = "wine" if label is None else {"name": "wine", "label": label}
    top.update({} if baseline is None else {"baseline": baseline})
    return parse_spec({"name": "out", "trials": 2, "seeds": 3, "datasets": [dataset], **top,
                       "methods": [{"name": n, "loss": "cross_entropy"} for n in names]})  # fmt: skip


def report(tmp_path, scores: dict[str, list[float]], label: str | None = None, baseline: str | None = None):
    spec = study(list(scores), label, baseline)
    results = collect(spec, hand_storage(spec, scores, dict.fromkeys(scores, 0.05), label=label or "wine"))
    write_report(spec, results, tmp_path)
    return results


def test_dollar_signs_in_names_are_drawn_as_written(tmp_path, monkeypatch):
    # matplotlib reads text between two '$' as a formula: "cost$x^$" raised ValueError and no report was written
    drawn = []
    draw = Text.draw
    monkeypatch.setattr(Text, "draw", lambda self, renderer: drawn.append(self._preprocess_math(self.get_text())) or draw(self, renderer))
    report(tmp_path, {"ce": [0.8, 0.82, 0.84], "$x$ loss": [0.7, 0.72, 0.74]}, label="cost$x^$")
    assert (tmp_path / "report.md").is_file()
    shown = [text for text, math in drawn if not math]
    assert all(r"\mathdefault" in text for text, math in drawn if math)  # (ticks only: "$x$ loss" drew "x loss")
    assert "cost$x^$: tuning trials" in shown and "$x$ loss" in shown


def test_a_method_name_cannot_add_html_or_lines_to_the_markdown(tmp_path):
    name = "<img src=x onerror=alert(1)>"
    report(tmp_path, {"ce": [0.8, 0.82, 0.84], name: [0.7, 0.72, 0.74]}, label="<b>&wine")
    md = (tmp_path / "report.md").read_text()
    assert "<img" not in md and "<b>" not in md
    assert "| 2 | &lt;img src=x onerror=alert(1)> |" in md and "## &lt;b>&amp;wine (test accuracy)" in md
    assert "<td>&lt;img src=x onerror=alert(1)&gt;</td>" in (tmp_path / "report.html").read_text()  # (as before)


def test_a_baseline_named_like_terminal_markup_is_printed_as_written(tmp_path, monkeypatch):
    # the "vs <baseline>" column's header was read as rich markup: "[/b]" raised MarkupError after the runs
    # and no report was written; "[red]x" printed as "vs x"
    import io

    from rich.console import Console

    from lossbench.bench import console as console_module

    for baseline in ("[/b]", "[red]x", "b\\"):  # (rich's escape() doubled a trailing backslash)
        results = report(tmp_path / baseline.strip("[/]\\"), {baseline: [0.8, 0.82, 0.84], "ce": [0.7, 0.72, 0.74]}, baseline=baseline)
        out = io.StringIO()
        monkeypatch.setattr(console_module, "console", Console(file=out, width=300, color_system=None))
        console_module.print_leaderboards(results)
        assert f"vs {baseline}" in out.getvalue() and f"vs {baseline}\\" not in out.getvalue()
        assert f"{baseline} " in out.getvalue()  # its row's method cell
        # and the line saying which methods the paired tests tell apart, as the report has it
        assert f"No method is shown to differ from `{baseline}` after Holm's correction" in out.getvalue()


@pytest.mark.parametrize("name", ["ce\n# injected", "ce\rx", "ce\tx", " ce", "ce ", ""])
def test_a_method_name_with_control_characters_or_surrounding_spaces_is_refused(name):
    with pytest.raises(SpecError, match="a method name must be non-empty") as error:
        study([name])
    assert f"method {name!r}" in str(error.value) and "\n" not in str(error.value)


def test_csv_text_cells_are_never_spreadsheet_formulas_and_numbers_stay_numbers(tmp_path):
    report(tmp_path, {"ce": [0.8, 0.82, 0.84], "=1+1": [0.7, 0.72, 0.74], "-x": [0.6, 0.61, 0.6]}, baseline="ce")
    board = {r["method"]: r for r in csv.DictReader((tmp_path / "leaderboard.csv").open())}
    assert set(board) == {"ce", "'=1+1", "'-x"}
    assert float(board["'-x"]["mean_difference_vs_baseline"]) < 0  # a negative number: no quote
    runs = list(csv.DictReader((tmp_path / "runs.csv").open()))
    assert {r["method"] for r in runs} == {"ce", "'=1+1", "'-x"}
    assert {r["method"] for r in csv.DictReader((tmp_path / "trials.csv").open())} == {"ce", "'=1+1", "'-x"}


def test_neighbours_in_rank_that_are_not_tied_print_apart(tmp_path):
    # ties are judged at float32 rounding: 0.98124 and 0.98116 both printed 0.9812, ranked 1 and 2
    (wine,) = report(tmp_path, {"a": [0.98124] * 3, "b": [0.98116] * 3, "c": [0.5] * 3}, baseline="b")
    assert [(r.method.name, r.rank, r.tied) for r in wine.methods] == [("a", 1, False), ("b", 2, False), ("c", 3, False)]
    rows = {row[1]: row for row in leaderboard_rows(wine)}
    assert rows["a"][2].startswith("0.98124 ± ") and rows["b"][2].startswith("0.98116 ± ")
    assert rows["a"][4].startswith("+0.00008 [")
    assert "| 1 | a | 0.98124 ± " in (tmp_path / "report.md").read_text()


def test_a_difference_from_the_baseline_that_is_not_a_tie_never_prints_zero(tmp_path):
    # 0.98126 and 0.98124 print apart (0.9813, 0.9812), their difference printed +0.0000
    (wine,) = report(tmp_path, {"a": [0.98126] * 3, "b": [0.98124] * 3}, baseline="b")
    assert [r.rank for r in wine.methods] == [1, 2]
    assert leaderboard_rows(wine)[0][4].startswith("+0.00002 [")


def test_ranks_and_the_paired_test_judge_ties_at_one_rounding(tmp_path):
    # the paired test read 6e-7 on every seed as 0 (the largest score's rounding), the ranks did not (the
    # largest mean's): ranked 1 and 2 with a difference of 0, printed with 17 decimals to show it apart
    (wine,) = report(tmp_path, {"a": [0.9 + 6e-7, 0.1 + 6e-7, 0.5 + 6e-7], "b": [0.9, 0.1, 0.5]}, baseline="b")
    assert [(r.rank, r.tied) for r in wine.methods] == [(1, True), (1, True)]
    rows = {row[1]: row for row in leaderboard_rows(wine)}
    assert rows["a"][2] == "0.5000 ± 0.4000" and rows["a"][4].startswith("+0.0000 [+0.0000, +0.0000], p 1.000")


def test_means_apart_at_four_decimals_keep_four(tmp_path):
    (wine,) = report(tmp_path, {"a": [0.9, 0.91, 0.92], "b": [0.8, 0.81, 0.8], "tie": [0.8, 0.8, 0.81]}, baseline="b")
    rows = {row[1]: row for row in leaderboard_rows(wine)}
    assert rows["a"][2] == "0.9100 ± 0.0100" and rows["a"][4].startswith("+0.1067 [")
    assert rows["b"][0] == rows["tie"][0] == "2 (tie)"  # (tied neighbours need no more digits)


@pytest.mark.parametrize("resample", [False, True])
def test_the_protocol_says_what_the_intervals_hold_fixed(resample):
    spec = study(["ce", "other"], baseline="ce", resample_splits=resample)
    text = _protocol(spec, [])
    assert ("conditional on the test split" in text) is not resample
    assert ("each seed with its own train/test split" in text) is resample
    assert "each method's chosen configuration" in text


def test_the_protocol_says_which_datasets_resample_splits_and_which_keep_their_fixed_split():
    given = {"name": "table", "params": {"path": "t.csv", "test_path": "u.csv"}, "label": "given"}
    with pytest.warns(UserWarning, match="resample_splits cannot apply"):
        spec = parse_spec({"name": "out", "trials": 2, "seeds": 3, "resample_splits": True, "baseline": "ce",
                           "datasets": ["wine", "adult", given], "methods": [{"name": "ce", "loss": "cross_entropy"},
                                                                             {"name": "f", "loss": "focal"}]})  # fmt: skip
    text = _protocol(spec, [])
    assert "on wine, each seed with its own train/test split (resample_splits)" in text
    assert "adult, given: the fixed test split on every seed" in text
    assert "conditional on each method's chosen configuration" in text


def test_labels_that_differ_in_case_only_get_plot_files_apart_where_case_does_not_count():
    def slug(label):
        return _slug(SimpleNamespace(dataset=SimpleNamespace(label=label)))

    assert slug("adult") == "adult" and slug("wine-2") == "wine-2"  # lower case: kept as they are
    assert len({slug(label).casefold() for label in ("adult", "Adult", "ADULT")}) == 3
    assert slug("Adult").startswith("Adult-")


def test_ties_are_judged_against_the_runs_smallest_so_a_chain_never_ties_values_far_apart():
    # (0, 0.6, 1.2) with rounding 1: each within 1 of its sorted neighbour, yet 0 and 1.2 are apart
    assert list(tied_within([1.2, 0.0, 0.6], 1.0)) == [1.2, 0.0, 0.0]
    assert list(tied_within([0.0, 0.6, 1.2, 1.5], 1.0)) == [0.0, 0.0, 1.2, 1.2]
    assert np.array_equal(tied_within([0.3, 0.3], 0.0), [0.3, 0.3])


def test_a_name_starting_with_an_underscore_stays_in_the_legend():
    """matplotlib leaves labels that start with '_' out of a legend: such a method vanished from it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lossbench._document import drawn_as_written

    fig, ax = plt.subplots()
    try:
        ax.plot([0, 1], label=drawn_as_written("_x"))
        ax.plot([1, 0], label=drawn_as_written("ce"))
        shown = [t.get_text() for t in ax.legend().get_texts()]
    finally:
        plt.close(fig)
    assert [t.lstrip("\u200b") for t in shown] == ["_x", "ce"]


def test_a_study_without_finished_runs_draws_its_plots_without_warnings():
    """Reported in progress, no method has a curve yet: the legend had no entries (three matplotlib warnings)."""
    import warnings

    from lossbench.bench.plots import budget_curves, learning_curves

    row = SimpleNamespace(method=SimpleNamespace(name="ce"), runs={}, budget_curve=lambda: [])
    result = SimpleNamespace(trained_methods=[row], metric="accuracy", dataset=SimpleNamespace(label="wine"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for draw in (learning_curves, budget_curves):
            assert draw(result, {"ce": "C0"}).startswith(b"\x89PNG")


def test_the_curves_of_a_thresholds_method_say_they_read_logit_0_and_dot_its_final_score(monkeypatch):
    # its epochs read logit 0 (the thresholds are set when a run ends): the curve alone put it below
    # a method that the leaderboard ranks under it
    from lossbench.bench import plots

    figures = []
    monkeypatch.setattr(plots, "_png", lambda fig, whole=False: figures.append(fig) or b"")

    def run(curve, final):
        return SimpleNamespace(user_attrs={"run": {"curves": {"train_loss": [1.0, 0.5], "heldout_macro_f1": curve},
                                                   "metrics": {"macro_f1": final}}})  # fmt: skip

    rows = [
        SimpleNamespace(method=SimpleNamespace(name="bce", decision="argmax"), runs={0: run([0.2, 0.3], 0.3)}),
        SimpleNamespace(method=SimpleNamespace(name="bce_thr", decision="thresholds"),
                        runs={0: run([0.2, 0.25], 0.4), 1: run([0.2, 0.25], 0.5)}),
    ]  # fmt: skip
    result = SimpleNamespace(trained_methods=rows, metric="macro_f1", dataset=SimpleNamespace(label="sml"))
    plots.learning_curves(result, {"bce": "C0", "bce_thr": "C1"})
    lines = figures[0].axes[1].get_lines()
    assert [(line.get_label(), line.get_linestyle()) for line in lines[:2]] == [
        ("bce", "-"), ("bce_thr (epochs at logit 0; dot: thresholds)", "--")]  # fmt: skip
    assert list(lines[2].get_xdata()) == [2] and list(lines[2].get_ydata()) == [pytest.approx(0.45)]


@pytest.mark.parametrize("environ, width", [({}, 200), ({"COLUMNS": "90"}, 90)])
def test_leaderboards_written_to_a_file_take_their_own_width_not_80_columns(environ, width, monkeypatch):
    # (`lossbench run > results.txt` laid the tables out for 80 columns: each paired-test cell over five lines)
    import io

    from rich.console import Console

    from lossbench.bench.console import _widened

    monkeypatch.setenv("COLUMNS", environ.get("COLUMNS", "90"))  # (rich reads the variable itself too)
    if not environ:
        monkeypatch.delenv("COLUMNS")
    assert _widened(Console(file=io.StringIO()), environ).width == width
