"""APGD, Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", Algorithm 1), Linf, untargeted, natively in
TensorFlow.

PGD without a step size to tune: from a random point of the eps-ball (uniform, rescaled so
its largest coordinate is eps), signed-gradient steps with momentum 0.75 (the first step
without), projected onto the ball and [0, 1]; the step starts at 2 * eps and is halved at
checkpoints p_j (the first after 22% of the iterations, then 3% closer each time, never under
6%) when, since the previous checkpoint, the loss grew in at most ``rho`` (0.75) of the steps,
or the step was not halved last time and the best loss has not improved; after halving, the
iterate restarts from the best point (best loss) seen. Losses (of float32 logits, z = logits,
pi the classes sorted by logit, largest first):

- ``"ce"``: cross-entropy of the true label;
- ``"dlr"``: -(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3 + 1e-12), the untargeted
  difference-of-logits-ratio loss, invariant to shifting and scaling the logits;
- ``"dlr-targeted"``: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12), AutoAttack's
  APGD-T: run against each of the ``n_target_classes`` most likely classes (by clean logits)
  other than the first, in turn, on the images still robust.

An image counts as fooled as soon as an iterate is misclassified; its result is the last such
iterate (the reference's ``x_best_adv``), an image never fooled keeps its clean pixels (the
reference's ``perturb``). ``n_restarts`` runs again, from new random points, on the images
still robust. ``eot_iter`` (AutoAttack's rand version: 20) averages each gradient over that
many calls of the model, for models that are random at inference.

The algorithm, its constants and the order of its updates follow the reference
implementation (``fra31/auto-attack``, ``autopgd_base.py``, read for the algorithm; this is
our own TensorFlow code). Deviations, none of which changes the algorithm:

- the whole iteration loop is one compiled TensorFlow loop per (model, loss) (``tf.function``;
  eps, iterations, rho and seeds are tensors, so new values do not retrace), run over padded
  batches of fixed shapes (:mod:`tfadv.attacks.compiled`); every image carries its own state;
- the random start comes from a per-image counter-based hash of ``(seed, image index,
  restart)`` instead of torch's global RNG, so an image's result does not depend on its batch
  or on ``batch_size``, and no global RNG is touched;
- the oscillation test counts loss increases as the steps come rather than from a stored
  history (the same count, including the reference's comparison of the first step's loss
  with 0: its history row -1 is still zero there).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfadv import checks
from tfadv.attacks import compiled
from tfadv.attacks.validation import num_classes_of

LOSSES = ("ce", "dlr", "dlr-targeted")
_STREAM = {"ce": 1, "dlr": 2, "dlr-targeted": 3}  # one random stream per loss
_MIN_CLASSES = {"ce": 2, "dlr": 3, "dlr-targeted": 4}  # z_pi3, z_pi4 must exist


def apgd(model, x, y, target=None, *, eps: float = 8 / 255, loss: str = "ce",
         max_iter: int = 100, n_restarts: int = 1, n_target_classes: int = 9, eot_iter: int = 1,
         rho: float = 0.75, seed: int = 0, batch_size: int = 256,
         jit_compile: bool = False) -> np.ndarray:
    """APGD-CE, APGD-DLR or APGD-T (``loss``; see the module docstring), untargeted Linf.

    ``n_target_classes``: targets tried by ``"dlr-targeted"`` (at most classes - 1 are used).
    Returns the adversarial images; images not fooled keep their clean pixels.
    """
    if target is not None:
        raise ValueError("APGD runs untargeted only (APGD-T's target classes are chosen from "
                         "the clean logits): call it with target=None")
    return run(model, x, y, np.arange(len(x)), eps=eps, loss=loss, max_iter=max_iter,
               n_restarts=n_restarts, n_target_classes=n_target_classes, eot_iter=eot_iter,
               rho=rho, seed=seed, batch_size=batch_size, jit_compile=jit_compile)[0]


def check_settings(model, *, eps, loss, max_iter, n_restarts, n_target_classes, eot_iter, rho,
                   seed, batch_size):
    """The settings checked (ValueError naming the parameter), as a dict."""
    loss = checks.one_of("loss", loss, LOSSES)
    if num_classes_of(model) < _MIN_CLASSES[loss]:
        raise ValueError(f"loss={loss!r} needs a model with at least {_MIN_CLASSES[loss]} "
                         f"classes, got {num_classes_of(model)}")
    return dict(eps=checks.non_negative("eps", eps), loss=loss,
                max_iter=checks.integer("max_iter", max_iter, 1),
                n_restarts=checks.integer("n_restarts", n_restarts, 1),
                n_target_classes=checks.integer("n_target_classes", n_target_classes, 1),
                eot_iter=checks.integer("eot_iter", eot_iter, 1),
                rho=checks.fraction("rho", rho), seed=checks.integer("seed", seed, 0),
                batch_size=checks.integer("batch_size", batch_size, 1))


def run(model, x, y, ids, *, jit_compile=False, **settings):
    """``(x_adv, robust)``: the attack on float32 images ``x`` with labels ``y``; ``ids`` (one
    int per image, its index in the caller's batch) key the random starts; ``robust`` flags
    the images still classified correctly (misclassified clean images count as not robust)."""
    s = check_settings(model, **settings)
    x, y, ids = np.asarray(x, np.float32), np.asarray(y, np.int64), np.asarray(ids, np.int64)
    x_adv = x.copy()
    logits = predict_logits(model, x, s["batch_size"], jit_compile)
    robust = logits.argmax(axis=1) == y
    if s["eps"] == 0 or not len(x):
        return x_adv, robust
    if s["loss"] == "dlr-targeted":  # the 2nd, 3rd, ... most likely clean classes
        order = np.argsort(-logits, axis=1, kind="stable")
        targets = [order[:, k] for k in range(1, min(s["n_target_classes"] + 1,
                                                     logits.shape[1]))]
    else:
        targets = [y]  # unused by the untargeted losses
    n = s["max_iter"]
    # The reference's checkpoint schedule: first after 22%, then 3% closer, never under 6%.
    schedule = [max(int(f * n), 1) for f in (0.22, 0.06, 0.03)]
    constants = [tf.constant(v, tf.float32) for v in (s["eps"], s["rho"])]
    constants += [tf.constant(v, tf.int32) for v in (n, s["eot_iter"], *schedule)]
    constants += [tf.constant(s["seed"] % 2 ** 32, tf.int64),
                  tf.constant(_STREAM[s["loss"]], tf.int32)]
    for t_index, target in enumerate(targets):
        for restart in range(s["n_restarts"]):
            idx = np.flatnonzero(robust)
            if not len(idx):
                return x_adv, robust
            adv, still = run_kernel(
                model, ("apgd", s["loss"]), lambda: _kernel(model, s["loss"]),
                [x[idx], y[idx], target[idx], ids[idx]], s["batch_size"],
                (*constants, tf.constant(t_index), tf.constant(restart)), jit_compile)
            fooled = idx[~still]
            x_adv[fooled], robust[fooled] = adv[~still], False
    return x_adv, robust


def loss_per_image(name, logits, y, target):
    """The per-image loss APGD ascends (float32 logits; see the module docstring)."""
    if name == "ce":
        return compiled.cross_entropy(logits, y)
    top = tf.math.top_k(logits, k=4 if name == "dlr-targeted" else 3).values
    z_y = tf.gather(logits, y, batch_dims=1)
    if name == "dlr":
        others = tf.where(tf.one_hot(y, tf.shape(logits)[1]) > 0, -np.inf, logits)
        return -(z_y - tf.reduce_max(others, axis=1)) / (top[:, 0] - top[:, 2] + 1e-12)
    z_t = tf.gather(logits, target, batch_dims=1)
    return -(z_y - z_t) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def _per_row(flags, like):
    """(rows,) flags broadcast against ``like`` (rows, H, W, C)."""
    return tf.reshape(flags, [-1] + [1] * (len(like.shape) - 1))


def _kernel(model, loss):
    """The compiled attack of one run (one restart, one target) on a padded batch."""
    classes = num_classes_of(model)

    def gradient(x_adv, y, target, eot_iter):
        """Loss gradient averaged over ``eot_iter`` calls; logits and loss of the last."""
        grad = tf.zeros_like(x_adv)
        logits = tf.zeros([tf.shape(x_adv)[0], classes])
        value = tf.zeros([tf.shape(x_adv)[0]])
        for _ in tf.range(eot_iter):
            point = tf.identity(x_adv)  # a tensor of the loop body, for the tape to watch
            with tf.GradientTape() as tape:
                tape.watch(point)
                logits = compiled.logits32(model, point)
                value = loss_per_image(loss, logits, y, target)
                total = tf.reduce_sum(value)
            grad += tape.gradient(total, point)
        return grad / tf.cast(eot_iter, tf.float32), logits, value

    def kernel(x, y, target, ids, eps, rho, n_iter, eot_iter, k_first, k_min, k_decr, seed,
               stream, t_index, restart):
        def project(z):
            return tf.clip_by_value(tf.clip_by_value(z, x - eps, x + eps), 0.0, 1.0)

        rows = tf.shape(x)[0]
        t = 2.0 * row_uniform(seed, ids, (stream, t_index, restart), x.shape[1:]) - 1
        t_max = tf.reduce_max(tf.abs(tf.reshape(t, [rows, -1])), axis=1)
        x_adv = tf.clip_by_value(x + eps * t / (_per_row(t_max, x) + 1e-12), 0.0, 1.0)
        grad, logits, value = gradient(x_adv, y, target, eot_iter)
        correct = tf.argmax(logits, axis=1) == y
        x_best, x_best_adv, grad_best, loss_best = x_adv, x_adv, grad, value
        step = tf.fill([rows], 2.0 * eps)
        x_old = x_adv
        counter, k = tf.constant(0), k_first
        loss_best_last, reduced_last = loss_best, tf.ones([rows], tf.bool)
        loss_prev, n_increase = tf.zeros([rows]), tf.zeros([rows])
        for i in tf.range(n_iter):
            momentum = tf.where(i > 0, 0.75, 1.0)
            x_step = project(x_adv + _per_row(step, x) * tf.sign(grad))
            x_old, x_adv = x_adv, project(x_adv + (x_step - x_adv) * momentum
                                          + (x_adv - x_old) * (1 - momentum))
            grad, logits, value = gradient(x_adv, y, target, eot_iter)
            misclassified = tf.argmax(logits, axis=1) != y
            correct = correct & ~misclassified
            x_best_adv = tf.where(_per_row(misclassified, x), x_adv, x_best_adv)
            n_increase += tf.cast(value > loss_prev, tf.float32)
            loss_prev = value
            better = value > loss_best
            x_best = tf.where(_per_row(better, x), x_adv, x_best)
            grad_best = tf.where(_per_row(better, x), grad, grad_best)
            loss_best = tf.where(better, value, loss_best)
            # Checkpoint: halve the step where the loss oscillated or stalled, and go back to
            # the best point.
            counter += 1
            check = tf.equal(counter, k)
            halve = ((n_increase <= tf.cast(k, tf.float32) * rho)
                     | (~reduced_last & (loss_best_last >= loss_best)))
            reduce = check & halve
            step = tf.where(reduce, step / 2.0, step)
            x_adv = tf.where(_per_row(reduce, x), x_best, x_adv)
            grad = tf.where(_per_row(reduce, x), grad_best, grad)
            reduced_last = tf.where(check, halve, reduced_last)
            loss_best_last = tf.where(check, loss_best, loss_best_last)
            n_increase = tf.where(check, 0.0, n_increase)
            k = tf.where(check, tf.maximum(k - k_decr, k_min), k)
            counter = tf.where(check, 0, counter)
        return x_best_adv, correct

    return kernel


# ------------------------------------------------- shared by AutoAttack's components (fab, square)

def predict_logits(model, x, batch_size: int, jit_compile: bool = False) -> np.ndarray:
    """float32 logits of ``x`` (numpy) in the attacks' own padded batches (:func:`run_kernel`),
    so a prediction that decides an attack's next run never depends on ``batch_size``."""
    if not len(x):
        return np.zeros((0, num_classes_of(model)), np.float32)
    return run_kernel(model, ("logits",), lambda: lambda xb: compiled.logits32(model, xb), [x],
                      batch_size, jit_compile=jit_compile)


def run_kernel(model, key, make, arrays, batch_size: int, constants=(), jit_compile=False):
    """``compiled.run_padded`` of the kernel ``make()`` (a Python function) for ``model``:
    one ``tf.function`` per model, ``key`` and input signature (``compiled.graph``), traced
    at once for any number of rows, so the shapes of later calls (the images still robust
    shrink from run to run) never trace it again."""
    arrays = [np.asarray(a) for a in arrays]
    specs = [tf.TensorSpec([None, *a.shape[1:]], tf.as_dtype(a.dtype)) for a in arrays]
    specs += [tf.TensorSpec([None] * c.shape.rank, c.dtype) for c in constants]  # any length

    def build():
        fn = compiled.function(make(), jit_compile)
        fn.get_concrete_function(*specs)
        return fn

    signature = tuple((tuple(t.shape.as_list()), t.dtype.name) for t in specs)
    fn = compiled.graph(model, (*key, signature, bool(jit_compile)), build)
    return compiled.run_padded(fn, arrays, call_rows(batch_size), constants=constants)


def call_rows(batch_size: int) -> int:
    """Images per compiled call: ``batch_size``, but never under ``compiled.MIN_ROWS`` (a call
    is padded to 16 rows anyway: below 16 rows this CPU (oneDNN) rounds input gradients
    differently (see tfadv/attacks/cw.py), which changed FAB's results with ``batch_size`` 3
    or 7, as FAB uses the gradient's values, not only its signs)."""
    return max(batch_size, compiled.MIN_ROWS)


def _mix32(v):
    """A bijective hash of uint32 values (Wellons' "lowbias32")."""
    def shift(v, n):
        return tf.bitwise.bitwise_xor(v, tf.bitwise.right_shift(v, tf.constant(n, tf.uint32)))
    v = shift(v, 16) * tf.constant(0x7FEB352D, tf.uint32)
    v = shift(v, 15) * tf.constant(0x846CA68B, tf.uint32)
    return shift(v, 16)


def row_uniform(seed, ids, counters, shape):
    """Uniform float32 numbers in [0, 1) shaped ``(len(ids), *shape)``: row r is a hash of
    ``(seed, ids[r], *counters)`` only (integer tensors; ``ids`` one per row: the image's
    index in the caller's batch).

    Why: an attack's random numbers for an image must not depend on the other images of its
    padded batch, on its row or on ``batch_size``; ``tf.random``'s stateless ops take one
    seed per call, so each row's numbers would depend on its position. A counter-based hash
    gives every image its own stream, inside compiled loops, on any device (uint32 integer
    ops, XLA-compatible), and leaves every global RNG alone.
    """
    key = _mix32(tf.cast(seed, tf.uint32))
    key = _mix32(tf.bitwise.bitwise_xor(key, tf.cast(ids, tf.uint32)))
    for counter in counters:
        key = _mix32(key + _mix32(tf.cast(counter, tf.uint32) + tf.constant(0x9E3779B9,
                                                                             tf.uint32)))
    element = _mix32(tf.cast(tf.range(int(np.prod(shape))), tf.uint32))
    bits = _mix32(tf.bitwise.bitwise_xor(_mix32(key[:, None] + element[None, :]),
                                         key[:, None]))
    # The top 24 bits: exact in float32, so the result is never 1.0.
    u = tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32)), tf.float32)
    return tf.reshape(u * (1.0 / (1 << 24)), tf.concat([tf.shape(ids)[:1], list(shape)], 0))
