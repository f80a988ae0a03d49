"""pix2pix networks (Isola et al. 2017) for the purifier of paper 003: U-Net generator and
conditional PatchGAN discriminator, as in the TensorFlow pix2pix tutorial.

Both take float32 pixels in [0, 1] (the suite's convention) and map them to [-1, 1] in their
first layer, as pix2pix trains on [-1, 1] images. The generator maps its tanh output back to
[0, 1], so ``generator(x)`` is an image again; the discriminator returns logits. Outputs are
float32 under a mixed-precision policy. Only standard layers are used (``Rescaling``, not
``Lambda``), so ``tfadv.models.save`` / ``load`` (``safe_mode``) round-trip both.

Sizes: the tutorial's networks are for 256x256. Here the depth follows the input size, which
must be square with a power-of-two side of at least 8 (resize images to e.g. 32 or 256 first):

    side   U-Net down/up blocks   PatchGAN stride-2 layers   patch grid   receptive field
     256          8 / 7                      3                 30 x 30        70 x 70
     128          7 / 6                      3                 14 x 14        70 x 70
      64          6 / 5                      3                  6 x 6         70 x 70
      32          5 / 4                      2                  6 x 6         34 x 34
      16          4 / 3                      1                  6 x 6         16 x 16
       8          3 / 2                      1                  2 x 2         16 x 16

(:func:`receptive_field` computes the last column from a built model.)
"""

from __future__ import annotations

import contextlib
import math
import threading

import keras
import tensorflow as tf
from keras import layers

# pix2pix initialises every conv from N(0, 0.02).
def _init():
    """pix2pix's N(0, 0.02) kernels. A new initializer per layer, made when the layer is built:
    Keras 3 draws an unseeded initializer's seed from Python's random state when it is created
    and one shared instance gives same-shaped layers identical kernels, so a module-level
    instance made every process start differently and duplicated kernels."""
    return keras.initializers.RandomNormal(0.0, 0.02)


def _check_size(input_shape, what: str) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"{what}: input_shape must be (height, width, channels), got "
                         f"{input_shape}")
    height, width, channels = (int(v) for v in input_shape)
    if height != width or height < 8 or height & (height - 1):
        raise ValueError(
            f"{what} needs square images whose side is a power of two >= 8 (e.g. 32 or 256), "
            f"got {height}x{width}: resize the images first (e.g. tf.image.resize to 256x256, "
            "as paper 003 does).")
    return height, width, channels


_TEST_TIME = threading.local()


@contextlib.contextmanager
def test_time_dropout():
    """Inside it, the U-Net's dropout layers drop units at inference too (``training=False``;
    BatchNorm keeps its moving statistics): pix2pix's test-time noise, eager calls only."""
    _TEST_TIME.on = True
    try:
        yield
    finally:
        _TEST_TIME.on = False


@keras.saving.register_keras_serializable(package="tfadv")
class ReplicaDropout(layers.Dropout):
    """Dropout whose masks differ between the replicas of a ``tf.distribute`` strategy.

    Keras' Dropout draws its mask from the layer's seed state, which is mirrored: every
    replica would drop the same units of its own images. Here replica r offsets the drawn
    seed by r. With one replica (or none) it is Keras' Dropout exactly (same masks).
    """

    def call(self, inputs, training=False):
        training = training or getattr(_TEST_TIME, "on", False)
        if not training or self.rate <= 0 or tf.distribute.get_strategy().num_replicas_in_sync == 1:
            return super().call(inputs, training=training)
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = self.seed_generator.next()
        seed = seed + tf.cast(tf.stack([replica, 0]), seed.dtype) * 7919
        seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
        return tf.nn.experimental.stateless_dropout(inputs, rate=self.rate, seed=seed)


def _batchnorm(name, synchronized):
    # synchronized: one global batch's statistics over all replicas (Keras' plain layer
    # when False, whose numbers the single-device code keeps)
    return layers.BatchNormalization(name=name, synchronized=synchronized)


def _down(x, filters, batchnorm, name, synchronized=False):
    x = layers.Conv2D(filters, 4, 2, "same", kernel_initializer=_init(), use_bias=False,
                      name=f"{name}_conv")(x)
    if batchnorm:
        x = _batchnorm(f"{name}_bn", synchronized)(x)
    return layers.LeakyReLU(0.2, name=f"{name}_lrelu")(x)


