"""The CUDA path gives what the CPU path gives, up to float round-off: every loss's value and
gradient, every transform in a training run, packed training against runs alone, the bench's
packed and unpacked runs, and a whole study.  Skipped where no CUDA device is present (CI has
none: the CPU tests cover the same code, which is device-agnostic); on a GPU machine run
``python -m pytest tests/test_cuda.py``."""

from __future__ import annotations

import optuna
import pytest
import torch
from optuna.trial import TrialState

from lossbench.bench.execution import DataCache, train_and_score, train_and_score_packed, unpackable
from lossbench.bench.methods import resolve_method
from lossbench.bench.runner import Runner
from lossbench.bench.storage import open_storage, run_record
from lossbench.losses import LOSSES
from lossbench.models.mlp import MLP
from lossbench.train import TRANSFORMS, fit
from lossbench.train.packed import PackedModel, fit_packed
from tests.bench.test_packing import METHODS, _assert_results_equal, _spec
from tests.losses.cases import make_case

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
CUDA, CPU = torch.device("cuda"), torch.device("cpu")
LOSS_INFOS = [LOSSES.get(n) for n in LOSSES.names()]
# Transforms whose draws come from a generator on the run's device: CUDA's stream of random
# numbers is not the CPU's, so these are checked for finite training and an exact resume instead.
DRAWS = {"mgs"}


