"""Paper 003's set of purifiers: one per attack and the versatile one for all six, each
trained by :func:`tfadv.defenses.purifier.train_cached` on its pairs (the versatile one reads
its inputs from the attacks' own sets through :class:`~tfadv.defenses.pairs.Float32Rows`);
and, from a preset of experiments/versatile_defense.py (its fields), the run's images, the
six attacks' settings and the purifiers' batch."""

from __future__ import annotations

import numpy as np

from tfadv.defenses.pairs import Float32Rows

SPECIFIC_PAIRS = ("all", "share")


def train_versatile(attacks, attacked, x_clean: np.ndarray, assign: np.ndarray, *,
                    specific_pairs: str = "all", specific: bool = True,
                    monitor_sets: dict | None = None,
                    monitor_of=None, log: dict | None = None, **settings):
    """Paper 003's purifiers: one per attack and the versatile one, each cached.

    The versatile purifier trains on every clean image, image i attacked by
    ``attacks[assign[i]]`` (paper 3.1.3: each image underwent one attack). An attack's own
    purifier trains on ``specific_pairs``: ``"share"``, the images of its share of that set
    (``assign == k``: the pairs of its attack the paper's training set holds); ``"all"``,
    every clean image attacked by it (as many pairs as the versatile one; more attack runs).
    ``attacked(attack, index)`` gives the images ``x_clean[index]`` attacked by ``attack``.
    ``specific=False`` trains the versatile purifier only (ablations of its settings).
    ``monitor_sets[attack]``: held-out attacked images; ``monitor_of(x)`` makes a
    :func:`train_purifier` monitor from images (the versatile one gets image i of the
    ``(i mod len(attacks))``-th set). ``settings``: :func:`train_cached`'s. Returns
    ``({name: defense}, {name: path}, {name: history})`` with "versatile" last; ``log``
    collects the names trained ("trained") and loaded ("cached").
    """
    from tfadv import cache, defenses
    from tfadv.defenses.purifier import train_cached
    if specific_pairs not in SPECIFIC_PAIRS:
        raise ValueError(f"specific_pairs must be one of {SPECIFIC_PAIRS}, got "
                         f"{specific_pairs!r}")
    assign = np.asarray(assign, np.int64)
    if len(assign) != len(x_clean) or assign.min() < 0 or assign.max() >= len(attacks):
        raise ValueError(f"assign must give each of the {len(x_clean)} clean images one of "
                         f"the {len(attacks)} attacks (0..{len(attacks) - 1})")
    monitor_sets = monitor_sets or {}
    log = log if log is not None else {}
    made, paths, histories = {}, {}, {}

    def one(name, x_adv, x_target, pairs_id, x_watch):
        generator, path, history, trained = train_cached(
            name, x_adv, x_target, pairs_id=pairs_id,
            monitor=None if x_watch is None or monitor_of is None else monitor_of(x_watch),
            **settings)
        log.setdefault("trained" if trained else "cached", []).append(name)
        if trained and history:
            last = history[-1]
            print(f"  purifier {name}: L1 {last['gen_l1']:.4f}, perceptual "
                  f"{last['gen_perc']:.4f}, GAN {last['gen_gan']:.3f} in the last epoch")
        made[name] = defenses.make("purifier", generator=generator, model_id=path.stem)
        paths[name], histories[name] = path, history

    sources = []
    for k, attack in enumerate(attacks):  # float16 shard sets, memory-mapped: nothing copied
        index = np.flatnonzero(assign == k) if specific_pairs == "share" else \
            np.arange(len(x_clean))
        x_adv = Float32Rows([attacked(attack, index)])
        sources.append(x_adv.sources[0])
        if specific:
            x_target = x_clean if specific_pairs == "all" else x_clean[index]
            one(attack, x_adv, x_target, f"{attack}:{cache.digest(x_adv)}",
                monitor_sets.get(attack))
    n_watch = min((len(v) for v in monitor_sets.values()), default=0)
    x_mixed = np.stack([monitor_sets[attacks[i % len(attacks)]][i] for i in range(n_watch)]) \
        if n_watch else None
    # image i as attacked by attacks[assign[i]]
    x_versatile = Float32Rows.shares(sources, assign) if specific_pairs == "share" else \
        Float32Rows(sources, assign)
    one("versatile", x_versatile, x_clean, f"versatile:{cache.digest(x_versatile)}", x_mixed)
    return made, paths, histories


