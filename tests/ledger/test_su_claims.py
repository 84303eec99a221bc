from __future__ import annotations

import pytest

from lossbench.ledger.analyses import FAR_COSINE, LATE_COSINE_MIN, judge_late_epochs
from lossbench.ledger.records import get_claim


def test_su_ce_late_reads_the_late_epochs_medians_not_the_last_epoch():
    """One epoch's cosine swings by 0.2 from the next: a high last epoch after low ones does not
    make the claim hold, nor a low last one after high ones contradict it."""
    ratios = [1.9, 1.3, 1.1, 1.05, 1.03, 1.02, 1.015, 1.01]
    low_then_high = [0.9, 0.7, 0.8, 0.95, 0.8, 0.95, 0.95, 0.999]  # late: 0.95, 0.999 -> median 0.9745
    assert judge_late_epochs(ratios, low_then_high) == ("inconclusive", 2, 1.0125, pytest.approx(0.9745))
    high_then_low = [0.9, 0.999, 0.999, 0.999, 0.999, 0.999, 0.999, 0.5]
    word, late, _, cosine = judge_late_epochs(ratios + [1.01] * 4, high_then_low + [0.999] * 3 + [0.5])
    assert (word, late) == ("holds", 3) and cosine >= LATE_COSINE_MIN


def test_su_ce_late_refuses_a_diverged_epoch_a_median_would_have_hidden():
    # (statistics.median puts a nan anywhere in its order: a diverged epoch was read as holds)
    with pytest.raises(ValueError, match=r"epoch 10's ratio is nan: the run diverged"):
        judge_late_epochs([2.0] * 9 + [float("nan"), 1.0, 1.05], [0.5] * 9 + [0.99, 0.995, 0.999])


@pytest.mark.parametrize(
    ("ratio", "cosine", "word"),
    [(1.01, LATE_COSINE_MIN, "holds"), (1.2, 0.999, "inconclusive"), (1.6, 0.999, "contradicted"),
     (1.01, FAR_COSINE - 0.01, "contradicted"), (1.01, FAR_COSINE, "inconclusive")],
)  # fmt: skip
def test_su_ce_late_words(ratio, cosine, word):
    assert judge_late_epochs([ratio] * 12, [cosine] * 12)[0] == word


# The quick run's per-epoch measurements (REPRODUCTIONS.md, su-ce-late, quick budget: 12 epochs)
QUICK_RATIOS = [1.9186, 1.3113, 1.1387, 1.0795, 1.0534, 1.0394, 1.0332, 1.0226, 1.0177, 1.0140, 1.0113, 1.0093]
QUICK_COSINES = [0.9061, 0.7113, 0.8694, 0.9212, 0.6973, 0.9719, 0.9365, 0.7764, 0.8124, 0.9407, 0.9328, 0.9394]


def test_su_ce_late_does_not_turn_on_where_a_short_run_ends():
    """Cut at any epoch after the first, the quick run's swinging cosines neither hold nor contradict the claim
    (with a threshold of 0.9 for the contradiction, ends at 2, 3, 5, 6, 8, 9 and 10 epochs contradicted it)."""
    words = {n: judge_late_epochs(QUICK_RATIOS[:n], QUICK_COSINES[:n])[0] for n in range(2, 13)}
    assert set(words.values()) == {"inconclusive"}, words


def test_su_ce_late_keeps_its_earlier_rules():
    claim = get_claim("su-ce-late")
    first, second = claim.amended_from
    assert "at the last epoch" in first and "medians" in second and "below 0.9;" in second
    assert claim.rule_text.replace(f"below {FAR_COSINE:g};", "below 0.9;") == second


def test_the_least_tuned_trick_names_each_of_a_tie():
    # (a tie named the first of TRICKS, flooding, as "least tuning" alone)
    from lossbench.ledger.analyses import TRICKS, least_tuning

    first, second, third = TRICKS
    assert least_tuning({first: 2.0, second: 2.0, third: 3.0}) == f"{first} and {second}"
    assert least_tuning({first: 3.0, second: float("nan"), third: 1.5}) == third
    assert least_tuning({m: float("nan") for m in TRICKS}) == "-"
