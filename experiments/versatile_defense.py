"""Paper 003: the versatile defense, one pix2pix purifier trained on six attacks (main job).

Zhang, Yao, Sakurai, "Versatile Defense Against Adversarial Attacks on Image Recognition"
(shared/papers/003). A pix2pix generator (U-Net + PatchGAN, with a perceptual loss and the
paper's multi-step loss weights, section 3.2) learns to map adversarial images back to the
clean ones. Reproduces:

- Table 1 (``table1_generalizability``): six attack-specific purifiers (FGSM, BIM, PGD,
  MI-FGSM, C&W, AutoAttack) against seven attacks, DeepFool never seen in training;
- Table 2 (``table2_comparison``): the versatile purifier (all six attacks) beside the
  matching attack-specific one, Random Resizing (Xie et al.), Pixel Deflection + Wavelet
  Denoising (Prakash et al.) and Super-Resolution + Wavelet Denoising (Mustafa et al.);
- Fig 3 (``quality``): MAE, PSNR (and SSIM) of purified vs clean images, per attack;
- Fig 4 (``robustness``): recovered accuracy under PGD and MI-FGSM with 10..100 iterations
  at eps 2/255, 5/255, 10/255;
- Fig 5 (``visual.png``): clean / adversarial / purified images per attack;
- section 3.4.1: tensors are evaluated directly; ``--png_roundtrip`` adds every Table 1-2
  row again after a PNG save and reload of the attacked images (``evaluation`` column).

Beyond the paper (``table_adaptive``): the paper attacks the classifier alone (gray-box). The
adaptive rows run PGD through defense + classifier: full gradients through the purifiers,
BPDA (identity backward) for the non-differentiable baselines and EOT (averaged random draws)
for the random ones. Every result row has ``attack_saw_defense``.

Readings where the paper is silent: each attack-specific purifier trains on every training
image attacked by its attack, the versatile one on the same images each attacked by one of
the six (the paper's 3 per attack and class), so all seven see as many pairs; test images are
ones the classifier gets right (the paper's No defense / Clean is 100%); Table 1's lost column
headers are restored from Table 2 (see PAPER_TABLE1); purifiers run in inference mode (no
test-time dropout); the random baselines draw afresh for every table row.

Commands (``--steps=multi``, the default, is the paper's schedule; ``--steps=single`` the fixed
weights it compares against; ``--steps=constant``, not the paper's, keeps lambda_perc = 100
throughout, results under ``<preset>-steps_<steps>``; ``--plan`` prints the resolved settings
and exits):

    python -m experiments.versatile_defense --steps=multi   # paper on a GPU/TPU, else quick
    python -m experiments.versatile_defense --preset=cifar --data=../shared/data/cifar10-jpeg.tar.gz
    python -m experiments.versatile_defense --preset=paper --data=IMAGENET_DIR_OR_TAR
    python -m experiments.versatile_defense --preset=paper --data=imagenet2012 --data_dir=TFDS_DIR

Presets:

- ``paper``: the paper's settings: ImageNet, Inception-v3 (ImageNet weights; its 299 input is
  resized inside the model from the purifier's 256x256), 18 training images per class (3 per
  attack: 18,000 pairs), 5 validation images per class (5,000), eps 16/255, 40 iterations of
  0.01, C&W L2 with cleverhans' defaults, ART's AutoAttack with ART's defaults, purifiers at
  256x256 (64 filters, batch 1, 100 epochs, Adam 2e-4) with an ImageNet VGG19 perceptual loss.
  For one GPU. Missing data or weights stop it at once with what to supply.
- ``cifar``: CIFAR-10 and the ResNet-18 (width 32, bf16) of paper 001's cifar preset, from its
  cache; the paper's attack settings (C&W and AutoAttack with reduced budgets, in run.json);
  300 training images per class (3,000 pairs per purifier, 500 per attack in the versatile
  set), 50 test images per class (500); 32x32 purifiers (32 filters, batch 16, 12 epochs, Adam
  1e-3) with the classifier's own features as the perceptual network (no VGG19 weights
  offline: results say so loudly). 2-core CPU.
- ``quick``: scikit-learn digits (8x8, offline, eps 48/255: see _DIGITS_EPS) and a tiny CNN,
  600 pairs, 200 test images; or CIFAR-10 when ``--data`` is given (a tiny CNN trained on
  10,000 images, eps 16/255); minutes on a CPU.
- ``smoke``: seconds, for tests.

Expected numbers (paper, ImageNet / Inception-v3, accuracy %; PAPER_TABLE1/2 below): no
defense 100 clean, 0-26 under attack; attack-specific purifiers 76-81 on average (Table 1);
the versatile purifier 86.0 on average against 87.1 for the matching attack-specific ones
(Table 2: higher on MI-FGSM, 89.3 vs 86.3, and on DeepFool; the text's claim that it also
beats the PGD-specific one is not what Table 2 shows, 86.8 vs 88.4); Random Resizing 50.4,
PD+WD 37.0, SR+WD 76.6. Other presets are other datasets and classifiers: compare trends.
quick (digits, measured): Table 2 averages versatile 83.8, attack-specific 85.6, Random
Resizing 31.2, PD+WD 28.0, SR+WD 40.9 (Table 1: 84-87 except the C&W-specific purifier, 66);
PGD that sees the versatile purifier brings it from 83% to 21% (table_adaptive).
cifar (measured, notes/RESULTS.md): Table 2 averages versatile 38.5, attack-specific 40.0,
Random Resizing 34.4, PD+WD 35.5, SR+WD 35.5: clean, C&W and DeepFool are restored (84-98%),
the eps 16/255 Linf attacks are not (Table 2: 3-16%; paper 80-90%). Fig 4: versatile 87% /
56% / 20% at eps 2 / 5 / 10 (/255), flat in the iterations, as the paper. purifier_training
shows why: every Linf purifier peaks at 35-48% during the schedule's first two phases and
loses most of it in the last (lambda_perc = 1), where the substitute perceptual term (the
classifier's features, ~0.3) is negligible next to 100 x L1; ``--steps=constant`` keeps
lambda_perc = 100 (Table 2 averages 57.5 / 60.7).

Runtime on the 2-core CPU: quick (digits) under 2 minutes from scratch (1 min 26 s measured,
9 min when other jobs shared the CPU), 13 s when cached; smoke about 30 s; cifar 49 min
measured (training attack sets 16 min, seven purifiers 20 min, test sets 3 min, tables, Fig 4,
adaptive and the SR network 9 min), 27 min when only the purifiers are retrained; the
CIFAR-10 classifier comes from paper 001's cache (about an hour to train if missing).
A killed run started again with the same command resumes: adversarial shards are cached as
they finish, purifiers checkpoint every epoch, finished purifiers are cached. paper: days on
one GPU (seven 256x256 purifiers, 100 epochs x 18,000 pairs each at batch 1).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from absl import app, flags

from experiments import adversarial_finetuning, common

flags.DEFINE_enum("steps", "multi", ["multi", "single", "constant"],
                  "purifier loss weights (paper 3.2): multi = lambda_perc 100/50/1 over 40/30/30% "
                  "of the epochs, single = a fixed (lambda_pix, lambda_perc) = (100, 1); "
                  "constant (not the paper's) = (100, 100) throughout")
flags.DEFINE_bool("png_roundtrip", False, "also evaluate Tables 1-2 after a PNG save and "
                  "reload of the attacked images (paper 3.4.1); rows with evaluation=png")
flags.DEFINE_string("inception_weights", "imagenet", "paper preset: Inception-v3 weights, "
                    "'imagenet' (Keras download or cache) or a local keras.applications .h5")
flags.DEFINE_string("vgg19_weights", "imagenet", "perceptual=vgg19: VGG19 (include_top=False) "
                    "weights, 'imagenet' (Keras download or cache) or a local .h5 file")
flags.DEFINE_string("cache_dir", None, "cache folder for adversarial shards, purifiers, the SR "
                    "network and small classifiers (default data/)")
flags.DEFINE_bool("plan", False, "print the resolved preset and schedule, then exit")
FLAGS = flags.FLAGS

EXPERIMENT = "versatile_defense"

# ---------------------------------------------------------------------------- the paper

# Section 3.1.4: Linf eps 16/255 for FGSM, BIM, PGD, MI-FGSM and AutoAttack ([0, 1] pixels, as
# the paper's images), 40 iterations of step 0.01; C&W with the L2 norm.
PAPER_EPS, PAPER_EPS_ITER, PAPER_NB_ITER = 16 / 255, 0.01, 40
TRAIN_ATTACKS = ("fgsm", "bim", "pgd", "mifgsm", "cw_l2", "autoattack")  # Table 1's columns
TEST_ATTACKS = TRAIN_ATTACKS + ("deepfool",)  # DeepFool: never seen in training
ROWS = ("clean",) + TEST_ATTACKS
LABELS = {"clean": "Clean", "fgsm": "FGSM", "bim": "BIM", "pgd": "PGD", "mifgsm": "MI-FGSM",
          "cw_l2": "C&W", "autoattack": "AutoAttack", "deepfool": "DeepFool",
          "average": "Average"}

nan = float("nan")
# Paper 003, Table 1 (accuracy %, ImageNet / Inception-v3, 5,000 validation images): columns
# No defense, then the purifier trained on FGSM, BIM, PGD, MI-FGSM, C&W, AutoAttack. Our copy
# of the paper lost the column headers; this order follows from Table 2's "Atk-specific"
# column (this table's diagonal; its Clean and DeepFool cells are the means of the six
# columns) and from the text ("81.43% when trained on MI-FGSM"). Average: over all 8 rows.
PAPER_TABLE1 = {
    "clean": (100, 95.3, 96.5, 96.3, 95.6, 93.1, 91.7),
    "fgsm": (25.8, 83.2, 70.6, 80.7, 85.74, 60.35, 80.6),
    "bim": (1.8, 75.72, 90.42, 73.2, 71.3, 75.8, 70.3),
    "pgd": (2.4, 84.3, 83.7, 88.4, 77.45, 76.6, 83.14),
    "mifgsm": (0.1, 83.6, 77.36, 65.3, 86.34, 64.5, 67.8),
    "cw_l2": (0, 77.1, 77.4, 78.5, 76.4, 89.1, 78.1),
    "autoattack": (0.5, 67.1, 70.15, 77.8, 79.5, 79.7, 88.4),
    "deepfool": (0.4, 78.56, 73.3, 76.1, 79.1, 70.3, 80.7),
    "average": (nan, 80.61, 79.93, 79.54, 81.43, 76.18, 80.09),
}
# Paper 003, Table 2: No defense, Ours (the versatile purifier), Atk-specific (the matching
# purifier of Table 1; Clean and DeepFool: the mean of the six), Random (resizing + padding,
# Xie et al.), WD+PD (Prakash et al.), WD+SR (Mustafa et al.).
PAPER_TABLE2 = {
    "clean": (100, 92.1, 94.75, 97.3, 96.5, 86.3),
    "fgsm": (25.8, 80.4, 83.2, 51.3, 37.5, 70.7),
    "bim": (1.8, 87.3, 90.42, 19.72, 28.9, 73.2),
    "pgd": (2.4, 86.76, 88.4, 21.3, 29.2, 79.4),
    "mifgsm": (0.1, 89.3, 86.34, 14.5, 15.44, 70.58),
    "cw_l2": (0, 88.4, 89.1, 90.1, 35.4, 87.5),
    "autoattack": (0.5, 83.7, 88.4, 20.1, 15.6, 71.8),
    "deepfool": (0.4, 80.3, 76.34, 88.9, 37.8, 73.36),
    "average": (nan, 86.03, 87.12, 50.4, 37.04, 76.6),
}
TABLE1_COLUMNS = [("none", "No defense")] + [(f"specific_{a}", f"M_{LABELS[a]}")
                                             for a in TRAIN_ATTACKS]
TABLE2_COLUMNS = [("none", "No defense"), ("versatile", "Versatile (ours)"),
                  ("specific", "Atk-specific"), ("random_resize", "Random Resizing"),
                  ("pd_wd", "Pixel Deflection + WD"), ("sr_wd", "Super-Resolution + WD")]
BASELINES = ("random_resize", "pd_wd", "sr_wd")
ADAPTIVE_DEFENSES = ("none", "versatile", "specific_pgd") + BASELINES
DEFENSE_LABELS = {"none": "No defense", "versatile": "Versatile purifier",
                  "random_resize": "Random Resizing", "pd_wd": "Pixel Deflection + WD",
                  "sr_wd": "Super-Resolution + WD",
                  **{f"specific_{a}": f"{LABELS[a]}-specific purifier" for a in TRAIN_ATTACKS}}

# ---------------------------------------------------------------------------- presets

_PAPER = dict(
    data="imagenet2012", data_dir=None, seed=0, precision="auto",
    classifier="inception_v3", image_size=256,
    # data (paper 3.1.3): 18 training images per class, 3 per attack; 5 validation images per
    # class. The paper's "No defense / Clean" is 100%: test images are ones the classifier
    # gets right (picked from test_pool_per_class candidates of each class).
    train_per_class=18, test_per_class=5, test_pool_per_class=15, test_correct_only=True,
    # attacks (paper 3.1.4); C&W: cleverhans' carlini_wagner_l2 defaults; AutoAttack: ART's
    # defaults (our wrapper's); DeepFool (unseen): the original's settings.
    eps=PAPER_EPS, eps_iter=PAPER_EPS_ITER, nb_iter=PAPER_NB_ITER,
    cw_binary_search_steps=5, cw_max_iterations=1000, cw_learning_rate=5e-3,
    cw_initial_const=1e-2,
    aa_apgd_max_iter=100, aa_nb_random_init=5, aa_deepfool_max_iter=100,
    aa_square_max_iter=5000, aa_square_restarts=5,
    deepfool_max_iter=50, deepfool_overshoot=0.02,
    attack_batch_size=32, shard_size=250,
    # purifiers (paper 2.2, 3.2; pix2pix): U-Net + PatchGAN, Adam(2e-4, 0.5), batch 1
    base_filters=64, batch_size=1, epochs=100, learning_rate=2e-4, beta_1=0.5,
    perceptual="vgg19",
    # baselines: the x2 SR network trained by the suite (0 images: the purifier's training
    # images); EOT draws of the random defenses in the adaptive attack
    sr_images=0, sr_epochs=10, sr_batch_size=16, sr_filters=64, sr_blocks=4,
    # Fig 4 (robust_n 0: every test image), Fig 3 (quality_n 0: every test image)
    robust_attacks=["pgd", "mifgsm"], robust_eps=[2 / 255, 5 / 255, 10 / 255],
    robust_iterations=[10, 20, 30, 40, 50, 60, 70, 80, 90, 100], robust_n=0, quality_n=1000,
    # beyond the paper: adaptive PGD (the paper's PGD settings) through defense + classifier
    adaptive_n=500, adaptive_nb_iter=PAPER_NB_ITER, adaptive_eot=8,
    # beyond the paper: after every epoch, the accuracy each purifier recovers on the first
    # monitor_n test images attacked by its attack(s) is logged (purifier_training.csv);
    # nothing is chosen with it (the last epoch's purifier is the one evaluated)
    monitor_n=200,
    # TensorFlow op determinism: the same seed gives the same purifiers. Off for the GPU
    # preset (slower there, and some GPU kernels have no deterministic version).
    deterministic=False,
)

# CIFAR-10 on a 2-core CPU, sized from speeds measured on it with no other job running:
# ResNet-18 w32 bf16 PGD-40 ~19 images/s, C&W (2 x 50 steps) ~8, AutoAttack (APGD 10 steps)
# ~22, DeepFool ~22; U-Net (32 filters) + PatchGAN + the classifier's features ~220 pairs/s at
# batch 16 (the same networks at 64 filters, batch 1: ~9). Other jobs on the CPU cut these by
# up to ~1.8x. Pilot runs (PGD-specific purifier): 2,400 pairs recovered far more PGD accuracy
# on held-out images than 600 pairs trained as long, so the budget goes to pairs, not epochs.
# Batch 16 instead of 1 takes fewer, larger steps: Adam 1e-3 instead of pix2pix's 2e-4.
_CIFAR = dict(
    _PAPER, data="cifar10", classifier="aft:cifar", image_size=32, deterministic=True,
    train_per_class=300, test_per_class=50, test_pool_per_class=0,
    cw_binary_search_steps=2, cw_max_iterations=50,
    aa_apgd_max_iter=10, aa_nb_random_init=1, aa_deepfool_max_iter=10,
    aa_square_max_iter=50, aa_square_restarts=1,
    attack_batch_size=128, shard_size=200,
    base_filters=32, batch_size=16, epochs=12, learning_rate=1e-3, perceptual="classifier",
    sr_images=5000, sr_epochs=5, sr_batch_size=32, sr_filters=32, sr_blocks=4,
    robust_iterations=[10, 25, 50, 100], robust_n=100, quality_n=0,
    adaptive_n=100, adaptive_eot=4, monitor_n=500,
)

# Small classifiers for quick/smoke: a tiny CNN, trained here (cached). On digits these are
# paper 001's quick-preset settings (the same cache file). Digits have 17 grey levels, so the
# paper's 16/255 is one level: it leaves the tiny CNN 74% accuracy under PGD (measured), far
# from the paper's regime (0-3%). 48/255 (3 levels) gives PGD 0.5%, FGSM 3.5%; Fig 4's eps
# keep the paper's ratios to it (2, 5, 10 sixteenths of eps).
_DIGITS_EPS = 48 / 255
_DIGITS = dict(
    _CIFAR, data="digits", classifier="tiny_cnn", image_size=8, precision="auto",
    eps=_DIGITS_EPS, robust_eps=[_DIGITS_EPS * k / 16 for k in (2, 5, 10)],
    cw_binary_search_steps=5, cw_max_iterations=200,
    clf_epochs=30, clf_batch_size=32, clf_learning_rate=1e-2, clf_augment=False,
    clf_precision="float32", clf_train_n=0,
    train_per_class=60, test_per_class=20, shard_size=200, attack_batch_size=256,
    base_filters=32, batch_size=16, epochs=20, sr_images=0, sr_epochs=10, sr_filters=16,
    sr_blocks=2, robust_iterations=[10, 40, 100], robust_n=100, adaptive_n=100,
)
_SMOKE = dict(
    _DIGITS, clf_epochs=15, train_per_class=6, test_per_class=3, nb_iter=5,
    cw_binary_search_steps=1, cw_max_iterations=10, aa_apgd_max_iter=5, aa_deepfool_max_iter=5,
    aa_square_max_iter=10, deepfool_max_iter=10, shard_size=40, base_filters=8, batch_size=10,
    epochs=3, sr_epochs=1, sr_filters=8, sr_blocks=1,
    robust_eps=[_DIGITS_EPS * 2 / 16, _DIGITS_EPS * 10 / 16],
    robust_iterations=[2, 5], robust_n=10, adaptive_n=10, adaptive_nb_iter=3, adaptive_eot=2,
    monitor_n=1000,  # every test image: the last epoch's number must equal Table 1's cell
)
PRESETS = {"smoke": _SMOKE, "quick": _DIGITS, "cifar": _CIFAR, "paper": _PAPER}
# quick/smoke with --data other than digits (e.g. CIFAR-10): a tiny CNN on 10,000 images.
_RGB_SMALL = dict(image_size=32, clf_epochs=8, clf_batch_size=128, clf_learning_rate=3e-3,
                  clf_augment=True, clf_precision="auto", clf_train_n=10000, eps=PAPER_EPS,
                  robust_eps=_PAPER["robust_eps"],
                  cw_binary_search_steps=_CIFAR["cw_binary_search_steps"],
                  cw_max_iterations=_CIFAR["cw_max_iterations"])


def presets_for(data_source: str | None) -> dict:
    """PRESETS, with smoke/quick switched to a 32x32 RGB classifier when ``--data`` is given."""
    if data_source in (None, "digits"):
        return PRESETS
    return {**PRESETS, **{k: dict(PRESETS[k], **_RGB_SMALL) for k in ("smoke", "quick")}}


def pick_preset() -> tuple[str, str]:
    """The preset of a run without ``--preset``, and why: paper with a GPU/TPU, else quick."""
    import tensorflow as tf
    accelerators = [d.name for kind in ("GPU", "TPU")
                    for d in tf.config.list_physical_devices(kind)]
    if accelerators:
        return "paper", (f"an accelerator is visible ({', '.join(accelerators)}); the paper "
                         "preset needs ImageNet and the Keras weights (README, 'The main job')")
    return "quick", ("no GPU or TPU is visible: the paper preset needs one (seven 256x256 "
                     "purifiers), quick runs offline on a CPU in minutes; for CIFAR-10 on a CPU "
                     "use --preset=cifar --data=PATH")


def attack_params(config: dict) -> dict:
    """``attacks.make`` parameters of every attack of the run (pixel units)."""
    eps, step, iters, batch = (config["eps"], config["eps_iter"], config["nb_iter"],
                               config["attack_batch_size"])
    return {
        "fgsm": dict(eps=eps, batch_size=batch),
        "bim": dict(eps=eps, eps_iter=step, nb_iter=iters, batch_size=batch),
        "pgd": dict(eps=eps, eps_iter=step, nb_iter=iters, seed=config["seed"],
                    batch_size=batch),
        "mifgsm": dict(eps=eps, eps_iter=step, nb_iter=iters, batch_size=batch),
        "cw_l2": dict(binary_search_steps=config["cw_binary_search_steps"],
                      max_iterations=config["cw_max_iterations"],
                      learning_rate=config["cw_learning_rate"],
                      initial_const=config["cw_initial_const"], batch_size=batch),
        "autoattack": dict(eps=eps, apgd_max_iter=config["aa_apgd_max_iter"],
                           nb_random_init=config["aa_nb_random_init"],
                           deepfool_max_iter=config["aa_deepfool_max_iter"],
                           square_max_iter=config["aa_square_max_iter"],
                           square_restarts=config["aa_square_restarts"], seed=config["seed"],
                           batch_size=min(batch, 128)),
        "deepfool": dict(max_iter=config["deepfool_max_iter"],
                         overshoot=config["deepfool_overshoot"], batch_size=batch),
    }


# ---------------------------------------------------------------------------- preflight

_KERAS_WEIGHTS = {
    "Inception-v3": ("inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
                     "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
                     "inception_v3_weights_tf_dim_ordering_tf_kernels.h5", "--inception_weights"),
    "VGG19": ("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
              "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
              "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", "--vgg19_weights"),
}


def _weights_problem(network: str, weights: str) -> str | None:
    """None when ``weights`` can be had (a local file, the Keras cache, or a download)."""
    import os
    fname, url, flag = _KERAS_WEIGHTS[network]
    if weights != "imagenet":
        return None if Path(weights).expanduser().is_file() else (
            f"{network} weights file {weights} does not exist: pass {flag}=PATH to a "
            f"keras.applications file ({fname}) or {flag}=imagenet (needs internet once)")
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    if (keras_home / "models" / fname).is_file():
        return None
    try:
        import keras
        keras.utils.get_file(fname, url, cache_subdir="models")
        return None
    except Exception as err:  # offline: URL fetch failure
        return (f"{network} ImageNet weights are not in the Keras cache ({keras_home}/models/"
                f"{fname}) and the download failed ({str(err)[:120]}): run once online, or "
                f"download {url} elsewhere and pass {flag}=PATH")


def _imagenet_problem(config: dict) -> str | None:
    from tfadv import data
    source, data_dir = str(config["data"]), config["data_dir"]
    how = ("point --data at an ImageNet folder (train/<wnid>/*.JPEG and val/<wnid>/*.JPEG), a "
           ".tar/.tar.gz of one, or use --data=imagenet2012 --data_dir=DIR with "
           "tensorflow-datasets' manual download (ILSVRC2012_img_train.tar and "
           "ILSVRC2012_img_val.tar in DIR/downloads/manual)")
    if data.is_tfds_name(source):
        if data_dir is None:
            return f"ImageNet: --data={source} (tensorflow-datasets) needs --data_dir; {how}"
        manual = Path(data_dir).expanduser() / "downloads" / "manual"
        try:
            import tensorflow_datasets as tfds
            if tfds.builder(source.removeprefix("tfds:"), data_dir=data_dir).is_prepared():
                return None
        except Exception:  # noqa: BLE001 - reported below
            pass
        missing = [f for f in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
                   if not (manual / f).is_file()]
        return (f"ImageNet: {source} is not prepared in {data_dir} and {manual} lacks "
                f"{missing}; {how}") if missing else None
    path = Path(source).expanduser()
    if not path.exists():
        return f"ImageNet: {path} does not exist; {how}"
    if path.is_dir() and not ((path / "train").is_dir() and any(
            (path / v).is_dir() for v in ("val", "validation"))):
        return f"ImageNet: {path} has no train/ and val/ folders; {how}"
    return None


def preflight(config: dict) -> None:
    """Stops at once, before any work, naming every missing input of the run."""
    problems = []
    if config["classifier"] == "inception_v3":
        problems += [_imagenet_problem(config),
                     _weights_problem("Inception-v3", config["inception_weights"])]
    if config["perceptual"] == "vgg19":
        problems.append(_weights_problem("VGG19", config["vgg19_weights"]))
    problems = [p for p in problems if p]
    if problems:
        raise SystemExit(f"{EXPERIMENT} --preset={config['preset']} cannot start:\n"
                         + "\n".join(f"  - {p}" for p in problems)
                         + "\n(without a GPU and ImageNet, use --preset=cifar or --preset=quick)")


# ---------------------------------------------------------------------------- data

def load_images(config: dict):
    """(training images, test pool): ImageSets at ``image_size``. The paper preset samples
    ImageNet per class; the others load the whole dataset (resized when needed)."""
    from tfadv import data
    if config["classifier"] == "inception_v3":
        size, seed = config["image_size"], config["seed"]
        train = data.imagenet_subset(config["data"], "train", config["train_per_class"],
                                     seed=seed + 1, size=size, data_dir=config["data_dir"])
        pool = data.imagenet_subset(config["data"], "test", config["test_pool_per_class"],
                                    seed=seed + 2, size=size, data_dir=config["data_dir"])
        return train, pool
    train = data.load(config["data"], "train", data_dir=config["data_dir"])
    test = data.load(config["data"], "test", data_dir=config["data_dir"])
    return data.resize(train, config["image_size"]), data.resize(test, config["image_size"])


def training_pairs_plan(train, config):
    """The purifiers' clean images and, per image, the attack of the versatile set: within
    each class, consecutive equal shares of the images go to the six attacks in turn (paper:
    18 per class, 3 per attack)."""
    from tfadv import data
    picked = data.subset(train, per_class=config["train_per_class"], seed=config["seed"] + 1) \
        if config["classifier"] != "inception_v3" else train
    assign = np.empty(len(picked.labels), np.int64)
    for c in np.unique(picked.labels):
        members = np.flatnonzero(picked.labels == c)
        assign[members] = np.arange(len(members)) * len(TRAIN_ATTACKS) // len(members)
    return picked, assign


def pick_test(pool, classifier, config):
    """``test_per_class`` images of each class, among those the classifier gets right when
    ``test_correct_only`` (the paper's No defense / Clean is 100%). Returns the ImageSet and the
    number of classes that had too few correct images (filled with misclassified ones)."""
    from tfadv import data
    from tfadv.evaluation import predict
    rng = np.random.default_rng(config["seed"] + 2)
    correct = predict(classifier, pool.images, batch_size=64) == pool.labels \
        if config["test_correct_only"] else np.ones(len(pool.labels), bool)
    idx, short = [], 0
    for c in range(pool.num_classes):
        good = np.flatnonzero((pool.labels == c) & correct)
        bad = np.flatnonzero((pool.labels == c) & ~correct)
        k = config["test_per_class"]
        if len(good) < k:
            short += 1
            idx.append(np.concatenate([good, rng.permutation(bad)[:k - len(good)]]))
        else:
            idx.append(rng.choice(good, k, replace=False))
    idx = rng.permutation(np.concatenate(idx).astype(np.int64))
    return data.ImageSet(pool.images[idx], pool.labels[idx], pool.class_names), short


# ---------------------------------------------------------------------------- models

def load_classifier(config, train_full, test_full, cache: Path):
    """(classifier, description, id): Inception-v3 (paper), paper 001's cached CIFAR-10
    ResNet-18 (cifar), or a tiny CNN trained here (quick, smoke)."""
    from tfadv import data, models
    kind = config["classifier"]
    if kind == "inception_v3":
        from tfadv.models.inception import inception_v3
        return (inception_v3(config["inception_weights"], input_size=config["image_size"]),
                f"Inception-v3 ({config['inception_weights']} weights, input resized "
                f"{config['image_size']} -> 299 inside the model)",
                f"inception_v3-{models.config_key({'w': config['inception_weights']})}")
    if kind.startswith("aft:"):  # paper 001's base model of that preset, from its cache
        aft_config = dict(adversarial_finetuning.PRESETS[kind[4:]], data=config["data"],
                          data_dir=config["data_dir"])
        model, path, _ = adversarial_finetuning.base_model(aft_config, train_full, test_full,
                                                           verbose=True)
        return model, f"{aft_config['architecture']} of paper 001's {kind[4:]} preset " \
                      f"({path.name})", path.stem
    train = train_full if not config["clf_train_n"] else data.subset(
        train_full, n=min(config["clf_train_n"], len(train_full.labels)), seed=config["seed"])
    monitor = data.subset(test_full, n=min(1000, len(test_full.labels)), seed=config["seed"] + 9)
    model, path, _ = models.train_cached(
        train, architecture=kind, epochs=config["clf_epochs"],
        batch_size=config["clf_batch_size"], learning_rate=config["clf_learning_rate"],
        schedule="cosine", augment=config["clf_augment"], seed=config["seed"],
        precision=config["clf_precision"], data_id=common.data_id(config["data"]),
        model_dir=cache / "models", x_val=monitor.images, y_val=monitor.labels, verbose=False)
    return model, f"{kind} trained here ({path.name})", path.stem


def perceptual_network(config, classifier, classifier_name):
    """The frozen feature network of the perceptual loss and its description for run.json."""
    from tfadv.models import perceptual
    size = config["image_size"]
    if config["perceptual"] == "vgg19":
        features = perceptual.vgg19_features(config["vgg19_weights"],
                                             input_shape=(size, size, 3))
        info, substitute = perceptual.describe(features), False
    elif config["perceptual"] == "classifier":
        features = perceptual.classifier_features(classifier)
        info, substitute = perceptual.describe(features), True
    elif config["perceptual"] == "none":
        features, info, substitute = None, perceptual.describe(None), True
    else:
        raise ValueError(f"perceptual must be vgg19, classifier or none, got "
                         f"{config['perceptual']!r}")
    info = dict(info, substitute=substitute, paper="VGG19 with ImageNet weights")
    if substitute:
        info["note"] = (
            f"NOTE: the perceptual loss used a SUBSTITUTE feature network, "
            f"{'none (no perceptual term)' if features is None else info['network']} "
            f"({info['weights']}; layers {', '.join(info['layers'])}) -- "
            f"the classifier is {classifier_name} -- NOT the paper's ImageNet VGG19 (its "
            "weights cannot be had here; pass --set=perceptual=vgg19 --vgg19_weights=FILE to "
            "use them). The purifiers may differ from the paper's for that reason.")
    else:
        info["note"] = f"Perceptual loss: VGG19 ({config['vgg19_weights']} weights), as the paper."
    return features, info


def train_or_load_purifier(name, x_adv, x_clean, config, features, pairs_id, cache: Path,
                           events: dict, monitor=None):
    """The purifier ``name`` from the cache, or trained now (resumable) and cached."""
    from tfadv.defenses import purifier
    generator, path, history, trained = purifier.train_cached(
        name, x_adv, x_clean, pairs_id=pairs_id, features=features,
        model_dir=cache / "models", base_filters=config["base_filters"],
        batch_size=config["batch_size"], epochs=config["epochs"], steps=config["steps"],
        learning_rate=config["learning_rate"], beta_1=config["beta_1"], seed=config["seed"],
        precision=config["precision"], verbose=config["preset"] in ("cifar", "paper"),
        monitor=monitor)
    events["purifiers_trained" if trained else "purifiers_cached"].append(name)
    if trained and history:
        last = history[-1]
        print(f"  purifier {name}: L1 {last['gen_l1']:.4f}, perceptual {last['gen_perc']:.4f}, "
              f"GAN {last['gen_gan']:.3f} in the last epoch", flush=True)
    return generator, path, history


def recovered_accuracy_monitor(classifier, x_adv, y):
    """``monitor(generator)`` for purifier training: the accuracy (%) of the classifier on
    ``x_adv`` purified by the generator as it is at the end of an epoch."""
    from tfadv.defenses.purifier import purify
    if x_adv is None or not len(y):
        return None
    return lambda generator: {"recovered_accuracy": _accuracy(classifier, purify(generator, x_adv),
                                                              y)}


def sr_network(images, config, cache: Path, events: dict):
    """The x2 super-resolution network of the SR + WD baseline, trained once and cached."""
    from tfadv import data, models
    from tfadv.defenses import transforms
    settings = {"images": data.array_digest(images), "epochs": config["sr_epochs"],
                "batch_size": config["sr_batch_size"], "filters": config["sr_filters"],
                "blocks": config["sr_blocks"], "seed": config["seed"],
                "precision": config["precision"]}
    path = cache / "models" / f"sr_x2-{models.config_key(settings)}.keras"
    if path.exists():
        events["sr"] = "cached"
        return models.load(path), path
    model = transforms.train_sr(images, epochs=config["sr_epochs"],
                                batch_size=config["sr_batch_size"], seed=config["seed"],
                                filters=config["sr_filters"], blocks=config["sr_blocks"],
                                verbose=config["preset"] in ("cifar", "paper"))
    models.save(model, path)
    events["sr"] = "trained"
    return model, path


# ---------------------------------------------------------------------------- adversarial sets

def adversarial_set(split, name, params, classifier, classifier_id, x, y, x_digest, config,
                    cache: Path, events, dtype="float32"):
    """Attack ``name`` on (x, y), cached in shards under data/adversarial/versatile/. Attacks
    with a seed get one per shard (derived from the configured one)."""
    from tfadv import attacks, data, models
    from tfadv.data import atomic_write
    full = attacks.make(name, **params).params
    key = models.config_key({"classifier": classifier_id, "attack": name, "params": full,
                             "x": x_digest, "y": data.array_digest(y), "dtype": dtype,
                             "shard_size": config["shard_size"]})
    folder = cache / "adversarial" / EXPERIMENT / classifier_id / f"{split}-{name}-{key}"
    if not (folder / "meta.json").exists():
        atomic_write(folder / "meta.json", lambda f: f.write(json.dumps(
            {"attack": name, "params": full, "images": len(y)}, indent=1,
            default=str).encode()))

    def compute(start, stop, shard):
        p = dict(params)
        if "seed" in p:
            p["seed"] = int(params["seed"]) * 100_000 + shard
        print(f"  {split} {name}: images {start}-{stop} of {len(y)}", flush=True)
        return attacks.make(name, **p)(classifier, x[start:stop], y[start:stop])

    return data.cached_shards(folder, len(y), config["shard_size"], compute, dtype=dtype,
                              log=events["shards"])


# ---------------------------------------------------------------------------- defenses

def make_defenses(purifiers: dict, sr_model) -> dict:
    """name -> ``defense(x, seed) -> x'`` (numpy, x's shape); seeds matter for random ones."""
    from tfadv.defenses import transforms
    from tfadv.defenses.purifier import purify

    def purifier_defense(generator):
        return lambda x, seed: purify(generator, x)

    defenses = {"none": lambda x, seed: np.asarray(x, np.float32)}
    for name, generator in purifiers.items():
        defenses[name if name == "versatile" else f"specific_{name}"] = \
            purifier_defense(generator)
    defenses["random_resize"] = lambda x, seed: transforms.random_resize_pad(
        x, seed=seed, resize_back=True)
    # deflections/window None: Prakash et al.'s 200 deflections and +-10 window at 299x299,
    # scaled to the image size (same density of deflected pixels).
    defenses["pd_wd"] = lambda x, seed: transforms.deflect_and_denoise(
        x, seed=seed, deflections=None, window=None)
    defenses["sr_wd"] = lambda x, seed: transforms.sr_and_denoise(x, sr_model)
    return defenses


def defense_descriptions(sr_path) -> dict:
    from tfadv.defenses import transforms
    return {
        "random_resize": dict(description=transforms.DESCRIPTIONS["random_resize_pad"],
                              params=transforms.make("random_resize_pad", seed=0,
                                                     resize_back=True).params),
        "pd_wd": dict(description=transforms.DESCRIPTIONS["deflect_and_denoise"],
                      params=transforms.make("deflect_and_denoise", seed=0, deflections=None,
                                             window=None).params),
        "sr_wd": dict(description=transforms.DESCRIPTIONS["sr_and_denoise"],
                      sr_network=str(sr_path)),
    }


def dataset_name(config) -> str:
    source = str(config["data"])
    name = ("scikit-learn digits" if source == "digits" else
            "CIFAR-10" if "cifar10" in source.lower().replace("-", "") else "ImageNet"
            if config["classifier"] == "inception_v3" else source)
    return name if source in (name, "digits") else f"{name} ({source})"


def _accuracy(classifier, x, y) -> float:
    from tfadv.evaluation import predict
    return 100.0 * float(np.mean(predict(classifier, x, batch_size=128) == y))


def row_seed(config, row_index: int, evaluation: str) -> int:
    """The seed of the random defenses on one table row (a fresh draw per row and mode)."""
    return config["seed"] * 10_000 + 100 * (evaluation == "png") + row_index


# ---------------------------------------------------------------------------- tables

def build_tables(acc: dict, n_images: int, evaluations) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tidy Table 1 and Table 2 from ``acc[(evaluation, row, defense)]`` (accuracy %)."""
    t1, t2 = [], []
    for evaluation in evaluations:
        cells1, cells2 = defaultdict(dict), defaultdict(dict)
        for row in ROWS:
            for key, _ in TABLE1_COLUMNS:
                cells1[row][key] = acc[(evaluation, row, key)]
            specific = (acc[(evaluation, row, f"specific_{row}")] if row in TRAIN_ATTACKS else
                        float(np.mean([acc[(evaluation, row, f"specific_{a}")]
                                       for a in TRAIN_ATTACKS])))
            for key, _ in TABLE2_COLUMNS:
                cells2[row][key] = specific if key == "specific" else acc[(evaluation, row, key)]
        for cells, columns, paper, out in ((cells1, TABLE1_COLUMNS, PAPER_TABLE1, t1),
                                           (cells2, TABLE2_COLUMNS, PAPER_TABLE2, t2)):
            for row in ROWS + ("average",):
                for i, (key, label) in enumerate(columns):
                    if row == "average":
                        value = nan if key == "none" else float(np.mean(
                            [cells[r][key] for r in ROWS]))
                    else:
                        value = cells[row][key]
                    out.append({"attack": LABELS[row], "defense": label, "defense_key": key,
                                "accuracy": value, "paper": paper[row][i],
                                "evaluation": evaluation, "attack_saw_defense": False,
                                "images": n_images})
    return pd.DataFrame(t1), pd.DataFrame(t2)


