"""Packed training gives each run what it gets alone (fit), up to float round-off."""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lossbench.losses import LOSSES, loss_module
from lossbench.models.linear import LinearClassifier
from lossbench.models.mlp import MLP
from lossbench.train import TRANSFORMS, fit
from lossbench.train import packed as packed_module
from lossbench.train._base import Transform, batch_level
from lossbench.train.packed import (
    PackedLosses,
    PackedModel,
    batch_rows,
    even_mean,
    faster_alone,
    fit_packed,
    mean_probe,
    unpackable_model,
)
from tests.user_code import (
    EvalHalves,
    EvalSyncs,
    Frozen,
    Indexed,
    Tied,
    Unused,
    counts_weighted_ce,
    hardest_half_ce,
    positives_weigh_four_bce,
)

SEEDS, LRS, DECAYS = [3, 4, 5, 6], [0.1, 0.5, 0.05, 1.0], [0.0, 1e-3, 1e-2, 0.1]


def _data(classes: int = 3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=g)
    y = ((x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()).clamp(max=classes - 1)
    return x, y


def _model(kind: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return LinearClassifier(6, 3, zero_first_logit=True) if kind == "linear" else MLP(6, 3, [7, 5])


def _both_ways(kind="linear", loss="cross_entropy", transforms=(), shared=True, lrs=LRS, loss_kwargs=None, decays=DECAYS,
               row_options=(), batch_groups=None, grouped=False, data=None, **options):  # fmt: skip
    x, y = data or _data()
    loss_kwargs = loss_kwargs or [{}] * len(SEEDS)
    alone = []
    for seed, lr, wd, kw in zip(SEEDS, lrs, decays, loss_kwargs):
        model = _model(kind, seed)
        history = fit(model, LOSSES.get(loss).module(validate=False, **kw), x, y, lr=lr, weight_decay=wd, transforms=list(transforms),
                      generator=torch.Generator().manual_seed(seed), **options)  # fmt: skip
        alone.append((model, history))
    models = [_model(kind, seed) for seed in SEEDS]
    packed = PackedModel(models)
    losses = [LOSSES.get(loss).module(validate=False, **kw) for kw in loss_kwargs]
    sharing = {"shared_loss": [list(range(len(SEEDS)))] if shared else None, "row_options": row_options,
               "batch_groups": batch_groups, "row_none": LOSSES.get(loss).row_none if row_options else None}  # fmt: skip
    if grouped:  # the losses and how they share calls as one object, as the bench passes them
        losses, sharing = PackedLosses(losses, **sharing), {}
    histories = fit_packed(
        packed, losses, x, y, lrs=lrs, weight_decays=decays, generators=[torch.Generator().manual_seed(s) for s in SEEDS],
        transforms=[list(transforms)] * len(SEEDS), **sharing, **options,
    )  # fmt: skip
    packed.unstack_into(models)
    return alone, list(zip(models, histories))


def _assert_same(alone, packed, rtol=1e-4, atol=1e-5):
    for (m1, h1), (m2, h2) in zip(alone, packed):
        for p1, p2 in zip(m1.parameters(), m2.parameters()):
            torch.testing.assert_close(p2, p1, rtol=rtol, atol=atol)
        assert len(h1) == len(h2)
        for r1, r2 in zip(h1, h2):
            assert r1.keys() == r2.keys()
            for key in r1:
                assert r2[key] == pytest.approx(r1[key], rel=rtol, abs=atol, nan_ok=True), key


BASE = {"epochs": 3, "batch_size": 32, "lr_final": 1e-3}


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("decay_on", ["all", "weights"])
@pytest.mark.parametrize("per_run", [False, True], ids=["the pack at once", "run by run (large parameters)"])
def test_each_optimizer_as_torch_computes_it(optimizer, decay_on, per_run, monkeypatch):
    if per_run:  # (every parameter counts as large: each run's slice updated on its own, Adam by torch's fused kernel)
        monkeypatch.setattr(packed_module, "PER_RUN_FROM", 1)
    _assert_same(*_both_ways(optimizer=optimizer, weight_decay_on=decay_on, momentum=0.9, **BASE))


@pytest.mark.parametrize("mode", ["mean", "sum"])
def test_the_text_model_packs_as_its_runs_compute_alone(mode):
    from lossbench.models.text import PAD_ID, BagOfEmbeddings

    torch.manual_seed(0)
    models = [BagOfEmbeddings(40, 3, 8, mode) for _ in range(3)]
    tokens = torch.randint(1, 40, (3, 5, 6))
    tokens[:, 0] = PAD_ID  # a document of padding only: zeros, as alone
    tokens[:, 1, 2:] = PAD_ID
    packed = PackedModel(models)
    out = packed(tokens)
    alone = [m(tokens[k]) for k, m in enumerate(models)]
    torch.testing.assert_close(out, torch.stack(alone))
    grads = torch.autograd.grad(out.sum(), packed.params)
    for k, (m, a) in enumerate(zip(models, alone)):
        for g, own in zip(grads, torch.autograd.grad(a.sum(), list(m.parameters()))):
            torch.testing.assert_close(g[k], own)
    shared = tokens[0]
    torch.testing.assert_close(packed.eval_logits(shared), torch.stack([m(shared) for m in models]).detach())
    with pytest.raises(IndexError, match=r"token ids must lie in \[0, 40\)"):  # (packed, it would read another run's table)
        packed(tokens + 40)
    # a large table packs, but the bench trains it one run at a time on the CPU (faster there)
    large = BagOfEmbeddings(2000, 3, 64, mode)
    assert unpackable_model(large) is None and PackedModel([large, large]).size == 2
    assert faster_alone(large) == "its embedding table (embedding) trains faster one run at a time on the CPU"
    assert faster_alone(models[0]) is None


def test_training_without_weight_decay_as_fit_does():
    _assert_same(*_both_ways(kind="mlp", optimizer="sgd", weight_decay_on="none", decays=[0.0] * len(SEEDS), **BASE))
    x, y = _data()
    with pytest.raises(ValueError, match="weight_decay_on='none' trains without weight decay"):
        fit_packed(PackedModel([_model("linear", 0)]), [LOSSES.get("cross_entropy").module()], x, y, lrs=[0.1],
                   weight_decays=[1e-3], generators=[torch.Generator()], weight_decay_on="none", **BASE)  # fmt: skip


def test_runs_that_share_one_transform_object_are_refused():
    # its state (the gradient normaliser's moving norm) would be every run's: passed [[t]] * K, say
    x, y = _data()
    shared = TRANSFORMS.get("grad_normalizer").factory()
    ce = LOSSES.get("cross_entropy").module()
    with pytest.raises(ValueError, match=r"^runs 0 and 1 share one GradientNormalizer object: give each run its own"):
        fit_packed(PackedModel([_model("linear", 0), _model("linear", 1)]), [ce, ce], x, y, lrs=[0.1, 0.1],
                   generators=[torch.Generator(), torch.Generator()], transforms=[[shared]] * 2, **BASE)  # fmt: skip


@pytest.mark.parametrize("schedule", ["step", "epoch"])
def test_epoch_layout_and_lr_schedule(schedule):
    _assert_same(*_both_ways(kind="mlp", lr_schedule=schedule, repeat=3, drop_last=True, **BASE))


@pytest.mark.parametrize("schedule", ["step", "epoch"])
def test_runs_below_lr_final_keep_their_lr_packed_as_alone(schedule):
    lrs = [1e-5, 0.2, 5e-5, 0.05][: len(SEEDS)]  # two runs start below lr_final, two above
    _assert_same(*_both_ways(lrs=lrs, lr_schedule=schedule, **{**BASE, "lr_final": 1e-4}))


@pytest.mark.parametrize(
    "transforms",
    [[("flooding", {"b": 0.6})], [("iflood", {"b": 0.5})], [("clip_norm", {"max_norm": 0.3})],
     [("clip_norm_smooth", {"max_norm": 0.3})], ["grad_normalizer"], [("flooding", {"b": 0.6}), ("clip_norm", {"max_norm": 0.5})],
     [("clip_norm", {"max_norm": 0.5}), ("iflood", {"b": 0.5})],  # a gradient transform listed before a per-sample one
     [("ascent_descent", {"ascent_ratio": 0.3}), ("clip_norm", {"max_norm": 0.3})]],  # its sign flip on odd steps, run by run
)  # fmt: skip
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("hooks", [True, False])
def test_transforms_run_per_run(transforms, shared, hooks, monkeypatch):
    if not hooks:  # each run's instance applied on its own slice, as for a transform without a packed hook
        for name in ("flooding", "iflood", "clip_norm", "clip_norm_smooth", "grad_normalizer"):
            monkeypatch.setattr(TRANSFORMS.get(name).factory, "packed", classmethod(lambda cls, runs: None))
    _assert_same(*_both_ways(transforms=transforms, shared=shared, **BASE))


ROW_KWARGS = {
    "focal": {"gamma": (0.0, 1.0, 2.0, 5.0)}, "hinge": {"margin": (0.0, 0.5, 1.0, 5.0), "p": (1, 2, 2, 1)}, "poly1": {"epsilon": (-1.0, 0.0, 1.0, 4.0)},
    "exact": {"sigma": (0.3, 0.5, 1.0, 2.0), "margin": (0.5, None, 0.0, 5.0)},  # None: no clip, inf per row
}  # fmt: skip


def test_every_row_parameter_is_tested_packed():
    assert {(n, info.row_params) for n, info in LOSSES.items() if info.row_params} == {
        (n, tuple(params)) for n, params in ROW_KWARGS.items()
    }


@pytest.mark.parametrize("loss", list(ROW_KWARGS))
@pytest.mark.parametrize("shared", [True, False], ids=["one call, a value per row", "one call per run"])
def test_each_run_keeps_its_own_loss_arguments(loss, shared):
    params = ROW_KWARGS[loss]
    kwargs = [{name: values[k] for name, values in params.items()} for k in range(len(SEEDS))]
    row_options = tuple(params) if shared else ()
    _assert_same(*_both_ways(loss=loss, loss_kwargs=kwargs, shared=shared, row_options=row_options, **BASE))


@pytest.mark.parametrize("loss", ["focal", "exact"])
def test_the_losses_may_come_grouped_with_how_they_share_calls(loss):
    if loss == "focal":
        kwargs, sharing = [{"gamma": v} for v in ROW_KWARGS["focal"]["gamma"]], {"row_options": ("gamma",)}
    else:
        kwargs, sharing = [{"standardize": True, "sigma": 0.5}] * len(SEEDS), {"batch_groups": "groups"}
    _assert_same(*_both_ways(loss=loss, loss_kwargs=kwargs, grouped=True, **sharing, **BASE))
    grouped = PackedLosses([LOSSES.get(loss).module()])
    if loss == "exact":  # a None with no value per row cannot share a call
        two = PackedLosses([LOSSES.get(loss).module(margin=m) for m in (None, 1.0)], [[0, 1]], ("margin",))
        with pytest.raises(ValueError, match="'margin' is None for some runs of a shared call"):
            two(torch.randn(2, 4, 3), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="come with the PackedLosses"):
        fit_packed(PackedModel([_model("linear", 0)]), grouped, *_data(), lrs=[0.1], generators=[torch.Generator()],
                   shared_loss=[[0]], **BASE)  # fmt: skip


@pytest.mark.parametrize("option", ["standardize", "log_of_mean"])
@pytest.mark.parametrize("shared", [True, False], ids=["one call, a group per run", "one call per run"])
def test_a_batch_level_loss_shares_a_call_as_one_group_per_run(shared, option):
    # EXACT's batch standardisation (a mean and std per run's batch) and the paper's recipe around it;
    # -log of each run's batch's mean P
    kwargs = [{option: True, "sigma": s, "margin": 1.0} for s in (0.5, 0.5, 0.5, 0.5)]
    both = _both_ways(loss="exact", loss_kwargs=kwargs, transforms=["grad_normalizer"], shared=shared,
                      batch_groups="groups" if shared else None, **BASE)  # fmt: skip
    _assert_same(*both)


def _ignoring_data():
    x, y = _data()
    y[::3] = -100  # a third of the targets ignored
    return x, y


@pytest.mark.parametrize("loss, kwargs, ignored", [
    ("cross_entropy", {}, True), ("focal", {"gamma": 2.0}, True),
    ("cross_entropy", {"weight": torch.tensor([1.0, 5.0, 0.2])}, False), ("focal", {"alpha": torch.tensor([0.2, 1.0, 0.5])}, True),
    ("hinge", {"weight": torch.tensor([1.0, 5.0, 0.2])}, False),
], ids=["ignored", "focal ignored", "weight", "focal alpha ignored", "hinge weight"])  # fmt: skip
def test_a_shared_call_keeps_each_runs_mean_as_alone(loss, kwargs, ignored):
    # alone, "mean" divides by the run's counted targets (ignore_index) or their summed class weights, where a
    # shared call averaged every row evenly: such runs keep calls of their own
    data = _ignoring_data() if ignored else None
    _assert_same(*_both_ways(loss=loss, loss_kwargs=[kwargs] * len(SEEDS), data=data, **BASE))
    losses = [LOSSES.get(loss).module(**kwargs) for _ in range(2)]
    weighted = {"weight", "alpha"} & set(kwargs)
    assert PackedLosses(losses, [[0, 1]]).groups == ([[0], [1]] if weighted else [[0, 1]])
    plain = PackedLosses([LOSSES.get(loss).module() for _ in range(2)], [[0, 1]])
    assert plain.apart(set()) is plain and plain.apart({1}).groups == [[0], [1]]  # (the bench's calls: unchanged)


@pytest.mark.parametrize("loss, kwargs", [("exact", {"standardize": True}), ("soft_f1", {}), ("f1_weighted_bce", {})])
def test_a_batch_level_loss_without_batch_groups_keeps_a_call_per_run(loss, kwargs):
    # its rows in one call would be one batch: the runs' rows mixed (one mean and std, one soft F1)
    info, gen = LOSSES.get(loss), torch.Generator().manual_seed(0)
    logits = torch.randn(2, 8, 3, generator=gen)
    logits[1] *= 50
    y = torch.randint(0, 3, (2, 8), generator=gen) if info.signature == "softmax" else (torch.rand(2, 8, 3, generator=gen) > 0.5).float()
    losses = [info.module(**kwargs) for _ in range(2)]
    packed = PackedLosses(losses, [[0, 1]])
    torch.testing.assert_close(packed(logits, y), torch.stack([one(logits[k], y[k]) for k, one in enumerate(losses)]))
    assert packed.groups == [[0], [1]]


def test_a_diverging_run_leaves_the_others_as_they_are_alone():
    lrs = [0.1, 1e38, 0.05, 1.0]
    alone, packed = _both_ways(lrs=lrs, epochs=2, batch_size=32, lr_final=None)
    assert not all(math.isfinite(v) for v in packed[1][1][-1].values() if isinstance(v, float))
    _assert_same([alone[i] for i in (0, 2, 3)], [packed[i] for i in (0, 2, 3)])


def test_the_runs_batches_are_gathered_into_one_buffer():
    data, labels = torch.arange(40.0).view(10, 4), torch.arange(10)
    idx = torch.tensor([[1, 3, 5], [9, 0, 0]])
    buffer, label_buffer = torch.empty(2 * 3 * 4), torch.empty(2 * 3, dtype=torch.long)
    for rows in (idx, idx[:, :2]):  # a full batch, then the epoch's shorter last one
        x, y = batch_rows(data, rows, buffer), batch_rows(labels, rows, label_buffer)
        assert torch.equal(x, data[rows]) and torch.equal(y, labels[rows])
        assert x.data_ptr() == buffer.data_ptr() and y.data_ptr() == label_buffer.data_ptr()
    assert torch.equal(batch_rows(data, idx), data[idx])


def test_what_cannot_pack_is_refused():
    assert unpackable_model(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))) is not None
    assert unpackable_model(MLP(3, 2, [4], dropout=0.5)) is not None
    assert unpackable_model(MLP(3, 2, [4])) is None
    with pytest.raises(ValueError, match="cannot be packed"):
        PackedModel([nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))])
    with pytest.raises(ValueError, match="same parameters"):
        PackedModel([MLP(3, 2, [4]), MLP(3, 2, [5])])
    x, y = _data()
    packed = PackedModel([_model("linear", s) for s in (0, 1)])
    loss = LOSSES.get("cross_entropy").module()
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    with pytest.raises(ValueError, match="packed step cannot run it: transform 'gradient_penalty' does not pack"):
        fit_packed(packed, [loss, loss], x, y, epochs=1, batch_size=32, lrs=[0.1, 0.1], generators=gens,
                   transforms=[["gradient_penalty"]] * 2)  # fmt: skip
    with pytest.raises(ValueError, match="packed step cannot run it: transform 'mgs' replaces the optimiser step"):
        fit_packed(packed, [loss, loss], x, y, epochs=1, batch_size=32, lrs=[0.1, 0.1], generators=gens,
                   transforms=[["mgs"]] * 2)  # fmt: skip
    for momentum in (-0.1, 1.0):  # (as fit refuses it: torch's SGD takes momentum >= 0, and >= 1 never decays)
        with pytest.raises(ValueError, match=rf"momentum must lie in \[0.0, 1.0\), got {momentum}"):
            fit_packed(packed, [loss, loss], x, y, epochs=1, batch_size=32, lrs=[0.1, 0.1], generators=gens,
                       momentum=momentum)  # fmt: skip
    with pytest.raises(ValueError, match="2 runs"):
        fit_packed(packed, [loss], x, y, epochs=1, batch_size=32, lrs=[0.1, 0.1], generators=gens)
    with pytest.raises(ValueError, match="lr"):
        fit_packed(packed, [loss, loss], x, y, epochs=1, batch_size=32, lrs=[0.1, -1.0], generators=gens)
    # a loss's own parameters (fit trains them with the model's; a pack would leave them as they are)
    for trained in (LOSSES.get("beta_bernoulli_relaxation").module(), LOSSES.get("exact").module(learn_sigma=True)):
        with pytest.raises(ValueError, match=f"run 1's loss {type(trained).__name__} has trainable parameters"):
            fit_packed(packed, [loss, trained], x, y, epochs=1, batch_size=32, lrs=[0.1, 0.1], generators=gens)
    # a per-sample transform after another loss wrapper, as TrainStep refuses it (it raised an IndexError)
    for chain in (["flooding", "iflood"], ["iflood", "iflood"]):
        with pytest.raises(ValueError, match=r"run 0's per-sample transforms \['iflood'\] must come first"):
            fit_packed(packed, [loss, loss], x, y, epochs=1, batch_size=32, lrs=[0.1, 0.1], generators=gens,
                       transforms=[chain] * 2)  # fmt: skip
    # a per-sample transform on a batch-level loss, as TrainStep refuses it (with or without a shared call)
    batch = LOSSES.get("exact").module(standardize=True)
    for sharing in ({}, {"shared_loss": [[0, 1]], "batch_groups": "groups"}):
        with pytest.raises(ValueError, match="iflood needs one loss per sample; run 0's ExactLoss is a batch-level loss"):
            fit_packed(packed, [batch, batch], x, y, epochs=1, batch_size=32, lrs=[0.1, 0.1], generators=gens,
                       transforms=[[("iflood", {"b": 0.1})]] * 2, **sharing)  # fmt: skip


