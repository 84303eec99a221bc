"""Every registered loss has a reference test: structural, so a new loss without one fails here.

The reference modules are those that check a loss against an independent formula or library
(``test_reference_*.py``; EXACT's in ``test_exact*.py``).  A loss counts as covered when one of
them uses its function or its module twin by name, or its registry name as a string
(``get_loss("...")``), outside the import lines.  The generic suite (``test_common.py``) runs on
every loss anyway; what it cannot say is that the values are the right ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lossbench.losses import LOSSES

HERE = Path(__file__).parent
REFERENCE_MODULES = sorted([*HERE.glob("test_reference_*.py"), *HERE.glob("test_exact*.py")])


def names_used(path: Path) -> set[str]:
    """Identifiers, attribute names and string constants of a module, its imports left out."""
    used: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            used.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            used.add(node.value)
    return used


USED = {path.name: names_used(path) for path in REFERENCE_MODULES}


def test_the_reference_modules_are_found():
    assert "test_reference_core.py" in USED and "test_exact.py" in USED


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_registered_loss_has_a_reference_test(name):
    info = LOSSES.get(name)
    handles = {info.function.__name__, info.module.__name__, info.name}
    covering = [module for module, used in USED.items() if handles & used]
    assert covering, (
        f"loss {name!r} has no reference test: none of {sorted(USED)} uses {sorted(handles)}; "
        "add one that checks it against an independent formula or library"
    )

