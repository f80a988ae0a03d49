"""BPDA + EOT PGD (Athalye et al. 2018): the adaptive attack on defenses without useful
gradients (``backward pass differentiable approximation`` with the identity) and on random
ones (``expectation over transformation``)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfadv import checks
from tfadv.attacks.validation import validate
from tfadv.batching import map_batches


def bpda_eot_pgd(model, defense, x, y, *, eps: float, eps_iter: float, nb_iter: int,
                 eot_samples: int = 1, seed: int = 0, batch_size: int = 128) -> np.ndarray:
    """Adaptive Linf PGD against ``defense`` followed by ``model`` (Athalye et al. 2018).

    For input transformations without useful gradients (wavelet denoising, pixel deflection,
    random resizing): each step averages, over ``eot_samples`` draws of the defense
    (Expectation over Transformation, for random defenses), the gradient of ``model``'s
    cross-entropy at the *defended* image, and uses it as the gradient at the undefended
    input (BPDA with the identity: the defense is taken as d defense(x)/dx = I on the
    backward pass). Then a signed step of ``eps_iter``, projected onto the eps-ball around
    ``x`` and [0, 1]; the start is a seeded uniform point in the ball, as PGD's.

    ``defense(x, seed) -> x'``: a :mod:`tfadv.defenses` object or any function with that
    signature, numpy in, an array of x's shape out (random defenses use the seed; draw ``k`` of
    step ``t`` gets a seed derived from ``(seed, t, k)``). A differentiable defense (a Keras
    purifier) is better attacked with a plain attack on ``keras.Model(defense -> model)``: the
    identity is only an approximation; :mod:`tfadv.evaluation.adaptive` picks by the
    defense's ``differentiable`` and ``randomized``. Returns float32
    images in [0, 1] of x's shape; the caller's array is not modified.
    """
    eps, eps_iter = checks.non_negative("eps", eps), checks.non_negative("eps_iter", eps_iter)
    nb_iter, eot_samples, batch_size = (checks.integer(name, value, 1) for name, value in (
        ("nb_iter", nb_iter), ("eot_samples", eot_samples), ("batch_size", batch_size)))
    x, y, _ = validate(model, x, y)
    if not len(x) or eps == 0:
        return x
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")

    @tf.function(reduce_retracing=True)
    def gradient(images, labels):
        with tf.GradientTape() as tape:
            tape.watch(images)
            loss = loss_fn(labels, tf.cast(model(images, training=False), tf.float32))
        return tape.gradient(loss, images)

    rng = np.random.default_rng(seed)
    x_adv = np.clip(x + rng.uniform(-eps, eps, x.shape).astype(np.float32), 0.0, 1.0)
    for t in range(nb_iter):
        grad = np.zeros_like(x)
        for k in range(eot_samples):
            draw_seed = int(np.random.SeedSequence([seed, t, k]).generate_state(1)[0])
            defended = np.asarray(defense(x_adv, draw_seed), np.float32)
            if defended.shape != x.shape:
                raise ValueError(f"BPDA with the identity needs a defense that keeps the image "
                                 f"shape {x.shape}, got {defended.shape} (resize back first)")
            grad += map_batches(lambda d, labels: gradient(tf.constant(d), tf.constant(labels)),
                                defended, y, batch_size=batch_size)
        x_adv = np.clip(np.clip(x_adv + eps_iter * np.sign(grad), x - eps, x + eps), 0.0, 1.0)
    return x_adv.astype(np.float32)