@pytest.mark.parametrize("hooks", [True, False])
def test_runs_of_several_methods_share_a_pack(hooks, monkeypatch):
    # each run its own loss and chain of transforms, a chain in two stretches ([A, B, ..., A]), losses
    # sharing calls within a method or not: each run as alone, its statistics its own chain's only
    if not hooks:
        for name in ("flooding", "clip_norm", "grad_normalizer"):
            monkeypatch.setattr(TRANSFORMS.get(name).factory, "packed", classmethod(lambda cls, runs: None))
    flood = [("flooding", {"b": 0.6})]
    runs = [("hinge", {"p": 2}, flood), ("hinge", {"p": 1}, flood), ("cross_entropy", {}, []),
            ("exact", {"sigma": 0.5}, ["grad_normalizer"]), ("exact", {"sigma": 2.0, "margin": 1.0}, ["grad_normalizer"]),
            ("cross_entropy", {}, [("clip_norm", {"max_norm": 0.3})]), ("hinge", {"p": 1}, flood)]  # fmt: skip
    x, y = _data()
    seeds = range(len(runs))
    alone = []
    for seed, (loss, kw, transforms) in zip(seeds, runs):
        model = _model("linear", seed)
        history = fit(model, LOSSES.get(loss).module(validate=False, **kw), x, y, lr=0.2, weight_decay=1e-3,
                      transforms=transforms, generator=torch.Generator().manual_seed(seed), **BASE)  # fmt: skip
        alone.append((model, history))
    models = [_model("linear", seed) for seed in seeds]
    packed = PackedModel(models)
    losses = [LOSSES.get(loss).module(validate=False, **kw) for loss, kw, _ in runs]
    exact = LOSSES.get("exact")
    losses = PackedLosses.join([
        PackedLosses(losses[:2], [[0, 1]], ("p",)), PackedLosses(losses[2:3]),
        PackedLosses(losses[3:5], [[0, 1]], exact.row_params, None, exact.row_none), PackedLosses(losses[5:]),
    ])  # fmt: skip
    assert losses.groups == [[0, 1], [2], [3, 4], [5], [6]]
    histories = fit_packed(packed, losses, x, y, lrs=[0.2] * len(runs), weight_decays=[1e-3] * len(runs),
                           generators=[torch.Generator().manual_seed(s) for s in seeds],
                           transforms=[t for _, _, t in runs], **BASE)  # fmt: skip
    packed.unstack_into(models)
    _assert_same(alone, list(zip(models, histories)))
    assert "flooding/flooded" in histories[0][0] and "flooding/flooded" not in histories[2][0]


