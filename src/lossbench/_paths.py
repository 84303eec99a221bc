"""Where lossbench writes: names checked before they become paths, and files written whole.

Study names come from specs and from storage (which several users may share), dataset labels
from specs; each becomes a path component of the report.  :func:`check_name` refuses anything
that is not one plain component, and :func:`inside` proves a path lies below its root after every
``..`` and symbolic link is resolved, so no name can make lossbench write outside ``--out``.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import stat
import struct
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent  # lossbench's own code

# Optuna keeps study names in a VARCHAR(512) and ours are "<spec>:<stage>:<dataset>:<method>".
MAX_NAME_LENGTH = 128
# Whether files have owners to compare with this user (POSIX): Windows has no user ids (its ACLs are the
# user's business).
OWNERS = hasattr(os, "geteuid")


# What Windows refuses in a file name (on top of '/', '\\', ':' and control characters): a study run on one
# system may be reported on another, so a new name is refused these everywhere.
NOT_PORTABLE = '<>"|?*'
# Windows' device names, refused as a name's stem in any case ("nul.quick" is NUL).
DEVICE_NAMES = frozenset({"CON", "PRN", "AUX", "NUL", *(f"{d}{i}" for d in ("COM", "LPT") for i in "123456789¹²³")})


def check_name(name: object, what: str, portable: bool = True) -> str:
    """``name`` if it can be one path component of its own; else a ValueError naming ``what``.  ``portable``:
    one on Windows too (else a name stored before, read back, needs only to be one component here)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"{what} must have at most {MAX_NAME_LENGTH} characters, got {len(name)}: {name[:40]!r}...")
    bad = sorted({c for c in name if c in ':/\\' or not c.isprintable()})
    if bad or name.startswith(".") or name != name.strip():
        raise ValueError(
            f"{what} must be one plain name (no ':', '/', '\\', control characters, leading '.' or "
            f"surrounding spaces), got {name!r}"
        )
    if portable and (any(c in NOT_PORTABLE for c in name) or name.endswith(".")):
        raise ValueError(f"{what} must be a name every system can use for a file (none of {NOT_PORTABLE} nor a "
                         f"trailing '.'), got {name!r}")  # fmt: skip
    if portable and name.split(".")[0].rstrip().upper() in DEVICE_NAMES:
        raise ValueError(f"{what} must not be a name Windows keeps for a device (CON, NUL, COM1, ...), got {name!r}")
    return name


