"""MGS: its batch costs against torchmetrics, its update against a loop-by-loop reference, and
its effect on a real task (scikit-learn's digits) with accuracy itself as the optimised cost."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

from lossbench.losses import CrossEntropyLoss, cross_entropy
from lossbench.train import MGS, build_step, error_rate, eval_logits, fit, macro_f1_cost


def candidate_logits(n=5, batch=40, classes=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, batch, classes, generator=gen)
    logits[0, :, 5] = -10  # class 5 never predicted by candidate 0 ...
    target = torch.randint(0, 5, (batch,), generator=gen)  # ... and never a target
    return logits, target


def test_costs_match_torchmetrics_per_candidate():
    logits, target = candidate_logits()
    acc, f1 = error_rate(logits, target), macro_f1_cost(logits, target)
    for i in range(logits.shape[0]):
        kw = dict(num_classes=logits.shape[-1])
        ref_acc = multiclass_accuracy(logits[i], target, average="micro", **kw)
        ref_f1 = multiclass_f1_score(logits[i], target, average="macro", **kw)
        torch.testing.assert_close(acc[i], 1 - ref_acc)
        torch.testing.assert_close(f1[i], 1 - ref_f1)


def test_costs_skip_ignored_targets():
    logits, target = candidate_logits()
    ignored = target.clone()
    ignored[::4] = -100
    keep = ignored != -100
    torch.testing.assert_close(error_rate(logits, ignored), error_rate(logits[:, keep], target[keep]))
    torch.testing.assert_close(macro_f1_cost(logits, ignored), macro_f1_cost(logits[:, keep], target[keep]))


def test_costs_for_one_logit_per_decision_match_torchmetrics():
    from torchmetrics.functional.classification import multilabel_f1_score, multilabel_hamming_distance

    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 30, 5, generator=gen)  # 4 candidates, 30 samples, 5 labels
    target = (torch.rand(30, 5, generator=gen) < 0.4).float()
    target[:, 4], logits[..., 4] = 0, -5.0  # a label absent from targets and predictions: torchmetrics counts it as 0
    acc, f1 = error_rate(logits, target), macro_f1_cost(logits, target)
    for i in range(4):
        probs = torch.sigmoid(logits[i])
        torch.testing.assert_close(acc[i], multilabel_hamming_distance(probs, target.long(), num_labels=5, average="micro"))
        torch.testing.assert_close(f1[i], 1 - multilabel_f1_score(probs, target.long(), num_labels=5, average="macro"))
    # A binary model's single logit, (n, B, 1) or (n, B), against 0/1 class indices.
    s, y = logits[:, :, 0], target[:, 0].long()
    two = torch.stack([torch.zeros_like(s), s], -1)
    torch.testing.assert_close(error_rate(s[..., None], y), error_rate(two, y))
    torch.testing.assert_close(macro_f1_cost(s, y), macro_f1_cost(two, y))


def test_costs_for_several_tasks_and_mismatched_shapes():
    gen = torch.Generator().manual_seed(4)
    logits, target = torch.randn(3, 10, 4, 6, generator=gen), torch.randint(0, 6, (10, 4), generator=gen)
    torch.testing.assert_close(error_rate(logits, target), error_rate(logits.reshape(3, 40, 6), target.reshape(40)))
    with pytest.raises(ValueError, match="do not match target"):
        error_rate(torch.randn(3, 10, 6), torch.randint(0, 6, (12,)))


def reference_mgs_update(model, x, y, lr, n, noise, mix, alpha, seed, max_norm=1.0):
    """One MGS step as the released code takes it (wellecks/mgs, seq_level/gpt2/guided/utils.py:
    ``mle_grad``, ``perturb``, ``compute_weight``, ``parameter_weighted_average``, ``update``),
    candidate by candidate, then plain SGD at ``lr``."""
    params = list(model.parameters())
    grads = torch.autograd.grad(cross_entropy(model(x), y), params)
    total = torch.sqrt(sum((g * g).sum() for g in grads))
    g = [-gr * min(1.0, max_norm / (total.item() + 1e-6)) for gr in grads]  # clip_grad_norm_
    gen = torch.Generator().manual_seed(seed)  # the same draws, in the same order, as MGS
    noises = [noise * gt.abs().mean() * torch.randn((n, *gt.shape), generator=gen, dtype=gt.dtype) for gt in g]

    def cost(delta):
        probe = copy.deepcopy(model)
        with torch.no_grad():
            for p, d in zip(probe.parameters(), delta):
                p.add_(d)
        return 1 - (probe(x).argmax(1) == y).double().mean()

    c0, log_w, epsilons = cost([torch.zeros_like(p) for p in params]), [], []
    for i in range(n):
        eps = [z[i] + (gt if i % 2 == 0 else 0) for z, gt in zip(noises, g)]  # (the code's two components in turn)
        eps_eps = sum((e * e).sum() for e in eps)
        eps_nabla = sum((gt * e).sum() for gt, e in zip(g, eps))
        nabla_nabla = sum((gt * gt).sum() for gt in g)
        q = mix * torch.exp(-0.5 * eps_eps) + (1 - mix) * torch.exp(-0.5 * eps_eps + eps_nabla - 0.5 * nabla_nabla)
        log_w.append((c0 - cost(eps)) / alpha - torch.log(q))
        epsilons.append(eps)
    w = torch.softmax(torch.stack(log_w), 0)
    direction = [sum(w[i] * epsilons[i][k] for i in range(n)) for k in range(len(params))]
    norm = torch.sqrt(sum((d * d).sum() for d in direction))
    step = [-d * min(1.0, max_norm / (norm.item() + 1e-6)) for d in direction]  # the update's clip_grad_norm_
    return [p.detach() - lr * s for p, s in zip(params, step)], w, direction, g


@pytest.mark.parametrize("n, scale, alpha", [(12, 1.0, 0.02), (5, 20.0, 0.05)])
def test_mgs_update_matches_the_released_codes_step(n, scale, alpha):
    """At mix 0.5 the candidates alternate as the code's do, odd n included; inputs scaled by 20 give a gradient
    norm of about 10, which both clip to 1 before sampling."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).double()
    gen = torch.Generator().manual_seed(1)
    x, y = scale * torch.randn(30, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (30,), generator=gen)
    params = list(model.parameters())
    norm = torch.sqrt(sum((g * g).sum() for g in torch.autograd.grad(cross_entropy(model(x), y), params)))
    assert (norm > 5) == (scale > 1), "the scaled case should need the clip"
    kw = dict(n=n, noise=1.0, mix=0.5, alpha=alpha, seed=7)
    expected, w, direction, g = reference_mgs_update(copy.deepcopy(model), x, y, lr=0.5, **kw)
    assert 1.5 < 1 / (w**2).sum() < n - 0.5, "the case should mix several candidates"
    # the guided candidates carry weight: the update leans along the surrogate's step
    assert sum((d * gt).sum() for d, gt in zip(direction, g)) > 0.2 * sum((gt * gt).sum() for gt in g)
    mgs = MGS(n_samples=kw["n"], noise=kw["noise"], mix=kw["mix"], alpha=kw["alpha"], seed=kw["seed"])
    stats = build_step(model, CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.5), [mgs])(x, y)
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e)
    assert stats["mgs/ess"] == pytest.approx((1 / (w**2).sum()).item(), rel=1e-5)


