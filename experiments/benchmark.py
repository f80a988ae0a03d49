"""Speed benchmarks that print figures (never timed tests: these machines are noisy).

    python -m experiments.benchmark jsma [--n=100] [--data=PATH]
    python -m experiments.benchmark attacks [--n=100] [--data=PATH] [--only=cw_l2,uap]

``jsma``: the native batched JSMA against ART's ``SaliencyMapMethod`` on the same model,
images and targets (targeted, since ART's is targeted only; theta 1, gamma 0.1). Prints
success rate, mean L0 of the successful images, wall time and the speed ratio, and writes
``<out>/benchmark_jsma.csv``. Times are medians of ``--repeats`` runs (min and max beside).
The model is a small CNN trained (and cached under the cache root, ``--cache_dir``) on the
data given, CIFAR-10 when pointed at it, scikit-learn's digits by default, in the precision
``--precision`` names (default: ``auto``).
Target (issue 2): at least ART's success rate, at least 50x faster, on CPU.

``attacks``: each attack of ours beside the library it wraps (cleverhans for FGSM, BIM, PGD,
MI-FGSM, ART for AutoAttack: the ratio is our wrapper's overhead) or the peers it replaces
(ART and Foolbox for DeepFool and C&W L2, ART for C&W Linf/L0 and UAP; L-BFGS has no peer),
untargeted, on the same model and images; ``--only=cw_l2,uap`` picks attacks; writes
``benchmark_attacks.csv``. ART peers that take minutes are timed once, without a warm-up.
Measured figures are in notes/RESULTS.md.

``attacks`` also has the native compiled FGSM/BIM/PGD/MI-FGSM/R+FGSM (with and without XLA)
beside cleverhans (``--architecture=resnet18_w32`` attacks the cifar presets' ResNet-18), and
a paper-shape row (``--paper_batch=64``): PGD input gradients per second on Inception-v3 at
299x299. The standard AutoAttack's cross-check against torchattacks and ART's APGD-CE is
``experiments.benchmark_autoattack.autoattack_crosscheck`` (needs torch; notes/RESULTS.md).

``purifier`` (paper 003): seconds per training step of the pix2pix purifier (U-Net +
PatchGAN + VGG19 perceptual loss with random weights: timing only) at ``--size``, batch
``--purifier_batch``, in float32 and mixed_bfloat16: the old Python loop beside the compiled
loop with and without XLA (and under ``--strategy`` when it has several replicas), with counted
FLOPs and achieved TFLOP/s; then (``--projection_steps=1``) the paper preset projected on one
H100 by stage, and its cache and host RAM (tfadv.report.projection). ``purifier_memory``: peak
and anonymous RSS of training at ``--pairs`` N and 4N, streamed vs loaded whole.

    python -m experiments.benchmark purifier [--size=32] [--timed_steps=10] [--projection_steps=1]
    python -m experiments.benchmark purifier_memory [--pairs=1000] [--size=128]
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

flags.DEFINE_integer("n", 100, "images to attack")
flags.DEFINE_float("theta", 1.0, "JSMA theta")
flags.DEFINE_float("gamma", 0.1, "JSMA gamma")
flags.DEFINE_float("eps", 8 / 255, "attacks: Linf eps of the gradient attacks")
flags.DEFINE_list("only", None, "attacks: run only these attacks (default: all)")
flags.DEFINE_enum("architecture", "tiny_cnn", ["tiny_cnn", "resnet18_w32"],
                  "attacks/jsma: the attacked model (resnet18_w32: the cifar presets' ResNet-18)")
flags.DEFINE_bool("xla_rows", True, "attacks: also time the native kernels with XLA")
flags.DEFINE_integer("paper_batch", 64, "attacks: batch of the paper-shape row (Inception-v3 "
                     "at 299x299, random weights: timing only); 0 skips it")
flags.DEFINE_integer("repeats", 3, "timed runs of each implementation (the median is reported)")
flags.DEFINE_integer("size", 32, "purifier: image side, a power of two >= 32 (paper: 256)")
flags.DEFINE_integer("base_filters", 64, "purifier: U-Net / PatchGAN base filters (pix2pix: 64)")
flags.DEFINE_integer("purifier_batch", 1, "purifier: training batch size (pix2pix: 1)")
flags.DEFINE_integer("pairs", 1000, "purifier_memory: N (runs at N and 4N training pairs)")
flags.DEFINE_integer("timed_steps", 10, "purifier: training steps per timed run")
flags.DEFINE_integer("projection_steps", 1, "purifier: 1 counts the FLOPs of the paper "
                     "preset's networks and projects its time on one H100 (0 skips it)")
FLAGS = flags.FLAGS


def benchmark_model(source: str, seed: int, precision: str, cache_dir=None,
                    architecture: str = "tiny_cnn"):
    """A tiny CNN (or ``architecture``) trained for a few epochs on ``source``, and its test
    split. The model is cached under ``<cache root>/models`` (``cache_dir``, else $TFADV_CACHE,
    else data/).

    Not a zoo entry: ``tiny_cnn_10k`` trains longer, with augmentation and in the "auto"
    precision, while this one keeps the settings the figures in notes/RESULTS.md were
    measured on, in the precision ``--precision`` names."""
    from tfadv import cache, data, models
    from tfadv.models.zoo import data_id
    root = cache.root(cache_dir)
    train = data.load(source, "train", cache_dir=root)
    test = data.load(source, "test", cache_dir=root)
    train = data.subset(train, n=min(len(train.labels), 10_000), seed=seed)
    model, _, _ = models.train_cached(
        train, architecture=architecture, epochs=5, batch_size=64, learning_rate=3e-3,
        augment=False, seed=seed, precision=precision, data_id=data_id(source),
        cache_dir=root, verbose=False)
    return model, test


def jsma_rows(model, x, y, targets, theta, gamma, repeats):
    from art.attacks.evasion import SaliencyMapMethod
    from tfadv import attacks
    from tfadv.attacks import art_bridge

    def native(**params):
        attack = attacks.make("jsma", theta=theta, gamma=gamma, **params)
        return lambda: attack(model, x, y, targets)

    runs = {
        "tfadv native (default: pairs, strongest other class)": native(),
        "tfadv native, XLA jit_compile": native(jit_compile=True),
        "tfadv native, margin saliency (one backward pass)": native(saliency="margin"),
        "tfadv native, original rule (sum of other classes, strict pairs)": native(
            others="sum", strict_pairs=True),
        "ART SaliencyMapMethod": lambda: SaliencyMapMethod(
            art_bridge.art_classifier(model, x.shape[1:]), theta=theta,
            gamma=gamma, batch_size=len(x), verbose=False).generate(
                x, np.eye(int(model.output_shape[-1]))[targets]),
    }
    table = time_runs(runs, model, x, y, targets, repeats)
    table = table.rename(columns={"l0_mean_successful": "mean_l0_successful"})
    table["speedup_vs_art"] = table.seconds.iloc[-1] / table.seconds
    return table[["implementation", "images", "success_rate", "mean_l0_successful", "seconds",
                  "seconds_min", "seconds_max", "images_per_s", "speedup_vs_art"]]


def time_runs(runs: dict, model, x, y, target, repeats: int,
              once: tuple = ()) -> pd.DataFrame:
    """Times each ``runs[name]()`` ``repeats`` times (median, min, max) after one untimed
    warm-up run (graph tracing for this batch shape), and measures its result with
    ``tfadv.evaluation.attack_metrics``. Runs named in ``once`` (peers that take minutes)
    are timed once, without a warm-up: their time includes their own tracing."""
    from tfadv.evaluation import attack_metrics
    rows = []
    for name, run in runs.items():
        if name not in once:
            run()
        times = []
        for _ in range(1 if name in once else repeats):
            tic = time.perf_counter()
            x_adv = np.asarray(run(), np.float32)
            times.append(time.perf_counter() - tic)
        seconds = float(np.median(times))
        metrics = attack_metrics(model, x, y, x_adv, target, seconds)
        rows.append({"implementation": name, **metrics, "seconds_min": min(times),
                     "seconds_max": max(times)})
    return pd.DataFrame(rows)


def art_autoattack(art, x, y, params):
    """ART's AutoAttack with the sub-attacks tfadv.attacks.autoattack builds, called directly."""
    from tfadv.attacks.art_bridge import one_hot
    from art.attacks.evasion import (AutoAttack, AutoProjectedGradientDescent, DeepFool,
                                     SquareAttack)
    eps = params["eps"]
    apgd = dict(estimator=art, norm=np.inf, eps=eps, eps_step=eps / 4,
                max_iter=params["apgd_max_iter"], targeted=False,
                nb_random_init=params["nb_random_init"], batch_size=32, verbose=False)
    subs = [AutoProjectedGradientDescent(loss_type="cross_entropy", **apgd),
            AutoProjectedGradientDescent(loss_type="difference_logits_ratio", **apgd),
            DeepFool(art, max_iter=params["deepfool_max_iter"], epsilon=1e-3, nb_grads=10,
                     batch_size=32, verbose=False),
            SquareAttack(estimator=art, norm=np.inf, max_iter=params["square_max_iter"],
                         eps=eps, p_init=0.8, nb_restarts=params["square_restarts"],
                         batch_size=32, verbose=False)]
    np.random.seed(0)
    return AutoAttack(art, norm=np.inf, eps=eps, eps_step=eps / 4, attacks=subs,
                      batch_size=32).generate(x, one_hot(y, art.nb_classes))


