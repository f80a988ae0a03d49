"""Paper 003's set of purifiers: one per attack and the versatile one for all six, each
trained by :func:`tfadv.defenses.purifier.train_cached` on its pairs (the versatile one reads
its inputs from the attacks' own sets through :class:`~tfadv.defenses.pairs.Float32Rows`)."""

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
