import math

import pytest
import torch

from lossbench.ledger.toy_1d import accuracy_at, run_toy, solve, solve_exact


@pytest.fixture(scope="module")
def results():
    return {(r.method, r.temperature): r for r in run_toy((None, 0.1))}


def test_without_temperature_ce_and_hinge_miss_the_accurate_thresholds(results):
    ce, hinge = results[("cross_entropy", None)], results[("hinge", None)]
    assert ce.b_low == ce.b_high == pytest.approx(0.70, abs=1e-3)
    assert (hinge.b_low, hinge.b_high) == (pytest.approx(0.75, abs=1e-3), pytest.approx(1.0, abs=1e-3))
    assert ce.accuracy == hinge.accuracy == pytest.approx(2 / 3)


def test_a_temperature_reaches_a_perfect_threshold(results):
    for method in ("cross_entropy", "hinge", "smooth_accuracy"):
        r = results[(method, 0.1)]
        assert 0 < r.b_low <= r.b_high < 0.25 and r.accuracy == 1.0, r
    assert results[("cross_entropy", 0.1)].b_low == pytest.approx(0.131, abs=2e-3)


def test_smooth_accuracy_without_temperature_runs_off_the_grid(results):
    r = results[("smooth_accuracy", None)]
    assert r.at_grid_edge and r.b_low == pytest.approx(2.0)


def test_ce_optimum_is_the_stationary_point_of_the_closed_form():
    # d/db sum softplus(-y (x - b)) = 0  <=>  sigma(b - 0.25) = sigma(-0.25 - b) + sigma(-b)
    b = torch.tensor(solve("cross_entropy", None, torch.linspace(0.6, 0.8, 20001, dtype=torch.float64)).b_low)
    residual = torch.sigmoid(b - 0.25) - torch.sigmoid(-0.25 - b) - torch.sigmoid(-b)
    assert abs(float(residual)) < 1e-4


def test_accuracy_at_thresholds():
    acc = accuracy_at(torch.tensor([0.1, 0.0, 0.25, 0.7, -0.3], dtype=torch.float64))
    assert acc.tolist() == pytest.approx([1.0, 2 / 3, 2 / 3, 2 / 3, 1 / 3])


@pytest.fixture(scope="module")
def exact_results():
    sigmas = torch.logspace(-3, 1, 21, dtype=torch.float64)
    rows = run_toy((), exact_sigmas=(1.0, 0.1), sigma_grid=sigmas)
    fixed = {r.sigma[0]: r for r in rows if not r.sigma_learned}
    learned = next(r for r in rows if r.sigma_learned)
    return fixed, learned, sigmas


def test_exact_with_small_sigma_reaches_a_perfect_threshold(exact_results):
    fixed, _, _ = exact_results
    r = fixed[0.1]
    assert r.b_low == r.b_high == pytest.approx(0.128, abs=2e-3) and r.accuracy == 1.0
    # The stationary point of sum_i 1 - Phi(y_i (x_i - b) / (sqrt(2) sigma)):
    # phi(a (b + 0.25)) + phi(a b) = phi(a (0.25 - b)) with a = 1 / (sqrt(2) sigma).
    a = 1 / (math.sqrt(2) * 0.1)
    phi = lambda z: math.exp(-0.5 * z * z)  # noqa: E731
    b = solve_exact(0.1, torch.linspace(0.12, 0.14, 20001, dtype=torch.float64)).b_low
    assert abs(phi(a * (b + 0.25)) + phi(a * b) - phi(a * (0.25 - b))) < 1e-4


def test_exact_with_large_sigma_misses_like_smooth_accuracy(exact_results):
    fixed, _, _ = exact_results
    r = fixed[1.0]
    assert r.accuracy == pytest.approx(2 / 3) and r.at_grid_edge


def test_exact_with_learned_sigma_shrinks_sigma_and_is_perfect(exact_results):
    _, learned, sigmas = exact_results
    assert learned.sigma[0] == pytest.approx(float(sigmas[0]))  # the smallest sigma on the grid
    assert 0 < learned.b_low <= 0.125 <= learned.b_high < 0.25 and learned.accuracy == 1.0
    assert learned.loss < 1e-9


def test_toy_command_prints_exact_rows(capsys):
    from lossbench.cli import main

    assert main(["toy", "--sigma", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "exact(sigma=0.1)" in out and "0.128" in out and "exact(learned_sigma)" in out
    assert main(["toy", "--sigma", "0"]) == 2
    for bad in (["--temperature", "-1"], ["--temperature", "inf"], ["--temperature", "nan"], ["--sigma", "nan"]):
        assert main(["toy", *bad]) == 2  # (-1 ran as no temperature, inf as one, nan failed in the loss)
        assert f"--{bad[0].strip('-')} values must be finite" in capsys.readouterr().err


def test_an_optimal_set_with_a_perfect_threshold_contradicts_the_miss_claim(monkeypatch):
    # "holds when every optimal b is below 100 %": a loss flat over b in [0.1, 0.5], partly 100 %
    # accurate (b < 0.25), reaches a perfect optimum, though its least accurate optimal b does not
    from lossbench.ledger import analyses, toy_1d

    monkeypatch.setitem(toy_1d.LOSSES_ON_GRID, "hinge", lambda f: ((-f[:, 1] - 0.3).abs().clamp_min(0.2) - 0.2))
    result = analyses.toy_cross_entropy_and_hinge_miss("quick")
    assert result.word == "contradicted" and "hinge" in result.reason


def test_the_exact_toy_claim_holds_at_sigma_01_and_is_contradicted_at_sigma_1(monkeypatch):
    from lossbench.ledger import analyses

    result = analyses.toy_exact_finds_it("quick")
    assert result.word == "holds" and "b in [0.128, 0.128]" in result.reason
    monkeypatch.setattr(analyses, "TOY_EXACT_SIGMA", 1.0)  # EXACT's optimum runs to the grid's edge, 2/3 accurate
    result = analyses.toy_exact_finds_it("quick")
    assert result.word == "contradicted" and result.measured["exact_accuracy"] < 1.0
