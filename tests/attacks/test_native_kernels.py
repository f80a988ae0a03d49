"""The native compiled kernel of FGSM, BIM, PGD, MI-FGSM and R+FGSM (tfadv/attacks/iterative.py,
compiled.py): the same images as the cleverhans backend, iterates that are prefixes of one run,
XLA, padded shapes that never retrace on a batch tail, float32 losses under bf16, replicas of a
strategy (logical CPUs, in a subprocess), and bad backends."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest

from helpers import REPO_ROOT, tiny_cnn
from tfadv import attacks
from tfadv.attacks import compiled

NAMES = ("fgsm", "bim", "pgd", "mifgsm", "rfgsm")
PARAMS = {"fgsm": dict(eps=0.1), "bim": dict(eps=0.1, eps_iter=0.02, nb_iter=6),
          "pgd": dict(eps=0.1, eps_iter=0.02, nb_iter=6),
          "mifgsm": dict(eps=0.1, eps_iter=0.02, nb_iter=6), "rfgsm": dict(eps=0.1)}


@pytest.fixture(scope="module")
def batch(trained):
    return trained.test.images[:50].copy(), trained.test.labels[:50].copy()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_native_equals_cleverhans(name, targeted, model, batch):
    x, y = batch
    target = (y + 3) % 10 if targeted else None
    native = attacks.make(name, **PARAMS[name])(model, x, y, target)
    reference = attacks.make(name, **PARAMS[name], backend="cleverhans")(model, x, y, target)
    # Same operations in the same order: equal up to float rounding (R+FGSM's start goes
    # through one more projection, which can move a pixel by an ulp).
    np.testing.assert_allclose(native, reference, rtol=0, atol=1e-6)
    assert not np.array_equal(native, x)


@pytest.mark.parametrize("name", ["bim", "pgd", "mifgsm"])
def test_iterates_are_the_shorter_runs(name, model, batch):
    x, y = batch
    p = dict(PARAMS[name], nb_iter=10)
    steps = [10, 3, 7]
    snaps = attacks.iterates(name, steps, **p)(model, x, y)
    assert snaps.shape == (3,) + x.shape and snaps.dtype == np.float32
    for k, step in enumerate(steps):
        shorter = attacks.make(name, **dict(p, nb_iter=step))(model, x, y)
        np.testing.assert_array_equal(snaps[k], shorter)


def test_iterates_reject_what_they_cannot_do(model, batch):
    x, y = batch
    with pytest.raises(ValueError, match="iterates"):
        attacks.iterates("fgsm", [1], eps=0.1)
    with pytest.raises(ValueError, match="native"):
        attacks.iterates("pgd", [1], backend="cleverhans", **PARAMS["pgd"])
    with pytest.raises(ValueError, match="snapshots must lie"):
        attacks.iterates("pgd", [7], **PARAMS["pgd"])(model, x, y)
    with pytest.raises(ValueError, match="iterates"):
        attacks.make("pgd", snapshots=[2], **PARAMS["pgd"])
    empty = attacks.iterates("pgd", [2, 4], **PARAMS["pgd"])(model, x[:0], y[:0])
    assert empty.shape == (2, 0) + x.shape[1:]


@pytest.mark.parametrize("name", ["fgsm", "pgd", "mifgsm"])
def test_xla_equals_the_plain_graph(name, model, batch):
    x, y = batch
    plain = attacks.make(name, **PARAMS[name])(model, x, y)
    xla = attacks.make(name, **PARAMS[name], jit_compile=True)(model, x, y)
    # XLA fuses differently: a gradient component near zero may flip sign in a few pixels.
    assert np.mean(np.abs(xla - plain) > 1e-6) < 0.01
    assert np.abs(xla - x).max() <= 0.1 + 1e-6


def test_batch_tails_reuse_the_trace(batch):
    """Padded batches: after two shapes the function generalises its batch axis, so new tail
    lengths (1..49 images here) never trace again."""
    x, y = batch
    model = tiny_cnn(num_classes=10, input_shape=x.shape[1:], width=8)  # its own graphs
    attack = attacks.make("pgd", **PARAMS["pgd"], batch_size=32)
    for n in (50, 7, 33, 1, 49, 20):
        attack(model, x[:n], y[:n])
    fn = compiled.graph(model, ("iterate", False, True, False, False), None)
    assert fn.experimental_get_tracing_count() <= 2


@pytest.mark.parametrize("n, batch_size, replicas, jit, rows", [
    (300, 256, 1, False, 256), (44, 256, 1, False, 44), (1, 256, 1, False, 16),
    (44, 256, 1, True, 64), (5, 8, 1, False, 16), (3, 3, 1, False, 16), (44, 256, 3, False, 45),
    (10, 256, 4, True, 16), (10, 256, 3, True, 18)])
def test_padded_rows(n, batch_size, replicas, jit, rows):
    assert compiled.padded_rows(n, batch_size, replicas, jit) == rows


def test_bf16_model_loss_is_float32(trained, batch):
    """Under mixed_bfloat16 the native kernel computes its loss on float32 logits; it stays
    close to the float32 model's attack (bf16 rounding of the network only)."""
    x, y = batch
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        bf16 = tiny_cnn(num_classes=10, input_shape=x.shape[1:], width=8)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    bf16.set_weights(trained.model.get_weights())
    out = attacks.make("pgd", **PARAMS["pgd"])(bf16, x, y)
    ref = attacks.make("pgd", **PARAMS["pgd"])(trained.model, x, y)
    assert out.dtype == np.float32 and np.abs(out - x).max() <= 0.1 + 1e-6
    assert np.mean(out == ref) > 0.5  # mostly the same signs, not bit-equal


