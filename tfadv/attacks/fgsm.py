"""FGSM (Goodfellow et al. 2015) through cleverhans' ``fast_gradient_method``."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method


def fgsm(model, x, y, target=None, *, eps: float, batch_size: int = 256) -> np.ndarray:
    """One signed-gradient step of size ``eps`` (pixel units), clipped to [0, 1].

    Untargeted (``target`` None): ascends the loss of the true labels ``y`` (never the
    model's predictions, so no label leaking either way). Targeted: descends the loss of
    ``target``. Inputs are validated by ``tfadv.attacks.make``.
    """
    out = np.empty_like(x)
    for i in range(0, len(x), batch_size):
        labels = y[i:i + batch_size] if target is None else target[i:i + batch_size]
        out[i:i + batch_size] = fast_gradient_method(
            model, tf.constant(x[i:i + batch_size]), eps, np.inf, clip_min=0.0, clip_max=1.0,
            y=tf.constant(labels), targeted=target is not None).numpy()
    return out
