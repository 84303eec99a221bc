"""Transforms keep what outlives a step in ``state_dict``: a restored one continues exactly as the original."""

from __future__ import annotations

import copy

import pytest
import torch

from lossbench.losses import CrossEntropyLoss
from lossbench.train import MGS, TRANSFORMS, GradientNormalizer, Transform, build_step, make_transform

# Arguments that make a transform deterministic or reproducible here (MGS draws with its own generator).
SPECS = {name: (name, {"seed": 3}) if name == "mgs" else name for name in TRANSFORMS.names()}


def batches(n: int = 8):
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(16, 5, generator=gen), torch.randint(0, 3, (16,), generator=gen)) for _ in range(n)]


def new_run(spec, seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, optimizer, make_transform(copy.deepcopy(spec))


def resumed_run(spec, saved, load_before_bind: bool = True, with_state: bool = True):
    """A fresh model, optimizer and transform given the saved states, and its step."""
    saved = copy.deepcopy(saved)  # the optimizer adopts the momentum buffers it is given and updates them
    model, optimizer, transform = new_run(spec, seed=1)  # other weights: the saved ones must win
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    if with_state and load_before_bind:
        transform.load_state_dict(saved["step"]["transforms"][0])
    step = build_step(model, CrossEntropyLoss(), optimizer, transforms=[transform])
    if with_state and not load_before_bind:
        step.load_state_dict(saved["step"])  # the transform's state and the step's count (ascent/descent reads it)
    else:
        step.ctx.step = saved["step"]["step"]
    return model, step


def run_steps(model, step, data):
    stats = [step.run(x, y) for x, y in data]
    return [p.detach().clone() for p in model.parameters()], stats


def original_and_saved(spec, data, at: int):
    model, optimizer, transform = new_run(spec)
    step = build_step(model, CrossEntropyLoss(), optimizer, transforms=[transform])
    run_steps(model, step, data[:at])
    saved = copy.deepcopy(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step.state_dict()}
    )
    return run_steps(model, step, data[at:]), saved


def same(a, b) -> bool:
    params_a, stats_a = a
    params_b, stats_b = b
    return all(torch.equal(p, q) for p, q in zip(params_a, params_b)) and all(
        sa.keys() == sb.keys() and all(torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])) for k in sa)
        for sa, sb in zip(stats_a, stats_b)
    )


@pytest.mark.parametrize("name", TRANSFORMS.names())
def test_a_restored_transform_continues_as_the_original(name):
    data = batches()
    expected, saved = original_and_saved(SPECS[name], data, at=3)
    model, step = resumed_run(SPECS[name], saved)
    assert same(run_steps(model, step, data[3:]), expected)


@pytest.mark.parametrize("name", ["grad_normalizer", "mgs"])
def test_the_state_is_what_makes_the_difference(name):
    """Without its state the stateful transforms continue differently (so the test above can fail),
    and the state may be loaded after the step is built as well as before."""
    data = batches()
    expected, saved = original_and_saved(SPECS[name], data, at=3)
    assert not same(run_steps(*resumed_run(SPECS[name], saved, with_state=False), data[3:]), expected)
    assert same(run_steps(*resumed_run(SPECS[name], saved, load_before_bind=False), data[3:]), expected)


def test_stateless_transforms_have_an_empty_state_and_refuse_a_foreign_one():
    stateless = make_transform("clip_norm")
    assert stateless.state_dict() == {}
    with pytest.raises(ValueError, match="expects the keys"):
        stateless.load_state_dict({"moving_norm": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="expects the keys"):
        GradientNormalizer().load_state_dict({})
    assert type(stateless).state_dict is Transform.state_dict


def test_gradient_normalizer_state_is_its_moving_norm_and_a_copy():
    norm = GradientNormalizer()
    assert norm.state_dict() == {"moving_norm": None}
    norm.load_state_dict({"moving_norm": torch.tensor(2.5)})
    state = norm.state_dict()
    state["moving_norm"].fill_(0.0)  # the caller's copy: the transform's own value is unchanged
    assert float(norm.state_dict()["moving_norm"]) == 2.5


def test_mgs_refuses_a_seeded_state_without_a_seed():
    data = batches()
    _, saved = original_and_saved(SPECS["mgs"], data, at=2)
    assert saved["step"]["transforms"][0]["generator"] is not None
    with pytest.raises(ValueError, match="seed"):
        MGS().load_state_dict(saved["step"]["transforms"][0])


def test_a_steps_state_holds_its_count_so_ascent_descent_resumes_in_phase():
    """Su's ascent/descent alternates on the step's count: saved at an odd step, a step restored by
    TrainStep.load_state_dict continues as the original; one that starts counting afresh does not."""
    data = batches()
    expected, saved = original_and_saved(SPECS["ascent_descent"], data, at=3)
    model, step = resumed_run(SPECS["ascent_descent"], saved, load_before_bind=False)
    assert step.ctx.step == 3 and same(run_steps(model, step, data[3:]), expected)
    model, step = resumed_run(SPECS["ascent_descent"], saved)
    step.ctx.step = 0  # (a fresh step's count)
    assert not same(run_steps(model, step, data[3:]), expected)
    with pytest.raises(ValueError, match=r"keys 'step' and 'transforms'\), got keys \['step'\]"):
        step.load_state_dict({"step": 3})


def test_a_step_refuses_the_state_of_another_chain_and_says_how_they_differ():
    model = torch.nn.Linear(5, 3)
    two = build_step(model, CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1), ["flooding", "clip_norm"])
    one = build_step(model, CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1), ["flooding"])
    with pytest.raises(ValueError, match=r"^state is that of a step with 2 transform\(s\); this step has 1$"):
        one.load_state_dict(two.state_dict())
    with pytest.raises(ValueError, match=r"state must be a TrainStep.state_dict\(\) \(keys 'step' and 'transforms'\), got keys \['model'\]"):
        one.load_state_dict({"model": {}})
