"""Overhead of ``lossbench.train.fit`` against a bare PyTorch loop on the same trial.

Both train the same model from the same initial weights on the same in-memory data with the
same shuffling, loss and optimizer; runs are interleaved and the medians compared.  Also times
a few transforms against their bare-loop equivalents where torch has one.

    PYTHONPATH=src python benchmarks/train_loop_overhead.py [--device cuda] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from lossbench.losses import CrossEntropyLoss
from lossbench.train import fit


def make_model(features: int, classes: int, hidden: int) -> nn.Module:
    torch.manual_seed(0)
    if hidden == 0:
        return nn.Linear(features, classes)
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def bare_loop(model, loss, x, y, epochs, batch_size, lr, clip, generator) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    n = x.shape[0]
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=generator).to(x.device)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            value = loss(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            value.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=0, help="0: linear model (the EXACT tabular protocol)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (1 keeps timings stable on a shared machine)")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.samples, args.features, generator=gen).to(device)
    y = torch.randint(0, 10, (args.samples,), generator=gen).to(device)
    loss = CrossEntropyLoss(validate=False)
    common = dict(epochs=args.epochs, batch_size=args.batch_size)

    def run_bare(clip: bool) -> None:
        model = make_model(args.features, 10, args.hidden).to(device)
        bare_loop(model, loss, x, y, lr=0.01, clip=clip, generator=torch.Generator().manual_seed(1), **common)

    def run_fit(clip: bool) -> None:
        model = make_model(args.features, 10, args.hidden).to(device)
        fit(model, loss, x, y, lr=0.01, transforms=["clip_norm"] if clip else (),
            generator=torch.Generator().manual_seed(1), **common)

    cases = {"bare": lambda: run_bare(False), "fit": lambda: run_fit(False),
             "bare+clip": lambda: run_bare(True), "fit+clip_norm": lambda: run_fit(True)}
    for case in cases.values():  # warm-up: lazy initialisation of kernels and optimizers
        case()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, case in cases.items():
            sync(device)
            start = time.perf_counter()
            case()
            sync(device)
            times[name].append(time.perf_counter() - start)

    med = {name: statistics.median(t) for name, t in times.items()}
    steps = args.epochs * -(-args.samples // args.batch_size)
    print(f"device={device} model={'linear' if args.hidden == 0 else f'mlp{args.hidden}'} "
          f"samples={args.samples} batch={args.batch_size} steps={steps} repeats={args.repeats}")
    for name, value in med.items():
        print(f"  {name:14s} median {value * 1e3:8.1f} ms  ({value / steps * 1e6:6.1f} us/step)")
    print(f"  fit / bare            = {med['fit'] / med['bare']:.3f}")
    print(f"  fit+clip_norm / bare+clip = {med['fit+clip_norm'] / med['bare+clip']:.3f}")


if __name__ == "__main__":
    main()
