"""Paper 003's diagnostics (tfadv.evaluation.purification): the noise rows, the leftover
measures and the table on toy models, with purifiers whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import toy_pairs
from tfadv.evaluation import purification
from tfadv.models.resnet import tiny_cnn


def test_sign_noise_moves_every_pixel_by_eps_inside_the_box():
    x = toy_pairs(5, 8, seed=1)[1]
    noisy = purification.sign_noise(x, 0.1, seed=3)
    inside = (x >= 0.1) & (x <= 0.9)
    np.testing.assert_allclose(np.abs(noisy - x)[inside], 0.1, atol=1e-6)
    assert noisy.min() >= 0 and noisy.max() <= 1 and noisy.dtype == np.float32
    np.testing.assert_array_equal(noisy, purification.sign_noise(x, 0.1, seed=3))
    assert 0.4 < np.mean(noisy[inside] > x[inside]) < 0.6  # random signs


def test_leftover_of_known_purifiers():
    x = toy_pairs(4, 8, seed=2)[1]
    x_in = purification.sign_noise(x, 0.05, seed=0)
    assert purification.leftover(x, x_in, x_in) == pytest.approx((1.0, 1.0))  # kept all
    ratio, cosine = purification.leftover(x, x_in, x + 0.5 * (x_in - x))   # removed half
    assert ratio == pytest.approx(0.5) and cosine == pytest.approx(1.0)
    assert purification.leftover(x, x_in, x)[0] == 0.0                      # removed all
    ratio, cosine = purification.leftover(x, x_in, x - (x_in - x))          # turned it round
    assert ratio == pytest.approx(1.0) and cosine == pytest.approx(-1.0)
    assert all(np.isnan(purification.leftover(x, x, x)))                   # nothing to remove


def test_diagnostics_table_with_an_identity_and_a_perfect_purifier():
    """Identity purifier: purified accuracy equals the input's, leftover ratio and cosine 1;
    a purifier that returns the clean images: clean accuracy on every row, ratio 0."""
    x, y = toy_pairs(6, 8, seed=4)[1], np.arange(6) % 3
    model = tiny_cnn(3, (8, 8, 3))
    noisy = purification.sign_noise(x, 0.2, seed=1)
    inputs = {"clean": x, "noise": noisy, "lazy": lambda: noisy}
    table = purification.diagnostics(model, model, lambda v: v, x, y, inputs,
                                     purify_dropout=lambda v: v)
    assert list(table.input) == ["clean", "noise", "lazy"] and (table.images == 6).all()
    np.testing.assert_allclose(table.acc, table.acc_purified)
    np.testing.assert_allclose(table.second_acc, table.acc)
    np.testing.assert_allclose(table.acc_purified_dropout, table.acc)
    assert np.isnan(table.leftover_ratio[0])
    assert table.leftover_ratio[1:].tolist() == pytest.approx([1, 1])
    perfect = purification.diagnostics(model, None, lambda v: x, x, y, inputs)
    assert "second_acc" not in perfect and "acc_purified_dropout" not in perfect
    assert (perfect.acc_purified == perfect.acc[0]).all()
    assert perfect.leftover_ratio[1:].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="paired"):
        purification.diagnostics(model, None, lambda v: v, x, y, {"short": x[:3]})
