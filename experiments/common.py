"""Shared absl flags and the command-line plumbing of the experiment modules.

Every experiment has a ``PRESETS`` dict of plain dicts; ``resolve_config`` starts from the
chosen preset and lets explicit flags override single fields. ``main(run, ...)`` turns a
user error (a ``ValueError`` from the library, a bad flag) into one line on stderr and exit
status 2, without a traceback (``TFADV_DEBUG=1`` shows it).
"""

from __future__ import annotations

import os
import sys
from fractions import Fraction

from absl import flags

from tfadv import cache
from tfadv.report import PROJECT_ROOT, Timer  # noqa: F401 (experiments use both)

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", None, "smoke | quick | cifar | paper")
flags.DEFINE_string("out", None, "output folder (default results/<experiment>/<preset>)")
flags.DEFINE_string("data", None, "dataset: image folder, .tar(.gz) of one, CIFAR-10 python "
                    "tarball, 'digits', or a tensorflow-datasets name")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir")
flags.DEFINE_integer("seed", None, "base random seed")
flags.DEFINE_string("precision", None, "auto | float32 | mixed_bfloat16 | mixed_float16")
flags.DEFINE_string("cache_dir", None, "cache root for datasets, models and adversarial sets "
                    "(default $TFADV_CACHE, else data/)")
flags.DEFINE_multi_string("set", [], "override one preset field: --set=key=value (repeatable)")
# Strings checked by tfadv.distribute (not absl enums): a bad value is then one line and exit
# status 2, like every other user error.
flags.DEFINE_string("strategy", "auto", "tf.distribute strategy: auto | tpu | mirrored | "
                    "multiworker | one_device | cpu (tfadv/distribute.py)")
flags.DEFINE_integer("cpu_replicas", None, "split the CPU into N >= 2 devices for "
                     "--strategy=mirrored (or auto): the multi-device path on a CPU")


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
    config["cache_dir"] = FLAGS.cache_dir
    config["strategy_name"], config["cpu_replicas"] = FLAGS.strategy, FLAGS.cpu_replicas
    return config


def start(presets: dict, experiment: str, default_preset: str):
    """The start of every experiment's main: resolved config (strategy chosen, precision set),
    out dir, timer. The experiment gets the strategy back from ``distribute.current()``."""
    config = resolve_config(presets, experiment, default_preset)  # before TensorFlow loads:
    from tfadv import distribute  # a bad flag is reported in a second
    # First of all TensorFlow work: a CPU split or hidden GPUs are possible only before
    # TensorFlow sets up its devices.
    strategy = distribute.choose(config["strategy_name"], config["cpu_replicas"])
    config["strategy"] = distribute.describe(strategy)
    from tfadv.models.train import set_precision
    config["precision"] = set_precision(config["precision"])
    print(f"{experiment}: preset {config['preset']}, data {config['data']}, precision "
          f"{config['precision']}, strategy {config['strategy']['strategy']} x "
          f"{config['strategy']['replicas']}, out {config['out']}", flush=True)
    return config, cache.path(config["out"]), Timer()


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


def pick_preset(accelerated: str, cpu: str, why_not: str) -> tuple[str, str]:
    """The preset of a run without ``--preset``, and why: ``accelerated`` when a GPU or TPU is
    visible (a TPU VM's before TensorFlow initialises it), else ``cpu`` (``why_not`` says why
    the accelerated one is not run on a CPU). Starts no device: ``start`` may still split the
    CPU afterwards."""
    from tfadv import distribute
    found = distribute.accelerators()
    if found:
        return accelerated, (f"an accelerator is visible ({', '.join(found)}); the {accelerated} "
                             "preset needs its data and weights (README)")
    return cpu, f"no GPU or TPU is visible: {why_not}"


def main(experiment_main, experiment: str):
    """``absl.app.run(experiment_main)``, with user errors as one line and exit status 2."""
    from absl import app

    def guarded(argv):
        try:
            return experiment_main(argv)
        except (ValueError, FileNotFoundError) as err:
            if os.environ.get("TFADV_DEBUG"):
                raise
            message = " ".join(str(err).split())
            print(f"{experiment}: error: {message}", file=sys.stderr, flush=True)
            sys.exit(2)
    app.run(guarded)
