"""Registry-driven checks that every registered loss must pass (scikit-learn's test_common idea)."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from lossbench.losses import LOSSES, LossInfo, LossModule
from lossbench.losses._validation import REDUCTIONS

from .cases import extra_kwargs, make_case, make_target, with_ignored

ALL = [LOSSES.get(n) for n in LOSSES.names()]
ids = [i.name for i in ALL]
# Losses whose backward pass deliberately differs from the derivative of their value (a factor
# held under stop-gradient), and why; their reference tests check the gradient against the formula.
STOP_GRADIENT = {
    "f1_weighted_bce": "the batch soft F1 in its weights is held constant in the backward pass",
}


def call(info: LossInfo, logits, target, **kwargs):
    return info.function(logits, target, **kwargs)


def test_registry_metadata_is_complete():
    assert len(ALL) > 0
    for info in ALL:
        assert info.reference.strip(), info.name
        assert info.summary.strip(), info.name
        assert info.function.__doc__, f"{info.name} has no docstring"
        assert info.tasks, info.name


@pytest.mark.parametrize("info", ALL, ids=ids)
def test_gradcheck_float64(info):
    if info.name in STOP_GRADIENT:
        pytest.skip(STOP_GRADIENT[info.name])
    logits, target, kw = make_case(info, dtype=torch.float64)
    kw = {k: v.double() for k, v in kw.items()}
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: call(info, x, target, **kw), (logits,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("magnitude", [1e4, 1e2])
@pytest.mark.parametrize("info", ALL, ids=ids)
def test_finite_at_extreme_logits(info, magnitude, dtype):
    logits, target, kw = make_case(info, dtype=torch.float32, seed=1)
    signs = torch.sign(torch.randn(logits.shape, generator=torch.Generator().manual_seed(3)))
    for reduction in ("mean", "sum"):
        x = (magnitude * signs).to(dtype).requires_grad_(True)
        loss = call(info, x, target, reduction=reduction, **kw)
        loss.backward()
        # the value in the input dtype: a half-precision one past its range is inf (loss_output), never nan
        wide = call(info, x.detach().float(), target, reduction=reduction, **kw)
        assert torch.isfinite(wide).all(), f"{info.name}: {reduction} {wide}"
        torch.testing.assert_close(loss, wide.to(dtype), rtol=2e-2, atol=2e-2)
        assert torch.isfinite(x.grad.float()).all(), f"{info.name}: non-finite gradient of the {reduction}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("info", ALL, ids=ids)
def test_half_precision_inputs(info, dtype):
    logits, target, kw = make_case(info, dtype=torch.float32, seed=2)
    half = logits.to(dtype).requires_grad_(True)
    out = call(info, half, target, **kw)
    assert out.dtype == dtype  # computed in float32, returned in the input dtype (CONVENTIONS)
    ref = call(info, half.detach().float(), target, **kw)
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)
    out.backward()
    assert half.grad is not None and half.grad.dtype == dtype
    assert torch.isfinite(half.grad.float()).all()


HALF_OVERFLOWS = [
    ("ldam", {"class_counts": torch.tensor([10.0, 3.0, 1.0])}),
    ("hinge", {"p": 2}),
    ("cross_entropy", {"temperature": 0.1}),
]


@pytest.mark.parametrize("name, kwargs", HALF_OVERFLOWS)
def test_a_half_precision_loss_over_the_float16_range_is_inf_with_a_finite_gradient(name, kwargs):
    """The value is returned in the input dtype (CONVENTIONS), so past 65504 it is inf; the gradient,
    computed in float32, is the float32 one (what training reads)."""
    fn = LOSSES.get(name).function
    x, y = torch.tensor([[1e4, -1e4, 0.0]]), torch.tensor([1])
    half, wide = x.half().requires_grad_(True), x.clone().requires_grad_(True)
    out, ref = fn(half, y, **kwargs), fn(wide, y, **kwargs)
    out.backward()
    ref.backward()
    assert ref.item() > torch.finfo(torch.float16).max and out.dtype == torch.float16 and torch.isinf(out)
    torch.testing.assert_close(half.grad.float(), wide.grad, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("info", ALL, ids=ids)
def test_reduction_consistency(info):
    logits, target, kw = make_case(info, seed=4)
    none = call(info, logits, target, reduction="none", **kw)
    total = call(info, logits, target, reduction="sum", **kw)
    mean = call(info, logits, target, reduction="mean", **kw)
    assert total.ndim == 0 and mean.ndim == 0
    torch.testing.assert_close(total, none.sum())
    torch.testing.assert_close(mean, none.mean())
    if not info.batch_level:
        assert none.shape[0] == logits.shape[0], "per-sample losses keep the batch dimension"


@pytest.mark.parametrize("info", [i for i in ALL if not i.batch_level and not i.batch_level_when], ids=lambda i: i.name)
def test_a_per_sample_loss_gives_each_sample_what_it_gives_it_alone(info):
    # what lets runs share a call (packed trials put several runs' rows in one batch): a loss whose
    # values depend on the batch must be registered batch-level
    logits, target, kw = make_case(info, seed=6)
    none = call(info, logits, target, reduction="none", **kw)
    for i in (0, len(logits) - 1):
        alone = call(info, logits[i : i + 1], target[i : i + 1], reduction="none", **kw)
        torch.testing.assert_close(alone[0], none[i], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("info", [i for i in ALL if with_ignored(i, torch.zeros(1)) is not None], ids=lambda i: i.name)
def test_ignored_targets_are_excluded(info):
    logits, target, kw = make_case(info, batch=9, seed=5)
    target_ign, kept = with_ignored(info, target)
    x = logits.clone().requires_grad_(True)
    call(info, x, target_ign, **kw).backward()
    # The ignored entries' logits (whole rows for class-index targets) get no gradient.
    assert torch.count_nonzero(x.grad[~kept]) == 0, f"{info.name}: ignored entries received gradient"
    if info.signature == "softmax":
        full, subset = (logits, target_ign), (logits[kept], target[kept])
    elif info.signature == "sigmoid":  # one decision per sample: a 1-D batch
        full = (logits[:, 0], target_ign[:, 0])
        subset = (logits[:, 0][kept[:, 0]], target[:, 0][kept[:, 0]])
    else:
        return
    for reduction in ("mean", "sum"):
        torch.testing.assert_close(
            call(info, *full, reduction=reduction, **kw), call(info, *subset, reduction=reduction, **kw)
        )


@pytest.mark.parametrize("info", [i for i in ALL if with_ignored(i, torch.zeros(1)) is not None], ids=lambda i: i.name)
@pytest.mark.parametrize("where", ["placeholder", "whole"])
def test_an_ignored_row_with_an_infinite_logit_leaves_the_gradient_finite(info, where):
    """An ignored row (or entry) is computed at a placeholder and masked out; a -inf logit there (a masked
    class, or the whole row) must not put inf * 0 = NaN into the batch's gradient (validate=False lets -inf
    through; PyTorch's cross-entropy kernel masks the value, not the gradient's NaN)."""
    logits, target, kw = make_case(info, batch=9, seed=5)
    target_ign, kept = with_ignored(info, target)
    x = logits.clone()
    if info.signature == "softmax" and where == "placeholder":
        x[~kept, 0] = -torch.inf
    else:
        x[~kept] = -torch.inf
    x.requires_grad_(True)
    value = call(info, x, target_ign, validate=False, **kw)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all(), info.name
    assert torch.count_nonzero(x.grad[~kept]) == 0


SOFTMAX = [i for i in ALL if i.signature == "softmax"]


@pytest.mark.parametrize("info", SOFTMAX, ids=lambda i: i.name)
def test_a_masked_rival_at_minus_inf_gives_the_limit(info):
    """A masked class (-inf logit, not the target; validate=False lets it through) is a class that
    cannot win: the value and gradient are finite and equal the limit of a very low logit, and the
    masked class gets no gradient."""
    logits, target, kw = make_case(info, dtype=torch.float64, seed=8)
    rival = (target + 1) % logits.shape[1]
    rows = torch.arange(logits.shape[0])
    masked, low = logits.clone(), logits.clone()
    masked[rows, rival], low[rows, rival] = -torch.inf, -1e4
    masked.requires_grad_(True), low.requires_grad_(True)
    value = call(info, masked, target, validate=False, **kw)
    value.backward()
    limit = call(info, low, target, validate=False, **kw)
    limit.backward()
    assert torch.isfinite(value) and torch.isfinite(masked.grad).all(), info.name
    torch.testing.assert_close(value, limit)
    torch.testing.assert_close(masked.grad, low.grad)
    assert torch.count_nonzero(masked.grad[rows, rival]) == 0


def test_soft_truncation_of_a_row_with_a_rival_at_minus_inf_is_its_limit():
    """-K s of a -inf rival is +inf: its softmax weight takes the whole row, the true class's weight is 0."""
    from lossbench.losses import soft_truncation

    x = torch.tensor([[-torch.inf, 1.0, 2.0, 0.5], [0.3, 0.2, 0.1, 0.0]], requires_grad=True)
    value = soft_truncation(x, torch.tensor([1, 0]), reduction="none", validate=False)
    value.sum().backward()
    assert value[0] == 0.0 and torch.isfinite(value[1]) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("info", ALL, ids=ids)
