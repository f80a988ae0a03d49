"""Input-transformation defenses (tfadv.defenses.transforms).

The defense contract every transform is used through (``tfadv.defenses.make``: shape, dtype,
range, seeds, parameters, input checks) is tested in test_defense_contract.py; SR in
tests/models/test_sr.py; the image-quality metrics in tests/evaluation/test_metrics.py.
"""

import keras
import numpy as np
import pytest
from skimage.restoration import denoise_wavelet

from helpers import noisy, smooth_images
from tfadv import defenses
from tfadv.defenses import transforms as T
from tfadv.models import sr

RANDOM = ("random_resize_pad", "pixel_deflection", "deflect_and_denoise")


@pytest.fixture(scope="module")
def sr_model():
    """A tiny untrained x2 SR network (the composition does not depend on its training)."""
    keras.utils.set_random_seed(0)
    return sr.sr_network(channels=3, filters=4, blocks=1)


@pytest.mark.parametrize("name", RANDOM)
def test_random_transforms_deterministic_per_seed(name):
    """The transform functions themselves: the seed is an explicit argument."""
    x = smooth_images()
    fn = getattr(T, name)
    np.testing.assert_array_equal(fn(x, seed=3), fn(x, seed=3))
    assert not np.array_equal(fn(x, seed=3), fn(x, seed=4))
    assert defenses.NAMES[name].randomized


def test_random_resize_pad_defaults_to_xies_larger_output():
    """The function keeps Xie et al.'s padded size; the registered defense resizes back."""
    x = smooth_images(2)
    assert T.random_resize_pad(x, seed=0).shape == (2, 35, 35, 3)
    gray = smooth_images(2, 8, 1)
    assert T.random_resize_pad(gray, seed=0).shape == (2, 9, 9, 1)  # round(8 * 331 / 299)
    np.testing.assert_array_equal(defenses.make("random_resize_pad")(x, seed=0),
                                  T.random_resize_pad(x, seed=0, resize_back=True))


# --------------------------------------------------------------------------- Xie et al.

def content_box(image):
    """(top, left, height, width) of the non-zero region of one padded image."""
    rows, cols = np.flatnonzero(image.any(axis=(1, 2))), np.flatnonzero(image.any(axis=(0, 2)))
    return rows[0], cols[0], rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


@pytest.mark.parametrize("size, out", [(299, 331), (32, 35)])
def test_random_resize_pad_sizes_and_offsets(size, out):
    n = 3 if size == 299 else 40
    x = 0.1 + 0.9 * np.random.default_rng(0).random((n, size, size, 3), dtype=np.float32)
    padded = T.random_resize_pad(x, seed=0)
    assert padded.shape == (n, out, out, 3)
    sizes = set()
    for image in padded:
        top, left, height, width = content_box(image)
        assert height == width and size <= height < out  # rnd in [size, out)
        assert 0 <= top <= out - height and 0 <= left <= out - width
        sizes.add(height)
    if size == 32:
        assert sizes == {32, 33, 34}  # 40 draws of 3 sizes: every size appears
        # rnd == size: the image itself, pasted at the random offset.
        i = next(i for i, image in enumerate(padded) if content_box(image)[2] == 32)
        top, left, _, _ = content_box(padded[i])
        np.testing.assert_array_equal(padded[i, top:top + 32, left:left + 32], x[i])


def test_random_resize_pad_resize_back_and_options():
    x = smooth_images(2)
    back = T.random_resize_pad(x, seed=0, resize_back=True)
    assert back.shape == x.shape and back.dtype == np.float32
    grey = T.random_resize_pad(x, seed=0, out_size=40, pad_value=0.5)
    assert grey.shape == (2, 40, 40, 3) and np.all(grey[:, 0, 0] == 0.5)
    with pytest.raises(ValueError, match="square"):
        T.random_resize_pad(np.zeros((1, 32, 30, 3), np.float32), seed=0)
    with pytest.raises(ValueError, match="must exceed the image size"):
        T.random_resize_pad(x, seed=0, out_size=32)


