"""Fixtures for the bench tests: tiny specs, CLI subprocesses and a real PostgreSQL server."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

TINY_SPEC = """
name = "{name}"
trials = {trials}
seeds = 2
sampler = "random"
baseline = "ce"
heartbeat_interval = 1

[train]
model = "linear"
epochs = {epochs}
batch_size = {batch_size}

[[datasets]]
name = "{dataset}"

[[methods]]
name = "ce"
loss = "cross_entropy"

[[methods]]
name = "hinge"
loss = "hinge"
"""


def write_spec(path: Path, name: str = "tiny", trials: int = 3, epochs: int = 3, batch_size: int = 64,
               dataset: str = "wine") -> Path:  # fmt: skip
    path.write_text(TINY_SPEC.format(name=name, trials=trials, epochs=epochs, batch_size=batch_size, dataset=dataset))
    return path


def cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "lossbench", *args], cwd=kwargs.pop("cwd", ROOT), env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs,
    )  # fmt: skip


def cli_ok(*args: str, timeout: float = 300) -> str:
    proc = cli(*args)
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


# --------------------------------------------------------------------------------------------
# PostgreSQL: a throw-away server on 127.0.0.1, started from the system's binaries.


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a fresh database on a PostgreSQL server started for this test session.

    Skips (with the reason) only when no server can be started here; CI sets
    LOSSBENCH_REQUIRE_POSTGRES=1 so that there a missing server fails instead.
    """
    required = os.environ.get("LOSSBENCH_REQUIRE_POSTGRES") == "1"

    def unavailable(reason: str):
        if required:
            pytest.fail(f"PostgreSQL required (LOSSBENCH_REQUIRE_POSTGRES=1) but {reason}")
        pytest.skip(f"no PostgreSQL server can be started here: {reason}")

    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        unavailable("initdb/pg_ctl not found (Debian: apt-get install postgresql)")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        unavailable("the psycopg2 driver is not installed (pip install 'lossbench[postgres]')")
    # Outside pytest's private (0700) temp tree, which the server's user could not enter.
    base = Path(tempfile.mkdtemp(prefix="lossbench-pg-"))
    data, sockets = base / "data", base / "sock"
    sockets.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: use the packaged 'postgres' user
        if shutil.which("runuser") is None:
            unavailable("running as root and runuser is missing")
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no 'postgres' user")
        for p in (base, sockets):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    log = base / "server.log"
    steps = [
        [initdb, "-D", str(data), "-U", "lossbench", "--auth=trust", "-E", "UTF8"],
        [pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
         f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c max_connections=50", "start"],
    ]  # fmt: skip
    for cmd in steps:
        result = subprocess.run(prefix + cmd, capture_output=True, text=True)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()[-500:]
            if log.exists():
                detail += "\n" + log.read_text()[-500:]
            unavailable(f"{Path(cmd[0]).name} failed: {detail}")
    import psycopg2

    # pg_ctl -w has waited for the server already; poll a while more, generously: a loaded machine
    # must not turn into a silent skip of the PostgreSQL tests.
    deadline = time.monotonic() + 120
    while True:
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=port, user="lossbench", dbname="postgres")
            break
        except psycopg2.OperationalError as error:
            if time.monotonic() > deadline:
                unavailable(f"the server did not accept connections within 120 s: {error}")
            time.sleep(0.2)
    conn.autocommit = True
    conn.cursor().execute("CREATE DATABASE lossbench_test")
    conn.close()
    try:
        yield f"postgresql://lossbench@127.0.0.1:{port}/lossbench_test"
    finally:
        subprocess.run(prefix + [pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
