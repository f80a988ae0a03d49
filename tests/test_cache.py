"""The one cache (tfadv.cache): the root's precedence, keys and code versions, digests,
atomic writes, cached arrays and resumable shards (whole or lazily read). Remote storage,
the chief-only rule and the default root of an installed package: tests/test_storage.py."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from etils import epath

from tfadv import cache


# ---------------------------------------------------------------------------- root

def test_root_precedence_argument_then_environment_then_data(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV, str(tmp_path / "env"))
    assert isinstance(cache.root(tmp_path / "arg"), epath.Path)
    assert cache.root(tmp_path / "arg") == tmp_path / "arg"
    assert cache.root(str(tmp_path / "arg")) == tmp_path / "arg"
    assert cache.root() == tmp_path / "env"
    assert cache.root(None) == tmp_path / "env"
    monkeypatch.delenv(cache.ENV)
    assert cache.root() == cache.DEFAULT_ROOT
    assert cache.DEFAULT_ROOT == Path(__file__).resolve().parents[1] / "data"
    monkeypatch.setenv(cache.ENV, "")  # empty counts as unset
    assert cache.root() == cache.DEFAULT_ROOT
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.root("~/c") == tmp_path / "home" / "c"


def test_tests_never_use_the_checkouts_data_folder():
    """conftest.py points $TFADV_CACHE at a temporary folder before any test runs."""
    assert cache.root() != cache.DEFAULT_ROOT
    assert "tfadv-test-cache-" in str(cache.root()) or cache.root().exists()


def test_a_gs_root_is_a_gfile_path():
    """No network: only the path object (its I/O goes through tf.io.gfile, tested with
    ram:// in tests/test_storage.py)."""
    root = cache.root("gs://bucket/cache")
    assert isinstance(root, epath.Path) and str(root) == "gs://bucket/cache"
    shard = root / "adversarial" / "m" / "shard00000.npy"
    assert str(shard) == "gs://bucket/cache/adversarial/m/shard00000.npy"
    assert shard.stem == "shard00000" and str(shard.with_suffix(".json")).endswith("0.json")
    assert str(shard.parent) == "gs://bucket/cache/adversarial/m"
    assert not cache.is_local(root) and cache.is_local(cache.root("/tmp/x"))
    assert cache.path(root) == root and str(cache.path(str(root))) == str(root)


@pytest.mark.parametrize("url", ["s3://b/c", "https://example.com/x", "ram://x"])
def test_a_url_the_suite_cannot_write_is_refused(url, monkeypatch):
    with pytest.raises(ValueError, match="URL of a kind the suite cannot write to.*gs://"):
        cache.root(url)
    monkeypatch.setenv(cache.ENV, url)
    with pytest.raises(ValueError, match=url):
        cache.root()


def test_a_url_mangled_by_pathlib_is_refused():
    """Path("gs://b/c") is the local gs:/b/c: once, runs wrote a local ./gs:/ folder."""
    with pytest.raises(ValueError, match="went through pathlib.Path"):
        cache.root(Path("gs://bucket/cache"))
    with pytest.raises(ValueError, match="gs:/bucket/out"):
        cache.path(Path("gs://bucket") / "out")


# ---------------------------------------------------------------------------- keys

def test_key_is_stable_and_covers_settings_kind_and_version(monkeypatch):
    settings = {"eps": 0.1, "nb_iter": 10, "nested": {"a": [1, 2]}}
    key = cache.key("adversarial", settings)
    assert len(key) == 12 and int(key, 16) >= 0
    assert cache.key("adversarial", dict(reversed(settings.items()))) == key  # order-free
    assert cache.key("adversarial", dict(settings, eps=0.2)) != key
    assert cache.key("classifier", settings) != key
    monkeypatch.setitem(cache.VERSIONS, "adversarial", cache.VERSIONS["adversarial"] + 1)
    bumped = cache.key("adversarial", settings)
    assert bumped != key  # a code fix that changes results never loads old artifacts
    monkeypatch.undo()
    assert cache.key("adversarial", settings) == key
    with pytest.raises(ValueError, match="unknown artifact kind 'weights'"):
        cache.key("weights", settings)
    assert cache.key("sr", {"path": Path("/x")}) == cache.key("sr", {"path": "/x"})


def test_every_kind_has_an_integer_version():
    assert {"dataset", "classifier", "adversarial", "finetuned", "purifier", "sr"} <= \
        set(cache.VERSIONS)
    assert all(isinstance(v, int) and v >= 1 for v in cache.VERSIONS.values())


def test_digest_tells_contents_shape_and_dtype_apart():
    x = np.arange(600, dtype=np.float32).reshape(300, 2)  # more than one 256-row chunk
    d = cache.digest(x)
    assert len(d) == 16 and cache.digest(x.copy()) == d
    assert cache.digest(np.asfortranarray(x)) == d  # memory layout does not matter
    changed = x.copy()
    changed[299, 1] += 1  # in the last chunk
    assert cache.digest(changed) != d
    assert cache.digest(x.reshape(600)) != d and cache.digest(x.reshape(2, 300)) != d
    assert cache.digest(x.astype(np.float64)) != d
    empty = cache.digest(np.zeros((0, 8, 8, 1), np.float32))  # an empty set has a digest too
    assert empty != cache.digest(np.zeros((0, 4, 4, 1), np.float32))


def test_digest_of_shards_is_the_digest_of_the_same_array(tmp_path):
    """Hashed chunk by chunk, as its float32 rows: lazy or not, the same cache keys."""
    x = np.random.default_rng(0).random((601, 3, 2, 1), np.float32)  # > 2 chunks of 256
    lazy = cache.cached_shards(tmp_path / "s", 601, 100, lambda a, b, i: x[a:b], lazy=True)
    assert cache.digest(lazy) == cache.digest(x)
    half = cache.cached_shards(tmp_path / "h", 601, 100, lambda a, b, i: x[a:b],
                               dtype="float16", lazy=True)
    assert cache.digest(half) == cache.digest(x.astype(np.float16).astype(np.float32))
    assert cache.digest(half) != cache.digest(x)
    nothing = cache.cached_shards(tmp_path / "e", 0, 4, lambda *a: 1 / 0, lazy=True)
    assert cache.digest(nothing) == cache.digest(np.empty((0,), np.float32))


# ---------------------------------------------------------------------------- writes

def test_atomic_write_replaces_whole_files(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    cache.atomic_write(target, lambda f: f.write(b"first"))
    assert target.read_bytes() == b"first"
    assert target.stat().st_mode & 0o777 == 0o644  # not mkstemp's private mode
    with pytest.raises(RuntimeError):
        cache.atomic_write(target, lambda f: (f.write(b"partial"), (_ for _ in ()).throw(
            RuntimeError("killed"))))
    assert target.read_bytes() == b"first"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_a_killed_writer_leaves_the_old_file(tmp_path):
    """SIGKILL in the middle of a write (no exception handler runs): the target keeps its
    old bytes; only the private temporary file is left."""
    target = tmp_path / "result.csv"
    cache.atomic_write(target, lambda f: f.write(b"old"))
    code = ("import os, signal, sys; from tfadv import cache\n"
            "def write(f):\n"
            "    f.write(b'half of the new'); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
            "cache.atomic_write(sys.argv[1], write)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert target.read_bytes() == b"old"
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left[-1] == "result.csv" and all(n.startswith(".result.csv.") for n in left[:-1])
    assert len(left) == 2  # the killed one's temporary file (hidden, never read)


def test_write_json_round_trips_and_stringifies_paths(tmp_path):
    path = tmp_path / "a" / "meta.json"
    cache.write_json(path, {"n": 3, "where": Path("/x/y")})
    assert json.loads(path.read_text()) == {"n": 3, "where": "/x/y"}


def test_cached_arrays_compute_once_and_recompute_a_corrupt_file(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"a": np.arange(3), "b": np.ones((2, 2), np.float32)}

    path = tmp_path / "piece.npz"
    first = cache.cached_arrays(path, compute)
    again = cache.cached_arrays(path, compute)
    assert len(calls) == 1 and set(again) == {"a", "b"}
    np.testing.assert_array_equal(again["b"], first["b"])
    path.write_bytes(b"half a file")
    np.testing.assert_array_equal(cache.cached_arrays(path, compute)["a"], np.arange(3))
    assert len(calls) == 2


def test_cached_shards_compute_once_and_resume(tmp_path):
    calls = []

    def compute(start, stop, shard):
        calls.append((start, stop, shard))
        return np.full((stop - start, 2), shard, np.float32)

    log = {}
    first = cache.cached_shards(tmp_path / "set", 5, 2, compute, dtype="float16", log=log)
    assert isinstance(first, np.ndarray) and first.dtype == np.float32
    assert first.shape == (5, 2) and first[:, 0].tolist() == [0, 0, 1, 1, 2]
    assert calls == [(0, 2, 0), (2, 4, 1), (4, 5, 2)]
    assert len(log["generated"]) == 3 and not log["reused"]
    assert sorted(p.name for p in (tmp_path / "set").iterdir()) == [
        "shard00000.npy", "shard00001.npy", "shard00002.npy"]
    stored = np.load(tmp_path / "set" / "shard00000.npy", mmap_mode="r")
    assert stored.dtype == np.float16 and stored.shape == (2, 2)  # half the size, mappable
    # a killed run: shard 1 missing, shard 2 cut short -> only those two are computed again
    (tmp_path / "set" / "shard00001.npy").unlink()
    shard2 = tmp_path / "set" / "shard00002.npy"
    shard2.write_bytes(shard2.read_bytes()[:-2])
    calls.clear()
    log = {}
    again = cache.cached_shards(tmp_path / "set", 5, 2, compute, dtype="float16", log=log)
    np.testing.assert_array_equal(again, first)
    assert calls == [(2, 4, 1), (4, 5, 2)]
    assert len(log["reused"]) == 1 and len(log["generated"]) == 2
    assert not [p for p in (tmp_path / "set").iterdir() if p.suffix == ".tmp"]
    # shards of another storage dtype are not served (the key covers the dtype anyway)
    calls.clear()
    cache.cached_shards(tmp_path / "set", 5, 2, compute, dtype="float32")
    assert len(calls) == 3
    # a third run computes nothing
    calls.clear()
    np.testing.assert_array_equal(cache.cached_shards(tmp_path / "set", 5, 2, compute), first)
    assert calls == []


def test_cached_shards_of_nothing(tmp_path):
    out = cache.cached_shards(tmp_path / "empty", 0, 4, lambda *a: 1 / 0)
    assert out.shape == (0,) and out.dtype == np.float32
    lazy = cache.cached_shards(tmp_path / "empty", 0, 4, lambda *a: 1 / 0, lazy=True)
    assert len(lazy) == 0 and lazy.shape == (0,) and lazy.files == []
    assert list(lazy.chunks(3)) == [] and lazy.rows([]).shape == (0,)


def test_old_npz_shards_are_ignored(tmp_path):
    """The .npz format of adversarial version 2: never read, the set is computed again."""
    assert cache.VERSIONS["adversarial"] >= 3
    (tmp_path / "set").mkdir()
    np.savez(tmp_path / "set" / "shard00000.npz", x_adv=np.zeros((2, 2), np.float32))
    out = cache.cached_shards(tmp_path / "set", 2, 2, lambda a, b, i: np.ones((b - a, 2)))
    assert out.tolist() == [[1, 1], [1, 1]]


# ---------------------------------------------------------------------------- lazy shards

@pytest.fixture
def lazy_set(tmp_path):
    """23 images of 4x3x2 in shards of 5 (the last holds 3), stored as float16."""
    x = np.random.default_rng(1).random((23, 4, 3, 2), np.float32)
    shards = cache.cached_shards(tmp_path / "lazy", 23, 5, lambda a, b, i: x[a:b],
                                 dtype="float16", lazy=True)
    return x.astype(np.float16), shards


def test_lazy_shards_describe_the_set_and_map_the_files(lazy_set, tmp_path):
    x16, s = lazy_set
    assert isinstance(s, cache.Shards)
    assert len(s) == 23 and s.shape == (23, 4, 3, 2) and s.dtype == np.float16
    assert [p.name for p in s.files] == [f"shard0000{i}.npy" for i in range(5)]
    assert all(isinstance(p, epath.Path) and p.exists() for p in s.files)
    assert all(isinstance(part, np.memmap) for part in s._parts)  # mapped, not loaded
    again = cache.cached_shards(tmp_path / "lazy", 23, 5, lambda *a: 1 / 0, dtype="float16",
                                lazy=True)  # reused: nothing computed
    assert all(isinstance(part, np.memmap) for part in again._parts)
    np.testing.assert_array_equal(np.asarray(again), x16.astype(np.float32))


def test_lazy_rows_in_any_order_across_shards(lazy_set):
    x16, s = lazy_set
    order = [22, 0, 7, 7, 5, 4, 19, 13]  # shard boundaries, repeats, backwards
    got = s.rows(order)
    assert got.dtype == np.float16 and got.shape == (8, 4, 3, 2)
    np.testing.assert_array_equal(got, x16[order])
    np.testing.assert_array_equal(s.rows(np.arange(23)[::-1]), x16[::-1])
    assert s.rows(np.array([], np.int64)).shape == (0, 4, 3, 2)
    for bad in ([23], [-1], [[1, 2]], [0.5]):
        with pytest.raises(ValueError, match="row"):
            s.rows(bad)


def test_lazy_slices_and_chunks_are_float32_copies(lazy_set):
    x16, s = lazy_set
    for item in (slice(3, 12), slice(None), slice(20, 99), slice(1, 20, 4), slice(-4, None)):
        got = s[item]
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, x16[item].astype(np.float32))
    got[:] = 7  # a copy: the stored set is untouched
    assert (s[-4:] != 7).all()
    with pytest.raises(ValueError, match="slice"):
        s[3]
    chunks = list(s.chunks(10))
    assert [start for start, _ in chunks] == [0, 10, 20]
    assert [len(rows) for _, rows in chunks] == [10, 10, 3]
    np.testing.assert_array_equal(np.concatenate([r for _, r in chunks]), x16.astype(np.float32))
    with pytest.raises(ValueError, match="chunk size"):
        list(s.chunks(0))


def test_lazy_and_whole_sets_agree(lazy_set, tmp_path):
    x16, s = lazy_set
    whole = cache.cached_shards(tmp_path / "lazy", 23, 5, lambda *a: 1 / 0, dtype="float16")
    np.testing.assert_array_equal(whole, s[:])
    assert cache.digest(whole) == cache.digest(s)
