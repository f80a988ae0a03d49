"""The x2 super-resolution network of the SR + WD baseline (Mustafa et al. 2019), its
trainer, and a cached copy per training setting."""

from __future__ import annotations


import keras
import numpy as np
import tensorflow as tf
from keras import layers

from tfadv import cache, checks
from tfadv.batching import map_batches
from tfadv.data import resize_images


def sr_network(scale: int = 2, channels: int = 3, filters: int = 64, blocks: int = 4,
               name: str = "sr_edsr") -> keras.Model:
    """A small EDSR-like super-resolution CNN: ``(n, h, w, c)`` -> ``(n, scale*h, scale*w, c)``.

    Mustafa et al. use a pretrained EDSR (Lim et al. 2017); its weights cannot be downloaded
    here, so the suite trains this smaller network (:func:`train_sr`). The structure follows
    EDSR: a head conv, ``blocks`` residual blocks (conv-ReLU-conv, no batch norm), a long skip,
    then upsampling. Two differences keep the model loadable with ``safe_mode=True`` (no Lambda
    layer) using only built-in layers:

    - upsampling is "resize-convolution" (nearest ``UpSampling2D`` then conv) instead of EDSR's
      sub-pixel ``depth_to_space``, which Keras has no built-in layer for;
    - the network predicts a residual over the bilinearly upsampled input, which makes a small
      network train fast; a ``ReLU(max_value=1)`` keeps the float32 output in [0, 1].

    Input size is not fixed (fully convolutional); pixels are [0, 1] in and out.
    """
    scale = checks.integer("scale", scale, 2)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    filters, blocks = checks.integer("filters", filters, 1), checks.integer("blocks", blocks, 0)
    inputs = keras.Input((None, None, channels), name="low_res")           # (n, h, w, c)
    x = layers.Conv2D(filters, 3, padding="same", name="head")(inputs)     # (n, h, w, f)
    head = x
    for b in range(blocks):
        y = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"res{b}_conv1")(x)
        y = layers.Conv2D(filters, 3, padding="same", name=f"res{b}_conv2")(y)
        x = layers.Add(name=f"res{b}_add")([x, y])
    x = layers.Conv2D(filters, 3, padding="same", name="body_out")(x)
    x = layers.Add(name="long_skip")([x, head])                             # (n, h, w, f)
    x = layers.UpSampling2D(scale, interpolation="nearest", name="upsample")(x)  # (n, sh, sw, f)
    x = layers.Conv2D(filters, 3, padding="same", activation="relu", name="up_conv")(x)
    residual = layers.Conv2D(channels, 3, padding="same", name="tail")(x)  # (n, sh, sw, c)
    base = layers.UpSampling2D(scale, interpolation="bilinear", name="bilinear")(inputs)
    x = layers.Add(name="add_base")([base, residual])
    outputs = layers.ReLU(max_value=1.0, dtype="float32", name="clip01")(x)  # [0, 1], float32
    return keras.Model(inputs, outputs, name=name)


def make_sr_pairs(images, scale: int = 2):
    """``(low, high)`` training pairs: ``high`` the images, ``low`` them downscaled by ``scale``
    with area interpolation (a box filter, the usual antialiased downscaling for SR data)."""
    high = checks.images(images, "images", channels=(1, 3))
    scale = checks.integer("scale", scale, 2)
    _, h, w, _ = high.shape
    if h % scale or w % scale:
        raise ValueError(f"image size {h}x{w} is not divisible by the scale {scale}; crop the "
                         "images so both sides are multiples of it")
    if not len(high):
        return high[:, ::scale, ::scale], high
    return resize_images(high, (h // scale, w // scale), "area"), high


def train_sr(images, *, epochs: int = 10, batch_size: int = 32, seed: int = 0,
             learning_rate: float = 1e-3, model: keras.Model | None = None, filters: int = 64,
             blocks: int = 4, verbose: bool = True) -> keras.Model:
    """Trains a x2 super-resolution network on clean images with an L1 loss (as EDSR) and Adam.

    Pairs come from :func:`make_sr_pairs`: the network learns to undo area downscaling by 2. The
    suite trains its own network because pretrained SR weights cannot be downloaded offline.
    ``model`` continues training a given network (built by :func:`sr_network`); otherwise a new
    one with ``filters`` and ``blocks`` is built with ``keras.utils.set_random_seed(seed)``. The
    step is a ``tf.function``; batches are shuffled each epoch by ``np.random.default_rng(seed)``.
    Returns the trained model.
    """
    low, high = make_sr_pairs(images, scale=2)
    epochs = checks.integer("epochs", epochs, 0)
    batch_size = checks.integer("batch_size", batch_size, 1)
    if not len(high):
        raise ValueError("train_sr needs at least one image")
    if not np.isfinite(learning_rate) or learning_rate <= 0:
        raise ValueError(f"learning_rate must be a finite number > 0, got {learning_rate}")
    keras.utils.set_random_seed(seed)
    if model is None:
        model = sr_network(scale=2, channels=high.shape[-1], filters=filters, blocks=blocks)
    elif model.input_shape[-1] != high.shape[-1]:
        raise ValueError(f"the SR model takes {model.input_shape[-1]} channels but the images "
                         f"have {high.shape[-1]}")
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build(model.trainable_variables)
    spec_low = tf.TensorSpec((None, *low.shape[1:]), tf.float32)
    spec_high = tf.TensorSpec((None, *high.shape[1:]), tf.float32)

    @tf.function(input_signature=[spec_low, spec_high])
    def step(lo, hi):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(tf.cast(model(lo, training=True), tf.float32) - hi))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        order = rng.permutation(len(high))
        losses = [float(step(low[idx], high[idx]))
                  for idx in (order[i:i + batch_size] for i in range(0, len(order), batch_size))]
        if verbose:
            print(f"train_sr epoch {epoch + 1}/{epochs}: L1 {np.mean(losses):.5f}")
    return model


def super_resolve(x, sr_model: keras.Model, *, batch_size: int = 64) -> np.ndarray:
    """``sr_model`` applied in batches: float32 in [0, 1], ``scale`` times larger."""
    x = checks.images(x, "x", channels=(1, 3))
    if sr_model.input_shape[-1] != x.shape[-1]:
        raise ValueError(f"the SR model takes {sr_model.input_shape[-1]} channels but the "
                         f"images have {x.shape[-1]}; train it on images like these")
    batch_size = checks.integer("batch_size", batch_size, 1)
    if not len(x):
        raise ValueError("super_resolve needs at least one image")
    out = map_batches(lambda part: sr_model(tf.constant(part), training=False), x,
                      batch_size=batch_size)
    return np.clip(out, 0.0, 1.0)


def train_cached(images, *, epochs: int, batch_size: int, filters: int, blocks: int,
                 seed: int = 0, precision: str = "float32", cache_dir=None,
                 verbose: bool = False):
    """The x2 SR network trained on ``images`` once and cached under ``<cache>/models``;
    returns ``(model, path, trained_now)``."""
    from tfadv import models
    settings = {"images": cache.digest(images), "epochs": epochs, "batch_size": batch_size,
                "filters": filters, "blocks": blocks, "seed": seed, "precision": precision}
    path = cache.root(cache_dir) / "models" / f"sr_x2-{cache.key('sr', settings)}.keras"
    if path.exists():
        return models.load(path), path, False
    model = train_sr(images, epochs=epochs, batch_size=batch_size, seed=seed, filters=filters,
                     blocks=blocks, verbose=verbose)
    models.save(model, path)
    return model, path, True
