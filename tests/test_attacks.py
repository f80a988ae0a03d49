"""Attacks: the shared contract (every registered attack), FGSM, JSMA, ART cross-check, and
the validation layer. All on a tiny CNN trained on scikit-learn's 8x8 digits (offline)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import DIGITS_SHAPE, correctly_classified
from tfadv import attacks
from tfadv.attacks import validation
from tfadv.evaluation import predict, predict_logits

N_FEATURES = int(np.prod(DIGITS_SHAPE))  # 64

# Default hyperparameters of each registered attack for the contract tests. A new attack in
# tfadv.attacks.ATTACKS must get an entry here (test_every_attack_has_default_params).
DEFAULT_PARAMS = {
    "fgsm": dict(eps=0.1),
    "bim": dict(eps=0.1, eps_iter=0.02, nb_iter=5),
    "pgd": dict(eps=0.1, eps_iter=0.02, nb_iter=5),
    "mifgsm": dict(eps=0.1, nb_iter=5),
    "rfgsm": dict(eps=0.1),
    "jsma": dict(theta=1.0, gamma=0.2),
    "deepfool": dict(),
    "cw_l2": dict(binary_search_steps=3, max_iterations=50, initial_const=1.0),
    "cw_linf": dict(max_iterations=40, max_rounds=12),
    "cw_l0": dict(binary_search_steps=3, max_iterations=40, initial_const=0.1, max_rounds=5),
    "lbfgs": dict(max_iter=20, binary_search_steps=2),
    "uap": dict(eps=0.3, max_iter=2),
    "autoattack": dict(eps=0.1, apgd_max_iter=5, nb_random_init=1, deepfool_max_iter=5,
                       square_max_iter=20, square_restarts=1),
}

# Attacks that have no targeted form: given a target they raise ValueError.
UNTARGETED_ONLY = {"deepfool", "uap", "autoattack"}

# Attacks fitted on the whole batch they are given (one universal perturbation): an image's
# result depends on the other images of the call, though not on the internal batch size.
BATCH_FITTED = {"uap"}


@pytest.fixture(scope="module")
def batch(trained):
    """10 test images (some may be misclassified: the attacks must cope) and their labels."""
    return trained.test.images[:10].copy(), trained.test.labels[:10].copy()


def l0(x_adv, x):
    return np.count_nonzero((x_adv != x).reshape(len(x), -1), axis=1)


def ce_loss(model, x, labels):
    logits = model(tf.constant(x), training=False)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")(
        labels, logits).numpy()


# --------------------------------------------------------------------------- the contract

def test_every_attack_has_default_params():
    assert set(attacks.ATTACKS) <= set(DEFAULT_PARAMS), (
        f"add default test params for {sorted(set(attacks.ATTACKS) - set(DEFAULT_PARAMS))}")


@pytest.mark.parametrize("name", sorted(attacks.ATTACKS))
@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_contract_shape_dtype_range_no_mutation_determinism(name, targeted, model, batch):
    x, y = batch
    target = (y + 1) % 10 if targeted else None
    x_before, y_before = x.copy(), y.copy()
    attack = attacks.make(name, **DEFAULT_PARAMS[name])
    if targeted and name in UNTARGETED_ONLY:
        with pytest.raises(ValueError, match="untargeted"):
            attack(model, x, y, target)
        np.testing.assert_array_equal(x, x_before)
        return
    out = attack(model, x, y, target)
    assert isinstance(out, np.ndarray)
    assert out.shape == x.shape
    assert out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(x, x_before)          # the caller's arrays are untouched
    np.testing.assert_array_equal(y, y_before)
    assert not np.shares_memory(out, x)
    assert not np.array_equal(out, x)                   # it did attack something
    np.testing.assert_array_equal(attack(model, x, y, target), out)  # deterministic


@pytest.mark.parametrize("name", sorted(attacks.ATTACKS))
def test_contract_tensor_input(name, model, batch):
    x, y = batch
    attack = attacks.make(name, **DEFAULT_PARAMS[name])
    x_t, y_t = tf.constant(x), tf.constant(y)
    out = attack(model, x_t, y_t)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(x_t.numpy(), x)
    np.testing.assert_array_equal(out, attack(model, x, y))


@pytest.mark.parametrize("name", sorted(attacks.ATTACKS))
def test_contract_batch_of_one_and_uneven_batches(name, model, batch):
    x, y = batch
    whole = attacks.make(name, **DEFAULT_PARAMS[name], batch_size=256)(model, x, y)
    # 10 images in internal batches of 3: the last batch holds a single image.
    uneven = attacks.make(name, **DEFAULT_PARAMS[name], batch_size=3)(model, x, y)
    np.testing.assert_array_equal(uneven, whole)
    single = attacks.make(name, **DEFAULT_PARAMS[name])(model, x[:1], y[:1])
    assert single.shape == (1,) + DIGITS_SHAPE
    if name not in BATCH_FITTED:
        np.testing.assert_array_equal(single, whole[:1])


@pytest.mark.parametrize("name", sorted(attacks.ATTACKS))
def test_contract_empty_batch(name, model):
    x = np.zeros((0,) + DIGITS_SHAPE, np.float32)
    out = attacks.make(name, **DEFAULT_PARAMS[name])(model, x, np.zeros(0, np.int64))
    assert out.shape == x.shape and out.dtype == np.float32


# --------------------------------------------------------------------------- FGSM

@pytest.mark.parametrize("eps", [0.0, 0.01, 0.1, 0.3])
def test_fgsm_stays_in_eps_ball(eps, model, batch):
    x, y = batch
    x_adv = attacks.make("fgsm", eps=eps)(model, x, y)
    assert np.abs(x_adv - x).max() <= eps + 1e-6
    if eps == 0:
        np.testing.assert_array_equal(x_adv, x)


def test_fgsm_equals_hand_computed_reference_and_cleverhans(trained, model):
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
    x, y, eps = trained.test.images[:40], trained.test.labels[:40], 0.1
    x_adv = attacks.make("fgsm", eps=eps)(model, x, y)
    # Reference: x + eps * sign(d CE(y, f(x)) / dx), clipped to [0, 1].
    x_t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")(
            y, model(x_t, training=False))
    grad = tape.gradient(loss, x_t).numpy()
    assert np.all(grad != 0)  # sign(0) would hide a wrong sign convention
    np.testing.assert_array_equal(x_adv, np.clip(x + eps * np.sign(grad), 0.0, 1.0))
    direct = fast_gradient_method(model, x_t, eps, np.inf, clip_min=0.0, clip_max=1.0,
                                  y=tf.constant(y)).numpy()
    assert np.array_equal(x_adv, direct)
    # And it is an attack: the true-class loss goes up, accuracy goes down.
    assert np.mean(ce_loss(model, x_adv, y) > ce_loss(model, x, y)) >= 0.95
    assert np.mean(predict(model, x_adv) == y) < np.mean(predict(model, x) == y) - 0.3


def test_fgsm_targeted_lowers_target_loss(trained, model):
    x, y = correctly_classified(trained, 40, seed=5)
    target = (y + 1 + np.arange(len(y)) % 9) % 10  # never the true class
    x_adv = attacks.make("fgsm", eps=0.05)(model, x, y, target)
    before, after = ce_loss(model, x, target), ce_loss(model, x_adv, target)
    assert after.mean() < before.mean()
    assert np.mean(after < before) >= 0.9
    # Targeted uses the target, not y: it differs from the untargeted attack.
    assert not np.array_equal(x_adv, attacks.make("fgsm", eps=0.05)(model, x, y))


def test_target_strategies_resolve_to_least_likely_classes(trained, model):
    x, y = trained.test.images[:30], trained.test.labels[:30]
    order = np.argsort(np.asarray(model(tf.constant(x), training=False)), axis=1)  # ascending
    least = validation.resolve_target(model, x, "least_likely")
    top5 = validation.resolve_target(model, x, "least_likely_top5")
    np.testing.assert_array_equal(least, order[:, 0])
    np.testing.assert_array_equal(top5, order[:, -5])  # the 5th most likely class
    assert least.dtype == np.int64 and top5.dtype == np.int64
    assert np.all(top5 != order[:, -1])
    assert validation.resolve_target(model, x, None) is None
    # The attack resolves the name the same way.
    fgsm = attacks.make("fgsm", eps=0.05)
    np.testing.assert_array_equal(fgsm(model, x, y, "least_likely"), fgsm(model, x, y, least))
    np.testing.assert_array_equal(fgsm(model, x, y, "least_likely_top5"),
                                  fgsm(model, x, y, top5))


# --------------------------------------------------------------------------- JSMA

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


# --------------------------------------------------------------------------- validation

def _ok_batch(trained):
    return trained.test.images[:4].copy(), trained.test.labels[:4].copy()


def _with(x, index, value):
    x = x.copy()
    x[index] = value
    return x


@pytest.mark.parametrize("name", sorted(attacks.ATTACKS))
@pytest.mark.parametrize("case", [
    "nan", "inf", "negative", "above_one", "rank3", "channels", "height_width"])
def test_validation_rejects_bad_images(name, case, trained, model):
    x, y = _ok_batch(trained)
    bad, match = {
        "nan": (_with(x, (0, 0, 0, 0), np.nan), "NaN"),
        "inf": (_with(x, (1, 2, 3, 0), np.inf), "Inf"),
        "negative": (_with(x, (0, 1, 1, 0), -0.01), r"\[0, 1\]"),
        "above_one": (_with(x, (2, 1, 1, 0), 1.01), r"\[0, 1\]"),
        "rank3": (x[0], "rank 4"),
        "channels": (np.repeat(x, 3, axis=-1), "model takes"),
        "height_width": (np.zeros((4, 9, 9, 1), np.float32), "model takes"),
    }[case]
    bad_before = np.array(bad, copy=True)
    with pytest.raises(ValueError, match=match):
        attacks.make(name, **DEFAULT_PARAMS[name])(model, bad, y[:len(bad)] if bad.ndim == 4
                                                   else y[:1])
    np.testing.assert_array_equal(bad, bad_before)


@pytest.mark.parametrize("name", sorted(attacks.ATTACKS))
@pytest.mark.parametrize("labels,match", [
    ([0, 1, -1, 2], r"\[0, 9\]"),
    ([0, 1, 10, 2], r"\[0, 9\]"),
    ([0, 1, 2], r"shape \(4,\)"),
    ([0, 1, 2, 3, 4], r"shape \(4,\)"),
    ([[0], [1], [2], [3]], r"shape \(4,\)"),
    ([0.0, 1.5, 2.0, 3.0], "integer"),
], ids=["negative", "too_large", "too_short", "too_long", "column", "non_integer"])
def test_validation_rejects_bad_labels(name, labels, match, trained, model):
    x, _ = _ok_batch(trained)
    with pytest.raises(ValueError, match=match):
        attacks.make(name, **DEFAULT_PARAMS[name])(model, x, np.array(labels))


def test_validation_accepts_integer_valued_float_labels(trained, model):
    x, y = _ok_batch(trained)
    fgsm = attacks.make("fgsm", eps=0.1)
    np.testing.assert_array_equal(fgsm(model, x, y.astype(np.float32)), fgsm(model, x, y))


@pytest.mark.parametrize("name", sorted(attacks.ATTACKS))
@pytest.mark.parametrize("target,match", [
    ("most_likely", "unknown target strategy"),
    (np.array([0, 1, 2, 10]), r"target must lie in \[0, 9\]"),
    (np.array([0, 1, 2, -1]), r"target must lie in \[0, 9\]"),
    (np.array([0, 1]), r"target must have shape \(4,\)"),
], ids=["unknown_strategy", "too_large", "negative", "wrong_length"])
def test_validation_rejects_bad_targets(name, target, match, trained, model):
    x, y = _ok_batch(trained)
    with pytest.raises(ValueError, match=match):
        attacks.make(name, **DEFAULT_PARAMS[name])(model, x, y, target)


@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf")])
def test_make_rejects_bad_eps(eps):
    with pytest.raises(ValueError, match="eps"):
        attacks.make("fgsm", eps=eps)


def test_make_rejects_unknown_attack():
    with pytest.raises(ValueError, match="unknown attack 'no_such_attack'"):
        attacks.make("no_such_attack", eps=0.1)


@pytest.mark.parametrize("name", sorted(attacks.ATTACKS))
def test_validation_rejects_model_returning_probabilities(name, trained, model):
    softmax_model = keras.Sequential([model, keras.layers.Softmax()])
    x, y = _ok_batch(trained)
    # The model itself still works; only the attack refuses it.
    probs = predict_logits(softmax_model, x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="probabilities.*logits"):
        attacks.make(name, **DEFAULT_PARAMS[name])(softmax_model, x, y)


def test_make_records_every_hyperparameter_defaults_included():
    """Experiments key their caches on ``attack.params``: a default that changes must change
    the key instead of silently reusing adversarial images made the old way."""
    import inspect
    jsma = attacks.make("jsma", theta=1.0, gamma=0.1)
    signature = inspect.signature(attacks.ATTACKS["jsma"])
    defaults = {k: p.default for k, p in signature.parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert jsma.params == {**defaults, "theta": 1.0, "gamma": 0.1}
    assert attacks.make("fgsm", eps=0.02).params["eps"] == 0.02
    assert attacks.make("jsma", theta=1.0, gamma=0.1, top_k=32).params != jsma.params
