"""The one batching loop: a function applied to slices of arrays, results filled in place."""

from __future__ import annotations

import numpy as np


def map_batches(fn, x: np.ndarray, *extra, batch_size: int, out_shape=None,
                dtype=np.float32) -> np.ndarray:
    """``fn(x[i:j], *(e[i:j] for e in extra))`` over slices of ``batch_size``, stacked.

    The result has ``out_shape`` (default: x's shape, as for attacks and defenses; give
    ``(len(x), k)`` for logits) and ``dtype``; ``fn`` may return tensors or arrays.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    n = len(x)
    out = None
    for start in range(0, n, batch_size):
        part = slice(start, start + batch_size)
        value = np.asarray(fn(x[part], *(e[part] for e in extra)))
        if out is None:
            out = np.empty(out_shape or (n, *value.shape[1:]), dtype)
        out[part] = value
    if out is None:  # no images: an empty result of the expected shape
        out = np.empty(out_shape or x.shape, dtype)
    return out


def pixels(part) -> np.ndarray:
    """float32 [0, 1] pixels of a batch: uint8 images (how large sets are kept, 4x smaller)
    are divided by 255 as :func:`tfadv.data.load` does; float images pass unchanged."""
    part = np.asarray(part)
    if part.dtype == np.uint8:
        return part.astype(np.float32) / 255.0
    return part.astype(np.float32, copy=False)


def predict_logits(model, x, batch_size: int = 500) -> np.ndarray:
    """Logits as float32 numpy, batched (no Keras progress bar, no retracing per size);
    ``x`` may be uint8 (converted a batch at a time by :func:`pixels`)."""
    import tensorflow as tf
    return map_batches(lambda part: np.asarray(model(tf.constant(pixels(part)), training=False),
                                               np.float32),
                       x, batch_size=batch_size,
                       out_shape=(len(x), int(model.output_shape[-1])))
