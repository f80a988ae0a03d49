"""Shared test helpers: a small classifier trained on scikit-learn's digits (offline, ~3 s).

``trained_digits_model()`` is cached per process, so every test module of one pytest session
shares the same model. Test modules wrap it in a module-scoped fixture.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import keras
import numpy as np

from tfadv import data
from tfadv.evaluation import accuracy
from tfadv.models.resnet import tiny_cnn
from tfadv.models.train import fit

DIGITS_SHAPE = (8, 8, 1)


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
