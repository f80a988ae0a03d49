"""Tests for tfadv.models.train (fit, resume, precision, the SlowStartFastDecay schedule) and
tfadv.models (save/load, cached training).

The resume tests are the important ones: a run that is stopped (``stop_after_steps``) or
killed with SIGKILL, then started again with the same arguments, must end with the same
weights and the same epoch metrics as a run that was never interrupted.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import op_determinism
from tfadv import cache, data, models
from tfadv.models import train
from tfadv.models.resnet import tiny_cnn
from tfadv.models.train import SlowStartFastDecay

REPO_ROOT = Path(__file__).resolve().parents[2]

# The resume runs: 512 digits, 16 steps per epoch, 2 epochs; checkpoints every 5 steps.
N, BATCH, EPOCHS, EVERY, SEED = 512, 32, 2, 5, 0
STEPS_PER_EPOCH = N // BATCH
TOTAL_STEPS = EPOCHS * STEPS_PER_EPOCH
FIT_ARGS = dict(epochs=EPOCHS, batch_size=BATCH, checkpoint_every=EVERY, seed=SEED,
                learning_rate=0.01, warmup_epochs=0.5,
                augment=True, verbose=False)


@pytest.fixture
def deterministic_ops():
    with op_determinism():
        yield


@pytest.fixture(scope="module")
def digits512():
    train_set = data.load("digits", "train")
    return train_set.images[:N], train_set.labels[:N]


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return tiny_cnn(num_classes=10, input_shape=(8, 8, 1), width=8)


@pytest.fixture(scope="module")
def reference(digits512, tmp_path_factory):
    """The uninterrupted run: initial weights, final weights and history."""
    x, y = digits512
    model = _model(SEED)
    initial = [w.copy() for w in model.get_weights()]
    root = tmp_path_factory.mktemp("reference")
    with op_determinism():
        history = train.fit(model, x, y, ckpt_dir=root / "ckpt", log_dir=root / "log",
                            **FIT_ARGS)
    assert [r["step"] for r in history] == [STEPS_PER_EPOCH, TOTAL_STEPS]
    assert history[-1]["acc"] > history[0]["acc"]  # it learns, so the weights matter
    return {"initial": initial, "final": model.get_weights(), "history": history}


def _assert_same_run(weights, history, reference):
    assert len(weights) == len(reference["final"])
    for got, want in zip(weights, reference["final"]):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert [r["epoch"] for r in history] == [r["epoch"] for r in reference["history"]]
    for got, want in zip(history, reference["history"]):
        assert got["step"] == want["step"]
        assert got["loss"] == pytest.approx(want["loss"], abs=1e-6)
        assert got["acc"] == pytest.approx(want["acc"], abs=1e-9)
        assert got["lr"] == pytest.approx(want["lr"], abs=1e-9)


def _latest_step(ckpt_dir):
    latest = tf.train.latest_checkpoint(str(ckpt_dir))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


# ---------------------------------------------------------------------------- augmentation

def _positive_images(n, h=8, w=6, c=3, seed=0):
    # Values in [0.1, 1]: a zero in the output can only come from the padding.
    return np.random.default_rng(seed).uniform(0.1, 1.0, (n, h, w, c)).astype(np.float32)


def test_augment_without_padding_only_flips():
    x = _positive_images(64)
    out = train.augment_flip_crop(tf.constant(x), tf.random.Generator.from_seed(1), pad=0)
    out = out.numpy()
    assert out.shape == x.shape and out.dtype == np.float32
    flipped = np.array([np.allclose(o, i[:, ::-1], atol=1e-6) and not np.allclose(o, i)
                        for o, i in zip(out, x)])
    kept = np.array([np.allclose(o, i, atol=1e-6) for o, i in zip(out, x)])
    assert np.all(flipped | kept)
    assert 10 < flipped.sum() < 54  # about half of them, p < 1e-6 to fail by chance
    for o, i in zip(out, x):  # a flip only moves pixels: the multiset of values is kept
        np.testing.assert_allclose(np.sort(o.ravel()), np.sort(i.ravel()), atol=1e-6)


def _shifted(image, dy, dx):
    """image translated by (dy, dx): out[i, j] = image[i + dy, j + dx], zeros outside."""
    h, w = image.shape[:2]
    out = np.zeros_like(image)
    src = image[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
    out[max(-dy, 0):max(-dy, 0) + src.shape[0], max(-dx, 0):max(-dx, 0) + src.shape[1]] = src
    return out


def test_augment_crops_are_translations():
    pad = 4
    x = _positive_images(32, seed=2)
    out = train.augment_flip_crop(tf.constant(x), tf.random.Generator.from_seed(3), pad=pad)
    out = out.numpy()
    assert out.shape == x.shape
    shifts = set()
    for o, i in zip(out, x):
        matches = [(flip, dy, dx) for flip in (False, True)
                   for dy in range(-pad, pad + 1) for dx in range(-pad, pad + 1)
                   if np.allclose(o, _shifted(i[:, ::-1] if flip else i, dy, dx), atol=1e-5)]
        assert len(matches) == 1, f"not a flip + translation within {pad} pixels"
        shifts.add(matches[0])
    assert len(shifts) > 8  # many different offsets and both flips occur
    assert {flip for flip, _, _ in shifts} == {False, True}
    assert max(abs(dy) for _, dy, _ in shifts) == pad or max(abs(dx) for *_, dx in shifts) == pad


def test_augment_is_a_function_of_the_generator_state():
    x = tf.constant(_positive_images(16))
    a = train.augment_flip_crop(x, tf.random.Generator.from_seed(5))
    b = train.augment_flip_crop(x, tf.random.Generator.from_seed(5))
    c = train.augment_flip_crop(x, tf.random.Generator.from_seed(6))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())


# ---------------------------------------------------------------------------- precision

def test_resolve_precision():
    for name in train.PRECISIONS:
        assert train.resolve_precision(name) == name
    assert train.resolve_precision("auto") in ("float32", "mixed_bfloat16")
    assert train.resolve_precision() == train.resolve_precision("auto")
    for bad in ("bfloat16", "fp16", "", "Float32"):
        with pytest.raises(ValueError, match="precision"):
            train.resolve_precision(bad)


# ---------------------------------------------------------------------------- fit

def test_fit_rejects_bad_arguments(digits512):
    x, y = digits512
    with pytest.raises(ValueError, match="fewer than one batch"):
        train.fit(_model(), x[:10], y[:10], epochs=1, batch_size=32, verbose=False)
    with pytest.raises(ValueError, match="schedule"):
        train.fit(_model(), x, y, epochs=1, schedule="linear", verbose=False)


def test_uninterrupted_run_is_reproducible(reference, digits512, tmp_path, deterministic_ops):
    x, y = digits512
    model = _model(SEED)
    history = train.fit(model, x, y, ckpt_dir=tmp_path / "ckpt", **FIT_ARGS)
    _assert_same_run(model.get_weights(), history, reference)
    # Training really moved the weights.
    assert max(np.abs(a - b).max() for a, b in zip(reference["initial"], reference["final"])) > 0.01


@pytest.mark.parametrize("stop_at", [13, STEPS_PER_EPOCH, 4 * EVERY])
def test_resume_after_stop_after_steps(reference, digits512, tmp_path, deterministic_ops,
                                       stop_at):
    """Stopped mid-epoch 1 between checkpoints (13), exactly at the end of epoch 1 (16), and
    on a periodic checkpoint in the middle of epoch 2 (20)."""
    x, y = digits512
    ckpt, log = tmp_path / "ckpt", tmp_path / "log"
    first = train.fit(_model(SEED), x, y, ckpt_dir=ckpt, log_dir=log, stop_after_steps=stop_at,
                      **FIT_ARGS)
    assert _latest_step(ckpt) == stop_at
    assert len(first) == stop_at // STEPS_PER_EPOCH
    # The resumed run starts from a model with different weights: everything must come from
    # the checkpoint.
    model = _model(SEED + 1)
    history = train.fit(model, x, y, ckpt_dir=ckpt, log_dir=log, **FIT_ARGS)
    _assert_same_run(model.get_weights(), history, reference)
    logged = [json.loads(line) for line in (log / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in logged] == [1, 2]
    # Started again once finished, it trains no further and returns the same history.
    again = _model(SEED + 2)
    assert [r["loss"] for r in train.fit(again, x, y, ckpt_dir=ckpt, log_dir=log,
                                         **FIT_ARGS)] == [r["loss"] for r in history]
    _assert_same_run(again.get_weights(), history, reference)


def test_resume_drops_log_records_the_checkpoint_lacks(reference, digits512, tmp_path,
                                                       deterministic_ops):
    """A kill after an epoch's record was logged but before its checkpoint was saved (and one
    in the middle of writing a record) must not leave stale or broken records behind."""
    x, y = digits512
    ckpt, log = tmp_path / "ckpt", tmp_path / "log"
    train.fit(_model(SEED), x, y, ckpt_dir=ckpt, log_dir=log, stop_after_steps=13, **FIT_ARGS)
    with open(log / "train_log.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 1, "step": 16, "loss": 99.0, "acc": 0.0}) + "\n")
        f.write('{"epoch": 2, "st')  # cut short by the kill
    model = _model(SEED)
    history = train.fit(model, x, y, ckpt_dir=ckpt, log_dir=log, **FIT_ARGS)
    _assert_same_run(model.get_weights(), history, reference)
    logged = [json.loads(line) for line in (log / "train_log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in logged] == [r["loss"] for r in history]


_WORKER = textwrap.dedent("""
    # A training job as a separate process: python worker.py WORK DELAY FIT_ARGS [GATE]
    import json, os, sys, time
    from pathlib import Path
    import numpy as np
    import tensorflow as tf
    from tfadv.models import train
    from tfadv.models.resnet import tiny_cnn

    work, delay, fit_args = Path(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3])
    tf.config.experimental.enable_op_determinism()
    arrays = np.load(work / "inputs.npz")
    fetches = open(work / f"fetches-{os.getpid()}.txt", "a", buffering=1)

    class Batches(np.ndarray):
        # Slows each batch down by DELAY seconds (so that the kill lands mid-run) and records
        # how many batches this process fetched. The numbers are untouched.
        def __getitem__(self, index):
            fetches.write("1\\n")
            time.sleep(delay)
            return np.asarray(super().__getitem__(index))

    model = tiny_cnn(num_classes=10, input_shape=(8, 8, 1), width=8)
    model.set_weights([arrays[f"w{i}"] for i in range(len(model.weights))])
    if len(sys.argv) > 4:  # started early (TensorFlow imports slowly): wait for the go-ahead
        while not Path(sys.argv[4]).exists():
            time.sleep(0.02)
    history = train.fit(model, arrays["x"].view(Batches), arrays["y"], ckpt_dir=work / "ckpt",
                        **fit_args)
    np.savez(work / "final.npz", *model.get_weights())
    (work / "history.json").write_text(json.dumps(history))
