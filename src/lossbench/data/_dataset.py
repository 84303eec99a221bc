"""The in-memory dataset every loader returns."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from lossbench._checks import first_few, printable

# Dataset.meta key of a validation split the source provides (a dev file), bool (N_train,): True
# on its rows of x_train.  The bench then tunes on the other rows and scores on these.
VALIDATION_MASK = "validation_mask"

TASKS = ("multiclass", "multilabel")
FEATURE_KINDS = ("tabular", "image", "text")
PAD_ID = 0


def check_test_labels(y_train: torch.Tensor, y_test: torch.Tensor, class_names: list[str], what: str) -> None:
    """Refuse class indices of a given test split that the training split never shows (a model could
    predict them only by chance); ``what`` names the test part in the message."""
    unseen = sorted(set(y_test.tolist()) - set(y_train.tolist()))
    if unseen:
        raise ValueError(f"{what}: labels {first_few(class_names[i] for i in unseen)} do not occur in the training data "
                         "(training never sees them)")  # fmt: skip


def classes_without_rows(y_train: torch.Tensor, class_names: list[str], where: str, named: str = "",
                         why: str = "") -> str | None:  # fmt: skip
    """The warning for the classes that no training row holds, kept as classes without a sample (``named``: whose
    names they are; ``why``: how the loader came to have them); None where every class has a row."""
    empty = sorted(set(range(len(class_names))) - set(y_train.tolist()))
    if not empty:
        return None
    return (f"{where}: class(es) {first_few(class_names[i] for i in empty)}{named} have no training row{why}; kept as "
            "classes without a sample, which count-based losses (balanced_softmax, logit adjustment) refuse")


def classes_alike_by_case(class_names: list[str], where: str) -> str | None:
    """The warning for labels that differ only by letter case ("yes", "Yes"): two classes, where a user most likely
    meant one; None where there are none."""
    by_case: dict[str, list[str]] = {}
    for name in class_names:
        by_case.setdefault(str(name).casefold(), []).append(str(name))
    alike = next((names for names in by_case.values() if len(names) > 1), None)
    if alike is None:
        return None
    return (f"{where}: labels {', '.join(map(repr, alike))} differ only by case and are {len(alike)} classes; write "
            "them alike if they are one")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test tensors with their metadata.

    Features: ``float32 (N, D)`` for tabular data, ``float32 (N, C, H, W)`` in ``[0, 1]`` for
    images (``(N, 1, 28, 28)`` for the MNIST family), ``int64 (N, L)`` token ids padded with
    ``PAD_ID = 0`` for text.  Targets: ``int64 (N,)`` class indices for ``task="multiclass"``
    (two classes included), ``float32 (N, C)`` 0/1 for ``task="multilabel"``.
    """

    name: str
    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: list[str]
    feature_kind: str
    source: str
    vocab_size: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def fail(what: str) -> None:  # (named by its source too: a loader names a set by its folder, say)
            raise ValueError(f"dataset {self.name!r} ({self.source}): {what}")

        if self.task not in TASKS:
            fail(f"task={self.task!r}, expected one of {TASKS}")
        if self.feature_kind not in FEATURE_KINDS:
            fail(f"feature_kind={self.feature_kind!r}, expected one of {FEATURE_KINDS}")
        c = len(self.class_names)
        if c < 2 and self.task == "multiclass":
            fail(f"{c} class(es); a classification task needs at least 2")
        x_dtype = torch.int64 if self.feature_kind == "text" else torch.float32
        x_ndim = {"tabular": 2, "image": 4, "text": 2}[self.feature_kind]
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.dtype != x_dtype or x.ndim != x_ndim:
                fail(f"x_{split} is {x.dtype} {tuple(x.shape)}, expected {x_dtype} with {x_ndim} dims")
            if x.shape[1:] != self.x_train.shape[1:] and self.feature_kind != "text":
                fail(f"x_test's per-sample shape {tuple(x.shape[1:])} differs from x_train's")
            if y.shape[0] != x.shape[0]:
                fail(f"x_{split} has {x.shape[0]} rows but y_{split} has {y.shape[0]}")
            if self.task == "multiclass":
                if y.dtype != torch.int64 or y.ndim != 1:
                    fail(f"y_{split} is {y.dtype} {tuple(y.shape)}, expected int64 (N,) class indices")
                if y.numel() and (int(y.min()) < 0 or int(y.max()) >= c):
                    fail(f"y_{split} has labels outside [0, {c})")
            elif y.dtype != torch.float32 or y.ndim != 2 or y.shape[1] != c:
                fail(f"y_{split} is {y.dtype} {tuple(y.shape)}, expected float32 (N, {c}) 0/1 labels")
            elif not ((y == 0) | (y == 1)).all():
                fail(f"y_{split} holds values other than 0 and 1")
        if (self.feature_kind == "text") != (self.vocab_size is not None):
            fail("vocab_size is set for text datasets and only for them")
        if (
            self.vocab_size is not None
            and self.x_train.numel()
            and int(self.x_train.max()) >= self.vocab_size
        ):
            fail(f"token ids reach {int(self.x_train.max())} but vocab_size is {self.vocab_size}")

    @property
    def num_classes(self) -> int:
        """Classes (multiclass) or labels (multilabel)."""
        return len(self.class_names)

    @property
    def class_counts(self) -> torch.Tensor:
        """Training-split counts per class, or positives per label for multilabel; float (C,)."""
        return class_counts(self.y_train, self.task, self.num_classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample feature shape (for text: the padded length of the training split)."""
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device | str) -> Dataset:
        """A copy with all four tensors on ``device``."""
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
        )

    def digest(self) -> str:
        """A digest of the data themselves (the four tensors, the class names and a validation split the
        source provides): equal for equal data, whatever file or loader they came from."""
        h = hashlib.sha256(repr((self.task, self.class_names, self.feature_kind)).encode())
        mask = self.meta.get(VALIDATION_MASK)  # (a dev file's rows sit in x_train: moving rows there changes only this)
        for part in (self.x_train, self.y_train, self.x_test, self.y_test, *(() if mask is None else (mask,))):
            # (ragged text rows, TokenBags, are their flat ids and offsets)
            for t in (part,) if isinstance(part, torch.Tensor) else (part.ids, part.offsets):
                h.update(repr((t.dtype, tuple(t.shape))).encode())
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def summary(self) -> str:
        counts = self.class_counts.to(torch.int64).tolist()
        shown = [n if str(n).isprintable() else repr(n) for n in self.class_names[:12]]  # (a file's class names: no
        # escape sequence or line break reaches the terminal)
        head = ", ".join(f"{n}={k}" for n, k in zip(shown, counts[:12]))
        more = f", ... ({self.num_classes} in all)" if self.num_classes > 12 else ""
        vocab = f", vocab {self.vocab_size}" if self.vocab_size is not None else ""
        return (
            f"{printable(self.name)}: {self.task}, {self.feature_kind} {self.input_shape}{vocab}; "
            f"train {len(self.y_train)}, test {len(self.y_test)}; train counts: {head}{more}"
        )


def class_counts(y: torch.Tensor, task: str, num_classes: int) -> torch.Tensor:
    """Counts per class of the targets ``y``, or positives per label for multilabel; float (C,)."""
    if task == "multilabel":
        return y.float().sum(0)
    return torch.bincount(y, minlength=num_classes).float()
