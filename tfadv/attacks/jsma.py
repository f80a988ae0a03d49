"""Native, batched Jacobian-based Saliency Map Attack (Papernot et al. 2016).

Targeted (``target`` given): each step picks the pair of features (p, q) that most raises the
target logit Z_t while lowering the sum of the other logits, i.e. the pair maximising
``alpha * |beta|`` with ``alpha = dZ_t/dx_p + dZ_t/dx_q > 0`` and ``beta`` the same sum for
the other logits ``< 0``, and moves both features by ``theta``.

Untargeted (no ``target``): paper 001 "targets the original class": it uses the true label
in the saliency map, but to push it *away*. We read that as Papernot's saliency map with the
roles swapped: ``alpha`` is the gradient of the other classes' logits and ``beta`` that of the
true class, so each pair raises the other classes while lowering the true class; an image
stops as soon as it is misclassified.

Each image stops when it succeeds, when ``gamma`` of its features (every H*W*C value counts)
have been changed, or when no pair satisfies the saliency conditions. A changed feature leaves
the search domain, as in the original algorithm.

Speed: the exact pair search is O(n^2) per image (9.4M pairs for a 32x32x3 image). Pairs are
searched among the ``top_k`` features ranked by ``alpha_i - beta_i`` (the single-feature
saliency); ``top_k=None`` searches all pairs exactly (memory O(batch * n^2)). Finished images
leave the batch, so later steps only pay for the images still being attacked.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import tensorflow as tf

_STEPS = weakref.WeakKeyDictionary()  # model -> {settings: compiled step}


def jsma(model, x, y, target=None, *, theta: float = 1.0, gamma: float = 0.1,
         top_k: int | None = 64, batch_size: int = 128, jit_compile: bool = False) -> np.ndarray:
    """Returns adversarial images; see the module docstring. Inputs validated by ``make``."""
    if theta == 0 or not -1 <= theta <= 1:
        raise ValueError(f"theta must be a non-zero change in [-1, 1], got {theta}")
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma (max fraction of features changed) must be in (0, 1], "
                         f"got {gamma}")
    n_features = int(np.prod(x.shape[1:]))
    max_steps = int(math.floor(gamma * n_features / 2))  # two features per step
    k = n_features if top_k is None else min(int(top_k), n_features)
    step = _compiled_step(model, target is not None, float(theta), k, jit_compile)
    cls = y if target is None else target
    out = x.copy()
    for i in range(0, len(x), batch_size):
        out[i:i + batch_size] = _attack_batch(step, x[i:i + batch_size],
                                              cls[i:i + batch_size], theta, max_steps,
                                              compact=not jit_compile)
    return out


def _attack_batch(step, x, cls, theta, max_steps, compact):
    flat = x.reshape(len(x), -1).copy()
    # Features that can still move in theta's direction form the search domain.
    search = flat < 1.0 if theta > 0 else flat > 0.0
    active = np.arange(len(x))
    running = np.ones(len(x), bool)
    for _ in range(max_steps):
        idx = active if compact else np.arange(len(x))
        new_flat, new_search, success, found = step(
            tf.constant(flat[idx].reshape((len(idx),) + x.shape[1:])), tf.constant(search[idx]),
            tf.constant(cls[idx]), tf.constant(running[idx]))
        flat[idx], search[idx] = new_flat.numpy().reshape(len(idx), -1), new_search.numpy()
        running[idx] &= ~(success.numpy() | ~found.numpy())
        active = np.flatnonzero(running)
        if not len(active):
            break
    return flat.reshape(x.shape)


def _compiled_step(model, targeted, theta, k, jit_compile):
    key = (targeted, theta, k, jit_compile)
    per_model = _STEPS.setdefault(model, {})
    if key not in per_model:
        per_model[key] = _make_step(model, targeted, theta, k, jit_compile)
    return per_model[key]


def _make_step(model, targeted, theta, k, jit_compile):
    @tf.function(reduce_retracing=True)
    def gradients(x, cls):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            logits = tf.cast(model(x, training=False), tf.float32)
            z_cls = tf.reduce_sum(tf.gather(logits, cls, batch_dims=1))
            z_all = tf.reduce_sum(logits)
        g_cls = tape.gradient(z_cls, x)
        g_others = tape.gradient(z_all, x) - g_cls
        pred = tf.argmax(logits, axis=1)
        success = tf.equal(pred, cls) if targeted else tf.not_equal(pred, cls)
        return g_cls, g_others, success

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def select_and_apply(x, search, g_cls, g_others, success, running):
        batch = tf.shape(x)[0]
        # alpha: gradient of what we raise; beta: gradient of what we lower.
        alpha, beta = (g_cls, g_others) if targeted else (g_others, g_cls)
        if theta < 0:  # moving features down flips the sign of their effect
            alpha, beta = -alpha, -beta
        alpha = tf.reshape(alpha, [batch, -1])
        beta = tf.reshape(beta, [batch, -1])
        ranking = tf.where(search, alpha - beta, -np.inf)
        _, cand = tf.math.top_k(ranking, k=k)                       # (b, k)
        a_k = tf.gather(alpha, cand, batch_dims=1)
        b_k = tf.gather(beta, cand, batch_dims=1)
        s_k = tf.gather(search, cand, batch_dims=1)
        pair_alpha = a_k[:, :, None] + a_k[:, None, :]              # (b, k, k)
        pair_beta = b_k[:, :, None] + b_k[:, None, :]
        valid = ((pair_alpha > 0) & (pair_beta < 0) & s_k[:, :, None] & s_k[:, None, :]
                 & ~tf.eye(k, dtype=tf.bool)[None])
        score = tf.reshape(tf.where(valid, pair_alpha * -pair_beta, -1.0), [batch, k * k])
        best = tf.argmax(score, axis=1, output_type=tf.int32)
        found = tf.reduce_max(score, axis=1) > 0
        p = tf.gather(cand, best // k, batch_dims=1)
        q = tf.gather(cand, best % k, batch_dims=1)
        n = tf.shape(alpha)[1]
        move = running & found & ~success
        chosen = (tf.one_hot(p, n) + tf.one_hot(q, n)) * tf.cast(move, tf.float32)[:, None]
        flat = tf.clip_by_value(tf.reshape(x, [batch, -1]) + theta * chosen, 0.0, 1.0)
        return flat, search & (chosen == 0), found

    def step(x, search, cls, running):
        g_cls, g_others, success = gradients(x, cls)
        flat, new_search, found = select_and_apply(x, search, g_cls, g_others, success,
                                                   running)
        return flat, new_search, success, found

    return step
