"""Evaluation: metrics, cached adversarial sets, and adaptive evaluation of defenses.

- :mod:`~tfadv.evaluation.metrics`: predictions, accuracy, confusion matrices, perturbation
  norms, attack summaries, image quality (re-exported here).
- :mod:`~tfadv.evaluation.adversarial`: ``adversarial_set``, the one cached runner of an
  attack on (model, images): keyed by the attack's full parameters, the model's id, digests
  of the images and labels and the code version; stored in resumable shards.
- :mod:`~tfadv.evaluation.adaptive`: for a defense, a classifier and PGD settings, the
  gray-box row (the attack sees the classifier) and the adaptive row (exact gradients through
  differentiable defenses, BPDA for the others, EOT for randomized ones), chosen from the
  defense's declared properties, with the sanity checks AutoAttack and RobustBench ask for
  in a ``sanity`` column.
"""

from tfadv.evaluation.metrics import (
    accuracy, accuracy_percent, attack_metrics, confusion_matrix, image_quality,
    image_quality_summary, perturbation_norms, predict, predict_logits, run_attack,
    ssim_win_size)

__all__ = ["accuracy", "accuracy_percent", "attack_metrics", "confusion_matrix",
           "image_quality", "image_quality_summary", "perturbation_norms", "predict",
           "predict_logits", "run_attack", "ssim_win_size"]
