"""BIM (Kurakin et al. 2017) through cleverhans' ``basic_iterative_method``."""

from __future__ import annotations

import numpy as np
from cleverhans.tf2.attacks.basic_iterative_method import basic_iterative_method

from tfadv import checks
from tfadv.attacks.batching import in_batches


def bim(model, x, y, target=None, *, eps: float, eps_iter: float, nb_iter: int = 10,
        batch_size: int = 256) -> np.ndarray:
    """``nb_iter`` signed-gradient steps of ``eps_iter`` from x itself (no random start), each
    clipped to the Linf ball of radius ``eps`` around x and to [0, 1] (pixel units).

    cleverhans asserts ``eps_iter <= eps``: a larger ``eps_iter`` is clamped to ``eps`` (the
    step would be projected back anyway), so an eps sweep with a fixed step does not crash;
    ``eps == 0`` returns a copy of x. Untargeted: ascends the loss of the true labels ``y``
    (never the model's predictions); targeted: descends the loss of ``target``. Inputs are
    validated by ``tfadv.attacks.make``.
    """
    nb_iter = checks.integer("nb_iter", nb_iter, 1)
    eps, eps_iter = float(eps), min(float(eps_iter), float(eps))
    if eps == 0:
        return np.array(x, dtype=np.float32, copy=True)
    return in_batches(lambda xb, labels, targeted: basic_iterative_method(
        model, xb, eps, eps_iter, nb_iter, np.inf, clip_min=0.0, clip_max=1.0, y=labels,
        targeted=targeted, sanity_checks=False), x, y, target, batch_size)
