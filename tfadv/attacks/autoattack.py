"""AutoAttack (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks"), untargeted Linf, in three versions.

``version="standard"`` (the default): Croce & Hein's standard AutoAttack, native TensorFlow
(tfadv/attacks/apgd.py, fab.py, square.py), in the reference's order:

1. APGD-CE: APGD on the cross-entropy, ``apgd_max_iter`` (100) iterations,
   ``nb_random_init`` (1) restart;
2. APGD-T: APGD on the targeted DLR loss against each of the ``n_target_classes`` (9) most
   likely other classes, ``apgd_max_iter`` iterations, 1 restart each;
3. FAB-T: targeted FAB, ``n_target_classes`` targets, ``fab_max_iter`` (100) iterations;
   a result counts only within eps;
4. Square: ``square_max_iter`` (5,000) queries, ``square_restarts`` (1) restart.

``version="rand"``: the reference's version for randomized defenses: APGD-CE, then APGD-DLR
(untargeted DLR loss), each with ``eot_iter`` (20) gradients averaged per step (EOT),
``apgd_max_iter`` iterations, ``nb_random_init`` (1) restart.

Each attack runs only on the images still robust (classified correctly after the attacks
before it; misclassified clean images are never attacked, as in the reference), and an image
keeps the first successful result; images never fooled keep their clean pixels. The
iteration counts, queries and target classes are parameters (the reference's values by
default) so tests and small presets can run cheaper versions; ``make`` records them all.
Randomness comes from ``seed`` through per-image hashes: the same seed gives the same
images, whatever ``batch_size`` and whatever other images share the call, and no global RNG
is touched. Deviations from the reference are listed in each attack's module docstring.

``version="art"``: AutoAttack as paper 003 ran it: ART's ``AutoAttack`` (Linf), untargeted.
ART 1.20.1's default attack set is NOT Croce & Hein's standard set; ART runs, in order:

1. APGD, cross-entropy loss, 100 iterations, 5 random restarts;
2. APGD, difference-of-logits-ratio loss, untargeted, 100 iterations, 5 restarts;
3. DeepFool, 100 iterations, overshoot 1e-3 (a result only counts inside the eps-ball);
4. Square attack, 5,000 queries, 5 restarts.

Each image keeps the first attack's result that fools the model within ``eps``. Failing
loudly: ART's ``AutoAttack.generate`` catches ``ValueError`` from sub-attacks in its targeted
mode and only logs a warning, so a broken sub-attack would quietly weaken the ensemble. This
wrapper runs ART's untargeted mode only (paper 003's use), where a sub-attack's error
propagates to the caller (tests/attacks/test_autoattack.py checks that it does).

Parameters by version (None: the version's default; a parameter the chosen version does not
use raises ``ValueError``):

=====================  ==============  ==============  ============================
parameter              standard        rand            art
=====================  ==============  ==============  ============================
apgd_max_iter          100             100             100
nb_random_init         1 (APGD-CE)     1               5
n_target_classes       9               -               -
fab_max_iter           100             -               -
square_max_iter        5000            -               5000
square_restarts        1               -               5
eot_iter               -               20              -
eps_step               -               -               eps / 4
deepfool_max_iter      -               -               100
jit_compile            False           False           - (False only)
batch_size             256             256             32
=====================  ==============  ==============  ============================
"""

from __future__ import annotations

import numpy as np

from tfadv import checks
from tfadv.attacks import apgd, fab, square
from tfadv.attacks.art_bridge import art_classifier, one_hot, seeded_numpy
from tfadv.attacks.validation import num_classes_of

VERSIONS = ("standard", "rand", "art")

ART_DEFAULT_SET_NOTE = (
    "AutoAttack is ART 1.20.1's AutoAttack with its default attack set (APGD-CE, untargeted "
    "APGD-DLR, DeepFool, Square), not Croce & Hein's standard set (APGD-CE, APGD-T, FAB-T, "
    "Square)")

