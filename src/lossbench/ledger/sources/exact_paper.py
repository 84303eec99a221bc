"""Claims of the EXACT paper: Karpukhin, Dereka, Kolesnikov, "EXACT: How to Train Your Accuracy",
arXiv 2205.09615 (2022), and its released code, github ivan-chai/exact.

The numbers are transcribed from the paper's tables (Table 1 from the repository's
``docs/tabular.jpg``); the protocol facts are those of ``uci-class/scripts/run.py`` (see
``../shared/SPEC.md`` section 7 and the preset ``exact-table1``).
"""

from __future__ import annotations

from lossbench.ledger.analyses import (
    toy_cross_entropy_and_hinge_miss,
    toy_exact_finds_it,
    toy_temperature_finds_it,
)
from lossbench.ledger.records import Budget, Claim, register_claim
from lossbench.ledger.records import Published as P
from lossbench.ledger.sklearn_baseline import CELL_WITHIN, MEAN_OFF, MEAN_WITHIN, sklearn_table1
from lossbench.ledger.verdict import Rule

PAPER = "Karpukhin et al. 2022, 'EXACT: How to Train Your Accuracy'"
URL = "https://arxiv.org/abs/2205.09615"

# Test accuracy (%), mean ± std over 5 seeds, linear models (Table 1).
TABLE1 = {
    "adult": {"sklearn": P(85.28, 0.00), "ce": P(85.27, 0.01), "hinge": P(85.23, 0.03), "sigmoid": P(85.11, 0.04), "beta_bernoulli": P(85.09, 0.03), "polynomial": P(84.99, 0.07), "poly1": P(85.31, 0.01), "exact": P(85.20, 0.02)},
    "annealing": {"sklearn": P(100.0, 0.00), "ce": P(100.0, 0.00), "hinge": P(100.0, 0.00), "sigmoid": P(99.00, 0.00), "beta_bernoulli": P(100.0, 0.00), "polynomial": P(100.0, 0.00), "poly1": P(100.0, 0.00), "exact": P(100.0, 0.00)},
    "audit-risk": {"sklearn": P(98.72, 0.00), "ce": P(98.08, 0.00), "hinge": P(98.72, 0.00), "sigmoid": P(97.44, 0.00), "beta_bernoulli": P(97.44, 0.00), "polynomial": P(97.44, 0.00), "poly1": P(98.08, 0.00), "exact": P(96.92, 0.48)},
    "balance-scale": {"sklearn": P(92.00, 0.00), "ce": P(92.00, 0.00), "hinge": P(92.00, 0.00), "sigmoid": P(92.00, 0.00), "beta_bernoulli": P(91.84, 0.32), "polynomial": P(92.00, 0.00), "poly1": P(92.00, 0.00), "exact": P(92.00, 0.00)},
    "breast-cancer": {"sklearn": P(95.61, 0.00), "ce": P(95.61, 0.00), "hinge": P(97.37, 0.00), "sigmoid": P(97.37, 0.00), "beta_bernoulli": P(97.37, 0.00), "polynomial": P(97.37, 0.00), "poly1": P(97.37, 0.00), "exact": P(96.49, 0.00)},
    "car": {"sklearn": P(92.20, 0.00), "ce": P(92.20, 0.00), "hinge": P(90.17, 1.92), "sigmoid": P(93.47, 0.14), "beta_bernoulli": P(94.80, 0.00), "polynomial": P(94.68, 0.29), "poly1": P(92.20, 0.00), "exact": P(94.80, 0.00)},
    "cylinder-bands": {"sklearn": P(72.22, 0.00), "ce": P(72.78, 0.74), "hinge": P(73.15, 0.00), "sigmoid": P(72.41, 0.37), "beta_bernoulli": P(73.70, 1.39), "polynomial": P(69.44, 1.31), "poly1": P(72.78, 0.45), "exact": P(77.22, 0.45)},
    "dry-bean": {"sklearn": P(93.06, 0.00), "ce": P(92.81, 0.01), "hinge": P(92.75, 0.04), "sigmoid": P(92.35, 0.04), "beta_bernoulli": P(92.37, 0.03), "polynomial": P(92.82, 0.08), "poly1": P(92.68, 0.02), "exact": P(92.79, 0.08)},
    "mice-protein": {"sklearn": P(99.07, 0.00), "ce": P(98.61, 0.00), "hinge": P(98.98, 0.19), "sigmoid": P(99.07, 0.00), "beta_bernoulli": P(99.07, 0.00), "polynomial": P(98.61, 0.00), "poly1": P(98.61, 0.00), "exact": P(98.33, 0.56)},
    "wine": {"sklearn": P(100.0, 0.00), "ce": P(100.0, 0.00), "hinge": P(100.0, 0.00), "sigmoid": P(100.0, 0.00), "beta_bernoulli": P(100.0, 0.00), "polynomial": P(100.0, 0.00), "poly1": P(100.0, 0.00), "exact": P(100.0, 0.00)},
    "mean": {"sklearn": P(92.82, 0.00), "ce": P(92.74, 0.08), "hinge": P(92.84, 0.22), "sigmoid": P(92.82, 0.06), "beta_bernoulli": P(93.17, 0.18), "polynomial": P(92.73, 0.17), "poly1": P(92.90, 0.05), "exact": P(93.38, 0.16)},
}
_TABLE1_DEVIATIONS = (
    "The sklearn LogisticRegression column is not a bench method (the bench trains PyTorch models): the "
    "analysis claim exact-table1-sklearn re-runs it with scikit-learn as the paper's code does, on the same splits.",
    "Cylinder bands, audit risk and mice protein are read as the paper's pandas loader reads them "
    "(lossbench's uci-* sets replicate it cell for cell); adult's test file here lacks UCI's "
    "'|1x3 Cross validator' line, so it is skipped as a comment instead of by skiprows=1.",
    "The code's versions in its repository differ in the temperature. At b145bb run.py's temperature rises, "
    "10 * 0.001 ** (-e / 16) from 10 to about 6494; every stored version of EXACT's exact.py divides the margins by "
    "its temperature (00687f by its std argument, c288309 by temperature), so with b145bb's run.py EXACT's sigma "
    "would rise to about 6494 (until 2026-12-07 this record said that EXACT multiplies by it, its sigma falling to "
    "about 1.5e-4: a review found every stored exact.py dividing); b145bb's own exact.py and relaxations' file are not "
    "in the index read here (the relaxations' stored versions multiply the margins, 00687f, and divide them, "
    "c30ee9f). The latest run.py's temperature falls, 10 * 0.001 ** (e / 16), and EXACT and the relaxations divide "
    "the margins by it: the one stored pairing consistent for EXACT (00687f's run.py, c288309's exact.py, c30ee9f's "
    "relaxation.py). We follow SPEC.md and it: the margins are divided by 10 * (0.01 / 10) ** (e / 16), down to about "
    "0.0154 at the last epoch. Which version made Table 1 the repository does not say.",
    "EXACT's batch standardisation divides by std + 1e-6 (the code: by std); EXACT's probability is "
    "lossbench's quadrature (exact to ~1e-7), not the code's 16-sample Monte Carlo estimate (the claim "
    "exact-estimator measures what that changes); clipping scales by max_norm / max(norm, max_norm), "
    "where torch's clip_grad_norm_ adds 1e-6 to the norm (at most 1e-4 relative at a clip of 0.01).",
    "Data order: each epoch is one permutation of the repeated training set drawn from a generator seeded "
    "with the run's seed, where the code's DataLoader draws from torch's global generator; initial weights "
    "are the same (nn.Linear's initialisation after torch.manual_seed(seed)).",
    "In the resampled variation the eight sets without a test file get a new unstratified 80/20 split per "
    "seed (seed = evaluation seed); adult and annealing ship a test file and keep it. The configuration is "
    "chosen once, on seed 0's split, whose training part holds most of another seed's test rows: the choice "
    "has seen them (the paper's protocol has one fixed split, where it has not).",
    "Poly-1 is in neither stored version of the code's run.py (00687f, b145bb: its methods are exact, xent, "
    "hinge, beta-bernoulli, sigmoid, poly and sklearn): its epsilon grid {0.1, 0.5, 1, 2, 4, 10}, drawn last, "
    "after lr, comes from SPEC.md's reading of the paper, so the 20 configurations it gets are not checked "
    "against the code's, where the other methods' are.",
    "A run whose logits are not all finite scores 0 here, as SPEC.md says of a run with NaN weights; the code's "
    "00687f run.py takes the arg-max of the logits as they are, and torch reads NaN as the largest value, so such "
    "a run predicts class 1 everywhere and scores that class's share (its b145bb version raises on NaN instead). At "
    "the paper budget no final run diverged (the verdicts read those); 60 of the 1,400 tuning runs did, in each "
    "variation. Noted by a review on 2026-12-06, after the runs.",
    "The rule read on the paper's own Table 1 (its per-set EXACT - CE means, the same Wilcoxon test and bootstrap "
    "over the ten sets) gives inconclusive too: p 0.461 for EXACT above, TOST p 0.245, mean +0.64 points, most of "
    "it car's +2.60 and cylinder-bands' +4.44, four sets the other way: a reproduction of the table's numbers would "
    "read inconclusive, not holds. Noted on 2026-12-07, after the runs, from a review.",
)

