"""A multi-layer perceptron."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from lossbench.models import _packed
from lossbench.models._registry import ModelInfo, register_model
from lossbench.models.layers import CosineLinear
from lossbench.registry import FloatRange, HyperParam, IntRange


class MLP(nn.Module):
    """``Linear -> ReLU -> Dropout`` per hidden width, then a linear output layer (``cosine_head``: a
    :class:`~lossbench.models.layers.CosineLinear`, as LDAM's code has); input flattened."""

    def __init__(
        self, in_features: int, num_outputs: int, widths: Sequence[int], dropout: float = 0.0, cosine_head: bool = False
    ) -> None:
        super().__init__()
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        layers: list[nn.Module] = [nn.Flatten()]
        for w in widths:
            if not (isinstance(w, int) and w > 0):
                raise ValueError(f"hidden widths must be positive ints, got {list(widths)!r}")
            layers += [nn.Linear(in_features, w), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_features = w
        layers.append(CosineLinear(in_features, num_outputs) if cosine_head else nn.Linear(in_features, num_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def packed_forward(self, params: _packed.Params, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """:meth:`forward` of K runs at once (see ``lossbench.models._packed``)."""
        if not _packed.supported(self.net):
            raise TypeError(f"no packed forward for the layers {[type(m).__name__ for m in self.net]}")
        return _packed.sequential([(f"net.{i}", m) for i, m in enumerate(self.net)], params, x, shared)


WIDTH, DEPTH = 256, 2  # the defaults: explicit widths leave them so


def _build(
    ds: Any, num_outputs: int, *, width: int, depth: int, dropout: float, widths: Sequence[int] | None, cosine_head: bool
) -> MLP:
    if not isinstance(cosine_head, bool):
        raise ValueError(f"cosine_head must be true or false, got {cosine_head!r}")
    if widths is None:
        if not (isinstance(depth, int) and depth >= 0):
            raise ValueError(f"depth must be an int >= 0, got {depth!r}")
        if depth == 0 and width != WIDTH:  # (a searched width would be reported as chosen, and change nothing)
            raise ValueError(f"width = {width!r} with depth = 0: no hidden layer has a width; drop one of the two")
        widths = [width] * depth
    elif (width, depth) != (WIDTH, DEPTH):
        raise ValueError(f"widths = {list(widths)!r} sets the hidden layers, and width = {width!r}, depth = {depth!r} "
                         "would do nothing beside it; drop one of the two")  # fmt: skip
    return MLP(math.prod(ds.input_shape), num_outputs, widths, dropout, cosine_head)


register_model(
    ModelInfo(
        "mlp",
        _build,
        ("tabular", "image"),
        (
            HyperParam("width", WIDTH, IntRange(32, 1024, log=True), "units per hidden layer"),
            HyperParam("depth", DEPTH, IntRange(1, 4), "hidden layers"),
            HyperParam("dropout", 0.0, FloatRange(0.0, 0.5), "dropout after each hidden ReLU"),
            HyperParam(
                "widths", None, None, "explicit hidden widths, e.g. (512, 128), instead of width and depth (left at their defaults)"
            ),
            HyperParam("cosine_head", False, None, "output layer of cosine similarities (no bias), as LDAM's code"),
        ),
        "Rumelhart, Hinton & Williams 1986; dropout: Srivastava et al. 2014",
        "ReLU multi-layer perceptron on the flattened input",
    )
)
