"""Speed benchmarks that print figures (never timed tests: these machines are noisy).

    python -m experiments.benchmark jsma [--n=100] [--data=PATH]

``jsma``: the native batched JSMA against ART's ``SaliencyMapMethod`` on the same model,
images and targets (targeted, since ART's is targeted only; theta 1, gamma 0.1). Prints
success rate, mean L0 of the successful images, wall time and the speed ratio, and writes
``<out>/benchmark_jsma.csv``. Times are medians of ``--repeats`` runs (min and max beside).
The model is a small CNN trained (and cached) on the data given, CIFAR-10 when pointed at it,
scikit-learn's digits by default, in the precision ``--precision`` names (default: ``auto``).
Target (issue 2): at least ART's success rate, at least 50x faster, on CPU. Measured figures
are in notes/RESULTS.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from absl import app, flags

from experiments import common

flags.DEFINE_integer("n", 100, "images to attack")
flags.DEFINE_float("theta", 1.0, "JSMA theta")
flags.DEFINE_float("gamma", 0.1, "JSMA gamma")
flags.DEFINE_integer("repeats", 3, "timed runs of each implementation (the median is reported)")
FLAGS = flags.FLAGS


def benchmark_model(source: str, seed: int, precision: str):
    """A tiny CNN trained for a few epochs on ``source`` (cached), and its test split."""
    from tfadv import data, models
    train, test = data.load(source, "train"), data.load(source, "test")
    train = data.subset(train, n=min(len(train.labels), 10_000), seed=seed)
    model, path, _ = models.train_cached(
        train, architecture="tiny_cnn", epochs=5, batch_size=64, learning_rate=3e-3,
        augment=False, seed=seed, precision=precision, data_id=common.data_id(source),
        verbose=False)
    return model, test


def art_classifier(model, input_shape, num_classes):
    import tensorflow as tf
    from art.estimators.classification import TensorFlowV2Classifier
    return TensorFlowV2Classifier(
        model=model, nb_classes=num_classes, input_shape=tuple(input_shape), clip_values=(0.0, 1.0),
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def jsma_rows(model, x, y, targets, theta, gamma, repeats):
    from art.attacks.evasion import SaliencyMapMethod
    from tfadv import attacks
    from tfadv.evaluation import predict

    def native(**params):
        attack = attacks.make("jsma", theta=theta, gamma=gamma, **params)
        attack(model, x[:2], y[:2], targets[:2])  # traces the graph: not timed
        return lambda: attack(model, x, y, targets)

    runs = {
        "tfadv native (default: pairs, strongest other class)": native(),
        "tfadv native, XLA jit_compile": native(jit_compile=True),
        "tfadv native, margin saliency (one backward pass)": native(saliency="margin"),
        "tfadv native, original rule (sum of other classes, strict pairs)": native(
            others="sum", strict_pairs=True),
        "ART SaliencyMapMethod": lambda: SaliencyMapMethod(
            art_classifier(model, x.shape[1:], int(model.output_shape[-1])), theta=theta,
            gamma=gamma, batch_size=len(x), verbose=False).generate(
                x, np.eye(int(model.output_shape[-1]))[targets]),
    }
    rows = []
    for name, run in runs.items():
        times = []
        for _ in range(repeats):
            tic = time.perf_counter()
            x_adv = run()
            times.append(time.perf_counter() - tic)
        seconds = float(np.median(times))
        success = predict(model, x_adv) == targets
        l0 = np.count_nonzero((x_adv != x).reshape(len(x), -1), axis=1)
        rows.append({"implementation": name, "images": len(x), "success_rate": success.mean(),
                     "mean_l0_successful": l0[success].mean() if success.any() else np.nan,
                     "seconds": seconds, "seconds_min": min(times), "seconds_max": max(times),
                     "images_per_s": len(x) / seconds})
    table = pd.DataFrame(rows)
    art_seconds = table.loc[table.implementation.str.startswith("ART"), "seconds"].iloc[0]
    table["speedup_vs_art"] = art_seconds / table.seconds
    return table


def main(argv):
    if len(argv) != 2 or argv[1] not in ("jsma",):
        raise app.UsageError("usage: python -m experiments.benchmark jsma [--n=100] [--data=PATH]")
    from tfadv import data
    seed = FLAGS.seed or 0
    source = FLAGS.data or "digits"
    # Both implementations attack the same model, built under the project's default
    # precision (mixed bfloat16 on CPUs with AMX/AVX512-BF16, as the cifar presets use).
    from tfadv.models.train import resolve_precision
    precision = resolve_precision(FLAGS.precision or "auto")
    model, test = benchmark_model(source, seed, precision)
    picked = data.subset(test, n=FLAGS.n, seed=seed)
    rng = np.random.default_rng(seed)
    targets = (picked.labels + rng.integers(1, test.num_classes, len(picked.labels))) \
        % test.num_classes
    table = jsma_rows(model, picked.images, picked.labels, targets, FLAGS.theta, FLAGS.gamma,
                      FLAGS.repeats)
    out = Path(FLAGS.out or common.PROJECT_ROOT / "results" / "benchmark")
    from tfadv import report
    report.save_table(table, out, "benchmark_jsma")
    print(f"JSMA, targeted, theta {FLAGS.theta}, gamma {FLAGS.gamma}, {len(picked.labels)} "
          f"images of {source}, tiny CNN in {precision}, CPU")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    app.run(main)
