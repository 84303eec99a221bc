"""EXACT by quadrature (``lossbench.losses.exact``) against cross-entropy: speed, peak memory, accuracy.

Run from the repository root: ``python benchmarks/bench_exact.py`` (``--help`` for options;
``--loop-only`` prints the first table alone, in a minute).  What is measured, and how:

- as a training loop calls the loss: forward+backward on the same float32 logits ``(B = 256, C)`` every
  step, a leaf tensor whose gradient is reset (``x.grad = None``), the loss built once as training
  builds it (``ExactLoss(validate=False)``; ``F.cross_entropy``), caches warm.  Each round runs every
  candidate for ``--steps`` steps in a row, in alternating order, after a warm-up; the table gives the
  median time per step over the rounds and its ratio to cross-entropy in the same rounds.  One torch
  thread by default (lossbench's ``--threads`` default; the kernel then runs on one core).  Rows: the
  defaults (sigma 1) on ``N(0, 1)`` logits, every rival in play (the quadrature's worst case); ``-log P``;
  the paper's Table 1 recipe late in training (batch standardisation, margin 1, sigma 0.1); the
  PyTorch path (CUDA and no compiler).

- forward+backward time of the loss on float32 logits ``(B = 256, C)`` drawn from ``N(0, 1)`` with
  ``sigma = 1``, so every rival is in play (nothing could be skipped: the worst case for the
  quadrature's work).  Each round runs every candidate once, in alternating order, after a
  warm-up; the table gives medians over the rounds and ratios to ``F.cross_entropy`` measured in
  the same rounds, so that other load on the machine hits all candidates alike.
- "genz mc": the paper's estimator, Genz's Monte Carlo with 16 samples for the value and the
  ``C - 1`` gradients in one sweep (cost ``B C^2 N``): ``exact(..., estimator="genz")``, implemented in
  ``lossbench.losses._exact_genz``; not run at ``C = 1000`` (minutes per call; the paper's code
  truncates classes).
- peak memory: the extra peak resident set size of a fresh subprocess during one
  forward+backward, after a warm-up on a small batch: Linux's peak RSS (``VmHWM``) is reset through
  ``/proc/self/clear_refs`` just before the call and read after it, minus the RSS before it.
  ``tracemalloc`` does not see torch's CPU allocations, RSS does.  On CUDA:
  ``torch.cuda.max_memory_allocated``.
- accuracy: ``max |P - P_ref|`` in float64 against the QUADPACK reference of the tests
  (``tests/losses/test_exact.py``) over tied, spread and uniform margins in ``[-20, 20]``, per
  number of nodes; and the error of the 16-sample Monte Carlo estimate against the exact value.
- one SGD training step of a 784-256-10 MLP on a batch of 256 random 784-dim inputs (the time
  does not depend on pixel values) with EXACT and with cross-entropy.
- the same forward+backward on the logits of a trained model (the true class 3 ahead of ``N(0, 1)``
  logits) for ``sigma`` along the paper's schedule (1, 0.1, 0.01): with a small ``sigma`` most rivals
  are saturated at every node and the wrong predictions lie far in the tail.
- on CPU, every timing table adds "exact (PyTorch path)": the same loss with the fused kernel
  (``lossbench.losses._exact_native``) switched off, the implementation used on CUDA and where no
  C compiler is available.
- ``--baseline REF``: every timing table adds the loss with the quadrature module of git revision
  ``REF`` (``src/lossbench/losses/_exact_quadrature.py``, through its ``log_win_probability``), run
  in the same rounds: before/after ratios from one run.

Where CUDA is available the timing tables are printed again on the GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lossbench.losses import ExactLoss, _exact_native, exact
from lossbench.losses._exact_genz import genz_monte_carlo
from lossbench.losses._validation import reduce, softmax_inputs

ROOT = Path(__file__).resolve().parents[1]
BATCH = 256
NODES = (8, 12, 16, 24)
DEFAULT_NODES = 16


def rival_margins(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    c = logits.shape[1]
    rivals = torch.arange(c - 1, device=logits.device)[None, :]
    rivals = rivals + (rivals >= target[:, None])
    return logits.gather(1, target[:, None]) - logits.gather(1, rivals)


def genz_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return exact(logits, target, estimator="genz")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def round_robin(
    candidates: dict[str, Callable[[], object]], rounds: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per candidate over ``rounds`` rounds, each running every candidate once."""
    for fn in candidates.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            synchronize(device)
            start = time.perf_counter()
            candidates[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def loss_step(loss_fn, logits: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        x = logits.detach().requires_grad_(True)
        loss_fn(x, target).backward()

    return run


def baseline_exact(ref: str) -> Callable[..., torch.Tensor]:
    """``exact`` (mean of ``1 - P``) with the quadrature module of git revision ``ref``.

    The module is loaded on its own from ``git show`` (it depends on torch only) and called through
    ``log_win_probability(margins (B, R), num_nodes)``, the rivals' margins gathered as ``exact`` did.
    """
    source = subprocess.run(
        ["git", "show", f"{ref}:src/lossbench/losses/_exact_quadrature.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("baseline_exact_quadrature", f.name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    os.unlink(f.name)

    def loss(logits: torch.Tensor, target: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
        x, y, valid = softmax_inputs(logits, target, -100, "mean", True)
        rivals = torch.arange(x.shape[1] - 1, device=x.device)[None, :]
        rivals = rivals + (rivals >= y[:, None])
        m = (x.gather(1, y[:, None]) - x.gather(1, rivals)) / sigma
        per_sample = -torch.expm1(module.log_win_probability(m, DEFAULT_NODES))
        return reduce(torch.where(valid, per_sample, torch.zeros_like(per_sample)), "mean", valid)

    return loss


def pytorch_path(loss_fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``loss_fn`` with the fused CPU kernel switched off (the backward needs no switch: the forward
    computes the gradient)."""

    def loss(*args, **kwargs) -> torch.Tensor:
        previous, _exact_native.enabled = _exact_native.enabled, False
        try:
            return loss_fn(*args, **kwargs)
        finally:
            _exact_native.enabled = previous

    return loss


EAGER = "exact (PyTorch path)"
EAGER_LOOP = "exact, PyTorch path"


def training_steps(loss_fn, logits: torch.Tensor, target: torch.Tensor, steps: int) -> Callable[[], None]:
    """``steps`` training-loop steps of ``loss_fn``: forward and backward on the same leaf tensor."""
    x = logits.detach().clone().requires_grad_(True)

    def run() -> None:
        for _ in range(steps):
            x.grad = None
            loss_fn(x, target).backward()

    return run


LOOP_LOSSES = {
    "cross_entropy": lambda: F.cross_entropy,
    "exact": lambda: ExactLoss(validate=False),
    "exact, -log P": lambda: ExactLoss(log_loss=True, validate=False),
    "exact, Table 1 recipe (standardize, margin 1, sigma 0.1)": lambda: ExactLoss(
        standardize=True, margin=1.0, sigma=0.1, validate=False
    ),
    EAGER_LOOP: lambda: pytorch_path(ExactLoss(validate=False)),
}


def training_loop_table(device: torch.device, rounds: int, steps: int, classes: tuple[int, ...]) -> None:
    names = [name for name in LOOP_LOSSES if device.type == "cpu" or name != EAGER_LOOP]
    rows: dict[str, list[str]] = {name: [] for name in names}
    for c in classes:
        gen = torch.Generator().manual_seed(c)
        logits = torch.randn(BATCH, c, generator=gen).to(device)
        target = torch.randint(0, c, (BATCH,), generator=gen).to(device)
        few = max(1, steps // 10)  # the PyTorch path is several times slower: fewer steps per round
        candidates = {
            name: training_steps(LOOP_LOSSES[name](), logits, target, few if name == EAGER_LOOP else steps)
            for name in names
        }
        med = round_robin(candidates, rounds, device)
        for name in names:
            per_step = med[name] / (few if name == EAGER_LOOP else steps)
            ratio = per_step / (med["cross_entropy"] / steps)
            rows[name].append(f"{1e6 * per_step:.0f} us ({ratio:.1f}x)")
    print_table(
        f"\nas a training loop calls it: forward+backward on the same float32 logits, B={BATCH}, N(0, 1), "
        f"{device}, {torch.get_num_threads()} thread(s);\nmedian time per step over {rounds} rounds of "
        f"{steps} steps (ratio to cross-entropy in the same rounds); load average {os.getloadavg()[0]:.2f}",
        [f"C={c}" for c in classes],
        rows,
    )



def print_table(title: str, columns: list[str], rows: dict[str, list[str]]) -> None:
    print(title)
    width = max(len(name) for name in rows)
    print(f"{'':{width}}" + "".join(f"{c:>22}" for c in columns))
    for name, cells in rows.items():
        print(f"{name:{width}}" + "".join(f"{cell:>22}" for cell in cells))


def cell(med: dict[str, float], name: str) -> str:
    if name not in med:
        return "not run"
    return f"{1e3 * med[name]:.3f} ({med[name] / med['cross_entropy']:.1f}x)"


def speed_table(device: torch.device, rounds: int, baseline: tuple[str, Callable] | None) -> None:
    classes = (10, 100, 1000)
    names = ["cross_entropy", *(f"exact K={k}" for k in NODES)]
    if device.type == "cpu":
        names.append(f"{EAGER} K={DEFAULT_NODES}")
    if baseline:
        names.append(f"exact K={DEFAULT_NODES} @{baseline[0]}")
    names.append("genz mc N=16 (paper's estimator)")
    rows: dict[str, list[str]] = {}
    for c in classes:
        gen = torch.Generator().manual_seed(c)
        logits = torch.randn(BATCH, c, generator=gen).to(device)
        target = torch.randint(0, c, (BATCH,), generator=gen).to(device)
        candidates = {"cross_entropy": loss_step(F.cross_entropy, logits, target)}
        for k in NODES:
            candidates[f"exact K={k}"] = loss_step(lambda x, t, k=k: exact(x, t, num_nodes=k), logits, target)
        if device.type == "cpu":
            candidates[f"{EAGER} K={DEFAULT_NODES}"] = loss_step(pytorch_path(exact), logits, target)
        if baseline:
            candidates[f"exact K={DEFAULT_NODES} @{baseline[0]}"] = loss_step(baseline[1], logits, target)
        if c <= 100:
            candidates["genz mc N=16 (paper's estimator)"] = loss_step(genz_loss, logits, target)
        med = round_robin(candidates, rounds if c < 1000 else max(5, rounds // 3), device)
        for name in names:
            label = name + (" (default)" if name == f"exact K={DEFAULT_NODES}" else "")
            rows.setdefault(label, []).append(cell(med, name))
    print_table(
        f"\nforward+backward, B={BATCH}, float32 N(0, 1) logits, sigma=1, {device}; "
        f"median ms over {rounds} rounds (ratio to cross-entropy)",
        [f"C={c}" for c in classes],
        rows,
    )


def trained_table(device: torch.device, rounds: int, baseline: tuple[str, Callable] | None) -> None:
    settings = [(c, sigma) for c in (10, 100, 1000) for sigma in (1.0, 0.1, 0.01)]
    names = ["cross_entropy", "exact"] + ([EAGER] if device.type == "cpu" else [])
    names += [f"exact @{baseline[0]}"] if baseline else []
    rows: dict[str, list[str]] = {name: [] for name in names}
    for c, sigma in settings:
        gen = torch.Generator().manual_seed(c)
        target = torch.randint(0, c, (BATCH,), generator=gen)
        logits = torch.randn(BATCH, c, generator=gen)
        logits[torch.arange(BATCH), target] += 3.0
        logits, target = logits.to(device), target.to(device)
        candidates = {
            "cross_entropy": loss_step(F.cross_entropy, logits, target),
            "exact": loss_step(lambda x, t: exact(x, t, sigma=sigma), logits, target),
        }
        if device.type == "cpu":
            candidates[EAGER] = loss_step(lambda x, t: pytorch_path(exact)(x, t, sigma=sigma), logits, target)
        if baseline:
            candidates[names[-1]] = loss_step(lambda x, t: baseline[1](x, t, sigma=sigma), logits, target)
        med = round_robin(candidates, rounds if c < 1000 else max(5, rounds // 3), device)
        for name in names:
            rows[name].append(cell(med, name))
    print_table(
        f"\nforward+backward on a trained model's logits (true class 3 ahead of N(0, 1)), B={BATCH}, "
        f"float32, {device};\nmedian ms over {rounds} rounds (ratio to cross-entropy)",
        [f"C={c} sigma={sigma:g}" for c, sigma in settings],
        rows,
    )


def mlp_step_table(device: torch.device, rounds: int, baseline: tuple[str, Callable] | None) -> None:
    print(f"\none SGD step (zero_grad, forward, loss, backward, step) of a 784-256-10 MLP, batch {BATCH},")
    print("random 784-dim inputs (the time does not depend on pixel values), float32")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 784, generator=gen).to(device)
    y = torch.randint(0, 10, (BATCH,), generator=gen).to(device)

    def make(loss_fn):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
        model = model.to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()

        return step

    candidates = {"cross_entropy": make(F.cross_entropy), "exact": make(exact)}
    if device.type == "cpu":
        candidates[EAGER] = make(pytorch_path(exact))
    if baseline:
        candidates[f"exact @{baseline[0]}"] = make(baseline[1])
    med = round_robin(candidates, rounds, device)
    print("   ".join(f"{name} {1e3 * t:.3f} ms ({t / med['cross_entropy']:.2f}x)" for name, t in med.items()))


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))


def memory_child(method: str, classes: int, threads: int) -> None:
    """Print the extra peak RSS (KiB) of one forward+backward, in a fresh process (Linux)."""
    torch.set_num_threads(threads)
    fn = F.cross_entropy if method == "cross_entropy" else exact
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(BATCH, classes, generator=gen)
    target = torch.randint(0, classes, (BATCH,), generator=gen)
    loss_step(fn, logits[:4], target[:4])()  # load kernels and one-time tables, not counted
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS to the current RSS
    before = _status_kib("VmRSS")
    loss_step(fn, logits, target)()
    print(_status_kib("VmHWM") - before)


def memory_table(threads: int, cuda: bool) -> None:
    print(f"\nextra peak memory of one forward+backward, B={BATCH}, float32")
    for c in (100, 1000):
        cells = []
        for method in ("cross_entropy", "exact"):
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", method, str(c), "--threads", str(threads)],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            )
            cells.append(f"{method} {int(out.stdout.split()[-1]) / 1024:.1f} MiB")
        print(f"CPU peak RSS delta, C={c}: " + "   ".join(cells))
        if cuda:
            cells = []
            for method, fn in (("cross_entropy", F.cross_entropy), ("exact", exact)):
                logits = torch.randn(BATCH, c, device="cuda")
                target = torch.randint(0, c, (BATCH,), device="cuda")
                loss_step(fn, logits[:4], target[:4])()
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                loss_step(fn, logits, target)()
                torch.cuda.synchronize()
                cells.append(f"{method} {(torch.cuda.max_memory_allocated() - base) / 2**20:.1f} MiB")
            print(f"CUDA max_memory_allocated delta, C={c}: " + "   ".join(cells))


def accuracy_table() -> None:
    sys.path.insert(0, str(ROOT))
    from tests.losses.test_exact import log_p_of, margin_cases, reference_log_p

    print(
        "\naccuracy, float64: max |P - P_ref| against QUADPACK over tied, spread and uniform margins "
        "in [-20, 20]"
    )
    print(f"{'num_nodes':>10}" + "".join(f"{'C=' + str(c):>11}" for c in (3, 10, 100)))
    refs = {}
    for c in (3, 10, 100):
        cases = margin_cases(c)
        refs[c] = cases, torch.tensor([reference_log_p(m) for m in cases], dtype=torch.float64)
    for k in NODES:
        cells = []
        for c in (3, 10, 100):
            cases, ref = refs[c]
            cells.append(f"{float((log_p_of(cases, num_nodes=k).exp() - ref.exp()).abs().max()):.1e}")
        print(f"{k:>10}" + "".join(f"{cell:>11}" for cell in cells))

    two_groups_table()

    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(BATCH, 10, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 10, (BATCH,), generator=gen)
    p = 1 - exact(logits, target, reduction="none")
    margins = rival_margins(logits, target)
    estimates = torch.stack([genz_monte_carlo(margins, generator=gen)[0] for _ in range(20)])
    print(
        f"Genz MC, 16 samples, C=10, N(0,1) logits, 20 draws: std of one estimate "
        f"{float(estimates.std(0).mean()):.4f}, mean |P_mc - P| {float((estimates - p).abs().mean()):.4f} "
        f"(means over {BATCH} rows)"
    )


def two_group_cases(num_classes: int) -> np.ndarray:
    """Margins of rows whose rivals' maximum can have two modes (the rule's known gap): one to three
    close rivals and the rest in a cluster a few sigma behind, as a grid and drawn at random."""
    rivals = num_classes - 1
    grid = [np.concatenate([[a], np.full(rivals - 1, a + b)]) for a in (-2, -1, 0, 1, 2, 3) for b in np.arange(1, 8.5, 0.5)]
    rng = np.random.default_rng(num_classes)
    drawn = []
    for gap in (3.0, 4.0, 5.0, 6.0):
        for spread in (0.3, 1.0):
            for _ in range(10):
                close = rng.normal(0.0, 0.5, rng.integers(1, 4))
                rest = gap + rng.normal(0.0, spread, rivals - close.size)
                drawn.append(np.concatenate([close, rest]) + rng.normal())
    return np.stack(grid + drawn)


def two_groups_table() -> None:
    from tests.losses.test_exact import log_p_of, reference_log_p

    classes = (10, 100, 1000)
    print(
        "\naccuracy, float64, the known gap: close rivals and a cluster a few sigma behind (two_group_cases): "
        "max |P - P_ref| and rows off by more than 1e-6"
    )
    print(f"{'num_nodes':>10}" + "".join(f"{'C=' + str(c):>20}" for c in classes))
    refs = {}
    for c in classes:
        cases = two_group_cases(c)
        refs[c] = cases, torch.tensor([reference_log_p(m) for m in cases], dtype=torch.float64)
    for k in (16, 32, 64, 128):
        cells = []
        for c in classes:
            cases, ref = refs[c]
            error = (log_p_of(cases, num_nodes=k).exp() - ref.exp()).abs()
            cells.append(f"{float(error.max()):.1e} ({int((error > 1e-6).sum())}/{len(cases)})")
        print(f"{k:>10}" + "".join(f"{cell:>20}" for cell in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="round-robin repeats per timing (default 30)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as lossbench trains)")
    parser.add_argument("--steps", type=int, default=20, help="steps per round in the training-loop table (default 20)")
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100], help="C of the training-loop table")
    parser.add_argument("--loop-only", action="store_true", help="only the training-loop table")
    parser.add_argument("--skip-accuracy", action="store_true", help="only time and measure memory")
    parser.add_argument("--accuracy-only", action="store_true", help="only the accuracy tables (no timing)")
    parser.add_argument("--baseline", metavar="REF", help="also time the quadrature of this git revision")
    parser.add_argument("--memory-child", nargs=2, metavar=("METHOD", "C"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]), args.threads)
        return
    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    gpu = f", GPU {torch.cuda.get_device_name()}" if cuda else ""
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads of {os.cpu_count()} cores, "
        f"load average before {os.getloadavg()[0]:.2f}{gpu}"
    )
    kernel = "fused kernel" if _exact_native.kernel() else f"PyTorch ({_exact_native.unavailable_reason()})"
    print(f"EXACT on CPU: {kernel}")
    if args.accuracy_only:
        accuracy_table()
        return
    baseline = (args.baseline, baseline_exact(args.baseline)) if args.baseline else None
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if cuda else [])
    for device in devices:
        training_loop_table(device, args.rounds, args.steps, tuple(args.classes))
    if args.loop_only:
        print(f"\nload average after: {os.getloadavg()[0]:.2f} (other processes share this machine)")
        return
    for device in devices:
        speed_table(device, args.rounds, baseline)
        mlp_step_table(device, args.rounds, baseline)
        trained_table(device, args.rounds, baseline)
    memory_table(args.threads, cuda)
    if not args.skip_accuracy:
        accuracy_table()
    print(f"\nload average after: {os.getloadavg()[0]:.2f} (other processes share this machine)")


if __name__ == "__main__":
    main()
