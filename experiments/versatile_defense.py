"""Paper 003: the versatile defense, one pix2pix purifier trained on six attacks (main job).

Zhang, Yao, Sakurai, "Versatile Defense Against Adversarial Attacks on Image Recognition"
(shared/papers/003). A pix2pix generator (U-Net + PatchGAN, perceptual loss, the paper's
multi-step loss weights, 3.2) maps adversarial images back to clean ones. Writes, with the
paper's numbers beside ours (tfadv.report.versatile): Table 1 (``table1_generalizability``:
six attack-specific purifiers against seven attacks, DeepFool unseen); Table 2
(``table2_comparison``: the versatile purifier beside the matching attack-specific one,
Random Resizing, Pixel Deflection + WD, Super-Resolution + WD); Fig 3 (``quality``: MAE,
PSNR, SSIM); Fig 4 (``robustness``: PGD and MI-FGSM, 10..100 iterations at eps 2, 5,
10/255, each eps one 100-step run whose iterates give the shorter counts); Fig 5 (``visual.png``); 3.4.1 with ``--png_roundtrip`` (rows after a PNG round
trip). Beyond the paper: ``table_adaptive`` (PGD that sees the defense: exact gradients,
BPDA or EOT from each defense's declared properties, with a ``sanity`` column) and
``purifier_training`` (losses, recovered accuracy per epoch). Readings: notes/DECISIONS.md.

Commands (``--steps=multi`` is the paper's schedule, ``single`` its fixed weights,
``constant`` keeps lambda_perc = 100, results under ``<preset>-steps_<steps>``; ``--plan``
prints the resolved settings; ``run(config, out)`` does the same from Python):

    python -m experiments.versatile_defense --steps=multi   # paper on a GPU/TPU, else quick
    python -m experiments.versatile_defense --preset=cifar --data=../shared/data/cifar10-jpeg.tar.gz
    python -m experiments.versatile_defense --preset=paper --data=IMAGENET_DIR_OR_TAR

Presets: ``paper`` (ImageNet, Inception-v3 from the zoo, 18 training images per class = 18,000
pairs, 5,000 test images, eps 16/255, 40 steps of 0.01, purifiers at 256x256 with 64
filters, 100 epochs, Adam(2e-4 x sqrt(batch), 0.5) on 16 pairs per device (a stated
deviation from pix2pix's batch 1, which ``--set=batch_size=1`` restores), ImageNet VGG19
perceptual loss; missing data or weights stop it at once); ``cifar`` (CIFAR-10, the zoo's
cifar10_resnet18_w32, the paper's data at 32x32: 18,000 pairs = 1,800 training images per
class, each attacked by one attack, 3,000 per attack-specific purifier; 300 validation images
for the monitor, 500 test images; 32x32 purifiers, 12 epochs, Adam 8e-4 (2e-4 x sqrt(16)),
beta_1 0.5; an independent perceptual network, the zoo's VGG-style cifar10_vgg6_w32, each
layer normalised by its mean |activation| on clean images: a SUBSTITUTE for VGG19, said
loudly in every table; ``--set=perceptual=classifier`` uses the attacked classifier's
features instead); ``quick`` (digits, offline, eps 48/255, the zoo's digits_tiny_cnn, 600
pairs per purifier; with ``--data`` a tiny CNN on 10,000 images); ``smoke``. Every preset
writes ``diagnostics`` (beyond the paper: purified noise vs purified attacks, a second
classifier, test-time dropout, what is left of the perturbation). Ablations:
``--set=dropout_blocks=N`` (pix2pix: 3), ``--set=l1_range=signed`` (L1 on [-1, 1]).

Expected (paper, accuracy %): no defense 0-26 under attack; attack-specific purifiers 76-81
on average (Table 1); versatile 86.0 vs attack-specific 87.1 (Table 2); Random Resizing 50.4,
PD+WD 37.0, SR+WD 76.6. Measured (notes/RESULTS.md): quick Table 2 averages versatile 84.5,
attack-specific 86.0, Random Resizing 31.2, PD+WD 28.0, SR+WD 41.6; cifar (60 min with the
classifier and VGGs cached) versatile 41.8, attack-specific 40.0, clean 95.4, C&W and DeepFool
93-94, the 16/255 Linf attacks 8-12 (target 70 missed; diagnostics: purified noise 85.8%, a
second classifier reads the purified PGD images at 44.6% against the ResNet-18's 11.8%: the
leftover perturbation is classifier-specific); PGD through the versatile purifier takes it
from 83% to 21% (quick) and from 7% to 0% (cifar). Ablations (cifar, versatile only): 38.0
as read, 39.3 ``dropout_blocks=1``, 37.4 ``l1_range=signed``, 37.1 ``perceptual=classifier``,
none adopted; every monitor falls from 27-40% to 18-20% in the schedule's last phase.

The gradient attacks are the suite's native compiled loops (cleverhans' images,
tests/attacks/test_native_kernels.py); AutoAttack is ART's, as the paper ran it. Attack
settings and the purifiers' batch rule: tfadv/defenses/versatile.py.

Runtime (2-core CPU): smoke ~30 s, quick ~3-6 min (13 s cached), cifar 60 min (+~1.5 h for the
classifier and ~15 min for each VGG if not cached), paper: 6.5 h on one H100, projected
from counted FLOPs (notes/RESULTS.md, "At the paper's scale"). A killed run resumes.
``--strategy`` picks the devices (auto: a TPU, several GPUs, one GPU, the CPU).
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import flags

from experiments import common
from tfadv import cache
from tfadv.report.versatile import DEFENSE_LABELS, LABELS, ROWS, TRAIN_ATTACKS, build_tables

flags.DEFINE_enum("steps", "multi", ["multi", "single", "constant"],
                  "purifier loss weights (paper 3.2): multi = lambda_perc 100/50/1 over 40/30/30% "
                  "of the epochs, single = a fixed (lambda_pix, lambda_perc) = (100, 1); "
                  "constant (not the paper's) = (100, 100) throughout")
flags.DEFINE_bool("png_roundtrip", False, "also evaluate Tables 1-2 after a PNG save and "
                  "reload of the attacked images (paper 3.4.1); rows with evaluation=png")
flags.DEFINE_string("inception_weights", "imagenet", "paper preset: Inception-v3 weights, "
                    "'imagenet' (Keras download or cache) or a keras.applications .h5 file")
flags.DEFINE_string("vgg19_weights", "imagenet", "perceptual=vgg19: VGG19 (no top) weights, "
                    "'imagenet' or a keras.applications .h5 file")
flags.DEFINE_bool("plan", False, "print the resolved preset and schedule, then exit")
FLAGS = flags.FLAGS

EXPERIMENT = "versatile_defense"

# ---------------------------------------------------------------------------- the paper

# Section 3.1.4: Linf eps 16/255 for FGSM, BIM, PGD, MI-FGSM and AutoAttack ([0, 1] pixels, as
# the paper's images), 40 iterations of step 0.01; C&W with the L2 norm.
PAPER_EPS, PAPER_EPS_ITER, PAPER_NB_ITER = 16 / 255, 0.01, 40
# Beyond the paper: the defenses attacked through (table_adaptive).
ADAPTIVE_DEFENSES = ("none", "versatile", "specific_pgd", "random_resize", "pd_wd", "sr_wd")

# ---------------------------------------------------------------------------- presets

_PAPER = dict(
    data="imagenet2012", data_dir=None, seed=0, precision="auto",
    classifier="inception_v3", image_size=256,
    # data (paper 3.1.3): 18 training images per class, 3 per attack; 5 validation images per
    # class. The paper's "No defense / Clean" is 100%: test images are ones the classifier
    # gets right (picked from test_pool_per_class candidates of each class).
    train_per_class=18, test_per_class=5, test_pool_per_class=15, test_correct_only=True,
    # beyond the paper: validation images for the per-epoch monitor, drawn from the training
    # split beside the training images (the test images are read once, at the end)
    val_per_class=1,
    # an attack's own purifier trains on its share of the 18,000 pairs (the 3,000 images the
    # paper's training set has of that attack: 3 per class); "all": every training image
    # attacked by it (6x the attack runs; the quick/smoke presets, whose digits are few)
    specific_pairs="share",
    # attacks (paper 3.1.4); C&W: cleverhans' carlini_wagner_l2 defaults; AutoAttack: ART's
    # defaults (our wrapper's); DeepFool (unseen): the original's settings.
    eps=PAPER_EPS, eps_iter=PAPER_EPS_ITER, nb_iter=PAPER_NB_ITER,
    cw_binary_search_steps=5, cw_max_iterations=1000, cw_learning_rate=5e-3,
    cw_initial_const=1e-2,
    aa_apgd_max_iter=100, aa_nb_random_init=5, aa_deepfool_max_iter=100,
    aa_square_max_iter=5000, aa_square_restarts=5,
    deepfool_max_iter=50, deepfool_overshoot=0.02,
    # images per compiled attack call (the gradient attacks' and C&W's batches: C&W drops its
    # finished images, so it starts wider); ART's AutoAttack takes at most 128
    attack_batch_size=128, cw_batch_size=256, shard_size=250,
    # at 5,000 test images of 256x256: attacked test sets stored in float16 (half the disk;
    # the training sets always are) and defended 1,000 images at a time (host RAM)
    test_dtype="float16", eval_chunk=1000,
    # purifiers (paper 2.2, 3.2; pix2pix): U-Net + PatchGAN, Adam(2e-4, 0.5), batch 1.
    # Deviation (run.json "purifier_batch"): batch_size 0 = batch_per_replica images on each
    # replica (16 fill an H100 at 256x256; pix2pix's batch 1 leaves it ~95% idle), with the
    # learning rate scaled by sqrt(global batch / 1) (lr_scaling "sqrt": 2e-4 at batch 1,
    # 8e-4 at 16); --set=batch_size=1 restores pix2pix's batch 1 and 2e-4 exactly.
    base_filters=64, batch_size=0, batch_per_replica=16, lr_scaling="sqrt", epochs=100,
    learning_rate=2e-4, beta_1=0.5, perceptual="vgg19",
    # perceptual_norm: each feature layer divided by its mean |activation| on clean images
    # (for networks whose features are small next to VGG19's on 0-255 inputs; the paper's
    # VGG19 is used as it is). Ablations (paper 003 / pix2pix readings): dropout in the U-Net's
    # first dropout_blocks up blocks (pix2pix: 3), the L1 term on [0, 1] ("unit") or pix2pix's
    # [-1, 1] ("signed"); test-time dropout is a column of the diagnostics.
    perceptual_norm=False, dropout_blocks=3, l1_range="unit",
    # "all": the six attack-specific purifiers and the versatile one; "versatile": that one
    # only (an ablation of its settings at a third of the cost: no Table 1, no Atk-specific
    # column, Fig 4 and the adaptive table without the attack-specific purifier)
    purifiers="all",
    # how the training step runs (not what it learns): updates per compiled call, XLA (a
    # TPU's requirement; used on GPUs and TPUs only: on a CPU its kernels are slower), a
    # checkpoint every this many minutes besides every epoch's end
    steps_per_call=64, jit_compile=True, checkpoint_minutes=15,
    # baselines: the x2 SR network trained by the suite on 2,000 of the training images (0:
    # all, 18 GB of float32 pairs at this size); EOT draws of the random defenses in the
    # adaptive attack
    sr_images=2000, sr_epochs=10, sr_batch_size=16, sr_filters=64, sr_blocks=4,
    # Fig 4 (robust_n 0: every test image), Fig 3 (quality_n 0: every test image)
    robust_attacks=["pgd", "mifgsm"], robust_eps=[2 / 255, 5 / 255, 10 / 255],
    robust_iterations=[10, 20, 30, 40, 50, 60, 70, 80, 90, 100], robust_n=0, quality_n=1000,
    # beyond the paper: adaptive PGD (the paper's PGD settings) through defense + classifier
    adaptive_n=500, adaptive_nb_iter=PAPER_NB_ITER, adaptive_eot=8, sanity_n=100,
    # beyond the paper: after every epoch, the accuracy each purifier recovers on the first
    # monitor_n test images attacked by its attack(s) is logged (purifier_training.csv);
    # nothing is chosen with it (the last epoch's purifier is the one evaluated)
    monitor_n=200,
    # beyond the paper: diagnostics.csv (why a purifier recovers an attack or not) on the
    # first diagnostics_n test images (0: all), with a second classifier of the zoo trained
    # at another seed (None: the column is left out; inception_v3 has no second)
    diagnostics_n=500, second_classifier=None,
    # TensorFlow op determinism: the same seed gives the same purifiers. Off for the GPU
    # preset (slower there, and some GPU kernels have no deterministic version).
    deterministic=False,
)

# CIFAR-10 on a 2-core CPU: paper 003's data at 32x32 (18,000 training pairs, 1,800 per
# class, each attacked by one attack; 3,000 per attack-specific purifier), trained with the
# paper preset's optimiser rule (Adam 2e-4 x sqrt(batch 16) = 8e-4, beta_1 0.5) for 12 epochs
# of the multi-step schedule; an independent perceptual network (the zoo's VGG-style
# cifar10_vgg6_w32, per-layer normalised), a validation split for the monitor. Sized from
# measured speeds (ResNet-18 w32 bf16: PGD-40 ~19 images/s, C&W ~10, AutoAttack ~22;
# purifier training ~200 pairs/s at batch 16) to finish in about 1.5 h with the classifier
# cached (notes/RESULTS.md).
_CIFAR = dict(
    _PAPER, data="cifar10", classifier="cifar10_resnet18_w32", image_size=32, deterministic=True,
    train_per_class=1800, val_per_class=30, test_per_class=50, test_pool_per_class=0,
    cw_binary_search_steps=2, cw_max_iterations=50,
    aa_apgd_max_iter=10, aa_nb_random_init=1, aa_deepfool_max_iter=10,
    aa_square_max_iter=50, aa_square_restarts=1,
    attack_batch_size=128, shard_size=500, test_dtype="float32", eval_chunk=0,
    base_filters=32, batch_size=16, lr_scaling="sqrt", epochs=12,
    perceptual="cifar10_vgg6_w32", perceptual_norm=True, steps_per_call=32, jit_compile=False,
    sr_images=5000, sr_epochs=5, sr_batch_size=32, sr_filters=32, sr_blocks=4,
    robust_iterations=[10, 25, 50, 100], robust_n=100, quality_n=0,
    adaptive_n=100, adaptive_eot=4, sanity_n=50, monitor_n=300,
    second_classifier="cifar10_vgg6_w32",
)

# Small classifiers for quick/smoke: the zoo's digits tiny CNN (paper 001's quick and smoke
# classifiers, the same cache files). Digits have 17 grey levels, so the
# paper's 16/255 is one level: it leaves the tiny CNN 74% accuracy under PGD (measured), far
# from the paper's regime (0-3%). 48/255 (3 levels) gives PGD 0.5%, FGSM 3.5%; Fig 4's eps
# keep the paper's ratios to it (2, 5, 10 sixteenths of eps).
_DIGITS_EPS = 48 / 255
_DIGITS = dict(
    _CIFAR, data="digits", classifier="digits_tiny_cnn", image_size=8, precision="auto",
    val_per_class=20, specific_pairs="all", lr_scaling="none", learning_rate=1e-3,
    perceptual="classifier", perceptual_norm=False, second_classifier=None, monitor_n=500,
    eps=_DIGITS_EPS, robust_eps=[_DIGITS_EPS * k / 16 for k in (2, 5, 10)],
    cw_binary_search_steps=5, cw_max_iterations=200,
    train_per_class=60, test_per_class=20, shard_size=200, attack_batch_size=256,
    diagnostics_n=0,
    base_filters=32, batch_size=16, epochs=20, sr_images=0, sr_epochs=10, sr_filters=16,
    sr_blocks=2, robust_iterations=[10, 40, 100], robust_n=100, adaptive_n=100,
)
_SMOKE = dict(
    _DIGITS, classifier="digits_tiny_cnn_smoke", train_per_class=6, test_per_class=3, nb_iter=5,
    val_per_class=3,
    cw_binary_search_steps=1, cw_max_iterations=10, aa_apgd_max_iter=5, aa_deepfool_max_iter=5,
    aa_square_max_iter=10, deepfool_max_iter=10, shard_size=40, base_filters=8, batch_size=10,
    epochs=3, sr_epochs=1, sr_filters=8, sr_blocks=1,
    robust_eps=[_DIGITS_EPS * 2 / 16, _DIGITS_EPS * 10 / 16],
    robust_iterations=[2, 5], robust_n=10, adaptive_n=10, adaptive_nb_iter=3, adaptive_eot=2,
    sanity_n=5, monitor_n=1000,
)
PRESETS = {"smoke": _SMOKE, "quick": _DIGITS, "cifar": _CIFAR, "paper": _PAPER}
# quick/smoke with --data other than digits (e.g. CIFAR-10): a tiny CNN on 10,000 images.
_RGB_SMALL = dict(image_size=32, classifier="tiny_cnn_10k", eps=PAPER_EPS,
                  robust_eps=_PAPER["robust_eps"],
                  cw_binary_search_steps=_CIFAR["cw_binary_search_steps"],
                  cw_max_iterations=_CIFAR["cw_max_iterations"])


def presets_for(data_source: str | None) -> dict:
    """PRESETS, with smoke/quick switched to a 32x32 RGB classifier when ``--data`` is given."""
    if data_source in (None, "digits"):
        return PRESETS
    return {**PRESETS, **{k: dict(PRESETS[k], **_RGB_SMALL) for k in ("smoke", "quick")}}


def zoo_seed_offsets(config) -> dict:
    """Seeds (+ the run's) of the zoo networks beside the classifier (at +0): the second at +1,
    the perceptual one at +0, or +2 when its recipe is the classifier's (+0: the same model)."""
    return {"second": 1, "perceptual": 2 if config["perceptual"] == config["classifier"] else 0}


# ---------------------------------------------------------------------------- preflight and main

def main(argv):
    del argv
    from absl import logging
    from tfadv.defenses.purifier import schedule_text
    from tfadv.models import zoo
    logging.set_verbosity(logging.WARNING)  # not TF's per-checkpoint INFO lines
    picked, reason = FLAGS.preset, "--preset"
    if FLAGS.preset is None:  # probe the devices only when asked to pick
        picked, reason = common.pick_preset(
            "paper", "quick", "the paper preset needs one (seven 256x256 purifiers); quick runs "
            "offline on a CPU in minutes; for CIFAR-10 on a CPU use --preset=cifar --data=PATH")
        print(f"{EXPERIMENT}: no --preset given: picked '{picked}' because {reason}", flush=True)
    presets = presets_for(FLAGS.data)
    if FLAGS.out is None and FLAGS.steps != "multi":  # beside the paper schedule's results
        FLAGS.out = str(common.PROJECT_ROOT / "results" / EXPERIMENT /
                        f"{FLAGS.preset or picked}-steps_{FLAGS.steps}")
    flags_in = dict(steps=FLAGS.steps, png_roundtrip=FLAGS.png_roundtrip,
                    inception_weights=FLAGS.inception_weights, vgg19_weights=FLAGS.vgg19_weights,
                    preset_source=reason if FLAGS.preset else f"auto: {reason}")
    if FLAGS.plan:  # nothing to build: resolve and print only
        config = dict(common.resolve_config(presets, EXPERIMENT, picked), **flags_in)
        print(f"{EXPERIMENT}: preset {config['preset']}\n{json.dumps(config, indent=1)}\n"
              f"{schedule_text(config['epochs'], config['steps'])}", flush=True)
        return
    config, out, timer = common.start(presets, EXPERIMENT, default_preset=picked)
    config.update(flags_in)
    print(schedule_text(config["epochs"], config["steps"]), flush=True)
    problems = zoo.missing_inputs(config["classifier"], config["perceptual"], data=config["data"],
                                  data_dir=config["data_dir"], weights=config["inception_weights"],
                                  vgg19_weights=config["vgg19_weights"])
    if problems:  # stop at once, before any work, naming every missing input
        raise ValueError(f"--preset={config['preset']} cannot start: " + "; ".join(problems)
                         + " (without a GPU and ImageNet, use --preset=cifar or --preset=quick)")
    run(config, out, timer)


# ---------------------------------------------------------------------------- the run

def run(config: dict, out: Path, timer=None) -> dict:
    """The whole experiment for a resolved config (a preset's dict plus ``steps``,
    ``png_roundtrip``, the weights and ``cache_dir``; see ``main``), callable from a notebook;
    writes every output under ``out`` and returns run.json's contents."""
    import keras
    import tensorflow as tf
    from tfadv import data, defenses, distribute, report
    from tfadv.batching import pixels
    from tfadv.defenses import purifier
    from tfadv.defenses.versatile import (attack_params, load_images, purifier_batch,
                                          train_versatile)
    from tfadv.evaluation import accuracy_percent, adversarial, predict
    from tfadv.evaluation import purification as diagnostics_module
    from tfadv.evaluation.adaptive import table as adaptive_table
    from tfadv.evaluation.robustness import cached_correct, sweep as robustness_sweep
    from tfadv.models import perceptual, sr, zoo
    from tfadv.report import versatile

    config = {"steps": "multi", "png_roundtrip": False, "inception_weights": "imagenet",
              "vgg19_weights": "imagenet", "cache_dir": None, "preset": "custom",
              "preset_source": "run()", **config}
    timer, out, seed = timer or report.Timer(), cache.path(out), config["seed"]
    strategy = distribute.choose(config.get("strategy_name", "auto"), config.get("cpu_replicas"))
    config.setdefault("strategy", distribute.describe(strategy))
    if config["purifiers"] not in ("all", "versatile"):
        raise ValueError(f"purifiers must be 'all' or 'versatile', got {config['purifiers']!r}")
    training = purifier_batch(config, strategy)
    if config["deterministic"]:  # same seed, same numbers (bit for bit on one machine)
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    log = {"shards": {}, "trained": [], "cached": [], "sr": None}
    with timer("data"):
        train_full, test_pool = load_images(config)
    with timer("classifier"):
        clf = zoo.load(config["classifier"], data=config["data"], data_dir=config["data_dir"],
                       train=train_full, test=test_pool, seed=seed,
                       cache_dir=config["cache_dir"], weights=config["inception_weights"],
                       input_size=config["image_size"],
                       verbose=config["preset"] in ("cifar", "paper"))
    classifier = clf.model
    with timer("data"):
        # training images, and validation images for the monitor from the ones left
        train, rest = data.split(train_full, per_class=config["train_per_class"], seed=seed + 1)
        val = data.subset(rest, per_class=config["val_per_class"], seed=seed + 3) \
            if config["val_per_class"] else None
        del rest
        assign = data.shares_per_class(train.labels, len(TRAIN_ATTACKS))
        correct = predict(classifier, test_pool.images, batch_size=64) == test_pool.labels \
            if config["test_correct_only"] else None
        test, short_classes = data.pick_per_class(test_pool, config["test_per_class"],
                                                  seed=seed + 2, prefer=correct)
        del correct
    y_test, n_test = test.labels, len(test.labels)
    specific_n = len(train.labels) // len(TRAIN_ATTACKS) if config["specific_pairs"] == "share" \
        else len(train.labels)
    print(f"classifier: {clf.description}; {len(train.labels)} training pairs for the "
          f"versatile purifier, {specific_n} for each attack-specific one, "
          f"{0 if val is None else len(val.labels)} validation images, {n_test} test images"
          + (f" ({short_classes} classes had too few correctly classified images)"
             if short_classes else ""), flush=True)
    params = attack_params(config, training["jit_compile"])
    # The attacks' copy of the classifier on the strategy's devices (the classifier itself on
    # one CPU or GPU): inside the strategy's scope the native attacks split each batch over
    # its replicas, as the purifiers' steps do.
    attack_model = purifier.in_scope(classifier, strategy)
    def zoo_model(name, seed_offset=0):  # an independent network of the zoo, same data
        return zoo.load(name, data=config["data"], data_dir=config["data_dir"],
                        train=train_full, test=test_pool, seed=seed + seed_offset,
                        cache_dir=config["cache_dir"],
                        verbose=config["preset"] in ("cifar", "paper")).model

    offsets = zoo_seed_offsets(config)
    with timer("perceptual"):
        features, perceptual_info = perceptual.choose(
            config["perceptual"], classifier=classifier, classifier_name=clf.description,
            vgg19_weights=config["vgg19_weights"], image_size=config["image_size"],
            zoo_model=lambda name: zoo_model(name, offsets["perceptual"]),
            normalise_on=pixels(train.images[:1000]) if config["perceptual_norm"] else None)
        if config["perceptual"] in zoo.RECIPES:
            perceptual_info["seed"] = seed + offsets["perceptual"]
        # the diagnostics' second classifier: the zoo's recipe at another seed
        second = zoo_model(config["second_classifier"], offsets["second"]) \
            if config["second_classifier"] else None
    del test_pool  # 15,000 screened images at the paper's scale: 3 GB
    if perceptual_info["substitute"]:
        print(f"\n*** {perceptual_info['note']} ***\n", flush=True)

    def attacked(split, attack, p, x, y, dtype="float32", lazy=False):
        """``attack`` on (x, y), cached in shards (one seed per shard for seeded attacks);
        ``lazy``: the shards memory-mapped instead of one array in memory."""
        dtype = config["test_dtype"] if split == "test" else dtype
        with strategy.scope():
            return adversarial.adversarial_set(
                attack, p, attack_model, clf.id, x, y, tag=split, cache_dir=config["cache_dir"],
                dtype=dtype, shard_size=config["shard_size"], log=log["shards"], lazy=lazy)

    # The monitor (beyond the paper): recovered accuracy after every epoch on the first
    # monitor_n validation images attacked by each attack (never the test images).
    n_monitor = 0 if val is None else min(config["monitor_n"], len(val.labels))
    x_monitor, y_val = {}, None if val is None else val.labels[:n_monitor]
    for attack in TRAIN_ATTACKS if n_monitor else ():
        with timer("adversarial_val"):
            x_monitor[attack] = attacked("val", attack, params[attack], val.images[:n_monitor],
                                         y_val)

    with timer("purifiers"):  # the six attack-specific purifiers and the versatile one
        purifiers, paths, histories = train_versatile(
            TRAIN_ATTACKS, lambda a, index: attacked(
                "train", a, params[a], train.images[index], train.labels[index], "float16",
                lazy=True),
            train.images, assign, specific_pairs=config["specific_pairs"],
            specific=config["purifiers"] == "all",
            monitor_sets=x_monitor, log=log, monitor_of=lambda xs: (
                lambda g: {"recovered_accuracy": accuracy_percent(
                    classifier, purifier.purify(g, xs), y_val[:len(xs)])}),
            features=features, cache_dir=config["cache_dir"],
            base_filters=config["base_filters"], batch_size=training["global"],
            epochs=config["epochs"], steps=config["steps"],
            learning_rate=training["learning_rate"], beta_1=config["beta_1"], seed=seed,
            precision=config["precision"], verbose=config["preset"] in ("cifar", "paper"),
            strategy=strategy, steps_per_call=config["steps_per_call"],
            jit_compile=training["jit_compile"],
            checkpoint_minutes=config["checkpoint_minutes"],
            dropout_blocks=config["dropout_blocks"], l1_range=config["l1_range"])
    del x_monitor
    with timer("sr_network"):
        sr_images = pixels(train.images if not config["sr_images"] else data.subset(
            train_full, n=min(config["sr_images"], len(train_full.labels)), seed=seed + 5).images)
        sr_model, sr_path, sr_trained = sr.train_cached(
            sr_images, epochs=config["sr_epochs"], batch_size=config["sr_batch_size"],
            filters=config["sr_filters"], blocks=config["sr_blocks"], seed=seed,
            precision=config["precision"], cache_dir=config["cache_dir"],
            verbose=config["preset"] in ("cifar", "paper"))
        log["sr"] = "trained" if sr_trained else "cached"
    defended = {"none": defenses.make("none"),
                **{k if k == "versatile" else f"specific_{k}": d for k, d in purifiers.items()},
                "random_resize": defenses.make("random_resize_pad", resize_back=True),
                # deflections/window None: Prakash et al.'s 200 deflections and +-10 window
                # at 299x299, scaled to the image size (same density of deflected pixels)
                "pd_wd": defenses.make("deflect_and_denoise", deflections=None, window=None),
                "sr_wd": defenses.make("sr_and_denoise", sr_model=sr_model,
                                       model_id=sr_path.stem)}

    # Tables 1 and 2, Fig 3, Fig 5: each attacked test set, then every defense on it.
    evaluations = ("tensor", "png") if config["png_roundtrip"] else ("tensor",)
    n_quality = n_test if not config["quality_n"] else min(config["quality_n"], n_test)
    with timer("evaluate"):
        acc, quality_rows, examples = versatile.evaluate_rows(
            classifier, defended, test, {row: (lambda row=row: test.images if row == "clean" else
                                               attacked("test", row, params[row], test.images,
                                                        y_test, lazy=bool(config["eval_chunk"])))
                                         for row in ROWS},
            evaluations=evaluations, n_quality=n_quality, chunk=config["eval_chunk"],
            # the random defenses' seed: a fresh draw per row and mode
            seed_of=lambda r_index, evaluation: seed * 10_000 + 100 * (evaluation == "png")
            + r_index)
    with timer("diagnostics"):  # beyond the paper: why the versatile purifier recovers or not
        n = min(config["diagnostics_n"] or n_test, n_test)
        x_clean, generator = pixels(test.images[:n]), defended["versatile"].model
        inputs = {"clean": x_clean,
                  f"clean + random sign noise (+-{config['eps'] * 255:.0f}/255)":
                      diagnostics_module.sign_noise(x_clean, config["eps"], seed * 10_000 + 77),
                  **{LABELS[row]: (lambda row=row: pixels(attacked(
                      "test", row, params[row], test.images, y_test, lazy=True)[:n]))
                     for row in ROWS if row != "clean"}}
        diagnostics = diagnostics_module.diagnostics(
            classifier, second, lambda x: purifier.purify(generator, x), x_clean, y_test[:n],
            inputs, purify_dropout=lambda x: purifier.purify(generator, x, dropout=True))
    with timer("robustness"):  # Fig 4: no defense, versatile, the attack's own purifier
        n = min(config["robust_n"] or n_test, n_test)
        with strategy.scope():  # one run per eps, its iterates scored at each count
            robustness = robustness_sweep(
                attack_model, test.images[:n], y_test[:n], eps_values=config["robust_eps"],
                attacks={a: (LABELS[a], params[a]) for a in config["robust_attacks"]},
                iterations=config["robust_iterations"], max_eps_iter=config["eps_iter"],
                defenses_for=lambda a: {DEFENSE_LABELS["none"]: defended["none"],
                                        DEFENSE_LABELS["versatile"]: defended["versatile"],
                                        **({"Atk-specific purifier": defended[f"specific_{a}"]}
                                           if f"specific_{a}" in defended else {})},
                correct=cached_correct(attack_model, clf.id, test.images[:n], y_test[:n],
                                       cache_dir=config["cache_dir"],
                                       shard_size=config["shard_size"], log=log["shards"]))
    with timer("adaptive"):  # beyond the paper: gray-box PGD beside PGD that sees the defense
        n = min(config["adaptive_n"], n_test)
        pgd = dict(params["pgd"], nb_iter=config["adaptive_nb_iter"])
        adaptive = adaptive_table(
            classifier, clf.id, {k: (DEFENSE_LABELS[k], defended[k]) for k in ADAPTIVE_DEFENSES
                                 if k in defended},
            pixels(test.images[:n]), y_test[:n], pgd=pgd,
            gray=attacked("adaptive", "pgd", pgd, test.images[:n], y_test[:n]),
            eot=config["adaptive_eot"], fresh_seed=seed * 10_000 + 999,
            sanity_n=config["sanity_n"], cache_dir=config["cache_dir"],
            shard_size=config["shard_size"], log=log["shards"], images=n,
            eps_255=config["eps"] * 255, nb_iter=pgd["nb_iter"], evaluation="tensor")

    table1, table2 = build_tables(acc, n_test, evaluations)
    with timer("figures"):
        versatile.write_outputs(
            out, config, table1=table1, table2=table2, histories=histories,
            quality_rows=quality_rows, examples=examples, robustness=robustness,
            adaptive=adaptive, test=test, classifier=classifier, classifier_name=clf.description,
            perceptual_note=perceptual_info["note"], n_pairs=len(train.labels),
            n_specific_pairs=specific_n, diagnostics=diagnostics,
            second_name=None if second is None else
            f"{config['second_classifier']} (zoo, seed {seed + offsets['second']})")
    timer.seconds["total"] = sum(v for k, v in timer.seconds.items() if k != "total")
    info = versatile.run_record(
        config, timer, classifier=clf, perceptual=perceptual_info, attacks=params,
        train_labels=train.labels, assign=assign, n_test=n_test, short_classes=short_classes,
        n_specific_pairs=specific_n, n_val=0 if val is None else len(val.labels),
        n_quality=n_quality, paths=paths, histories=histories, defended=defended, log=log,
        purifier_batch=training)
    report.save_json(out / "run.json", info)
    print(f"wrote {out}; timings (s): {timer.summary()}", flush=True)
    return info


if __name__ == "__main__":
    common.main(main, EXPERIMENT)
