"""Tests for tfadv.data: every local source, the error messages, the cache and subsets."""

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfadv import data, imagenet

# ---------------------------------------------------------------------------- helpers

HEIGHT, WIDTH = 5, 4  # not square, so a height/width mix-up shows


def _random_rgb(rng):
    return rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def _make_image_folder(root, splits=("train", "test"), classes=("cat", "ant"), per_class=3,
                       seed=0):
    """Writes PNGs under root/[split/]class/ and returns {relative path: uint8 array}.

    Classes are created out of alphabetical order on purpose: labels must follow the sorted
    class names, not the order the folders were made in.
    """
    rng = np.random.default_rng(seed)
    written = {}
    for split in splits or ("",):
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = _random_rgb(rng)
                Image.fromarray(pixels).save(folder / f"{i:02d}.png")
                written[(folder / f"{i:02d}.png").relative_to(root).as_posix()] = pixels
    return written


def _expected(written, prefix, class_names):
    """The (images, labels) a loader must return for files under ``prefix``, sorted by path."""
    items = sorted((p, a) for p, a in written.items() if p.startswith(prefix))
    images = np.stack([a for _, a in items]).astype(np.float32) / 255.0
    labels = np.array([class_names.index(p[len(prefix):].split("/")[0]) for p, _ in items])
    return images, labels


def _assert_same_set(got: data.ImageSet, images, labels):
    """Same images with the same labels, in any order."""
    assert got.images.shape == images.shape and got.images.dtype == np.float32
    assert got.labels.dtype == np.int64

    def key(imgs, labs):
        return sorted((int(lab), img.tobytes()) for img, lab in zip(imgs, labs))

    assert key(got.images, got.labels) == key(images, labels)


def _tar_folder(root, archive, arcname, mode="w:gz"):
    with tarfile.open(archive, mode) as tar:
        tar.add(root, arcname=arcname)
    return archive


def _no_cache_files(cache_root):
    return not cache_root.exists() or not any(p.is_file() for p in cache_root.rglob("*"))


@pytest.fixture
def read_offsets(monkeypatch):
    """The archive offsets of the members read from tarballs, in the order they were read."""
    offsets = []
    real_extractfile = tarfile.TarFile.extractfile

    def recording_extractfile(self, member):
        offsets.append(member.offset_data)
        return real_extractfile(self, member)

    monkeypatch.setattr(tarfile.TarFile, "extractfile", recording_extractfile)
    return offsets


# ---------------------------------------------------------------------------- digits

def test_digits_shapes_types_and_ranges():
    train, test = data.load("digits", "train"), data.load("digits", "test")
    for part in (train, test):
        assert part.images.ndim == 4 and part.images.shape[1:] == (8, 8, 1)
        assert part.images.dtype == np.float32 and part.labels.dtype == np.int64
        assert part.images.min() >= 0.0 and part.images.max() <= 1.0
        assert part.images.max() == 1.0  # scaled by 16, not by 255
        assert set(np.unique(part.labels)) == set(range(10))
        assert part.class_names == tuple(str(i) for i in range(10))
    assert (len(train.labels), len(test.labels)) == (1437, 360)


def test_digits_split_is_a_deterministic_partition():
    from sklearn.datasets import load_digits
    full = load_digits()
    train, test = data.load("digits", "train"), data.load("digits", "test")
    # Together the two splits are exactly the 1,797 digits, each once (a partition).
    rows = np.concatenate([train.images, test.images]).reshape(-1, 64) * 16
    rows = np.concatenate([rows, np.concatenate([train.labels, test.labels])[:, None]], 1)
    reference = np.concatenate([full.images.reshape(-1, 64), full.target[:, None]], 1)
    np.testing.assert_array_equal(np.unique(rows, axis=0), np.unique(reference, axis=0))
    assert len(rows) == len(reference)
    again = data.load("digits", "test")
    np.testing.assert_array_equal(again.images, test.images)
    np.testing.assert_array_equal(again.labels, test.labels)


def test_bad_split_name():
    with pytest.raises(ValueError, match="split"):
        data.load("digits", "validation")


# ---------------------------------------------------------------------------- folders

