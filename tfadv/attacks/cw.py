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
  Logits are cast to float32 before the loss; only the network runs in a mixed precision.
- Adam is written by hand inside a compiled TensorFlow ``while`` loop (one graph call runs
  many steps; ``jit_compile=True`` asks XLA for it, for accelerators: off by default, as on
  this CPU XLA does not help small networks).
- Every image carries its own state (c, tau, allowed pixels, Adam moments, step count, last
  loss) and stops on its own (per-image abort-early), so an image's result never depends on
  the other images of its batch or on ``batch_size``.
- Finished images leave the batch. A compiled call returns, with every row's full state,
  as soon as its running images fit a smaller call: ``compiled.padded_rows`` rows, a
  multiple of 16 (under XLA, which compiles every shape it sees, a power of two, so at most
  half). They go on alone in that call, and a finished image no longer costs a
  forward/backward pass for the rest of its round. Since every row's arithmetic is its
  own, this gives the same results as running every row to the end of the round
  (``_COMPACT = False``; tested), and rounds end where they did: abort-early is per image.
- Every compiled call sees a multiple of ``MIN_ROWS`` (16) rows, real images repeated: on
  this CPU (oneDNN) the input gradient of the digits CNN rounds differently for batches of
  1-15 images than for 16 or more, and an op on one value per row (Adam's ``beta ** t`` of
  the Linf attack's per-image step counts) takes AVX-512's 16-float packets for full
  packets and a scalar path, which rounds differently, for the rest (rows 16-19 of a
  20-row call). With whole packets every call of 16-512 rows gives bit-identical rows.

``cw_l2``. Each image minimises ``||x' - x||_2^2 + c * f(x')`` with Adam
(``learning_rate``, C&W's 0.01) for ``max_iterations`` steps from ``w`` of the clean image,
inside ``binary_search_steps`` rounds of a per-image search over ``c`` (from
``initial_const``; x10 until a first success, then bisection), as in Carlini's code and
Foolbox. The result is the smallest-L2 success seen at any step; an image with no success is
returned unchanged. Abort-early: an image stops when its loss has not fallen below 0.9999 of
its value ``max_iterations // 10`` steps earlier. Every image runs every binary-search step:
a later step (another c) can still find a smaller L2, so skipping one would change results.

``cw_linf`` (``cw_linf.py``). Carlini's tau method (paper sec. V-C, ``li_attack.py``); see
its docstring for the algorithm and every deviation from Carlini's code.

``cw_l0`` (``cw_l0.py``). Carlini's shrinking allowed set (paper sec. V-B, ``l0_attack.py``):
the L2 attack restricted to allowed pixels, repeated while pixels are taken away; see its
docstring.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfadv import checks
from tfadv.attacks import compiled
from tfadv.attacks.art_bridge import one_hot
from tfadv.attacks.validation import num_classes_of
from tfadv.batching import map_batches

_UNSET = 1e10  # "no upper bound on c yet", Carlini's sentinel
_CHUNK = 512    # largest batch of a plain forward/backward pass (polishing, gradients)
_BETA1, _BETA2 = 0.9, 0.999
# Finished images leave the batch (module docstring); False keeps every row to the end of its
# round, as the attack did before: the tests compare the two.
_COMPACT = True


def _call_rows(n, batch_size, jit_compile=False):
    """Rows of a compiled call for ``n`` images (``compiled.padded_rows``: ``batch_size`` for
    a full batch, else a multiple of MIN_ROWS, under XLA a power of two), rounded up to whole
    16-row packets (module docstring)."""
    rows = max(n, compiled.padded_rows(n, batch_size, jit_compile=jit_compile))
    return -(-rows // compiled.MIN_ROWS) * compiled.MIN_ROWS


def _rows(n, batch_size, jit_compile=False):
    """Row indices of that call: ``0..n-1``, repeated (the padding)."""
    return np.resize(np.arange(n), _call_rows(n, batch_size, jit_compile))


def _stop_at(size, jit_compile):
    """How few running images make a call of ``size`` rows return, to go on in a smaller one:
    the most that fit a smaller call (0: none does, or compaction is off). That is 16 rows
    fewer (whole packets), or under XLA half as many (powers of two: fewer shapes to compile).
    """
    k = size - 1 if _COMPACT else 0
    while k > 0 and _call_rows(k, size, jit_compile) >= size:
        k -= 1
    return k


def _to_tanh(x):
    """``w`` with ``(tanh(w) + 1) / 2 ~= x`` (Carlini's ``arctanh(x * 1.999999)``)."""
    return np.arctanh((2.0 * x - 1.0) * np.float32(0.999999)).astype(np.float32)


def cw_l2(model, x, y, target=None, *, confidence: float = 0.0, learning_rate: float = 0.01,
          binary_search_steps: int = 9, max_iterations: int = 1000,
          initial_const: float = 1e-3, abort_early: bool = True,
          batch_size: int = 256, jit_compile: bool = False) -> np.ndarray:
    """Minimal-L2 adversarial images (see the module docstring); inputs validated by ``make``.

    ``confidence``: the margin kappa the winning logit must clear. Defaults are Carlini's,
    except ``max_iterations``: 10,000 in his code, 1,000 here to keep runs affordable (with
    abort-early most images stop far sooner anyway). ``jit_compile``: XLA for the rounds.
    """
    run = _make_run(model, target, confidence, learning_rate, max_iterations, abort_early,
                    batch_size, jit_compile)
    initial_const = checks.positive("initial_const", initial_const)
    binary_search_steps = checks.integer("binary_search_steps", binary_search_steps, 1)
    labels = y if target is None else target  # what the margin is measured against
    return map_batches(lambda xb, yb: run.l2_search(
        xb, yb, np.ones(xb.shape[:3] + (1,), bool), np.full(len(xb), initial_const),
        binary_search_steps)[0], x, labels, batch_size=run.batch_size)


def _make_run(model, target, confidence, learning_rate, max_iterations, abort_early,
              batch_size=256, jit_compile=False):
    """A ``_Run`` after checking the settings the three C&W attacks share."""
    confidence = checks.non_negative("confidence", confidence)
    learning_rate = checks.positive("learning_rate", learning_rate)
    max_iterations = checks.integer("max_iterations", max_iterations, 1)
    abort_early = checks.boolean("abort_early", abort_early)
    batch_size = checks.integer("batch_size", batch_size, 1)
    jit_compile = checks.boolean("jit_compile", jit_compile)
    return _Run(_compiled(model, jit_compile), target is not None, num_classes_of(model),
                confidence, learning_rate, max_iterations, abort_early, batch_size)


class _Run:
    """One attack call's fixed settings and the model's compiled functions."""

    def __init__(self, fns, targeted, num_classes, confidence, learning_rate, max_iterations,
                 abort_early, batch_size=256):
        self.fns, self.num_classes, self.batch_size = fns, num_classes, batch_size
        self.targeted = tf.constant(targeted)
        self.confidence, self.kappa = confidence, tf.constant(confidence, tf.float32)
        self.lr = tf.constant(learning_rate, tf.float32)
        self.max_iterations, self.max_iter = max_iterations, tf.constant(max_iterations)
        self.abort_early = abort_early
        # Abort-early checks every max_iterations // 10 steps; never, without abort-early.
        self.check_every = tf.constant(
            max(max_iterations // 10, 1) if abort_early else max_iterations + 1)

    def onehot(self, labels):
        return one_hot(labels, self.num_classes)

    def l2_search(self, x, labels, mask, const, steps):
        """Carlini's per-image binary search on c for the L2 attack on the ``mask`` pixels.

        Each image starts at its own ``const``. Returns the smallest-L2 successes (the clean
        image where none), their L2 (inf where none) and each image's smallest successful c
        (``_UNSET`` where none).
        """
        n = len(x)
        onehot = self.onehot(labels)
        const = np.asarray(const, np.float64)
        lower, upper = np.zeros(n), np.full(n, _UNSET)
        best_l2, best_adv = np.full(n, np.inf, np.float32), x.copy()
        for _ in range(steps):
            # A round starts from the clean image (w is set in the graph) with fresh moments.
            zeros = np.zeros_like(x)
            _, _, _, _, _, succeeded, best_l2, best_adv = self.rounds(
                self.fns.l2_round, (x, mask, onehot, const.astype(np.float32)),
                (np.ones(n, bool), np.full(n, np.inf, np.float32), zeros, zeros, zeros,
                 np.zeros(n, bool), best_l2, best_adv),
                (self.targeted, self.kappa, self.lr, self.max_iter, self.check_every))
            upper = np.where(succeeded, np.minimum(upper, const), upper)
            lower = np.where(succeeded, lower, np.maximum(lower, const))
            const = np.where(upper < _UNSET, (lower + upper) / 2, const * 10)
        return best_adv, best_l2, upper

    def rounds(self, fn, fixed, state, constants):
        """One optimisation round of every image, run by the compiled ``fn``, finished images
        dropped from the batch as it goes (see the module docstring).

        ``fixed``: per-image inputs (numpy, n rows); ``state``: per-image state (numpy, n
        rows), ``state[0]`` whether the image still runs. ``fn(fixed, state, step, real,
        stop_at, *constants) -> (state, step)`` runs steps while ``step < max_iterations``
        and more than ``stop_at`` of its ``real`` rows (the others repeat them) still run.
        Returns every image's final state (numpy).
        """
        n, jit = len(fixed[0]), self.fns.jit_compile
        final = [np.empty_like(s) for s in state]
        rows = _rows(n, self.batch_size, jit)
        fixed = [tf.constant(a[rows]) for a in fixed]
        state = [tf.constant(s[rows]) for s in state]
        images = np.arange(n)  # the image of each of the call's first len(images) rows
        step = tf.constant(0)
        while True:
            size, k = len(rows), len(images)
            stop_at = tf.constant(min(_stop_at(size, jit), k - 1))  # never a call of 0 steps
            state, step = fn(tuple(fixed), tuple(state), step, tf.constant(k), stop_at,
                             *constants)
            running = state[0].numpy()[:k] & (int(step) < self.max_iterations)
            finished = np.flatnonzero(~running)
            for f, s in zip(final, state):
                f[images[finished]] = tf.gather(s, finished).numpy()
            if len(finished) == k:
                return final
            # The running images go on alone, in the next smaller batch (gathered in place:
            # on an accelerator the state never leaves the device).
            keep = np.flatnonzero(running)
            rows = keep[_rows(len(keep), size, jit)]
            images = images[keep]
            fixed = [tf.gather(a, rows) for a in fixed]
            state = [tf.gather(s, rows) for s in state]

    def gaps(self, x, labels):
        """The margin (> confidence: a success) of every image, in padded chunks."""
        return map_batches(lambda xb, yb: self._padded(self.fns.gap, xb, yb), x, labels,
                           batch_size=_CHUNK, out_shape=(len(x),))

    def grads(self, x, labels):
        """The gradient of every image's margin with respect to its pixels."""
        return map_batches(lambda xb, yb: self._padded(self.fns.grad, xb, yb), x, labels,
                           batch_size=_CHUNK)

    def _padded(self, fn, x, labels):
        """``fn`` on ``x`` padded as a compiled round is (``_rows``); the padding dropped."""
        rows = _rows(len(x), _CHUNK)
        return fn(tf.constant(x[rows]), tf.constant(self.onehot(labels[rows])),
                  self.targeted).numpy()[:len(x)]


def _compiled(model, jit_compile=False):
    """The model's ``_Compiled`` functions, built once per model (and XLA setting)."""
    return compiled.graph(model, ("cw", bool(jit_compile)),
                          lambda: _Compiled(model, jit_compile))


def _logits(model, x):
    return compiled.logits32(model, x)


def _margin(logits, onehot, targeted):
    """Z_label - max_{i != label} Z_i (targeted); its negative (untargeted)."""
    label_logit = tf.reduce_sum(logits * onehot, axis=1)
    other = tf.reduce_max(logits - 1e9 * onehot, axis=1)
    return tf.where(targeted, label_logit - other, other - label_logit)


def _keep_going(step, max_iter, active, real, stop_at):
    """The loop condition of a compiled round: steps left, and more than ``stop_at`` of the
    first ``real`` rows (the others are padding) still running. XLA-friendly (no slicing)."""
    is_real = tf.range(tf.shape(active)[0]) < real
    running = tf.reduce_sum(tf.cast(active & is_real, tf.int32))
    return tf.logical_and(step < max_iter, running > stop_at)


def _adam(w, m, v, grad, t, lr):
    """Adam's moments and step (the step to subtract from w) at step count t (float32)."""
    m = _BETA1 * m + (1 - _BETA1) * grad
    v = _BETA2 * v + (1 - _BETA2) * tf.square(grad)
    return m, v, lr * (m / (1 - _BETA1 ** t)) / (tf.sqrt(v / (1 - _BETA2 ** t)) + 1e-8)


class _Compiled:
    """The graph functions of one model: the L2 round, margins and gradients (the Linf round
    is ``cw_linf``'s, compiled there for ``model``)."""

    def __init__(self, model, jit_compile=False):
        self.model, self.jit_compile = model, jit_compile

        def l2_round(fixed, state, step, real, stop_at, targeted, confidence, lr, max_iter,
                     check_every):
            """Steps of one binary-search round on the ``mask`` pixels (``rounds``' ``fn``):
            Adam from the clean image at step 0, from the carried state after it."""
            x, mask, onehot, const = fixed
            active, previous, w, m, v, succeeded, best_l2, best_adv = state
            w = tf.cond(step > 0, lambda: w, lambda: tf.atanh((2.0 * x - 1.0) * 0.999999))
            while _keep_going(step, max_iter, active, real, stop_at):
                step += 1
                with tf.GradientTape(watch_accessed_variables=False) as tape:
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
                m, v, update = _adam(w, m, v, grad, tf.cast(step, tf.float32), lr)
                w = w - tf.where(active[:, None, None, None], update, 0.0)
                check = tf.equal(step % check_every, 0)
                active = tf.where(check, active & (loss < 0.9999 * previous), active)
                previous = tf.where(check, loss, previous)
            return (active, previous, w, m, v, succeeded, best_l2, best_adv), step

        def gap(x, onehot, targeted):
            return _margin(_logits(model, x), onehot, targeted)

        def grad(x, onehot, targeted):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(x)
                total = tf.reduce_sum(_margin(_logits(model, x), onehot, targeted))
            return tape.gradient(total, x)

        self.l2_round = compiled.function(l2_round, jit_compile)
        self.gap, self.grad = compiled.function(gap), compiled.function(grad)
