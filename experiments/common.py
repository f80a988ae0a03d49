"""Shared absl flags and helpers of the experiment modules.

Every experiment has a ``PRESETS`` dict of plain dicts; ``resolve_config`` starts from the
chosen preset and lets explicit flags override single fields.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from fractions import Fraction
from importlib import metadata
from pathlib import Path

from absl import flags


FLAGS = flags.FLAGS
flags.DEFINE_string("preset", None, "smoke | quick | cifar | paper")
flags.DEFINE_string("out", None, "output folder (default results/<experiment>/<preset>)")
flags.DEFINE_string("data", None, "dataset: image folder, .tar(.gz) of one, CIFAR-10 python "
                    "tarball, 'digits', or a tensorflow-datasets name")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir")
flags.DEFINE_integer("seed", None, "base random seed")
flags.DEFINE_string("precision", None, "auto | float32 | mixed_bfloat16 | mixed_float16")
flags.DEFINE_multi_string("set", [], "override one preset field: --set=key=value (repeatable)")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tensorflow", "keras", "numpy", "pandas", "cleverhans",
            "adversarial-robustness-toolbox", "tensorflow-datasets", "absl-py")


def resolve_config(presets: dict, experiment: str, default_preset: str) -> dict:
    """The preset's dict with the command line's overrides applied."""
    name = FLAGS.preset or default_preset
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(presets)}")
    config = dict(presets[name], preset=name)
    for field in ("data", "data_dir", "seed", "precision"):
        if getattr(FLAGS, field) is not None:
            config[field] = getattr(FLAGS, field)
    for item in FLAGS.set:
        key, _, value = item.partition("=")
        if key not in config:
            raise ValueError(f"--set {key}: not a field of preset {name!r} "
                             f"(fields: {sorted(config)})")
        config[key] = _parse_like(value, config[key])
    config["out"] = FLAGS.out or str(PROJECT_ROOT / "results" / experiment / name)
    return config


def start(presets: dict, experiment: str, default_preset: str):
    """The start of every experiment's main: resolved config (precision set), out dir, timer."""
    from tfadv.models.train import set_precision
    config = resolve_config(presets, experiment, default_preset)
    config["precision"] = set_precision(config["precision"])
    print(f"{experiment}: preset {config['preset']}, data {config['data']}, precision "
          f"{config['precision']}, out {config['out']}", flush=True)
    return config, Path(config["out"]), Timer()


def _parse_like(value: str, example):
    if isinstance(example, bool):
        return value.lower() in ("1", "true", "yes")
    if isinstance(example, (int, float)) and not isinstance(example, bool):
        try:
            number = Fraction(value)  # "0.01", "1e-3" and "16/255" alike, nothing executed
        except ValueError:
            raise ValueError(f"--set expected a number such as 0.01 or 16/255, got {value!r}")
        return type(example)(number)
    if isinstance(example, (list, tuple)):
        return [_parse_like(v, example[0]) for v in value.split(",")] if example else \
            value.split(",")
    return value


def data_id(source: str) -> str:
    """A short, machine-independent name for a data source (part of model cache keys)."""
    path = Path(os.path.expanduser(source))
    if path.is_file():
        return f"{path.name}:{path.stat().st_size}"
    return path.name if path.exists() else source


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