""")


def _fetches(work, pid):
    path = work / f"fetches-{pid}.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_resume_after_sigkill(reference, digits512, tmp_path):
    """The real thing: SIGKILL a training process between checkpoints, run the same command
    again, and get the uninterrupted run's weights and metrics."""
    x, y = digits512
    work = tmp_path
    np.savez(work / "inputs.npz", x=x, y=y,
             **{f"w{i}": w for i, w in enumerate(reference["initial"])})
    (work / "worker.py").write_text(_WORKER)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, str(work / "worker.py"), str(work)]
    fit_args = json.dumps(FIT_ARGS)
    go = work / "go"

    def start(*args):
        return subprocess.Popen(command + list(args), cwd=REPO_ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    # The job to kill, slowed to 0.08 s per batch; and the re-run (the same command, without
    # the slow-down), started now so that its imports overlap, held back until the kill.
    job, rerun = start("0.08", fit_args), start("0", fit_args, str(go))
    try:
        deadline = time.time() + 120
        # Kill it in step 12 or 13: past the step-10 checkpoint, before the step-15 one.
        while _fetches(work, job.pid) < 2 * EVERY + 2:
            assert job.poll() is None, job.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "the job did not get to step 12"
            time.sleep(0.01)
        job.send_signal(signal.SIGKILL)
        assert job.wait(30) == -signal.SIGKILL
        killed_at, fetched = _latest_step(work / "ckpt"), _fetches(work, job.pid)
        assert not (work / "final.npz").exists()
        assert 2 * EVERY <= killed_at < TOTAL_STEPS
        assert fetched > killed_at, "the kill should lose steps past the last checkpoint"

        go.touch()
        _, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err.decode()[-3000:]
    finally:
        for proc in (job, rerun):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    # The re-run resumed from the last checkpoint, so it repeated the steps the kill lost.
    assert _fetches(work, rerun.pid) == TOTAL_STEPS - killed_at
    assert _latest_step(work / "ckpt") == TOTAL_STEPS
    with np.load(work / "final.npz") as f:
        weights = [f[f"arr_{i}"] for i in range(len(f.files))]
    # No log_dir, so the history is this call's epochs: 1 (resumed, with the metrics summed
    # before the kill restored from the checkpoint) and 2.
    history = json.loads((work / "history.json").read_text())
    _assert_same_run(weights, history, reference)


# ---------------------------------------------------------------------------- save / load

def test_save_load_round_trip(tmp_path):
    model = _model(3)
    x = np.random.default_rng(0).random((5, 8, 8, 1), dtype=np.float32)
    path = tmp_path / "net.keras"
    models.save(model, path)
    loaded = models.load(path)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(),
                                  model(x, training=False).numpy())
    assert [p.name for p in tmp_path.iterdir()] == ["net.keras"]
    # Saving again replaces the file in place.
    other = _model(4)
    models.save(other, path)
    np.testing.assert_array_equal(models.load(path)(x).numpy(), other(x).numpy())
    assert [p.name for p in tmp_path.iterdir()] == ["net.keras"]


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "net.keras"
    model = _model(3)
    models.save(model, path)
    before = path.read_bytes()

    def crash(self, filepath, *args, **kwargs):
        Path(filepath).write_bytes(b"half a zip")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of saving

    monkeypatch.setattr(keras.Model, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        models.save(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["net.keras"]


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="not found.*missing.keras"):
        models.load(tmp_path / "missing.keras")
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(os.urandom(2000))
    with pytest.raises(ValueError, match="corrupt.keras"):
        models.load(corrupt)
    truncated = tmp_path / "truncated.keras"
    models.save(_model(), tmp_path / "whole.keras")
    blob = (tmp_path / "whole.keras").read_bytes()
    truncated.write_bytes(blob[:len(blob) // 2])
    with pytest.raises(ValueError, match="truncated.keras"):
        models.load(truncated)


def test_save_needs_the_keras_suffix(tmp_path):
    for name in ("net.h5", "net", "net.keras.bak"):
        with pytest.raises(ValueError, match=".keras"):
            models.save(_model(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_build_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture"):
        models.build("resnet50", 10, (32, 32, 3))
    assert models.build("tiny_cnn", 3, (8, 8, 1)).output_shape == (None, 3)


# ---------------------------------------------------------------------------- train_cached

def _small_set():
    digits = data.load("digits", "train")
    return data.ImageSet(digits.images[:128], digits.labels[:128], digits.class_names)


def test_train_cached_trains_once(tmp_path, monkeypatch):
    small = _small_set()
    kwargs = dict(architecture="tiny_cnn", epochs=1, batch_size=32, seed=0, data_id="digits",
                  cache_dir=tmp_path, verbose=False, precision="float32")
    model, path, history = models.train_cached(small, **kwargs)
    assert path.parent == tmp_path / "models" and path.suffix == ".keras" and path.exists()
    assert path.name.startswith("tiny_cnn-")
    assert [r["epoch"] for r in history] == [1]
    info = json.loads(path.with_suffix(".json").read_text())
    assert info["config"]["epochs"] == 1 and info["history"] == json.loads(json.dumps(history))

    def no_training(*args, **kw):
        raise AssertionError("trained again instead of loading the cached model")

    monkeypatch.setattr(train, "fit", no_training)
    tic = time.time()
    cached, cached_path, cached_history = models.train_cached(small, **kwargs)
    assert time.time() - tic < 10
    assert cached_path == path
    assert cached_history == info["history"]
    for a, b in zip(cached.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Any argument that changes the weights is part of the key.
    with pytest.raises(AssertionError, match="trained again"):
        models.train_cached(small, **dict(kwargs, seed=1))
    with pytest.raises(AssertionError, match="trained again"):
        models.train_cached(data.subset(small, n=96), **kwargs)
    with pytest.raises(AssertionError, match="trained again"):
        models.train_cached(small, **dict(kwargs, data_id="other"))
    # A new classifier code version never loads the old file.
    monkeypatch.setitem(cache.VERSIONS, "classifier", cache.VERSIONS["classifier"] + 1)
    with pytest.raises(AssertionError, match="trained again"):
        models.train_cached(small, **kwargs)


def test_train_cached_defaults_to_the_cache_root(monkeypatch, tmp_path):
    """cache_dir None: $TFADV_CACHE (conftest's temporary folder in tests), never data/."""
    monkeypatch.setenv(cache.ENV, str(tmp_path / "env_root"))
    small = _small_set()
    _, path, _ = models.train_cached(small, architecture="tiny_cnn", epochs=1, batch_size=64,
                                     seed=0, data_id="digits", verbose=False,
                                     precision="float32")
    assert path.parent == tmp_path / "env_root" / "models" and path.exists()


def test_save_makes_its_folder_and_refuses_other_suffixes(tmp_path):
    model = tiny_cnn(input_shape=(8, 8, 1), width=4)
    path = tmp_path / "new" / "nested" / "m.keras"
    models.save(model, path)  # a fresh cache root has no models/ folder yet
    assert path.exists() and [p.name for p in path.parent.iterdir()] == ["m.keras"]
    assert models.load(path).output_shape == model.output_shape
    with pytest.raises(ValueError, match="end in .keras"):
        models.save(model, tmp_path / "m.h5")


def test_train_cached_applies_the_precision(tmp_path):
    small = _small_set()
    before = keras.mixed_precision.global_policy().name
    model, path, _ = models.train_cached(small, architecture="tiny_cnn", epochs=1,
                                         batch_size=64, precision="mixed_bfloat16",
                                         cache_dir=tmp_path, verbose=False)
    assert model.get_layer("conv1").dtype_policy.name == "mixed_bfloat16"
    assert models.load(path).get_layer("conv1").dtype_policy.name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == before  # not left changed


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_every_precision_trains(precision):
    """mixed_float16 needs loss scaling (fit wraps Adam in a LossScaleOptimizer): all learn."""
    from tfadv.evaluation import accuracy
    train_set, test_set = data.load("digits", "train"), data.load("digits", "test")
    previous = keras.mixed_precision.global_policy()
    try:
        train.set_precision(precision)
        keras.utils.set_random_seed(0)
        model = tiny_cnn(num_classes=10, input_shape=(8, 8, 1), width=8)
        assert model.get_layer("conv1").compute_dtype == precision.replace("mixed_", "")
        train.fit(model, train_set.images, train_set.labels, epochs=6, batch_size=32,
            learning_rate=1e-2, augment=False, verbose=False)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert accuracy(model, test_set.images, test_set.labels) > 0.8


def test_corrupt_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    x = np.random.default_rng(0).random((64, 8, 8, 1), dtype=np.float32)
    y = np.arange(64) % 10
    keras.utils.set_random_seed(0)
    train.fit(tiny_cnn(input_shape=(8, 8, 1), width=8), x, y, epochs=1, batch_size=32,
              ckpt_dir=tmp_path / "ckpt", verbose=False)
    # Another architecture's checkpoint: its variables do not match.
    with pytest.raises(ValueError, match="delete"):
        train.fit(tiny_cnn(input_shape=(8, 8, 1), width=4), x, y, epochs=2, batch_size=32,
                  ckpt_dir=tmp_path / "ckpt", verbose=False)
    # Truncated data files.
    for shard in (tmp_path / "ckpt").glob("*.data-*"):
        shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(ValueError, match="ckpt"):
        train.fit(tiny_cnn(input_shape=(8, 8, 1), width=8), x, y, epochs=2, batch_size=32,
                  ckpt_dir=tmp_path / "ckpt", verbose=False)


# ---------------------------------------------------------------------------- schedule

def test_slow_start_fast_decay_shape():
    peak, total = 1e-3, 100
    schedule = SlowStartFastDecay(peak, total)
    lrs = np.array([float(schedule(step)) for step in range(total)])
    top = int(np.argmax(lrs))
    assert lrs[0] < 0.02 * peak                      # starts near 0 (but already moves)
    assert lrs[0] > 0
    assert top == 59                                 # the 60th of 100 steps: 60%
    assert lrs[top] == pytest.approx(peak, rel=1e-5)
    assert lrs[-1] < 0.02 * peak                     # ends near 0
    assert np.all(np.diff(lrs[:top + 1]) > 0)        # strictly up ...
    assert np.all(np.diff(lrs[top:]) < 0)            # ... then strictly down
    # Falls 1.5x faster than it rose (40% of the steps vs 60%).
    rise, fall = np.diff(lrs[:top + 1]).mean(), -np.diff(lrs[top:]).mean()
    assert fall / rise == pytest.approx(1.5, rel=0.05)
    # Serialisable: rebuilt from its config it gives the same rates.
    again = SlowStartFastDecay(**schedule.get_config())
    assert float(again(30)) == pytest.approx(float(schedule(30)))
