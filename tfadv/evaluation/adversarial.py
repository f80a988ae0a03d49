"""The one cached runner of attacks: adversarial images stored in resumable shards."""

from __future__ import annotations

import os

import numpy as np

from tfadv import cache


def cached_generation(tag: str, settings: dict, x: np.ndarray, y: np.ndarray, generate, *,
                      model_id: str, cache_dir: str | os.PathLike | None = None,
                      shard_size: int | None = None, dtype: str = "float32",
                      log: dict | None = None, lazy: bool = False):
    """``generate(x_part, y_part, shard_index)`` over shards of (x, y), each cached under
    ``<cache root>/adversarial/<model_id>/<tag>-<key>/`` (see :func:`tfadv.cache.cached_shards`).
    Returns a float32 array, or with ``lazy`` a :class:`tfadv.cache.Shards` read on demand
    (x may be one too).

    The key covers ``settings`` (all that decides the result besides the images), digests of
    x and y, the shard size, the storage dtype and the code version: a changed attack default,
    model or image set is never served a stale set. ``shard_size`` None: one shard.
    """
    shard_size = shard_size or max(1, len(y))
    key = cache.key("adversarial", {"settings": settings, "model": model_id,
                                    "x": cache.digest(x), "y": cache.digest(y),
                                    "dtype": dtype, "shard_size": shard_size})
    folder = cache.root(cache_dir) / "adversarial" / model_id / f"{tag}-{key}"
    if not (folder / "meta.json").exists():
        cache.write_json(folder / "meta.json", {"settings": settings, "model": model_id,
                                                "images": len(y)})
    return cache.cached_shards(
        folder, len(y), shard_size,
        lambda start, stop, shard: generate(x[start:stop], y[start:stop], shard),
        dtype=dtype, log=log, lazy=lazy)


def adversarial_set(attack: str, params: dict, model, model_id: str, x, y, *, tag: str = "",
                    cache_dir=None, shard_size: int | None = None, dtype: str = "float32",
                    log: dict | None = None, verbose: bool = True, lazy: bool = False):
    """``attacks.make(attack, **params)`` run on (x, y) against ``model``, cached; a float32
    array, or with ``lazy`` a :class:`tfadv.cache.Shards` (see :func:`cached_generation`).

    An attack with a ``seed`` draws seed * 100000 + shard index in each shard, so shards are
    independent and a resumed run gives the same images. ``model_id`` must name the model's
    weights (a file stem): it is what tells two models apart in the cache.
    """
    from tfadv import attacks
    full = attacks.make(attack, **params).params  # defaults included: a changed one re-runs
    label = f"{tag} {attack}".strip()

    def generate(xs, ys, shard):
        if verbose:
            print(f"  {label}: images {shard * (shard_size or len(y))}-"
                  f"{shard * (shard_size or len(y)) + len(ys)} of {len(y)}", flush=True)
        return run_attack_shard(attack, params, model, xs, ys, shard)

    return cached_generation(f"{tag}-{attack}" if tag else attack,
                             {"attack": attack, "params": full}, x, y, generate,
                             model_id=model_id, cache_dir=cache_dir, shard_size=shard_size,
                             dtype=dtype, log=log, lazy=lazy)


def run_attack_shard(attack: str, params: dict, model, x, y, shard: int) -> np.ndarray:
    """``attacks.make(attack, **params)`` on one shard (x may be uint8: converted here); an
    attack with a ``seed`` draws seed * 100000 + shard, so shards are independent."""
    from tfadv import attacks
    from tfadv.batching import pixels
    p = dict(params)
    if "seed" in p:
        p["seed"] = int(params["seed"]) * 100_000 + shard
    return attacks.make(attack, **p)(model, pixels(x), y)
