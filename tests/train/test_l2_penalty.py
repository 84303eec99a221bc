"""The l2_penalty transform is weight decay on the weight matrices, written as an objective term."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lossbench.losses import cross_entropy
from lossbench.train import fit, make_transform


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_with_the_penalty_steps_as_weight_decay_on_the_weights(momentum):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)
    options = dict(epochs=3, batch_size=16, lr=0.1, momentum=momentum, lr_final=None)
    decayed, penalised = _net(), _net()
    fit(decayed, cross_entropy, x, y, weight_decay=0.05, weight_decay_on="weights",
        generator=torch.Generator().manual_seed(2), **options)  # fmt: skip
    fit(penalised, cross_entropy, x, y, transforms=[("l2_penalty", {"strength": 0.05})],
        generator=torch.Generator().manual_seed(2), **options)  # fmt: skip
    for a, b in zip(decayed.parameters(), penalised.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_penalty_refuses_a_negative_strength():
    with pytest.raises(ValueError, match="strength"):
        make_transform(("l2_penalty", {"strength": -1.0}))