# The reduction that finishes in minutes on a 2-core CPU: fewer trials and seeds, epochs of
# int(50 * 256 / n) passes over the training rows instead of int(500 * 256 / n) (at least one: the
# largest sets keep one pass); the protocol otherwise unchanged.
_TABLE1_QUICK = Budget(
    {"trials": 4, "seeds": 3, "train.repeat_to_batches": 50},
    "4 of the 20 drawn trials, 3 seeds, epochs of int(50 * 256 / n) passes over the n training rows instead of "
    "int(500 * 256 / n), at least one (one pass on adult and dry-bean, about 50 batches on the others: a tenth of the paper's ~500)",
)

register_claim(
    Claim(
        id="exact-table1",
        title="EXACT beats cross-entropy on ten UCI sets (linear models)",
        source=f"{PAPER}, Table 1",
        url=URL,
        statement="EXACT reaches a higher mean test accuracy over the ten tabular sets than cross-entropy "
        "(93.38 vs 92.74) and than every other surrogate loss.",
        protocol="exact-table1",
        metric="accuracy",
        treatment="exact",
        baseline="ce",
        scope="across-datasets",
        ranking=True,
        published=TABLE1,
        budgets={"quick": _TABLE1_QUICK, "paper": Budget({}, "the paper's protocol: 20 trials, 5 seeds, epochs of ~500 batches")},
        variations=("fixed", "resampled"),
        rule=Rule("greater", alpha=0.05, delta=0.005),
        rule_text="The verdict decides EXACT against cross-entropy; the ranking of every method is shown beside it, "
        "not judged (the statement's 'than every other surrogate loss' has no rule here)",
        deviations=_TABLE1_DEVIATIONS,
    )
)

