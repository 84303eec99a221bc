"""Local workers: their logs go to --out even before the study has created it."""

from __future__ import annotations

import pytest

from lossbench.bench.workers import LocalWorkers


@pytest.mark.slow
def test_local_workers_create_the_output_folder_for_their_logs(tmp_path):
    out = tmp_path / "not-yet" / "made"
    url = f"sqlite:///{tmp_path}/empty.db"
    with pytest.raises(RuntimeError, match="local worker"):  # no such study: the worker exits non-zero
        with LocalWorkers(1, "no-such-study", url, str(out)):
            pass
    log = out / "worker-1.log"
    assert log.is_file() and log.read_text().strip()
