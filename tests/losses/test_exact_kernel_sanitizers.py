"""The C kernel under AddressSanitizer and UndefinedBehaviorSanitizer: no report on a battery of inputs.

A subprocess (this file run as a script) builds the kernel with ``-fsanitize=address,undefined`` into
a temporary cache, with the sanitizers' runtimes preloaded (Python is not instrumented), and drives
it through the public loss: float32 and float64, forward and backward, batches around the vector
width of 8, 2 to 1000 classes, every option that changes the kernel's path, extreme logits, a packed
batch of runs and the elementwise entry point.  Every case must be finite and match the PyTorch
path, so the sanitized library is the one computing.  The first report stops the process and fails
the test; a canary (known bugs built the same way) proves that a report would be seen.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lossbench.losses import _exact_native, exact
from lossbench.losses import _exact_special as exact_special

# -O3 kept (not -O1): the code under test is the vectorised code production runs (the loops padded
# to WIDTH, libmvec's vector calls); -g1 (line tables) still gives file and line in a report through
# the inlining, and builds the two sanitized kernels in 10 s where -g took 23.
SANITIZE = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g1")
REQUIRED = bool(os.environ.get("LOSSBENCH_REQUIRE_KERNEL"))  # set by CI: fail instead of skipping
REPORTS = ("ERROR: AddressSanitizer", "runtime error:")  # ASan's and UBSan's


def sanitizer_runtimes() -> tuple[str | None, list[str], str]:
    """The compiler the kernel would use, its libasan and libubsan, and why not where they are missing."""
    name = os.environ.get("CC") or next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), "cc")
    compiler = shutil.which(name)
    if compiler is None:
        return None, [], f"no C compiler {name!r} (set $CC)"
    runtimes = []
    for runtime in ("libasan.so", "libubsan.so"):
        asked = subprocess.run([compiler, f"-print-file-name={runtime}"], capture_output=True, text=True)
        path = asked.stdout.strip()
        if not (os.path.isabs(path) and os.path.exists(path)):  # (the bare name: not installed)
            return compiler, [], f"{compiler} has no {runtime} (its sanitizer runtime is not installed)"
        runtimes.append(path)
    return compiler, runtimes, ""


@pytest.fixture
def sanitized_env(tmp_path):
    compiler, runtimes, missing = sanitizer_runtimes()
    if missing:
        if REQUIRED:
            pytest.fail(f"LOSSBENCH_REQUIRE_KERNEL is set but {missing}")
        pytest.skip(missing)
    return {
        **os.environ,
        "CC": compiler,  # the compiler whose runtimes are preloaded
        "LD_PRELOAD": " ".join(runtimes),  # ASan's runtime must come first in a process it did not start
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:halt_on_error=1",  # Python and torch leak at exit
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        _exact_native.KERNEL_DIR_ENV: str(tmp_path / "kernels"),
        _exact_native.SWITCH_ENV: "1",
        "OMP_NUM_THREADS": "2",
    }


def failure(done: subprocess.CompletedProcess) -> str:
    last = (done.stdout.strip().splitlines() or ["(none)"])[-1]
    return f"exit {done.returncode}, last line: {last}\n--- stderr (tail) ---\n{done.stderr[-6000:]}"


CANARY = """
#include <stdlib.h>
int heap_overflow(int n) { int *a = malloc(n * sizeof *a), v; a[0] = 0; v = a[n]; free(a); return v; }
int shift(int s) { return 1 << s; }
"""


@pytest.mark.parametrize(
    "call,report",
    [
        ("heap_overflow(4)", "AddressSanitizer: heap-buffer-overflow"),
        ("shift(40)", "runtime error: shift exponent 40"),
    ],
)
def test_a_report_in_this_setup_fails_the_process(sanitized_env, tmp_path, call, report):
    # The same runtimes, options and flags on a known bug: what makes the test below able to fail.
    source, library = tmp_path / "canary.c", tmp_path / "canary.so"
    source.write_text(CANARY)
    build = [sanitized_env["CC"], *SANITIZE, "-O1", "-shared", "-fPIC", str(source), "-o", str(library)]
    subprocess.run(build, check=True, capture_output=True)
    script = f"import ctypes; ctypes.CDLL({str(library)!r}).{call}; print('OK')"
    done = subprocess.run(
        [sys.executable, "-c", script], env=sanitized_env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and "OK" not in done.stdout and report in done.stderr, failure(done)
    assert f"{source}:" in done.stderr, failure(done)  # the report names the file and line


@pytest.mark.slow  # a subprocess building and driving the sanitized kernel: 15-20 s
def test_the_kernel_runs_clean_under_the_sanitizers(sanitized_env):
    done = subprocess.run(
        [sys.executable, __file__], env=sanitized_env, capture_output=True, text=True, timeout=600
    )
    reported = [r for r in REPORTS if r in done.stderr]
    assert done.returncode == 0 and not reported, failure(done)
    lines = done.stdout.splitlines()
    assert lines and lines[-1].startswith("OK "), failure(done)


# --- the battery, run in the subprocess -------------------------------------------------------------

DTYPES = (torch.float32, torch.float64)
MOST_NODES = 2 * _exact_native.MAX_HALF_NODES  # the most the kernel holds on its stack
# Loose: the two paths stop Newton's method at slightly different modes, which moves a float64
# result by up to about 1e-7 relative (the rule's own error; see test_exact_kernel.py).
TOL = {torch.float32: 1e-4, torch.float64: 1e-6}
# Node counts whose rule depends more on where it is centred, so on those modes (gradients: ten
# times): few nodes (as in test_exact_kernel.py's test_node_counts).
RULE_TOL = {2: 3e-2, 6: 1e-4}


def draw(b: int, c: int, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose rows take every way: uncertain, confident (the complement's rule) and far ahead
    (the union bound)."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, generator=gen, dtype=torch.float64) * 2.0
    target = torch.randint(0, c, (b,), generator=gen)
    ahead = torch.tensor([0.0, 5.0, 40.0], dtype=torch.float64).repeat(b // 3 + 1)[:b]
    logits[torch.arange(b), target] += ahead
    return logits.to(dtype), target


def close(actual: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    # relative to the largest entry: -log P grows like m^2 / 4, its gradient like m / 2
    size = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * size)


def both_paths(logits: torch.Tensor, target: torch.Tensor, **options) -> None:
    """The loss and its gradient by the kernel and by the PyTorch path: finite and equal."""
    results = []
    for enabled in (True, False):
        _exact_native.enabled = enabled
        try:
            x = logits.clone().requires_grad_(True)
            loss = exact(x, target, **options)
            loss.sum().backward()
        finally:
            _exact_native.enabled = True
        results.append((loss.detach(), x.grad))
    (loss, grad), (loss_ref, grad_ref) = results
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all(), (loss, grad)
    tol = max(TOL[logits.dtype], RULE_TOL.get(options.get("num_nodes"), 0.0))
    close(loss, loss_ref, tol)
    close(grad, grad_ref, 10 * tol if options.get("num_nodes") in RULE_TOL else tol)


def loss_cases(dtype: torch.dtype):
    """(name, logits, target, options) of the loss's cases."""
    rotation = (
        {},
        {"standardize": True},
        {"margin": 0.5},
        {"sigma": 0.1, "log_loss": True},
        {"num_nodes": MOST_NODES},
        {"reduction": "none", "log_loss": True},
        {"num_nodes": 2, "reduction": "sum"},
        {"sigma": 10.0, "standardize": True, "log_loss": True},
    )
    seed = 0 if dtype == torch.float32 else 3  # the other dtype meets each shape with other options
    for b in (1, 7, 8, 9, 33):  # around the vector width
        for c in (2, 3, 9, 10, 17, 100):  # (2: the closed form, no kernel)
            seed += 1
            yield f"b={b} c={c}", *draw(b, c, dtype, seed), rotation[seed % len(rotation)]
    for b, c in ((9, 10), (33, 17)):  # every option
        logits, target = draw(b, c, dtype, seed=b)
        sweep = (
            {"standardize": True}, {"standardize": True, "log_loss": True}, {"margin": 0.0}, {"margin": 2.0},
            {"sigma": 0.01}, {"sigma": 0.3, "log_loss": True}, {"sigma": 10.0}, {"log_loss": True},
            {"num_nodes": 6}, {"num_nodes": 48}, {"num_nodes": MOST_NODES, "log_loss": True},
            {"reduction": "none"}, {"reduction": "sum", "log_loss": True},
            {"sigma": torch.linspace(0.05, 5.0, b, dtype=dtype)},  # per sample: the kernel on margins
        )  # fmt: skip
        for options in sweep:
            yield f"b={b} c={c}", logits, target, options
        ignored = target.clone()
        ignored[::3] = -100
        for options in ({}, {"standardize": True}, {"reduction": "none", "log_loss": True}):
            yield f"b={b} c={c} rows ignored", logits, ignored, options
        yield f"b={b} c={c} every row ignored", logits, torch.full_like(target, -100), {"reduction": "sum"}
    nothing = torch.zeros(0, dtype=torch.long)
    yield "empty batch", torch.zeros(0, 10, dtype=dtype), nothing, {"reduction": "none"}
    # many rivals; the last two split between threads
    for b, options in ((3, {}), (3, {"log_loss": True, "num_nodes": MOST_NODES}), (9, {"standardize": True})):
        yield f"b={b} c=1000", *draw(b, 1000, dtype, seed=b), options
    for c in (3, 10, 100):
        yield from extremes(c, dtype)


