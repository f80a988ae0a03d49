"""ImageNet subsets for the paper presets: images sampled per class from a folder
(``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``), a .tar of one, or tensorflow-datasets'
``imagenet2012``, decoded only when picked, labelled with the canonical ImageNet-1k class ids
(:func:`imagenet_wnids`) whatever subset of classes the source holds; and the preflight check
(:func:`imagenet_problem`) that a long run makes before it starts.
"""

from __future__ import annotations

import functools
import importlib.resources
import io
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from tfadv import checks
from tfadv.data import IMAGE_SUFFIXES, ImageSet, is_tfds_name


def imagenet_problem(source: str, data_dir: str | None,
                     splits: tuple = ("train", "val")) -> str | None:
    """None when ImageNet's ``splits`` can be read from ``source``; else what is missing and
    what to supply (checked before a long run starts)."""
    how = ("point --data at an ImageNet folder (train/<wnid>/*.JPEG and val/<wnid>/*.JPEG), a "
           ".tar/.tar.gz of one, or use --data=imagenet2012 --data_dir=DIR with "
           "tensorflow-datasets' manual download (ILSVRC2012_img_train.tar and "
           "ILSVRC2012_img_val.tar in DIR/downloads/manual)")
    source = str(source)
    if is_tfds_name(source):
        if data_dir is None:
            return f"ImageNet: --data={source} (tensorflow-datasets) needs --data_dir; {how}"
        manual = Path(data_dir).expanduser() / "downloads" / "manual"
        try:
            import tensorflow_datasets as tfds
            if tfds.builder(source.removeprefix("tfds:"), data_dir=data_dir).is_prepared():
                return None
        except Exception:  # noqa: BLE001 - reported below
            pass
        missing = [f for f in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
                   if not (manual / f).is_file()]
        return (f"ImageNet: {source} is not prepared in {data_dir} and {manual} lacks "
                f"{missing}; {how}") if missing else None
    path = Path(source).expanduser()
    if not path.exists():
        return f"ImageNet: {path} does not exist; {how}"
    names = {"train": ("train",), "val": ("val", "validation")}
    if path.is_dir() and not all(any((path / v).is_dir() for v in names[split])
                                 for split in splits):
        return f"ImageNet: {path} has no {' and '.join(f'{s}/' for s in splits)} folders; {how}"
    return None


@functools.lru_cache(maxsize=None)
def imagenet_wnids() -> tuple:
    """The 1,000 ILSVRC2012 wnids in class-id order (sorted): ``imagenet_wnids()[k]`` is the
    class of logit ``k`` of Keras' ImageNet classifiers (and tensorflow-datasets' label k)."""
    # Copied from tensorflow-datasets' datasets/imagenet2012/labels.txt (shipped here: a
    # class id must never depend on which classes a folder happens to hold).
    text = importlib.resources.files("tfadv").joinpath("imagenet2012_wnids.txt").read_text()
    return tuple(text.split())


def imagenet_subset(source: str, split: str, per_class: int, *, seed: int, size: int,
                    data_dir: str | None = None, dtype: str = "float32") -> ImageSet:
    """``per_class`` random images of each class of ImageNet's train or validation split,
    resized to ``size`` x ``size`` (paper 003's 256), in class order.

    ``source``: a folder with ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (or
    ``validation/``), a .tar/.tar.gz of one (only the picked members are decoded), or a
    tensorflow-datasets name (``imagenet2012``; one pass over the split, reservoir-sampled
    per class, ``data_dir`` holding it or its manual download). Only the picked images are
    decoded: ImageNet never has to fit in memory. Labels are ImageNet-1k class ids (the
    wnid's place in :func:`imagenet_wnids`, whatever subset of classes the folder holds);
    ``class_names`` is all 1,000 wnids, so ``class_names[prediction]`` works.
    ``dtype="uint8"`` keeps the decoded bytes (a quarter of float32's memory: 3.5 GB instead
    of 14 GB for paper 003's 18,000 images); batches are converted where they are used
    (:func:`tfadv.batching.pixels`).
    """
    if dtype not in ("float32", "uint8"):
        raise ValueError(f"dtype must be 'float32' or 'uint8', got {dtype!r}")
    read, labels, class_names = _imagenet_pick(source, split, per_class, seed, data_dir)
    images = np.empty((len(labels), size, size, 3), np.uint8)
    for i in range(len(labels)):  # filled in place: no list of decoded images beside it
        images[i] = _decode_resized(read(i), size)
    return ImageSet(images if dtype == "uint8" else images.astype(np.float32) / 255.0,
                    labels, class_names)


