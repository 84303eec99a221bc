"""The project's promises about itself: README commands, CI entry point, CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in first_block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_first_screen_has_exactly_two_commands():
    commands = readme_commands()
    assert len(commands) == 2
    assert all("constraints.txt" in c for c in commands), "torch must be pinned in the set-up path"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[1] in ci.splitlines()


def test_constraints_pin_torch():
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().split()


def test_python_floor_is_what_the_code_needs_and_the_readme_says():
    """``requires-python`` allows no version the code cannot run on (a bare ``import tomllib`` needs
    3.11), and the README's set-up names that floor."""
    import tomllib

    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minor = int(re.fullmatch(r">=\s*3\.(\d+)", spec).group(1))
    sources = [*(ROOT / "src").rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
    bare = [p.relative_to(ROOT) for p in sources if re.search(r"^import tomllib\b", p.read_text(), re.M)]
    if bare:
        assert minor >= 11, f"{bare} import tomllib (Python 3.11) but requires-python is {spec!r}"
    assert f"Python 3.{minor}" in (ROOT / "README.md").read_text()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lossbench", *args],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_lists_every_registered_loss_with_reference():
    from lossbench.losses import LOSSES

    out = run_cli("losses")  # one line per loss (-v wraps to the terminal: tests/test_cli_details.py)
    assert out.returncode == 0, out.stderr
    for name, info in LOSSES.items():
        line = next(line for line in out.stdout.splitlines() if line.split()[0] == name)
        assert info.reference in line


def test_cli_toy_prints_the_papers_optima():
    out = run_cli("toy")
    assert out.returncode == 0, out.stderr
    rows = {tuple(line.split()[:2]): line for line in out.stdout.splitlines()[3:]}
    assert "0.700" in rows[("cross_entropy", "none")]
    assert "[0.750, 1.000]" in rows[("hinge", "none")]
    assert "1.000" in rows[("cross_entropy", "0.1")].split()[3]


def test_cli_bad_argument_is_an_error():
    out = run_cli("no-such-command")
    assert out.returncode == 2  # argparse's usage error
    assert out.stderr.startswith("usage: lossbench")
    assert "lossbench: error: argument command: invalid choice: 'no-such-command'" in out.stderr
