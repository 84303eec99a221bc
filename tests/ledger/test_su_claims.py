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


@pytest.mark.parametrize(
    ("ratio", "cosine", "word"),
    [(1.01, LATE_COSINE_MIN, "holds"), (1.2, 0.999, "inconclusive"), (1.6, 0.999, "contradicted"),
     (1.01, FAR_COSINE - 0.01, "contradicted"), (1.01, FAR_COSINE, "inconclusive")],
)  # fmt: skip
def test_su_ce_late_words(ratio, cosine, word):
    assert judge_late_epochs([ratio] * 12, [cosine] * 12)[0] == word


def test_su_ce_late_keeps_its_earlier_rule():
    claim = get_claim("su-ce-late")
    assert len(claim.amended_from) == 1 and "at the last epoch" in claim.amended_from[0]
    assert claim.rule_text != claim.amended_from[0] and "medians" in claim.rule_text
