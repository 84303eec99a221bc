"""A method's own model hyperparameters (``model_params``): its runs' model, over [train] model_params,
as LDAM's sources give LDAM a cosine output layer and cross-entropy a plain one."""

from __future__ import annotations

import json

import pytest
import torch

from lossbench.bench.execution import DataCache, pack_key, train_and_score_packed
from lossbench.bench.methods import resolve_method
from lossbench.bench.report import method_settings
from lossbench.bench.results import collect
from lossbench.bench.runner import Runner
from lossbench.bench.spec import SpecError, parse_spec, spec_from_json
from lossbench.bench.storage import default_storage_url, open_storage, run_record
from lossbench.models.layers import CosineLinear

COSINE = {"name": "ldam_cos", "loss": "ldam", "model_params": {"cosine_head": True}}


def _spec(*methods, **top):
    return parse_spec({
        "name": "own-model", "trials": 2, "seeds": 2, "sampler": "random",
        "train": {"model": "mlp", "model_params": {"width": 16, "depth": 1}, "epochs": 2, "batch_size": 64},
        "datasets": [{"name": "digits", "params": {"long_tail_rho": 10.0}}],
        "methods": [{"name": "ce", "loss": "cross_entropy"}, *methods], **top,
    }, "test")  # fmt: skip


def test_a_methods_model_params_are_stored_and_read_back():
    spec = _spec(COSINE)
    assert spec.method("ldam_cos").model_params == {"cosine_head": True} and spec.method("ce").model_params == {}
    assert spec_from_json(spec.to_json()) == spec
    assert "model_params" not in json.loads(_spec().to_json())["methods"][0]  # (at its default: left out, fingerprints kept)


def test_a_model_param_fixed_for_a_method_and_searched_for_all_is_refused():
    with pytest.raises(SpecError, match=r"method 'ldam_cos': model_params \['dropout'\] are searched in \[search\]"):
        _spec({**COSINE, "model_params": {"dropout": 0.1}}, search={"model.dropout": {"choices": [0.0, 0.2]}})


def test_runs_train_the_methods_own_model_and_pack_only_with_runs_of_it(tmp_path):
    spec = _spec(COSINE, {"name": "ldam", "loss": "ldam"})
    split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
    ldam_cos, ldam, ce = (resolve_method(spec.method(n)) for n in ("ldam_cos", "ldam", "ce"))
    assert pack_key(split, ldam, spec) == pack_key(split, ce, spec) != pack_key(split, ldam_cos, spec)
    with pytest.raises(ValueError, match="one method per run, all of one pack_key"):
        train_and_score_packed(split, [ldam_cos, ldam], [({"lr": 0.1}, 0), ({"lr": 0.1}, 1)], spec)

    storage = open_storage(default_storage_url(tmp_path), spec.heartbeat_interval)
    built = []
    original = CosineLinear.__init__

    def counting(self, *args, **kwargs):
        built.append(args)
        original(self, *args, **kwargs)

    CosineLinear.__init__ = counting
    try:
        Runner(spec, storage, torch.device("cpu")).run()
    finally:
        CosineLinear.__init__ = original
    assert len(built) >= spec.trials + spec.seeds  # ldam_cos's runs (and its checks) built the cosine layer
    (result,) = collect(spec, storage)
    assert all(r.complete for r in result.methods)
    packs = {r.method.name: {run_record(t)["pack"] for t in r.runs.values()} for r in result.methods}
    assert packs["ldam_cos"] == {spec.seeds}  # its evaluation runs packed together, apart from the others'
    settings = {row[0]: row for row in method_settings(spec).rows}
    assert settings["ldam_cos"][1] == "ldam (its model: cosine_head=True)" and settings["ldam"][1] == "ldam"
