"""The linear model of the EXACT paper's tabular experiments (Karpukhin et al. 2022)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lossbench.models import _packed
from lossbench.models._registry import ModelInfo, register_model
from lossbench.registry import HyperParam


class LinearClassifier(nn.Module):
    """Logits ``W x + b`` of the flattened input.

    With ``zero_first_logit`` the model has ``C - 1`` free rows and class 0's logit is fixed
    at 0, ``logits = [0, W' x + b']``: the identifiable multinomial-logistic parameterisation
    of the EXACT paper's UCI code (``uci-class/scripts/run.py``, class ``Model``).  Softmax
    losses see the same function class as with ``C`` free rows.  With ``normalize_weights``
    the weights and bias are divided by the L2 norm of all of them together (that code's
    ``--normalize-weights``).  Weights start from PyTorch's ``nn.Linear`` initialisation, as
    there.
    """

    def __init__(
        self,
        in_features: int,
        num_outputs: int,
        *,
        zero_first_logit: bool = False,
        normalize_weights: bool = False,
    ) -> None:
        super().__init__()
        if zero_first_logit and num_outputs < 2:
            raise ValueError(f"zero_first_logit needs num_outputs >= 2, got {num_outputs}")
        self.zero_first_logit = zero_first_logit
        self.normalize_weights = normalize_weights
        self.linear = nn.Linear(in_features, num_outputs - 1 if zero_first_logit else num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.linear.weight, self.linear.bias
        if self.normalize_weights:
            norm = torch.cat([weight.flatten(), bias]).norm()
            weight, bias = weight / norm, bias / norm
        logits = F.linear(x.flatten(1), weight, bias)
        if self.zero_first_logit:
            logits = torch.cat([logits.new_zeros(len(logits), 1), logits], 1)
        return logits

    def packed_forward(self, params: _packed.Params, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """:meth:`forward` of K runs at once (see ``lossbench.models._packed``)."""
        weight, bias = params["linear.weight"], params["linear.bias"]
        if self.normalize_weights:
            norm = torch.cat([weight.flatten(1), bias], 1).norm(dim=1)
            weight, bias = weight / norm[:, None, None], bias / norm[:, None]
        zeros = int(self.zero_first_logit)
        return _packed.linear(_packed.flatten(x, shared), weight, bias, shared, last=True, zeros=zeros)


def _build(
    ds: Any, num_outputs: int, *, zero_first_logit: bool | None, normalize_weights: bool
) -> LinearClassifier:
    if zero_first_logit is None:
        zero_first_logit = ds.task == "multiclass" and num_outputs >= 2
    elif zero_first_logit and ds.task != "multiclass":
        raise ValueError(
            "zero_first_logit fixes a softmax reference class; it does not apply to multilabel outputs"
        )
    return LinearClassifier(
        math.prod(ds.input_shape),
        num_outputs,
        zero_first_logit=zero_first_logit,
        normalize_weights=normalize_weights,
    )


register_model(
    ModelInfo(
        "linear",
        _build,
        ("tabular", "image"),
        (
            HyperParam(
                "zero_first_logit",
                None,
                None,
                "class 0's logit fixed at 0 (None: yes for softmax outputs, as in EXACT's code)",
            ),
            HyperParam("normalize_weights", False, None, "divide W and b by their joint L2 norm"),
        ),
        "Karpukhin et al. 2022, arXiv 2205.09615 (uci-class/scripts/run.py Model)",
        "linear logits of the flattened input; EXACT's tabular model",
    )
)