def wide(table: pd.DataFrame, value="accuracy", paper="paper") -> pd.DataFrame:
    """Rows attacks, columns defenses, cells 'ours (paper)' (paper's in brackets)."""
    def cell(r):
        ours = "-" if np.isnan(r[value]) else f"{r[value]:.1f}"
        return ours if paper is None or np.isnan(r[paper]) else f"{ours} ({r[paper]:.1f})"
    frame = table.assign(cell=table.apply(cell, axis=1))
    rows = list(dict.fromkeys(frame.attack))
    columns = list(dict.fromkeys(frame.defense))
    out = frame.pivot(index="attack", columns="defense", values="cell").reindex(
        index=rows, columns=columns)
    out.index.name = "attack"
    return out.reset_index()


def table_markdown(table, title, notes) -> str:
    parts = [f"### {title}\n"]
    for evaluation in dict.fromkeys(table.evaluation):
        sub = table[table.evaluation == evaluation]
        how = ("adversarial tensors evaluated directly (the paper's protocol, 3.4.1)"
               if evaluation == "tensor" else
               "after saving the adversarial images as 8-bit PNG and reloading them (3.4.1)")
        parts.append(f"**{evaluation}**: {how}. Accuracy %, ours (paper).\n\n"
                     f"{wide(sub).to_markdown(index=False)}\n")
    return "\n".join(parts) + "\n" + "\n\n".join(notes) + "\n"