def extremes(c: int, dtype: torch.dtype):
    b = 9
    logits, target = draw(b, c, dtype, seed=c)
    gen = torch.Generator().manual_seed(c)
    spread = torch.where(torch.rand(b, c, generator=gen) < 0.5, -1e4, 1e4).to(dtype)
    ahead, behind, equal = (torch.zeros(b, c, dtype=dtype) for _ in range(3))
    ahead[torch.arange(b), target] = 1e4
    behind[torch.arange(b), (target + 1) % c] = 1e4  # a rival past the far margin
    cases = [
        ("all equal", equal, {}),
        ("all equal", equal, {"standardize": True}),  # std 0: clamped
        ("all equal", equal, {"log_loss": True, "sigma": 1e-3}),
        ("spread 1e4", spread, {}),
        ("spread 1e4", spread, {"log_loss": True}),
        ("spread 1e4", spread, {"standardize": True, "log_loss": True}),
        ("true class 1e4 ahead", ahead, {"log_loss": True}),
        ("rival 1e4 ahead", behind, {}),
        ("rival 1e4 ahead", behind, {"log_loss": True, "margin": 2e4}),
        ("rival 1e4 ahead", behind, {"standardize": True, "sigma": 1e-3, "log_loss": True}),
        ("tiny sigma", logits, {"sigma": 1e-3}),
        ("tiny sigma", logits, {"sigma": 1e-3, "log_loss": True}),
    ]
    if dtype == torch.float64:  # past float64's far margin (1e7)
        cases.append(("rival 1e8 ahead", behind * 1e4, {"log_loss": True}))
    for name, x, options in cases:
        yield f"c={c} {name}", x, target, options