def test_a_shared_call_of_runs_apart_gives_each_run_its_own_loss_and_gradient():
    # runs 0 and 2 share one call, run 1 between them has its own: their rows are gathered once
    losses = [LOSSES.get("hinge").module(validate=False, p=p) for p in (1, 1, 2)]
    logits = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = torch.randint(0, 4, (3, 5), generator=torch.Generator().manual_seed(1))
    values = PackedLosses(losses, [[0, 2]], ("p",))(logits, y)
    (grad,) = torch.autograd.grad((values * torch.tensor([1.0, 2.0, 3.0])).sum(), logits)
    for k, loss in enumerate(losses):
        one = logits[k].detach().requires_grad_()
        value = loss(one, y[k])
        value.backward()
        torch.testing.assert_close(values[k], value)
        torch.testing.assert_close(grad[k], (k + 1) * one.grad)


def test_runs_with_and_without_a_per_sample_transform_do_not_share_a_pack():
    x, y = _data()
    loss = LOSSES.get("cross_entropy").module()
    with pytest.raises(ValueError, match="per-sample"):
        fit_packed(PackedModel([_model("linear", s) for s in (0, 1)]), [loss, loss], x, y, lrs=[0.1, 0.1],
                   generators=[torch.Generator().manual_seed(s) for s in (0, 1)], transforms=[[("iflood", {"b": 0.1})], []], **BASE)  # fmt: skip


