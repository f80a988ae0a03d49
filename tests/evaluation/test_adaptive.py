"""Adaptive evaluation of input defenses (tfadv.evaluation.adaptive) on the digits model of
tests/helpers.py: the attack is chosen from the defense's declared properties (full
gradients, BPDA, BPDA + EOT, none for the identity), and the sanity checks are reported,
failures included."""

import keras
import numpy as np
import pytest

from helpers import correctly_classified
from tfadv import attacks, defenses
from tfadv.evaluation import accuracy_percent, adaptive, predict

PGD = dict(eps=0.3, eps_iter=0.05, nb_iter=4, seed=0)
N, SANITY_N = 10, 4
SANITY_COLUMNS = ("sanity", "sanity_images", "sanity_half_steps_accuracy",
                  "sanity_full_steps_accuracy", "sanity_large_eps_accuracy",
                  "sanity_zero_gradients")


@pytest.fixture(scope="module")
def images(trained):
    x, y = correctly_classified(trained, N, seed=4)
    return x, y, attacks.make("pgd", **PGD)(trained.model, x, y)


def _purifier_of(layer, name):
    """A "purifier" defense whose generator is one fixed Keras layer on 8x8x1 images."""
    inputs = keras.Input((8, 8, 1))
    return defenses.make("purifier", generator=keras.Model(inputs, layer(inputs), name=name))


def _evaluate(model, defense, images, tmp_path, **kwargs):
    x, y, gray = images
    settings = dict(dict(pgd=PGD, gray=gray, eot=2, fresh_seed=7, sanity_n=SANITY_N,
                         cache_dir=tmp_path), **kwargs)
    return adaptive.evaluate(model, "digits-test-model", defense, x, y, **settings)


def test_identity_has_one_row_the_gray_box_one_with_the_sanity_checks(model, images,
                                                                      tmp_path):
    x, y, gray = images
    (row,) = _evaluate(model, defenses.make("none"), images, tmp_path)
    assert row["attack_saw_defense"] is False and row["eot_samples"] == 0
    assert row["method"] == "gradients of the classifier only"
    assert row["accuracy"] == pytest.approx(accuracy_percent(model, gray, y))
    for column in SANITY_COLUMNS:
        assert column in row, column
    assert row["sanity"] == "ok", row
    assert row["sanity_images"] == SANITY_N and row["sanity_zero_gradients"] == 0
    assert row["sanity_large_eps_accuracy"] <= adaptive.LARGE_EPS_MAX_ACCURACY
    assert row["sanity_full_steps_accuracy"] == pytest.approx(
        accuracy_percent(model, gray[:SANITY_N], y[:SANITY_N]))


def test_a_differentiable_defense_gets_full_gradients(model, images, tmp_path):
    """A purifier that is the identity: PGD through it is PGD on the classifier, exactly."""
    x, y, gray = images
    defense = _purifier_of(keras.layers.Rescaling(1.0), "identity_unet")
    assert defense.differentiable and not defense.randomized and defense.model is not None
    gray_row, row = _evaluate(model, defense, images, tmp_path)
    assert gray_row["attack_saw_defense"] is False and "sanity" in gray_row
    assert row["attack_saw_defense"] is True and row["eot_samples"] == 0
    assert row["method"] == "full gradients through purifier + classifier"
    assert row["accuracy"] == pytest.approx(gray_row["accuracy"])
    assert row["accuracy"] == pytest.approx(accuracy_percent(model, gray, y))
    assert row["sanity"] == "ok", row


def test_wavelet_denoising_gets_bpda(model, images, tmp_path):
    defense = defenses.make("wavelet_denoise")
    gray_row, row = _evaluate(model, defense, images, tmp_path)
    assert row["method"] == "BPDA (identity backward)" and row["eot_samples"] == 1
    assert row["attack_saw_defense"] and not gray_row["attack_saw_defense"]
    assert 0 <= row["accuracy"] <= 100 and row["sanity_images"] == SANITY_N
    assert row["sanity"] == "ok" or row["sanity"].startswith("FAIL: ")


