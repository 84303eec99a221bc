"""Where a number came from: lossbench's version and commit, torch's, the threads and the host.

One place for these facts, read by the bench's runs (each run's record), the bench report, the
claims ledger and ``lossbench --version``.
"""

from __future__ import annotations

import functools
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

from lossbench._paths import program_on_path, program_reason


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The git commit of this checkout, where lossbench runs from one (None otherwise), ``-dirty``
    after it where lossbench's own files differ from it; asked once per process."""
    return describe_checkout(Path(__file__).parent)


def describe_checkout(directory: Path) -> str | None:
    """The short commit of the git checkout holding ``directory``, with ``-dirty`` where a file under
    ``directory`` is changed or not yet committed (that commit alone would not give the same code);
    None outside a checkout or where the checkout tracks no file under ``directory``."""

    program = program_on_path("git")  # (from PATH's absolute folders: never a ./git of the working folder)
    if program is not None and program_reason(program) is not None:  # (another user's git: no commit named)
        program = None

    def git(*args: str) -> str | None:
        if program is None:
            return None
        try:
            # --no-optional-locks: a status would take .git/index.lock and may rewrite the index (a write outside
            # --out, and a developer's concurrent commit in that checkout could fail on the lock)
            done = subprocess.run([program, "--no-optional-locks", "-C", str(directory), *args], capture_output=True,
                                  text=True, timeout=10, check=False)  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = (git("rev-parse", "--short", "HEAD") or "").strip()
    if not commit or not (git("ls-files", "--", ".") or "").strip():
        return None  # (no commit holds these files: an install into an ignored folder of some checkout, say)
    changes = git("status", "--porcelain", "--", ".")
    return commit + ("-dirty" if changes is None or changes.strip() else "")


def version_line() -> str:
    """``lossbench 0.1.0`` and, in a git checkout, `` (commit abc1234)``."""
    from lossbench import __version__

    commit = git_commit()
    return f"lossbench {__version__}" + (f" (commit {commit})" if commit else "")


@functools.cache
def cpu_model() -> str:
    """The processor's model name (Linux's /proc/cpuinfo; else what platform says): another CPU's vector code
    rounds otherwise, and a long training run carries the difference into its scores."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance() -> dict[str, Any]:
    """lossbench's version and commit, torch's version and threads, the host, its CPU and Python."""
    import torch

    from lossbench import __version__

    return {
        "lossbench": __version__, "commit": git_commit(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "host": socket.gethostname(), "cpu": cpu_model(),
        "python": platform.python_version(),
    }  # fmt: skip
