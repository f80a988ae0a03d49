"""Running ART attacks on our Keras models: one classifier wrapper and seeded randomness.

ART (adversarial-robustness-toolbox 1.20.1) wraps a TF2 model in ``TensorFlowV2Classifier``
with ``clip_values=(0, 1)``; its attacks draw random numbers from NumPy's *global* RNG. The
helpers here make an ART attack follow the suite's rules: the model's logits are float32 even
under a mixed-precision policy, and a seeded call gives the same result every time without
changing the caller's global RNG state. ``art_classifier`` is the one place the library and
its experiments build an ART classifier.
"""

from __future__ import annotations

import contextlib
import weakref

import numpy as np
import tensorflow as tf

from tfadv.attacks.validation import num_classes_of

_CLASSIFIERS = weakref.WeakKeyDictionary()  # model -> {input shape: ART classifier}


def art_classifier(model, input_shape=None):
    """ART's ``TensorFlowV2Classifier`` of the Keras ``model`` (which returns logits), cached.

    Pixels in [0, 1] (``clip_values=(0, 1)``), the sparse cross-entropy of the logits as the
    loss, ``nb_classes`` from the model's output. ``input_shape`` (H, W, C) defaults to the
    model's own; give it for a model built with free height and width (ART attacks size
    their perturbations from it). The classifier sees the logits as float32, so it also
    works under a mixed-precision policy. One classifier per model and input shape: building
    one traces ART's compiled forward pass again.
    """
    input_shape = tuple(model.input_shape[1:] if input_shape is None else input_shape)
    per_model = _CLASSIFIERS.setdefault(model, {})
    if input_shape not in per_model:
        from art.estimators.classification import TensorFlowV2Classifier

        def logits(x, training=False):
            # ART turns outputs into numpy and computes its losses on them: float32, not bf16.
            return tf.cast(model(x, training=training), tf.float32)

        per_model[input_shape] = TensorFlowV2Classifier(
            model=logits, nb_classes=num_classes_of(model), input_shape=input_shape,
            clip_values=(0.0, 1.0),
            loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return per_model[input_shape]


@contextlib.contextmanager
def seeded_numpy(seed: int):
    """NumPy's global RNG seeded with ``seed`` inside the block, restored afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[labels]