def test_a_randomized_defense_gets_bpda_with_eot(model, images, tmp_path):
    defense = defenses.make("pixel_deflection", deflections=4, window=1)
    _, row = _evaluate(model, defense, images, tmp_path)
    assert row["method"] == "BPDA (identity backward) + EOT" and row["eot_samples"] == 2
    generate, method, eot = adaptive.attack_through(model, defense, PGD, eot=5)
    assert (method, eot) == ("BPDA (identity backward) + EOT", 5)
    _, method, eot = adaptive.attack_through(model, defenses.make("wavelet_denoise"), PGD, eot=5)
    assert (method, eot) == ("BPDA (identity backward)", 1)  # one draw of a fixed defense


def test_a_constant_grey_defense_fails_the_large_eps_check(model, trained, tmp_path):
    """A defense that returns one grey image for every input: no attack can change the
    prediction, so eps 0.5 leaves the accuracy at 100% on images of the class the classifier
    gives grey, and the sanity column must say FAIL."""
    grey = np.full((1, 8, 8, 1), 0.5, np.float32)
    grey_class = int(predict(model, grey)[0])
    test = trained.test
    ok = (predict(model, test.images) == test.labels) & (test.labels == grey_class)
    x, y = test.images[ok][:6], test.labels[ok][:6]
    assert len(y) >= SANITY_N
    gray = attacks.make("pgd", **PGD)(model, x, y)

    class ConstantGrey:  # any object with the defense contract's attributes
        name, id, description = "constant_grey", "constant_grey", "grey, whatever the input"
        randomized, differentiable, model = False, False, None

        def __call__(self, images, seed=None):
            return np.full(np.shape(images), 0.5, np.float32)

    gray_row, row = adaptive.evaluate(model, "digits-test-model", ConstantGrey(), x, y,
                                      pgd=PGD, gray=gray, eot=2, fresh_seed=7,
                                      sanity_n=SANITY_N, cache_dir=tmp_path)
    assert row["method"] == "BPDA (identity backward)"
    assert row["accuracy"] == 100.0 and gray_row["accuracy"] == 100.0
    assert row["sanity_large_eps_accuracy"] == 100.0
    assert row["sanity"].startswith("FAIL: ") and "eps 0.5 leaves 100%" in row["sanity"]

    # The same defense as a differentiable model: its gradients are zero, and it says so.
    constant = _purifier_of(keras.layers.Rescaling(0.0, offset=0.5), "constant_unet")
    _, exact = adaptive.evaluate(model, "digits-test-model", constant, x, y, pgd=PGD,
                                 gray=gray, eot=2, fresh_seed=7, sanity_n=SANITY_N,
                                 cache_dir=tmp_path)
    assert exact["method"].startswith("full gradients")
    assert exact["sanity_zero_gradients"] == SANITY_N
    assert f"zero gradients on {SANITY_N}/{SANITY_N} images" in exact["sanity"]
    assert "eps 0.5 leaves 100%" in exact["sanity"]


def test_sanity_n_zero_says_not_run_and_a_second_call_reuses_the_cache(model, images,
                                                                       tmp_path):
    defense = defenses.make("wavelet_denoise")
    log = {}
    _, row = _evaluate(model, defense, images, tmp_path, log=log, sanity_n=0)
    assert row["sanity"] == "not run (sanity_n = 0)"
    assert log["generated"] and not log["reused"]
    again = {}
    _, row_again = _evaluate(model, defense, images, tmp_path, log=again, sanity_n=0)
    assert row_again == row and not again["generated"] and again["reused"] == log["generated"]


def test_table_has_a_row_per_attack_and_the_given_columns(model, images, tmp_path):
    x, y, gray = images
    frame = adaptive.table(
        model, "digits-test-model",
        {"none": ("No defense", defenses.make("none")),
         "wd": ("Wavelet denoising", defenses.make("wavelet_denoise"))},
        x, y, pgd=PGD, gray=gray, eot=2, fresh_seed=7, sanity_n=0, cache_dir=tmp_path,
        images=len(y), eps_255=PGD["eps"] * 255)
    assert list(frame.defense_key) == ["none", "wd", "wd"]
    assert list(frame.attack_saw_defense) == [False, False, True]
    assert frame.attack.iloc[2] == "PGD through defense + classifier (adaptive)"
    assert (frame.images == len(y)).all() and "sanity" in frame
    assert frame.accuracy.between(0, 100).all()
