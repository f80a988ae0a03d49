"""The loop every gradient attack shares: internal batches, true labels or targets."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def in_batches(step, x: np.ndarray, y: np.ndarray, target, batch_size: int,
               *extra: np.ndarray) -> np.ndarray:
    """``step(x_batch, labels_batch, targeted, *extra_batches) -> tensor`` over ``batch_size``
    slices; the labels are ``target`` when given (a targeted attack), else the true ``y``."""
    labels = y if target is None else target
    out = np.empty_like(x)
    for i in range(0, len(x), batch_size):
        part = slice(i, i + batch_size)
        out[part] = np.asarray(step(tf.constant(x[part]), tf.constant(labels[part]),
                                    target is not None, *(e[part] for e in extra)))
    return out
