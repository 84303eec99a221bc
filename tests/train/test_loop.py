"""fit, eval_logits and the stateful gradient normaliser."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lossbench.losses import BetaBernoulliRelaxationLoss, CrossEntropyLoss, cross_entropy
from lossbench.train import GradientNormalizer, StepContext, build_step, eval_logits, fit, make_optimizer


def blobs(n=300, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    centres = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    return centres[y] + 0.8 * torch.randn(n, 2, generator=gen), y


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))


def test_fit_reduces_the_training_loss():
    x, y = blobs()
    model = mlp()
    initial = cross_entropy(model(x), y).item()
    history = fit(model, CrossEntropyLoss(), x, y, epochs=8, batch_size=32, lr=0.05,
                  generator=torch.Generator().manual_seed(0))
    assert len(history) == 8 and [row["epoch"] for row in history] == list(range(8))
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert cross_entropy(eval_logits(model, x), y).item() < 0.3 * initial


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_fit_is_reproducible_with_a_seeded_generator(optimizer):
    x, y = blobs()
    runs = []
    for shuffle_seed in (5, 5, 6):
        model = mlp()
        history = fit(model, CrossEntropyLoss(), x, y, epochs=2, batch_size=64, lr=0.01, optimizer=optimizer,
                      transforms=["iflood", "clip_norm"],
                      generator=torch.Generator().manual_seed(shuffle_seed))
        runs.append((history, torch.cat([p.detach().flatten() for p in model.parameters()])))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][1], runs[2][1]), "another shuffling seed must give another model"


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_make_optimizer_fuses_where_pytorch_can_and_trains_as_the_unfused_one(name):
    assert make_optimizer(mlp().parameters(), name, lr=0.1).defaults["fused"] is True  # CPU
    assert make_optimizer(mlp().parameters(), name, lr=0.1, fused=False).defaults["fused"] is False
    on_meta = [nn.Parameter(torch.empty(3, device="meta"))]
    assert make_optimizer(on_meta, name, lr=0.1).defaults["fused"] is False  # no fused kernel there
    x, y = blobs()
    models = []
    for fused in (True, False):
        model = mlp()
        fit(model, CrossEntropyLoss(), x, y, epochs=3, batch_size=32, lr=0.01, weight_decay=1e-3,
            optimizer=lambda params, fused=fused: make_optimizer(params, name, lr=0.01, weight_decay=1e-3, fused=fused),
            generator=torch.Generator().manual_seed(0))
        models.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    # The same update up to rounding: 30 steps apart by float32 round-off only.
    torch.testing.assert_close(models[0], models[1], rtol=1e-5, atol=1e-6)


def test_lr_decays_exponentially_to_lr_final():
    x, y = blobs(n=100)
    seen = []
    history = fit(mlp(), CrossEntropyLoss(), x, y, epochs=4, batch_size=10, lr=0.1, lr_final=1e-4,
                  optimizer=lambda params: _RecordingSGD(params, seen, lr=0.1))
    assert len(seen) == 40
    assert seen[0] == pytest.approx(0.1) and seen[-1] == pytest.approx(1e-4)
    ratios = torch.tensor(seen[1:]) / torch.tensor(seen[:-1])
    torch.testing.assert_close(ratios, torch.full_like(ratios, (1e-4 / 0.1) ** (1 / 39)), rtol=1e-6, atol=0)
    assert history[-1]["lr"] == pytest.approx(1e-4)


@pytest.mark.parametrize("schedule", ["step", "epoch"])
def test_an_lr_below_lr_final_stays_as_it_is(schedule):
    # lr_final is where the rate decays to; a run that starts below it keeps its rate, in either
    # schedule (step by step it once ramped up to lr_final, per epoch it stayed)
    x, y = blobs(n=100)
    history = fit(mlp(), CrossEntropyLoss(), x, y, epochs=3, batch_size=10, lr=1e-5, lr_final=1e-4, lr_schedule=schedule)
    assert [row["lr"] for row in history] == pytest.approx([1e-5] * 3)


class _RecordingSGD(torch.optim.SGD):
    def __init__(self, params, seen, **kw):
        super().__init__(params, **kw)
        self.seen = seen

    def step(self, closure=None):
        self.seen.append(self.param_groups[0]["lr"])
        return super().step(closure)


def test_epoch_callback_logs_and_stops():
    x, y = blobs(n=100)
    calls = []

    def on_epoch_end(epoch, row):
        row["val"] = 1.0 + epoch
        calls.append(epoch)
        return epoch == 1

    history = fit(mlp(), CrossEntropyLoss(), x, y, epochs=5, batch_size=50, lr=0.01,
                  on_epoch_end=on_epoch_end)
    assert calls == [0, 1] and [row["val"] for row in history] == [1.0, 2.0]


@pytest.mark.parametrize("level, share", [(100.0, 1.0), (0.0, 0.0)])
def test_epoch_stats_give_the_share_of_flooded_steps(level, share):
    x, y = blobs(n=100)
    history = fit(mlp(), CrossEntropyLoss(), x, y, epochs=1, batch_size=10, lr=0.01,
                  transforms=[("flooding", {"b": level})])
    assert history[0]["flooding/flooded"] == share


def test_fit_trains_the_loss_parameters():
    x, y = blobs(n=100)
    loss = BetaBernoulliRelaxationLoss()
    before = loss.raw.detach().clone()
    fit(mlp(), loss, x, y, epochs=1, batch_size=20, lr=0.1)
    assert not torch.equal(loss.raw.detach(), before)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"), ({"lr": 0.0}, "lr"),
     ({"lr_final": -1.0}, "lr_final"), ({"optimizer": "rmsprop"}, "optimizer"),
     ({"epochs": True}, "epochs must be a positive integer, got True"),  # (a bool is an int to isinstance)
     ({"batch_size": True}, "batch_size must be a positive integer, got True"),
     ({"momentum": -1.0}, r"momentum must lie in \[0.0, 1.0\), got -1.0"), ({"momentum": 1.5}, "momentum must lie in")],
)
def test_fit_rejects_bad_arguments(kwargs, match):
    x, y = blobs(n=20)
    args = {"epochs": 1, "batch_size": 4, "lr": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        fit(mlp(), CrossEntropyLoss(), x, y, **args)
    with pytest.raises(ValueError, match="same positive number of samples"):
        fit(mlp(), CrossEntropyLoss(), x, y[:-1], epochs=1, batch_size=4, lr=0.1)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"transforms": ["flodding"]}, "unknown transform 'flodding'"), ({"transforms": ["mgs", "mgs"]}, "one update"),
     ({"momentum": 1.5}, "momentum"), ({"weight_decay_on": "x"}, "weight_decay_on"), ({"optimizer": "x"}, "optimizer"),
     ({"on_epoch_end": 3}, "on_epoch_end must be a function"), ({"generator": 3}, "generator must be a torch.Generator"),
     ({"x_train": torch.tensor(1.0)}, "x_train must be a tensor"), ({"y_train": torch.tensor(1)}, "y_train must be a tensor"),
     ({"x_train": blobs(n=20)[0].numpy()}, "x_train must be a tensor with one row per sample, got ndarray")],
)
def test_fit_refuses_before_the_model_moves_or_trains(kwargs, match):
    """Every argument is checked before the model goes to the device (here 'meta': its weights would be lost)."""
    x, y = blobs(n=20)
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    args = {"x_train": x, "y_train": y, **kwargs}
    with pytest.raises(ValueError, match=match):
        fit(model, CrossEntropyLoss(), args.pop("x_train"), args.pop("y_train"), epochs=1, batch_size=4, lr=0.1,
            device="meta", **args)  # fmt: skip
    assert all(p.device.type == "cpu" and torch.equal(p, b) for p, b in zip(model.parameters(), before))


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_fit_trains_under_a_callers_no_grad_or_inference_mode(mode):
    x, y = blobs(n=40)
    plain, under = mlp(), mlp()
    fit(plain, CrossEntropyLoss(), x, y, epochs=2, batch_size=8, lr=0.1, generator=torch.Generator().manual_seed(0))
    with mode():  # ("element 0 of tensors does not require grad" before)
        fit(under, CrossEntropyLoss(), x, y, epochs=2, batch_size=8, lr=0.1, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(p, q) for p, q in zip(plain.parameters(), under.parameters()))


def test_fit_takes_none_for_no_transforms_and_a_step_refuses_an_empty_batch():
    x, y = blobs(n=20)
    model = mlp()
    assert len(fit(model, CrossEntropyLoss(), x, y, epochs=2, batch_size=8, lr=0.1, transforms=None)) == 2
    step = build_step(model, CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    step(x[:4], y[:4])
    before = [p.detach().clone() for p in model.parameters()]
    for xs, ys, name in ((x[:0], y[:0], "x"), (x[:2], y[:0], "y")):
        with pytest.raises(ValueError, match=rf"{name} must be a batch of at least one sample, got shape \(0"):
            step(xs, ys)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))  # (momentum did not move them)


def test_weight_decay_on_none_trains_without_decay_and_refuses_one():
    x, y = blobs(n=20)
    model = mlp()
    opt = make_optimizer(list(model.parameters()), "sgd", lr=0.1, weight_decay=0.0, weight_decay_on="none")
    assert all(group["weight_decay"] == 0.0 for group in opt.param_groups)
    with pytest.raises(ValueError, match="weight_decay_on='none' trains without weight decay"):
        fit(mlp(), CrossEntropyLoss(), x, y, epochs=1, batch_size=4, lr=0.1, weight_decay=1e-3, weight_decay_on="none")


def test_eval_logits_matches_the_model_and_restores_the_mode():
    x, _ = blobs(n=50)
    model = nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    model.train()
    out = eval_logits(model, x, batch_size=7)
    assert model.training and not out.requires_grad
    model.eval()
    torch.testing.assert_close(out, model(x).detach())


def test_gradient_normalizer_follows_the_ema_of_the_norm():
    ctx = StepContext(model=nn.Linear(1, 1), loss=cross_entropy, optimizer=None, params=[])
    norm = GradientNormalizer()
    moving = None
    for scale in [3.0, 1.0] + [1e-5] * 60:
        grads = [torch.tensor([0.6, 0.0]) * scale, torch.tensor([[0.8]]) * scale]  # global norm = scale
        expected = [g / max(0.9 * moving + 0.1 * scale if moving is not None else scale, 0.01) for g in grads]
        moving = 0.9 * moving + 0.1 * scale if moving is not None else scale
        norm.gradients(grads, ctx)
        for g, e in zip(grads, expected):
            torch.testing.assert_close(g, e)
        assert ctx.stats["grad_normalizer/moving_norm"].item() == pytest.approx(moving, rel=1e-5)
    assert moving < 0.01, "the floor 0.01 must have been reached"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gradient_norms_of_half_precision_gradients_are_taken_in_float32(dtype):
    # in float16 a norm above 65504 was inf, the moving norm inf for good and every later update 0; in
    # bfloat16 the moving norm of 1.03125-norm gradients stayed at 1.0 (its steps below bfloat16's spacing)
    from lossbench.train._base import run_norms

    ctx = StepContext(model=nn.Linear(1, 1), loss=cross_entropy, optimizer=None, params=[])
    norm = GradientNormalizer()
    norm.gradients([torch.full((100,), 1e4, dtype=dtype)], ctx)
    assert ctx.stats["grad_normalizer/grad_norm"].item() == pytest.approx(1e5, rel=1e-2)
    grads = [torch.ones(4, dtype=dtype)]
    norm.gradients(grads, ctx)
    assert torch.isfinite(norm._moving_norm) and grads[0].dtype == dtype and (grads[0] > 0).all()
    slow = GradientNormalizer()
    slow.gradients([torch.ones(1, dtype=dtype)], ctx)
    for _ in range(100):
        slow.gradients([torch.full((1,), 1.03125, dtype=dtype)], ctx)
    assert slow._moving_norm.item() == pytest.approx(1.03125, abs=1e-5)
    stacked = [torch.full((2, 100), 1e4, dtype=dtype)]  # (a pack's runs)
    assert run_norms(stacked).tolist() == pytest.approx([1e5, 1e5], rel=1e-2)


def test_step_returns_floats_and_run_returns_tensors():
    x, y = blobs(n=20)
    model = mlp()
    step = build_step(model, CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1), ["clip_norm"])
    assert all(isinstance(v, torch.Tensor) for v in step.run(x, y).values())
    assert all(isinstance(v, float) for v in step(x, y).values())


def test_readme_example_runs():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Training-step transforms", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert set(namespace["stats"]) >= {"loss", "objective", "flooding/flooded", "clip_norm/grad_norm"}
    assert len(namespace["history"]) == 5 and "iflood/flooded" in namespace["history"][0]


def test_fit_refuses_an_optimizer_built_already_naming_the_argument():
    x, y = blobs()
    model = mlp()
    with pytest.raises(ValueError, match=r"optimizer must be one of .* or a factory params -> Optimizer, got Adam"):
        fit(model, CrossEntropyLoss(), x, y, epochs=1, batch_size=64, lr=0.01, optimizer=torch.optim.Adam(model.parameters()))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_iflood_takes_a_half_precision_model(dtype):
    # its first-batch judgement read the probe's losses rounded to the model's dtype: an even mean refused
    from lossbench.losses import ExactLoss

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 6, generator=gen).to(dtype), torch.randint(0, 4, (32,), generator=gen)
    for loss in (CrossEntropyLoss(), ExactLoss()):
        model = nn.Linear(6, 4).to(dtype)
        step = build_step(model, loss, torch.optim.SGD(model.parameters(), lr=0.1), ["iflood"])
        assert torch.isfinite(torch.as_tensor(step(x, y)["loss"]))
    weighted = CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 3.0, 4.0]))  # (a weighted mean is still refused)
    model = nn.Linear(6, 4).to(dtype)
    step = build_step(model, weighted, torch.optim.SGD(model.parameters(), lr=0.1), ["iflood"])
    with pytest.raises(ValueError, match="iflood averages the samples' losses evenly"):
        step(x, y)


def test_iflood_judges_the_losss_mean_on_the_first_batch_with_a_target_not_ignored():
    # a first batch of ignored targets only was judged a class-weighted mean (an empty mean is nan)
    x, y = blobs()
    ignored = torch.full((32,), -100)
    model = mlp()
    step = build_step(model, CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1), ["iflood"])
    step(x[:32], ignored)
    assert step(x[:32], y[:32])["loss"] > 0
    model = mlp()
    weighted = CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 3.0]))
    step = build_step(model, weighted, torch.optim.SGD(model.parameters(), lr=0.1), ["iflood"])
    step(x[:32], ignored)  # (nothing to judge it on yet)
    with pytest.raises(ValueError, match="iflood averages the samples' losses evenly, but the mean of CrossEntropyLoss"):
        step(x[:32], y[:32])


def test_an_epoch_whose_steps_reach_both_infinities_records_nan_as_the_packed_trainer_does():
    # (math.fsum raised "-inf + inf in fsum": a diverging run ended the whole fit where fit_packed recorded nan)
    from lossbench.models.linear import LinearClassifier
    from lossbench.train.packed import PackedModel, fit_packed

    def infinite(logits, y, reduction="mean"):  # +inf on class-0 rows, -inf on the others
        v = logits[:, 1] * 0 + torch.where(y == 0, float("inf"), float("-inf"))
        return v.mean() if reduction == "mean" else v

    x, y = torch.randn(8, 6), torch.tensor([0, 1] * 4)
    torch.manual_seed(0)
    alone = fit(LinearClassifier(6, 3), infinite, x, y, epochs=1, batch_size=1, lr=0.1)
    (packed,) = fit_packed(PackedModel([LinearClassifier(6, 3)]), [infinite], x, y, epochs=1, batch_size=1, lrs=[0.1],
                           generators=[torch.Generator().manual_seed(0)])  # fmt: skip
    assert math.isnan(alone[0]["loss"]) and math.isnan(packed[0]["loss"])
