"""Paper 003's versatile defense (experiments/versatile_defense.py).

The smoke preset end to end in a temporary ``--cache_dir`` (every output, the PNG round-trip
rows, run.json, the adaptive table's sanity columns), a second run that reuses every cache,
the preset picked without ``--preset`` on a CPU, ``--steps``, the presets, one-line errors
with exit status 2 (the paper preset's preflight, ``--set=train_per_class=0``). About two
minutes on 2 CPU cores, most of it the smoke runs. Elsewhere: Tables 1-2 arithmetic
(tfadv.report.versatile) in tests/report/test_versatile_report.py, common.pick_preset and
common.main in test_common.py, the zoo's weights checks in tests/models/test_zoo.py, BPDA +
EOT PGD in tests/attacks/test_bpda.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments import versatile_defense as vd
from tfadv.defenses import versatile
from tfadv.models import zoo
from tfadv.report import versatile as rv

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = [f"{stem}.{ext}" for stem in ("table1_generalizability", "table2_comparison",
                                        "quality", "robustness", "table_adaptive",
                                        "purifier_training", "diagnostics")
           for ext in ("csv", "md")] + ["visual.png", "robustness.png", "quality.png",
                                        "purifier_training.png", "run.json"]
ROW_LABELS = [vd.LABELS[r] for r in vd.ROWS] + ["Average"]


def run_module(*args, timeout=600, env_extra=None):
    # TFADV_CACHE stays (conftest's temporary root): nothing may be written into data/.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TFADV_") or k == "TFADV_CACHE"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""  # the tests are about the CPU behaviour
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "experiments.versatile_defense", *args],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _ok(proc):
    assert proc.returncode == 0, f"failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def _one_line_error(proc) -> str:
    """The error line of a run refused with exit status 2, no traceback (common.main)."""
    assert proc.returncode == 2, f"rc {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.startswith("versatile_defense: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("versatile_defense: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Two smoke runs with the PNG round trip sharing one fresh cache: the second resumes."""
    root = tmp_path_factory.mktemp("versatile")
    started = time.time() - 1
    args = ["--preset=smoke", "--png_roundtrip", f"--cache_dir={root / 'cache'}"]
    first = _ok(run_module(*args, f"--out={root / 'first'}"))
    _ok(run_module(*args, f"--out={root / 'second'}"))
    # Everything went to --cache_dir: none of its files was written into data/ as well.
    ours = {p.name for p in (root / "cache").rglob("*") if p.is_file()}
    assert ours and not [p for p in (REPO_ROOT / "data").rglob("*")
                         if p.name in ours and p.stat().st_mtime >= started]
    return {"first": root / "first", "second": root / "second", "cache": root / "cache",
            "stdout": first.stdout}


# --------------------------------------------------------------------------- end to end

def test_smoke_writes_every_output(smoke):
    for name in OUTPUTS:
        path = smoke["first"] / name
        assert path.is_file() and path.stat().st_size > 0, name


def test_tables_have_the_papers_rows_and_columns(smoke):
    for stem, columns, paper in (("table1_generalizability", rv.TABLE1_COLUMNS, rv.PAPER_TABLE1),
                                 ("table2_comparison", rv.TABLE2_COLUMNS, rv.PAPER_TABLE2)):
        table = pd.read_csv(smoke["first"] / f"{stem}.csv")
        tensor = table[table.evaluation == "tensor"]
        assert list(dict.fromkeys(tensor.attack)) == ROW_LABELS
        assert list(dict.fromkeys(tensor.defense)) == [label for _, label in columns]
        assert len(tensor) == len(ROW_LABELS) * len(columns)
        assert not tensor.attack_saw_defense.any()
        values = tensor.accuracy.dropna()
        assert ((values >= 0) & (values <= 100)).all()
        # Only No defense has no average (the paper's "-").
        missing = tensor[tensor.accuracy.isna()]
        assert list(missing.attack) == ["Average"] and list(missing.defense_key) == ["none"]
        # The paper's number beside each cell.
        for row, key in (("fgsm", columns[1][0]), ("deepfool", columns[-1][0])):
            cell = tensor[(tensor.attack == vd.LABELS[row]) & (tensor.defense_key == key)]
            i = [k for k, _ in columns].index(key)
            assert cell.paper.iloc[0] == pytest.approx(paper[row][i])
        # Clean, no defense: the test images are ones the classifier gets right.
        clean = tensor[(tensor.attack == "Clean") & (tensor.defense_key == "none")]
        assert clean.accuracy.iloc[0] == pytest.approx(100.0)
    md = (smoke["first"] / "table2_comparison.md").read_text()
    assert "NOT the paper's ImageNet / Inception-v3" in md and "SUBSTITUTE" in md


