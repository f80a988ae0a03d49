"""The cleverhans-style attacks' call over internal batches: true labels or targets, tensors."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfadv import checks
from tfadv.batching import map_batches


def in_batches(step, x: np.ndarray, y: np.ndarray, target, batch_size: int,
               *extra: np.ndarray) -> np.ndarray:
    """``step(x_batch, labels_batch, targeted, *extra_batches) -> tensor`` over ``batch_size``
    slices (``tfadv.batching.map_batches``); the labels are ``target`` when given (a targeted
    attack), else the true ``y``. Images and labels reach ``step`` as tensors."""
    batch_size = checks.integer("batch_size", batch_size, 1)
    labels = y if target is None else target
    targeted = target is not None
    return map_batches(
        lambda xb, lb, *eb: step(tf.constant(xb), tf.constant(lb), targeted, *eb),
        x, labels, *extra, batch_size=batch_size)