def test_the_guided_candidates_are_spread_as_the_released_code_alternates_them():
    from lossbench.train.mgs import guided_candidates

    assert guided_candidates(4, 0.5) == [1, 0, 1, 0] and guided_candidates(5, 0.5) == [1, 0, 1, 0, 1]  # i % 2 == 0
    assert sum(guided_candidates(10, 0.7)) == 3 and sum(guided_candidates(20, 0.85)) == 3  # (no float round-up)
    assert guided_candidates(4, 0.9) == [1, 0, 0, 0]  # at least one


def test_mgs_chunked_evaluation_equals_whole():
    torch.manual_seed(0)
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    finals = []
    for chunk in (None, 3):
        torch.manual_seed(0)
        model = nn.Linear(4, 3)
        step = build_step(model, CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1),
                          [("mgs", {"seed": 3, "chunk_size": chunk, "n_samples": 8})])
        step(x, y)
        finals.append(model.weight.detach().clone())
    torch.testing.assert_close(finals[0], finals[1])


def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32)
    y = torch.tensor(data.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    return x[perm[:1200]], y[perm[:1200]], x[perm[1200:]], y[perm[1200:]]


def accuracy(model, x, y) -> float:
    return (eval_logits(model, x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("seed", [0, 1])
def test_mgs_on_accuracy_improves_a_ce_trained_linear_model_on_digits(seed):
    x_tr, y_tr, x_va, y_va = digits()
    torch.manual_seed(0)
    model = nn.Linear(64, 10)
    fit(model, CrossEntropyLoss(), x_tr, y_tr, epochs=1, batch_size=64, lr=0.01,
        generator=torch.Generator().manual_seed(1))
    val_before, train_before = accuracy(model, x_va, y_va), accuracy(model, x_tr, y_tr)
    history = fit(model, CrossEntropyLoss(), x_tr, y_tr, epochs=3, batch_size=256, lr=0.01, momentum=0.0,
                  transforms=[("mgs", {"n_samples": 32, "seed": seed})],
                  generator=torch.Generator().manual_seed(2))
    assert accuracy(model, x_va, y_va) >= val_before
    assert accuracy(model, x_tr, y_tr) > train_before + 0.01, "the optimised cost (training error) must fall"
    assert all(1 < row["mgs/ess"] <= 32 for row in history)


def test_mgs_accepts_macro_f1_and_a_callable_cost():
    x_tr, y_tr, _, _ = digits()
    calls = []

    def constant(logits, target):  # one cost per candidate: the logged cost is this one's
        calls.append(logits.shape[0])
        return torch.full((logits.shape[0],), 0.375)

    costs = {}
    for name, metric in (("accuracy", "accuracy"), ("macro_f1", "macro_f1"), ("callable", constant)):
        torch.manual_seed(0)
        model = nn.Linear(64, 10)
        history = fit(model, CrossEntropyLoss(), x_tr[:300], y_tr[:300], epochs=1, batch_size=100, lr=0.01,
                      transforms=[("mgs", {"metric": metric, "n_samples": 8, "seed": 0})],
                      generator=torch.Generator().manual_seed(0))  # fmt: skip
        costs[name] = history[0]["mgs/cost"]
    assert costs["callable"] == pytest.approx(0.375) and calls and all(n == calls[0] for n in calls)
    assert 0.0 < costs["accuracy"] < 1.0 and 0.0 < costs["macro_f1"] < 1.0
    assert costs["macro_f1"] != costs["accuracy"]  # the same model and batches, another metric


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_mgs_leaves_out_the_targets_its_loss_ignores_whatever_their_index(metric):
    """The same batch with its ignored targets marked -100 or, by the loss's own ignore_index, -1: the same
    costs and the same step (the costs used to count the -1 targets as errors, and macro F1 raised)."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 4, generator=gen), torch.randint(0, 3, (32,), generator=gen)
    results = []
    for ignore in (-100, -1):
        torch.manual_seed(0)
        model = nn.Linear(4, 3)
        marked = y.clone()
        marked[::4] = ignore
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        step = build_step(model, CrossEntropyLoss(ignore_index=ignore), optimizer, [("mgs", {"seed": 0, "metric": metric})])
        results.append((step(x, marked)["mgs/cost"], [p.detach().clone() for p in model.parameters()]))
    (cost, params), (cost_other, params_other) = results
    assert cost_other == pytest.approx(cost) and 0.0 < cost < 1.0
    for p, q in zip(params, params_other):
        torch.testing.assert_close(p, q)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n_samples": 0}, "n_samples"), ({"noise": 0.0}, "noise"), ({"mix": 1.0}, "mix"),
     ({"alpha": -1.0}, "alpha"), ({"max_norm": 0.0}, "max_norm"), ({"metric": "auc"}, "metric"),
     ({"chunk_size": -1}, "chunk_size"), ({"chunk_size": 0}, "chunk_size"), ({"seed": "a"}, "seed"), ({"seed": 1.5}, "seed")],
)
def test_mgs_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MGS(**kwargs)


def test_costs_count_in_float32_at_least():
    """bfloat16 holds integers exactly up to 256 only: one wrong sample in 1000 must still count."""
    target = torch.zeros(1000, dtype=torch.long)
    logits = torch.zeros(2, 1000, 3)
    logits[:, :, 0] = 1.0
    logits[1, 0, 1] = 2.0  # candidate 1 misclassifies one sample
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        assert error_rate(logits.to(dtype), target).tolist() == pytest.approx([0.0, 0.001], abs=1e-7), dtype
        assert float(macro_f1_cost(logits.to(dtype), target)[1]) == pytest.approx(float(macro_f1_cost(logits, target)[1]), rel=1e-6), dtype


class _ScaledLinear(nn.Module):
    """A model with a 0-d parameter (a learned output scale)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.scale = nn.Linear(4, 3), nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return self.lin(x) * self.scale


def test_mgs_steps_a_model_with_a_0_d_parameter():
    torch.manual_seed(0)
    model, x, y = _ScaledLinear(), torch.randn(32, 4), torch.randint(0, 3, (32,))
    before = model.scale.detach().clone()
    stats = build_step(model, CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1), [MGS(seed=0)])(x, y)
    assert 0.0 <= stats["mgs/cost"] <= 1.0 and not torch.equal(model.scale.detach(), before)
