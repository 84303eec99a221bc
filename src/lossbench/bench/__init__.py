"""The bench: equal-budget tuning, multi-seed evaluation, trial storage (Optuna) and reports.

Data flow: spec -> tuner (one Optuna study per dataset x method, equal trial budget, scored on a
validation split) -> evaluation (the chosen configuration re-trained with several seeds, scored
on the test split) -> storage (SQLite file or any SQLAlchemy URL) -> report (read from storage
alone).
"""
