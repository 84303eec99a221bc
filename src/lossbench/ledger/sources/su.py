"""Claims of Su Jianlin's posts on kexue.fm about accuracy-aimed losses.

"How to train your accuracy?" (kexue.fm/archives/9098) answers the EXACT paper: EXACT on text
classification did not reach softmax + cross-entropy, its -log P variant did worse still, and
late in training cross-entropy already optimises smooth accuracy.  The posts publish no numbers,
so the records hold directions only.
"""

from __future__ import annotations

from lossbench.ledger.analyses import (
    FAR_COSINE,
    FAR_RATIO,
    LATE_COSINE_MIN,
    LATE_RATIO_MAX,
    LATE_SHARE,
    ce_behaves_like_smooth_accuracy,
)
from lossbench.ledger.records import Budget, Claim, register_claim
from lossbench.ledger.verdict import Rule

POST = "Su Jianlin, 'How to train your accuracy?'"
URL = "https://kexue.fm/archives/9098"

_SST2_QUICK = Budget(
    {"trials": 4, "seeds": 3, "train.epochs": 2, "datasets": [{"name": "sst2", "label": "sst2", "max_train": 8000}]},
    "8,000 training sentences (stratified), 2 epochs, 4 trials, 3 seeds",
)
_SST2_PAPER = Budget({}, "the whole training set, 5 epochs, 10 trials, 5 seeds (12 minutes on 2 cores, packed, 2026-12-06)")
_SST2_DEVIATIONS = (
    "Su does not say which data set, model or EXACT settings he used; SST-2 (the shared GLUE copy, its "
    "labelled test split) with a fastText-style model is lossbench's stand-in, and EXACT's sigma is tuned "
    "over lossbench's registered range rather than scheduled; EXACT runs without the paper's gradient "
    "normaliser, and its batch standardisation, which the paper's recipe fixes on, is searched: if Su followed "
    "that recipe, this EXACT is weaker than his.",
    "SST-2 has two classes, where EXACT's P is a closed form, Phi((s_y - s_other) / (sqrt 2 sigma)): 1 - P is a "
    "probit-smoothed 0-1 loss and -log P a probit log-loss, a near relative of cross-entropy's logistic one. So on "
    "these data the claims compare those two losses, not EXACT's integral over several rivals.",
    "The stored runs were made before the fastText model's unknown-token embedding started at zero (2026-12-07): "
    "with every training token in the vocabulary that row never trained, and its random start added the same "
    "noise to every dev and test sentence with an unknown word (about half of SST-2's test sentences) for every "
    "method alike. They have not been re-run since; a claims run --fresh of the study would train from the new "
    "start, and these verdicts stand until then as the old code's.",
    "Each method gets the same number of trials (10; 4 at the quick budget), but EXACT's search adds sigma, margin and standardize to CE's lr and "
    "weight decay: its wider space is searched more thinly.",
    "Since 2026-12-06 tuning validates on GLUE's dev.tsv (872 whole sentences; at the quick budget the 95 of them "
    "its 8,000 stratified rows keep) and the final runs train on train.tsv and dev.tsv together. Before, the "
    "validation part was a random tenth of train.tsv, whose rows are the phrases of its sentences' parse trees, so "
    "it held pieces of the rows trained on (a review found 250 of 300 sampled validation phrases inside a training "
    "phrase, and a bag-of-words model 11 points more accurate there than on the test split). The runs with that "
    "split gave: quick, inconclusive and inconclusive; paper, holds (-1.53 [-2.49, -0.56]) and inconclusive "
    "(-0.35 [-1.11, +0.41]).",
)

register_claim(
    Claim(
        id="su-exact-nlp",
        title="On text classification EXACT does not reach softmax + cross-entropy",
        source=f"{POST}, the experiment section",
        url=URL,
        statement="Trained on NLP classification tasks, EXACT (1 - P) could not reach the accuracy of softmax + CE.",
        protocol="su-sst2",
        treatment="exact",
        baseline="ce",
        budgets={"quick": _SST2_QUICK, "paper": _SST2_PAPER},
        rule=Rule("less", alpha=0.05, delta=0.005),
        deviations=_SST2_DEVIATIONS,
    )
)

