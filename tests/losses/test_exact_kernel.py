"""The fused CPU kernel of EXACT against the PyTorch implementation, its build and its fallback.

Both implementations are checked against the independent references in ``test_exact.py`` (each
of those tests runs through both); here they are compared with each other on inputs that reach
every branch of the kernel: few and many rivals (the two layouts of the node terms), rivals
saturated at every node, the far tail, the node counts, threads.
"""

from __future__ import annotations

import ctypes
import math
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from lossbench.losses import _exact_integral as exact_integral
from lossbench.losses import _exact_native, exact
from lossbench.losses import _exact_quadrature as quadrature
from lossbench.losses import _exact_rules as exact_rules
from lossbench.losses import _exact_special as exact_special
from lossbench.losses._exact_integral import _log_p_and_grad
from tests.permissions import group_writable

# CI sets LOSSBENCH_REQUIRE_KERNEL: there a missing compiler fails these tests instead of skipping them.
needs_kernel = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None and not os.environ.get("LOSSBENCH_REQUIRE_KERNEL"),
    reason="no C compiler on this machine",
)


@pytest.fixture
def kernel():
    if _exact_native.kernel() is None:
        pytest.fail(f"the kernel did not build here: {_exact_native.unavailable_reason()}")


def both_paths(m: torch.Tensor, target: torch.Tensor, num_nodes: int = 16, need_grad: bool = True):
    assert _exact_native.applies(m, num_nodes)
    native = _exact_native.log_p_and_grad(m, target, num_nodes, need_grad)
    previous, _exact_native.enabled = _exact_native.enabled, False
    try:
        eager = _log_p_and_grad(m, target, num_nodes, need_grad)
    finally:
        _exact_native.enabled = previous
    return native, eager


def margins(b: int, c: int, scale: float, dtype: torch.dtype, seed: int, ahead: float = 0.0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, generator=gen, dtype=dtype) * scale
    target = torch.randint(0, c, (b,), generator=gen)
    logits[torch.arange(b), target] += ahead
    return logits.gather(1, target[:, None]) - logits, target


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("c", [3, 5, 9, 10, 32, 33, 34, 100, 1000])
@pytest.mark.parametrize("scale,ahead", [(0.2, 0.0), (1.0, 0.0), (4.0, 2.0), (30.0, 0.0), (100.0, 5.0)])
def test_kernel_equals_the_pytorch_path(kernel, dtype, c, scale, ahead):
    # scale 0.2: every rival in play; 30 and 100 (a small sigma): rivals saturated at every node
    # are left out and the wrong predictions lie far in the tail (log P down to about -1e4).
    m, target = margins(32 if c < 1000 else 8, c, scale, dtype, seed=c, ahead=ahead)
    (log_p, grad, rule), (log_p_ref, grad_ref, _) = both_paths(m, target)
    assert torch.isfinite(log_p).all() and torch.isfinite(grad).all()
    p_tol, rel_tol = (1e-8, 1e-6) if dtype == torch.float64 else (2e-6, 1e-4)
    torch.testing.assert_close(log_p.exp(), log_p_ref.exp(), rtol=0, atol=p_tol)
    tail = log_p_ref < -0.7  # P < 1/2: the relative error of -log P
    assert ((log_p[tail] - log_p_ref[tail]).abs() <= rel_tol * log_p_ref[tail].abs()).all()
    scale_g = grad_ref.abs().amax(1, keepdim=True).clamp_min(1.0)
    torch.testing.assert_close(grad / scale_g, grad_ref / scale_g, rtol=0, atol=10 * rel_tol)
    assert (grad.gather(1, target[:, None]) == 0).all()  # the true class's margin is no variable
    mu, offsets, log_weights = rule
    assert mu.shape == (m.shape[0],) and offsets.shape == log_weights.shape == (m.shape[0], 16)


@needs_kernel
@pytest.mark.parametrize("num_nodes,tol", [(2, 3e-2), (6, 1e-4), (16, 1e-7), (48, 1e-7)])
def test_node_counts(kernel, num_nodes, tol):
    # The two implementations stop Newton's method at slightly different modes; with few nodes
    # the rule's result depends on where it is centred (its error: see bench_exact's table).
    m, target = margins(16, 12, 1.0, torch.float64, seed=num_nodes)
    (log_p, grad, _), (log_p_ref, grad_ref, _) = both_paths(m, target, num_nodes)
    torch.testing.assert_close(log_p, log_p_ref, rtol=tol, atol=tol)
    torch.testing.assert_close(grad, grad_ref, rtol=10 * tol, atol=10 * tol)


@needs_kernel
@pytest.mark.parametrize("c", [10, 40])  # rows in lanes, and one at a time
def test_value_without_gradient_and_threads_change_nothing(kernel, monkeypatch, c):
    m, target = margins(67, c, 1.0, torch.float32, seed=7)
    log_p, grad, _ = _exact_native.log_p_and_grad(m, target, 16, True)
    value_only, none, _ = _exact_native.log_p_and_grad(m, target, 16, False)
    assert none is None and torch.equal(value_only, log_p)
    threads = torch.get_num_threads()
    monkeypatch.setattr(_exact_native, "_PARALLEL_TERMS", 0)  # rows split between threads
    try:
        torch.set_num_threads(2)
        log_p2, grad2, _ = _exact_native.log_p_and_grad(m, target, 16, True)
        with torch.inference_mode():
            log_p3, _, _ = _exact_native.log_p_and_grad(m, target, 16, False)
    finally:
        torch.set_num_threads(threads)
    # every row is computed alone, by the same code: the same bits whatever the split
    assert torch.equal(log_p2, log_p) and torch.equal(grad2, grad) and torch.equal(log_p3, log_p)


@needs_kernel
def test_loss_through_the_kernel_on_strided_logits(kernel):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(20, 7, dtype=torch.float64, generator=gen).t().contiguous().t()  # column-major
    target = torch.randint(0, 7, (20,), generator=gen)
    assert not logits.is_contiguous()
    x = logits.clone().requires_grad_(True)
    exact(x, target, log_loss=True).backward()
    y = logits.contiguous().requires_grad_(True)
    exact(y, target, log_loss=True).backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=0, atol=0)


@needs_kernel
def test_build_is_cached_by_content(kernel, tmp_path, monkeypatch):
    monkeypatch.setenv(_exact_native.KERNEL_DIR_ENV, str(tmp_path))
    compiler = shutil.which("cc") or shutil.which("gcc")
    first = _exact_native._build(compiler)
    stamp = first.stat().st_mtime_ns
    assert first.parent == tmp_path and first.name.startswith("exact-")
    assert _exact_native._build(compiler) == first and first.stat().st_mtime_ns == stamp  # not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary files left


