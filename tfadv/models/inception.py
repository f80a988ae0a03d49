"""Inception-v3 (keras.applications) as a logits classifier on [0, 1] pixels.

Its preprocessing (x -> 2x - 1) is the first layer, ``classifier_activation=None`` so it
returns logits. ``weights``: ``"imagenet"`` (downloads when online), a local weights file
(``.weights.h5`` / ``.h5`` as keras.applications saves them), or ``None`` (random weights:
only for tests; results made with them must say so loudly).
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

IMAGE_SIZE = 299


def inception_v3(weights: str | None = "imagenet", num_classes: int = 1000,
                 image_size: int = IMAGE_SIZE, input_size: int | None = None) -> keras.Model:
    """Inception-v3 logits for [0, 1] images. ``input_size``: the model takes images of that
    size and resizes them to ``image_size`` inside (bilinear, float32), so attacks and
    purifiers work at another size (paper 003: 256x256 images, 299 for the network)."""
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise ValueError(f"Inception-v3 weights file not found: {weights}. Pass 'imagenet' "
                         "(needs internet), the path of a keras.applications weights file, "
                         "or None for random weights (tests only).")
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    x = layers.Rescaling(2.0, offset=-1.0, name="inception_preprocess")(inputs)
    try:
        backbone = keras.applications.InceptionV3(
            include_top=True, weights="imagenet" if weights == "imagenet" else None,
            input_shape=(image_size, image_size, 3), classes=num_classes,
            classifier_activation=None)
    except Exception as err:  # offline download failure, size mismatch, ...
        raise ValueError(f"cannot build Inception-v3 with weights={weights!r}: {err}. "
                         "Offline, download the weights file elsewhere and pass its path.") from err
    if weights not in (None, "imagenet"):
        try:
            backbone.load_weights(weights)
        except Exception as err:
            raise ValueError(f"cannot load Inception-v3 weights from {weights}: {err}") from err
    logits = layers.Activation("linear", dtype="float32", name="logits")(backbone(x))
    model = keras.Model(inputs, logits, name="inception_v3")
    if input_size is None or input_size == image_size:
        return model
    outer = keras.Input((input_size, input_size, 3), name="pixels")
    resized = layers.Resizing(image_size, image_size, interpolation="bilinear", dtype="float32",
                              name=f"resize_to_{image_size}")(outer)
    return keras.Model(outer, model(resized), name=f"inception_v3_from_{input_size}")
