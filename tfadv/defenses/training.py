"""Training-time defenses: each takes a classifier (and data) and returns a new classifier.

Input defenses (``tfadv.defenses.make``) transform images; these change the model instead, so
they are evaluated like any classifier. A new one (defensive distillation, gradient
regularisation, TRADES, ...) is a function here and a line in :data:`TRAINING`.

Adversarial fine-tuning (paper 001, after Jeddi et al. 2020):

A copy of a trained classifier is trained for one epoch on perturbed training images labelled
with their true classes, with Adam and the "slow start, fast decay" learning-rate schedule
(``tfadv.models.train.SlowStartFastDecay``: linear rise 0 -> peak over the first 60% of the
steps, linear fall to 0 over the last 40%). No augmentation: the perturbed images are used as
they are.
"""

from __future__ import annotations

import keras
import numpy as np

from tfadv.models.train import fit


def adversarial_finetune(model: keras.Model, x_adv: np.ndarray, y: np.ndarray, *,
                         epochs: int = 1, batch_size: int = 25, peak_lr: float = 1e-3,
                         seed: int = 0, verbose: bool = False) -> keras.Model:
    """Returns a fine-tuned copy of ``model``; ``model`` itself is left unchanged."""
    if len(x_adv) % batch_size:
        raise ValueError(f"{len(x_adv)} fine-tuning images do not split into batches of "
                         f"{batch_size}; pick a batch size that divides it so no image is "
                         "dropped")
    tuned = keras.models.clone_model(model)
    tuned.set_weights(model.get_weights())
    fit(tuned, x_adv, y, epochs=epochs, batch_size=batch_size, learning_rate=peak_lr,
        schedule="slow_start_fast_decay", augment=False, seed=seed, verbose=verbose)
    return tuned


TRAINING = {"adversarial_finetune": adversarial_finetune}
