"""Gray-box and adaptive evaluation of an input defense, chosen from its declared properties.

For a defense (:mod:`tfadv.defenses`), a classifier and Linf PGD settings:

- the **gray-box** row: PGD on the classifier alone (the papers' protocol), then the defense;
- the **adaptive** row: PGD on defense + classifier. ``defense.differentiable`` and not
  ``randomized``: exact gradients through ``keras.Model(defense.model -> classifier)``;
  otherwise BPDA with the identity backward (:func:`tfadv.attacks.bpda.bpda_eot_pgd`),
  averaged over ``eot`` draws when ``defense.randomized`` (one draw otherwise). A
  differentiable random defense is attacked with BPDA + EOT too (an approximation of its
  exact EOT gradient). The identity defense has no adaptive row: its gray-box row is one.

Each attacked row gets the sanity checks that AutoAttack (Croce & Hein 2020) and RobustBench
ask for, reported in its ``sanity`` column ("ok" or what failed) and its ``sanity_*`` numbers,
never hidden: on the first ``sanity_n`` images, half the steps must not give a lower accuracy
than all of them; a large eps (0.5, 10 steps) must bring accuracy to ~0% (<= 10%); gradients
must be finite and not all zero on any image; and on every image the transfer (gray-box)
attack must not beat the white-box one.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfadv.evaluation.adversarial import cached_generation
from tfadv.evaluation.metrics import accuracy_percent

# Half the pixel range in 10 steps of 2.5 eps / steps (Madry et al.'s step rule): any
# classifier that is not masking its gradients falls to ~0% here.
LARGE_EPS = dict(eps=0.5, eps_iter=2.5 * 0.5 / 10, nb_iter=10)
LARGE_EPS_MAX_ACCURACY = 10.0


def attack_through(classifier, defense, pgd: dict, eot: int):
    """``(generate(x, y, shard) -> x_adv, method, eot_samples)`` of the adaptive attack."""
    from tfadv import attacks
    from tfadv.attacks.bpda import bpda_eot_pgd
    if defense.differentiable and not defense.randomized:
        system = classifier if defense.model is None else _system(classifier, defense.model)
        method = ("gradients of the classifier only" if defense.model is None else
                  f"full gradients through {defense.name} + classifier")

        def generate(xs, ys, shard):
            return attacks.make("pgd", **dict(pgd, seed=pgd["seed"] + shard))(system, xs, ys)
        return generate, method, 0
    eot = eot if defense.randomized else 1
    method = "BPDA (identity backward) + EOT" if defense.randomized else "BPDA (identity backward)"

    def generate(xs, ys, shard):
        return bpda_eot_pgd(classifier, defense, xs, ys, eps=pgd["eps"],
                            eps_iter=pgd["eps_iter"], nb_iter=pgd["nb_iter"],
                            eot_samples=eot, seed=pgd["seed"] + shard)
    return generate, method, eot


def _system(classifier, model):
    import keras
    inputs = keras.Input(model.input_shape[1:])
    return keras.Model(inputs, classifier(model(inputs)), name=f"{model.name}_then_classifier")


def evaluate(classifier, classifier_id: str, defense, x, y, *, pgd: dict, gray: np.ndarray,
             eot: int, fresh_seed: int, sanity_n: int = 0, cache_dir=None,
             shard_size: int | None = None, log: dict | None = None) -> list[dict]:
    """The gray-box row and (unless the defense is the identity) the adaptive row, as dicts
    with ``attack_saw_defense``, ``method``, ``eot_samples``, ``accuracy`` (%) and the sanity
    columns. ``gray``: PGD on the classifier alone for (x, y) (cached by the caller);
    ``fresh_seed``: the random defenses' draw when the attacked images are evaluated."""
    system_id = f"{classifier_id}+{defense.id}"
    gray_acc = accuracy_percent(classifier, defense(gray, fresh_seed), y)
    rows = [{"attack_saw_defense": False, "method": "gradients of the classifier only",
             "eot_samples": 0, "accuracy": gray_acc}]
    identity = defense.differentiable and defense.model is None
    if identity:  # the classifier alone is the whole system: the gray-box row is adaptive too
        rows[0].update(_sanity(classifier, classifier_id, defense, x, y, pgd=pgd, eot=eot,
                               x_adv=gray, sanity_n=sanity_n, fresh_seed=fresh_seed,
                               cache_dir=cache_dir, log=log))
        return rows
    generate, method, eot_used = attack_through(classifier, defense, pgd, eot)
    x_adv = cached_generation(f"adaptive-{defense.name}", {
        "system": system_id, "pgd": pgd, "eot": eot_used, "method": method}, x, y, generate,
        model_id=classifier_id, cache_dir=cache_dir, shard_size=shard_size, log=log)
    accuracy = accuracy_percent(classifier, defense(x_adv, fresh_seed), y)
    row = {"attack_saw_defense": True, "method": method, "eot_samples": eot_used,
           "accuracy": accuracy}
    row.update(_sanity(classifier, classifier_id, defense, x, y, pgd=pgd, eot=eot,
                       x_adv=x_adv, sanity_n=sanity_n, fresh_seed=fresh_seed,
                       cache_dir=cache_dir, log=log, gray_acc=gray_acc, white_acc=accuracy))
    rows[0]["sanity"] = "see the adaptive row"
    return rows + [row]


