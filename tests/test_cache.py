"""The one cache (tfadv.cache): the root's precedence, keys and code versions, digests,
atomic writes, cached arrays and resumable shards."""

import json
from pathlib import Path

import numpy as np
import pytest

from tfadv import cache


# ---------------------------------------------------------------------------- root

def test_root_precedence_argument_then_environment_then_data(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV, str(tmp_path / "env"))
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


@pytest.mark.parametrize("url", ["gs://bucket/cache", "s3://b/c", "https://example.com/x"])
def test_a_url_root_is_refused(url, monkeypatch):
    with pytest.raises(ValueError, match="is a URL; the cache must be a local folder"):
        cache.root(url)
    monkeypatch.setenv(cache.ENV, url)
    with pytest.raises(ValueError, match=url):
        cache.root()


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
    assert first.dtype == np.float32 and first.shape == (5, 2)
    assert first[:, 0].tolist() == [0, 0, 1, 1, 2]
    assert calls == [(0, 2, 0), (2, 4, 1), (4, 5, 2)]
    assert len(log["generated"]) == 3 and not log["reused"]
    with np.load(tmp_path / "set" / "shard00000.npz") as f:
        assert f["x_adv"].dtype == np.float16  # stored at half the size
    # a killed run: shard 1 missing, shard 2 corrupt -> only those two are computed again
    (tmp_path / "set" / "shard00001.npz").unlink()
    (tmp_path / "set" / "shard00002.npz").write_bytes(b"truncated")
    calls.clear()
    log = {}
    again = cache.cached_shards(tmp_path / "set", 5, 2, compute, log=log)
    np.testing.assert_array_equal(again, first)
    assert calls == [(2, 4, 1), (4, 5, 2)]
    assert len(log["reused"]) == 2 and len(log["generated"]) == 1
    assert not [p for p in (tmp_path / "set").iterdir() if p.suffix == ".tmp"]
    # a third run computes nothing
    calls.clear()
    np.testing.assert_array_equal(cache.cached_shards(tmp_path / "set", 5, 2, compute), first)
    assert calls == []


def test_cached_shards_of_nothing(tmp_path):
    out = cache.cached_shards(tmp_path / "empty", 0, 4, lambda *a: 1 / 0)
    assert out.shape == (0,) and out.dtype == np.float32
