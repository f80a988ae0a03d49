"""What every native compiled attack shares: padded batches of fixed shapes, float32 losses,
one graph per model, and replicas of a ``tf.distribute`` strategy.

- **Shapes.** A compiled call always sees a batch of ``padded_rows(n, batch_size)`` rows: the
  batch size itself for every full batch, and for the tail (or a small call) its own length,
  at least ``MIN_ROWS`` (under XLA: the next power of two), the rows being real images
  repeated. A traced function generalises its batch axis after the second shape
  (``reduce_retracing``), so tails never trace again; XLA compiles a handful of shapes at
  most, never one per tail length: on a TPU (which needs static shapes) a run with full
  batches compiles once. At least 16 rows also keeps results independent of the batch
  size: on this CPU (oneDNN) input gradients round differently for batches of 1-15 images
  than for 16 or more (see tfadv/attacks/cw.py).
- **Precision.** Logits are cast to float32 before any loss, so a ``mixed_bfloat16`` model's
  loss, its softmax and the attack's arithmetic are float32; only the network runs in bf16.
- **Graphs.** ``graph(model, key, build)`` keeps one ``tf.function`` per model and key
  (weakly: a dropped model frees its graphs); the function's arguments are tensors, so
  hyperparameters (eps, steps) never retrace it.
- **Strategies.** Called inside ``strategy.scope()`` of a strategy with several replicas,
  :func:`run_padded` splits each padded batch over the replicas (``strategy.run``) and gathers
  the results: the same kernel runs on one CPU, a GPU, several GPUs or a TPU's cores. The
  padded batch is rounded up to a multiple of the replica count.
"""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf

from tfadv import checks

MIN_ROWS = 16
_GRAPHS = weakref.WeakKeyDictionary()  # model -> {key: tf.function}


def padded_rows(n: int, batch_size: int, replicas: int = 1, jit_compile: bool = False) -> int:
    """Rows of the compiled call for ``n`` images in batches of ``batch_size`` (see above):
    never fewer than MIN_ROWS (even for a batch_size below it); a shorter tail keeps its
    length (padding is compute: 100 images padded to 112 cost a compute-bound network 12%),
    except under XLA, which compiles every shape it sees: there it is padded to a power of
    two. Then rounded up to a multiple of ``replicas``."""
    if n >= batch_size:
        rows = max(batch_size, MIN_ROWS)
    elif jit_compile:
        rows = min(max(batch_size, MIN_ROWS), max(MIN_ROWS, 1 << (n - 1).bit_length()))
    else:
        rows = max(n, MIN_ROWS)
    return -(-rows // replicas) * replicas


def logits32(model, x):
    """The model's logits as float32 (the loss is never computed in bf16)."""
    return tf.cast(model(x, training=False), tf.float32)


def cross_entropy(logits, labels):
    """Per-image sparse cross-entropy of float32 logits (cleverhans' loss)."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def graph(model, key, build):
    """``build()`` (a ``tf.function``) for ``model`` and ``key``, built once per model."""
    per_model = _GRAPHS.setdefault(model, {})
    if key not in per_model:
        per_model[key] = build()
    return per_model[key]


def function(fn, jit_compile: bool = False):
    """``tf.function`` of an attack kernel: ``jit_compile`` asks XLA for it (a TPU needs it;
    on this CPU it is slower for small networks, see DESIGN.md), ``reduce_retracing`` lets
    the few padded shapes share one trace where they can."""
    return tf.function(fn, jit_compile=bool(jit_compile), reduce_retracing=True)


def run_padded(fn, arrays, batch_size: int, *, constants=(), out_rows=None,
               jit_compile: bool = False):
    """``fn(*batch_tensors, *constants) -> tensor or tuple of tensors`` over ``arrays`` (numpy,
    same length n) in padded batches; returns numpy arrays with the padding's rows dropped.

    Outputs whose first axis is the batch come back with n rows; give ``out_rows`` (a tuple of
    output indices) when some outputs carry another leading axis (e.g. snapshots, shaped
    ``(steps, batch, ...)``): those are sliced and stacked along axis 1 instead.
    Under a strategy with several replicas each padded batch is split over the replicas.
    """
    batch_size = checks.integer("batch_size", batch_size, 1)
    n = len(arrays[0])
    strategy = tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    pieces = []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        rows = padded_rows(stop - start, batch_size, replicas, jit_compile)
        index = start + np.resize(np.arange(stop - start), rows)
        batch = [np.ascontiguousarray(a[index]) for a in arrays]
        out = _call(fn, strategy, replicas, batch, constants, out_rows or ())
        pieces.append(out if isinstance(out, tuple) else (out,))
    if not pieces:
        return None
    outs = []
    for k in range(len(pieces[0])):
        axis = 1 if out_rows and k in out_rows else 0
        take = [np.take(p[k], np.arange(min(batch_size, n - i * batch_size)), axis=axis)
                for i, p in enumerate(pieces)]
        outs.append(np.concatenate(take, axis=axis))
    single = not isinstance(out, tuple)
    return outs[0] if single else tuple(outs)


def _call(fn, strategy, replicas, batch, constants, out_rows):
    """One padded batch through ``fn``: directly, or split over ``replicas``."""
    if replicas == 1:
        out = fn(*(tf.constant(a) for a in batch), *constants)
        return tuple(o.numpy() for o in out) if isinstance(out, (tuple, list)) else out.numpy()
    per = len(batch[0]) // replicas

    def shard(context):
        i = context.replica_id_in_sync_group
        return tuple(tf.constant(a[i * per:(i + 1) * per]) for a in batch)

    values = strategy.experimental_distribute_values_from_function(shard)
    out = strategy.run(lambda *b: fn(*b, *constants), args=tuple(values))
    multiple = isinstance(out, (tuple, list))
    outs = out if multiple else (out,)
    # Replica results in replica order (each holds its slice of the batch).
    gathered = [np.concatenate([t.numpy() for t in strategy.experimental_local_results(o)],
                               axis=1 if k in out_rows else 0) for k, o in enumerate(outs)]
    return tuple(gathered) if multiple else gathered[0]
