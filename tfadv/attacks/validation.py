"""The attack contract's input checks: images, labels, targets and logits (not probabilities).

Images, labels and scalars are checked by :mod:`tfadv.checks`, the library's one set of
validators; what is specific to attacks lives here: the model's input shape and class count,
target strategies, and refusing a model that ends in a softmax.
"""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf

from tfadv import checks
from tfadv.batching import predict_logits

TARGET_STRATEGIES = ("least_likely", "least_likely_top5")


def num_classes_of(model) -> int:
    return int(model.output_shape[-1])


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
        logits = predict_logits(model, x, batch_size)
        if target == "least_likely":
            return logits.argmin(axis=1).astype(np.int64)
        top5 = np.argsort(-logits, axis=1)[:, :5]
        return top5[:, -1].astype(np.int64)
    return checks.labels(target, len(x), num_classes_of(model), "target")


# Models already seen to return logits. Whether a model ends in a softmax is a property of the
# model, not of the images: checking it once per model keeps a forward pass out of every call
# (it made the FGSM wrapper 2-3x slower than cleverhans itself on small batches).
_LOGITS_CHECKED = weakref.WeakSet()


def validate(model, x, y, target=None):
    """All checks of the attack contract; returns float32 x (a copy), int64 y, target."""
    x = checks.images(x, shape=model.input_shape[1:])
    y = checks.labels(y, len(x), num_classes_of(model))
    if len(x) and model not in _LOGITS_CHECKED:
        check_logits(model, x)
        _LOGITS_CHECKED.add(model)
    return x, y, resolve_target(model, x, target)