def inside(root: str | Path, *parts: str) -> Path:
    """``root / parts``, refused unless it resolves to a path below ``root`` (resolved too) with no symbolic
    link on the way below ``root``: a link planted in the output folder would have a report replace what it
    points to (``report.md`` -> ``lossbench.db``: the database)."""
    base = Path(root).resolve()
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        raise ValueError(f"refusing to write {path}: it is not inside the output folder {base}")
    below = base
    for part in parts:
        below = below / part
        if below.is_symlink():
            try:
                target = os.readlink(below)
            except OSError:  # (removed since: still refused, a link was there)
                target = "?"
            raise ValueError(f"refusing to write {below}: it is a symbolic link (to {target}) in the "
                             f"output folder {base}; remove it")  # fmt: skip
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: str | bytes, private: bool = False) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename.

    A reader sees the old file or the new one, never half of one, also after a crash of the system: the
    data reach the disk before the rename, and the rename before this returns.  The file gets the mode the
    umask gives new files (mkstemp's 0600 would hide reports and downloads from other users), or
    0600 where ``private`` (a cache entry: under umask 002 the umask's would let the group rewrite it).
    """
    atomic_write_all([(path, data)], private)


def atomic_write_all(files: Sequence[tuple[Path, str | bytes]], private: bool = False) -> None:
    """Write each ``(path, data)`` as :func:`atomic_write` does, all or none: every file is written to its
    temporary file first and renamed only once all are on disk, so a full disk midway leaves the old files
    as they were (a report's files, old and new mixed, would disagree); a folder where a file goes is found
    before any rename.  An error names the file it met."""
    temporaries: list[str] = []
    try:
        for path, data in files:
            if path.is_dir() and not path.is_symlink():  # (its rename would fail after the others')
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temporaries.append(tmp)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data.encode() if isinstance(data, str) else data)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as err:  # (a write to an open file names none: ENOSPC, EFBIG)
                raise OSError(err.errno, err.strerror, str(path)) from None
            os.chmod(tmp, 0o600 if private else 0o666 & ~_umask())
        for (path, _), tmp in zip(files, temporaries):
            os.replace(tmp, path)
    except BaseException:
        for tmp in temporaries:
            Path(tmp).unlink(missing_ok=True)
        raise
    for folder in dict.fromkeys(path.parent for path, _ in files):
        _sync_folder(folder)


def _sync_folder(folder: Path) -> None:
    """The folder's entries to disk (the rename above); where the system cannot sync a folder (Windows, some
    network file systems refuse it with EINVAL) the rename stands as the file system keeps it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # (Windows opens no folder)
        return
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def read_regular_file(path: str | Path) -> bytes:
    """The bytes of ``path``, a regular file (a link to one): a directory, FIFO, socket or device raises an
    OSError saying so before anything is read (a FIFO blocked for ever, ``/dev/zero`` filled the memory)."""

    def refused(mode: int) -> OSError:
        if stat.S_ISDIR(mode):
            return IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        return OSError(errno.EINVAL, "not a regular file (a FIFO, socket or device)", str(path))

    mode = os.stat(path).st_mode  # (a socket cannot be opened at all: said before trying)
    if not stat.S_ISREG(mode):
        raise refused(mode)
    # (a FIFO put there since opens without waiting for a writer; O_BINARY: Windows would translate line ends)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode  # (what was opened, if the path changed since)
        if not stat.S_ISREG(mode):
            raise refused(mode)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        return f.read()


class NoCacheFolder(OSError, ValueError):
    """No absolute folder for lossbench's cache (an OSError where a cache is optional, a refusal in one
    line where a command needs one: the data folder)."""


def user_cache_root() -> Path:
    """lossbench's folder in the user's cache: ``$XDG_CACHE_HOME/lossbench``, else ``~/.cache/lossbench``
    (the parse cache, downloads and the EXACT kernel go below it unless their own variables say).
    A relative ``XDG_CACHE_HOME`` is ignored, as the XDG base directory specification says: it would
    put the cache wherever the command happens to run; so is an empty or relative ``HOME`` (the
    user's home folder in the password database instead), which Python reads as ``/`` or the working
    folder.  Without either: :class:`NoCacheFolder`, saying what to set."""
    xdg = expanded(os.environ.get("XDG_CACHE_HOME") or "")
    return (xdg if xdg.is_absolute() else _home() / ".cache") / "lossbench"


def keep_matplotlib_at_home() -> None:
    """Point matplotlib (``$MPLCONFIGDIR``, unless set) at ``~/.cache/matplotlib`` where it would make its
    folders below the working folder: it takes a relative ``XDG_CACHE_HOME``, ``XDG_CONFIG_HOME`` or ``HOME``
    as it is, and writes its font cache there on first import (torchmetrics imports it), which lossbench's
    own caches never do (:func:`user_cache_root`).  Before matplotlib is imported; otherwise nothing."""
    if os.environ.get("MPLCONFIGDIR") or "matplotlib" in sys.modules:
        return
    try:  # (the folders matplotlib's own rule would make: its _get_config_or_cache_dir)
        if sys.platform.startswith(("linux", "freebsd")):
            bases = [os.environ.get(xdg) or str(Path.home() / dot) for xdg, dot in
                     (("XDG_CACHE_HOME", ".cache"), ("XDG_CONFIG_HOME", ".config"))]  # fmt: skip
        else:  # (macOS: ~/.matplotlib; Windows: %LOCALAPPDATA% or ~\.matplotlib)
            bases = [str(Path.home())]
        home = _home()
    except (RuntimeError, NoCacheFolder):  # (no home folder at all: left as it is)
        return
    if not all(os.path.isabs(b) for b in bases):
        os.environ["MPLCONFIGDIR"] = str(home / ".cache" / "matplotlib")


def expanded(value: str) -> Path:
    """A path a variable gives, its leading ``~`` this user's home as :func:`user_cache_root` finds it (Python's
    ``expanduser`` reads an empty ``HOME`` as ``/``)."""
    if value == "~" or value.startswith(("~/", "~" + os.sep)):
        return _home() / value[2:]
    return Path(value).expanduser()  # (~name: that user's)


def _home() -> Path:
    if os.name == "nt":
        return Path.home()  # (USERPROFILE: Python reads no HOME there)
    home = os.environ.get("HOME", "")
    if os.path.isabs(home):
        return Path(home)
    try:
        import pwd

        home = pwd.getpwuid(os.getuid()).pw_dir
    except (ImportError, KeyError):  # (an account without an entry: a container run under an arbitrary uid)
        home = ""
    if not os.path.isabs(home):
        given = f"$HOME is {os.environ['HOME']!r}" if "HOME" in os.environ else "$HOME is unset"
        raise NoCacheFolder(f"no folder for lossbench's cache: {given} and this user has no home folder in the password "
                            "database; set $XDG_CACHE_HOME to an absolute folder of yours")  # fmt: skip
    return Path(home)


class UntrustedDirError(RuntimeError):
    """A cache directory another user could change: nothing is read from or written to it."""


@functools.lru_cache(maxsize=None)
def _private_group(gid: int) -> bool:
    """Whether group ``gid`` is this user's private group (named as the user, their primary group, no other
    member, nor another account's primary group: the usual setup under umask 002, where ``~/.cache`` and the
    like are group-writable).  A group's member list leaves out the accounts whose primary group it is."""
    try:
        import grp
        import pwd

        user, group = pwd.getpwuid(os.geteuid()), grp.getgrgid(gid)
        sharing = any(p.pw_gid == gid and p.pw_uid != user.pw_uid for p in pwd.getpwall())
    except (ImportError, KeyError):
        return False
    return gid == user.pw_gid and group.gr_name == user.pw_name and set(group.gr_mem) <= {user.pw_name} and not sharing


# POSIX ACLs as Linux stores them (posix_acl_xattr.h): a 4-byte version, then (tag, perm, id) entries.
_ACL_ACCESS, _ACL_DEFAULT = "system.posix_acl_access", "system.posix_acl_default"
_ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK, _ACL_OTHER, _ACL_WRITE = 0x02, 0x04, 0x08, 0x10, 0x20, 0o2


def _acl(path: str | Path, name: str) -> list[tuple[int, int, int]] | None:
    """The entries of ``path``'s ACL ``name``; None where it has none (or the system keeps none)."""
    try:
        data = os.getxattr(path, name)
    except (OSError, AttributeError):  # (no such ACL, no ACL support, no xattrs on this system)
        return None
    return [struct.unpack_from("<HHI", data, at) for at in range(4, len(data) - 7, 8)]


def _acl_writer(entries: list[tuple[int, int, int]], st: os.stat_result) -> str | None:
    """Who besides this user an ACL lets write (its mask applied to named entries and the group)."""
    mask = next((perm for tag, perm, _ in entries if tag == _ACL_MASK), 0o7)
    for tag, perm, who in entries:
        if tag == _ACL_USER and who != os.geteuid() and perm & mask & _ACL_WRITE:
            return f"user {who}"
        gid = st.st_gid if tag == _ACL_GROUP_OBJ else who
        if tag in (_ACL_GROUP_OBJ, _ACL_GROUP) and perm & mask & _ACL_WRITE and not _private_group(gid):
            return f"group {gid}"
        if tag == _ACL_OTHER and perm & _ACL_WRITE:
            return "other users"
    return None


def others_write(path: str | Path, st: os.stat_result | None = None, new_files: bool = False) -> str | None:
    """How a user other than this one may write ``path`` ("writable by ..."), else None: by its mode, or by
    its POSIX ACLs where it has them (there the mode's group bits are the ACL's mask, and a named user
    shows only there), and with ``new_files`` (a directory lossbench writes in) by the default ACL that its
    new files and folders would get (a folder above gives no one write access by it).  A group that is
    this user's private group counts as no one else."""
    st = st or os.stat(path)
    mode = stat.filemode(st.st_mode)
    access, default = _acl(path, _ACL_ACCESS), _acl(path, _ACL_DEFAULT) if new_files else None
    for entries, kind in ((access, "ACL"), (default, "default ACL (its new files')")):
        who = _acl_writer(entries, st) if entries else None
        if who:
            return f"writable by {who} through its {kind} (mode {mode})"
    if access:  # (the ACL covers the mode's bits)
        return None
    who = [w for bit, w in ((0o020, "its group"), (0o002, "other users")) if st.st_mode & bit]
    if who == ["its group"] and _private_group(st.st_gid):
        return None
    return f"writable by {' and '.join(who)} (mode {mode})" if who else None


def own_folder_reason(directory: Path, st: os.stat_result) -> str | None:
    """Why another user could change what lossbench writes in ``directory``, a folder of its own (``st`` its
    stat): owned by another user, or writable by one (its new files by its default ACL too); else None.  Windows:
    None (no owners to compare; its folders' ACLs are the user's business, as in :func:`untrusted_reason`)."""
    if not OWNERS:
        return None
    uid = os.geteuid()
    if st.st_uid != uid:
        return f"owned by uid {st.st_uid}, not by you (uid {uid})"
    return others_write(directory, st, new_files=True)


def parent_folder_reason(directory: Path, st: os.stat_result) -> str | None:
    """Why another user could swap what is made in ``directory``, a folder above lossbench's (``st`` its stat):
    owned by a user other than this one or root, or writable by one without the sticky bit; else None (Windows:
    None, as :func:`own_folder_reason`)."""
    if not OWNERS:
        return None
    uid = os.geteuid()
    if st.st_uid not in (0, uid):
        return f"owned by uid {st.st_uid}, neither you (uid {uid}) nor root"
    others = None if st.st_mode & stat.S_ISVTX else others_write(directory, st)
    return f"{others} without the sticky bit" if others else None


def absolute_path() -> str:
    """``$PATH`` without its empty or relative entries (``PATH=:/usr/bin``, a common slip, finds programs in
    the working folder): for the programs lossbench runs, and for what they run in turn (a compiler's ``as``)."""
    return os.pathsep.join(d for d in os.environ.get("PATH", os.defpath).split(os.pathsep) if os.path.isabs(d))


def trusted_owners() -> set[int]:
    """The users whose files lossbench may run or import (a plugin, a compiler, git): root, this user, and
    whoever owns this Python's installation or lossbench's own code (they could change those already: a
    shared environment an administrator keeps, say)."""
    return {0, os.getuid(), Path(sys.prefix).stat().st_uid, PACKAGE_DIR.stat().st_uid}


def folders_reason(folder: Path, strict: bool) -> str | None:
    """Why another user could change what is found in ``folder`` (links resolved): it or a folder above it is
    owned by someone not in :func:`trusted_owners`, or writable by another user; the sticky bit excuses the
    folders above (others cannot rename what is in them) and, unless ``strict``, ``folder`` itself (where a
    program found there stays; strict: where a program could be added, a compiler's ``as`` say)."""
    mine, real = trusted_owners(), folder.resolve()
    for directory in (real, *real.parents):
        st = os.stat(directory)
        if st.st_mode & stat.S_ISVTX and (directory != real or not strict):
            continue
        if st.st_uid not in mine:
            return f"{directory} is owned by uid {st.st_uid}"
        if others := others_write(directory, st):
            return f"{directory} is {others}"
    return None


def program_reason(program: str | Path) -> str | None:
    """Why another user could change the program ``program`` (an absolute path), or what runs as it: it (and
    what its link points to) owned by someone not in :func:`trusted_owners` or writable by another user, or
    its folder or one above (:func:`folders_reason`); else None.  Windows: None (no owners to compare)."""
    if not OWNERS:
        return None
    hops, place = [Path(program)], Path(program)
    while place.is_symlink() and len(hops) < 40:  # (each link's folder: /usr/bin/cc -> /etc/alternatives/cc -> ...)
        place = place.parent / os.readlink(place)
        hops.append(place)
    for hop in hops:
        if reason := folders_reason(hop.parent, strict=False):
            return reason
    target = Path(program).resolve()  # (what the links lead to)
    st = os.stat(target)
    if st.st_uid not in trusted_owners():
        return f"{target} is owned by uid {st.st_uid}"
    if others := others_write(target, st):
        return f"{target} is {others}"
    return None


def trusted_path() -> str:
    """:func:`absolute_path` without the folders another user could put a program in (:func:`folders_reason`,
    strict): the search path of what a program lossbench runs runs in turn (a compiler's ``as`` and ``ld``)."""
    keep = [d for d in absolute_path().split(os.pathsep)
            if os.path.isdir(d) and (not OWNERS or folders_reason(Path(d), strict=True) is None)]  # fmt: skip
    return os.pathsep.join(keep)


def program_on_path(name: str) -> str | None:
    """``name`` (a program) as an absolute path found on :func:`absolute_path`, or None; a path given is
    itself where it is absolute."""
    if os.sep in name:
        return name if os.path.isabs(name) and os.access(name, os.X_OK) else None
    return shutil.which(name, path=absolute_path())


def _foreign_link(path: Path) -> str | None:
    """Why a symbolic link on the way to ``path`` as written could be pointed elsewhere by another user: one owned
    by a user other than this one or root (made by them in a sticky folder such as /tmp, which keeps it theirs)."""
    uid = os.geteuid()
    for link in (*reversed(path.parents), path):
        if link.is_symlink() and (owner := os.lstat(link).st_uid) not in (0, uid):
            return f"{link} is a link owned by uid {owner}, neither you (uid {uid}) nor root, who could point it elsewhere"
    return None


def untrusted_reason(path: str | Path) -> str | None:
    """Why another user could change what lies in the directory ``path``, else None.

    ``path`` (symbolic links resolved, and each link on the way as written this user's or root's) must be a
    directory this user owns that no one else can write,
    and every directory above it owned by this user or root and writable by no one else unless sticky
    (as ``/tmp``: others cannot rename what this user made there); writable by its group counts as by
    no one else where that group is this user's private group.  Where ``path`` does not exist yet,
    its existing ancestors are checked as directories above it: nothing made below them can be changed.
    """
    if not OWNERS:
        return None
    if reason := _foreign_link(Path(path).expanduser().absolute()):
        return reason
    real = Path(path).expanduser().resolve()
    existing = real
    while not existing.exists():
        existing = existing.parent
    for directory in (*reversed(existing.parents), existing):
        st = os.stat(directory)
        if directory == real:  # the directory itself: this user's alone
            if not stat.S_ISDIR(st.st_mode):
                return f"{directory} is not a directory"
            if reason := own_folder_reason(directory, st):
                return f"{directory} is {reason}"
        elif reason := parent_folder_reason(directory, st):
            return f"{directory} is {reason}"
    return None


def make_private_dirs(path: str | Path) -> None:
    """``path`` and its missing parents made, each 0700 (``mkdir(parents=True)`` gives the parents the
    umask's mode: group-writable under umask 002, which the trust rule then refuses)."""
    missing, p = [], Path(path).expanduser()
    while not p.exists():
        missing.append(p)
        p = p.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)


def trusted_dir(path: str | Path) -> Path:
    """``path`` resolved, created (0700) if absent; UntrustedDirError (the reason) where another user
    could change it (:func:`untrusted_reason`).  Checked before anything is created, so nothing is made
    below a directory others can write, and again after, on what was made."""
    path = Path(path).expanduser()
    reason = untrusted_reason(path)
    if reason is None:
        make_private_dirs(path)
        real = path.resolve(strict=True)  # from here on no link is followed: what is checked is what is used
        reason = untrusted_reason(real)
    if reason is not None:
        raise UntrustedDirError(reason)
    return real
