"""Named classifiers (tfadv.models.zoo): recipes train once into the cache and load after;
pretrained ones say which weights they have; unknown names and missing data are errors; the
preflight checks (``weights_problem``, ``missing_inputs``) say which weights and data to
supply."""

import numpy as np
import pytest

from tfadv import data, models
from tfadv.models import zoo
from tfadv.models import train as train_module


def test_unknown_name_lists_the_zoo():
    with pytest.raises(ValueError, match=r"unknown classifier 'resnet50'; the zoo has \["):
        zoo.load("resnet50")
    assert set(zoo.NAMES) == set(zoo.RECIPES) | set(zoo.PRETRAINED)
    for name, recipe in zoo.RECIPES.items():
        assert recipe["architecture"] in models.ARCHITECTURES, name


def test_a_recipe_without_a_dataset_needs_data():
    with pytest.raises(ValueError, match="trains on the data it is given: pass data="):
        zoo.load("tiny_cnn_10k")


def test_data_id_is_machine_independent(tmp_path):
    archive = tmp_path / "set.tar.gz"
    archive.write_bytes(b"12345")
    assert zoo.data_id(str(archive)) == "set.tar.gz:5"  # no absolute path in the id
    (tmp_path / "folder").mkdir()
    assert zoo.data_id(str(tmp_path / "folder")) == "folder"
    assert zoo.data_id("digits") == "digits" and zoo.data_id("cifar10") == "cifar10"


@pytest.fixture(scope="module")
def small_digits():
    """A slice of the digits (fast to train on): 300 training and 100 test images."""
    train = data.subset(data.load("digits", "train", cache_dir=None), n=300, seed=0)
    test = data.subset(data.load("digits", "test", cache_dir=None), n=100, seed=0)
    return train, test


def test_a_digits_recipe_trains_once_then_loads_the_cached_file(small_digits, tmp_path,
                                                                monkeypatch):
    train, test = small_digits
    recipe = zoo.RECIPES["digits_tiny_cnn_smoke"]
    first = zoo.load("digits_tiny_cnn_smoke", train=train, test=test, cache_dir=tmp_path,
                     verbose=False)
    assert first.path.parent == tmp_path / "models" and first.path.exists()
    assert first.path.name.startswith(f"{recipe['architecture']}-")
    assert first.id == first.path.stem
    assert "digits_tiny_cnn_smoke" in first.description and first.path.name in first.description
    assert len(first.history) == recipe["epochs"]
    assert first.model.input_shape[1:] == (8, 8, 1) and first.model.output_shape[-1] == 10

    def refuse(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cached classifier")

    monkeypatch.setattr(train_module, "fit", refuse)
    second = zoo.load("digits_tiny_cnn_smoke", train=train, test=test, cache_dir=tmp_path,
                      verbose=False)
    assert second.path == first.path and second.id == first.id
    assert second.history == first.history
    for a, b in zip(second.model.get_weights(), first.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Another recipe (more epochs) is another file: it would train.
    with pytest.raises(AssertionError, match="trained again"):
        zoo.load("digits_tiny_cnn", train=train, test=test, cache_dir=tmp_path, verbose=False)


def test_inception_v3_with_random_weights_says_so():
    clf = zoo.load("inception_v3", weights=None, input_size=32)
    assert "RANDOM weights" in clf.description and "tests only" in clf.description
    assert "32 -> 299" in clf.description
    assert clf.path is None and clf.history == []
    assert clf.id.startswith("inception_v3-")
    assert clf.model.input_shape[1:] == (32, 32, 3) and clf.model.output_shape[-1] == 1000
    assert zoo.load("inception_v3", weights=None, input_size=32).id == clf.id  # same weights id


def test_missing_imagenet_weights_say_what_to_supply(monkeypatch, tmp_path):
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: offline")
    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    problem = zoo.weights_problem("VGG19", "imagenet", "--vgg19_weights")
    assert "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5" in problem
    assert "--vgg19_weights=PATH" in problem
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"")
    assert zoo.weights_problem("VGG19", "imagenet", "--vgg19_weights") is None  # Keras cache
    missing = zoo.weights_problem("Inception-v3", str(tmp_path / "none.h5"),
                                  "--inception_weights")
    assert "does not exist" in missing and "--inception_weights=PATH" in missing
    weights = tmp_path / "inception.h5"
    weights.write_bytes(b"")
    assert zoo.weights_problem("Inception-v3", str(weights), "--inception_weights") is None
    problems = zoo.missing_inputs("inception_v3", "vgg19", data=str(tmp_path / "no_imagenet"),
                                  data_dir=None, weights=str(tmp_path / "none.h5"),
                                  vgg19_weights="imagenet")
    assert len(problems) == 2 and "ImageNet" in problems[0]  # the VGG19 file is cached now
    assert zoo.missing_inputs("digits_tiny_cnn", "classifier", data="digits", data_dir=None,
                              weights=None, vgg19_weights=None) == []
