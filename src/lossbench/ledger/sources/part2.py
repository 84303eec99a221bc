"""Claims 7, 8 and 10 of issue 13: soft F1 as fine-tuning and the F1-weighted BCE (Su Jianlin,
kexue.fm/archives/6620 and 7708), gradient clipping accelerates training (Zhang et al., ICLR 2020,
via Su, kexue.fm/archives/7469), and MGS fine-tuning on batch accuracy (arXiv 2006.03158, via Su,
kexue.fm/archives/7521).

No published numbers are transcribed: Su's posts report no numbers on data lossbench holds, Zhang
et al. report ResNet on CIFAR-10 and LSTMs on language modelling, the MGS paper its own tasks; the
records hold directions only, and each verdict is about the direction and size of the effect here.
"""

from __future__ import annotations

from lossbench.ledger.analyses import EPOCHS_DELTA, TARGET_FRACTION, clipping_accelerates
from lossbench.ledger.records import Budget, Claim, register_claim
from lossbench.ledger.verdict import Rule

SOFT_F1 = "Su Jianlin's post on the soft F1 loss (kexue.fm/archives/6620)"
F1_BCE = "Su Jianlin's post on smooth metrics as losses (kexue.fm/archives/7708)"

# --- Claim 7: soft F1 ------------------------------------------------------------------------------

_SOFTF1_QUICK = Budget(
    {
        "trials": 4, "seeds": 3, "train.epochs": 6,
        "datasets": [
            {"name": "letter", "label": "letter-lt10", "params": {"long_tail_rho": 10.0}},
            {"name": "letter", "label": "letter-lt100", "params": {"long_tail_rho": 100.0}},
            {"name": "uci-dry-bean", "label": "dry-bean-lt100", "params": {"long_tail_rho": 100.0}},
            {"name": "mnist", "label": "mnist-lt100", "params": {"long_tail_rho": 100.0}, "max_train": 4000},
            {"name": "scene"},
            {"name": "synthetic_multilabel", "label": "synthetic-ml",
             "params": {"n_samples": 4000, "n_features": 40, "n_labels": 10, "avg_labels": 2}},
        ],
    },
    "4 of the 12 trials, 3 seeds, 6 epochs before the 5 fine-tuning epochs instead of 20, MNIST's long-tailed "
    "training split capped at 4,000 samples",
)  # fmt: skip
_SOFTF1_PAPER = Budget({}, "the preset as written: 12 trials, 5 seeds, 20 + 5 epochs, every training split whole")
_SOFTF1_DEVIATIONS = (
    "Su's posts give the recipe, not an experiment to copy: soft F1 'is a biased estimate of F1 (the denominator also "
    "contains a summation over the batch), which can sometimes affect the optimization trajectory or even lead to "
    "divergence', so train with cross-entropy until nearly converged, then fine-tune with -F1 (the English "
    "translation's words; a recipe for stability, with no gain over continuing cross-entropy stated: that gain is "
    "lossbench's reading, noted on 2026-12-07, after the runs). lossbench trains a one-hidden-layer MLP with cross-entropy (BCE on multi-label sets) for the "
    "spec's epochs, then 5 epochs with the batch's macro soft F1; the baseline continues with cross-entropy for the "
    "same 5 epochs under the same restart (a fresh SGD at a tenth of the run's lr, decayed again to a tenth of "
    "1e-4), so both train the same total epochs. Each method is a unit of its own, tuned apart (below): the two "
    "differ in the second stage's loss and may differ in their chosen lr and weight decay, so they share the "
    "recipe, not a first stage.",
    "Imbalanced single-label data are long-tailed training splits (imbalance 10 and 100, the longtail preset's "
    "profile) of Letter (10 and 100), Dry Bean and MNIST (100); MNIST's test split is the one it ships, Letter and Dry Bean hold out 20 % before the tail is drawn, as in the long-tail claims (corrected on 2026-12-07: it said their test splits stayed as shipped). Multi-label data are Scene and the "
    "synthetic set of the multilabel preset.",
    "lr and weight decay are searched for every method with the same budget and chosen by validation macro-F1; the "
    "second stage's lr scale (0.1) is fixed, not searched.",
    "Soft F1 is computed per mini-batch of 128 (Su notes the batch estimate is biased: its denominator sums over the batch); predictions are the arg-max "
    "(single-label) and logit > 0 (multi-label), no threshold tuning for any method.",
    "The F1-weighted BCE weighs its terms by one soft F1 pooled over every label of the batch (a micro F), while the "
    "claims are judged on macro-F1; a per-label F, as the macro soft F1 computes, is another reading of Su's formula.",
    "Su's soft F1 is that of a binary task's positive class, used to fine-tune a model whose cross-entropy has nearly "
    "converged; the macro soft F1 over classes (softmax, single-label) or labels (sigmoid, multi-label) is "
    "lossbench's extension, and the quick budget's first stage (6 epochs) may stop short of that convergence.",
)


