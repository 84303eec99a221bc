"""The parse cache: what a loader parsed from text or compressed files, saved as tensors.

An entry is keyed by the loader kind, its parameters and the source paths, and stores the
sources' (path, size, mtime) fingerprint: when a source changes, the next load re-parses and
overwrites the entry.  Past ``CACHE_LIMIT_BYTES`` in all, writing an entry removes the least recently
used others.  Entries are written atomically; an unreadable entry is re-built with a
warning, and a cache directory that cannot be written only costs speed (with a warning).

The cache directory gets the kernel cache's trust rule (``_paths.trusted_dir``): a directory another
user could write (or one below such a directory) is neither read nor written, with one warning, since
an entry planted there would be loaded as parsed data and a ``verified/`` stamp would skip a checksum.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from lossbench._paths import OWNERS, UntrustedDirError, read_regular_file, trusted_dir
from lossbench.data._files import CACHE_DIR_ENV, RemoteFile, atomic_write, default_cache_dir, unreadable

# Bump when a loader's parsed output changes, so stale entries are rebuilt.  2: loaders refuse
# non-finite values, which entries parsed before may hold.
CACHE_VERSION = 6  # 3: a nominal value is one category whichever file it came from; 4: lines split at line ends only, hidden entries of folders skipped; 5: a table's first row with a missing spelling or a number with decimals is data, a column of decimal-comma numbers refused, ARFF's quoted '?' a category, blank and comment lines kept inside a quoted field, text ids: hashed buckets from 2, a vocabulary of the tokens kept; 6: a file that is not UTF-8 read as Windows-1252 (was Latin-1)


# What the entries may hold in all: past it, writing an entry removes the least recently used others (a
# hit marks its entry used), so that sources parsed once (temporary files, say) do not fill the disk.
CACHE_LIMIT_BYTES = 4 << 30


def fingerprint(paths: Sequence[Path]) -> list[list[Any]]:
    """What says a file is the one parsed (or hashed) before: its path, size, mtime, and its inode and
    ctime, which no copy or edit can set back (``cp -p`` or ``rsync -t`` keep size and mtime)."""
    out = []
    for p in paths:
        try:
            st = Path(p).stat()
        except OSError as err:  # (a source named by the user: the loaders' one-line error, before any parse)
            raise unreadable(p, err) from None
        out.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns])
    return out


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()[:24]


_WARNED: set[str] = set()  # the reasons already warned of: one warning each per process


def _trusted_cache(subdir: str = "") -> Path | None:
    """The parse cache directory (or its ``subdir``) resolved, created if absent; None, with a warning
    the first time, where another user could change it or it cannot be made."""
    root = f"${CACHE_DIR_ENV}"  # (named so, where not even its default can be found)
    try:
        root = default_cache_dir()
        return trusted_dir(root / subdir if subdir else root)
    except (UntrustedDirError, OSError) as err:
        reason = str(err)
        if reason not in _WARNED:
            _WARNED.add(reason)
            warnings.warn(
                f"lossbench: not using the parse cache {root}: {reason}; loads parse (and check checksums) "
                f"without it (set ${CACHE_DIR_ENV} to a directory of your own)",
                stacklevel=3,
            )
        return None


def _yours(st: os.stat_result) -> bool:
    """Whether a cache file is what lossbench writes there: a regular file (no link) of this user that no one
    else may write (0600).  Another's, even in a directory of this user's, is never read as parsed data nor
    taken as a stamp (the directory's trust rule counts a group shared with no one else as no one's)."""
    if not OWNERS:  # (Windows: every writable file's mode reads 0o666 there)
        return stat.S_ISREG(st.st_mode)
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _entry_bytes(path: Path) -> bytes:
    """The entry's bytes, read from what was checked (opened without following a link, then checked)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not _yours(st):
            raise ValueError(f"not a cache entry of yours (owner uid {st.st_uid}, mode {stat.filemode(st.st_mode)})")
        return f.read()


def cache_path(kind: str, params: dict[str, Any], sources: Sequence[Path]) -> Path:
    return default_cache_dir() / f"{kind}-{_key(kind, params, [str(Path(p).resolve()) for p in sources])}.pt"