def test_image_folder_with_splits_round_trips_exactly(tmp_path):
    written = _make_image_folder(tmp_path / "ds")
    for split in ("train", "test"):
        got = data.load(str(tmp_path / "ds"), split, cache_dir=None)
        assert got.class_names == ("ant", "cat")
        assert got.num_classes == 2
        _assert_same_set(got, *_expected(written, f"{split}/", ["ant", "cat"]))
    # The two splits hold different images.
    train = data.load(str(tmp_path / "ds"), "train", cache_dir=None)
    test = data.load(str(tmp_path / "ds"), "test", cache_dir=None)
    assert not np.array_equal(train.images, test.images)


def test_image_folder_without_splits(tmp_path):
    written = _make_image_folder(tmp_path / "plain", splits=None, classes=("zebra", "bee", "m"))
    got = data.load(str(tmp_path / "plain"), "train", cache_dir=None)
    assert got.class_names == ("bee", "m", "zebra")
    _assert_same_set(got, *_expected(written, "", ["bee", "m", "zebra"]))
    np.testing.assert_array_equal(np.bincount(got.labels), [3, 3, 3])


def test_image_folder_converts_grayscale_and_rgba_to_rgb(tmp_path):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)
    rgba = rng.integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8)
    (tmp_path / "ds" / "a").mkdir(parents=True)
    (tmp_path / "ds" / "b").mkdir(parents=True)
    Image.fromarray(gray, "L").save(tmp_path / "ds" / "a" / "0.png")
    Image.fromarray(rgba, "RGBA").save(tmp_path / "ds" / "b" / "0.png")
    got = data.load(str(tmp_path / "ds"), cache_dir=None)
    assert got.images.shape == (2, HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(got.images[got.labels == 0][0] * 255,
                                  np.repeat(gray[..., None], 3, -1))
    np.testing.assert_array_equal(got.images[got.labels == 1][0] * 255, rgba[..., :3])


@pytest.mark.parametrize("arcname,mode,suffix", [("dataset", "w:gz", ".tar.gz"),
                                                  (".", "w:gz", ".tgz"),
                                                  ("dataset", "w", ".tar")])
def test_tarball_loads_like_the_folder(tmp_path, arcname, mode, suffix):
    _make_image_folder(tmp_path / "ds")
    archive = _tar_folder(tmp_path / "ds", tmp_path / f"ds{suffix}", arcname, mode)
    for split in ("train", "test"):
        folder = data.load(str(tmp_path / "ds"), split, cache_dir=None)
        packed = data.load(str(archive), split, cache_dir=None)
        assert packed.class_names == folder.class_names
        np.testing.assert_array_equal(packed.images, folder.images)
        np.testing.assert_array_equal(packed.labels, folder.labels)


def test_unsorted_tarball_is_read_in_one_forward_pass(tmp_path, read_offsets):
    """Members stored in reverse order load like the folder, read in archive order: reading a
    .tar.gz in sorted order instead rewinds and re-decompresses it for every member, which
    took 150 s instead of 3 s for 3,000 images."""
    written = _make_image_folder(tmp_path / "ds", per_class=5)
    archive = tmp_path / "reversed.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for rel in sorted(written, reverse=True):
            tar.add(tmp_path / "ds" / rel, arcname=f"ds/{rel}")
    packed = data.load(str(archive), "train", cache_dir=None)
    folder = data.load(str(tmp_path / "ds"), "train", cache_dir=None)
    np.testing.assert_array_equal(packed.images, folder.images)
    np.testing.assert_array_equal(packed.labels, folder.labels)
    assert len(read_offsets) == 10 and read_offsets == sorted(read_offsets)


def test_tarball_without_split_folders(tmp_path):
    _make_image_folder(tmp_path / "plain", splits=None)
    archive = _tar_folder(tmp_path / "plain", tmp_path / "plain.tar.gz", "plain")
    folder = data.load(str(tmp_path / "plain"), cache_dir=None)
    packed = data.load(str(archive), cache_dir=None)
    np.testing.assert_array_equal(packed.images, folder.images)
    np.testing.assert_array_equal(packed.labels, folder.labels)
    with pytest.raises(ValueError, match="test"):
        data.load(str(archive), "test", cache_dir=None)


# ---------------------------------------------------------------------------- CIFAR-10 python

def _cifar_tarball(path, batches, protocol=2):
    """Writes a tarball laid out like cifar-10-python.tar.gz with the given {name: object}."""
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in batches.items():
            blob = obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=protocol)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def _cifar_batch(rng, n):
    return {b"batch_label": b"fake batch", b"data": rng.integers(0, 256, (n, 3072), np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"filenames": [b"x.png"] * n}


@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar_python_tarball_layout(tmp_path, read_offsets, protocol):
    rng = np.random.default_rng(0)
    # Stored out of name order, as in the official tarball.
    batches = {name: _cifar_batch(rng, 5 if name == "test_batch" else 4)
               for name in ("data_batch_3", "test_batch", "data_batch_1", "data_batch_2")}
    # A known pixel: image 0 of the first batch, row 1, column 2 is (R, G, B) = (7, 99, 250);
    # the rows hold the red plane, then green, then blue, each 32x32 row-major.
    first = batches["data_batch_1"][b"data"]
    for channel, value in enumerate((7, 99, 250)):
        first[0, channel * 1024 + 1 * 32 + 2] = value
    batches["batches.meta"] = {b"label_names": [b"airplane"]}
    archive = _cifar_tarball(tmp_path / "cifar-10-python.tar.gz", batches, protocol)
    train = data.load(str(archive), "train", cache_dir=None)
    assert len(read_offsets) == 3 and read_offsets == sorted(read_offsets)  # 1 pass
    test = data.load(str(archive), "test", cache_dir=None)
    assert train.images.shape == (12, 32, 32, 3) and test.images.shape == (5, 32, 32, 3)
    assert train.class_names == data.CIFAR10_CLASSES
    np.testing.assert_array_equal(train.images[0, 1, 2] * 255, [7, 99, 250])
    for split, part, names in (("train", train, ["data_batch_1", "data_batch_2",
                                                 "data_batch_3"]), ("test", test, ["test_batch"])):
        raw = np.concatenate([batches[n][b"data"] for n in names])
        planes = raw.reshape(len(raw), 3, 32, 32)
        for c in range(3):
            np.testing.assert_array_equal(part.images[..., c] * 255, planes[:, c])
        np.testing.assert_array_equal(part.labels,
                                      sum((batches[n][b"labels"] for n in names), []))


class _Exploit:
    """Unpickling this runs a shell command (the attack a dataset file could carry)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_python_tarball_refuses_code_in_pickles(tmp_path):
    marker = tmp_path / "pwned"
    batch = {b"data": _Exploit(marker), b"labels": [0]}
    archive = _cifar_tarball(tmp_path / "evil.tar.gz", {"data_batch_1": batch,
                                                        "test_batch": batch})
    assert pickle.loads(pickle.dumps(_Exploit(tmp_path / "control"))) == 0  # it would run
    assert (tmp_path / "control").exists()
    with pytest.raises((pickle.UnpicklingError, ValueError), match="system"):
        data.load(str(archive), "train", cache_dir=tmp_path / "cache")
    assert not marker.exists()
    assert _no_cache_files(tmp_path / "cache")


# ---------------------------------------------------------------------------- errors

def test_missing_path_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "cifar.tar.gz"
    with pytest.raises(ValueError, match="nowhere"):
        data.load(str(missing), cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("mode,suffix", [("w:gz", ".tar.gz"), ("w", ".tar")])
def test_truncated_archive_names_the_path(tmp_path, mode, suffix):
    # Incompressible images, so half of the archive is well past the first member.
    _make_image_folder(tmp_path / "ds", per_class=20)
    archive = _tar_folder(tmp_path / "ds", tmp_path / f"full{suffix}", "ds", mode)
    blob = archive.read_bytes()
    truncated = tmp_path / f"truncated{suffix}"
    truncated.write_bytes(blob[:len(blob) // 2])
    with pytest.raises(ValueError, match="truncated"):
        data.load(str(truncated), "test", cache_dir=tmp_path / "cache")
    assert _no_cache_files(tmp_path / "cache")


def test_not_a_dataset_file(tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    with pytest.raises(ValueError, match="notes.txt"):
        data.load(str(bogus), cache_dir=None)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_names_the_file(tmp_path, damage):
    _make_image_folder(tmp_path / "ds")
    bad = tmp_path / "ds" / "train" / "cat" / "01.png"
    bad.write_bytes(b"not an image at all" if damage == "garbage"
                    else bad.read_bytes()[:len(bad.read_bytes()) // 2])
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="train/cat/01.png"):
        data.load(str(tmp_path / "ds"), "train", cache_dir=cache)
    assert _no_cache_files(cache)  # a failed decode caches nothing
    # The other split does not contain the bad file and still loads.
    assert len(data.load(str(tmp_path / "ds"), "test", cache_dir=cache).labels) == 6


def test_corrupt_image_in_a_tarball_names_the_member(tmp_path):
    _make_image_folder(tmp_path / "ds")
    (tmp_path / "ds" / "test" / "ant" / "02.png").write_bytes(b"\x89PNG garbage")
    archive = _tar_folder(tmp_path / "ds", tmp_path / "ds.tar.gz", "ds")
    with pytest.raises(ValueError, match="test/ant/02.png"):
        data.load(str(archive), "test", cache_dir=None)


def test_missing_split_folder(tmp_path):
    _make_image_folder(tmp_path / "plain", splits=None)
    with pytest.raises(ValueError, match="test"):
        data.load(str(tmp_path / "plain"), "test", cache_dir=None)
    _make_image_folder(tmp_path / "trainonly", splits=("train",))
    with pytest.raises(ValueError, match="test"):
        data.load(str(tmp_path / "trainonly"), "test", cache_dir=None)


def test_folder_without_images(tmp_path):
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "train" / "a" / "readme.txt").write_text("no images")
    with pytest.raises(ValueError, match="no images"):
        data.load(str(tmp_path / "empty"), cache_dir=None)


def test_images_of_different_sizes(tmp_path):
    _make_image_folder(tmp_path / "ds", splits=None)
    Image.new("RGB", (WIDTH + 1, HEIGHT)).save(tmp_path / "ds" / "ant" / "99.png")
    with pytest.raises(ValueError, match="different sizes"):
        data.load(str(tmp_path / "ds"), cache_dir=None)


# ---------------------------------------------------------------------------- cache

def _counting_decoder(monkeypatch):
    calls = []
    real = data._decode_local

    def decode(path, split):
        calls.append((path, split))
        return real(path, split)

    monkeypatch.setattr(data, "_decode_local", decode)
    return calls


def test_second_load_comes_from_the_cache(tmp_path, monkeypatch):
    _make_image_folder(tmp_path / "ds")
    archive = _tar_folder(tmp_path / "ds", tmp_path / "ds.tar.gz", "ds")
    cache = tmp_path / "cache"
    first = data.load(str(archive), "train", cache_dir=cache)

    def refuse(path, split):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(data, "_decode_local", refuse)
    second = data.load(str(archive), "train", cache_dir=cache)
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.labels, first.labels)
    assert second.class_names == first.class_names
    with pytest.raises(AssertionError, match="decoded again"):  # other split: not cached yet
        data.load(str(archive), "test", cache_dir=cache)


def test_cache_file_holds_the_decoded_arrays(tmp_path):
    _make_image_folder(tmp_path / "ds")
    cache = tmp_path / "cache"
    got = data.load(str(tmp_path / "ds"), "test", cache_dir=cache)
    files = list((cache / "datasets").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"
    assert files[0].name.startswith("ds-test-")
    with np.load(files[0], allow_pickle=False) as f:
        assert f["images"].dtype == np.uint8
        np.testing.assert_array_equal(f["images"].astype(np.float32) / 255, got.images)
        np.testing.assert_array_equal(f["labels"], got.labels)


@pytest.mark.parametrize("damage", ["garbage", "empty", "tampered"])
def test_damaged_cache_is_ignored_and_rewritten(tmp_path, monkeypatch, damage):
    _make_image_folder(tmp_path / "ds")
    cache = tmp_path / "cache"
    reference = data.load(str(tmp_path / "ds"), "train", cache_dir=cache)
    (cache_file,) = (cache / "datasets").iterdir()
    if damage == "garbage":
        cache_file.write_bytes(os.urandom(1000))
    elif damage == "empty":
        cache_file.write_bytes(b"")
    else:  # a valid .npz whose images no longer match the stored checksum
        with np.load(cache_file) as f:
            arrays = dict(f)
        arrays["images"] = arrays["images"].copy()
        arrays["images"][0, 0, 0, 0] ^= 0xFF
        np.savez(cache_file, **arrays)
    calls = _counting_decoder(monkeypatch)
    again = data.load(str(tmp_path / "ds"), "train", cache_dir=cache)
    assert len(calls) == 1
    np.testing.assert_array_equal(again.images, reference.images)
    np.testing.assert_array_equal(again.labels, reference.labels)
    # ... and the cache was rewritten: the next load decodes nothing.
    data.load(str(tmp_path / "ds"), "train", cache_dir=cache)
    assert len(calls) == 1


def test_changed_source_is_decoded_again(tmp_path):
    written = _make_image_folder(tmp_path / "ds", splits=None)
    cache = tmp_path / "cache"
    before = data.load(str(tmp_path / "ds"), cache_dir=cache)
    changed = tmp_path / "ds" / "ant" / "00.png"
    new_pixels = 255 - written["ant/00.png"]
    Image.fromarray(new_pixels).save(changed)
    os.utime(changed, ns=(10**18, 10**18))  # a different mtime whatever the clock resolution
    after = data.load(str(tmp_path / "ds"), cache_dir=cache)
    assert not np.array_equal(before.images, after.images)
    assert any(np.array_equal(img * 255, new_pixels) for img in after.images)


def test_the_default_cache_is_the_cache_root_and_none_writes_nothing(tmp_path, monkeypatch):
    _make_image_folder(tmp_path / "ds")
    monkeypatch.setenv("TFADV_CACHE", str(tmp_path / "root"))
    data.load(str(tmp_path / "ds"), "train")  # cache_dir "default": $TFADV_CACHE
    (cached,) = (tmp_path / "root" / "datasets").iterdir()
    assert cached.name.startswith("ds-train-") and cached.suffix == ".npz"
    data.load(str(tmp_path / "ds"), "test", cache_dir=str(tmp_path / "given"))
    assert len(list((tmp_path / "given" / "datasets").iterdir())) == 1
    data.load(str(tmp_path / "ds"), "test", cache_dir=None)
    assert len(list((tmp_path / "root" / "datasets").iterdir())) == 1
    with pytest.raises(ValueError, match="URL of a kind the suite cannot write to"):
        data.load(str(tmp_path / "ds"), "test", cache_dir="s3://bucket/cache")


def test_no_temporary_files_left_in_the_cache(tmp_path):
    _make_image_folder(tmp_path / "ds")
    cache = tmp_path / "cache"
    for split in ("train", "test", "train"):
        data.load(str(tmp_path / "ds"), split, cache_dir=cache)
    names = sorted(p.name for p in (cache / "datasets").iterdir())
    assert len(names) == 2 and all(n.endswith(".npz") for n in names), names
    assert not any(".tmp" in n for n in names)


def test_a_failed_cache_write_leaves_nothing(tmp_path, monkeypatch):
    _make_image_folder(tmp_path / "ds")
    cache = tmp_path / "cache"

    def broken_savez(f, **arrays):
        f.write(b"PK half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        data.load(str(tmp_path / "ds"), "train", cache_dir=cache)
    assert _no_cache_files(cache)


# ---------------------------------------------------------------------------- subset

def _toy_set(n_per_class=(10, 7, 12)):
    labels = np.concatenate([np.full(k, c) for c, k in enumerate(n_per_class)]).astype(np.int64)
    # Image i is filled with the value i/1000, so every image is distinct and traceable.
    images = (np.arange(len(labels), dtype=np.float32) / 1000)[:, None, None, None] * np.ones(
        (1, 2, 2, 1), np.float32)
    return data.ImageSet(images, labels, ("a", "b", "c"))


def _source_index(subset_images):
    return np.rint(subset_images[:, 0, 0, 0] * 1000).astype(int)


def test_subset_n():
    full = _toy_set()
    part = data.subset(full, n=9, seed=3)
    assert part.images.shape == (9, 2, 2, 1) and part.class_names == full.class_names
    idx = _source_index(part.images)
    assert len(set(idx)) == 9  # no image twice
    np.testing.assert_array_equal(part.labels, full.labels[idx])  # labels travel with images
    assert data.subset(full, n=len(full.labels), seed=0).labels.shape == (29,)


def test_subset_per_class():
    full = _toy_set()
    part = data.subset(full, per_class=5, seed=1)
    np.testing.assert_array_equal(np.bincount(part.labels, minlength=3), [5, 5, 5])
    idx = _source_index(part.images)
    assert len(set(idx)) == 15
    np.testing.assert_array_equal(part.labels, full.labels[idx])
    assert not np.all(np.diff(part.labels) >= 0), "classes should be shuffled together"


def test_subset_is_seeded():
    full = _toy_set()
    for kwargs in ({"n": 8}, {"per_class": 4}):
        a, b = data.subset(full, seed=7, **kwargs), data.subset(full, seed=7, **kwargs)
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.labels, b.labels)
        c = data.subset(full, seed=8, **kwargs)
        assert not np.array_equal(a.images, c.images)


def test_subset_and_pick_per_class_refuse_zero_or_fractional_counts():
    full = _toy_set()
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="per_class must be an integer >= 1"):
            data.subset(full, per_class=bad)
        with pytest.raises(ValueError, match="per_class must be an integer >= 1"):
            data.pick_per_class(full, bad, seed=0)
    assert len(data.subset(full, per_class=np.int64(2)).labels) == 6


def test_pick_per_class_prefers_and_tops_up():
    full = _toy_set()
    prefer = full.labels != 1  # no image of class b is preferred
    picked, short = data.pick_per_class(full, 3, seed=0, prefer=prefer)
    assert short == 1 and np.bincount(picked.labels).tolist() == [3, 3, 3]
    idx = _source_index(picked.images)
    assert prefer[idx[picked.labels != 1]].all()
    np.testing.assert_array_equal(picked.labels, full.labels[idx])


def test_subset_errors():
    full = _toy_set()
    with pytest.raises(ValueError, match="n=30"):
        data.subset(full, n=30)
    with pytest.raises(ValueError):
        data.subset(full, n=0)
    with pytest.raises(ValueError, match="per_class=8"):
        data.subset(full, per_class=8)  # class b has only 7
    with pytest.raises(ValueError, match="exactly one"):
        data.subset(full, n=3, per_class=1)
    with pytest.raises(ValueError, match="exactly one"):
        data.subset(full)


# ---------------------------------------------------------------------------- real data

def test_real_cifar10_test_split(cifar_archive, tmp_path):
    test = data.load(str(cifar_archive), "test", cache_dir=tmp_path / "cache")
    assert test.images.shape == (10_000, 32, 32, 3)
    assert test.images.dtype == np.float32
    assert test.class_names == data.CIFAR10_CLASSES
    np.testing.assert_array_equal(np.bincount(test.labels), [1000] * 10)
    assert abs(float(test.images.mean()) - 0.47) < 0.03
    assert 0.0 <= test.images.min() and test.images.max() <= 1.0


def test_tensorflow_datasets_source_with_mock_data():
    """The tfds path (the online default) on tensorflow-datasets' own mock data: offline."""
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=12):
        loaded = data.load("cifar10", "test")
        prefixed = data.load("tfds:cifar10", "test")
    assert loaded.images.shape == (12, 32, 32, 3) and loaded.images.dtype == np.float32
    assert 0.0 <= loaded.images.min() and loaded.images.max() <= 1.0
    assert loaded.labels.dtype == np.int64 and loaded.labels.max() < 10
    assert len(loaded.class_names) == 10  # mock data carries no real names
    np.testing.assert_array_equal(loaded.images, prefixed.images)


