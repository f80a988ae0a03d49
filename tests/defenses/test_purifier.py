"""Tests for the paper 003 purifier, tfadv.defenses.purifier: the loss-weight schedule,
training, resume, ``purify``, save/load, the cache (``train_cached``, and
``tfadv.defenses.versatile.train_versatile``) and ``load`` as a defense (tiny networks,
images made here; about 40 s on 2 CPU cores). The
networks (tfadv.models.pix2pix) and the perceptual loss (tfadv.models.perceptual) are tested
in tests/models/test_pix2pix.py and test_perceptual.py.

The resume test is the important one: a training run stopped between checkpoints, or at an
epoch boundary, then started again with the same arguments, ends with the same weights (both
networks) and the same epoch records as a run that was never interrupted.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import mixed_precision, op_determinism, pix2pix_networks, toy_pairs
from tfadv import cache, defenses, models
from tfadv.defenses import purifier
from tfadv.defenses.versatile import train_versatile
from tfadv.models import perceptual
from tfadv.models.resnet import tiny_cnn


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


# --------------------------------------------------------------------------- training

def test_training_removes_noise_and_leaves_features_frozen(tmp_path):
    noisy, clean = toy_pairs(64, 16)
    generator, discriminator = pix2pix_networks(16)
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
    noisy, clean = toy_pairs(4, 8)
    with mixed_precision("mixed_bfloat16"):
        generator, discriminator = pix2pix_networks(8)
        history = purifier.train_purifier(noisy, clean, generator=generator,
                                          discriminator=discriminator, features=None,
                                          epochs=1, batch_size=2, verbose=False)
    assert all(np.isfinite(v) for k, v in history[0].items() if k != "epoch")
    assert history[0]["gen_perc"] == 0.0  # features=None: no perceptual term


# Resume runs: 8x8 images, 16 pairs, batch 4 -> 4 steps an epoch, 3 epochs (one per phase),
# compiled calls of 3 steps, each followed by a checkpoint (checkpoint_minutes=0); perceptual
# features from a tiny classifier.
SIDE, N, BATCH, EPOCHS, EVERY = 8, 16, 4, 3, 3
STEPS_PER_EPOCH = N // BATCH


@pytest.fixture(scope="module")
def resume_setup():
    noisy, clean = toy_pairs(N, SIDE, seed=5)
    keras.utils.set_random_seed(7)
    features = perceptual.classifier_features(tiny_cnn(input_shape=(SIDE, SIDE, 3), width=4))
    return noisy, clean, features


def _resume_run(setup, root, model_seed=0, **kwargs):
    noisy, clean, features = setup
    generator, discriminator = pix2pix_networks(SIDE, seed=model_seed)
    history = purifier.train_purifier(
        noisy, clean, generator=generator, discriminator=discriminator, features=features,
        epochs=EPOCHS, batch_size=BATCH, learning_rate=1e-3, seed=0, ckpt_dir=root / "ckpt",
        steps_per_call=EVERY, checkpoint_minutes=0, log_dir=root / "log", verbose=False,
        **kwargs)
    return generator, discriminator, history


@pytest.fixture(scope="module")
def reference(resume_setup, tmp_path_factory):
    with op_determinism():
        generator, discriminator, history = _resume_run(resume_setup,
                                                        tmp_path_factory.mktemp("reference"))
    assert [r["step"] for r in history] == [4, 8, 12]
    return generator.get_weights() + discriminator.get_weights(), history


@pytest.mark.parametrize("stop_at", [5, STEPS_PER_EPOCH])
def test_resume_equals_an_uninterrupted_run(resume_setup, reference, tmp_path, stop_at):
    """Stopped mid-epoch 2 between checkpoints (5) and at the end of epoch 1 (4); the resumed
    run starts from networks with other weights and dropout seeds: all must come from the
    checkpoint."""
    with op_determinism():
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
    generator, discriminator = pix2pix_networks(SIDE, base_filters=4)
    with pytest.raises(ValueError, match="delete"):
        purifier.train_purifier(noisy, clean, generator=generator, discriminator=discriminator,
                                features=features, epochs=EPOCHS, batch_size=BATCH,
                                ckpt_dir=other / "ckpt", verbose=False)


def test_train_purifier_rejects_bad_arguments():
    noisy, clean = toy_pairs(4, 8)
    generator, discriminator = pix2pix_networks(8)
    kwargs = dict(generator=generator, discriminator=discriminator, features=None, verbose=False)
    with pytest.raises(ValueError, match="pairs"):
        purifier.train_purifier(noisy, clean[:3], epochs=1, **kwargs)
    with pytest.raises(ValueError, match="fewer than one batch"):
        purifier.train_purifier(noisy, clean, epochs=1, batch_size=8, **kwargs)
    with pytest.raises(ValueError, match="steps"):
        purifier.train_purifier(noisy, clean, epochs=1, steps="three", **kwargs)


# --------------------------------------------------------------------------- purify, save/load

def test_purify_validates_its_input():
    generator, _ = pix2pix_networks(8)
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
    noisy, clean = toy_pairs(8, 16)
    generator, discriminator = pix2pix_networks(16)
    purifier.train_purifier(noisy, clean, generator=generator, discriminator=discriminator,
                            features=None, epochs=1, batch_size=4, verbose=False)
    path = tmp_path / "purifier.keras"
    models.save(generator, path)
    loaded = models.load(path)  # safe_mode: only standard layers
    np.testing.assert_array_equal(purifier.purify(loaded, noisy), purifier.purify(generator, noisy))
    discriminator_path = tmp_path / "patchgan.keras"
    models.save(discriminator, discriminator_path)
    assert models.load(discriminator_path).output_shape == discriminator.output_shape


# --------------------------------------------------------------------------- cache, monitor, load

def test_train_cached_trains_once_then_loads(tmp_path):
    x_adv, x_clean = toy_pairs(4, 8)
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
    x_adv, x_clean = toy_pairs(4, 8)
    settings = dict(pairs_id="toy", features=None, cache_dir=tmp_path, base_filters=4,
                    batch_size=2, epochs=1, seed=0)
    _, old_path, _, _ = purifier.train_cached("toy", x_adv, x_clean, **settings)
    monkeypatch.setitem(cache.VERSIONS, "purifier", cache.VERSIONS["purifier"] + 1)
    _, new_path, _, trained = purifier.train_cached("toy", x_adv, x_clean, **settings)
    assert trained and new_path != old_path


def test_monitor_joins_every_epoch_record_and_the_log(tmp_path):
    x_adv, x_clean = toy_pairs(4, 8)
    generator, discriminator = pix2pix_networks(8, base_filters=4)
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
    generator, _ = pix2pix_networks(8, base_filters=4)
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
    x_clean = toy_pairs(4, 8, seed=1)[1]
    attacked_sets = {"a": toy_pairs(4, 8, seed=2)[0], "b": toy_pairs(4, 8, seed=3)[0]}
    assign = np.array([0, 1, 1, 0])
    settings = dict(features=None, cache_dir=tmp_path, base_filters=4, batch_size=2,
                    epochs=1, seed=0, verbose=False)
    log = {}
    def attacked(name, index):
        return attacked_sets[name][index]

    made, paths, histories = train_versatile(
        ["a", "b"], attacked, x_clean, assign, log=log, **settings)
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
    train_versatile(["a", "b"], attacked, x_clean, assign, log=again, **settings)
    assert again == {"cached": ["a", "b", "versatile"]}


def test_train_versatile_share_gives_each_attack_only_its_own_images(tmp_path):
    """specific_pairs="share" (the paper's data): attack k is asked for the images of its
    share only, its purifier trains on those pairs, and the versatile purifier on the same
    pairs as "all" would give it (image i attacked by attacks[assign[i]])."""
    x_clean = toy_pairs(6, 8, seed=1)[1]
    full = {"a": toy_pairs(6, 8, seed=2)[0], "b": toy_pairs(6, 8, seed=3)[0]}
    assign = np.array([1, 0, 0, 1, 1, 0])
    asked = {}

    def attacked(name, index):
        asked[name] = list(index)
        return full[name][index]

    settings = dict(features=None, cache_dir=tmp_path, base_filters=4, batch_size=2,
                    epochs=1, seed=0, verbose=False)
    _, paths, _ = train_versatile(["a", "b"], attacked, x_clean, assign,
                                  specific_pairs="share", **settings)
    assert asked == {"a": [1, 2, 5], "b": [0, 3, 4]}
    mixed = np.where(assign[:, None, None, None] == 0, full["a"], full["b"])
    _, path, _, trained = purifier.train_cached(
        "versatile", mixed, x_clean, pairs_id=f"versatile:{cache.digest(mixed)}", **settings)
    assert not trained and path == paths["versatile"]
    own = full["a"][[1, 2, 5]]
    _, path, _, trained = purifier.train_cached(
        "a", own, x_clean[[1, 2, 5]], pairs_id=f"a:{cache.digest(own)}", **settings)
    assert not trained and path == paths["a"]
    with pytest.raises(ValueError, match="specific_pairs"):
        train_versatile(["a", "b"], attacked, x_clean, assign, specific_pairs="some",
                        **settings)


def test_l1_range_signed_doubles_the_l1_term():
    """l1_range="signed" (pix2pix's [-1, 1] pixels): the same networks, batch and dropout
    masks give exactly twice the L1 term; the other losses are unchanged."""
    x, y = toy_pairs(4, 8, seed=2)
    losses = {}
    for l1_range in ("unit", "signed"):
        generator, discriminator = pix2pix_networks(8, seed=3, base_filters=4)
        step = purifier.make_train_step(generator, discriminator, None,
                                        purifier.make_optimizer(), purifier.make_optimizer(),
                                        l1_range=l1_range)
        values = step(tf.constant(x), tf.constant(y), tf.constant(100.0), tf.constant(0.0))
        losses[l1_range] = dict(zip(purifier.LOSS_NAMES, values.numpy()))
    assert losses["signed"]["gen_l1"] == 2 * losses["unit"]["gen_l1"] > 0
    assert losses["signed"]["gen_gan"] == losses["unit"]["gen_gan"]
    with pytest.raises(ValueError, match="l1_range"):
        purifier.make_train_step(*pix2pix_networks(8, base_filters=4), None,
                                 purifier.make_optimizer(), purifier.make_optimizer(),
                                 l1_range="pixels")


def test_ablations_are_in_the_cache_key_only_when_set(tmp_path):
    """dropout_blocks and l1_range at pix2pix's / our defaults keep the earlier keys; other
    values give other purifiers (dropout_blocks changes the network)."""
    x, y = toy_pairs(4, 8, seed=1)
    settings = dict(pairs_id="p", features=None, cache_dir=tmp_path, base_filters=4,
                    batch_size=2, epochs=1, verbose=False)
    _, plain, _, _ = purifier.train_cached("a", x, y, **settings)
    _, same, _, trained = purifier.train_cached("a", x, y, dropout_blocks=3, l1_range="unit",
                                                **settings)
    assert same == plain and not trained
    generator, fewer, _, _ = purifier.train_cached("a", x, y, dropout_blocks=1, **settings)
    signed = purifier.train_cached("a", x, y, l1_range="signed", **settings)[1]
    assert len({plain, fewer, signed}) == 3
    assert [layer.name for layer in generator.layers if "dropout" in layer.name] == \
        ["up1_dropout"]


def test_purify_with_test_time_dropout_is_noisy_but_repeatable():
    """dropout=True: pix2pix's test-time dropout changes the output; the same call gives the
    same images again and leaves the generator (and the default path) as it was."""
    generator, _ = pix2pix_networks(16, seed=4, base_filters=8)
    x = toy_pairs(6, 16, seed=6)[0]
    plain = purifier.purify(generator, x)
    noisy = purifier.purify(generator, x, dropout=True)
    assert np.abs(noisy - plain).max() > 1e-4
    np.testing.assert_array_equal(noisy, purifier.purify(generator, x, dropout=True))
    np.testing.assert_array_equal(plain, purifier.purify(generator, x))
    assert ((noisy >= 0) & (noisy <= 1)).all()
