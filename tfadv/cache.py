"""The one cache of the suite: where artifacts live, how they are keyed and written.

Root: ``cache_dir`` when given (``--cache_dir``), else ``$TFADV_CACHE``, else the default
(:func:`default_root`). It may be a local folder (a mounted Google Drive too) or a ``gs://``
URL: paths are :class:`etils.epath.Path` objects (:func:`path`), which reach Cloud Storage
through ``tf.io.gfile``. Under the root: ``datasets/`` (decoded images), ``models/``
(classifiers, purifiers, SR networks, checkpoints) and ``adversarial/`` (adversarial sets in
shards, :func:`cached_shards`).

Every key is :func:`key` of the settings that decide the artifact plus the code version of its
kind (:data:`VERSIONS`): bump the version when a fix changes what the same settings produce,
and the old artifacts are no longer found (they are never loaded under a changed meaning).
Every file is written atomically: a killed job leaves the old file or none, never half of one.
Only the chief of a multi-worker job writes (:func:`tfadv.distribute.is_chief`); the other
workers compute the same things and keep them in memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import uuid
from pathlib import Path as LocalPath

import numpy as np
from etils import epath

from tfadv.distribute import is_chief

ENV = "TFADV_CACHE"
# URL schemes a root or an output folder may have: what tf.io.gfile reaches without plugins.
REMOTE = ("gs://",)

# Code versions, one per kind of artifact, part of every key of that kind.
# dataset 2, classifier 2, finetuned 2, sr 2: keys reorganised with the one cache (older
# files are not reused). purifier 3: 2 was the fresh initializer per layer. adversarial 3:
# shards became .npy files in the storage dtype (2 was .npz), so they can be memory-mapped.
VERSIONS = {"dataset": 2, "classifier": 2, "adversarial": 3, "finetuned": 2, "purifier": 3,
            "sr": 2}


def path(p: str | os.PathLike) -> epath.Path:
    """``p`` (a str, a path or a ``gs://`` URL) as an :class:`etils.epath.Path`, ``~``
    expanded: the path type every module uses for what a user may point at Drive or GCS."""
    text = os.fspath(p)
    if "://" in text:
        if not text.startswith(REMOTE):
            raise ValueError(f"{text} is a URL of a kind the suite cannot write to; give a "
                             f"local folder (a mounted Drive too) or a URL starting with "
                             f"{' or '.join(REMOTE)}")
        return epath.Path(text)
    for scheme in REMOTE:  # pathlib.Path("gs://b/x") silently becomes the local gs:/b/x
        if text.startswith(scheme[:-1]):
            raise ValueError(f"{text} looks like a {scheme} URL that went through "
                             f"pathlib.Path, which drops a slash; pass the URL as a string "
                             "or through tfadv.cache.path")
    return epath.Path(text).expanduser()


_as_path = path  # for the functions below whose argument is called path


def is_local(p: str | os.PathLike) -> bool:
    """Whether ``p`` is on this machine's file system (a mounted Drive is), not a URL."""
    return "://" not in os.fspath(p)


def default_root(package_dir: str | os.PathLike = LocalPath(__file__).resolve().parent
                 ) -> epath.Path:
    """``data/`` of the checkout when tfadv runs from one (``setup.cfg`` beside the package
    folder), else ``~/.cache/tfadv``: an installed package must not write into
    site-packages."""
    checkout = LocalPath(package_dir).parent
    if (checkout / "setup.cfg").is_file():
        return epath.Path(checkout / "data")
    return epath.Path(LocalPath.home() / ".cache" / "tfadv")


DEFAULT_ROOT = default_root()


def root(cache_dir: str | os.PathLike | None = None) -> epath.Path:
    """The cache root: ``cache_dir``, else ``$TFADV_CACHE``, else :data:`DEFAULT_ROOT`
    (the checkout's ``data/``, or ``~/.cache/tfadv`` for an installed package). A local
    folder or a ``gs://`` URL."""
    return path(cache_dir or os.environ.get(ENV) or DEFAULT_ROOT)


def fingerprint(obj, length: int = 12) -> str:
    """A short, stable hash of a JSON-able object (dict order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def key(kind: str, settings: dict) -> str:
    """A 12-hex-digit key of ``settings`` and the code version of ``kind``."""
    if kind not in VERSIONS:
        raise ValueError(f"unknown artifact kind {kind!r}; known: {sorted(VERSIONS)}")
    return fingerprint({"version": VERSIONS[kind], "kind": kind, "settings": settings})


def digest(array) -> str:
    """A short content hash of an array (shape, dtype and bytes), read in chunks so a large
    set is never copied whole. A lazily read set (a :class:`Shards`, or any object with
    ``shape`` and ``rows(indices)``) hashes as its float32 rows, so a lazy set and the same
    set loaded whole give the same digest and the same cache keys."""
    if hasattr(array, "rows"):
        h = hashlib.sha256(f"{tuple(array.shape)}{np.dtype(np.float32)}".encode())
        for start in range(0, len(array), 256):
            rows = array.rows(np.arange(start, min(len(array), start + 256)))
            h.update(np.ascontiguousarray(rows, dtype=np.float32).tobytes())
        return h.hexdigest()[:16]
    array = np.asarray(array)
    h = hashlib.sha256(f"{array.shape}{array.dtype}".encode())
    flat = array.reshape(len(array), -1) if array.ndim > 1 and len(array) else \
        array.reshape(1, -1)  # an empty set: one empty row (its shape is hashed above)
    for start in range(0, len(flat), 256):
        h.update(np.ascontiguousarray(flat[start:start + 256]).tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------- writes

def atomic_write(path: str | os.PathLike, write) -> bool:
    """Calls ``write(file_object)`` on a temporary file, then renames it to ``path`` (a
    local path or a URL). Returns True, or False on a non-chief worker, which writes
    nothing (:func:`tfadv.distribute.is_chief`)."""
    if not is_chief():
        return False
    path = _as_path(path)
    if not is_local(path):
        _remote_write(str(path), write)
        return True
    os.makedirs(path.parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache or result is not secret
        os.replace(tmp, path)
    except BaseException:
        LocalPath(tmp).unlink(missing_ok=True)
        raise
    return True


def _remote_write(url: str, write) -> None:
    """``write`` into memory, then one upload to a temporary object renamed to ``url``.

    A GCS object appears whole when its upload finishes or not at all, so the upload alone
    is atomic; the temporary name and the rename keep that true on file systems whose
    objects can be seen half-written. In memory first because gfile cannot seek or tell
    while writing (np.savez and zipfile need that); our files are shards and models, at most
    some hundred MB."""
    import tensorflow as tf
    buffer = io.BytesIO()
    write(buffer)
    folder, name = url.rsplit("/", 1)
    tmp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
    tf.io.gfile.makedirs(folder)
    try:
        with tf.io.gfile.GFile(tmp, "wb") as f:
            f.write(buffer.getvalue())
        tf.io.gfile.rename(tmp, url, overwrite=True)
    except BaseException:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)
        raise


def read_bytes(path: str | os.PathLike) -> bytes:
    """The whole file at ``path`` (local or a URL)."""
    return _as_path(path).read_bytes()


def write_json(path: str | os.PathLike, obj) -> bool:
    return atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1, default=str).encode()))


def cached_arrays(path: str | os.PathLike, compute) -> dict:
    """Returns the arrays stored at ``path`` (.npz), or ``compute()``'s dict, saved atomically.

    For generated data that is small or read whole: a killed job re-run with the same command
    finds the finished pieces and only computes the missing ones.
    """
    path = _as_path(path)
    if path.exists():
        try:
            with np.load(io.BytesIO(read_bytes(path)), allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except Exception:  # a corrupt piece is recomputed (and rewritten below)
            pass
    arrays = compute()
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return arrays


# ---------------------------------------------------------------------------- shards

class Shards:
    """A set stored in shards, read without loading it whole (:func:`cached_shards`).

    ``len(s)``, ``s.shape``, ``s.dtype`` (the storage dtype), ``s.files`` (the shard paths),
    ``s.rows(indices)`` (those rows in that order, storage dtype), ``s[start:stop]`` (a
    float32 copy of those rows), ``s.chunks(size)`` (``(start, float32 rows)`` over the set)
    and ``np.asarray(s)`` (the whole set in float32: what lazy=False returns). Local shards
    are memory-mapped; the parts held here are those maps or in-memory arrays.
    """

    def __init__(self, parts: list, files: list, dtype="float32"):
        self._parts = parts
        self.files = list(files)
        self._starts = np.cumsum([0] + [len(p) for p in parts])
        self.dtype = parts[0].dtype if parts else np.dtype(dtype)
        self.shape = (int(self._starts[-1]), *parts[0].shape[1:]) if parts else (0,)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"Shards(shape={self.shape}, dtype={self.dtype}, files={len(self.files)})"

    def rows(self, indices) -> np.ndarray:
        """The rows at ``indices`` (any order, repeats allowed) in the storage dtype."""
        indices = np.asarray(indices)
        if indices.ndim != 1 or (len(indices) and indices.dtype.kind not in "iu"):
            raise ValueError(f"rows takes a 1-D list of integer row numbers, got an array of "
                             f"shape {indices.shape} and dtype {indices.dtype}")
        indices = indices.astype(np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
            raise ValueError(f"row numbers must be in [0, {len(self)}), got "
                             f"{indices.min()}..{indices.max()}")
        out = np.empty((len(indices), *self.shape[1:]), self.dtype)
        shard = np.searchsorted(self._starts, indices, side="right") - 1
        for s in np.unique(shard):  # one fancy index per shard touched
            chosen = shard == s
            out[chosen] = self._parts[s][indices[chosen] - self._starts[s]]
        return out

    def __getitem__(self, item) -> np.ndarray:
        if not isinstance(item, slice):
            raise ValueError(f"Shards take a slice (s[start:stop]) or s.rows(indices), got "
                             f"{item!r}")
        return self.rows(np.arange(*item.indices(len(self)))).astype(np.float32)

    def chunks(self, size: int):
        """``(start, float32 rows start..start+size)`` over the set, one chunk in memory."""
        if int(size) < 1:
            raise ValueError(f"chunk size must be >= 1, got {size}")
        for start in range(0, len(self), int(size)):
            yield start, self[start:start + int(size)]

    def __array__(self, dtype=None, copy=None):
        whole = self[:] if len(self) else np.empty((0,), np.float32)
        return whole if dtype is None else whole.astype(dtype)


def _open_shard(file: epath.Path, rows: int, dtype) -> np.ndarray | None:
    """The stored shard (memory-mapped when local, read whole when remote), or None when it
    is missing, unreadable or not ``rows`` rows of ``dtype`` (then it is computed again)."""
    try:
        if is_local(file):
            part = np.load(file, mmap_mode="r", allow_pickle=False)
        else:
            part = np.load(io.BytesIO(read_bytes(file)), allow_pickle=False)
    except Exception:  # missing, or cut short by a kill before atomic writes, or corrupt
        return None
    return part if len(part) == rows and part.dtype == np.dtype(dtype) else None


def cached_shards(folder: str | os.PathLike, n: int, shard_size: int, compute, *,
                  dtype="float32", log: dict | None = None, lazy: bool = False):
    """``compute(start, stop, shard_index)`` for each shard of ``n`` items, each cached as
    ``folder/shardNNNNN.npy`` in ``dtype`` (float16 halves the disk of [0, 1] images),
    written atomically: a killed run keeps its finished shards.

    ``lazy=False``: one float32 array, filled shard by shard. ``lazy=True``: a
    :class:`Shards`, which reads rows on demand: local shards are memory-mapped; remote
    (``gs://``) ones are read once into memory (simpler than a local copy to map; a set too
    big for memory belongs in a local or mounted folder). ``log``, when given, collects shard
    paths in its "generated" and "reused" sets.
    """
    log = log if log is not None else {}
    generated, reused = log.setdefault("generated", set()), log.setdefault("reused", set())
    folder = _as_path(folder)
    parts, files, out = [], [], None
    for i, start in enumerate(range(0, n, shard_size)):
        stop = min(n, start + shard_size)
        file = folder / f"shard{i:05d}.npy"
        files.append(file)
        part = _open_shard(file, stop - start, dtype)
        if part is None:
            generated.add(file)
            part = np.asarray(compute(start, stop, i)).astype(dtype)
            written = atomic_write(file, lambda f: np.save(f, part, allow_pickle=False))
            if lazy and written and is_local(file):  # the map, not the computed copy, stays
                mapped = _open_shard(file, stop - start, dtype)
                part = part if mapped is None else mapped
        elif file not in generated:
            reused.add(file)
        if lazy:
            parts.append(part)
            continue
        if out is None:  # one float32 result filled in place: no list of parts, no concat
            out = np.empty((n, *part.shape[1:]), np.float32)
        out[start:stop] = part
    if lazy:
        return Shards(parts, files, dtype)
    return out if out is not None else np.empty((0,), np.float32)
