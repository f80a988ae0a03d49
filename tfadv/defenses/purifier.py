"""The learned purifier of paper 003: a pix2pix generator trained to map adversarial images
back to their clean originals, with a perceptual term and the paper's multi-step loss weights.

Objective (paper eqs. 1-4, pix2pix + perceptual loss after Zhang & Sakurai 2021):

    G* = arg min_G max_D  L_cGAN(G, D) + lambda_pix * L_L1(G) + lambda_perc * L_perc(G)

* L_cGAN: the conditional GAN loss. D (a PatchGAN) sees (input, target) pairs; as in the TF
  pix2pix tutorial, G minimises BCE(D(x, G(x)), real) and D minimises
  BCE(D(x, y), real) + BCE(D(x, G(x)), fake), both on logits. The noise z is G's dropout.
* L_L1 = mean |y - G(x)| on [0, 1] pixels (``l1_range="signed"``: on pix2pix's [-1, 1],
  twice as large, which doubles lambda_pix against the GAN term).
* L_perc: :func:`tfadv.models.perceptual.perceptual_loss` on a frozen feature network
  (VGG19 in the paper; ``features=None`` drops the term).

Loss weights (paper 3.2, "multi-step"): lambda_pix = 100 throughout; lambda_perc = 100 for
the first 40% of the epochs, 50 for the next 30%, 1 for the last 30% (100 epochs: 0-39,
40-69, 70-99). "single" is the fixed (100, 1) the paper compares against. "constant" (not
the paper's) keeps the first phase's (100, 100) for every epoch: with a perceptual network
whose feature differences are small next to VGG19's (the classifier-features substitute used
offline), the last phase's lambda_perc = 1 all but drops the term; this schedule measures
what that costs (notes/RESULTS.md, paper 003).
:func:`schedule_table` lists the phases for any number of epochs.

Training follows :func:`tfadv.models.train.fit`: Adam(2e-4, beta_1 0.5) for both networks
(pix2pix's), a checkpoint holding everything that changes (both networks, both optimizers,
the step counter, the dropout RNG states and the running epoch sums), batches in an order
that is a pure function of (seed, epoch): a run killed at any point and started again with
the same arguments ends with the same weights as one never interrupted. At scale
(notes/DECISIONS.md, "At the paper's scale"): pairs stream from memory maps through
``tf.data``; one compiled call runs many steps under a ``tf.distribute`` strategy (the
global batch split over the replicas, synchronized BatchNorm, dropout per replica), XLA
optional; a checkpoint resumes under another replica count.
"""

from __future__ import annotations

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfadv import cache, checks, distribute
from tfadv.batching import map_batches
from tfadv.defenses.pairs import check_pairs, epoch_batches, pair_dataset
from tfadv.models.perceptual import perceptual_loss
from tfadv.models.train import restore_checkpoint, resume_log, write_log

LAMBDA_PIX = 100.0
# (share of the epochs, lambda_perc) of the multi-step schedule, paper section 3.2.
MULTI_STEP_PHASES = ((0.4, 100.0), (0.3, 50.0), (0.3, 1.0))
SINGLE_STEP_LAMBDA_PERC = 1.0
STEPS = ("multi", "single", "constant")
L1_RANGES = {"unit": 1.0, "signed": 2.0}  # pixels in [0, 1] (ours) or [-1, 1] (pix2pix's)
LOSS_NAMES = ("gen_gan", "gen_l1", "gen_perc", "gen_total", "disc_loss")
# The purifier code version is tfadv.cache.VERSIONS["purifier"], part of every cached
# purifier's key: bump it with any change to the networks or the training that changes the
# weights for the same settings, or old caches would be loaded as new ones.


