"""Fixtures for the whole suite: the caches lossbench writes stay in this session's temporary folder.

Without this, any test that loads a dataset or calls ``exact()`` would write the parse cache and the
compiled kernel into the user's ``~/.cache/lossbench`` (and a subprocess's matplotlib its font cache
into ``~/.cache/matplotlib``).  The folders are per session, not per test (under ``pytest -n`` the
parse cache and the kernel's are shared by the run's processes): real datasets parse once and the
kernel compiles once (a few seconds).  pytest's base temporary folder is the user's own and
0700, so the kernel's trust check accepts them.  A test that needs other folders sets them with its
own ``monkeypatch``, which restores these afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_collection_modifyitems(items):
    # The tests that start processes first: with the suite split between processes (pytest -n) they
    # then run side by side instead of leaving one process alone with the last of them.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _shared_dir(tmp_path_factory, name: str) -> Path:
    """A folder of this test run: under ``pytest -n`` one for all its processes (pytest's base
    folder of the run, private to the user), so that real data sets parse and the kernel compiles
    once per run, not once per process; their entries are written atomically."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return tmp_path_factory.mktemp(name)
    folder = tmp_path_factory.getbasetemp().parent / name
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    return _shared_dir(tmp_path_factory, "lossbench-cache")


@pytest.fixture(scope="session", autouse=True)
def hermetic_caches(session_cache, tmp_path_factory):
    # session-scoped, so set before any module- or session-scoped fixture of a test file runs
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOSSBENCH_CACHE_DIR", str(session_cache))
        mp.setenv("LOSSBENCH_KERNEL_DIR", str(_shared_dir(tmp_path_factory, "lossbench-kernels")))
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        mp.setenv("MPLCONFIGDIR", str(tmp_path_factory.mktemp("matplotlib")))
        yield


@pytest.fixture
def fresh_registries(monkeypatch):
    """Every component registry's entries as they are, restored after the test: what the test (or
    code it runs in this process: a README block, a plugin) registers goes away, so a later test
    sees the registries a new process would (as tests/test_exports.py's ``_fresh``)."""
    from lossbench.data import DATASETS
    from lossbench.losses import LOSSES
    from lossbench.models import MODELS
    from lossbench.train import TRANSFORMS

    for registry in (LOSSES, TRANSFORMS, MODELS, DATASETS):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