def test_module_equals_function(info):
    logits, target, kw = make_case(info, dtype=torch.float32, seed=6)
    for reduction in REDUCTIONS:
        module = info.module(reduction=reduction, **kw)
        expected = call(info, logits, target, reduction=reduction, **kw)
        torch.testing.assert_close(module(logits, target), expected)
        # forward's reduction= overrides the stored one (training-step transforms need per-sample values)
        torch.testing.assert_close(info.module(**kw)(logits, target, reduction=reduction), expected)


@pytest.mark.parametrize("info", ALL, ids=ids)
def test_bad_inputs_raise_clear_errors(info):
    logits, target, kw = make_case(info, dtype=torch.float32, seed=7)
    with pytest.raises(ValueError, match="reduction"):
        call(info, logits, target, reduction="average", **kw)
    bad = logits.clone()
    bad.view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        call(info, bad, target, **kw)
    with pytest.raises(ValueError, match="shape|dimensions"):
        call(info, logits[:-1], target, **kw)
    with pytest.raises(ValueError, match="logits"):
        call(info, logits.long(), target, **kw)
    if info.signature in ("softmax", "nway", "multilabel_sparse"):
        big = target.clone()
        big.view(-1)[0] = logits.shape[-1]
        with pytest.raises(ValueError, match=str(logits.shape[-1])):
            call(info, logits, big, **kw)
        with pytest.raises(ValueError, match="integer|index"):
            call(info, logits, target.float(), **kw)
    if info.signature == "multilabel":
        with pytest.raises(ValueError, match="float"):
            call(info, logits, target.long(), **kw)
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            call(info, logits, target * 2, **kw)
    if info.signature == "sigmoid":
        with pytest.raises(ValueError, match="0/1|\\[0, 1\\]"):
            call(info, logits, target * 3, **kw)
    # validate=False skips the value checks (the hot path) but still computes.
    out = call(info, logits, target, validate=False, **kw)
    assert torch.isfinite(out).all()
    # a switch is True or False, not read by its truthiness ("no" would turn the checks on)
    for switch in ("no", 0, None):
        with pytest.raises(ValueError, match="validate must be True or False"):
            call(info, logits, target, validate=switch, **kw)