def _phase_ends(epochs: int) -> tuple[int, int]:
    """The epochs at which phases 1 and 2 end (exclusive): 40% and 70% of ``epochs``, rounded
    half up with integers (no float surprises): 100 -> 40, 70; 10 -> 4, 7; 5 -> 2, 4.
    Phase 1 (perceptual emphasis) always gets at least one epoch: 1 -> 1, 1; 2 -> 1, 1."""
    end1 = max(1, (4 * epochs + 5) // 10)
    end2 = max(end1, (7 * epochs + 5) // 10)
    return end1, end2


def _check_schedule(epochs, steps):
    if steps not in STEPS:
        raise ValueError(f"steps must be one of {STEPS} (multi, single: paper 003 section "
                         f"3.2), got {steps!r}")
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")


def loss_weights(epoch: int, epochs: int, steps: str = "multi") -> tuple[float, float]:
    """``(lambda_pix, lambda_perc)`` for 0-based ``epoch`` of ``epochs`` (paper section 3.2)."""
    _check_schedule(epochs, steps)
    if not 0 <= epoch < epochs:
        raise ValueError(f"epoch must be in [0, {epochs}), got {epoch}")
    if steps == "single":
        return LAMBDA_PIX, SINGLE_STEP_LAMBDA_PERC
    if steps == "constant":
        return LAMBDA_PIX, MULTI_STEP_PHASES[0][1]
    end1, end2 = _phase_ends(epochs)
    phase = 0 if epoch < end1 else 1 if epoch < end2 else 2
    return LAMBDA_PIX, MULTI_STEP_PHASES[phase][1]


def schedule_table(epochs: int, steps: str = "multi") -> list[dict]:
    """The schedule's phases (empty ones left out), 0-based epochs as in the paper:
    for run.json and the training printout."""
    _check_schedule(epochs, steps)
    bounds = [(0, epochs)] if steps != "multi" else \
        list(zip((0, *_phase_ends(epochs)), (*_phase_ends(epochs), epochs)))
    rows = []
    for first, end in bounds:
        if end > first:
            lambda_pix, lambda_perc = loss_weights(first, epochs, steps)
            rows.append({"phase": len(rows) + 1, "first_epoch": first, "last_epoch": end - 1,
                         "epochs": end - first, "lambda_pix": lambda_pix,
                         "lambda_perc": lambda_perc})
    return rows


def schedule_text(epochs: int, steps: str = "multi") -> str:
    """The loss-weight schedule in one line, for logs and result notes."""
    return (f"loss-weight schedule ({steps}-step, {epochs} epochs): " + "; ".join(
        f"epochs {p['first_epoch']}-{p['last_epoch']}: lambda_pix={p['lambda_pix']:g}, "
        f"lambda_perc={p['lambda_perc']:g}" for p in schedule_table(epochs, steps)))


def make_optimizer(learning_rate: float = 2e-4, beta_1: float = 0.5):
    """pix2pix's Adam; float16 gradients underflow without loss scaling (bfloat16's do not)."""
    optimizer = keras.optimizers.Adam(learning_rate, beta_1=beta_1)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def make_train_step(generator: keras.Model, discriminator: keras.Model,
                    features: keras.Model | None, gen_optimizer, disc_optimizer,
                    replicas: int = 1, l1_range: str = "unit"):
    """One pix2pix update of both networks on a batch (input, target), as a plain function
    for ``tf.function`` or ``strategy.run``.

    Returns ``step(inputs, targets, lambda_pix, lambda_perc) -> float32 [5]`` losses in the
    order of :data:`LOSS_NAMES`. The lambdas are float32 scalar tensors: a schedule change
    feeds new values without retracing. All losses are float32 whatever the precision policy.
    ``replicas``: the replicas the global batch is split over. Each replica's loss is its
    local mean divided by ``replicas``; the optimizer sums the replicas' gradients, so the
    update is that of the mean over the global batch (the same as one device on the same
    batch, with synchronized BatchNorm: :func:`build_networks`).
    """
    keras_bce = keras.losses.BinaryCrossentropy(from_logits=True)
    l1_scale = _l1_scale(l1_range)

    def bce(labels, logits):  # Keras losses divide by the replicas themselves: undone here
        value = keras_bce(labels, logits)
        return value * replicas if replicas > 1 else value

    def step(inputs, targets, lambda_pix, lambda_perc):
        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            fake = generator(inputs, training=True)
            real_logits = tf.cast(discriminator([inputs, targets], training=True), tf.float32)
            fake_logits = tf.cast(discriminator([inputs, fake], training=True), tf.float32)
            gen_gan = bce(tf.ones_like(fake_logits), fake_logits)
            gen_l1 = l1_scale * tf.reduce_mean(tf.abs(targets - tf.cast(fake, tf.float32)))
            gen_perc = (perceptual_loss(features, fake, targets) if features is not None
                        else tf.constant(0.0))
            gen_total = gen_gan + lambda_pix * gen_l1 + lambda_perc * gen_perc
            disc_loss = (bce(tf.ones_like(real_logits), real_logits)
                         + bce(tf.zeros_like(fake_logits), fake_logits))
            if replicas > 1:  # one device: no division, the exact single-device numbers
                gen_share, disc_share = gen_total / replicas, disc_loss / replicas
            else:
                gen_share, disc_share = gen_total, disc_loss
            gen_scaled = gen_optimizer.scale_loss(gen_share)  # the identity unless float16
            disc_scaled = disc_optimizer.scale_loss(disc_share)
        gen_vars, disc_vars = generator.trainable_variables, discriminator.trainable_variables
        gen_optimizer.apply_gradients(zip(gen_tape.gradient(gen_scaled, gen_vars), gen_vars))
        disc_optimizer.apply_gradients(zip(disc_tape.gradient(disc_scaled, disc_vars),
                                           disc_vars))
        return tf.stack([gen_gan, gen_l1, gen_perc, gen_total, disc_loss])

    return step


def _l1_scale(l1_range: str) -> float:
    if l1_range not in L1_RANGES:
        raise ValueError(f"l1_range must be one of {tuple(L1_RANGES)}, got {l1_range!r}")
    return L1_RANGES[l1_range]


def build_networks(shape, *, base_filters: int, name: str, strategy=None,
                   dropout_blocks: int = 3):
    """The generator and discriminator of a purifier, built in ``strategy``'s scope.

    With more than one replica, BatchNorm is synchronized across replicas so that a global
    batch is normalised as one batch: the same update on 1, 2 or 8 devices (and a checkpoint
    resumes under another replica count). One replica keeps Keras' plain BatchNorm (the
    exact numbers of the single-device code).
    """
    from tfadv.models import pix2pix
    strategy = strategy or tf.distribute.get_strategy()
    synced = strategy.num_replicas_in_sync > 1
    with strategy.scope():
        generator = pix2pix.unet_generator(shape, base_filters=base_filters, name=name,
                                           synchronized=synced, dropout_blocks=dropout_blocks)
        discriminator = pix2pix.patchgan_discriminator(shape, base_filters=base_filters,
                                                       synchronized=synced)
    return generator, discriminator


def train_purifier(x_adv, x_clean, *, generator: keras.Model,
                   discriminator: keras.Model, features: keras.Model | None, epochs: int,
                   steps: str = "multi", batch_size: int = 1, learning_rate: float = 2e-4,
                   beta_1: float = 0.5, seed: int = 0,
                   ckpt_dir: str | os.PathLike | None = None, checkpoint_minutes: float = 15.0,
                   log_dir: str | os.PathLike | None = None, verbose: bool = True,
                   stop_after_steps: int | None = None, monitor=None, strategy=None,
                   steps_per_call: int = 32, jit_compile: bool = False,
                   l1_range: str = "unit") -> list[dict]:
    """Trains ``generator`` to map ``x_adv[i]`` to ``x_clean[i]`` (pix2pix + perceptual loss,
    loss weights from :func:`loss_weights`); returns one record per epoch.

    Images of the generator's input shape, paired by index: float32 [0, 1] or uint8 arrays,
    memory maps, lazily read shard sets or :class:`~tfadv.defenses.pairs.Float32Rows`; a
    ``tf.data`` pipeline reads each batch from them, so host memory does not grow with the
    number of pairs.
    ``batch_size`` is the global batch (pix2pix's is 1); under ``strategy`` (default: the
    current one) it is split over the replicas and must be a multiple of their number; the
    networks and ``features`` must have been built in its scope (:func:`build_networks`).
    One compiled call runs ``steps_per_call`` updates (``jit_compile``: through XLA, as a
    TPU needs) and reads the losses once. ``features=None`` trains without the perceptual term;
    ``l1_range``: the L1 term on [0, 1] pixels ("unit") or pix2pix's [-1, 1] ("signed").

    ``ckpt_dir`` makes the run resumable: a checkpoint at every epoch's end and after any
    call that ends ``checkpoint_minutes`` after the last one; it may be restored under
    another replica count (the position is the global step, the batches a pure function of
    (seed, epoch)). ``log_dir`` gets ``train_log.jsonl``. ``stop_after_steps`` ends the call
    early after that many global steps, as if the process were killed (tests, time limits).
    ``monitor(generator) -> dict`` is called after every epoch and its numbers join the
    epoch's record; it must not change the generator. Log records count epochs from 1; the
    schedule's epoch index is 0-based as in the paper.
    """
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    shape = tuple(generator.input_shape[1:])
    check_pairs(x_adv, x_clean, shape)
    _check_schedule(epochs, steps)
    batch_size = checks.integer("batch_size", batch_size, 1)
    steps_per_call = checks.integer("steps_per_call", steps_per_call, 1)
    if batch_size % replicas:
        raise ValueError(f"batch_size {batch_size} is the global batch: it must be a multiple "
                         f"of the {replicas} replicas (e.g. {replicas * max(1, batch_size // replicas)})")
    n = len(x_adv)
    steps_per_epoch = n // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{n} training pairs are fewer than one batch of {batch_size}")
    with strategy.scope():
        gen_optimizer = make_optimizer(learning_rate, beta_1)
        disc_optimizer = make_optimizer(learning_rate, beta_1)
        gen_optimizer.build(generator.trainable_variables)
        disc_optimizer.build(discriminator.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, name="step")
        # float32 (a TPU has no float64): per-epoch sums of means of order 1-100 over at most
        # ~10^5 steps keep ~3 significant digits more than the log prints
        running = tf.Variable(tf.zeros(len(LOSS_NAMES) + 1, tf.float32), name="running")
    manager = None
    if ckpt_dir is not None:
        manager = restore_checkpoint(tf.train.Checkpoint(
            generator=generator, discriminator=discriminator, gen_optimizer=gen_optimizer,
            disc_optimizer=disc_optimizer, step=step, running=running,
            rng=_seed_states(generator) + _seed_states(discriminator)), ckpt_dir)
    log_path, history = resume_log(log_dir, int(step.numpy()) // steps_per_epoch)
    update = make_train_step(generator, discriminator, features, gen_optimizer, disc_optimizer,
                             replicas=replicas, l1_range=l1_range)
    replica_step = tf.function(update, jit_compile=True) if jit_compile else update

    @tf.function
    def train_steps(iterator, count, lambda_pix, lambda_perc):
        for _ in tf.range(count):  # one host round trip per call, not per step
            inputs, targets = next(iterator)
            losses = strategy.run(replica_step, args=(inputs, targets, lambda_pix, lambda_perc))
            losses = strategy.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None)
            running.assign_add(tf.concat([losses, [1.0]], 0))
            step.assign_add(1)

    if verbose and not int(step.numpy()):
        print(schedule_text(epochs, steps) + f"; global batch {batch_size} over {replicas} "
              f"replica(s), {steps_per_call} steps per call", flush=True)
    last_save, done = time.monotonic(), int(step.numpy())
    start_epoch = done // steps_per_epoch
    if start_epoch >= epochs:  # finished before: nothing left to train
        return history
    iterator = pair_dataset(x_adv, x_clean, np.concatenate(
        [epoch_batches(n, batch_size, seed, epoch) for epoch in range(start_epoch, epochs)]
    )[done - start_epoch * steps_per_epoch:], strategy)
    for epoch in range(start_epoch, epochs):
        lambda_pix, lambda_perc = loss_weights(epoch, epochs, steps)
        lambdas = (tf.constant(lambda_pix, tf.float32), tf.constant(lambda_perc, tf.float32))
        first = done - epoch * steps_per_epoch
        bar = keras.utils.Progbar(steps_per_epoch, verbose=1 if verbose else 0,
                                  stateful_metrics=list(LOSS_NAMES))
        if verbose:
            print(f"epoch {epoch + 1}/{epochs} (lambda_pix={lambda_pix:g}, "
                  f"lambda_perc={lambda_perc:g})"
                  + (f", resuming at batch {first}" if first else ""))
        tic, b = time.time(), first
        while b < steps_per_epoch:
            count = min(steps_per_call, steps_per_epoch - b)
            if stop_after_steps is not None:
                count = max(1, min(count, stop_after_steps - done))
            train_steps(iterator, tf.constant(count, tf.int32), *lambdas)
            b, done = b + count, done + count
            bar.update(b, list(zip(LOSS_NAMES, _means(running))))
            if b == steps_per_epoch:
                break  # checkpointed below, after the epoch's record
            stopping = stop_after_steps is not None and done >= stop_after_steps
            if manager and (stopping or time.monotonic() - last_save
                            >= 60 * checkpoint_minutes):
                manager.save(checkpoint_number=done)
                last_save = time.monotonic()
            if stopping:
                return history
        record = {"epoch": epoch + 1, "step": done, "lambda_pix": lambda_pix,
                  "lambda_perc": lambda_perc, **dict(zip(LOSS_NAMES, _means(running))),
                  "seconds": round(time.time() - tic, 2)}
        if monitor is not None:
            record.update({k: float(v) for k, v in monitor(generator).items()})
        running.assign(tf.zeros_like(running))
        history.append(record)
        if log_path:  # before the checkpoint: a record past the checkpoint is dropped on resume
            write_log(log_path, history)
        if manager:
            manager.save(checkpoint_number=done)
            last_save = time.monotonic()
        if verbose:
            print("  " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in record.items()))
        if stop_after_steps is not None and done >= stop_after_steps:
            return history
    return history


def train_cached(name: str, x_adv, x_clean, *, pairs_id: str,
                 features: keras.Model | None, cache_dir: str | os.PathLike | None = None,
                 base_filters: int = 64, batch_size: int = 1, epochs: int = 100,
                 steps: str = "multi", learning_rate: float = 2e-4, beta_1: float = 0.5,
                 seed: int = 0, precision: str = "float32", verbose: bool = True,
                 monitor=None, strategy=None, steps_per_call: int = 32,
                 jit_compile: bool = False, checkpoint_minutes: float = 15.0,
                 dropout_blocks: int = 3, l1_range: str = "unit"):
    """The purifier ``name`` (a pix2pix generator) trained on these pairs once and cached as
    ``<cache root>/models/purifier_<name>-<key>.keras`` (+ ``.json`` with its settings and
    history; :mod:`tfadv.cache`);
    returns ``(generator, path, history, trained_now)``.

    ``pairs_id`` names the training pairs (a digest of them) and, with every setting here and
    the feature network's description, makes the cache key. While training, a checkpoint
    beside the file is written every epoch: a killed run continues where it stopped.
    ``verbose``: progress bars and per-epoch losses (the start is always printed).
    ``monitor``: as :func:`train_purifier`'s; it only adds to the log, so it is not part of
    the cache key (a purifier loaded from the cache has the history it was trained with).
    ``dropout_blocks`` (:func:`tfadv.models.pix2pix.unet_generator`) and ``l1_range``
    (:func:`train_purifier`) are ablations, in the key when not pix2pix's / ours (3, "unit").
    ``strategy``, ``steps_per_call``, ``jit_compile``, ``checkpoint_minutes``: how it is run
    (:func:`train_purifier`), not what is learnt, so not part of the key either.
    """
    from tfadv import cache, models
    from tfadv.models import perceptual
    described = perceptual.describe(features)
    settings = {"name": name, "pairs": pairs_id,
                "shape": list(x_adv.shape[1:]),
                "base_filters": base_filters, "batch_size": batch_size, "epochs": epochs,
                "steps": steps, "learning_rate": learning_rate, "beta_1": beta_1, "seed": seed,
                "precision": precision,
                "perceptual": {k: described[k] for k in ("network", "weights", "layers")}}
    # (settings at their defaults stay out: the keys of earlier purifiers do not change)
    if described["normalisation"] != "none":
        settings["perceptual"]["normalisation"] = described["normalisation"]
    _l1_scale(l1_range)
    settings.update({k: v for k, v in (("dropout_blocks", dropout_blocks),
                                       ("l1_range", l1_range))
                     if v != {"dropout_blocks": 3, "l1_range": "unit"}[k]})
    key = cache.key("purifier", settings)
    path = cache.root(cache_dir) / "models" / f"purifier_{name}-{key}.keras"
    info_path = path.with_suffix(".json")
    if path.exists():
        history = json.loads(info_path.read_text())["history"] if info_path.exists() else []
        return models.load(path), path, history, False
    strategy = strategy or tf.distribute.get_strategy()
    print(f"training purifier {name} on {len(x_adv)} pairs ({epochs} epochs, global batch "
          f"{batch_size} over {strategy.num_replicas_in_sync} replica(s), {steps}-step loss "
          "weights)", flush=True)
    keras.utils.set_random_seed(seed)
    generator, discriminator = build_networks(tuple(x_adv.shape[1:]), base_filters=base_filters,
                                              name=f"purifier_{name}", strategy=strategy,
                                              dropout_blocks=dropout_blocks)
    history = train_purifier(
        x_adv, x_clean, generator=generator, discriminator=discriminator,
        features=in_scope(features, strategy), epochs=epochs, steps=steps,
        batch_size=batch_size, learning_rate=learning_rate, beta_1=beta_1, seed=seed,
        ckpt_dir=path.with_suffix(".ckpt"), log_dir=path.with_suffix(""), verbose=verbose,
        monitor=monitor, strategy=strategy, steps_per_call=steps_per_call,
        jit_compile=jit_compile, checkpoint_minutes=checkpoint_minutes, l1_range=l1_range)
    models.save(generator, path)
    cache.write_json(info_path, {"settings": settings, "history": history})
    checkpoints = path.with_suffix(".ckpt")
    if distribute.is_chief() and checkpoints.exists():  # the .keras is the cache now
        checkpoints.rmtree()
    return generator, path, history, True


def in_scope(features: keras.Model | None, strategy):
    """``features`` usable by ``strategy``'s replicas: a frozen copy made in its scope (a
    TPU or several devices need their own variables), the model itself without a strategy."""
    if features is None or strategy is tf.distribute.get_strategy():
        return features
    with strategy.scope():
        copy = keras.models.clone_model(features)
        copy.set_weights(features.get_weights())
    copy.trainable = False
    if hasattr(features, "tfadv_description"):
        copy.tfadv_description = features.tfadv_description
    return copy


def purify(generator: keras.Model, x: np.ndarray, *, batch_size: int = 64,
           dropout: bool = False) -> np.ndarray:
    """``generator`` applied to ``x`` in batches: float32 images in [0, 1] of x's shape.

    Inference mode: BatchNorm uses its moving statistics and dropout is off, so the same
    image always gives the same output. ``dropout=True`` keeps pix2pix's test-time dropout
    (its noise z; BatchNorm still uses its moving statistics) with the generator's dropout
    random state put back afterwards: the same call gives the same images again.
    """
    from tfadv.models import pix2pix
    batch_size = checks.integer("batch_size", batch_size, 1)
    x = checks.images(x, "purify input", shape=generator.input_shape[1:], copy=False)

    def run(part):
        return generator(tf.constant(part), training=False)

    if not dropout:
        return np.clip(map_batches(run, x, batch_size=batch_size), 0.0, 1.0)
    states = _seed_states(generator)
    saved = [v.numpy() for v in states]
    try:
        with pix2pix.test_time_dropout():
            out = map_batches(run, x, batch_size=batch_size)
    finally:
        for v, value in zip(states, saved):
            v.assign(value)
    return np.clip(out, 0.0, 1.0)


def _seed_states(model: keras.Model) -> list:
    """The state variables of the model's Keras SeedGenerators (its dropout RNGs).

    tf.train.Checkpoint does not save them with the model, yet they decide every dropout
    mask: a resumed run needs them to continue the same random sequence.
    """
    return [v.value for v in model.variables if v.name == "seed_generator_state"]


def _means(running: tf.Variable) -> list[float]:
    sums = running.numpy()
    return [float(s / sums[-1]) if sums[-1] else 0.0 for s in sums[:-1]]


def load(path: str | os.PathLike):
    """The purifier saved at ``path`` (a ``.keras`` generator, loaded with ``safe_mode``) as a
    defense object, ``tfadv.defenses.make("purifier", ...)``, identified by the file's name."""
    from tfadv import defenses, models
    return defenses.make("purifier", generator=models.load(path), model_id=cache.path(path).stem)
