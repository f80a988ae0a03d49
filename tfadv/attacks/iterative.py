"""The native kernel of the signed-gradient Linf attacks (FGSM, BIM, PGD, MI-FGSM, R+FGSM):
one compiled loop of cleverhans' steps.

Each attack is this loop with its own start and settings:

    adv = clip(x + clip(start - x, -eps, eps), 0, 1)
    repeat nb_iter times:
        g = d CE(model(adv), labels) / d adv          (negated when targeted)
        momentum:  m = decay * m + g / max(1e-12, mean|g|);  adv = adv + eps_iter * sign(m)
        otherwise: adv = clip(adv + eps_iter * sign(g), 0, 1)      (cleverhans' FGM step)
        adv = clip(x + clip(adv - x, -eps, eps), 0, 1)             (the projection)

which is, operation for operation, cleverhans 4.0.0's ``fast_gradient_method`` (FGSM: one step
without the projection), ``projected_gradient_descent`` / ``basic_iterative_method`` (BIM, PGD)
and ``momentum_iterative_method`` (MI-FGSM); tests/attacks/test_iterative.py checks the outputs
against cleverhans. The difference is where it runs: the whole loop is one ``tf.function`` call
per padded batch (tfadv/attacks/compiled.py: fixed shapes, float32 loss under a bf16 model,
optional XLA, split over a strategy's replicas), not a Python loop of eager calls.

**Snapshots.** ``snapshots=(10, 25, 50)`` also returns the iterates after those steps, shaped
``(len(snapshots), n, ...)``: one 100-step run gives Fig 4's 10-, 25- and 50-step points,
which are prefixes of it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfadv import checks
from tfadv.attacks import compiled


def iterate(model, x: np.ndarray, labels: np.ndarray, start: np.ndarray | None = None, *,
            targeted: bool, eps: float, eps_iter: float, nb_iter: int, decay: float | None = None,
            project: bool = True, snapshots=(), batch_size: int = 256,
            jit_compile: bool = False):
    """The loop above on float32 ``x`` (labels: true ones, or the targets when ``targeted``).

    ``start`` (default x) is the first iterate before projection; ``decay`` None is the plain
    signed step, a number the momentum step; ``project=False`` skips the final projection
    (FGSM's single step has none in cleverhans). Returns the adversarial images, or
    ``(images, iterates)`` when ``snapshots`` lists steps in 1..nb_iter, the iterates shaped
    ``(len(snapshots), n, ...)`` in the order of ``snapshots``.
    """
    nb_iter = checks.integer("nb_iter", nb_iter, 1)
    steps = sorted({checks.integer("snapshot step", s, 1) for s in snapshots})
    if steps and steps[-1] > nb_iter:
        raise ValueError(f"snapshots must lie in 1..nb_iter={nb_iter}, got {steps[-1]}")
    momentum = decay is not None
    fn = compiled.graph(model, ("iterate", momentum, project, bool(steps), bool(jit_compile)),
                        lambda: _build(model, momentum, project, bool(steps), jit_compile))
    take = np.zeros(nb_iter, bool)
    take[[s - 1 for s in steps]] = True
    constants = (tf.constant(targeted), tf.constant(eps, tf.float32),
                 tf.constant(eps_iter, tf.float32), tf.constant(nb_iter),
                 tf.constant(0.0 if decay is None else decay, tf.float32),
                 tf.constant(take), tf.constant(max(len(steps), 1)))
    start = x if start is None else start
    out = compiled.run_padded(fn, [x, np.asarray(labels, np.int64), start], batch_size,
                              constants=constants, out_rows=(1,) if steps else None,
                              jit_compile=jit_compile)
    if not steps:
        return out
    adv, snaps = out
    return adv, snaps[[steps.index(int(s)) for s in snapshots]]  # in the order asked


def _build(model, momentum: bool, project: bool, snapshots: bool, jit_compile: bool):
    """The compiled loop for one model and one combination of the static choices."""

    def gradient(adv, labels, targeted):
        with tf.GradientTape() as tape:
            tape.watch(adv)
            loss = compiled.cross_entropy(compiled.logits32(model, adv), labels)
            loss = tf.where(targeted, -loss, loss)
        return tape.gradient(loss, adv)

    def project_onto(adv, x, eps):
        return tf.clip_by_value(x + tf.clip_by_value(adv - x, -eps, eps), 0.0, 1.0)

    def run(x, labels, start, targeted, eps, eps_iter, nb_iter, decay, take, n_snaps):
        adv = project_onto(start, x, eps)
        m = tf.zeros_like(x)
        snaps = tf.TensorArray(tf.float32, size=n_snaps, element_shape=x.shape)
        k = tf.constant(0)
        for i in tf.range(nb_iter):
            g = gradient(adv, labels, targeted)
            if momentum:
                g = g / tf.maximum(1e-12, tf.reduce_mean(tf.abs(g), axis=[1, 2, 3],
                                                         keepdims=True))
                m = decay * m + g
                adv = adv + eps_iter * tf.sign(m)
            else:
                adv = tf.clip_by_value(adv + eps_iter * tf.sign(g), 0.0, 1.0)
            if project:
                adv = project_onto(adv, x, eps)
            if snapshots:
                if take[i]:
                    snaps = snaps.write(k, adv)
                    k += 1
        return (adv, snaps.stack()) if snapshots else adv

    return compiled.function(run, jit_compile)
