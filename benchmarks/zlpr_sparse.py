"""Sparse ZLPR: our exact masked form vs Su's log-difference form vs dense ZLPR.

Prints, per problem size, the median forward+backward time of each as a ratio to ours
(measured side by side in one run), and the float32 error of each against float64 dense ZLPR
on a batch whose positives are confident.  Run: ``python benchmarks/zlpr_sparse.py``.
"""

from __future__ import annotations

import statistics
import time

import torch

from lossbench.losses import zlpr, zlpr_sparse

IGNORE = -100


def su_log_difference(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Su's sparse form (kexue.fm/archives/8888): negative term a + log(1 - e^{b - a}), clipped."""
    listed = index != IGNORE
    s_pos = logits.gather(1, torch.where(listed, index, 0))
    lowest = torch.finfo(logits.dtype).min
    zero = torch.zeros_like(logits[:, :1])
    a = torch.logsumexp(torch.cat([zero, logits], 1), 1)
    b = torch.logsumexp(torch.where(listed, s_pos, lowest), 1)
    negative = a + torch.log(torch.clamp(-torch.expm1(b - a), min=1e-7, max=1))
    positive = torch.logsumexp(torch.cat([zero, torch.where(listed, -s_pos, lowest)], 1), 1)
    return (positive + negative).mean()


def dense_labels(index: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    t = torch.zeros(index.shape[0], num_classes + 1, dtype=dtype)
    return t.scatter_(1, torch.where(index == IGNORE, num_classes, index), 1.0)[:, :num_classes]


def median_seconds(candidates, repeats: int = 25) -> list[float]:
    """Median forward+backward time of each ``(fn, logits, target)``, run round-robin after a warm-up."""
    times: list[list[float]] = [[] for _ in candidates]
    for repeat in range(repeats + 3):
        for slot, (fn, logits, target) in enumerate(candidates):
            x = logits.detach().requires_grad_(True)
            start = time.perf_counter()
            fn(x, target).backward()
            if repeat >= 3:
                times[slot].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main() -> None:
    torch.manual_seed(0)
    print("forward+backward, median of 25 (round-robin), float32 CPU; ratio = time / time of zlpr_sparse")
    print(f"{'B':>4} {'C':>7} {'K':>3} {'zlpr_sparse ms':>15} {'validate=False':>15} {'Su form':>8} {'dense zlpr':>11}")
    for b, c, k in [(64, 100, 5), (64, 10_000, 10), (16, 200_000, 20)]:
        logits = 3 * torch.randn(b, c)
        index = torch.stack([torch.randperm(c)[:k] for _ in range(b)])
        index[:, k // 2 :][torch.rand(b, k - k // 2) < 0.5] = IGNORE
        dense = dense_labels(index, c, logits.dtype)
        ours, unchecked, su, full = median_seconds(
            [
                (zlpr_sparse, logits, index),
                (lambda x, i: zlpr_sparse(x, i, validate=False), logits, index),
                (su_log_difference, logits, index),
                (zlpr, logits, dense),
            ]
        )
        print(
            f"{b:>4} {c:>7} {k:>3} {1e3 * ours:>15.3f} {unchecked / ours:>15.2f} {su / ours:>8.2f} "
            f"{full / ours:>11.2f}"
        )

    print("\nfloat32 value vs float64 dense ZLPR: 3 positives at s, 17 negatives at -5")
    print(f"{'s':>5} {'exact':>9} {'zlpr_sparse':>12} {'Su form':>9}")
    for s in (5.0, 10.0, 15.0, 20.0):
        x = torch.full((1, 20), -5.0, dtype=torch.float64)
        x[0, :3] = s
        index = torch.tensor([[0, 1, 2]])
        exact = float(zlpr(x, dense_labels(index, 20, x.dtype)))
        ours = float(zlpr_sparse(x.float(), index))
        su = float(su_log_difference(x.float(), index))
        print(f"{s:>5.1f} {exact:>9.5f} {ours:>12.5f} {su:>9.5f}")


if __name__ == "__main__":
    main()