def test_png_roundtrip_flag_adds_its_rows(smoke):
    for stem in ("table1_generalizability", "table2_comparison"):
        table = pd.read_csv(smoke["first"] / f"{stem}.csv")
        assert set(table.evaluation) == {"tensor", "png"}
        assert (table.evaluation == "png").sum() == (table.evaluation == "tensor").sum()
        assert "**png**" in (smoke["first"] / f"{stem}.md").read_text()


def test_quality_robustness_and_adaptive_tables(smoke):
    quality = pd.read_csv(smoke["first"] / "quality.csv")
    assert set(quality.attack) == set(ROW_LABELS[:-1])
    assert {"No defense", "Versatile purifier", "Atk-specific purifier"} <= set(quality.defense)
    assert quality.mae_mean.between(0, 1).all() and (quality.ssim_mean <= 1 + 1e-9).all()
    robustness = pd.read_csv(smoke["first"] / "robustness.csv")
    config = vd.PRESETS["smoke"]
    assert set(robustness.attack) == {"PGD", "MI-FGSM"}
    assert sorted(robustness.nb_iter.unique()) == config["robust_iterations"]
    assert robustness.eps.nunique() == len(config["robust_eps"])
    assert robustness.accuracy.between(0, 100).all() and not robustness.attack_saw_defense.any()
    adaptive = pd.read_csv(smoke["first"] / "table_adaptive.csv")
    assert set(adaptive.defense_key) == set(vd.ADAPTIVE_DEFENSES)
    saw = adaptive.groupby("defense_key").attack_saw_defense.apply(set).to_dict()
    assert saw.pop("none") == {False}  # no defense: the gray-box attack is the adaptive one
    assert all(v == {False, True} for v in saw.values())
    methods = dict(zip(adaptive[adaptive.attack_saw_defense].defense_key,
                       adaptive[adaptive.attack_saw_defense].method))
    assert "EOT" in methods["random_resize"] and "EOT" in methods["pd_wd"]
    assert "BPDA" in methods["sr_wd"] and "EOT" not in methods["sr_wd"]
    assert "full gradients" in methods["versatile"]
    assert "full gradients" in methods["specific_pgd"]
    # The sanity checks: a column on every attacked row (adaptive, and no defense's gray-box
    # row, which is its adaptive one), with the numbers they were judged on.
    for column in ("sanity", "sanity_images", "sanity_half_steps_accuracy",
                   "sanity_full_steps_accuracy", "sanity_large_eps_accuracy",
                   "sanity_zero_gradients"):
        assert column in adaptive, column
    attacked = adaptive[adaptive.attack_saw_defense | (adaptive.defense_key == "none")]
    assert len(attacked) == len(vd.ADAPTIVE_DEFENSES)
    assert attacked.sanity.map(lambda v: v == "ok" or v.startswith("FAIL: ")).all()
    assert (attacked.sanity_images == vd.PRESETS["smoke"]["sanity_n"]).all()
    assert attacked.sanity_large_eps_accuracy.between(0, 100).all()
    md = (smoke["first"] / "table_adaptive.md").read_text()
    assert "sanity" in md and "eps 0.5" in md


def test_purifier_training_log_has_every_epoch_and_the_monitor(smoke):
    training = pd.read_csv(smoke["first"] / "purifier_training.csv")
    config = vd.PRESETS["smoke"]
    assert set(training.purifier) == {"versatile"} | {f"specific_{a}" for a in vd.TRAIN_ATTACKS}
    assert (training.groupby("purifier").epoch.apply(list) ==
            [list(range(1, config["epochs"] + 1))] * 7).all()
    assert sorted(training.lambda_perc.unique()) == [1.0, 50.0, 100.0]
    assert training.recovered_accuracy.between(0, 100).all()
    # the monitor reads validation images from the training split, never the test images
    info = json.loads((smoke["first"] / "run.json").read_text())
    assert info["sizes"]["validation_images"] == 10 * config["val_per_class"]
    assert "validation images" in (smoke["first"] / "purifier_training.md").read_text()
    assert "logged only" in (smoke["first"] / "purifier_training.md").read_text()


