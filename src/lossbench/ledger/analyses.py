"""The analysis claims' measurements, each judged by the rule its record states.

Each function takes the budget ("quick" or "paper") and returns an :class:`AnalysisResult`.
"""

from __future__ import annotations

import dataclasses
import math
import statistics

import torch

from lossbench.ledger.runs import AnalysisResult
from lossbench.ledger.toy_1d import accuracy_at, results_table, solve, solve_exact
from lossbench.ledger.verdict import score_rounding

GRID = torch.linspace(-1.0, 2.0, 3001, dtype=torch.float64)  # b in steps of 0.001


def _toy(temperature: float | None) -> tuple[list, float]:
    results = [solve(name, temperature, GRID) for name in ("cross_entropy", "hinge")]
    return results, float(accuracy_at(GRID).max())


def _toy_details(results) -> str:
    return "Optimal thresholds on a grid of b in [-1, 2] (step 0.001):\n\n```\n" + results_table(results) + "\n```"


def toy_cross_entropy_and_hinge_miss(budget: str) -> AnalysisResult:
    """The EXACT paper's claim: without a temperature neither loss finds a 100 %-accurate b."""
    results, best = _toy(None)
    measured = {f"{r.method}_accuracy": r.accuracy for r in results} | {"best_accuracy_on_grid": best}
    misses = [r.method for r in results if r.best_accuracy < 1.0]  # no optimal b is 100 % accurate
    if best == 1.0 and len(misses) == len(results):
        word, reason = "holds", "both optima are 2/3 accurate while b in (0, 0.25) is 100 % accurate"
    elif len(misses) < len(results):
        word = "contradicted"
        reason = f"{', '.join(r.method for r in results if r.best_accuracy == 1.0)} reaches a 100 %-accurate optimum"
    else:
        word, reason = "inconclusive", "no threshold on the grid is 100 % accurate"
    cells = ", ".join(f"{r.method}: b in [{r.b_low:.3f}, {r.b_high:.3f}], accuracy {r.accuracy:.3f}" for r in results)
    return AnalysisResult(word, f"{reason} ({cells}).", measured, _toy_details(results))


def toy_temperature_finds_it(budget: str) -> AnalysisResult:
    """Su's answer: with T = 0.1 both losses find a 100 %-accurate b."""
    results, _ = _toy(0.1)
    measured = {f"{r.method}_accuracy": r.accuracy for r in results}
    found = [r for r in results if r.accuracy == 1.0]
    word = "holds" if len(found) == len(results) else "contradicted"
    cells = ", ".join(f"{r.method}: b in [{r.b_low:.3f}, {r.b_high:.3f}], accuracy {r.accuracy:.3f}" for r in results)
    reason = ("with T = 0.1 every optimum is 100 % accurate" if word == "holds"
              else "with T = 0.1 an optimum stays below 100 %")  # fmt: skip
    return AnalysisResult(word, f"{reason} ({cells}).", measured, _toy_details(results))


TOY_EXACT_SIGMA = 0.1


def toy_exact_finds_it(budget: str) -> AnalysisResult:
    """The EXACT paper's answer to its example: EXACT with a small sigma finds a 100 %-accurate b."""
    (r,) = results = [solve_exact(TOY_EXACT_SIGMA, GRID)]
    word = "holds" if r.accuracy == 1.0 else "contradicted"  # every optimal b is 100 % accurate, or some is not
    reason = (f"with sigma = {TOY_EXACT_SIGMA:g} every optimum of EXACT is 100 % accurate" if word == "holds"
              else f"with sigma = {TOY_EXACT_SIGMA:g} an optimum of EXACT stays below 100 %")  # fmt: skip
    cell = f"exact: b in [{r.b_low:.3f}, {r.b_high:.3f}], accuracy {r.accuracy:.3f}"
    return AnalysisResult(word, f"{reason} ({cell}).", {"exact_accuracy": r.accuracy}, _toy_details(results))


# --- Su: late in training cross-entropy behaves like smooth accuracy -----------------------------

LATE_RATIO_MAX, LATE_COSINE_MIN = 1.1, 0.99  # "tends to 1": within these late in training (0.99: within 8 degrees)
FAR_RATIO, FAR_COSINE = 1.5, 0.5  # beyond these late in training the claim is contradicted (0.5: 60 degrees apart)
LATE_SHARE = 4  # "late in training": the last quarter of the epochs (rounded up), read by its medians


