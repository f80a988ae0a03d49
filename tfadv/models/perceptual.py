"""Perceptual feature networks and the perceptual loss of paper 003 (eq. 3).

Paper 003 (after Zhang & Sakurai 2021) compares the features of the purified image and of the
clean target in "the kth layer" of an ImageNet VGG19 and takes "the mean of the differences".
It names neither the layers nor the norm (its equations are lost in our copy), so:

* layers: :data:`VGG19_LAYERS`, the last conv of each of VGG19's five blocks (post-ReLU), a
  common choice for perceptual losses; pass ``layers=`` to change it;
* difference: mean absolute difference per layer (``distance="l1"``, like its pixel loss),
  averaged over the layers; ``distance="l2"`` gives the mean squared difference instead.

Where ImageNet VGG19 weights cannot be had (offline, no local file), :func:`classifier_features`
turns a trained classifier of the suite into the feature network: an independent one (the
zoo's ``cifar10_vgg6_w32``, paper 003's CIFAR-10 proxy) or the attacked classifier itself
(a classifier-guided denoiser, as HGD). Such networks' features are far smaller than
VGG19's on caffe-scaled 0-255 inputs, so :func:`normalised` divides each layer by its mean
absolute activation on clean images (a difference of 1.0 = as large as the features).
:func:`describe` says for run.json which network, weights, layers and scaling a run used.
Feature networks take [0, 1] pixels, as every model of the suite, and are frozen.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers as klayers

VGG19_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv4", "block4_conv4", "block5_conv4")
# keras.applications.vgg19.preprocess_input ("caffe" mode): RGB -> BGR, minus these means.
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
DISTANCES = ("l1", "l2")


def _caffe_preprocess(x):
    """[0, 1] RGB -> VGG19's input (255 x, BGR order, ImageNet mean removed) as one fixed 1x1
    conv: a serialisable layer (no Lambda), kept in float32 under mixed precision."""
    kernel = np.zeros((1, 1, 3, 3), np.float32)
    for rgb in range(3):
        kernel[0, 0, rgb, 2 - rgb] = 255.0
    conv = klayers.Conv2D(3, 1, dtype="float32", trainable=False, name="caffe_preprocess")
    out = conv(x)
    conv.set_weights([kernel, -np.asarray(_CAFFE_BGR_MEAN, np.float32)])
    return out


def vgg19_features(weights: str | None = "imagenet", layers=VGG19_LAYERS,
                   input_shape=(256, 256, 3), allow_random: bool = False) -> keras.Model:
    """A frozen VGG19 mapping [0, 1] images to the list of feature maps of ``layers``.

    weights: ``"imagenet"`` (keras.applications downloads it; needs internet), the path of a
    local ``.weights.h5`` / ``.h5`` / ``.keras`` file of ``VGG19(include_top=False)``
    (keras.applications' ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``), or ``None``
    for random weights, which only ``allow_random=True`` accepts (speed benchmarks, tests):
    random features must never stand in for the paper's network silently.
    """
    height, width, channels = (int(v) for v in input_shape)
    if channels != 3 or min(height, width) < 32:
        raise ValueError(f"VGG19 needs RGB images of at least 32x32, got {tuple(input_shape)}: "
                         "resize the images or use classifier_features(...) instead.")
    if weights is None and not allow_random:
        raise ValueError("vgg19_features(weights=None) gives random, meaningless features; "
                         "pass allow_random=True if that is really meant (timing, tests), "
                         "else weights='imagenet' or the path of a local VGG19 weights file.")
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise ValueError(f"VGG19 weights file not found: {weights}. Pass 'imagenet' (needs "
                         "internet) or the path of a keras.applications VGG19 (include_top="
                         "False) weights file such as "
                         "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5.")
    try:
        backbone = keras.applications.VGG19(
            include_top=False, weights="imagenet" if weights == "imagenet" else None,
            input_shape=(height, width, 3))
    except Exception as err:  # offline download failure, ...
        raise ValueError(f"cannot build VGG19 with weights={weights!r}: {err}. Offline, "
                         "download vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 elsewhere "
                         "and pass its local path as weights=.") from err
    if weights not in (None, "imagenet"):
        try:
            backbone.load_weights(weights)
        except Exception as err:
            raise ValueError(f"cannot load VGG19 weights from {weights}: {err}. It must hold "
                             "VGG19(include_top=False) weights.") from err
    features = _intermediate(backbone, layers)
    inputs = keras.Input((height, width, 3), name="pixels")
    model = keras.Model(inputs, features(_caffe_preprocess(inputs)), name="vgg19_features")
    return _frozen(model, {"network": "VGG19 (keras.applications, include_top=False)",
                           "weights": "random (allow_random)" if weights is None else str(weights),
                           "layers": list(layers)})


def classifier_features(model: keras.Model, layer_names=None, count: int = 4) -> keras.Model:
    """A frozen copy of a trained classifier mapping images to a list of its feature maps.

    The stand-in perceptual network when ImageNet VGG19 weights are out of reach (say the
    suite's CIFAR ResNet-18). Default layers: ``count`` evenly spaced activations with a
    spatial (4-D) output, from the first to the last (ReLU / Activation / LeakyReLU layers,
    and convolutions with a built-in activation); for the suite's ResNet-18 that is
    stem_relu, s1b0_relu1, s2b1_relu1 and s3b1_out (32, 16, 8 and 4 pixels a side at 32x32).
    The classifier itself is copied, never frozen or changed.
    """
    if layer_names is None:
        candidates = [layer.name for layer in model.layers if _is_activation(layer)
                      and len(layer.output.shape) == 4]
        if not candidates:
            raise ValueError(f"{model.name} has no activation layer with a spatial output; "
                             "pass layer_names= explicitly.")
        picks = np.unique(np.round(np.linspace(0, len(candidates) - 1, count)).astype(int))
        layer_names = [candidates[i] for i in picks]
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return _frozen(_intermediate(clone, layer_names, name="classifier_features"),
                   {"network": f"classifier {model.name}", "weights": "the classifier's",
                    "layers": list(layer_names)})


def normalised(features_model: keras.Model, clean, batch_size: int = 250) -> keras.Model:
    """``features_model`` with each output divided by its mean absolute value over ``clean``
    images (float32, fixed): every layer's difference becomes relative to the size of its
    features, so no layer dominates by its scale and the term's size does not depend on the
    network's. The scales join the description (and so the purifiers' cache keys)."""
    clean = np.asarray(clean, np.float32)
    if clean.ndim != 4 or not len(clean):
        raise ValueError(f"normalised() needs a batch of clean images, got shape {clean.shape}")
    sums = None
    for start in range(0, len(clean), batch_size):
        outs = features_model(clean[start:start + batch_size], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        part = [float(tf.reduce_sum(tf.abs(tf.cast(o, tf.float32)))) for o in outs]
        sums = part if sums is None else [a + b for a, b in zip(sums, part)]
    sizes = [int(np.prod(o.shape[1:])) * len(clean) for o in features_model.outputs]
    scales = [total / size for total, size in zip(sums, sizes)]
    if min(scales) <= 0:
        raise ValueError(f"a feature layer is all zeros on the clean images (scales {scales}): "
                         "pick other layers")
    inputs = keras.Input(features_model.input_shape[1:], name="pixels")
    outs = features_model(inputs)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    scaled = [klayers.Rescaling(1.0 / scale, dtype="float32", name=f"per_layer_scale{i}")(o)
              for i, (o, scale) in enumerate(zip(outs, scales))]
    model = keras.Model(inputs, scaled, name=f"{features_model.name}_normalised")
    info = dict(describe(features_model))
    info["normalisation"] = (f"each layer / its mean |activation| on {len(clean)} clean "
                             "images: " + ", ".join(f"{s:.4g}" for s in scales))
    return _frozen(model, {k: info[k] for k in ("network", "weights", "layers",
                                                "normalisation")})


def perceptual_loss(features_model: keras.Model, x, y, distance: str = "l1"):
    """Mean over the feature layers of the mean absolute (``"l1"``) or squared (``"l2"``)
    difference between the features of ``x`` (the generated image) and ``y`` (the target).

    A float32 scalar under any precision policy. Gradients flow to ``x`` only: the target's
    features are constants and the network is frozen (inference mode, no weight updates).
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    fx = features_model(x, training=False)
    fy = features_model(y, training=False)
    if not isinstance(fx, (list, tuple)):
        fx, fy = [fx], [fy]
    terms = []
    for a, b in zip(fx, fy):
        diff = tf.cast(a, tf.float32) - tf.stop_gradient(tf.cast(b, tf.float32))
        terms.append(tf.reduce_mean(tf.abs(diff) if distance == "l1" else tf.square(diff)))
    return tf.add_n(terms) / len(terms)


def describe(features_model: keras.Model | None) -> dict:
    """For run.json: which network, which weights and which layers give the perceptual term."""
    if features_model is None:
        return {"network": None, "weights": None, "layers": [], "normalisation": "none",
                "note": "no perceptual loss term"}
    info = getattr(features_model, "tfadv_description", None)
    if info is None:  # a feature network built elsewhere: say what can be seen
        info = {"network": features_model.name, "weights": "unknown",
                "layers": [t.name for t in features_model.outputs]}
    return {"normalisation": "none", **dict(info), "layers": list(info["layers"]),
            "trainable": False}


def _intermediate(backbone: keras.Model, layer_names, name=None) -> keras.Model:
    missing = [n for n in layer_names if n not in {layer.name for layer in backbone.layers}]
    if missing:
        raise ValueError(f"{backbone.name} has no layers {missing}; its layers are "
                         f"{[layer.name for layer in backbone.layers]}")
    return keras.Model(backbone.input, [backbone.get_layer(n).output for n in layer_names],
                       name=name or f"{backbone.name}_taps")


def _is_activation(layer) -> bool:
    if isinstance(layer, (klayers.ReLU, klayers.Activation, klayers.LeakyReLU)):
        return True
    activation = getattr(layer, "activation", None)
    return isinstance(layer, klayers.Conv2D) and activation not in (None, keras.activations.linear)


def _frozen(model: keras.Model, info: dict) -> keras.Model:
    model.trainable = False
    model.tfadv_description = info
    return model


def choose(kind: str, *, classifier: keras.Model | None = None, classifier_name: str = "",
           vgg19_weights: str | None = "imagenet", image_size: int = 224, zoo_model=None,
           normalise_on=None):
    """``(features, info)``: the frozen feature network of a perceptual loss and, for
    run.json and every results note, what it is. ``kind``: ``vgg19`` (the paper's, ImageNet
    weights or a file), ``classifier`` (the attacked classifier's own features: a
    classifier-guided SUBSTITUTE), the name of a zoo classifier (an independent SUBSTITUTE,
    e.g. ``cifar10_vgg6_w32``; ``zoo_model(name)`` gives its Keras model) or ``none`` (no
    perceptual term); every substitute is said loudly in ``info["note"]``.
    ``normalise_on``: clean images; when given, each layer is divided by its mean absolute
    activation on them (:func:`normalised`)."""
    from tfadv.models import vgg, zoo
    if kind == "vgg19":
        features = vgg19_features(vgg19_weights, input_shape=(image_size, image_size, 3))
    elif kind == "classifier":
        features = classifier_features(classifier)
    elif kind in zoo.RECIPES:
        if zoo_model is None:
            raise ValueError(f"perceptual={kind!r} (a zoo network) needs zoo_model=")
        network = zoo_model(kind)
        taps = vgg.perceptual_layers(network) or None  # a VGG's block ends, else evenly spaced
        features = classifier_features(network, taps)
        features.tfadv_description = dict(features.tfadv_description,
                                          network=f"{kind} (zoo, independent of the classifier)",
                                          weights=f"trained on {image_size}x{image_size} images "
                                          "by the suite")
    elif kind == "none":
        features = None
    else:
        raise ValueError(f"perceptual must be vgg19, classifier, none or a zoo classifier "
                         f"({', '.join(sorted(zoo.RECIPES))}), got {kind!r}")
    if features is not None and normalise_on is not None:
        features = normalised(features, normalise_on)
    info = dict(describe(features), substitute=kind != "vgg19",
                paper="VGG19 with ImageNet weights")
    scaling = "" if info["normalisation"] == "none" else f"; {info['normalisation']}"
    if kind == "vgg19":
        info["note"] = f"Perceptual loss: VGG19 ({vgg19_weights} weights), as the paper{scaling}."
    elif kind in zoo.RECIPES:
        info["note"] = (
            f"NOTE: the perceptual loss used a SUBSTITUTE feature network: {info['network']} "
            f"({info['weights']}; layers {', '.join(info['layers'])}{scaling}) -- independent "
            f"of the classifier ({classifier_name}) but NOT the paper's ImageNet VGG19 (its "
            "weights cannot be had here; pass --set=perceptual=vgg19 --vgg19_weights=FILE to "
            "use them).")
    else:
        info["note"] = (
            f"NOTE: the perceptual loss used a SUBSTITUTE feature network, "
            f"{'none (no perceptual term)' if features is None else info['network']} "
            f"({info['weights']}; layers {', '.join(info['layers'])}{scaling}) -- "
            f"the classifier is {classifier_name} -- NOT the paper's ImageNet VGG19 (its "
            "weights cannot be had here; pass --set=perceptual=vgg19 --vgg19_weights=FILE to "
            "use them). The purifiers may differ from the paper's for that reason.")
    return features, info
