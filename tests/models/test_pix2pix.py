"""The pix2pix networks (tfadv.models.pix2pix): the U-Net generator and the PatchGAN
discriminator, their shapes, depths, receptive fields and parameter counts (the TensorFlow
tutorial's at 256x256), refused sizes, and mixed_bfloat16. The purifier built on them is
tested in tests/defenses/test_purifier.py."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import mixed_precision, pix2pix_networks
from tfadv.models import pix2pix


def _down_convs(model):
    return [layer for layer in model.layers if layer.name.startswith("down")
            and layer.name.endswith("_conv")]


def test_unet_at_256_is_the_tutorials():
    """Built only (no forward pass): 8 down, 7 up blocks, the tutorial's filters and shapes."""
    generator = pix2pix.unet_generator((256, 256, 3))
    assert generator.output_shape == (None, 256, 256, 3)
    downs = _down_convs(generator)
    assert [layer.filters for layer in downs] == [64, 128, 256, 512, 512, 512, 512, 512]
    assert [layer.output.shape[1] for layer in downs] == [128, 64, 32, 16, 8, 4, 2, 1]
    ups = [layer for layer in generator.layers if layer.name.endswith("_deconv")
           and layer.name.startswith("up")]
    assert [layer.filters for layer in ups] == [512, 512, 512, 512, 256, 128, 64]
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in generator.layers) == 3
    assert generator.get_layer("last_deconv").filters == 3
    # The tutorial's 54,425,859 parameters, less the innermost BatchNorm's 2,048 (see docstring).
    assert generator.count_params() == 54_425_859 - 4 * 512


@pytest.mark.parametrize("side,downs", [(8, 3), (32, 5), (64, 6)])
def test_unet_depth_shapes_and_range(side, downs):
    generator, _ = pix2pix_networks(side)
    assert len(_down_convs(generator)) == downs
    assert _down_convs(generator)[-1].output.shape[1] == 1  # down to 1x1
    x = np.random.default_rng(0).uniform(0, 1, (2, side, side, 3)).astype(np.float32)
    for training in (False, True):
        out = generator(x, training=training).numpy()
        assert out.shape == x.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("shape", [(32, 16, 3), (48, 48, 3), (4, 4, 3), (30, 30, 3), (32, 32)])
def test_bad_sizes_say_resize(shape):
    for build in (pix2pix.unet_generator, pix2pix.patchgan_discriminator):
        with pytest.raises(ValueError, match="resize|height, width, channels"):
            build(shape)


def test_patchgan_grids_and_receptive_fields():
    big = pix2pix.patchgan_discriminator((256, 256, 3))
    assert big.output_shape == (None, 30, 30, 1)
    assert pix2pix.receptive_field(big) == 70
    assert big.count_params() == 2_770_433  # the tutorial's
    _, small = pix2pix_networks(32)
    assert small.output_shape == (None, 6, 6, 1)
    assert pix2pix.receptive_field(small) == 34
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    logits = small([x, x]).numpy()
    assert logits.shape == (2, 6, 6, 1) and logits.dtype == np.float32
    assert pix2pix.patchgan_discriminator((8, 8, 3), base_filters=4).output_shape[1:3] == (2, 2)


def test_mixed_bfloat16_outputs_float32():
    with mixed_precision("mixed_bfloat16"):
        generator, discriminator = pix2pix_networks(16)
    x = np.random.default_rng(0).uniform(0, 1, (1, 16, 16, 3)).astype(np.float32)
    assert generator.get_layer("down2_conv").compute_dtype == "bfloat16"
    assert generator(x).dtype == tf.float32
    assert discriminator([x, x]).dtype == tf.float32


@pytest.mark.parametrize("blocks", [0, 1, 3, 9])
def test_dropout_blocks_puts_dropout_in_the_innermost_up_blocks(blocks):
    """dropout_blocks (an ablation of pix2pix's 3): that many up blocks from the innermost
    have dropout, all four of a 32x32 U-Net when asked for more."""
    generator = pix2pix.unet_generator((32, 32, 3), base_filters=4, dropout_blocks=blocks)
    dropped = [layer.name for layer in generator.layers if "dropout" in layer.name]
    assert dropped == [f"up{i + 1}_dropout" for i in range(min(blocks, 4))]


def test_dropout_blocks_must_be_a_count():
    for bad in (-1, 1.5):
        with pytest.raises(ValueError, match="dropout_blocks"):
            pix2pix.unet_generator((32, 32, 3), base_filters=4, dropout_blocks=bad)