def _sanity(classifier, classifier_id, defense, x, y, *, pgd, eot, x_adv, sanity_n, fresh_seed,
            cache_dir, log, gray_acc=None, white_acc=None) -> dict:
    """The sanity columns of one attacked row (see the module docstring); ``x_adv`` is the
    row's attacked set, ``gray_acc``/``white_acc`` the transfer and white-box accuracies."""
    n = min(int(sanity_n), len(y))
    if n == 0:
        return {"sanity": "not run (sanity_n = 0)"}
    xs, ys = x[:n], y[:n]
    runs = {}
    for check, settings in (("full", pgd),
                            ("half_steps", dict(pgd, nb_iter=max(1, pgd["nb_iter"] // 2))),
                            ("large_eps", dict(pgd, **LARGE_EPS))):
        if check == "full":
            runs[check] = x_adv[:n]
            continue
        generate, method, eot_used = attack_through(classifier, defense, settings, eot)
        runs[check] = cached_generation(
            f"sanity-{check}-{defense.name}", {"system": f"{classifier_id}+{defense.id}",
                                               "pgd": settings, "eot": eot_used,
                                               "method": method},
            xs, ys, generate, model_id=classifier_id, cache_dir=cache_dir, log=log)
    acc = {k: accuracy_percent(classifier, defense(v, fresh_seed), ys) for k, v in runs.items()}
    slack = 100.0 / n  # one image
    zero, nonfinite = _gradient_check(classifier, defense, xs, ys)
    failed = []
    if acc["full"] > acc["half_steps"] + slack:
        failed.append(f"more steps raised accuracy ({acc['half_steps']:.0f}% at "
                      f"{max(1, pgd['nb_iter'] // 2)} steps -> {acc['full']:.0f}%)")
    if acc["large_eps"] > LARGE_EPS_MAX_ACCURACY:
        failed.append(f"eps 0.5 leaves {acc['large_eps']:.0f}%")
    if nonfinite:
        failed.append(f"NaN/Inf gradients on {nonfinite}/{n} images")
    if zero:
        failed.append(f"zero gradients on {zero}/{n} images")
    if gray_acc is not None and gray_acc + 100.0 / len(y) < white_acc:
        failed.append(f"the transfer attack beat the white-box one ({gray_acc:.0f}% < "
                      f"{white_acc:.0f}%)")
    return {"sanity": "ok" if not failed else "FAIL: " + "; ".join(failed),
            "sanity_images": n, "sanity_half_steps_accuracy": acc["half_steps"],
            "sanity_full_steps_accuracy": acc["full"],
            "sanity_large_eps_accuracy": acc["large_eps"], "sanity_zero_gradients": zero}


def _gradient_check(classifier, defense, x, y) -> tuple[int, int]:
    """(images with an all-zero input gradient, images with a non-finite one) of the loss the
    attack follows: through the system when exact, at the defended image for BPDA."""
    import keras
    exact = defense.differentiable and not defense.randomized
    model = classifier if (not exact or defense.model is None) else _system(classifier,
                                                                             defense.model)
    images = x if exact else np.asarray(defense(x, 0), np.float32)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")
    images = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(images)
        loss = loss_fn(tf.constant(y), tf.cast(model(images, training=False), tf.float32))
    grad = tape.gradient(loss, images).numpy().reshape(len(x), -1)
    nonfinite = ~np.isfinite(grad).all(axis=1)
    zero = ~nonfinite & (grad == 0).all(axis=1)
    return int(zero.sum()), int(nonfinite.sum())


def table(classifier, classifier_id: str, defenses: dict, x, y, *, pgd: dict, gray, eot: int,
          fresh_seed: int, sanity_n: int = 0, cache_dir=None, shard_size=None, log=None,
          **columns):
    """:func:`evaluate` for each ``key: (label, defense)`` of ``defenses``, as a DataFrame with
    ``columns`` (e.g. eps, images) in every row."""
    import pandas as pd
    rows = []
    for key, (label, defense) in defenses.items():
        for r in evaluate(classifier, classifier_id, defense, x, y, pgd=pgd, gray=gray, eot=eot,
                          fresh_seed=fresh_seed, sanity_n=sanity_n, cache_dir=cache_dir,
                          shard_size=shard_size, log=log):
            rows.append({"defense": label, "defense_key": key, **columns,
                         "attack_saw_defense": r["attack_saw_defense"], "attack": (
                             "PGD through defense + classifier (adaptive)"
                             if r["attack_saw_defense"] else
                             "PGD on the classifier (paper's gray-box)"), **r})
        print(f"  adaptive {key}: " + " -> ".join(
            f"{r['accuracy']:.1f}%" for r in rows if r["defense_key"] == key), flush=True)
    return pd.DataFrame(rows)