# ---------------------------------------------------------------------------- main

def plan_text(config: dict) -> str:
    from tfadv.defenses.purifier import schedule_table
    schedule = schedule_table(config["epochs"], config["steps"])
    lines = [f"loss-weight schedule ({config['steps']}-step, {config['epochs']} epochs): " +
             "; ".join(f"epochs {p['first_epoch']}-{p['last_epoch']}: lambda_pix="
                       f"{p['lambda_pix']:g}, lambda_perc={p['lambda_perc']:g}" for p in schedule)]
    return "\n".join(lines)


def main(argv):
    del argv
    from absl import logging
    logging.set_verbosity(logging.WARNING)  # not TF's per-checkpoint INFO lines
    picked, reason = pick_preset()
    if FLAGS.preset is None:
        print(f"{EXPERIMENT}: no --preset given: picked '{picked}' because {reason}",
              flush=True)
    presets = presets_for(FLAGS.data)
    if FLAGS.out is None and FLAGS.steps != "multi":  # beside the paper schedule's results
        FLAGS.out = str(common.PROJECT_ROOT / "results" / EXPERIMENT /
                        f"{FLAGS.preset or picked}-steps_{FLAGS.steps}")
    if FLAGS.plan:  # nothing to build: resolve and print only
        config = common.resolve_config(presets, EXPERIMENT, picked)
        config.update(steps=FLAGS.steps, png_roundtrip=FLAGS.png_roundtrip)
        print(f"{EXPERIMENT}: preset {config['preset']}\n{json.dumps(config, indent=1)}\n"
              f"{plan_text(config)}", flush=True)
        return
    config, out, timer = common.start(presets, EXPERIMENT, default_preset=picked)
    if config["deterministic"]:  # same seed, same numbers (bit for bit on one machine)
        import tensorflow as tf
        tf.config.experimental.enable_op_determinism()
    import keras
    keras.utils.set_random_seed(config["seed"])
    config.update(steps=FLAGS.steps, png_roundtrip=FLAGS.png_roundtrip,
                  inception_weights=FLAGS.inception_weights, vgg19_weights=FLAGS.vgg19_weights,
                  preset_source="--preset" if FLAGS.preset else f"auto: {reason}")
    print(plan_text(config), flush=True)
    preflight(config)
    run(config, out, timer)


