"""Every ```python block of the README runs as written, from the repository root.

A block that loads a dataset whose files are not built in reads them from ``../shared/data``
(``$LOSSBENCH_DATA_DIR``, as the README says) and is skipped where they are absent (a fresh clone):
this test never downloads.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def python_blocks() -> list[tuple[str, str]]:
    """(the section heading above it, the code) of every python block, in order."""
    text = (ROOT / "README.md").read_text()
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S):
        headings = re.findall(r"^#+ (.+)$", text[: match.start()], re.M)
        blocks.append((headings[-1] if headings else "top", match.group(1)))
    return blocks


BLOCKS = python_blocks()


def test_the_readme_has_its_examples():
    assert len(BLOCKS) >= 4


def datasets_with_files(code: str) -> list[str]:
    from lossbench.data import get_dataset_info

    names = re.findall(r"load_dataset\(\s*[\"']([^\"']+)[\"']", code)
    return [n for n in names if get_dataset_info(n).kind == "files"]


@pytest.mark.parametrize("heading, code", BLOCKS, ids=[f"{i}-{h}" for i, (h, _) in enumerate(BLOCKS)])
def test_readme_block_runs(heading, code, monkeypatch, tmp_path, fresh_registries):
    # fresh_registries: the blocks register a model and a loss, which must not outlive the test
    from lossbench.data import get_dataset_info

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LOSSBENCH_CACHE_DIR", str(tmp_path / "parsed"))
    # A block's tempfile.mkdtemp() lands in tmp_path, not /tmp; the kernel, XDG and matplotlib caches
    # are the session's (tests/conftest.py).
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    needed = datasets_with_files(code)
    if needed:
        monkeypatch.setenv("LOSSBENCH_DATA_DIR", str(SHARED_DATA))
        absent = [n for n in needed if get_dataset_info(n).missing(SHARED_DATA)]
        if absent:
            pytest.skip(f"{', '.join(absent)}: no files under {SHARED_DATA}")
    exec(compile(code, f"README.md ({heading})", "exec"), {"__name__": "__readme__"})