def _softf1(id: str, title: str, source: str, url: str, statement: str, treatment: str, baseline: str,
            own: tuple[str, ...] = ()) -> None:  # fmt: skip
    register_claim(
        Claim(
            id=id, title=title, source=source, url=url, statement=statement, reading=True, protocol="softf1", metric="macro_f1",
            treatment=treatment, baseline=baseline, budgets={"quick": _SOFTF1_QUICK, "paper": _SOFTF1_PAPER},
            rule=Rule("greater", alpha=0.05, delta=0.005), deviations=own + _SOFTF1_DEVIATIONS,
            rule_text="Per data set: a one-sided paired t-test over seeds of treatment - baseline test macro-F1; the "
            "claim is per data set and holds where it holds on every one ('equivalent' where neither direction is shown "
            "and the difference is shown to lie within half a point).",
        )
    )  # fmt: skip


_softf1(
    "su-soft-f1-finetune",
    "Fine-tuning a cross-entropy model with soft F1 raises macro-F1 on long-tailed data",
    f"{SOFT_F1}, the soft-F1 paragraph",
    "https://kexue.fm/archives/6620",
    "Su: soft F1 is a biased batch estimate that can derail training, so train with cross-entropy until nearly "
    "converged and only then fine-tune with -F1. lossbench's reading: that fine-tuning raises macro-F1 over continuing "
    "cross-entropy for the same epochs, tested on long-tailed single-label data.",
    "ce_then_soft_f1", "ce_then_ce",
)
_softf1(
    "su-soft-f1-finetune-multilabel",
    "Fine-tuning a BCE model with soft F1 raises macro-F1 on multi-label data",
    f"{SOFT_F1}, the soft-F1 paragraph",
    "https://kexue.fm/archives/6620",
    "The same recipe on multi-label data: BCE first, then the per-label soft F1 averaged over labels, against "
    "continuing BCE for the same epochs.",
    "bce_then_soft_f1", "bce_then_bce",
)
_softf1(
    "su-f1-weighted-bce",
    "The F1-weighted binary cross-entropy beats plain BCE in macro-F1",
    f"{F1_BCE}, the F1 section",
    "https://kexue.fm/archives/7708",
    "Replacing p by log p in the gradient of the soft F1 gives a BCE whose positive and negative terms are weighted "
    "by (1 - F/2) and F/2 (F the batch's soft F1, gradient stopped); trained from scratch it reaches a higher F1 "
    "than plain BCE (lossbench's reading: Su derives the loss and reports no result for it).",
    "f1_weighted_bce", "bce",
    own=("This claim's two methods train from scratch for the spec's epochs, with no second stage, on the preset's two "
         "multi-label sets only (Scene and the synthetic set; noted on 2026-12-07, after the runs, from a review): what "
         "follows of the fine-tuning recipe and of the long-tailed single-label sets concerns the other soft-F1 claims.",),
)

# --- Claim 8: clipping accelerates training --------------------------------------------------------

_CLIPPING_TARGET = (
    f"The target training loss is {TARGET_FRACTION} ln C (C classes; ln C is the loss of a uniform "
    "guess). For each final run the stored per-epoch training loss (the mean mini-batch loss of the epoch) gives "
    "the first epoch at or below the target; a run that never reaches it counts the run's epochs + 1. Per data "
    "set and clipped method (hard, smooth): "
)
_CLIPPING_T = (
    "a one-sided paired t-test over seeds of clipped - unclipped epochs "
    f"(direction 'less', alpha 0.05, equivalence margin {EPOCHS_DELTA:g} epoch)"
)
_CLIPPING_TEST = _CLIPPING_TARGET + _CLIPPING_T  # (the rule until 2026-12-05)
_CLIPPING_CENSORED = (
    "; where a run of the pair never reached the target its count is a lower bound, and the exact sign test of "
    "the differences' known signs replaces the t-test (an unknown sign counts against every hypothesis)"
)
_CLIPPING_SIGN = (
    "the exact sign test over seeds of clipped - unclipped epochs (direction 'less', alpha 0.05, equivalence "
    f"margin {EPOCHS_DELTA:g} epoch), every pair alike: a run that never reached the target gives a lower bound, "
    "and a seed whose difference's side is unknown counts against every hypothesis"
)
_CLIPPING_WORDS = (
    ". Holds when every one of these holds; contradicted when the opposite is shown on any after Holm's "
    "correction over them; equivalent when every one is equivalent; inconclusive otherwise"
)