@pytest.mark.parametrize("info", ALL, ids=ids)
def test_hyperparameter_defaults_are_accepted(info):
    logits, target, kw = make_case(info, dtype=torch.float32, seed=8)
    for p in info.hyperparams:
        kw[p.name] = p.default
    assert torch.isfinite(call(info, logits, target, **kw))


@pytest.mark.parametrize("counts", [None, "abc", ["a", "b", "c"]])
@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("info", [i for i in ALL if "class_counts" in i.requires], ids=lambda i: i.name)
def test_class_counts_that_are_no_numbers_are_refused_by_name(info, validate, counts):
    logits, target, kw = make_case(info)
    with pytest.raises(ValueError, match="class_counts"):
        call(info, logits, target, **{**kw, "class_counts": counts, "validate": validate})


def test_class_weights_of_no_counts_are_refused_by_name():
    from lossbench.losses import balanced_class_weights, effective_number_weights

    for weights in (balanced_class_weights, effective_number_weights):
        for counts in (None, "abc", ["a", "b"]):
            with pytest.raises(ValueError, match="class_counts"):
                weights(counts)


@pytest.mark.parametrize("info", [i for i in ALL if "class_counts" in i.requires], ids=lambda i: i.name)
def test_zero_class_counts_are_rejected(info):
    logits, target, kw = make_case(info, dtype=torch.float32, seed=9)
    kw["class_counts"] = kw["class_counts"].clone()
    kw["class_counts"][1] = 0
    with pytest.raises(ValueError, match="class_counts"):
        call(info, logits, target, **kw)


