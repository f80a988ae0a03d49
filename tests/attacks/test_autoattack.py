"""AutoAttack (tfadv.attacks.autoattack) and its native components (apgd.py, fab.py,
square.py) on the digits model: what they promise beyond the shared contract
(test_attack_contract.py runs the standard version).

Native versions: every component lowers accuracy inside the eps-ball, seeds and determinism,
the standard ensemble at least as strong as ART's APGD-CE alone, our APGD-CE beside ART's,
FAB's box-constrained projection against a linear program, Square's schedule, a bf16 model,
bad parameters. The ART version (``version="art"``): the eps-ball, at least PGD's strength,
loud sub-attack errors, the global NumPy RNG left alone. torchattacks' cross-check is in
test_autoattack_reference.py (slow, needs torch)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import tensorflow as tf

from helpers import DIGITS_SHAPE, correctly_classified, mixed_precision, tiny_cnn
from tfadv import attacks
from tfadv.attacks import apgd, fab, square
from tfadv.evaluation import predict

aa = importlib.import_module("tfadv.attacks.autoattack")  # tfadv.attacks exports the function

CHEAP_AUTOATTACK = dict(version="art", apgd_max_iter=10, nb_random_init=1,
                        deepfool_max_iter=10, square_max_iter=50, square_restarts=1)
# The standard version with small budgets: every component still runs.
CHEAP_STANDARD = dict(apgd_max_iter=10, n_target_classes=3, fab_max_iter=10,
                      square_max_iter=100)


def accuracy(model, x, y):
    return float(np.mean(predict(model, x) == y))


# --------------------------------------------------------------------------- native versions

@pytest.mark.parametrize("name", ["apgd-ce", "apgd-t", "fab-t", "square"])
def test_each_standard_component_lowers_accuracy_inside_the_ball(name, trained, model):
    x, y = correctly_classified(trained, 40, seed=1)
    eps = 0.1
    run = aa.components("standard", eps=eps, apgd_max_iter=10, nb_random_init=1, seed=0,
                        batch_size=64, jit_compile=False, n_target_classes=3,
                        fab_max_iter=10, square_max_iter=300)[name]
    x_adv, robust = run(model, x, y, np.arange(len(x)))
    assert x_adv.dtype == np.float32 and x_adv.shape == x.shape
    assert np.abs(x_adv - x).max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    # Each component alone fools most of these images at eps 0.1 (Square, score-based with
    # 300 queries, at least a third); the flags say which, and unfooled images stay clean.
    fooled = predict(model, x_adv) != y
    assert fooled.mean() >= (0.3 if name == "square" else 0.6)
    np.testing.assert_array_equal(fooled, ~robust)
    np.testing.assert_array_equal(x_adv[robust], x[robust])


def test_rand_version_with_eot_lowers_accuracy(trained, model):
    x, y = correctly_classified(trained, 30, seed=2)
    attack = attacks.make("autoattack", eps=0.1, version="rand", apgd_max_iter=5, eot_iter=2)
    x_adv = attack(model, x, y)
    assert np.abs(x_adv - x).max() <= 0.1 + 1e-7
    assert accuracy(model, x_adv, y) < 0.4
    assert attack.params["eot_iter"] == 2 and attack.params["version"] == "rand"


def test_standard_is_seeded_and_leaves_global_rngs_alone(trained, model):
    x, y = correctly_classified(trained, 20, seed=4)
    make = lambda seed: attacks.make("autoattack", eps=0.07, seed=seed, **CHEAP_STANDARD)
    np.random.seed(123)
    tf.random.set_seed(5)
    expected = np.random.random_sample(), tf.random.uniform([]).numpy()
    np.random.seed(123)
    tf.random.set_seed(5)
    first = make(0)(model, x, y)
    assert (np.random.random_sample(), tf.random.uniform([]).numpy()) == expected
    np.testing.assert_array_equal(make(0)(model, x, y), first)
    # Another seed: other random starts (APGD), so other adversarial images.
    assert not np.array_equal(make(1)(model, x, y), first)


def test_standard_at_least_as_strong_as_art_apgd_ce(trained, model):
    """The issue's target: the ensemble's robust accuracy <= ART's APGD-CE alone (same model,
    eps, images and iterations; ART's initial step 2 eps, the paper's)."""
    from art.attacks.evasion import AutoProjectedGradientDescent
    from tfadv.attacks.art_bridge import art_classifier, one_hot, seeded_numpy
    x, y = trained.test.images[:120], trained.test.labels[:120]
    eps = 0.07
    ours = attacks.make("autoattack", eps=eps, **dict(CHEAP_STANDARD, apgd_max_iter=20))
    art = AutoProjectedGradientDescent(art_classifier(model), norm=np.inf, eps=eps,
                                       eps_step=2 * eps, max_iter=20, nb_random_init=1,
                                       batch_size=120, loss_type="cross_entropy", verbose=False)
    with seeded_numpy(0):
        x_art = art.generate(x.copy(), one_hot(y, 10))
    ours_acc, art_acc = accuracy(model, ours(model, x, y), y), accuracy(model, x_art, y)
    assert ours_acc <= art_acc and ours_acc < accuracy(model, x, y) - 0.2


def test_apgd_ce_matches_art(trained, model):
    """Cross-check: our APGD-CE's robust accuracy within 2 points of ART's (all 360 digits
    test images, eps 0.07, 20 iterations, ART's initial step 2 eps)."""
    from art.attacks.evasion import AutoProjectedGradientDescent
    from tfadv.attacks.art_bridge import art_classifier, one_hot, seeded_numpy
    x, y = trained.test.images, trained.test.labels
    eps = 0.07
    ours = apgd.apgd(model, x, y, eps=eps, loss="ce", max_iter=20)
    art = AutoProjectedGradientDescent(art_classifier(model), norm=np.inf, eps=eps,
                                       eps_step=2 * eps, max_iter=20, nb_random_init=1,
                                       batch_size=360, loss_type="cross_entropy", verbose=False)
    with seeded_numpy(0):
        x_art = art.generate(x.copy(), one_hot(y, 10))
    ours_acc, art_acc = accuracy(model, ours, y), accuracy(model, x_art, y)
    assert abs(ours_acc - art_acc) <= 0.02, (ours_acc, art_acc)


def test_standard_on_a_bfloat16_model(trained, model):
    """The digits CNN built under mixed_bfloat16 (its network runs in bf16) with the trained
    weights: the losses run on float32 logits and the ensemble works as in float32."""
    with mixed_precision("mixed_bfloat16"):
        bf16 = tiny_cnn(num_classes=10, input_shape=DIGITS_SHAPE, width=8)
    bf16.set_weights(model.get_weights())
    assert bf16.get_layer("conv1").compute_dtype == "bfloat16"
    x, y = correctly_classified(trained, 20, seed=5)
    x_adv = attacks.make("autoattack", eps=0.1, **CHEAP_STANDARD)(bf16, x, y)
    assert x_adv.dtype == np.float32 and np.abs(x_adv - x).max() <= 0.1 + 1e-7
    assert accuracy(bf16, x_adv, y) < 0.4


def test_fab_projection_is_the_smallest_linf_move_onto_the_hyperplane_in_the_box():
    from scipy.optimize import linprog
    rng = np.random.default_rng(0)
    n, d = 40, 6
    t = rng.uniform(0, 1, (n, d)).astype(np.float32)
    w = rng.normal(size=(n, d)).astype(np.float32)
    w[:4, :2] = 0  # zero weights: those coordinates never move
    b = (np.sum(w * t, axis=1) + rng.normal(size=n)).astype(np.float32)
    moves = fab.projection_linf(tf.constant(t), tf.constant(w), tf.constant(b)).numpy()
    feasible = 0
    for i in range(n):  # min s subject to w.(t + m) = b, |m| <= s, 0 <= t + m <= 1
        box = [(-t[i, j], 1 - t[i, j]) for j in range(d)] + [(0, None)]
        limits = np.r_[np.c_[np.eye(d), -np.ones(d)], np.c_[-np.eye(d), -np.ones(d)]]
        lp = linprog(np.r_[np.zeros(d), 1.0], A_ub=limits, b_ub=np.zeros(2 * d),
                     A_eq=np.r_[w[i], 0.0][None], b_eq=[b[i] - w[i] @ t[i]], bounds=box)
        assert np.all(t[i] + moves[i] >= -1e-6) and np.all(t[i] + moves[i] <= 1 + 1e-6)
        assert np.all(moves[i][w[i] == 0] == 0)
        if lp.status == 0:
            feasible += 1
            assert w[i] @ (t[i] + moves[i]) == pytest.approx(b[i], abs=1e-4)
            assert np.abs(moves[i]).max() == pytest.approx(lp.x[-1], abs=1e-5)
    assert feasible >= n // 2


def test_square_window_schedule_is_the_reference():
    # 32x32: p 0.8 -> side round(sqrt(0.8 * 1024)) = 29, halved after iterations 10, 50, ...
    sides = square.window_sides(5000, 0.8, 32, 32)
    assert [sides[i] for i in (0, 10, 11, 50, 51, 200, 201, 500, 501, 1000, 1001, 2001,
                               4001)] == [29, 29, 20, 20, 14, 14, 10, 10, 7, 7, 5, 4, 3]
    assert square.window_sides(20, 0.8, 8, 8).max() == 7 and len(sides) == 5000


def test_row_uniform_depends_on_the_image_not_its_row():
    ids = tf.constant([7, 3, 7], tf.int64)
    u = apgd.row_uniform(tf.constant(0, tf.int64), ids, (1, 2), (4, 2)).numpy()
    assert u.shape == (3, 4, 2) and u.dtype == np.float32 and 0 <= u.min() and u.max() < 1
    np.testing.assert_array_equal(u[0], u[2])
    assert not np.array_equal(u[0], u[1])
    other = apgd.row_uniform(tf.constant(0, tf.int64), ids, (1, 3), (4, 2)).numpy()
    assert not np.array_equal(u, other)


@pytest.mark.parametrize("params,match", [
    (dict(version="plus"), "version"),
    (dict(apgd_max_iter=0), "apgd_max_iter"),
    (dict(n_target_classes=0), "n_target_classes"),
    (dict(fab_max_iter=1.5), "fab_max_iter"),
    (dict(square_max_iter=-1), "square_max_iter"),
    (dict(nb_random_init=True), "nb_random_init"),
    (dict(seed=-1), "seed"),
    (dict(batch_size=0), "batch_size"),
    (dict(jit_compile="yes"), "jit_compile"),
    (dict(deepfool_max_iter=10), "deepfool_max_iter does not apply to version='standard'"),
    (dict(eps_step=0.01), "eps_step does not apply"),
    (dict(eot_iter=5), "eot_iter does not apply to version='standard'"),
    (dict(version="rand", square_max_iter=10), "square_max_iter does not apply"),
    (dict(version="rand", n_target_classes=3), "n_target_classes does not apply"),
    (dict(version="art", fab_max_iter=10), "fab_max_iter does not apply"),
    (dict(version="art", jit_compile=True), "jit_compile"),
], ids=lambda v: str(v)[:40])
def test_bad_parameters_raise(params, match, trained, model):
    x, y = correctly_classified(trained, 2, seed=0)
    with pytest.raises(ValueError, match=match):
        attacks.make("autoattack", eps=0.1, **params)(model, x, y)


@pytest.mark.parametrize("call,match", [
    (lambda m, x, y: apgd.apgd(m, x, y, loss="kl"), "loss"),
    (lambda m, x, y: apgd.apgd(m, x, y, rho=1.5), "rho"),
    (lambda m, x, y: apgd.apgd(m, x, y, eot_iter=0), "eot_iter"),
    (lambda m, x, y: fab.fab_t(m, x, y, alpha_max=0), "alpha_max"),
    (lambda m, x, y: fab.fab_t(m, x, y, eta=-1), "eta"),
    (lambda m, x, y: square.square(m, x, y, p_init=2), "p_init"),
    (lambda m, x, y: square.square(m, x, y, max_queries=0), "max_queries"),
    (lambda m, x, y: apgd.apgd(m, x, y, y), "untargeted"),
    (lambda m, x, y: fab.fab_t(m, x, y, y), "untargeted"),
    (lambda m, x, y: square.square(m, x, y, y), "untargeted"),
])
def test_component_bad_parameters_raise(call, match, trained, model):
    x, y = correctly_classified(trained, 2, seed=0)
    with pytest.raises(ValueError, match=match):
        call(model, x, y)


def test_eps_zero_returns_the_images(trained, model):
    x, y = correctly_classified(trained, 4, seed=0)
    np.testing.assert_array_equal(attacks.make("autoattack", eps=0.0)(model, x, y), x)


# --------------------------------------------------------------------------- ART's version

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


@pytest.mark.parametrize("version", ["standard", "rand", "art"])
def test_autoattack_is_untargeted_only(version, trained, model):
    x, y = correctly_classified(trained, 4, seed=0)
    with pytest.raises(ValueError, match="untargeted"):
        attacks.make("autoattack", version=version)(model, x, y, (y + 1) % 10)


def test_art_version_keeps_its_defaults():
    params = attacks.make("autoattack", version="art").params
    assert params["version"] == "art" and params["apgd_max_iter"] == 100
    # None: the version's default (ART's 5 restarts, 100 DeepFool steps, 5,000 queries).
    assert aa._DEFAULTS["art"] == dict(nb_random_init=5, square_max_iter=5000,
                                       square_restarts=5, deepfool_max_iter=100,
                                       eps_step=None, batch_size=32)