register_claim(
    Claim(
        id="zhang-clipping-accelerates",
        title="Gradient clipping, hard or smooth, reaches a target training loss in fewer epochs",
        source="Zhang, He, Sra, Jadbabaie, 'Why gradient clipping accelerates training: a theoretical justification "
        "for adaptivity', ICLR 2020 (arXiv 1905.11881); Su Jianlin, kexue.fm/archives/7469 (smooth clipping)",
        url="https://kexue.fm/archives/7469",
        statement="Where the loss's smoothness grows with the gradient norm, clipped gradient descent reaches a "
        "given loss faster than plain gradient descent at its best fixed lr; Su's smooth clipping g c / (|g| + c) is "
        "within a factor 2 of hard clipping and shares the property.",
        kind="analysis",
        analysis=clipping_accelerates,
        protocol="clipping",
        budgets={
            "quick": Budget(
                {"trials": 4, "train.epochs": 12,
                 "datasets": [{"name": "digits"}, {"name": "letter", "max_train": 4000},
                              {"name": "mnist", "max_train": 4000}]},
                "4 of the 12 trials, 12 epochs instead of 30, Letter and MNIST capped at 4,000 training samples; the "
                "preset's 7 seeds (the sign test needs 5 to show the claim at alpha 0.05 and 7 to show its opposite "
                "after Holm's correction over the six comparisons)",
            ),
            "paper": Budget({}, "the preset as written: 12 trials, 7 seeds, 30 epochs, 20,000 MNIST training samples"),
        },
        rule_text=_CLIPPING_TARGET + _CLIPPING_SIGN + _CLIPPING_WORDS,
        # (until 2026-12-05, then until 2026-12-06: see the last two deviations)
        amended_from=(_CLIPPING_TEST + _CLIPPING_WORDS, _CLIPPING_TEST + _CLIPPING_CENSORED + _CLIPPING_WORDS),
        deviations=(
            "Zhang et al. train ResNet-20 on CIFAR-10 and AWD-LSTM on PTB; lossbench trains a two-hidden-layer ReLU MLP "
            "on digits, Letter and MNIST by plain SGD (no momentum, as the theorem's gradient descent, and as the "
            "torch.optim.SGD of the released code, github JingzhaoZhang/why-clipping-accelerates, which is the PTB "
            "experiment's measurement of smoothness against the gradient's norm, not the speed comparison re-run here) "
            "at a constant lr without weight decay.",
            "Each method's lr (and clipping threshold) is the one the bench chooses by validation accuracy after an "
            "equal number of trials, not the lr that reaches the target fastest: the study is an ordinary bench "
            "study, and the speed is then read from the final runs of that configuration. A method tuned for speed "
            "could be faster; so could the baseline.",
            "Speed is counted in epochs (every epoch has the same number of steps), read from the per-epoch mean "
            "mini-batch training loss the bench stores, not from the full-batch loss after each step.",
            "The rule for runs that never reach the target changed on 2026-12-05, after the first quick run: that "
            "run's verdict, contradicted, came from the paired t-test reading each such run's stand-in count (the "
            "epochs + 1) as its value: on MNIST smooth clipping's differences 2, 2, 2 were constant only because its "
            "third seed's run, which never reached the target, counted 13 (with 14 the cell was no longer "
            "significant). Those counts are lower bounds; the rule now tests their known signs. The quick run's stored "
            "curves were judged again under it (claims run, nothing retrained).",
            "On 2026-12-06 the protocol and the rule changed again, before the runs they judge: the preset had trained "
            "with momentum 0.9 (the source's code and theorem use none); and the rule had tested a pair by the t-test "
            "where both runs reached the target and by the sign test where one did not, so that a baseline that never "
            "reached it (the strongest case for the claim) gave a weaker word than one that just did, and three equal "
            "integer differences gave p = 0. Now every pair takes the sign test, and the preset and its quick budget "
            "run 7 seeds (5 before, 3 at the quick budget). The earlier quick run (momentum 0.9, 3 seeds: inconclusive) was replaced by a new one.",
            "Found by a review after the paper run (2026-12-06; the rule stays as it was applied): the rule's sign test "
            "counts a seed whose difference is 0 (a tie) against every hypothesis, as one whose side is unknown, where "
            "the usual exact sign test leaves ties out; and whole epochs meet the 1-epoch equivalence margin only where "
            "every seed ties. At the paper budget hard clipping on Letter was faster by one epoch on 6 seeds and tied "
            "on the 7th: p 0.0625, inconclusive (ties left out: 6 of 6, p 0.016, holds); on MNIST faster on 3 seeds and "
            "tied on 4 (inconclusive either way). The claim's word, contradicted by smooth clipping on Letter and "
            "MNIST, is the same under either reading.",
            "Found by a review on 2026-12-07, after the runs: with the same 12 trials, the clipped methods search a "
            "space one dimension larger (lr and a threshold drawn from 0.01 to 10, log scale) than 'none' (lr alone), "
            "so their chosen settings are less tuned, which works against them; and the choice is by validation "
            "accuracy, near-ties of which decide speed (MNIST smooth clipping's chosen trial, 0.9697, takes 14 epochs; "
            "trials at 0.967 and 0.9672 take 17 and 21). The contradiction is of clipping as tuned here, not of "
            "clipping at its best threshold. A per-case mean effect that counts runs which never reached the target "
            "(their epochs + 1) is a lower bound: Letter's smooth clipping +14.86 counts 5 of 7 such runs.",
        ),
    )
)