register_claim(
    Claim(
        id="su-exact-logp",
        title="EXACT's -log P variant does worse than its 1 - P",
        source=f"{POST}, the experiment section",
        url=URL,
        statement="Replacing EXACT's 1 - P by -log P (a cross-entropy of the expected accuracy) made results worse.",
        protocol="su-sst2",
        treatment="exact_log",
        baseline="exact",
        budgets={"quick": _SST2_QUICK, "paper": _SST2_PAPER},
        rule=Rule("less", alpha=0.05, delta=0.005),
        deviations=_SST2_DEVIATIONS + (
            "Found by a review after the runs (2026-12-06): Su's variant is -log E[P], the log of the mean over the "
            "data, where exact_log here is the per-sample mean of -log P, which weighs each sample's gradient by "
            "1 / P, the reweighting towards wrong samples that Su credits for cross-entropy's advantage. So this "
            "claim tests another loss than Su's, and its verdict does not answer his; su-exact-logp-mean tests his.",
        ),
    )
)

# Su's -log variant as he writes it, -log E[P] (the log outside the expectation: per batch, -log of its mean P),
# against EXACT's 1 - P in a study of their own; written on 2026-12-06, before its runs, when a review found
# that su-exact-logp's exact_log is the per-sample -log P.
_MEAN = {"name": "su-sst2-mean", "baseline": "exact", "methods.keep": ["exact"],
         "methods.add": [{"name": "exact_log_mean", "like": "exact", "params": {"log_of_mean": True}}]}  # fmt: skip
register_claim(
    Claim(
        id="su-exact-logp-mean",
        title="EXACT's -log E[P] variant does worse than its 1 - P",
        source=f"{POST}, the experiment section",
        url=URL,
        statement="The EXACT paper says optimising -log E[p(y|x)] does better than E[1 - p(y|x)]; Su found this "
        "variant could not even match 1 - P. Here -log E[P] is -log of each batch's mean P (lossbench's "
        "exact(log_of_mean=True)).",
        protocol="su-sst2",
        treatment="exact_log_mean",
        baseline="exact",
        budgets={"quick": Budget({**_SST2_QUICK.overrides, **_MEAN}, _SST2_QUICK.note + "; EXACT and its -log E[P] only"),
                 "paper": Budget(_MEAN, _SST2_PAPER.note.split(" (")[0] + "; EXACT and its -log E[P] only")},  # fmt: skip
        rule=Rule("less", alpha=0.05, delta=0.005),
        deviations=_SST2_DEVIATIONS + (
            "The expectation over the data is estimated per batch of 64: the loss is -log of the batch's mean P, whose "
            "gradient weighs each sample by 1 / (the batch's mean P), where the whole data's mean would weigh all "
            "alike; EXACT's 1 - P is tuned anew in this study, beside it.",
            "Noted on 2026-12-07 (a review, after the runs): the quick budget's verdict rests on 2 epochs and a "
            "validation part of 95 sentences, and the paper budget's reads the other way; the quick one says little "
            "on its own.",
        ),
    )
)

register_claim(
    Claim(
        id="su-smooth-accuracy",
        title="Smooth accuracy trained from scratch falls short of cross-entropy",
        source=f"{POST}; Su, kexue.fm/archives/7708 (the gradient of 1 - p vanishes on badly wrong samples)",
        url=URL,
        statement="Trained from scratch, 1 - p_y reaches a lower accuracy than -log p_y.",
        protocol="su-smooth-accuracy",
        treatment="smooth_accuracy",
        baseline="ce",
        budgets={
            "quick": Budget(
                {"trials": 4, "seeds": 3, "train.epochs": 8,
                 "datasets": [{"name": "digits"}, {"name": "letter", "label": "letter", "max_train": 4000}]},  # fmt: skip
                "digits and 4,000 Letter images (MNIST left out), 8 epochs, 4 trials, 3 seeds",
            ),
            "paper": Budget({}, "digits, Letter and MNIST, 20 epochs, 10 trials, 5 seeds"),
        },
        variations=("fixed", "resampled"),
        rule=Rule("less", alpha=0.05, delta=0.005),
        deviations=("The post states the direction without an experiment of its own; the data sets, model and "
                    "budget are lossbench's choice.",
                    "In the resampled variation digits and Letter get a new stratified 80/20 split per seed; "
                    "MNIST ships its test set and keeps it.",
                    "Noted on 2026-12-07 (a review, after the runs): at the quick budget's 8 epochs neither method "
                    "has converged (cross-entropy on digits 96.29 there, 97.66 at the paper budget's 20), so its "
                    "'holds' measures how fast 1 - p_y trains from scratch, the efficiency Su's remark is about (in "
                    "his survey of softmax losses: vanishing gradients, so it optimises less efficiently than "
                    "cross-entropy and suits fine-tuning), more than the lower accuracy the statement names; the "
                    "paper budget is inconclusive (smooth accuracy +0.28 on digits).",),  # fmt: skip
    )
)