def test_diagnostics_table_has_the_noise_row_and_every_attack(smoke):
    diagnostics = pd.read_csv(smoke["first"] / "diagnostics.csv")
    config = vd.PRESETS["smoke"]
    assert diagnostics.input.iloc[0] == "clean" and "random sign noise" in diagnostics.input[1]
    assert list(diagnostics.input[2:]) == [vd.LABELS[r] for r in vd.ROWS if r != "clean"]
    assert (diagnostics.images == 10 * config["test_per_class"]).all()
    for column in ("acc", "acc_purified", "acc_purified_dropout"):
        assert diagnostics[column].between(0, 100).all(), column
    assert np.isnan(diagnostics.leftover_ratio[0]) and (diagnostics.leftover_ratio[1:] >= 0).all()
    assert "second_acc" not in diagnostics  # smoke has no second classifier
    # the rows' unpurified accuracy is Table 2's No defense column
    table2 = pd.read_csv(smoke["first"] / "table2_comparison.csv")
    none = table2[(table2.evaluation == "tensor") & (table2.defense_key == "none")]
    assert diagnostics.acc.iloc[2:].tolist() == pytest.approx(none.accuracy.iloc[1:8].tolist())


def test_versatile_only_run_reuses_the_versatile_purifier_and_leaves_out_the_others(
        smoke, tmp_path):
    """--set=purifiers=versatile (ablations of its settings): only the versatile purifier
    (here loaded from the cache), no Table 1, an empty Atk-specific column, the same
    versatile column as the full run."""
    out = tmp_path / "versatile_only"
    _ok(run_module("--preset=smoke", "--set=purifiers=versatile",
                   f"--cache_dir={smoke['cache']}", f"--out={out}"))
    assert not (out / "table1_generalizability.csv").exists()
    only = pd.read_csv(out / "table2_comparison.csv")
    full = pd.read_csv(smoke["first"] / "table2_comparison.csv")
    full = full[full.evaluation == "tensor"]
    assert only[only.defense_key == "specific"].accuracy.isna().all()
    assert only[only.defense_key == "versatile"].accuracy.tolist() == \
        full[full.defense_key == "versatile"].accuracy.tolist()
    info = json.loads((out / "run.json").read_text())
    assert info["cache"]["purifiers_cached"] == ["versatile"]
    assert not info["cache"]["purifiers_trained"] and list(info["purifiers"]) == ["versatile"]
    adaptive = pd.read_csv(out / "table_adaptive.csv")
    assert "specific_pgd" not in set(adaptive.defense_key)
    bad = run_module("--preset=smoke", "--set=purifiers=some", f"--cache_dir={smoke['cache']}",
                     f"--out={tmp_path / 'bad'}")
    assert "purifiers must be 'all' or 'versatile'" in _one_line_error(bad)


def test_run_json_has_schedule_perceptual_and_provenance(smoke):
    info = json.loads((smoke["first"] / "run.json").read_text())
    assert info["steps"] == "multi" and info["config"]["steps"] == "multi"
    assert [p["lambda_perc"] for p in info["schedule"]] == [100.0, 50.0, 1.0]
    assert sum(p["epochs"] for p in info["schedule"]) == vd.PRESETS["smoke"]["epochs"]
    perceptual = info["perceptual"]
    assert perceptual["substitute"] is True and "SUBSTITUTE" in perceptual["note"]
    assert perceptual["layers"] and perceptual["network"].startswith("classifier")
    for key in ("versions", "git_commit", "device", "timings_s", "seeds", "attacks"):
        assert key in info, key
    assert info["config"]["precision"] in ("float32", "mixed_bfloat16")
    assert info["attacks"]["pgd"]["nb_iter"] == vd.PRESETS["smoke"]["nb_iter"]
    assert info["png_roundtrip"] is True
    assert "SUBSTITUTE" in smoke["stdout"]  # said loudly while running too
    # The defenses beside the purifiers, with their declared properties ("baselines" before).
    assert "baselines" not in info
    defended = info["defenses"]
    assert set(defended) == {"none", "versatile", "random_resize", "pd_wd", "sr_wd"}
    for key, (randomized, differentiable) in {
            "none": (False, True), "versatile": (False, True), "random_resize": (True, False),
            "pd_wd": (True, False), "sr_wd": (False, False)}.items():
        assert defended[key]["randomized"] is randomized, key
        assert defended[key]["differentiable"] is differentiable, key
        assert defended[key]["description"]
    assert defended["random_resize"]["params"]["resize_back"] is True
    assert defended["pd_wd"]["params"]["sigma"] == pytest.approx(0.04)
    assert info["classifier"]["id"].startswith("tiny_cnn-")
    assert "digits_tiny_cnn_smoke" in info["classifier"]["name"]
    assert info["config"]["classifier"] == "digits_tiny_cnn_smoke"
    assert info["cache"]["dir"] == str(smoke["cache"])
    # one device (no GPU here): the default strategy, the preset's batch and learning rate
    assert info["config"]["strategy"]["replicas"] == 1
    assert info["purifier_batch"] == {
        "global": 10, "per_replica": 10.0, "replicas": 1, "learning_rate": 1e-3,
        "rule": "lr = 0.001 x 1", "pix2pix": False, "jit_compile": False}


