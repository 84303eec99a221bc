"""Directories another user could write, made for the cache trust tests (lossbench._paths)."""

from __future__ import annotations

import grp
import os
import pwd
import struct
from pathlib import Path

import pytest


def group_writable(path: Path) -> None:
    """``path`` made writable by a group other than this user's private group (which the trust rule
    accepts: the usual group of a user's folders under umask 002); skipped where none can be set."""
    user = pwd.getpwuid(os.geteuid())
    private = {g.gr_gid for g in grp.getgrall() if g.gr_name == user.pw_name and set(g.gr_mem) <= {user.pw_name}}
    if os.geteuid() == 0:
        os.chown(path, -1, 12345)  # (root may give any group)
    else:
        shared = [g for g in os.getgroups() if g not in private]
        if not shared:
            pytest.skip("no group other than this user's private one to give the directory")
        os.chown(path, -1, shared[0])
    path.chmod(0o770)


def grant_acl(path: Path, uid: int = 12345, perm: int = 0o7, default: bool = False) -> None:
    """A POSIX ACL on ``path`` that gives user ``uid`` ``perm`` (the access ACL, or a directory's default
    ACL, which its new files get); skipped where the filesystem keeps no ACLs.  The bytes are Linux's
    posix_acl_xattr layout: version 2, then (tag, perm, id) entries in tag order."""
    undefined = 0xFFFFFFFF
    entries = [(0x01, 0o7, undefined), (0x02, perm, uid), (0x04, 0o5, undefined), (0x10, 0o7, undefined), (0x20, 0o5, undefined)]
    data = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    try:
        os.setxattr(path, "system.posix_acl_default" if default else "system.posix_acl_access", data)
    except (OSError, AttributeError) as error:
        pytest.skip(f"no POSIX ACLs here: {error}")
