"""The EXACT quadrature as one fused CPU kernel (``_exact_kernel.c``), compiled on first use.

The PyTorch implementation (``_exact_integral``, ``_exact_quadrature``) runs a few hundred tensor ops
per call; at ten classes their fixed cost is most of the time, and at a hundred the dozen passes
over the node terms are.  The kernel computes the same rule row by row with every row's terms in
cache, and in one call what a training step needs of the loss (every row's way, the loss, its mean
and the gradient); the README's Performance section gives the speed-up, measured by
``benchmarks/bench_exact.py``.

The C source is compiled with the system's C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``) into
``$LOSSBENCH_KERNEL_DIR`` (else ``~/.cache/lossbench/kernels``) under a name that hashes the
source, the flags, the compiler and the CPU, and loaded with ctypes (no Python headers needed; the
call releases the GIL).  Loading a library runs its code, so only a library that cannot have been
planted is loaded: the directory (symbolic links resolved) must be the user's own and writable by
no one else, every directory above it owned by root or the user and writable by no one else unless
sticky (as ``/tmp``), and the file a regular file the user owns that no one else can write
(``lossbench._paths.trusted_dir``, which the parse cache shares; nothing is created before the existing
directories pass).  A cache that fails this check is refused with a warning naming the path and the
condition that failed, and the PyTorch path is used.  Where that fails (no compiler, an old glibc without vectorised ``erfc``)
a warning says why and the PyTorch path is used.  ``LOSSBENCH_EXACT_KERNEL=0`` turns the kernel
off.  It serves float32 and float64 CPU tensors; others (CUDA, half) take the PyTorch path.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import os
import platform
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from lossbench._locks import ForkSafeLock
from lossbench._paths import (
    OWNERS,
    UntrustedDirError,
    expanded,
    program_on_path,
    program_reason,
    trusted_dir,
    trusted_path,
    user_cache_root,
)
from lossbench.losses import _exact_rules as rules
from lossbench.losses import _exact_special as special

SOURCE = Path(__file__).with_name("_exact_kernel.c")
KERNEL_DIR_ENV = "LOSSBENCH_KERNEL_DIR"
SWITCH_ENV = "LOSSBENCH_EXACT_KERNEL"
# No -ffast-math: it assumes no inf/nan and, linked into a shared library, sets flush-to-zero for
# the whole process.  -fopenmp links the libgomp that PyTorch has loaded (one thread pool).  Vectors
# of 8 floats: the loops run over multiples of 8 (WIDTH in the source), and at ten classes 16-wide
# vectors (AVX-512) were slower (half-empty vectors, masked remainders; docs/exact-quadrature.md).
FLAGS = ("-O3", "-march=native", "-mprefer-vector-width=256", "-fPIC", "-fopenmp", "-fno-math-errno", "-fno-trapping-math")
LINK = ("-shared", "-fopenmp", "-lmvec", "-lm")
MAX_HALF_NODES = 128  # the kernel keeps a row's node sums on the stack
MAX_CLASSES = 2**30  # the kernel counts a row's rivals (padded) in int; more classes take the PyTorch path
# The numerical constants the kernel reads, in the order of the enum in _exact_kernel.c (a test
# checks the names): (name, entries).  Their values come from _exact_special and _exact_rules, where
# the PyTorch path reads the same ones, or (Newton's start only) from below; see :func:`constants`.
CONSTANT_NAMES = (
    ("SATURATED", 1), ("TAIL_START", 1), ("SECANT", 1), ("SECANT_COMPLEMENT", 1), ("NEWTON_TOL", 1),
    ("NEWTON_MAX_ITER", 1), ("WATER_STEPS", 1), ("PRODUCT_FLOOR", 1), ("SQRT2", 1), ("INV_SQRT2", 1), ("LOG_INV_SQRT_2PI", 1),
    ("LOG_2_SQRT_PI", 1), ("UNION_BOUND", 1), ("FAR_MARGIN", 1), ("NDTRI_SPLIT", 1), ("NDTRI_A", 6), ("NDTRI_B", 5), ("NDTRI_C", 6), ("NDTRI_D", 4),
    ("TAIL_TERMS", 1), ("TAIL_COEFFS", None),  # None: as many as the series has (last)
)
# The inverse normal CDF on [1/2, 1) for Newton's start in the kernel (the PyTorch path calls
# torch.special.ndtri): Acklam's rational approximation, relative error 1e-9; the central form
# up to p = 0.97575, the tail form above.
_NDTRI_UPPER = {
    "NDTRI_SPLIT": (0.97575,),
    "NDTRI_A": (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
                -3.066479806614716e01, 2.506628277459239e00),
    "NDTRI_B": (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
                -1.328068155288572e01),
    "NDTRI_C": (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
                4.374664141464968e00, 2.938163982698783e00),
    "NDTRI_D": (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00),
}
# Below this many (row, node, class) terms one thread does the call (no fork/join).
_PARALLEL_TERMS = 1 << 15

# Tests and benchmarks flip this to compare with the PyTorch path.
enabled = os.environ.get(SWITCH_ENV, "1") != "0"

_LOCK = ForkSafeLock()  # (a child forked while another thread builds the kernel takes a free one)
_STATE: dict[str, object] = {}


def _kernel_dir() -> Path:
    env = os.environ.get(KERNEL_DIR_ENV)
    if env:
        return expanded(env)
    return user_cache_root() / "kernels"


class UntrustedCacheError(UntrustedDirError):
    """The kernel cache is a place another user could write to: nothing is built or loaded there."""


def _trusted_dir(path: Path) -> Path:
    """``path`` resolved and created (0700) if absent; refused unless no other user can change it
    (``_paths.trusted_dir``: checked before anything is created, so nothing is made under a parent
    others can write)."""
    try:
        return trusted_dir(path)
    except UntrustedDirError as error:
        raise UntrustedCacheError(
            f"refusing the kernel cache {path}: {error}; use a directory of your own (chmod 700) or set ${KERNEL_DIR_ENV}"
        ) from None
    except OSError as error:  # (read-only, or no home: the warning says what to set)
        raise OSError(f"cannot make the kernel cache {path}: {error.strerror or error}; set ${KERNEL_DIR_ENV} to a "
                      "folder of yours") from None  # fmt: skip


def _check_own_file(path: Path) -> None:
    """Refuse to load a file that is not a regular file of this user, writable by no one else."""
    st = os.lstat(path)
    if not OWNERS:  # (not built off Linux: see kernel)
        raise UntrustedCacheError(f"refusing to load {path}: no owner to check on this system")
    uid = os.geteuid()
    if not stat.S_ISREG(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022:
        raise UntrustedCacheError(
            f"refusing to load {path}: not a regular file owned by you (uid {uid}) and writable only by you "
            f"(owner uid {st.st_uid}, mode {stat.filemode(st.st_mode)}); delete it to rebuild the kernel"
        )


def _cpu_signature() -> str:
    """The CPU's model and feature flags: a library built with -march=native runs only there."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags", "Features"))]
    return "\n".join(sorted(set(keep)))


