"""Documents of different lengths as one flat tensor of token ids plus offsets.

``TokenBags`` holds ``ids`` (int64, every document's ids one after the other) and ``offsets``
(int64 ``(N + 1,)``: document ``i`` is ``ids[offsets[i]:offsets[i + 1]]``), the input
``nn.EmbeddingBag(ids, offsets[:-1])`` takes.  Memory is one int64 per kept token, so a corpus
of long documents costs its tokens, not ``N x longest``.

It stands where the bench expects a ``(N, L)`` int64 tensor of padded ids: ``len``/``shape[0]``,
row selection with a slice, an index tensor or a boolean mask (``x[idx]``; ``x[i]`` is document
``i``'s ids), ``.to(device)``,
``dtype``, ``ndim``, ``numel``, ``max``.  ``shape[1]`` is the longest document of the set the
bags were cut from (an upper bound, so no device sync per batch).  Stacking bags (what packed
training does) is refused with a TypeError saying to load with ``layout="padded"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Any

import torch

from lossbench.data._dataset import PAD_ID


class TokenBags:
    """Ragged rows of token ids: ``ids`` (flat int64) and ``offsets`` (int64 ``(N + 1,)``)."""

    ndim = 2

    def __init__(self, ids: torch.Tensor, offsets: torch.Tensor, width: int | None = None) -> None:
        if ids.dtype != torch.int64 or ids.ndim != 1:
            raise ValueError(f"ids must be a flat int64 tensor, got {ids.dtype} {tuple(ids.shape)}")
        if offsets.dtype != torch.int64 or offsets.ndim != 1 or offsets.numel() < 1:
            raise ValueError(
                f"offsets must be an int64 (N + 1,) tensor, got {offsets.dtype} {tuple(offsets.shape)}"
            )
        self.ids, self.offsets = ids, offsets
        if width is None:  # computed once, where the bags are built (a host sync on a GPU)
            width = int(self.lengths.max()) if len(self) else 0
        self.width = width

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]], max_length: int | None = None) -> TokenBags:
        """Bags of ``rows``, each cut to its first ``max_length`` ids."""
        kept = [r[:max_length] if max_length is not None else r for r in rows]
        lengths = torch.tensor([0, *map(len, kept)], dtype=torch.int64)
        ids = torch.tensor(list(chain.from_iterable(kept)), dtype=torch.int64)
        return cls(ids, torch.cumsum(lengths, 0))

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def __len__(self) -> int:
        return self.offsets.numel() - 1

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), self.width))

    @property
    def dtype(self) -> torch.dtype:
        return self.ids.dtype

    @property
    def device(self) -> torch.device:
        return self.ids.device

    def is_floating_point(self) -> bool:
        return False

    def numel(self) -> int:
        """Stored token ids (not ``N x width``)."""
        return self.ids.numel()

    def max(self) -> torch.Tensor:
        return self.ids.max()

    def to(self, device: torch.device | str) -> TokenBags:
        return TokenBags(self.ids.to(device), self.offsets.to(device), self.width)

    def __getitem__(self, index: Any) -> TokenBags | torch.Tensor:
        """Bags of the selected rows; an int gives that document's ids."""
        if isinstance(index, int) and not isinstance(index, bool):
            i = range(len(self))[index]  # IndexError out of range, negative from the end
            return self.ids[self.offsets[i] : self.offsets[i + 1]]
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                index = torch.arange(start, stop, step)
            else:
                stop = max(start, stop)
                offsets = self.offsets[start : stop + 1]
                return TokenBags(self.ids[offsets[0] : offsets[-1]], offsets - offsets[0], self.width)
        index = torch.as_tensor(index, device=self.offsets.device)
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        if index.ndim != 1 or index.dtype not in (torch.int64, torch.int32):
            raise TypeError(
                f"token bags take a slice, a 1-D index tensor or a boolean mask, got {index.dtype} "
                f"{tuple(index.shape)}; load with layout='padded' for padded (N, L) rows"
            )
        index = index.long()
        starts, lengths = self.offsets[:-1][index], self.lengths[index]
        offsets = torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)])
        total = int(offsets[-1])
        # position of each kept id in self.ids: its bag's start plus its place in the bag
        shift = torch.repeat_interleave(starts - offsets[:-1], lengths, output_size=total)
        return TokenBags(self.ids[shift + torch.arange(total, device=shift.device)], offsets, self.width)

    def padded(self, length: int | None = None) -> torch.Tensor:
        """``int64 (N, length)``: each row's first ``length`` ids, then ``PAD_ID`` (default: ``width``)."""
        length = self.width if length is None else length
        lengths = self.lengths.clamp(max=length)
        out = torch.full((len(self), length), PAD_ID, dtype=torch.int64, device=self.ids.device)
        cols = torch.arange(length, device=self.ids.device)[None, :]
        keep = cols < lengths[:, None]
        out[keep] = self.ids[(self.offsets[:-1, None] + cols)[keep]]
        return out

    def __repr__(self) -> str:
        return f"TokenBags({len(self)} documents, {self.numel()} ids, longest {self.width}, {self.device})"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        # torch.stack / torch.cat on bags: what packed training would do, and cannot on ragged rows.
        raise TypeError(
            f"torch.{getattr(func, '__name__', func)} does not take token bags (documents of different "
            "lengths); they train one run at a time (on the CPU the faster way for a large vocabulary), or load "
            "with layout='padded' to pack runs"
        )
