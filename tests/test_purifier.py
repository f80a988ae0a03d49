"""Tests for the paper 003 purifier: tfadv.models.pix2pix, tfadv.models.perceptual and
tfadv.defenses.purifier (tiny networks, images made here; about 40 s on 2 CPU cores).

The resume test is the important one: a training run stopped between checkpoints, or at an
epoch boundary, then started again with the same arguments, ends with the same weights (both
networks) and the same epoch records as a run that was never interrupted.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfadv import cache, defenses, models
from tfadv.defenses import purifier
from tfadv.models import perceptual, pix2pix
from tfadv.models.resnet import resnet18, tiny_cnn

REPO_ROOT = Path(__file__).resolve().parents[1]


def _toy_pairs(n, side, seed=0, noise=0.1):
    """Smooth clean images (4x4 random colours, bilinearly upsampled) and noisy copies."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, (n, 4, 4, 3)).astype(np.float32)
    clean = tf.image.resize(coarse, (side, side), "bilinear").numpy()
    noisy = np.clip(clean + rng.normal(0, noise, clean.shape), 0, 1).astype(np.float32)
    return noisy, clean


def _networks(side, seed=0, base_filters=8):
    keras.utils.set_random_seed(seed)
    return (pix2pix.unet_generator((side, side, 3), base_filters=base_filters),
            pix2pix.patchgan_discriminator((side, side, 3), base_filters=base_filters))


@contextlib.contextmanager
def _policy(name):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@contextlib.contextmanager
def _op_determinism():
    """Process-wide, so switched back off after (as in test_train)."""
    from tensorflow.python.framework import config as tf_config
    was_enabled = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was_enabled:
            tf_config.disable_op_determinism()


# --------------------------------------------------------------------------- pix2pix networks

def _down_convs(model):
    return [layer for layer in model.layers if layer.name.startswith("down")
            and layer.name.endswith("_conv")]


def test_unet_at_256_is_the_tutorials():
    """Built only (no forward pass): 8 down, 7 up blocks, the tutorial's filters and shapes."""
    generator = pix2pix.unet_generator((256, 256, 3))
    assert generator.output_shape == (None, 256, 256, 3)
    downs = _down_convs(generator)
    assert [layer.filters for layer in downs] == [64, 128, 256, 512, 512, 512, 512, 512]
    assert [layer.output.shape[1] for layer in downs] == [128, 64, 32, 16, 8, 4, 2, 1]
    ups = [layer for layer in generator.layers if layer.name.endswith("_deconv")
           and layer.name.startswith("up")]
    assert [layer.filters for layer in ups] == [512, 512, 512, 512, 256, 128, 64]
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in generator.layers) == 3
    assert generator.get_layer("last_deconv").filters == 3
    # The tutorial's 54,425,859 parameters, less the innermost BatchNorm's 2,048 (see docstring).
    assert generator.count_params() == 54_425_859 - 4 * 512


@pytest.mark.parametrize("side,downs", [(8, 3), (32, 5), (64, 6)])
def test_unet_depth_shapes_and_range(side, downs):
    generator, _ = _networks(side)
    assert len(_down_convs(generator)) == downs
    assert _down_convs(generator)[-1].output.shape[1] == 1  # down to 1x1
    x = np.random.default_rng(0).uniform(0, 1, (2, side, side, 3)).astype(np.float32)
    for training in (False, True):
        out = generator(x, training=training).numpy()
        assert out.shape == x.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("shape", [(32, 16, 3), (48, 48, 3), (4, 4, 3), (30, 30, 3), (32, 32)])
def test_bad_sizes_say_resize(shape):
    for build in (pix2pix.unet_generator, pix2pix.patchgan_discriminator):
        with pytest.raises(ValueError, match="resize|height, width, channels"):
            build(shape)


def test_patchgan_grids_and_receptive_fields():
    big = pix2pix.patchgan_discriminator((256, 256, 3))
    assert big.output_shape == (None, 30, 30, 1)
    assert pix2pix.receptive_field(big) == 70
    assert big.count_params() == 2_770_433  # the tutorial's
    _, small = _networks(32)
    assert small.output_shape == (None, 6, 6, 1)
    assert pix2pix.receptive_field(small) == 34
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    logits = small([x, x]).numpy()
    assert logits.shape == (2, 6, 6, 1) and logits.dtype == np.float32
    assert pix2pix.patchgan_discriminator((8, 8, 3), base_filters=4).output_shape[1:3] == (2, 2)


