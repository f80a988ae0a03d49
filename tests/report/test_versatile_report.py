"""Paper 003's tables (tfadv.report.versatile.build_tables, tfadv.report.tables): Tables 1-2
arithmetic (the average row, the matching attack-specific column) and their markdown."""

from __future__ import annotations

import numpy as np
import pytest

from experiments import versatile_defense as vd
from tfadv.report import tables
from tfadv.report import versatile as rv


def test_tables_average_and_matching_specific_column():
    rng = np.random.default_rng(0)
    keys = ["none", "versatile", "random_resize", "pd_wd", "sr_wd"] + [
        f"specific_{a}" for a in vd.TRAIN_ATTACKS]
    acc = {("tensor", row, key): float(rng.uniform(0, 100)) for row in vd.ROWS for key in keys}
    table1, table2 = rv.build_tables(acc, 10, ("tensor",))

    def cell(table, row, key):
        hit = table[(table.attack == vd.LABELS[row]) & (table.defense_key == key)]
        assert len(hit) == 1
        return hit.accuracy.iloc[0]

    assert cell(table1, "average", "specific_bim") == pytest.approx(
        np.mean([acc[("tensor", r, "specific_bim")] for r in vd.ROWS]))
    assert cell(table2, "pgd", "specific") == acc[("tensor", "pgd", "specific_pgd")]
    for row in ("clean", "deepfool"):  # no matching purifier: the mean of the six, as the paper
        assert cell(table2, row, "specific") == pytest.approx(
            np.mean([acc[("tensor", row, f"specific_{a}")] for a in vd.TRAIN_ATTACKS]))
    md = tables.markdown_by_evaluation(table2, "T2", ["a note"], rv.HOW)
    assert "| PGD" in md and "(86.8)" in md and "a note" in md and "**tensor**" in md