def attack_params(config: dict, jit_compile: bool = False) -> dict:
    """``attacks.make`` parameters of every attack of the run (pixel units); the gradient
    attacks run as native compiled loops, with XLA when ``jit_compile`` (on a GPU or TPU)."""
    eps, step, iters, batch = (config["eps"], config["eps_iter"], config["nb_iter"],
                               config["attack_batch_size"])
    native = dict(backend="native", jit_compile=bool(jit_compile), batch_size=batch)
    return {
        "fgsm": dict(eps=eps, **native),
        "bim": dict(eps=eps, eps_iter=step, nb_iter=iters, **native),
        "pgd": dict(eps=eps, eps_iter=step, nb_iter=iters, seed=config["seed"], **native),
        "mifgsm": dict(eps=eps, eps_iter=step, nb_iter=iters, **native),
        "cw_l2": dict(binary_search_steps=config["cw_binary_search_steps"],
                      max_iterations=config["cw_max_iterations"],
                      learning_rate=config["cw_learning_rate"],
                      initial_const=config["cw_initial_const"],
                      batch_size=config["cw_batch_size"]),
        # ART's AutoAttack, as paper 003 ran it (not the standard set: tfadv/attacks/autoattack.py)
        "autoattack": dict(eps=eps, version="art", apgd_max_iter=config["aa_apgd_max_iter"],
                           nb_random_init=config["aa_nb_random_init"],
                           deepfool_max_iter=config["aa_deepfool_max_iter"],
                           square_max_iter=config["aa_square_max_iter"],
                           square_restarts=config["aa_square_restarts"], seed=config["seed"],
                           batch_size=min(batch, 128)),
        "deepfool": dict(max_iter=config["deepfool_max_iter"],
                         overshoot=config["deepfool_overshoot"], batch_size=batch),
    }


def purifier_batch(config: dict, strategy) -> dict:
    """The purifiers' global batch, learning rate and XLA use under ``strategy`` (run.json
    "purifier_batch"): ``batch_size`` 0 fills each replica with ``batch_per_replica``
    images; ``lr_scaling`` "sqrt" scales the learning rate by sqrt(global batch)."""
    import math
    from tfadv import distribute
    replicas = strategy.num_replicas_in_sync
    batch = config["batch_size"] or config["batch_per_replica"] * replicas
    if config["lr_scaling"] not in ("none", "sqrt"):
        raise ValueError(f"lr_scaling must be 'none' or 'sqrt', got {config['lr_scaling']!r}")
    scale = math.sqrt(batch) if config["lr_scaling"] == "sqrt" else 1.0
    # XLA is for accelerators: on this CPU its kernels are slower than TensorFlow's own
    # (benchmark), and it cannot address the logical devices of a split CPU at all
    on_accelerator = any(kind in d.upper() for d in distribute.describe(strategy)["devices"]
                         for kind in ("GPU", "TPU"))
    return {"global": batch, "per_replica": batch / replicas, "replicas": replicas,
            "learning_rate": config["learning_rate"] * scale,
            "rule": f"lr = {config['learning_rate']:g} x {'sqrt(batch)' if scale != 1 else '1'}",
            "pix2pix": batch == 1 and scale == 1.0,
            "jit_compile": bool(config["jit_compile"]) and on_accelerator}


def load_images(config: dict):
    """(training images, test pool) at ``image_size``: ImageNet sampled per class (paper),
    else the whole dataset."""
    from tfadv import cache, data, imagenet
    if config["classifier"] == "inception_v3":
        size, seed = config["image_size"], config["seed"]
        # uint8 (a quarter of float32's memory), converted a batch at a time where used
        return tuple(imagenet.imagenet_subset(config["data"], split, per_class,
                                              seed=seed + offset, size=size,
                                              data_dir=config["data_dir"], dtype="uint8")
                     for split, per_class, offset in (
                         ("train", config["train_per_class"] + config["val_per_class"], 1),
                         ("test", config["test_pool_per_class"], 2)))
    root = cache.root(config["cache_dir"])  # decoded datasets are cached too
    return tuple(data.resize(data.load(config["data"], split, data_dir=config["data_dir"],
                                       cache_dir=root), config["image_size"])
                 for split in ("train", "test"))