def _late_rule(far_cosine: float) -> str:
    """su-ce-late's rule with its contradiction below the median cosine ``far_cosine`` (amended once, in that)."""
    return (f"Measured along a cross-entropy run over the training set, each epoch, and read by the medians over "
            f"the last 1/{LATE_SHARE} of the epochs (rounded up). Holds when the median of the mean -log p_y / (1 - p_y) "
            f"is at most {LATE_RATIO_MAX:g} and the median cosine between the two losses' parameter gradients at least "
            f"{LATE_COSINE_MIN:g}; contradicted when the ratio's median exceeds {FAR_RATIO:g} or the cosine's is below "
            f"{far_cosine:g}; inconclusive otherwise")  # fmt: skip


register_claim(
    Claim(
        id="su-ce-late",
        title="Late in training cross-entropy behaves like smooth accuracy",
        source=f"{POST}, the analysis of -log p against 1 - p",
        url=URL,
        statement="As training proceeds p_y -> 1 and -log p_y ~ 1 - p_y: the ratio -log p_y / (1 - p_y) tends to 1 "
        "and cross-entropy's gradient points where smooth accuracy's does.",
        kind="analysis",
        analysis=ce_behaves_like_smooth_accuracy,
        rule_text=_late_rule(FAR_COSINE),
        # (the first until 2026-12-06, the second, its contradiction at a cosine below 0.9, the same day: see the
        # last deviation)
        amended_from=(
            "Measured along a cross-entropy run over the training set, each epoch. Holds when at the last epoch the "
            "mean of -log p_y / (1 - p_y) is at most 1.1 and the cosine between the two losses' parameter gradients at "
            "least 0.9, both having moved towards 1 since the first epoch; contradicted when the last ratio exceeds "
            "1.5 or the last cosine is below 0.5; inconclusive otherwise",
            _late_rule(0.9),
        ),
        deviations=(
            "The rule was amended on 2026-12-06, after a review of the quick run, which it had judged 'holds' (ratio "
            "1.919 at epoch 1, 1.009 at epoch 12; cosine 0.906, then 0.939). The cosine is already 0.91 after the "
            "first epoch, when 98 % of the training samples still have p_y < 0.5 (p_y is then alike across samples, "
            "which aligns the two gradients for another reason), and it swings from epoch to epoch without a trend "
            "(0.70 to 0.97 over epochs 2 to 12), so the old rule's 'moved towards 1' was decided by the last epoch's "
            "draw: a run ending at epoch 5, 8 or 9 would have been inconclusive. The rule now reads medians over the "
            "late epochs and asks the cosine for what 'points where' says, the same direction within 8 degrees. Its "
            "thresholds were set after the quick run's cosines were seen, and the quick run was judged again under "
            "it; the paper budget's run (30 epochs) was made after this record. That amendment first contradicted "
            "the claim below a median cosine of 0.9; a second review the same day, after the paper run (holds under "
            "either), found 0.9 inside the band the quick run's cosines swing through (runs ending at 2, 3, 5, 6, 8, "
            "9 or 10 of its epochs would have been contradicted), and the threshold went back to the old rule's 0.5. "
            "Both runs were judged again under it; their verdicts did not change.",
            "Su states the approximation on expectations, E[-log p_y] ~ 1 - E[p_y]; the rule reads the mean over "
            "samples of each one's ratio -log p_y / (1 - p_y), which nears 1 once most samples fit even where a few "
            "badly wrong ones keep the ratio of the means far above it (98 % of samples at p_y = 0.999 and 2 % at "
            "0.01: a mean ratio of 1.07, a ratio of means of about 4.5). The gradients' cosine, lossbench's addition, "
            "reads the whole batch. Noted by a review on 2026-12-06, after the runs.",
        ),
    )
)
