"""Every bad input from one table: each registered loss and transform, each spec field, each file
loader.  Each must be refused with a ValueError (SpecError for specs) whose message is one line
and names the input -- the argument, field or file -- before any work (issue 17).

Spec cases are written as tiny TOML files and run through ``lossbench run`` in-process: the
command must print one error line and leave no output folder behind.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from lossbench.bench.methods import _loss_arguments
from lossbench.bench.spec import value_kinds
from lossbench.cli import main
from lossbench.losses import LOSSES
from lossbench.registry import FloatRange, IntRange
from lossbench.train import TRANSFORMS, make_transform

from .data.writers import idx_bytes, write
from .losses.cases import make_case

INF, NAN = math.inf, math.nan


def one_line_naming(err: BaseException, *names: str) -> None:
    message = str(err)
    assert "\n" not in message, f"not one line: {message!r}"
    for name in names:
        assert name in message, f"{name!r} not named in: {message!r}"


# ---------------------------------------------------------------------------------------------
# Losses: every number-valued argument of every registered loss


def numeric_arguments(info):
    """(name, refuses negatives) for every argument that takes a number (not a tensor alone)."""
    spaces = {p.name: p.space for p in info.hyperparams}
    for name, param in _loss_arguments(info).items():
        kinds = value_kinds(param)
        if name in info.requires or kinds is None or float not in kinds[0]:
            continue
        space = spaces.get(name)
        yield name, isinstance(space, (FloatRange, IntRange)) and space.low >= 0


# Gaps in files this change could not touch; strict, so that a fix makes these fail until removed.
LOSS_GAPS: dict[tuple[str, str], str] = {}
# Values that mean something for an argument (not refused): EXACT's margin of inf clips nothing.
LOSS_MEANINGFUL = {("exact", "margin", INF)}

LOSS_CASES = []
for _info in LOSSES.values():
    for _name, _no_negatives in numeric_arguments(_info):
        for _bad in (NAN, INF, -INF, "abc", True) + ((-1.0,) if _no_negatives else ()):
            if (_info.name, _name, _bad) in LOSS_MEANINGFUL:
                continue
            gap = LOSS_GAPS.get((_info.name, _name, _bad)) or LOSS_GAPS.get((_info.name, _name))
            marks = [pytest.mark.xfail(reason=gap, strict=True)] if gap else []
            LOSS_CASES.append(pytest.param(_info, _name, _bad, id=f"{_info.name}-{_name}-{_bad!r}", marks=marks))


@pytest.mark.parametrize("info, name, bad", LOSS_CASES)
def test_loss_refuses_bad_hyperparameter(info, name, bad):
    logits, target, kwargs = make_case(info)
    # the losses' checks (lossbench._checks): "<name> must ..., got <the value's repr>"
    with pytest.raises(ValueError, match=rf"^{re.escape(name)} must .*, got {re.escape(repr(bad))}") as err:
        if name in inspect.signature(info.function).parameters:
            info.function(logits, target, **kwargs, **{name: bad})
        else:  # a module-only option
            info.module(**kwargs, **{name: bad})(logits, target)
    one_line_naming(err.value, name)


@pytest.mark.parametrize("info", [i for i in LOSSES.values() if "ignore_index" in _loss_arguments(i)], ids=lambda i: i.name)
def test_loss_refuses_ignore_index_that_is_a_real_class(info):
    logits, target, kwargs = make_case(info)
    with pytest.raises(ValueError) as err:
        info.function(logits, target, **kwargs, ignore_index=0)
    one_line_naming(err.value, "ignore_index=0")
    with pytest.raises(ValueError) as err:  # (int64's range: a C kernel would take it wrapped)
        info.function(logits, target, **kwargs, ignore_index=2**64 + 1)
    one_line_naming(err.value, f"ignore_index={2**64 + 1}")


# ---------------------------------------------------------------------------------------------
# Transforms: every hyperparameter of every registered transform

TRANSFORM_GAPS: dict[tuple, str] = {}
TRANSFORM_CASES = []
for _info in TRANSFORMS.values():
    for _p in _info.hyperparams:
        if isinstance(_p.default, str):
            bads = (1.5, None)
        else:
            bads = (NAN, INF, -INF, -1.0, "abc", None, True)
        for _bad in bads:
            gap = TRANSFORM_GAPS.get((_info.name, _p.name, _bad))
            marks = [pytest.mark.xfail(reason=gap, strict=True)] if gap else []
            TRANSFORM_CASES.append(pytest.param(_info.name, _p.name, _bad, id=f"{_info.name}-{_p.name}-{_bad!r}", marks=marks))


@pytest.mark.parametrize("transform, name, bad", TRANSFORM_CASES)
def test_transform_refuses_bad_hyperparameter(transform, name, bad):
    with pytest.raises(ValueError) as err:
        make_transform((transform, {name: bad}))
    one_line_naming(err.value, f"{name} must", f"got {bad!r}")  # (a bare name such as 'b' is in any message)


# ---------------------------------------------------------------------------------------------
# Spec fields, through `lossbench run` in-process

BASE = {
    "name": "bad",
    "trials": 2,
    "seeds": 2,
    "sampler": "random",
    "train": {"epochs": 1, "batch_size": 64},
    "datasets": ["wine"],
    "methods": [{"name": "ce", "loss": "cross_entropy"}],
}
FLOOD = [{"name": "flooding", "params": {"b": 0.1}}]

# (field path, value, what the message must name); a path ending in "+" appends to a list.
SPEC_CASES = [
    ("name", "", "name"), ("name", "../up", "name"), ("name", 5, "'name'"),
    ("trials", "many", "'trials'"), ("trials", 0, "trials"), ("trials", 1.5, "'trials'"),
    ("seeds", 1, "seeds"), ("seeds", 200_000, "seeds must be at most 1,000"), ("sampler", "grid", "sampler"),
    ("val_fraction", 0, "val_fraction"), ("val_fraction", 1.5, "val_fraction"), ("val_fraction", NAN, "val_fraction"),
    ("val_fraction", "x", "'val_fraction'"), ("val_fraction", 0.001, "val_fraction"), ("val_fraction", 0.01, "val_fraction"),
    ("val_split", "kfold", "val_split"), ("selection_metric", "f2", "selection_metric"),
    ("selection_metric", "map", "selection_metric 'map'"), ("tie_break", "x", "tie_break"),
    ("baseline", "nope", "baseline 'nope'"), ("seed", "x", "'seed'"), ("heartbeat_interval", 0, "heartbeat_interval"),
    ("search_order", ["lr"], "search_order"), ("resample_splits", "yes", "'resample_splits'"), ("trails", 3, "trails"),
    ("train.model", "nope", "model 'nope'"), ("train.model_params", {"width": "x"}, "width"),
    ("train.optimizer", "adagrad", "optimizer"), ("train.momentum", 1.0, "momentum"), ("train.momentum", -0.1, "momentum"),
    ("train.momentum", INF, "momentum"), ("train.momentum", NAN, "momentum"), ("train.epochs", 0, "epochs"),
    ("train.epochs", "x", "'epochs'"), ("train.batch_size", 0, "batch_size"), ("train.lr_final", -1.0, "lr_final"),
    ("train.lr_final", INF, "lr_final"), ("train.lr_final", NAN, "lr_final"), ("train.lr_schedule", "x", "lr_schedule"),
    ("train.weight_decay_on", "x", "weight_decay_on"), ("train.repeat_to_batches", -1, "repeat_to_batches"),
    ("train.repeat_to_batches", 10**8, "repeat_to_batches must lie in [0, 100,000]"),
    ("train", {"epochs": 1, "model": "mlp", "model_params": {"width": 10**10}}, "model 'mlp' with {'width': 10000000000"),
    ("train.drop_last", "x", "'drop_last'"), ("train.standardize", 1, "'standardize'"), ("train.nope", 1, "nope"),
    ("search.lr", {"low": 1e-3, "high": INF}, "[search].lr"), ("search.lr", {"low": NAN, "high": 1.0}, "[search].lr"),
    ("search.lr", {"low": -INF, "high": 1.0}, "[search].lr"), ("search.lr", [1.0, 0.1], "[search].lr"),
    ("search.lr", "fast", "[search].lr"), ("search.weight_decay", {"low": 0.0, "high": 1.0, "log": True}, "[search].weight_decay"),
    ("search.lr", {"choices": [0.1, INF]}, "[search].lr"), ("search.momentum", [0.1, 0.9], "momentum"),
    ("search.seed", [0, 5], "[search].seed"),
    ("datasets.0", 5, "datasets[0]"), ("datasets.0", {"name": "wine", "max_train": 1}, "max_train"),
    ("datasets.0", {"name": "wine", "label": "a/b"}, "label"), ("datasets.0", {"name": "wine", "params": {"seed": "x"}}, "params.seed"),
    ("datasets.0", {"name": "wine", "params": {"test_fraction": INF}}, "test_fraction"),
    ("datasets.0", {"name": "nope"}, "'nope'"), ("datasets.0", {"name": "wine", "params": {"foo": 1}}, "foo"),
    ("datasets+", "wine", "listed twice"),
    ("methods.0", {"name": "ce"}, "'loss'"), ("methods.0.loss", "nope", "'nope'"),
    ("methods.0.params", {"label_smoothing": "abc"}, "params.label_smoothing"),
    ("methods.0.params", {"label_smoothing": NAN}, "label_smoothing"), ("methods.0.params", {"temperature": INF}, "temperature"),
    ("methods.0.params", {"temperature": -1.0}, "temperature"), ("methods.0.params", {"temperature": True}, "params.temperature"),
    ("methods.0.params", {"ignore_index": 1}, "ignore_index"), ("methods.0.params", {"foo": 1}, "'foo'"),
    ("methods.0.transforms", [{"name": "flooding", "params": {"b": "x"}}], "flooding.b"),
    ("methods.0.transforms", [{"name": "flooding", "params": {"b": INF}}], "b"),
    ("methods.0.transforms", ["nope"], "'nope'"),
    ("methods.0.search", {"loss.temperature": {"low": 0.1, "high": INF}}, "loss.temperature"),
    ("methods.0.search", {"loss.temperature": {"low": 0.0, "high": 1.0}}, "temperature"),
    ("methods.0.search", {"loss.ignore_index": {"choices": [0, 1]}}, "loss.ignore_index"),
    ("methods.0.search", {"loss.weight": {"low": 0.0, "high": 1.0}}, "loss.weight"),
    ("methods.0.search", {"loss.nope": {"low": 0.0, "high": 1.0}}, "loss.nope"),
    ("methods.0.search", {"loss.label_smoothing": {"choices": ["a", "b"]}}, "loss.label_smoothing"),
    ("methods.0.datasets", ["digits"], "digits"),
    ("methods.0.schedule", {"loss.temperature": {"start": 0.0, "end": 1.0}}, "schedule.loss.temperature"),
    ("methods.0.schedule", {"loss.label_smoothing": {"start": 0.5, "end": 2.0}},
     "the end of its schedule {'loss.label_smoothing': 2.0} is refused: label_smoothing"),
    ("methods+", {"name": "ce", "loss": "hinge"}, "repeated"),
    ("methods+", {"name": "fl", "loss": "cross_entropy", "transforms": FLOOD, "search": {"flooding.b": {"low": 0.0, "high": 0.2}}}, "flooding.b"),
    ("methods+", {"name": "ex", "loss": "exact", "search": {"loss.standardize": {"low": 0.0, "high": 1.0}}}, "loss.standardize"),
    ("methods+", {"name": "ex", "loss": "exact", "params": {"standardize": "yes"}}, "params.standardize"),
]  # fmt: skip


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value == INF else "-inf" if value == -INF else repr(value))
    if isinstance(value, (int, str)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def patched(path: str, value) -> dict:
    spec = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    table = spec
    for key in parents:
        table = table[int(key)] if isinstance(table, list) else table.setdefault(key, {})
    if last.endswith("+"):
        table[last[:-1]].append(value)
    elif isinstance(table, list):
        table[int(last)] = value
    else:
        table[last] = value
    return spec


@pytest.mark.parametrize("path, value, named", SPEC_CASES, ids=[f"{p}={v!r}"[:60] for p, v, _ in SPEC_CASES])
def test_spec_field_is_refused_in_one_line_before_any_work(path, value, named, tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text("".join(f"{key} = {toml_value(v)}\n" for key, v in patched(path, value).items()))
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out), "--device", "cpu"]) == 2
    line, hint = capsys.readouterr().err.rstrip("\n").split("\n")
    assert line.startswith("lossbench: error: ") and hint.startswith("(set LOSSBENCH_TRACEBACK=1")
    assert named in line and f"error: {spec}" in line, line  # (refused while parsing or after: the file named)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# File loaders: tiny bad files

ARFF = "@relation r\n@attribute x numeric\n@attribute class {a,b}\n@data\n"
MEKA = "@relation 'r: -C 1'\n@attribute l {0,1}\n@attribute x numeric\n@data\n"
ADULT = ("{age}, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, "
         "2174, 0, 40, United-States, {label}\n")  # fmt: skip


def adult(tmp_path, row):
    train = write(tmp_path / "adult.data", ADULT.format(age=30, label="<=50K") + row)
    return load_adult(train, write(tmp_path / "adult.test", ADULT.format(age=30, label=">50K.")), cache=False)


def idx(tmp_path, data: bytes):
    return read_idx(write(tmp_path / "bad-idx3-ubyte", data))


def float_images(bad):
    a = np.zeros((2, 2, 2), np.float32)
    a[1, 0, 0] = bad
    return idx_bytes(a)


def image_folder(tmp_path, data: bytes):
    write(tmp_path / "train" / "a" / "x.png", data)
    write(tmp_path / "test" / "a" / "y.png", data)
    return load_image_folder(tmp_path, cache=False)


def table(tmp_path, text):
    return load_table(write(tmp_path / "t.csv", text), cache=False)


def text_table(tmp_path, train):
    return load_text_table(write(tmp_path / "train.tsv", train), write(tmp_path / "test.tsv", "sentence\tlabel\nok\t1\n"), cache=False)


from lossbench.data import (  # noqa: E402  (after the helpers that use them, for reading order)
    load_adult,
    load_arff,
    load_image_folder,
    load_meka_arff,
    load_table,
    load_text_table,
    read_idx,
)

# (loader call on tmp_path, what the message must name)
LOADER_CASES = {
    "arff-inf": (lambda t: load_arff(write(t / "d.arff", ARFF + "1, a\n2, b\ninf, a\n"), cache=False), "d.arff:7"),
    "arff-nan": (lambda t: load_arff(write(t / "d.arff", ARFF + "nan, a\n"), cache=False), "d.arff:5"),
    "arff-word": (lambda t: load_arff(write(t / "d.arff", ARFF + "ten, a\n"), cache=False), "d.arff:5"),
    "arff-columns": (lambda t: load_arff(write(t / "d.arff", ARFF + "1, a, 3\n"), cache=False), "d.arff:5"),
    "arff-directory": (lambda t: load_arff((t / "d.arff").mkdir() or t / "d.arff", cache=False), "d.arff"),
    "arff-missing": (lambda t: load_arff(t / "none.arff", cache=False), "none.arff"),
    "meka-inf": (lambda t: load_meka_arff(write(t / "m.arff", MEKA + "1, 1e999\n0, 1\n"), cache=False), "m.arff:5"),
    "meka-label": (lambda t: load_meka_arff(write(t / "m.arff", MEKA + "1, 2\n0, 1\n2, 3\n"), cache=False), "m.arff"),
    "adult-inf": (lambda t: adult(t, ADULT.format(age="inf", label="<=50K")), "adult.data:2"),
    "adult-label": (lambda t: adult(t, ADULT.format(age=40, label="rich")), "adult.data:2"),
    "adult-columns": (lambda t: adult(t, "39, State-gov\n"), "adult.data:2"),
    "idx-inf": (lambda t: idx(t, float_images(np.inf)), "bad-idx3-ubyte: record 1"),
    "idx-nan": (lambda t: idx(t, float_images(np.nan)), "bad-idx3-ubyte: record 1"),
    "idx-magic": (lambda t: idx(t, b"\x01\x02\x03\x04"), "bad-idx3-ubyte"),
    "idx-truncated": (lambda t: idx(t, float_images(0.0)[:-3]), "bad-idx3-ubyte"),
    "idx-directory": (lambda t: read_idx((t / "d-idx3").mkdir() or t / "d-idx3"), "d-idx3"),
    "image-not-an-image": (lambda t: image_folder(t, b"not a png"), "x.png"),
    "table-inf": (lambda t: table(t, "x,y\n1,a\ninf,b\n2,a\n3,b\n"), "t.csv"),
    "table-directory": (lambda t: load_table((t / "t.csv").mkdir() or t / "t.csv", cache=False), "t.csv"),
    "text-columns": (lambda t: text_table(t, "sentence\tlabel\ngood\t1\nbad\t0\textra\n"), "train.tsv"),
}


@pytest.mark.parametrize("case", sorted(LOADER_CASES))
def test_loader_refuses_bad_file_naming_it(case, tmp_path):
    load, named = LOADER_CASES[case]
    with pytest.raises(ValueError) as err:
        load(tmp_path)
    one_line_naming(err.value, named)


def test_every_format_loader_has_a_bad_file():
    formats = {"arff": load_arff, "meka": load_meka_arff, "adult": load_adult, "idx": read_idx,
               "image": load_image_folder, "table": load_table, "text": load_text_table}  # fmt: skip
    covered = {case.split("-")[0] for case in LOADER_CASES}
    assert covered == set(formats), sorted(set(formats) ^ covered)
    assert Path(__file__).name == "test_bad_inputs.py"


@pytest.mark.parametrize("switch", ["learn_sigma", "log_loss", "standardize"])
@pytest.mark.parametrize("value", ["no", 1, None])
def test_exact_switches_are_true_or_false(switch, value):
    import torch

    from lossbench.losses import ExactLoss, exact

    with pytest.raises(ValueError, match=f"^{switch} must be True or False"):
        ExactLoss(**{switch: value})
    if switch != "learn_sigma":
        with pytest.raises(ValueError, match=f"^{switch} must be True or False"):
            exact(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), **{switch: value})


@pytest.mark.parametrize("name, value, message", [("margin", -1.0, "margin must be finite and >= 0"), ("num_nodes", 3, "num_nodes must be an even"),
                                                  ("eps", 0.0, "eps must be finite and > 0"), ("reduction", "average", "reduction must be one of")])  # fmt: skip
def test_exact_module_checks_its_options_when_built(name, value, message):
    import torch

    from lossbench.losses import ExactLoss, exact

    with pytest.raises(ValueError, match=f"^{message}"):
        ExactLoss(**{name: value})
    with pytest.raises(ValueError, match=f"^{message}"):  # as the function checks them per call
        exact(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), **{name: value})


@pytest.mark.parametrize("standardize", [False, True])
def test_exact_unchecked_refuses_a_target_out_of_range_in_one_line(standardize):
    import torch

    from lossbench.losses import exact

    with pytest.raises(ValueError, match=r"target has 1 class indices outside \[0, 4\)"):
        exact(torch.randn(6, 4), torch.tensor([0, 1, 2, 7, 1, 0]), validate=False, standardize=standardize)
