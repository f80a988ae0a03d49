"""Metrics on models and adversarial examples: accuracy, predictions, confusion matrices."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def predict_logits(model, x, batch_size: int = 500) -> np.ndarray:
    """Logits as float32 numpy, batched (no Keras progress bar, no retracing per size)."""
    outs = [model(tf.constant(x[i:i + batch_size]), training=False)
            for i in range(0, len(x), batch_size)]
    return np.concatenate([np.asarray(o, np.float32) for o in outs])


def predict(model, x, batch_size: int = 500) -> np.ndarray:
    return predict_logits(model, x, batch_size).argmax(-1)


def accuracy(model, x, y, batch_size: int = 500) -> float:
    return float(np.mean(predict(model, x, batch_size) == np.asarray(y)))


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """counts[i, j] = number of images of class i predicted as class j."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return counts


def perturbation_norms(x, x_adv) -> dict:
    """Per-image L0 (changed values), L2 and Linf norms of ``x_adv - x``, as arrays."""
    delta = (np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)).reshape(len(x), -1)
    return {"l0": np.count_nonzero(delta, axis=1), "l2": np.linalg.norm(delta, axis=1),
            "linf": np.abs(delta).max(axis=1, initial=0.0)}


def attack_metrics(model, x, y, x_adv, target=None, seconds: float | None = None) -> dict:
    """What one attack run achieved: accuracy before and after, success rate, norms, speed.

    Success: the adversarial image is classified as ``target`` (targeted) or not as ``y``
    (untargeted). Norms are summarised (mean, median, max) over all images and the mean over
    the successful ones.
    """
    y = np.asarray(y)
    pred, pred_adv = predict(model, x), predict(model, x_adv)
    success = pred_adv == np.asarray(target) if target is not None else pred_adv != y
    metrics = {"images": len(y), "accuracy": float(np.mean(pred == y)),
               "adv_accuracy": float(np.mean(pred_adv == y)),
               "success_rate": float(np.mean(success))}
    for name, values in perturbation_norms(x, x_adv).items():
        metrics[f"{name}_mean"] = float(values.mean())
        metrics[f"{name}_median"] = float(np.median(values))
        metrics[f"{name}_max"] = float(values.max())
        metrics[f"{name}_mean_successful"] = float(values[success].mean()) if success.any() \
            else float("nan")
    if seconds is not None:
        metrics["seconds"] = float(seconds)
        metrics["images_per_s"] = len(y) / seconds if seconds > 0 else float("inf")
    return metrics


def run_attack(attack, model, x, y, target=None):
    """Runs ``attack`` once, timed; returns ``(x_adv, attack_metrics(...))``."""
    import time
    tic = time.perf_counter()
    x_adv = attack(model, x, y, target)
    seconds = time.perf_counter() - tic
    if isinstance(target, str):  # a strategy: the classes it picked
        from tfadv.attacks.validation import resolve_target
        target = resolve_target(model, np.asarray(x, np.float32), target)
    return x_adv, attack_metrics(model, x, y, x_adv, target, seconds)