def test_mixed_bfloat16_outputs_float32():
    with _policy("mixed_bfloat16"):
        generator, discriminator = _networks(16)
    x = np.random.default_rng(0).uniform(0, 1, (1, 16, 16, 3)).astype(np.float32)
    assert generator.get_layer("down2_conv").compute_dtype == "bfloat16"
    assert generator(x).dtype == tf.float32
    assert discriminator([x, x]).dtype == tf.float32


# --------------------------------------------------------------------------- loss schedule

def _epochs_of(epochs, steps):
    return [purifier.loss_weights(e, epochs, steps) for e in range(epochs)]


def test_multi_step_schedule_proportions():
    weights = _epochs_of(100, "multi")
    assert weights == [(100.0, 100.0)] * 40 + [(100.0, 50.0)] * 30 + [(100.0, 1.0)] * 30
    assert _epochs_of(10, "multi") == [(100.0, 100.0)] * 4 + [(100.0, 50.0)] * 3 + \
        [(100.0, 1.0)] * 3
    assert _epochs_of(1, "multi") == [(100.0, 100.0)]  # phase 1 always gets an epoch
    assert [p["epochs"] for p in purifier.schedule_table(5, "multi")] == [2, 2, 1]
    table = purifier.schedule_table(100, "multi")
    assert [(p["first_epoch"], p["last_epoch"], p["lambda_perc"]) for p in table] == \
        [(0, 39, 100.0), (40, 69, 50.0), (70, 99, 1.0)]
    assert [p["epochs"] for p in purifier.schedule_table(1, "multi")] == [1]
    for epochs in range(1, 60):  # every epoch in exactly one phase, in order
        table = purifier.schedule_table(epochs, "multi")
        assert sum(p["epochs"] for p in table) == epochs
        assert [p["lambda_perc"] for p in table] == sorted(
            (p["lambda_perc"] for p in table), reverse=True)


def test_single_step_schedule_and_bad_arguments():
    for epochs in (1, 10, 100):
        assert set(_epochs_of(epochs, "single")) == {(100.0, 1.0)}
        assert purifier.schedule_table(epochs, "single") == [
            {"phase": 1, "first_epoch": 0, "last_epoch": epochs - 1, "epochs": epochs,
             "lambda_pix": 100.0, "lambda_perc": 1.0}]
    for epochs in (1, 12):  # not the paper's: the first phase's weights throughout
        assert set(_epochs_of(epochs, "constant")) == {(100.0, 100.0)}
        assert len(purifier.schedule_table(epochs, "constant")) == 1
    with pytest.raises(ValueError, match="steps"):
        purifier.loss_weights(0, 10, "two")
    with pytest.raises(ValueError, match="epoch"):
        purifier.loss_weights(10, 10, "multi")
    with pytest.raises(ValueError, match="epochs"):
        purifier.schedule_table(0, "multi")


# --------------------------------------------------------------------------- perceptual

def test_classifier_features_loss_and_freezing():
    classifier = resnet18(width=8)
    features = perceptual.classifier_features(classifier)
    assert perceptual.describe(features)["layers"] == [
        "stem_relu", "s1b0_relu1", "s2b1_relu1", "s3b1_out"]
    assert features.trainable_variables == [] and classifier.trainable  # a frozen copy
    x, y = _toy_pairs(4, 32)
    assert float(perceptual.perceptual_loss(features, x, x)) == 0.0
    assert float(perceptual.perceptual_loss(features, x, y)) > 0.0
    assert float(perceptual.perceptual_loss(features, x, y, "l2")) > 0.0
    with pytest.raises(ValueError, match="distance"):
        perceptual.perceptual_loss(features, x, y, "cosine")
    with pytest.raises(ValueError, match="no layers"):
        perceptual.classifier_features(classifier, ["nope"])