class _Sometimes(Transform):
    """Records a statistic only on every ``every``-th step (0: never), run by run (no packed hook)."""

    name, stage, packs = "sometimes", "objective", True

    def __init__(self, every: int = 1) -> None:
        self.every = every

    def objective(self, value, ctx):
        if self.every and ctx.step % self.every == 0:
            self.record(ctx, "hit", 1.0)
        return value


@pytest.mark.parametrize(
    "chains",
    [[lambda: [_Sometimes(1)], lambda: [_Sometimes(2), ("flooding", {"b": 0.0})]],
     [lambda: [_Sometimes(1)], lambda: [_Sometimes(2)]],
     [lambda: [_Sometimes(1)], lambda: [_Sometimes(0), ("flooding", {"b": 0.0})]],
     [lambda: [_Sometimes(2)], lambda: [("flooding", {"b": 0.0}), _Sometimes(3)]]],
    ids=["two segments", "one segment", "one never records", "in another place"],
)  # fmt: skip
def test_a_statistic_recorded_on_some_steps_averages_as_alone(chains):
    # fit averages what a run recorded over the epoch's steps, and a run that recorded nothing has no value
    x, y = _data()
    alone = [
        fit(_model("linear", k), LOSSES.get("cross_entropy").module(), x, y, lr=0.1, transforms=make(),
            generator=torch.Generator().manual_seed(k), epochs=2, batch_size=32)  # fmt: skip
        for k, make in enumerate(chains)
    ]
    packed = fit_packed(PackedModel([_model("linear", k) for k in range(len(chains))]),
                        [LOSSES.get("cross_entropy").module() for _ in chains], x, y, lrs=[0.1] * len(chains),
                        generators=[torch.Generator().manual_seed(k) for k in range(len(chains))],
                        transforms=[make() for make in chains], epochs=2, batch_size=32)  # fmt: skip
    for h1, h2 in zip(alone, packed):
        assert [r.get("sometimes/hit") for r in h2] == [r.get("sometimes/hit") for r in h1]


def test_a_shared_calls_row_options_follow_their_changes_and_are_kept_once():
    """Each group's per-row option tensor is rebuilt when a run's value changes (a schedule) and only
    its last one is kept (a schedule over many epochs keeps no tensor per epoch)."""
    from lossbench.train.packed import PackedLosses

    losses = [LOSSES.get("focal").module(gamma=g) for g in (1.0, 2.0)]
    packed = PackedLosses(losses, [[0, 1]], row_options=("gamma",))
    gen = torch.Generator().manual_seed(0)
    logits, y = torch.randn(2, 16, 4, generator=gen), torch.randint(0, 4, (2, 16), generator=gen)
    for epoch in range(5):
        losses[1]._options["gamma"] = 2.0 + epoch  # (as a schedule sets it between epochs)
        together = packed(logits, y)
        alone = torch.stack([loss(logits[k], y[k], reduction="mean") for k, loss in enumerate(losses)])
        torch.testing.assert_close(together, alone)
        assert len(packed._row_tensors) == 1
    first = packed._row_tensors[next(iter(packed._row_tensors))][1]
    packed(logits, y)
    assert packed._row_tensors[next(iter(packed._row_tensors))][1] is first  # the same values: no new tensor


