"""K MLP runs on MNIST packed into one batched model, against the same runs one at a time.

Run from the repository root: ``PYTHONPATH=src python benchmarks/bench_packed_mnist.py --data-dir
../shared/data`` (``--help`` for options; CUDA when available, ``--device cpu`` otherwise).
What is measured, and how:

- each run is the registered ``mlp`` (784-256-256-10 by default) built under its own seed, SGD with
  momentum 0.9 at its own learning rate (log-uniform in [0.01, 0.3], drawn from a seeded generator),
  its own data order, batch 128, ``--epochs`` epochs over the 60,000 training images (469 steps
  each), the loss built as the bench builds it (``module(validate=False)``);
- packed: ``lossbench.train.packed.fit_packed`` trains all ``--runs`` runs at once, one step of
  every run per batched forward and backward; one at a time: ``lossbench.train.fit`` trains the
  first ``--alone`` runs, one after another (the rest would take as long each);
- throughput is runs per second of wall clock (``time.perf_counter``, the device synchronised before
  each reading), after a warm-up of each side (CUDA context, cuBLAS handles, the allocator's pool),
  the two sides alternating over ``--rounds`` rounds; the table gives each round and the median ratio;
- the packed runs are checked against the same runs alone, over the runs trained both ways: the
  largest difference of the weights after ``--check-steps`` steps (float round-off in another order
  of summation; TF32 is off, as PyTorch's default for matrix products), and of the final epoch's mean
  training loss and weights (after hundreds of steps at these learning rates round-off grows: the
  same runs on the CPU differ as much);
- every packed run's test accuracy, evaluated in one call (``PackedModel.eval_logits``): min,
  median and max over the runs, to show that they trained.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch

from lossbench.data import load_dataset
from lossbench.losses import LOSSES
from lossbench.models import build_model
from lossbench.train import fit
from lossbench.train.packed import PackedModel, fit_packed

BATCH, MOMENTUM, LR_RANGE = 128, 0.9, (0.01, 0.3)


def run_configs(runs: int) -> list[tuple[int, float]]:
    """Each run's (seed, learning rate): seeds 0..runs-1, rates log-uniform in LR_RANGE."""
    g = torch.Generator().manual_seed(1234)
    low, high = (torch.tensor(v).log() for v in LR_RANGE)
    rates = (low + (high - low) * torch.rand(runs, generator=g, dtype=torch.float64)).exp().tolist()
    return list(enumerate(rates))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_packed(ds, configs, loss, device, epochs, model_kw, x, y) -> tuple[float, PackedModel, list]:
    models = [build_model("mlp", ds, seed=seed, **model_kw).to(device) for seed, _ in configs]
    packed = PackedModel(models)
    sync(device)
    start = time.perf_counter()
    histories = fit_packed(
        packed, [LOSSES.get(loss).module(validate=False) for _ in configs], x, y, epochs=epochs, batch_size=BATCH,
        lrs=[lr for _, lr in configs], generators=[torch.Generator().manual_seed(seed) for seed, _ in configs],
        momentum=MOMENTUM, shared_loss=[list(range(len(configs)))],
    )  # fmt: skip
    sync(device)
    return time.perf_counter() - start, packed, histories


def train_alone(ds, configs, loss, device, epochs, model_kw, x, y) -> tuple[float, list]:
    trained, seconds = [], 0.0
    for seed, lr in configs:
        model = build_model("mlp", ds, seed=seed, **model_kw).to(device)
        sync(device)
        start = time.perf_counter()
        history = fit(
            model, LOSSES.get(loss).module(validate=False), x, y, epochs=epochs, batch_size=BATCH, lr=lr,
            momentum=MOMENTUM, generator=torch.Generator().manual_seed(seed), device=device,
        )  # fmt: skip
        sync(device)
        seconds += time.perf_counter() - start
        trained.append((model, history))
    return seconds, trained


