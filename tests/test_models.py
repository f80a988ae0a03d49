"""Models (ResNet-18, Inception-v3 wrapper), the fine-tuning schedule, adversarial fine-tuning."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import trained_digits_model
from tfadv import attacks, models
from tfadv.attacks import validation
from tfadv.defenses import training
from tfadv.defenses.training import adversarial_finetune
from tfadv.models.inception import inception_v3
from tfadv.models.resnet import resnet18
from tfadv.models.train import SlowStartFastDecay


# --------------------------------------------------------------------------- ResNet-18

@pytest.fixture(scope="module")
def resnet_w8():
    keras.utils.set_random_seed(0)
    return resnet18(num_classes=10, width=8)


def test_resnet18_returns_logits_of_shape_batch_by_classes(resnet_w8):
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    out = np.asarray(resnet_w8(x, training=False))
    assert out.shape == (2, 10)
    assert np.isfinite(out).all()
    # Logits, not probabilities: no softmax at the end, and the attacks' check accepts it.
    assert resnet_w8.get_layer("logits").activation is keras.activations.linear
    assert not np.allclose(out.sum(axis=1), 1.0, atol=1e-3) or (out < 0).any()
    validation.check_logits(resnet_w8, x)


def test_resnet18_param_count_scales_with_width_squared(resnet_w8):
    narrow, wide = resnet_w8.count_params(), resnet18(num_classes=10, width=16).count_params()
    # Almost every parameter is a conv kernel whose size is proportional to width^2.
    assert 3.5 < wide / narrow < 4.1


def test_resnet18_first_layer_normalises_with_mean_std_half(resnet_w8):
    assert resnet_w8.layers[1].name == "normalise"  # right after the input
    layer = resnet_w8.get_layer("normalise")
    x = np.array([0.0, 0.25, 0.5, 1.0], np.float32).reshape(1, 1, 4, 1)
    np.testing.assert_allclose(np.asarray(layer(x)).ravel(), [-1.0, -0.5, 0.0, 1.0], atol=1e-6)


def test_load_missing_model_file_raises(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        models.load(tmp_path / "nope.keras")


# --------------------------------------------------------------------------- Inception-v3

@pytest.fixture(scope="module")
def inception_small():
    keras.utils.set_random_seed(0)
    return inception_v3(weights=None, num_classes=10, image_size=75)


def test_inception_v3_output_shape_and_logits(inception_small):
    x = np.random.default_rng(1).random((2, 75, 75, 3), dtype=np.float32)
    out = np.asarray(inception_small(x, training=False))
    assert out.shape == (2, 10)
    assert np.isfinite(out).all()
    validation.check_logits(inception_small, x)


def test_inception_v3_preprocesses_inside(inception_small):
    first = inception_small.layers[1]
    assert isinstance(first, keras.layers.Rescaling)
    assert float(first.scale) == 2.0 and float(first.offset) == -1.0
    x = np.array([0.0, 0.5, 1.0], np.float32).reshape(1, 1, 3, 1)
    np.testing.assert_allclose(np.asarray(first(x)).ravel(), [-1.0, 0.0, 1.0], atol=1e-6)
    # The whole model on [0, 1] pixels equals the bare backbone on 2x - 1.
    x = np.random.default_rng(2).random((1, 75, 75, 3), dtype=np.float32)
    backbone = inception_small.get_layer("inception_v3")
    np.testing.assert_allclose(np.asarray(inception_small(x, training=False)),
                               np.asarray(backbone(2.0 * x - 1.0, training=False)),
                               rtol=1e-4, atol=1e-4)


def test_inception_v3_missing_weights_file_raises(tmp_path):
    with pytest.raises(ValueError, match="weights file not found"):
        inception_v3(weights=str(tmp_path / "missing.weights.h5"), num_classes=10,
                     image_size=75)


# --------------------------------------------------------------------------- schedule

def test_slow_start_fast_decay_shape():
    peak, total = 1e-3, 100
    schedule = SlowStartFastDecay(peak, total)
    lrs = np.array([float(schedule(step)) for step in range(total)])
    top = int(np.argmax(lrs))
    assert lrs[0] < 0.02 * peak                      # starts near 0 (but already moves)
    assert lrs[0] > 0
    assert top == 59                                 # the 60th of 100 steps: 60%
    assert lrs[top] == pytest.approx(peak, rel=1e-5)
    assert lrs[-1] < 0.02 * peak                     # ends near 0
    assert np.all(np.diff(lrs[:top + 1]) > 0)        # strictly up ...
    assert np.all(np.diff(lrs[top:]) < 0)            # ... then strictly down
    # Falls 1.5x faster than it rose (40% of the steps vs 60%).
    rise, fall = np.diff(lrs[:top + 1]).mean(), -np.diff(lrs[top:]).mean()
    assert fall / rise == pytest.approx(1.5, rel=0.05)
    # Serialisable: rebuilt from its config it gives the same rates.
    again = SlowStartFastDecay(**schedule.get_config())
    assert float(again(30)) == pytest.approx(float(schedule(30)))


# --------------------------------------------------------------------------- fine-tuning

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


def test_inception_v3_resizes_other_input_sizes_inside():
    model = inception_v3(weights=None, num_classes=10, image_size=75, input_size=32)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    inner = model.get_layer("inception_v3")
    resized = keras.ops.image.resize(x, (75, 75), interpolation="bilinear")
    np.testing.assert_allclose(np.asarray(model(x, training=False)),
                               np.asarray(inner(resized, training=False)), atol=1e-4)
