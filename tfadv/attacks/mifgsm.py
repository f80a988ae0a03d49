"""MI-FGSM (Dong et al. 2018), native or cleverhans' ``momentum_iterative_method``."""

from __future__ import annotations

import numpy as np
from cleverhans.tf2.attacks.momentum_iterative_method import momentum_iterative_method

from tfadv import checks
from tfadv.attacks import iterative
from tfadv.attacks.batching import in_batches, labels_and_mode, pick_backend


def mifgsm(model, x, y, target=None, *, eps: float, eps_iter: float | None = None,
           nb_iter: int = 10, decay_factor: float = 1.0, backend: str = "native",
           jit_compile: bool = False, batch_size: int = 256, snapshots=()):
    """Momentum iterative FGSM, Linf, pixel units: each step adds the L1-normalised (per
    image) gradient to a momentum ``g = decay_factor * g + grad / mean|grad|`` and moves
    ``eps_iter * sign(g)``, clipped to the eps-ball around x and to [0, 1].

    ``eps_iter`` None means ``eps / nb_iter``, the paper's choice. ``eps == 0`` returns a copy
    of x. Untargeted: ascends the loss of the true labels ``y``; targeted: descends the loss of
    ``target``. ``backend``, ``jit_compile`` and ``snapshots`` as for ``pgd``. Inputs are
    validated by ``tfadv.attacks.make``.
    """
    backend = pick_backend(backend, jit_compile)
    nb_iter = checks.integer("nb_iter", nb_iter, 1)
    eps = float(eps)
    eps_iter = eps / nb_iter if eps_iter is None else float(eps_iter)
    decay_factor = checks.non_negative("decay_factor", decay_factor)
    if backend == "native":
        labels, targeted = labels_and_mode(y, target)
        return iterative.iterate(model, x, labels, targeted=targeted, eps=eps,
                                 eps_iter=eps_iter, nb_iter=nb_iter, decay=decay_factor,
                                 snapshots=snapshots, batch_size=batch_size,
                                 jit_compile=jit_compile)
    if eps == 0:
        return np.array(x, dtype=np.float32, copy=True)
    return in_batches(lambda xb, labels, targeted: momentum_iterative_method(
        model, xb, eps, eps_iter, nb_iter, np.inf, clip_min=0.0, clip_max=1.0, y=labels,
        targeted=targeted, decay_factor=decay_factor, sanity_checks=False),
        x, y, target, batch_size)