@torch.no_grad()
def weight_gap(alone: list, packed: PackedModel) -> float:
    """The largest difference of a weight between a run trained alone and the same run packed."""
    return max(
        float((p1 - p2).abs().max()) for k, (m, _) in enumerate(alone) for p1, p2 in zip(m.parameters(), packed.run_params(k))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("LOSSBENCH_DATA_DIR"), help="folder holding mnist/")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--runs", type=int, default=256, help="runs in the pack (default 256)")
    parser.add_argument("--alone", type=int, default=16, help="runs trained one at a time per round (default 16)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=None, help="train on the first ROWS images only (a quick check)")
    parser.add_argument("--loss", default="cross_entropy", help="a registered loss (default cross_entropy)")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--check-steps", type=int, default=10, help="steps of the short equality check (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as lossbench trains)")
    args = parser.parse_args()
    if not 1 <= args.alone <= args.runs:
        parser.error(f"--alone {args.alone}: must lie in 1..--runs ({args.runs})")

    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    device = torch.device(args.device)
    ds = load_dataset("mnist", args.data_dir, download=False)
    rows = slice(None, args.rows)
    x, y = ds.x_train[rows].to(device), ds.y_train[rows].to(device)
    x_test, y_test = ds.x_test.to(device), ds.y_test.to(device)
    model_kw = {"width": args.width, "depth": args.depth}
    configs = run_configs(args.runs)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    steps = -(-len(x) // BATCH) * args.epochs
    print(
        f"torch {torch.__version__} on {name}; mlp {math.prod(ds.input_shape)}-{'-'.join([str(args.width)] * args.depth)}-10, loss {args.loss}, "
        f"{len(x)} images, batch {BATCH}, {steps} steps per run; {args.runs} runs packed, {args.alone} alone"
    )

    warm = configs[:2]
    train_packed(ds, warm, args.loss, device, 1, model_kw, x[: 20 * BATCH], y[: 20 * BATCH])
    train_alone(ds, warm[:1], args.loss, device, 1, model_kw, x[: 20 * BATCH], y[: 20 * BATCH])

    ratios = []
    for r in range(args.rounds):
        order = ("packed", "alone") if r % 2 == 0 else ("alone", "packed")
        for side in order:
            if side == "packed":
                t_packed, packed, histories = train_packed(ds, configs, args.loss, device, args.epochs, model_kw, x, y)
            else:
                t_alone, alone = train_alone(ds, configs[: args.alone], args.loss, device, args.epochs, model_kw, x, y)
        rate_packed, rate_alone = args.runs / t_packed, args.alone / t_alone
        ratios.append(rate_packed / rate_alone)
        print(
            f"round {r + 1}: packed {args.runs} runs in {t_packed:.2f} s ({rate_packed:.2f} runs/s); "
            f"alone {args.alone} runs in {t_alone:.2f} s ({rate_alone:.3f} runs/s); ratio {ratios[-1]:.1f}x"
        )
    print(f"median ratio over {args.rounds} rounds: {statistics.median(ratios):.1f}x the runs per second")

    short = slice(None, args.check_steps * BATCH)
    _, packed_short, _ = train_packed(ds, configs[: args.alone], args.loss, device, 1, model_kw, x[short], y[short])
    _, alone_short = train_alone(ds, configs[: args.alone], args.loss, device, 1, model_kw, x[short], y[short])
    print(
        f"packed against alone, {args.alone} runs, after {args.check_steps} steps: weights within "
        f"{weight_gap(alone_short, packed_short):.2e}"
    )
    loss_gap = max(abs(h1[-1]["loss"] - h2[-1]["loss"]) for (_, h1), h2 in zip(alone, histories))
    print(
        f"packed against alone, {args.alone} runs, after {steps} steps: final mean training loss within "
        f"{loss_gap:.2e}, weights within {weight_gap(alone, packed):.2e}"
    )
    accuracy = (packed.eval_logits(x_test).argmax(-1) == y_test).double().mean(1).cpu()
    q = torch.quantile(accuracy, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)).tolist()
    print(f"test accuracy of the {args.runs} packed runs: min {q[0]:.4f}, median {q[1]:.4f}, max {q[2]:.4f}")
    if device.type == "cuda":
        print(f"peak CUDA memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