@pytest.mark.parametrize("bad, match", [(dict(backend="torch"), "backend must be one of"),
                                        (dict(backend="cleverhans", jit_compile=True),
                                         "needs backend='native'")])
@pytest.mark.parametrize("name", NAMES)
def test_bad_backend_rejected(name, bad, match, model, batch):
    x, y = batch
    with pytest.raises(ValueError, match=match):
        attacks.make(name, **PARAMS[name], **bad)(model, x, y)


REPLICAS_SCRIPT = """
import sys
sys.path.insert(0, "tests")
import numpy as np
from tfadv import distribute
strategy = distribute.choose("mirrored", cpu_replicas=2)
import keras
from helpers import tiny_cnn
from tfadv import attacks
keras.utils.set_random_seed(0)
with strategy.scope():
    model = tiny_cnn(num_classes=10, input_shape=(8, 8, 1), width=8)
rng = np.random.default_rng(0)
x = rng.uniform(0, 1, (37, 8, 8, 1)).astype(np.float32)
y = rng.integers(0, 10, 37)
single = attacks.make("pgd", eps=0.1, eps_iter=0.02, nb_iter=5, batch_size=16)(model, x, y)
with strategy.scope():
    split = attacks.make("pgd", eps=0.1, eps_iter=0.02, nb_iter=5, batch_size=16)(model, x, y)
    snaps = attacks.iterates("mifgsm", [2, 5], eps=0.1, eps_iter=0.02, nb_iter=5,
                             batch_size=16)(model, x, y)
last = attacks.make("mifgsm", eps=0.1, eps_iter=0.02, nb_iter=5, batch_size=16)(model, x, y)
assert strategy.num_replicas_in_sync == 2
assert split.shape == x.shape and snaps.shape == (2,) + x.shape
print("maxdiff", float(np.abs(split - single).max()), float(np.abs(snaps[1] - last).max()))
"""


def test_runs_split_over_the_replicas_of_a_strategy():
    """Inside a MirroredStrategy's scope over 2 logical CPUs each padded batch is split over
    the replicas: the same images as on one device."""
    proc = subprocess.run([sys.executable, "-c", REPLICAS_SCRIPT], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    diffs = [float(v) for v in proc.stdout.split("maxdiff")[1].split()]
    assert max(diffs) <= 1e-6, diffs
