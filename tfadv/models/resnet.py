"""ResNet-18 for 32x32 images (CIFAR stem) and a tiny CNN for tests.

Both take pixels in [0, 1] and return logits; normalisation is the model's first layer
(mean/std 0.5 as in paper 001, i.e. x -> 2x - 1).
"""

import keras
from keras import layers


def _normalise(x, mean, std):
    # (x - mean) / std as one serialisable layer.
    return layers.Rescaling(scale=1.0 / std, offset=-mean / std, name="normalise")(x)


def _basic_block(x, filters, stride, name):
    shortcut = x
    y = layers.Conv2D(filters, 3, stride, "same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, 1, "same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def resnet18(num_classes=10, input_shape=(32, 32, 3), width=64, mean=0.5, std=0.5,
             name="resnet18"):
    """ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool).

    ``width`` is the first stage's channels (64 in the paper); stages use width x 1, 2, 4, 8.
    """
    inputs = keras.Input(input_shape, name="pixels")
    x = _normalise(inputs, mean, std)
    x = layers.Conv2D(width, 3, 1, "same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage, multiplier in enumerate((1, 2, 4, 8)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, width * multiplier, stride, f"s{stage}b{block}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    # Logits in float32 even under a mixed-precision policy.
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def tiny_cnn(num_classes=10, input_shape=(32, 32, 3), width=16, mean=0.5, std=0.5,
             name="tiny_cnn"):
    """A two-conv network that trains in seconds: for tests and the smoke presets."""
    inputs = keras.Input(input_shape, name="pixels")
    x = _normalise(inputs, mean, std)
    x = layers.Conv2D(width, 3, padding="same", activation="relu", name="conv1")(x)
    x = layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu",
                      name="conv2")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(4 * width, activation="relu", name="hidden")(x)
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=name)
