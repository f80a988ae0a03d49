"""Named classifiers that every experiment asks for: trained on first use and cached, or
pretrained from Keras' ImageNet weights or a file.

``load(name, data=..., ...)`` returns a :class:`Classifier` (Keras model with logits out and
[0, 1] pixels in, its id for cache keys, a description for reports). Trained entries are
:data:`RECIPES` (architecture + training settings + the dataset they are trained on), cached
by :func:`tfadv.models.train_cached` under ``<cache root>/models`` with every setting and the
classifier code version in the key; pretrained ones are :data:`PRETRAINED`.

A new classifier: a recipe line here (or a builder in :data:`PRETRAINED`); a new architecture:
a builder in a module of tfadv/models (as resnet.py, vgg.py), named in ``ARCHITECTURES``
(tfadv/models/__init__.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import keras

# Paper 001's recipe (Karakus et al.): Adam 1e-3 with cosine decay, batch 128, flips and crops.
_CIFAR10 = dict(data="cifar10", batch_size=128, learning_rate=1e-3, schedule="cosine",
                augment=True, precision="auto", train_n=0, val_n=2000, val_seed=999)
# Digits are offline and tiny: a small CNN trained in seconds, no augmentation.
_DIGITS = dict(data="digits", architecture="tiny_cnn", batch_size=32, learning_rate=1e-2,
               schedule="cosine", augment=False, precision="float32", train_n=0, val_n=2000,
               val_seed=999)
RECIPES = {
    # paper 001's base model: full-width ResNet-18 (a GPU), and at half width in bf16, which
    # fits a 2-core CPU (86.8% in about an hour; notes/DECISIONS.md)
    "cifar10_resnet18": dict(_CIFAR10, architecture="resnet18", epochs=60),
    "cifar10_resnet18_w32": dict(_CIFAR10, architecture="resnet18_w32", epochs=20),
    # paper 003's CIFAR-10 proxy: its independent perceptual network (the paper's is an
    # ImageNet VGG19) and, at another seed, the second classifier of its diagnostics
    "cifar10_vgg6_w32": dict(_CIFAR10, architecture="vgg6_w32", epochs=10),
    # paper 001's quick and smoke classifiers (also paper 003's and 004's offline ones)
    "digits_tiny_cnn": dict(_DIGITS, epochs=30),
    "digits_tiny_cnn_smoke": dict(_DIGITS, epochs=20),
    # a tiny CNN on 10,000 images of any dataset given (paper 003 quick/smoke with --data)
    "tiny_cnn_10k": dict(data=None, architecture="tiny_cnn", epochs=8, batch_size=128,
                         learning_rate=3e-3, schedule="cosine", augment=True, precision="auto",
                         train_n=10000, val_n=1000, val_seed=9),
}
PRETRAINED = ("inception_v3",)
NAMES = tuple(RECIPES) + PRETRAINED

# keras.applications' weight files: what preflight checks look for before a long run.
KERAS_WEIGHTS = {
    "Inception-v3": ("inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
                     "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
                     "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"),
    "VGG19": ("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
              "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
              "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}


class Classifier(NamedTuple):
    model: keras.Model
    id: str            # names the weights in cache keys (a file stem)
    description: str
    path: os.PathLike | None  # the cached file, an epath: local or gs:// (None: pretrained)
    history: list


def data_id(source: str) -> str:
    """A short, machine-independent name for a data source (part of model cache keys)."""
    path = Path(os.path.expanduser(str(source)))
    if path.is_file():
        return f"{path.name}:{path.stat().st_size}"
    return path.name if path.exists() else str(source)


def load(name: str, *, data: str | None = None, data_dir: str | None = None,
         train=None, test=None, seed: int = 0, cache_dir=None, verbose: bool = True,
         weights: str | None = "imagenet", input_size: int | None = None) -> Classifier:
    """The classifier ``name`` (:data:`NAMES`).

    Recipes train on ``data`` (default: the recipe's dataset; a path to a local copy of it
    works too), loaded with ``data_dir`` unless ``train``/``test`` ImageSets are given; the
    file is cached, so later calls load it. ``inception_v3`` takes ``weights`` ("imagenet",
    a file, or None for random weights: tests only, and results must say so) and
    ``input_size`` (the model resizes inside to 299).
    """
    if name == "inception_v3":
        from tfadv import cache
        from tfadv.models.inception import inception_v3
        model = inception_v3(weights, input_size=input_size)
        described = ("RANDOM weights (not pretrained: tests only)" if weights is None
                     else f"{weights} weights")
        return Classifier(model, f"inception_v3-{cache.key('classifier', {'w': weights})}",
                          f"Inception-v3 ({described}"
                          + (f", input resized {input_size} -> 299 inside the model)"
                             if input_size else ")"), None, [])
    if name not in RECIPES:
        raise ValueError(f"unknown classifier {name!r}; the zoo has {sorted(NAMES)}")
    from tfadv import data as datasets
    from tfadv import models
    recipe = RECIPES[name]
    source = data or recipe["data"]
    if source is None:
        raise ValueError(f"classifier {name!r} trains on the data it is given: pass data=")
    if train is None or test is None:
        # data.load's cache_dir=None means no dataset cache; here None is the default root
        root = "default" if cache_dir is None else cache_dir
        train = datasets.load(source, "train", data_dir=data_dir, cache_dir=root)
        test = datasets.load(source, "test", data_dir=data_dir, cache_dir=root)
    if recipe["train_n"]:
        train = datasets.subset(train, n=min(recipe["train_n"], len(train.labels)), seed=seed)
    val = datasets.subset(test, n=min(recipe["val_n"], len(test.labels)),
                          seed=seed + recipe["val_seed"])
    model, path, history = models.train_cached(
        train, architecture=recipe["architecture"], epochs=recipe["epochs"],
        batch_size=recipe["batch_size"], learning_rate=recipe["learning_rate"],
        schedule=recipe["schedule"], augment=recipe["augment"], seed=seed,
        precision=recipe["precision"], data_id=data_id(source), cache_dir=cache_dir,
        x_val=val.images, y_val=val.labels, verbose=verbose)
    return Classifier(model, path.stem, f"{name} ({recipe['architecture']}, zoo recipe; "
                      f"{path.name})", path, history)


def weights_problem(network: str, weights: str, flag: str) -> str | None:
    """None when ImageNet ``weights`` of ``network`` (:data:`KERAS_WEIGHTS`) can be had (a
    local file, the Keras cache, or a download); else what to supply, naming ``flag``."""
    fname, url = KERAS_WEIGHTS[network]
    if weights != "imagenet":
        return None if Path(weights).expanduser().is_file() else (
            f"{network} weights file {weights} does not exist: pass {flag}=PATH to a "
            f"keras.applications file ({fname}) or {flag}=imagenet (needs internet once)")
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    if (keras_home / "models" / fname).is_file():
        return None
    try:
        keras.utils.get_file(fname, url, cache_subdir="models")
        return None
    except Exception as err:  # offline: URL fetch failure
        return (f"{network} ImageNet weights are not in the Keras cache ({keras_home}/models/"
                f"{fname}) and the download failed ({str(err)[:120]}): run once online, or "
                f"download {url} elsewhere and pass {flag}=PATH")


def missing_inputs(classifier: str, perceptual: str, *, data: str, data_dir: str | None,
                   weights: str | None, vgg19_weights: str | None) -> list[str]:
    """What a run with ``classifier`` and a ``perceptual`` network lacks before it starts:
    ImageNet and Inception-v3's weights for ``inception_v3``, VGG19's for ``vgg19``."""
    from tfadv import imagenet
    problems = []
    if classifier == "inception_v3":
        problems += [imagenet.imagenet_problem(data, data_dir),
                     weights_problem("Inception-v3", weights, "--inception_weights")]
    if perceptual == "vgg19":
        problems.append(weights_problem("VGG19", vgg19_weights, "--vgg19_weights"))
    return [p for p in problems if p]
