"""`lossbench transforms` lists every registered transform (its -v form: tests/test_cli_details.py)."""

from __future__ import annotations

from lossbench.cli import main
from lossbench.train import TRANSFORMS


def test_cli_lists_every_transform_with_stage_and_reference(capsys):
    assert main(["transforms"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, info in TRANSFORMS.items():
        line = next(line for line in lines if line.split()[0] == name)
        assert info.stage in line and info.reference in line