def test_a_kernel_cache_that_cannot_be_made_names_the_variable_to_set(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(_exact_native.KERNEL_DIR_ENV, str(tmp_path / "file" / "kernels"))  # (below a file: none)
    with pytest.raises(OSError, match=r"^cannot make the kernel cache .*kernels: .*; set \$LOSSBENCH_KERNEL_DIR to a "):
        _exact_native.library_path(shutil.which("cc") or shutil.which("gcc") or "cc")


@needs_kernel
def test_a_damaged_library_is_built_again_once(kernel, tmp_path, monkeypatch):
    """An empty library (a full disk while it was written, a power cut) was taken as built: every later process
    ran without the kernel, warning 'file too short' (found by a review)."""
    monkeypatch.setenv(_exact_native.KERNEL_DIR_ENV, str(tmp_path))
    compiler = shutil.which("cc") or shutil.which("gcc")
    library = _exact_native._build(compiler)
    library.write_bytes(b"")
    with pytest.warns(RuntimeWarning, match=r"is damaged .*; building it again"):
        loaded = _exact_native._load(compiler)
    assert library.stat().st_size > 0 and _exact_native._declare(loaded)[torch.float64] is not None
    # a whole library that cannot load (a noexec mount, say) is not rebuilt in every process: the error stands
    real = ctypes.CDLL
    monkeypatch.setattr(ctypes, "CDLL", lambda path: (_ for _ in ()).throw(OSError(f"{path}: failed to map segment")))
    stamp = library.stat().st_mtime_ns
    with pytest.raises(OSError, match="failed to map segment"):
        _exact_native._load(compiler)
    assert library.stat().st_mtime_ns == stamp and real is not ctypes.CDLL


def test_without_a_compiler_the_pytorch_path_is_used_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(_exact_native, "_STATE", {})  # as if nothing had been built in this process
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv(_exact_native.KERNEL_DIR_ENV, str(tmp_path / "kernels"))
    logits, target = torch.randn(8, 5, dtype=torch.float64), torch.randint(0, 5, (8,))
    with pytest.warns(RuntimeWarning, match="EXACT kernel is unavailable.*no-such-compiler"):
        loss = exact(logits, target, reduction="none")
    assert _exact_native.kernel() is None and "no-such-compiler" in _exact_native.unavailable_reason()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, not on every call
        again = exact(logits, target, reduction="none")
    torch.testing.assert_close(loss, again)


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_off_linux_no_compiler_is_asked_and_the_pytorch_path_is_used_with_one_warning(platform, tmp_path, monkeypatch):
    # (Apple clang takes no -fopenmp, libmvec is glibc's; a Mac without a compiler offered to install one)
    monkeypatch.setattr(_exact_native, "_STATE", {})
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(_exact_native, "_trusted_compiler", lambda c: pytest.fail("a compiler was looked for"))
    logits, target = torch.randn(8, 5, dtype=torch.float64), torch.randint(0, 5, (8,))
    with pytest.warns(RuntimeWarning, match=f"EXACT kernel is unavailable.*Linux only.*not on {platform}"):
        loss = exact(logits, target, reduction="none")
    monkeypatch.setattr(_exact_native, "enabled", False)
    torch.testing.assert_close(loss, exact(logits, target, reduction="none"))


def test_a_failing_compiler_reports_its_error(tmp_path, monkeypatch):
    fake = tmp_path / "cc"
    fake.write_text('#!/bin/sh\n[ "$1" = --version ] && echo "cc (fake) 1.0" && exit 0\necho "fatal: out of disk" >&2; exit 1\n')
    fake.chmod(0o755)
    monkeypatch.setattr(_exact_native, "_STATE", {})
    monkeypatch.setenv("CC", str(fake))
    monkeypatch.setenv(_exact_native.KERNEL_DIR_ENV, str(tmp_path / "kernels"))
    with pytest.warns(RuntimeWarning, match="out of disk"):
        assert _exact_native.kernel() is None


def test_the_compiler_runs_as_cc_says_with_its_temporary_files_in_the_private_build_folder(tmp_path, monkeypatch):
    # $CC is a command line ("ccache gcc"); the compiler's own temporary files go to the build folder, never to
    # a $TMPDIR another user may write; a build folder a killed build left an hour ago is removed, a recent one kept
    log = tmp_path / "log"
    fake = tmp_path / "cc"
    fake.write_text(f'#!/bin/sh\n[ "$2" = --version ] && echo "cc (fake) 1.0" && exit 0\n'
                    f'echo "$TMPDIR" >> {log}; echo "$@" >> {log}; exit 1\n')  # fmt: skip
    fake.chmod(0o755)
    kernels = tmp_path / "kernels"
    kernels.mkdir(mode=0o700)
    stale, recent = kernels / "build-stale", kernels / "build-recent"
    stale.mkdir(), recent.mkdir()
    os.utime(stale, (time.time() - 2 * 3600,) * 2)
    monkeypatch.setattr(_exact_native, "_STATE", {})
    monkeypatch.setenv("CC", f"{fake} --fake-option")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv(_exact_native.KERNEL_DIR_ENV, str(kernels))
    with pytest.warns(RuntimeWarning, match="unavailable"):
        assert _exact_native.kernel() is None
    tmpdir, args = log.read_text().splitlines()[:2]
    assert Path(tmpdir).parent == kernels.resolve() and Path(tmpdir).name.startswith("build-")
    assert args.startswith("--fake-option -pipe ")
    assert not stale.exists() and recent.exists()


def test_the_compiler_is_never_a_file_of_the_working_folder_nor_one_others_can_write(tmp_path, monkeypatch):
    # PATH=":/usr/bin" (an empty entry, a common slip) ran a ./cc of the working folder, and its library was loaded
    planted = tmp_path / "cc"
    planted.write_text("#!/bin/sh\necho planted\n")
    planted.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", ":" + os.environ.get("PATH", ""))
    found = _exact_native.program_on_path("cc")
    assert found is None or Path(found).parent != tmp_path
    monkeypatch.setenv("PATH", ".")
    assert _exact_native.program_on_path("cc") is None
    with pytest.raises(RuntimeError, match="no C compiler './cc' in PATH's absolute folders"):
        _exact_native._trusted_compiler("./cc")  # (a relative $CC)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "cc").write_text("#!/bin/sh\n")
    (shared / "cc").chmod(0o755)
    shared.chmod(0o777)  # (no sticky bit: anyone may replace the cc in it)
    with pytest.raises(RuntimeError, match=f"{shared} is writable by .* another user could change what it builds"):
        _exact_native._trusted_compiler(f"{shared / 'cc'} -O0")
    shared.chmod(0o755)
    assert _exact_native._trusted_compiler(f"{shared / 'cc'} -O0") == f"{shared / 'cc'} -O0"


def test_the_compiler_and_what_it_runs_see_paths_absolute_folders_only(tmp_path, monkeypatch):
    # $CC = "ccache gcc": ccache looks gcc up on PATH, and gcc its assembler: neither in the working folder
    log = tmp_path / "log"
    fake = tmp_path / "cc"
    fake.write_text(f'#!/bin/sh\necho "$PATH" >> {log}\n[ "$1" = --version ] && echo "cc (fake) 1.0" && exit 0\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setattr(_exact_native, "_STATE", {})
    monkeypatch.setenv("CC", str(fake))
    monkeypatch.setenv("PATH", ":relative/bin:/usr/bin::/bin")
    monkeypatch.setenv(_exact_native.KERNEL_DIR_ENV, str(tmp_path / "kernels"))
    with pytest.warns(RuntimeWarning, match="unavailable"):
        assert _exact_native.kernel() is None
    assert set(log.read_text().splitlines()) == {"/usr/bin:/bin"}


def test_an_interrupted_build_leaves_the_next_call_to_try_again(monkeypatch):
    monkeypatch.setattr(_exact_native, "_STATE", {})

    def interrupted(compiler):
        raise KeyboardInterrupt

    monkeypatch.setattr(_exact_native, "_build", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _exact_native.kernel()
    assert "functions" not in _exact_native._STATE  # (it had cached None: the kernel off for the process)


def test_other_tensors_take_the_pytorch_path(monkeypatch):
    m = torch.zeros(4, 5)
    assert not _exact_native.applies(m.half(), 16)
    assert not _exact_native.applies(m[:, :2], 16)  # two classes: the closed form
    assert not _exact_native.applies(m, 2 * (_exact_native.MAX_HALF_NODES + 1))
    monkeypatch.setattr(_exact_native, "MAX_CLASSES", 5)  # (the kernel counts a row's padded rivals in int)
    assert not _exact_native.applies(m, 16) and _exact_native.applies(m[:, :4], 16) is (_exact_native.kernel() is not None)


@needs_kernel
def test_threads_making_their_first_calls_at_once_get_the_values_of_one_thread(kernel, monkeypatch):
    """Each thread's first call of a (num_nodes, dtype) builds its rule's tables and the cache keeps one: the
    kernel read the others' by address after they were freed (0.69 off in a loss in [0, 1], found by a review)."""
    import threading

    gen = torch.Generator().manual_seed(14)
    x = {dt: torch.randn(500, 12, generator=gen, dtype=dt) * 2 for dt in (torch.float32, torch.float64)}
    target = torch.randint(0, 12, (500,), generator=gen)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # (the threads race, not OpenMP's)
    nodes = range(4, 40, 2)
    for cache in (_exact_native._tables, _exact_native.constants, exact_rules.half_range_rule):
        cache.cache_clear()  # (cold: every thread's call below is a first one)
    barrier, results = threading.Barrier(3), {}

    def worker(w: int) -> None:
        for n in nodes:
            for dt in x:
                barrier.wait()
                results[w, n, dt] = exact(x[dt], target, num_nodes=n, reduction="none")

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 * len(nodes) * 2
    wrong = [(w, n, dt) for (w, n, dt), v in results.items()
             if not torch.equal(v, exact(x[dt], target, num_nodes=n, reduction="none"))]  # fmt: skip
    assert not wrong


def test_a_target_on_another_device_is_refused_not_read_by_the_kernel():
    logits, target = torch.randn(6, 5), torch.randint(0, 5, (6,))
    for validate in (True, False):  # (a meta target's pointer, read by the kernel, ended the process)
        with pytest.raises(ValueError, match=r"target must be on the logits' device cpu, got meta"):
            exact(logits, target.to("meta"), validate=validate)
    with pytest.raises(ValueError, match="target must be on the CPU with the scores, got meta"):
        _exact_native.rows(logits, target.to("meta"), 16, False)


@needs_kernel
def test_the_kernels_tables_and_outputs_stay_on_the_cpu_whatever_the_default_device(kernel):
    """Under a caller's default device (cuda, say; meta here) the rule's cached tables and the outputs were made
    there, and the kernel read their addresses on the host: the process ended."""
    gen = torch.Generator().manual_seed(3)
    logits, target = torch.randn(40, 12, generator=gen, requires_grad=True), torch.randint(0, 12, (40,), generator=gen)
    expected = exact(logits, target)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    for cache in (_exact_native._tables, _exact_native.constants, exact_rules.half_range_rule):
        cache.cache_clear()  # (built below, under the default device)
    with torch.device("meta"):
        value = exact(logits, target)
        (grad,) = torch.autograd.grad(value, logits)
    assert value.device.type == "cpu" and torch.equal(value, expected) and torch.equal(grad, expected_grad)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_child_forked_while_the_kernels_lock_is_held_takes_its_own():
    """A child forked while another thread builds the kernel (its lock held: seconds on first use) waited on
    that lock forever."""
    with _exact_native._LOCK:
        pid = os.fork()
        if pid == 0:  # the child: the lock it inherited is not the one it takes
            os._exit(0 if _exact_native._LOCK.acquire(timeout=10) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def graph_nodes(t: torch.Tensor) -> set[str]:
    """The names of the backward nodes in ``t``'s graph (every node visited once: two nodes of one
    kind, such as two ``where``, are both followed)."""
    names, visited, stack = set(), set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and id(node) not in visited:
            visited.add(id(node))
            names.add(type(node).__name__)
            stack.extend(next_node for next_node, _ in node.next_functions)
    return names


@needs_kernel
@pytest.mark.parametrize("c,sigma", [(3, 1.0), (10, 0.3), (100, 2.0), (100, 0.01)])
def test_margins_formed_in_the_kernel_equal_the_margins_path(kernel, c, sigma):
    # With a float sigma the kernel takes the logits and returns the loss and its gradient in one
    # autograd node, the margins' clip included; a tensor sigma sends the same loss through the
    # margins' tensor, and a clip that never binds changes nothing.
    gen = torch.Generator().manual_seed(c)  # seeded: the same inputs on every run
    logits = torch.randn(16, c, dtype=torch.float64, generator=gen) * 3
    target = torch.randint(0, c, (16,), generator=gen)
    x = logits.clone().requires_grad_(True)
    fused = exact(x, target, sigma=sigma, log_loss=True, reduction="none")
    assert graph_nodes(fused) == {"ExactRowsLossBackward", "AccumulateGrad"}
    fused.sum().backward()
    z = logits.clone().requires_grad_(True)
    general = exact(z, target, sigma=torch.tensor(sigma, dtype=torch.float64), log_loss=True, reduction="none")
    general.sum().backward()
    assert "GatherBackward0" in graph_nodes(general)
    torch.testing.assert_close(fused, general, rtol=1e-12, atol=0)
    torch.testing.assert_close(x.grad, z.grad, rtol=1e-10, atol=1e-12)
    w = logits.clone().requires_grad_(True)
    unclipped = exact(w, target, sigma=sigma, log_loss=True, reduction="none", margin=1e30)
    unclipped.sum().backward()
    assert torch.equal(unclipped, fused) and torch.equal(w.grad, x.grad)
    # at 100 classes a full Jacobian by finite differences takes seconds: a random projection of it there
    fast = c >= 100
    four = (logits[:4].clone().requires_grad_(True),)
    assert torch.autograd.gradcheck(lambda a: exact(a, target[:4], sigma=sigma), four, fast_mode=fast)
    assert torch.autograd.gradgradcheck(lambda a: exact(a, target[:4], sigma=sigma), four, fast_mode=fast)


# --- the kernel cache loads nothing another user could have planted -------------------------------

PLANTED = r"""
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(MARKER, "w");
    if (f) { fputs("ran", f); fclose(f); }
}
"""


def plant_library(tmp_path, monkeypatch, kernel_dir):
    """A library at the kernel's cache path that, if ever loaded, writes a marker file."""
    monkeypatch.setattr(_exact_native, "_STATE", {})
    monkeypatch.setenv(_exact_native.KERNEL_DIR_ENV, str(kernel_dir))
    compiler = shutil.which("cc") or shutil.which("gcc")
    marker = tmp_path / "marker"
    source = tmp_path / "planted.c"
    source.write_text(PLANTED)
    target = _exact_native.library_path(compiler)
    subprocess.run([compiler, "-shared", "-fPIC", f'-DMARKER="{marker}"', str(source), "-o", str(target)], check=True)
    return target, marker


def refused(target, marker, match="refusing"):
    with pytest.warns(RuntimeWarning, match=match):
        assert _exact_native.kernel() is None
    assert not marker.exists(), "the planted library was loaded"
    assert target.exists()  # refused, not silently replaced


@needs_kernel
def test_a_group_writable_library_is_refused(tmp_path, monkeypatch):
    target, marker = plant_library(tmp_path, monkeypatch, tmp_path / "kernels")
    target.chmod(0o775)
    refused(target, marker, match=f"refusing to load {target}")
    # The planted library, made the user's own and private, is what the check lets through:
    # proof that the file above was refused for its mode and for nothing else.
    target.chmod(0o700)
    monkeypatch.setattr(_exact_native, "_STATE", {})
    with pytest.warns(RuntimeWarning):  # it has no kernel entry points, but it ran
        _exact_native.kernel()
    assert marker.read_text() == "ran"


@needs_kernel
@pytest.mark.skipif(os.geteuid() != 0, reason="making a file of another uid needs root")
def test_a_library_of_another_user_is_refused(tmp_path, monkeypatch):
    target, marker = plant_library(tmp_path, monkeypatch, tmp_path / "kernels")
    target.chmod(0o700)
    os.chown(target, 12345, 12345)
    refused(target, marker, match="owner uid 12345")


@needs_kernel
@pytest.mark.parametrize("kind", ["group-writable", "other owner"])
def test_a_cache_directory_others_can_write_is_refused(tmp_path, monkeypatch, kind):
    kernels = tmp_path / "kernels"
    target, marker = plant_library(tmp_path, monkeypatch, kernels)
    target.chmod(0o700)
    if kind == "group-writable":
        group_writable(kernels)
    elif os.geteuid() == 0:
        os.chown(kernels, 12345, 12345)
    else:
        pytest.skip("making a directory of another uid needs root")
    refused(target, marker, match="refusing the kernel cache")


@needs_kernel
def test_a_cache_below_a_directory_anyone_can_write_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    target, marker = plant_library(tmp_path, monkeypatch, shared / "kernels")
    target.chmod(0o700)
    shared.chmod(0o777)  # without the sticky bit anyone could rename kernels/ and put their own there
    refused(target, marker, match=f"refusing the kernel cache .*{shared}")
    shared.chmod(0o1777)  # as /tmp: others cannot replace what the user made in it
    monkeypatch.setattr(_exact_native, "_STATE", {})
    with pytest.warns(RuntimeWarning):
        _exact_native.kernel()
    assert marker.exists()


@needs_kernel
def test_a_new_cache_directory_is_private(tmp_path, monkeypatch):
    monkeypatch.setattr(_exact_native, "_STATE", {})
    monkeypatch.setenv(_exact_native.KERNEL_DIR_ENV, str(tmp_path / "new" / "kernels"))
    assert _exact_native.kernel() is not None
    directory = tmp_path / "new" / "kernels"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    (library,) = directory.iterdir()
    assert library.stat().st_uid == os.geteuid() and not library.stat().st_mode & 0o022


def test_nothing_is_created_below_a_cache_home_anyone_can_write(tmp_path, monkeypatch):
    # No compiler needed: the directory is checked (and refused) before anything is built.
    home = tmp_path / "ww"
    home.mkdir()
    home.chmod(0o777)
    monkeypatch.delenv(_exact_native.KERNEL_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    with pytest.raises(_exact_native.UntrustedCacheError, match=rf"{home} is writable by its group and other users "
                                                                r"\(mode drwxrwxrwx\) without the sticky bit"):  # fmt: skip
        _exact_native._trusted_dir(_exact_native._kernel_dir())
    assert list(home.iterdir()) == []  # not even lossbench/kernels made before refusing
    home.chmod(0o1777)  # as /tmp: what the user makes there is theirs
    assert _exact_native._trusted_dir(_exact_native._kernel_dir()) == (home / "lossbench" / "kernels").resolve()


@pytest.mark.parametrize("kind", ["group-writable", "world-writable parent", "other owner", "other owner above"])
def test_a_refused_kernel_cache_says_which_condition_failed(tmp_path, kind):
    kernels = tmp_path / "parent" / "kernels"
    kernels.mkdir(parents=True, mode=0o700)
    if kind == "group-writable":
        group_writable(kernels)
        expected = rf"{kernels} is writable by its group \(mode drwxrwx---\)"
    elif kind == "world-writable parent":
        kernels.parent.chmod(0o757)
        expected = rf"{kernels.parent} is writable by other users \(mode drwxr-xrwx\) without the sticky bit"
    elif os.geteuid() != 0:
        pytest.skip("making a directory of another uid needs root")
    elif kind == "other owner":
        os.chown(kernels, 12345, 12345)
        expected = rf"{kernels} is owned by uid 12345, not by you \(uid 0\)"
    else:
        os.chown(kernels.parent, 12345, 12345)
        expected = rf"{kernels.parent} is owned by uid 12345, neither you \(uid 0\) nor root"
    with pytest.raises(_exact_native.UntrustedCacheError, match=f"^refusing the kernel cache {kernels}: {expected}; "):
        _exact_native._trusted_dir(kernels)


def test_a_folder_writable_by_the_users_private_group_is_trusted(tmp_path):
    """Under umask 002 a user's folders (~/.cache among them) are writable by the user's private group
    (named as the user, no other member): no other user can write them, and the cache is used."""
    import grp
    import pwd

    user = pwd.getpwuid(os.geteuid())
    group = grp.getgrgid(user.pw_gid)
    if group.gr_name != user.pw_name or not set(group.gr_mem) <= {user.pw_name}:
        pytest.skip("this user's primary group is not a private one")
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    os.chown(home, -1, user.pw_gid)
    home.chmod(0o775)
    kernels = home / "lossbench" / "kernels"
    assert _exact_native._trusted_dir(kernels) == kernels.resolve()
    kernels.chmod(0o770)
    assert _exact_native._trusted_dir(kernels) == kernels.resolve()
    group_writable(kernels)  # another group: refused
    with pytest.raises(_exact_native.UntrustedCacheError, match="is writable by its group"):
        _exact_native._trusted_dir(kernels)


# --- confident rows: the complement's rule and the union bound in the kernel ------------------------


def confident_margins(b: int, c: int, dtype: torch.dtype, seed: int, low: float, high: float):
    """Margins of rows whose union bound of Q is below 1/2: every rival at least ``low`` behind."""
    gen = torch.Generator().manual_seed(seed)
    m = low + (high - low) * torch.rand(b, c, generator=gen, dtype=torch.float64)
    m[: b // 2, 1 : c // 2] = m[: b // 2, :1]  # ties: the complement's hardest shape
    target = torch.randint(0, c, (b,), generator=gen)
    return m.scatter_(1, target[:, None], 0.0).to(dtype), target


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("c", [3, 10, 33, 100])
@pytest.mark.parametrize("low,high", [(2.5, 6.0), (4.0, 30.0), (10.0, 14.0)])
def test_kernel_equals_the_pytorch_path_for_the_complement(kernel, dtype, c, low, high):
    # log Q of confident rows (Q from about 0.3 down to 1e-27): relative precision of Q itself, and
    # of its gradient (the same formula as P's, with the complement's integrand).
    m, target = confident_margins(32, c, dtype, seed=c, low=low, high=high)
    rows = exact_integral._ways(m, target) == 1  # the rows log_win_and_lose gives the complement's rule
    assert rows.sum() >= 8
    m, target = m[rows], target[rows]
    native = _exact_native.log_p_and_grad(m, target, 16, True, ways=torch.ones_like(target))
    previous, _exact_native.enabled = _exact_native.enabled, False
    try:
        eager = _log_p_and_grad(m, target, 16, True, complement=True)
    finally:
        _exact_native.enabled = previous
    (log_q, grad, _), (log_q_ref, grad_ref, _) = native, eager
    assert torch.isfinite(log_q).all() and torch.isfinite(grad).all() and (log_q < math.log(0.5)).all()
    tol = 1e-7 if dtype == torch.float64 else 1e-4  # of Q, relative (two Newton stops, one rule)
    torch.testing.assert_close(log_q, log_q_ref, rtol=0, atol=tol)
    scale_g = grad_ref.abs().amax(1, keepdim=True)
    torch.testing.assert_close(grad / scale_g, grad_ref / scale_g, rtol=0, atol=10 * tol)
    assert (grad.gather(1, target[:, None]) == 0).all()


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("c", [4, 40])
def test_one_kernel_call_for_every_way_equals_the_pytorch_path(kernel, dtype, c):
    # A batch mixing the three ways of log_win_and_lose, from margins and from logits with a scale:
    # the kernel's one call against the PyTorch path's call per way, value, gradient and rule.
    m_p, t_p = margins(8, c, 0.2, dtype, seed=1)
    m_q, t_q = confident_margins(8, c, dtype, seed=2, low=3.0, high=9.0)
    m_u, t_u = confident_margins(8, c, dtype, seed=3, low=40.0, high=90.0)
    shuffle = torch.randperm(24, generator=torch.Generator().manual_seed(c))
    m, target = torch.cat([m_p, m_q, m_u])[shuffle], torch.cat([t_p, t_q, t_u])[shuffle]
    ways = exact_integral._ways(m, target)
    assert all(int((ways == k).sum()) >= 6 for k in range(3))
    logits = -m / 2.0  # margins (s_y - s_j) * 2
    tol = 1e-7 if dtype == torch.float64 else 1e-4
    for scores, scale in ((m, 0.0), (logits, 2.0)):
        native = _exact_native.log_p_and_grad(scores, target, 16, True, scale, ways)
        previous, _exact_native.enabled = _exact_native.enabled, False
        try:
            eager = exact_integral._log_value_and_grad_by_ways(m, target, 16, True, ways)
        finally:
            _exact_native.enabled = previous
        value, grad, rule = native
        value_ref, grad_ref, rule_ref = eager
        if scale:
            grad_ref = quadrature._to_logits(grad_ref, target, scale)
        torch.testing.assert_close(value, value_ref, rtol=tol, atol=tol)
        scale_g = grad_ref.abs().amax(1, keepdim=True)
        torch.testing.assert_close(grad / scale_g, grad_ref / scale_g, rtol=0, atol=10 * tol)
        union = ways == 2
        for part, part_ref in zip(rule, rule_ref):
            assert (part[union] == 0).all() and (part_ref[union] == 0).all()  # the union bound has no rule
        # the union rows are the closed form, to rounding
        reference = torch.logsumexp(torch.special.log_ndtr(m.double() / -math.sqrt(2)).scatter(1, target[:, None], -math.inf), 1)
        torch.testing.assert_close(value[union].double(), reference[union], rtol=1e-6 if dtype == torch.float32 else 1e-13, atol=0)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_row_gives_the_same_bits_alone_or_beside_others(kernel, dtype):
    # Below BY_NODE_BELOW rivals the kernel computes the rule for LANES rows side by side, one per
    # vector lane, and gives a lane that leaves the lanes' ground (the far tail here) to the one-row
    # code: a row's value, gradient and rule must not depend on the rows beside it.
    c = 7
    parts = [margins(9, c, 0.5, dtype, seed=4), margins(6, c, 100.0, dtype, seed=5, ahead=5.0),
             confident_margins(6, c, dtype, seed=6, low=3.0, high=9.0), confident_margins(4, c, dtype, seed=7, low=40.0, high=90.0)]
    shuffle = torch.randperm(25, generator=torch.Generator().manual_seed(8))
    m, target = torch.cat([p[0] for p in parts])[shuffle], torch.cat([p[1] for p in parts])[shuffle]
    ways = exact_integral._ways(m, target)
    assert all(int((ways == k).sum()) >= 2 for k in range(3))
    value, grad, rule = _exact_native.log_p_and_grad(m, target, 16, True, ways=ways)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    for i in range(len(m)):
        one = _exact_native.log_p_and_grad(m[i : i + 1], target[i : i + 1], 16, True, ways=ways[i : i + 1])
        assert torch.equal(one[0], value[i : i + 1]) and torch.equal(one[1], grad[i : i + 1])
        assert all(torch.equal(a, b[i : i + 1]) for a, b in zip(one[2], rule))


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("c", [3, 10, 31])
def test_a_row_gives_the_same_bits_in_every_lane(kernel, dtype, c):
    # Eight copies of a row fill the eight lanes: any difference is the lane's own arithmetic (in
    # float64 the lanes' doubles were two vectors, once contracted to FMAs differently).
    for scale in (0.3, 1.0, 3.0, 10.0):
        m, target = margins(24, c, scale, dtype, seed=c + int(10 * scale))
        ways = exact_integral._ways(m, target)
        for i in range(len(m)):
            copies = _exact_native.log_p_and_grad(m[i : i + 1].repeat(8, 1), target[i : i + 1].repeat(8), 16, True,
                                                  ways=ways[i : i + 1].repeat(8))  # fmt: skip
            assert all(torch.equal(out, out[:1].expand_as(out)) for out in (copies[0], copies[1], *copies[2])), (scale, i)


@needs_kernel
def test_rows_in_lanes_equal_the_one_row_code(kernel, tmp_path, monkeypatch):
    # The kernel built without the lanes (-DLANES_BELOW=0) computes every row with the one-row code.
    # Rows in lanes give its results to round-off (the sums over the rivals run in another order);
    # rows the lanes hand back to it give its bits: confident rows of three classes by the
    # complement's rule, whose Newton start in float32 lies past the switch point.
    monkeypatch.setattr(_exact_native, "_STATE", {})
    monkeypatch.setattr(_exact_native, "FLAGS", (*_exact_native.FLAGS, "-DLANES_BELOW=0"))
    monkeypatch.setenv(_exact_native.KERNEL_DIR_ENV, str(tmp_path))
    one_row = _exact_native.kernel()
    monkeypatch.undo()
    assert one_row is not None and one_row is not _exact_native.kernel()
    gen = torch.Generator().manual_seed(9)
    handed_back = 13.0 + torch.rand(16, 3, generator=gen)
    target = torch.randint(0, 3, (16,), generator=gen)
    cases = [(handed_back.scatter_(1, target[:, None], 0.0), target, torch.ones_like(target))]  # way 1: Q
    cases += [(*margins(40, c, 1.0, dtype, seed=c), None) for c in (3, 10) for dtype in (torch.float32, torch.float64)]
    for m, t, ways in cases:
        lanes = _exact_native.log_p_and_grad(m, t, 16, True, ways=ways)
        monkeypatch.setattr(_exact_native, "kernel", lambda: one_row)
        alone = _exact_native.log_p_and_grad(m, t, 16, True, ways=ways)
        monkeypatch.undo()
        for a, b in zip((lanes[0], lanes[1], *lanes[2]), (alone[0], alone[1], *alone[2])):
            if ways is not None:
                assert torch.equal(a, b)
            elif m.dtype == torch.float32:
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
            else:
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


@needs_kernel
@pytest.mark.parametrize("c,sigma", [(10, 1.0), (10, 0.1), (100, 0.3), (100, 0.01)])
def test_confident_rows_through_the_kernel_equal_the_pytorch_path(kernel, monkeypatch, c, sigma):
    # The loss on a trained model's logits (most rows confident, many far in the tail at a small
    # sigma) through the kernel and through PyTorch ops: value, 1 - P and gradient.
    gen = torch.Generator().manual_seed(c)
    logits = torch.randn(32, c, dtype=torch.float64, generator=gen)
    target = torch.randint(0, c, (32,), generator=gen)
    logits[torch.arange(32), target] += 3.0
    results = []
    for enabled in (True, False):
        monkeypatch.setattr(_exact_native, "enabled", enabled)
        x = logits.clone().requires_grad_(True)
        loss = exact(x, target, sigma=sigma, reduction="none")
        loss.sum().backward()
        results.append((loss.detach(), x.grad))
    (loss, grad), (loss_ref, grad_ref) = results
    torch.testing.assert_close(loss, loss_ref, rtol=1e-6, atol=0)  # 1 - P, relatively
    # (the two paths stop Newton's method at slightly different modes: the rule's own error, 1e-7)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-6 * float(grad_ref.abs().max()))


# --- the numerical constants: one source, Python's -------------------------------------------------


def test_the_kernel_reads_the_constants_in_the_order_python_writes_them():
    source = _exact_native.SOURCE.read_text()
    body = re.search(r"enum \{\s*(K_[^}]*)\};", source).group(1)
    names = re.findall(r"\bK_([A-Z0-9_]+)\b(?!\s*\+)", re.sub(r"/\*.*?\*/", "", body, flags=re.S))
    assert names == [name for name, _ in _exact_native.CONSTANT_NAMES]
    sizes = dict(re.findall(r"K_([A-Z0-9_]+) = K_[A-Z0-9_]+ \+ (\d+)", body))
    # an entry placed after another of n values: the Python layout gives that one n values too
    order = [name for name, _ in _exact_native.CONSTANT_NAMES]
    for name, size in sizes.items():
        assert dict(_exact_native.CONSTANT_NAMES)[order[order.index(name) - 1]] == int(size)
    for dtype in (torch.float32, torch.float64):
        flat = _exact_native.constants(dtype)
        at = {name: sum(n or 0 for _, n in _exact_native.CONSTANT_NAMES[:i]) for i, (name, _) in enumerate(_exact_native.CONSTANT_NAMES)}
        assert flat[at["TAIL_TERMS"]] == exact_special._TAIL_TERMS[dtype]
        assert tuple(flat[at["TAIL_COEFFS"] :].tolist()) == exact_special._TAIL_COEFFS
        assert flat[at["SATURATED"]] == exact_special._SATURATED[dtype] and flat[at["SECANT_COMPLEMENT"]] == exact_rules._SECANT_COMPLEMENT
    for pattern in (r"TAIL_COEFFS\s*\[\s*\d+\s*\]\s*=", r"#define\s+(SATURATED|TAIL_START|SECANT|SQRT2)\b"):
        assert not re.search(pattern, source), f"a constant defined in the C source: {pattern}"


def tail_points(dtype: torch.dtype) -> torch.Tensor:
    """x from the body (u = 0) across the switch point far into the tail (u = -sqrt2 x down to -1.4e6)."""
    start = exact_special._TAIL_START[dtype]
    return torch.cat([torch.linspace(0.0, start, 97, dtype=torch.float64), torch.logspace(math.log10(start), 6, 200, dtype=torch.float64)])


@pytest.mark.parametrize("path", ["kernel", "torch", "torch twice differentiable"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_log_ndtr_and_mills_in_the_far_tail_against_scipy(path, dtype):
    # log Phi(u) against scipy's log_ndtr and lam(u) = sqrt(2 / pi) / erfcx(x) against scipy's erfcx,
    # 1e-12 relative in float64: the series' coefficients (log(sqrt(pi) x erfcx(x)) ~ sum c_n x^-2n)
    # are right to the last term used (with the third one wrong, lam was off by 3e-9 at x = 26).
    special = pytest.importorskip("scipy.special")
    if path == "kernel":
        if shutil.which("cc") is None and shutil.which("gcc") is None and not os.environ.get("LOSSBENCH_REQUIRE_KERNEL"):
            pytest.skip("no C compiler on this machine")
        if _exact_native.kernel() is None:
            pytest.fail(f"the kernel did not build here: {_exact_native.unavailable_reason()}")
    x = tail_points(dtype)
    if path == "kernel":
        log_phi, lam = _exact_native.log_ndtr_and_mills(x.to(dtype))
    elif path == "torch":
        log_phi, lam = exact_special.log_ndtr_and_mills(x.to(dtype))
    else:
        log_phi, lam = exact_special._log_ndtr_and_mills_differentiable(x.to(dtype))
    xs = x.numpy()
    ref_log_phi = torch.from_numpy(special.log_ndtr(-math.sqrt(2.0) * xs))
    ref_lam = torch.from_numpy(math.sqrt(2.0 / math.pi) / special.erfcx(xs))
    rtol = 1e-12 if dtype == torch.float64 else 2e-6
    torch.testing.assert_close(log_phi.double(), ref_log_phi, rtol=rtol, atol=0)
    torch.testing.assert_close(lam.double(), ref_lam, rtol=rtol, atol=0)


@pytest.mark.parametrize("use_kernel", [True, False])
def test_ignored_rows_and_targets_out_of_range_without_validation(monkeypatch, use_kernel):
    # The kernel skips ignored rows itself and counts the other targets outside [0, C) before any
    # work: both paths give the same losses and refuse a bad target even with validate=False.
    monkeypatch.setattr(_exact_native, "enabled", use_kernel)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(6, 5, generator=gen).requires_grad_(True)
    target = torch.tensor([0, 1, -100, 4, 2, 3])
    loss = exact(x, target, reduction="none", validate=False)
    loss.sum().backward()
    assert float(loss.detach()[2]) == 0.0 and float(x.grad[2].abs().sum()) == 0.0
    kept = torch.tensor([0, 1, 3, 4, 5])
    alone = exact(x.detach()[kept], target[kept], reduction="none")
    torch.testing.assert_close(loss.detach()[kept], alone, rtol=0, atol=0)
    with pytest.raises(ValueError, match="outside"):
        exact(x, torch.tensor([0, 1, 7, 4, 2, 3]), validate=False)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("log_loss", [False, True])
def test_a_sigma_and_margin_per_row_take_one_kernel_call_and_give_each_row_its_own_bits(kernel, dtype, log_loss, monkeypatch):
    # Packed runs with their own sigma and margin (inf: no clip) share one call; each row gets what a call
    # with its own numbers (Python floats) gives it, far rows (a rival 1e6 ahead: with log_loss the
    # caller's, per-row scale and clip taken along) and float32 logits included.
    c, b = 10, 24
    gen = torch.Generator().manual_seed(11)
    logits = torch.randn(b, c, generator=gen, dtype=dtype) * 3
    target = torch.randint(1, c, (b,), generator=gen)
    logits[:2, 0] = logits[:2].max() + 1e6
    sigma = torch.tensor([0.0731, 0.200925, 1.3, 4.1], dtype=torch.float64).repeat(b // 4)  # not float32 numbers
    margin = torch.tensor([math.inf, 0.5, 2.0, 0.0, 1.0, math.inf], dtype=torch.float64).repeat(b // 6)
    calls = []
    rows = _exact_native.rows
    monkeypatch.setattr(_exact_native, "rows", lambda *a, **k: calls.append(len(a[0])) or rows(*a, **k))
    x = logits.clone().requires_grad_(True)
    together = exact(x, target, sigma=sigma, margin=margin, log_loss=log_loss, reduction="none")
    assert graph_nodes(together) == {"ExactRowsLossBackward", "AccumulateGrad"}
    assert calls[0] == b and all(n <= 2 for n in calls[1:])  # one call for the batch (float32 redoes its far rows in float64)
    together.sum().backward()
    for i in range(b):
        z = logits[i : i + 1].clone().requires_grad_(True)
        clip = None if math.isinf(margin[i]) else float(margin[i])
        alone = exact(z, target[i : i + 1], sigma=float(sigma[i]), margin=clip, log_loss=log_loss, reduction="none")
        alone.sum().backward()
        assert torch.equal(alone, together[i : i + 1]) and torch.equal(z.grad, x.grad[i : i + 1]), i


@pytest.mark.parametrize("c", [2, 3])
def test_a_margin_per_row_keeps_a_tie_s_whole_gradient(c):
    # s_y - s_j equal to the margin: the clip's gradient is the unclipped one there, per row as for a
    # number (two classes and a gradient penalty's double backward take the margins' tensor)
    logits = torch.tensor([[1.0, 0.5, 0.0][:c], [0.2, 1.0, -0.4][:c]], dtype=torch.float64)
    target = torch.tensor([0, 1])
    grads = []
    for margin in (0.5, torch.full((2,), 0.5, dtype=torch.float64)):
        x = logits.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(exact(x, target, sigma=0.7, margin=margin), x, create_graph=True)
        (gg,) = torch.autograd.grad(g.square().sum(), x)
        grads.append((g.detach(), gg))
    assert all(torch.equal(a, b) for a, b in zip(*grads))


@needs_kernel
@pytest.mark.parametrize("margin", [0.1, torch.tensor([0.1, 0.1], dtype=torch.float64)], ids=["number", "per row"])
def test_a_float32_tie_at_a_margin_float32_rounds_keeps_its_gradient_in_the_kernel_too(kernel, margin, monkeypatch):
    # 0.1 - 0.0 in float32 is float32(0.1), above the double 0.1: both paths compare in the logits' dtype
    x = torch.tensor([[0.1, 0.0, -0.3], [0.1, 0.0, -0.3]])
    target = torch.zeros(2, dtype=torch.long)
    grads = []
    for enabled in (True, False):
        monkeypatch.setattr(_exact_native, "enabled", enabled)
        z = x.clone().requires_grad_(True)
        exact(z, target, sigma=0.5, margin=margin).backward()
        grads.append(z.grad)
    assert float(grads[0][0, 1]) > 0.1
    torch.testing.assert_close(grads[0], grads[1])


def test_per_row_sigma_and_margin_are_checked_before_the_kernel_reads_them():
    x, y = torch.randn(3, 4), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="sigma must be on the logits' device"):
        exact(x, y, sigma=torch.ones(3, device="meta"))
    with pytest.raises(ValueError, match="margin must be .* on the logits' device cpu"):
        exact(x, y, margin=torch.ones(3, device="meta"))
    with pytest.raises(ValueError, match="a per-row scale must be a CPU tensor of shape \\(3,\\)"):
        _exact_native.rows(x, y, 16, False, scale=torch.ones(2))
    torch.testing.assert_close(exact(x, y, margin=torch.tensor(0.5)), exact(x, y, margin=0.5))  # a 0-d margin: its number
    torch.testing.assert_close(exact(x, y, margin=torch.full((3, 1), 0.5)), exact(x, y, margin=0.5))


@needs_kernel
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_a_sigma_and_margin_per_row_with_standardised_groups_as_the_pytorch_path(kernel, reduction, monkeypatch):
    gen = torch.Generator().manual_seed(12)
    logits = torch.randn(32, 6, generator=gen, dtype=torch.float64) * 2
    target = torch.randint(0, 6, (32,), generator=gen)
    sigma = torch.tensor([0.1, 0.7, 2.0, 5.0], dtype=torch.float64).repeat_interleave(8)
    margin = torch.tensor([1.0, math.inf, 0.5, 0.0], dtype=torch.float64).repeat_interleave(8)
    out = {}
    for path in ("kernel", "pytorch"):
        monkeypatch.setattr(_exact_native, "enabled", path == "kernel")
        for groups in (1, 4):
            x = logits.clone().requires_grad_(True)
            value = exact(x, target, sigma=sigma, margin=margin, standardize=True, groups=groups, reduction=reduction)
            value.sum().backward()
            out[path, groups] = value, x.grad
    for groups in (1, 4):
        value, grad = out["kernel", groups]
        torch.testing.assert_close(value, out["pytorch", groups][0], rtol=1e-10, atol=1e-13)
        scale_g = float(grad.abs().max())  # (each path sums the rule's terms in its own order)
        torch.testing.assert_close(grad / scale_g, out["pytorch", groups][1] / scale_g, rtol=0, atol=1e-9)
    assert not torch.allclose(out["kernel", 1][0], out["kernel", 4][0])  # the premise: the groups' own statistics


INF = math.inf


@needs_kernel
@pytest.mark.parametrize("row", [[INF, 0.0, 0.0], [-INF, 0.0, 0.0], [0.0, INF, 0.0], [0.0, math.nan, 0.0]],
                         ids=["true +inf", "true -inf", "rival +inf", "rival nan"])  # fmt: skip
@pytest.mark.parametrize("options", [{}, {"log_loss": True}, {"margin": 1.0}, {"standardize": True}], ids=repr)
def test_non_finite_logits_give_the_kernels_limits_on_both_paths(row, options, monkeypatch):
    # (validate=False lets them through: +inf true gave the PyTorch path a nan column, s_y - s_y; -inf margins a nan
    # water level; the kernel read a nan standardisation as margins, and a nan row's -log P gradient as 0)
    logits = torch.tensor([row, [0.3, -0.2, 0.1], [1.0, 2.0, -1.0]], dtype=torch.float64)
    target = torch.tensor([0, 1, 2])
    got = []
    for enabled in (True, False):
        monkeypatch.setattr(_exact_native, "enabled", enabled)
        x = logits.clone().requires_grad_(True)
        loss = exact(x, target, reduction="none" if not options.get("standardize") else "mean", validate=False, **options)
        loss.sum().backward()
        got.append((loss.detach(), x.grad))
    (value, grad), (torch_value, torch_grad) = got
    assert torch.allclose(value, torch_value, equal_nan=True, atol=1e-9), (value, torch_value)
    assert torch.allclose(grad, torch_grad, equal_nan=True, atol=1e-9), (grad, torch_grad)
    if math.isnan(row[1]) or options.get("standardize"):  # (a nan, or a spread with an infinite logit: nan)
        assert torch.isnan(value).any() and torch.isnan(grad[0]).all()
