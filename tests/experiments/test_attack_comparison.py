"""Paper 002 (experiments/attack_comparison.py): the survey's C&W table from a real (tiny)
smoke run on digits, and its best / average / worst cases from per-example rows.

The run uses a temporary cache root (``--cache_dir``), never the checkout's data/.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers import run_module


def test_attack_comparison_smoke(tmp_path, cache):
    """Every row and case of the survey's C&W table, from a real (tiny) run on digits."""
    run_module("experiments.attack_comparison", "--preset=smoke", f"--out={tmp_path}",
               cache=cache)
    table = pd.read_csv(tmp_path / "table_attack_comparison.csv")
    from experiments.attack_comparison import CASES, ROWS
    assert list(table.attack.unique()) == list(ROWS)
    assert set(table.case) == set(CASES) and len(table) == len(ROWS) * len(CASES)
    targeted = table[table.attack != "DeepFool"]
    assert (targeted.images == 4).all() and targeted.success_rate.between(0, 1).all()
    # DeepFool is untargeted: only its best case is filled.
    deepfool = table[table.attack == "DeepFool"].set_index("case")
    assert deepfool.loc["best", "images"] == 4 and deepfool.loc["worst", "images"] == 0
    per_example = pd.read_csv(tmp_path / "per_example.csv")
    assert len(per_example[per_example.row == "C&W L2"]) == 4 * 9  # every other class
    assert json.loads((tmp_path / "run.json").read_text())["config"]["preset"] == "smoke"
    assert not cache.unused.exists()


def test_attack_comparison_cases_from_per_example_rows():
    """Best = easiest target (any success), worst = hardest (all must succeed)."""
    from experiments.attack_comparison import summarise
    per_example = pd.DataFrame({
        "row": "C&W L2", "image": [0, 0, 0, 1, 1, 1], "target": [1, 2, 3, 0, 2, 3],
        "success": [True, True, False, True, True, True],
        "distortion": [0.5, 0.2, 9.0, 0.4, 0.3, 0.6]})
    table = summarise(per_example, np.array([1, 2])).set_index("case")
    assert table.loc["best", "mean_distortion"] == pytest.approx((0.2 + 0.3) / 2)
    assert table.loc["best", "success_rate"] == 1.0
    assert table.loc["average", "mean_distortion"] == pytest.approx((0.5 + 0.3) / 2)
    assert table.loc["worst", "success_rate"] == 0.5          # image 0 fails target 3
    assert table.loc["worst", "mean_distortion"] == pytest.approx(0.6)
    assert table.loc["best", "paper_cifar_mean"] == 0.17