def run(config: dict, out: Path, timer) -> dict:
    """The whole experiment for a resolved config; writes every output under ``out``."""
    from tfadv import data, report
    from tfadv.attacks.autoattack import ART_DEFAULT_SET_NOTE
    from tfadv.defenses.purifier import schedule_table
    from tfadv.evaluation import image_quality, image_quality_summary

    cache = Path(FLAGS.cache_dir).expanduser() if FLAGS.cache_dir else \
        common.PROJECT_ROOT / "data"
    events = {"shards": {"generated": set(), "reused": set()}, "purifiers_trained": [],
              "purifiers_cached": [], "sr": None}
    with timer("data"):
        train_full, test_pool = load_images(config)
    with timer("classifier"):
        classifier, classifier_name, classifier_id = load_classifier(config, train_full,
                                                                     test_pool, cache)
    with timer("data"):
        train, assign = training_pairs_plan(train_full, config)
        test, short_classes = pick_test(test_pool, classifier, config)
    y_test, n_test = test.labels, len(test.labels)
    print(f"classifier: {classifier_name}; {len(train.labels)} training pairs per purifier, "
          f"{n_test} test images" + (f" ({short_classes} classes had too few correctly "
                                     "classified images)" if short_classes else ""), flush=True)
    params = attack_params(config)
    train_digest, test_digest = data.array_digest(train.images), data.array_digest(test.images)
    features, perceptual_info = perceptual_network(config, classifier, classifier_name)
    if perceptual_info["substitute"]:
        print(f"\n*** {perceptual_info['note']} ***\n", flush=True)

    # Training pairs: every training image attacked by each of the six attacks (cached in
    # shards). The attack-specific purifier of an attack trains on all of them; the versatile
    # one on the same images, each attacked by the attack ``assign`` gives it.
    # The monitor (beyond the paper): each purifier's recovered accuracy after every epoch on
    # the first monitor_n test images attacked by its attack (the versatile one: image i by
    # the (i mod 6)-th attack). The test sets are cached and read again for Tables 1-2; only
    # copies of their first images are kept (a slice would keep each whole set in memory:
    # 4 GB per attack in the paper preset).
    n_monitor = min(config["monitor_n"], n_test)
    x_monitor = {}
    for attack in TRAIN_ATTACKS if n_monitor else ():
        with timer("adversarial_test"):
            x_test_adv = adversarial_set("test", attack, params[attack], classifier,
                                         classifier_id, test.images, y_test, test_digest,
                                         config, cache, events)
        x_monitor[attack] = x_test_adv[:n_monitor].copy()
        del x_test_adv
    y_monitor = y_test[:n_monitor]
    purifiers, purifier_paths, histories, set_keys = {}, {}, {}, []
    x_versatile = np.empty_like(train.images)
    for a_index, attack in enumerate(TRAIN_ATTACKS):
        with timer("adversarial_train"):
            x_adv = adversarial_set("train", attack, params[attack], classifier, classifier_id,
                                    train.images, train.labels, train_digest, config, cache,
                                    events, dtype="float16")
        set_keys.append(f"{attack}:{data.array_digest(x_adv)}")
        mine = assign == a_index
        x_versatile[mine] = x_adv[mine]
        with timer("purifiers"):
            purifiers[attack], purifier_paths[attack], histories[attack] = \
                train_or_load_purifier(attack, x_adv, train.images, config, features,
                                       set_keys[-1], cache, events, recovered_accuracy_monitor(
                                           classifier, x_monitor.get(attack), y_monitor))
        del x_adv
    with timer("purifiers"):
        pairs_id = f"versatile:{data.array_digest(x_versatile)}"
        x_mixed = np.stack([x_monitor[TRAIN_ATTACKS[i % len(TRAIN_ATTACKS)]][i]
                            for i in range(n_monitor)]) if n_monitor else None
        purifiers["versatile"], purifier_paths["versatile"], histories["versatile"] = \
            train_or_load_purifier("versatile", x_versatile, train.images, config, features,
                                   pairs_id, cache, events, recovered_accuracy_monitor(
                                       classifier, x_mixed, y_monitor))
    del x_versatile, x_monitor
    with timer("sr_network"):
        sr_images = train.images if not config["sr_images"] else data.subset(
            train_full, n=min(config["sr_images"], len(train_full.labels)),
            seed=config["seed"] + 5).images
        sr_model, sr_path = sr_network(sr_images, config, cache, events)
    defenses = make_defenses(purifiers, sr_model)

    # Tables 1 and 2, Fig 3, Fig 5: each attacked test set, then every defense on it.
    evaluations = ("tensor", "png") if config["png_roundtrip"] else ("tensor",)
    acc, quality_rows, examples = {}, [], []
    n_quality = n_test if not config["quality_n"] else min(config["quality_n"], n_test)
    for r_index, row in enumerate(ROWS):
        with timer("adversarial_test"):
            x_row = test.images if row == "clean" else adversarial_set(
                "test", row, params[row], classifier, classifier_id, test.images, y_test,
                test_digest, config, cache, events)
        with timer("evaluate"):
            for evaluation in evaluations:
                x_in = x_row if evaluation == "tensor" else data.png_roundtrip(x_row)
                for name, defense in defenses.items():
                    x_def = defense(x_in, row_seed(config, r_index, evaluation))
                    acc[(evaluation, row, name)] = _accuracy(classifier, x_def, y_test)
                    if evaluation != "tensor":
                        continue
                    quality_name = ("Atk-specific purifier" if name == f"specific_{row}" else
                                    None if name.startswith("specific_") else
                                    DEFENSE_LABELS[name])
                    if quality_name:
                        summary = image_quality_summary(image_quality(test.images[:n_quality],
                                                                      x_def[:n_quality]))
                        quality_rows.append({"attack": LABELS[row], "defense": quality_name,
                                             "defense_key": name, **summary,
                                             "evaluation": evaluation,
                                             "attack_saw_defense": False})
                    if name == "versatile" and row != "clean":
                        k = (r_index - 1) % n_test
                        examples.append({"attack": LABELS[row], "clean": test.images[k],
                                         "adversarial": x_row[k], "purified": x_def[k],
                                         "label": int(y_test[k])})
                print(f"  {evaluation} {LABELS[row]:10s} " + " ".join(
                    f"{n}={acc[(evaluation, row, n)]:.1f}" for n in defenses), flush=True)

    from tfadv.evaluation import predict
    for ex in examples:
        ex["pred_clean"], ex["pred_adv"], ex["pred_purified"] = (int(v) for v in predict(
            classifier, np.stack([ex["clean"], ex["adversarial"], ex["purified"]])))

    dataset_note = (
        "Paper: ImageNet, Inception-v3, 5,000 validation images." if config["preset"] == "paper"
        else f"Ours are {dataset_name(config)} / {classifier_name}, NOT the paper's ImageNet / "
             f"Inception-v3: the paper's numbers are in brackets for the trends, not as targets.")
    protocol_note = ("Protocol: gray-box, as the paper: every attack saw the classifier only "
                     "(attack_saw_defense = False); table_adaptive has attacks that see the "
                     "defense.")
    run_note = (f"Preset {config['preset']}, {n_test} test images (correctly classified: "
                f"{config['test_correct_only']}), {len(train.labels)} training pairs per "
                f"purifier, {config['epochs']} epochs, {config['steps']}-step loss weights, "
                f"eps {config['eps'] * 255:.0f}/255. {ART_DEFAULT_SET_NOTE}.")
    notes = [dataset_note, protocol_note, run_note, perceptual_info["note"]]
    table1, table2 = build_tables(acc, n_test, evaluations)
    report.save_table(table1, out, "table1_generalizability", table_markdown(
        table1, "Table 1: generalizability of the attack-specific purifiers", notes + [
            "Columns M_X: the purifier trained on attack X only. DeepFool was never seen in "
            "training. Average: over the 8 rows, as the paper."]))
    report.save_table(table2, out, "table2_comparison", table_markdown(
        table2, "Table 2: the versatile purifier beside the attack-specific ones and earlier "
        "defenses", notes + [
            "Atk-specific: the purifier trained on the row's attack (Clean, DeepFool: the mean "
            "of the six, as the paper). Baselines: transforms.py (Xie et al. random resize + "
            "pad, resized back; Prakash et al. deflection scaled to the image size + wavelet "
            "denoising; wavelet denoising + the suite's x2 SR network, resized back)."]))
    training = pd.DataFrame([{"purifier": "versatile" if k == "versatile" else
                              f"specific_{k}", **record}
                             for k, history in histories.items() for record in history])
    monitored = "recovered_accuracy" in training
    report.save_table(training, out, "purifier_training", (
        "### Purifier training, epoch by epoch (beyond the paper)\n\nLosses are epoch means "
        "(gen_l1 in [0, 1] pixel units, gen_perc the perceptual term before lambda_perc). "
        + (f"recovered_accuracy: the classifier's accuracy (%) on the first {n_monitor} test "
           "images attacked by the purifier's attack (versatile: image i by the (i mod 6)-th "
           "of the six), purified by the purifier as it was at the end of the epoch; logged "
           "only, nothing is chosen with it. " if monitored else
           "No recovered_accuracy column: monitor_n is 0 or the purifiers came from a cache "
           "made without it. ")
        + f"Schedule: {plan_text(config)}.\n\n"
        f"{training.to_markdown(index=False, floatfmt='.4g')}\n\n" + "\n\n".join(notes) + "\n"))
    if monitored:
        report.plot_purifier_training(training, out / "purifier_training.png",
                                      f"{config['preset']} preset, {dataset_name(config)}")
    quality = pd.DataFrame(quality_rows)
    report.save_table(quality, out, "quality", (
        f"### Fig 3: purified vs clean images ({n_quality} images per row)\n\nMAE in [0, 1] "
        "pixel units, PSNR in dB (identical images left out of the mean, counted in "
        "`identical`), SSIM. 'No defense': the attacked image itself.\n\n"
        f"{quality.to_markdown(index=False, floatfmt='.4f')}\n\n" + "\n\n".join(notes) + "\n"))
    subtitle = f"{config['preset']} preset, {dataset_name(config)}"
    with timer("figures"):
        report.plot_quality(quality, out / "quality.png", subtitle)
        report.plot_visual(examples, test.class_names, out / "visual.png", subtitle)

    with timer("robustness"):
        robustness = robustness_table(config, params, classifier, classifier_id, test, defenses,
                                      cache, events)
    shown = robustness.drop(columns=["eps", "eps_iter"]).assign(
        eps_iter_255=robustness.eps_iter * 255)
    report.save_table(robustness, out, "robustness", (
        f"### Fig 4: accuracy (%) under PGD and MI-FGSM of growing strength\n\n"
        f"{shown.to_markdown(index=False, floatfmt='.1f')}\n\n"
        + "\n\n".join(notes) + "\n"))
    with timer("figures"):
        report.plot_robustness(robustness, out / "robustness.png", subtitle)

    with timer("adaptive"):
        adaptive = adaptive_table(config, params, classifier, classifier_id, test, defenses,
                                  purifiers, purifier_paths, sr_path, cache, events)
    report.save_table(adaptive, out, "table_adaptive", (
        "### Beyond the paper: attacks that see the defense\n\n"
        f"PGD (eps {config['eps'] * 255:.0f}/255, {config['adaptive_nb_iter']} steps of "
        f"{config['eps_iter']}) on the first {int(adaptive.images.iloc[0])} test images. "
        "attack_saw_defense False: the paper's gray-box PGD (classifier only); "
        "True: PGD through defense + classifier (full gradients through the purifiers, BPDA "
        f"with the identity for the transforms, EOT over {config['adaptive_eot']} draws for the "
        "random ones; the random defenses are evaluated with a fresh draw).\n\n"
        f"{adaptive.to_markdown(index=False, floatfmt='.1f')}\n\n" + "\n\n".join(notes) + "\n"))

    timer.seconds["total"] = sum(v for k, v in timer.seconds.items() if k != "total")
    info = common.run_info(
        config, timer.seconds,
        preset_pick=config["preset_source"], steps=config["steps"],
        schedule=schedule_table(config["epochs"], config["steps"]),
        seeds={"base": config["seed"], "training images": config["seed"] + 1,
               "test images": config["seed"] + 2, "sr images": config["seed"] + 5,
               "attack shards": "seed * 100000 + shard index (PGD, AutoAttack)",
               "random defenses": "seed * 10000 + row (+100 for png)"},
        classifier={"name": classifier_name, "id": classifier_id},
        perceptual=perceptual_info,
        attacks={a: p for a, p in params.items()}, autoattack_note=ART_DEFAULT_SET_NOTE,
        sizes={"training_pairs_per_purifier": int(len(train.labels)),
               "versatile_pairs_per_attack": {a: int(np.sum(assign == i))
                                              for i, a in enumerate(TRAIN_ATTACKS)},
               "test_images": int(n_test), "classes_short_of_correct": int(short_classes),
               "quality_images": int(n_quality)},
        purifiers={k: {"file": str(p), "last_epoch": histories[k][-1] if histories[k] else None}
                   for k, p in purifier_paths.items()},
        baselines=defense_descriptions(sr_path),
        cache={"dir": str(cache),
               "adversarial_shards_generated": len(events["shards"]["generated"]),
               "adversarial_shards_reused": len(events["shards"]["reused"]),
               "purifiers_trained": events["purifiers_trained"],
               "purifiers_cached": events["purifiers_cached"], "sr_network": events["sr"]},
        png_roundtrip=config["png_roundtrip"],
        paper_tables={"table1": PAPER_TABLE1, "table2": PAPER_TABLE2})
    report.save_json(out / "run.json", info)
    print(wide(table2[table2.evaluation == "tensor"]).to_string(index=False))
    print(f"wrote {out}; timings (s): " +
          ", ".join(f"{k} {v:.0f}" for k, v in timer.seconds.items()), flush=True)
    return info


