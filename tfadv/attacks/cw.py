"""Carlini & Wagner (2017): the L2, Linf and L0 attacks, native and batched.

cleverhans 4.0.0's ``carlini_wagner_l2`` is broken under Keras 3, and ART 1.20.1's
``CarliniLInfMethod`` / ``CarliniL0Method`` are too slow to use. Measured on five 8x8 digits
(tests' digits CNN, untargeted, 2-core CPU shared with other jobs): ART's Linf fooled none
in 33 s at its default ``max_iter=10`` and took 202 s at ``max_iter=100`` (mean Linf 0.113),
ours 12 s at its defaults (mean Linf 0.045); ART's L0 took 179 s and changed all 64 pixels
of every image (its tanh round trip moves each by ~1e-7), ours 14 s for a mean L0 of 2.2.
So all three attacks are written natively: the L2 attack and the machinery the three share
here, the Linf attack in ``cw_linf.py``, the L0 attack in ``cw_l0.py``. The shared machinery:

- The box constraint comes for free in tanh space, ``x' = (tanh(w) + 1) / 2``; the
  classification term is Carlini's

      f = max(max_{i != t} Z_i - Z_t, -kappa)     targeted at t (logits Z)
      f = max(Z_y - max_{i != y} Z_i, -kappa)     untargeted, true label y

  and an image counts as a success when its margin clears ``confidence`` (kappa) strictly.
- Adam is written by hand inside one compiled TensorFlow ``while`` loop per optimisation
  round, so a round of up to ``max_iterations`` steps is one graph call.
- Every image carries its own state (c, tau, allowed pixels, Adam moments, step count) and
  stops on its own (per-image abort-early), so an image's result never depends on the other
  images of its batch or on ``batch_size``. For the same reason every compiled call sees at
  least ``_MIN_ROWS`` rows (real images repeated): on this CPU (oneDNN) the input gradient
  of the digits CNN rounds differently for batches of 1-15 images than for 16 or more, while
  every batch of 16-512 images gives bit-identical rows.

``cw_l2``. Each image minimises ``||x' - x||_2^2 + c * f(x')`` with Adam
(``learning_rate``, C&W's 0.01) for ``max_iterations`` steps from ``w`` of the clean image,
inside ``binary_search_steps`` rounds of a per-image search over ``c`` (from
``initial_const``; x10 until a first success, then bisection), as in Carlini's code and
Foolbox. The result is the smallest-L2 success seen at any step; an image with no success is
returned unchanged. Abort-early: an image stops when its loss has not fallen below 0.9999 of
its value ``max_iterations // 10`` steps earlier.

``cw_linf`` (``cw_linf.py``). Carlini's tau method (paper sec. V-C, ``li_attack.py``); see
its docstring for the algorithm and every deviation from Carlini's code.

``cw_l0`` (``cw_l0.py``). Carlini's shrinking allowed set (paper sec. V-B, ``l0_attack.py``):
the L2 attack restricted to allowed pixels, repeated while pixels are taken away; see its
docstring.
"""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf

from tfadv import checks
from tfadv.attacks.art_bridge import one_hot
from tfadv.attacks.validation import num_classes_of
from tfadv.batching import map_batches

_COMPILED = weakref.WeakKeyDictionary()  # model -> _Compiled (its graph functions)
_UNSET = 1e10  # "no upper bound on c yet", Carlini's sentinel
_MIN_ROWS = 16  # smallest batch of a compiled call (see the module docstring)
_CHUNK = 512    # largest batch of a plain forward/backward pass (polishing, gradients)
_BETA1, _BETA2 = 0.9, 0.999


def _rows(n):
    """Row indices of a compiled call for ``n`` images: ``0..n-1``, repeated up to _MIN_ROWS."""
    return np.resize(np.arange(n), max(n, _MIN_ROWS))


def _to_tanh(x):
    """``w`` with ``(tanh(w) + 1) / 2 ~= x`` (Carlini's ``arctanh(x * 1.999999)``)."""
    return np.arctanh((2.0 * x - 1.0) * np.float32(0.999999)).astype(np.float32)


