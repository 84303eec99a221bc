"""TokenBags: flat ids + offsets standing where the bench expects (N, L) token ids."""

from __future__ import annotations

import pytest
import torch

from lossbench.data import TokenBags
from lossbench.data.text import pad

ROWS = [[2, 3, 4], [], [5], [6, 7]]


def test_rows_keep_their_own_lengths_and_pad_on_demand():
    bags = TokenBags.from_lists(ROWS)
    assert bags.offsets.tolist() == [0, 3, 3, 4, 6] and bags.ids.tolist() == [2, 3, 4, 5, 6, 7]
    assert len(bags) == 4 and bags.shape == (4, 3) and bags.dtype == torch.int64 and bags.ndim == 2
    assert bags.numel() == 6 and int(bags.max()) == 7 and not bags.is_floating_point()
    assert bags.padded().tolist() == [[2, 3, 4], [0, 0, 0], [5, 0, 0], [6, 7, 0]]
    assert torch.equal(pad(ROWS, 2), TokenBags.from_lists(ROWS).padded(2))
    assert TokenBags.from_lists(ROWS, max_length=1).lengths.tolist() == [1, 0, 1, 1]


@pytest.mark.parametrize(
    "index",
    [
        slice(1, 3),
        slice(None, None, 2),
        torch.tensor([3, 0, 3]),
        torch.tensor([True, False, False, True]),
        [2, 1],
    ],
)
def test_row_selection_matches_the_padded_rows(index):
    bags = TokenBags.from_lists(ROWS)
    picked = bags[index]
    rows = [ROWS[i] for i in range(4)[index]] if isinstance(index, slice) else None
    if rows is None:
        idx = torch.as_tensor(index)
        idx = idx.nonzero().flatten() if idx.dtype == torch.bool else idx
        rows = [ROWS[i] for i in idx.tolist()]
    assert [picked[i].tolist() for i in range(len(picked))] == rows
    assert picked.width == 3  # the set's longest row: an upper bound without a device sync


def test_ints_give_a_document_and_bad_indices_are_refused():
    bags = TokenBags.from_lists(ROWS)
    assert bags[-1].tolist() == [6, 7]
    with pytest.raises(IndexError):
        bags[4]
    with pytest.raises(TypeError, match=r"token bags take a slice, a 1-D index tensor or a boolean mask"):
        bags[torch.tensor([[0, 1], [2, 3]])]  # the packed path's (K, B) index
    with pytest.raises(TypeError, match=r"torch.stack does not take token bags.*layout='padded'"):
        torch.stack([bags, bags])
    with pytest.raises(ValueError, match=r"offsets must be an int64 \(N \+ 1,\) tensor"):
        TokenBags(torch.tensor([1]), torch.tensor([0.0, 1.0]))


def test_memory_follows_the_kept_tokens_not_the_longest_document():
    # 1000 documents, one of them 100k tokens long: padding would cost 1000 x 100k ids
    rows = [[2] * 100_000] + [[3, 4]] * 999
    bags = TokenBags.from_lists(rows, max_length=2048)
    assert bags.numel() == 2048 + 2 * 999 and bags.width == 2048
    assert bags[torch.tensor([0])].numel() == 2048