# The attacks with a native compiled kernel (tfadv/attacks/iterative.py) beside cleverhans.
NATIVE = ("fgsm", "bim", "pgd", "mifgsm", "rfgsm")


def paper_shape_rows(batch: int, precision: str, steps: int = 3, repeats: int = 2):
    """Input gradients per second of PGD at the paper preset's shape (Inception-v3 at
    299x299, random weights: timing only), native (compiled; with XLA) vs cleverhans, on one
    batch of ``batch`` images for ``steps`` steps (median of ``repeats`` after a warm-up)."""
    import keras
    import tensorflow as tf
    from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent
    from tfadv import attacks
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        model = keras.applications.InceptionV3(weights=None, classifier_activation=None)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (batch, 299, 299, 3)).astype(np.float32)
    y = rng.integers(0, 1000, batch)
    p = dict(eps=16 / 255, eps_iter=0.01, nb_iter=steps, rand_init=False, batch_size=batch)
    runs = {"tfadv native": lambda: attacks.make("pgd", **p)(model, x, y),
            "tfadv native, XLA": lambda: attacks.make("pgd", **p, jit_compile=True)(model, x, y),
            "cleverhans": lambda: projected_gradient_descent(
                model, tf.constant(x), 16 / 255, 0.01, steps, np.inf, clip_min=0.0,
                clip_max=1.0, y=tf.constant(y), rand_init=False, sanity_checks=False)}
    rows = []
    for name, run in runs.items():
        run()
        times = []
        for _ in range(repeats):
            tic = time.perf_counter()
            np.asarray(run())
            times.append(time.perf_counter() - tic)
        seconds = float(np.median(times))
        rows.append({"attack": f"pgd, Inception-v3 299x299, batch {batch}, {steps} steps",
                     "implementation": name, "images": batch, "seconds": seconds,
                     "seconds_min": min(times), "seconds_max": max(times),
                     "gradients_per_s": batch * steps / seconds})
    table = pd.DataFrame(rows)
    table["speedup_vs_peer"] = table.seconds.iloc[-1] / table.seconds
    return table


