"""A model's own packed forward (batched matrix products) computes what vmap of its forward does."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lossbench.models import _packed
from lossbench.models.layers import CosineLinear
from lossbench.models.linear import LinearClassifier
from lossbench.models.mlp import MLP
from lossbench.train import packed as packed_module
from lossbench.train.packed import PackedModel

K, B, D, C = 4, 9, 6, 5

MODELS = {
    "linear": lambda: LinearClassifier(D, C),
    "linear-zero-first": lambda: LinearClassifier(D, C, zero_first_logit=True),
    "linear-normalized": lambda: LinearClassifier(D, C, zero_first_logit=True, normalize_weights=True),
    "mlp": lambda: MLP(D, C, [7, 3]),
    "mlp-no-hidden": lambda: MLP(D, C, []),
}


def _packs(make, monkeypatch):
    torch.manual_seed(0)
    models = [make() for _ in range(K)]
    fast = PackedModel(models)
    monkeypatch.setattr(packed_module, "_own_packed_forward", lambda model: None)
    slow = PackedModel(models)
    monkeypatch.undo()
    return fast, slow


@pytest.mark.parametrize("name", list(MODELS))
def test_packed_forward_matches_vmap(name, monkeypatch):
    fast, slow = _packs(MODELS[name], monkeypatch)
    assert fast._each is not slow._each
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(K, B, 2, D // 2, generator=gen)  # flattened by the model
    out, ref = fast(x), slow(x)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    grads = torch.autograd.grad((out**2).sum(), fast.params)
    ref_grads = torch.autograd.grad((ref**2).sum(), slow.params)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)
    flat = out.flatten(0, 1)  # the output layer lies outputs first: the runs' rows flatten without a copy
    assert flat.data_ptr() == out.data_ptr() and flat.stride() == (1, K * B)
    with torch.no_grad():  # an evaluation keeps each run's rows together, with the same values
        evaluated = fast(x)
    assert evaluated.stride(0) == B * C and torch.equal(evaluated, out.detach())
    shared = torch.randn(B, D, generator=gen)
    torch.testing.assert_close(fast.eval_logits(shared), slow.eval_logits(shared), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("hidden", [[7], []])
def test_a_cosine_output_layer_packs_as_vmap_maps_it(hidden, monkeypatch):
    fast, slow = _packs(lambda: MLP(D, C, hidden, cosine_head=True), monkeypatch)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(K, B, D, generator=gen)
    out, ref = fast(x), slow(x)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    for g, r in zip(torch.autograd.grad((out**2).sum(), fast.params), torch.autograd.grad((ref**2).sum(), slow.params)):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)
    shared = torch.randn(B, D, generator=gen)
    torch.testing.assert_close(fast.eval_logits(shared), slow.eval_logits(shared), rtol=1e-6, atol=1e-6)


def test_the_cosine_layer_gives_each_inputs_cosine_with_each_class_weight():
    torch.manual_seed(0)
    layer = CosineLinear(D, C)
    x = torch.randn(B, D)
    expected = F.cosine_similarity(x[:, None, :], layer.weight[None], dim=-1)
    torch.testing.assert_close(layer(x), expected)
    assert [n for n, _ in layer.named_parameters()] == ["weight"]  # no bias: every output lies in [-1, 1]
    assert float(layer.weight.norm(dim=0).max()) <= 1 + 1e-6  # (LDAM's initialisation: columns of norm at most 1)


@pytest.mark.parametrize("shared", [False, True])
def test_fixed_zero_outputs_on_any_device(shared):
    # off the CPU (here the meta device) the output layer keeps each run's layout, and its fixed
    # zero outputs still come first
    weight, bias = torch.randn(K, C - 1, D, device="meta"), torch.randn(K, C - 1, device="meta")
    x = torch.randn(B, D, device="meta") if shared else torch.randn(K, B, D, device="meta")
    assert _packed.linear(x, weight, bias, shared, last=True, zeros=1).shape == (K, B, C)
    zeros_first = _packed.linear(torch.randn(K, B, D), torch.randn(K, C - 1, D), torch.randn(K, C - 1), shared=False, last=True, zeros=1)
    assert zeros_first.shape == (K, B, C) and (zeros_first[..., 0] == 0).all()


def test_a_subclass_that_changes_forward_is_mapped_by_vmap():
    class Doubled(LinearClassifier):
        def forward(self, x):
            return 2 * super().forward(x)

    assert packed_module._own_packed_forward(LinearClassifier(D, C)) is not None
    assert packed_module._own_packed_forward(Doubled(D, C)) is None
    models = [Doubled(D, C) for _ in range(2)]
    x = torch.randn(2, B, D)
    torch.testing.assert_close(PackedModel(models)(x)[1], models[1](x[1]))


def test_unsupported_layers_are_named():
    assert not _packed.supported([nn.Linear(2, 2), nn.Tanh()])
    mlp = MLP(D, C, [3])
    mlp.net[2] = nn.Tanh()
    with pytest.raises(TypeError, match="Tanh"):
        mlp.packed_forward({}, torch.zeros(1, 1, D))
