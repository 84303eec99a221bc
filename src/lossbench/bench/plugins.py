"""A spec's plugins: the user's own modules, which register datasets, models, losses or transforms.

Plugins are code the spec runs.  Every process that loads a spec (``lossbench run``, ``worker``,
``claims run``, :func:`lossbench.bench.compare`) imports them before it resolves a name, so what a
plugin registers works on remote workers too.  They are imported by module name through the normal
import system, from ``sys.path`` as this process has it (its installed packages, ``PYTHONPATH``),
never from a path written in a spec or a shared storage; and a module found in a folder that every
user may write (``/tmp``, say) or that another user owns (but root or the owner of this Python or of
lossbench itself, whose code runs anyway) is refused, as they could have put it there; so is a module the
plugin's code imports from such a place while it is imported.
A command that only reads a storage (``lossbench report``) imports the plugins its stored specs name
only when asked to (``--plugins``): any user of a shared storage may have written those names, and
even an installed module may do things on import (``antigravity`` opens a browser).
A stored study keeps a digest of each plugin's code (:func:`code_digests`) and refuses to resume or
grow under other code: its runs would mix two versions of a model or loss in one leaderboard.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import importlib
import importlib.abc
import importlib.util
import keyword
import os
import site
import sys
import sysconfig
import types
from collections.abc import Iterable, Iterator
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from pathlib import Path

from lossbench._checks import first_line, raised_at
from lossbench._paths import OWNERS, folders_reason, others_write, trusted_owners
from lossbench.registry import Registry


class PluginError(ValueError):
    """A plugin that cannot be imported safely; the message names it."""


def check_plugin_name(name: object) -> str:
    """``name`` if it is a module name (dotted Python identifiers), else a PluginError."""
    parts = name.split(".") if isinstance(name, str) else [""]
    if not all(p.isidentifier() and not keyword.iskeyword(p) for p in parts):
        raise PluginError(f"plugin {name!r} is not a module name (Python identifiers joined by dots, "
                          "such as my_models or my_package.losses)")  # fmt: skip
    if parts[-1] == "__main__":  # (a package's command line, run with lossbench's arguments when imported)
        raise PluginError(f"plugin {name!r} is a package's __main__, a program, not a module of definitions")
    return name


_READING = contextvars.ContextVar("lossbench_reading_only", default=False)


@contextlib.contextmanager
def reading_only() -> Iterator[None]:
    """Within: a spec's plugins not yet imported are refused instead of imported (a command that only
    reads a storage, whose specs any user of a shared storage may have written)."""
    token = _READING.set(True)
    try:
        yield
    finally:
        _READING.reset(token)


def import_plugins(names: Iterable[str]) -> None:
    """Import each named module (every name checked before the first import), noting the digest of
    the code each import loaded (:func:`code_digests`)."""
    names = [check_plugin_name(n) for n in names]
    new = [n for n in names if n not in sys.modules]
    if new and _READING.get():
        raise PluginError(f"the spec imports plugins {new}, which a command that only reads the storage imports only "
                          "when told to (--plugins: a shared storage's spec may name any module)")  # fmt: skip
    for name in names:
        before = set(sys.modules)
        _import(name)
        if name not in before:  # (imported now: what its import loaded is known)
            loaded = [m for m in set(sys.modules) - before if m != "__main__" and own_code(sys.modules[m])]
            _DIGESTS[name] = _digest(sorted({*loaded, *_package_modules(name)}))


# Per plugin this process imported, the digest of the code it loaded, taken as it was imported: the
# code this process runs, whatever its files say later or whatever else it imports meanwhile.
_DIGESTS: dict[str, str] = {}


def code_digests(names: Iterable[str]) -> dict[str, str]:
    """Per plugin, a digest of its code as this process loaded it: the files of the modules of your
    own code its import loaded (a model class in a module beside it counts; installed libraries,
    versioned, and the script that started the process do not) and of its own top-level package, by
    module name, so that the same code elsewhere (another worker's checkout) gives the same digest.
    A plugin imported before lossbench saw it counts its package's modules only."""
    for name in names:
        if name not in _DIGESTS:
            _DIGESTS[name] = _digest(_package_modules(name))
    return {name: _DIGESTS[name] for name in names}


def _package_modules(name: str) -> list[str]:
    """The loaded modules of the plugin's top-level package (of a plain module: itself)."""
    top = name.split(".")[0]
    return sorted(m for m in list(sys.modules) if m == top or m.startswith(top + "."))


def _digest(module_names: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for module_name in module_names:
        file = getattr(sys.modules.get(module_name), "__file__", None)  # (None: a namespace package)
        if isinstance(file, str) and os.path.isfile(file):
            # a compiled extension's bytes differ between machines that built it: its name counts
            content = b"" if file.endswith(tuple(EXTENSION_SUFFIXES)) else Path(file).read_bytes()
            digest.update(module_name.encode() + b"\0" + content + b"\0")
    return digest.hexdigest()[:16]


def own_code(value: object) -> bool:
    """Whether a module, or a function or class by its module, is your own code (``__main__`` without a
    file, a notebook's, or a module outside this Python's installation and lossbench), whose edits a
    digest must see."""
    module = value if isinstance(value, types.ModuleType) else sys.modules.get(getattr(value, "__module__", None) or "")
    if module is None:
        return False
    file = getattr(module, "__file__", None)
    return file is None and module.__name__ == "__main__" or isinstance(file, str) and not installed(file)


def installed(path: str | Path) -> bool:
    """Whether ``path`` lies in this Python's installation (its standard library and the folders
    packages are installed into, this environment's and the user's) or in lossbench's own code:
    versioned code, not your own.  Checked as given and with links resolved."""
    return any(candidate.is_relative_to(place) for candidate in {Path(path).absolute(), Path(path).resolve()}
               for place in _installation())  # fmt: skip


@functools.cache
def _installation() -> tuple[Path, ...]:
    import lossbench

    paths = sysconfig.get_paths()
    places = [paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths]
    places += [*site.getsitepackages(), site.getusersitepackages(), str(Path(lossbench.__file__).parent)]
    return tuple({variant for place in places if place for variant in (Path(place).absolute(), Path(place).resolve())})


def _import(name: str) -> None:
    # Package by package, so each one's location is checked before its code runs.
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        module = ".".join(parts[:i])
        if module in sys.modules:
            continue
        try:
            found = importlib.util.find_spec(module)
        except ImportError as err:  # its parent is a module, not a package
            raise PluginError(f"plugin {name!r}: {err}") from None
        if found is None:
            raise PluginError(f"plugin {name!r}: no module {module!r} on this process's sys.path "
                              "(install it, or add its folder to PYTHONPATH)")  # fmt: skip
        _check_location(name, found)
        registered, loaded = [(registry, set(registry.names())) for registry in Registry.every], set(sys.modules)
        try:
            with _checking_imports(name):
                importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - the plugin's own code (a SyntaxError, a name it registers twice)
            # What it registered before it failed is taken back (a retry in the same process, once fixed, met
            # "already registered"), and so are the modules of your own code it imported, whose import did
            # registrations too (left loaded, a retry would not import them again: their names lost)
            for registry, before in registered:
                for added in set(registry.names()) - before:
                    registry.remove(added)
            for imported in set(sys.modules) - loaded:
                if own_code(sys.modules[imported]):
                    del sys.modules[imported]
            if isinstance(err, PluginError):  # (a module it imports, refused by its place)
                raise
            said = str(err) if isinstance(err, ImportError) else f"{type(err).__name__}: {first_line(err)}{raised_at(err)}"
            raise PluginError(f"plugin {name!r} failed to import: {said}") from err


class _CheckingFinder(importlib.abc.MetaPathFinder):
    """While a plugin is imported: every module its code imports from outside this Python's installation
    (a submodule, a module beside it) is checked as the plugin itself is before its code runs."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname: str, path: object, target: object = None) -> ModuleSpec | None:
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            found = finder.find_spec(fullname, path, target)
            if found is None:
                continue
            if found.has_location and found.origin is not None and not installed(found.origin):
                _check_location(self.name, found, fullname)
            return found
        return None


@contextlib.contextmanager
def _checking_imports(name: str) -> Iterator[None]:
    finder = _CheckingFinder(name)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def _check_location(name: str, found: ModuleSpec, imported: str | None = None) -> None:
    """Refuse a module whose file, folder, (for a package) parent folder or compiled copy
    (``__pycache__``, what the import actually runs) another user may write (every user, or a group
    other than the user's private one: ``_paths.others_write``, the caches' rule), or below a
    folder another user may write without the sticky bit (they could swap the folders under it).
    ``imported``: a module the plugin's code imports, checked as it is imported."""
    subject = f"plugin {name!r}" if imported is None else f"module {imported!r}, which plugin {name!r} imports,"
    refuse = functools.partial(_refuse, subject)
    if not found.has_location or found.origin is None:
        return  # built-in, frozen or a namespace package (its modules are checked one by one)
    origin = Path(found.origin)
    places = [origin, origin.parent]
    if found.submodule_search_locations is not None:
        places.append(origin.parent.parent)  # where another package of the same name could be put
    if origin.suffix == ".py":
        cached = Path(importlib.util.cache_from_source(str(origin)))
        places += [cached, cached.parent]
    mine = trusted_owners() if OWNERS else None
    for place in places:
        existing = next((p for p in (place, *place.parents) if p.exists()), None)  # a zip's member: the zip
        if existing is not None and (others := others_write(existing, new_files=True)):  # (__pycache__'s new files)
            refuse(existing, f"is {others}")
        if existing is not None and mine is not None and existing.stat().st_uid not in mine:
            refuse(existing, f"user {existing.stat().st_uid} owns (they may change its code)")
    # every folder above, unless sticky (others cannot rename what is in it): the programs' rule
    if mine is not None and (reason := folders_reason(origin.resolve().parent, strict=False)):
        raise PluginError(f"{subject} is found in {origin.parent}, but {reason} (they may swap the folders in it); "
                          "refusing to run code from there (move it to a folder only you can write)")  # fmt: skip


def _refuse(subject: str, place: Path, why: str) -> None:
    raise PluginError(f"{subject} is found in {place}, which {why}; refusing to run code from there "
                      "(move it to a folder only you can write)")  # fmt: skip