def test_make_target_covers_every_signature():
    for info in ALL:
        logits, target, _ = make_case(info)
        assert make_target(info, logits, torch.Generator().manual_seed(0)).shape == target.shape
        assert set(extra_kwargs(info)) == set(info.requires)  # every data-dependent argument, no other


@pytest.mark.parametrize(
    "name, kwargs",
    [("focal", {"gamma": float("inf")}), ("hinge", {"margin": float("inf")}), ("poly1", {"epsilon": float("inf")}),
     ("sigmoid_relaxation", {"temperature": float("inf")}), ("exact", {"sigma": float("inf")})],  # fmt: skip
)
def test_infinite_hyperparameters_are_refused_with_their_name(name, kwargs):
    logits, target = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0])
    (key,) = kwargs
    with pytest.raises(ValueError, match=f"{key} must .*got inf"):
        LOSSES.get(name).function(logits, target, **kwargs)


@pytest.mark.parametrize("info", [i for i in ALL if i.module is not None], ids=lambda i: i.name)
def test_a_module_refuses_a_bad_reduction_when_built(info):
    with pytest.raises(ValueError, match="reduction"):
        info.module(reduction="average", **make_case(info, dtype=torch.float32, seed=10)[2])


def test_a_module_call_overrides_a_stored_tensor_argument():
    from lossbench.losses import CrossEntropyLoss, cross_entropy

    logits, target = torch.randn(6, 3, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 1, 0, 2])
    w = torch.tensor([1.0, 2.0, 3.0])
    module = CrossEntropyLoss(weight=w)
    torch.testing.assert_close(module(logits, target, weight=2 * w + 1), cross_entropy(logits, target, weight=2 * w + 1))
    torch.testing.assert_close(module(logits, target), cross_entropy(logits, target, weight=w))  # the stored one kept


@pytest.mark.parametrize("name, kwargs", [("cross_entropy", {"temperature": torch.tensor([1.0, 2.0])}),
                                          ("soft_f1", {"eps": torch.full((2,), 1e-6)})])  # fmt: skip
def test_a_hyperparameter_tensor_of_several_values_is_refused_with_its_name(name, kwargs):
    info = LOSSES.get(name)
    logits, target, _ = make_case(info, dtype=torch.float32, seed=11)
    ((key, value),) = kwargs.items()
    with pytest.raises(ValueError, match=f"{key} must be a number or a one-element tensor"):
        info.function(logits, target, **kwargs)
    info.function(logits, target, **{key: value[:1]})  # one value: taken


