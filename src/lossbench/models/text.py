"""A fastText-style text classifier: the mean (or sum) of token embeddings, then a linear layer."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lossbench.models import _packed
from lossbench.models._registry import ModelInfo, register_model
from lossbench.registry import Choice, FloatRange, HyperParam, IntRange

PAD_ID = 0  # lossbench.data's padding id (kept here so models import torch only)
OOV_ID = 1  # lossbench.data's id of a token outside the vocabulary (as PAD_ID, kept here)


class BagOfEmbeddings(nn.Module):
    """``logits = W · reduce_{t != pad} E[t] + b`` on a batch of documents.

    The architecture of fastText (Joulin et al. 2017, "Bag of Tricks for Efficient Text
    Classification", arXiv 1607.01759) without its n-gram features and hierarchical softmax:
    ``nn.EmbeddingBag`` with ``padding_idx`` leaves padding out of the mean or sum (a row of
    padding only gives the zero vector).  Embeddings start from PyTorch's ``N(0, 1)``, but the out-of-vocabulary
    token's at zero: with every training token in the vocabulary (``min_count=1``) no training row holds it, so
    its row never trains, and a random one added the same noise to every test document with an unknown word
    (fastText drops such words; here they count in a mean as zero vectors).

    Input: padded token ids ``int64 (B, L)``, or ragged documents as flat ids plus offsets
    (anything with ``ids`` and ``offsets`` ``(B + 1,)`` tensors, as lossbench.data's
    ``TokenBags``): ``EmbeddingBag(ids, offsets[:-1])``, the same pooled vectors without padding.
    """

    def __init__(
        self, vocab_size: int, num_outputs: int, embed_dim: int = 64, mode: str = "mean", dropout: float = 0.0
    ) -> None:
        super().__init__()
        if mode not in ("mean", "sum"):
            raise ValueError(f"mode must be 'mean' or 'sum', got {mode!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode=mode, padding_idx=PAD_ID)
        if vocab_size > OOV_ID:
            with torch.no_grad():
                self.embedding.weight[OOV_ID].zero_()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(embed_dim, num_outputs)

    def forward(self, tokens: Any) -> torch.Tensor:
        if isinstance(tokens, torch.Tensor):
            pooled = self.embedding(tokens)
        else:  # duck-typed so that models import torch only
            pooled = self.embedding(tokens.ids, tokens.offsets[:-1])
        return self.fc(self.dropout(pooled))

    def packed_forward(self, params: _packed.Params, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """:meth:`forward` of K runs at once on padded token ids (see ``lossbench.models._packed``; live
        dropout does not pack)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError("packed runs take padded token ids (layout='padded'), not token bags")
        pooled = _packed.embedding_bag(x, params["embedding.weight"], self.embedding.mode, PAD_ID, shared)
        return _packed.linear(pooled, params["fc.weight"], params["fc.bias"], False, last=True)


def _build(ds: Any, num_outputs: int, *, embed_dim: int, mode: str, dropout: float) -> BagOfEmbeddings:
    if ds.vocab_size is None:
        raise ValueError(f"dataset {ds.name!r} has no vocab_size; the text model needs token ids")
    return BagOfEmbeddings(ds.vocab_size, num_outputs, embed_dim, mode, dropout)


register_model(
    ModelInfo(
        "fasttext",
        _build,
        ("text",),
        (
            HyperParam("embed_dim", 64, IntRange(16, 256, log=True), "embedding width"),
            HyperParam(
                "mode", "mean", Choice(("mean", "sum")), "how token embeddings are pooled (padding excluded)"
            ),
            HyperParam("dropout", 0.0, FloatRange(0.0, 0.5), "dropout on the pooled embedding"),
        ),
        "Joulin et al. 2017, arXiv 1607.01759 (fastText, without n-grams)",
        "EmbeddingBag mean/sum over non-pad tokens + linear",
    )
)