def test_a_packed_gradient_normaliser_goes_on_from_each_instances_state_and_keeps_it():
    """As fit does: two fit_packed calls with the same instances (or a restored state) continue each
    run's moving norm, and each instance's state_dict holds its run's (the hook kept them to itself)."""
    from lossbench.train.clipping import GradientNormalizer

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)

    def model(seed):
        torch.manual_seed(seed)
        return LinearClassifier(5, 3)

    alone, ones = [model(s) for s in (1, 2)], [GradientNormalizer(momentum=m) for m in (0.9, 0.5)]
    for net, t, s in zip(alone, ones, (1, 2)):
        gen = torch.Generator().manual_seed(s)
        for _ in range(2):
            fit(net, LOSSES.get("cross_entropy").module(), x, y, epochs=1, batch_size=16, lr=0.5, transforms=[t], generator=gen)
    nets, packed_ones = [model(s) for s in (1, 2)], [GradientNormalizer(momentum=m) for m in (0.9, 0.5)]
    pm, gens = PackedModel(nets), [torch.Generator().manual_seed(s) for s in (1, 2)]
    for _ in range(2):
        fit_packed(pm, [LOSSES.get("cross_entropy").module(), LOSSES.get("cross_entropy").module()], x, y, epochs=1, batch_size=16, lrs=[0.5, 0.5],
                   transforms=[[t] for t in packed_ones], generators=gens)  # fmt: skip
    pm.unstack_into(nets)
    for a, b, ta, tb in zip(alone, nets, ones, packed_ones):
        torch.testing.assert_close(tb.state_dict()["moving_norm"], ta.state_dict()["moving_norm"])
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-5)


def test_a_shared_loss_group_of_runs_whose_options_differ_beyond_the_row_options_is_refused():
    """One call gives every run of a group its first run's options: focal with gamma 0 and 3 in one
    group without gamma per row would train the second run as cross-entropy."""
    focal = LOSSES.get("focal").module
    with pytest.raises(ValueError, match=r"shared_loss group \[0, 1\]: run 1 differs from run 0 in option 'gamma'"):
        PackedLosses([focal(gamma=0.0), focal(gamma=3.0)], shared_loss=[[0, 1]])
    with pytest.raises(ValueError, match="run 1 differs from run 0 in its loss"):
        PackedLosses([focal(), LOSSES.get("cross_entropy").module()], shared_loss=[[0, 1]])
    shared = PackedLosses([focal(gamma=0.0), focal(gamma=3.0)], shared_loss=[[0, 1]], row_options=["gamma"])
    assert shared.groups == [[0, 1]]
    assert PackedLosses([focal(gamma=2), focal()], shared_loss=[[0, 1]]).groups == [[0, 1]]  # (2 is the default, 2.0)


def test_held_out_targets_with_ignored_entries_get_calls_of_their_own():
    """A shared call averages its rows evenly: a run whose targets hold ignore_index must be scored alone."""
    ce = LOSSES.get("cross_entropy").module
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(2, 8, 3, generator=g), torch.randint(0, 3, (8,), generator=g)
    y[:3] = -100
    losses = PackedLosses([ce(), ce()], shared_loss=[[0, 1]])
    scored = losses.for_targets(y)(logits, y.expand(2, 8))
    alone = torch.stack([ce()(logits[k], y) for k in range(2)])
    torch.testing.assert_close(scored, alone)
    assert losses.for_targets(y.clamp(min=0)) is losses  # (no ignored target: the shared call as it is)


CountsWeightedCE = loss_module(counts_weighted_ce, "CountsWeightedCE")
HardestHalfCE = loss_module(hardest_half_ce, "HardestHalfCE")
PositivesWeighFourBCE = loss_module(positives_weigh_four_bce, "PositivesWeighFourBCE")


def test_a_loss_whose_rows_depend_on_the_batch_keeps_a_call_of_its_own():
    # its mean is the even mean of its rows, but a shared call's median was the pack's, not the run's
    x, y = _data()
    alone = []
    for seed, lr, wd in zip(SEEDS, LRS, DECAYS):
        model = _model("linear", seed)
        alone.append((model, fit(model, HardestHalfCE(), x, y, lr=lr, weight_decay=wd,
                                 generator=torch.Generator().manual_seed(seed), **BASE)))  # fmt: skip
    models = [_model("linear", seed) for seed in SEEDS]
    packed = PackedModel(models)
    histories = fit_packed(packed, [HardestHalfCE() for _ in SEEDS], x, y, lrs=LRS, weight_decays=DECAYS,
                           shared_loss=[list(range(len(SEEDS)))], generators=[torch.Generator().manual_seed(s) for s in SEEDS],
                           **BASE)  # fmt: skip
    packed.unstack_into(models)
    _assert_same(alone, list(zip(models, histories)))


def test_a_loss_whose_mean_is_not_the_even_mean_of_its_rows_keeps_a_call_of_its_own():
    # the shared call's even mean of a run's rows is not a weighted mean: the losses are checked on a few rows of the
    # data (mean_probe), whatever their options are named
    x, y = _data()
    counts = torch.bincount(y, minlength=3).double()
    alone = []
    for seed, lr, wd in zip(SEEDS, LRS, DECAYS):
        model = _model("linear", seed)
        history = fit(model, CountsWeightedCE(class_counts=counts, power=2.0), x, y, lr=lr, weight_decay=wd,
                      generator=torch.Generator().manual_seed(seed), **BASE)  # fmt: skip
        alone.append((model, history))
    models = [_model("linear", seed) for seed in SEEDS]
    packed = PackedModel(models)
    losses = [CountsWeightedCE(class_counts=counts, power=2.0) for _ in SEEDS]
    histories = fit_packed(packed, losses, x, y, lrs=LRS, weight_decays=DECAYS, shared_loss=[list(range(len(SEEDS)))],
                           generators=[torch.Generator().manual_seed(s) for s in SEEDS], **BASE)  # fmt: skip
    packed.unstack_into(models)
    _assert_same(alone, list(zip(models, histories)))
    probe = mean_probe(packed, x, y)
    assert len(set(probe[1].tolist())) == 3 and probe[0].shape == (len(probe[1]), 3)
    assert PackedLosses(losses[:2], [[0, 1]], probe=lambda: probe).groups == [[0], [1]]
    plain = [LOSSES.get(name).module(class_counts=counts) if "class_counts" in LOSSES.get(name).requires
             else LOSSES.get(name).module() for name in ("cross_entropy", "focal", "weighted_cross_entropy") for _ in range(2)]  # fmt: skip
    assert PackedLosses(plain, [[0, 1], [2, 3], [4, 5]], probe=lambda: probe).groups == [[0, 1], [2, 3], [4, 5]]  # (their means are)


