"""Storage anywhere: the cache, models, checkpoints, logs and results written to a URL through
tf.io.gfile, only by the chief worker, and the default root of an installed package.

TensorFlow's in-memory file system ``ram://`` stands in for ``gs://`` (the same gfile calls,
no network). etils.epath knows only gs://, s3://, az:// and hf://, so the ``ram`` fixture
teaches it ``ram://`` the way it registers those (its private tables) and adds ``ram://`` to
the schemes tfadv.cache accepts, for the test only.
"""

import json
import uuid

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from etils import epath

from tfadv import cache


@pytest.fixture
def ram(monkeypatch):
    """A fresh ``ram://`` folder (a str URL) that tfadv.cache treats like a gs:// one."""
    from etils.epath import backend, gpath, register
    monkeypatch.setattr(gpath, "_URI_PREFIXES", gpath._URI_PREFIXES + ("ram://",))
    monkeypatch.setattr(gpath, "_URI_SCHEMES", gpath._URI_SCHEMES | {"ram"})
    monkeypatch.setitem(gpath._URI_MAP_ROOT, "ram://", "/ram/")
    monkeypatch.setitem(gpath._PREFIX_TO_BACKEND, "ram", backend.tf_backend)
    monkeypatch.setitem(register._URI_PREFIXES_TO_CLS, "ram://", gpath.PosixGPath)
    monkeypatch.setattr(cache, "REMOTE", cache.REMOTE + ("ram://",))
    url = f"ram://tfadv-test-{uuid.uuid4().hex}"
    yield url
    if tf.io.gfile.exists(url):
        tf.io.gfile.rmtree(url)


def _names(url):
    return sorted(tf.io.gfile.listdir(url)) if tf.io.gfile.exists(url) else []


@pytest.fixture
def worker(monkeypatch):
    """This process is worker 1 of a multi-worker job: it must not write (who is the chief:
    tfadv.distribute.is_chief, tests/test_distribute.py)."""
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}))


# ---------------------------------------------------------------------------- paths

def test_the_ram_fixture_gives_gfile_paths(ram):
    root = cache.root(ram)
    assert isinstance(root, epath.Path) and str(root) == ram and not cache.is_local(root)
    (root / "a").mkdir(parents=True)
    (root / "a" / "b.txt").write_text("hello")
    assert tf.io.gfile.exists(f"{ram}/a/b.txt")  # really in TF's file system
    assert (root / "a" / "b.txt").read_text() == "hello"
    assert [p.name for p in (root / "a").glob("*.txt")] == ["b.txt"]


def test_default_root_is_the_checkouts_data_only_in_a_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    installed = tmp_path / "site-packages" / "tfadv"
    installed.mkdir(parents=True)
    assert cache.default_root(installed) == tmp_path / "home" / ".cache" / "tfadv"
    (tmp_path / "site-packages" / "setup.cfg").write_text("[metadata]\n")  # now a checkout
    assert cache.default_root(installed) == tmp_path / "site-packages" / "data"
    assert isinstance(cache.default_root(installed), epath.Path)


# ---------------------------------------------------------------------------- writes to a URL

def test_atomic_write_to_a_url_and_a_failed_write_leaves_the_old_object(ram):
    target = f"{ram}/sub/file.bin"
    assert cache.atomic_write(target, lambda f: f.write(b"first")) is True
    assert cache.read_bytes(target) == b"first"

    def killed(f):
        f.write(b"partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.atomic_write(target, killed)
    assert cache.read_bytes(target) == b"first"
    assert _names(f"{ram}/sub") == ["file.bin"]  # no temporary object left
    with pytest.raises(RuntimeError):
        cache.atomic_write(f"{ram}/sub/new.bin", killed)
    assert _names(f"{ram}/sub") == ["file.bin"]
    cache.write_json(cache.path(ram) / "meta.json", {"n": 3})
    assert json.loads(cache.read_bytes(f"{ram}/meta.json")) == {"n": 3}


def test_cached_arrays_in_a_url(ram):
    calls = []

    def compute():
        calls.append(1)
        return {"a": np.arange(4)}

    path = cache.path(ram) / "piece.npz"
    cache.cached_arrays(path, compute)
    np.testing.assert_array_equal(cache.cached_arrays(path, compute)["a"], np.arange(4))
    assert len(calls) == 1


@pytest.mark.parametrize("lazy", [False, True])
def test_shards_in_a_url_round_trip_and_resume(ram, lazy):
    x = np.random.default_rng(2).random((11, 3, 3, 1), np.float32)
    calls = []

    def compute(start, stop, shard):
        calls.append(shard)
        return x[start:stop]

    folder = f"{ram}/adversarial/m/set"
    first = cache.cached_shards(folder, 11, 4, compute, dtype="float16", lazy=lazy)
    assert calls == [0, 1, 2] and _names(folder) == [f"shard0000{i}.npy" for i in range(3)]
    tf.io.gfile.remove(f"{folder}/shard00001.npy")  # a killed run
    calls.clear()
    log = {}
    again = cache.cached_shards(folder, 11, 4, compute, dtype="float16", log=log, lazy=lazy)
    assert calls == [1] and len(log["reused"]) == 2 and len(log["generated"]) == 1
    x16 = x.astype(np.float16)
    if lazy:
        assert isinstance(again, cache.Shards) and again.dtype == np.float16
        assert [str(p) for p in again.files] == [f"{folder}/shard0000{i}.npy" for i in range(3)]
        np.testing.assert_array_equal(again.rows([10, 0, 5, 4]), x16[[10, 0, 5, 4]])
        np.testing.assert_array_equal(again[2:9], x16[2:9].astype(np.float32))
        assert cache.digest(again) == cache.digest(first) == cache.digest(x16.astype(np.float32))
    else:
        np.testing.assert_array_equal(again, x16.astype(np.float32))


def test_report_tables_json_and_figures_in_a_url(ram):
    from tfadv import report
    from tfadv.report import figures
    out = cache.path(f"{ram}/results")
    csv = report.save_table(pd.DataFrame({"a": [1, 2]}), str(out), "t")
    assert str(csv) == f"{ram}/results/t.csv"
    assert cache.read_bytes(csv).decode().splitlines() == ["a", "1", "2"]
    assert (out / "t.md").read_text() == pd.DataFrame({"a": [1, 2]}).to_markdown(index=False) + "\n"
    report.save_json(out / "run.json", {"p": out, "x": np.float32(0.5)})
    assert json.loads((out / "run.json").read_text()) == {"p": str(out), "x": 0.5}
    plt = figures._pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    figures.save_figure(fig, out / "f.png")
    plt.close(fig)
    assert cache.read_bytes(out / "f.png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert _names(str(out)) == ["f.png", "run.json", "t.csv", "t.md"]


def _tiny_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 1))
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs)


