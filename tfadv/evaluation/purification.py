"""Why a purifier recovers an attack or not: paper 003's diagnostics (beyond the paper).

:func:`diagnostics` puts, for one purifier and each kind of input (clean images, clean images
plus random +-eps sign noise, each attack's images), the numbers that separate the usual
explanations side by side:

- ``acc``: the attacked classifier's accuracy (%) on the input, then on the purified input
  (``acc_purified``) and with pix2pix's test-time dropout on (``acc_purified_dropout``);
- noise vs adversarial: if the purifier restores the noise rows but not the attacks of the
  same eps, it fails on adversarial structure, not on perturbations of that size;
- ``second_acc`` / ``second_acc_purified``: a second, independently trained classifier on the
  same inputs: high there while the attacked classifier stays low means the leftover
  perturbation is specific to the attacked classifier (it does not transfer);
- ``leftover_ratio`` (||purified - clean|| / ||input - clean||, mean over images) and
  ``leftover_cosine`` (cosine between purified - clean and input - clean): how much of the
  perturbation is left, and whether what is left is the perturbation itself (cosine near 1)
  or something else the purifier made.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tfadv import checks
from tfadv.evaluation.metrics import accuracy_percent


def sign_noise(x: np.ndarray, eps: float, seed: int) -> np.ndarray:
    """``x`` plus uniformly random +-eps on every pixel, clipped to [0, 1]: noise of the
    Linf attacks' size and budget without their structure."""
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0], np.float32), size=x.shape)
    return np.clip(x + eps * signs, 0.0, 1.0).astype(np.float32)


def leftover(x_clean, x_input, x_purified) -> tuple[float, float]:
    """(mean ||purified - clean|| / ||input - clean||, mean cosine between the two), over the
    images whose input differs from the clean image (NaN when none does)."""
    left = (np.asarray(x_purified, np.float64) - x_clean).reshape(len(x_clean), -1)
    pert = (np.asarray(x_input, np.float64) - x_clean).reshape(len(x_clean), -1)
    norm_left, norm_pert = np.linalg.norm(left, axis=1), np.linalg.norm(pert, axis=1)
    moved = norm_pert > 0
    if not moved.any():
        return float("nan"), float("nan")
    ratio = norm_left[moved] / norm_pert[moved]
    cosine = np.sum(left[moved] * pert[moved], axis=1) / np.maximum(
        norm_left[moved] * norm_pert[moved], 1e-12)
    return float(ratio.mean()), float(cosine.mean())


def diagnostics(classifier, second, purify, x_clean, y, inputs: dict, *,
                purify_dropout=None) -> pd.DataFrame:
    """One row per entry of ``inputs`` (name -> images paired with ``x_clean``, or a function
    giving them, called when its row is made; include ``"clean"`` and a :func:`sign_noise` row): accuracy of ``classifier`` and of ``second``
    before and after ``purify`` (images -> purified images), with ``purify_dropout`` (the
    same purifier with test-time dropout) when given, and the leftover measures."""
    x_clean = checks.images(x_clean, "diagnostics clean images")
    y = np.asarray(y)
    rows = []
    for name, x_in in inputs.items():
        x_in = checks.images(x_in() if callable(x_in) else x_in, f"diagnostics input {name!r}",
                             shape=x_clean.shape[1:])
        if len(x_in) != len(x_clean):
            raise ValueError(f"diagnostics input {name!r} has {len(x_in)} images, the clean "
                             f"set {len(x_clean)}: they must be paired")
        purified = purify(x_in)
        ratio, cosine = leftover(x_clean, x_in, purified)
        row = {"input": name, "images": len(y),
               "acc": accuracy_percent(classifier, x_in, y),
               "acc_purified": accuracy_percent(classifier, purified, y)}
        if purify_dropout is not None:
            row["acc_purified_dropout"] = accuracy_percent(classifier, purify_dropout(x_in), y)
        if second is not None:
            row["second_acc"] = accuracy_percent(second, x_in, y)
            row["second_acc_purified"] = accuracy_percent(second, purified, y)
        row.update(leftover_ratio=ratio, leftover_cosine=cosine)
        rows.append(row)
    return pd.DataFrame(rows)
