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

The purifier's training speed and memory are ``experiments.benchmark_purifier``.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from absl import app, flags

from experiments import common
from tfadv import cache, report

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


def main(argv):
    if len(argv) != 2 or argv[1] not in ("jsma", "attacks"):
        raise app.UsageError("usage: python -m experiments.benchmark "
                             "jsma|attacks [--n=100] [--data=PATH] "
                             "(the purifier: experiments.benchmark_purifier)")
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
