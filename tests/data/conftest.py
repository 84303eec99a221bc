"""Shared fixtures: an empty default data folder per test, and the real datasets where present.

The real datasets are read from ``../shared/data`` beside the repository, or from the folder
``$LOSSBENCH_TEST_DATA`` names.  A test of a real dataset skips, naming it, where that dataset's
files are absent (``need_data``), whatever other datasets the folder holds.  The parse cache shared
by the session (``session_cache``) is set up by ``tests/conftest.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lossbench.data import get_dataset_info

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("LOSSBENCH_TEST_DATA") or ROOT.parent / "shared" / "data")


def need_data(*names: str) -> Path:
    """The real data folder, or a skip naming those of ``names`` whose files are not in it."""
    absent = [n for n in names if get_dataset_info(n).missing(SHARED)]
    if absent:
        pytest.skip(f"{', '.join(absent)}: files not found under {SHARED} (or set $LOSSBENCH_TEST_DATA)")
    return SHARED


@pytest.fixture(autouse=True)
def empty_data_dir(monkeypatch, tmp_path_factory):
    """The default data folder is empty: a test sees only the files it makes or names."""
    monkeypatch.setenv("LOSSBENCH_DATA_DIR", str(tmp_path_factory.mktemp("no-data")))


@pytest.fixture
def fresh_cache(monkeypatch, tmp_path) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("LOSSBENCH_CACHE_DIR", str(cache))
    return cache
