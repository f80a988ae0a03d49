"""Image datasets as float32 [0, 1] NHWC arrays with int64 labels.

One entry point, :func:`load`, reads any of these sources:

* ``"digits"``: scikit-learn's 8x8 handwritten digits (ships with the package, offline);
* a tensorflow-datasets name such as ``"cifar10"`` or ``"tfds:cifar10"`` (downloads when
  online; ``data_dir`` is passed through);
* a folder in the ImageFolder layout, ``root/[split/]class/image.jpg``;
* a ``.tar`` / ``.tar.gz`` of such a folder (read member by member, never extracted);
* the official CIFAR-10 python tarball ``cifar-10-python.tar.gz``.

Decoded local sources are cached as uint8 ``.npz`` files under ``<cache root>/datasets``
(:mod:`tfadv.cache`) keyed by the source's path, size and modification time, with a checksum
of the arrays, written atomically, so a killed run never leaves a half-written cache behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tfadv import cache, checks

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


class ImageSet(NamedTuple):
    """Images in [0, 1] (float32, NHWC), int64 labels and the class names."""
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load(source: str, split: str = "train", *, data_dir: str | None = None,
         cache_dir: str | os.PathLike | None = "default") -> ImageSet:
    """Loads ``split`` ("train" or "test") of ``source``; see the module docstring.

    ``cache_dir``: the cache root (:func:`tfadv.cache.root`; "default": ``$TFADV_CACHE`` or
    ``data/``), decoded local sources go to its ``datasets/``; None: no cache.

    Raises ValueError naming the path when a local source is missing, truncated or unreadable.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    source = str(source)
    if source == "digits":
        return _load_digits(split)
    path = Path(os.path.expanduser(source))
    if is_tfds_name(source):
        return _load_tfds(source.removeprefix("tfds:"), split, data_dir)
    if not path.exists():
        raise ValueError(
            f"dataset not found: {path} does not exist. Pass --data pointing to an image folder, "
            "a .tar/.tar.gz of one, the CIFAR-10 python tarball, 'digits', or a "
            "tensorflow-datasets name such as 'cifar10' (needs internet).")
    if cache_dir is None:
        return _from_uint8(*_decode_local(path, split))
    key = _cache_key(path, split)
    folder = cache.root(None if cache_dir == "default" else cache_dir) / "datasets"
    cache_file = folder / f"{path.name.split('.')[0]}-{split}-{key[:16]}.npz"
    cached = _read_cache(cache_file, key)
    if cached is not None:
        return cached
    images, labels, class_names = _decode_local(path, split)
    _write_cache(cache_file, key, images, labels, class_names)
    return _from_uint8(images, labels, class_names)


def subset(data: ImageSet, *, n: int | None = None, per_class: int | None = None,
           seed: int = 0) -> ImageSet:
    """A seeded random subset: ``n`` images overall, or ``per_class`` images of each class."""
    return split(data, n=n, per_class=per_class, seed=seed)[0]


