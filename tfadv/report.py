"""Results out: tidy DataFrames to CSV + Markdown, JSON files, figures. All writes atomic."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from tfadv.data import atomic_write


def save_table(df: pd.DataFrame, out_dir, name: str, markdown: str | None = None) -> Path:
    """Writes ``<out_dir>/<name>.csv`` and ``.md`` (``markdown`` text, or the table itself)."""
    out_dir = Path(out_dir)
    atomic_write(out_dir / f"{name}.csv", lambda f: f.write(df.to_csv(index=False).encode()))
    text = markdown if markdown is not None else df.to_markdown(index=False) + "\n"
    atomic_write(out_dir / f"{name}.md", lambda f: f.write(text.encode()))
    return out_dir / f"{name}.csv"


def save_json(path, obj) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1, default=_plain).encode()))


def _plain(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (np.ndarray, Path, os.PathLike)):
        return value.tolist() if isinstance(value, np.ndarray) else str(value)
    return str(value)


def save_figure(fig, path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lstrip("."), dpi=120, bbox_inches="tight")
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def plot_confusion_matrices(matrices: dict, class_names, title: str, path) -> None:
    """One panel per named confusion matrix (rows: true class, columns: predicted)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
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