def test_vgg19_preprocessing_and_refusals(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="allow_random"):
        perceptual.vgg19_features(None, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="at least 32x32"):
        perceptual.vgg19_features(None, input_shape=(16, 16, 3), allow_random=True)
    with pytest.raises(ValueError, match="not found"):
        perceptual.vgg19_features(str(tmp_path / "missing.weights.h5"), input_shape=(32, 32, 3))
    features = perceptual.vgg19_features(None, input_shape=(32, 32, 3), allow_random=True)
    info = perceptual.describe(features)
    assert info["layers"] == list(perceptual.VGG19_LAYERS) and "random" in info["weights"]
    json.dumps(info)
    assert len(features.outputs) == 5 and features.trainable_variables == []
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    pre = keras.Model(features.input, features.get_layer("caffe_preprocess").output)
    np.testing.assert_allclose(pre(x).numpy(), keras.applications.vgg19.preprocess_input(
        x * 255.0), atol=1e-3)
    assert float(perceptual.perceptual_loss(features, x, x)) == 0.0
    assert float(perceptual.perceptual_loss(features, x, x[::-1])) > 0.0

    def offline(*args, **kwargs):  # what keras.applications raises without network
        raise Exception("URL fetch failure on https://storage.googleapis.com/...")
    monkeypatch.setattr(keras.applications, "VGG19", offline)
    with pytest.raises(ValueError, match="local path"):
        perceptual.vgg19_features("imagenet", input_shape=(32, 32, 3))