def _up(x, filters, dropout, name, synchronized=False):
    x = layers.Conv2DTranspose(filters, 4, 2, "same", kernel_initializer=_init(),
                               use_bias=False, name=f"{name}_deconv")(x)
    x = _batchnorm(f"{name}_bn", synchronized)(x)
    if dropout:
        x = ReplicaDropout(0.5, name=f"{name}_dropout")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def unet_generator(input_shape=(256, 256, 3), base_filters: int = 64, max_filters: int = 512,
                   name: str = "unet_generator", synchronized: bool = False,
                   dropout_blocks: int = 3) -> keras.Model:
    """The pix2pix U-Net: [0, 1] images in, [0, 1] images of the same shape out.

    ``log2(side)`` down blocks (4x4 conv, stride 2; filters ``base_filters`` doubling up to
    ``max_filters``: 64-128-256-512-512-512-512-512 at 256) bring the image to 1x1; as many
    up blocks less one (4x4 transposed conv, stride 2, BatchNorm, dropout 0.5 in the first
    three: pix2pix's noise z, at 2, 4 and 8 pixels a side whatever the image size;
    ``dropout_blocks`` changes how many; all of them when there are fewer) each concatenate the down block of their resolution,
    and a last transposed conv with tanh restores the size and the channels.

    BatchNorm is on every down block except the first (as in pix2pix) and the innermost: that
    one is 1x1 and, at pix2pix's batch size 1, BatchNorm in training mode would normalise a
    single value per channel to its beta and cut the bottleneck off (Isola et al.'s reference
    code leaves it out too; the TF tutorial keeps it). ``synchronized``: BatchNorm over the
    global batch of all replicas of a strategy (:func:`tfadv.defenses.purifier.build_networks`).
    """
    side, _, channels = _check_size(input_shape, "unet_generator")
    depth = int(math.log2(side))
    if not isinstance(dropout_blocks, int) or dropout_blocks < 0:
        raise ValueError(f"dropout_blocks must be a non-negative integer (the up blocks with "
                         f"dropout, from the innermost), got {dropout_blocks!r}")

    def filters(level):  # the filters of the down block at this level (0 = first)
        return min(base_filters * 2 ** level, max_filters)

    inputs = keras.Input((side, side, channels), name="pixels")               # (256, 256, 3)
    x = layers.Rescaling(2.0, offset=-1.0, name="to_signed")(inputs)          # [0,1] -> [-1,1]
    skips = []
    for level in range(depth):           # at 256: 128, 64, 32, 16, 8, 4, 2, 1 (x 64..512)
        x = _down(x, filters(level), batchnorm=0 < level < depth - 1, name=f"down{level + 1}",
                  synchronized=synchronized)
        skips.append(x)
    for i, skip in enumerate(reversed(skips[:-1])):   # at 256: 2, 4, ..., 128 (x 512..64)
        level = depth - 2 - i                          # the down block this one mirrors
        x = _up(x, filters(level), dropout=i < dropout_blocks, name=f"up{i + 1}",
                synchronized=synchronized)
        x = layers.Concatenate(name=f"up{i + 1}_skip")([x, skip])             # 2x the filters
    x = layers.Conv2DTranspose(channels, 4, 2, "same", kernel_initializer=_init(),
                               name="last_deconv")(x)                          # (256, 256, 3)
    x = layers.Activation("tanh", dtype="float32", name="tanh")(x)            # [-1, 1]
    outputs = layers.Rescaling(0.5, offset=0.5, dtype="float32", name="to_pixels")(x)  # [0, 1]
    return keras.Model(inputs, outputs, name=name)


def patchgan_downsamplings(side: int) -> int:
    """Stride-2 layers of the PatchGAN for this image side: 3 (pix2pix's 70x70) from 64 up,
    fewer below, so that small images still get a grid of at least 6x6 patches (2x2 at 8)."""
    return min(3, max(1, int(math.log2(side)) - 3))


def patchgan_discriminator(input_shape=(256, 256, 3), base_filters: int = 64,
                           name: str = "patchgan", synchronized: bool = False) -> keras.Model:
    """The conditional PatchGAN: ``[input_image, target_image]`` in, a grid of logits out.

    Each logit judges whether one patch of the target is real given the input (pix2pix's
    cGAN). At 256 this is the tutorial's 70x70 PatchGAN: C64 (no BatchNorm) - C128 - C256,
    stride 2, then C512 and a 1-channel conv at stride 1 (4x4 kernels, zero padding 1),
    giving 30x30 logits. Smaller images use fewer stride-2 layers
    (:func:`patchgan_downsamplings`; table in the module docstring).
    """
    side, _, channels = _check_size(input_shape, "patchgan_discriminator")
    downsamplings = patchgan_downsamplings(side)
    image = keras.Input((side, side, channels), name="input_image")           # (256, 256, 3)
    target = keras.Input((side, side, channels), name="target_image")         # (256, 256, 3)
    x = layers.Concatenate(name="pair")([image, target])                      # (256, 256, 6)
    x = layers.Rescaling(2.0, offset=-1.0, name="to_signed")(x)
    for level in range(downsamplings):                     # at 256: (128, 64), (64, 128), (32, 256)
        x = _down(x, base_filters * 2 ** level, batchnorm=level > 0, name=f"down{level + 1}",
                  synchronized=synchronized)
    x = layers.ZeroPadding2D(name="pad1")(x)                                  # (34, 34, 256)
    x = layers.Conv2D(base_filters * 2 ** downsamplings, 4, 1, kernel_initializer=_init(),
                      use_bias=False, name="conv")(x)                         # (31, 31, 512)
    x = _batchnorm("conv_bn", synchronized)(x)
    x = layers.LeakyReLU(0.2, name="conv_lrelu")(x)
    x = layers.ZeroPadding2D(name="pad2")(x)                                  # (33, 33, 512)
    x = layers.Conv2D(1, 4, 1, kernel_initializer=_init(), name="patch_conv")(x)  # (30, 30, 1)
    logits = layers.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model([image, target], logits, name=name)


def receptive_field(model: keras.Model) -> int:
    """Receptive field (pixels, per side) of one output unit of a chain of convolutions.

    Walks the model's Conv2D layers in order (padding does not change the receptive field):
    r = 1 + sum over convs of (kernel - 1) x (product of the strides before it).
    Meant for the PatchGAN, whose convolutions form one chain.
    """
    field, jump = 1, 1
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            field += (layer.kernel_size[0] - 1) * jump
            jump *= layer.strides[0]
    return field
