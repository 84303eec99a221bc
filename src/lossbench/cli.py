"""The ``lossbench`` command line.

Each sub-command imports what it needs when it runs, so ``lossbench losses`` stays fast and
the core install (torch only) can run everything that does not need the bench's extras.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lossbench._table import format_table


def _space(param) -> str:
    if param.space is None:
        return f"{param.name}={param.default!r}"
    return f"{param.name}={param.default!r} in {param.space}"


def cmd_losses(args: argparse.Namespace) -> int:
    from lossbench.losses import LOSSES

    rows = []
    for name, info in LOSSES.items():
        params = "; ".join(_space(p) for p in info.hyperparams) or "-"
        needs = ", ".join(info.requires) or "-"
        rows.append((name, info.signature, ",".join(info.tasks), params, needs, info.reference))
    if args.verbose:
        print(format_table(("loss", "signature", "tasks", "hyperparameters", "needs", "reference"), rows))
    else:
        print(format_table(("loss", "signature", "tasks", "reference"), [(r[0], r[1], r[2], r[5]) for r in rows]))
    return 0


def cmd_transforms(args: argparse.Namespace) -> int:
    from lossbench.train import TRANSFORMS

    rows = []
    for name, info in TRANSFORMS.items():
        params = "; ".join(_space(p) for p in info.hyperparams) or "-"
        rows.append((name, info.stage, params, info.reference))
    if args.verbose:
        print(format_table(("transform", "stage", "hyperparameters", "reference"), rows))
    else:
        print(format_table(("transform", "stage", "reference"), [(r[0], r[1], r[3]) for r in rows]))
    return 0


def cmd_toy(args: argparse.Namespace) -> int:
    from lossbench.reproduce.toy_1d import results_table, run_toy

    temperatures = [None if t <= 0 else t for t in args.temperature]
    if not all(s > 0 for s in args.sigma):
        raise ValueError(f"--sigma values must be > 0, got {args.sigma}")
    print("EXACT paper's 1-D example: points (-0.25,-1), (0,-1), (0.25,+1); model sign((x - b) / T)")
    print(results_table(run_toy(temperatures, exact_sigmas=args.sigma)))
    print("exact: expected accuracy under Gaussian noise sigma on each logit, f = x - b (sigma acts as T)")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    import inspect

    from lossbench.data import DATASETS, load_dataset

    def default(value: object) -> str:
        return "<required>" if value is inspect.Parameter.empty else repr(value)

    if args.names:
        for name in args.names:
            ds = load_dataset(name, data_dir=args.data_dir, download=args.download)
            print(ds.summary())
            print(f"  source: {ds.source}")
        return 0
    rows = []
    for name, info in DATASETS.items():
        where = str(info.directory(args.data_dir)) if info.kind == "files" else "-"
        row = [name, info.kind, info.task, info.feature_kind, info.availability(args.data_dir), info.source]
        if args.verbose:
            params = ", ".join(f"{k}={default(v)}" for k, v in info.params().items())
            row += [where, params or "-", info.summary]
        rows.append(row)
    header = ["dataset", "kind", "task", "features", "available", "source"]
    print(format_table(header + (["directory", "parameters", "summary"] if args.verbose else []), rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lossbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("losses", help="list every registered loss with its reference")
    p.add_argument("-v", "--verbose", action="store_true", help="also show hyperparameters and search spaces")
    p.set_defaults(func=cmd_losses)

    p = sub.add_parser("transforms", help="list every training-step transform with its reference")
    p.add_argument("-v", "--verbose", action="store_true", help="also show hyperparameters and search spaces")
    p.set_defaults(func=cmd_transforms)

    p = sub.add_parser("toy", help="the EXACT paper's 1-D example: optimal threshold per loss")
    p.add_argument(
        "--temperature",
        type=float,
        nargs="+",
        default=[0.0, 0.1],
        help="temperatures T to try (0 = no temperature); default: 0 0.1",
    )
    p.add_argument(
        "--sigma",
        type=float,
        nargs="+",
        default=[1.0, 0.1],
        help="fixed EXACT noise levels to try (> 0); default: 1 0.1",
    )
    p.set_defaults(func=cmd_toy)

    p = sub.add_parser(
        "datasets",
        help="list every dataset with its source and local availability, or load the named ones",
    )
    p.add_argument("names", nargs="*", help="datasets to load and summarise (default: list all)")
    p.add_argument(
        "--data-dir",
        default=None,
        help="directory holding <dataset>/ folders (default: $LOSSBENCH_DATA_DIR or ~/.cache/lossbench/data)",
    )
    p.add_argument(
        "--no-download",
        dest="download",
        action="store_false",
        help="fail instead of downloading missing files",
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="also show directories, loader parameters and summaries"
    )
    p.set_defaults(func=cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as err:  # bad input from the user: one clear line, no traceback
        print(f"lossbench: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
