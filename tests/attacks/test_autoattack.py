"""AutoAttack (tfadv.attacks.autoattack) on the digits model: what it promises beyond the
shared contract (test_attack_contract.py): the eps-ball, at least PGD's strength, loud
sub-attack errors, the global NumPy RNG left alone, untargeted only."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import correctly_classified
from tfadv import attacks
from tfadv.evaluation import predict


CHEAP_AUTOATTACK = dict(apgd_max_iter=10, nb_random_init=1, deepfool_max_iter=10,
                        square_max_iter=50, square_restarts=1)


def test_autoattack_inside_eps_ball_and_at_least_as_strong_as_pgd(trained, model):
    x, y = correctly_classified(trained, 30, seed=3)
    eps = 0.1
    x_aa = attacks.make("autoattack", eps=eps, **CHEAP_AUTOATTACK)(model, x, y)
    assert np.abs(x_aa - x).max() <= eps + 1e-7
    x_pgd = attacks.make("pgd", eps=eps, eps_iter=eps / 4, nb_iter=10)(model, x, y)
    aa_rate, pgd_rate = np.mean(predict(model, x_aa) != y), np.mean(predict(model, x_pgd) != y)
    assert aa_rate >= pgd_rate - 0.05 and aa_rate > 0.3


def test_autoattack_sub_attack_errors_are_loud(trained, model, monkeypatch):
    """ART logs and skips a failing sub-attack in its targeted mode; ours must raise."""
    from art.attacks.evasion import SquareAttack

    def broken(self, *args, **kwargs):
        raise ValueError("square attack broke")

    monkeypatch.setattr(SquareAttack, "generate", broken)
    x, y = correctly_classified(trained, 4, seed=0)
    # eps so small that nothing is fooled before the Square attack gets its turn.
    with pytest.raises(ValueError, match="square attack broke"):
        attacks.make("autoattack", eps=1e-4, **CHEAP_AUTOATTACK)(model, x, y)


def test_autoattack_does_not_touch_global_numpy_rng(trained, model):
    x, y = correctly_classified(trained, 4, seed=0)
    np.random.seed(123)
    expected = np.random.random_sample()
    np.random.seed(123)
    attacks.make("autoattack", eps=0.05, **CHEAP_AUTOATTACK)(model, x, y)
    assert np.random.random_sample() == expected


def test_autoattack_is_untargeted_only(trained, model):
    x, y = correctly_classified(trained, 4, seed=0)
    with pytest.raises(ValueError, match="untargeted"):
        attacks.make("autoattack")(model, x, y, (y + 1) % 10)
