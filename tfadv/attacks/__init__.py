"""Attacks behind one contract: ``make(name, **params)(model, x, y, target=None) -> x_adv``.

``x`` is a batch of float32 pixels in [0, 1] (NHWC, numpy or tensor), ``y`` the true labels,
``target`` None (untargeted), an array of class ids, or a strategy name ("least_likely",
"least_likely_top5"). The result is a new float32 numpy array of x's shape in [0, 1]; the
caller's array is never modified. Every attack goes through the shared validation layer.

Attacks today (Linf ones take ``eps`` in [0, 1] pixel units):

- ``fgsm``: Goodfellow et al., one signed-gradient step.
- ``bim``: Kurakin et al., basic iterative method.
- ``pgd``: Madry et al., BIM with a seeded random start.
- ``mifgsm``: Dong et al., momentum iterative FGSM.
- ``rfgsm``: Tramer et al., R+FGSM: a random signed step, then FGSM.

  These five take ``backend="native"`` (the default: one compiled loop per batch,
  tfadv/attacks/iterative.py, optionally XLA with ``jit_compile=True``, runnable inside a
  ``tf.distribute`` strategy's scope) or ``backend="cleverhans"`` (cleverhans 4.0.0's eager
  functions, the reference: the same images). :func:`iterates` also returns BIM's, PGD's and
  MI-FGSM's iterates at chosen steps.
- ``jsma``: Papernot et al., Jacobian saliency map, L0 (native, batched).
- ``deepfool``: Moosavi-Dezfooli et al., minimal L2 (or Linf) perturbation, untargeted only
  (native, batched).
- ``cw_l2``, ``cw_linf``, ``cw_l0``: Carlini & Wagner L2, Linf (tau), L0 (native, batched).
- ``lbfgs``: Szegedy et al., box-constrained L-BFGS with a line search on c (scipy).
- ``uap``: Moosavi-Dezfooli et al., universal perturbation fitted on the batch (native).
- ``autoattack``: Croce & Hein's standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square), native,
  untargeted Linf; ``version="rand"`` (APGD with EOT) or ``"art"`` (ART's default set).

Outside the registry, because it also takes the defense it attacks:
``tfadv.attacks.bpda.bpda_eot_pgd(model, defense, x, y, eps=..., eps_iter=..., nb_iter=...)``,
Athalye et al.'s adaptive Linf PGD (BPDA with the identity, EOT over random defenses) for
input transformations without useful gradients; it validates inputs the same way.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

from tfadv import checks
from tfadv.attacks import validation
from tfadv.attacks.autoattack import autoattack
from tfadv.attacks.bim import bim
from tfadv.attacks.cw import cw_l2
from tfadv.attacks.cw_l0 import cw_l0
from tfadv.attacks.cw_linf import cw_linf
from tfadv.attacks.deepfool import deepfool
from tfadv.attacks.fgsm import fgsm
from tfadv.attacks.jsma import jsma
from tfadv.attacks.lbfgs import lbfgs
from tfadv.attacks.mifgsm import mifgsm
from tfadv.attacks.pgd import pgd
from tfadv.attacks.rfgsm import rfgsm
from tfadv.attacks.uap import uap

ATTACKS = {
    "fgsm": fgsm,
    "bim": bim,
    "pgd": pgd,
    "mifgsm": mifgsm,
    "rfgsm": rfgsm,
    "jsma": jsma,
    "deepfool": deepfool,
    "cw_l2": cw_l2,
    "cw_linf": cw_linf,
    "cw_l0": cw_l0,
    "lbfgs": lbfgs,
    "uap": uap,
    "autoattack": autoattack,
}

# Parameters given in pixel units that must be >= 0.
_NON_NEGATIVE = ("eps", "eps_iter", "alpha", "theta_abs")

# Attacks whose iterates :func:`iterates` can return (their ``snapshots`` argument).
ITERATIVE = ("bim", "pgd", "mifgsm")


def make(name: str, **params):
    """Binds ``params`` to attack ``name``; the result validates inputs on every call."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; available: {sorted(ATTACKS)}")
    if "snapshots" in params:
        raise ValueError("an attack returns its final images only: use "
                         "tfadv.attacks.iterates(name, steps, **params) for its iterates")
    return _bind(name, params)


def iterates(name: str, steps, **params):
    """Like :func:`make` for ``bim``, ``pgd`` and ``mifgsm`` with the native backend; the
    result returns ``(len(steps), n, ...)`` images: the iterates after each of ``steps``
    (1..nb_iter) of ONE run, e.g. Fig 4's 10, 25, 50 and 100 steps from a 100-step run."""
    if name not in ITERATIVE:
        raise ValueError(f"iterates are available for {ITERATIVE}, not {name!r}")
    if params.get("backend", "native") != "native":
        raise ValueError("iterates need backend='native' (cleverhans returns the last step)")
    steps = [checks.integer("step", s, 1) for s in steps]
    if not steps:
        raise ValueError("give at least one step")
    bound = _bind(name, params, snapshots=steps)

    def attack(model, x, y, target=None):
        out = bound(model, x, y, target)
        if not isinstance(out, tuple):  # an empty batch: validation returned it as is
            return np.empty((len(steps),) + out.shape, np.float32)
        return out[1]

    attack.name, attack.params, attack.steps = name, bound.params, list(steps)
    return attack


def _bind(name, params, **hidden):
    """The attack function with ``params`` bound, its inputs validated on every call."""
    for key in _NON_NEGATIVE:
        if params.get(key) is not None:  # None: the attack's own default (e.g. alpha = eps/2)
            checks.non_negative(key, params[key])
    attack_fn = ATTACKS[name]

    @functools.wraps(attack_fn)
    def attack(model, x, y, target=None):
        x, y, target = validation.validate(model, x, y, target)
        if not len(x):
            return x
        return attack_fn(model, x, y, target, **params, **hidden)

    # The full hyperparameters, the function's defaults included: experiments key their caches
    # on them, so a changed default never reuses adversarial images made the old way.
    defaults = {p.name: p.default for p in inspect.signature(attack_fn).parameters.values()
                if p.kind is p.KEYWORD_ONLY and p.default is not p.empty
                and p.name != "snapshots"}
    attack.name, attack.params = name, {**defaults, **params}
    return attack
