"""The re-run of Table 1's scikit-learn column: the paper's draws and the record's rule."""

from __future__ import annotations

import random

import pytest

from lossbench.ledger.records import get_claim
from lossbench.ledger.sklearn_baseline import judge, paper_draws


def test_the_draws_are_the_codes_random_choices_in_grid_order():
    draws = paper_draws()
    random.seed(0)  # the paper's hopt: random.seed(args.seed), one random.choice per parameter
    expected = [(random.choice(list(range(10))), random.choice([0, 0.0001, 0.001, 0.01, 0.1, 1])) for _ in range(20)]
    assert draws == expected


@pytest.mark.parametrize(
    ("ours", "word"),
    [
        ({"a": 90.2, "b": 95.1}, "holds"),  # mean within 0.5, every set within 1
        ({"a": 91.3, "b": 94.0}, "inconclusive"),  # mean within 1 but a set 1.3 off
        ({"a": 92.0, "b": 96.5}, "contradicted"),  # mean 1.75 off
    ],
)
def test_the_rule_gives_each_word(ours, word):
    assert judge(ours, {"a": 90.0, "b": 95.0}, 92.5)[0] == word


def test_the_claim_is_an_analysis_with_its_rule_written_out():
    claim = get_claim("exact-table1-sklearn")
    assert claim.kind == "analysis" and "0.5 points" in claim.rule_text



def test_a_fit_warns_of_nothing_but_non_convergence(recwarn, monkeypatch):
    """Only lbfgs's convergence warnings are silenced: a deprecation (penalty=None's, say) reaches the user."""
    import warnings

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from lossbench.ledger.sklearn_baseline import _fit_score

    gen = np.random.default_rng(0)
    x, y = gen.normal(size=(60, 4)), np.arange(60) % 3
    warnings.simplefilter("always")
    for reg in (0, 0.01):  # (no penalty as C = inf: no FutureWarning from scikit-learn 1.8 on)
        train, held = _fit_score(x, y, [(x, y), (x[:10], y[:10])], 0, reg)
        assert 0 <= held <= 1 and train > 0.3
    assert [str(w.message) for w in recwarn.list] == []
    fit = LogisticRegression.fit

    def deprecated_fit(self, *args, **kwargs):
        warnings.warn("made up deprecation", FutureWarning, stacklevel=2)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", deprecated_fit)
    with pytest.warns(FutureWarning, match="made up"):  # (a filter for every warning swallowed it)
        _fit_score(x, y, [(x, y)], 0, 0.01)
