"""Training defenses (tfadv.defenses.training): adversarial fine-tuning and its registry."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import trained_digits_model
from tfadv import attacks
from tfadv.defenses import training
from tfadv.defenses.training import adversarial_finetune


def _weights(model):
    return [np.array(w, copy=True) for w in model.get_weights()]


def test_adversarial_finetune_returns_trained_copy_and_leaves_original():
    trained = trained_digits_model()
    model = trained.model
    x, y = trained.train.images[:100], trained.train.labels[:100]
    x_adv = attacks.make("fgsm", eps=0.1)(model, x, y)
    before = _weights(model)
    logits_before = np.asarray(model(tf.constant(x_adv), training=False))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    tuned = adversarial_finetune(model, x_adv, y, epochs=3, batch_size=20, peak_lr=1e-3)

    assert tuned is not model
    assert all(a is not b for a, b in zip(tuned.weights, model.weights))
    for w_before, w_now in zip(before, model.get_weights()):  # the original is untouched
        np.testing.assert_array_equal(w_now, w_before)
    np.testing.assert_array_equal(np.asarray(model(tf.constant(x_adv), training=False)),
                                  logits_before)
    changed = [not np.array_equal(a, b) for a, b in zip(before, tuned.get_weights())]
    assert all(changed)                                          # every weight was trained
    # It trained on the adversarial images with their true labels: their loss went down.
    assert float(loss(y, tuned(x_adv, training=False))) < float(loss(y, logits_before))


def test_training_defenses_registry():
    assert training.TRAINING["adversarial_finetune"] is adversarial_finetune


def test_adversarial_finetune_rejects_batch_size_not_dividing_images():
    trained = trained_digits_model()
    x, y = trained.train.images[:50], trained.train.labels[:50]
    with pytest.raises(ValueError, match="batch"):
        adversarial_finetune(trained.model, x, y, batch_size=20)
