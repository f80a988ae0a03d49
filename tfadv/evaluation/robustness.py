"""Accuracy under attacks of growing strength (paper 003's Fig 4): a sweep over eps and
iterations, each attacked set cached, every given defense evaluated on it."""

from __future__ import annotations

import pandas as pd

from tfadv.evaluation.metrics import accuracy_percent


def sweep(classifier, attacked, x, y, *, attacks: dict, eps_values, iterations,
          max_eps_iter: float, defenses_for, seed: int = 0) -> pd.DataFrame:
    """For each ``name: (label, params)`` of ``attacks``, eps and number of iterations: the
    attacked set ``attacked(tag, name, params, x, y)`` (cached by the caller) and the accuracy
    (%) of ``classifier`` behind each ``label: defense`` of ``defenses_for(name)``. The step is
    ``min(max_eps_iter, eps)``; random defenses draw with ``seed``."""
    rows = []
    for attack, (attack_label, base) in attacks.items():
        for eps in eps_values:
            for nb_iter in iterations:
                p = dict(base, eps=eps, eps_iter=min(max_eps_iter, eps), nb_iter=int(nb_iter))
                x_adv = attacked("robust", attack, p, x, y)
                for label, defense in defenses_for(attack).items():
                    rows.append({"attack": attack_label, "eps": eps, "eps_255": eps * 255,
                                 "nb_iter": int(nb_iter), "eps_iter": p["eps_iter"],
                                 "defense": label,
                                 "accuracy": accuracy_percent(classifier, defense(x_adv, seed),
                                                              y),
                                 "images": len(y), "evaluation": "tensor",
                                 "attack_saw_defense": False})
    return pd.DataFrame(rows)
