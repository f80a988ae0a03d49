"""Metrics on models and adversarial examples: accuracy, predictions, confusion matrices."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def predict_logits(model, x, batch_size: int = 500) -> np.ndarray:
    """Logits as float32 numpy, batched (no Keras progress bar, no retracing per size)."""
    outs = [model(tf.constant(x[i:i + batch_size]), training=False)
            for i in range(0, len(x), batch_size)]
    return np.concatenate([np.asarray(o, np.float32) for o in outs])


def predict(model, x, batch_size: int = 500) -> np.ndarray:
    return predict_logits(model, x, batch_size).argmax(-1)


def accuracy(model, x, y, batch_size: int = 500) -> float:
    return float(np.mean(predict(model, x, batch_size) == np.asarray(y)))


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """counts[i, j] = number of images of class i predicted as class j."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return counts
