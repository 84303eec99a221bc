"""A user's own loss and models, as the README's recipes allow, that a pack must not train as it trains
the registered ones (shared by the packed trainer's tests and the bench's)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def counts_weighted_ce(logits, target, *, class_counts, power=1.0, reduction="mean", validate=True):
    """Class weights from the counts and PyTorch's weighted mean (divided by the batch's summed weights, not
    the even mean of its rows that a shared call takes), under an option that is not named ``weight``."""
    weight = (class_counts.sum() / (len(class_counts) * class_counts)) ** power
    return F.cross_entropy(logits, target, weight=weight.to(logits.dtype), reduction=reduction)


def hardest_half_ce(logits, target, *, reduction="mean", validate=True):
    """Online hard example mining: each row's cross-entropy where it is at least the batch's median, else 0
    (doubled): the mean is the even mean of the rows, but a row depends on the rest of the batch."""
    ce = F.cross_entropy(logits, target, reduction="none")
    rows = ce * (ce >= ce.median()) * 2
    return rows if reduction == "none" else rows.sum() if reduction == "sum" else rows.mean()


def positives_weigh_four_bce(logits, target, *, reduction="mean", validate=True):
    """Binary cross-entropy whose mean divides by the summed weights (positives weigh 4): not the even mean of
    its rows, behind the bench's adapter (a binary sigmoid loss)."""
    w = 1.0 + 3.0 * target.float()
    rows = w * F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
    return rows if reduction == "none" else rows.sum() / w.sum() if reduction == "mean" else rows.sum()


def mean_only_ce(logits, target, *, reduction="mean", validate=True):
    """Takes ``reduction`` and ignores it: the batch's mean whatever it says (no value per sample for
    ``reduction="none"``)."""
    return F.cross_entropy(logits, target)


def _scaled_ce(logits, target, scale, reduction):
    rows = F.cross_entropy(logits * scale, target, reduction="none")
    return rows if reduction == "none" else rows.sum() if reduction == "sum" else rows.mean()


def scaled_ce(logits, target, *, scale=1.0, reduction="mean", validate=True):
    """Cross-entropy of the logits times ``scale``, a number or one per row: a row option kept row by row."""
    per_row = scale[:, None] if isinstance(scale, torch.Tensor) else scale
    return _scaled_ce(logits, target, per_row, reduction)


def scale_read_as_a_number_ce(logits, target, *, scale=1.0, reduction="mean", validate=True):
    """Declares ``scale`` a row option but reads it as one number (a tensor's float() fails beyond one value)."""
    return _scaled_ce(logits, target, float(scale), reduction)


def scale_averaged_ce(logits, target, *, scale=1.0, reduction="mean", validate=True):
    """Declares ``scale`` a row option but averages a tensor of them: a shared call gives each run the mean."""
    return _scaled_ce(logits, target, scale.mean() if isinstance(scale, torch.Tensor) else scale, reduction)


def numpy_dropout_ce(logits, target, *, reduction="mean", validate=True):
    """Cross-entropy of a random half of the rows, drawn from NumPy's generator (a pack's runs would share its stream)."""
    import numpy as np

    keep = torch.as_tensor(np.random.rand(len(target)) < 0.5, dtype=logits.dtype)
    rows = F.cross_entropy(logits, target, reduction="none") * keep * 2
    return rows if reduction == "none" else rows.sum() if reduction == "sum" else rows.mean()


def ignore_zero_ce(logits, target, *, ignore_index=0, reduction="mean", validate=True):
    """Cross-entropy whose ignore_index defaults to 0, a class index."""
    return F.cross_entropy(logits, target, ignore_index=ignore_index, reduction=reduction)


class EvalHalves(nn.Module):
    """A forward that reads ``self.training``: its logits halved in eval mode."""

    def __init__(self, d: int, o: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x)
        return out if self.training else out / 2


class EvalSyncs(EvalHalves):
    """In eval mode, a step vmap cannot map (a Python number of a tensor)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x)
        return out if self.training else out * (1.0 if out.sum().item() == out.sum().item() else 2.0)


class Frozen(nn.Module):
    """Fixed random features (``requires_grad=False``), a trained head."""

    def __init__(self, d: int, o: int) -> None:
        super().__init__()
        self.proj = nn.Parameter(torch.randn(8, d) / d**0.5, requires_grad=False)
        self.head = nn.Linear(8, o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(x @ self.proj.T))


class Indexed(nn.Module):
    """An index table held as an integer Parameter."""

    def __init__(self, d: int, o: int) -> None:
        super().__init__()
        self.perm = nn.Parameter(torch.randperm(d), requires_grad=False)
        self.fc = nn.Linear(d, o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x[:, self.perm])


class Unused(nn.Module):
    """A layer the forward never uses."""

    def __init__(self, d: int, o: int) -> None:
        super().__init__()
        self.fc, self.aux = nn.Linear(d, o), nn.Linear(d, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class Tied(nn.Module):
    """The same Parameter in two layers."""

    def __init__(self, d: int, o: int) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, o)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.b(torch.relu(self.a(x)))))


MODELS = {"eval_halves": EvalHalves, "eval_syncs": EvalSyncs, "frozen": Frozen, "indexed": Indexed,
          "unused": Unused, "tied": Tied}  # fmt: skip
