"""K runs' forward passes as batched matrix products, for models made of linear layers.

``lossbench.train.PackedModel`` stacks K runs' parameters ``(K, ...)`` and maps each run's batch
through its own weights.  ``torch.func.vmap`` does that for any model, at a fixed cost of
Python and dispatch work per call that is most of a step for the small models of a tabular
sweep; a model class that defines ``packed_forward(params, x, shared)`` (built from the functions
here) computes the same outputs with one ``baddbmm`` per layer.  ``tests/train/test_packed.py``
compares both ways.

``params`` maps the model's parameter names to the stacked tensors; ``x`` is ``(K, B, ...)``, one
batch per run, or with ``shared=True`` one input ``(N, ...)`` for every run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

Params = Mapping[str, torch.Tensor]


def flatten(x: torch.Tensor, shared: bool) -> torch.Tensor:
    """Each sample's features as one vector: ``(K, B, D)`` (``(N, D)`` shared)."""
    return x.flatten(1) if shared else x.flatten(2)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, shared: bool) -> torch.Tensor:
    """``x W_k^T + b_k`` for every run ``k``: weights ``(K, O, D)``, biases ``(K, O)``, out ``(K, B, O)``."""
    if shared:  # (N, D) @ (K, D, O) broadcasts to (K, N, O)
        out = torch.matmul(x, weight.transpose(1, 2))
        return out if bias is None else out + bias.unsqueeze(1)
    # Computed as (K, O, B), outputs first, and returned as a (K, B, O) view: with few outputs
    # PyTorch's batched product runs 2-3x faster that way round, forward and backward
    # (benchmarks/bench_packing.py step).
    x_t = x.transpose(1, 2)
    out = torch.bmm(weight, x_t) if bias is None else torch.baddbmm(bias.unsqueeze(2), weight, x_t)
    return out.transpose(1, 2)


_ELEMENTWISE = {nn.ReLU: F.relu, nn.Identity: lambda x: x}


def supported(modules: Sequence[nn.Module]) -> bool:
    """Whether :func:`sequential` computes these layers (else the caller falls back to vmap)."""
    return all(type(m) in (nn.Linear, nn.Flatten, *_ELEMENTWISE) and (type(m) is not nn.Flatten or m.start_dim == 1 and m.end_dim == -1) for m in modules)


def sequential(modules: Sequence[tuple[str, nn.Module]], params: Params, x: torch.Tensor, shared: bool) -> torch.Tensor:
    """``nn.Sequential``'s forward over named layers (``prefix.index``) that :func:`supported` accepts."""
    for name, module in modules:
        if isinstance(module, nn.Linear):
            x = linear(x, params[f"{name}.weight"], params.get(f"{name}.bias"), shared)
            shared = False
        elif isinstance(module, nn.Flatten):
            x = flatten(x, shared)
        else:
            x = _ELEMENTWISE[type(module)](x)
    if shared:  # no layer read the runs' weights: every run's output is the input's
        raise ValueError("a packed forward needs at least one linear layer")
    return x
