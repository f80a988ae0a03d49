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


# --------------------------------------------------------------------------- batching

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


# --------------------------------------------------------------------------- cached adversarial sets

def test_adversarial_set_is_cached_by_attack_params_model_and_images(tmp_path):
    from tfadv.evaluation.adversarial import adversarial_set
    trained = trained_digits_model()
    x, y = trained.test.images[:12], trained.test.labels[:12]
    params = dict(eps=0.2, eps_iter=0.05, nb_iter=3, seed=1)
    log = {}
    first = adversarial_set("pgd", params, trained.model, "digits-model", x, y, tag="t",
                            cache_dir=tmp_path, shard_size=5, log=log, verbose=False)
    assert first.shape == x.shape and len(log["generated"]) == 3 and not log["reused"]
    assert np.abs(first - x).max() <= 0.2 + 1e-6
    folders = list((tmp_path / "adversarial" / "digits-model").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("t-pgd-")
    # Shard i draws seed * 100000 + i: the first shard is PGD with seed 100000.
    np.testing.assert_allclose(
        first[:5], attacks.make("pgd", **dict(params, seed=100_000))(trained.model, x[:5], y[:5]),
        atol=1e-6)
    again = {}
    second = adversarial_set("pgd", params, trained.model, "digits-model", x, y, tag="t",
                             cache_dir=tmp_path, shard_size=5, log=again, verbose=False)
    np.testing.assert_array_equal(second, first)
    assert not again["generated"] and len(again["reused"]) == 3
    # A changed parameter, model id or image set is another entry.
    for changed in (dict(params=dict(params, nb_iter=4)), dict(model_id="other-model"),
                    dict(x=x[::-1].copy())):
        kwargs = dict(dict(params=params, model_id="digits-model", x=x), **changed)
        log = {}
        adversarial_set("pgd", kwargs["params"], trained.model, kwargs["model_id"],
                        kwargs["x"], y, tag="t", cache_dir=tmp_path, shard_size=5, log=log,
                        verbose=False)
        assert len(log["generated"]) == 3, changed


# --------------------------------------------------------------------------- robustness sweep

def test_robustness_sweep_rows_and_accuracies():
    from tfadv import defenses
    from tfadv.evaluation import accuracy_percent
    from tfadv.evaluation.robustness import sweep
    trained = trained_digits_model()
    x, y = trained.test.images[:16], trained.test.labels[:16]
    calls = []

    def attacked(tag, name, params, xs, ys):
        calls.append((tag, name, params["eps"], params["eps_iter"], params["nb_iter"]))
        return attacks.make(name, **params)(trained.model, xs, ys)

    frame = sweep(trained.model, attacked, x, y,
                  attacks={"pgd": ("PGD", dict(eps=0.0, eps_iter=0.0, seed=0))},
                  eps_values=[0.05, 0.2], iterations=[1, 3], max_eps_iter=0.1,
                  defenses_for=lambda attack: {"No defense": defenses.make("none")})
    assert calls == [("robust", "pgd", 0.05, 0.05, 1), ("robust", "pgd", 0.05, 0.05, 3),
                     ("robust", "pgd", 0.2, 0.1, 1), ("robust", "pgd", 0.2, 0.1, 3)]
    assert len(frame) == 4 and set(frame.attack) == {"PGD"}
    assert (frame.images == 16).all() and not frame.attack_saw_defense.any()
    np.testing.assert_allclose(frame.eps_255, frame.eps * 255)
    strongest = attacks.make("pgd", eps=0.2, eps_iter=0.1, nb_iter=3, seed=0)(
        trained.model, x, y)
    assert frame.accuracy.iloc[-1] == pytest.approx(accuracy_percent(trained.model,
                                                                     strongest, y))
    assert frame.accuracy.iloc[-1] <= frame.accuracy.iloc[0]
