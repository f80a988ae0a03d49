"""Metrics on models and adversarial examples: predictions, accuracy, confusion matrices,
perturbation norms, attack summaries and image quality (MAE, PSNR, SSIM)."""

from __future__ import annotations

import numpy as np

from tfadv import checks
from tfadv.batching import predict_logits


def predict(model, x, batch_size: int = 500) -> np.ndarray:
    return predict_logits(model, x, batch_size).argmax(-1)


def accuracy(model, x, y, batch_size: int = 500) -> float:
    return float(np.mean(predict(model, x, batch_size) == np.asarray(y)))


def accuracy_percent(model, x, y, batch_size: int = 128) -> float:
    """Accuracy in % (the unit of the papers' tables)."""
    return 100.0 * accuracy(model, x, y, batch_size)


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
        from tfadv.attacks.validation import resolve_target  # attacks sit above metrics
        target = resolve_target(model, np.asarray(x, np.float32), target)
    return x_adv, attack_metrics(model, x, y, x_adv, target, seconds)


def ssim_win_size(height: int, width: int) -> int:
    """skimage's default SSIM window (7) or, for smaller images, the largest odd side <= both."""
    side = min(height, width, 7)
    if side < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {height}x{width}")
    return side if side % 2 else side - 1


def image_quality(x_ref, x):
    """Per-image MAE, PSNR and SSIM of ``x`` (e.g. purified images) against ``x_ref`` (clean).

    Paper 003 reports MAE and PSNR between recovered and clean images. Returns a pandas
    DataFrame with one row per image and columns ``mae`` (mean absolute error in [0, 1] pixel
    units), ``psnr`` (dB, ``skimage.metrics.peak_signal_noise_ratio`` with ``data_range=1``) and
    ``ssim`` (``skimage.metrics.structural_similarity`` with ``channel_axis=-1``,
    ``data_range=1`` and the 7x7 window, or the largest odd window that fits images smaller than
    7x7). Computed in float64. Identical images have infinite PSNR: their ``psnr`` is ``inf``
    (skimage would divide by zero), and :func:`image_quality_summary` reports them apart.
    """
    import pandas as pd
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    x_ref, x = checks.image_pair(x_ref, x)
    win_size = ssim_win_size(*x.shape[1:3]) if len(x) else 7
    rows = []
    for ref, img in zip(x_ref, x):
        identical = np.array_equal(ref, img)
        rows.append({
            "mae": float(np.mean(np.abs(img - ref))),
            "psnr": float("inf") if identical else
            float(peak_signal_noise_ratio(ref, img, data_range=1.0)),
            "ssim": float(structural_similarity(ref, img, channel_axis=-1, data_range=1.0,
                                                win_size=win_size)),
        })
    return pd.DataFrame(rows, columns=["mae", "psnr", "ssim"])


def image_quality_summary(quality) -> dict:
    """Means of an :func:`image_quality` frame for a report row.

    ``psnr_mean`` averages the finite PSNRs only (it is ``inf`` when every image is identical
    to its reference, NaN for no images); ``identical`` counts the images left out of it, so
    an unchanged image never turns the mean into ``inf``.
    """
    psnr = quality["psnr"].to_numpy()
    finite = psnr[np.isfinite(psnr)]
    if len(finite):
        psnr_mean = float(finite.mean())
    else:
        psnr_mean = float("inf") if len(psnr) else float("nan")
    return {"images": int(len(quality)), "mae_mean": float(quality["mae"].mean()),
            "psnr_mean": psnr_mean, "ssim_mean": float(quality["ssim"].mean()),
            "identical": int(len(psnr) - len(finite))}
