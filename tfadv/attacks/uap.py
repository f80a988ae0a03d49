"""Universal adversarial perturbation (Moosavi-Dezfooli et al. 2017), native.

One perturbation ``v`` for a whole set of images (Algorithm 1 of the paper):

    v = 0
    repeat (at most max_iter passes) until the fooling rate on the set >= 1 - delta:
        for each image x_i (in a seeded random order) that x_i + v does not fool yet:
            dv = DeepFool's minimal perturbation of x_i + v        (tfadv.attacks.deepfool)
            v  = project(v + dv) onto the ball ||v||_p <= eps       (p = inf or 2)

An image counts as fooled when the model's prediction on ``clip(x + v, 0, 1)`` differs from
its true label (the suite's attacks use true labels; on correctly classified images this is
the paper's "prediction changed"). The inner DeepFool is the suite's native batched one, so
this is much faster than ART's ``UniversalPerturbation`` with its DeepFool (see
notes/RESULTS.md); it is cross-checked against ART in tests/attacks/test_uap.py.

``uap(model, x, y)`` fits ``v`` on the batch it is given and returns ``clip(x + v, 0, 1)``:
unlike the per-image attacks, an image's result depends on the other images of the call.
To fit on one set and apply to another, use ``universal_perturbation`` and add ``v`` yourself.
"""

from __future__ import annotations

import numpy as np

from tfadv import checks
from tfadv.attacks.deepfool import deepfool
from tfadv.batching import predict_logits


def uap(model, x, y, target=None, *, eps: float = 10 / 255, norm: float = np.inf,
        delta: float = 0.2, max_iter: int = 10, overshoot: float = 0.02,
        deepfool_max_iter: int = 50, seed: int = 0, batch_size: int = 256) -> np.ndarray:
    """``clip(x + v, 0, 1)`` with ``v = universal_perturbation(model, x, y, ...)``."""
    if target is not None:
        raise ValueError("the universal perturbation is untargeted: call it with target=None")
    v = universal_perturbation(model, x, y, eps=eps, norm=norm, delta=delta,
                               max_iter=max_iter, overshoot=overshoot,
                               deepfool_max_iter=deepfool_max_iter, seed=seed,
                               batch_size=batch_size)
    return np.clip(x + v, 0.0, 1.0).astype(np.float32)


def universal_perturbation(model, x, y, *, eps: float = 10 / 255, norm: float = np.inf,
                           delta: float = 0.2, max_iter: int = 10, overshoot: float = 0.02,
                           deepfool_max_iter: int = 50, seed: int = 0,
                           batch_size: int = 256) -> np.ndarray:
    """The perturbation ``v`` (shape of one image, float32) fitted on ``x`` with labels ``y``.

    ``eps``: radius of the ball v lives in (pixel units; the paper's 10 on a 0-255 scale is
    10/255). ``norm``: ``np.inf`` or 2. ``delta``: stop once a fraction 1 - delta is fooled.
    ``max_iter``: passes over the set. ``overshoot``, ``deepfool_max_iter``: the inner DeepFool's.
    """
    eps = checks.non_negative("eps", eps)
    norm = checks.one_of("norm", norm, (2, np.inf))
    delta = checks.non_negative("delta", delta)
    if delta >= 1:  # 1 would accept fooling nothing
        raise ValueError(f"delta must lie in [0, 1), got {delta!r}")
    max_iter = checks.integer("max_iter", max_iter, 1)
    batch_size = checks.integer("batch_size", batch_size, 1)
    x = np.asarray(x, np.float32)
    y = np.asarray(y)
    v = np.zeros(x.shape[1:], np.float32)
    if eps == 0 or not len(x):
        return v
    rng = np.random.default_rng(seed)

    def fooled(v):
        return _predict(model, np.clip(x + v, 0.0, 1.0), batch_size) != y

    for _ in range(max_iter):
        if fooled(v).mean() >= 1 - delta:
            break
        for i in rng.permutation(len(x)):
            x_v = np.clip(x[i:i + 1] + v, 0.0, 1.0)
            if _predict(model, x_v, batch_size)[0] != y[i]:
                continue
            x_df = deepfool(model, x_v, y[i:i + 1], None, overshoot=overshoot,
                            max_iter=deepfool_max_iter)
            if _predict(model, x_df, batch_size)[0] != y[i]:  # DeepFool found a way out
                v = _project(v + (x_df[0] - x_v[0]), eps, norm)
    return v


def _predict(model, x, batch_size):
    return predict_logits(model, x, batch_size).argmax(axis=1)


def _project(v, eps, norm):
    if norm == np.inf:
        return np.clip(v, -eps, eps).astype(np.float32)
    size = float(np.linalg.norm(v))
    return (v * min(1.0, eps / size) if size > 0 else v).astype(np.float32)
