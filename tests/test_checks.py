"""The one set of input checks (tfadv.checks): what each validator accepts, returns, and the
error each wrong input gets."""

import numpy as np
import pytest

from tfadv import checks


def _images(shape=(2, 4, 4, 3), seed=0):
    return np.random.default_rng(seed).uniform(0, 1, shape).astype(np.float32)


# ---------------------------------------------------------------------------- images

def test_images_returns_a_float32_copy():
    x = _images()
    out = checks.images(x)
    assert out.dtype == np.float32 and out is not x and not np.shares_memory(out, x)
    np.testing.assert_array_equal(out, x)
    out[...] = 0  # the caller's array is not the result
    assert x.max() > 0
    as64 = checks.images(x.astype(np.float64))
    assert as64.dtype == np.float32
    from_list = checks.images(x.tolist())
    np.testing.assert_array_equal(from_list, x)
    empty = checks.images(np.zeros((0, 4, 4, 3)))
    assert empty.shape == (0, 4, 4, 3)


def test_images_without_copy_checks_in_chunks_and_keeps_float32():
    x = _images((5, 4, 4, 1))
    assert checks.images(x, copy=False, chunk=2) is x
    bad = x.copy()
    bad[4, 0, 0, 0] = 2.0  # in the last chunk
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        checks.images(bad, copy=False, chunk=2)
    with pytest.raises(ValueError, match="expected float pixels in \\[0, 1\\], got dtype uint8"):
        checks.images((x * 255).astype(np.uint8), copy=False)
    assert checks.images(x.astype(np.float64), copy=False).dtype == np.float32


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 4, 3), np.float32), "rank 4.*x\\[None\\]"),
    (np.zeros((1, 2, 4, 4, 3), np.float32), "rank 4"),
    (np.full((1, 2, 2, 1), np.nan, np.float32), "NaN or Inf"),
    (np.full((1, 2, 2, 1), np.inf, np.float32), "NaN or Inf"),
    (np.full((1, 2, 2, 1), 255.0, np.float32), r"pixels must lie in \[0, 1\].*divide uint8"),
    (np.full((1, 2, 2, 1), -0.1, np.float32), r"min -0.1"),
    ("not images", "numeric array of images"),
    ([[1, 2], [3]], "numeric array of images"),
])
def test_images_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        checks.images(bad, "x")


def test_images_name_shape_and_channels():
    x = _images((1, 4, 4, 3))
    with pytest.raises(ValueError, match="^adversarial images must be a batch"):
        checks.images(x[0], "adversarial images")
    assert checks.images(x, shape=(4, 4, 3)).shape == (1, 4, 4, 3)
    assert checks.images(x, shape=(None, None, 3)).shape == (1, 4, 4, 3)
    with pytest.raises(ValueError, match=r"have shape \(4, 4, 3\) \(HWC\) but the model takes "
                                         r"\(8, 8, 3\): resize them"):
        checks.images(x, shape=(8, 8, 3))
    with pytest.raises(ValueError, match="model takes"):
        checks.images(x, shape=(None, None, 1))
    assert checks.images(x, channels=(1, 3)).shape[-1] == 3
    with pytest.raises(ValueError, match=r"1 \(grayscale\) or 3 \(RGB\) channels.*NCHW"):
        checks.images(np.zeros((1, 3, 4, 4), np.float32), channels=(1, 3))


# ---------------------------------------------------------------------------- image pairs

def test_image_pair():
    a, b = _images(seed=1), _images(seed=2)
    ref, x = checks.image_pair(a, b)
    assert ref.dtype == np.float64 and x.dtype == np.float64
    np.testing.assert_allclose(ref, a)
    with pytest.raises(ValueError, match="same shape"):
        checks.image_pair(a, b[:1])
    with pytest.raises(ValueError, match="^reference images: pixels must lie"):
        checks.image_pair(a * 2, b)
    with pytest.raises(ValueError, match="^compared images contain NaN"):
        checks.image_pair(a, np.full_like(b, np.nan))


# ---------------------------------------------------------------------------- labels

def test_labels():
    y = checks.labels([0, 2, 1], 3, 3)
    assert y.dtype == np.int64 and y.tolist() == [0, 2, 1]
    assert checks.labels(np.array([1.0, 2.0]), 2, 3).tolist() == [1, 2]  # whole floats pass
    assert checks.labels(np.zeros(0, np.int64), 0, 10).shape == (0,)
    with pytest.raises(ValueError, match=r"must have shape \(3,\), one class id per image"):
        checks.labels([0, 1], 3, 10)
    with pytest.raises(ValueError, match=r"shape \(2,\).*got \(2, 1\)"):
        checks.labels([[0], [1]], 2, 10)
    with pytest.raises(ValueError, match="integer class ids, got dtype float64"):
        checks.labels([0.5, 1.0], 2, 10)
    with pytest.raises(ValueError, match=r"must lie in \[0, 9\] for this 10-class model, got "
                                         r"min -1 and max 3"):
        checks.labels([-1, 3], 2, 10)
    with pytest.raises(ValueError, match="^targets must lie"):
        checks.labels([10], 1, 10, "targets")


# ---------------------------------------------------------------------------- scalars

def test_integer():
    assert checks.integer("steps", 3) == 3 and isinstance(checks.integer("steps", 3.0), int)
    assert checks.integer("steps", np.int64(5), 1) == 5
    assert checks.integer("steps", 0) == 0
    for bad in (True, 2.5, -1, "3", None, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^steps must be an integer >= 0, got"):
            checks.integer("steps", bad)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        checks.integer("batch_size", 0, 1)


def test_non_negative_and_positive():
    assert checks.non_negative("eps", 0) == 0.0 and checks.non_negative("eps", 0.5) == 0.5
    assert isinstance(checks.non_negative("eps", np.float32(0.25)), float)
    # strings and bools would read as numbers but key caches differently: refused
    for bad in (-1e-9, float("nan"), float("inf"), "big", "0.5", True, None):
        with pytest.raises(ValueError, match="^eps must be a finite number >= 0"):
            checks.non_negative("eps", bad)
    assert checks.positive("lr", 1e-3) == 1e-3
    with pytest.raises(ValueError, match="^lr must be a finite number > 0, got 0.0"):
        checks.positive("lr", 0)
    with pytest.raises(ValueError, match="^lr must be a finite number >= 0"):
        checks.positive("lr", -1)


def test_boolean():
    assert checks.boolean("flag", True) is True and checks.boolean("flag", np.bool_(False)) is False
    for bad in (1, 0, "yes", "False", None):
        with pytest.raises(ValueError, match="^flag must be True or False, got"):
            checks.boolean("flag", bad)


def test_fraction():
    assert checks.fraction("share", 1) == 1.0 and checks.fraction("share", 0.25) == 0.25
    with pytest.raises(ValueError, match=r"share must lie in \(0, 1\), got 1.0"):
        checks.fraction("share", 1, include_one=False)
    with pytest.raises(ValueError, match=r"share must lie in \(0, 1\], got 1.5"):
        checks.fraction("share", 1.5)
    with pytest.raises(ValueError, match="share must be a finite number > 0"):
        checks.fraction("share", 0)


def test_one_of():
    assert checks.one_of("norm", "l2", ("l2", "linf")) == "l2"
    with pytest.raises(ValueError, match=r"norm must be one of \('l2', 'linf'\), got 'l1'"):
        checks.one_of("norm", "l1", ("l2", "linf"))
