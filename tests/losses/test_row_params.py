"""A loss's row parameters: one value per sample gives each sample what that value gives it alone."""

from __future__ import annotations

import pytest
import torch

from lossbench.losses import LOSSES

ROW_LOSSES = [(name, param) for name, info in LOSSES.items() for param in info.row_params]
VALUES = {"gamma": (0.0, 0.5, 2.0, 5.0), "margin": (0.0, 0.3, 1.0, 4.0), "epsilon": (-1.0, 0.0, 1.5, 6.0),
          "sigma": (0.05, 0.5, 1.0, 4.0), "p": (1.0, 2.0, 2.0, 1.0)}


def test_row_parameters_are_declared_where_expected():
    assert {p for _, p in ROW_LOSSES} <= set(VALUES)
    assert ROW_LOSSES, "no loss declares row parameters"


@pytest.mark.parametrize(("name", "param"), ROW_LOSSES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_a_value_per_row_matches_each_value_alone(name, param, reduction):
    fn = LOSSES.get(name).function
    gen = torch.Generator().manual_seed(0)
    rows, classes = 12, 4
    x = (torch.randn(rows, classes, generator=gen, dtype=torch.float64) * 3).requires_grad_()
    y = torch.randint(0, classes, (rows,), generator=gen)
    values = torch.tensor(VALUES[param], dtype=torch.float64).repeat_interleave(rows // len(VALUES[param]))
    got = fn(x, y, **{param: values}, reduction=reduction)
    (grad,) = torch.autograd.grad(got.sum(), x)
    alone = torch.stack([fn(x[i : i + 1], y[i : i + 1], **{param: float(values[i])}, reduction="none")[0] for i in range(rows)])
    (ref_grad,) = torch.autograd.grad(alone.sum() if reduction != "mean" else alone.mean(), x)
    ref = {"none": alone, "mean": alone.mean(), "sum": alone.sum()}[reduction]
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("name", "param"), ROW_LOSSES)
def test_bad_row_values_are_refused_by_name(name, param):
    fn = LOSSES.get(name).function
    x, y = torch.randn(3, 4), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=f"{param} must be a .*float tensor of shape \\(3,\\)"):
        fn(x, y, **{param: torch.ones(2)})
    bad = torch.tensor([1.0, -5.0, float("nan")])
    with pytest.raises(ValueError, match=param):
        fn(x, y, **{param: bad})


@pytest.mark.parametrize(("name", "param"), ROW_LOSSES)
def test_a_0d_tensor_is_the_number_it_holds(name, param):
    fn = LOSSES.get(name).function
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0])
    value = VALUES[param][2]
    torch.testing.assert_close(fn(x, y, **{param: torch.tensor(value)}), fn(x, y, **{param: value}))
    with pytest.raises(ValueError, match=f"{param} must"):  # checked as that number
        fn(x, y, **{param: torch.tensor(-5.0)})


def test_a_0d_tensor_with_gradient_keeps_it():
    fn = LOSSES.get("focal").function
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0])
    gamma = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    rows = torch.full((5,), 2.0, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(fn(x, y, gamma=gamma), gamma)
    (row_grads,) = torch.autograd.grad(fn(x, y, gamma=rows), rows)
    torch.testing.assert_close(grad, row_grads.sum())
    assert grad != 0


def test_a_module_reads_its_option_or_the_default_and_takes_call_time_overrides():
    module = LOSSES.get("hinge").module(p=2)
    assert module.option("margin") == 1.0 and module.option("p") == 2
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    margins = torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(module(x, y, reduction="none", margin=margins),
                               LOSSES.get("hinge").function(x, y, p=2, margin=margins, reduction="none"))  # fmt: skip
    assert module.option("margin") == 1.0  # an override holds for its call only


def test_row_params_must_be_hyperparameters():
    from lossbench.losses import register_loss

    info = LOSSES.get("focal")
    with pytest.raises(ValueError, match="row_params \\['alpha'\\] are not among its hyperparameters"):
        register_loss("focal-copy", info.function, info.module, signature="softmax", reference="-",
                      hyperparams=info.hyperparams, row_params=("alpha",))  # fmt: skip
    assert "focal-copy" not in LOSSES.names()


def test_batch_groups_must_be_an_argument_of_the_function_and_the_module():
    from lossbench.losses import register_loss

    info = LOSSES.get("exact")
    with pytest.raises(ValueError, match="must both take 'blocks'"):
        register_loss("exact-copy", info.function, info.module, signature="softmax", reference="-",
                      batch_level_when="standardize", batch_groups="blocks")  # fmt: skip
    assert "exact-copy" not in LOSSES.names()


def test_row_none_names_row_params_only():
    from lossbench.losses import register_loss

    info = LOSSES.get("focal")
    with pytest.raises(ValueError, match="row_none \\['alpha'\\] are not among its row_params"):
        register_loss("focal-copy", info.function, info.module, signature="softmax", reference="-",
                      hyperparams=info.hyperparams, row_params=("gamma",), row_none={"alpha": 0.0})  # fmt: skip
    with pytest.raises(ValueError, match="row_none\\['gamma'\\] must be a number"):
        register_loss("focal-copy", info.function, info.module, signature="softmax", reference="-",
                      hyperparams=info.hyperparams, row_params=("gamma",), row_none={"gamma": "none"})  # fmt: skip
    assert "focal-copy" not in LOSSES.names()
    exact = LOSSES.get("exact")
    with pytest.raises(TypeError):  # read-only: a loss's meaning of None is not changed in place
        exact.row_none["margin"] = 0.0
    assert hash(exact) == hash(LOSSES.get("exact"))
    # EXACT's margin None is no clip: inf per row, the same loss
    x, y = torch.randn(4, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    inf = torch.full((4,), LOSSES.get("exact").row_none["margin"], dtype=torch.float64)
    assert torch.equal(LOSSES.get("exact").function(x, y, margin=inf), LOSSES.get("exact").function(x, y))


def test_a_loss_module_must_take_what_the_bench_passes_it():
    """The bench builds every loss module with validate= and calls it with reduction=: a plugin's
    module without them is refused when registered, not at its first trial."""
    from torch import nn

    from lossbench.losses import loss_module, register_loss

    def squared(logits, target):
        return (logits.softmax(-1) - nn.functional.one_hot(target, logits.shape[-1])).square().sum(-1).mean()

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()

        def forward(self, logits, target):
            return squared(logits, target)

    with pytest.raises(ValueError, match="Plain must take validate= .*loss_module"):
        register_loss("plain-copy", squared, Plain, signature="softmax", reference="-")
    with pytest.raises(ValueError, match="SquaredLoss.forward must take reduction="):
        register_loss("plain-copy", squared, type("SquaredLoss", (Plain,), {"__init__": lambda self, validate=True: nn.Module.__init__(self)}),
                      signature="softmax", reference="-")  # fmt: skip
    assert "plain-copy" not in LOSSES.names()
    focal = LOSSES.get("focal")  # a function with reduction= and validate=: loss_module's module passes
    module = loss_module(focal.function, "FocalCopy")
    assert register_loss("focal-module-copy", focal.function, module, signature="softmax", reference="-").module is module
    LOSSES.remove("focal-module-copy")