def test_an_infinite_class_count_is_named():
    # (the message listed "classes [] have counts []": inf is > 0)
    from lossbench.losses import balanced_softmax

    with pytest.raises(ValueError, match=r"class_counts must be positive and finite for every class .*classes \[1\] have counts \[inf\]"):
        balanced_softmax(torch.randn(2, 3), torch.tensor([0, 1]), class_counts=torch.tensor([3.0, torch.inf, 2.0]))
    # many classes unseen: the first few named, the rest counted (the whole list ran to 189,000 characters)
    with pytest.raises(ValueError, match=r"classes \[0, 1, 2, 3, 4\] and 19995 more have counts \[0.0, 0.0, 0.0, 0.0, 0.0\] and 19995 more$"):
        balanced_softmax(torch.randn(2, 20004), torch.tensor([0, 1]), class_counts=torch.cat([torch.zeros(20000), torch.ones(4)]))


@pytest.mark.parametrize("info", [i for i in ALL if i.signature in ("softmax", "nway", "multilabel_sparse")], ids=lambda i: i.name)
def test_a_uint8_target_gives_what_its_int64_twin_gives(info):
    """-100 is 156 in uint8: compared in the target's own dtype, ignore_index dropped class 156 (and let an
    out-of-range 156 through); every class-index target is read as int64."""
    classes = 200
    logits, target, _ = make_case(info, batch=6, classes=classes, seed=3)
    target.view(-1)[0] = 156
    if info.signature == "multilabel_sparse":
        target = torch.stack([torch.randperm(classes)[:3] for _ in range(6)])
        target[0, 0] = 156
    kw = {"class_counts": torch.arange(1.0, classes + 1, dtype=torch.float64)} if "class_counts" in info.requires else {}
    wide = call(info, logits, target, reduction="none", **kw)
    narrow = call(info, logits, target.to(torch.uint8), reduction="none", **kw)
    torch.testing.assert_close(narrow, wide)
    with pytest.raises(ValueError, match="target has class index 156 outside"):
        call(info, logits[..., :100], target.to(torch.uint8), **kw | ({"class_counts": kw["class_counts"][:100]} if kw else {}))


def test_a_hyperparameter_registered_with_another_default_than_its_function_s_is_refused():
    """A listing or a report shows the registered default: it must be what a call without it computes."""
    from lossbench.losses import register_loss
    from lossbench.registry import HyperParam

    info = LOSSES.get("cross_entropy")
    with pytest.raises(ValueError, match="hyperparameter 'label_smoothing' is registered with default 0.1, its signature's is 0.0"):
        register_loss("ce-copy", info.function, info.module, signature="softmax", reference="-",
                      hyperparams=(HyperParam("label_smoothing", 0.1),))  # fmt: skip
    assert "ce-copy" not in LOSSES.names()
    smoothing = LOSSES.get("label_smoothing")
    assert smoothing.module().option("label_smoothing") == {p.name: p.default for p in smoothing.hyperparams}["label_smoothing"]


def _other_value(space):
    """A value of ``space`` to set a hyperparameter to: a range's middle, a grid's last option."""
    from lossbench.registry import Choice

    if isinstance(space, Choice):
        return [o for o in space.options if o is not None][-1]
    return (space.low * space.high) ** 0.5 if space.log else (space.low + space.high) / 2


TWINS = [i for i in ALL if issubclass(i.module, LossModule)]


@pytest.mark.parametrize("info", TWINS, ids=lambda i: i.name)
def test_a_module_twins_arguments_read_and_set_as_attributes(info):
    # as torch's loss modules' (criterion.reduction = "none"): a set value was silently ignored, a read raised
    logits, target, kw = make_case(info, dtype=torch.float32, seed=11)
    module = info.module(**kw)
    assert module.reduction == "mean"
    module.reduction = "none"
    torch.testing.assert_close(module(logits, target), call(info, logits, target, reduction="none", **kw))
    with pytest.raises(ValueError, match="reduction"):
        module.reduction = "average"
    for h in info.hyperparams:
        if h.space is None:
            continue
        assert getattr(module, h.name) == h.default
        value = _other_value(h.space)
        setattr(module, h.name, value)
        assert getattr(module, h.name) == value and f"{h.name}={value!r}" in repr(module)
        kw[h.name] = value  # (the ones set before it kept)
        torch.testing.assert_close(module(logits, target), call(info, logits, target, reduction="none", **kw))


