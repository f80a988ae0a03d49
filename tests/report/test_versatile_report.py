"""Paper 003's tables (tfadv.report.versatile.build_tables, tfadv.report.tables): Tables 1-2
arithmetic (the average row, the matching attack-specific column) and their markdown."""

from __future__ import annotations

import numpy as np
import pandas as pd
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


def test_evaluate_rows_in_chunks_gives_the_whole_sets_numbers():
    """Defended 7 images at a time (the paper preset's host-RAM bound) or all at once: the
    same accuracies, quality rows and Fig 5 examples for deterministic defenses; uint8 test
    images and lazily read attacked sets are read as float32 pixels."""
    import pandas as pd
    from helpers import trained_digits_model
    from tfadv import cache, defenses, data
    trained = trained_digits_model()
    test = data.ImageSet(np.round(trained.test.images[:20] * 255).astype(np.uint8),
                         trained.test.labels[:20], trained.test.class_names)
    x = test.images.astype(np.float32) / 255
    from tfadv.models import pix2pix
    import keras
    keras.utils.set_random_seed(0)
    generator = pix2pix.unet_generator((8, 8, 1), base_filters=4)
    defended = {"none": defenses.make("none"),
                "versatile": defenses.make("purifier", generator=generator)}
    noisy = np.clip(x + 0.2 * (np.arange(x.size).reshape(x.shape) % 2) - 0.1, 0, 1)

    def rows():
        return {"clean": lambda: test.images,
                "fgsm": lambda: cache.cached_shards(
                    __import__("tempfile").mkdtemp(), 20, 6, lambda a, b, i: noisy[a:b],
                    dtype="float16", lazy=True)}

    results = [rv.evaluate_rows(trained.model, defended, test, rows(), evaluations=("tensor",),
                                n_quality=10, seed_of=lambda r, e: r, chunk=chunk)
               for chunk in (0, 7)]
    (acc0, quality0, examples0), (acc7, quality7, examples7) = results
    assert acc0 == acc7 and len(acc0) == 4
    pd.testing.assert_frame_equal(pd.DataFrame(quality0), pd.DataFrame(quality7))
    assert pd.DataFrame(quality0).images.eq(10).all()
    assert len(examples0) == len(examples7) == 1
    for key in ("clean", "adversarial", "purified"):
        np.testing.assert_array_equal(examples0[0][key], examples7[0][key])


def test_loss_terms_weigh_each_term_per_phase():
    training = pd.DataFrame({
        "purifier": ["v"] * 4, "epoch": [1, 2, 3, 4], "lambda_pix": [100.0] * 4,
        "lambda_perc": [100.0, 100.0, 50.0, 1.0], "gen_gan": [1.0, 3.0, 2.0, 2.0],
        "gen_l1": [0.02, 0.04, 0.03, 0.01], "gen_perc": [0.5, 0.3, 0.2, 0.4]})
    terms = rv.loss_terms(training)
    assert terms.lambda_perc.tolist() == [100.0, 50.0, 1.0]
    assert terms.epochs.tolist() == [2, 1, 1] and terms.gan.tolist() == [2.0, 2.0, 2.0]
    assert terms.lambda_pix_x_l1.tolist() == pytest.approx([3.0, 3.0, 1.0])
    assert terms.lambda_perc_x_perc.tolist() == pytest.approx([40.0, 10.0, 0.4])
    assert rv.loss_terms(training.iloc[:0]).empty
