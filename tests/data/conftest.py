"""Shared fixtures: a hermetic data/cache location per session, and the real datasets if present."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lossbench-cache")


@pytest.fixture(autouse=True)
def hermetic_dirs(monkeypatch, session_cache, tmp_path_factory):
    """Parse cache shared by the session (real sets parse once); default data dir empty."""
    monkeypatch.setenv("LOSSBENCH_CACHE_DIR", str(session_cache))
    monkeypatch.setenv("LOSSBENCH_DATA_DIR", str(tmp_path_factory.mktemp("no-data")))


@pytest.fixture
def fresh_cache(monkeypatch, tmp_path) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("LOSSBENCH_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real datasets not found at {SHARED} (../shared/data beside the repository)")
    return SHARED
