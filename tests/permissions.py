"""Directories another user could write, made for the cache trust tests (lossbench._paths)."""

from __future__ import annotations

import grp
import os
import pwd
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
