"""The report's ranking of the methods over the data sets (Friedman's test, Nemenyi's post hoc), from a storage
written by hand: what it ranks, what it leaves out, and what it says."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from scipy import stats as sps

from lossbench.bench import console as console_module
from lossbench.bench.report import across_summary, write_report
from lossbench.bench.results import across_datasets, collect
from lossbench.bench.spec import parse_spec
from tests.bench.test_report import hand_storage

DATASETS = ("wine", "digits", "breast_cancer")
# Test accuracy per data set and method over 3 seeds: a wins on digits and breast_cancer, b on wine; c is last on
# two of them and ties a on wine.
SCORES = {
    "wine": {"a": [0.80, 0.81, 0.82], "b": [0.90, 0.91, 0.92], "c": [0.82, 0.81, 0.80]},
    "digits": {"a": [0.95, 0.96, 0.97], "b": [0.93, 0.94, 0.95], "c": [0.90, 0.91, 0.92]},
    "breast_cancer": {"a": [0.97, 0.96, 0.95], "b": [0.94, 0.94, 0.94], "c": [0.91, 0.92, 0.90]},
}


def _spec(methods=("a", "b", "c"), datasets=DATASETS, only: dict[str, list[str]] | None = None, **fields):
    only = only or {}
    return parse_spec({"name": "across", "trials": 2, "seeds": 3, "datasets": list(datasets), **fields,
                       "methods": [{"name": m, "loss": "cross_entropy", **({"datasets": only[m]} if m in only else {})}
                                   for m in methods]})  # fmt: skip


def _storage(spec, scores=SCORES):
    storage = None
    for label, by_method in scores.items():
        storage = hand_storage(spec, by_method, dict.fromkeys(by_method, 0.05), label=label, storage=storage)
    return storage


def test_methods_are_ranked_by_their_mean_over_the_data_sets_and_tested_as_scipy_tests_them(tmp_path, capsys):
    spec = _spec()
    results = collect(spec, _storage(spec))
    (across,) = across_datasets(spec, results)
    means = np.array([[np.mean(SCORES[d][m]) for m in "abc"] for d in DATASETS])
    # (rounded: c's mean on wine is a's up to float round-off, and the ranking ties them)
    expected = np.mean([sps.rankdata(-row) for row in means.round(9)], axis=0)  # a: 1.5, b: 1.67, c: 2.83
    r = across.ranking
    assert list(r.mean_ranks.index) == ["a", "b", "c"]
    np.testing.assert_allclose(r.mean_ranks[["a", "b", "c"]], expected)
    assert r.ranks.at["wine", "a"] == r.ranks.at["wine", "c"] == 2.5
    assert r.friedman_p == pytest.approx(sps.friedmanchisquare(*means.round(9).T).pvalue)
    assert across.waiting == [] and across.partial == []

    write_report(spec, results, tmp_path)
    md = (tmp_path / "report.md").read_text()
    section = md[md.index("## Across the data sets (test accuracy)"):]
    assert "| mean rank | method | wine: mean (rank) | digits: mean (rank) | breast_cancer: mean (rank) |" in section
    assert "| 2.83 | c | 0.8100 (2.5) | 0.9100 (3) | 0.9100 (3) |" in section
    assert f"Friedman's test that the 3 methods rank alike gives p {r.friedman_p:.3f}" in section
    assert "these data sets do not tell the methods apart" in section  # (3 data sets: a critical difference of 1.91)
    assert (tmp_path / "plots" / "ranks_accuracy.png").read_bytes().startswith(b"\x89PNG")
    assert "plots/ranks_accuracy.png" in section

    console_module.print_across(spec, results)
    line = capsys.readouterr().out
    assert line.startswith("Across the data sets (test accuracy): mean rank a 1.50, b 1.67, c 2.83. Over 3 data sets")


def test_methods_that_the_ranks_tell_apart_are_named():
    # over 12 data sets a and b take turns first, c is always last: mean ranks 1.5, 1.5 and 3, and a Nemenyi
    # critical difference of 0.96 tells c from each of the others, not a from b
    labels = [f"d{i}" for i in range(12)]
    spec = parse_spec({"name": "across", "trials": 2, "seeds": 3,
                       "datasets": [{"name": "wine", "label": d} for d in labels],
                       "methods": [{"name": m, "loss": "cross_entropy"} for m in "abc"]})  # fmt: skip
    scores = {d: {"a": [0.9 - 0.1 * (i % 2)] * 3, "b": [0.8 + 0.1 * (i % 2)] * 3, "c": [0.7] * 3} for i, d in enumerate(labels)}
    (across,) = across_datasets(spec, collect(spec, _storage(spec, scores)))
    r = across.ranking
    assert r.critical_difference == pytest.approx(0.957, abs=1e-3) and r.friedman_p < 0.05
    assert across_summary(across).endswith(": it tells apart `a` above `c`, `b` above `c`; no other two.")


def test_a_data_set_with_a_method_not_complete_is_left_out_and_said():
    spec = _spec()
    scores = {**SCORES, "digits": {**SCORES["digits"], "c": [0.9, 0.9]}}  # c has two of its three seeds on digits
    results = collect(spec, _storage(spec, scores))
    (across,) = across_datasets(spec, results)
    assert list(across.scores.index) == ["wine", "breast_cancer"] and across.waiting == ["digits"]
    assert across.ranking.n_datasets == 2
    assert "Left out: digits (a method's runs there are not complete yet)." in across_summary(across)
    scores["wine"] = {**SCORES["wine"], "a": [0.8]}
    (across,) = across_datasets(spec, collect(spec, _storage(spec, scores)))
    assert across.ranking is None and across.waiting == ["wine", "digits"]
    assert across_summary(across).startswith("Not ranked yet: a ranking takes two data sets")


def test_a_method_that_does_not_run_on_every_data_set_is_left_out_and_said(tmp_path):
    spec = _spec(methods=("a", "b", "c", "d"), only={"d": ["wine"]})
    scores = {**SCORES, "wine": {**SCORES["wine"], "d": [0.5, 0.5, 0.5]}}
    results = collect(spec, _storage(spec, scores))
    (across,) = across_datasets(spec, results)
    assert list(across.scores.columns) == ["a", "b", "c"] and across.partial == ["d"]
    write_report(spec, results, tmp_path)
    assert "Left out: `d` (not run on every data set)." in (tmp_path / "report.md").read_text()


def test_fewer_than_three_methods_or_two_data_sets_get_no_ranking(tmp_path):
    two = _spec(methods=("a", "b"))
    assert across_datasets(two, collect(two, _storage(two, {d: {m: SCORES[d][m] for m in "ab"} for d in DATASETS}))) == []
    one = _spec(datasets=["wine"])
    results = collect(one, _storage(one, {"wine": SCORES["wine"]}))
    assert across_datasets(one, results) == []
    write_report(one, results, tmp_path)
    assert "Across the data sets" not in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "plots" / "ranks_accuracy.png").exists()


def test_data_sets_that_tie_every_method_are_said_to_and_drawn_no_diagram(tmp_path):
    spec = _spec()
    flat = {d: dict.fromkeys("abc", [0.9, 0.9, 0.9]) for d in DATASETS}
    results = collect(spec, _storage(spec, flat))
    write_report(spec, results, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "Every data set ties all 3 methods: there is no ranking to test." in md
    assert not (tmp_path / "plots" / "ranks_accuracy.png").exists()


def test_friedman_rejecting_with_no_pair_apart_says_both():
    # ("... gives p 0.035; ...: these data sets do not tell the methods apart": the sentence denied its own test)
    ranks = [[2, 3, 4, 1], [4, 3, 1, 2], [4, 2, 3, 1], [2, 4, 3, 1], [2, 3, 4, 1], [4, 2, 3, 1]]
    labels = [f"d{i}" for i in range(6)]
    spec = parse_spec({"name": "across", "trials": 2, "seeds": 3,
                       "datasets": [{"name": "wine", "label": d} for d in labels],
                       "methods": [{"name": m, "loss": "cross_entropy"} for m in "abcd"]})  # fmt: skip
    scores = {d: {m: [1 - r / 10] * 3 for m, r in zip("abcd", row)} for d, row in zip(labels, ranks)}
    (across,) = across_datasets(spec, collect(spec, _storage(spec, scores)))
    assert across.ranking.friedman_p < 0.05
    assert across_summary(across).endswith("Friedman's test rejects that the methods rank alike, but no two mean "
                                           "ranks differ by the critical difference: Nemenyi's post hoc tells no pair apart.")


def test_three_methods_of_which_fewer_run_everywhere_are_said_to_give_no_ranking(tmp_path):
    # (the section vanished, naming nothing)
    spec = _spec(only={"c": ["wine", "digits"]})
    scores = {d: {m: v for m, v in SCORES[d].items() if m != "c" or d != "breast_cancer"} for d in DATASETS}
    results = collect(spec, _storage(spec, scores))
    (across,) = across_datasets(spec, results)
    assert across.ranking is None and across.partial == ["c"] and across.waiting == []
    assert across_summary(across) == ("No ranking: it takes 3 methods run on every data set, and 2 are. "
                                      "Left out: `c` (not run on every data set).")
    write_report(spec, results, tmp_path)
    assert "No ranking: it takes 3 methods" in (tmp_path / "report.md").read_text()


def test_multi_label_sets_without_runs_yet_are_filed_under_their_own_metric():
    # (with no runs their task read as multiclass: "Across the data sets (test accuracy)", the pending sets apart)
    spec = parse_spec({"name": "ml", "trials": 2, "seeds": 3,
                       "datasets": [{"name": "synthetic_multilabel", "label": f"ml{i}"} for i in range(2)],
                       "methods": [{"name": m, "loss": m} for m in ("binary_cross_entropy", "zlpr", "asymmetric_loss")]})  # fmt: skip
    results = collect(spec, optuna.storages.InMemoryStorage())
    assert [r.metric for r in results] == ["micro_f1", "micro_f1"]
    (across,) = across_datasets(spec, results)
    assert across.metric == "micro_f1" and across.ranking is None and across.waiting == ["ml0", "ml1"]


def test_the_diagram_draws_names_as_written_in_the_reports_colours_and_the_tables_ranks(tmp_path, monkeypatch):
    # ('$' in a method name broke the report after every run; the diagram coloured methods by rank, not as the
    # other figures, and labelled a mean rank of 2.83 "2.8", of 11.67 "12")
    import scikit_posthocs

    from lossbench.bench.plots import method_colours

    names = ("a", "cost$x^$", "c")
    spec = _spec(methods=names)
    scores = {d: dict(zip(names, SCORES[d].values())) for d in DATASETS}
    drawn = []
    diagram = scikit_posthocs.critical_difference_diagram
    monkeypatch.setattr(scikit_posthocs, "critical_difference_diagram",
                        lambda ranks, p, **kw: drawn.append((ranks, kw)) or diagram(ranks, p, **kw))  # fmt: skip
    write_report(spec, collect(spec, _storage(spec, scores)), tmp_path)
    ((ranks, kw),) = drawn
    colours = method_colours(spec)
    assert kw["color_palette"] == {"a": colours["a"], r"cost\$x^\$": colours["cost$x^$"], "c": colours["c"]}
    assert kw["label_fmt_left"] == "{label} ({rank:.2f})" and r"cost\$x^\$" in ranks.index
    assert (tmp_path / "plots" / "ranks_accuracy.png").is_file()


def test_the_across_table_prints_apart_two_means_a_data_set_ranks_apart():
    # ("0.9812 (1)" and "0.9812 (2)" beside each other: 0.98124 and 0.98116, as the leaderboard prints them)
    from lossbench.bench.report import across_table

    spec = _spec()
    scores = {**SCORES, "wine": {"a": [0.98124] * 3, "b": [0.98116] * 3, "c": [0.5] * 3}}
    (across,) = across_datasets(spec, collect(spec, _storage(spec, scores)))
    rows = {row[1]: row for row in across_table(across).rows}
    assert rows["a"][2] == "0.98124 (1)" and rows["b"][2] == "0.98116 (2)"
