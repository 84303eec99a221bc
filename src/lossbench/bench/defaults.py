"""How a study runs on this machine (never what it computes): read by the runner, the local
workers and the command line, which must stay light to import (no torch, no Optuna here)."""

DEFAULT_PACK = 64  # runs trained at once where a unit packs (--pack; 1: one at a time)
# torch threads per process (--threads): one thread per process holds up on a busy machine (two
# made every small run 5-60x slower on a shared 2-core machine); parallelism comes from packing
# and from --jobs.
DEFAULT_THREADS = 1
DEFAULT_JOBS = 1  # local worker processes (--jobs), the one showing progress included
DEFAULT_OUT = "lossbench-out"  # the report folder of run and report (--out), and the SQLite file's without --storage
# Signals that stop a command as Ctrl-C does (kill, a closed terminal), where the platform has them.
STOP_SIGNALS = ("SIGTERM", "SIGHUP")
