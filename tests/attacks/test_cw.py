"""Carlini & Wagner L2 / Linf / L0 (tfadv.attacks.cw, cw_linf, cw_l0) on the digits model:
success (untargeted and targeted), perturbations no larger than a naive baseline's in each
attack's own norm, near-minimality, L0's exactly unchanged pixels, Linf's tau, batch
independence, finished images dropped from a round without changing results, XLA rounds,
images already adversarial, bad parameters, and cross-checks against Foolbox
3.3.4's L2CarliniWagnerAttack and (slow) ART 1.20.1's CarliniLInfMethod. The shared contract
(shape, dtype, range, no mutation, tensor input, empty batch) is in test_attack_contract.py."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from helpers import correctly_classified
from tfadv import attacks
from tfadv.attacks import cw
from tfadv.attacks.cw_linf import _linf_batch
from tfadv.evaluation import predict

N = 20
# Shorter settings than the defaults (Carlini's): on these 20 images each run takes a few
# seconds on the 2-core CPU and, as measured, loses little against the defaults (cw_linf:
# mean Linf 0.083 untargeted with max_iterations 200 or 1000; cw_l2 and cw_l0 below).
PARAMS = {
    "cw_l2": dict(binary_search_steps=6, max_iterations=300, initial_const=0.01),
    "cw_linf": dict(max_iterations=200),
    "cw_l0": dict(binary_search_steps=4, max_iterations=200, initial_const=0.01),
}
NAMES = sorted(PARAMS)
TARGETED = pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])


def l2(x_adv, x):
    return np.linalg.norm((x_adv.astype(np.float64) - x).reshape(len(x), -1), axis=1)


def linf(x_adv, x):
    return np.abs(x_adv.astype(np.float64) - x).reshape(len(x), -1).max(axis=1)


def l0(x_adv, x):
    """Changed pixels (a digit has one channel: a pixel is a value)."""
    return np.count_nonzero((x_adv != x).reshape(len(x), -1), axis=1)


@pytest.fixture(scope="module")
def images(trained):
    x, y = correctly_classified(trained, N, seed=0)
    target = (y + 1 + np.arange(N) % 9) % 10  # never y; every offset
    return x, y, target


def fooled(model, x_adv, y, target):
    pred = predict(model, x_adv)
    return pred != y if target is None else pred == target


@pytest.fixture(scope="module")
def adversarial(model, images):
    """``adversarial(name, targeted)``: (x_adv, success flags), computed once per module."""
    cache = {}

    def get(name, targeted):
        if (name, targeted) not in cache:
            x, y, target = images
            target = target if targeted else None
            x_adv = attacks.make(name, **PARAMS[name])(model, x, y, target)
            cache[name, targeted] = x_adv, fooled(model, x_adv, y, target)
        return cache[name, targeted]
    return get


# --------------------------------------------------------------------------- all three

# Measured (20 images, PARAMS): success 1.0 everywhere except cw_l0 targeted, 0.9 (200 steps
# are too few for two far targets; max_iterations 500 reaches 1.0).
@pytest.mark.parametrize("name", NAMES)
@TARGETED
def test_success_rate(name, targeted, adversarial, images):
    x, _, _ = images
    x_adv, ok = adversarial(name, targeted)
    assert ok.mean() >= 0.85, ok.mean()
    assert x_adv.dtype == np.float32 and x_adv.min() >= 0 and x_adv.max() <= 1
    np.testing.assert_array_equal(x_adv[~ok], x[~ok])  # a failure is the clean image


# Measured: half of any of the six perturbations fools none of the 20 images.
@pytest.mark.parametrize("name", NAMES)
@TARGETED
def test_half_the_perturbation_mostly_fails(name, targeted, adversarial, model, images):
    x, y, target = images
    x_adv, ok = adversarial(name, targeted)
    half = x + 0.5 * (x_adv - x)
    assert fooled(model, half[ok], y[ok], target[ok] if targeted else None).mean() <= 0.1


@pytest.mark.parametrize("name", ["cw_linf", "cw_l0"])
def test_images_already_adversarial_are_returned_unchanged(name, model, images):
    x, y, _ = images
    attack = attacks.make(name, **PARAMS[name])
    wrong = (y + 1) % 10
    np.testing.assert_array_equal(attack(model, x[:6], wrong[:6]), x[:6])
    np.testing.assert_array_equal(attack(model, x[:6], wrong[:6], target=y[:6]), x[:6])


# Tiny settings: what matters is that nothing depends on the batch (per-image c, tau, allowed
# pixels, Adam state, stops; compiled calls of whole 16-row packets) and that it is
# deterministic. 40 images: one call of 48 rows at batch_size 256 (finished images leave it
# for 16-row calls), uneven batches of 7 (16 rows each), batches of 20 (32 rows), one image.
BATCH_CASES = [  # cw_l2 from a small c: its first round's images stop early, at various steps
    ("cw_l2", dict(binary_search_steps=3, max_iterations=40, initial_const=0.01)),
    ("cw_linf", dict(max_iterations=40, max_rounds=12)),
    ("cw_l0", dict(binary_search_steps=3, max_iterations=40, initial_const=0.1,
                   max_rounds=5)),
]


@pytest.fixture(scope="module")
def batch40(trained):
    return trained.test.images[:40].copy(), trained.test.labels[:40].copy()  # some wrong


@pytest.mark.parametrize("name,params", BATCH_CASES)
def test_result_does_not_depend_on_batch(name, params, batch40, model):
    x, y = batch40
    x_before = x.copy()
    whole = attacks.make(name, **params, batch_size=256)(model, x, y)
    np.testing.assert_array_equal(x, x_before)
    assert not np.array_equal(whole, x)
    for batch_size in (7, 20):
        np.testing.assert_array_equal(
            attacks.make(name, **params, batch_size=batch_size)(model, x, y), whole)
    for i in (4, 37):
        np.testing.assert_array_equal(attacks.make(name, **params)(model, x[i:i + 1],
                                                                   y[i:i + 1]), whole[i:i + 1])
    np.testing.assert_array_equal(attacks.make(name, **params)(model, x, y), whole)


@pytest.mark.parametrize("name,params", BATCH_CASES)
def test_dropping_finished_images_changes_nothing(name, params, batch40, model, monkeypatch):
    """Rounds that go on with only their running images (smaller compiled calls) give exactly
    the results of rounds that keep every row to the end (``cw._COMPACT = False``)."""
    x, y = batch40
    rounds = cw._Run.rounds

    def counting(calls):
        """``rounds`` that records each compiled call's (rows, steps)."""
        def spy(self, fn, fixed, state, constants):
            def counted(fixed_t, state_t, step, *rest):
                out = fn(fixed_t, state_t, step, *rest)
                calls.append((int(fixed_t[0].shape[0]), int(out[1]) - int(step)))
                return out
            return rounds(self, counted, fixed, state, constants)
        return spy

    compact, full = [], []
    monkeypatch.setattr(cw._Run, "rounds", counting(compact))
    dropped = attacks.make(name, **params)(model, x, y)
    monkeypatch.setattr(cw._Run, "rounds", counting(full))
    monkeypatch.setattr(cw, "_COMPACT", False)
    kept = attacks.make(name, **params)(model, x, y)
    np.testing.assert_array_equal(dropped, kept)
    assert all(rows % 16 == 0 for rows, _ in compact + full)  # whole 16-row packets
    assert min(compact)[0] == 16 and len(compact) > len(full)  # rows were dropped mid-round
    row_steps = [sum(rows * steps for rows, steps in calls) for calls in (compact, full)]
    assert row_steps[0] < row_steps[1], row_steps  # fewer rows x steps computed


