"""Results out: tidy DataFrames to CSV + Markdown, run.json, "ours (paper)" tables, timers.

The output folder may be local (a mounted Drive too) or a ``gs://`` URL
(:func:`tfadv.cache.path`). Every write is atomic (a killed run leaves the old file or none)
and only the chief worker writes. Figures are in :mod:`tfadv.report.figures`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from tfadv import cache

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tensorflow", "keras", "numpy", "pandas", "cleverhans",
            "adversarial-robustness-toolbox", "tensorflow-datasets", "absl-py")


def save_table(df: pd.DataFrame, out_dir, name: str, markdown: str | None = None):
    """Writes ``<out_dir>/<name>.csv`` and ``.md`` (``markdown`` text, or the table itself);
    returns the CSV's path (an :class:`etils.epath.Path`)."""
    out_dir = cache.path(out_dir)
    cache.atomic_write(out_dir / f"{name}.csv",
                       lambda f: f.write(df.to_csv(index=False).encode()))
    text = markdown if markdown is not None else df.to_markdown(index=False) + "\n"
    cache.atomic_write(out_dir / f"{name}.md", lambda f: f.write(text.encode()))
    return out_dir / f"{name}.csv"


def save_json(path, obj) -> None:
    cache.atomic_write(path, lambda f: f.write(
        json.dumps(obj, indent=1, default=_plain).encode()))


def _plain(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (np.ndarray, Path, os.PathLike)):
        return value.tolist() if isinstance(value, np.ndarray) else str(value)
    return str(value)


def run_info(config: dict, timings: dict, **extra) -> dict:
    """What run.json holds: config, versions, commit, device, precision, timings."""
    import tensorflow as tf
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "tfadv",
                                     "experiments"], cwd=PROJECT_ROOT, text=True,
                                    capture_output=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {"config": config, "versions": versions, "python": sys.version.split()[0],
            "git_commit": commit, "git_dirty": dirty,
            "device": {"gpus": gpus, "cpu": platform.processor() or platform.machine(),
                       "cpu_count": os.cpu_count()},
            "timings_s": {k: round(v, 2) for k, v in timings.items()},
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"), **extra}


class Timer:
    """Collects wall times of named stages: ``with timer("attack"): ...``."""

    def __init__(self):
        self.seconds = {}

    def __call__(self, name):
        timer = self

        class _Stage:
            def __enter__(self):
                self.tic = time.time()

            def __exit__(self, *exc):
                timer.seconds[name] = timer.seconds.get(name, 0.0) + time.time() - self.tic
        return _Stage()

    def summary(self) -> str:
        return ", ".join(f"{k} {v:.0f}" for k, v in self.seconds.items())


def ours_and_paper(table: pd.DataFrame, value: str = "accuracy", paper: str | None = "paper",
                   rows: str = "attack", columns: str = "defense") -> pd.DataFrame:
    """A tidy table pivoted for reading: ``rows`` down, ``columns`` across, each cell
    'ours (paper)' (the paper's number in brackets; '-' for a missing one of ours)."""
    def cell(r):
        ours = "-" if np.isnan(r[value]) else f"{r[value]:.1f}"
        return ours if paper is None or np.isnan(r[paper]) else f"{ours} ({r[paper]:.1f})"
    frame = table.assign(cell=table.apply(cell, axis=1))
    out = frame.pivot(index=rows, columns=columns, values="cell").reindex(
        index=list(dict.fromkeys(frame[rows])), columns=list(dict.fromkeys(frame[columns])))
    out.index.name = rows
    return out.reset_index()
