"""Batching (tfadv.batching): ``map_batches`` and ``predict_logits``."""

import numpy as np
import pytest

from helpers import trained_digits_model


def test_map_batches_fills_in_place_and_handles_no_images():
    from tfadv.batching import map_batches
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    sizes = []

    def double(part, extra):
        sizes.append(len(part))
        return part * 2 + extra[:, None]

    out = map_batches(double, x, np.arange(5), batch_size=2)
    assert sizes == [2, 2, 1] and out.dtype == np.float32
    np.testing.assert_array_equal(out, x * 2 + np.arange(5)[:, None])
    sums = map_batches(lambda part: part.sum(1, keepdims=True), x, batch_size=3,
                       out_shape=(5, 1), dtype=np.float64)
    assert sums.shape == (5, 1) and sums.dtype == np.float64
    assert map_batches(double, x[:0], np.arange(0), batch_size=2).shape == (0, 2)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        map_batches(double, x, np.arange(5), batch_size=0)


def test_predict_logits_matches_the_model_in_any_batch_size():
    from tfadv.batching import predict_logits
    trained = trained_digits_model()
    x = trained.test.images[:23]
    want = np.asarray(trained.model(x, training=False))
    for batch_size in (1, 5, 500):
        got = predict_logits(trained.model, x, batch_size)
        assert got.shape == (23, 10) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert predict_logits(trained.model, x[:0]).shape == (0, 10)