def test_l2_with_xla_matches(model, images):
    """``jit_compile=True`` (XLA, for accelerators) runs the same rounds, up to rounding."""
    x, y, _ = images
    params = dict(binary_search_steps=3, max_iterations=40, initial_const=0.1)
    plain = attacks.make("cw_l2", **params)(model, x, y)
    xla = attacks.make("cw_l2", **params, jit_compile=True)(model, x, y)
    np.testing.assert_array_equal(fooled(model, xla, y, None), fooled(model, plain, y, None))
    np.testing.assert_allclose(xla, plain, atol=1e-4)


# --------------------------------------------------------------------------- L2

# Measured on these 20 images: DeepFool mean L2 0.433; cw_l2 0.421 (PARAMS), 0.413 with the
# defaults (9 x 1000 steps).
def test_l2_not_larger_than_deepfool(adversarial, model, images):
    x, y, _ = images
    x_cw, ok_cw = adversarial("cw_l2", False)
    x_df = attacks.make("deepfool")(model, x, y)
    both = ok_cw & (predict(model, x_df) != y)
    assert both.mean() >= 0.9
    assert l2(x_cw, x)[both].mean() <= 1.05 * l2(x_df, x)[both].mean()


# Foolbox's attack has the same algorithm (tanh space, Adam, the same search over c); it
# differs in its abort-early test (the summed loss of the whole batch, not each image's) and
# keeps zeros for images it never fooled (we use our own success flags). Foolbox runs its
# steps eagerly (~7 ms a step here even with the model compiled), so both get a short
# setting of their own. Measured on these 20 images: Foolbox success 1.0 and mean L2 (of its
# successes) 0.552 untargeted, 0.8 and 0.859 targeted; ours 1.0 and 0.556, 0.8 and 0.862
# (Foolbox ~3 s a call, ours ~0.5 s).
FOOLBOX_PARAMS = dict(binary_search_steps=4, max_iterations=100, initial_const=0.1)
FOOLBOX_SUCCESS_TOLERANCE = 0.1
FOOLBOX_L2_FACTOR = 1.2


