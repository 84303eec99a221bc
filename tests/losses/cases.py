"""Valid inputs for any registered loss, built from its registry signature.

The generic suite (test_common.py) and the property tests draw every loss's inputs from
here, so a newly registered loss is covered without writing new input code.
"""

from __future__ import annotations

import torch

from lossbench.losses import LossInfo

IGNORE = -100


def make_target(info: LossInfo, logits: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    sig = info.signature
    if sig == "softmax":
        return torch.randint(0, logits.shape[1], logits.shape[:1], generator=gen)
    if sig == "nway":
        return torch.randint(0, logits.shape[2], logits.shape[:2], generator=gen)
    if sig == "sigmoid":
        return torch.randint(0, 2, logits.shape, generator=gen)
    if sig == "multilabel":
        t = (torch.rand(logits.shape, generator=gen) < 0.4).to(logits.dtype)
        t[:, 0] = 1.0  # every sample has a positive and (C >= 3) a negative
        t[:, -1] = 0.0
        return t
    if sig == "multilabel_sparse":
        b, c = logits.shape
        k = max(1, c // 2)
        rows = []
        for _ in range(b):
            n_pos = int(torch.randint(1, k + 1, (1,), generator=gen))
            pos = torch.randperm(c, generator=gen)[:n_pos]
            rows.append(torch.cat([pos, torch.full((k - n_pos,), IGNORE)]))
        return torch.stack(rows)
    raise AssertionError(f"no input recipe for signature {sig!r}")


def logits_shape(info: LossInfo, batch: int = 6, classes: int = 4) -> tuple[int, ...]:
    if info.signature == "nway":
        return (batch, 3, classes)
    return (batch, classes)


def extra_kwargs(info: LossInfo, classes: int = 4, dtype: torch.dtype = torch.float32) -> dict:
    """Data-dependent arguments the loss requires (e.g. class counts from a training split)."""
    kwargs = {}
    for name in info.requires:
        if name == "class_counts":
            kwargs[name] = torch.tensor([50.0, 20.0, 8.0, 3.0, 1.0, 30.0, 12.0, 6.0][:classes], dtype=dtype)
        else:
            raise AssertionError(f"no test value for required argument {name!r} of {info.name}")
    return kwargs


def make_case(
    info: LossInfo,
    *,
    batch: int = 6,
    classes: int = 4,
    dtype: torch.dtype = torch.float64,
    scale: float = 2.0,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    gen = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(logits_shape(info, batch, classes), generator=gen, dtype=torch.float64)).to(dtype)
    target = make_target(info, logits, gen)
    return logits, target, extra_kwargs(info, classes)


def with_ignored(info: LossInfo, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Mark some targets ignored; returns (target, mask of kept entries) or None if unsupported."""
    if info.signature in ("softmax", "nway", "sigmoid"):
        t = target.clone()
        drop = torch.zeros_like(t, dtype=torch.bool)
        drop.view(-1)[1::3] = True
        t[drop] = IGNORE
        return t, ~drop
    return None
