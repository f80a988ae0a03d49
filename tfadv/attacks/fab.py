"""FAB-T, the targeted Fast Adaptive Boundary attack, Linf (Croce & Hein 2020, "Minimally
distorted adversarial examples with a fast adaptive boundary attack"), as AutoAttack's
standard version runs it, natively in TensorFlow.

FAB looks for the smallest perturbation that changes the decision. Targeted at class t, each
step linearises f = z_t - z_y (logits z) at the current point x1, projects both x1 and the
clean image x0 onto the linearised boundary {z : f(x1) + grad f(x1) . (z - x1) = 0}
intersected with the box [0, 1]^d (the minimal Linf projection, ``projection_linf``), and
moves to a convex combination of the two projections, overshot by ``eta`` (1.05):

    x1 <- clip((x1 + eta d1) (1 - alpha) + (x0 + eta d2) alpha, 0, 1),
    alpha = min(||d1|| / (||d1|| + ||d2||), alpha_max)          (alpha_max 0.1)

so it stays close to x0. When x1 is misclassified, it is kept if closer to x0 than the best so
far and then pulled back towards x0 (x0 + beta (x1 - x0), beta 0.9). The targets are the
``n_target_classes`` (9) most likely clean classes after the first, each run (``max_iter``
100 steps) on the images still robust. Only a result within ``eps`` counts (AutoAttack's
rule): an image whose smallest adversarial perturbation is larger keeps its clean pixels.
``eps`` also scales the random starts of restarts after the first (``n_restarts``, 1 in
AutoAttack's standard version, so it starts from x0).

The algorithm, constants and update order follow the reference implementation
(``fra31/auto-attack``, ``fab_base.py``, ``fab_pt.py``, ``fab_projections.py``, read for
the algorithm; this is our own TensorFlow code). Deviations, none of which changes the
algorithm: one compiled loop per model over padded batches of fixed shapes (every image has
its own state); the projection's bisection runs on every row and its three cases are chosen
per row with ``tf.where`` instead of indexing the rows of each case; random starts come from a
per-image counter-based hash of ``(seed, image index, target, restart)``.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tfadv import checks
from tfadv.attacks import compiled
from tfadv.attacks.apgd import predict_logits, row_uniform, run_kernel
from tfadv.attacks.validation import num_classes_of

_STREAM = 4  # FAB's random stream (APGD's losses use 1-3)
_NO_SUCCESS = 1e10  # the reference's "no adversarial point yet" distance


def fab_t(model, x, y, target=None, *, eps: float = 8 / 255, max_iter: int = 100,
          n_target_classes: int = 9, n_restarts: int = 1, alpha_max: float = 0.1,
          eta: float = 1.05, beta: float = 0.9, seed: int = 0, batch_size: int = 256,
          jit_compile: bool = False) -> np.ndarray:
    """Targeted FAB (see the module docstring), used untargeted: an image counts as fooled
    when it is misclassified within ``eps``. Images not fooled keep their clean pixels."""
    if target is not None:
        raise ValueError("FAB-T runs untargeted only (its target classes are chosen from the "
                         "clean logits): call it with target=None")
    return run(model, x, y, np.arange(len(x)), eps=eps, max_iter=max_iter,
               n_target_classes=n_target_classes, n_restarts=n_restarts, alpha_max=alpha_max,
               eta=eta, beta=beta, seed=seed, batch_size=batch_size, jit_compile=jit_compile)[0]


def check_settings(*, eps, max_iter, n_target_classes, n_restarts, alpha_max, eta, beta, seed,
                   batch_size):
    """The settings checked (ValueError naming the parameter), as a dict."""
    return dict(eps=checks.non_negative("eps", eps),
                max_iter=checks.integer("max_iter", max_iter, 1),
                n_target_classes=checks.integer("n_target_classes", n_target_classes, 1),
                n_restarts=checks.integer("n_restarts", n_restarts, 1),
                alpha_max=checks.fraction("alpha_max", alpha_max),
                eta=checks.positive("eta", eta), beta=checks.fraction("beta", beta),
                seed=checks.integer("seed", seed, 0),
                batch_size=checks.integer("batch_size", batch_size, 1))


def run(model, x, y, ids, *, jit_compile=False, **settings):
    """``(x_adv, robust)`` as :func:`tfadv.attacks.apgd.run` (``ids`` key the random starts)."""
    s = check_settings(**settings)
    x, y, ids = np.asarray(x, np.float32), np.asarray(y, np.int64), np.asarray(ids, np.int64)
    x_adv = x.copy()
    logits = predict_logits(model, x, s["batch_size"], jit_compile)
    robust = logits.argmax(axis=1) == y
    if s["eps"] == 0 or not len(x):
        return x_adv, robust
    order = np.argsort(-logits, axis=1, kind="stable")
    floats = [tf.constant(s[k], tf.float32) for k in ("eps", "alpha_max", "eta", "beta")]
    constants = (*floats, tf.constant(s["max_iter"]), tf.constant(s["seed"] % 2 ** 32, tf.int64))
    for t_index in range(min(s["n_target_classes"], num_classes_of(model) - 1)):
        for restart in range(s["n_restarts"]):
            idx = np.flatnonzero(robust)
            if not len(idx):
                return x_adv, robust
            adv, dist = run_kernel(
                model, ("fab_t",), lambda: _kernel(model),
                [x[idx], y[idx], order[idx, t_index + 1], ids[idx]],
                s["batch_size"], (*constants, tf.constant(t_index), tf.constant(restart)),
                jit_compile)
            # The reference's test: misclassified (predicted again) and within eps.
            pred = predict_logits(model, adv, s["batch_size"], jit_compile)
            ok = (pred.argmax(axis=1) != y[idx]) & (dist <= s["eps"])
            x_adv[idx[ok]], robust[idx[ok]] = adv[ok], False
    return x_adv, robust


def projection_linf(t, w, b):
    """The smallest-Linf ``d`` (rows, features) with ``w . (t + d) = b`` and ``t + d`` in
    [0, 1]^features, per row (the largest feasible move towards the hyperplane where it cannot
    be reached). The reference's ``projection_linf``, written for TensorFlow.

    With the budget lambda, the best move is ``d_i = -sign(w_i) min(lambda, p_i)`` (``p_i``
    the room to the box edge in that direction), which changes ``w . t`` by a piecewise
    linear function of lambda; the coordinates sorted by ``p`` locate the segment where it
    reaches ``b``: directly below the smallest ``p`` (case ``c_l``) or by bisection.
    """
    features = int(t.shape[1])
    side = tf.where(tf.reduce_sum(w * t, axis=1) - b >= 0, 1.0, -1.0)
    w, b = w * side[:, None], b * side          # now the point lies on the side w.t >= b
    a = tf.cast(w < 0, tf.float32)
    nonzero = tf.cast(w != 0, tf.float32)
    d = (a - t) * nonzero                       # the largest move that lowers w.t
    p = a - t * (2 * a - 1)                     # its size per coordinate
    ascending = tf.argsort(p, axis=1, stable=True)
    b = b - tf.reduce_sum(w * t, axis=1)        # the change of w.t needed (<= 0)
    b0 = tf.reduce_sum(w * d, axis=1)           # the largest decrease the box allows
    descending = tf.reverse(ascending, axis=[1])
    ws = tf.gather(w, descending, batch_dims=1)
    s = tf.cumsum(tf.abs(ws), axis=1)
    sb = tf.cumsum(-ws * tf.gather(d, descending, batch_dims=1), axis=1) + b0[:, None]
    p_sorted = tf.gather(p, descending, batch_dims=1)
    case_low = b - (sb[:, -1] - s[:, -1] * p_sorted[:, -1]) > 0
    case_mid = (b - b0 > 0) & ~case_low
    lower = tf.zeros_like(b, tf.int32)
    upper = tf.fill(tf.shape(lower), features - 1)
    for _ in range(math.ceil(math.log2(features))):
        middle = (lower + upper) // 2
        reached = b - (tf.gather(sb, middle, batch_dims=1)
                       - tf.gather(s, middle, batch_dims=1)
                       * tf.gather(p_sorted, middle, batch_dims=1)) > 0
        lower = tf.where(reached, middle, lower)
        upper = tf.where(reached, upper, middle)
    lambda_low = tf.maximum(tf.math.divide_no_nan(b - sb[:, -1], -s[:, -1]), 0.0)[:, None]
    lambda_mid = tf.maximum(tf.math.divide_no_nan(b - tf.gather(sb, lower, batch_dims=1),
                                                  -tf.gather(s, lower, batch_dims=1)), 0.0)
    lambda_mid = lambda_mid[:, None]
    d_low = (2 * a - 1) * lambda_low
    d_mid = tf.minimum(lambda_mid, d) * a + tf.maximum(-lambda_mid, d) * (1 - a)
    d = tf.where(case_low[:, None], d_low, tf.where(case_mid[:, None], d_mid, d))
    return d * nonzero


def _linf(v):
    return tf.reduce_max(tf.abs(tf.reshape(v, [tf.shape(v)[0], -1])), axis=1)


def _kernel(model):
    """The compiled FAB-T run (one target, one restart) on a padded batch: the best
    adversarial point of each image and its Linf distance (1e10: none found)."""

    def kernel(x, y, target, ids, eps, alpha_max, eta, beta, n_iter, seed, t_index, restart):
        rows, shape = tf.shape(x)[0], tf.shape(x)
        features = int(np.prod(x.shape[1:]))  # static: the projection's bisection unrolls
        x0 = tf.reshape(x, [rows, features])
        # A restart after the first starts at a random point of half the eps-ball.
        t = 2.0 * row_uniform(seed, ids, (_STREAM, t_index, restart), x.shape[1:]) - 1
        start = x + eps * t / tf.reshape(_linf(t), [-1, 1, 1, 1]) * 0.5
        x1 = tf.where(restart > 0, tf.clip_by_value(start, 0.0, 1.0), x)
        adv, dist = x, tf.fill([rows], _NO_SUCCESS)
        for _ in tf.range(n_iter):
            point = tf.identity(x1)
            with tf.GradientTape() as tape:
                tape.watch(point)
                logits = compiled.logits32(model, point)
                f = (tf.gather(logits, target, batch_dims=1)
                     - tf.gather(logits, y, batch_dims=1))
                total = tf.reduce_sum(f)
            w = tf.reshape(tape.gradient(total, point), [rows, features])
            x1_flat = tf.reshape(x1, [rows, features])
            b = -f + tf.reduce_sum(w * x1_flat, axis=1)
            d = projection_linf(tf.concat([x1_flat, x0], 0), tf.concat([w, w], 0),
                                tf.concat([b, b], 0))
            d1, d2 = d[:rows], d[rows:]
            a1 = tf.maximum(tf.reduce_max(tf.abs(d1), axis=1), 1e-8)
            a2 = tf.maximum(tf.reduce_max(tf.abs(d2), axis=1), 1e-8)
            alpha = tf.clip_by_value(a1 / (a1 + a2), 0.0, alpha_max)[:, None]
            x1_flat = tf.clip_by_value((x1_flat + eta * d1) * (1 - alpha)
                                       + (x0 + eta * d2) * alpha, 0.0, 1.0)
            x1 = tf.reshape(x1_flat, shape)
            is_adv = tf.argmax(compiled.logits32(model, x1), axis=1) != y
            norm = _linf(x1 - x)
            closer = is_adv & (norm < dist)
            adv = tf.where(closer[:, None, None, None], x1, adv)
            dist = tf.where(closer, norm, dist)
            x1 = tf.where(is_adv[:, None, None, None], x + (x1 - x) * beta, x1)
        return adv, dist

    return kernel
