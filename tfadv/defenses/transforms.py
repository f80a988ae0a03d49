"""Input-transformation defenses: the baselines paper 003 (Table 2) compares against.

Paper 003 compares its image-to-image purifier with three earlier pre-processing defenses:

- ``random_resize_pad``: Xie et al. 2017, "Mitigating adversarial effects through
  randomization" (arXiv:1711.01991): random resizing, then random zero padding.
- ``deflect_and_denoise``: Prakash et al. 2018, "Deflecting adversarial attacks with pixel
  deflection" (CVPR): random local pixel redistribution, then wavelet denoising.
- ``sr_and_denoise``: Mustafa et al. 2019, "Image super-resolution as a defense against
  adversarial attacks" (IEEE TIP 29): wavelet denoising, then x2 super-resolution.

Every transform is a plain function ``defense(x, **params) -> x'``: ``x`` is a float32 NHWC
batch in [0, 1] with 1 or 3 channels; the result is a new float32 array in [0, 1] (the caller's
array is never modified). Random transforms take an explicit ``seed`` and give the same output
for the same seed and batch; images of one batch get different random draws. ``make(name,
**params)`` binds parameters and returns ``defense(x) -> x'``; :data:`TRANSFORMS` and
:data:`DESCRIPTIONS` list them for experiments and report tables.

Differences from the original implementations are stated in each docstring. The one shared by
all: the suite's classifiers take [0, 1] pixels and do their own normalisation, so every
transform works in [0, 1] pixel space.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from skimage.restoration import denoise_wavelet

from tfadv import checks
from tfadv.data import resize_images
from tfadv.models.sr import super_resolve

# Xie et al. resize a 299x299 Inception-v3 input to rnd x rnd, rnd in [299, 331), and pad it
# to 331x331.
XIE_SCALE = 331 / 299
# Prakash et al.'s released code: 200 deflections in a +-10 pixel window on 224x224 / 299x299
# ImageNet images, and wavelet denoising with sigma = 0.04. Mustafa et al.'s released code
# (Wavelet_Denoising.py) uses the same denoiser settings, sigma = 0.04 included.
PRAKASH_DEFLECTIONS, PRAKASH_WINDOW, PRAKASH_SIDE = 200, 10, 299
PAPER_SIGMA = 0.04


def check_images(x, name: str = "x") -> np.ndarray:
    """A float32 copy of ``x``: NHWC, 1 or 3 channels, finite, in [0, 1] (tfadv.checks)."""
    return checks.images(x, name, channels=(1, 3))


# --------------------------------------------------------------------------- Xie et al.

def random_resize_pad(x, *, seed, out_size: int | None = None, scale: float = XIE_SCALE,
                      pad_value: float = 0.0, resize_back: bool = False) -> np.ndarray:
    """Random resizing and random padding (Xie et al. 2017), one random draw per image.

    Xie et al. resize a 299x299 image to ``rnd x rnd`` with ``rnd`` uniform in [299, 331)
    (nearest neighbour, as in their code), then zero-pad it to 331x331 with the image at a
    random offset: ``top`` and ``left`` uniform in [0, 331 - rnd] (their 12,528 patterns). For
    other (square) sizes ``s`` the same proportions are used: ``rnd`` in ``[s, out)`` and padding
    to ``out = round(s * scale)`` (32 -> 35 for CIFAR-10); ``out_size`` sets ``out`` directly.

    The result is LARGER than the input, ``(n, out, out, c)``: the classifier must accept that
    size (Xie et al. feed 331x331 images to Inception-v3, whose global pooling allows it). The
    suite's models have fixed input shapes (``resnet.py``: ``keras.Input((32, 32, 3))``;
    ``inception.py``: ``image_size`` square), so for them pass ``resize_back=True``: the padded
    image is resized back to the input size with area interpolation (antialiased), which keeps
    the random rescale-and-shift of the defense.

    ``pad_value`` is 0 (black), the paper's "padding zeros". Xie et al.'s code padded zeros
    after Inception preprocessing to [-1, 1], which is ``pad_value=0.5`` (grey) in [0, 1] pixels.
    Per-image sizes and offsets come from ``np.random.default_rng(seed)``.
    """
    x = check_images(x)
    n, h, w, c = x.shape
    if h != w:
        raise ValueError(f"random_resize_pad needs square images (Xie et al. resize to rnd x "
                         f"rnd), got {h}x{w}; crop or resize the images to a square first")
    if not np.isfinite(scale) or scale <= 1:
        raise ValueError(f"scale must be a finite number > 1, got {scale}")
    size = round(h * scale) if out_size is None else checks.integer("out_size", out_size, 1)
    if size <= h:
        raise ValueError(f"the padded size {size} must exceed the image size {h} so the random "
                         "size range [h, size) is not empty; pass a larger out_size or scale")
    if not 0.0 <= pad_value <= 1.0:
        raise ValueError(f"pad_value must lie in [0, 1] (pixel units), got {pad_value}")
    rng = np.random.default_rng(seed)
    out = np.full((n, size, size, c), pad_value, np.float32)
    for i in range(n):
        rnd = int(rng.integers(h, size))                       # [h, size)
        top, left = rng.integers(0, size - rnd, size=2, endpoint=True)  # [0, size - rnd]
        out[i, top:top + rnd, left:left + rnd] = resize_images(x[i], (rnd, rnd), "nearest")
    if resize_back:
        out = resize_images(out, (h, w), "area") if n else np.zeros_like(x)
    return out


# --------------------------------------------------------------------------- Prakash et al.

def scaled_deflections(height: int, width: int) -> int:
    """Prakash et al.'s 200 deflections per 299x299 image, scaled by pixel count (>= 1).

    32x32 (CIFAR-10) -> 2, 8x8 (digits) -> 1, 299x299 -> 200. The same density of deflected
    pixels, so a small image is not scrambled far more than an ImageNet image was.
    """
    return max(1, round(PRAKASH_DEFLECTIONS * height * width / PRAKASH_SIDE ** 2))


def scaled_window(height: int, width: int) -> int:
    """Prakash et al.'s +-10 pixel window at 299x299, scaled by the image side (>= 1)."""
    return max(1, round(PRAKASH_WINDOW * min(height, width) / PRAKASH_SIDE))