def test_unknown_tensorflow_datasets_name_is_a_clear_error():
    with pytest.raises(ValueError, match="no_such_dataset_xyz"):
        data.load("no_such_dataset_xyz", "train")


# ------------------------------------------------- ImageNet subsets, PNG round trip, shards, resize

def _fake_imagenet(root: Path, sizes=((40, 30), (25, 50), (33, 33))):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 4), ("val", 3)):
        # ImageNet class ids 2, 0 and 1 (tfadv/imagenet2012_wnids.txt)
        for c, wnid in enumerate(("n01484850", "n01440764", "n01443537")):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(per_class):
                w, h = sizes[(c + i) % len(sizes)]
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG", quality=95)
    return root


def test_imagenet_subset_from_a_folder_and_a_tarball(tmp_path):
    root = _fake_imagenet(tmp_path / "imagenet")
    train = imagenet.imagenet_subset(root, "train", 2, seed=1, size=16)
    assert train.images.shape == (6, 16, 16, 3) and train.images.dtype == np.float32
    assert train.class_names == imagenet.imagenet_wnids()  # all 1,000: labels are their ids
    assert list(train.labels) == [0, 0, 1, 1, 2, 2]
    assert 0 <= train.images.min() and train.images.max() <= 1
    val = imagenet.imagenet_subset(root, "test", 5, seed=1, size=16)  # fewer than asked: all 3
    assert np.bincount(val.labels).tolist() == [3, 3, 3]
    archive = tmp_path / "imagenet.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="imagenet")
    from_tar = imagenet.imagenet_subset(archive, "train", 2, seed=1, size=16)
    np.testing.assert_array_equal(from_tar.images, train.images)
    np.testing.assert_array_equal(from_tar.labels, train.labels)
    with pytest.raises(ValueError, match="no images under"):
        imagenet.imagenet_subset(root / "train", "train", 2, seed=1, size=16)
    with pytest.raises(ValueError, match="per_class must be an integer >= 1"):
        imagenet.imagenet_subset(root, "train", 0, seed=1, size=16)


