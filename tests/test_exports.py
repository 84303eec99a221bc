"""What the packages export: every ``__all__`` name exists, and every registry is reached the same way."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest
import torch

import lossbench
from lossbench.registry import Registry

ROOT = Path(__file__).resolve().parents[1]


def modules_with_all() -> list[str]:
    names = ["lossbench"] + [m.name for m in pkgutil.walk_packages(lossbench.__path__, "lossbench.")]
    found = []
    for name in names:
        if name.endswith("__main__"):
            continue
        source = Path(importlib.util.find_spec(name).origin).read_text()
        if "__all__" in source:
            found.append(name)
    return found


WITH_ALL = modules_with_all()


def test_the_packages_declare_what_they_export():
    assert {"lossbench.losses", "lossbench.train", "lossbench.models", "lossbench.data"} <= set(WITH_ALL)


@pytest.mark.parametrize("name", WITH_ALL)
def test_every_name_in_all_exists(name):
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), f"{name}.__all__ lists a name twice"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what the module does not define: {missing}"


# One idiom for every component registry: the package exports the registry and its register_<kind>.
REGISTRIES = {
    "lossbench.losses": ("LOSSES", "register_loss"),
    "lossbench.train": ("TRANSFORMS", "register_transform"),
    "lossbench.models": ("MODELS", "register_model"),
    "lossbench.data": ("DATASETS", "register_dataset"),
}


def test_every_registry_module_is_listed_here():
    """A new ``_registry.py`` with a ``Registry`` must join ``REGISTRIES`` (and so be exported)."""
    found = set()
    for path in (ROOT / "src" / "lossbench").glob("*/_registry.py"):
        tree = ast.parse(path.read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "Registry"]
        if calls:
            found.add(f"lossbench.{path.parent.name}")
    assert found == set(REGISTRIES)


@pytest.mark.parametrize("package", sorted(REGISTRIES))
def test_each_package_exports_its_registry_and_register_function(package):
    module = importlib.import_module(package)
    registry, register = REGISTRIES[package]
    assert {registry, register} <= set(module.__all__)
    assert isinstance(getattr(module, registry), Registry)
    assert len(getattr(module, registry)) > 0


def _fresh(monkeypatch, registry: Registry) -> None:
    """The registry's entries as they are, restored after the test (what it adds goes away)."""
    monkeypatch.setattr(registry, "_entries", dict(registry._entries))


def test_a_loss_registered_through_the_public_function_is_found(monkeypatch):
    from lossbench.losses import LOSSES, CrossEntropyLoss, cross_entropy, get_loss, register_loss

    _fresh(monkeypatch, LOSSES)
    info = register_loss("ce_again", cross_entropy, CrossEntropyLoss, signature="softmax", reference="PyTorch")
    assert get_loss("ce_again") is info and info.tasks == ("multiclass",)
    with pytest.raises(ValueError, match="already registered"):
        register_loss("ce_again", cross_entropy, CrossEntropyLoss, signature="softmax", reference="PyTorch")


def test_a_transform_registered_through_the_public_function_is_made_by_name(monkeypatch):
    from lossbench.train import TRANSFORMS, Transform, make_transform, register_transform

    class Halve(Transform):
        """Halve every gradient."""

        name = "halve_for_test"
        stage = "gradient"

        def gradients(self, grads, ctx):
            torch._foreach_mul_(grads, 0.5)

    _fresh(monkeypatch, TRANSFORMS)
    info = register_transform(Halve, reference="none")
    assert info.summary == "Halve every gradient." and isinstance(make_transform("halve_for_test"), Halve)


def test_a_model_and_a_dataset_registered_through_the_public_functions_are_found(monkeypatch):
    from lossbench.data import DATASETS, DatasetInfo, get_dataset_info, load_dataset, register_dataset
    from lossbench.models import MODELS, ModelInfo, build_model, register_model

    _fresh(monkeypatch, MODELS)
    _fresh(monkeypatch, DATASETS)
    register_model(ModelInfo("zero_for_test", lambda ds, k: torch.nn.Linear(ds.input_shape[0], k), ("tabular",), (), "none", "a test"))
    digits = get_dataset_info("digits")
    register_dataset(DatasetInfo("digits_again", "builtin", digits.loader, "multiclass", "tabular", "a test", "none"))
    ds = load_dataset("digits_again")
    model = build_model("zero_for_test", ds, seed=0)
    assert model(ds.x_test[:3]).shape == (3, ds.num_classes)


def import_edges(package: str) -> dict[str, set[str]]:
    """Module -> the lossbench modules it imports, deferred (in-function) imports included."""
    src = ROOT / "src"
    paths = {".".join(p.relative_to(src).with_suffix("").parts).removesuffix(".__init__"): p for p in src.rglob("*.py")}
    edges = {}
    for name, path in paths.items():
        if not name.startswith(package):
            continue
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lossbench"):
                deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths else node.module for a in node.names}
        edges[name] = deps - {name}
    return edges


def test_the_losses_package_has_no_import_circle():
    """Not even through a deferred import (as _exact_native's of _exact_quadrature was)."""
    edges = import_edges("lossbench.losses")
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import circle: {' -> '.join(path[path.index(module):] + (module,))}"
        if module in done:
            return
        for dep in edges.get(module, ()):
            visit(dep, path + (module,))
        done.add(module)

    for module in sorted(edges):
        visit(module, ())
    assert "lossbench.losses._exact_integral" in edges["lossbench.losses._exact_quadrature"]


def test_every_registered_loss_is_public():
    # (CONVENTIONS: registering a loss makes its function and its module twin public)
    import lossbench.losses as losses

    for name, info in losses.LOSSES.items():
        assert getattr(losses, info.function.__name__, None) is info.function, name
        assert getattr(losses, info.module.__name__, None) is info.module, name
        assert info.function.__name__ in losses.__all__ and info.module.__name__ in losses.__all__, name