def test_vgg19_loads_a_local_weights_file(tmp_path):
    keras.utils.set_random_seed(3)
    backbone = keras.applications.VGG19(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg19_notop.weights.h5"
    backbone.save_weights(path)
    features = perceptual.vgg19_features(str(path), layers=("block5_conv4",),
                                         input_shape=(32, 32, 3))
    assert perceptual.describe(features)["weights"] == str(path)
    x = np.random.default_rng(0).uniform(0, 1, (1, 32, 32, 3)).astype(np.float32)
    block5 = keras.Model(backbone.input, backbone.get_layer("block5_conv4").output)
    want = block5(keras.applications.vgg19.preprocess_input(x * 255.0)).numpy()
    np.testing.assert_allclose(features(x).numpy(), want, rtol=1e-4, atol=1e-3)


# --------------------------------------------------------------------------- training

def test_training_removes_noise_and_leaves_features_frozen(tmp_path):
    noisy, clean = _toy_pairs(64, 16)
    generator, discriminator = _networks(16)
    keras.utils.set_random_seed(1)
    features = perceptual.classifier_features(tiny_cnn(input_shape=(16, 16, 3), width=4))
    frozen = [w.copy() for w in features.get_weights()]
    before = np.abs(purifier.purify(generator, noisy) - clean).mean()
    history = purifier.train_purifier(
        noisy, clean, generator=generator, discriminator=discriminator, features=features,
        epochs=6, batch_size=8, learning_rate=2e-3, log_dir=tmp_path, verbose=False)
    after = np.abs(purifier.purify(generator, noisy) - clean).mean()
    assert after < before / 2, (before, after)
    assert history[-1]["gen_l1"] < history[0]["gen_l1"] / 2
    assert [r["lambda_perc"] for r in history] == [100.0] * 2 + [50.0] * 2 + [1.0] * 2
    assert all(r["gen_perc"] > 0 for r in history)
    for r in history:  # the total is the weighted sum of the terms (per-batch means)
        assert r["gen_total"] == pytest.approx(
            r["gen_gan"] + 100 * r["gen_l1"] + r["lambda_perc"] * r["gen_perc"], rel=1e-4)
    for got, want in zip(features.get_weights(), frozen):
        np.testing.assert_array_equal(got, want)
    logged = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert logged == history
    assert set(history[0]) == {"epoch", "step", "lambda_pix", "lambda_perc", "gen_gan",
                               "gen_l1", "gen_perc", "gen_total", "disc_loss", "seconds"}


def test_training_under_mixed_bfloat16():
    noisy, clean = _toy_pairs(4, 8)
    with _policy("mixed_bfloat16"):
        generator, discriminator = _networks(8)
        history = purifier.train_purifier(noisy, clean, generator=generator,
                                          discriminator=discriminator, features=None,
                                          epochs=1, batch_size=2, verbose=False)
    assert all(np.isfinite(v) for k, v in history[0].items() if k != "epoch")
    assert history[0]["gen_perc"] == 0.0  # features=None: no perceptual term


# Resume runs: 8x8 images, 16 pairs, batch 4 -> 4 steps an epoch, 3 epochs (one per phase),
# a checkpoint every 3 steps; perceptual features from a tiny classifier.
SIDE, N, BATCH, EPOCHS, EVERY = 8, 16, 4, 3, 3
STEPS_PER_EPOCH = N // BATCH


@pytest.fixture(scope="module")
def resume_setup():
    noisy, clean = _toy_pairs(N, SIDE, seed=5)
    keras.utils.set_random_seed(7)
    features = perceptual.classifier_features(tiny_cnn(input_shape=(SIDE, SIDE, 3), width=4))
    return noisy, clean, features


def _resume_run(setup, root, model_seed=0, **kwargs):
    noisy, clean, features = setup
    generator, discriminator = _networks(SIDE, seed=model_seed)
    history = purifier.train_purifier(
        noisy, clean, generator=generator, discriminator=discriminator, features=features,
        epochs=EPOCHS, batch_size=BATCH, learning_rate=1e-3, seed=0, ckpt_dir=root / "ckpt",
        checkpoint_every=EVERY, log_dir=root / "log", verbose=False, **kwargs)
    return generator, discriminator, history


@pytest.fixture(scope="module")
def reference(resume_setup, tmp_path_factory):
    with _op_determinism():
        generator, discriminator, history = _resume_run(resume_setup,
                                                        tmp_path_factory.mktemp("reference"))
    assert [r["step"] for r in history] == [4, 8, 12]
    return generator.get_weights() + discriminator.get_weights(), history


@pytest.mark.parametrize("stop_at", [5, STEPS_PER_EPOCH])
def test_resume_equals_an_uninterrupted_run(resume_setup, reference, tmp_path, stop_at):
    """Stopped mid-epoch 2 between checkpoints (5) and at the end of epoch 1 (4); the resumed
    run starts from networks with other weights and dropout seeds: all must come from the
    checkpoint."""
    with _op_determinism():
        first = _resume_run(resume_setup, tmp_path, stop_after_steps=stop_at)[2]
        assert len(first) == stop_at // STEPS_PER_EPOCH
        generator, discriminator, history = _resume_run(resume_setup, tmp_path, model_seed=99)
    want_weights, want_history = reference
    got_weights = generator.get_weights() + discriminator.get_weights()
    assert len(got_weights) == len(want_weights)
    for got, want in zip(got_weights, want_weights):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    for got, want in zip(history, want_history):
        for key in purifier.LOSS_NAMES + ("step", "lambda_perc"):
            assert got[key] == pytest.approx(want[key], abs=1e-6), key


def test_corrupt_or_foreign_checkpoint_says_delete(resume_setup, tmp_path):
    _resume_run(resume_setup, tmp_path, stop_after_steps=2)
    for data_file in (tmp_path / "ckpt").glob("*.data-*"):
        data_file.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="delete"):
        _resume_run(resume_setup, tmp_path)
    # Another run's checkpoint: networks of another width.
    noisy, clean, features = resume_setup
    other = tmp_path / "other"
    _resume_run(resume_setup, other, stop_after_steps=1)
    generator, discriminator = _networks(SIDE, base_filters=4)
    with pytest.raises(ValueError, match="delete"):
        purifier.train_purifier(noisy, clean, generator=generator, discriminator=discriminator,
                                features=features, epochs=EPOCHS, batch_size=BATCH,
                                ckpt_dir=other / "ckpt", verbose=False)


def test_train_purifier_rejects_bad_arguments():
    noisy, clean = _toy_pairs(4, 8)
    generator, discriminator = _networks(8)
    kwargs = dict(generator=generator, discriminator=discriminator, features=None, verbose=False)
    with pytest.raises(ValueError, match="pairs"):
        purifier.train_purifier(noisy, clean[:3], epochs=1, **kwargs)
    with pytest.raises(ValueError, match="fewer than one batch"):
        purifier.train_purifier(noisy, clean, epochs=1, batch_size=8, **kwargs)
    with pytest.raises(ValueError, match="steps"):
        purifier.train_purifier(noisy, clean, epochs=1, steps="three", **kwargs)


