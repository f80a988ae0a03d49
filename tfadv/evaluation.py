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


def _check_image_pair(x_ref, x) -> tuple[np.ndarray, np.ndarray]:
    """float64 copies of two NHWC batches of [0, 1] images of one shape, or a ValueError."""
    x_ref, x = np.array(x_ref, np.float64), np.array(x, np.float64)
    if x_ref.shape != x.shape:
        raise ValueError(f"reference and compared images must have the same shape, got "
                         f"{x_ref.shape} and {x.shape}; resize the purified images back to the "
                         "input size first")
    if x.ndim != 4:
        raise ValueError(f"images must be a batch NHWC of rank 4, got shape {x.shape}; add a "
                         "batch axis with x[None] for a single image")
    for name, a in (("reference images", x_ref), ("compared images", x)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contain NaN or Inf values")
        if a.size and (a.min() < 0.0 or a.max() > 1.0):
            raise ValueError(f"{name}: pixels must lie in [0, 1], got min {a.min():.4g} and "
                             f"max {a.max():.4g}; divide uint8 images by 255")
    return x_ref, x


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
    x_ref, x = _check_image_pair(x_ref, x)
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


def bpda_eot_pgd(model, defense, x, y, *, eps: float, eps_iter: float, nb_iter: int,
                 eot_samples: int = 1, seed: int = 0, batch_size: int = 128) -> np.ndarray:
    """Adaptive Linf PGD against ``defense`` followed by ``model`` (Athalye et al. 2018).

    For input transformations without useful gradients (wavelet denoising, pixel deflection,
    random resizing): each step averages, over ``eot_samples`` draws of the defense
    (Expectation over Transformation, for random defenses), the gradient of ``model``'s
    cross-entropy at the *defended* image, and uses it as the gradient at the undefended
    input (BPDA with the identity: the defense is taken as d defense(x)/dx = I on the
    backward pass). Then a signed step of ``eps_iter``, projected onto the eps-ball around
    ``x`` and [0, 1]; the start is a seeded uniform point in the ball, as PGD's.

    ``defense(x, seed) -> x'``: numpy in, an array of x's shape out (random defenses use the
    seed; draw ``k`` of step ``t`` gets a seed derived from ``(seed, t, k)``). A defense that
    is differentiable (a Keras purifier) is better attacked with a plain attack on
    ``keras.Model(defense -> model)``: the identity is only an approximation. Returns float32
    images in [0, 1] of x's shape; the caller's array is not modified.
    """
    import keras
    from tfadv.attacks.validation import check_eps, validate
    eps, eps_iter = check_eps("eps", eps), check_eps("eps_iter", eps_iter)
    for name, value in (("nb_iter", nb_iter), ("eot_samples", eot_samples),
                        ("batch_size", batch_size)):
        if isinstance(value, bool) or not float(value).is_integer() or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    x, y, _ = validate(model, x, y)
    if not len(x) or eps == 0:
        return x
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")

    @tf.function(reduce_retracing=True)
    def gradient(images, labels):
        with tf.GradientTape() as tape:
            tape.watch(images)
            loss = loss_fn(labels, tf.cast(model(images, training=False), tf.float32))
        return tape.gradient(loss, images)

    rng = np.random.default_rng(seed)
    x_adv = np.clip(x + rng.uniform(-eps, eps, x.shape).astype(np.float32), 0.0, 1.0)
    for t in range(int(nb_iter)):
        grad = np.zeros_like(x)
        for k in range(int(eot_samples)):
            draw_seed = int(np.random.SeedSequence([seed, t, k]).generate_state(1)[0])
            defended = np.asarray(defense(x_adv, draw_seed), np.float32)
            if defended.shape != x.shape:
                raise ValueError(f"BPDA with the identity needs a defense that keeps the image "
                                 f"shape {x.shape}, got {defended.shape} (resize back first)")
            for i in range(0, len(x), batch_size):
                grad[i:i + batch_size] += gradient(tf.constant(defended[i:i + batch_size]),
                                                   tf.constant(y[i:i + batch_size])).numpy()
        x_adv = np.clip(np.clip(x_adv + eps_iter * np.sign(grad), x - eps, x + eps), 0.0, 1.0)
    return x_adv.astype(np.float32)
