"""Layers the registered models share beyond torch's own."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CosineLinear(nn.Module):
    """Cosine similarities between each input and each output's weight vector: ``(x / |x|) (W_o / |W_o|)``,
    no bias, so every output lies in ``[-1, 1]``.  The output layer of LDAM's code (NormedLinear in
    Cao et al.'s LDAM-DRW, FCNorm in BagofTricks-LT), whose loss scales these by ``s``; initialised as
    FCNorm is (uniform, each input feature's column of the (out, in) weight renormalised to norm at most 1;
    NormedLinear renormalises each output's weights instead, which sets the layer's step size otherwise)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(x, dim=-1), F.normalize(self.weight, dim=-1))
