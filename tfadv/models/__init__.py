"""Classifiers (logits out, [0, 1] pixels in), saving/loading, and cached training."""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

import keras

from tfadv import cache
from tfadv.distribute import is_chief
from tfadv.models import vgg  # the module (perceptual.choose reads its taps)
from tfadv.models.resnet import resnet18, tiny_cnn

# The architectures ``build`` makes, by name (the zoo's recipes name them); named variants as
# one-liners.
ARCHITECTURES = {
    "resnet18": resnet18,
    "resnet18_w32": functools.partial(resnet18, width=32),
    "resnet18_w16": functools.partial(resnet18, width=16),
    "tiny_cnn": tiny_cnn,
    "vgg6_w32": functools.partial(vgg.vgg, widths=(32, 64, 128), name="vgg6_w32"),
}


def build(architecture: str, num_classes: int, input_shape) -> keras.Model:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose from "
                         f"{sorted(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](num_classes=num_classes, input_shape=tuple(input_shape))


def save(model: keras.Model, path: str | os.PathLike) -> None:
    """Saves as ``.keras`` to a local path or a ``gs://`` URL, atomically (a killed save leaves
    the old file or none); a non-chief worker saves nothing (:func:`tfadv.distribute.is_chief`).
    """
    path = cache.path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model files end in .keras, got {path}")
    if not is_chief():
        return
    # Keras writes only to a local file named .keras: save in a private temporary folder,
    # then copy the bytes with the cache's atomic write (local, a mounted Drive or gs://).
    with tempfile.TemporaryDirectory(prefix="tfadv-model-") as tmp:
        local = os.path.join(tmp, "model.keras")
        model.save(local)
        with open(local, "rb") as saved:
            cache.atomic_write(path, lambda f: shutil.copyfileobj(saved, f))


def load(path: str | os.PathLike) -> keras.Model:
    """Loads a ``.keras`` model (a local path or a ``gs://`` URL) with ``safe_mode=True`` (no
    arbitrary code from the file)."""
    from tfadv.models import pix2pix  # noqa: F401 (registers the suite's layers for Keras)
    path = cache.path(path)
    if not path.exists():
        raise ValueError(f"model file not found: {path}. Train it first (the experiment "
                         "does so and caches it) or pass the right path.")
    try:
        if cache.is_local(path):
            return keras.models.load_model(os.fspath(path), safe_mode=True, compile=False)
        # Keras reads a local file: a private temporary copy of the remote one
        with tempfile.TemporaryDirectory(prefix="tfadv-model-") as tmp:
            local = Path(tmp) / "model.keras"
            local.write_bytes(cache.read_bytes(path))
            return keras.models.load_model(local, safe_mode=True, compile=False)
    except Exception as err:
        raise ValueError(f"cannot load model {path}: {err}. The file is corrupt or not a "
                         "Keras 3 .keras file: delete it to retrain.") from err


def train_cached(data, *, architecture: str, epochs: int, batch_size: int = 128,
                 learning_rate: float = 1e-3, schedule: str = "cosine", augment: bool = True,
                 seed: int = 0, precision: str = "float32", data_id: str = "", cache_dir=None,
                 x_val=None, y_val=None, verbose: bool = True):
    """Trains a classifier on ``data`` once and caches it under ``<cache root>/models``
    (:mod:`tfadv.cache`); later calls load the cached file.

    The cache key covers every argument that changes the weights (``data_id`` names the data
    source) and the classifier code version. Training checkpoints live beside the model, so a
    killed run resumes. Returns ``(model, path, history)``.
    """
    from tfadv.models.train import fit, resolve_precision
    precision = resolve_precision(precision)  # "auto" differs by machine: key the real one
    config = {"architecture": architecture, "epochs": epochs, "batch_size": batch_size,
              "learning_rate": learning_rate, "schedule": schedule, "augment": augment, "seed": seed,
              "precision": precision, "data": data_id, "n": int(len(data.labels)),
              "input_shape": list(data.images.shape[1:]), "classes": data.num_classes}
    stem = f"{architecture}-{cache.key('classifier', config)}"
    model_dir = cache.root(cache_dir) / "models"
    path = model_dir / f"{stem}.keras"
    info_path = path.with_suffix(".json")
    if path.exists():
        history = json.loads(info_path.read_text())["history"] if info_path.exists() else []
        return load(path), path, history
    keras.utils.set_random_seed(seed)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)  # layers take the policy when built
    try:
        model = build(architecture, data.num_classes, data.images.shape[1:])
    finally:
        keras.mixed_precision.set_global_policy(previous)
    history = fit(model, data.images, data.labels, epochs=epochs, batch_size=batch_size,
                  learning_rate=learning_rate, schedule=schedule, augment=augment, seed=seed,
                  ckpt_dir=model_dir / f"{stem}.ckpt", log_dir=model_dir / stem,
                  x_val=x_val, y_val=y_val, verbose=verbose)
    save(model, path)
    cache.write_json(info_path, {"config": config, "history": history})
    return model, path, history