@pytest.mark.parametrize("name", [n for n in LOSSES.names() if LOSSES.get(n).signature in ("softmax", "sigmoid", "multilabel")])
def test_lossbench_s_own_losses_have_even_means_as_a_pack_reads_them_by_name(name):
    # a pack skips the probe for lossbench's own losses and reads only their class-weight options: at their defaults
    # each one's mean is the even mean of its rows, on the probe's uneven classes and on each class alone
    info = LOSSES.get(name)
    gen = torch.Generator().manual_seed(0)
    if info.signature == "softmax":
        y = torch.cat([torch.full((n,), c) for c, n in enumerate((30, 60, 90))])
        counts = torch.bincount(y).double()
    else:
        y = (torch.rand(60, 4, generator=gen) < 0.3).float()
        counts = y.sum(0).double()
    x = torch.randn(len(y), 6, generator=gen)
    loss = info.module(**({"class_counts": counts} if "class_counts" in info.requires else {}))
    pack = PackedModel([LinearClassifier(6, 3 if y.ndim == 1 else 4, zero_first_logit=False) for _ in range(2)])
    # (a batch-level loss, soft F1, never shares a call by rows: its rows depend on the batch, which even_mean sees)
    assert packed_module._own_loss(loss) and even_mean(loss, *mean_probe(pack, x, y)) is not batch_level(loss)


def test_a_weighted_mean_is_found_even_where_the_probe_batch_weighs_one_on_average():
    # classes in proportions 1:2:3 and balanced weights n / (C n_c): on the probe's 1, 2 and 3 rows of them the
    # weights average 1 and the weighted mean is the even one; each class's rows alone show the weights
    y = torch.cat([torch.full((n,), c) for c, n in enumerate((100, 200, 300))])
    x = torch.randn(len(y), 6, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(y).double()
    losses = [CountsWeightedCE(class_counts=counts) for _ in range(2)]
    probe = mean_probe(PackedModel([_model("linear", s) for s in (0, 1)]), x, y)
    assert torch.bincount(probe[1]).tolist() == [1, 2, 3]
    mixed = losses[0](*probe, reduction="none").mean()
    torch.testing.assert_close(losses[0](*probe), mixed)  # (the whole probe batch alone would miss it)
    assert PackedLosses(losses, [[0, 1]], probe=lambda: probe).groups == [[0], [1]]


def test_a_user_loss_whose_mean_is_uneven_keeps_calls_of_its_own_whatever_it_wraps_or_weighs():
    import functools

    from lossbench.losses import cross_entropy

    y = torch.cat([torch.full((n,), c) for c, n in enumerate(int(300 * 0.8**c) + 2 for c in range(26))])  # a long tail
    x = torch.randn(len(y), 6, generator=torch.Generator().manual_seed(0))
    pack = PackedModel([LinearClassifier(6, 26, zero_first_logit=False) for _ in range(2)])
    tail = torch.where(torch.arange(26) >= 14, 2.0, 1.0)  # weights on the tail classes only

    @functools.wraps(cross_entropy)  # (its module and name lossbench's, its code the user's)
    def wrapped(logits, target, reduction="mean", **kwargs):
        return cross_entropy(logits, target, weight=tail, reduction=reduction)

    def leaves_ignored_out(logits, target, reduction="mean"):  # F.cross_entropy's ignore_index, unreadable to a pack
        return F.cross_entropy(logits, target, reduction=reduction)

    assert not packed_module._own_loss(wrapped) and packed_module._own_loss(cross_entropy)
    assert packed_module._own_loss(LOSSES.get("cross_entropy").module()) and not packed_module._own_loss(CountsWeightedCE(class_counts=tail))
    probe = mean_probe(pack, x, y)
    assert set(probe[1].tolist()) == set(range(26))  # every class, the tail's included
    assert PackedLosses([wrapped, wrapped], [[0, 1]], probe=lambda: probe).groups == [[0], [1]]
    ignored = y.clone()
    ignored[::5] = -100
    probe = mean_probe(pack, x, ignored)
    assert -100 in probe[1].tolist()
    assert PackedLosses([leaves_ignored_out] * 2, [[0, 1]], probe=lambda: probe).groups == [[0], [1]]
    plain = lambda logits, target, reduction="mean": F.cross_entropy(logits, target.clamp(min=0), reduction=reduction)  # noqa: E731
    assert PackedLosses([plain] * 2, [[0, 1]], probe=lambda: probe).groups == [[0, 1]]  # (an even mean still shares)


def test_a_user_loss_fed_through_the_bench_s_adapter_is_judged_as_the_user_s_and_trains_as_alone():
    # the bench wraps a binary sigmoid loss in its LossAdapter (defined in lossbench): the pack judges the wrapped
    # loss, probes its uneven mean and gives each run a call of its own, so packed training is training alone
    from lossbench.bench.methods import LossAdapter

    adapter = lambda: LossAdapter(PositivesWeighFourBCE(validate=False), "sigmoid", "multiclass")  # noqa: E731
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=gen)
    y = (x[:, 0] + 0.5 * torch.randn(300, generator=gen) > 0.8).long()
    seeds, opts = [3, 4], dict(epochs=3, batch_size=32, lr_final=None)

    def model(seed):
        torch.manual_seed(seed)
        return LinearClassifier(6, 1)

    assert not packed_module._own_loss(adapter())
    bce = LOSSES.get("binary_cross_entropy").module()
    assert packed_module._own_loss(LossAdapter(bce, "sigmoid", "multiclass"))
    soft_f1 = LOSSES.get("soft_f1").module()
    assert batch_level(soft_f1) and batch_level(LossAdapter(soft_f1, "sigmoid", "multiclass"))
    alone = []
    for seed in seeds:
        m = model(seed)
        alone.append((m, fit(m, adapter(), x, y, lr=0.5, generator=torch.Generator().manual_seed(seed), **opts)))
    models = [model(seed) for seed in seeds]
    packed = PackedModel(models)
    assert PackedLosses([adapter(), adapter()], [[0, 1]], probe=lambda: mean_probe(packed, x, y)).groups == [[0], [1]]
    histories = fit_packed(packed, [adapter() for _ in seeds], x, y, lrs=[0.5, 0.5], shared_loss=[[0, 1]],
                           generators=[torch.Generator().manual_seed(s) for s in seeds], **opts)  # fmt: skip
    packed.unstack_into(models)
    _assert_same(alone, list(zip(models, histories)))


