"""BIM (Kurakin et al. 2017): PGD's steps from x itself, native or cleverhans'
``basic_iterative_method``."""

from __future__ import annotations

import numpy as np
from cleverhans.tf2.attacks.basic_iterative_method import basic_iterative_method

from tfadv import checks
from tfadv.attacks import iterative
from tfadv.attacks.batching import in_batches, labels_and_mode, pick_backend


def bim(model, x, y, target=None, *, eps: float, eps_iter: float, nb_iter: int = 10,
        backend: str = "native", jit_compile: bool = False, batch_size: int = 256,
        snapshots=()):
    """``nb_iter`` signed-gradient steps of ``eps_iter`` from x itself (no random start), each
    clipped to the Linf ball of radius ``eps`` around x and to [0, 1] (pixel units).

    cleverhans asserts ``eps_iter <= eps``: a larger ``eps_iter`` is clamped to ``eps`` (the
    step would be projected back anyway), so an eps sweep with a fixed step does not crash;
    ``eps == 0`` returns a copy of x. Untargeted: ascends the loss of the true labels ``y``
    (never the model's predictions); targeted: descends the loss of ``target``. ``backend``,
    ``jit_compile`` and ``snapshots`` as for ``pgd``. Inputs are validated by
    ``tfadv.attacks.make``.
    """
    backend = pick_backend(backend, jit_compile)
    nb_iter = checks.integer("nb_iter", nb_iter, 1)
    eps, eps_iter = float(eps), min(float(eps_iter), float(eps))
    if backend == "native":
        labels, targeted = labels_and_mode(y, target)
        return iterative.iterate(model, x, labels, targeted=targeted, eps=eps,
                                 eps_iter=eps_iter, nb_iter=nb_iter, snapshots=snapshots,
                                 batch_size=batch_size, jit_compile=jit_compile)
    if eps == 0:
        return np.array(x, dtype=np.float32, copy=True)
    return in_batches(lambda xb, labels, targeted: basic_iterative_method(
        model, xb, eps, eps_iter, nb_iter, np.inf, clip_min=0.0, clip_max=1.0, y=labels,
        targeted=targeted, sanity_checks=False), x, y, target, batch_size)
