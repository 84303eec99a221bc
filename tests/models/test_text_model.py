"""The fasttext model on ragged documents (flat ids + offsets) as on padded rows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lossbench.data import Dataset, TokenBags
from lossbench.models import MODELS, build_model
from lossbench.train import eval_logits, fit

ROWS = [[3, 4, 5], [], [7], [2, 2, 9, 8, 6]]


def dataset(rows=ROWS, labels=(0, 1, 0, 1)) -> Dataset:
    bags, y = TokenBags.from_lists(rows), torch.tensor(labels)
    return Dataset("bags", "multiclass", bags, y, bags, y, ["a", "b"], "text", "test", vocab_size=10)


@pytest.mark.parametrize("mode", ["mean", "sum"])
def test_bags_give_what_padded_rows_give(mode):
    ds = dataset()
    model = build_model("fasttext", ds, seed=0, mode=mode, embed_dim=8)
    bags = ds.x_train
    out = model(bags)
    assert torch.allclose(out, model(bags.padded()), atol=1e-6)
    assert torch.allclose(out[1], model.fc.bias, atol=1e-6)  # an empty document pools to zero
    out.sum().backward()
    assert (
        model.embedding.weight.grad[[3, 4, 5, 7]].abs().sum() > 0
        and model.embedding.weight.grad[1].abs().sum() == 0
    )


def test_registered_name_and_padded_callers_unchanged():
    assert "fasttext" in MODELS and MODELS.get("fasttext").feature_kinds == ("text",)
    model = build_model("fasttext", dataset(), seed=0, embed_dim=4)
    assert model(torch.tensor([[3, 0], [0, 0]])).shape == (2, 2)


def test_the_training_loop_batches_bags():
    rows = [[2 + (i % 2), 4 + i % 3] for i in range(16)]
    ds = dataset(rows, [i % 2 for i in range(16)])
    model = build_model("fasttext", ds, seed=0, embed_dim=8)
    history = fit(model, F.cross_entropy, ds.x_train, ds.y_train, epochs=30, batch_size=4, lr=0.5,
                  generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert history[-1]["loss"] < history[0]["loss"]
    logits = eval_logits(model, ds.x_test, batch_size=5)  # several slices, concatenated
    assert logits.shape == (16, 2) and (logits.argmax(1) == ds.y_test).all()


def test_the_out_of_vocabulary_embedding_starts_at_zero():
    # (no training row holds it where every training token is in the vocabulary: its random start never trained
    # and added the same noise to every test document with an unknown word)
    from lossbench.data._dataset import PAD_ID
    from lossbench.data.text import OOV_ID
    from lossbench.models.text import OOV_ID as MODEL_OOV_ID
    from lossbench.models.text import PAD_ID as MODEL_PAD_ID

    assert (OOV_ID, PAD_ID) == (MODEL_OOV_ID, MODEL_PAD_ID)  # (the model keeps its own copies: it imports torch only)
    model = build_model("fasttext", dataset(), seed=0, embed_dim=4)
    weight = model.embedding.weight
    assert torch.count_nonzero(weight[OOV_ID]) == 0 and torch.count_nonzero(weight[OOV_ID + 1]) > 0