def split(data: ImageSet, *, n: int | None = None, per_class: int | None = None,
          seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """``(subset(data, ...), the images it left out)``: e.g. training images and a disjoint
    validation pool drawn from the rest (in the dataset's order)."""
    if (n is None) == (per_class is None):
        raise ValueError("give exactly one of n= or per_class=")
    rng = np.random.default_rng(seed)
    if per_class is not None:
        per_class = checks.integer("per_class", per_class, 1)
    if n is not None:
        if not 0 < n <= len(data.labels):
            raise ValueError(f"n={n} but the dataset has {len(data.labels)} images")
        idx = rng.permutation(len(data.labels))[:n]
    else:
        idx = []
        # the classes present (the same as all of them unless the set holds a few, as an
        # ImageNet subset that names 1,000 classes)
        for c in np.unique(data.labels):
            members = np.flatnonzero(data.labels == c)
            if len(members) < per_class:
                raise ValueError(f"class {c} has {len(members)} images, fewer than "
                                 f"per_class={per_class}")
            idx.append(rng.choice(members, per_class, replace=False))
        idx = rng.permutation(np.concatenate(idx))
    rest = np.setdiff1d(np.arange(len(data.labels)), idx)
    return (ImageSet(data.images[idx], data.labels[idx], data.class_names),
            ImageSet(data.images[rest], data.labels[rest], data.class_names))


def shares_per_class(labels: np.ndarray, parts: int) -> np.ndarray:
    """For each image, which of ``parts`` consecutive equal shares of its class it falls in
    (paper 003: within each class, the training images go to the six attacks in turn)."""
    share = np.empty(len(labels), np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        share[members] = np.arange(len(members)) * parts // len(members)
    return share


def pick_per_class(pool: ImageSet, per_class: int, *, seed: int,
                   prefer: np.ndarray | None = None) -> tuple[ImageSet, int]:
    """``per_class`` random images of each class, among those where ``prefer`` is True (e.g.
    the classifier is right) when it is given, topped up with others when a class has too
    few. Returns the shuffled ImageSet and the number of classes that were short."""
    per_class = checks.integer("per_class", per_class, 1)
    rng = np.random.default_rng(seed)
    prefer = np.ones(len(pool.labels), bool) if prefer is None else np.asarray(prefer, bool)
    idx, short = [], 0
    # the classes present: an ImageNet subset names all 1,000 classes but holds a few
    for c in np.unique(pool.labels):
        good = np.flatnonzero((pool.labels == c) & prefer)
        bad = np.flatnonzero((pool.labels == c) & ~prefer)
        if len(good) < per_class:
            short += 1
            idx.append(np.concatenate([good, rng.permutation(bad)[:per_class - len(good)]]))
        else:
            idx.append(rng.choice(good, per_class, replace=False))
    idx = rng.permutation(np.concatenate(idx).astype(np.int64))
    return ImageSet(pool.images[idx], pool.labels[idx], pool.class_names), short


# ---------------------------------------------------------------------------- sources

def _load_digits(split: str) -> ImageSet:
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]  # (1797, 8, 8, 1)
    labels = digits.target.astype(np.int64)
    # A fixed seeded 80/20 split: the same images are "test" on every machine.
    order = np.random.default_rng(1234).permutation(len(labels))
    cut = int(0.8 * len(labels))
    idx = order[:cut] if split == "train" else order[cut:]
    return ImageSet(images[idx], labels[idx], tuple(str(i) for i in range(10)))


def is_tfds_name(source: str) -> bool:
    """True for ``tfds:NAME`` and for a bare name (no path, no suffix) that is not a file."""
    source = str(source)
    if source.startswith("tfds:"):
        return True
    return (not Path(os.path.expanduser(source)).exists() and "/" not in source
            and "." not in source.split(":")[0] and not source.endswith((".tar", ".gz", ".tgz")))


def _load_tfds(name: str, split: str, data_dir: str | None) -> ImageSet:
    import tensorflow_datasets as tfds
    try:
        if not tfds.builder(name, data_dir=data_dir).is_prepared():
            print(f"tensorflow-datasets: downloading and preparing {name!r} (needs internet; "
                  "offline, stop and pass --data=PATH to a local copy instead)", flush=True)
        ds, info = tfds.load(name, split=split, data_dir=data_dir, as_supervised=True,
                             with_info=True)
        batches = list(tfds.as_numpy(ds.batch(2048)))
    except Exception as err:  # DatasetNotFoundError, network errors, ...
        raise ValueError(
            f"tensorflow-datasets could not load {name!r} split {split!r} "
            f"(data_dir={data_dir}): {err}. Offline, pass --data pointing to a local copy "
            "(an image folder, a .tar.gz of one, or the CIFAR-10 python tarball).") from err
    if not batches:
        raise ValueError(f"tensorflow-datasets returned no images for {name!r} split {split!r}")
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    names = tuple(info.features["label"].names)
    return _from_uint8(images, labels, names)


def _decode_local(path: Path, split: str):
    """Returns uint8 images, int64 labels and class names from a folder or tarball."""
    try:
        if path.is_dir():
            return _decode_folder(path, split)
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as tar:
                names = tar.getnames()
                if any(n.endswith("data_batch_1") for n in names):
                    return _decode_cifar_python(tar, names, split)
                return _decode_image_tar(tar, split)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise ValueError(f"cannot read dataset {path}: {err}. The file looks truncated or "
                         "corrupt: download it again.") from err
    raise ValueError(f"cannot read dataset {path}: it is neither a folder nor a tar archive. "
                     "Pass an ImageFolder directory, a .tar/.tar.gz of one, or the CIFAR-10 "
                     "python tarball.")


def _split_root(paths: list[str], split: str, where: str) -> str:
    """The common prefix under which ``class/image`` paths of ``split`` live."""
    dirs = {p.rsplit("/", 2)[0] if p.count("/") >= 2 else "" for p in paths}
    matches = sorted(d for d in dirs if d == split or d.endswith("/" + split))
    if matches:
        return matches[0] + "/"
    if split == "train" and len(dirs) == 1:  # plain ImageFolder without split folders
        return next(iter(dirs)) + "/" if next(iter(dirs)) else ""
    raise ValueError(f"{where} has no '{split}/<class>/<image>' folder (found: "
                     f"{sorted(dirs)[:5]}). Lay it out as {split}/<class>/<image>.jpg.")


def _group_by_class(paths: list[str], root: str) -> tuple[list[tuple[str, int]], tuple]:
    members = [p for p in paths if p.startswith(root) and p[len(root):].count("/") == 1]
    class_names = tuple(sorted({p[len(root):].split("/")[0] for p in members}))
    index = {c: i for i, c in enumerate(class_names)}
    return [(p, index[p[len(root):].split("/")[0]]) for p in sorted(members)], class_names


def _decode_folder(path: Path, split: str):
    files = [f.relative_to(path).as_posix() for f in path.rglob("*")
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {path}")
    items, class_names = _group_by_class(files, _split_root(files, split, str(path)))
    images = [_decode_image((path / p).read_bytes(), f"{path / p}") for p, _ in items]
    return _stack(images, str(path)), np.array([c for _, c in items], np.int64), class_names


def _decode_image_tar(tar: tarfile.TarFile, split: str):
    members = {m.name.removeprefix("./"): m for m in tar.getmembers()
               if m.isfile() and m.name.lower().endswith(IMAGE_SUFFIXES)}
    if not members:
        raise ValueError(f"no images found in archive {tar.name}")
    items, class_names = _group_by_class(list(members), _split_root(list(members), split,
                                                                    str(tar.name)))
    # Read in archive order: a compressed tar cannot seek backwards without decompressing
    # again from the start, so reading in sorted order is quadratic on an unsorted archive.
    by_offset = sorted((members[p].offset_data, p) for p, _ in items)
    decoded = {p: _decode_image(tar.extractfile(members[p]).read(), f"{tar.name}:{p}")
               for _, p in by_offset}
    images = [decoded[p] for p, _ in items]
    return _stack(images, tar.name), np.array([c for _, c in items], np.int64), class_names


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """The CIFAR-10 python batches are pickles; allow only what they need (numpy arrays)."""
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray",
                "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype"),
                ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} from a dataset file")


