"""The attack contract (tfadv.attacks: ``make`` and every registered attack) and the validation
layer (tfadv.attacks.validation: bad images, labels, targets and models, target strategies).
All on a tiny CNN trained on scikit-learn's 8x8 digits (offline). The attack-specific tests
are in the other files of tests/attacks/ (test_fgsm.py, test_jsma.py, ...)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import DIGITS_SHAPE
from tfadv import attacks
from tfadv.attacks import validation
from tfadv.evaluation import predict_logits

# Default hyperparameters of each registered attack for the contract tests. A new attack in
# tfadv.attacks.ATTACKS must get an entry here (test_every_attack_has_default_params).
DEFAULT_PARAMS = {
    "fgsm": dict(eps=0.1),
    "bim": dict(eps=0.1, eps_iter=0.02, nb_iter=5),
    "pgd": dict(eps=0.1, eps_iter=0.02, nb_iter=5),
    "mifgsm": dict(eps=0.1, nb_iter=5),
    "rfgsm": dict(eps=0.1),
    "jsma": dict(theta=1.0, gamma=0.2),
    "deepfool": dict(),
    "cw_l2": dict(binary_search_steps=3, max_iterations=50, initial_const=1.0),
    "cw_linf": dict(max_iterations=40, max_rounds=12),
    "cw_l0": dict(binary_search_steps=3, max_iterations=40, initial_const=0.1, max_rounds=5),
    "lbfgs": dict(max_iter=20, binary_search_steps=2),
    "uap": dict(eps=0.3, max_iter=2),
    # The native standard version, cheap: every component runs (eps 0.1 leaves some images
    # robust after APGD), with a few iterations, two target classes and 20 queries.
    "autoattack": dict(eps=0.1, apgd_max_iter=5, n_target_classes=2, fab_max_iter=5,
                       square_max_iter=20),
}

# Attacks that have no targeted form: given a target they raise ValueError.
UNTARGETED_ONLY = {"deepfool", "uap", "autoattack"}

# Attacks fitted on the whole batch they are given (one universal perturbation): an image's
# result depends on the other images of the call, though not on the internal batch size.
BATCH_FITTED = {"uap"}


# --------------------------------------------------------------------------- the contract

def test_every_attack_has_default_params():
    assert set(attacks.ATTACKS) <= set(DEFAULT_PARAMS), (
        f"add default test params for {sorted(set(attacks.ATTACKS) - set(DEFAULT_PARAMS))}")


@pytest.mark.parametrize("name", sorted(attacks.ATTACKS))
@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_contract_shape_dtype_range_no_mutation_determinism(name, targeted, model, batch):
    x, y = batch
    target = (y + 1) % 10 if targeted else None
    x_before, y_before = x.copy(), y.copy()
    attack = attacks.make(name, **DEFAULT_PARAMS[name])
    if targeted and name in UNTARGETED_ONLY:
        with pytest.raises(ValueError, match="untargeted"):
            attack(model, x, y, target)
        np.testing.assert_array_equal(x, x_before)
        return
    out = attack(model, x, y, target)
    assert isinstance(out, np.ndarray)
    assert out.shape == x.shape
    assert out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(x, x_before)          # the caller's arrays are untouched
    np.testing.assert_array_equal(y, y_before)
    assert not np.shares_memory(out, x)
    assert not np.array_equal(out, x)                   # it did attack something
    np.testing.assert_array_equal(attack(model, x, y, target), out)  # deterministic


@pytest.mark.parametrize("name", sorted(attacks.ATTACKS))
def test_contract_tensor_input(name, model, batch):
    x, y = batch
    attack = attacks.make(name, **DEFAULT_PARAMS[name])
    x_t, y_t = tf.constant(x), tf.constant(y)
    out = attack(model, x_t, y_t)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(x_t.numpy(), x)
    np.testing.assert_array_equal(out, attack(model, x, y))


@pytest.mark.parametrize("name", sorted(attacks.ATTACKS))
def test_contract_batch_of_one_and_uneven_batches(name, model, batch):
    x, y = batch
    whole = attacks.make(name, **DEFAULT_PARAMS[name], batch_size=256)(model, x, y)
    # 10 images in internal batches of 3: the last batch holds a single image.
    uneven = attacks.make(name, **DEFAULT_PARAMS[name], batch_size=3)(model, x, y)
    np.testing.assert_array_equal(uneven, whole)
    single = attacks.make(name, **DEFAULT_PARAMS[name])(model, x[:1], y[:1])
    assert single.shape == (1,) + DIGITS_SHAPE
    if name not in BATCH_FITTED:
        np.testing.assert_array_equal(single, whole[:1])


@pytest.mark.parametrize("name", sorted(attacks.ATTACKS))
def test_contract_empty_batch(name, model):
    x = np.zeros((0,) + DIGITS_SHAPE, np.float32)
    out = attacks.make(name, **DEFAULT_PARAMS[name])(model, x, np.zeros(0, np.int64))
    assert out.shape == x.shape and out.dtype == np.float32


# --------------------------------------------------------------------------- target strategies

def test_target_strategies_resolve_to_least_likely_classes(trained, model):
    x, y = trained.test.images[:30], trained.test.labels[:30]
    order = np.argsort(np.asarray(model(tf.constant(x), training=False)), axis=1)  # ascending
    least = validation.resolve_target(model, x, "least_likely")
    top5 = validation.resolve_target(model, x, "least_likely_top5")
    np.testing.assert_array_equal(least, order[:, 0])
    np.testing.assert_array_equal(top5, order[:, -5])  # the 5th most likely class
    assert least.dtype == np.int64 and top5.dtype == np.int64
    assert np.all(top5 != order[:, -1])
    assert validation.resolve_target(model, x, None) is None
    # The attack resolves the name the same way.
    fgsm = attacks.make("fgsm", eps=0.05)
    np.testing.assert_array_equal(fgsm(model, x, y, "least_likely"), fgsm(model, x, y, least))
    np.testing.assert_array_equal(fgsm(model, x, y, "least_likely_top5"),
                                  fgsm(model, x, y, top5))


# --------------------------------------------------------------------------- validation

def _ok_batch(trained):
    return trained.test.images[:4].copy(), trained.test.labels[:4].copy()


def _with(x, index, value):
    x = x.copy()
    x[index] = value
    return x


@pytest.mark.parametrize("name", sorted(attacks.ATTACKS))
@pytest.mark.parametrize("case", [
    "nan", "inf", "negative", "above_one", "rank3", "channels", "height_width"])
def test_validation_rejects_bad_images(name, case, trained, model):
    x, y = _ok_batch(trained)
    bad, match = {
        "nan": (_with(x, (0, 0, 0, 0), np.nan), "NaN"),
        "inf": (_with(x, (1, 2, 3, 0), np.inf), "Inf"),
        "negative": (_with(x, (0, 1, 1, 0), -0.01), r"\[0, 1\]"),
        "above_one": (_with(x, (2, 1, 1, 0), 1.01), r"\[0, 1\]"),
        "rank3": (x[0], "rank 4"),
        "channels": (np.repeat(x, 3, axis=-1), "model takes"),
        "height_width": (np.zeros((4, 9, 9, 1), np.float32), "model takes"),
    }[case]
    bad_before = np.array(bad, copy=True)
    with pytest.raises(ValueError, match=match):
        attacks.make(name, **DEFAULT_PARAMS[name])(model, bad, y[:len(bad)] if bad.ndim == 4
                                                   else y[:1])
    np.testing.assert_array_equal(bad, bad_before)


@pytest.mark.parametrize("name", sorted(attacks.ATTACKS))
@pytest.mark.parametrize("labels,match", [
    ([0, 1, -1, 2], r"\[0, 9\]"),
    ([0, 1, 10, 2], r"\[0, 9\]"),
    ([0, 1, 2], r"shape \(4,\)"),
    ([0, 1, 2, 3, 4], r"shape \(4,\)"),
    ([[0], [1], [2], [3]], r"shape \(4,\)"),
    ([0.0, 1.5, 2.0, 3.0], "integer"),
], ids=["negative", "too_large", "too_short", "too_long", "column", "non_integer"])
def test_validation_rejects_bad_labels(name, labels, match, trained, model):
    x, _ = _ok_batch(trained)
    with pytest.raises(ValueError, match=match):
        attacks.make(name, **DEFAULT_PARAMS[name])(model, x, np.array(labels))


def test_validation_accepts_integer_valued_float_labels(trained, model):
    x, y = _ok_batch(trained)
    fgsm = attacks.make("fgsm", eps=0.1)
    np.testing.assert_array_equal(fgsm(model, x, y.astype(np.float32)), fgsm(model, x, y))


@pytest.mark.parametrize("name", sorted(attacks.ATTACKS))
@pytest.mark.parametrize("target,match", [
    ("most_likely", "unknown target strategy"),
    (np.array([0, 1, 2, 10]), r"target must lie in \[0, 9\]"),
    (np.array([0, 1, 2, -1]), r"target must lie in \[0, 9\]"),
    (np.array([0, 1]), r"target must have shape \(4,\)"),
], ids=["unknown_strategy", "too_large", "negative", "wrong_length"])
def test_validation_rejects_bad_targets(name, target, match, trained, model):
    x, y = _ok_batch(trained)
    with pytest.raises(ValueError, match=match):
        attacks.make(name, **DEFAULT_PARAMS[name])(model, x, y, target)


@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf")])
def test_make_rejects_bad_eps(eps):
    with pytest.raises(ValueError, match="eps"):
        attacks.make("fgsm", eps=eps)


def test_make_rejects_unknown_attack():
    with pytest.raises(ValueError, match="unknown attack 'no_such_attack'"):
        attacks.make("no_such_attack", eps=0.1)


@pytest.mark.parametrize("name", sorted(attacks.ATTACKS))
def test_validation_rejects_model_returning_probabilities(name, trained, model):
    softmax_model = keras.Sequential([model, keras.layers.Softmax()])
    x, y = _ok_batch(trained)
    # The model itself still works; only the attack refuses it.
    probs = predict_logits(softmax_model, x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="probabilities.*logits"):
        attacks.make(name, **DEFAULT_PARAMS[name])(softmax_model, x, y)


def test_make_records_every_hyperparameter_defaults_included():
    """Experiments key their caches on ``attack.params``: a default that changes must change
    the key instead of silently reusing adversarial images made the old way."""
    import inspect
    jsma = attacks.make("jsma", theta=1.0, gamma=0.1)
    signature = inspect.signature(attacks.ATTACKS["jsma"])
    defaults = {k: p.default for k, p in signature.parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert jsma.params == {**defaults, "theta": 1.0, "gamma": 0.1}
    assert attacks.make("fgsm", eps=0.02).params["eps"] == 0.02
    assert attacks.make("jsma", theta=1.0, gamma=0.1, top_k=32).params != jsma.params
