"""Paper 004's paper preset (experiments/gradient_sign_confidence.py) end to end on a tiny
ImageNet-style folder: ``val/<wnid>/*.JPEG`` of three classes (no train/), Inception-v3 with
random weights from a file made here, tiny counts. The weights file's last layer is set so the
network calls every image class 999 (n15075141) with about 60% confidence: only that class's
images are correctly classified, and only if the experiment labels them with the canonical
ImageNet id (999), not with the folder's own class index (2).
"""

from __future__ import annotations

import json

import pandas as pd

from helpers import (IMAGENET_WNIDS as WNIDS, imagenet_folder, one_error_line,
                     random_inception_weights, run_module)

def _val_folder(root, per_class=3):
    return imagenet_folder(root, {"val": per_class})


def test_paper_preset_reads_an_imagenet_val_folder_with_canonical_labels(tmp_path, cache):
    data = _val_folder(tmp_path / "imagenet")
    weights = random_inception_weights(tmp_path / "random_init_inception_v3.weights.h5")
    out = tmp_path / "out"
    run_module("experiments.gradient_sign_confidence", "--preset=paper", f"--data={data}",
               f"--weights={weights}", "--set=per_bucket=2", "--set=screen_per_class=2",
               "--set=eps=2/255", f"--out={out}", cache=cache, timeout=600)
    run = json.loads((out / "run.json").read_text())
    # 2 images of each class screened; the 2 of n15075141 (id 999) are right, at 60%
    assert run["images"] == 6 and run["correct_images"] == 2
    assert run["bucket_sizes"] == {"low (0%-15%)": 0, "medium (15%-30%)": 0,
                                   "high (30%-100%)": 2}
    assert run["iterations"] == 2 and run["config"]["screen_per_class"] == 2
    assert "random_init" in run["model"]  # the report names the (random) weights file
    table = pd.read_csv(out / "table1_error_rates.csv")
    assert len(table) == 4 * 3  # method x gradient x the paper's three buckets, no tertiles
    high = table[table.bucket == "high (30%-100%)"]
    assert (high.images == 2).all() and high.top1_error.between(0, 100).all()
    assert (high.top5_error <= high.top1_error).all()
    assert table[table.bucket != "high (30%-100%)"].top1_error.isna().all()
    markdown = (out / "table1_error_rates.md").read_text()
    assert "random_init_inception_v3" in markdown and "n/a" in markdown
    assert not cache.unused.exists()


def test_paper_preset_refuses_a_folder_without_val_or_with_other_classes(tmp_path):
    (tmp_path / "train" / "n01440764").mkdir(parents=True)
    proc = run_module("experiments.gradient_sign_confidence", "--preset=paper",
                      f"--data={tmp_path}", "--weights=imagenet", f"--out={tmp_path / 'out'}",
                      expect=2, timeout=300)
    assert "val/" in one_error_line(proc, "gradient_sign_confidence")
    data = _val_folder(tmp_path / "other", per_class=1)
    (data / "val" / WNIDS[0]).rename(data / "val" / "goldfish")
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"")  # never read: the folder is refused first
    proc = run_module("experiments.gradient_sign_confidence", "--preset=paper",
                      f"--data={data}", f"--weights={weights}", f"--out={tmp_path / 'out'}",
                      expect=2, timeout=300)
    line = one_error_line(proc, "gradient_sign_confidence")
    assert "['goldfish']" in line and "val/<wnid>/*.JPEG" in line
