"""JSMA (tfadv.attacks.jsma) on the digits model: the L0 budget, theta's direction, success,
agreement with a plain one-image reference implementation, bad parameters, and a
cross-check against ART's SaliencyMapMethod. The shared contract (shape, dtype, range, no
mutation, batching) is in test_attack_contract.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from helpers import DIGITS_SHAPE, correctly_classified
from tfadv import attacks
from tfadv.evaluation import predict

N_FEATURES = int(np.prod(DIGITS_SHAPE))  # 64


def l0(x_adv, x):
    return np.count_nonzero((x_adv != x).reshape(len(x), -1), axis=1)


def max_l0(gamma):
    return math.floor(gamma * N_FEATURES / 2) * 2


@pytest.mark.parametrize("gamma", [0.05, 0.2])
@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_jsma_l0_budget(gamma, targeted, trained, model):
    x, y = correctly_classified(trained, 20, seed=1)
    target = (y + 3) % 10 if targeted else None
    x_adv = attacks.make("jsma", theta=1.0, gamma=gamma)(model, x, y, target)
    counts = l0(x_adv, x)
    assert counts.max() <= max_l0(gamma)
    assert counts.max() > 0


@pytest.mark.parametrize("theta", [1.0, 0.5, -1.0, -0.5])
def test_jsma_changes_features_only_in_theta_direction(theta, trained, model):
    x, y = correctly_classified(trained, 20, seed=2)
    x_adv = attacks.make("jsma", theta=theta, gamma=0.2)(model, x, y)
    changed = x_adv != x
    assert changed.any()
    if theta > 0:
        assert np.all(x_adv >= x)
        expected = np.minimum(x + theta, 1.0)   # each changed feature moves by theta, clipped
    else:
        assert np.all(x_adv <= x)
        expected = np.maximum(x + theta, 0.0)
    np.testing.assert_allclose(x_adv[changed], expected[changed], atol=1e-6)


def test_jsma_untargeted_lowers_accuracy(trained, model):
    x, y = correctly_classified(trained, 60, seed=3)  # clean accuracy 1.0 on these
    x_adv = attacks.make("jsma", theta=1.0, gamma=0.1)(model, x, y)
    assert np.mean(predict(model, x_adv) == y) <= 0.3


def test_jsma_targeted_reaches_target(trained, model):
    x, y = correctly_classified(trained, 60, seed=4)
    target = (y + np.random.default_rng(0).integers(1, 10, len(y))) % 10
    x_adv = attacks.make("jsma", theta=1.0, gamma=0.3)(model, x, y, target)
    assert np.mean(predict(model, x_adv) == target) >= 0.6


def test_jsma_leaves_already_successful_images_unchanged(trained, model):
    x, y = correctly_classified(trained, 20, seed=6)
    wrong = (y + 1) % 10
    jsma = attacks.make("jsma", theta=1.0, gamma=0.2)
    # Untargeted with labels the model already gets wrong: nothing to do.
    np.testing.assert_array_equal(jsma(model, x, wrong), x)
    # Mixed batch: only the correctly classified half is perturbed.
    mixed = np.where(np.arange(len(y)) % 2 == 0, y, wrong)
    x_adv = jsma(model, x, mixed)
    np.testing.assert_array_equal(x_adv[1::2], x[1::2])
    assert np.all(l0(x_adv[::2], x[::2]) > 0)
    # Targeted at the class the model already predicts: nothing to do.
    np.testing.assert_array_equal(jsma(model, x, wrong, target=y), x)


def test_jsma_result_does_not_depend_on_steps_per_call(trained, model):
    # How many steps run inside one compiled call (between compactions) is a speed knob only.
    x, y = correctly_classified(trained, 12, seed=9)
    target = (y + 5) % 10
    runs = [attacks.make("jsma", theta=1.0, gamma=0.3, steps_per_call=s)(model, x, y, target)
            for s in (1, 3, 8)]
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])


def test_jsma_exact_pairs_not_worse_than_top_k(trained, model):
    x, y = correctly_classified(trained, 40, seed=7)
    target = (y + np.random.default_rng(1).integers(1, 10, len(y))) % 10

    def run(top_k):
        x_adv = attacks.make("jsma", theta=1.0, gamma=0.2, top_k=top_k)(model, x, y, target)
        return x_adv, np.mean(predict(model, x_adv) == target)

    exact, exact_rate = run(None)
    # With 64 features, top_k=64 keeps every feature: it is the exact search.
    np.testing.assert_array_equal(run(64)[0], exact)
    for top_k in (4, 8):
        assert exact_rate >= run(top_k)[1] - 0.1


def _reference_jsma(jacobian, x, cls, targeted, theta, gamma, saliency, others,
                    strict_pairs):
    """JSMA written plainly for one image: full Jacobian, every pair, no batching.

    Papernot et al.'s rule (``saliency="pairs"``): the pair maximising alpha * |beta| with
    alpha > 0 and beta < 0, alpha/beta the pair's summed gradients of the logit raised/lowered;
    where no pair qualifies, ``strict_pairs`` stops (the original algorithm), otherwise the pair
    with the largest positive alpha - beta is taken. ``saliency="margin"``: the two features
    with the largest gradient of the margin, stop when their sum is not positive. ``others``:
    the other classes' logit is their sum (the paper) or the largest of them ("max").
    ``jacobian(x)`` gives one image's logits and Jacobian, (classes,) and (classes, features).
    Returns the image and how many times no pair met Papernot's conditions.
    """
    shape, x = x.shape, x.ravel().copy()
    domain = x < 1.0 if theta > 0 else x > 0.0
    n, no_pair = x.size, 0
    for _ in range(math.floor(gamma * n / 2)):
        z, jac = (t.numpy() for t in jacobian(tf.constant(x.reshape((1,) + shape))))
        pred = int(np.argmax(z))
        if (pred == cls) if targeted else (pred != cls):
            break
        g_cls = jac[cls]
        if others == "sum":
            g_other = jac.sum(0) - jac[cls]
        else:
            g_other = jac[int(np.argmax(np.where(np.arange(len(z)) == cls, -np.inf, z)))]
        alpha, beta = (g_cls, g_other) if targeted else (g_other, g_cls)
        if theta < 0:  # lowering a feature flips the sign of its effect
            alpha, beta = -alpha, -beta
        if saliency == "margin":
            gain = np.where(domain, alpha - beta, -np.inf)
            p, q = np.argsort(gain)[-2:]
            if not gain[p] + gain[q] > 0:
                break
        else:
            a2, b2 = alpha[:, None] + alpha[None], beta[:, None] + beta[None]
            allowed = domain[:, None] & domain[None] & ~np.eye(n, dtype=bool)
            ok = allowed & (a2 > 0) & (b2 < 0)
            score = np.where(ok, a2 * -b2, -np.inf)
            if not ok.any():
                no_pair += 1
                ok = allowed & (a2 > b2)
                if strict_pairs or not ok.any():
                    break
                score = np.where(ok, a2 - b2, -np.inf)
            p, q = np.unravel_index(np.argmax(score), ok.shape)
        x[[p, q]] = np.clip(x[[p, q]] + theta, 0.0, 1.0)
        domain[[p, q]] = False
    return x.reshape(shape), no_pair


@pytest.fixture(scope="module")
def jacobian(model):
    @tf.function
    def logits_and_jacobian(x):  # x: one image, (1, H, W, C)
        with tf.GradientTape() as tape:
            tape.watch(x)
            z = model(x, training=False)[0]
        return z, tf.reshape(tape.jacobian(z, x), [tf.shape(z)[0], -1])
    return logits_and_jacobian


@pytest.mark.parametrize("targeted,theta,gamma,saliency,others,strict_pairs", [
    (True, 1.0, 0.2, "pairs", "sum", False),
    (True, 1.0, 0.2, "pairs", "max", False),
    (False, -1.0, 0.2, "pairs", "max", False),
    (False, 1.0, 0.2, "pairs", "sum", False),
    # Targeted with theta -1 on digits often runs out of pairs meeting both of Papernot's
    # conditions: these cases exercise both the original stop and the fallback pair.
    (True, -1.0, 0.5, "pairs", "sum", True),
    (True, -1.0, 0.5, "pairs", "sum", False),
    (True, 1.0, 0.3, "margin", "max", False),
    (False, -1.0, 0.2, "margin", "sum", False),
])
def test_jsma_matches_plain_reference_implementation(targeted, theta, gamma, saliency, others,
                                                     strict_pairs, trained, model, jacobian):
    x, y = correctly_classified(trained, 6, seed=8)
    target = (y + 3) % 10
    ours = attacks.make("jsma", theta=theta, gamma=gamma, saliency=saliency, others=others,
                        top_k=None, strict_pairs=strict_pairs)(
        model, x, y, target if targeted else None)
    no_pair = 0
    for i in range(len(x)):
        ref, events = _reference_jsma(jacobian, x[i], int(target[i] if targeted else y[i]),
                                      targeted, theta, gamma, saliency, others, strict_pairs)
        np.testing.assert_array_equal(ours[i], ref)
        no_pair += events
    if gamma == 0.5:
        assert no_pair > 0  # the no-pair branch was really taken


@pytest.mark.parametrize("params", [dict(theta=0.0), dict(theta=1.5), dict(theta=-2.0),
                                    dict(gamma=0.0), dict(gamma=-0.1), dict(gamma=1.5),
                                    dict(saliency="single"), dict(others="mean")])
def test_jsma_rejects_bad_params(params, model, batch):
    x, y = batch
    with pytest.raises(ValueError, match="theta|gamma|saliency|others"):
        attacks.make("jsma", **params)(model, x, y)


# --------------------------------------------------------------------------- ART cross-check

# Equal feature budgets. Ours changes at most floor(gamma * n / 2) * 2 features. ART's
# SaliencyMapMethod keeps going while (features changed) / n <= gamma, so it stops only after
# passing gamma: up to floor(gamma * n / 2) * 2 + 2 features. With n = 64 and ART's gamma 0.2
# that is 12 + 2 = 14 features (7 steps of 2); our gamma 14/64 = 0.21875 gives
# floor(7) * 2 = 14 too. So for each ART gamma we give ours gamma = (ART's budget) / n.
SUCCESS_TOLERANCE = 0.1   # ours may be at most 10 points below ART's success rate
L0_FACTOR = 1.5           # ours may change at most 1.5x ART's mean L0 (successful images)


def art_budget(gamma):
    return math.floor(gamma * N_FEATURES / 2) * 2 + 2


@pytest.fixture(scope="module")
def art_comparison(trained, model):
    """ART's JSMA and ours, targeted, theta 1, on the same 100 correctly classified test
    images with the same random targets, at ART gammas 0.1, 0.2, 0.3 (budgets 8, 14, 20)."""
    from art.attacks.evasion import SaliencyMapMethod
    from tfadv.attacks.art_bridge import art_classifier
    x, y = correctly_classified(trained, 100, seed=2)
    target = (y + np.random.default_rng(2).integers(1, 10, len(y))) % 10  # never y
    classifier = art_classifier(model)
    results = {}
    for art_gamma in (0.1, 0.2, 0.3):
        budget = art_budget(art_gamma)
        x_art = SaliencyMapMethod(classifier, theta=1.0, gamma=art_gamma, batch_size=len(x),
                                  verbose=False).generate(x.copy(), np.eye(10)[target])
        x_ours = attacks.make("jsma", theta=1.0, gamma=budget / N_FEATURES)(
            model, x, y, target)
        stats = {}
        for name, x_adv in (("art", x_art), ("ours", x_ours)):
            success = predict(model, x_adv) == target
            counts = l0(x_adv, x)
            stats[name] = dict(success=float(success.mean()),
                               mean_l0=float(counts[success].mean()),
                               max_l0=int(counts.max()))
        results[budget] = stats
    return results


@pytest.mark.parametrize("budget", [8, 14, 20])
def test_jsma_and_art_use_the_same_feature_budget(budget, art_comparison):
    stats = art_comparison[budget]
    assert stats["art"]["max_l0"] <= budget and stats["ours"]["max_l0"] <= budget, stats


@pytest.mark.parametrize("budget", [8, 14, 20])
def test_jsma_mean_l0_close_to_art(budget, art_comparison):
    stats = art_comparison[budget]
    assert stats["ours"]["mean_l0"] <= L0_FACTOR * stats["art"]["mean_l0"], stats


# Measured on this model and these 100 images (success rate / mean L0 of the successes):
#   budget   ART          ours, default (pairs, others="max")   ours, others="sum" (paper)
#        8   0.65 / 5.9   0.72 / 5.0                             0.52 / 6.3
#       14   0.92 / 7.6   0.87 / 6.0                             0.81 / 8.2
#       20   0.96 / 8.0   0.96 / 7.0                             0.92 / 9.3
# ART's saliency is simpler than Papernot's (the two features with the largest target-logit
# gradient, no condition on the other classes). Papernot's rule with the *sum* of the other
# logits misses the tolerance at budgets 8 and 14 here; the default, against the strongest
# other logit, meets it at every budget. The test checks the default.
@pytest.mark.parametrize("budget", [8, 14, 20])
def test_jsma_success_rate_at_least_arts(budget, art_comparison):
    stats = art_comparison[budget]
    assert stats["ours"]["success"] >= stats["art"]["success"] - SUCCESS_TOLERANCE, stats
