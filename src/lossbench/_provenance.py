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


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The git commit of this checkout, where lossbench runs from one (None otherwise); asked once
    per process."""
    try:
        done = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def version_line() -> str:
    """``lossbench 0.1.0`` and, in a git checkout, `` (commit abc1234)``."""
    from lossbench import __version__

    commit = git_commit()
    return f"lossbench {__version__}" + (f" (commit {commit})" if commit else "")


def provenance() -> dict[str, Any]:
    """lossbench's version and commit, torch's version and threads, the host and Python."""
    import torch

    from lossbench import __version__

    return {
        "lossbench": __version__, "commit": git_commit(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "host": socket.gethostname(), "python": platform.python_version(),
    }  # fmt: skip