# slow (70 s, the longest default test): the default run keeps the two-replica purifier
# update (tests/defenses/test_purifier_distributed.py) and command line (tests/test_distribute.py)
@pytest.mark.slow
def test_smoke_under_two_cpu_replicas_writes_every_output(tmp_path):
    """The multi-device path (MirroredStrategy over a CPU split in two): synchronized
    BatchNorm, per-replica dropout, the global batch split in halves; run.json says so."""
    out = tmp_path / "out"
    _ok(run_module("--preset=smoke", "--strategy=mirrored", "--cpu_replicas=2",
                   f"--cache_dir={tmp_path / 'cache'}", f"--out={out}"))
    assert all((out / name).exists() for name in OUTPUTS)
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["strategy"]["strategy"] == "mirrored"
    assert info["config"]["strategy"]["replicas"] == 2
    assert info["purifier_batch"]["replicas"] == 2 and info["purifier_batch"]["per_replica"] == 5
    assert len(info["cache"]["purifiers_trained"]) == 7
    table2 = pd.read_csv(out / "table2_comparison.csv")
    assert len(table2) == 54  # every cell measured ("No defense" has no average: NaN)
    assert table2[table2.attack != "Average"].accuracy.notna().all()


def test_second_run_reuses_every_cache(smoke):
    first = json.loads((smoke["first"] / "run.json").read_text())["cache"]
    second = json.loads((smoke["second"] / "run.json").read_text())["cache"]
    assert first["adversarial_shards_generated"] > 0 and first["adversarial_shards_reused"] == 0
    assert len(first["purifiers_trained"]) == 7 and first["sr_network"] == "trained"
    assert second["adversarial_shards_generated"] == 0
    assert second["adversarial_shards_reused"] == first["adversarial_shards_generated"]
    assert second["purifiers_trained"] == [] and len(second["purifiers_cached"]) == 7
    assert second["sr_network"] == "cached"
    # Everything went under --cache_dir: models/ and adversarial/ (digits need no datasets/).
    assert {p.name for p in smoke["cache"].iterdir()} == {"models", "adversarial"}
    # Finished purifiers leave no training checkpoints behind; the .keras is the cache.
    models = smoke["cache"] / "models"
    assert len(list(models.glob("sr_x2-*.keras"))) == 1
    assert len(list(models.glob("tiny_cnn-*.keras"))) == 1  # the zoo's smoke classifier
    assert len(list(models.glob("purifier_*.keras"))) == 7
    assert not list(models.glob("purifier_*.ckpt"))
    # Same caches, same numbers.
    t1 = pd.read_csv(smoke["first"] / "table2_comparison.csv")
    t2 = pd.read_csv(smoke["second"] / "table2_comparison.csv")
    pd.testing.assert_frame_equal(t1, t2)


# --------------------------------------------------------------------------- presets, flags

def test_no_preset_on_a_cpu_picks_quick_and_says_why():
    proc = _ok(run_module("--plan"))
    first = [line for line in proc.stdout.splitlines() if line.strip()][0]
    assert "picked 'quick'" in first and "no GPU or TPU is visible" in first
    assert '"preset": "quick"' in proc.stdout
    assert '"preset_source": "auto: no GPU or TPU is visible' in proc.stdout


def test_steps_single_changes_the_logged_schedule():
    multi = _ok(run_module("--preset=smoke", "--plan")).stdout
    single = _ok(run_module("--preset=smoke", "--plan", "--steps=single")).stdout
    assert "multi-step" in multi and "lambda_perc=50" in multi
    assert "single-step" in single and "lambda_perc=50" not in single
    assert "epochs 0-2: lambda_pix=100, lambda_perc=1" in single
    constant = _ok(run_module("--preset=smoke", "--plan", "--steps=constant")).stdout
    assert "epochs 0-2: lambda_pix=100, lambda_perc=100" in constant
    assert "smoke-steps_constant" in constant  # its results do not overwrite the paper's