def _decode_cifar_python(tar: tarfile.TarFile, names: list[str], split: str):
    wanted = [n for n in names if n.rsplit("/", 1)[-1].startswith(
        "data_batch_" if split == "train" else "test_batch")]
    # The official tarball is not in name order: read in archive order (see _decode_image_tar).
    members = sorted((tar.getmember(n) for n in wanted), key=lambda m: m.offset_data)
    batches = {m.name: _NumpyOnlyUnpickler(tar.extractfile(m), encoding="bytes").load()
               for m in members}
    images, labels = [], []
    for name in sorted(wanted):
        batch = batches[name]
        images.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32)
                      .transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch[b"labels"], np.int64))
    if not images:
        raise ValueError(f"{tar.name} has no CIFAR-10 {split} batches")
    return np.concatenate(images), np.concatenate(labels), CIFAR10_CLASSES


def _decode_image(raw: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(raw)) as img:
            return np.asarray(img.convert("RGB"), np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot decode image {where}: {err}") from err


def _stack(images: list[np.ndarray], where: str) -> np.ndarray:
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"images in {where} have different sizes {sorted(shapes)[:4]}; "
                         "resize them to one size first")
    return np.stack(images)


def _from_uint8(images, labels, class_names) -> ImageSet:
    return ImageSet(np.asarray(images, np.float32) / 255.0, np.asarray(labels, np.int64),
                    tuple(class_names))


