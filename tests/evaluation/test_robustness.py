"""The robustness sweep (tfadv.evaluation.robustness): ``sweep`` rows over eps and iteration
counts, one run per eps whose iterates give every iteration count, and their accuracies."""

import numpy as np
import pytest

from helpers import trained_digits_model
from tfadv import attacks


def test_robustness_sweep_rows_and_accuracies():
    from tfadv import defenses
    from tfadv.evaluation import accuracy_percent
    from tfadv.evaluation.robustness import sweep
    trained = trained_digits_model()
    x, y = trained.test.images[:16], trained.test.labels[:16]
    calls = []

    def correct(name, params, steps, defenses, seed):
        calls.append((name, params["eps"], params["eps_iter"], params["nb_iter"], steps))
        iterates = attacks.iterates(name, steps, **params)(trained.model, x, y)
        return np.stack([np.stack([trained.model.predict(d(x_adv, seed), verbose=0).argmax(-1)
                                   == y for d in defenses.values()], 1)
                         for x_adv in iterates], 1)

    frame = sweep(trained.model, x, y,
                  attacks={"pgd": ("PGD", dict(eps=0.0, eps_iter=0.0, seed=0))},
                  eps_values=[0.05, 0.2], iterations=[1, 3], max_eps_iter=0.1,
                  defenses_for=lambda attack: {"No defense": defenses.make("none")},
                  correct=correct)
    # one run per eps, of the largest number of iterations
    assert calls == [("pgd", 0.05, 0.05, 3, [1, 3]), ("pgd", 0.2, 0.1, 3, [1, 3])]
    assert len(frame) == 4 and set(frame.attack) == {"PGD"}
    assert (frame.images == 16).all() and not frame.attack_saw_defense.any()
    np.testing.assert_allclose(frame.eps_255, frame.eps * 255)
    strongest = attacks.make("pgd", eps=0.2, eps_iter=0.1, nb_iter=3, seed=0)(
        trained.model, x, y)
    assert frame.accuracy.iloc[-1] == pytest.approx(accuracy_percent(trained.model,
                                                                     strongest, y))
    assert frame.accuracy.iloc[-1] <= frame.accuracy.iloc[0]
    one_step = attacks.make("pgd", eps=0.2, eps_iter=0.1, nb_iter=1, seed=0)(trained.model, x, y)
    assert frame.accuracy.iloc[2] == pytest.approx(accuracy_percent(trained.model, one_step, y))


def test_cached_correct_keeps_one_byte_per_image_and_defense_and_matches_memory(tmp_path):
    """The cached sweep stores (images, steps, defenses) uint8 flags per shard, not images,
    and gives the in-memory sweep's accuracies; a second call reads the cache."""
    from tfadv import defenses
    from tfadv.evaluation.robustness import cached_correct, sweep
    trained = trained_digits_model()
    x, y = trained.test.images[:24], trained.test.labels[:24]
    setup = dict(attacks={"pgd": ("PGD", dict(eps=0.0, eps_iter=0.0, seed=3))},
                 eps_values=[0.2], iterations=[1, 2], max_eps_iter=0.1,
                 defenses_for=lambda attack: {"No defense": defenses.make("none"),
                                              "Resize": defenses.make("random_resize_pad",
                                                                      resize_back=True)})
    log = {}
    correct = cached_correct(trained.model, "digits-toy", x, y, cache_dir=tmp_path,
                             shard_size=10, log=log)
    cached = sweep(trained.model, x, y, correct=correct, **setup)
    shards = sorted(tmp_path.rglob("shard*"))
    assert len(shards) == 3 and len(log["generated"]) == 3
    stored = np.concatenate([np.load(p) if p.suffix == ".npy" else np.load(p)["x_adv"]
                             for p in shards])
    assert stored.shape == (24, 2, 2) and stored.dtype == np.uint8
    log_again = {}
    again = sweep(trained.model, x, y, correct=cached_correct(
        trained.model, "digits-toy", x, y, cache_dir=tmp_path, shard_size=10, log=log_again),
        **setup)
    assert len(log_again["reused"]) == 3 and not log_again["generated"]
    np.testing.assert_array_equal(cached.accuracy, again.accuracy)
    # in one shard (the same attack seed), the in-memory sweep's accuracy
    one = sweep(trained.model, x, y, correct=cached_correct(
        trained.model, "digits-toy", x, y, cache_dir=tmp_path / "one", shard_size=24), **setup)
    memory = sweep(trained.model, x, y, **setup)
    np.testing.assert_array_equal(one.accuracy, memory.accuracy)
    assert 0 <= cached.accuracy.min() and cached.accuracy.max() <= 100
