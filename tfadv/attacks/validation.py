"""Input checks shared by every attack: clear ValueErrors instead of silent nonsense."""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf

TARGET_STRATEGIES = ("least_likely", "least_likely_top5")


def num_classes_of(model) -> int:
    return int(model.output_shape[-1])


def check_eps(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def check_images(model, x) -> np.ndarray:
    """A float32 copy of ``x`` after checking rank, channels, finiteness and [0, 1] range."""
    x = np.array(x, dtype=np.float32, copy=True)  # a copy: the caller's array is never touched
    if x.ndim != 4:
        raise ValueError(f"images must be a batch NHWC of rank 4, got shape {x.shape}; "
                         "add a batch axis with x[None] for a single image")
    expected = tuple(model.input_shape[1:])
    if len(expected) == 3 and any(e is not None and e != s for e, s in zip(expected, x.shape[1:])):
        raise ValueError(f"images have shape {x.shape[1:]} (HWC) but the model takes {expected}")
    if not np.all(np.isfinite(x)):
        raise ValueError("images contain NaN or Inf values")
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(f"pixels must lie in [0, 1], got min {x.min():.4g} and max "
                         f"{x.max():.4g}; divide uint8 images by 255")
    return x


def check_labels(model, y, n: int, what: str = "labels") -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"{what} must have shape ({n},), one class id per image, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"{what} must be integer class ids, got dtype {y.dtype}")
    y = y.astype(np.int64)
    classes = num_classes_of(model)
    if n and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"{what} must lie in [0, {classes - 1}] for this {classes}-class model, "
                         f"got min {y.min()} and max {y.max()}")
    return y


def check_logits(model, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Logits of the first images; raises if the model already applies a softmax."""
    out = np.asarray(model(tf.constant(x[:batch_size]), training=False), np.float32)
    if out.ndim != 2:
        raise ValueError(f"model must return logits of shape (batch, classes), got {out.shape}")
    if (out.shape[1] > 1 and np.all(out >= 0) and np.all(out <= 1)
            and np.allclose(out.sum(axis=1), 1.0, atol=1e-3)):
        raise ValueError("the model returns probabilities (rows are in [0, 1] and sum to 1), "
                         "but attacks need logits: remove the final softmax, e.g. "
                         "classifier_activation=None in keras.applications")
    return out


def resolve_target(model, x: np.ndarray, target, batch_size: int = 256):
    """None, an array of class ids, or a strategy name -> None or an int64 array."""
    if target is None:
        return None
    if isinstance(target, str):
        if target not in TARGET_STRATEGIES:
            raise ValueError(f"unknown target strategy {target!r}; use one of "
                             f"{TARGET_STRATEGIES} or an array of class ids")
        from tfadv.evaluation import predict_logits
        logits = predict_logits(model, x, batch_size)
        if target == "least_likely":
            return logits.argmin(axis=1).astype(np.int64)
        top5 = np.argsort(-logits, axis=1)[:, :5]
        return top5[:, -1].astype(np.int64)
    return check_labels(model, target, len(x), what="target")


# Models already seen to return logits. Whether a model ends in a softmax is a property of the
# model, not of the images: checking it once per model keeps a forward pass out of every call
# (it made the FGSM wrapper 2-3x slower than cleverhans itself on small batches).
_LOGITS_CHECKED = weakref.WeakSet()


def validate(model, x, y, target=None):
    """All checks of the attack contract; returns float32 x (a copy), int64 y, target."""
    x = check_images(model, x)
    y = check_labels(model, y, len(x))
    if len(x) and model not in _LOGITS_CHECKED:
        check_logits(model, x)
        _LOGITS_CHECKED.add(model)
    return x, y, resolve_target(model, x, target)
