"""Dataset parse times (cold vs cached) and training throughput on in-memory tensors.

Parse: each real dataset loaded with an empty parse cache (cold: parse, plus the one-time
SHA-256 check of its files) and again with the cache filled (cached); medians of
``--repeats`` loads each, interleaved.  Throughput: epochs per second of plain SGD +
cross-entropy (batch 256, momentum 0.9) for linear-on-adult, MLP-on-MNIST and
fastText-on-SST-2, batching by index tensors (``iterate_minibatches``) against a
``DataLoader(TensorDataset)`` of the same tensors; median over ``--epochs`` epochs each.

    PYTHONPATH=src python benchmarks/bench_data.py [--data-dir ../shared/data] [--device cuda] [--threads 1]

On a CPU shared with other jobs, --threads 1 avoids OpenMP oversubscription distorting the times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lossbench.data import iterate_minibatches, load_dataset
from lossbench.models import build_model

ROOT = Path(__file__).resolve().parents[1]
PARSED = ("mnist", "sst2", "adult", "car", "letter", "scene")
RUNS = (("linear", "adult"), ("mlp", "mnist"), ("fasttext", "sst2"))


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def parse_times(data_dir: Path, repeats: int) -> list[tuple[str, float, float]]:
    rows = []
    for name in PARSED:
        cold, warm = [], []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as cache:
                os.environ["LOSSBENCH_CACHE_DIR"] = cache
                cold.append(timed(load_dataset, name, data_dir=data_dir, download=False))
                warm.append(timed(load_dataset, name, data_dir=data_dir, download=False))
        rows.append((name, statistics.median(cold), statistics.median(warm)))
    return rows


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def epoch_seconds(model_name: str, ds, device: torch.device, epochs: int, loader: bool) -> float:
    x, y = ds.x_train.to(device), ds.y_train.to(device)
    model = build_model(model_name, ds, seed=0).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    if loader:
        # the per-sample path: TensorDataset __getitem__ per row, default_collate per batch
        data = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(x, y), batch_size=256, shuffle=True, generator=g
        )
        batches = lambda: data  # noqa: E731
    else:
        batches = lambda: ((x[i], y[i]) for i in iterate_minibatches(len(y), 256, g, device=device))  # noqa: E731
    times = []
    for _ in range(epochs):
        sync(device)
        start = time.perf_counter()
        for xb, yb in batches():
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}, "
        f"data {args.data_dir}"
    )

    print(f"\nparse time, median of {args.repeats} (seconds)")
    print(f"{'dataset':10} {'cold':>8} {'cached':>8} {'cold/cached':>12}")
    for name, cold, warm in parse_times(args.data_dir, args.repeats):
        print(f"{name:10} {cold:8.3f} {warm:8.3f} {cold / warm:12.1f}")

    print(f"\ntraining throughput, SGD + cross-entropy, batch 256, median of {args.epochs} epochs")
    print(
        f"{'model on data':22} {'epochs/s (index)':>17} {'epochs/s (DataLoader)':>22} "
        f"{'index/DataLoader':>17}"
    )
    with tempfile.TemporaryDirectory() as cache:
        os.environ["LOSSBENCH_CACHE_DIR"] = cache
        for model_name, data_name in RUNS:
            ds = load_dataset(data_name, data_dir=args.data_dir, download=False)
            index = epoch_seconds(model_name, ds, device, args.epochs, loader=False)
            per_sample = epoch_seconds(model_name, ds, device, args.epochs, loader=True)
            print(
                f"{model_name + ' on ' + data_name:22} {1 / index:17.2f} {1 / per_sample:22.2f} "
                f"{per_sample / index:17.1f}"
            )


if __name__ == "__main__":
    main()