def test_png_roundtrip_quantises_to_8_bits():
    rng = np.random.default_rng(0)
    for channels in (1, 3):
        x = rng.uniform(0, 1, (3, 8, 8, channels)).astype(np.float32)
        back = data.png_roundtrip(x)
        assert back.shape == x.shape and back.dtype == np.float32
        np.testing.assert_allclose(back * 255, np.round(back * 255), atol=1e-4)
        assert np.abs(back - x).max() <= 0.5 / 255 + 1e-6


def test_resize_shrinks_with_area_and_keeps_the_range():
    rng = np.random.default_rng(0)
    images = data.ImageSet(rng.uniform(0, 1, (2, 8, 8, 3)).astype(np.float32),
                           np.array([0, 1]), ("a", "b"))
    assert data.resize(images, 8) is images
    small = data.resize(images, 4)
    assert small.images.shape == (2, 4, 4, 3) and small.images.dtype == np.float32
    np.testing.assert_allclose(small.images[0, 0, 0], images.images[0, :2, :2].mean((0, 1)),
                               atol=1e-5)  # area = the mean of each 2x2 block
    big = data.resize(images, 16)
    assert big.images.min() >= 0 and big.images.max() <= 1
    np.testing.assert_array_equal(big.labels, images.labels)


def test_tfds_names_and_paths_are_told_apart(tmp_path):
    assert data.is_tfds_name("cifar10") and data.is_tfds_name("tfds:imagenet2012")
    assert not data.is_tfds_name("cifar10-jpeg.tar.gz")
    assert not data.is_tfds_name("some/folder")
    (tmp_path / "cifar10").mkdir()
    assert not data.is_tfds_name(str(tmp_path / "cifar10"))


def test_split_is_subset_and_the_rest():
    """split() gives subset()'s images and, disjoint from them, every other image in order:
    paper 003's validation images come from the rest of the training split."""
    full = _toy_set()
    for kwargs in (dict(per_class=5), dict(n=9)):
        picked, rest = data.split(full, seed=4, **kwargs)
        np.testing.assert_array_equal(picked.images, data.subset(full, seed=4, **kwargs).images)
        ours, others = _source_index(picked.images), _source_index(rest.images)
        assert not set(ours) & set(others)
        assert sorted([*ours, *others]) == list(range(len(full.labels)))
        assert list(others) == sorted(others)
        np.testing.assert_array_equal(rest.labels, full.labels[others])