@pytest.fixture(autouse=True)
def _no_tf32():
    """Matrix products in full float32, as on the CPU (TF32 would differ in the 4th digit)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("classes", [3, 8])
@pytest.mark.parametrize("info", LOSS_INFOS, ids=[i.name for i in LOSS_INFOS])
def test_every_loss_gives_its_cpu_value_and_gradient(info, classes):
    logits, target, kw = make_case(info, batch=32, classes=classes, dtype=torch.float64, seed=classes)
    kw = {k: v.double() for k, v in kw.items()}
    results = []
    for device in (CPU, CUDA):
        x = logits.to(device, copy=True).requires_grad_(True)
        value = info.function(x, target.to(device), **{k: v.to(device) for k, v in kw.items()})
        value.backward()
        results.append((value.detach().cpu(), x.grad.cpu()))
    (v_cpu, g_cpu), (v_cuda, g_cuda) = results
    torch.testing.assert_close(v_cuda, v_cpu, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(g_cuda, g_cpu, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("classes", [10, 100])
def test_exact_in_float32_gives_its_cpu_kernel_values(classes):
    """EXACT runs as PyTorch operations on CUDA and as the fused kernel on the CPU: same rule."""
    g = torch.Generator().manual_seed(classes)
    logits, target = torch.randn(256, classes, generator=g), torch.randint(0, classes, (256,), generator=g)
    for kwargs in ({}, {"standardize": True, "margin": 1.0, "sigma": 0.1}):
        results = []
        for device in (CPU, CUDA):
            x = logits.to(device, copy=True).requires_grad_(True)
            value = LOSSES.get("exact").function(x, target.to(device), **kwargs)
            value.backward()
            results.append((value.detach().cpu(), x.grad.cpu()))
        torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-4, atol=1e-6)


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 6, generator=g)
    return x, ((x[:, 0] > 0).long() + (x[:, 1] > 0.5).long())


def _train(device, transform, seed=3, epochs=3):
    x, y = _data()
    torch.manual_seed(seed)
    model = MLP(6, 3, [8])
    history = fit(
        model, LOSSES.get("cross_entropy").module(validate=False), x.to(device), y.to(device), epochs=epochs,
        batch_size=32, lr=0.1, lr_final=0.01, transforms=[transform], generator=torch.Generator().manual_seed(seed),
        device=device,
    )  # fmt: skip
    return model.cpu(), history


@pytest.mark.parametrize("name", sorted(set(TRANSFORMS.names()) - DRAWS))
def test_every_transform_trains_as_on_the_cpu(name):
    (m_cpu, h_cpu), (m_cuda, h_cuda) = _train(CPU, name), _train(CUDA, name)
    for p_cpu, p_cuda in zip(m_cpu.parameters(), m_cuda.parameters()):
        torch.testing.assert_close(p_cuda, p_cpu, rtol=1e-4, atol=1e-5)
    for r_cpu, r_cuda in zip(h_cpu, h_cuda):
        assert r_cuda.keys() == r_cpu.keys()
        for key, value in r_cpu.items():
            assert r_cuda[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_a_transform_that_draws_trains_and_resumes_on_cuda(name):
    _, history = _train(CUDA, (name, {"seed": 7}), epochs=2)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in history)
    again = _train(CUDA, (name, {"seed": 7}), epochs=2)[1]
    assert again == history  # seeded draws on the device: the same run twice


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("loss", ["cross_entropy", "exact", "focal"])
def test_packed_runs_train_as_they_do_alone(loss, optimizer):
    x, y = _data()
    seeds, lrs, decays = [3, 4, 5, 6], [0.1, 0.5, 0.05, 0.01], [0.0, 1e-3, 1e-2, 0.1]
    options = {"epochs": 3, "batch_size": 32, "optimizer": optimizer, "lr_final": 1e-3}

    def model(seed):
        torch.manual_seed(seed)
        return MLP(6, 3, [7, 5]).to(CUDA)

    alone = []
    for seed, lr, wd in zip(seeds, lrs, decays):
        m = model(seed)
        h = fit(m, LOSSES.get(loss).module(validate=False), x.to(CUDA), y.to(CUDA), lr=lr, weight_decay=wd,
                generator=torch.Generator().manual_seed(seed), **options)  # fmt: skip
        alone.append((m, h))
    packed = PackedModel([model(s) for s in seeds])
    histories = fit_packed(
        packed, [LOSSES.get(loss).module(validate=False) for _ in seeds], x.to(CUDA), y.to(CUDA), lrs=lrs,
        weight_decays=decays, generators=[torch.Generator().manual_seed(s) for s in seeds],
        shared_loss=[list(range(len(seeds)))], **options,
    )  # fmt: skip
    for k, (m, h) in enumerate(alone):
        for p, q in zip(m.parameters(), packed.run_params(k)):
            torch.testing.assert_close(q.detach(), p.detach(), rtol=1e-4, atol=1e-5)
        for r1, r2 in zip(h, histories[k]):
            for key in r1:
                assert r2[key] == pytest.approx(r1[key], rel=1e-4, abs=1e-5), key


@pytest.mark.parametrize("index", range(len(METHODS)))
def test_a_packed_bench_run_stores_what_it_stores_alone_and_on_the_cpu(index):
    spec = _spec()
    method = resolve_method(spec.methods[index])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=index))
    runs = [(study.ask(method.search_space(spec.search)).params, 10 + seed) for seed in range(3)]
    on_cpu, on_cuda = (
        train_and_score_packed(DataCache(spec, device).get(spec.datasets[0], "tune"), method, runs, spec)
        for device in (CPU, CUDA)
    )
    split = DataCache(spec, CUDA).get(spec.datasets[0], "tune")
    for (params, seed), packed, cpu in zip(runs, on_cuda, on_cpu):
        _assert_results_equal(packed, train_and_score(split, method, params, spec, seed))
        _assert_results_equal(packed, cpu)


def test_a_study_runs_on_cuda_as_on_the_cpu(tmp_path):
    spec = _spec(methods=METHODS[:2])
    records = []
    for i, device in enumerate((CPU, CUDA)):
        storage = open_storage(f"sqlite:///{tmp_path}/{i}.db", spec.heartbeat_interval)
        runner = Runner(spec, storage, device)
        runner.run()
        trials = [(u.method.name, s, t) for u in runner.units for s, study in (("tune", u.tune), ("final", u.final))
                  for t in study.get_trials()]  # fmt: skip
        assert trials and all(t.state == TrialState.COMPLETE for _, _, t in trials)
        records.append({(name, stage, t.number): (t.params, run_record(t)) for name, stage, t in trials})
    on_cpu, on_cuda = records
    assert on_cuda.keys() == on_cpu.keys()
    for key, (params, record) in on_cpu.items():
        assert on_cuda[key][0] == params, key  # the random sampler asks the same either way
        for metric, value in record["metrics"].items():
            assert on_cuda[key][1]["metrics"][metric] == pytest.approx(value, rel=1e-4, abs=1e-5), (key, metric)


def test_a_loss_that_draws_on_the_gpu_does_not_pack():
    # (the CPU's generator alone would not see these draws)
    spec = _spec(methods=[{"name": "genz", "loss": "exact", "params": {"estimator": "genz"}}])
    split = DataCache(spec, CUDA).get(spec.datasets[0], "tune")
    assert "random numbers" in unpackable(split, resolve_method(spec.methods[0]), spec)