def cw_l2(model, x, y, target=None, *, confidence: float = 0.0, learning_rate: float = 0.01,
          binary_search_steps: int = 9, max_iterations: int = 1000,
          initial_const: float = 1e-3, abort_early: bool = True,
          batch_size: int = 128) -> np.ndarray:
    """Minimal-L2 adversarial images (see the module docstring); inputs validated by ``make``.

    ``confidence``: the margin kappa the winning logit must clear. Defaults are Carlini's,
    except ``max_iterations``: 10,000 in his code, 1,000 here to keep runs affordable (with
    abort-early most images stop far sooner anyway).
    """
    run = _make_run(model, target, confidence, learning_rate, max_iterations, abort_early)
    initial_const = checks.positive("initial_const", initial_const)
    binary_search_steps = checks.integer("binary_search_steps", binary_search_steps, 1)
    batch_size = checks.integer("batch_size", batch_size, 1)
    labels = y if target is None else target  # what the margin is measured against
    return map_batches(lambda xb, yb: run.l2_search(
        xb, yb, np.ones(xb.shape[:3] + (1,), bool), np.full(len(xb), initial_const),
        binary_search_steps)[0], x, labels, batch_size=batch_size)


def _make_run(model, target, confidence, learning_rate, max_iterations, abort_early):
    """A ``_Run`` after checking the settings the three C&W attacks share."""
    confidence = checks.non_negative("confidence", confidence)
    learning_rate = checks.positive("learning_rate", learning_rate)
    max_iterations = checks.integer("max_iterations", max_iterations, 1)
    abort_early = checks.boolean("abort_early", abort_early)
    return _Run(_compiled(model), target is not None, num_classes_of(model), confidence,
                learning_rate, max_iterations, abort_early)


