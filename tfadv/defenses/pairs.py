"""Training pairs of a purifier, read a batch at a time: adversarial inputs and clean targets
paired by index, from arrays, memory maps or lazily read shard sets (:class:`Float32Rows`
mixes several, as the versatile purifier's), cut into fixed global batches per epoch
(:func:`epoch_batches`) and streamed by ``tf.data`` to the replicas of a strategy
(:func:`pair_dataset`): host memory does not grow with the number of pairs."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfadv import checks
from tfadv.batching import pixels


class Float32Rows:
    """Image i of ``sources[choice[i]]`` (of the one source without ``choice``) as float32,
    read a few rows at a time: e.g. the versatile purifier's inputs (each image attacked by
    one of the attacks) from the attacks' own float16 shard sets, never copied whole.
    ``row[i]`` is image i's row in its source (default i: sources as long as ``choice``; the
    paper's data, where each attack's set holds only its own share, gives each image its
    place in its share). Sources are arrays, memory maps or lazily read shard sets
    (:class:`tfadv.cache.Shards`); :func:`tfadv.cache.digest` of it equals that of the float32
    array it stands for."""

    def __init__(self, sources, choice=None, row=None):
        self.sources = list(sources)
        self.choice = np.zeros(len(self.sources[0]), np.int64) if choice is None else \
            np.asarray(choice)
        if row is None:
            n = {len(s) for s in self.sources} | {len(self.choice)}
            if len(n) != 1:
                raise ValueError(f"Float32Rows: sources and choice differ in length: {sorted(n)}")
            self.row = np.arange(len(self.choice))
        else:
            self.row = np.asarray(row, np.int64)
            if self.row.shape != self.choice.shape:
                raise ValueError(f"Float32Rows: row has shape {self.row.shape}, choice "
                                 f"{self.choice.shape}: one row per image")
            for k, source in enumerate(self.sources):
                mine = self.row[self.choice == k]
                if len(mine) and (mine.min() < 0 or mine.max() >= len(source)):
                    raise ValueError(f"Float32Rows: source {k} has {len(source)} rows, "
                                     f"row asks for {mine.min()}..{mine.max()}")
        self.shape = (len(self.choice), *self.sources[0].shape[1:])
        self.dtype = np.dtype(np.float32)

    @classmethod
    def shares(cls, sources, share: np.ndarray) -> "Float32Rows":
        """Image i from ``sources[share[i]]``, whose rows are the images of that share in
        order (each source as long as its share)."""
        share = np.asarray(share, np.int64)
        row = np.empty(len(share), np.int64)
        for k in range(len(sources)):
            mine = np.flatnonzero(share == k)
            row[mine] = np.arange(len(mine))
        return cls(sources, share, row)

    def __len__(self):
        return len(self.choice)

    def rows(self, idx) -> np.ndarray:
        idx = np.asarray(idx)
        out = np.empty((len(idx), *self.shape[1:]), np.float32)
        for k, source in enumerate(self.sources):
            mine = self.choice[idx] == k
            if mine.any():
                out[mine] = rows(source, self.row[idx[mine]])
        return out


def rows(source, idx) -> np.ndarray:
    """Rows ``idx`` of an array, memory map, shard set or :class:`Float32Rows` as float32
    [0, 1] pixels (uint8 images are divided by 255, as :func:`tfadv.data.load` does)."""
    return pixels(source.rows(idx) if hasattr(source, "rows") else source[idx])


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """The batches of an epoch, (steps, batch_size) pair indices: a permutation that is a pure
    function of (seed, epoch), cut into global batches (the tail that does not fill one is
    left out), each sorted (file order reads memory maps faster)."""
    steps = n // batch_size
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return np.sort(order[:steps * batch_size].reshape(steps, batch_size), 1)


def pair_dataset(x_adv, x_clean, batches: np.ndarray, strategy):
    """``batches`` (rows of pair indices, one global batch each) as a distributed dataset of
    (input, target) float32 pairs: each batch read from memory maps on the host by a worker
    thread while the device trains (prefetch), then split over the replicas. One dataset
    (and one compiled loop) for the whole run: a new iterator per epoch would retrace."""
    batch_size, shape = batches.shape[1], tuple(x_adv.shape[1:])

    def read(idx):
        return rows(x_adv, idx), rows(x_clean, idx)

    def shaped(x, y):
        x.set_shape((batch_size, *shape))
        y.set_shape((batch_size, *shape))
        return x, y

    ds = tf.data.Dataset.from_tensor_slices(batches).map(
        lambda idx: tf.numpy_function(read, [idx], (tf.float32, tf.float32), stateful=False)
    ).map(shaped).prefetch(2)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = \
        tf.data.experimental.AutoShardPolicy.DATA  # workers split each global batch
    ds = ds.with_options(options)
    return iter(strategy.experimental_distribute_dataset(ds))


def check_pairs(x_adv, x_clean, shape):
    for name, x in (("x_adv", x_adv), ("x_clean", x_clean)):
        if tuple(x.shape[1:]) != tuple(shape):
            raise ValueError(f"{name}: images of shape {tuple(x.shape[1:])} do not fit the "
                             f"generator's input {tuple(shape)}; resize them first")
        if not hasattr(x, "rows"):  # arrays: values checked here; shard sets were when written
            checks.images(x[:256] if x.dtype != np.uint8 else x[:0].astype(np.float32),
                          name, shape=shape, copy=False)
    if len(x_adv) != len(x_clean):
        raise ValueError(f"x_adv and x_clean are pairs: got {len(x_adv)} and {len(x_clean)} "
                         "images")
