"""FGSM (tfadv.attacks.fgsm) on the digits model: the eps-ball, agreement with a hand-computed
reference and with cleverhans, and the targeted form. The shared contract (shape, dtype,
range, no mutation, batching) is in test_attack_contract.py."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import correctly_classified
from tfadv import attacks
from tfadv.evaluation import predict


def ce_loss(model, x, labels):
    logits = model(tf.constant(x), training=False)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")(
        labels, logits).numpy()


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