# Each version's defaults for the parameters left None (absent: the version does not use it).
_DEFAULTS = {
    "standard": dict(nb_random_init=1, n_target_classes=9, fab_max_iter=100,
                     square_max_iter=5000, square_restarts=1, batch_size=256),
    "rand": dict(nb_random_init=1, eot_iter=20, batch_size=256),
    "art": dict(nb_random_init=5, square_max_iter=5000, square_restarts=5,
                deepfool_max_iter=100, eps_step=None, batch_size=32),
}


def autoattack(model, x, y, target=None, *, eps: float = 8 / 255, version: str = "standard",
               apgd_max_iter: int = 100, nb_random_init: int | None = None,
               n_target_classes: int | None = None, fab_max_iter: int | None = None,
               square_max_iter: int | None = None, square_restarts: int | None = None,
               eot_iter: int | None = None, eps_step: float | None = None,
               deepfool_max_iter: int | None = None, seed: int = 0,
               batch_size: int | None = None, jit_compile: bool = False) -> np.ndarray:
    """Untargeted Linf AutoAttack; see the module docstring for the versions and which
    parameters each uses. Inputs are validated by ``tfadv.attacks.make``.

    ``eps_step`` (``art`` only): APGD's initial step; None means ``eps / 4`` (ART's default
    is an absolute 0.1, larger than the whole ball at the usual eps). The native versions
    start at the reference's 2 * eps. ``jit_compile``: XLA for the native compiled loops
    (a TPU needs it; on a CPU it is slower for small networks).
    """
    if target is not None:
        raise ValueError("autoattack runs untargeted only (Croce & Hein's standard version; "
                         "ART's targeted mode hides sub-attack errors): call it with "
                         "target=None")
    version = checks.one_of("version", version, VERSIONS)
    given = dict(nb_random_init=nb_random_init, n_target_classes=n_target_classes,
                 fab_max_iter=fab_max_iter, square_max_iter=square_max_iter,
                 square_restarts=square_restarts, eot_iter=eot_iter, eps_step=eps_step,
                 deepfool_max_iter=deepfool_max_iter, batch_size=batch_size)
    for name, value in given.items():
        if value is not None and name not in _DEFAULTS[version]:
            users = [v for v in VERSIONS if name in _DEFAULTS[v]]
            raise ValueError(f"{name} does not apply to version={version!r} (it is used by "
                             f"version {' and '.join(map(repr, users))}); leave it None")
    p = {k: _DEFAULTS[version][k] if given.get(k) is None else v
         for k, v in given.items() if k in _DEFAULTS[version]}
    eps = checks.non_negative("eps", eps)
    apgd_max_iter = checks.integer("apgd_max_iter", apgd_max_iter, 1)
    for name in ("nb_random_init", "n_target_classes", "fab_max_iter", "square_max_iter",
                 "square_restarts", "eot_iter", "deepfool_max_iter", "batch_size"):
        if name in p:
            p[name] = checks.integer(name, p[name], 1)
    seed = checks.integer("seed", seed, 0)
    jit_compile = checks.boolean("jit_compile", jit_compile)
    if version == "art":
        if jit_compile:
            raise ValueError("jit_compile=True needs a native version (standard or rand); "
                             "version='art' runs ART's own code")
        return _art(model, x, y, eps=eps, apgd_max_iter=apgd_max_iter, seed=seed, **p)
    if eps == 0:
        return x.copy()
    return run_native(model, x, y, eps=eps, version=version, apgd_max_iter=apgd_max_iter,
                      seed=seed, jit_compile=jit_compile, **p)[0]