def judge_late_epochs(ratios: list[float], cosines: list[float]) -> tuple[str, int, float, float]:
    """su-ce-late's rule on the per-epoch measurements: (verdict, late epochs, their median ratio and cosine)."""
    late = -(-len(ratios) // LATE_SHARE)
    for name, values in (("ratio", ratios), ("cosine", cosines)):  # (statistics.median places a nan anywhere)
        bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
        if bad is not None:
            raise ValueError(f"su-ce-late: epoch {bad + 1}'s {name} is {values[bad]}: the run diverged, nothing to judge")
    ratio, cosine = statistics.median(ratios[-late:]), statistics.median(cosines[-late:])
    if ratio <= LATE_RATIO_MAX and cosine >= LATE_COSINE_MIN:
        return "holds", late, ratio, cosine
    if ratio > FAR_RATIO or cosine < FAR_COSINE:
        return "contradicted", late, ratio, cosine
    return "inconclusive", late, ratio, cosine


def ce_behaves_like_smooth_accuracy(budget: str) -> AnalysisResult:
    """Along a cross-entropy run (MLP on scikit-learn's digits), per epoch over the training set:
    the mean of ``-log p_y / (1 - p_y)`` and the cosine between the parameter gradients of
    cross-entropy and of smooth accuracy ``1 - p_y``.  Su: both tend to 1.  Judged on their medians
    over the last quarter of the epochs: one epoch's cosine swings by 0.2 from the next."""
    from lossbench.data import load_dataset
    from lossbench.losses import CrossEntropyLoss
    from lossbench.models import build_model
    from lossbench.train import fit

    epochs = 30 if budget == "paper" else 12
    data = load_dataset("digits")
    x, y = data.x_train, data.y_train
    torch.manual_seed(0)
    model = build_model("mlp", data, width=128)
    params = [p for p in model.parameters() if p.requires_grad]
    ratios, cosines = [], []

    def measure(epoch: int, row: dict) -> None:
        log_p = torch.log_softmax(model(x), dim=1).gather(1, y[:, None]).squeeze(1)
        one_minus_p = -torch.expm1(log_p)  # accurate where p_y is near 1
        # -log p / (1 - p) -> 1 as p -> 1; where log p rounds to 0 (a margin past ~17 in float32) 0 / tiny read 0
        ratio = torch.where(log_p < 0, -log_p / one_minus_p.clamp_min(torch.finfo(log_p.dtype).tiny), 1.0).mean()
        g_ce = torch.autograd.grad(-log_p.mean(), params, retain_graph=True)
        g_sa = torch.autograd.grad(one_minus_p.mean(), params)
        flat_ce, flat_sa = torch.cat([g.flatten() for g in g_ce]), torch.cat([g.flatten() for g in g_sa])
        ratios.append(float(ratio.detach()))
        cosines.append(float(torch.nn.functional.cosine_similarity(flat_ce, flat_sa, dim=0)))

    fit(model, CrossEntropyLoss(), x, y, epochs=epochs, batch_size=64, optimizer="adam", lr=1e-3,
        generator=torch.Generator().manual_seed(0), on_epoch_end=measure)  # fmt: skip
    word, late, ratio, cosine = judge_late_epochs(ratios, cosines)
    reason = (f"over the last {late} of {epochs} epochs the median of the mean -log p_y / (1 - p_y) was {ratio:.3f} "
              f"(epoch 1: {ratios[0]:.3f}), the median cosine of the two losses' gradients {cosine:.3f} "
              f"(epoch 1: {cosines[0]:.3f})")  # fmt: skip
    rows = "\n".join(f"| {i + 1} | {r:.4f} | {c:.4f} |" for i, (r, c) in enumerate(zip(ratios, cosines)))
    details = ("Cross-entropy run: MLP (width 128) on digits' training split, Adam lr 1e-3, batch 64, seed 0.\n\n"
               "| epoch | mean -log p_y / (1 - p_y) | cos(grad CE, grad (1 - p_y)) |\n|---|---|---|\n" + rows)  # fmt: skip
    measured = {"late_epochs": late, "ratio_late": ratio, "cosine_late": cosine, "ratio_first": ratios[0],
                "cosine_first": cosines[0]}  # fmt: skip
    assert all(math.isfinite(v) for v in measured.values())
    return AnalysisResult(word, reason + ".", measured, details)


# --- Su: one descent and one ascent step are a gradient-penalty step, to O(eps^3) ----------------

ORDER_EPS = tuple(0.2 * 2.0 ** (-k / 2) for k in range(9))  # step sizes from 0.2 down to 0.0125
ORDER_HOLDS = (2.7, 3.3)  # the fitted order of the error that shows O(eps^3)
ORDER_SECOND = 2.3  # an order at or below this is O(eps^2): the analysis would miss a term
ASCENT_RATIO = 0.5  # Su's variant: ascend with eps2 = eps1 / 2


def _order_problem():
    """A small smooth network (tanh MLP) on fixed data, in float64 so round-off stays far below eps^3."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=g)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    return model, x, y


def _after(model, steps: int, lr: float, transforms, x, y) -> torch.Tensor:
    """The parameters after ``steps`` plain SGD steps (no momentum) on the full batch."""
    import copy

    from lossbench.losses import CrossEntropyLoss
    from lossbench.train import build_step

    model = copy.deepcopy(model)
    step = build_step(model, CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=lr, momentum=0.0), transforms)
    for _ in range(steps):
        step.run(x, y)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _slope(eps: list[float], errors: list[float]) -> float:
    """Least-squares slope of log(error) against log(eps): the error's measured order."""
    lx, ly = torch.tensor(eps, dtype=torch.float64).log(), torch.tensor(errors, dtype=torch.float64).log()
    lx, ly = lx - lx.mean(), ly - ly.mean()
    return float((lx * ly).sum() / (lx * lx).sum())


def ascent_descent_is_a_gradient_penalty(budget: str) -> AnalysisResult:
    """Su (kexue.fm/archives/7643): a descent step at lr eps1 then an ascent step at lr eps2 equal,
    up to O(eps^3), one descent step at lr eps1 - eps2 on L + eps1 eps2 / (2 (eps1 - eps2)) |grad L|^2.

    Measured with lossbench's own transforms (``ascent_descent``, ``gradient_penalty``) and plain
    SGD: the distance between the two parameter vectors, for eps1 on a halving grid, and its order
    (the slope of a log-log fit); beside it, the same distance to a plain descent step without the
    penalty, whose error is second order.  The budget changes nothing (the measurement takes seconds).
    """
    model, x, y = _order_problem()
    eps = list(ORDER_EPS)
    with_penalty, without = [], []
    for e in eps:
        e2 = ASCENT_RATIO * e
        two_steps = _after(model, 2, e, [("ascent_descent", {"ascent_ratio": ASCENT_RATIO})], x, y)
        weight = e * e2 / (2 * (e - e2))
        penalised = _after(model, 1, e - e2, [("gradient_penalty", {"weight": weight})], x, y)
        plain = _after(model, 1, e - e2, [], x, y)
        with_penalty.append(float((two_steps - penalised).norm()))
        without.append(float((two_steps - plain).norm()))
    order, control = _slope(eps, with_penalty), _slope(eps, without)
    low, high = ORDER_HOLDS
    if low <= order <= high:
        word = "holds"
    elif order <= ORDER_SECOND:
        word = "contradicted"
    else:
        word = "inconclusive"
    reason = (f"the distance between descent + ascent and the penalised step falls with order {order:.2f} in eps "
              f"(fit over eps = {eps[-1]:.4f} .. {eps[0]:.2f}); without the penalty term the order is {control:.2f}")  # fmt: skip
    rows = "\n".join(f"| {e:.4g} | {a:.3e} | {b:.3e} |" for e, a, b in zip(eps, with_penalty, without))
    details = ("tanh MLP 4-8-3 on 64 fixed Gaussian points, float64, full batch, SGD without momentum, "
               f"eps2 = {ASCENT_RATIO} eps1; |theta difference| after the two steps against:\n\n"
               "| eps1 | penalised step (lr eps1 - eps2) | plain step (lr eps1 - eps2) |\n|---|---|---|\n" + rows)  # fmt: skip
    measured = {"order_with_penalty": order, "order_without_penalty": control}
    return AnalysisResult(word, reason + ".", measured, details)


# --- Su: flooding's level b is what makes it costly to tune --------------------------------------

WITHIN = 0.005  # "reached": a best-so-far validation score within half a point of the budget's best
TUNING_STUDY_CLAIM = "su-flooding-penalty"  # the claim whose study's tuning trials are read
TRICKS = ("flooding", "gradient_penalty", "ascent_descent")  # compared; "ce" is shown as the reference


def trials_to_reach(curve: list[float], within: float = WITHIN) -> int:
    """How many trials (1-based) a best-so-far curve needs to come within ``within`` of its last value
    (up to the scores' rounding: two samples of 400 below is within 0.005)."""
    if not curve or curve[-1] != curve[-1]:
        raise ValueError(f"a budget curve needs a finite last value, got {curve!r}")
    last = curve[-1]
    return next(n for n, v in enumerate(curve, 1) if v == v and v >= last - within - score_rounding(v, last))


def run_study(spec, storage, device, data_dir, pack, progress, reads: str):
    """Runs (or resumes, or finds done) an analysis's study in ``storage``; returns the Runner, whose
    ``storage`` (with heartbeats) the analysis then reads.  ``reads`` says what, in the progress title."""
    from lossbench.bench.defaults import DEFAULT_PACK
    from lossbench.bench.runner import Runner
    from lossbench.bench.storage import open_storage

    if getattr(storage, "heartbeat_interval", None) is None:  # an analysis's storage has none; the runner needs them
        storage = open_storage(storage.url, spec.heartbeat_interval)
    runner = Runner(spec, storage, device or torch.device("cpu"), data_dir=data_dir, pack=pack or DEFAULT_PACK)
    if progress is None:
        runner.run()
    else:
        with progress(f"{spec.name} ({reads})") as update:
            runner.run(update)
    return runner


def tuning_cost_verdict(needs: dict[str, dict[str, int]]) -> tuple[str, str]:
    """``needs[dataset][method]``: trials to reach (None: no finite score, and then its dataset can show neither
    word: the verdict is inconclusive).  Holds when on every dataset flooding needs more trials than each other
    trick; contradicted when on every dataset it needs no more than the cheaper of the two; inconclusive
    otherwise."""
    others = [m for m in TRICKS if m != "flooding"]
    unscored = [d for d, n in needs.items() if any(n[m] is None for m in TRICKS)]  # (a method without a finite score)
    scored = {d: n for d, n in needs.items() if d not in unscored}
    more = [d for d, n in scored.items() if all(n["flooding"] > n[m] for m in others)]
    no_more = [d for d, n in scored.items() if n["flooding"] <= min(n[m] for m in others)]
    if needs and len(more) == len(needs):
        return "holds", "on every dataset flooding needs more trials than the penalty and the alternating variant"
    if needs and len(no_more) == len(needs):
        return "contradicted", "on every dataset flooding needs no more trials than the cheaper of the other two"
    def listed(datasets: list[str]) -> str:
        return ", ".join(datasets) or "no dataset"

    return "inconclusive", (f"flooding needs the most trials on {listed(more)} and no more than the "
                            f"cheapest on {listed(no_more)}"
                            + (f"; no finite validation score of some method on {listed(unscored)}" if unscored else ""))  # fmt: skip


def least_tuning(means: dict[str, float]) -> str:
    """The methods with the fewest mean trials to reach (each of a tie, in TRICKS' order: the first alone read
    as the one), or "-" where none has a mean."""
    finite = [m for m in TRICKS if math.isfinite(means.get(m, math.nan))]
    least = min((means[m] for m in finite), default=math.nan)
    return " and ".join(m for m in finite if means[m] == least) or "-"


def flooding_tuning_cost(budget: str, storage=None, device=None, data_dir=None, pack=None, progress=None) -> AnalysisResult:
    """Best validation score against trials spent (the budget curves of the stored tuning trials) in
    the study of the claim ``su-flooding-penalty``, run first (or resumed, or found done) in the
    same storage; per method, the trials needed to come within ``WITHIN`` of its budget's best."""
    from lossbench.bench.results import collect
    from lossbench.ledger.protocol import study_spec
    from lossbench.ledger.records import get_claim

    if storage is None:
        raise ValueError("flooding_tuning_cost reads a study: pass the storage it is (to be) stored in")
    spec = study_spec(get_claim(TUNING_STUDY_CLAIM), budget)
    reads = "the tuning trials read by the tuning-cost analysis"
    storage = run_study(spec, storage, device, data_dir, pack, progress, reads).storage
    needs, rows = {}, []
    for result in collect(spec, storage):
        label = result.dataset.label
        needs[label] = {}
        for r in result.methods:
            curve = r.budget_curve()
            n = trials_to_reach(curve) if curve and not math.isnan(curve[-1]) else None  # (None: no trial scored)
            needs[label][r.method.name] = n
            trials = ", ".join(str(t.number) for t in sorted(r.tune_trials, key=lambda t: t.number))
            rows.append(f"| {label} | {r.method.name} | {'-' if n is None else n} | {(curve or [math.nan])[-1]:.4f} | "
                        f"{' '.join(f'{v:.3f}' for v in curve)} | {r.tune_study}: {trials} |")  # fmt: skip
    word, reason = tuning_cost_verdict(needs)
    counted = {m: [n[m] for n in needs.values() if n[m] is not None] for m in TRICKS}
    mean = {m: sum(c) / len(c) if c else math.nan for m, c in counted.items()}
    reason += f"; mean trials to come within {WITHIN * 100:g} points of the best: " + ", ".join(
        f"{m} {mean[m]:.1f}" for m in TRICKS) + f" (least tuning: {least_tuning(mean)})"  # fmt: skip
    details = (f"Study {spec.name!r}: {spec.trials} tuning trials per method, random search. Trials to reach = "
               f"the first n whose best-so-far validation {spec.selection_metric} is within {WITHIN * 100:g} points of the best "
               "of the whole budget.\n\n| dataset | method | trials to reach | best | best after n = 1, 2, ... | "
               "trials (study: numbers) |\n|---|---|---|---|---|---|\n" + "\n".join(rows))  # fmt: skip
    measured = {f"{d}/{m}": math.nan if n is None else float(n) for d, row in needs.items() for m, n in row.items()}
    return AnalysisResult(word, reason + ".", measured, details)


# --- Zhang et al.: gradient clipping accelerates training -----------------------------------------

CLIPPING_CLAIM = "zhang-clipping-accelerates"  # its record holds the preset and the budgets' overrides
CLIPPED = ("clip", "clip_smooth")  # each against UNCLIPPED
UNCLIPPED = "none"
TARGET_FRACTION = 0.02  # the target training loss: this fraction of ln C, the loss of a uniform guess
EPOCHS_DELTA = 1.0  # "the same speed": mean epochs to the target within one epoch


def epochs_to_target(curve: list[float], target: float) -> int | None:
    """The first epoch (1-based) whose training loss is at most ``target``; None if none is (a nan,
    a diverged epoch, never counts as reached)."""
    if not target > 0:
        raise ValueError(f"target must be a training loss > 0, got {target!r}")
    return next((e for e, v in enumerate(curve, 1) if v <= target), None)


def study_read(claim_id: str, budget: str) -> str | None:
    """The name of the bench study an analysis claim reads at ``budget`` (None: it reads none): its own
    (:func:`analysis_study`), or for the tuning-cost analysis that of :data:`TUNING_STUDY_CLAIM`."""
    from lossbench.ledger.protocol import study_spec
    from lossbench.ledger.records import get_claim

    claim = get_claim(claim_id)
    if claim.analysis is flooding_tuning_cost:
        return study_spec(get_claim(TUNING_STUDY_CLAIM), budget).name
    return None if claim.protocol is None else analysis_study(claim_id, budget).name


def analysis_study(claim_id: str, budget: str):
    """The spec of an analysis claim's study: its record's preset with the budget's overrides, named
    ``<preset>.<budget>`` (as ``ledger.protocol.study_spec`` names a bench claim's study)."""
    from lossbench.ledger.protocol import _override, check_run, preset_document, quietly_parsed
    from lossbench.ledger.records import get_claim

    claim = get_claim(claim_id)
    check_run(claim, budget)
    if claim.protocol is None:
        raise ValueError(f"claim {claim_id!r} names no preset to run")
    where = f"claim {claim_id!r} ({budget})"
    document = preset_document(claim.protocol)
    for key, value in (claim.budgets[budget].overrides if budget in claim.budgets else {}).items():
        _override(document, key, value, where)
    document["name"] = f"{document['name']}.{budget}"
    return quietly_parsed(document, where)


def clipping_verdict(epochs: dict[str, dict[str, list[float]]], never: float | None = None):
    """``epochs[dataset][method]``: per seed, epochs to the target (a run that never reaches it counts
    ``never``, the run's epochs + 1).  Per dataset and clipped method a paired verdict (direction
    "less", margin one epoch) against the unclipped runs of the same seeds: the sign test of
    ``verdict.censored_paired_verdict`` for every pair (a run that never reached the target took more
    than its epochs, not ``never``; one test for every pair, so that a baseline that never reaches the
    target cannot give a weaker word than one that just does); the claim holds where every
    one holds (``ledger.judge.every_dataset``: contradicted if the opposite is shown on any after Holm's correction
    over them, equivalent if every one is).
    Where no run of either method reached the target the pair shows nothing: inconclusive, not the
    equal speed that the equal counts would say."""
    from lossbench.ledger.judge import every_dataset
    from lossbench.ledger.verdict import Rule, censored_paired_verdict

    rule = Rule("less", alpha=0.05, delta=EPOCHS_DELTA)
    verdicts, names = [], []
    for label, row in epochs.items():
        for method in CLIPPED:
            verdict = censored_paired_verdict(row[method], row[UNCLIPPED], rule, censored_from=math.inf if never is None else never)
            if never is not None and all(e == never for e in [*row[method], *row[UNCLIPPED]]):
                verdict = dataclasses.replace(verdict, word="inconclusive", p_opposite=math.nan, unopposed="inconclusive",
                                              reason="inconclusive: no run of either method reached the target")  # fmt: skip
            verdicts.append(verdict)
            names.append(f"{label}/{method}")
    return every_dataset(verdicts, names), dict(zip(names, verdicts))


def clipping_cases(parts: dict) -> str:
    """``clipping_verdict``'s cases, each with its effect and the word it counts with after Holm's correction."""
    from lossbench.ledger.judge import counted_word, holm_words

    words = holm_words(list(parts.values()))[0]
    return "; ".join(f"{name} {v.effect.estimate:+.2f} ({counted_word(w, v)})" for (name, v), w in zip(parts.items(), words))


def clipping_accelerates(budget: str, storage=None, device=None, data_dir=None, pack=None, progress=None) -> AnalysisResult:
    """Zhang et al.: runs (or resumes, or finds done) the study of the preset ``clipping`` in
    ``storage``, then reads each final run's stored ``train_loss`` curve: the epochs each method
    needs, per seed, to bring its training loss to ``TARGET_FRACTION * ln C``; judged by
    :func:`clipping_verdict`."""
    from lossbench.bench.results import collect
    from lossbench.bench.spec import evaluation_seeds
    from lossbench.bench.storage import run_record

    if storage is None:
        raise ValueError("clipping_accelerates reads a study: pass the storage it is (to be) stored in")
    spec = analysis_study(CLIPPING_CLAIM, budget)
    runner = run_study(spec, storage, device, data_dir, pack, progress, "the runs read by the clipping analysis")
    storage = runner.storage
    epochs: dict[str, dict[str, list[float]]] = {}
    never = float(spec.train.epochs + 1)  # what a run that never reaches the target counts
    rows = []
    for result in collect(spec, storage):
        label = result.dataset.label
        classes = runner.cache.get(result.dataset, "final").num_classes
        target = TARGET_FRACTION * math.log(classes)
        for r in result.methods:
            reached = []  # in the order of the evaluation seeds: the methods' runs pair up seed by seed
            for seed in evaluation_seeds(spec):
                if seed not in r.runs:
                    raise ValueError(f"study {spec.name!r}: {label} / {r.method.name} has no run of evaluation seed {seed}")
                curve = run_record(r.runs[seed])["curves"]["train_loss"]
                n = epochs_to_target(curve, target)
                reached.append(never if n is None else float(n))
            epochs.setdefault(label, {})[r.method.name] = reached
            params = ", ".join(f"{k} = {v:.3g}" if isinstance(v, float) else f"{k} = {v}" for k, v in sorted((r.config or {}).items())) or "-"
            rows.append(f"| {label} | {target:.4f} | {r.method.name} | {' '.join(f'{e:g}' for e in reached)} | "
                        f"{sum(reached) / len(reached):.2f} | {params} | {r.final_study} |")  # fmt: skip
    verdict, parts = clipping_verdict(epochs, never=never)
    reason = f"{verdict.reason} Per dataset and method (clipped - none, mean epochs; the word each counts with): {clipping_cases(parts)}"
    details = (f"Study {spec.name!r}: {spec.trials} tuning trials per method, {spec.seeds} seeds, {spec.train.epochs} "
               f"epochs. Target = {TARGET_FRACTION} ln C (C classes); epochs to the target per evaluation seed "
               f"(a run that never reaches it counts {never:g}).\n\n| dataset | target | method | "
               "epochs per seed | mean | chosen configuration | study |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows))  # fmt: skip
    measured = {f"{d}/{m}": sum(v) / len(v) for d, row in epochs.items() for m, v in row.items()}
    return AnalysisResult(verdict.word, reason, measured, details)
