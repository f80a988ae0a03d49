"""The purifier's training step as the paper preset runs it on GPUs and TPUs, checked on the
CPU: several replicas (logical CPU devices, in a subprocess: devices are split once per
process) give one device's update on the same global batch and resume each other's
checkpoints; every pair is read once per epoch; the XLA step equals the plain one and holds
no float64 (a TPU has none); pairs stream from float16 shard sets and uint8 images."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import REPO_ROOT, pix2pix_networks, toy_pairs
from tfadv import cache
from tfadv.defenses import pairs, purifier

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, keras, tensorflow as tf
    from tfadv import distribute
    strategy = distribute.choose("mirrored", cpu_replicas=int(sys.argv[1]))
    from tfadv.defenses import pairs, purifier
    from tfadv.models import perceptual
    from tfadv.models.resnet import tiny_cnn

    rng = np.random.default_rng(0)
    clean = rng.uniform(size=(16, 16, 16, 3)).astype(np.float32)
    noisy = np.clip(clean + rng.uniform(-.1, .1, clean.shape), 0, 1).astype(np.float32)

    def train(strategy, dropout, root=None, **kwargs):
        keras.utils.set_random_seed(0)
        generator, discriminator = purifier.build_networks(
            (16, 16, 3), base_filters=4, name="p", strategy=strategy)
        for layer in generator.layers:
            if not dropout and "dropout" in layer.name:
                layer.rate = 0.0  # masks are per replica by design: compare without them
        keras.utils.set_random_seed(1)
        features = perceptual.classifier_features(tiny_cnn(input_shape=(16, 16, 3), width=4))
        history = purifier.train_purifier(
            noisy, clean, generator=generator, discriminator=discriminator,
            features=purifier.in_scope(features, strategy), epochs=2, batch_size=4, seed=3,
            verbose=False, strategy=strategy, ckpt_dir=root, steps_per_call=3,
            checkpoint_minutes=0, **kwargs)
        return [w.tolist() for w in generator.get_weights() + discriminator.get_weights()], \\
            history

    one = tf.distribute.get_strategy()
    single, single_history = train(one, False)
    many, many_history = train(strategy, False)
    # killed after 3 steps under the replicas, resumed on one device
    train(strategy, False, root=sys.argv[2], stop_after_steps=3)
    resumed, resumed_history = train(one, False, root=sys.argv[2])
    # dropout on: masks must differ between replicas fed the same images
    keras.utils.set_random_seed(0)
    generator, _ = purifier.build_networks((16, 16, 3), base_filters=4, name="d",
                                           strategy=strategy)
    same = tf.constant(np.repeat(clean[:1], strategy.num_replicas_in_sync, 0))
    dataset = tf.data.Dataset.from_tensors(same)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
    outputs = strategy.run(tf.function(lambda x: generator(x, training=True)), args=(batch,))
    outputs = [np.asarray(o) for o in strategy.experimental_local_results(outputs)]
    print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                      "single": single, "many": many, "resumed": resumed,
                      "losses": [single_history[-1], many_history[-1], resumed_history[-1]],
                      "dropout_differs": bool(np.abs(outputs[0] - outputs[1]).max() > 1e-4)}))
""")


@pytest.mark.parametrize("replicas", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_replicas_give_one_devices_update_and_resume_under_another_count(tmp_path, replicas):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(replicas), str(tmp_path / "ckpt")],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == replicas
    for name in ("many", "resumed"):
        for got, want in zip(result[name], result["single"]):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=2e-5,
                                       err_msg=name)
    single, many, resumed = result["losses"]
    for key in purifier.LOSS_NAMES:  # the reported means too (scaled back per replica)
        assert many[key] == pytest.approx(single[key], rel=1e-4), key
    assert resumed["step"] == single["step"] == 8
    assert result["dropout_differs"]