def _trusted_compiler(compiler: str) -> str:
    """``compiler`` (``$CC``'s form) with its program as an absolute path, found on PATH's absolute folders only
    (a relative entry would run a ``cc`` of the working folder), and owned and writable by no other user, nor
    its folders (``_paths.program_reason``): what it builds is loaded into this process."""
    command = _command(compiler)
    program = program_on_path(command[0]) if command else None
    if program is None:
        raise RuntimeError(f"no C compiler {compiler!r} in PATH's absolute folders (set $CC)")
    if reason := program_reason(program):
        raise RuntimeError(f"the C compiler {program}: {reason}, so another user could change what it builds")
    return shlex.join([program, *command[1:]])


def _compiler_env(**more: str) -> dict[str, str]:
    """The compiler's environment: PATH's folders that no other user could put a program in
    (``_paths.trusted_path``: a wrapper's compiler, ccache's gcc, the compiler's own ``as`` and ``ld`` are
    looked up there), and ``more``."""
    return {**os.environ, "PATH": trusted_path(), **more}


def _command(compiler: str) -> list[str]:
    """``compiler`` as a command line, as ``$CC`` is read (``ccache gcc``, ``gcc -O0``)."""
    return shlex.split(compiler)


def library_path(compiler: str) -> Path:
    """Where the library built by ``compiler`` is cached (the cache directory checked and created)."""
    version = subprocess.run([*_command(compiler), "--version"], capture_output=True, text=True, check=True,
                             env=_compiler_env()).stdout  # fmt: skip
    key = hashlib.sha256(
        "\0".join([SOURCE.read_text(), " ".join(FLAGS + LINK), version, platform.machine(), _cpu_signature()]).encode()
    ).hexdigest()[:16]
    try:
        folder = _kernel_dir()
    except OSError as error:  # (no home folder to put it in)
        raise OSError(f"{error}; or set ${KERNEL_DIR_ENV}") from None
    return _trusted_dir(folder) / f"exact-{key}.so"