def pixel_deflection(x, *, seed, deflections: int | None = PRAKASH_DEFLECTIONS,
                     window: int | None = PRAKASH_WINDOW) -> np.ndarray:
    """Pixel deflection (Prakash et al. 2018): replace random pixels by random neighbours.

    Each deflection picks a random position ``(r, col)`` and replaces its value with the value
    at a position drawn uniformly from the ``(2 * window + 1)``-square around it, clipped to the
    image (this equals the original's rejection sampling of offsets in [-window, window] until
    the source lies inside the image). As in the released code, a deflection moves one channel
    value: deflection ``k`` acts on channel ``k % channels``, so every deflection changes at most
    one value and a colour image gets ``deflections / 3`` per channel.

    Differences from the paper, on purpose:

    - No class-activation-map weighting: positions are uniform, as in the released code with
      ``-disable_map`` (the robust activation map needs the ImageNet classifier's CAM).
    - Sources are read from the input image, not from the partly deflected one (the original
      loops in place). With 200 deflections among 89,401 pixels the two almost never differ,
      and every new value is then a value of the input inside the window.

    ``deflections=None`` / ``window=None`` scale the 299x299 settings to the image size
    (:func:`scaled_deflections`, :func:`scaled_window`): 2 deflections and a +-1 window at 32x32.
    Random positions come from ``np.random.default_rng(seed)``.
    """
    x = check_images(x)
    n, h, w, c = x.shape
    k = scaled_deflections(h, w) if deflections is None else \
        checks.integer("deflections", deflections, 0)
    win = scaled_window(h, w) if window is None else checks.integer("window", window, 1)
    rng = np.random.default_rng(seed)
    out = x.copy()
    channels = np.arange(k) % c
    for i in range(n):
        rows, cols = rng.integers(0, h, size=k), rng.integers(0, w, size=k)
        src_rows = rng.integers(np.maximum(rows - win, 0), np.minimum(rows + win, h - 1),
                                endpoint=True)
        src_cols = rng.integers(np.maximum(cols - win, 0), np.minimum(cols + win, w - 1),
                                endpoint=True)
        out[i, rows, cols, channels] = x[i, src_rows, src_cols, channels]
    return out


