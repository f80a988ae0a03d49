"""Accuracy under attacks of growing strength (paper 003's Fig 4): a sweep over eps and
iterations, every given defense evaluated on each attacked set; the iteration counts of one
eps come from the iterates of a single run (:func:`sweep`).

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
    """For each ``name: (label, params)`` of ``attacks`` (bim, pgd or mifgsm), eps and number
    of iterations: the accuracy (%) of ``classifier`` behind each ``label: defense`` of
    ``defenses_for(name)`` on (x, y) attacked with ``params`` (step ``min(max_eps_iter, eps)``;
    random defenses draw with ``seed``).

    Each eps runs the attack ONCE, for the largest number of iterations, and scores its
    iterates after every number in ``iterations`` (``tfadv.attacks.iterates``): the shorter
    runs are prefixes of the longest, with the same step and start, so the images are those
    separate runs would give, for a fraction of the gradients (100 steps instead of
    10 + 25 + 50 + 100). ``correct(name, params, steps, defenses, seed)`` gives the
    (images, steps, defenses) booleans (:func:`cached_correct` caches them); by default they
    are computed in memory."""
    correct = correct or (lambda name, p, steps, defenses, s: score_iterates(
        classifier, attack_iterates(name, p, steps, classifier, x, y, 0), y, defenses, s))
    steps = [int(n) for n in iterations]
    rows = []
    for attack, (attack_label, base) in attacks.items():
        for eps in eps_values:
            p = dict(base, eps=eps, eps_iter=min(max_eps_iter, eps), nb_iter=max(steps))
            defenses = defenses_for(attack)
            right = np.asarray(correct(attack, p, steps, defenses, seed), bool)
            for k, nb_iter in enumerate(steps):
                for column, label in enumerate(defenses):
                    rows.append({"attack": attack_label, "eps": eps, "eps_255": eps * 255,
                                 "nb_iter": nb_iter, "eps_iter": p["eps_iter"],
                                 "defense": label,
                                 "accuracy": 100.0 * float(right[:, k, column].mean()),
                                 "images": len(y), "evaluation": "tensor",
                                 "attack_saw_defense": False})
    return pd.DataFrame(rows)


def score(classifier, x_adv, y, defenses: dict, seed: int) -> np.ndarray:
    """(images, defenses) uint8: 1 where ``classifier`` gets the defended image right."""
    return np.stack([predict(classifier, defense(x_adv, seed), batch_size=128) == np.asarray(y)
                     for defense in defenses.values()], axis=1).astype(np.uint8)


def score_iterates(classifier, iterates, y, defenses: dict, seed: int) -> np.ndarray:
    """(images, steps, defenses) uint8 of :func:`score` on each of ``iterates``."""
    return np.stack([score(classifier, x_adv, y, defenses, seed) for x_adv in iterates], axis=1)


def attack_iterates(name, params, steps, model, x, y, shard: int) -> np.ndarray:
    """``tfadv.attacks.iterates(name, steps, **params)`` on one shard (x may be uint8); a
    seeded attack draws seed * 100000 + shard, as :func:`adversarial.run_attack_shard`."""
    from tfadv import attacks
    from tfadv.batching import pixels
    p = dict(params)
    if "seed" in p:
        p["seed"] = int(params["seed"]) * 100_000 + shard
    return attacks.iterates(name, steps, **p)(model, pixels(x), y)


def cached_correct(classifier, model_id: str, x, y, *, cache_dir=None,
                   shard_size: int | None = None, log: dict | None = None):
    """A ``correct`` for :func:`sweep` that caches its booleans per shard under the model's
    adversarial folder (tag ``robust-<attack>``), keyed by the attack's full parameters and
    the defenses' ids (a retrained purifier is a new id): a killed sweep resumes by shard."""
    from tfadv import attacks
    from tfadv.evaluation.adversarial import cached_generation

    def correct(name, params, steps, defenses, seed):
        settings = {"attack": name, "params": attacks.make(name, **params).params,
                    "iterates": list(steps),
                    "defenses": [getattr(d, "id", repr(d)) for d in defenses.values()],
                    "defense_seed": seed, "measure": "correct"}
        return cached_generation(
            f"robust-{name}", settings, x, y,
            lambda xs, ys, shard: score_iterates(
                classifier, attack_iterates(name, params, steps, classifier, xs, ys, shard),
                ys, defenses, seed),
            model_id=model_id, cache_dir=cache_dir, shard_size=shard_size, dtype="uint8",
            log=log)

    return correct