# Table 1's protocol with two methods: EXACT as there, and EXACT by the paper's estimator.
_ESTIMATOR = {
    "name": "exact-estimator",
    "baseline": "exact",
    "methods.keep": ["exact"],
    "methods.add": [{"like": "exact", "name": "exact_genz", "params": {"estimator": "genz", "samples": 16}}],
}

register_claim(
    Claim(
        id="exact-estimator",
        title="The paper's Monte Carlo estimate of EXACT gives the same results as the exact probability",
        source=f"{PAPER}, section 4 (the Genz estimator with 16 samples) and Table 1's protocol",
        url=URL,
        statement="The paper estimates P(correct) by Genz Monte Carlo with 16 samples (lossbench measures the "
        "estimate's std at 0.005-0.03 for C = 4..10). "
        "lossbench's question: does that noise change Table 1's results, against the exact 1-D quadrature?",
        reading=True,
        protocol="exact-table1",
        metric="accuracy",
        treatment="exact_genz",
        baseline="exact",
        scope="across-datasets",
        budgets={
            "quick": Budget(
                {**_TABLE1_QUICK.overrides, **_ESTIMATOR},
                _TABLE1_QUICK.note,
            ),
            "paper": Budget(_ESTIMATOR,
                            "Table 1's protocol with EXACT by quadrature and by the paper's estimator"),  # fmt: skip
        },
        rule=Rule("equal", alpha=0.05, delta=0.005),
        rule_text="A no-difference claim: it holds when the mean difference is shown to lie within half an accuracy "
        "point (both one-sided Wilcoxon tests over the datasets reject and the bootstrap interval lies inside)",
        deviations=_TABLE1_DEVIATIONS[:5] + (
            "On the four two-class sets (adult, audit-risk, breast-cancer, cylinder-bands) the paper's estimator is "
            "exact (one rival: Genz's integral has one dimension, which it computes in closed form), so there the two "
            "differ only by round-off in another order, which training amplifies (audit-risk at the paper budget: "
            "-0.13 [-1.13, +0.88] points); the equivalence tests shift each difference by the margin, so these "
            "near-zero differences count as evidence of equivalence as the six other sets' do. Noted by a review on "
            "2026-12-07, after the runs (corrected the same day: it said only the six sets could show a difference).",
        ),
    )
)

