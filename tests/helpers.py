"""Shared test helpers: a small classifier trained on scikit-learn's digits (offline, ~3 s),
images made here, tiny pix2pix networks, and running an experiment's command line.

``trained_digits_model()`` is cached per process, so every test module of one pytest session
shares the same model. Test modules wrap it in a module-scoped fixture.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from tfadv import data
from tfadv.evaluation import accuracy
from tfadv.models.resnet import tiny_cnn
from tfadv.models.train import fit

DIGITS_SHAPE = (8, 8, 1)
REPO_ROOT = Path(__file__).resolve().parents[1]


class Trained(NamedTuple):
    model: keras.Model
    train: data.ImageSet
    test: data.ImageSet
    test_accuracy: float


@functools.lru_cache(maxsize=None)
def trained_digits_model() -> Trained:
    """``tiny_cnn(width=8)`` trained 30 epochs on digits: about 94% test accuracy (chance 10%).

    Never modify the returned model in a test; copy it (``keras.models.clone_model`` +
    ``set_weights``) when a test needs to change weights.
    """
    train = data.load("digits", "train", cache_dir=None)
    test = data.load("digits", "test", cache_dir=None)
    keras.utils.set_random_seed(0)
    model = tiny_cnn(num_classes=10, input_shape=DIGITS_SHAPE, width=8)
    fit(model, train.images, train.labels, epochs=30, batch_size=32, learning_rate=1e-2,
        schedule="cosine", augment=False, seed=0, verbose=False)
    acc = accuracy(model, test.images, test.labels)
    # Guard: every attack test below assumes a model far above chance.
    assert acc >= 0.85, f"digits test model only reached {acc:.3f} test accuracy"
    return Trained(model, train, test, acc)


def correctly_classified(trained: Trained, n: int, seed: int = 0):
    """``n`` test images (and labels) the model classifies correctly, chosen with ``seed``."""
    from tfadv.evaluation import predict
    test = trained.test
    ok = np.flatnonzero(predict(trained.model, test.images) == test.labels)
    idx = np.random.default_rng(seed).choice(ok, size=n, replace=False)
    return test.images[idx], test.labels[idx]


def smooth_images(n: int = 4, size: int = 32, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Smooth images (random low-frequency sinusoids per channel) in [0.1, 0.9], float32."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 1, size)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    images = np.empty((n, size, size, channels), np.float32)
    for i in range(n):
        for c in range(channels):
            fy, fx, phase = rng.uniform(0.5, 2.0), rng.uniform(0.5, 2.0), rng.uniform(0, 6.3)
            images[i, ..., c] = 0.5 + 0.4 * np.sin(2 * np.pi * (fy * yy + fx * xx) + phase)
    return images


def noisy(images: np.ndarray, sigma: float = 0.08, seed: int = 1) -> np.ndarray:
    """``images`` plus seeded Gaussian noise, clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    return np.clip(images + rng.normal(0, sigma, images.shape), 0, 1).astype(np.float32)


# --------------------------------------------------------------------------- pix2pix purifier

def toy_pairs(n, side, seed=0, noise=0.1):
    """Smooth clean images (4x4 random colours, bilinearly upsampled) and noisy copies."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, (n, 4, 4, 3)).astype(np.float32)
    clean = tf.image.resize(coarse, (side, side), "bilinear").numpy()
    noisy = np.clip(clean + rng.normal(0, noise, clean.shape), 0, 1).astype(np.float32)
    return noisy, clean


def pix2pix_networks(side, seed=0, base_filters=8):
    """A seeded pix2pix U-Net generator and PatchGAN discriminator for side x side x 3 images."""
    from tfadv.models import pix2pix
    keras.utils.set_random_seed(seed)
    return (pix2pix.unet_generator((side, side, 3), base_filters=base_filters),
            pix2pix.patchgan_discriminator((side, side, 3), base_filters=base_filters))


@contextlib.contextmanager
def mixed_precision(name):
    """Keras's global dtype policy set to ``name`` inside the block, restored after."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


# --------------------------------------------------------------------------- experiments

def run_module(module, *args, cache=None, timeout=600, expect=0):
    """``python -m module *args`` from the repository root; with ``cache`` (the fixture of
    tests/experiments/conftest.py), under its cache root."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFADV_")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if cache is not None:
        args = (*args, f"--cache_dir={cache.root}")
        env["TFADV_CACHE"] = str(cache.unused)
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == expect, (f"{module}: exit status {proc.returncode}:\n"
                                       f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def one_error_line(proc, experiment: str) -> str:
    """The one line a user error prints (last on stderr, no traceback)."""
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    ours = [line for line in proc.stderr.splitlines() if line.startswith(f"{experiment}:")]
    assert len(ours) == 1 and proc.stderr.strip().splitlines()[-1] == ours[0], proc.stderr
    return ours[0]


@contextlib.contextmanager
def op_determinism():
    """TensorFlow op determinism inside the block, switched back off after (it is
    process-wide; other tests may use ops that have no deterministic kernel)."""
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config
    was_enabled = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was_enabled:
            tf_config.disable_op_determinism()


# ImageNet-style dry runs: three real wnids (class ids 0, 766, 999), random JPEGs, random
# Inception-v3 weights that call every image class 999.
IMAGENET_WNIDS = ("n01440764", "n04111531", "n15075141")


def imagenet_folder(root, per_split: dict, size=(20, 16)):
    """``root/<split>/<wnid>/*.JPEG``: ``per_split[split]`` random images per class."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in per_split.items():
        for wnid in IMAGENET_WNIDS:
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG")
    return root


def random_inception_weights(path):
    """keras.applications' Inception-v3 with random weights saved to ``path``, its logits ~ a
    bias that gives class 999 softmax 0.6 (e^b / (e^b + 999) = 0.6: b = log(1498.5)); the
    random features add about 1e-3, so the gradients are not zero."""
    keras.utils.set_random_seed(0)
    model = keras.applications.InceptionV3(weights=None, classifier_activation=None)
    kernel, bias = model.get_layer("predictions").get_weights()
    bias[:] = 0
    bias[999] = np.log(0.6 * 999 / 0.4)
    model.get_layer("predictions").set_weights([kernel, bias])
    model.save_weights(path)
    return path
