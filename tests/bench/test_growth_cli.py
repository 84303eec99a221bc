"""`lossbench run` says when it grows a stored study."""

from __future__ import annotations

from tests.bench.conftest import cli_ok, write_spec


def test_run_prints_what_grew(tmp_path):
    out = tmp_path / "out"
    small = write_spec(tmp_path / "small.toml", trials=2, epochs=1)
    first = cli_ok("run", str(small), "--out", str(out))
    assert "grows" not in first
    grown = write_spec(tmp_path / "grown.toml", trials=3, epochs=1)  # the same study, one more trial
    second = cli_ok("run", str(grown), "--out", str(out))
    assert "tiny: the stored study grows (trials 2 -> 3); its stored runs are reused" in second