def test_every_pair_is_read_once_per_epoch_and_a_resumed_run_reads_the_rest():
    class Recorder:
        shape, dtype = (23, 4, 4, 3), np.dtype(np.float32)

        def __init__(self):
            self.seen = []

        def __len__(self):
            return self.shape[0]

        def rows(self, idx):
            self.seen += list(np.asarray(idx))
            return np.zeros((len(idx), 4, 4, 3), np.float32)

    epochs = [pairs.epoch_batches(23, 5, seed=0, epoch=e) for e in range(2)]
    for batches in epochs:  # 4 full batches; the 3 pairs of the tail wait for another epoch
        assert batches.shape == (4, 5) and len(set(batches.ravel())) == 20
    assert not np.array_equal(epochs[0], epochs[1])  # a new order every epoch
    source = Recorder()
    iterator = pairs.pair_dataset(source, np.zeros((23, 4, 4, 3), np.float32),
                                      np.concatenate(epochs), tf.distribute.get_strategy())
    for _ in range(8):
        x, y = next(iterator)
        assert x.shape == (5, 4, 4, 3) and x.dtype == tf.float32  # static, fixed: no tail
    assert sorted(source.seen) == sorted(np.concatenate(epochs).ravel())
    resumed = Recorder()  # a run resumed at step 6 reads the last two batches of epoch 2
    iterator = pairs.pair_dataset(resumed, np.zeros((23, 4, 4, 3), np.float32),
                                      np.concatenate(epochs)[6:], tf.distribute.get_strategy())
    next(iterator), next(iterator)
    assert sorted(resumed.seen) == sorted(epochs[1][2:].ravel())


def _one_step_weights(jit_compile):
    noisy, clean = toy_pairs(4, 8, seed=2)
    generator, discriminator = pix2pix_networks(8, seed=0)
    for layer in generator.layers:
        if "dropout" in layer.name:
            layer.rate = 0.0  # XLA draws its own masks; compare the arithmetic
    purifier.train_purifier(noisy, clean, generator=generator, discriminator=discriminator,
                            features=None, epochs=1, batch_size=4, verbose=False,
                            jit_compile=jit_compile)
    return generator.get_weights() + discriminator.get_weights()


def test_xla_step_equals_the_plain_step_and_holds_no_float64():
    for xla, plain in zip(_one_step_weights(True), _one_step_weights(False)):
        np.testing.assert_allclose(xla, plain, rtol=0, atol=1e-5)
    generator, discriminator = pix2pix_networks(8, seed=0)
    optimizers = [purifier.make_optimizer() for _ in range(2)]
    for optimizer, model in zip(optimizers, (generator, discriminator)):
        optimizer.build(model.trainable_variables)
    step = tf.function(purifier.make_train_step(generator, discriminator, None, *optimizers),
                       jit_compile=True)
    image, scalar = tf.TensorSpec((2, 8, 8, 3)), tf.TensorSpec(())
    graph = step.get_concrete_function(image, image, scalar, scalar).graph
    doubles = [op.name for op in graph.get_operations()
               for t in op.outputs if t.dtype == tf.float64]
    assert not doubles, doubles[:5]


def test_pairs_stream_from_float16_shards_and_uint8_images(tmp_path):
    """The versatile purifier's inputs read from two attacks' float16 shard sets by
    Float32Rows, targets from uint8 images: the same purifier as from the float32 arrays."""
    noisy, clean = toy_pairs(12, 8, seed=4)
    clean8 = np.round(clean * 255).astype(np.uint8)
    clean = clean8.astype(np.float32) / 255.0
    sets = [cache.cached_shards(tmp_path / name, 12, 5, lambda a, b, i, s=s: s[a:b],
                                dtype="float16", lazy=True)
            for name, s in (("a", noisy), ("b", 1 - noisy))]
    choice = np.arange(12) % 2
    mixed = pairs.Float32Rows(sets, choice)
    expected = np.where(choice[:, None, None, None] == 0, noisy, 1 - noisy)
    expected = expected.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(mixed.rows(np.arange(12)), expected)
    assert cache.digest(mixed) == cache.digest(expected)

    def trained(x_adv, x_clean):
        generator, discriminator = pix2pix_networks(8, seed=0)
        purifier.train_purifier(x_adv, x_clean, generator=generator,
                                discriminator=discriminator, features=None, epochs=1,
                                batch_size=4, verbose=False)
        return generator.get_weights()

    for got, want in zip(trained(mixed, clean8), trained(expected, clean)):
        np.testing.assert_array_equal(got, want)


def test_replica_dropout_is_keras_dropout_on_one_device():
    from tfadv.models.pix2pix import ReplicaDropout
    x = tf.ones((2, 64))
    ours, theirs = ReplicaDropout(0.5, seed=3), keras.layers.Dropout(0.5, seed=3)
    np.testing.assert_array_equal(ours(x, training=True), theirs(x, training=True))
    np.testing.assert_array_equal(ours(x, training=False), x)