def robustness_table(config, params, classifier, classifier_id, test, defenses, cache,
                     events) -> pd.DataFrame:
    """Fig 4: PGD and MI-FGSM with each (eps, iterations); accuracy without defense, with the
    versatile purifier and with the attack's own purifier."""
    from tfadv import data
    n = len(test.labels) if not config["robust_n"] else min(config["robust_n"],
                                                              len(test.labels))
    x, y = test.images[:n], test.labels[:n]
    digest, rows = data.array_digest(x), []
    for attack in config["robust_attacks"]:
        for eps in config["robust_eps"]:
            for nb_iter in config["robust_iterations"]:
                p = dict(params[attack], eps=eps, eps_iter=min(config["eps_iter"], eps),
                         nb_iter=int(nb_iter))
                x_adv = adversarial_set("robust", attack, p, classifier, classifier_id, x, y,
                                        digest, config, cache, events)
                for name in ("none", "versatile", f"specific_{attack}"):
                    rows.append({"attack": LABELS[attack], "eps": eps, "eps_255": eps * 255,
                                 "nb_iter": int(nb_iter), "eps_iter": p["eps_iter"],
                                 "defense": "Atk-specific purifier" if name.startswith(
                                     "specific") else DEFENSE_LABELS[name],
                                 "accuracy": _accuracy(classifier, defenses[name](x_adv, 0), y),
                                 "images": n, "evaluation": "tensor",
                                 "attack_saw_defense": False})
    return pd.DataFrame(rows)


