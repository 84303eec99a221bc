"""With ``validate=False`` the losses run under ``torch.func`` and trace whole under ``torch.compile``;
EXACT runs outside the compiled graph and refuses ``torch.func`` by name."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounter
from torch.func import grad, vmap

from lossbench.losses import LOSSES, ExactLoss, exact_sigma_schedule
from lossbench.registry import FloatRange

from .cases import make_case

ALL = [LOSSES.get(n) for n in LOSSES.names()]
FUSED = {"exact"}  # a hand-written autograd.Function around a C kernel


@pytest.mark.parametrize("info", [i for i in ALL if i.name not in FUSED], ids=lambda i: i.name)
def test_per_sample_gradients_by_torch_func_match_a_loop(info):
    """vmap(grad(...)) over the rows, as functorch's per-sample-gradient recipe: the CPU shortcuts of
    validate=False read no value on the host there (they stopped every loss but ZLPR's, vmap's error)."""
    logits, target, kwargs = make_case(info, dtype=torch.float32)

    def one(row, t):
        return info.function(row[None], t[None], validate=False, **kwargs)

    per_row = vmap(grad(one))(logits, target)
    for k in range(len(logits)):
        torch.testing.assert_close(per_row[k], grad(one)(logits[k], target[k]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("info", [i for i in ALL if i.name not in FUSED], ids=lambda i: i.name)
def test_a_model_and_its_loss_trace_as_one_graph(info):
    logits, target, kwargs = make_case(info, dtype=torch.float32)
    model = torch.nn.Linear(logits.shape[-1], logits.shape[-1])
    torch._dynamo.reset()
    explained = torch._dynamo.explain(lambda x, t: info.function(model(x), t, validate=False, **kwargs))(logits, target)
    assert explained.graph_break_count == 0, [str(r.reason)[:200] for r in explained.break_reasons]


SCHEDULED = [(i, h) for i in ALL if i.name not in FUSED for h in i.hyperparams
             if isinstance(h.default, float) and isinstance(h.space, FloatRange)]  # fmt: skip


@pytest.mark.parametrize(("info", "hp"), SCHEDULED, ids=lambda x: x.name)
def test_a_float_hyperparameter_changed_between_calls_keeps_one_graph(info, hp):
    """A schedule (``focal.gamma`` set each epoch): the second value recompiles once, as a symbolic float,
    which the hyperparameter's checks compare (``math.isfinite`` of it broke the graph: an error under
    ``fullgraph=True``); later values reuse that graph."""
    logits, target, kwargs = make_case(info, dtype=torch.float32)
    torch._dynamo.reset()
    counter = CompileCounter()
    step = torch.compile(lambda x, t, v: info.function(x, t, validate=False, **kwargs, **{hp.name: v}),
                         backend=counter, fullgraph=True)  # fmt: skip
    top = min(hp.space.high, 2 * hp.default) if hp.default > 0 else hp.space.high
    values = (hp.default, *(hp.default + k * (top - hp.default) / 4 for k in (1, 2, 3)))
    for v in values:
        torch.testing.assert_close(step(logits, target, v), info.function(logits, target, **kwargs, **{hp.name: v}))
    # (PyTorch's F.cross_entropy takes label_smoothing as a constant of its graph: one graph per value)
    assert counter.frame_count <= (len(values) if hp.name == "label_smoothing" else 2)


def test_exact_refuses_torch_func_by_name():
    logits, target = torch.randn(4, 5), torch.randint(0, 5, (4,))
    loss = ExactLoss(validate=False)
    with pytest.raises(ValueError, match="exact: torch.func transforms .* are not supported"):
        vmap(grad(lambda x, t: loss(x[None], t[None])))(logits, target)


def test_a_compiled_step_with_exact_recompiles_nothing_as_sigma_follows_its_schedule():
    """The loss runs outside the graph: a float sigma set each step was a failing guard, one recompile per value
    until dynamo's limit (then eager, with a warning)."""
    torch.manual_seed(0)
    model, loss = torch.nn.Linear(7, 5), ExactLoss(validate=False)
    x, y = torch.randn(6, 7), torch.randint(0, 5, (6,))
    eager = []
    for step in range(6):
        loss.sigma = exact_sigma_schedule(step / 4, 16)
        eager.append(loss(model(x), y))
    torch._dynamo.reset()
    counter = CompileCounter()
    step_fn = torch.compile(lambda a, b: loss(model(a), b), backend=counter)
    for step in range(6):
        loss.sigma = exact_sigma_schedule(step / 4, 16)
        value = step_fn(x, y)
        value.backward()
        assert float(value.detach()) == pytest.approx(float(eager[step].detach()), rel=1e-6)
    assert counter.frame_count == 1


def test_importing_the_losses_loads_no_compiler_and_a_later_compile_still_leaves_exact_outside_the_graph():
    """torch.compiler.disable imports torch._dynamo (a second of every process's start); the losses mark EXACT
    with torch's lazy form of it, which imports it at EXACT's first call, and a compile still runs EXACT eagerly
    outside its graph."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from lossbench.losses import ExactLoss, cross_entropy, exact\n"
        "x, y = torch.randn(6, 5, requires_grad=True), torch.randint(0, 5, (6,))\n"
        "cross_entropy(x, y).backward()\n"
        "assert 'torch._dynamo' not in sys.modules, 'loaded'\n"
        "import torch._dynamo\n"
        "e = torch._dynamo.explain(lambda a, b: exact(a * 2, b) + 1)(x, y)\n"
        "assert (e.graph_count, e.graph_break_count) == (2, 1), e\n"
        "assert 'skipped' in str(e.break_reasons[0].reason), e.break_reasons\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
