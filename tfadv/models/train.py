"""Compiled, resumable training loops for Keras classifiers.

``fit`` trains with a ``tf.function``-compiled step, random flip + crop augmentation, and a
``tf.train.CheckpointManager`` holding the model, the optimizer, the step counter, the
augmentation RNG and the running epoch metrics. The order of the batches is a pure function
of (seed, epoch), so a job killed at any moment and started again with the same arguments
continues from its last checkpoint and ends with the same weights and metrics.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfadv import cache
from tfadv.distribute import is_chief

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def resolve_precision(name: str = "auto") -> str:
    """``auto`` picks mixed_bfloat16 on a GPU or on a CPU with AMX/AVX512-BF16, else float32."""
    if name != "auto":
        if name not in PRECISIONS:
            raise ValueError(f"precision must be 'auto' or one of {PRECISIONS}, got {name!r}")
        return name
    if tf.config.list_physical_devices("GPU"):
        return "mixed_bfloat16"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    return "mixed_bfloat16" if ("amx_bf16" in flags or "avx512_bf16" in flags) else "float32"


def set_precision(name: str = "auto") -> str:
    """Sets the global Keras dtype policy (call before building models); returns its name."""
    name = resolve_precision(name)
    keras.mixed_precision.set_global_policy(name)
    return name


def augment_flip_crop(images, rng: tf.random.Generator, pad: int = 4):
    """Random horizontal flip and random ``pad``-pixel translation (zero padding + crop)."""
    batch, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    flip = rng.uniform([batch, 1, 1, 1]) < 0.5
    images = tf.where(flip, tf.reverse(images, axis=[2]), images)
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    offsets = tf.cast(rng.uniform_full_int([batch, 2]) % (2 * pad + 1), tf.float32)
    # crop_and_resize with a box exactly height x width pixels samples integer positions.
    ph, pw = height + 2 * pad - 1, width + 2 * pad - 1
    boxes = tf.stack([offsets[:, 0] / ph, offsets[:, 1] / pw,
                      (offsets[:, 0] + height - 1) / ph, (offsets[:, 1] + width - 1) / pw], 1)
    return tf.image.crop_and_resize(padded, boxes, tf.range(batch), [height, width])


def fit(model: keras.Model, x: np.ndarray, y: np.ndarray, *, epochs: int,
        batch_size: int = 128, learning_rate: float = 1e-3, schedule: str = "cosine",
        warmup_epochs: float = 1.0, augment: bool = True, seed: int = 0,
        ckpt_dir: str | os.PathLike | None = None, checkpoint_every: int = 100,
        x_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
        log_dir: str | os.PathLike | None = None, verbose: bool = True,
        stop_after_steps: int | None = None) -> list[dict]:
    """Trains ``model`` (logits out) with Adam and sparse cross-entropy; returns epoch logs.

    schedule: ``"cosine"`` (linear warm-up for ``warmup_epochs`` then cosine decay to 0),
    ``"constant"`` (the paper's plain Adam 1e-3) or ``"slow_start_fast_decay"``
    (:class:`SlowStartFastDecay`, for adversarial fine-tuning). ``stop_after_steps`` ends the call early
    after that many global steps, as if the process were killed (for tests and time limits).
    """
    n = len(x)
    steps_per_epoch = n // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{n} training images are fewer than one batch of {batch_size}")
    total_steps = epochs * steps_per_epoch
    optimizer = keras.optimizers.Adam(_schedule(schedule, learning_rate, total_steps,
                                                int(warmup_epochs * steps_per_epoch)))
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        # float16 gradients underflow without loss scaling (bfloat16 has float32's range).
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64, name="step")
    rng = tf.random.Generator.from_seed(seed)
    running = tf.Variable(tf.zeros(3, tf.float64), name="running")  # loss sum, correct, count
    manager = None
    if ckpt_dir is not None:
        manager = restore_checkpoint(tf.train.Checkpoint(
            model=model, optimizer=optimizer, step=step, rng=rng, running=running), ckpt_dir)
    log_path, history = resume_log(log_dir, int(step.numpy()) // steps_per_epoch)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def train_step(images, labels):
        if augment:
            images = augment_flip_crop(images, rng)
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = loss_fn(labels, logits)
            scaled_loss = optimizer.scale_loss(loss)  # the identity unless float16
        grads = tape.gradient(scaled_loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1), labels), tf.float64))
        running.assign_add(tf.stack([tf.cast(loss, tf.float64) * len_f(labels), correct,
                                     len_f(labels)]))
        step.assign_add(1)

    start = int(step.numpy())
    for epoch in range(start // steps_per_epoch, epochs):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        first = int(step.numpy()) - epoch * steps_per_epoch
        bar = keras.utils.Progbar(steps_per_epoch, verbose=1 if verbose else 0,
                                  stateful_metrics=["loss", "acc"])
        if verbose:
            print(f"epoch {epoch + 1}/{epochs}" + (f" (resuming at batch {first})" if first else ""))
        tic = time.time()
        for b in range(first, steps_per_epoch):
            idx = order[b * batch_size:(b + 1) * batch_size]
            train_step(tf.constant(x[idx]), tf.constant(y[idx]))
            done = int(step.numpy())
            # The epoch's last step is checkpointed below, after its record is written and the
            # running metrics are reset: a checkpoint at an epoch boundary must not hold the
            # finished epoch's sums (the resumed run would add them to the next epoch).
            last = b + 1 == steps_per_epoch
            if manager and not last and done % checkpoint_every == 0:
                manager.save(checkpoint_number=done)
            loss_sum, correct, count = running.numpy()
            bar.update(b + 1, [("loss", loss_sum / count), ("acc", correct / count)])
            if stop_after_steps is not None and done >= stop_after_steps and not last:
                if manager:
                    manager.save(checkpoint_number=done)
                return history
        loss_sum, correct, count = running.numpy()
        record = {"epoch": epoch + 1, "step": int(step.numpy()), "loss": loss_sum / count,
                  "acc": correct / count, "lr": float(_current_lr(optimizer)),
                  "seconds": round(time.time() - tic, 2)}
        if x_val is not None:
            from tfadv.batching import predict_logits
            record["val_acc"] = float(np.mean(predict_logits(model, x_val).argmax(-1) == y_val))
        running.assign(tf.zeros(3, tf.float64))
        history.append(record)
        if log_path:  # before the checkpoint: a record past the checkpoint is dropped on resume
            write_log(log_path, history)
        if manager:
            manager.save(checkpoint_number=int(step.numpy()))
        if verbose:
            print("  " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in record.items()))
        if stop_after_steps is not None and int(step.numpy()) >= stop_after_steps:
            return history
    return history


def restore_checkpoint(ckpt: tf.train.Checkpoint, ckpt_dir) -> tf.train.CheckpointManager:
    """A manager of ``ckpt`` in ``ckpt_dir`` (a local folder or a ``gs://`` URL: TF's
    checkpoints write through tf.io.gfile), restored from its latest checkpoint if any; a
    checkpoint that cannot be restored is a ValueError saying to delete the folder.

    A non-chief worker restores from ``ckpt_dir`` too but saves into a private temporary
    folder (tf.distribute's pattern: every worker saves, only the chief's files count)."""
    ckpt_dir = str(cache.path(ckpt_dir))
    latest = tf.train.latest_checkpoint(ckpt_dir)
    own = ckpt_dir if is_chief() else tempfile.mkdtemp(prefix="tfadv-worker-ckpt-")
    manager = tf.train.CheckpointManager(ckpt, own, max_to_keep=2)
    if latest:
        try:
            ckpt.restore(latest).assert_existing_objects_matched()
        except Exception as err:  # truncated files, another model's checkpoint, ...
            raise ValueError(
                f"cannot resume from checkpoint {latest}: {err}. It is "
                f"corrupt or belongs to another model or settings: delete {ckpt_dir} to "
                "start this training from scratch.") from err
    return manager


def resume_log(log_dir, completed_epochs: int):
    """The JSONL log path (None without ``log_dir``) and the records of the epochs the
    checkpoint completed. The log may hold records past the checkpoint (killed between writing
    the record and saving the checkpoint): those are dropped, in the file too."""
    log_path = cache.path(log_dir) / "train_log.jsonl" if log_dir else None
    history = ([r for r in _read_log(log_path) if r["epoch"] <= completed_epochs]
               if completed_epochs else [])
    if log_path:
        write_log(log_path, history)
    return log_path, history


def len_f(labels):
    return tf.cast(tf.shape(labels)[0], tf.float64)


class SlowStartFastDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Jeddi et al. 2020's "slow start, fast decay", as we read it: the learning rate rises
    linearly from 0 to ``peak_lr`` over the first ``peak_at`` (60%) of the steps, then falls
    linearly to 0 over the remaining 40%, i.e. it decays 1.5x faster than it rose. The paper
    gives the shape, not the break point; ``peak_at`` is ours."""

    def __init__(self, peak_lr, total_steps, peak_at=0.6):
        self.peak_lr, self.total_steps, self.peak_at = peak_lr, total_steps, peak_at

    def __call__(self, step):
        t = (tf.cast(step, tf.float32) + 1.0) / float(self.total_steps)  # step 0 already moves
        rise = t / self.peak_at
        fall = (1.0 - t) / (1.0 - self.peak_at)
        return self.peak_lr * tf.clip_by_value(tf.minimum(rise, fall), 0.0, 1.0)

    def get_config(self):
        return {"peak_lr": self.peak_lr, "total_steps": self.total_steps, "peak_at": self.peak_at}


SCHEDULES = ("cosine", "constant", "slow_start_fast_decay")


def _schedule(kind, learning_rate, total_steps, warmup_steps):
    if kind == "constant":
        return learning_rate
    if kind == "slow_start_fast_decay":
        return SlowStartFastDecay(learning_rate, total_steps)
    if kind == "cosine":
        warmup_steps = min(warmup_steps, total_steps - 1)
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup_steps else learning_rate, max(total_steps - warmup_steps, 1),
            warmup_target=learning_rate if warmup_steps else None, warmup_steps=warmup_steps)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")


def _current_lr(optimizer):
    lr = optimizer.learning_rate
    return lr.numpy() if hasattr(lr, "numpy") else lr


def _read_log(path):
    if path is None or not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill; its epoch is redone
            pass
    return records


def write_log(path, records):
    """The JSONL training log ``path`` (local or ``gs://``) rewritten whole, atomically: GCS
    objects cannot be appended to, and a log is a few hundred lines."""
    cache.atomic_write(path, lambda f: f.write(
        "".join(json.dumps(r) + "\n" for r in records).encode()))
