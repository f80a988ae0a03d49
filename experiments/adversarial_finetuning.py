"""Paper 001: adversarial fine-tuning of ResNet-18 on CIFAR-10 with FGSM and untargeted JSMA.

Karakus, Islim, Gelal Soyak, "Analysis of Adversarial Training for Resilient Image
Recognition Against Different Attacks" (shared/papers/001). Reproduces Tables I-III and the
confusion matrices of Figs 3-5.

Command (the CIFAR-10 reproduction on a 2-core CPU; trains and caches the base model first):

    python -m experiments.adversarial_finetuning --preset=cifar --data=../shared/data/cifar10-jpeg.tar.gz

Presets: smoke (digits, tiny CNN, seconds), quick (digits, minutes), cifar (CIFAR-10,
ResNet-18 width 32, bf16 on AMX CPUs), paper (full-width ResNet-18, for a GPU).

Expected numbers (paper, 1,000 images): base ORIG ~87%, FGSM ADV ~45% (ratio 0.51), JSMA ADV
~54% (ratio 0.62); AFT-FGSM ORIG ~76%, FGSM ADV ~51%, JSMA ADV ~62%; AFT-JSMA ORIG ~75%, FGSM
ADV ~54%, JSMA ADV ~65%. Measured ones are in notes/RESULTS.md.

Runtime: see notes/RESULTS.md (cifar: base model about 45 min, the rest under 60 min on the
2-core CPU; smoke: seconds).
"""

from __future__ import annotations

# eps convention: the paper perturbs images normalised to mean/std 0.5, z = (x - 0.5) / 0.5,
# with eps = 0.01. A step of 0.01 in z is a step of 0.01 * std = 0.01 * 0.5 = 0.005 in pixel
# units (x in [0, 1]), i.e. 1.275/255. Our attacks work in pixel units, so FGSM_EPS = 0.005.
PAPER_FGSM_EPS_NORMALISED = 0.01
NORMALISATION_STD = 0.5
FGSM_EPS = PAPER_FGSM_EPS_NORMALISED * NORMALISATION_STD

PRESETS = {
    "smoke": dict(data="digits", architecture="tiny_cnn", epochs=3, batch_size=64,
                  learning_rate=1e-3, schedule="cosine", augment=False, precision="float32", seed=0,
                  sizes=[20, 50], seeds=3, n_finetune=100, finetune_batch_size=20,
                  finetune_lr=1e-3, n_confusion=50, fgsm_eps=FGSM_EPS * 10,
                  jsma_theta=1.0, jsma_gamma=0.1, data_dir=None),
    "quick": dict(data="digits", architecture="tiny_cnn", epochs=30, batch_size=64,
                  learning_rate=2e-3, schedule="cosine", augment=False, precision="float32", seed=0,
                  sizes=[50, 100, 200], seeds=3, n_finetune=300, finetune_batch_size=32,
                  finetune_lr=1e-3, n_confusion=200, fgsm_eps=FGSM_EPS * 10,
                  jsma_theta=1.0, jsma_gamma=0.1, data_dir=None),
    "cifar": dict(data="cifar10", architecture="resnet18_w32", epochs=20, batch_size=128,
                  learning_rate=1e-3, schedule="cosine", augment=True, precision="auto", seed=0,
                  sizes=[50, 100, 200, 500, 1000], seeds=3, n_finetune=500,
                  finetune_batch_size=32, finetune_lr=1e-3, n_confusion=1000,
                  fgsm_eps=FGSM_EPS, jsma_theta=1.0, jsma_gamma=0.1, data_dir=None),
    "paper": dict(data="cifar10", architecture="resnet18", epochs=60, batch_size=128,
                  learning_rate=1e-3, schedule="cosine", augment=True, precision="auto", seed=0,
                  sizes=[50, 100, 200, 500, 1000], seeds=3, n_finetune=500,
                  finetune_batch_size=32, finetune_lr=1e-3, n_confusion=1000,
                  fgsm_eps=FGSM_EPS, jsma_theta=1.0, jsma_gamma=0.1, data_dir=None),
}


def load_data(config):
    from tfadv import data
    train = data.load(config["data"], "train", data_dir=config["data_dir"])
    test = data.load(config["data"], "test", data_dir=config["data_dir"])
    return train, test


def base_model(config, train, test, verbose=True):
    """The base classifier, trained once and cached under data/models."""
    from experiments.common import data_id
    from tfadv import models
    monitor = data_subset_for_monitoring(test, config)
    return models.train_cached(
        train, architecture=config["architecture"], epochs=config["epochs"],
        batch_size=config["batch_size"], learning_rate=config["learning_rate"],
        schedule=config["schedule"], augment=config["augment"], seed=config["seed"], precision=config["precision"],
        data_id=data_id(config["data"]), x_val=monitor.images, y_val=monitor.labels,
        verbose=verbose)


def data_subset_for_monitoring(test, config):
    from tfadv import data
    return data.subset(test, n=min(2000, len(test.labels)), seed=config["seed"] + 999)
