"""The C kernel compiles cleanly with the compiler's warnings on (both precisions).

``-Wmaybe-uninitialized`` is left out: GCC warns that ``terms[0]`` may be read uninitialised
where it cannot prove that a row has at least one quadrature node (it always has).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from lossbench.losses import _exact_native

WARNINGS = ("-Wall", "-Wextra", "-Werror", "-Wno-maybe-uninitialized")
COMPILER = shutil.which("cc") or shutil.which("gcc")


@pytest.mark.skipif(COMPILER is None and not os.environ.get("LOSSBENCH_REQUIRE_KERNEL"), reason="no C compiler")
@pytest.mark.parametrize("defines", [(), ("-DREAL_DOUBLE",)], ids=["float32", "float64"])
def test_the_kernel_compiles_without_warnings(defines, tmp_path):
    assert COMPILER is not None, "LOSSBENCH_REQUIRE_KERNEL is set but there is no C compiler"
    command = [COMPILER, *_exact_native.FLAGS, *WARNINGS, *defines, "-c", str(_exact_native.SOURCE), "-o", str(tmp_path / "k.o")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