def test_a_float_target_marked_with_ignore_index_says_it_marks_integer_targets():
    from lossbench.losses import binary_cross_entropy

    target = torch.tensor([[1.0, 0.0], [-100.0, 1.0]])
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]; found values outside \(ignore_index marks integer targets only"):
        binary_cross_entropy(torch.zeros(2, 2), target)
    binary_cross_entropy(torch.zeros(2, 2), target.long())  # the same labels as integers: the -100 ignored


def test_a_module_twin_names_itself_and_its_arguments_for_a_positional_or_misspelt_one():
    from lossbench.losses import FocalLoss

    with pytest.raises(TypeError, match=r"^FocalLoss takes keyword arguments only \(gamma, alpha, .*\), got 1 positional$"):
        FocalLoss(2.0)
    with pytest.raises(TypeError, match=r"^FocalLoss: got an unexpected keyword argument 'gama'; it takes gamma, alpha, "):
        FocalLoss(gama=2.0)


@pytest.mark.parametrize("name, argument", [("cross_entropy", "weight"), ("hinge", "weight"), ("focal", "alpha"), ("ldam", "weight")])
def test_validate_false_reads_no_class_weight_values(name, argument):
    # (reading them waits for an accelerator on every step; on meta tensors it raised)
    info = LOSSES.get(name)
    counts = {"class_counts": (5, 3, 1)} if "class_counts" in info.requires else {}
    x, y = torch.zeros(4, 3, device="meta"), torch.zeros(4, dtype=torch.int64, device="meta")
    assert info.function(x, y, validate=False, **counts, **{argument: torch.ones(3, device="meta")}).shape == ()
    for bad in ([1.0, -1.0, 1.0], [1.0, math.nan, 1.0]):
        with pytest.raises(ValueError, match=f"{argument} must hold finite non-negative values"):
            info.function(torch.zeros(4, 3), torch.zeros(4, dtype=torch.int64), **counts, **{argument: torch.tensor(bad)})


def test_a_parameter_given_or_set_trains_with_the_model_and_a_module_names_its_own_arguments():
    from torch import nn

    from lossbench.losses import FocalLoss, LDAMLoss
    from lossbench.train import trainable_parameters

    model = nn.Linear(4, 3)
    for focal in (FocalLoss(alpha=nn.Parameter(torch.ones(3))), FocalLoss()):
        focal.alpha = nn.Parameter(torch.ones(3))  # (was kept as a buffer: it took part in the loss, never trained)
        assert [n for n, _ in focal.named_parameters()] == ["alpha"] and len(trainable_parameters(model, focal)) == 3
        focal(model(torch.randn(5, 4)), torch.tensor([0, 1, 2, 0, 1])).backward()
        assert focal.alpha.grad is not None
        focal.alpha = torch.ones(3)  # a tensor again: a buffer, no longer trained
        assert not list(focal.parameters()) and list(focal.state_dict()) == ["alpha"]
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'drw_begin'; it takes class_counts, .*, drw_start, drw_beta$"):
        LDAMLoss(class_counts=[1, 2, 3], drw_begin=0.8)


PER_CLASS = {"weight", "alpha", "class_counts", "pos_weight"}  # tensor arguments of one value per class


@pytest.mark.parametrize("info", [i for i in ALL if PER_CLASS & set(inspect.signature(i.function).parameters)], ids=lambda i: i.name)
def test_a_per_class_argument_on_the_cpu_follows_the_logits_device(info):
    """Logits on an accelerator with class weights made on the CPU (cross-entropy's and hinge's weight raised
    a device mismatch).  The meta device stands in for CUDA here: no values, the same device rule."""
    logits, target, kwargs = make_case(info, dtype=torch.float32)
    classes = logits.shape[-1]
    for name in PER_CLASS & set(inspect.signature(info.function).parameters):
        kwargs.setdefault(name, torch.linspace(0.5, 2.0, classes))
    out = info.function(logits.to("meta"), target.to("meta"), validate=False, **kwargs)
    assert out.device.type == "meta"