_SMALLEST_LIBRARY = 4096  # bytes: a shared library is larger (its ELF header and tables); a damaged one may be cut short
_BUILD_PREFIX = "build-"  # a build's temporary folder in the cache
_STALE_BUILD_S = 3600  # a build folder this old was left by a killed build (a build takes seconds)


def _build(compiler: str) -> Path:
    target = library_path(compiler)
    if not os.path.lexists(target):
        _remove_stale_builds(target.parent)
        with tempfile.TemporaryDirectory(prefix=_BUILD_PREFIX, dir=target.parent) as tmp:
            # The compiler's own temporary files go to the private build folder too (-pipe: none for the
            # assembly): in a $TMPDIR another user can write, they could replace one before it is read.
            env = _compiler_env(TMPDIR=tmp)
            objects = []
            for name, defines in (("f32", ()), ("f64", ("-DREAL_DOUBLE",))):
                obj = Path(tmp) / f"{name}.o"
                _run([*_command(compiler), "-pipe", *FLAGS, *defines, "-c", str(SOURCE), "-o", str(obj)], env)
                objects.append(str(obj))
            library = Path(tmp) / "exact.so"
            _run([*_command(compiler), *objects, *LINK, "-o", str(library)], env)
            library.chmod(0o700)  # whatever the umask: a group-writable library would be refused
            with open(library, "rb") as written:  # (on disk before it is named: a power cut leaves no empty library)
                os.fsync(written.fileno())
            os.replace(library, target)  # atomic: concurrent builders write the same bytes
    _check_own_file(target)  # (the one just built too: loaded only as what the checks allow)
    return target


def _load(compiler: str) -> ctypes.CDLL:
    """The kernel's library, built where absent; one that does not load (left damaged: a full disk, say) is
    removed and built once more, instead of leaving the kernel off in every later process."""
    library = _build(compiler)
    try:
        return ctypes.CDLL(str(library))
    except OSError as error:
        with open(library, "rb") as f:
            whole = f.read(4) == b"\x7fELF" and os.fstat(f.fileno()).st_size >= _SMALLEST_LIBRARY
        if whole:  # (a library that cannot load anyway, a noexec mount say: rebuilt in every process otherwise)
            raise
        warnings.warn(f"lossbench: the EXACT kernel's library {library} is damaged ({error}); building it again",
                      RuntimeWarning, stacklevel=4)  # fmt: skip
        library.unlink(missing_ok=True)
        return ctypes.CDLL(str(_build(compiler)))


def _remove_stale_builds(folder: Path) -> None:
    """Remove build folders a killed build left (a concurrent build's is recent: kept)."""
    for entry in folder.glob(f"{_BUILD_PREFIX}*"):
        try:
            if entry.is_dir() and not entry.is_symlink() and time.time() - entry.lstat().st_mtime > _STALE_BUILD_S:
                shutil.rmtree(entry)
        except OSError:  # (another process removing it too: nothing to do)
            pass


def _run(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr.strip()}")


def _declare(library: ctypes.CDLL) -> dict[torch.dtype, ctypes._CFuncPtr]:
    functions = {}
    for dtype, name in ((torch.float32, "lossbench_exact_rows_f32"), (torch.float64, "lossbench_exact_rows_f64")):
        fn = getattr(library, name)
        p, i64, f64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
        fn.argtypes = [p, p, p, i32, i64, i64, i64, f64, f64, p, p, i32, i32, p, p, p, f64, i32, i32, f64, p, p, p, p, p, p, p, i32]
        fn.restype = ctypes.c_int
        elementwise = getattr(library, name.replace("exact_rows", "log_ndtr_and_mills"))
        elementwise.argtypes = [p, i64, p, p, p]
        elementwise.restype = ctypes.c_int
        functions[dtype] = fn
        functions[dtype, "log_ndtr_and_mills"] = elementwise
    return functions


