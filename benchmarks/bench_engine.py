"""The bench engine's overhead against a bare PyTorch loop on the same trial, and trials/minute.

For each workload the same training run (model, data, loss, optimiser, epochs, batch size,
seed) is timed four ways, interleaved, medians of the repeats:

  bare     a plain loop: randperm, slice, forward, loss, backward, step (PyTorch's fused SGD, the
           kernel the engine picks on CPU); one final evaluation
           (the loss is the method's own function, ``lossbench.losses.cross_entropy``, called
           directly: the method is not overhead, everything around it is)
  bare+val the same loop computing the curves the engine stores: the mean training loss of each
           epoch, and the held-out loss and accuracy after every epoch (as a plain loop computes
           them: arg-max, compare, mean): what the engine adds beyond that is its machinery
  engine   lossbench's ``train_and_score``: the same run through ``lossbench.train.fit`` plus
           the per-epoch held-out curves and the torchmetrics scores the bench stores
  trial    a whole tuning trial through the runner: Optuna ask/tell on a SQLite file, the
           heartbeat thread, and the user attributes written to storage

and the ratios engine/bare, engine/(bare+val) and trial/bare are printed, each the median over
the rounds of the ratio within a round (the four runs of a round are back to back, so a slow
spell of the machine cancels out).  The target (engine overhead under 10 %) is engine/(bare+val):
the bare loop doing the same work, curves included; engine/bare shows what the per-epoch curves
themselves cost.  The tuner's and the storage's own cost per trial is timed apart, on tuning
trials whose training is replaced by a stored result (the difference trial - engine is too noisy
for that).  Then the built-in preset's trials per minute are measured on a fresh SQLite file
(``--skip-preset`` skips it).

    python benchmarks/bench_engine.py [--repeats 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lossbench.bench.execution import DataCache, train_and_score  # noqa: E402
from lossbench.bench.methods import resolve_method  # noqa: E402
from lossbench.bench.runner import Heartbeats, Runner  # noqa: E402
from lossbench.bench.spec import load_preset, parse_spec  # noqa: E402
from lossbench.bench.storage import default_storage_url, open_storage  # noqa: E402
from lossbench.losses import cross_entropy  # noqa: E402
from lossbench.models import build_model  # noqa: E402

WORKLOADS = {
    # name: (dataset, dataset params, model, model params, epochs, batch size)
    "linear on digits (built-in preset)": ("digits", {}, "linear", {}, 16, 256),
    "MLP on synthetic 20k x 100": ("synthetic", {"n_samples": 20000, "n_features": 100, "n_classes": 10}, "mlp", {}, 5, 128),
}
PARAMS = {"lr": 0.1, "weight_decay": 1e-4}


def spec_for(dataset, dparams, model, mparams, epochs, batch):
    return parse_spec(
        {
            "name": "overhead", "trials": 1000, "seeds": 2, "heartbeat_interval": 10,
            "train": {"model": model, "model_params": mparams, "epochs": epochs, "batch_size": batch},
            "datasets": [{"name": dataset, "params": dparams}],
            "methods": [{"name": "ce", "loss": "cross_entropy"}],
        }
    )  # fmt: skip


def bare_loop(split, spec, seed, per_epoch_eval=False):
    torch.manual_seed(seed)
    model = build_model(spec.train.model, split.dataset, **spec.train.model_params)
    # The engine's optimiser kernel on CPU (fused), so that the ratios measure the machinery
    # around the same arithmetic.
    opt = torch.optim.SGD(
        model.parameters(), lr=PARAMS["lr"], momentum=0.9, weight_decay=PARAMS["weight_decay"], fused=True
    )
    steps_per_epoch = -(-len(split.x_fit) // spec.train.batch_size)
    gamma = (1e-4 / PARAMS["lr"]) ** (1 / max(spec.train.epochs * steps_per_epoch - 1, 1))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
    gen = torch.Generator().manual_seed(seed)
    curve = []
    for _ in range(spec.train.epochs):
        perm = torch.randperm(len(split.x_fit), generator=gen)
        train_loss = 0.0
        for i in range(0, len(perm), spec.train.batch_size):
            idx = perm[i : i + spec.train.batch_size]
            loss = cross_entropy(model(split.x_fit[idx]), split.y_fit[idx], validate=False)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if per_epoch_eval:
                train_loss = train_loss + loss.detach()
        if per_epoch_eval:
            with torch.no_grad():
                model.eval()
                logits = model(split.x_eval)
                accuracy = (logits.argmax(1) == split.y_eval).float().mean()
                heldout = cross_entropy(logits, split.y_eval, validate=False)
                curve.append((float(train_loss) / steps_per_epoch, float(heldout), float(accuracy)))
                model.train()
    if per_epoch_eval:
        return curve[-1][2]  # the last epoch's held-out score is the final model's
    with torch.no_grad():
        model.eval()
        return float((model(split.x_eval).argmax(1) == split.y_eval).float().mean())


@contextlib.contextmanager
def one_trial_runner(spec, folder):
    """A runner on a fresh SQLite file that trains one run per call (``--pack 1``), its heartbeats kept
    as ``Runner.run`` keeps them."""
    runner = Runner(spec, open_storage(default_storage_url(folder), spec.heartbeat_interval), torch.device("cpu"), pack=1)
    runner._heartbeats = Heartbeats(runner.storage)
    with runner._heartbeats:
        yield runner
    runner._heartbeats = None


def tune_one(runner, unit) -> None:
    """One tuning trial of ``unit`` as the runner makes it: started, asked (TPE), trained, scored and told."""
    started = runner._start_next(unit, {"tune": 1, "final": 1})
    if isinstance(started, str):
        raise RuntimeError(f"no tuning trial to start ({started}): raise the spec's trials")
    runner._run_pack([started])


def tuner_storage_seconds(spec, result, trials: int) -> float:
    """Median seconds per tuning trial with the training replaced by ``result``: Optuna and storage only."""
    with tempfile.TemporaryDirectory() as tmp, mock.patch("lossbench.bench.runner.train_and_score", return_value=result), \
            one_trial_runner(spec, tmp) as runner:  # fmt: skip
        unit, times = runner.units[0], []
        for _ in range(trials + 2):  # two warm-up trials
            t0 = time.perf_counter()
            tune_one(runner, unit)
            times.append(time.perf_counter() - t0)
    return statistics.median(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-preset", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # (each ask builds an in-memory study, which Optuna announces)
    print(f"torch {torch.__version__}, {args.threads} CPU threads, medians of {args.repeats} interleaved repeats\n")
    print(f"{'workload':38s} {'bare s':>8s} {'bare+val s':>11s} {'engine s':>9s} {'trial s':>8s} "
          f"{'engine/bare':>12s} {'engine/(bare+val)':>18s} {'trial/bare':>11s} {'tuner+storage ms':>17s}")  # fmt: skip
    for name, (dataset, dparams, model, mparams, epochs, batch) in WORKLOADS.items():
        spec = spec_for(dataset, dparams, model, mparams, epochs, batch)
        split = DataCache(spec, torch.device("cpu")).get(spec.datasets[0], "tune")
        method = resolve_method(spec.methods[0])
        with tempfile.TemporaryDirectory() as tmp, one_trial_runner(spec, tmp) as runner:
            unit = runner.units[0]
            times = {"bare": [], "bare+val": [], "engine": [], "trial": []}
            for r in range(args.repeats + 1):  # the first round warms up and is dropped
                t = [time.perf_counter()]
                bare_loop(split, spec, seed=r)
                t.append(time.perf_counter())
                bare_loop(split, spec, seed=r, per_epoch_eval=True)
                t.append(time.perf_counter())
                result = train_and_score(split, method, PARAMS, spec, seed=r)
                t.append(time.perf_counter())
                tune_one(runner, unit)
                t.append(time.perf_counter())
                if r:
                    for key, start, end in zip(times, t, t[1:]):
                        times[key].append(end - start)
        med = {k: statistics.median(v) for k, v in times.items()}

        def ratio(a: str, b: str) -> float:
            return statistics.median(x / y for x, y in zip(times[a], times[b]))

        fixed = tuner_storage_seconds(spec, result, trials=20)  # the built-in preset's budget
        print(
            f"{name:38s} {med['bare']:8.3f} {med['bare+val']:11.3f} {med['engine']:9.3f} {med['trial']:8.3f} "
            f"{ratio('engine', 'bare'):12.3f} {ratio('engine', 'bare+val'):18.3f} {ratio('trial', 'bare'):11.3f} {1000 * fixed:17.1f}"
        )
    print("\n(tuner+storage: median ms per trial of 20 tuning trials whose training returns a stored result;")
    print(" trial times use tuned hyperparameters sampled by Optuna, so their lr differs from the fixed")
    print(" lr of bare/engine; the amount of training per trial is the same)")
    if args.skip_preset:
        return
    spec = load_preset("builtin")
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(spec, open_storage(default_storage_url(tmp), spec.heartbeat_interval), torch.device("cpu"))
        t0 = time.perf_counter()
        runner.run()
        elapsed = time.perf_counter() - t0
    runs = runner.total_runs()
    print(f"\nbuilt-in preset: {runs} runs ({len(runner.units)} dataset x method units) in {elapsed:.1f} s "
          f"= {60 * runs / elapsed:.0f} trials per minute")  # fmt: skip


if __name__ == "__main__":
    main()