def wavelet_denoise(x, *, sigma: float | None = None, wavelet: str = "db1", mode: str = "soft",
                    method: str = "BayesShrink", convert2ycbcr: bool = True) -> np.ndarray:
    """Wavelet denoising per image with ``skimage.restoration.denoise_wavelet``.

    Prakash et al. and Mustafa et al. both denoise with soft BayesShrink thresholding in the
    YCbCr colour space (their code: ``denoise_wavelet(img, sigma=0.04, mode='soft',
    convert2ycbcr=True, method='BayesShrink')``); the defaults here are the same except
    ``sigma``: None lets skimage estimate the noise per channel, while the composed defenses
    (:func:`deflect_and_denoise`, :func:`sr_and_denoise`) use the papers' 0.04. Grayscale images
    are denoised as single-channel images, without the YCbCr conversion.

    Where skimage cannot estimate the noise (all finest diagonal wavelet details are zero, e.g.
    a constant image, its estimate is NaN) the noise is taken as 0: BayesShrink's threshold
    then is 0 and the image is returned unchanged. Results are clipped to [0, 1].
    """
    x = check_images(x)
    if sigma is not None and (not np.isfinite(sigma) or sigma < 0):
        raise ValueError(f"sigma must be None (estimate it) or a finite number >= 0, got "
                         f"{sigma}")
    if mode not in ("soft", "hard"):
        raise ValueError(f"mode must be 'soft' or 'hard', got {mode!r}")
    if method not in ("BayesShrink", "VisuShrink"):
        raise ValueError(f"method must be 'BayesShrink' or 'VisuShrink', got {method!r}")
    options = dict(sigma=sigma, wavelet=wavelet, mode=mode, method=method)
    out = np.empty_like(x)
    for i, image in enumerate(x):
        with warnings.catch_warnings():
            # skimage's noise estimate of an image without fine details: NaN, handled below.
            warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
            warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
            if image.shape[-1] == 1:
                denoised = denoise_wavelet(image[..., 0], channel_axis=None, **options)[..., None]
            else:
                denoised = denoise_wavelet(image, channel_axis=-1, convert2ycbcr=convert2ycbcr,
                                           **options)
        out[i] = np.where(np.isfinite(denoised), denoised, image)
    return np.clip(out, 0.0, 1.0)


def deflect_and_denoise(x, *, seed, deflections: int | None = PRAKASH_DEFLECTIONS,
                        window: int | None = PRAKASH_WINDOW, sigma: float | None = PAPER_SIGMA,
                        wavelet: str = "db1", mode: str = "soft", method: str = "BayesShrink",
                        convert2ycbcr: bool = True) -> np.ndarray:
    """Pixel deflection, then wavelet denoising: Prakash et al.'s full defense (paper 003's
    "Pixel Deflection + Wavelet Denoising" baseline).

    Deflection adds a little local noise that breaks the adversarial pattern; the denoiser,
    soft BayesShrink in YCbCr with sigma 0.04 as in their code, removes it together with part
    of the adversarial perturbation. See :func:`pixel_deflection` and :func:`wavelet_denoise`.
    """
    deflected = pixel_deflection(x, seed=seed, deflections=deflections, window=window)
    return wavelet_denoise(deflected, sigma=sigma, wavelet=wavelet, mode=mode, method=method,
                           convert2ycbcr=convert2ycbcr)


# --------------------------------------------------------------------------- Mustafa et al.

def sr_and_denoise(x, sr_model: keras.Model, *, sigma: float | None = PAPER_SIGMA,
                   wavelet: str = "db1", mode: str = "soft", method: str = "BayesShrink",
                   convert2ycbcr: bool = True, resize_back: bool = True,
                   batch_size: int = 64) -> np.ndarray:
    """Wavelet denoising, then x2 super-resolution (Mustafa et al. 2019; paper 003's "WD+SR").

    The order is Mustafa et al.'s: their code denoises first (``Wavelet_Denoising.py``, soft
    BayesShrink in YCbCr, sigma 0.04) and super-resolves the denoised image; the SR network then
    maps the denoised image back towards the natural-image manifold. Their classifier took the
    598x598 result. The suite's classifiers have a fixed input size, so with ``resize_back=True``
    (default) the super-resolved image is resized back to the input size with area
    interpolation (antialiased, a 2x2 box filter for x2); ``resize_back=False`` returns the x2
    image. Their pipeline also saved the denoised image as JPEG in between; that compression is
    not reproduced here. ``sr_model`` is an SR network such as one from :func:`train_sr`.
    """
    denoised = wavelet_denoise(x, sigma=sigma, wavelet=wavelet, mode=mode, method=method,
                               convert2ycbcr=convert2ycbcr)
    if not len(denoised):
        return denoised
    upscaled = super_resolve(denoised, sr_model, batch_size=batch_size)
    if not resize_back:
        return upscaled
    return resize_images(upscaled, denoised.shape[1:3], "area")
