"""Classifier architectures (tfadv.models.resnet: ResNet-18; tfadv.models.inception: the
Inception-v3 wrapper) and tfadv.models.load's missing-file error. Save/load round trips and
cached training are in test_train.py."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tfadv import models
from tfadv.attacks import validation
from tfadv.models.inception import inception_v3
from tfadv.models.resnet import resnet18


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


def test_inception_v3_resizes_other_input_sizes_inside():
    model = inception_v3(weights=None, num_classes=10, image_size=75, input_size=32)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    inner = model.get_layer("inception_v3")
    resized = keras.ops.image.resize(x, (75, 75), interpolation="bilinear")
    np.testing.assert_allclose(np.asarray(model(x, training=False)),
                               np.asarray(inner(resized, training=False)), atol=1e-4)
