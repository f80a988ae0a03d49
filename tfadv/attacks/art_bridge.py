"""Running ART attacks on our Keras models: one classifier wrapper and seeded randomness.

ART (adversarial-robustness-toolbox 1.20.1) wraps a TF2 model in ``TensorFlowV2Classifier``
with ``clip_values=(0, 1)``; its attacks draw random numbers from NumPy's *global* RNG. The
helpers here make an ART attack follow the suite's rules: the model's logits are float32 even
under a mixed-precision policy, and a seeded call gives the same result every time without
changing the caller's global RNG state.
"""

from __future__ import annotations

import contextlib
import weakref

import numpy as np
import tensorflow as tf

from tfadv.attacks.validation import num_classes_of

_CLASSIFIERS = weakref.WeakKeyDictionary()  # model -> ART classifier


def art_classifier(model):
    """An ART ``TensorFlowV2Classifier`` of ``model`` (logits in, pixels in [0, 1]), cached."""
    if model not in _CLASSIFIERS:
        from art.estimators.classification import TensorFlowV2Classifier

        def logits(x, training=False):
            # ART turns outputs into numpy and computes its losses on them: float32, not bf16.
            return tf.cast(model(x, training=training), tf.float32)

        _CLASSIFIERS[model] = TensorFlowV2Classifier(
            model=logits, nb_classes=num_classes_of(model),
            input_shape=tuple(model.input_shape[1:]), clip_values=(0.0, 1.0),
            loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return _CLASSIFIERS[model]


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
