"""The one set of input checks: images, labels and scalars, with errors that say how to fix.

Every public function of the library that takes images, labels or a hyperparameter checks it
here, so a wrong input gives the same clear ``ValueError`` wherever it enters.
"""

from __future__ import annotations

import numpy as np


def images(x, name: str = "images", *, shape=None, channels=None, copy: bool = True,
           chunk: int = 1024) -> np.ndarray:
    """``x`` as float32 NHWC pixels in [0, 1], after checking rank, shape, finiteness, range.

    ``shape``: the (H, W, C) a model takes (None entries match anything); ``channels``: the
    allowed channel counts. ``copy=False`` checks in chunks without copying a float32 input
    (a paper-sized set is ~14 GB); the default returns a copy, so the caller's array is
    never modified by what is done with the result.
    """
    try:
        x = np.array(x, dtype=np.float32, copy=True) if copy else np.asarray(x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array of images, got {type(x).__name__}: "
                         f"{err}") from err
    if x.ndim != 4:
        raise ValueError(f"{name} must be a batch NHWC of rank 4, got shape {x.shape}; add a "
                         "batch axis with x[None] for a single image")
    if shape is not None:
        shape = tuple(shape)
        if len(shape) == 3 and any(e is not None and e != s for e, s in zip(shape, x.shape[1:])):
            raise ValueError(f"{name} have shape {x.shape[1:]} (HWC) but the model takes "
                             f"{shape}: resize them (height, width, channels) to fit")
    if channels is not None and x.shape[-1] not in channels:
        raise ValueError(f"{name} must have 1 (grayscale) or 3 (RGB) channels in the last axis "
                         f"(NHWC), got shape {x.shape}; transpose NCHW images to NHWC")
    if not copy:
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"{name}: expected float pixels in [0, 1], got dtype {x.dtype}; "
                             "convert uint8 images with x.astype('float32') / 255")
        x = np.asarray(x, np.float32)
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk]
        if not np.all(np.isfinite(part)):
            raise ValueError(f"{name} contain NaN or Inf values; fix the attack or data that "
                             "produced them")
        if part.size and (part.min() < 0.0 or part.max() > 1.0):
            raise ValueError(f"{name}: pixels must lie in [0, 1], got min {part.min():.4g} and "
                             f"max {part.max():.4g}; divide uint8 images by 255 or clip")
    return x


def image_pair(x_ref, x) -> tuple[np.ndarray, np.ndarray]:
    """float64 copies of two NHWC batches of [0, 1] images of one shape."""
    x_ref, x = np.array(x_ref, np.float64), np.array(x, np.float64)
    if x_ref.shape != x.shape:
        raise ValueError(f"reference and compared images must have the same shape, got "
                         f"{x_ref.shape} and {x.shape}; resize the purified images back to the "
                         "input size first")
    images(x_ref, "reference images")
    images(x, "compared images")
    return x_ref, x


def labels(y, n: int, num_classes: int, name: str = "labels") -> np.ndarray:
    """``y`` as int64 class ids, one per image, each in [0, num_classes)."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), one class id per image, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"{name} must be integer class ids, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes - 1}] for this "
                         f"{num_classes}-class model, got min {y.min()} and max {y.max()}")
    return y


def integer(name: str, value, minimum: int = 0) -> int:
    """``value`` as an int, refusing bools, fractions and values below ``minimum``."""
    try:
        ok = (not isinstance(value, (bool, str, bytes)) and float(value).is_integer()
              and value >= minimum)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def non_negative(name: str, value) -> float:
    """A finite float >= 0 (eps, step sizes in pixel units)."""
    if isinstance(value, (str, bytes, bool)):  # "0.01" or True would key caches differently
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}") from None
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def positive(name: str, value) -> float:
    """A finite float > 0 (learning rates, scales)."""
    value = non_negative(name, value)
    if value == 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def boolean(name: str, value) -> bool:
    """``value`` as a bool; refuses 0/1 and strings such as "yes", which would read as True."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def fraction(name: str, value, *, include_one: bool = True) -> float:
    """A float in (0, 1] (or (0, 1) with ``include_one=False``): shares, decay factors."""
    value = positive(name, value)
    if value > 1 or (value == 1 and not include_one):
        raise ValueError(f"{name} must lie in (0, 1{']' if include_one else ')'}, got {value!r}")
    return value


def one_of(name: str, value, options) -> object:
    """``value`` itself if it is one of ``options`` (norms, mode names)."""
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value
