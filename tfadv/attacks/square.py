"""Square Attack, Linf (Andriushchenko, Croce, Flammarion & Hein 2020, "Square Attack: a
query-efficient black-box adversarial attack via random search"), untargeted, score-based:
forward passes only, natively in TensorFlow.

Random search on the margin loss z_y - max_{j != y} z_j (logits z; an image is fooled when it
drops to 0 or below). The start is x + eps * (a random sign per column and channel: vertical
stripes), clipped to [0, 1]. Each iteration draws, per image, a square window of side s at a
random position and a random sign per channel, sets the window to x +- eps (the new candidate
is projected onto the eps-ball and [0, 1]) and keeps it when the margin drops. The side
follows the reference's schedule of p, the fraction of pixels changed: ``p_init`` (0.8),
halved after iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000, and
``s = max(round(sqrt(p * h * w)), 1)``, at most min(h, w). AutoAttack does not rescale the
schedule to the query budget (``resc_schedule=False``), nor does this code. ``max_queries``
iterations (5,000: AutoAttack's), ``n_restarts`` runs (1) on the images still robust; an
image stops as soon as it is fooled; images not fooled keep their clean pixels.

The algorithm and constants follow AutoAttack's ``square.py`` (``fra31/auto-attack``, read
for the algorithm; this is our own TensorFlow code). Deviations:

- AutoAttack's version draws one window position and one sign vector per iteration for the
  whole batch; here every image draws its own, as in the Square Attack paper's code, so an
  image's result does not depend on the other images of its batch or on ``batch_size``
  (random numbers from a per-image counter-based hash of ``(seed, image index, restart,
  iteration)``);
- the whole query loop is one compiled ``tf.while_loop`` per model over a padded batch
  (fooled images are masked, the loop ends when every image of the batch is fooled).
  Measured on the 2-core CPU, 5,000 queries of the tests' digits CNN on 256 images that all
  stay robust: 4.6 s, against 8.4 s for the same loop in Python around a compiled forward
  pass and margin (NumPy draws and updates).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfadv import checks
from tfadv.attacks import compiled
from tfadv.attacks.apgd import predict_logits, row_uniform, run_kernel

_STREAM = 5  # Square's random stream (APGD uses 1-3, FAB 4)
_P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # the reference's schedule


def square(model, x, y, target=None, *, eps: float = 8 / 255, max_queries: int = 5000,
           p_init: float = 0.8, n_restarts: int = 1, seed: int = 0, batch_size: int = 256,
           jit_compile: bool = False) -> np.ndarray:
    """Square Attack Linf (see the module docstring), untargeted; images not fooled keep
    their clean pixels."""
    if target is not None:
        raise ValueError("this Square Attack runs untargeted only (AutoAttack's use): call it "
                         "with target=None")
    return run(model, x, y, np.arange(len(x)), eps=eps, max_queries=max_queries,
               p_init=p_init, n_restarts=n_restarts, seed=seed, batch_size=batch_size,
               jit_compile=jit_compile)[0]


def check_settings(*, eps, max_queries, p_init, n_restarts, seed, batch_size):
    """The settings checked (ValueError naming the parameter), as a dict."""
    return dict(eps=checks.non_negative("eps", eps),
                max_queries=checks.integer("max_queries", max_queries, 1),
                p_init=checks.fraction("p_init", p_init),
                n_restarts=checks.integer("n_restarts", n_restarts, 1),
                seed=checks.integer("seed", seed, 0),
                batch_size=checks.integer("batch_size", batch_size, 1))


def window_sides(max_queries: int, p_init: float, height: int, width: int) -> np.ndarray:
    """The square's side at each iteration (int32, one per query): the reference's schedule
    of p, in Python arithmetic (``round`` halves to even, as the reference's)."""
    sides = []
    for i in range(max_queries):
        p = p_init / 2 ** sum(i > bound for bound in _P_HALVINGS)
        side = max(int(round(np.sqrt(p * height * width))), 1)
        sides.append(min(side, height, width))
    return np.asarray(sides, np.int32)


def run(model, x, y, ids, *, jit_compile=False, **settings):
    """``(x_adv, robust)`` as :func:`tfadv.attacks.apgd.run` (``ids`` key the random draws)."""
    s = check_settings(**settings)
    x, y, ids = np.asarray(x, np.float32), np.asarray(y, np.int64), np.asarray(ids, np.int64)
    x_adv = x.copy()
    logits = predict_logits(model, x, s["batch_size"], jit_compile)
    robust = logits.argmax(axis=1) == y
    if s["eps"] == 0 or not len(x):
        return x_adv, robust
    sides = window_sides(s["max_queries"], s["p_init"], x.shape[1], x.shape[2])
    constants = (tf.constant(s["eps"], tf.float32), tf.constant(sides),
                 tf.constant(s["seed"] % 2 ** 32, tf.int64))
    for restart in range(s["n_restarts"]):
        idx = np.flatnonzero(robust)
        if not len(idx):
            break
        adv = run_kernel(model, ("square",), lambda: _kernel(model),
                         [x[idx], y[idx], ids[idx]], s["batch_size"],
                         (*constants, tf.constant(restart)), jit_compile)
        # The reference's test: the result predicted again.
        ok = predict_logits(model, adv, s["batch_size"], jit_compile).argmax(1) != y[idx]
        x_adv[idx[ok]], robust[idx[ok]] = adv[ok], False
    return x_adv, robust


def margin(logits, y):
    """z_y - max_{j != y} z_j per image (float32 logits): <= 0 means fooled."""
    z_y = tf.gather(logits, y, batch_dims=1)
    others = tf.where(tf.one_hot(y, tf.shape(logits)[1]) > 0, -np.inf, logits)
    return z_y - tf.reduce_max(others, axis=1)


def _kernel(model):
    """The compiled query loop of one restart on a padded batch: the best point per image."""

    def kernel(x, y, ids, eps, sides, seed, restart):
        height, width, channels = x.shape[1:]

        def project(z):
            return tf.clip_by_value(tf.clip_by_value(z, x - eps, x + eps), 0.0, 1.0)

        stripes = row_uniform(seed, ids, (_STREAM, restart, 0), (1, width, channels))
        x_best = tf.clip_by_value(x + eps * tf.where(stripes < 0.5, -1.0, 1.0), 0.0, 1.0)
        best = margin(compiled.logits32(model, x_best), y)
        rows_h = tf.range(height)[None, :]
        rows_w = tf.range(width)[None, :]

        def step(i, x_best, best):
            side = sides[i]
            draw = row_uniform(seed, ids, (_STREAM, restart, i + 1), (2 + channels,))
            # The reference's window corner: floor(u * (h - s)), so never the last offset.
            top = tf.cast(draw[:, 0] * tf.cast(height - side, tf.float32), tf.int32)[:, None]
            left = tf.cast(draw[:, 1] * tf.cast(width - side, tf.float32), tf.int32)[:, None]
            in_h = (rows_h >= top) & (rows_h < top + side)
            in_w = (rows_w >= left) & (rows_w < left + side)
            window = tf.cast(in_h[:, :, None, None] & in_w[:, None, :, None], tf.float32)
            signs = tf.where(draw[:, 2:] < 0.5, -1.0, 1.0)[:, None, None, :]
            x_new = project(x_best + 2.0 * eps * window * signs)
            value = margin(compiled.logits32(model, x_new), y)
            improved = (best > 0) & (value < best)
            x_best = tf.where(improved[:, None, None, None], x_new, x_best)
            return i + 1, x_best, tf.where(improved, value, best)

        def running(i, x_best, best):
            return (i < tf.shape(sides)[0]) & tf.reduce_any(best > 0)

        _, x_best, _ = tf.while_loop(running, step, (tf.constant(0), x_best, best))
        return x_best

    return kernel
