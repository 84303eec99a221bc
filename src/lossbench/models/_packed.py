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

from lossbench.models.layers import CosineLinear

Params = Mapping[str, torch.Tensor]


def flatten(x: torch.Tensor, shared: bool) -> torch.Tensor:
    """Each sample's features as one vector: ``(K, B, D)`` (``(N, D)`` shared)."""
    return x.flatten(1) if shared else x.flatten(2)


def linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, shared: bool, *, last: bool = False, zeros: int = 0
) -> torch.Tensor:
    """``x W_k^T + b_k`` for every run ``k``: weights ``(K, O, D)``, biases ``(K, O)``, out ``(K, B, O)``,
    after ``zeros`` outputs fixed at 0 (the output layer's only: ``last``).

    A training step's output layer on the CPU (``last``, gradients on) is laid out outputs first,
    ``(O, K, B)`` in memory, returned as the ``(K, B, O)`` view: the runs' rows flatten to ``(K B, O)``
    without a copy and a softmax over few classes runs over them as they lie
    (``lossbench.losses._softmax``); the runs' own layout cost two transposing copies each way per
    step (``benchmarks/bench_packing.py step``).  An evaluation (no gradients) keeps each run's rows
    together: each run's metrics read them, and laid out by class they cost more.
    """
    if zeros and not last:
        raise ValueError("outputs fixed at 0 come only with the output layer (last=True)")
    if shared:  # (N, D) @ (K, D, O) broadcasts to (K, N, O)
        out = torch.matmul(x, weight.transpose(1, 2))
        return _after_zeros(out if bias is None else out + bias.unsqueeze(1), zeros)
    # Computed as (K, O, B), outputs first within each run: with few outputs PyTorch's batched
    # product runs 2-3x faster that way round, forward and backward (benchmarks/bench_packing.py step).
    x_t = x.transpose(1, 2)
    out = torch.bmm(weight, x_t) if bias is None else torch.baddbmm(bias.unsqueeze(2), weight, x_t)
    if last and out.device.type == "cpu" and torch.is_grad_enabled():  # (softmax elsewhere has no such slow path)
        by_output = out.transpose(0, 1)  # (O, K, B): a copy of whole rows of B (PyTorch's out= here is slower)
        memory = torch.cat([by_output.new_zeros(zeros, *by_output.shape[1:]), by_output]) if zeros else by_output.contiguous()
        return memory.permute(1, 2, 0)
    return _after_zeros(out.transpose(1, 2), zeros)


def cosine(x: torch.Tensor, weight: torch.Tensor, shared: bool) -> torch.Tensor:
    """:class:`~lossbench.models.layers.CosineLinear` of every run: weights ``(K, O, D)``, out ``(K, B, O)``."""
    products = torch.matmul if shared else torch.bmm  # ((N, D) @ (K, D, O) broadcasts to (K, N, O))
    return products(F.normalize(x, dim=-1), F.normalize(weight, dim=-1).transpose(1, 2))


def embedding_bag(tokens: torch.Tensor, weight: torch.Tensor, mode: str, pad: int, shared: bool) -> torch.Tensor:
    """``nn.EmbeddingBag(mode, padding_idx=pad)`` of every run: padded token ids ``(K, B, L)`` (``(N, L)``
    shared), weights ``(K, V, D)``, out ``(K, B, D)``.  One ``embedding_bag`` over the runs' tables laid
    end to end (run k's ids offset by k V), summing each row's non-pad embeddings (weights 1 and 0) and,
    for the mean, dividing by their count (a row of padding only gives zeros, as alone): vmap has no
    batching rule for ``embedding_bag`` with a padding index and ran it run by run, 10x slower."""
    k, vocab, dim = weight.shape
    if tokens.numel() and not (0 <= int(tokens.min()) and int(tokens.max()) < vocab):  # (else: another run's table)
        raise IndexError(f"token ids must lie in [0, {vocab}), got {int(tokens.min())} .. {int(tokens.max())}")
    if shared:
        tokens = tokens.expand(k, *tokens.shape)
    kept = (tokens != pad).to(weight.dtype)
    ids = tokens + torch.arange(k, device=tokens.device).view(k, 1, 1) * vocab
    length = tokens.shape[-1]
    sums = F.embedding_bag(ids.reshape(-1, length), weight.reshape(k * vocab, dim), mode="sum",
                           per_sample_weights=kept.reshape(-1, length))  # fmt: skip
    if mode == "mean":
        sums = sums / kept.sum(-1).reshape(-1, 1).clamp(min=1)
    return sums.view(k, -1, dim)


def _after_zeros(out: torch.Tensor, zeros: int) -> torch.Tensor:
    """``(K, B, O)`` outputs after ``zeros`` outputs fixed at 0."""
    return torch.cat([out.new_zeros(*out.shape[:2], zeros), out], 2) if zeros else out


_ELEMENTWISE = {nn.ReLU: F.relu, nn.Identity: lambda x: x}


def supported(modules: Sequence[nn.Module]) -> bool:
    """Whether :func:`sequential` computes these layers (else the caller falls back to vmap)."""
    return all(type(m) in (nn.Linear, CosineLinear, nn.Flatten, *_ELEMENTWISE) and (type(m) is not nn.Flatten or m.start_dim == 1 and m.end_dim == -1) for m in modules)


def sequential(modules: Sequence[tuple[str, nn.Module]], params: Params, x: torch.Tensor, shared: bool) -> torch.Tensor:
    """``nn.Sequential``'s forward over named layers (``prefix.index``) that :func:`supported` accepts."""
    output_layer = max((i for i, (_, module) in enumerate(modules) if isinstance(module, (nn.Linear, CosineLinear))), default=-1)
    for i, (name, module) in enumerate(modules):
        if isinstance(module, nn.Linear):
            x = linear(x, params[f"{name}.weight"], params.get(f"{name}.bias"), shared, last=i == output_layer)
            shared = False
        elif isinstance(module, CosineLinear):
            x, shared = cosine(x, params[f"{name}.weight"], shared), False
        elif isinstance(module, nn.Flatten):
            x = flatten(x, shared)
        else:
            x = _ELEMENTWISE[type(module)](x)
    if shared:  # no layer read the runs' weights: every run's output is the input's
        raise ValueError("a packed forward needs at least one linear layer")
    return x
