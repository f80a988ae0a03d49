"""Perceptual features and loss (tfadv.models.perceptual): a frozen classifier's features,
VGG19's (random or local weights, its Caffe preprocessing, the offline refusal) and
``perceptual_loss``."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from helpers import toy_pairs
from tfadv.models import perceptual
from tfadv.models.resnet import resnet18


def test_classifier_features_loss_and_freezing():
    classifier = resnet18(width=8)
    features = perceptual.classifier_features(classifier)
    assert perceptual.describe(features)["layers"] == [
        "stem_relu", "s1b0_relu1", "s2b1_relu1", "s3b1_out"]
    assert features.trainable_variables == [] and classifier.trainable  # a frozen copy
    x, y = toy_pairs(4, 32)
    assert float(perceptual.perceptual_loss(features, x, x)) == 0.0
    assert float(perceptual.perceptual_loss(features, x, y)) > 0.0
    assert float(perceptual.perceptual_loss(features, x, y, "l2")) > 0.0
    with pytest.raises(ValueError, match="distance"):
        perceptual.perceptual_loss(features, x, y, "cosine")
    with pytest.raises(ValueError, match="no layers"):
        perceptual.classifier_features(classifier, ["nope"])


def test_vgg19_preprocessing_and_refusals(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="allow_random"):
        perceptual.vgg19_features(None, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="at least 32x32"):
        perceptual.vgg19_features(None, input_shape=(16, 16, 3), allow_random=True)
    with pytest.raises(ValueError, match="not found"):
        perceptual.vgg19_features(str(tmp_path / "missing.weights.h5"), input_shape=(32, 32, 3))
    features = perceptual.vgg19_features(None, input_shape=(32, 32, 3), allow_random=True)
    info = perceptual.describe(features)
    assert info["layers"] == list(perceptual.VGG19_LAYERS) and "random" in info["weights"]
    json.dumps(info)
    assert len(features.outputs) == 5 and features.trainable_variables == []
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    pre = keras.Model(features.input, features.get_layer("caffe_preprocess").output)
    np.testing.assert_allclose(pre(x).numpy(), keras.applications.vgg19.preprocess_input(
        x * 255.0), atol=1e-3)
    assert float(perceptual.perceptual_loss(features, x, x)) == 0.0
    assert float(perceptual.perceptual_loss(features, x, x[::-1])) > 0.0

    def offline(*args, **kwargs):  # what keras.applications raises without network
        raise Exception("URL fetch failure on https://storage.googleapis.com/...")
    monkeypatch.setattr(keras.applications, "VGG19", offline)
    with pytest.raises(ValueError, match="local path"):
        perceptual.vgg19_features("imagenet", input_shape=(32, 32, 3))


def test_vgg19_loads_a_local_weights_file(tmp_path):
    keras.utils.set_random_seed(3)
    backbone = keras.applications.VGG19(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg19_notop.weights.h5"
    backbone.save_weights(path)
    features = perceptual.vgg19_features(str(path), layers=("block5_conv4",),
                                         input_shape=(32, 32, 3))
    assert perceptual.describe(features)["weights"] == str(path)
    x = np.random.default_rng(0).uniform(0, 1, (1, 32, 32, 3)).astype(np.float32)
    block5 = keras.Model(backbone.input, backbone.get_layer("block5_conv4").output)
    want = block5(keras.applications.vgg19.preprocess_input(x * 255.0)).numpy()
    np.testing.assert_allclose(features(x).numpy(), want, rtol=1e-4, atol=1e-3)