def test_paper_preset_without_data_or_weights_fails_at_once(tmp_path):
    out = tmp_path / "out"
    proc = run_module("--preset=paper", f"--out={out}",
                      f"--inception_weights={tmp_path / 'no_inception.h5'}",
                      f"--vgg19_weights={tmp_path / 'no_vgg19.h5'}", timeout=120)
    message = _one_line_error(proc)
    assert "cannot start" in message
    assert "--data" in message and "--data_dir" in message and "ImageNet" in message
    assert "--inception_weights" in message and "--vgg19_weights" in message
    assert not out.exists()  # nothing was done


def test_presets_switch_to_rgb_with_data():
    assert vd.presets_for(None)["quick"]["image_size"] == 8
    rgb = vd.presets_for("../shared/data/cifar10-jpeg.tar.gz")
    assert rgb["quick"]["image_size"] == 32 and rgb["quick"]["eps"] == pytest.approx(16 / 255)
    assert rgb["cifar"] is vd.PRESETS["cifar"]
    # Classifiers come from the zoo (paper 001's recipes), and the paper's attack settings.
    assert vd.PRESETS["cifar"]["classifier"] == "cifar10_resnet18_w32"
    assert vd.PRESETS["smoke"]["classifier"] == "digits_tiny_cnn_smoke"
    assert zoo.RECIPES["digits_tiny_cnn_smoke"]["epochs"] == 20
    assert vd.PRESETS["smoke"]["sanity_n"] == 5
    for preset in vd.PRESETS.values():
        assert preset["classifier"] in zoo.NAMES
    assert rgb["quick"]["classifier"] in zoo.NAMES
    for preset in ("cifar", "paper"):
        assert vd.PRESETS[preset]["eps"] == pytest.approx(16 / 255)
        assert vd.PRESETS[preset]["nb_iter"] == 40 and vd.PRESETS[preset]["eps_iter"] == 0.01
    paper = vd.PRESETS["paper"]
    assert (paper["train_per_class"], paper["test_per_class"], paper["image_size"],
            paper["epochs"]) == (18, 5, 256, 100)
    # the stated deviation: 16 pairs per replica, Adam's 2e-4 scaled by sqrt(batch); batch 1
    # (--set=batch_size=1) is pix2pix's exactly
    import tensorflow as tf
    one = tf.distribute.get_strategy()
    assert versatile.purifier_batch(paper, one)["global"] == 16
    assert versatile.purifier_batch(paper, one)["learning_rate"] == pytest.approx(8e-4)
    assert versatile.purifier_batch(dict(paper, batch_size=1), one) == {
        "global": 1, "per_replica": 1.0, "replicas": 1, "learning_rate": 2e-4,
        "rule": "lr = 0.0002 x 1", "pix2pix": True, "jit_compile": False}  # no GPU here
    with pytest.raises(ValueError, match="lr_scaling"):
        versatile.purifier_batch(dict(paper, lr_scaling="linear"), one)



def test_zoo_networks_beside_the_classifier_are_never_the_classifier_itself():
    """The cifar preset's perceptual VGG is trained at the run's seed, a different recipe from
    the classifier's; the classifier's own recipe as the perceptual network (e.g. the VGG
    attacked with --set=classifier=cifar10_vgg6_w32) gets a seed of its own, which the
    second classifier's is not either."""
    cifar = vd.PRESETS["cifar"]
    assert vd.zoo_seed_offsets(cifar) == {"second": 1, "perceptual": 0}
    same = vd.zoo_seed_offsets(dict(cifar, classifier=cifar["perceptual"]))
    assert same["perceptual"] not in (0, same["second"])

# --------------------------------------------------------------------------- user errors

def test_zero_training_images_per_class_is_a_one_line_error(smoke, tmp_path):
    """The smoke cache holds the classifier, so the run gets to picking training images."""
    out = tmp_path / "out"
    proc = run_module("--preset=smoke", "--set=train_per_class=0", f"--out={out}",
                      f"--cache_dir={smoke['cache']}", timeout=300)
    message = _one_line_error(proc)
    assert "per_class must be an integer >= 1" in message and "got 0" in message
    assert not out.exists()
