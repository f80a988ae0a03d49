"""A small VGG-style network for 32x32 images: paper 003's CIFAR-10 proxy uses one, trained
by the suite, as its independent perceptual network (the paper's is an ImageNet VGG19), and
another seed of it as the second classifier of its diagnostics.

Blocks of two 3x3 convolutions (BatchNorm, ReLU) and a 2x2 max-pool, as VGG's; the taps of a
perceptual loss are each block's second ReLU (``block{b}_relu2``), as VGG19's are the last
conv of each block. [0, 1] pixels in, logits out, normalisation inside (x -> 2x - 1).
"""

import keras
from keras import layers

from tfadv.models.resnet import _normalise


def vgg(num_classes=10, input_shape=(32, 32, 3), widths=(32, 64, 128), mean=0.5, std=0.5,
        name="vgg"):
    """``len(widths)`` blocks (channels ``widths``), global average pooling, one dense layer."""
    inputs = keras.Input(input_shape, name="pixels")
    x = _normalise(inputs, mean, std)
    for b, filters in enumerate(widths, start=1):
        for c in (1, 2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False,
                              name=f"block{b}_conv{c}")(x)
            x = layers.BatchNormalization(name=f"block{b}_bn{c}")(x)
            x = layers.ReLU(name=f"block{b}_relu{c}")(x)
        x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def perceptual_layers(model: keras.Model) -> list[str]:
    """Each block's last ReLU: the layers a perceptual loss compares."""
    return [layer.name for layer in model.layers if layer.name.endswith("_relu2")]
