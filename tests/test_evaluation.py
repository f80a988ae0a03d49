"""Metrics: norms, success, accuracy and speed of an attack run; confusion matrices."""

import numpy as np
import pytest

from helpers import trained_digits_model
from tfadv import attacks
from tfadv.evaluation import attack_metrics, confusion_matrix, perturbation_norms, predict, \
    run_attack


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
