"""Metrics (tfadv.evaluation.metrics): norms, success, accuracy and speed of an attack run;
confusion matrices; image quality (MAE, PSNR, SSIM) against scikit-image."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from helpers import noisy, smooth_images, trained_digits_model
from tfadv import attacks
from tfadv.evaluation import attack_metrics, confusion_matrix, image_quality, \
    image_quality_summary, perturbation_norms, predict, run_attack, ssim_win_size


def test_perturbation_norms_by_hand():
    x = np.zeros((2, 2, 2, 1), np.float32)
    x_adv = x.copy()
    x_adv[0, 0, 0, 0], x_adv[0, 1, 1, 0] = 0.3, -0.4
    norms = perturbation_norms(x, x_adv)
    np.testing.assert_array_equal(norms["l0"], [2, 0])
    np.testing.assert_allclose(norms["l2"], [0.5, 0.0], atol=1e-7)
    np.testing.assert_allclose(norms["linf"], [0.4, 0.0], atol=1e-7)


def test_attack_metrics_on_a_real_attack():
    trained = trained_digits_model()
    x, y = trained.test.images[:60], trained.test.labels[:60]
    x_adv, metrics = run_attack(attacks.make("fgsm", eps=0.1), trained.model, x, y)
    pred_adv = predict(trained.model, x_adv)
    assert metrics["images"] == 60
    assert metrics["accuracy"] == pytest.approx(np.mean(predict(trained.model, x) == y))
    assert metrics["adv_accuracy"] == pytest.approx(np.mean(pred_adv == y))
    assert metrics["success_rate"] == pytest.approx(np.mean(pred_adv != y))
    assert metrics["linf_max"] == pytest.approx(0.1, abs=1e-6)
    assert 0 < metrics["l2_median"] <= metrics["l2_max"]
    assert metrics["seconds"] > 0 and metrics["images_per_s"] > 0


def test_targeted_success_counts_the_target_class():
    trained = trained_digits_model()
    x, y = trained.test.images[:40], trained.test.labels[:40]
    x_adv, metrics = run_attack(attacks.make("bim", eps=0.3, eps_iter=0.05, nb_iter=10),
                                trained.model, x, y, "least_likely")
    logits_order = np.argsort(np.asarray(trained.model(x)), axis=1)
    least_likely = logits_order[:, 0]
    assert metrics["success_rate"] == pytest.approx(
        np.mean(predict(trained.model, x_adv) == least_likely))
    direct = attack_metrics(trained.model, x, y, x_adv, target=least_likely)
    assert direct["success_rate"] == metrics["success_rate"]


def test_confusion_matrix_counts():
    counts = confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], 3)
    np.testing.assert_array_equal(counts, [[1, 1, 0], [0, 1, 0], [0, 0, 1]])


# --------------------------------------------------------------------------- image quality

@pytest.mark.parametrize("shape", [(3, 32, 32, 3), (3, 8, 8, 1), (2, 5, 6, 3)])
def test_image_quality_matches_skimage(shape):
    clean = np.random.default_rng(0).random(shape, dtype=np.float32)
    x = noisy(clean, 0.05)
    quality = image_quality(clean, x)
    assert list(quality.columns) == ["mae", "psnr", "ssim"] and len(quality) == shape[0]
    win = 7 if min(shape[1:3]) >= 7 else 5
    assert ssim_win_size(*shape[1:3]) == win
    for i in range(shape[0]):
        ref, img = clean[i].astype(np.float64), x[i].astype(np.float64)
        assert abs(quality.mae[i] - np.mean(np.abs(img - ref))) < 1e-6
        assert abs(quality.psnr[i] - peak_signal_noise_ratio(ref, img, data_range=1)) < 1e-6
        ssim = structural_similarity(ref, img, channel_axis=-1, data_range=1, win_size=win)
        assert abs(quality.ssim[i] - ssim) < 1e-6
    summary = image_quality_summary(quality)
    assert summary["identical"] == 0 and summary["images"] == shape[0]
    assert abs(summary["psnr_mean"] - quality.psnr.mean()) < 1e-9


def test_image_quality_identical_images_and_errors():
    clean = smooth_images(3)
    x = clean.copy()
    x[1] = noisy(clean[1:2])[0]
    quality = image_quality(clean, x)
    assert quality.psnr[0] == np.inf and quality.mae[0] == 0 and quality.ssim[0] == 1
    summary = image_quality_summary(quality)
    assert summary["identical"] == 2 and summary["psnr_mean"] == quality.psnr[1]
    assert image_quality_summary(image_quality(clean, clean))["psnr_mean"] == np.inf
    with pytest.raises(ValueError, match="same shape"):
        image_quality(clean, clean[:2])
    with pytest.raises(ValueError, match="NaN or Inf"):
        image_quality(clean, np.full_like(clean, np.nan))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        image_quality(clean * 2, clean)
    with pytest.raises(ValueError, match="rank 4"):
        image_quality(clean[0], clean[0])
    with pytest.raises(ValueError, match="at least 3x3"):
        image_quality(clean[:, :2, :2], clean[:, :2, :2])
