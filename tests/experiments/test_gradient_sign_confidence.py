"""Paper 004 (experiments/gradient_sign_confidence.py): confidence buckets, error rates, the
iteration rule, a smoke run from Python, and its user errors (the paper preset without
ImageNet, ``--weights`` outside the inception preset).

Every run here uses a temporary cache root, never the checkout's data/.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers import one_error_line, run_module


def test_confidence_buckets_fixed_thresholds_and_tertiles():
    from experiments.gradient_sign_confidence import confidence_buckets
    confidence = np.array([0.05, 0.10, 0.14, 0.15, 0.29, 0.30, 0.90, 0.99, 1.0])
    buckets = confidence_buckets(confidence)
    by_prefix = {k.split(" (")[0]: v for k, v in buckets.items()}
    np.testing.assert_array_equal(by_prefix["low"], [0, 1, 2])
    np.testing.assert_array_equal(by_prefix["medium"], [3, 4])
    np.testing.assert_array_equal(by_prefix["high"], [5, 6, 7, 8])
    tertiles = [by_prefix[f"tertile {t}"] for t in ("low", "mid", "high")]
    assert sorted(np.concatenate(tertiles).tolist()) == list(range(9))  # a partition
    assert [len(t) for t in tertiles] == [3, 3, 3]


def test_error_rates_top1_and_top5():
    from experiments.gradient_sign_confidence import error_rates
    from helpers import trained_digits_model
    from tfadv.evaluation import predict_logits
    trained = trained_digits_model()
    x, y = trained.test.images[:50], trained.test.labels[:50]
    top1, top5 = error_rates(trained.model, x, y, x)
    ranks = np.argsort(-predict_logits(trained.model, x), axis=1)
    assert top1 == pytest.approx(100 * np.mean(ranks[:, 0] != y))
    assert top5 == pytest.approx(100 * np.mean([label not in r[:5] for label, r in zip(y, ranks)]))
    assert top5 <= top1


def test_kurakin_iterations():
    from experiments.gradient_sign_confidence import iterations
    assert iterations(16 / 255) == 20 and iterations(8 / 255) == 10 and iterations(2 / 255) == 2


def test_gradient_sign_confidence_smoke_from_python(tmp_path, cache):
    """``run(config, out)`` works without the command line (no flags parsed)."""
    from experiments import gradient_sign_confidence as gsc
    config = dict(gsc.PRESETS["smoke"], preset="smoke", cache_dir=str(cache.root))
    result = gsc.run(config, tmp_path)
    assert result["bucket_sizes"] and len(result["table"]) == 4 * 6
    table = pd.read_csv(tmp_path / "table1_error_rates.csv")
    assert set(table.method) == {"fast", "iterative"}
    assert set(table.gradient) == {"inverse", "least_likely"}
    assert len(table) == 4 * 6  # 4 combinations x (3 fixed + 3 tertile buckets)
    filled = table.dropna(subset=["top1_error"])
    assert len(filled) and filled.top1_error.between(0, 100).all()
    assert (filled.top5_error <= filled.top1_error).all()
    assert (tmp_path / "table1_error_rates.md").exists()
    run = json.loads((tmp_path / "run.json").read_text())
    assert sum(run["bucket_sizes"].values()) > 0


def test_paper_preset_without_imagenet_fails_clearly(tmp_path):
    proc = run_module("experiments.gradient_sign_confidence", "--preset=paper",
                      f"--out={tmp_path}", expect=2, timeout=300)
    assert "ImageNet" in one_error_line(proc, "gradient_sign_confidence")


def test_weights_flag_outside_the_inception_preset_is_a_user_error(tmp_path):
    proc = run_module("experiments.gradient_sign_confidence", "--preset=smoke",
                      "--weights=imagenet", f"--out={tmp_path}", expect=2, timeout=300)
    assert "--weights" in one_error_line(proc, "gradient_sign_confidence")
