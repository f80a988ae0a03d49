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


def _vgg(seed=0):
    from tfadv.models.vgg import vgg
    keras.utils.set_random_seed(seed)
    return vgg(widths=(4, 8), name="toy_vgg")


def test_normalised_features_have_mean_absolute_value_one_on_the_clean_images():
    """Each layer divided by its mean |activation| on the clean images: 1.0 there, for every
    layer, whatever their raw scales; the scales are in the description (cache keys)."""
    clean = toy_pairs(12, 32, seed=3)[1]
    network = perceptual.classifier_features(_vgg(), ["block1_relu2", "block2_relu2"])
    scaled = perceptual.normalised(network, clean, batch_size=5)  # uneven batches
    for raw, out in zip(network(clean), scaled(clean)):
        assert float(np.mean(np.abs(out))) == pytest.approx(1.0, rel=1e-4)
        ratio = np.asarray(out) / np.maximum(np.asarray(raw, np.float32), 1e-30)
        assert np.ptp(ratio[np.asarray(raw) > 1e-3]) < 1e-3 * ratio.max()  # one constant
    info = perceptual.describe(scaled)
    assert info["normalisation"].startswith("each layer / its mean |activation| on 12 clean")
    assert info["layers"] == ["block1_relu2", "block2_relu2"] and not scaled.trainable
    assert perceptual.describe(network)["normalisation"] == "none"
    # the loss of identical images is 0, of different ones a relative size (order 1)
    x, y = toy_pairs(4, 32, seed=5)
    assert float(perceptual.perceptual_loss(scaled, y, y)) == 0.0
    assert 0.01 < float(perceptual.perceptual_loss(scaled, x, y)) < 10
    with pytest.raises(ValueError, match="clean images"):
        perceptual.normalised(network, clean[0])


def test_choose_a_zoo_network_taps_each_vgg_block_and_says_it_is_independent():
    asked = []

    def zoo_model(name):
        asked.append(name)
        return _vgg()

    features, info = perceptual.choose("cifar10_vgg6_w32", zoo_model=zoo_model,
                                       classifier_name="the attacked one", image_size=32,
                                       normalise_on=toy_pairs(6, 32, seed=1)[1])
    assert asked == ["cifar10_vgg6_w32"]
    assert info["layers"] == ["block1_relu2", "block2_relu2"] and info["substitute"]
    assert "independent of the classifier" in info["note"] and "SUBSTITUTE" in info["note"]
    assert "mean |activation|" in info["note"] and len(features.outputs) == 2
    with pytest.raises(ValueError, match="zoo_model"):
        perceptual.choose("cifar10_vgg6_w32")
    with pytest.raises(ValueError, match="cifar10_vgg6_w32"):  # the choices are listed
        perceptual.choose("vgg16")
