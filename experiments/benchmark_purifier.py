"""Speed and memory benchmarks of paper 003's purifier training that print figures (never
timed tests: these machines are noisy).

    python -m experiments.benchmark_purifier speed [--size=32] [--timed_steps=10] [--projection_steps=1]
    python -m experiments.benchmark_purifier memory [--pairs=1000] [--size=128]

``speed``: seconds per training step of the pix2pix purifier (U-Net + PatchGAN + VGG19
perceptual loss with random weights: timing only) at ``--size``, batch ``--batch``, in
float32 and mixed_bfloat16: the old Python loop beside the compiled loop with and without XLA
(and under ``--strategy`` when it has several replicas), with counted FLOPs and achieved
TFLOP/s; writes ``benchmark_purifier.csv``. Then (``--projection_steps=1``) the paper preset
projected on one H100 by stage, and its cache and host RAM (tfadv.report.projection).

``memory``: peak and anonymous RSS of training at ``--pairs`` N and 4N, streamed vs loaded
whole, each in its own process; writes ``benchmark_purifier_memory.csv``.

The attacks' benchmarks are ``experiments.benchmark``; measured figures are in
notes/RESULTS.md ("At the paper's scale").
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from absl import app, flags

from experiments import common
from tfadv import cache, report
from tfadv.report.projection import (H100_BF16_TFLOPS, UTILISATION, count_flops, paper_budget,
                                    paper_storage, step_flops)

flags.DEFINE_integer("size", 32, "image side, a power of two >= 32 (paper: 256)")
flags.DEFINE_integer("base_filters", 64, "U-Net / PatchGAN base filters (pix2pix: 64)")
flags.DEFINE_integer("batch", 1, "speed: training batch size (pix2pix: 1)")
flags.DEFINE_integer("timed_steps", 10, "speed: training steps per timed run")
flags.DEFINE_integer("repeats", 3, "speed: timed runs of each loop (the median is reported)")
flags.DEFINE_integer("projection_steps", 1, "speed: 1 counts the FLOPs of the paper "
                     "preset's purifier step and projects its run on one H100; 0 skips it")
flags.DEFINE_integer("pairs", 1000, "memory: N (runs at N and 4N training pairs)")
FLAGS = flags.FLAGS


def purifier_setup(size: int, precision: str, perceptual: bool, *, base_filters: int,
                   strategy=None, seed: int = 0):
    """Generator, discriminator and (random-weight) VGG19 features built under ``precision``
    in ``strategy``'s scope, as the main job builds them."""
    import keras
    from tfadv.defenses import purifier
    from tfadv.models import perceptual as perceptual_models
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)  # layers take the policy when built
    try:
        keras.utils.set_random_seed(seed)
        shape = (size, size, 3)
        generator, discriminator = purifier.build_networks(
            shape, base_filters=base_filters, name="purifier", strategy=strategy)
        features = perceptual_models.vgg19_features(None, input_shape=shape,
                                                    allow_random=True) if perceptual else None
    finally:
        keras.mixed_precision.set_global_policy(previous)
    import tensorflow as tf
    return generator, discriminator, purifier.in_scope(features,
                                                       strategy or tf.distribute.get_strategy())


def time_loop(networks, batch_size: int, steps: int, repeats: int) -> float:
    """Seconds per step of the single-device loop as the purifier trained before it was
    compiled: one traced step called from Python per batch, the batch copied in, the losses
    read back every step (median of ``repeats``, after two untimed tracing steps)."""
    import tensorflow as tf
    from tfadv.defenses import purifier
    generator, discriminator, features = networks
    optimizers = [purifier.make_optimizer() for _ in range(2)]
    optimizers[0].build(generator.trainable_variables)
    optimizers[1].build(discriminator.trainable_variables)
    step = tf.function(purifier.make_train_step(generator, discriminator, features, *optimizers))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (batch_size, *generator.input_shape[1:])).astype(np.float32)
    lambdas = (tf.constant(100.0), tf.constant(100.0))
    for _ in range(2):
        step(tf.constant(x), tf.constant(x), *lambdas).numpy()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        for _ in range(steps):
            step(tf.constant(x), tf.constant(x), *lambdas).numpy()
        times.append((time.perf_counter() - tic) / steps)
    return float(np.median(times))


