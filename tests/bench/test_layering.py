"""Reading a report imports no trainer: the reports read stored trials through
``lossbench.bench.storage``, never through the runner (which imports execution, data, models
and the packed trainer), and of ``lossbench.train`` they load the transform registry, not the
training loop or the step builder.  Each report module is imported in a fresh interpreter, whose
``sys.modules`` is then read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ("lossbench.bench.report", "lossbench.ledger.report")
# The runner and what only training needs.
TRAINER = (
    "lossbench.bench.execution",
    "lossbench.bench.runner",
    "lossbench.train.packed",
    "lossbench.models",
    "lossbench.data",
)
# The training loop, the step builder and the packed trainer, which lossbench.train loads on first use.
TRAINING = ("lossbench.train.loop", "lossbench.train.step", "lossbench.train.packed")


def loaded_after_import(module: str) -> set[str]:
    script = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    argv = [sys.executable, "-c", script]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


@pytest.fixture(scope="module", params=REPORTS)
def report_modules(request) -> tuple[str, set[str]]:
    return request.param, loaded_after_import(request.param)


def test_a_report_imports_no_trainer(report_modules):
    module, loaded = report_modules
    assert module in loaded
    assert not [m for m in TRAINER if m in loaded], f"importing {module} imports the trainer"


def test_a_report_imports_the_transform_registry_but_no_training_machinery(report_modules):
    """A report describes a method's step transforms from ``lossbench.train``'s registry (and
    checks a spec's optimizer and schedule names against ``lossbench.train.vocabulary``), but
    loads none of the training loop, the step builder or the packed trainer."""
    module, loaded = report_modules
    assert "lossbench.train._registry" in loaded
    assert not [m for m in TRAINING if m in loaded], f"importing {module} imports the training machinery"
