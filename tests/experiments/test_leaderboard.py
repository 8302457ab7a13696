"""leaderboard: the exact McNemar test and Holm's correction on cases with known answers."""

import pytest

from mnistlab.experiments import leaderboard as lb


# ---- statistics with known answers -------------------------------------------------------
def test_mcnemar_exact_known_values():
    # 10 discordant pairs split 1 / 9: two-sided exact p = 2 * (C(10,0) + C(10,1)) / 2**10
    assert lb.mcnemar(1, 9) == pytest.approx(22 / 1024, rel=1e-12)
    assert lb.mcnemar(9, 1) == pytest.approx(22 / 1024, rel=1e-12)
    assert lb.mcnemar(5, 5) == pytest.approx(1.0)
    assert lb.mcnemar(0, 0) == 1.0  # no disagreement: no evidence of any difference
    assert lb.mcnemar(0, 20) == pytest.approx(2 * 0.5**20, rel=1e-12)


def test_holm_known_values():
    assert lb.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # monotone step-down: a smaller raw p never gets a larger adjusted p; capped at 1
    assert lb.holm([0.2, 0.001, 0.5, 0.9]) == pytest.approx([0.6, 0.004, 1.0, 1.0])
    assert lb.holm([]) == []