def test_a_pack_trains_in_training_mode_and_scores_in_eval_mode_as_a_run_alone():
    torch.manual_seed(0)
    models = [EvalHalves(6, 3) for _ in range(2)]
    for model in models:
        model.eval()  # (the pack trains in training mode whatever its models' mode, as fit does)
    x = torch.randn(5, 6)
    packed = PackedModel(models)
    with torch.no_grad():
        trained = torch.stack([m.train()(x) for m in models])
        scored = torch.stack([m.eval()(x) for m in models])
    torch.testing.assert_close(packed(torch.stack([x, x])).detach(), trained)
    torch.testing.assert_close(packed.eval_logits(x), scored)
    torch.testing.assert_close(packed.eval_logits(x, batch_size=2), scored)
    torch.testing.assert_close(packed(torch.stack([x, x])).detach(), trained)  # (back in training mode)


@pytest.mark.parametrize("model, reason", [
    (Frozen(6, 3), "its parameter proj is frozen (requires_grad=False)"),
    (Indexed(6, 3), "its parameter perm is not floating-point (torch.int64)"),
    (Tied(6, 3), "its parameter b.weight is a.weight (tied or shared parameters)"),
    (nn.Sequential(nn.Embedding(10, 4, padding_idx=0), nn.Flatten(), nn.Linear(8, 3)),
     "its embedding 0 has padding_idx (vmap would train the other runs' padding rows)"),
    (nn.Sequential(nn.Embedding(10, 4, max_norm=1.0), nn.Flatten(), nn.Linear(8, 3)),
     "its embedding 0 has max_norm (it renormalises the table in place)"),
], ids=["frozen", "integer", "tied", "padding_idx", "max_norm"])  # fmt: skip
def test_a_model_whose_parameters_a_pack_cannot_train_as_alone_is_refused(model, reason):
    # a pack trains each parameter as a float leaf of its own: a frozen one would train (or its backward fail), a
    # tied one would be untied in the pack's copy of the model
    assert unpackable_model(model) == reason
    with pytest.raises(ValueError, match=f"cannot be packed: {reason}".replace("(", r"\(").replace(")", r"\)")):
        PackedModel([model, model])


class _FunctionalDropout(nn.Module):
    """Dropout as a function call (no module for unpackable_model to see)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(self.fc(x), 0.5, training=self.training)


@pytest.mark.parametrize("model, mode, said", [
    (_FunctionalDropout(), "train", "called random operation"),
    (EvalSyncs(4, 3), "eval", "calling .item()"),
], ids=["random-op", "item"])  # fmt: skip
def test_a_forward_vmap_cannot_map_is_refused_with_what_it_means_for_a_pack(model, mode, said):
    packed, x = PackedModel([model, model]), torch.randn(5, 4)
    run = (lambda: packed(torch.stack([x, x]))) if mode == "train" else (lambda: packed.eval_logits(x))
    with pytest.raises(ValueError, match=f"^{type(model).__name__}'s forward cannot run packed: .*{re.escape(said)}.*"
                       "train it with fit, one run at a time$"):  # fmt: skip
        run()


def test_a_model_with_a_parameter_its_forward_leaves_out_is_refused_at_its_first_step():
    # alone the optimiser skips such a parameter; a pack's one backward raised autograd's error (the bench
    # trains such a model one run at a time: tests/bench/test_packing.py)
    x, y = _data()
    torch.manual_seed(0)
    packed = PackedModel([Unused(x.shape[1], 3), Unused(x.shape[1], 3)])
    loss = LOSSES.get("cross_entropy").module()
    with pytest.raises(ValueError, match="parameter aux.weight gets no gradient .* train such a model with fit"):
        fit_packed(packed, [loss, loss], x, y, epochs=1, batch_size=32, lrs=[0.1, 0.1],
                   generators=[torch.Generator().manual_seed(s) for s in (0, 1)])  # fmt: skip


@pytest.mark.parametrize("transform", ["clip_norm", "grad_normalizer"])
def test_a_norm_transform_packs_a_model_with_a_0_d_parameter_as_alone(transform):
    """A 0-d parameter's packed gradient is (K,): each run's norm takes it as the run's one entry."""
    from tests.train.test_mgs import _ScaledLinear

    x, y = torch.randn(64, 4, generator=torch.Generator().manual_seed(0)), torch.arange(64) % 3
    alone = []
    for seed, lr in zip(SEEDS[:2], LRS[:2]):
        torch.manual_seed(seed)
        model = _ScaledLinear()
        history = fit(model, LOSSES.get("cross_entropy").module(), x, y, epochs=2, batch_size=16, lr=lr, transforms=[transform],
                      generator=torch.Generator().manual_seed(seed))  # fmt: skip
        alone.append((model, history))
    models = []
    for seed in SEEDS[:2]:
        torch.manual_seed(seed)
        models.append(_ScaledLinear())
    packed = PackedModel(models)
    histories = fit_packed(packed, [LOSSES.get("cross_entropy").module() for _ in range(2)], x, y, epochs=2, batch_size=16, lrs=LRS[:2],
                           generators=[torch.Generator().manual_seed(s) for s in SEEDS[:2]], transforms=[[transform]] * 2)  # fmt: skip
    packed.unstack_into(models)
    _assert_same(alone, list(zip(models, histories)))


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_a_vmapped_models_large_parameters_update_run_by_run_as_alone(optimizer, monkeypatch):
    """vmap's gradient of an nn.Linear weight is strided; torch's fused CPU kernels of the run-by-run update
    read a run's slice as contiguous (a user's 784-128-10 MLP trained to another loss)."""
    monkeypatch.setattr(packed_module, "PER_RUN_FROM", 1)  # (every parameter run by run, small as it is)
    x, y = _data()

    def model(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(6, 7), nn.ReLU(), nn.Linear(7, 3))

    options = dict(epochs=2, batch_size=32, optimizer=optimizer, momentum=0.9 if optimizer == "sgd" else 0.0)
    alone = []
    for seed, lr, wd in zip(SEEDS, LRS, DECAYS):
        m = model(seed)
        history = fit(m, LOSSES.get("cross_entropy").module(), x, y, lr=lr * 0.1, weight_decay=wd,
                      generator=torch.Generator().manual_seed(seed), **options)  # fmt: skip
        alone.append((m, history))
    models = [model(seed) for seed in SEEDS]
    packed = PackedModel(models)
    histories = fit_packed(packed, [LOSSES.get("cross_entropy").module() for _ in SEEDS], x, y, lrs=[lr * 0.1 for lr in LRS],
                           weight_decays=DECAYS, generators=[torch.Generator().manual_seed(s) for s in SEEDS], **options)  # fmt: skip
    packed.unstack_into(models)
    _assert_same(alone, list(zip(models, histories)))


