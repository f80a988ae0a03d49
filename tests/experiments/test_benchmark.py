"""The speed benchmarks (experiments/benchmark.py, experiments/benchmark_purifier.py): the
``jsma``, ``attacks``, purifier ``speed`` and ``memory`` commands on a few images, checked for
their tables (never for their times).

The runs use a temporary cache root (``--cache_dir`` or conftest's ``$TFADV_CACHE``), never
the checkout's data/.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from helpers import REPO_ROOT, run_module


def test_benchmark_jsma_smoke(tmp_path, cache):
    # 9-14 s here (25 s while a training job held both cores): under the ~20 s "slow" line.
    run_module("experiments.benchmark", "jsma", "--n=8", "--repeats=1", f"--out={tmp_path}",
               cache=cache)
    table = pd.read_csv(tmp_path / "benchmark_jsma.csv")
    # One row per implementation: ART's and at least one of ours (3 when this was written,
    # 5 now: default, XLA, margin saliency, the original rule).
    assert len(table) >= 2 and table.implementation.is_unique
    art = table[table.implementation.str.startswith("ART")]
    assert len(art) == 1 and art.speedup_vs_art.iloc[0] == pytest.approx(1.0)
    assert table.implementation.str.startswith("tfadv").sum() == len(table) - 1
    assert (table.images == 8).all()
    assert table.success_rate.between(0, 1).all()
    assert (table.seconds > 0).all() and (table.speedup_vs_art > 0).all()
    assert (tmp_path / "benchmark_jsma.md").is_file()
    assert not cache.unused.exists()


def test_benchmark_attacks_smoke(tmp_path, cache):
    """Each attack beside its reference library (cleverhans, ART, Foolbox) on a few images."""
    # The cheap peers only: ART's and Foolbox's C&W take 15-20 s even on 8 digit images (ART's
    # C&W L0/Linf and UAP minutes); C&W L2 is cross-checked against Foolbox in test_cw.py.
    run_module("experiments.benchmark", "attacks", "--n=8", "--repeats=1", f"--out={tmp_path}",
               "--only=fgsm,pgd,deepfool,autoattack", "--paper_batch=0", cache=cache)
    table = pd.read_csv(tmp_path / "benchmark_attacks.csv")
    assert set(table.attack) == {"fgsm", "pgd", "deepfool", "autoattack"}
    assert (table.groupby("attack").size() >= 2).all()  # ours and at least one peer
    assert table.success_rate.between(0, 1).all() and (table.seconds > 0).all()
    # The native kernel (plain and XLA) computes the same FGSM as cleverhans itself.
    rows = table[table.attack == "fgsm"]
    assert list(rows.implementation) == ["tfadv fgsm", "tfadv fgsm, XLA", "cleverhans"]
    assert rows.success_rate.nunique() == 1, rows
    assert rows.speedup_vs_peer.iloc[-1] == 1


def test_benchmark_purifier_smoke(tmp_path):
    # TFADV_CACHE stays (conftest's temporary root): nothing may be written into data/.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TFADV_") or k == "TFADV_CACHE"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark_purifier", "speed", "--size=32",
         "--base_filters=4", "--timed_steps=1", "--repeats=1", "--projection_steps=0",
         f"--out={tmp_path}"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "random weights" in proc.stdout
    table = pd.read_csv(tmp_path / "benchmark_purifier.csv")
    assert len(table) == 6  # the old loop, compiled, compiled + XLA, in two precisions
    assert set(table.precision) == {"float32", "mixed_bfloat16"}
    assert table.loop.str.startswith("loop").sum() == 2 and table.loop.str.contains("XLA").sum() == 2
    assert (table.images_per_s > 0).all() and (table.achieved_tflops > 0).all()
    assert (table.gflop_per_step > 0).all()  # counted, the same for every loop of a precision
    assert (table.groupby("precision").gflop_per_step.nunique() == 1).all()
    assert (table[table.loop.str.startswith("loop")].speedup_vs_loop == 1).all()
    assert not (tmp_path / "projection_paper_preset.csv").exists()  # --projection_steps=0


def test_paper_budget_counts_every_stage():
    """The projection's arithmetic: seven purifiers x 100 epochs x 18,000 pairs, then the
    attacks' gradients (C&W at its bound), in hours at the stated share of the H100's peak."""
    from tfadv.report import projection
    budget = projection.paper_budget(step_flops_per_pair=1e12, gradient_flops=1e10)
    assert budget.flops.iloc[0] == 7 * 100 * 18_000 * 1e12
    cw = budget[budget.stage.str.contains("C&W")].flops.iloc[0]
    assert cw == (18_000 + 5_000) * 5_000 * 1e10
    fig4 = budget[budget.stage.str.contains("Fig 4")].flops.iloc[0]
    assert fig4 == 2 * 3 * 100 * 5_000 * 1e10  # one 100-step run per attack and eps
    hours = budget.flops / (projection.H100_BF16_TFLOPS * 1e12 * projection.UTILISATION) / 3600
    np.testing.assert_allclose(budget.hours_h100_projected, hours)


# slow: six child processes (36 s); the speed command's smoke test stays in the default run
@pytest.mark.slow
def test_purifier_memory_runs_each_size_and_mode_in_its_own_process(tmp_path):
    # its sets go to a temporary folder of its own: nothing is cached
    run_module("experiments.benchmark_purifier", "memory", "--pairs=16", "--size=16",
               f"--out={tmp_path}")
    table = pd.read_csv(tmp_path / "benchmark_purifier_memory.csv")
    assert list(table.pairs) == [16, 64, 16, 64]
    assert list(table["mode"]) == ["streamed", "streamed", "in_memory", "in_memory"]
    assert (table.peak_rss_mib >= table.rss_anon_mib).all() and (table.rss_anon_mib > 0).all()