@functools.lru_cache(maxsize=None)
@rules.on_cpu
def constants(dtype: torch.dtype) -> torch.Tensor:
    """The kernel's numerical constants for ``dtype`` (float64, CPU), laid out as ``CONSTANT_NAMES``."""
    values = {
        "SATURATED": (special._SATURATED[dtype],),
        "TAIL_START": (special._TAIL_START[dtype],),
        "SECANT": (rules._SECANT,),
        "SECANT_COMPLEMENT": (rules._SECANT_COMPLEMENT,),
        "NEWTON_TOL": (rules._NEWTON_TOL,),
        "NEWTON_MAX_ITER": (rules._NEWTON_MAX_ITER,),
        "WATER_STEPS": (rules._WATER_STEPS,),
        # the kernel multiplies the Phi in double whatever the dtype
        "PRODUCT_FLOOR": (rules._PRODUCT_FLOOR[torch.float64],),
        "SQRT2": (special._SQRT2,),
        "INV_SQRT2": (special._INV_SQRT2,),
        "LOG_INV_SQRT_2PI": (special._LOG_INV_SQRT_2PI,),
        "LOG_2_SQRT_PI": (special._LOG_2_SQRT_PI,),
        "UNION_BOUND": (rules._UNION_BOUND,),
        "FAR_MARGIN": (rules._FAR_MARGIN[dtype],),
        **_NDTRI_UPPER,
        "TAIL_TERMS": (special._TAIL_TERMS[dtype],),
        "TAIL_COEFFS": special._TAIL_COEFFS,
    }
    flat = []
    for name, size in CONSTANT_NAMES:
        if size is not None and len(values[name]) != size:
            raise AssertionError(f"the kernel's constant {name} has {size} entries, got {len(values[name])}")
        flat.extend(values[name])
    return torch.tensor(flat, dtype=torch.float64)


