"""The defense contract (tfadv.defenses): every name of ``defenses.NAMES``, built with
``defenses.make`` (learned ones from tiny untrained networks), called ``defense(x, seed)``.

Contract: float32 output of x's shape in [0, 1], a new array (x untouched), the same seed
gives the same output, randomized defenses differ between seeds and the others ignore the
seed, ``.params`` holds every default, ``.randomized`` / ``.differentiable`` / ``.model``
behave as declared, and bad names, parameters and images give clear ValueErrors.
"""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import smooth_images
from tfadv import data, defenses, models
from tfadv.defenses import purifier, transforms
from tfadv.models import pix2pix, sr


def _generator(shape):
    keras.utils.set_random_seed(0)
    return pix2pix.unet_generator(shape, base_filters=4, name=f"toy_unet_{shape[-1]}")


def _sr_model(shape):
    keras.utils.set_random_seed(0)
    return sr.sr_network(channels=shape[-1], filters=4, blocks=1, name=f"toy_sr_{shape[-1]}")


# How to build each registered defense without training: its required parameters for
# images of one (H, W, C). A new name must be added here (test_every_name_is_covered).
BUILD = {
    "none": lambda shape: {},
    "random_resize_pad": lambda shape: {},
    "pixel_deflection": lambda shape: {},
    "wavelet_denoise": lambda shape: {},
    "deflect_and_denoise": lambda shape: {},
    "sr_and_denoise": lambda shape: {"sr_model": _sr_model(shape)},
    "purifier": lambda shape: {"generator": _generator(shape)},
}
NAMES = sorted(defenses.NAMES)


@pytest.fixture(scope="module")
def gray():
    """Eight scikit-learn digits, 8x8x1 in [0, 1]."""
    return data.load("digits", "test", cache_dir=None).images[:8]


@pytest.fixture(scope="module")
def rgb():
    return smooth_images(4, 16, 3)


@pytest.fixture(scope="module")
def built(gray, rgb):
    """Each defense built once per image kind: {(name, channels): defense}."""
    return {(name, x.shape[-1]): defenses.make(name, **BUILD[name](x.shape[1:]))
            for name in NAMES for x in (gray, rgb)}


def test_every_name_is_covered():
    assert set(BUILD) == set(defenses.NAMES)
    for name, spec in defenses.NAMES.items():
        assert spec.description and callable(spec.fn)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["gray", "rgb"])
def test_contract_shape_dtype_range_input_untouched(name, kind, built, request):
    x = request.getfixturevalue(kind)
    defense = built[(name, x.shape[-1])]
    before = x.copy()
    out = defense(x, seed=0)
    assert isinstance(out, np.ndarray) and out.shape == x.shape and out.dtype == np.float32
    assert np.all(np.isfinite(out)) and out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(x, before)
    assert out is not x and not np.shares_memory(out, x)
    out[...] = 0.5  # writing to the result leaves the input alone
    np.testing.assert_array_equal(x, before)
    assert defense.name == name and defense.description == defenses.NAMES[name].description
    assert isinstance(defense.id, str) and defense.id


@pytest.mark.parametrize("name", NAMES)
def test_seeds_decide_random_draws_only(name, built, gray):
    defense = built[(name, 1)]
    assert defense.randomized == defenses.NAMES[name].randomized
    first = defense(gray, seed=3)
    np.testing.assert_array_equal(first, defense(gray, seed=3))
    if defense.randomized:
        assert not np.array_equal(first, defense(gray, seed=4))
        np.testing.assert_array_equal(defense(gray), defense(gray, seed=0))  # None means 0
    else:
        np.testing.assert_array_equal(first, defense(gray, seed=4))
        np.testing.assert_array_equal(first, defense(gray))


@pytest.mark.parametrize("name", NAMES)
def test_params_hold_every_default_and_the_given_values(name, built):
    defense = built[(name, 3)]
    spec = defenses.NAMES[name]
    for p in inspect.signature(spec.fn).parameters.values():
        if p.name in ("x", "seed"):
            continue
        assert p.name in defense.params, p.name
        if p.default is not p.empty:  # the registry's default where it sets one
            assert defense.params[p.name] == spec.defaults.get(p.name, p.default), p.name
    for model_param in ("sr_model", "generator"):  # models recorded by their name
        if model_param in defense.params:
            assert isinstance(defense.params[model_param], str)
    assert "seed" not in defense.params  # the seed is given per call


