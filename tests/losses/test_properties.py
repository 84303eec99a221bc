"""Property-based tests (hypothesis) over every softmax-signature loss in the registry."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lossbench.losses import LOSSES

from .cases import extra_kwargs

SOFTMAX = [LOSSES.get(n) for n in LOSSES.names() if LOSSES.get(n).signature == "softmax"]
# Losses whose value is not monotone in the true-class logit, and why.
NOT_MONOTONE = {
    "label_smoothing": "the smoothing term grows once p_y exceeds 1 - eps + eps/C",
}

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True)


@st.composite
def logits_and_target(draw, max_classes=6):
    b = draw(st.integers(1, 6))
    c = draw(st.integers(2, max_classes))
    values = draw(st.lists(st.floats(-20, 20, allow_nan=False), min_size=b * c, max_size=b * c))
    target = draw(st.lists(st.integers(0, c - 1), min_size=b, max_size=b))
    return torch.tensor(values, dtype=torch.float64).reshape(b, c), torch.tensor(target)


def kwargs_for(info, c):
    kw = extra_kwargs(info, classes=8, dtype=torch.float64)
    return {k: v[:c] for k, v in kw.items()}


def default_kwargs(info):
    return {p.name: p.default for p in info.hyperparams}


@pytest.mark.parametrize("info", [i for i in SOFTMAX if i.shift_invariant], ids=lambda i: i.name)
@PROPERTY
@given(data=logits_and_target(), shift=st.floats(-50, 50, allow_nan=False))
def test_adding_a_constant_to_every_logit_changes_nothing(info, data, shift):
    x, y = data
    kw = {**default_kwargs(info), **kwargs_for(info, x.shape[1])}
    torch.testing.assert_close(
        info.function(x + shift, y, reduction="none", **kw),
        info.function(x, y, reduction="none", **kw),
        rtol=1e-6,
        atol=1e-6,
    )


@pytest.mark.parametrize("info", SOFTMAX, ids=lambda i: i.name)
@PROPERTY
@given(data=logits_and_target(), seed=st.integers(0, 2**16))
def test_permuting_classes_with_labels_changes_nothing(info, data, seed):
    x, y = data
    c = x.shape[1]
    perm = torch.randperm(c, generator=torch.Generator().manual_seed(seed))  # new column k holds old perm[k]
    inverse = torch.argsort(perm)
    kw = {**default_kwargs(info), **kwargs_for(info, c)}
    permuted_kw = {k: (v[perm] if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    # A batch-level loss's "none" output may be per class (and so permuted): compare totals.
    reduction = "sum" if info.batch_level else "none"
    torch.testing.assert_close(
        info.function(x[:, perm], inverse[y], reduction=reduction, **permuted_kw),
        info.function(x, y, reduction=reduction, **kw),
        rtol=1e-6,
        atol=1e-6,
    )


@pytest.mark.parametrize("info", [i for i in SOFTMAX if i.name not in NOT_MONOTONE], ids=lambda i: i.name)
@PROPERTY
@given(data=logits_and_target(), increase=st.floats(0, 10, allow_nan=False))
def test_raising_the_true_class_logit_never_raises_the_loss(info, data, increase):
    x, y = data
    kw = {**default_kwargs(info), **kwargs_for(info, x.shape[1])}
    higher = x.clone()
    higher[torch.arange(len(y)), y] += increase
    before = info.function(x, y, reduction="none", **kw)
    after = info.function(higher, y, reduction="none", **kw)
    assert bool((after <= before + 1e-9).all()), (before, after)