_ENTRY_NAME = re.compile(r"[a-z_]+-[0-9a-f]{24}\.pt")  # cache_path's names (a loader kind, _key's 24 digits)


def cached(
    kind: str,
    params: dict[str, Any],
    sources: Sequence[Path],
    build: Callable[[], dict[str, Any]],
    *,
    cache: bool = True,
) -> dict[str, Any]:
    """``build()``'s result, from the cache when the sources are unchanged since it was saved.

    ``build`` must return a dict of tensors, strings, numbers and lists/dicts of them (what
    ``torch.load(weights_only=True)`` reads back).
    """
    if not cache:
        return build()
    directory = _trusted_cache()
    if directory is None:
        return build()
    fp = fingerprint(sources)
    path = directory / cache_path(kind, params, sources).name
    if path.is_file():
        try:  # (a damaged file fails torch.load in many ways, KeyError and IndexError among them: all a cache miss)
            stored = torch.load(io.BytesIO(_entry_bytes(path)), weights_only=True)
            if not (isinstance(stored, dict) and "payload" in stored):
                raise ValueError("not a parse cache entry")
        except FileNotFoundError:  # (evicted by another process since is_file: a plain miss)
            pass
        except Exception as err:
            warnings.warn(f"unreadable parse cache {path} ({type(err).__name__}: {err}); parsing the sources again",
                          stacklevel=2)  # fmt: skip
        else:
            if stored.get("version") == CACHE_VERSION and stored.get("fingerprint") == fp:
                _mark_used(path)
                return stored["payload"]
    payload = build()
    buffer = io.BytesIO()
    torch.save({"version": CACHE_VERSION, "fingerprint": fp, "payload": payload}, buffer)
    try:
        atomic_write(path, buffer.getvalue(), private=True)
    except OSError as err:
        warnings.warn(f"could not write parse cache {path} ({err}); the next load parses again", stacklevel=2)
    else:
        _evict(directory, keep=path)
    return payload


def _mark_used(path: Path) -> None:
    """Set the entry's time to now: eviction removes the entries least recently written or read first."""
    try:  # (not following a link where the system can: Windows cannot, and raised NotImplementedError)
        os.utime(path, follow_symlinks=os.utime not in os.supports_follow_symlinks)
    except OSError:  # (a read-only cache: only the order of a later eviction changes)
        pass


def _evict(directory: Path, keep: Path) -> None:
    """Remove this user's entries of ``directory``, least recently used first, until they hold at most
    ``CACHE_LIMIT_BYTES`` in all; ``keep`` (the entry just written) stays whatever its size."""
    entries = []
    for p in directory.glob("*-*.pt"):
        if not _ENTRY_NAME.fullmatch(p.name):  # (only what cache_path names: the folder may hold a user's own .pt files)
            continue
        try:
            st = os.lstat(p)
        except FileNotFoundError:  # (removed meanwhile by another process)
            continue
        if _yours(st):
            entries.append((st.st_mtime_ns, st.st_size, p))
    total = sum(size for _, size, _ in entries)
    for _, size, p in sorted(entries):
        if total <= CACHE_LIMIT_BYTES:
            return
        if p == keep:
            continue
        try:
            p.unlink(missing_ok=True)
        except OSError as err:
            warnings.warn(f"could not remove parse cache entry {p} ({err}); the cache holds more than its limit", stacklevel=3)
            return
        total -= size


def verify_once(path: Path, rf: RemoteFile) -> None:
    """``rf.check`` the file at ``path``, skipped when this (path, size, mtime) already passed."""
    directory = _trusted_cache("verified")  # None: a stamp there could be planted, so the file is checked
    stamp = None if directory is None else directory / _key(fingerprint([path]), rf.sha256, rf.archive_sha256)
    if stamp is not None and stamp.is_file() and _yours(os.lstat(stamp)):
        return
    try:
        data = read_regular_file(path)
    except OSError as err:
        raise unreadable(path, err) from None
    rf.check(data, str(path))
    if stamp is None:
        return
    try:
        atomic_write(stamp, b"", private=True)
    except OSError as err:
        warnings.warn(f"could not record the verification of {path} ({err})", stacklevel=2)
