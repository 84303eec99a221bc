"""`lossbench datasets NAME key=value ...`: any dataset or loader with parameters, its counts printed."""

from __future__ import annotations

import pytest

from lossbench.cli import dataset_requests, main
from lossbench.data import load_dataset

ARFF = "@relation t\n@attribute a numeric\n@attribute class {x,y}\n@data\n" + "".join(f"{i},{'xy'[i % 2]}\n" for i in range(10))


def refused(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    first, hint = captured.err.rstrip("\n").split("\n")
    assert hint.startswith("(set LOSSBENCH_TRACEBACK=1") and captured.out == ""  # nothing loaded or printed
    return first


def test_values_are_toml_literals_else_text():
    got = dataset_requests(["synthetic", "n_samples=300", "class_sep=0.5", "flag=true", "path=/a/b c.csv",
                            "names=[1, 2]", 'label="3"', "table", "sep=,"])  # fmt: skip
    assert got == [("synthetic", {"n_samples": 300, "class_sep": 0.5, "flag": True, "path": "/a/b c.csv",
                                  "names": [1, 2], "label": "3"}), ("table", {"sep": ","})]  # fmt: skip


def test_parameters_reach_the_loader_and_counts_are_printed(capsys):
    assert main(["datasets", "wine", "test_fraction=0.5", "synthetic", "n_samples=300", "n_classes=4",
                 "n_informative=4", "verify=false"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "wine: multiclass, tabular (13,); train 89, test 89" in out
    assert "train 89 (the bench tunes on 71 and validates on 18: val_fraction 0.2), test 89" in out
    assert "3 classes; 13 features" in out
    assert "train 240 (the bench tunes on 192 and validates on 48" in out and "4 classes; 20 features" in out


def test_a_loaders_name_parameter_reaches_it(tmp_path, capsys):
    path = tmp_path / "t.arff"
    path.write_text(ARFF)
    assert load_dataset("arff", path=str(path), name="mine").name == "mine"  # no clash with load_dataset's own name
    assert main(["datasets", "arff", f"path={path}", "name=mine", "test_fraction=0.2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mine: multiclass, tabular (1,); train 8, test 2") and "2 classes; 1 feature\n" in out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["iris", "wine", "tset=3"], "datasets wine: unknown parameter 'tset'; it takes test_fraction, seed, verify"),
        (["seed=3", "wine"], "'seed=3' comes before any dataset name"),
        (["wine", "download=false"], "--no-download"),
        (["wine", "1x=2"], "'1x=2' is not key=value"),
        (["iris", "nope"], "unknown dataset 'nope'"),
        (["iris", "seed=1.5"], "datasets iris: seed = 1.5 must be int (float given)"),  # typed as in a spec
        (["table", "path=x.csv", "standardize=False"], "standardize = 'False' must be bool"),  # TOML's is false
        (["table", "path=x.csv", "drop=city"], '(str given) (a list is written [..., ...]: numbers as [1.0, 2.0], texts quoted as ["a", "b"])'),
    ],
)
def test_bad_requests_are_one_line_before_anything_loads(argv, expected, capsys):
    assert expected in refused(capsys, ["datasets", *argv])


def test_datasets_imports_the_users_plugins_and_loads_their_dataset(tmp_path, monkeypatch, capsys,
                                                                     fresh_registries):  # fmt: skip
    # fresh_registries and the module forgotten after: the plugin's dataset does not outlive the test
    import sys
    import textwrap

    (tmp_path / "lb_datasets_plugin.py").write_text(textwrap.dedent("""
        import torch
        from lossbench.data import Dataset, DatasetInfo, register_dataset

        def mine(seed: int = 0) -> Dataset:
            x = torch.arange(40.0).reshape(20, 2)
            y = (torch.arange(20) % 2).long()
            return Dataset("mine", "multiclass", x[:16], y[:16], x[16:], y[16:], ["a", "b"], "tabular", "a plugin")

        register_dataset(DatasetInfo("lb_plugin_mine", "builtin", mine, "multiclass", "tabular", "mine", "a plugin"))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main(["datasets", "--plugin", "lb_datasets_plugin", "lb_plugin_mine", "seed=1"]) == 0
    finally:  # (monkeypatch.delitem would restore only a module that was there before the test)
        sys.modules.pop("lb_datasets_plugin", None)
    assert "mine: multiclass, tabular (2,)" in capsys.readouterr().out


def test_text_features_are_described_in_their_layout(tmp_path, capsys):
    for split in ("train", "test"):
        for label, words in (("pos", "good fine nice"), ("neg", "bad poor awful")):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for i in range(3):
                (folder / f"{i}.txt").write_text(f"{words} {i}\n")
    paths = [f"path={tmp_path / 'train'}", f"test_path={tmp_path / 'test'}"]
    assert main(["datasets", "text_folder", *paths, "text_folder", *paths, "layout=padded"]) == 0
    bags, padded = capsys.readouterr().out.split("source:")[:2]
    assert "bags of token ids (layout 'bags'), longest 4" in bags and "padded" not in bags.split("vocabulary")[0]
    assert "token ids, padded length 4" in padded
