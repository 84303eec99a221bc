"""Registry-driven checks: every transform is selectable by name and composes with every
registered loss, whatever its signature (one step each, finite results)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lossbench.losses import LOSSES
from lossbench.registry import HyperParam
from lossbench.train import (
    TRANSFORMS,
    Transform,
    build_step,
    compatible,
    get_transform,
    make_transform,
    register_transform,
    trainable_parameters,
)
from tests.losses.cases import extra_kwargs, logits_shape, make_target

ALL = [LOSSES.get(n) for n in LOSSES.names()]
NAMES = TRANSFORMS.names()


def test_registry_metadata_is_complete():
    assert {"flooding", "iflood", "ascent_descent", "gradient_penalty", "clip_norm", "clip_norm_smooth",
            "grad_normalizer", "weissi", "mgs"} <= set(NAMES)
    for name, info in TRANSFORMS.items():
        assert info.reference.strip() and info.summary.strip(), name
        assert info.factory.__doc__, name
        assert info.factory.name == name
        assert info.stage in ("objective", "gradient", "update")


@pytest.mark.parametrize("name", NAMES)
def test_selectable_by_name_with_registered_defaults(name):
    info = get_transform(name)
    t = make_transform(name)
    assert isinstance(t, info.factory)
    for p in info.hyperparams:
        assert getattr(t, p.name) == p.default
    for spec in ((name, {}), t):
        assert isinstance(make_transform(spec), info.factory)


def test_bad_specs_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown transform 'flood'"):
        make_transform("flood")
    with pytest.raises(ValueError, match=r"no argument\(s\) \['level'\]"):
        make_transform(("flooding", {"level": 0.1}))
    with pytest.raises(ValueError, match="b must be finite and >= 0, got -0.1"):
        make_transform(("flooding", {"b": -0.1}))
    # (a listing shows the registered default: it must be what the class builds without it)
    flooding = get_transform("flooding").factory
    copy = type("FloodingCopy", (flooding,), {"name": "flooding-copy"})
    with pytest.raises(ValueError, match="hyperparameter 'b' is registered with default 0.5, its signature's is 0.05"):
        register_transform(copy, reference="-", hyperparams=(HyperParam("b", 0.5),))
    assert "flooding-copy" not in TRANSFORMS.names()
    with pytest.raises(ValueError, match="transforms entries"):
        make_transform(3)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    from lossbench.losses import cross_entropy

    with pytest.raises(ValueError, match="per-sample transforms \\['iflood'\\] must come first"):
        build_step(model, cross_entropy, opt, ["flooding", "iflood"])
    with pytest.raises(ValueError, match="at most one update transform"):
        build_step(model, cross_entropy, opt, ["mgs", "mgs"])


def test_loss_parameters_must_be_in_the_optimizer():
    from lossbench.losses import BetaBernoulliRelaxationLoss

    model, loss = nn.Linear(3, 2), BetaBernoulliRelaxationLoss()
    with pytest.raises(ValueError, match="raw"):
        build_step(model, loss, torch.optim.SGD(model.parameters(), lr=0.1))
    build_step(model, loss, torch.optim.SGD(trainable_parameters(model, loss), lr=0.1))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("info", ALL, ids=[i.name for i in ALL])
def test_one_step_with_every_loss(info, name):
    loss = info.module(**extra_kwargs(info, classes=4))
    torch.manual_seed(0)
    shape = logits_shape(info, batch=12, classes=4)[1:]
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, math.prod(shape)), nn.Unflatten(1, shape))
    params = trainable_parameters(model, loss)
    before = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(12, 5, generator=gen)
    y = make_target(info, torch.zeros((12, *shape)), gen)
    if not compatible(name, info):  # refused as the step is built
        with pytest.raises(ValueError, match="needs one loss per sample"):
            build_step(model, loss, torch.optim.SGD(params, lr=0.05), [name])
        return
    step = build_step(model, loss, torch.optim.SGD(params, lr=0.05), [name])
    if name == "mgs" and info.signature == "multilabel_sparse":
        # MGS scores predictions against dense 0/1 rows; index lists are refused by name.
        with pytest.raises(ValueError, match="do not match target"):
            step(x, y)
        return
    stats = {}
    for _ in range(2):  # two steps: the ascent step of ascent_descent, EMA update of grad_normalizer
        stats = step(x, y)
    assert all(math.isfinite(v) for v in stats.values()), stats
    assert any(k.startswith(f"{name}/") for k in stats), f"{name} logs no statistic"
    assert all(torch.isfinite(p).all() for p in params)
    assert any(not torch.equal(p, b) for p, b in zip(params, before)), "the step must move the parameters"


def test_transforms_compose_in_one_chain():
    from lossbench.losses import CrossEntropyLoss

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 4))
    chain = ["iflood", "flooding", "gradient_penalty", "weissi", "ascent_descent", "clip_norm",
             "clip_norm_smooth", "grad_normalizer", "mgs"]
    step = build_step(model, CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.05), chain)
    stats = step(torch.randn(12, 5), torch.randint(0, 4, (12,)))
    assert {k.split("/")[0] for k in stats} == set(chain) | {"loss", "objective"}
    assert isinstance(step.transforms[0], Transform)


SKIPPED = torch.tensor([0, 1, -100, -100, 2, 3])
TASKS = torch.tensor([[0, 1], [-100, -100], [2, -100], [-100, -100], [3, 0], [1, 2]])  # two samples with every task ignored


@pytest.mark.parametrize("loss, kwargs, target", [
    ("cross_entropy", {}, SKIPPED),
    ("binary_cross_entropy", {}, torch.tensor([[0, 1, 1, 0]] * 2 + [[-100] * 4] * 2 + [[1, 1, 0, 1]] * 2)),  # (whole rows ignored)
    ("beta_bernoulli_relaxation", {"learnable": False}, SKIPPED),  # a module of its own, not a generated twin
    ("nway_mclass", {}, TASKS),  # a sample counts where one of its tasks does
    ("zlpr_sparse", {}, TASKS),  # index lists padded with ignore_index: a sample without positives counts
], ids=["cross_entropy", "binary_cross_entropy", "beta_bernoulli_relaxation", "nway_mclass", "zlpr_sparse"])  # fmt: skip
def test_iflood_counts_only_the_samples_the_loss_counts(loss, kwargs, target):
    # b = 0 floods nothing: the step of the plain loss.  An ignored target (0 with reduction="none")
    # once counted as a flooded sample and shrank the others' gradient.
    def step(transforms):
        torch.manual_seed(0)
        if loss == "nway_mclass":  # (B, 2 tasks, 4 classes)
            model = nn.Sequential(nn.Linear(3, 8), nn.Unflatten(1, (2, 4))).double()
        else:
            model = nn.Linear(3, target.shape[1] if loss == "binary_cross_entropy" else 4).double()
        stats = build_step(model, LOSSES.get(loss).module(**kwargs), torch.optim.SGD(model.parameters(), lr=0.1), transforms)(
            torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)), target)
        return stats, [p.detach() for p in model.parameters()]

    (plain, w_plain), (flooded, w_flooded) = step([]), step([("iflood", {"b": 0.0})])
    assert flooded["loss"] == pytest.approx(plain["loss"]) and flooded["iflood/flooded"] == 0.0
    torch.testing.assert_close(w_flooded, w_plain)


def test_a_packed_iflood_refuses_ignored_targets():
    from lossbench.models.linear import LinearClassifier
    from lossbench.train.packed import PackedModel, fit_packed

    x, y = torch.randn(20, 3), torch.tensor([0, 1, -100, 2] * 5)
    with pytest.raises(ValueError, match="ignore_index"):
        fit_packed(PackedModel([LinearClassifier(3, 3)]), [LOSSES.get("cross_entropy").module()], x, y, epochs=1,
                   batch_size=8, lrs=[0.1], generators=[torch.Generator()], transforms=[[("iflood", {"b": 0.1})]])  # fmt: skip


def test_a_per_sample_transform_refuses_a_loss_batch_level_by_its_option():
    # EXACT standardising its batch, LDAM with deferred re-weighting: batch-level with that option set only
    from lossbench.bench.methods import resolve_method
    from lossbench.bench.spec import SpecError, parse_spec
    from lossbench.losses import ExactLoss, LDAMLoss

    def method(**fields):
        spec = parse_spec({"name": "s", "datasets": ["wine"], "methods": [{"name": "e", "loss": "exact", "transforms": ["iflood"], **fields}]})
        return resolve_method(spec.methods[0])

    model = nn.Linear(3, 4)
    for loss in (ExactLoss(standardize=True), LDAMLoss(class_counts=torch.tensor([5.0, 3, 2, 1]), drw_start=0.5)):
        with pytest.raises(ValueError, match="iflood needs one loss per sample"):
            build_step(model, loss, torch.optim.SGD(model.parameters(), lr=0.1), ["iflood"])
    build_step(model, ExactLoss(), torch.optim.SGD(model.parameters(), lr=0.1), ["iflood"])
    # set, searched by the method, or searched by EXACT's registered space (the default): refused
    for fields in ({"params": {"standardize": True}}, {"search": {"loss.standardize": {"choices": [False, True]}}}, {}):
        with pytest.raises(SpecError, match="'exact' is batch-level with standardize set"):
            method(**fields)
    method(params={"standardize": False})


def test_a_plain_pytorch_loss_takes_its_own_reduction():
    # a loss without reduction= (torch.nn.CrossEntropyLoss, a lambda) is called as it is; iFlood, which
    # needs one loss per sample, refuses it when built
    model = nn.Linear(3, 4)
    x, y = torch.randn(8, 3), torch.tensor([0, 1, 2, 3] * 2)
    for loss in (nn.CrossEntropyLoss(), lambda logits, target: nn.functional.cross_entropy(logits, target)):
        stats = build_step(model, loss, torch.optim.SGD(model.parameters(), lr=0.1), ["clip_norm"])(x, y)
        assert math.isfinite(stats["loss"])
        with pytest.raises(ValueError, match="iflood needs one loss per sample: the loss .* takes no reduction="):
            build_step(model, loss, torch.optim.SGD(model.parameters(), lr=0.1), ["iflood"])
    with torch.no_grad():
        expected = float(nn.functional.cross_entropy(model(x), y, reduction="sum"))
    stats = build_step(model, nn.CrossEntropyLoss(reduction="sum"), torch.optim.SGD(model.parameters(), lr=0.1))(x, y)
    assert stats["loss"] == pytest.approx(expected)  # the loss's own reduction, not a mean forced on it


def test_iflood_refuses_a_class_weighted_mean_and_takes_an_even_one():
    # a weighted mean divides by the batch's summed weights: the even mean of the samples' weighted losses
    # made iflood(b = 0) a step 3.4x the plain one on this batch, its "loss" statistic 3.96 for 1.17
    from lossbench.models.linear import LinearClassifier
    from lossbench.train.packed import PackedModel, fit_packed

    x, y = torch.randn(8, 4, dtype=torch.float64), torch.tensor([1, 1, 1, 0, 2, 1, 0, 1])
    weighted = LOSSES.get("cross_entropy").module(weight=torch.tensor([1.0, 5.0, 0.2], dtype=torch.float64))
    model = nn.Linear(4, 3).double()
    step = build_step(model, weighted, torch.optim.SGD(model.parameters(), lr=1.0), [("iflood", {"b": 0.0})])
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"iflood averages the samples' losses evenly, but the mean of CrossEntropyLoss is not"):
        step(x, y)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # (refused before the update)
    with pytest.raises(ValueError, match=r"the mean of run 0's CrossEntropyLoss is not their even mean"):
        fit_packed(PackedModel([LinearClassifier(4, 3)]), [LOSSES.get("cross_entropy").module(weight=torch.tensor([1.0, 5.0, 0.2]))],
                   x.float(), y, epochs=1, batch_size=8, lrs=[0.1], generators=[torch.Generator()],
                   transforms=[[("iflood", {"b": 0.1})]])  # fmt: skip
    # sigmoid focal's per-class alpha weighs each entry and its mean stays even: iflood takes it
    targets = (torch.rand(8, 3, generator=torch.Generator().manual_seed(0)) > 0.5).double()
    focal = LOSSES.get("sigmoid_focal").module(alpha=torch.tensor([0.25, 0.5, 0.9], dtype=torch.float64))
    stats = []
    for transforms in ([], [("iflood", {"b": 0.0})]):
        model = nn.Linear(4, 3).double()
        torch.nn.init.constant_(model.weight, 0.1), torch.nn.init.constant_(model.bias, -0.2)
        stats.append(build_step(model, focal, torch.optim.SGD(model.parameters(), lr=1.0), transforms)(x, targets))
    assert stats[1]["loss"] == pytest.approx(stats[0]["loss"])
