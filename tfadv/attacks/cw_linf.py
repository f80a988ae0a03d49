"""Carlini & Wagner's Linf attack (paper sec. V-C, ``li_attack.py``), native and batched.

The tau method, on the machinery shared with the L2 and L0 attacks (``cw.py``: tanh space,
Carlini's margin, hand-written Adam in compiled loops, per-image state, finished images
dropped from the batch within a round, compiled calls of whole 16-row packets); see
``cw_linf``'s docstring for the algorithm and every deviation from Carlini's code.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfadv import checks
from tfadv.attacks import compiled
from tfadv.attacks.cw import _BETA1, _BETA2, _keep_going, _logits, _make_run, _margin, _to_tanh
from tfadv.batching import map_batches


def cw_linf(model, x, y, target=None, *, confidence: float = 0.0,
            learning_rate: float = 5e-3, max_iterations: int = 1000,
            initial_const: float = 1e-5, largest_const: float = 20.0,
            const_factor: float = 2.0, decrease_factor: float = 0.9,
            tau_min: float = 1 / 256, abort_early: bool = True, max_rounds: int = 100,
            batch_size: int = 256, jit_compile: bool = False) -> np.ndarray:
    """Carlini's Linf attack, native and batched; inputs validated by ``make``.

    Each image minimises, in tanh space, ``c * f(x') + sum_i max(|x'_i - x_i| - tau, 0)``
    with Adam (``learning_rate``) for up to ``max_iterations`` steps a round. A round
    *succeeds* when the image is adversarial (margin > ``confidence``) with every
    ``|x'_i - x_i| <= tau``. After a success, ``tau = min(tau, max|x' - x|) *
    decrease_factor`` and the next round starts from that success with fresh Adam moments;
    after a failure, ``c *= const_factor`` and the next round continues from where the failed
    one stopped (same ``w`` and Adam moments). An image stops when ``tau <= tau_min``, when
    ``c >= largest_const`` (gives up) or after ``max_rounds`` rounds. The result is its last,
    hence smallest-Linf, success; an image that never succeeds is returned unchanged. tau
    starts at 1 and c at ``initial_const``; c is not reset when tau shrinks. Every image has
    its own tau, c and state; each round is a compiled loop over the images still running
    (those that stop leave the batch within the round too). ``jit_compile``: XLA for it.

    The defaults are Carlini's (``li_attack.py``). With them an image takes at most
    53 successful rounds (0.9^53 < 1/256) and 21 failed ones (1e-5 * 2^21 > 20), so
    ``max_rounds=100`` never binds; lower it (or ``max_iterations``) to bound the cost.

    Deviations from Carlini's code:

    - Success is "adversarial and inside the tau box", checked at every step on the point
      just evaluated. Carlini checks the prediction when the loss drops below 1e-4 * c,
      which allows a summed excess over tau of up to 1e-4 * c; here every returned image
      lies inside the tau it was found at, exactly.
    - ``abort_early`` (default on) stops an image at its first success in a round, as
      Carlini's does, and also stops a failing image once its loss has not fallen below
      0.9999 of its value ``max_iterations // 10`` steps earlier (the L2 attack's
      abort-early; Carlini's Linf always runs all ``max_iterations`` steps for a failing c).
      That is the main speed-up besides batching. Without ``abort_early`` every round runs
      all steps and keeps the smallest-Linf success inside tau (Carlini's own no-abort
      branch tests ``step == CONST - 1``, a bug).
    - ``confidence`` (kappa) is added to f as in the L2 attack (Carlini's Linf has none).
    - An image that is already adversarial (margin > confidence) is returned unchanged;
      Carlini's code would return a tanh round trip of it.
    - Carlini's ``reduce_const`` option (off by default there) is not offered.
    """
    run = _make_run(model, target, confidence, learning_rate, max_iterations, abort_early,
                    batch_size, jit_compile)
    initial_const = checks.positive("initial_const", initial_const)
    largest_const = checks.positive("largest_const", largest_const)
    if largest_const <= initial_const:
        raise ValueError(f"largest_const ({largest_const}) must be larger than initial_const "
                         f"({initial_const})")
    const_factor = checks.positive("const_factor", const_factor)
    if const_factor <= 1:
        raise ValueError(f"const_factor must be > 1, got {const_factor!r}")
    decrease_factor = checks.fraction("decrease_factor", decrease_factor, include_one=False)
    tau_min = checks.fraction("tau_min", tau_min)
    max_rounds = checks.integer("max_rounds", max_rounds, 1)
    return map_batches(lambda xb, yb: _linf_batch(
        run, xb, yb, initial_const, largest_const, const_factor, decrease_factor, tau_min,
        max_rounds)[0], x, y if target is None else target, batch_size=run.batch_size)


def _linf_batch(run, x, labels, initial_const, largest_const, const_factor, decrease_factor,
                tau_min, max_rounds):
    """cw_linf on one batch. Also returns the tau each result was found under (float32; 0
    for an image already adversarial, NaN where none was found)."""
    n = len(x)
    out = x.copy()
    found_tau = np.full(n, np.nan, np.float32)
    tau = np.ones(n)
    const = np.full(n, initial_const)
    w, m, v = _to_tanh(x), np.zeros_like(x), np.zeros_like(x)
    t = np.zeros(n, np.float32)  # Adam's step count, per image
    running = run.gaps(x, labels) <= run.confidence
    found_tau[~running] = 0.0
    stop_at_success = tf.constant(run.abort_early)
    linf_round = _compiled_round(run.fns.model, run.fns.jit_compile)
    onehot = run.onehot(labels)
    for _ in range(max_rounds):
        idx = np.flatnonzero(running)
        if not len(idx):
            break
        k = len(idx)
        _, _, found, linf, adv, w2, m2, v2, t2 = run.rounds(
            linf_round, (x[idx], onehot[idx], const[idx].astype(np.float32),
                         tau[idx].astype(np.float32)),
            (np.ones(k, bool), np.full(k, np.inf, np.float32), np.zeros(k, bool),
             np.full(k, np.inf, np.float32), x[idx], w[idx], m[idx], v[idx], t[idx]),
            (run.targeted, run.kappa, run.lr, run.max_iter, run.check_every, stop_at_success))
        won, lost = idx[found], idx[~found]
        out[won] = adv[found]
        found_tau[won] = tau[won].astype(np.float32)
        tau[won] = np.minimum(tau[won], linf[found]) * decrease_factor
        w[won], m[won], v[won], t[won] = _to_tanh(adv[found]), 0.0, 0.0, 0.0
        const[lost] *= const_factor
        w[lost], m[lost], v[lost], t[lost] = w2[~found], m2[~found], v2[~found], t2[~found]
        running[idx] = (tau[idx] > tau_min) & (const[idx] < largest_const)
    return out, found_tau


def _compiled_round(model, jit_compile=False):
    """The model's compiled Linf round, built once per model (and XLA setting)."""
    return compiled.graph(model, ("cw_linf", bool(jit_compile)),
                          lambda: compiled.function(_linf_round(model), jit_compile))


def _linf_round(model):
    """The Linf round's Python function for ``model`` (compiled by ``_compiled_round``)."""

    def linf_round(fixed, state, step, real, stop_at, targeted, confidence, lr, max_iter,
                   check_every, stop_at_success):
        """Steps of one (tau, c) round of the Linf attack (``_Run.rounds``' ``fn``): from the
        carried state (w, m, v, t), whether each image succeeded (adversarial with every
        |x' - x| <= tau), the Linf and image of its best success, and the state after them.
        """
        x, onehot, const, tau = fixed
        active, previous, found, best_linf, best_adv, w, m, v, t = state
        tau4 = tau[:, None, None, None]
        while _keep_going(step, max_iter, active, real, stop_at):
            step += 1
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(w)
                x_adv = (tf.tanh(w) + 1.0) / 2.0
                gap = _margin(_logits(model, x_adv), onehot, targeted)
                dist = tf.abs(x_adv - x)
                excess = tf.reduce_sum(tf.nn.relu(dist - tau4), axis=[1, 2, 3])
                loss = const * tf.maximum(confidence - gap, 0.0) + excess
                total = tf.reduce_sum(loss)
            linf = tf.reduce_max(dist, axis=[1, 2, 3])
            success = active & (gap > confidence) & (linf <= tau)
            better = success & (linf < best_linf)
            best_linf = tf.where(better, linf, best_linf)
            best_adv = tf.where(better[:, None, None, None], x_adv, best_adv)
            found = found | success
            active = active & ~(success & stop_at_success)
            grad = tape.gradient(total, w)
            # Adam; a stopped image keeps its state (it is carried to the next round).
            moving = active[:, None, None, None]
            t = tf.where(active, t + 1.0, t)
            m = tf.where(moving, _BETA1 * m + (1 - _BETA1) * grad, m)
            v = tf.where(moving, _BETA2 * v + (1 - _BETA2) * tf.square(grad), v)
            t4 = tf.maximum(t, 1.0)[:, None, None, None]
            update = lr * (m / (1 - _BETA1 ** t4)) / (tf.sqrt(v / (1 - _BETA2 ** t4)) + 1e-8)
            w = tf.where(moving, w - update, w)
            check = tf.equal(step % check_every, 0)
            active = tf.where(check, active & (loss < 0.9999 * previous), active)
            previous = tf.where(check, loss, previous)
        return (active, previous, found, best_linf, best_adv, w, m, v, t), step

    return linf_round
