"""FGSM (Goodfellow et al. 2015) through cleverhans' ``fast_gradient_method``."""

from __future__ import annotations

import numpy as np
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method

from tfadv.attacks.batching import in_batches


def fgsm(model, x, y, target=None, *, eps: float, batch_size: int = 256) -> np.ndarray:
    """One signed-gradient step of size ``eps`` (pixel units), clipped to [0, 1].

    Untargeted (``target`` None): ascends the loss of the true labels ``y`` (never the
    model's predictions, so no label leaking either way). Targeted: descends the loss of
    ``target``. Inputs are validated by ``tfadv.attacks.make``.
    """
    return in_batches(lambda xb, labels, targeted: fast_gradient_method(
        model, xb, eps, np.inf, clip_min=0.0, clip_max=1.0, y=labels, targeted=targeted),
        x, y, target, batch_size)