def test_models_save_and_load_through_a_url(ram):
    from tfadv import models
    model = _tiny_model()
    path = f"{ram}/models/tiny.keras"
    models.save(model, path)
    assert _names(f"{ram}/models") == ["tiny.keras"]
    loaded = models.load(path)
    x = np.random.default_rng(0).random((2, 4, 4, 1), np.float32)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    with pytest.raises(ValueError, match="model file not found"):
        models.load(f"{ram}/models/other.keras")


def test_training_checkpoints_and_log_in_a_url_resume(ram):
    """fit with ckpt_dir and log_dir on the URL: killed after one epoch, resumed to two."""
    from tfadv.models.train import fit
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 4, 4, 1), np.float32), rng.integers(0, 3, 16)
    kwargs = dict(epochs=2, batch_size=8, augment=False, verbose=False,
                  ckpt_dir=f"{ram}/ckpt", log_dir=f"{ram}/log")
    first = fit(_tiny_model(), x, y, stop_after_steps=2, **kwargs)
    assert [r["epoch"] for r in first] == [1]
    assert tf.train.latest_checkpoint(f"{ram}/ckpt").endswith("ckpt-2")
    history = fit(_tiny_model(), x, y, **kwargs)
    assert [r["epoch"] for r in history] == [1, 2] and history[0] == first[0]
    log = cache.read_bytes(f"{ram}/log/train_log.jsonl").decode().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1, 2]


def test_the_dataset_cache_in_a_url(ram, tmp_path, monkeypatch):
    from PIL import Image

    from tfadv import data
    for split in ("train", "test"):
        for name in ("ant", "cat"):
            folder = tmp_path / "ds" / split / name
            folder.mkdir(parents=True)
            Image.fromarray(np.full((4, 4, 3), 60, np.uint8)).save(folder / "0.png")
    first = data.load(str(tmp_path / "ds"), "train", cache_dir=ram)
    (cached,) = _names(f"{ram}/datasets")
    assert cached.startswith("ds-train-") and cached.endswith(".npz")

    def no_decode(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(data, "_decode_local", no_decode)
    again = data.load(str(tmp_path / "ds"), "train", cache_dir=ram)
    np.testing.assert_array_equal(again.images, first.images)
    assert again.class_names == first.class_names


# ---------------------------------------------------------------------------- only the chief

def test_a_worker_computes_but_writes_nothing(worker, tmp_path):
    from tfadv import models, report
    assert cache.atomic_write(tmp_path / "a" / "f", lambda f: f.write(b"x")) is False
    assert cache.write_json(tmp_path / "a" / "m.json", {}) is False
    assert cache.cached_arrays(tmp_path / "p.npz", lambda: {"a": np.ones(2)})["a"].sum() == 2
    x = np.random.default_rng(3).random((7, 2, 2, 1), np.float32)
    whole = cache.cached_shards(tmp_path / "s", 7, 3, lambda a, b, i: x[a:b], dtype="float16")
    np.testing.assert_array_equal(whole, x.astype(np.float16).astype(np.float32))
    lazy = cache.cached_shards(tmp_path / "s", 7, 3, lambda a, b, i: x[a:b], dtype="float16",
                               lazy=True)
    np.testing.assert_array_equal(lazy.rows([6, 0]), x[[6, 0]].astype(np.float16))
    assert len(lazy.files) == 3 and not any(p.exists() for p in lazy.files)
    report.save_table(pd.DataFrame({"a": [1]}), tmp_path / "out", "t")
    models.save(_tiny_model(), tmp_path / "m.keras")
    assert list(tmp_path.iterdir()) == []


def test_a_worker_reads_what_the_chief_wrote_and_checkpoints_privately(tmp_path, monkeypatch):
    from tfadv.models.train import restore_checkpoint
    x = np.ones((4, 2), np.float32)
    cache.cached_shards(tmp_path / "s", 4, 2, lambda a, b, i: x[a:b])  # the chief's run
    step = tf.Variable(5)
    tf.train.CheckpointManager(tf.train.Checkpoint(step=step), str(tmp_path / "ckpt"),
                               max_to_keep=2).save()
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}))
    got = cache.cached_shards(tmp_path / "s", 4, 2, lambda *a: 1 / 0, lazy=True)
    np.testing.assert_array_equal(got[:], x)
    mine = tf.Variable(0)
    manager = restore_checkpoint(tf.train.Checkpoint(step=mine), tmp_path / "ckpt")
    assert int(mine.numpy()) == 5  # resumed from the chief's checkpoint
    manager.save()
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index"]  # untouched
    assert not manager.directory.startswith(str(tmp_path))