def packed_runs(dtype: torch.dtype) -> None:
    # K runs sharing one loss, as train/packed.py calls it: one (K B, C) batch, reduction "none"
    k, b, c = 4, 7, 10
    logits, target = draw(k * b, c, dtype, seed=11)
    both_paths(logits, target, reduction="none", log_loss=True)
    x = logits.clone().requires_grad_(True)
    per_run = exact(x, target, reduction="none").reshape(k, b).mean(1)
    per_run.sum().backward()
    for run in range(k):
        rows = slice(run * b, (run + 1) * b)
        alone = logits[rows].clone().requires_grad_(True)
        loss = exact(alone, target[rows])
        loss.backward()
        close(per_run[run].detach(), loss.detach(), TOL[dtype])
        close(x.grad[rows], alone.grad, TOL[dtype])


def elementwise(dtype: torch.dtype, n: int) -> None:
    # the kernel's log Phi and lam entry (chunks of 256 and their remainders), from the body to the tail
    x = torch.linspace(-10.0, 1e4, n, dtype=torch.float64).to(dtype)
    log_phi, lam = _exact_native.log_ndtr_and_mills(x)
    log_phi_ref, lam_ref = exact_special.log_ndtr_and_mills(x)
    assert torch.isfinite(log_phi).all() and torch.isfinite(lam).all()
    torch.testing.assert_close(log_phi, log_phi_ref, rtol=TOL[dtype], atol=TOL[dtype])
    torch.testing.assert_close(lam, lam_ref, rtol=TOL[dtype], atol=TOL[dtype])


def refused_arguments(dtype: torch.dtype) -> None:
    # the kernel's refusals, none of them a memory error (MemoryError is no ValueError)
    m, target = draw(5, 4, dtype, seed=3)
    with pytest.raises(ValueError, match="status -2"):
        _exact_native.rows(m, target, MOST_NODES + 2, True, scale=1.0)
    with pytest.raises(ValueError, match="outside"):
        exact(m, torch.tensor([0, 1, 9, 2, 3]), validate=False)


def battery():
    """(name, thunk) of every case."""
    for dtype in DTYPES:
        for name, logits, target, options in loss_cases(dtype):
            yield f"{dtype} {name} {options}", functools.partial(both_paths, logits, target, **options)
        yield f"{dtype} packed runs", functools.partial(packed_runs, dtype)
        for n in (1, 7, 8, 9, 255, 256, 257, 1000):
            yield f"{dtype} log_ndtr_and_mills n={n}", functools.partial(elementwise, dtype, n)
        yield f"{dtype} refused arguments", functools.partial(refused_arguments, dtype)


def main() -> None:
    # The runtimes are loaded already; the compiler that the build starts needs none of them (and
    # runs half again as long under them).
    os.environ.pop("LD_PRELOAD", None)
    _exact_native.FLAGS = (*_exact_native.FLAGS, *SANITIZE)
    _exact_native.LINK = (*_exact_native.LINK, SANITIZE[0])  # the runtimes as the library's dependencies
    assert _exact_native.kernel() is not None, _exact_native.unavailable_reason()
    # the library in use is the sanitized build, in the temporary cache
    library = _exact_native.library_path(os.environ["CC"])
    assert library.parent == Path(os.environ[_exact_native.KERNEL_DIR_ENV]).resolve()
    assert [p.name for p in library.parent.iterdir()] == [library.name]
    assert str(library) in Path("/proc/self/maps").read_text(), "the sanitized library is not loaded"
    data = library.read_bytes()
    assert b"__asan_report" in data and b"__ubsan_handle" in data, "the library is not instrumented"
    torch.set_num_threads(2)
    count = 0
    for name, run in battery():
        print("case", name, flush=True)  # the last line names the case that a report stopped
        run()
        count += 1
    print(f"OK {count} cases", flush=True)


if __name__ == "__main__":
    main()