register_claim(
    Claim(
        id="exact-table2-mnist",
        title="EXACT scores above cross-entropy on MNIST (Table 2: M3, SGD, 99.67 vs 99.64, within the paper's std; "
        "the quick budget a small CNN)",
        source=f"{PAPER}, Table 2, MNIST row, SGD",
        url=URL,
        statement="With the M3 model and SGD, EXACT reaches 99.67 ± 0.05 % test accuracy on MNIST, "
        "cross-entropy 99.64 ± 0.03 % (with Adam 99.58 both; with ASAM 99.67 ± 0.03 against 99.65 ± 0.04; "
        "the paper's vision claim is Table 2's mean over its vision rows, EXACT 91.02 against 90.69, on sets "
        "these machines do not hold).",
        protocol="exact-mnist",
        metric="accuracy",
        treatment="exact",
        baseline="ce",
        published={"mnist": {"ce": P(99.64, 0.03), "hinge": P(99.68, 0.04), "sigmoid": P(99.70, 0.01),
                             "beta_bernoulli": P(99.70, 0.04), "polynomial": P(99.72, 0.03),
                             "poly1": P(99.68, 0.03), "exact": P(99.67, 0.05)}},  # fmt: skip
        budgets={
            "quick": Budget(
                {"trials": 3, "seeds": 3, "train.epochs": 3, "train.model": "cnn",
                 "datasets": [{"name": "mnist", "label": "mnist", "max_train": 6000}],
                 "methods.keep": ["ce", "exact"]},  # fmt: skip
                "the small CPU CNN instead of M3, 6,000 training images (stratified), 3 epochs, 3 trials, "
                "3 seeds, CE and EXACT only: a CPU-sized check of the direction, not of the 99.6 % level",
            ),
            "paper": Budget({}, "GPU-scale: the full protocol of the preset (not run on this 2-core machine)"),
        },
        rule=Rule("greater", alpha=0.05, delta=0.001),
        deviations=(
            "The preset exact-mnist follows the released Table 2 configs (github ivan-chai/exact, "
            "mdn-metric/configs/exact/templates) since 2026-12-06 (before: lossbench's reading of the paper's text, "
            "30 epochs, lr up to 0.5, 20 trials, a 10 % validation part, the lr decayed every step and no clipping "
            "for the other losses; the quick run before it gave holds, +1.86 [+1.36, +2.35], with an unclipped CE). "
            "What still differs: no augmentation (the configs translate by up to 0.2 and rotate by up to 20 "
            "degrees); weight decay searched in [1e-6, 1e-3] (the configs fix 1e-4); EXACT's margin searched over "
            "lossbench's grid None, 0.5, 1, 2, 5 (the configs: in [0, 10]; their best MNIST setting lr 0.5, minimum "
            "variance 1, margin 0.5); EXACT's probability by the quadrature (the configs: Genz's estimator with 16 "
            "samples); validation on a stratified random 20 % (the configs: fold 0 of 5, a contiguous fifth); the lr "
            "and sigma schedules reach their ends at the last epoch (the configs' stop one epoch short); the other "
            "losses search lossbench's registered hyperparameters, not the configs': hinge its power p in {1, 2} "
            "(the squared hinge included) at margin 1, where the configs search the margin in [0, 10]; the sigmoid, "
            "Beta-Bernoulli and polynomial relaxations one fixed temperature in [0.05, 20], where the configs "
            "schedule it (an initial variance in [1, 1000] down to a minimum in [1e-4, 1]); Poly-1 its epsilon in "
            "[-1, 10]. The quick budget trains CE and EXACT only, the two the verdict compares.",
            "Three more differences, found by a review of the released code on 2026-12-07 (after the runs), each the "
            "same for CE and EXACT: the code scores a tuning trial at its checkpoint of best validation accuracy "
            "and a final run at its epoch of best training accuracy (mdn-metric's CheckpointCallback; "
            "selection_dataset 'valid' under hopt_params only), lossbench every run at its last epoch; the code "
            "drops each epoch's last partial batch (drop_last for training), lossbench trains on it (a short "
            "batch, which EXACT's batch standardisation sees too); the code feeds M3 three copies of the grey "
            "channel (images read as RGB), lossbench one (the same functions, a first layer whose three copies "
            "share one gradient).",
            "The paper does not claim EXACT ahead on MNIST alone: its gap, 0.03 points, lies within its standard "
            "deviations. From its published means and standard deviations alone (5 seeds; the paper gives no "
            "per-seed pairs, which this record's paired test reads), 'EXACT above CE' is not shown (p about 0.15), "
            "while 'within 0.1 point' is (p about 0.02): its own numbers would read equivalent, not holds.",
            "The quick budget trains lossbench's small CNN (three conv blocks) instead of M3, on 6,000 images "
            "for 3 epochs: M3 takes 3.6 s per batch of 256 on one core of this machine (measured), about an "
            "hour per run of the protocol. Scores are below the paper's; only the direction is compared, between "
            "under-trained CNNs: the source's gap (0.03 points) lies within its own standard deviations, so a "
            "quick verdict says nothing about it.",
        ),
    )
)

