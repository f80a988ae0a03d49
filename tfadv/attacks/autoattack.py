"""AutoAttack as paper 003 ran it: ART's ``AutoAttack`` (Linf), untargeted.

ART 1.20.1's default attack set is NOT Croce & Hein's standard AutoAttack (APGD-CE, APGD-T
with the targeted DLR loss, FAB-T, Square with 5,000 queries). ART runs, in order:

1. APGD, cross-entropy loss, 100 iterations, 5 random restarts;
2. APGD, difference-of-logits-ratio loss, untargeted, 100 iterations, 5 restarts;
3. DeepFool, 100 iterations, overshoot 1e-3 (a result only counts inside the eps-ball);
4. Square attack, 5,000 queries, 5 restarts.

Each image keeps the first attack's result that fools the model within ``eps``. The
iteration counts are parameters here (ART's values by default) so tests and small presets can
run a cheaper version; every run records them (``make`` keeps all parameters).

Failing loudly: ART's ``AutoAttack.generate`` catches ``ValueError`` from sub-attacks in its
targeted mode and only logs a warning, so a broken sub-attack would quietly weaken the
ensemble. This wrapper runs ART's untargeted mode only (paper 003's use), where a sub-attack's
error propagates to the caller (tests/attacks/test_autoattack.py checks that it does).
"""

from __future__ import annotations

import numpy as np

from tfadv import checks
from tfadv.attacks.art_bridge import art_classifier, one_hot, seeded_numpy
from tfadv.attacks.validation import num_classes_of

ART_DEFAULT_SET_NOTE = (
    "AutoAttack is ART 1.20.1's AutoAttack with its default attack set (APGD-CE, untargeted "
    "APGD-DLR, DeepFool, Square), not Croce & Hein's standard set (APGD-CE, APGD-T, FAB-T, "
    "Square)")


def autoattack(model, x, y, target=None, *, eps: float = 8 / 255, eps_step: float | None = None,
               apgd_max_iter: int = 100, nb_random_init: int = 5, deepfool_max_iter: int = 100,
               square_max_iter: int = 5000, square_restarts: int = 5, seed: int = 0,
               batch_size: int = 32) -> np.ndarray:
    """Untargeted Linf AutoAttack through ART (see the module docstring).

    ``eps_step``: APGD's initial step. None means ``eps / 4``: ART's default is an absolute
    0.1, larger than the whole ball at the usual eps (8/255 or 16/255).
    """
    from art.attacks.evasion import AutoAttack, AutoProjectedGradientDescent, DeepFool
    from art.attacks.evasion import SquareAttack
    if target is not None:
        raise ValueError("autoattack runs untargeted only (paper 003's use; ART's targeted mode "
                         "hides sub-attack errors): call it with target=None")
    eps = checks.non_negative("eps", eps)
    eps_step = eps / 4 if eps_step is None else checks.positive("eps_step", eps_step)
    apgd_max_iter = checks.integer("apgd_max_iter", apgd_max_iter, 1)
    nb_random_init = checks.integer("nb_random_init", nb_random_init, 1)
    deepfool_max_iter = checks.integer("deepfool_max_iter", deepfool_max_iter, 1)
    square_max_iter = checks.integer("square_max_iter", square_max_iter, 1)
    square_restarts = checks.integer("square_restarts", square_restarts, 1)
    batch_size = checks.integer("batch_size", batch_size, 1)
    if eps == 0:
        return x.copy()
    classifier = art_classifier(model)
    apgd = dict(estimator=classifier, norm=np.inf, eps=eps, eps_step=eps_step,
                max_iter=apgd_max_iter, targeted=False, nb_random_init=nb_random_init,
                batch_size=batch_size, verbose=False)
    sub_attacks = [
        AutoProjectedGradientDescent(loss_type="cross_entropy", **apgd),
        AutoProjectedGradientDescent(loss_type="difference_logits_ratio", **apgd),
        DeepFool(classifier=classifier, max_iter=deepfool_max_iter, epsilon=1e-3, nb_grads=10,
                 batch_size=batch_size, verbose=False),
        SquareAttack(estimator=classifier, norm=np.inf, max_iter=square_max_iter, eps=eps,
                     p_init=0.8, nb_restarts=square_restarts, batch_size=batch_size,
                     verbose=False),
    ]
    ensemble = AutoAttack(classifier, norm=np.inf, eps=eps, eps_step=eps_step,
                          attacks=sub_attacks, batch_size=batch_size, targeted=False)
    with seeded_numpy(seed):
        out = ensemble.generate(x.copy(), one_hot(y, num_classes_of(model)))
    out = np.asarray(out, np.float32)
    # ART only accepts a sub-attack's result inside eps (relative tolerance 1e-4); clip to
    # the exact ball so the contract holds bit for bit.
    return np.clip(np.clip(out, x - eps, x + eps), 0.0, 1.0)