def test_models_of_another_class_are_not_packed_together():
    # the pack runs models[0]'s forward with every run's parameters
    class Scaled(LinearClassifier):  # the same parameters, another forward
        def forward(self, x):
            return 2 * super().forward(x)

    with pytest.raises(ValueError, match="packed models must be of one class"):
        PackedModel([LinearClassifier(6, 3), Scaled(6, 3)])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("per_run", [False, True], ids=["the pack at once", "run by run (large parameters)"])
def test_a_half_precision_pack_trains_as_its_runs_alone(dtype, optimizer, per_run, monkeypatch):
    # Alone, torch's fused SGD on the CPU left whole vector blocks of a half tensor unmoved (fit now takes
    # its other SGD there); packed, Adam's eps of 1e-8 was 0 in float16: a zero gradient (the zero
    # feature's weights) gave 0 / 0.  The pack computes in float32, as the fused kernels do.
    if per_run:
        monkeypatch.setattr(packed_module, "PER_RUN_FROM", 1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 40, generator=g)
    x[:, 5] = 0
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    x = x.to(dtype)

    def model(seed):
        torch.manual_seed(seed)
        return LinearClassifier(40, 3).to(dtype)

    start = [model(s).linear.weight.detach().clone() for s in SEEDS[:2]]
    options = {"epochs": 2, "batch_size": 32, "optimizer": optimizer, "momentum": 0.9}
    alone, models = [], [model(s) for s in SEEDS[:2]]
    for seed, lr, m in zip(SEEDS, LRS, models):
        alone.append(fit(m, LOSSES.get("cross_entropy").module(), x, y, lr=lr / 10, generator=torch.Generator().manual_seed(seed), **options))
    packed_models = [model(s) for s in SEEDS[:2]]
    packed = PackedModel(packed_models)
    histories = fit_packed(packed, [LOSSES.get("cross_entropy").module()] * 2, x, y, lrs=[lr / 10 for lr in LRS[:2]],
                           generators=[torch.Generator().manual_seed(s) for s in SEEDS[:2]], **options)  # fmt: skip
    packed.unstack_into(packed_models)
    for w0, m1, m2, h1, h2 in zip(start, models, packed_models, alone, histories):
        for m in (m1, m2):
            assert torch.isfinite(m.linear.weight).all()
            moved = (m.linear.weight != w0).float().mean().item()
            assert moved > 0.9  # (all but the zero feature's weights, 3 of 120)
        torch.testing.assert_close(m2.linear.weight.float(), m1.linear.weight.float(), rtol=0.05, atol=0.02)
        assert [r["loss"] for r in h2] == pytest.approx([r["loss"] for r in h1], rel=0.02)


def test_runs_that_share_one_generator_are_refused():
    # each would draw its epoch order after the other's draws: neither the order it has alone
    x, y = _data()
    ce, g = LOSSES.get("cross_entropy").module(), torch.Generator()
    with pytest.raises(ValueError, match=r"^run 1 shares its generator with an earlier run: give each run its own$"):
        fit_packed(PackedModel([_model("linear", 0), _model("linear", 1)]), [ce, ce], x, y, lrs=[0.1, 0.1],
                   generators=[g, g], **BASE)  # fmt: skip


def test_a_run_with_non_finite_logits_trains_per_sample_transforms_alone_as_in_a_pack():
    # a run that diverged before (a two-stage method's first stage, say) reaches iflood with NaN logits:
    # the even-mean check judges the loss on stand-in logits, alone as in a pack, not the NaN ones (alone it
    # raised the class-weights error and the bench retried the trial, where the pack recorded it diverged)
    x, y = _data()
    loss = LOSSES.get("cross_entropy").module(validate=False)
    models = [_model("linear", s) for s in (0, 1)]
    with torch.no_grad():
        models[0].linear.weight.fill_(float("nan"))
    alone = fit(copy.deepcopy(models[0]), loss, x, y, lr=0.1, transforms=[("iflood", {"b": 0.1})],
                generator=torch.Generator().manual_seed(0), **BASE)  # fmt: skip
    packed = fit_packed(PackedModel(models), [loss, loss], x, y, lrs=[0.1, 0.1], transforms=[[("iflood", {"b": 0.1})]] * 2,
                        generators=[torch.Generator().manual_seed(s) for s in (0, 1)], **BASE)  # fmt: skip
    assert all(math.isnan(r["loss"]) for r in alone) and all(math.isnan(r["loss"]) for r in packed[0])
    assert all(math.isfinite(r["loss"]) for r in packed[1])
    # a class-weighted mean is still refused alone, from the first batch
    weighted = LOSSES.get("cross_entropy").module(validate=False, weight=torch.tensor([1.0, 3.0, 0.5]))
    with pytest.raises(ValueError, match="is not their even mean"):
        fit(_model("linear", 0), weighted, x, y, lr=0.1, transforms=[("iflood", {"b": 0.1})], **BASE)


def test_a_packed_hook_makes_its_runs_hyperparameters_once_and_again_where_they_change():
    """(K,) values copied to an accelerator at every step waited for it: one tensor per values, dtype and device."""
    from lossbench.train._base import hyperparameter
    from lossbench.train.flooding import Flooding

    runs, like = [Flooding(b=0.1), Flooding(b=0.0)], torch.zeros(2, dtype=torch.float64)
    first = hyperparameter(runs, "b", like)
    assert hyperparameter(runs, "b", like) is first and first.tolist() == [0.1, 0.0]
    assert hyperparameter(runs, "b", like.float()).dtype == torch.float32
    runs[1].b = -0.0  # (a change, even of a zero's sign, is a new tensor)
    changed = hyperparameter(runs, "b", like)
    assert changed is not first and math.copysign(1.0, changed[1].item()) == -1.0