def log_ndtr_and_mills(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log Phi(u)`` and ``lam(u)`` at ``u = -sqrt(2) x`` (float32/float64 CPU), as the kernel evaluates them."""
    x = x.detach().contiguous()
    log_phi, lam = torch.empty_like(x), torch.empty_like(x)
    fn = kernel()[x.dtype, "log_ndtr_and_mills"]
    table = constants(x.dtype)  # (held until the call returns, as rows' tables)
    if fn(x.data_ptr(), x.numel(), table.data_ptr(), log_phi.data_ptr(), lam.data_ptr()):
        raise ValueError("the tail series has more terms than the kernel holds")
    return log_phi, lam


def kernel() -> dict[torch.dtype, ctypes._CFuncPtr] | None:
    """The kernel's entry points per dtype, building them on first use; None where unavailable."""
    if "functions" in _STATE:
        return _STATE["functions"]
    with _LOCK:
        if "functions" not in _STATE:
            compiler = os.environ.get("CC") or next((c for c in ("cc", "gcc", "clang") if program_on_path(c)), "cc")
            try:
                if not sys.platform.startswith("linux"):  # (and no compiler asked: a Mac without one offers to install it)
                    raise OSError(f"it is built on Linux only (GCC's OpenMP and glibc's vector maths, libmvec), not "
                                  f"on {sys.platform}; the PyTorch path computes the same rule")  # fmt: skip
                functions = _declare(_load(_trusted_compiler(compiler)))
            except (OSError, RuntimeError, AttributeError, subprocess.SubprocessError, ValueError) as error:
                # (AttributeError: no entry points; ValueError: a $CC shlex cannot read)
                functions = None
                _STATE["error"] = str(error)
                warnings.warn(
                    f"lossbench: the fused EXACT kernel is unavailable, using the slower PyTorch path: {error}",
                    RuntimeWarning,
                    stacklevel=3,
                )
            # (set only once decided: an interrupted build, Ctrl-C in a notebook, leaves the next call to try again)
            _STATE["functions"] = functions
    return _STATE["functions"]


def unavailable_reason() -> str | None:
    """Why :func:`kernel` returned None (after it was called), else None."""
    return _STATE.get("error")


def applies(m: torch.Tensor, num_nodes: int) -> bool:
    return (
        enabled
        and m.device.type == "cpu"
        and m.dtype in (torch.float32, torch.float64)
        and 3 <= m.shape[1] < MAX_CLASSES
        and num_nodes // 2 <= MAX_HALF_NODES
        and kernel() is not None
    )


# What the kernel writes per row (KIND_* in _exact_kernel.c) and the ways a row may take (WAY_*).
VALUE, ONE_MINUS_P, MINUS_LOG_P = 0, 1, 2
WAY_P, WAY_Q, WAY_UNION, WAY_FAR = 0, 1, 2, 3
NO_INDEX = -(2**63)  # an ignore_index that no target equals


@functools.lru_cache(maxsize=None)
@rules.on_cpu
def _tables(num_nodes: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int, int]]:
    """The rule's nodes, log weights and the constants for ``dtype``, and their addresses (kept alive here)."""
    nodes, log_w = rules.half_range_rule(num_nodes // 2)
    table = constants(dtype)
    return nodes, log_w, table, (nodes.data_ptr(), log_w.data_ptr(), table.data_ptr())


REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


def rows(
    scores: torch.Tensor,
    target: torch.Tensor,
    num_nodes: int,
    need_grad: bool,
    *,
    scale: float | torch.Tensor = 0.0,
    clip: float | torch.Tensor = math.inf,
    kind: int = VALUE,
    ways: torch.Tensor | None = None,
    least: float | None = None,
    ignore_index: int = NO_INDEX,
    reduction: str = "none",
    standardize: bool = False,
    eps: float = 0.0,
):
    """One call of the kernel (see :func:`applies`) over the rows of ``scores`` (B, C).

    ``scores`` are scaled margins ``m`` (zero in the true column) or, with ``scale > 0``, logits ``s``:
    the margins are then ``min(s_y - s_j, clip) scale`` and the gradient is with respect to ``s`` (none
    through a clipped margin); ``scale`` and ``clip`` may also be one value per row, ``(B,)`` tensors
    (``scale``'s then positive; packed runs with their own ``sigma`` and margin).  ``kind`` says what each row gives: ``VALUE`` its log P or log Q (as its
    way says, see ``_exact_quadrature.log_win_and_lose``), ``ONE_MINUS_P`` or ``MINUS_LOG_P`` the
    per-sample loss.  ``ways`` (B,) int64: given (None: the rule for P everywhere), or chosen by the
    kernel when ``least`` (the smallest margin of a union-bound row) is given.  A row whose target is
    ``ignore_index`` gets zeros.  ``reduction`` "mean" or "sum": also their value over the other rows
    (0-dim), and the gradient is theirs.  ``standardize``: the logits standardised first, one mean and
    std over the rows whose target is not ``ignore_index`` (``x' = (x - mean) / (std + eps)``), the
    gradient through it (with reduction "none", that of the rows' sum: it couples the rows).  Returns
    the outputs in one flat tensor (see :func:`views`), the ways (None if neither given nor chosen),
    the counts ``(rows whose target is not ignore_index, other targets outside [0, C), far rows left to
    the caller)`` and the standardisation's ``(mean, std + eps, 1 / ((count - 1) std))`` (with far rows
    the caller adds its part of the gradient); with other targets outside ``[0, C)`` nothing is computed.
    A far row (a rival more than ``FAR_MARGIN`` ahead) has ``1 - P = 1`` and no gradient; its ``log P``
    is left to the caller (zeros).

    Kept lean (it runs on every training step): no views of the outputs, their addresses computed.
    """
    m = scores if scores.is_contiguous() else scores.contiguous()
    if target.dtype != torch.int64 or not target.is_contiguous():
        target = target.to(torch.int64).contiguous()
    b, c = m.shape
    n = num_nodes // 2
    choose = least is not None
    row_scale = row_clip = None  # per row, in double as the scalars are (kept alive until the call returns)
    if isinstance(scale, torch.Tensor):
        row_scale, scale = _per_row("scale", scale, b), 1.0  # (positive: the scores are logits)
    if isinstance(clip, torch.Tensor):
        row_clip, clip = _per_row("clip", clip, b), math.inf
    if choose:
        ways = torch.empty(b, dtype=torch.int64, device="cpu")  # (whatever a caller made the default device)
    elif ways is not None and (ways.dtype != torch.int64 or not ways.is_contiguous()):
        ways = ways.to(torch.int64).contiguous()
    # one allocation for the outputs: value (B + 1, the reduced value last), mu (B), offsets and log
    # weights (B, 2 n each) (, gradient (B, C))
    out = torch.empty(b * (2 + 4 * n + (c if need_grad else 0)) + 1, dtype=m.dtype, device="cpu")
    at, size = out.data_ptr(), out.element_size()
    counts, stats = (ctypes.c_int64 * 3)(), (ctypes.c_double * 3)()
    if target.device.type != "cpu":  # (the kernel would read a device's pointer on the host)
        raise ValueError(f"target must be on the CPU with the scores, got {target.device}")
    # (the tables' tuple held until the call returns: two threads' first calls each build their own, and the
    # cache keeps one; tables read by address from an entry it dropped were freed under the kernel)
    tables = _tables(num_nodes, m.dtype)
    hermite_x, hermite_log_w, table = tables[3]
    threads = torch.get_num_threads() if b * c * num_nodes >= _PARALLEL_TERMS else 1
    status = kernel()[m.dtype](
        m.data_ptr(), target.data_ptr(), ways.data_ptr() if ways is not None else None, choose, ignore_index, b, c,
        scale, clip, None if row_scale is None else row_scale.data_ptr(), None if row_clip is None else row_clip.data_ptr(),
        kind, n, hermite_x, hermite_log_w, table, 0.0 if least is None else least,
        REDUCTIONS[reduction], standardize, eps, at, at + size * (2 * b + 1 + 4 * n * b) if need_grad else None,
        at + size * (b + 1), at + size * (2 * b + 1), at + size * (2 * b + 1 + 2 * n * b), counts, stats, threads,
    )  # fmt: skip
    if status == -1:
        raise MemoryError(f"the EXACT kernel could not allocate its work space for {c} classes")
    if status:
        raise ValueError(f"the EXACT kernel refused its arguments (status {status})")
    return out, ways, tuple(counts), tuple(stats)


def _per_row(name: str, values: torch.Tensor, b: int) -> torch.Tensor:
    """A per-row scale or clip as the kernel reads it: ``b`` doubles in CPU memory."""
    if values.shape != (b,) or values.device.type != "cpu":
        raise ValueError(f"a per-row {name} must be a CPU tensor of shape ({b},), got {tuple(values.shape)} on {values.device}")
    return values.to(torch.float64).contiguous()


def gradient_of(out: torch.Tensor, b: int, c: int, num_nodes: int) -> torch.Tensor:
    """The gradient (B, C) in :func:`rows`' outputs."""
    return out.as_strided((b, c), (c, 1), 2 * b + 1 + 2 * num_nodes * b)


def views(out: torch.Tensor, b: int, c: int, num_nodes: int, need_grad: bool):
    """:func:`rows`' outputs: the values (B,), the reduced value (0-dim), the gradient (B, C) or None and
    the rule ``(mu (B,), offsets (B, 2 n), log_weights (B, 2 n))``."""
    k = 2 * (num_nodes // 2)
    rule = (out[b + 1 : 2 * b + 1], out.as_strided((b, k), (k, 1), 2 * b + 1), out.as_strided((b, k), (k, 1), 2 * b + 1 + k * b))
    return out[:b], out[b], gradient_of(out, b, c, num_nodes) if need_grad else None, rule


def log_p_and_grad(
    m: torch.Tensor,
    true_class: torch.Tensor,
    num_nodes: int,
    need_grad: bool,
    scale: float = 0.0,
    ways: torch.Tensor | None = None,
):
    """As ``_exact_integral._log_p_and_grad``, by the kernel: :func:`rows` with ``kind=VALUE`` (``ways``
    (B,) int64: 0 ``log P``, the default, 1 ``log Q`` by the complement's rule, 2 by the union bound)."""
    out = rows(m.detach(), true_class, num_nodes, need_grad, scale=scale, ways=ways)[0]
    log_p, _, grad, rule = views(out, m.shape[0], m.shape[1], num_nodes, need_grad)
    return log_p, grad, rule