# --------------------------------------------------------------------------- purify, save/load

def test_purify_validates_its_input():
    generator, _ = _networks(8)
    x = np.random.default_rng(0).uniform(0, 1, (3, 8, 8, 3)).astype(np.float32)
    out = purifier.purify(generator, x, batch_size=2)
    assert out.shape == x.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, purifier.purify(generator, x))  # deterministic
    bad = {"shape": x[0], "resize them": np.zeros((1, 16, 16, 3), np.float32),
           "uint8": (x * 255).astype(np.uint8), "NaN": np.where(x > 0.5, np.nan, x),
           r"\[0, 1\]": x * 255}
    for message, images in bad.items():
        with pytest.raises(ValueError, match=message):
            purifier.purify(generator, images)
    assert x.max() <= 1.0  # the caller's array is untouched


def test_generator_save_load_round_trip(tmp_path):
    noisy, clean = _toy_pairs(8, 16)
    generator, discriminator = _networks(16)
    purifier.train_purifier(noisy, clean, generator=generator, discriminator=discriminator,
                            features=None, epochs=1, batch_size=4, verbose=False)
    path = tmp_path / "purifier.keras"
    models.save(generator, path)
    loaded = models.load(path)  # safe_mode: only standard layers
    np.testing.assert_array_equal(purifier.purify(loaded, noisy), purifier.purify(generator, noisy))
    discriminator_path = tmp_path / "patchgan.keras"
    models.save(discriminator, discriminator_path)
    assert models.load(discriminator_path).output_shape == discriminator.output_shape


# --------------------------------------------------------------------------- benchmark

def test_benchmark_purifier_smoke(tmp_path):
    # TFADV_CACHE stays (conftest's temporary root): nothing may be written into data/.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TFADV_") or k == "TFADV_CACHE"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark", "purifier", "--size=32",
         "--base_filters=4", "--timed_steps=1", "--repeats=1", "--projection_steps=0",
         f"--out={tmp_path}"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "random weights" in proc.stdout
    table = pd.read_csv(tmp_path / "benchmark_purifier.csv")
    assert len(table) == 4
    assert set(table.precision) == {"float32", "mixed_bfloat16"}
    assert set(table.perceptual) == {"none", "VGG19 (random weights)"}
    assert (table.images_per_s > 0).all() and table.paper_preset_hours.isna().all()


def test_train_cached_trains_once_then_loads(tmp_path):
    x_adv, x_clean = _toy_pairs(4, 8)
    settings = dict(pairs_id="toy", features=None, cache_dir=tmp_path, base_filters=4,
                    batch_size=2, epochs=1, seed=0)
    generator, path, history, trained = purifier.train_cached("toy", x_adv, x_clean, **settings)
    assert trained and path.exists() and len(history) == 1
    assert path.parent == tmp_path / "models" and path.name.startswith("purifier_toy-")
    assert not path.with_suffix(".ckpt").exists()  # the checkpoint is gone once cached
    again, path_again, history_again, trained_again = purifier.train_cached(
        "toy", x_adv, x_clean, **settings)
    assert not trained_again and path_again == path and history_again == history
    np.testing.assert_array_equal(purifier.purify(again, x_adv), purifier.purify(generator, x_adv))
    other = purifier.train_cached("toy", x_adv, x_clean, **dict(settings, pairs_id="other"))
    assert other[3] and other[1] != path  # other pairs: another cache entry


def test_train_cached_ignores_purifiers_of_an_older_training_version(tmp_path, monkeypatch):
    x_adv, x_clean = _toy_pairs(4, 8)
    settings = dict(pairs_id="toy", features=None, cache_dir=tmp_path, base_filters=4,
                    batch_size=2, epochs=1, seed=0)
    _, old_path, _, _ = purifier.train_cached("toy", x_adv, x_clean, **settings)
    monkeypatch.setitem(cache.VERSIONS, "purifier", cache.VERSIONS["purifier"] + 1)
    _, new_path, _, trained = purifier.train_cached("toy", x_adv, x_clean, **settings)
    assert trained and new_path != old_path


