"""The bench: equal-budget tuning, multi-seed evaluation, trial storage (Optuna) and reports.

Data flow: spec -> tuner (one Optuna study per dataset x method, equal trial budget, scored on a
validation split) -> evaluation (the chosen configuration re-trained with several seeds, scored
on the test split) -> storage (SQLite file or any SQLAlchemy URL) -> report (read from storage
alone).
"""

__all__ = ["compare", "Comparison"]


def __getattr__(name: str):
    # Loaded on first use: the command line imports lossbench.bench.defaults and stays light.
    if name in __all__:
        from lossbench.bench import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