register_claim(
    Claim(
        id="exact-table1-sklearn",
        title="Table 1's scikit-learn column: logistic regression as the paper's code tunes it",
        source=f"{PAPER}, Table 1 (the sklearn column) and uci-class/scripts/run.py",
        url=URL,
        statement="LogisticRegression (C = 1 / regularisation, no penalty at 0), tuned by the code's 20 random draws "
        "of (seed, regularisation) on the 20 % validation split and refitted on the whole training split, scores "
        "92.82 mean test accuracy over the ten sets. A check of lossbench's data and splits as much as of the paper.",
        kind="analysis",
        analysis=sklearn_table1,
        rule_text=f"Holds when our mean over the ten sets is within {MEAN_WITHIN} points of the paper's and every set "
        f"within {CELL_WITHIN} point; contradicted when the mean differs by more than {MEAN_OFF} point; otherwise "
        "inconclusive",
        deviations=(*_TABLE1_DEVIATIONS[1:2], "Every budget runs the paper's protocol (its 20 draws on the ten whole "
                    "sets take about a minute); a row says quick where `claims run` ran it at its default budget.",
                    "On adult two draws tie on validation accuracy and the code's tie-break (the higher training "
                    "accuracy) parts them by one row of 26,048: the stored run chose regularisation 0.01, a re-run "
                    "on 2026-12-07 (a review's, and one of its own) 0.001, with the same test accuracy, 85.25; the "
                    "choice rests on lbfgs's round-off. Noted on 2026-12-07; the stored run stays the reference."),
    )
)

register_claim(
    Claim(
        id="exact-toy-1d",
        title="Without a temperature, cross-entropy and hinge miss the 100 %-accurate threshold (1-D example)",
        source=f"{PAPER}, section 3 (the 1-D example)",
        url=URL,
        statement="On the points (-0.25, -1), (0, -1), (0.25, +1) with predictor sign(x - b), the cross-entropy "
        "optimum b = 0.70 and the hinge optimum b in [0.75, 1] are 2/3 accurate, although any b in (0, 0.25) "
        "is 100 % accurate.",
        kind="analysis",
        analysis=toy_cross_entropy_and_hinge_miss,
        rule_text="Holds when, minimised over a grid of b without a temperature, every optimal b of cross-entropy "
        "and of the hinge is less than 100 % accurate while some b on the grid is 100 % accurate; contradicted "
        "when either loss has a 100 %-accurate optimum",
    )
)

register_claim(
    Claim(
        id="exact-toy-1d-exact",
        title="EXACT with a small sigma finds the 100 %-accurate threshold of the 1-D example",
        source=f"{PAPER}, section 3 (the 1-D example)",
        url=URL,
        statement="On the same three points, EXACT's expected accuracy with sigma = 0.1 is maximised by a 100 %-accurate "
        "b (lossbench's SPEC: b about 0.128), where cross-entropy and the hinge without a temperature are not.",
        kind="analysis",
        analysis=toy_exact_finds_it,
        rule_text="Holds when, with sigma = 0.1, every optimal b of EXACT (1 - P) on the grid of b is 100 % accurate; "
        "contradicted when an optimum is less than 100 % accurate",
        deviations=("Added on 2026-12-05, after the two other records of the example had run (toy_1d.py already "
                    "solved EXACT's rows for their tables); this record was written before its own run.",
                    "sigma plays the part of a temperature: at sigma = 1 EXACT misses too (its optimum b = 2.0, at the "
                    "grid's edge, 2/3 accurate, as cross-entropy at T = 1), so the statement's contrast is of a small "
                    "sigma against no temperature, as su-toy-temperature's is of a small temperature (noted by a "
                    "review on 2026-12-07, after the run).",),
    )
)

register_claim(
    Claim(
        id="su-toy-temperature",
        title="With a temperature, cross-entropy and hinge do find the 100 %-accurate threshold",
        source="Su Jianlin, 'How to train your accuracy?' (kexue.fm/archives/9098), on the EXACT paper's example",
        url="https://kexue.fm/archives/9098",
        statement="The paper's 1-D example only shows the effect of a missing temperature: with a tunable "
        "temperature (Su: f = k(x - b)) cross-entropy and hinge reach a 100 %-accurate b; lossbench tests it at a "
        "fixed f = (x - b) / T, T = 0.1 (its choice, not Su's).",
        kind="analysis",
        analysis=toy_temperature_finds_it,
        rule_text="Holds when, with T = 0.1, every optimal b of cross-entropy and of the hinge on the grid is "
        "100 % accurate; contradicted when either has an optimum below 100 %",
    )
)