def test_monitor_joins_every_epoch_record_and_the_log(tmp_path):
    x_adv, x_clean = _toy_pairs(4, 8)
    generator, discriminator = _networks(8, base_filters=4)
    seen = []

    def monitor(g):
        seen.append(g is generator)
        return {"mean_output": float(np.mean(purifier.purify(g, x_adv)))}

    history = purifier.train_purifier(x_adv, x_clean, generator=generator,
                                      discriminator=discriminator, features=None, epochs=2,
                                      batch_size=2, log_dir=tmp_path, verbose=False,
                                      monitor=monitor)
    assert seen == [True, True]
    assert [sorted(r) for r in history] == [sorted(history[0])] * 2
    assert history[-1]["mean_output"] == pytest.approx(
        float(np.mean(purifier.purify(generator, x_adv))))
    logged = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["mean_output"] for r in logged] == [r["mean_output"] for r in history]


def test_schedule_text_names_every_phase():
    text = purifier.schedule_text(10, "multi")
    assert text.startswith("loss-weight schedule (multi-step, 10 epochs)")
    assert "epochs 0-3: lambda_pix=100, lambda_perc=100" in text
    assert "epochs 4-6: lambda_pix=100, lambda_perc=50" in text
    assert "epochs 7-9: lambda_pix=100, lambda_perc=1" in text
    assert purifier.schedule_text(3, "single").endswith("epochs 0-2: lambda_pix=100, "
                                                        "lambda_perc=1")
    with pytest.raises(ValueError, match="steps"):
        purifier.schedule_text(3, "two")


def test_load_gives_a_differentiable_defense_named_by_its_file(tmp_path):
    generator, _ = _networks(8, base_filters=4)
    path = tmp_path / "purifier_toy-0123.keras"
    models.save(generator, path)
    defense = purifier.load(path)
    assert isinstance(defense, defenses.Defense) and defense.name == "purifier"
    assert defense.id == "purifier_toy-0123"
    assert defense.differentiable and not defense.randomized and defense.model is not None
    x = np.random.default_rng(0).uniform(0, 1, (3, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(defense(x), purifier.purify(generator, x))
    with pytest.raises(ValueError, match="not found"):
        purifier.load(tmp_path / "missing.keras")


def test_train_versatile_trains_each_then_the_mix_and_caches_all(tmp_path):
    """Two attacks: a purifier per attack on its own pairs, then the versatile one on image
    i attacked by attacks[assign[i]]; a second call loads all three from the cache."""
    x_clean = _toy_pairs(4, 8, seed=1)[1]
    attacked_sets = {"a": _toy_pairs(4, 8, seed=2)[0], "b": _toy_pairs(4, 8, seed=3)[0]}
    assign = np.array([0, 1, 1, 0])
    settings = dict(features=None, cache_dir=tmp_path, base_filters=4, batch_size=2,
                    epochs=1, seed=0, verbose=False)
    log = {}
    made, paths, histories = purifier.train_versatile(
        ["a", "b"], attacked_sets.__getitem__, x_clean, assign, log=log, **settings)
    assert list(made) == ["a", "b", "versatile"] and log == {"trained": ["a", "b", "versatile"]}
    for name, defense in made.items():
        assert defense.id == paths[name].stem and paths[name].exists()
        assert len(histories[name]) == 1
    # The versatile purifier's pairs: rows 0, 3 from attack a, rows 1, 2 from attack b.
    mixed = np.where(assign[:, None, None, None] == 0, attacked_sets["a"], attacked_sets["b"])
    _, path, _, trained = purifier.train_cached(
        "versatile", mixed, x_clean, pairs_id=f"versatile:{cache.digest(mixed)}", **settings)
    assert not trained and path == paths["versatile"]
    again = {}
    purifier.train_versatile(["a", "b"], attacked_sets.__getitem__, x_clean, assign,
                             log=again, **settings)
    assert again == {"cached": ["a", "b", "versatile"]}
