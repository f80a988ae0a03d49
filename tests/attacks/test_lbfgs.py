"""L-BFGS (tfadv.attacks.lbfgs) on the digits model: what it promises beyond the shared
contract (test_attack_contract.py): targeted success with a near-minimal L2, closeness to
C&W L2, the failed search, bad parameters."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import correctly_classified
from tfadv import attacks
from tfadv.evaluation import predict


def l2(x_adv, x):
    return np.linalg.norm((x_adv.astype(np.float64) - x).reshape(len(x), -1), axis=1)


def test_lbfgs_targeted_reaches_target_with_small_l2(trained, model):
    x, y = correctly_classified(trained, 6, seed=2)
    target = (y + 3) % 10
    x_adv = attacks.make("lbfgs", max_iter=30)(model, x, y, target)
    hit = predict(model, x_adv) == target
    assert hit.mean() >= 0.9
    # Close to minimal: a third of the perturbation no longer reaches the target.
    third = x + (x_adv - x) / 3
    assert np.mean(predict(model, third)[hit] == target[hit]) <= 0.2


def test_lbfgs_untargeted_and_close_to_cw_l2(trained, model):
    x, y = correctly_classified(trained, 6, seed=4)
    x_lbfgs = attacks.make("lbfgs", max_iter=30)(model, x, y)
    x_cw = attacks.make("cw_l2", binary_search_steps=6, max_iterations=300)(model, x, y)
    fooled_lbfgs, fooled_cw = predict(model, x_lbfgs) != y, predict(model, x_cw) != y
    assert fooled_lbfgs.mean() >= 0.9 and fooled_cw.mean() >= 0.9
    both = fooled_lbfgs & fooled_cw
    # Both minimise L2; C&W's margin loss is the better objective but L-BFGS is not far off.
    assert l2(x_lbfgs, x)[both].mean() <= 2.0 * l2(x_cw, x)[both].mean()


def test_lbfgs_returns_image_unchanged_when_the_search_fails(trained, model):
    x, y = correctly_classified(trained, 3, seed=5)
    # One tiny c: the distance term wins, the minimiser stays at x, no success.
    out = attacks.make("lbfgs", initial_const=1e-9, max_const_steps=1)(model, x, y)
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("params", [dict(initial_const=0), dict(max_const_steps=0),
                                    dict(max_iter=1.5), dict(binary_search_steps=-1)])
def test_lbfgs_rejects_bad_params(params, model, trained):
    x, y = correctly_classified(trained, 2, seed=0)
    with pytest.raises(ValueError, match=list(params)[0]):
        attacks.make("lbfgs", **params)(model, x, y)
