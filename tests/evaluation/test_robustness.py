"""The robustness sweep (tfadv.evaluation.robustness): ``sweep`` rows over eps and iteration
counts, and their accuracies."""

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
