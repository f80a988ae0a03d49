"""The one cache of the suite: where artifacts live, how they are keyed and written.

Root: ``cache_dir`` when given (``--cache_dir``), else ``$TFADV_CACHE``, else the checkout's
``data/`` (git-ignored). Under it: ``datasets/`` (decoded images), ``models/`` (classifiers,
purifiers, SR networks, checkpoints) and ``adversarial/`` (adversarial sets in shards).

Every key is :func:`key` of the settings that decide the artifact plus the code version of its
kind (:data:`VERSIONS`): bump the version when a fix changes what the same settings produce,
and the old artifacts are no longer found (they are never loaded under a changed meaning).
Every file is written atomically: a killed job leaves the old file or none, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

ENV = "TFADV_CACHE"
DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "data"

# Code versions, one per kind of artifact, part of every key of that kind.
# dataset 2, classifier 2, adversarial 2, finetuned 2, sr 2: keys reorganised with the one
# cache (older files are not reused). purifier 3: 2 was the fresh initializer per layer.
VERSIONS = {"dataset": 2, "classifier": 2, "adversarial": 2, "finetuned": 2, "purifier": 3,
            "sr": 2}


def root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache root: ``cache_dir``, else ``$TFADV_CACHE``, else ``data/`` of the checkout."""
    chosen = cache_dir or os.environ.get(ENV) or DEFAULT_ROOT
    if "://" in str(chosen):
        raise ValueError(f"cache folder {chosen} is a URL; the cache must be a local folder "
                         "(on Colab, mount Drive and pass its /content/drive/... path)")
    return Path(chosen).expanduser()


def fingerprint(obj, length: int = 12) -> str:
    """A short, stable hash of a JSON-able object (dict order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def key(kind: str, settings: dict) -> str:
    """A 12-hex-digit key of ``settings`` and the code version of ``kind``."""
    if kind not in VERSIONS:
        raise ValueError(f"unknown artifact kind {kind!r}; known: {sorted(VERSIONS)}")
    return fingerprint({"version": VERSIONS[kind], "kind": kind, "settings": settings})


def digest(array: np.ndarray) -> str:
    """A short content hash of an array (shape, dtype and bytes), read in chunks so a large
    set is never copied whole."""
    array = np.asarray(array)
    h = hashlib.sha256(f"{array.shape}{array.dtype}".encode())
    flat = array.reshape(len(array), -1) if array.ndim > 1 and len(array) else \
        array.reshape(1, -1)  # an empty set: one empty row (its shape is hashed above)
    for start in range(0, len(flat), 256):
        h.update(np.ascontiguousarray(flat[start:start + 256]).tobytes())
    return h.hexdigest()[:16]


def atomic_write(path: str | os.PathLike, write) -> None:
    """Calls ``write(file_object)`` on a temporary file, then renames it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache or result is not secret
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1, default=str).encode()))


def cached_arrays(path: str | os.PathLike, compute) -> dict:
    """Returns the arrays stored at ``path`` (.npz), or ``compute()``'s dict, saved atomically.

    For generated data such as adversarial sets: a killed job re-run with the same command
    finds the finished pieces and only computes the missing ones.
    """
    path = Path(path)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except Exception:  # a corrupt piece is recomputed
            path.unlink(missing_ok=True)
    arrays = compute()
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return arrays


def cached_shards(folder: str | os.PathLike, n: int, shard_size: int, compute, *,
                  dtype="float32", log: dict | None = None) -> np.ndarray:
    """``compute(start, stop, shard_index)`` for each shard of ``n`` items, each cached as
    ``folder/shardNNNNN.npz`` (atomic writes): a killed run keeps its finished shards.
    ``dtype``: how shards are stored (float16 halves the disk of [0, 1] images); the result
    is float32. ``log``, when given, collects shard paths in its "generated" and "reused" sets.
    """
    log = log if log is not None else {}
    generated, reused = log.setdefault("generated", set()), log.setdefault("reused", set())
    out = None
    for i, start in enumerate(range(0, n, shard_size)):
        stop = min(n, start + shard_size)
        path = Path(folder) / f"shard{i:05d}.npz"
        if not path.exists():
            generated.add(path)
        elif path not in generated:
            reused.add(path)
        part = cached_arrays(path, lambda: {
            "x_adv": np.asarray(compute(start, stop, i)).astype(dtype)})["x_adv"]
        if out is None:  # one float32 result filled in place: no list of parts, no concat
            out = np.empty((n, *part.shape[1:]), np.float32)
        out[start:stop] = part
    return out if out is not None else np.empty((0,), np.float32)
