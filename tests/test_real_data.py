"""Real-data checks on the shared CIFAR-10 copy: a small CNN trained on it, then attacked.

Slow (about a minute on a 2-core CPU): ``python -m pytest -m slow tests/test_real_data.py``.
"""

import numpy as np
import pytest

from tfadv import attacks, data
from tfadv.evaluation import accuracy, predict
from tfadv.models.resnet import tiny_cnn
from tfadv.models.train import fit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cifar_model(cifar_archive, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    train = data.subset(data.load(cifar_archive, "train", cache_dir=cache), n=10_000, seed=0)
    test = data.subset(data.load(cifar_archive, "test", cache_dir=cache), n=300, seed=0)
    model = tiny_cnn(num_classes=10, input_shape=(32, 32, 3), width=16)
    fit(model, train.images, train.labels, epochs=4, batch_size=64, learning_rate=3e-3,
        augment=False, verbose=False)
    return model, test


def test_small_cnn_learns_cifar10(cifar_model):
    model, test = cifar_model
    assert accuracy(model, test.images, test.labels) > 0.30  # chance is 0.10; ~0.37 seen


def test_fgsm_and_jsma_break_it_on_real_images(cifar_model):
    model, test = cifar_model
    x, y = test.images, test.labels
    clean = accuracy(model, x, y)
    x_fgsm = attacks.make("fgsm", eps=8 / 255)(model, x, y)
    assert np.abs(x_fgsm - x).max() <= 8 / 255 + 1e-6
    assert accuracy(model, x_fgsm, y) < clean - 0.2
    x_jsma = attacks.make("jsma", theta=1.0, gamma=0.1)(model, x, y)
    l0 = np.count_nonzero((x_jsma != x).reshape(len(x), -1), axis=1)
    assert l0.max() <= 306  # floor(0.1 * 3072 / 2) pairs
    assert accuracy(model, x_jsma, y) < 0.1
    targets = (y + 1) % 10
    x_targeted = attacks.make("jsma", theta=1.0, gamma=0.1)(model, x[:100], y[:100],
                                                             targets[:100])
    assert np.mean(predict(model, x_targeted) == targets[:100]) > 0.5