class _Run:
    """One attack call's fixed settings and the model's compiled functions."""

    def __init__(self, fns, targeted, num_classes, confidence, learning_rate, max_iterations,
                 abort_early):
        self.fns, self.num_classes = fns, num_classes
        self.targeted = tf.constant(targeted)
        self.confidence, self.kappa = confidence, tf.constant(confidence, tf.float32)
        self.lr = tf.constant(learning_rate, tf.float32)
        self.max_iter = tf.constant(max_iterations)
        self.abort_early = abort_early
        # Abort-early checks every max_iterations // 10 steps; never, without abort-early.
        self.check_every = tf.constant(
            max(max_iterations // 10, 1) if abort_early else max_iterations + 1)

    def onehot(self, labels):
        return tf.constant(one_hot(labels, self.num_classes))

    def l2_search(self, x, labels, mask, const, steps):
        """Carlini's per-image binary search on c for the L2 attack on the ``mask`` pixels.

        Each image starts at its own ``const``. Returns the smallest-L2 successes (the clean
        image where none), their L2 (inf where none) and each image's smallest successful c
        (``_UNSET`` where none).
        """
        n = len(x)
        rows = _rows(n)
        xb, maskb, onehot = tf.constant(x[rows]), tf.constant(mask[rows]), self.onehot(
            labels[rows])
        const = np.asarray(const, np.float64)[rows]
        lower, upper = np.zeros(len(rows)), np.full(len(rows), _UNSET)
        best_l2 = tf.fill([len(rows)], np.inf)
        best_adv = xb
        for _ in range(steps):
            best_l2, best_adv, succeeded = self.fns.l2_round(
                xb, maskb, onehot, tf.constant(const, tf.float32), best_l2, best_adv,
                self.targeted, self.kappa, self.lr, self.max_iter, self.check_every)
            succeeded = succeeded.numpy()
            upper = np.where(succeeded, np.minimum(upper, const), upper)
            lower = np.where(succeeded, lower, np.maximum(lower, const))
            const = np.where(upper < _UNSET, (lower + upper) / 2, const * 10)
        return best_adv.numpy()[:n], best_l2.numpy()[:n], upper[:n]

    def gaps(self, x, labels):
        """The margin (> confidence: a success) of every image, in padded chunks."""
        return map_batches(lambda xb, yb: self._padded(self.fns.gap, xb, yb), x, labels,
                           batch_size=_CHUNK, out_shape=(len(x),))

    def grads(self, x, labels):
        """The gradient of every image's margin with respect to its pixels."""
        return map_batches(lambda xb, yb: self._padded(self.fns.grad, xb, yb), x, labels,
                           batch_size=_CHUNK)

    def _padded(self, fn, x, labels):
        """``fn`` on ``x`` padded to at least _MIN_ROWS rows; the padding's rows dropped."""
        rows = _rows(len(x))
        return fn(tf.constant(x[rows]), self.onehot(labels[rows]), self.targeted).numpy()[:len(x)]


def _compiled(model):
    if model not in _COMPILED:
        _COMPILED[model] = _Compiled(model)
    return _COMPILED[model]


def _logits(model, x):
    return tf.cast(model(x, training=False), tf.float32)


def _margin(logits, onehot, targeted):
    """Z_label - max_{i != label} Z_i (targeted); its negative (untargeted)."""
    label_logit = tf.reduce_sum(logits * onehot, axis=1)
    other = tf.reduce_max(logits - 1e9 * onehot, axis=1)
    return tf.where(targeted, label_logit - other, other - label_logit)


class _Compiled:
    """The graph functions of one model: the L2 round, margins and gradients (the Linf round
    is ``cw_linf``'s, compiled there for ``model``)."""

    def __init__(self, model):
        self.model = model

        @tf.function(reduce_retracing=True)
        def l2_round(x, mask, onehot, const, best_l2, best_adv, targeted, confidence, lr,
                     max_iter, check_every):
            """One binary-search round on the ``mask`` pixels: Adam from the clean image."""
            w = tf.atanh((2.0 * x - 1.0) * 0.999999)  # plain tensors: the loop carries state
            m, v = tf.zeros_like(w), tf.zeros_like(w)
            active = tf.ones(tf.shape(x)[0], tf.bool)
            previous = tf.fill([tf.shape(x)[0]], np.inf)
            succeeded = tf.zeros(tf.shape(x)[0], tf.bool)
            step = tf.constant(0)
            while tf.logical_and(step < max_iter, tf.reduce_any(active)):
                step += 1
                with tf.GradientTape() as tape:
                    tape.watch(w)
                    # Pixels outside the mask are exactly x, not a tanh round trip of it.
                    x_adv = tf.where(mask, (tf.tanh(w) + 1.0) / 2.0, x)
                    logits = _logits(model, x_adv)
                    l2 = tf.reduce_sum(tf.square(x_adv - x), axis=[1, 2, 3])
                    gap = _margin(logits, onehot, targeted)   # > kappa: adversarial enough
                    loss = l2 + const * tf.maximum(confidence - gap, 0.0)
                    total = tf.reduce_sum(loss)  # images are independent: own gradients
                # The point just evaluated (before this step's update) is a candidate result.
                success = gap > confidence
                better = success & (l2 < best_l2) & active
                best_l2 = tf.where(better, l2, best_l2)
                best_adv = tf.where(better[:, None, None, None], x_adv, best_adv)
                succeeded = succeeded | (success & active)
                grad = tape.gradient(total, w)
                m = _BETA1 * m + (1 - _BETA1) * grad
                v = _BETA2 * v + (1 - _BETA2) * tf.square(grad)
                t = tf.cast(step, tf.float32)
                update = lr * (m / (1 - _BETA1 ** t)) / (tf.sqrt(v / (1 - _BETA2 ** t)) + 1e-8)
                w = w - tf.where(active[:, None, None, None], update, 0.0)
                check = tf.equal(step % check_every, 0)
                active = tf.where(check, active & (loss < 0.9999 * previous), active)
                previous = tf.where(check, loss, previous)
            return best_l2, best_adv, succeeded

        @tf.function(reduce_retracing=True)
        def gap(x, onehot, targeted):
            return _margin(_logits(model, x), onehot, targeted)

        @tf.function(reduce_retracing=True)
        def grad(x, onehot, targeted):
            with tf.GradientTape() as tape:
                tape.watch(x)
                total = tf.reduce_sum(_margin(_logits(model, x), onehot, targeted))
            return tape.gradient(total, x)

        self.l2_round, self.gap, self.grad = l2_round, gap, grad
