"""Figures: confusion matrices (paper 001), paper 003's Figs 3-5 and the purifier training
curves. PNG files written atomically."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tfadv import cache


def save_figure(fig, path) -> None:
    """``fig`` as ``path`` (local or ``gs://``; the format from its suffix), atomically."""
    path = cache.path(path)
    cache.atomic_write(path, lambda f: fig.savefig(f, format=path.suffix.lstrip("."), dpi=120,
                                                   bbox_inches="tight"))


def plot_confusion_matrices(matrices: dict, class_names, title: str, path) -> None:
    """One panel per named confusion matrix (rows: true class, columns: predicted)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices), 4.6),
                             squeeze=False, layout="constrained")
    for panel, (ax, (name, counts)) in enumerate(zip(axes[0], matrices.items())):
        ax.imshow(counts, cmap="Blues")
        acc = np.trace(counts) / max(counts.sum(), 1)
        ax.set_title(f"{name}\naccuracy {100 * acc:.1f}% of {counts.sum()}", fontsize=9)
        ticks = np.arange(len(class_names))
        ax.set_xticks(ticks, class_names, rotation=90, fontsize=7)
        ax.set_yticks(ticks, class_names if panel == 0 else [], fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        if panel == 0:
            ax.set_ylabel("true", fontsize=8)
        for i in ticks:
            for j in ticks:
                if counts[i, j]:
                    ax.text(j, i, counts[i, j], ha="center", va="center", fontsize=5.5,
                            color="white" if counts[i, j] > counts.max() / 2 else "black")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
    plt.close(fig)


# ---------------------------------------------------------------------------- paper 003's figures

def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_robustness(table: pd.DataFrame, path, subtitle: str) -> None:
    """Paper 003 Fig 4: accuracy vs iterations per attack, a colour per eps, the versatile
    purifier (solid) beside no defense (dotted). ``table``: the experiment's robustness rows."""
    plt = _pyplot()
    attacks = list(dict.fromkeys(table.attack))
    fig, axes = plt.subplots(1, len(attacks), figsize=(5.5 * len(attacks), 4), squeeze=False,
                             layout="constrained")
    styles = {"Versatile purifier": "-", "No defense": ":"}
    for ax, attack in zip(axes[0], attacks):
        sub = table[table.attack == attack]
        for j, eps in enumerate(sorted(sub.eps.unique())):
            for defense, style in styles.items():
                line = sub[(sub.eps == eps) & (sub.defense == defense)].sort_values("nb_iter")
                if len(line):
                    ax.plot(line.nb_iter, line.accuracy, style, marker="o", color=f"C{j}",
                            label=f"{defense}, eps {eps * 255:.0f}/255")
        ax.set(title=attack, xlabel="iterations", ylabel="accuracy (%)", ylim=(-2, 102))
        # below the axes: the curves can fill the whole plot
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    fig.suptitle(f"Fig 4: robustness to attack strength ({subtitle})", fontsize=10)
    save_figure(fig, path)
    plt.close(fig)


def plot_quality(quality: pd.DataFrame, path, subtitle: str) -> None:
    """Paper 003 Fig 3: MAE, PSNR and SSIM of purified vs clean images, bars per attack."""
    plt = _pyplot()
    defenses = [d for d in ("No defense", "Versatile purifier", "Atk-specific purifier")
                if d in set(quality.defense)]
    attacks = list(dict.fromkeys(quality.attack))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4), layout="constrained")
    width = 0.8 / len(defenses)
    for ax, (metric, label) in zip(axes, (("mae_mean", "MAE"), ("psnr_mean", "PSNR (dB)"),
                                          ("ssim_mean", "SSIM"))):
        for j, defense in enumerate(defenses):
            sub = quality[quality.defense == defense].set_index("attack").reindex(attacks)
            values = sub[metric].replace([np.inf], np.nan)
            ax.bar(np.arange(len(attacks)) + j * width, values, width, label=defense)
        ax.set_xticks(np.arange(len(attacks)) + width * (len(defenses) - 1) / 2, attacks,
                      rotation=30, fontsize=8)
        ax.set_title(f"{label} vs the clean images")
        ax.legend(fontsize=7)
    fig.suptitle(f"Fig 3: image quality of purified images ({subtitle})", fontsize=10)
    save_figure(fig, path)
    plt.close(fig)


def plot_visual(examples: list, class_names, path, subtitle: str) -> None:
    """Paper 003 Fig 5: per attack, clean | adversarial | perturbation (amplified) | purified."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(examples), 4, figsize=(8, 2.1 * len(examples)), squeeze=False,
                             layout="constrained")
    for r, ex in enumerate(examples):
        delta = ex["adversarial"] - ex["clean"]
        scale = 0.5 / max(np.abs(delta).max(), 1e-8)
        panels = [("clean", ex["clean"], ex["pred_clean"]),
                  (ex["attack"], ex["adversarial"], ex["pred_adv"]),
                  (f"perturbation x{scale:.0f}", np.clip(0.5 + scale * delta, 0, 1), None),
                  ("purified (versatile)", ex["purified"], ex["pred_purified"])]
        for ax, (title, image, pred) in zip(axes[r], panels):
            grey = image.shape[-1] == 1
            ax.imshow(image[..., 0] if grey else image, cmap="gray" if grey else None,
                      vmin=0, vmax=1)
            label = "" if pred is None else f"\npred: {_class_name(class_names, pred)}" + (
                " (ok)" if pred == ex["label"] else " (wrong)")
            ax.set_title(f"{title}{label}", fontsize=7)
            ax.axis("off")
    fig.suptitle(f"Fig 5: clean / adversarial / purified ({subtitle})", fontsize=9)
    save_figure(fig, path)
    plt.close(fig)


def _class_name(class_names, k: int) -> str:
    """``class_names[k]``, or the number itself when the names do not cover class ``k`` (a
    classifier with more outputs than the dataset names)."""
    return str(class_names[k]) if 0 <= k < len(class_names) else str(k)


def plot_purifier_training(training: pd.DataFrame, path, subtitle: str) -> None:
    """Beyond the paper: each purifier's recovered accuracy after every epoch (the
    ``recovered_accuracy`` of the training log), with the loss-weight phases marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    for purifier, rows in training.groupby("purifier", sort=False):
        ax.plot(rows.epoch, rows.recovered_accuracy, marker="o", markersize=3, label=purifier,
                linewidth=2.5 if purifier == "versatile" else 1.2)
    epochs = training.drop_duplicates("epoch").sort_values("epoch")
    phase = (epochs.lambda_perc != epochs.lambda_perc.shift()).cumsum()  # 1, 1, 2, 2, 3, ...
    for index, block in epochs.groupby(phase):
        if index % 2:  # shade every other phase
            ax.axvspan(block.epoch.min() - 0.5, block.epoch.max() + 0.5, alpha=0.08, color="C7")
        ax.text(block.epoch.mean(), 101, f"lambda_perc={block.lambda_perc.iloc[0]:g}",
                ha="center", fontsize=7)
    ax.set(xlabel="epoch", ylabel="recovered accuracy (%)", ylim=(-2, 106))
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=4)
    fig.suptitle(f"Purifiers during training ({subtitle})", fontsize=10)
    save_figure(fig, path)
    plt.close(fig)