def attack_rows(model, x, y, eps, repeats):
    """Each attack of ours beside the library it wraps or the peer it replaces, untargeted."""
    import foolbox
    import tensorflow as tf
    from art.attacks.evasion import (CarliniL0Method, CarliniL2Method, CarliniLInfMethod,
                                     DeepFool, UniversalPerturbation)
    from cleverhans.tf2.attacks.basic_iterative_method import basic_iterative_method
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
    from cleverhans.tf2.attacks.momentum_iterative_method import momentum_iterative_method
    from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent
    from tfadv import attacks
    from tfadv.attacks import art_bridge
    xt, yt = tf.constant(x), tf.constant(y)
    step = eps / 4
    ours = {"fgsm": dict(eps=eps), "bim": dict(eps=eps, eps_iter=step, nb_iter=10),
            "pgd": dict(eps=eps, eps_iter=step, nb_iter=10),
            "mifgsm": dict(eps=eps, eps_iter=step, nb_iter=10), "rfgsm": dict(eps=eps),
            "deepfool": dict(),
            # C&W L2: ours and Foolbox's (both Carlini's Adam) with 9 binary-search steps of
            # 200 Adam steps; ART's runs its defaults (10 x 10 steps of its own line search,
            # which needs fewer steps than Adam to succeed). Compare success and L2 too.
            "cw_l2": dict(binary_search_steps=9, max_iterations=200),
            "cw_linf": dict(max_iterations=10),
            "cw_l0": dict(),
            "uap": dict(eps=0.2, max_iter=5),
            "autoattack": dict(eps=eps, version="art", apgd_max_iter=20, nb_random_init=1,
                               deepfool_max_iter=20, square_max_iter=200, square_restarts=1),
            "lbfgs": dict()}
    art = art_bridge.art_classifier(model)  # the float32-logits wrapper our ART attacks use

    def one_hot(labels):
        return art_bridge.one_hot(labels, art.nb_classes)
    peers = {
        "fgsm": {"cleverhans": lambda: fast_gradient_method(
            model, xt, eps, np.inf, clip_min=0.0, clip_max=1.0, y=yt)},
        "bim": {"cleverhans": lambda: basic_iterative_method(
            model, xt, eps, step, 10, np.inf, clip_min=0.0, clip_max=1.0, y=yt,
            sanity_checks=False)},
        "pgd": {"cleverhans": lambda: projected_gradient_descent(
            model, xt, eps, step, 10, np.inf, clip_min=0.0, clip_max=1.0, y=yt,
            sanity_checks=False)},
        "mifgsm": {"cleverhans": lambda: momentum_iterative_method(
            model, xt, eps, step, 10, np.inf, clip_min=0.0, clip_max=1.0, y=yt,
            sanity_checks=False)},
        # cleverhans has no R+FGSM: its FGSM from our random start (our cleverhans backend)
        "rfgsm": {"cleverhans": lambda rfgsm=attacks.make("rfgsm", eps=eps,
                                                           backend="cleverhans"):
                  rfgsm(model, x, y)},
        "deepfool": {
            "ART DeepFool": lambda: DeepFool(
                art, max_iter=50,
                epsilon=0.02, nb_grads=10, batch_size=len(x), verbose=False).generate(x),
            "Foolbox L2DeepFoolAttack": lambda: foolbox.attacks.L2DeepFoolAttack(
                steps=50, candidates=10, overshoot=0.02, loss="logits")(
                    foolbox.TensorFlowModel(model, bounds=(0, 1)), xt, yt, epsilons=None)[1]},
        "cw_l2": {
            "ART CarliniL2Method": lambda: CarliniL2Method(
                art, batch_size=len(x), verbose=False).generate(x, one_hot(y)),
            "Foolbox L2CarliniWagnerAttack": lambda: foolbox.attacks.L2CarliniWagnerAttack(
                binary_search_steps=9, steps=200)(
                    foolbox.TensorFlowModel(model, bounds=(0, 1)), xt, yt, epsilons=None)[1]},
        "cw_linf": {"ART CarliniLInfMethod": lambda: CarliniLInfMethod(
            art, max_iter=10, batch_size=len(x), verbose=False).generate(x, one_hot(y))},
        "cw_l0": {"ART CarliniL0Method": lambda: CarliniL0Method(
            art, batch_size=len(x), verbose=False).generate(x, one_hot(y))},
        "uap": {"ART UniversalPerturbation (DeepFool)": lambda: UniversalPerturbation(
            art, attacker="deepfool", delta=0.2, max_iter=5, eps=0.2, norm=np.inf,
            verbose=False).generate(x)},
        # Our autoattack IS ART's: the ratio is the wrapper's overhead.
        "autoattack": {"ART AutoAttack (same sub-attacks)": lambda: art_autoattack(
            art, x, y, ours["autoattack"])},
        "lbfgs": {},  # no peer: Foolbox 3 dropped its L-BFGS attack, ART has none
    }
    only = [a for a in (FLAGS.only or list(ours)) if a in ours]
    slow_peers = ("ART CarliniL2Method", "ART CarliniLInfMethod", "ART CarliniL0Method",
                  "ART UniversalPerturbation (DeepFool)", "ART DeepFool")
    tables = []
    for name in only:
        attack = attacks.make(name, **ours[name])
        runs = {f"tfadv {name}": lambda attack=attack: attack(model, x, y)}
        if name in NATIVE and FLAGS.xla_rows:  # XLA too (slower on CPUs: DESIGN.md)
            runs[f"tfadv {name}, XLA"] = lambda a=attacks.make(
                name, **ours[name], jit_compile=True): a(model, x, y)
        first_peer = len(runs)
        runs.update(peers[name])
        print(f"  {name}: {', '.join(runs)}", flush=True)
        table = time_runs(runs, model, x, y, None, repeats, once=slow_peers)
        table.insert(0, "attack", name)
        table["speedup_vs_peer"] = (table.seconds.iloc[first_peer] / table.seconds
                                    if len(table) > first_peer else np.nan)
        tables.append(table)
    columns = ["attack", "implementation", "images", "success_rate", "l2_mean_successful",
               "linf_mean_successful", "seconds", "seconds_min", "seconds_max",
               "images_per_s", "speedup_vs_peer"]
    return pd.concat(tables, ignore_index=True)[columns]


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