# ---------------------------------------------------------------------------- cache

def _cache_key(path: Path, split: str) -> str:
    if path.is_dir():
        stats = sorted((str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns)
                       for f in path.rglob("*") if f.is_file())
    else:
        st = path.stat()
        stats = [st.st_size, st.st_mtime_ns]
    blob = json.dumps([cache.VERSIONS["dataset"], str(path.resolve()), split, stats])
    return hashlib.sha256(blob.encode()).hexdigest()


def _checksum(images: np.ndarray, labels: np.ndarray) -> str:
    return hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()


def _read_cache(cache_file, key: str) -> ImageSet | None:
    """The cached set at ``cache_file`` (an epath: local or gs://), or None."""
    if not cache_file.exists():
        return None
    try:
        with cache_file.open("rb") as raw, np.load(raw, allow_pickle=False) as f:
            images, labels = f["images"], f["labels"]
            meta = json.loads(str(f["meta"]))
        if meta["key"] == key and meta["checksum"] == _checksum(images, labels):
            return _from_uint8(images, labels, meta["class_names"])
    except Exception:  # unreadable cache: decode the source again
        pass
    return None


def _write_cache(cache_file, key: str, images, labels, class_names) -> None:
    meta = json.dumps({"key": key, "checksum": _checksum(images, labels),
                       "class_names": list(class_names)})
    cache.atomic_write(cache_file, lambda f: np.savez(f, images=images, labels=labels,
                                                meta=np.array(meta)))


def resize_images(x: np.ndarray, size, method: str) -> np.ndarray:
    """``tf.image.resize`` of an NHWC batch (or one HWC image) to ``size`` (h, w), clipped to
    [0, 1], as float32."""
    import tensorflow as tf
    return np.clip(tf.image.resize(x, size, method=method).numpy(), 0.0, 1.0).astype(np.float32)


def resize(data: ImageSet, size: int) -> ImageSet:
    """``data`` with its images resized to ``size`` x ``size`` (area when shrinking,
    bilinear when growing), clipped to [0, 1]; unchanged when already that size."""
    if data.images.shape[1:3] == (size, size):
        return data
    method = "area" if data.images.shape[1] > size else "bilinear"
    return data._replace(images=resize_images(data.images, (size, size), method))


def png_roundtrip(x: np.ndarray) -> np.ndarray:
    """Each image saved as an 8-bit PNG (rounded to the nearest level) and read back, as a
    user saving adversarial images to disk would (paper 003, section 3.4.1)."""
    from PIL import Image
    out = np.empty_like(x, dtype=np.float32)
    for i, image in enumerate(np.asarray(x)):
        levels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(levels[..., 0] if levels.shape[-1] == 1 else levels).save(buffer, "PNG")
        buffer.seek(0)
        with Image.open(buffer) as img:
            out[i] = np.asarray(img, np.float32).reshape(image.shape) / 255.0
    return out
