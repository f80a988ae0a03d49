"""PGD (Madry et al. 2018): iterated FGSM steps projected onto the Linf eps-ball around x.

The steps are cleverhans' (``fast_gradient_method`` step, ``clip_eta`` projection around the
*original* x, clip to [0, 1]); ``backend="native"`` runs them as one compiled loop
(tfadv/attacks/iterative.py), ``backend="cleverhans"`` with cleverhans' own eager functions.
Unlike cleverhans' ``projected_gradient_descent``:

- cleverhans draws the random start with TensorFlow's global RNG (``random_lp_vector``) and
  takes no initial point, so a seeded result would need global TF seeds, which leak into
  everything else in the process. Here the start comes from ``np.random.default_rng(seed)``,
  drawn for the whole batch before the internal batching, so it does not depend on
  ``batch_size`` either.
- cleverhans asserts ``eps_iter <= eps``, so an eps sweep with a fixed step crashes at small
  eps. Here ``eps_iter`` is clamped to ``eps`` (a larger step would be projected back anyway),
  and ``eps == 0`` returns a copy of x.

With ``rand_init=False`` the result equals cleverhans' ``projected_gradient_descent`` (and
``basic_iterative_method``) with the same arguments (tests/attacks/test_iterative.py).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
from cleverhans.tf2.utils import clip_eta

from tfadv import checks
from tfadv.attacks import iterative
from tfadv.attacks.batching import in_batches, labels_and_mode, pick_backend


def pgd(model, x, y, target=None, *, eps: float, eps_iter: float, nb_iter: int = 10,
        rand_init: bool = True, seed: int = 0, backend: str = "native",
        jit_compile: bool = False, batch_size: int = 256, snapshots=()):
    """``nb_iter`` signed-gradient steps of ``eps_iter``, each projected onto the Linf ball of
    radius ``eps`` around x and clipped to [0, 1] (pixel units).

    ``rand_init``: start from x + U(-eps, eps) (clipped to [0, 1]) drawn with
    ``np.random.default_rng(seed)``; the same seed gives the same result. ``eps_iter`` larger
    than ``eps`` is clamped to ``eps``. Untargeted: ascends the loss of the true labels ``y``;
    targeted: descends the loss of ``target``. ``backend``: ``"native"`` (compiled; XLA with
    ``jit_compile``) or ``"cleverhans"`` (eager), the same images. ``snapshots`` (native only,
    through ``tfadv.attacks.iterates``): also return the iterates after those steps. Inputs
    are validated by ``tfadv.attacks.make``.
    """
    backend = pick_backend(backend, jit_compile)
    nb_iter = checks.integer("nb_iter", nb_iter, 1)
    eps, eps_iter = float(eps), min(float(eps_iter), float(eps))
    start = x
    if rand_init and eps > 0:
        eta = np.random.default_rng(seed).uniform(-eps, eps, size=x.shape).astype(np.float32)
        start = np.clip(x + eta, 0.0, 1.0)
    if backend == "native":
        labels, targeted = labels_and_mode(y, target)
        return iterative.iterate(model, x, labels, start, targeted=targeted, eps=eps,
                                 eps_iter=eps_iter, nb_iter=nb_iter, snapshots=snapshots,
                                 batch_size=batch_size, jit_compile=jit_compile)
    if eps == 0:
        return np.array(x, dtype=np.float32, copy=True)

    def iterate(x_b, labels, targeted, start_b):
        adv = tf.clip_by_value(x_b + clip_eta(tf.constant(start_b) - x_b, np.inf, eps), 0.0, 1.0)
        for _ in range(nb_iter):
            adv = fast_gradient_method(model, adv, eps_iter, np.inf, clip_min=0.0, clip_max=1.0,
                                       y=labels, targeted=targeted)
            adv = tf.clip_by_value(x_b + clip_eta(adv - x_b, np.inf, eps), 0.0, 1.0)
        return adv

    return in_batches(iterate, x, y, target, batch_size, start)