def purifier_main():
    """The ``purifier`` subcommand: the single-device loop beside the compiled one, counted
    FLOPs and achieved TFLOP/s, then the paper preset's projection for one H100."""
    import tensorflow as tf
    from tfadv import distribute
    from tfadv.models.inception import inception_v3
    strategy = distribute.choose(FLAGS.strategy, FLAGS.cpu_replicas)
    size, batch = FLAGS.size, FLAGS.purifier_batch
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


def purifier_memory_main():
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
                code = (f"import json; from experiments.benchmark import rss_child; "
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
    if len(argv) == 2 and argv[1] == "purifier":
        return purifier_main()
    if len(argv) == 2 and argv[1] == "purifier_memory":
        return purifier_memory_main()
    if len(argv) != 2 or argv[1] not in ("jsma", "attacks"):
        raise app.UsageError("usage: python -m experiments.benchmark "
                             "jsma|attacks|purifier|purifier_memory "
                             "[--n=100] [--data=PATH] [--size=32]")
    from tfadv import data
    seed = FLAGS.seed or 0
    source = FLAGS.data or "digits"
    # Both implementations attack the same model, built under the project's default
    # precision (mixed bfloat16 on CPUs with AMX/AVX512-BF16, as the cifar presets use).
    from tfadv.models.train import resolve_precision
    precision = resolve_precision(FLAGS.precision or "auto")
    model, test = benchmark_model(source, seed, precision, FLAGS.cache_dir, FLAGS.architecture)
    picked = data.subset(test, n=FLAGS.n, seed=seed)
    out = cache.path(FLAGS.out or report.PROJECT_ROOT / "results" / "benchmark")
    if argv[1] == "attacks":
        table = attack_rows(model, picked.images, picked.labels, FLAGS.eps, FLAGS.repeats)
        report.save_table(table, out, "benchmark_attacks")
        print(f"attacks, untargeted, eps {FLAGS.eps:.4f}, {len(picked.labels)} images of "
              f"{source}, {FLAGS.architecture} in {precision}, CPU; seconds: median of "
              f"{FLAGS.repeats}")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        if FLAGS.paper_batch:
            paper = paper_shape_rows(FLAGS.paper_batch, precision)
            report.save_table(paper, out, "benchmark_attacks_paper_shape")
            print(f"paper shape, {precision}, CPU; seconds: median of 2")
            print(paper.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        return
    rng = np.random.default_rng(seed)
    targets = (picked.labels + rng.integers(1, test.num_classes, len(picked.labels))) \
        % test.num_classes
    table = jsma_rows(model, picked.images, picked.labels, targets, FLAGS.theta, FLAGS.gamma,
                      FLAGS.repeats)
    report.save_table(table, out, "benchmark_jsma")
    print(f"JSMA, targeted, theta {FLAGS.theta}, gamma {FLAGS.gamma}, {len(picked.labels)} "
          f"images of {source}, tiny CNN in {precision}, CPU")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    common.main(main, "benchmark")
