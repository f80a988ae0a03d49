"""Native, batched Jacobian-based Saliency Map Attack (Papernot et al. 2016).

Targeted (``target`` given): each step picks the pair of features (p, q) that most raises the
target logit Z_t while lowering the other classes' logit, i.e. the pair maximising
``alpha * |beta|`` with ``alpha = dZ_t/dx_p + dZ_t/dx_q > 0`` and ``beta``, the same sum for
the other classes, ``< 0``, and moves both features by ``theta``.

"The other classes" (``others``): the original paper sums all other logits (``"sum"``). By
default we use the strongest other logit (``"max"``), the class the image must overtake: on
a CIFAR-10 CNN this raised the targeted success rate at gamma 0.1 from 50% to 85% at a lower
L0 (``python -m experiments.benchmark jsma``, notes/RESULTS.md).

Untargeted (no ``target``): paper 001 "targets the original class": it uses the true label
in the saliency map, but to push it *away*. We read that as the saliency map with the roles
swapped: ``alpha`` is the gradient of the other classes' logit and ``beta`` that of the true
class, so each pair raises the runner-up while lowering the true class; an image stops as
soon as it is misclassified.

Each image stops when it succeeds, when ``gamma`` of its features (every H*W*C value counts)
have been changed, or when no pair can help (see ``strict_pairs``). A changed feature leaves
the search domain, as in the original algorithm.

Speed: the exact pair search is O(n^2) per image (9.4M pairs for a 32x32x3 image). Pairs are
searched among the ``top_k`` features ranked by ``alpha_i - beta_i`` (the single-feature
saliency); ``top_k=None`` searches all pairs exactly (memory O(batch * n^2), slow). Steps run
in a compiled loop; every ``steps_per_call`` steps finished images leave the batch, so later
steps only pay for the images still being attacked. ``jit_compile=True`` (XLA) is offered but
slower on CPU: the batch shrinks, and XLA compiles again for every new batch size.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import tensorflow as tf

from tfadv import checks
from tfadv.batching import map_batches

_STEPS = weakref.WeakKeyDictionary()  # model -> {settings: compiled step}


def jsma(model, x, y, target=None, *, theta: float = 1.0, gamma: float = 0.1,
         saliency: str = "pairs", others: str = "max", top_k: int | None = 64,
         strict_pairs: bool = False, batch_size: int = 128,
         steps_per_call: int = 8, jit_compile: bool = False) -> np.ndarray:
    """Returns adversarial images; see the module docstring. Inputs validated by ``make``.

    ``saliency``: ``"pairs"`` (Papernot's pairwise rule) or ``"margin"`` (the two features with
    the largest gradient of the margin, one backward pass a step, no pair search).
    ``others``: what "the other classes" are: ``"max"``, the strongest other logit (default),
    or ``"sum"``, the sum of all other logits as in the original paper.

    ``strict_pairs``: stop an image when no pair meets both saliency conditions, as the
    original algorithm does. By default such an image takes the pair with the largest positive
    ``alpha - beta`` instead (the pair that most widens the margin), which keeps attacking
    where Papernot's conditions are too strict for a deep network's logits.
    ``steps_per_call`` steps run inside one compiled graph between two compactions of the
    batch (finished images leave it at each compaction).
    """
    # theta is a signed change: its size in (0, 1], its sign the way features move.
    theta = math.copysign(checks.fraction("|theta|", abs(theta)), theta)
    saliency = checks.one_of("saliency", saliency, ("pairs", "margin"))
    others = checks.one_of("others", others, ("max", "sum"))
    gamma = checks.fraction("gamma (max fraction of features changed)", gamma)
    strict_pairs = checks.boolean("strict_pairs", strict_pairs)
    jit_compile = checks.boolean("jit_compile", jit_compile)
    batch_size = checks.integer("batch_size", batch_size, 1)
    steps_per_call = checks.integer("steps_per_call", steps_per_call, 1)
    n_features = int(np.prod(x.shape[1:]))
    max_steps = int(math.floor(gamma * n_features / 2))  # two features per step
    k = n_features if top_k is None else min(checks.integer("top_k", top_k, 1), n_features)
    run_steps = _compiled_steps(model, target is not None, theta, saliency, others, k,
                                strict_pairs, jit_compile)
    return map_batches(lambda xb, cb: _attack_batch(run_steps, xb, cb, theta, max_steps,
                                                    steps_per_call),
                       x, y if target is None else target, batch_size=batch_size)


def _attack_batch(run_steps, x, cls, theta, max_steps, steps_per_call):
    flat = x.reshape(len(x), -1).copy()
    # Features that can still move in theta's direction form the search domain.
    search = flat < 1.0 if theta > 0 else flat > 0.0
    running = np.ones(len(x), bool)
    done = 0
    while done < max_steps and running.any():
        idx = np.flatnonzero(running)  # compaction: finished images leave the batch
        n_steps = min(steps_per_call, max_steps - done)
        new_flat, new_search, still = run_steps(
            tf.constant(flat[idx]), tf.constant(search[idx]), tf.constant(cls[idx]),
            tf.constant(n_steps), x.shape[1:])
        flat[idx], search[idx], running[idx] = new_flat.numpy(), new_search.numpy(), still.numpy()
        done += n_steps
    return flat.reshape(x.shape)


def _compiled_steps(model, *settings):
    per_model = _STEPS.setdefault(model, {})
    if settings not in per_model:
        per_model[settings] = _make_steps(model, *settings)
    return per_model[settings]


def _make_steps(model, targeted, theta, saliency, others, k, strict_pairs, jit_compile):
    sign = 1.0 if theta > 0 else -1.0  # moving features down flips the sign of their effect

    def logit_terms(x, cls):
        """Per-batch sums of the class logit Z_c and of the "other classes" logit."""
        logits = tf.cast(model(x, training=False), tf.float32)
        z_cls = tf.gather(logits, cls, batch_dims=1)
        if others == "max":
            z_other = tf.reduce_max(tf.where(tf.one_hot(cls, tf.shape(logits)[1]) > 0,
                                             -np.inf, logits), axis=1)
        else:
            z_other = tf.reduce_sum(logits, axis=1) - z_cls
        success = tf.equal(tf.argmax(logits, axis=1), cls)
        return tf.reduce_sum(z_cls), tf.reduce_sum(z_other), success if targeted else ~success

    def pair_step(x, search, cls):
        batch = tf.shape(x)[0]
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            z_cls, z_other, success = logit_terms(x, cls)
        g_cls = tf.reshape(tape.gradient(z_cls, x), [batch, -1]) * sign
        g_other = tf.reshape(tape.gradient(z_other, x), [batch, -1]) * sign
        # alpha: gradient of what we raise; beta: gradient of what we lower.
        alpha, beta = (g_cls, g_other) if targeted else (g_other, g_cls)
        _, cand = tf.math.top_k(tf.where(search, alpha - beta, -np.inf), k=k)   # (b, k)
        a_k = tf.gather(alpha, cand, batch_dims=1)
        b_k = tf.gather(beta, cand, batch_dims=1)
        s_k = tf.gather(search, cand, batch_dims=1)
        pair_alpha = a_k[:, :, None] + a_k[:, None, :]                          # (b, k, k)
        pair_beta = b_k[:, :, None] + b_k[:, None, :]
        allowed = s_k[:, :, None] & s_k[:, None, :] & ~tf.eye(k, dtype=tf.bool)[None]
        papernot = allowed & (pair_alpha > 0) & (pair_beta < 0)
        score = tf.reshape(tf.where(papernot, pair_alpha * -pair_beta, -np.inf), [batch, -1])
        found = tf.reduce_max(score, axis=1) > -np.inf
        best = tf.argmax(score, axis=1, output_type=tf.int32)
        if not strict_pairs:
            margin = tf.where(allowed & (pair_alpha > pair_beta), pair_alpha - pair_beta,
                              -np.inf)
            margin = tf.reshape(margin, [batch, -1])
            best = tf.where(found, best, tf.argmax(margin, axis=1, output_type=tf.int32))
            found = found | (tf.reduce_max(margin, axis=1) > -np.inf)
        return tf.gather(cand, best // k, batch_dims=1), tf.gather(cand, best % k, batch_dims=1), \
            found, success

    def margin_step(x, search, cls):
        batch = tf.shape(x)[0]
        with tf.GradientTape() as tape:
            tape.watch(x)
            z_cls, z_other, success = logit_terms(x, cls)
            margin = z_cls - z_other if targeted else z_other - z_cls
        gain = tf.reshape(tape.gradient(margin, x), [batch, -1]) * sign
        best, pq = tf.math.top_k(tf.where(search, gain, -np.inf), k=2)
        return pq[:, 0], pq[:, 1], tf.reduce_sum(best, axis=1) > 0, success

    def one_step(flat, search, cls, running, image_shape):
        x = tf.reshape(flat, tf.concat([[tf.shape(flat)[0]], image_shape], 0))
        p, q, found, success = (pair_step if saliency == "pairs" else margin_step)(x, search, cls)
        move = running & found & ~success
        chosen = (tf.one_hot(p, tf.shape(flat)[1]) + tf.one_hot(q, tf.shape(flat)[1])) \
            * tf.cast(move, tf.float32)[:, None]
        flat = tf.clip_by_value(flat + theta * chosen, 0.0, 1.0)
        return flat, search & (chosen == 0), move

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def run_steps(flat, search, cls, n_steps, image_shape):
        running = tf.ones(tf.shape(flat)[0], tf.bool)
        for _ in tf.range(n_steps):
            flat, search, running = one_step(flat, search, cls, running, image_shape)
        return flat, search, running

    return run_steps
