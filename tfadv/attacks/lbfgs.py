"""Box-constrained L-BFGS (Szegedy et al. 2014, "Intriguing properties of neural networks").

For each image and a target class t, Szegedy et al. minimise

    c * ||r||_2^2 + loss_f(x + r, t)     subject to  x + r in [0, 1]

with box-constrained L-BFGS, and line-search ``c`` for the smallest perturbation that is
classified as t. Here the same problem is written with the weight on the loss,
``||r||_2^2 + c * CE(x + r, t)`` (an equivalent scaling, as in Foolbox's LBFGSAttack), solved by
``scipy.optimize.minimize(method="L-BFGS-B")`` with the [0, 1] box as bounds and TensorFlow
gradients. The line search over c: start at ``initial_const``, multiply by 10 until the
minimiser is classified as t (at most ``max_const_steps`` times), then bisect between the last
failure and the first success ``binary_search_steps`` times; the smallest-L2 success wins. An
image with no success is returned unchanged.

Untargeted (``target=None``): the target is the image's most likely class other than its true
label (the nearest class in logit terms), so the attack stays the paper's targeted problem.

One image at a time (L-BFGS-B's line search and curvature pairs are per problem), so this is
the slowest attack in the suite; it is here for the survey's catalogue and small comparison
sets.
"""

from __future__ import annotations

import weakref

import numpy as np
import scipy.optimize
import tensorflow as tf

from tfadv import checks
from tfadv.batching import map_batches

_OBJECTIVES = weakref.WeakKeyDictionary()  # model -> compiled value-and-gradient


def lbfgs(model, x, y, target=None, *, initial_const: float = 1e-2, max_const_steps: int = 10,
          binary_search_steps: int = 5, max_iter: int = 150,
          batch_size: int = 1) -> np.ndarray:
    """Minimal-L2 targeted images by box-constrained L-BFGS (see the module docstring).

    ``max_iter``: L-BFGS-B iterations per solve (Foolbox's 150). ``batch_size`` is accepted
    for the shared contract; images are always solved one by one. Inputs validated by ``make``.
    """
    initial_const = checks.positive("initial_const", initial_const)
    max_const_steps = checks.integer("max_const_steps", max_const_steps, 1)
    binary_search_steps = checks.integer("binary_search_steps", binary_search_steps, 0)
    max_iter = checks.integer("max_iter", max_iter, 1)
    checks.integer("batch_size", batch_size, 1)
    objective = _compiled_objective(model)
    if target is None:
        logits = np.array(model(tf.constant(x), training=False), np.float32)
        logits[np.arange(len(x)), y] = -np.inf
        target = logits.argmax(axis=1)
    # Batches of one image: each is its own L-BFGS-B problem.
    return map_batches(lambda xi, ti: _attack_one(
        model, objective, xi[0], int(ti[0]), initial_const, max_const_steps,
        binary_search_steps, max_iter)[None], x, target, batch_size=1)


def _attack_one(model, objective, x, target, const, max_const_steps, binary_search_steps,
                max_iter):
    shape = x.shape
    x0 = x.astype(np.float64).ravel()
    bounds = scipy.optimize.Bounds(np.zeros_like(x0), np.ones_like(x0))
    best, best_l2 = x, np.inf

    def solve(c):
        def value_and_grad(flat):
            value, grad = objective(tf.constant(flat.reshape((1,) + shape), tf.float32),
                                    tf.constant(x[None]), tf.constant([target]),
                                    tf.constant(c, tf.float32))
            return float(value), grad.numpy().astype(np.float64).ravel()
        result = scipy.optimize.minimize(value_and_grad, x0, jac=True, method="L-BFGS-B",
                                         bounds=bounds, options={"maxiter": max_iter})
        candidate = np.clip(result.x, 0, 1).astype(np.float32).reshape(shape)
        hit = int(np.argmax(model(candidate[None], training=False)[0])) == target
        return candidate, hit

    def keep(candidate):
        nonlocal best, best_l2
        l2 = float(np.linalg.norm(candidate.astype(np.float64) - x))
        if l2 < best_l2:
            best, best_l2 = candidate, l2

    lower, upper = None, None
    for _ in range(max_const_steps):           # exponential search for a first success
        candidate, hit = solve(const)
        if hit:
            keep(candidate)
            upper = const
            break
        lower, const = const, const * 10
    if upper is None:
        return x
    lower = 0.0 if lower is None else lower
    for _ in range(binary_search_steps):       # then bisection towards the smallest success
        const = (lower + upper) / 2
        candidate, hit = solve(const)
        if hit:
            keep(candidate)
            upper = const
        else:
            lower = const
    return best


def _compiled_objective(model):
    if model not in _OBJECTIVES:
        loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        @tf.function(reduce_retracing=True)
        def objective(x_adv, x, target, const):
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                logits = tf.cast(model(x_adv, training=False), tf.float32)
                value = tf.reduce_sum(tf.square(x_adv - x)) + const * loss_fn(target, logits)
            return value, tape.gradient(value, x_adv)

        _OBJECTIVES[model] = objective
    return _OBJECTIVES[model]