def time_compiled(networks, batch_size: int, steps: int, repeats: int, *, strategy,
                  jit_compile: bool) -> float:
    """Seconds per step of ``train_purifier`` as the main job runs it: pairs streamed by
    tf.data, ``steps`` updates per compiled call under ``strategy``. Epoch 1 traces; each
    later epoch is one timed call (the median of ``repeats`` is returned)."""
    from tfadv.defenses import purifier
    generator, discriminator, features = networks
    rng = np.random.default_rng(0)
    pairs = rng.uniform(0, 1, (batch_size * steps, *generator.input_shape[1:])).astype(np.float32)
    history = purifier.train_purifier(
        pairs, pairs, generator=generator, discriminator=discriminator, features=features,
        epochs=1 + repeats, steps="constant", batch_size=batch_size, verbose=False,
        strategy=strategy, steps_per_call=steps, jit_compile=jit_compile)
    return float(np.median([r["seconds"] for r in history[1:]])) / steps


def speed_main():
    """The ``speed`` subcommand: the single-device loop beside the compiled one, counted
    FLOPs and achieved TFLOP/s, then the paper preset's projection for one H100."""
    import tensorflow as tf
    from tfadv import distribute
    from tfadv.models.inception import inception_v3
    strategy = distribute.choose(FLAGS.strategy, FLAGS.cpu_replicas)
    size, batch = FLAGS.size, FLAGS.batch
    rows = []
    for precision in ("float32", "mixed_bfloat16"):
        networks = purifier_setup(size, precision, True, base_filters=FLAGS.base_filters)
        flops = step_flops(*networks, batch)
        runs = {"loop (before: Python step per batch, losses read each step)":
                lambda: time_loop(networks, batch, FLAGS.timed_steps, FLAGS.repeats),
                f"compiled ({FLAGS.timed_steps} steps per call, tf.data)":
                lambda: time_compiled(networks, batch, FLAGS.timed_steps, FLAGS.repeats,
                                      strategy=tf.distribute.get_strategy(), jit_compile=False),
                "compiled + XLA": lambda: time_compiled(
                    networks, batch, FLAGS.timed_steps, FLAGS.repeats,
                    strategy=tf.distribute.get_strategy(), jit_compile=True)}
        if strategy.num_replicas_in_sync > 1:
            replicated = purifier_setup(size, precision, True, base_filters=FLAGS.base_filters,
                                        strategy=strategy)
            runs[f"compiled, {distribute.describe(strategy)['strategy']} x "
                 f"{strategy.num_replicas_in_sync}"] = lambda: time_compiled(
                replicated, batch, FLAGS.timed_steps, FLAGS.repeats, strategy=strategy,
                jit_compile=False)
        for name, timed in runs.items():
            seconds = timed()
            rows.append({"loop": name, "size": size, "precision": precision,
                         "perceptual": "VGG19 (random weights)", "base_filters":
                         FLAGS.base_filters, "batch_size": batch, "seconds_per_step": seconds,
                         "images_per_s": batch / seconds, "gflop_per_step": flops / 1e9,
                         "achieved_tflops": flops / seconds / 1e12})
    table = pd.DataFrame(rows)
    first = table.seconds_per_step.groupby(table.precision).transform("first")
    table["speedup_vs_loop"] = first / table.seconds_per_step
    out = cache.path(FLAGS.out or report.PROJECT_ROOT / "results" / "benchmark")
    report.save_table(table, out, "benchmark_purifier")
    print(f"pix2pix purifier training (U-Net + PatchGAN + VGG19 perceptual, Adam, batch "
          f"{batch}) on this CPU; seconds: median of {FLAGS.repeats} runs of "
          f"{FLAGS.timed_steps} steps. VGG19 has random weights (allow_random=True): timing "
          "only, weights do not change the speed. FLOPs counted by TensorFlow's profiler.")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if FLAGS.projection_steps <= 0:
        return
    paper = purifier_setup(256, "float32", True, base_filters=64)
    per_pair = step_flops(*paper, 1)
    classifier = inception_v3(None, input_size=256)
    image = tf.TensorSpec((1, 256, 256, 3), tf.float32)

    def gradient(x):  # one attack step's gradient through Inception-v3 (299 inside)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(classifier(x, training=False))
        return tape.gradient(loss, x)

    per_gradient = count_flops(gradient, image)
    budget = paper_budget(per_pair, per_gradient)
    report.save_table(budget, out, "projection_paper_preset")
    print(f"\nPROJECTED (not measured: no GPU here) paper preset on one H100 SXM at "
          f"{UTILISATION:.0%} of its {H100_BF16_TFLOPS:g} TFLOP/s bf16 peak; counted FLOPs: "
          f"{per_pair / 1e9:.0f} GFLOP per training pair at 256x256, "
          f"{per_gradient / 1e9:.0f} GFLOP per Inception-v3 gradient (299x299 inside)")
    print(budget.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    cw = budget.stage.str.contains("C&W")
    cw_low = budget[cw].hours_h100_projected.iloc[0] / 5  # every round stopped at 200 of 1,000
    print(f"total: {budget.hours_h100_projected.sum():.1f} h projected on one H100 (C&W at its "
          f"bound; {budget.hours_h100_projected.sum() - budget[cw].hours_h100_projected.iloc[0] + cw_low:.1f}"
          " h if every C&W round aborts at its first check, step 200)")
    storage = paper_storage()
    report.save_table(storage, out, "projection_paper_storage")
    print("\nPROJECTED cache and host RAM of the paper preset:")
    print(storage.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    disk = storage[storage.kind == "disk"].gb_projected.sum()
    print(f"cache: {disk:.1f} GB; host RAM: training images "
          f"{storage.gb_projected.iloc[6]:.1f} GB held throughout, the largest other stage on "
          "top of them")


def rss_child(pairs: int, mode: str, size: int, folder: str) -> dict:
    """In a fresh process: ``pairs`` training pairs at ``size`` written to ``folder`` (float16
    adversarial shards, uint8 clean images in a .npy), then 20 purifier training steps
    reading them ``streamed`` (memory maps, as the main job) or ``in_memory`` (both sets
    loaded whole as float32, as before); returns the peak RSS (MiB) and the sets' sizes."""
    import resource
    from tfadv.defenses import purifier
    folder = Path(folder)
    rng = np.random.default_rng(0)
    shape = (size, size, 3)
    adversarial = cache.cached_shards(folder / f"adv{pairs}", pairs, 500, lambda a, b, i: rng.uniform(
        0, 1, (b - a, *shape)).astype(np.float16), dtype="float16", lazy=True)
    clean_path = folder / f"clean{pairs}.npy"
    clean = np.lib.format.open_memmap(clean_path, "w+", np.uint8, (pairs, *shape))
    for start in range(0, pairs, 500):
        clean[start:start + 500] = rng.integers(0, 256, (min(500, pairs - start), *shape))
    clean.flush()
    del clean
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if mode == "streamed":
        x_adv, x_clean = adversarial, np.load(clean_path, mmap_mode="r")
    else:
        x_adv = adversarial[0:pairs]
        x_clean = np.load(clean_path).astype(np.float32) / 255.0
    generator, discriminator, _ = purifier_setup(size, "float32", False, base_filters=8)
    purifier.train_purifier(x_adv, x_clean, generator=generator, discriminator=discriminator,
                            features=None, epochs=1, batch_size=8, verbose=False,
                            stop_after_steps=20, steps_per_call=20)
    status = dict(line.split(":", 1) for line in
                  Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {"pairs": pairs, "mode": mode, "size": size,
            "float32_set_mib": pairs * np.prod(shape) * 4 / 2**20,
            "peak_rss_before_training_mib": before,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            # after training: process memory proper (anonymous) and mapped file pages, which
            # the kernel drops under memory pressure (memory maps, page cache)
            "rss_anon_mib": int(status["RssAnon"].split()[0]) / 1024,
            "rss_file_mib": int(status["RssFile"].split()[0]) / 1024}


def memory_main():
    """Peak host RAM of purifier training at N and 4N pairs, streamed vs loaded whole, each
    in its own process (peak RSS is per process)."""
    import json
    import subprocess
    import sys
    import tempfile
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for mode in ("streamed", "in_memory"):
            for pairs in (FLAGS.pairs, 4 * FLAGS.pairs):
                code = (f"import json; from experiments.benchmark_purifier import rss_child; "
                        f"print(json.dumps(rss_child({pairs}, {mode!r}, {FLAGS.size}, "
                        f"{folder!r})))")
                proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                      text=True, check=True)
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    table = pd.DataFrame(rows)
    out = cache.path(FLAGS.out or report.PROJECT_ROOT / "results" / "benchmark")
    report.save_table(table, out, "benchmark_purifier_memory")
    print(f"peak host RAM of 20 purifier training steps (batch 8, {FLAGS.size}x{FLAGS.size}) "
          "at N and 4N pairs: streamed from float16 shards + uint8 memory map (the main job) "
          "vs both sets loaded whole as float32 (before); one process per row")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.0f}"))


def main(argv):
    if len(argv) != 2 or argv[1] not in ("speed", "memory"):
        raise app.UsageError("usage: python -m experiments.benchmark_purifier speed|memory "
                             "[--size=32] [--batch=1] [--pairs=1000]")
    return speed_main() if argv[1] == "speed" else memory_main()


if __name__ == "__main__":
    common.main(main, "benchmark_purifier")