def components(version: str, *, eps: float, apgd_max_iter: int, nb_random_init: int,
               seed: int, batch_size: int, jit_compile: bool, n_target_classes: int = 9,
               fab_max_iter: int = 100, square_max_iter: int = 5000, square_restarts: int = 1,
               eot_iter: int = 20) -> dict:
    """The native version's attacks in order: name -> ``run(model, x, y, ids) -> (x_adv,
    robust)`` (the ``run`` of apgd.py, fab.py, square.py with this version's settings)."""
    common = dict(eps=eps, seed=seed, batch_size=batch_size, jit_compile=jit_compile)
    apgd_common = dict(common, max_iter=apgd_max_iter, rho=0.75)
    if version == "rand":
        return {name: _bind(apgd.run, apgd_common, loss=loss, n_restarts=nb_random_init,
                            n_target_classes=1, eot_iter=eot_iter)
                for name, loss in (("apgd-ce", "ce"), ("apgd-dlr", "dlr"))}
    return {
        "apgd-ce": _bind(apgd.run, apgd_common, loss="ce", n_restarts=nb_random_init,
                         n_target_classes=1, eot_iter=1),
        "apgd-t": _bind(apgd.run, apgd_common, loss="dlr-targeted", n_restarts=1,
                        n_target_classes=n_target_classes, eot_iter=1),
        "fab-t": _bind(fab.run, common, max_iter=fab_max_iter,
                       n_target_classes=n_target_classes, n_restarts=1, alpha_max=0.1,
                       eta=1.05, beta=0.9),
        "square": _bind(square.run, common, max_queries=square_max_iter, p_init=0.8,
                        n_restarts=square_restarts),
    }


def _bind(run, common, **settings):
    return lambda model, x, y, ids: run(model, x, y, ids, **common, **settings)


def run_native(model, x, y, *, eps: float, version: str = "standard", **settings):
    """``(x_adv, robust_after)``: the native ensemble on validated float32 ``x`` and int64
    ``y``, and the robust accuracy after the clean check and after each attack (a dict in run
    order, ``{"clean": ..., "apgd-ce": ..., ...}``, as the reference logs it)."""
    batch_size = settings["batch_size"]
    jit_compile = settings["jit_compile"]
    x_adv = np.array(x, np.float32, copy=True)
    robust = apgd.predict_logits(model, x, batch_size, jit_compile).argmax(axis=1) == y
    after = {"clean": float(np.mean(robust)) if len(x) else 1.0}
    for name, run in components(version, eps=eps, **settings).items():
        idx = np.flatnonzero(robust)
        if len(idx):
            out = run(model, x[idx], y[idx], idx)[0]
            # The contract's exact ball; the success test is on exactly what is returned.
            out = np.clip(np.clip(out, x[idx] - eps, x[idx] + eps), 0.0, 1.0)
            pred = apgd.predict_logits(model, out, batch_size, jit_compile).argmax(axis=1)
            fooled = pred != y[idx]
            x_adv[idx[fooled]], robust[idx[fooled]] = out[fooled], False
        after[name] = float(np.mean(robust)) if len(x) else 1.0
    return x_adv, after


def _art(model, x, y, *, eps, eps_step, apgd_max_iter, nb_random_init, deepfool_max_iter,
         square_max_iter, square_restarts, seed, batch_size):
    """ART's AutoAttack with ART's default attack set (see the module docstring)."""
    from art.attacks.evasion import AutoAttack, AutoProjectedGradientDescent, DeepFool
    from art.attacks.evasion import SquareAttack
    eps_step = eps / 4 if eps_step is None else checks.positive("eps_step", eps_step)
    if eps == 0:
        return x.copy()
    classifier = art_classifier(model)
    apgd_args = dict(estimator=classifier, norm=np.inf, eps=eps, eps_step=eps_step,
                     max_iter=apgd_max_iter, targeted=False, nb_random_init=nb_random_init,
                     batch_size=batch_size, verbose=False)
    sub_attacks = [
        AutoProjectedGradientDescent(loss_type="cross_entropy", **apgd_args),
        AutoProjectedGradientDescent(loss_type="difference_logits_ratio", **apgd_args),
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