def test_given_params_are_recorded_and_used(rgb):
    defense = defenses.make("deflect_and_denoise", deflections=None, sigma=0.1)
    assert defense.params["deflections"] is None and defense.params["sigma"] == 0.1
    assert defense.params["window"] == transforms.PRAKASH_WINDOW
    np.testing.assert_array_equal(
        defense(rgb, seed=2),
        transforms.deflect_and_denoise(rgb, seed=2, deflections=None, sigma=0.1))
    assert defense.id != defenses.make("deflect_and_denoise").id  # params change the id
    assert defenses.make("none").id == "none"
    resized = defenses.make("random_resize_pad")
    assert resized.params["resize_back"] is True  # a defense keeps x's shape


@pytest.mark.parametrize("name", NAMES)
def test_differentiable_defenses_expose_the_model_gradients_flow_through(name, built, rgb):
    defense = built[(name, 3)]
    assert defense.differentiable == defenses.NAMES[name].differentiable
    if not defense.differentiable or name == "none":
        assert defense.model is None
        return
    model = defense.model
    assert isinstance(model, keras.Model)
    np.testing.assert_allclose(np.asarray(model(rgb, training=False)), defense(rgb), atol=1e-6)
    images = tf.constant(rgb)
    with tf.GradientTape() as tape:
        tape.watch(images)
        loss = tf.reduce_sum(model(images, training=False))
    grad = tape.gradient(loss, images).numpy()
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_identity_is_differentiable_without_a_model(gray):
    defense = defenses.make("none")
    assert defense.differentiable and not defense.randomized and defense.model is None
    np.testing.assert_array_equal(defense(gray), gray)


def test_unknown_name_unknown_param_missing_param():
    with pytest.raises(ValueError, match="unknown defense 'jpeg'; available: "):
        defenses.make("jpeg")
    with pytest.raises(ValueError, match=r"takes no parameter\(s\) \['strength'\]"):
        defenses.make("wavelet_denoise", strength=2)
    with pytest.raises(ValueError, match=r"takes no parameter\(s\) \['seed'\]"):
        defenses.make("pixel_deflection", seed=0)  # seeds are given per call
    with pytest.raises(ValueError, match=r"needs \['sr_model'\]"):
        defenses.make("sr_and_denoise")
    with pytest.raises(ValueError, match=r"needs \['generator'\]"):
        defenses.make("purifier")


@pytest.mark.parametrize("name", [n for n in NAMES if n != "purifier"])
def test_bad_images_are_refused(name, built):
    defense = built[(name, 3)]
    good = smooth_images(1, 16)
    nan = good.copy()
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        defense(nan)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        defense(good * 255)
    with pytest.raises(ValueError, match="rank 4"):
        defense(good[0])
    if name != "none":
        with pytest.raises(ValueError, match=r"1 \(grayscale\) or 3 \(RGB\) channels"):
            defense(np.zeros((1, 3, 16, 16), np.float32))


def test_purifier_refuses_images_of_another_size(built):
    defense = built[("purifier", 3)]
    with pytest.raises(ValueError, match="resize them"):
        defense(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="NaN or Inf"):
        defense(np.full((1, 16, 16, 3), np.nan, np.float32))


def test_purifier_is_named_by_its_model_and_loads_from_a_file(rgb, tmp_path):
    generator = _generator((16, 16, 3))
    made = defenses.make("purifier", generator=generator)
    assert made.id == f"purifier-{generator.name}" and made.params["generator"] == generator.name
    assert made.model is generator
    named = defenses.make("purifier", generator=generator, model_id="purifier_pgd-abc")
    assert named.id == "purifier_pgd-abc"
    path = tmp_path / "purifier_toy-1234.keras"
    models.save(generator, path)
    loaded = purifier.load(path)
    assert isinstance(loaded, defenses.Defense) and loaded.id == "purifier_toy-1234"
    assert loaded.differentiable and not loaded.randomized and loaded.model is not None
    np.testing.assert_allclose(loaded(rgb), made(rgb), atol=1e-6)
    np.testing.assert_allclose(loaded(rgb), purifier.purify(generator, rgb), atol=1e-6)
