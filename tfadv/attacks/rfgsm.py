"""R+FGSM (Tramer et al. 2018): a random signed step, then FGSM with the rest of the budget."""

from __future__ import annotations

import numpy as np
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method

from tfadv import checks
from tfadv.attacks import iterative
from tfadv.attacks.batching import in_batches, labels_and_mode, pick_backend


def rfgsm(model, x, y, target=None, *, eps: float, alpha: float | None = None, seed: int = 0,
          backend: str = "native", jit_compile: bool = False,
          batch_size: int = 256) -> np.ndarray:
    """``x' = clip(x + alpha * sign(N(0, I)))``, then one FGSM step of ``eps - alpha`` from x',
    clipped to [0, 1]; the result is projected onto the Linf ball of radius ``eps`` around x
    (pixel units: x + alpha + (eps - alpha) in float32 can overshoot eps by a rounding error).

    ``alpha`` None means ``eps / 2`` (the paper uses eps 16/255, alpha 8/255); ``alpha > eps``
    raises ValueError. The random signs come from ``np.random.default_rng(seed)``, drawn for
    the whole batch before the internal batching: the same seed gives the same result.
    Untargeted: ascends the loss of the true labels ``y``; targeted: descends the loss of
    ``target``. ``backend``: ``"native"`` (compiled; XLA with ``jit_compile``) or
    ``"cleverhans"`` (its ``fast_gradient_method``), the same images. Inputs are validated by
    ``tfadv.attacks.make``.
    """
    backend = pick_backend(backend, jit_compile)
    eps = float(eps)
    alpha = eps / 2 if alpha is None else checks.non_negative("alpha", alpha)
    if alpha > eps:
        raise ValueError(f"alpha must lie in [0, eps] = [0, {eps}], got {alpha}")
    if eps == 0:
        return np.array(x, dtype=np.float32, copy=True)
    signs = np.sign(np.random.default_rng(seed).standard_normal(x.shape)).astype(np.float32)
    x_rand = np.clip(x + np.float32(alpha) * signs, 0.0, 1.0)
    if backend == "native":
        labels, targeted = labels_and_mode(y, target)
        # One step from x_rand (the FGM step clips to [0, 1]), then the projection around x.
        return iterative.iterate(model, x, labels, x_rand, targeted=targeted, eps=eps,
                                 eps_iter=eps - alpha, nb_iter=1, batch_size=batch_size,
                                 jit_compile=jit_compile)
    out = in_batches(lambda xb, labels, targeted: fast_gradient_method(
        model, xb, eps - alpha, np.inf, clip_min=0.0, clip_max=1.0, y=labels,
        targeted=targeted), x_rand, y, target, batch_size)
    return np.clip(out, x - np.float32(eps), x + np.float32(eps)).astype(np.float32)