@TARGETED
def test_l2_matches_foolbox(targeted, model, images):
    fb = pytest.importorskip("foolbox")
    x, y, target = images
    target = target if targeted else None
    p = FOOLBOX_PARAMS
    attack = fb.attacks.L2CarliniWagnerAttack(
        binary_search_steps=p["binary_search_steps"], steps=p["max_iterations"],
        stepsize=0.01, confidence=0.0, initial_const=p["initial_const"], abort_early=True)
    criterion = (fb.criteria.Misclassification(tf.constant(y)) if target is None
                 else fb.criteria.TargetedMisclassification(tf.constant(target)))
    compiled = tf.function(lambda z: model(z, training=False))  # same logits, faster steps
    raw, _, _ = attack(fb.TensorFlowModel(compiled, bounds=(0, 1)), tf.constant(x),
                       criterion, epsilons=None)
    x_fb = np.asarray(raw, np.float32)
    x_cw = attacks.make("cw_l2", **p)(model, x, y, target)
    ok_fb, ok_cw = fooled(model, x_fb, y, target), fooled(model, x_cw, y, target)
    stats = dict(foolbox=(ok_fb.mean(), l2(x_fb, x)[ok_fb].mean()),
                 ours=(ok_cw.mean(), l2(x_cw, x)[ok_cw].mean()))
    assert abs(ok_cw.mean() - ok_fb.mean()) <= FOOLBOX_SUCCESS_TOLERANCE, stats
    ratio = stats["ours"][1] / stats["foolbox"][1]
    assert 1 / FOOLBOX_L2_FACTOR <= ratio <= FOOLBOX_L2_FACTOR, stats


# --------------------------------------------------------------------------- Linf

def smallest_fgsm_eps(model, x, y, target):
    """Per image, the smallest eps on a 0.01 grid at which FGSM succeeds (inf: never)."""
    best = np.full(len(x), np.inf)
    for eps in np.arange(50, 0, -1) / 100:
        x_adv = attacks.make("fgsm", eps=float(eps))(model, x, y, target)
        best[fooled(model, x_adv, y, target)] = eps
    return best


# Measured on these 20 images (mean Linf): untargeted, FGSM's smallest eps 0.098, DeepFool
# (Linf) 0.083, PGD's smallest eps on a 0.005 grid 0.081, cw_linf 0.083; targeted (FGSM
# succeeds on 13 of 20) FGSM 0.178 and PGD 0.146 over their successes, cw_linf 0.148.
@TARGETED
def test_linf_smaller_than_fgsm(targeted, adversarial, model, images):
    x, y, target = images
    target = target if targeted else None
    x_cw, ok = adversarial("cw_linf", targeted)
    eps = smallest_fgsm_eps(model, x, y, target)
    both = ok & np.isfinite(eps)
    assert both.sum() >= 0.6 * N
    assert linf(x_cw, x)[both].mean() < eps[both].mean()


def test_linf_close_to_deepfool_linf(adversarial, model, images):
    x, y, _ = images
    x_cw, ok = adversarial("cw_linf", False)
    x_df = attacks.make("deepfool", norm=np.inf)(model, x, y)
    both = ok & (predict(model, x_df) != y)
    assert linf(x_cw, x)[both].mean() <= 1.1 * linf(x_df, x)[both].mean()


def test_linf_result_lies_inside_its_tau(trained, model):
    """Every result lies inside the tau it was found under. The internal batch function
    (short settings) gives cw_linf's results and the tau of each."""
    x, y = trained.test.images[:10], trained.test.labels[:10]
    params = dict(max_iterations=40, max_rounds=12)
    run = cw._Run(cw._compiled(model), False, 10, 0.0, 5e-3, params["max_iterations"], True)
    out, tau = _linf_batch(run, x, y, 1e-5, 20.0, 2.0, 0.9, 1 / 256, params["max_rounds"])
    np.testing.assert_array_equal(out, attacks.make("cw_linf", **params)(model, x, y))
    found = np.isfinite(tau)
    assert found.sum() >= 8
    dist = np.abs(out - x).reshape(len(x), -1).max(axis=1)  # float32, as in the attack
    assert np.all(dist[found] <= tau[found])
    np.testing.assert_array_equal(out[~found], x[~found])
    assert np.all(tau[found] < 1)  # each image succeeded more than once: tau shrank


# --------------------------------------------------------------------------- L0

