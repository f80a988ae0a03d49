"""Paper 003's paper preset (experiments/versatile_defense.py) end to end, as a dry run: the
command line a GPU user types (``--preset=paper --data=IMAGENET --inception_weights=FILE
--vgg19_weights=FILE``) on a folder of 3 ImageNet classes, with Inception-v3 and VGG19 (no
top) weight files made here (random weights), the paper's code path (Inception-v3 from the
zoo at 299x299 behind a resize, the VGG19 perceptual loss, six attacks, seven purifiers,
every baseline, the adaptive table) and tiny counts. Every table and figure must be written.

The Inception-v3 file's last layer is set so the network calls every image class 999
(n15075141, at about 60%): the one test image of that class is right only if the run labels
it with the canonical ImageNet id (999, not the folder's own index 2), so "No defense" on
clean images is 1/3.

Slow (about 10 minutes on the 2-core CPU, whatever the counts): the time goes to building
TensorFlow graphs, not to arithmetic. Each attack, purifier and defense traces its own
function through Inception-v3 (about 300 layers) or VGG19 + U-Net + PatchGAN, and every
eager Inception-v3 call costs about a second; with 3 test images and 18 training pairs that
is 7 purifiers x ~30 s, ~90 s of test-set attacks, ~90 s of evaluation and ~120 s of
adaptive attacks. Run it with ``-m slow``.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from helpers import imagenet_folder, random_inception_weights, run_module

OUTPUTS = [f"{stem}.{ext}" for stem in ("table1_generalizability", "table2_comparison",
                                        "quality", "robustness", "table_adaptive",
                                        "purifier_training", "diagnostics")
           for ext in ("csv", "md")] + ["visual.png", "robustness.png", "quality.png",
                                        "purifier_training.png", "run.json"]
# The paper preset with every count as small as the code allows: 6 training images per
# class (one per attack for the versatile purifier: 3 pairs per attack-specific purifier, so
# batches of 3), 1 validation image and 1 test image per class, 32x32 images
# (the smallest VGG19 takes; pix2pix needs a power of two; Inception-v3 resizes to 299
# inside), one iteration of every iterative attack, one epoch of 4-filter purifiers.
TINY = dict(image_size=32, train_per_class=6, val_per_class=1, test_per_class=1,
            test_pool_per_class=2,
            nb_iter=1, cw_binary_search_steps=1, cw_max_iterations=1, aa_apgd_max_iter=1,
            aa_nb_random_init=1, aa_deepfool_max_iter=1, aa_square_max_iter=1,
            aa_square_restarts=1, deepfool_max_iter=1, attack_batch_size=8, shard_size=20,
            base_filters=4, batch_size=3, epochs=1, sr_epochs=1, sr_batch_size=6,
            sr_filters=4, sr_blocks=1, robust_eps="2/255", robust_iterations=1, robust_n=1,
            quality_n=0, adaptive_n=2, adaptive_nb_iter=1, adaptive_eot=1, sanity_n=1,
            monitor_n=1)


def _weight_files(folder):
    """Inception-v3 (calling every image class 999) and VGG19 without top, random weights,
    as weight files named so that the results say they are random."""
    import keras
    inception = random_inception_weights(folder / "random_init_inception_v3.weights.h5")
    keras.applications.VGG19(include_top=False, weights=None).save_weights(
        folder / "random_init_vgg19_notop.weights.h5")
    return inception, folder / "random_init_vgg19_notop.weights.h5"


@pytest.mark.slow
def test_paper_preset_dry_run_writes_every_output(tmp_path, cache):
    data = imagenet_folder(tmp_path / "imagenet", {"train": TINY["train_per_class"]
                                                   + TINY["val_per_class"],
                                                   "val": TINY["test_pool_per_class"]},
                           size=(40, 48))
    inception, vgg19 = _weight_files(tmp_path)
    out = tmp_path / "out"
    run_module("experiments.versatile_defense", "--preset=paper", f"--data={data}",
               f"--inception_weights={inception}", f"--vgg19_weights={vgg19}",
               *(f"--set={k}={v}" for k, v in TINY.items()), f"--out={out}", cache=cache,
               timeout=1800)
    assert [name for name in OUTPUTS if not (out / name).is_file()] == []
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["preset"] == "paper" and run["config"]["classifier"] == "inception_v3"
    # the weights are named (the file says random), the perceptual network is the paper's
    assert "random_init_inception_v3" in run["classifier"]["name"]
    assert "VGG19" in run["perceptual"]["network"] and not run["perceptual"]["substitute"]
    assert str(vgg19) in run["perceptual"]["weights"]
    sizes = run["sizes"]
    assert sizes["training_pairs_versatile"] == 18 and sizes["test_images"] == 3
    assert sizes["training_pairs_per_specific_purifier"] == 3
    assert sizes["validation_images"] == 3
    assert set(sizes["versatile_pairs_per_attack"].values()) == {3}
    # 2 of the 3 classes have no correctly classified image (1,000 named classes, 3 held)
    assert sizes["classes_short_of_correct"] == 2
    table2 = pd.read_csv(out / "table2_comparison.csv")
    clean = table2[(table2.attack == "Clean") & (table2.evaluation == "tensor")]
    # canonical labels: the class-999 image is right, the others are not
    assert clean.set_index("defense").loc["No defense", "accuracy"] == pytest.approx(100 / 3)
    assert not cache.unused.exists()