def imagenet_chunks(source: str, split: str, per_class: int, *, seed: int, size: int,
                    chunk: int = 256, data_dir: str | None = None):
    """The images :func:`imagenet_subset` picks, in a seeded random order (classes mixed),
    as ImageSets of at most ``chunk`` images decoded one chunk at a time: a caller that keeps
    a few of them (paper 004 screens the validation split for images of each confidence)
    never holds the rest in memory, and may stop early."""
    chunk = checks.integer("chunk", chunk, 1)
    # picked now, not at the first next(): a bad folder is reported before any work
    read, labels, class_names = _imagenet_pick(source, split, per_class, seed, data_dir)
    order = np.random.default_rng([seed, 1]).permutation(len(labels))  # not the picks' draw

    def chunks():
        for start in range(0, len(order), chunk):
            idx = order[start:start + chunk]
            images = np.stack([_decode_resized(read(i), size) for i in idx])
            yield ImageSet(images.astype(np.float32) / 255.0, labels[idx], class_names)
    return chunks()


def _imagenet_pick(source, split, per_class, seed, data_dir):
    """``(read, labels, class_names)``: ``read(i)`` gives the encoded bytes of picked image i
    (folders are read lazily; tar members and tfds records are held encoded)."""
    per_class = checks.integer("per_class", per_class, 1)
    split_names = ("train",) if split == "train" else ("val", "validation")
    if is_tfds_name(source):
        raw, labels, class_names = _imagenet_tfds(str(source).removeprefix("tfds:"), split,
                                                  per_class, seed, data_dir)
        return raw.__getitem__, np.asarray(labels, np.int64), tuple(class_names)
    path = Path(source).expanduser()
    if path.is_dir():
        files = [f.relative_to(path).as_posix() for f in path.rglob("*")
                 if f.suffix.lower() in IMAGE_SUFFIXES]
        chosen = _choose_per_class(files, split_names, per_class, seed, str(path))
        return ((lambda i: (path / chosen[i][0]).read_bytes()),
                np.asarray([label for _, label in chosen], np.int64), imagenet_wnids())
    with tarfile.open(path) as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers()
                   if m.isfile() and m.name.lower().endswith(IMAGE_SUFFIXES)}
        chosen = _choose_per_class(list(members), split_names, per_class, seed, str(path))
        # archive order: a compressed tar cannot seek backwards cheaply (_decode_image_tar)
        by_offset = sorted((members[p].offset_data, p) for p, _ in chosen)
        read = {p: tar.extractfile(members[p]).read() for _, p in by_offset}
    raw = [read[p] for p, _ in chosen]
    return (raw.__getitem__, np.asarray([label for _, label in chosen], np.int64),
            imagenet_wnids())


def _decode_resized(raw: bytes, size: int) -> np.ndarray:
    from PIL import Image
    with Image.open(io.BytesIO(raw)) as img:
        return np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR), np.uint8)


def _choose_per_class(paths, split_names, per_class, seed, where):
    """(path, ImageNet class id) of ``per_class`` random files of each class under
    ``<split>/<wnid>/``."""
    by_class = defaultdict(list)
    for p in paths:
        parts = p.split("/")
        if len(parts) >= 3 and parts[-3] in split_names:
            by_class[parts[-2]].append(p)
    if not by_class:
        raise ValueError(f"{where}: no images under a {' or '.join(split_names)}/<wnid>/ "
                         f"folder; lay ImageNet out as train/<wnid>/*.JPEG and "
                         "val/<wnid>/*.JPEG")
    class_id = {wnid: k for k, wnid in enumerate(imagenet_wnids())}
    unknown = sorted(set(by_class) - set(class_id))
    if unknown:
        raise ValueError(
            f"{where}: class folders {unknown[:10]}{' ...' if len(unknown) > 10 else ''} are "
            "not ILSVRC2012 wnids (such as n01440764): the folder must be laid out as "
            "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG with ImageNet-1k wnids, which give "
            "the classifier's class ids")
    rng = np.random.default_rng(seed)
    chosen = []
    for wnid in sorted(by_class):
        members = sorted(by_class[wnid])
        picks = rng.choice(len(members), min(per_class, len(members)), replace=False)
        chosen += [(members[i], class_id[wnid]) for i in sorted(picks)]
    return chosen


def _imagenet_tfds(name, split, per_class, seed, data_dir):
    import tensorflow_datasets as tfds
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        print(f"tensorflow-datasets: preparing {name} from the manual download (hours)",
              flush=True)
        builder.download_and_prepare()
    ds = builder.as_dataset(split="train" if split == "train" else "validation",
                            decoders={"image": tfds.decode.SkipDecoding()}, shuffle_files=False)
    rng = np.random.default_rng(seed)
    seen, keep = defaultdict(int), defaultdict(list)
    for example in tfds.as_numpy(ds):  # reservoir sampling, per class
        c = int(example["label"])
        seen[c] += 1
        if len(keep[c]) < per_class:
            keep[c].append(example["image"])
        else:
            j = int(rng.integers(seen[c]))
            if j < per_class:
                keep[c][j] = example["image"]
    raw, labels = [], []
    for c in sorted(keep):
        raw += keep[c]
        labels += [c] * len(keep[c])
    return raw, labels, tuple(builder.info.features["label"].names)