# Measured on these 20 images (mean changed pixels of 64): JSMA (theta 1, gamma 1) 4.0
# untargeted and 8.2 targeted (18 of 20 succeed); cw_l0 3.4 and 6.1 (PARAMS), 2.5 and 4.5
# with the defaults (2.0 and 4.4 with max_iterations=1000).
@TARGETED
def test_l0_not_larger_than_jsma(targeted, adversarial, model, images):
    x, y, target = images
    target = target if targeted else None
    x_cw, ok = adversarial("cw_l0", targeted)
    x_js = attacks.make("jsma", theta=1.0, gamma=1.0)(model, x, y, target)
    both = ok & fooled(model, x_js, y, target)
    assert both.sum() >= 0.75 * N
    assert l0(x_cw, x)[both].mean() <= 1.1 * l0(x_js, x)[both].mean()
    assert l0(x_cw, x)[ok].mean() <= 10  # of 64


@TARGETED
def test_l0_unchanged_pixels_are_exactly_clean(targeted, adversarial, images):
    """No tanh round-trip noise: a pixel either keeps its exact value or really changes."""
    x, _, _ = images
    x_adv, ok = adversarial("cw_l0", targeted)
    x_l2, _ = adversarial("cw_l2", targeted)
    delta = np.abs(x_adv - x)
    assert np.all((delta == 0) | (delta > 1e-3))
    assert l0(x_adv, x)[ok].max() < 20
    assert l0(x_l2, x).mean() > 40  # the L2 attack changes most pixels


# --------------------------------------------------------------------------- parameters

@pytest.mark.parametrize("name,params", [
    ("cw_l2", dict(binary_search_steps=0)), ("cw_l2", dict(max_iterations=1.5)),
    ("cw_l2", dict(abort_early="yes")), ("cw_l2", dict(confidence=-1.0)),
    ("cw_l2", dict(jit_compile=1)), ("cw_l2", dict(batch_size=0)),
    ("cw_linf", dict(learning_rate=0.0)), ("cw_linf", dict(max_iterations=0)),
    ("cw_linf", dict(initial_const=-1e-5)), ("cw_linf", dict(largest_const=1e-6)),
    ("cw_linf", dict(const_factor=1.0)), ("cw_linf", dict(decrease_factor=1.0)),
    ("cw_linf", dict(decrease_factor=0.0)), ("cw_linf", dict(tau_min=0.0)),
    ("cw_linf", dict(tau_min=1.5)), ("cw_linf", dict(max_rounds=0)),
    ("cw_linf", dict(batch_size=0)), ("cw_linf", dict(confidence=float("nan"))),
    ("cw_l0", dict(binary_search_steps=0)), ("cw_l0", dict(max_iterations=-1)),
    ("cw_l0", dict(initial_const=0.0)), ("cw_l0", dict(remove_fraction=0.0)),
    ("cw_l0", dict(remove_fraction=1.5)), ("cw_l0", dict(max_rounds=2.5)),
    ("cw_l0", dict(learning_rate=float("inf"))), ("cw_l0", dict(batch_size=True)),
])
def test_rejects_bad_params(name, params, model, images):
    x, y, _ = images
    key = next(iter(params))
    with pytest.raises(ValueError, match=key):
        attacks.make(name, **params)(model, x[:2], y[:2])


# --------------------------------------------------------------------------- ART (slow)

# ART's CarliniLInfMethod runs, for every tau, all c from initial_const to largest_const
# (x2) with max_iter Adam steps each and keeps the smallest-Linf adversarial seen (with no
# tau constraint on it); one image at a time. Measured on these 5 images (2-core CPU shared
# with other jobs): ART (max_iter=100) success 1.0, mean Linf 0.196, 306 s (max_iter=50:
# success 0.8, 180 s; its default 10 fools none); ours (defaults) 1.0 and 0.073, 24 s.
# Ours may be at most 0.2 below ART's success rate and 1.2x ART's mean Linf.
@pytest.mark.slow
def test_linf_close_to_art(model, images):
    from art.attacks.evasion import CarliniLInfMethod
    from tfadv.attacks.art_bridge import art_classifier, one_hot
    x, y, _ = images
    x, y = x[:5], y[:5]
    x_art = CarliniLInfMethod(art_classifier(model), targeted=False, max_iter=100,
                              verbose=False).generate(x.copy(), one_hot(y, 10))
    x_art = np.clip(np.asarray(x_art, np.float32), 0, 1)
    x_cw = attacks.make("cw_linf")(model, x, y)
    ok_art, ok_cw = predict(model, x_art) != y, predict(model, x_cw) != y
    stats = dict(art=(ok_art.mean(), linf(x_art, x)[ok_art].mean()),
                 ours=(ok_cw.mean(), linf(x_cw, x)[ok_cw].mean()))
    assert ok_cw.mean() >= ok_art.mean() - 0.2, stats
    assert stats["ours"][1] <= 1.2 * stats["art"][1], stats
