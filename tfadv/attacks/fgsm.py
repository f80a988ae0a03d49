"""FGSM (Goodfellow et al. 2015): one signed-gradient step, native (compiled) or cleverhans'."""

from __future__ import annotations

import numpy as np
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method

from tfadv.attacks import iterative
from tfadv.attacks.batching import in_batches, labels_and_mode, pick_backend


def fgsm(model, x, y, target=None, *, eps: float, backend: str = "native",
         jit_compile: bool = False, batch_size: int = 256) -> np.ndarray:
    """One signed-gradient step of size ``eps`` (pixel units), clipped to [0, 1].

    Untargeted (``target`` None): ascends the loss of the true labels ``y`` (never the
    model's predictions, so no label leaking either way). Targeted: descends the loss of
    ``target``. ``backend``: ``"native"`` (tfadv/attacks/iterative.py, one compiled call per
    batch; ``jit_compile`` asks XLA for it) or ``"cleverhans"`` (its ``fast_gradient_method``,
    eagerly); both give the same images. Inputs are validated by ``tfadv.attacks.make``.
    """
    if pick_backend(backend, jit_compile) == "cleverhans":
        return in_batches(lambda xb, labels, targeted: fast_gradient_method(
            model, xb, eps, np.inf, clip_min=0.0, clip_max=1.0, y=labels, targeted=targeted),
            x, y, target, batch_size)
    labels, targeted = labels_and_mode(y, target)
    return iterative.iterate(model, x, labels, targeted=targeted, eps=eps, eps_iter=eps,
                             nb_iter=1, project=False, batch_size=batch_size,
                             jit_compile=jit_compile)