# --------------------------------------------------------------------------- Prakash et al.

def test_pixel_deflection_changes_few_values_from_the_window():
    h, w, c, deflections, window = 32, 32, 3, 50, 3
    # Every value unique: a changed value tells where it came from.
    base = (np.arange(h * w * c, dtype=np.float32) / (h * w * c)).reshape(h, w, c)
    x = np.stack([base, base[::-1]])
    out = T.pixel_deflection(x, seed=0, deflections=deflections, window=window)
    for image, original in zip(out, x):
        changed = np.argwhere(image != original)
        assert 0 < len(changed) <= deflections
        assert len(np.unique(changed[:, :2], axis=0)) <= deflections  # pixels changed
        for r, col, ch in changed:
            src_r, src_c, src_ch = np.argwhere(original == image[r, col, ch])[0]
            assert src_ch == ch
            assert abs(src_r - r) <= window and abs(src_c - col) <= window


def test_pixel_deflection_counts_and_scaling():
    x = smooth_images(2)
    np.testing.assert_array_equal(T.pixel_deflection(x, seed=0, deflections=0), x)
    assert T.scaled_deflections(299, 299) == 200
    assert T.scaled_deflections(32, 32) == 2
    assert T.scaled_deflections(8, 8) == 1
    assert T.scaled_window(299, 299) == 10 and T.scaled_window(32, 32) == 1
    out = T.pixel_deflection(x, seed=0, deflections=None, window=None)
    assert np.count_nonzero(out != x) <= 2 * len(x)
    with pytest.raises(ValueError, match="deflections must be an integer >= 0"):
        T.pixel_deflection(x, seed=0, deflections=-1)
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        T.pixel_deflection(x, seed=0, window=0)


@pytest.mark.parametrize("channels", [3, 1])
def test_wavelet_denoise_reduces_noise_and_matches_skimage(channels):
    clean = smooth_images(3, 64, channels)
    x = noisy(clean)
    out = T.wavelet_denoise(x)
    assert np.mean((out - clean) ** 2) < 0.5 * np.mean((x - clean) ** 2)
    for sigma in (None, 0.04):
        out = T.wavelet_denoise(x, sigma=sigma)
        for i in range(len(x)):
            options = dict(sigma=sigma, wavelet="db1", mode="soft", method="BayesShrink")
            if channels == 3:
                ref = denoise_wavelet(x[i], channel_axis=-1, convert2ycbcr=True, **options)
            else:
                ref = denoise_wavelet(x[i, ..., 0], channel_axis=None, **options)[..., None]
            np.testing.assert_allclose(out[i], np.clip(ref, 0, 1), atol=1e-6)


def test_wavelet_denoise_constant_image_unchanged():
    for channels in (1, 3):
        for value in (0.0, 0.5, 1.0):
            x = np.full((1, 8, 8, channels), value, np.float32)
            np.testing.assert_allclose(T.wavelet_denoise(x), x, atol=1e-6)


def test_deflect_and_denoise_is_the_composition():
    x = noisy(smooth_images(2))
    expected = T.wavelet_denoise(T.pixel_deflection(x, seed=5, deflections=30, window=4),
                                 sigma=0.04)
    np.testing.assert_array_equal(
        T.deflect_and_denoise(x, seed=5, deflections=30, window=4), expected)


# --------------------------------------------------------------------------- Mustafa et al.

def test_sr_and_denoise_order_and_sizes(sr_model):
    x = smooth_images(2, 16)
    up = T.sr_and_denoise(x, sr_model, resize_back=False)
    assert up.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(up, sr.super_resolve(T.wavelet_denoise(x, sigma=0.04), sr_model),
                               atol=1e-6)
    back = T.sr_and_denoise(x, sr_model)
    assert back.shape == x.shape and back.dtype == np.float32
    with pytest.raises(ValueError, match="takes 3 channels"):
        T.sr_and_denoise(np.zeros((1, 8, 8, 1), np.float32), sr_model)