# --- Claim 10: MGS fine-tuning on batch accuracy ---------------------------------------------------

register_claim(
    Claim(
        id="mgs-finetune-accuracy",
        title="Fine-tuning with MGS on batch accuracy beats continuing cross-entropy in test accuracy",
        source="The MGS paper (arXiv 2006.03158); Su Jianlin's post on it, kexue.fm/archives/7521",
        url="https://kexue.fm/archives/7521",
        statement="From a model trained with a differentiable surrogate (cross-entropy), updates sampled around the "
        "surrogate's step and weighted by the batch metric itself (here accuracy) raise the metric more than "
        "continuing with the surrogate for the same steps.",
        protocol="mgs",
        metric="accuracy",
        treatment="ce_then_mgs",
        baseline="ce_then_ce",
        budgets={
            "quick": Budget(
                {"trials": 4, "seeds": 3, "train.epochs": 5,
                 "datasets": [{"name": "digits"}, {"name": "letter", "max_train": 4000},
                              {"name": "mnist", "max_train": 4000}]},
                "4 of the 12 trials, 3 seeds, 5 epochs before the 5 fine-tuning epochs instead of 20, Letter and MNIST "
                "capped at 4,000 training samples",
            ),
            "paper": Budget({}, "the preset as written: 12 trials, 5 seeds, 20 + 5 epochs, 20,000 MNIST training samples"),
        },
        rule=Rule("greater", alpha=0.05, delta=0.005),
        rule_text="Per data set: a one-sided paired t-test over seeds of MGS - cross-entropy test accuracy after the "
        "second stage; the claim is per data set and holds where it holds on every one ('equivalent' where neither "
        "direction is shown and the difference is shown to lie within half a point).",
        deviations=(
            "The source fine-tunes GPT-2 with sequence-level costs; lossbench trains a one-hidden-layer MLP with "
            "cross-entropy on digits, Letter and MNIST, then 5 epochs with MGS or with cross-entropy, both under the same "
            "restart (a fresh SGD with momentum at a tenth of the run's lr; the source steps its own fine-tuning "
            "optimizer with MGS's update).",
            "MGS as the released code takes its step (wellecks/mgs, seq_level/gpt2/guided/utils.py) and at its settings: "
            "4 candidates per step, noise 1 relative to each tensor's mean |g|, beta = 1 / alpha = 100, the gradient and "
            "the update clipped to norm 1, weights exp(-dcost / alpha) / q(D) with q the mixture at unit variance (see "
            "lossbench.train.mgs). The runs before 2026-12-06 used lossbench's earlier MGS, whose weights, "
            "exp(-dcost / alpha) N(D; 0, s^2) / q(D) around the optimizer's lr-scaled step, gave the guided candidates "
            "almost no weight where that step was longer than s, so that its update was cost-weighted noise (its "
            "verdict: contradicted, +2.31 [-0.84, +8.42]); the quick budget was re-run under the released code's MGS.",
            "lr and weight decay are searched for both methods with the same budget and chosen by validation "
            "accuracy; MGS's own settings are the released code's, not searched.",
            "Both methods are read after the fixed 5 fine-tuning epochs; the released code (guided/train.py) checks the "
            "validation cost during MGS fine-tuning, keeps the checkpoint with the best one and stops after 5 checks "
            "without improvement (noted on 2026-12-07, after the runs, from a review; its evaluation script, which "
            "would say whether the reported numbers come from that checkpoint, was not read).",
            "Each method is tuned apart, its cross-entropy stage included: the two fine-tunings start from models "
            "trained with different lr and weight decay (on Letter CE chose lr 0.11, MGS 0.46), so the difference "
            "mixes the first stage's tuning with the second stage's loss. Fine-tuning both from one tuned model is "
            "not built (the bench stores no models).",
            "Until 2026-12-06 the bench asked TPE for ce_then_mgs's tuning runs one at a time (MGS cannot pack, so TPE "
            "updated after each run) and for ce_then_ce's in batches of its start-up count (6 at once at the paper "
            "budget, 2 at the quick one): the two methods were tuned by different protocols. Both budgets' studies "
            "were deleted and run anew with both methods asked alike (their verdicts before: contradicted at both "
            "budgets, at the paper budget by letter, -1.50 [-1.63, -1.37] points; the quick budget's runs came out the same).",
        ),
    )
)