def adaptive_table(config, params, classifier, classifier_id, test, defenses, purifiers,
                   purifier_paths, sr_path, cache, events) -> pd.DataFrame:
    """Beyond the paper: gray-box PGD (the paper's) beside PGD through defense + classifier."""
    import keras
    from tfadv import attacks, data
    from tfadv.evaluation import bpda_eot_pgd
    n = min(config["adaptive_n"], len(test.labels))
    x, y = test.images[:n], test.labels[:n]
    digest = data.array_digest(x)
    pgd = dict(params["pgd"], nb_iter=config["adaptive_nb_iter"])
    gray = adversarial_set("adaptive", "pgd", pgd, classifier, classifier_id, x, y, digest,
                           config, cache, events)
    fresh = config["seed"] * 10_000 + 999  # the random defenses' draw at evaluation
    rows = []
    for name in ADAPTIVE_DEFENSES:
        base = {"defense": DEFENSE_LABELS[name], "defense_key": name, "images": n,
                "eps_255": config["eps"] * 255, "nb_iter": pgd["nb_iter"],
                "evaluation": "tensor"}
        rows.append({**base, "attack_saw_defense": False, "attack": "PGD on the classifier "
                     "(paper's gray-box)", "method": "gradients of the classifier only",
                     "eot_samples": 0,
                     "accuracy": _accuracy(classifier, defenses[name](gray, fresh), y)})
        if name == "none":
            continue  # the classifier alone is the whole system: the row above is adaptive too
        if name == "versatile" or name.startswith("specific_"):
            key = name.removeprefix("specific_")
            generator = purifiers[key]
            inputs = keras.Input(x.shape[1:])
            system = keras.Model(inputs, classifier(generator(inputs)),
                                 name=f"{generator.name}_then_classifier")
            system_id = f"{classifier_id}+{Path(purifier_paths[key]).stem}"
            method, eot = "full gradients through purifier + classifier", 0

            def generate(xs, ys, shard, system=system):
                return attacks.make("pgd", **dict(pgd, seed=pgd["seed"] + shard))(system, xs, ys)
        else:
            random = name in ("random_resize", "pd_wd")
            eot = config["adaptive_eot"] if random else 1
            method = ("BPDA (identity backward) + EOT" if random else
                      "BPDA (identity backward)")
            system_id = f"{classifier_id}+{name}" + (f"+{Path(sr_path).stem}" if name == "sr_wd"
                                                     else "")

            def generate(xs, ys, shard, defense=defenses[name], eot=eot):
                return bpda_eot_pgd(classifier, defense, xs, ys, eps=pgd["eps"],
                                    eps_iter=pgd["eps_iter"], nb_iter=pgd["nb_iter"],
                                    eot_samples=eot, seed=pgd["seed"] + shard)
        x_adv = _cached_custom("adaptive", name, {"system": system_id, "pgd": pgd, "eot": eot,
                                                   "method": method}, x, y, digest, generate,
                               config, cache, events)
        rows.append({**base, "attack_saw_defense": True, "attack": "PGD through defense + "
                     "classifier (adaptive)", "method": method, "eot_samples": eot,
                     "accuracy": _accuracy(classifier, defenses[name](x_adv, fresh), y)})
        print(f"  adaptive {name}: gray-box {rows[-2]['accuracy']:.1f}% -> adaptive "
              f"{rows[-1]['accuracy']:.1f}%", flush=True)
    return pd.DataFrame(rows)


def _cached_custom(split, name, settings, x, y, x_digest, generate, config, cache, events):
    """Like :func:`adversarial_set` for an attack given as ``generate(x, y, shard)``."""
    from tfadv import data, models
    key = models.config_key({"settings": json.loads(json.dumps(settings, default=str)),
                             "x": x_digest, "y": data.array_digest(y),
                             "shard_size": config["shard_size"]})
    folder = cache / "adversarial" / EXPERIMENT / "adaptive" / f"{split}-{name}-{key}"
    return data.cached_shards(
        folder, len(y), config["shard_size"],
        lambda start, stop, shard: generate(x[start:stop], y[start:stop], shard),
        log=events["shards"])


if __name__ == "__main__":
    app.run(main)
