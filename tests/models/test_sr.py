"""The x2 super-resolution network of the SR + WD baseline (tfadv.models.sr): shapes, training,
save/load, input checks and the cached copy per training setting."""

import keras
import numpy as np
import pytest

from helpers import smooth_images
from tfadv import cache, models
from tfadv.models import sr


@pytest.fixture(scope="module")
def sr_model():
    """A tiny SR network trained briefly on smooth 16x16 images."""
    return sr.train_sr(smooth_images(8, 16), epochs=2, batch_size=4, seed=0, filters=8,
                       blocks=1, verbose=False)


def sr_l1(model, images):
    low, high = sr.make_sr_pairs(images)
    return float(np.mean(np.abs(sr.super_resolve(low, model) - high)))


def test_sr_network_shape_and_training_reduces_l1():
    images = smooth_images(8, 16)
    keras.utils.set_random_seed(0)
    model = sr.sr_network(channels=3, filters=8, blocks=1)
    assert model(np.zeros((2, 5, 7, 3), np.float32)).shape == (2, 10, 14, 3)
    assert model.output.dtype == "float32"
    before = sr_l1(model, images)
    sr.train_sr(images, epochs=15, batch_size=4, seed=0, learning_rate=3e-3, model=model,
                verbose=False)
    after = sr_l1(model, images)
    assert after < 0.8 * before, (before, after)


def test_sr_model_save_load_round_trip(sr_model, tmp_path):
    path = tmp_path / "sr.keras"
    models.save(sr_model, path)
    loaded = models.load(path)  # safe_mode=True: no Lambda layer may be in the file
    x = smooth_images(2, 12)
    np.testing.assert_allclose(sr.super_resolve(x, loaded), sr.super_resolve(x, sr_model),
                               atol=1e-6)


def test_make_sr_pairs_and_train_sr_validation():
    low, high = sr.make_sr_pairs(smooth_images(2, 16))
    assert low.shape == (2, 8, 8, 3) and high.shape == (2, 16, 16, 3)
    with pytest.raises(ValueError, match="not divisible by the scale"):
        sr.make_sr_pairs(smooth_images(1, 15))
    with pytest.raises(ValueError, match="takes 3 channels"):
        sr.train_sr(np.zeros((2, 8, 8, 1), np.float32), epochs=1,
                    model=sr.sr_network(channels=3, filters=4, blocks=0), verbose=False)
    with pytest.raises(ValueError, match="at least one image"):
        sr.train_sr(np.zeros((0, 8, 8, 3), np.float32), epochs=1, verbose=False)
    with pytest.raises(ValueError, match="learning_rate"):
        sr.train_sr(smooth_images(2, 8), epochs=1, learning_rate=0.0, verbose=False)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        sr.sr_network(channels=2)


def test_super_resolve_checks_its_input(sr_model):
    x = smooth_images(3, 8)
    out = sr.super_resolve(x, sr_model, batch_size=2)
    assert out.shape == (3, 16, 16, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_allclose(out, sr.super_resolve(x, sr_model), atol=1e-6)
    with pytest.raises(ValueError, match="takes 3 channels"):
        sr.super_resolve(np.zeros((1, 8, 8, 1), np.float32), sr_model)
    with pytest.raises(ValueError, match="at least one image"):
        sr.super_resolve(np.zeros((0, 8, 8, 3), np.float32), sr_model)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        sr.super_resolve(x * 255, sr_model)


def test_train_cached_trains_once_per_setting_and_version(tmp_path, monkeypatch):
    images = smooth_images(4, 8)
    settings = dict(epochs=1, batch_size=2, filters=4, blocks=0, seed=0, cache_dir=tmp_path)
    model, path, trained = sr.train_cached(images, **settings)
    assert trained and path.exists() and path.parent == tmp_path / "models"
    assert path.name.startswith("sr_x2-") and path.suffix == ".keras"
    again, path_again, trained_again = sr.train_cached(images, **settings)
    assert not trained_again and path_again == path
    x = smooth_images(2, 8, seed=3)
    np.testing.assert_array_equal(sr.super_resolve(x, again), sr.super_resolve(x, model))
    other_images = sr.train_cached(smooth_images(4, 8, seed=9), **settings)
    assert other_images[2] and other_images[1] != path
    other_setting = sr.train_cached(images, **dict(settings, filters=8))
    assert other_setting[2] and other_setting[1] not in (path, other_images[1])
    monkeypatch.setitem(cache.VERSIONS, "sr", cache.VERSIONS["sr"] + 1)
    bumped = sr.train_cached(images, **settings)
    assert bumped[2] and bumped[1] != path  # a new code version never loads the old file
