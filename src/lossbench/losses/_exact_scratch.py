"""Scratch buffers for the quadrature's temporaries, kept between calls (per thread, dtype and
inference mode, CPU only).

Freshly allocated, a large temporary maps new pages and takes a page fault on each 4 KiB page
(docs/exact-quadrature.md has the measurements); kept, it is written in place.
"""

from __future__ import annotations

import math
import threading

import torch


class _ScratchBuffers(threading.local):
    def __init__(self) -> None:
        # (slot, dtype, inference mode) -> (shape of the last view, that view, the flat buffer)
        self.buffers: dict[tuple[str, torch.dtype, bool], tuple[tuple[int, ...], torch.Tensor, torch.Tensor]] = {}


_SCRATCH = _ScratchBuffers()
# Scratch buffers between these sizes are kept: below, allocation is cheap (the allocator reuses
# freed memory without new pages); above, they are allocated per call instead of held.
_SCRATCH_MIN_BYTES = 1 << 16
_SCRATCH_MAX_BYTES = 1 << 25


def _scratch(slot: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """An uninitialised CPU tensor of ``shape`` kept between calls under the name ``slot`` (per thread,
    dtype and inference mode: an inference tensor cannot be written outside inference mode), or a
    fresh one (other devices, small or very large sizes).

    The node pass's temporaries are large (a block is megabytes): freshly allocated, every call
    maps new pages and takes a page fault on each; kept, they are written in place.  Tensors that leave the module (results, saved tensors) are never
    scratch.  Two slots never alias, so the buffers of one call are independent.
    """
    key = (slot, like.dtype, torch.is_inference_mode_enabled())
    entry = _SCRATCH.buffers.get(key)
    if entry is not None and entry[0] == shape and like.device.type == "cpu":
        return entry[1]
    n = math.prod(shape)
    size = n * like.element_size()
    if like.device.type != "cpu" or not _SCRATCH_MIN_BYTES <= size <= _SCRATCH_MAX_BYTES:
        return like.new_empty(shape)
    flat = entry[2] if entry is not None and entry[2].numel() >= n else like.new_empty(n)
    view = flat[:n].view(shape)
    _SCRATCH.buffers[key] = (shape, view, flat)
    return view
