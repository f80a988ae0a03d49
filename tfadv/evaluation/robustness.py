"""Accuracy under attacks of growing strength (paper 003's Fig 4): a sweep over eps and
iterations, every given defense evaluated on each attacked set.

At the paper's scale the sweep's attacked sets would be the largest cache of the suite (60
sets of 5,000 images at 256x256: 118 GB in float16), yet Fig 4 needs only whether each
defended image is classified right. :func:`cached_correct` keeps just that, one byte per
image and defense, in resumable shards: the attacked images live only while their shard is
scored.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tfadv.evaluation.metrics import predict


def sweep(classifier, x, y, *, attacks: dict, eps_values, iterations, max_eps_iter: float,
          defenses_for, seed: int = 0, correct=None) -> pd.DataFrame:
    """For each ``name: (label, params)`` of ``attacks``, eps and number of iterations: the
    accuracy (%) of ``classifier`` behind each ``label: defense`` of ``defenses_for(name)`` on
    (x, y) attacked with ``params`` (step ``min(max_eps_iter, eps)``; random defenses draw
    with ``seed``). ``correct(name, params, defenses, seed)`` gives the (images, defenses)
    booleans (:func:`cached_correct` caches them); by default they are computed in memory."""
    correct = correct or (lambda name, p, defenses, s: score(
        classifier, _attack(name, p, classifier, x, y, 0), y, defenses, s))
    rows = []
    for attack, (attack_label, base) in attacks.items():
        for eps in eps_values:
            for nb_iter in iterations:
                p = dict(base, eps=eps, eps_iter=min(max_eps_iter, eps), nb_iter=int(nb_iter))
                defenses = defenses_for(attack)
                right = np.asarray(correct(attack, p, defenses, seed), bool)
                for column, label in enumerate(defenses):
                    rows.append({"attack": attack_label, "eps": eps, "eps_255": eps * 255,
                                 "nb_iter": int(nb_iter), "eps_iter": p["eps_iter"],
                                 "defense": label,
                                 "accuracy": 100.0 * float(right[:, column].mean()),
                                 "images": len(y), "evaluation": "tensor",
                                 "attack_saw_defense": False})
    return pd.DataFrame(rows)


def score(classifier, x_adv, y, defenses: dict, seed: int) -> np.ndarray:
    """(images, defenses) uint8: 1 where ``classifier`` gets the defended image right."""
    return np.stack([predict(classifier, defense(x_adv, seed), batch_size=128) == np.asarray(y)
                     for defense in defenses.values()], axis=1).astype(np.uint8)


def _attack(name, params, model, x, y, shard):
    from tfadv.evaluation.adversarial import run_attack_shard
    return run_attack_shard(name, params, model, x, y, shard)


def cached_correct(classifier, model_id: str, x, y, *, cache_dir=None,
                   shard_size: int | None = None, log: dict | None = None):
    """A ``correct`` for :func:`sweep` that caches its booleans per shard under the model's
    adversarial folder (tag ``robust-<attack>``), keyed by the attack's full parameters and
    the defenses' ids (a retrained purifier is a new id): a killed sweep resumes by shard."""
    from tfadv import attacks
    from tfadv.evaluation.adversarial import cached_generation

    def correct(name, params, defenses, seed):
        settings = {"attack": name, "params": attacks.make(name, **params).params,
                    "defenses": [getattr(d, "id", repr(d)) for d in defenses.values()],
                    "defense_seed": seed, "measure": "correct"}
        return cached_generation(
            f"robust-{name}", settings, x, y,
            lambda xs, ys, shard: score(classifier,
                                        _attack(name, params, classifier, xs, ys, shard),
                                        ys, defenses, seed),
            model_id=model_id, cache_dir=cache_dir, shard_size=shard_size, dtype="uint8",
            log=log)

    return correct
