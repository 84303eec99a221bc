"""Details users hit: --version, the presets in `run --help`, listings that fit 80 columns."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from lossbench import __version__
from lossbench.bench.spec import preset_names, preset_text
from lossbench.cli import main
from lossbench.losses import LOSSES
from lossbench.train import TRANSFORMS

ROOT = Path(__file__).resolve().parents[1]


def test_version_names_the_commit_of_a_checkout(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    line = capsys.readouterr().out.strip()
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--git-dir"], capture_output=True).returncode != 0:
        assert line == f"lossbench {__version__}"  # not a git checkout: no commit to name
        return
    match = re.fullmatch(rf"lossbench {re.escape(__version__)} \(commit ([0-9a-f]{{7,40}})(-dirty)?\)", line)
    assert match, "a git checkout names its commit"
    # HEAD may move while tests run (commits land): the named commit need only be one of this repository's.
    known = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{match.group(1)}^{{commit}}"], capture_output=True)
    assert known.returncode == 0


def test_run_help_lists_the_presets_and_presets_prints_one(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in preset_names()) and "lossbench presets NAME" in text
    assert main(["presets", "builtin"]) == 0
    assert capsys.readouterr().out == preset_text("builtin")
    assert main(["presets"]) == 0
    assert "1 dataset," in capsys.readouterr().out  # not "1 datasets"


def blocks(text: str) -> dict[str, str]:
    """Each entry's block, its wrapped lines joined back with single spaces."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.startswith(" "):
            out[line] = []
        else:
            out[list(out)[-1]].append(line.strip())
    return {name: " ".join(lines) for name, lines in out.items()}


@pytest.mark.parametrize("command, registry", [("losses", LOSSES), ("transforms", TRANSFORMS)])
def test_verbose_listings_fit_80_columns_and_list_every_hyperparameter(command, registry, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main([command, "-v"]) == 0
    text = capsys.readouterr().out
    assert max(len(line) for line in text.splitlines()) <= 80
    found = blocks(text)
    assert list(found) == registry.names()
    for name, info in registry.items():
        assert info.reference in found[name]
        for p in info.hyperparams:
            assert f"{p.name}={p.default!r}" in found[name], (name, p.name)
    if command == "losses":
        assert "sigma_min=None" in found["exact"] and "learn_sigma=False" in found["exact"]
        assert "sigma=1.0 in [0.01, 10.0] log" in found["exact"]


def test_progress_lines_name_each_unit_once_when_it_is_done():
    from lossbench.bench.console import unit_lines

    lines: list[str] = []
    update = unit_lines("s", lines.append)
    wait = "waiting for trials running in other workers"
    for done, unit, status in ((1, "a / ce", "ran"), (2, "a / ce", "done"), (2, "a / ce", "done"), (2, wait, "waiting"),
                               (2, "a / ce", "done"), (2, wait, "waiting"), (3, "a / hinge", "ran"), (3, wait, "waiting"),
                               (4, "a / hinge", "done")):  # fmt: skip
        update(done, 4, unit, status)
    # (a wait is said once, though each poll finds the done units again, and again after the worker ran something)
    assert [line.split(" (")[0] for line in lines] == ["s: a / ce done", f"s: {wait}", f"s: {wait}", "s: a / hinge done"]
    assert "(2/4 runs of the study done, " in lines[0]
    # units found done before this process ran anything (a resumed study): one line, not one each as if just done
    lines.clear()
    update = unit_lines("s", lines.append)
    for done, unit, status in ((2, "a / ce", "done"), (4, "a / hinge", "done"), (5, "b / ce", "ran"), (6, "b / ce", "done")):
        update(done, 6, unit, status)
    assert lines[0] == "s: 2 unit(s) were done before (a / ce, a / hinge)"
    assert lines[1].startswith("s: b / ce done (6/6 runs of the study done, ") and len(lines) == 2
    lines.clear()
    update = unit_lines("s", lines.append)
    for done, unit in ((2, "a / ce"), (4, "a / hinge")):  # (a finished study run again)
        update(done, 4, unit, "done")
    assert lines == ["s: every run of the study is done (4 stored): nothing left to run"]
    lines.clear()
    update = unit_lines("s", lines.append)
    for done, unit, status in ((0, wait, "waiting"), (2, "a / ce", "done"), (4, "a / hinge", "done")):
        update(done, 4, unit, status)  # (a worker that only waits: the units others finish meanwhile, one by one)
    assert [line.split(" (")[0] for line in lines] == [f"s: {wait}", "s: a / ce done", "s: a / hinge done"]


def test_warnings_are_one_line_each_once_with_the_place_only_outside_lossbench(tmp_path, capsys, monkeypatch):
    import warnings

    from lossbench.cli import _warnings_as_lines

    monkeypatch.chdir(tmp_path)
    rows = "".join(f"{i},blue,{'xy'[i % 2]}\n" for i in range(10))
    Path("tiny.csv").write_text("a,color,species\n" + rows)
    assert main(["datasets", "table", "path=tiny.csv", "label=species"]) == 0
    err = capsys.readouterr().err
    said = "lossbench: warning: tiny.csv: feature(s) constant in the training rows, centred only (not scaled): 'color-blue'\n"
    assert err == said  # (Python's form named lossbench's file and printed its line of code)
    with _warnings_as_lines(lambda text: text.replace("secret", "***")):
        for _ in range(2):  # (a filter reset between them, as Optuna's and torch's catch_warnings do)
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                warnings.warn("a user's secret", UserWarning, stacklevel=1)
    line = capsys.readouterr().err.splitlines()
    assert len(line) == 1 and re.fullmatch(r"lossbench: warning: a user's \*\*\* \(.*test_cli_details\.py:\d+\)", line[0])


def test_a_claims_id_given_for_a_preset_points_to_the_preset_its_study_runs(capsys):
    assert main(["presets", "su-flooding-penalty"]) == 2
    said = capsys.readouterr().err.splitlines()[0]
    assert said.startswith("lossbench: error: 'su-flooding-penalty' is a claim, not a preset: its study runs preset "
                           "'flooding' (`lossbench presets flooding`), at the quick budget with ")  # fmt: skip
    assert said.endswith("`lossbench claims run su-flooding-penalty` runs it")
    assert main(["presets", "exact-toy-1d"]) == 2
    assert "'exact-toy-1d' is a claim, not a preset: an analysis with no preset" in capsys.readouterr().err


def test_run_and_claims_refuse_what_is_not_theirs_before_any_work(tmp_path, capsys):
    # run --preset with a claim's id says how to run the claim, as presets does; nothing is written
    assert main(["run", "--preset", "su-flooding-penalty", "--out", str(tmp_path / "out")]) == 2
    assert "is a claim, not a preset" in capsys.readouterr().err and not (tmp_path / "out").exists()
    # claims reads its runs from --out's lossbench.db: a file there is refused, not read as "no runs"
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["claims", "--out", str(afile)]) == 2
    assert capsys.readouterr().err.splitlines()[0] == f"lossbench: error: --out {afile} is not a folder"
