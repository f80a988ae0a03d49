"""Iterative Linf attacks (BIM, PGD, MI-FGSM) and R+FGSM (tfadv.attacks.bim, pgd, mifgsm, rfgsm)
on the digits model: agreement with cleverhans, eps-balls over an eps sweep, seeded randomness,
and strength against FGSM. The shared contract (shape, dtype, range, no mutation, batching) is
in test_attack_contract.py."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from helpers import correctly_classified
from tfadv import attacks
from tfadv.attacks import validation
from tfadv.evaluation import predict

LINF = ("bim", "pgd", "mifgsm", "rfgsm")


@pytest.fixture(scope="module")
def batch(trained):
    return trained.test.images[:40].copy(), trained.test.labels[:40].copy()


def linf(x_adv, x):
    return np.abs(x_adv.astype(np.float64) - x).max()


def params(name, eps):
    return dict(eps=eps) if name == "rfgsm" else dict(eps=eps, eps_iter=0.01, nb_iter=5)


@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_bim_and_pgd_without_random_start_equal_cleverhans(targeted, model, batch):
    from cleverhans.tf2.attacks.basic_iterative_method import basic_iterative_method
    from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent
    x, y = batch
    labels = (y + 1) % 10 if targeted else y
    target = labels if targeted else None
    kw = dict(eps=0.1, eps_iter=0.02, nb_iter=7)
    direct_bim = basic_iterative_method(
        model, tf.constant(x), kw["eps"], kw["eps_iter"], kw["nb_iter"], np.inf, clip_min=0.0,
        clip_max=1.0, y=tf.constant(labels), targeted=targeted, sanity_checks=False).numpy()
    direct_pgd = projected_gradient_descent(
        model, tf.constant(x), kw["eps"], kw["eps_iter"], kw["nb_iter"], np.inf, clip_min=0.0,
        clip_max=1.0, y=tf.constant(labels), targeted=targeted, rand_init=False).numpy()
    ours_bim = attacks.make("bim", **kw)(model, x, y, target)
    ours_pgd = attacks.make("pgd", **kw, rand_init=False)(model, x, y, target)
    np.testing.assert_allclose(ours_bim, direct_bim, atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours_pgd, direct_pgd, atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours_pgd, ours_bim, atol=1e-6, rtol=0)


def test_mifgsm_equals_cleverhans(model, batch):
    from cleverhans.tf2.attacks.momentum_iterative_method import momentum_iterative_method
    x, y = batch
    direct = momentum_iterative_method(
        model, tf.constant(x), 0.1, 0.02, 5, np.inf, clip_min=0.0, clip_max=1.0,
        y=tf.constant(y), decay_factor=0.5).numpy()
    ours = attacks.make("mifgsm", eps=0.1, eps_iter=0.02, nb_iter=5, decay_factor=0.5)(
        model, x, y)
    np.testing.assert_allclose(ours, direct, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", LINF)
@pytest.mark.parametrize("eps", [0.0, 0.001, 0.01, 0.1])
def test_eps_sweep_never_crashes_and_respects_the_ball(name, eps, model, batch):
    # eps_iter 0.01 > eps at the small end: cleverhans itself would assert here.
    x, y = batch
    for target in (None, "least_likely"):
        x_adv = attacks.make(name, **params(name, eps))(model, x, y, target)
        assert x_adv.dtype == np.float32 and x_adv.shape == x.shape
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
        assert linf(x_adv, x) <= eps + 1e-6
        if eps == 0:
            np.testing.assert_array_equal(x_adv, x)
        else:
            assert linf(x_adv, x) > 0


def test_pgd_eps_iter_is_clamped_to_eps(model, batch):
    x, y = batch
    clamped = attacks.make("pgd", eps=0.005, eps_iter=0.05, nb_iter=3, rand_init=False)
    explicit = attacks.make("pgd", eps=0.005, eps_iter=0.005, nb_iter=3, rand_init=False)
    np.testing.assert_array_equal(clamped(model, x, y), explicit(model, x, y))
    assert clamped.params["eps_iter"] == 0.05  # the record keeps what the caller asked for


@pytest.mark.parametrize("name,seeded", [("pgd", dict(rand_init=True)), ("rfgsm", {})])
def test_seeded_randomness(name, seeded, model, batch):
    x, y = batch
    kw = {**params(name, 0.1), **seeded}
    a = attacks.make(name, **kw, seed=1)(model, x, y)
    b = attacks.make(name, **kw, seed=1)(model, x, y)
    c = attacks.make(name, **kw, seed=2)(model, x, y)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # The TF global seed plays no part.
    tf.random.set_seed(123)
    np.testing.assert_array_equal(attacks.make(name, **kw, seed=1)(model, x, y), a)


def test_pgd_random_start_differs_from_bim_start(model, batch):
    x, y = batch
    kw = dict(eps=0.1, eps_iter=0.02, nb_iter=3)
    assert not np.array_equal(attacks.make("pgd", **kw)(model, x, y),
                              attacks.make("pgd", **kw, rand_init=False)(model, x, y))
    assert attacks.make("pgd", **kw).params["rand_init"] is True


@pytest.fixture(scope="module")
def clean(trained):
    x, y = correctly_classified(trained, 100, seed=11)  # clean accuracy 1.0 on these
    return x, y


@pytest.mark.parametrize("name", ["bim", "pgd", "mifgsm"])
def test_iterative_attacks_at_least_as_strong_as_fgsm(name, model, clean):
    # Measured: accuracy 0.28 after FGSM, 0.18 BIM, 0.20 PGD, 0.19 MI-FGSM (eps 0.1).
    x, y = clean
    eps = 0.1
    acc_fgsm = np.mean(predict(model, attacks.make("fgsm", eps=eps)(model, x, y)) == y)
    x_adv = attacks.make(name, eps=eps, eps_iter=eps / 5, nb_iter=10)(model, x, y)
    acc = np.mean(predict(model, x_adv) == y)
    assert acc <= acc_fgsm + 0.02, (name, acc, acc_fgsm)


def test_mifgsm_lowers_accuracy(model, clean):
    x, y = clean
    x_adv = attacks.make("mifgsm", eps=0.1, nb_iter=10)(model, x, y)
    assert np.mean(predict(model, x_adv) == y) <= 0.5
    assert linf(x_adv, x) <= 0.1 + 1e-6


def test_bim_targeted_least_likely_reaches_target(model, clean):
    x, y = clean
    target = validation.resolve_target(model, x, "least_likely")
    # Measured on these 100 images: 0.52 at eps 0.2, 0.82 at eps 0.25, 0.97 at eps 0.3.
    x_adv = attacks.make("bim", eps=0.25, eps_iter=0.025, nb_iter=20)(
        model, x, y, "least_likely")
    assert np.mean(predict(model, x_adv) == target) >= 0.6


def test_rfgsm_lowers_accuracy_and_alpha_controls_the_random_step(model, clean):
    x, y = clean
    x_adv = attacks.make("rfgsm", eps=0.1)(model, x, y)
    assert linf(x_adv, x) <= 0.1 + 1e-6
    assert np.mean(predict(model, x_adv) == y) < 0.9
    assert attacks.make("rfgsm", eps=0.1).params["alpha"] is None  # None: eps / 2
    np.testing.assert_array_equal(x_adv, attacks.make("rfgsm", eps=0.1, alpha=0.05)(model, x, y))
    # alpha 0 is plain FGSM.
    np.testing.assert_allclose(attacks.make("rfgsm", eps=0.1, alpha=0.0)(model, x, y),
                               attacks.make("fgsm", eps=0.1)(model, x, y), atol=1e-6, rtol=0)


def test_rfgsm_rejects_alpha_above_eps(model, batch):
    x, y = batch
    with pytest.raises(ValueError, match="alpha"):
        attacks.make("rfgsm", eps=0.1, alpha=0.2)(model, x, y)


@pytest.mark.parametrize("name,bad", [
    ("bim", dict(eps=-0.1, eps_iter=0.01)), ("bim", dict(eps=0.1, eps_iter=-0.01)),
    ("pgd", dict(eps=-0.1, eps_iter=0.01)), ("pgd", dict(eps=0.1, eps_iter=-0.01)),
    ("mifgsm", dict(eps=-0.1)), ("mifgsm", dict(eps=0.1, eps_iter=-0.01)),
    ("rfgsm", dict(eps=-0.1)), ("rfgsm", dict(eps=0.1, alpha=-0.01)),
])
def test_negative_budgets_rejected_at_make(name, bad):
    with pytest.raises(ValueError, match="eps|alpha"):
        attacks.make(name, **bad)


@pytest.mark.parametrize("name,bad", [
    ("bim", dict(nb_iter=0)), ("pgd", dict(nb_iter=2.5)), ("mifgsm", dict(nb_iter=-1)),
    ("mifgsm", dict(decay_factor=-1.0)),
])
def test_bad_iteration_params_rejected(name, bad, model, batch):
    x, y = batch
    with pytest.raises(ValueError, match="nb_iter|decay_factor"):
        attacks.make(name, **{**params(name, 0.1), **bad})(model, x, y)
