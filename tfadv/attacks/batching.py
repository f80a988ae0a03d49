"""What the signed-gradient attacks share: the backend choice, and the cleverhans backend's
call over internal batches (true labels or targets, as tensors)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfadv import checks
from tfadv.batching import map_batches

# "native": tfadv/attacks/iterative.py's compiled loop; "cleverhans": cleverhans 4.0.0's eager
# functions, the reference the native kernel is checked against (same images).
BACKENDS = ("native", "cleverhans")


def pick_backend(backend: str, jit_compile) -> str:
    """Checks ``backend`` and ``jit_compile`` (XLA is the native kernel's option only)."""
    backend = checks.one_of("backend", backend, BACKENDS)
    if checks.boolean("jit_compile", jit_compile) and backend != "native":
        raise ValueError("jit_compile=True needs backend='native' (cleverhans runs eagerly)")
    return backend


def labels_and_mode(y: np.ndarray, target) -> tuple[np.ndarray, bool]:
    """The labels the loss is measured against (``target`` when given) and whether the
    attack is targeted."""
    return (y, False) if target is None else (target, True)


def in_batches(step, x: np.ndarray, y: np.ndarray, target, batch_size: int,
               *extra: np.ndarray) -> np.ndarray:
    """``step(x_batch, labels_batch, targeted, *extra_batches) -> tensor`` over ``batch_size``
    slices (``tfadv.batching.map_batches``); the labels are ``target`` when given (a targeted
    attack), else the true ``y``. Images and labels reach ``step`` as tensors."""
    batch_size = checks.integer("batch_size", batch_size, 1)
    labels, targeted = labels_and_mode(y, target)
    return map_batches(
        lambda xb, lb, *eb: step(tf.constant(xb), tf.constant(lb), targeted, *eb),
        x, labels, *extra, batch_size=batch_size)
