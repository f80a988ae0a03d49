"""Projections of paper 003's paper preset where it cannot be run (no GPU or TPU here):
FLOPs counted from TensorFlow graphs (:func:`count_flops`), the preset's work by stage in
hours on one H100 at a stated utilisation (:func:`paper_budget`), and its cache and host RAM
from its sizes (:func:`paper_storage`). Every figure is a projection and says so."""

from __future__ import annotations

import pandas as pd

PAPER_EPOCHS, PAPER_IMAGES, PAPER_PURIFIERS = 100, 18_000, 7  # paper 003: 18 x 1,000 classes
# Projection of GPU time: NVIDIA's H100 SXM dense bfloat16 peak, and the share of it a
# well-fed convolutional training step reaches (stated, not measured: no GPU here).
H100_BF16_TFLOPS, UTILISATION = 989.0, 0.40


def count_flops(fn, *specs) -> float:
    """Floating-point operations of one call of ``fn`` on inputs of ``specs`` (TensorFlow's
    graph profiler over the traced function: convolutions, their gradients, matmuls; a
    multiply-add counts 2)."""
    import tensorflow as tf
    concrete = tf.function(fn).get_concrete_function(*specs)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return float(tf.compat.v1.profiler.profile(graph=concrete.graph,
                                               options=options).total_float_ops)


def step_flops(generator, discriminator, features, batch_size: int) -> float:
    """Counted FLOPs of one purifier training step (both networks, perceptual loss, Adam)."""
    import tensorflow as tf
    from tfadv.defenses import purifier
    optimizers = [purifier.make_optimizer() for _ in range(2)]
    optimizers[0].build(generator.trainable_variables)
    optimizers[1].build(discriminator.trainable_variables)
    image = tf.TensorSpec((batch_size, *generator.input_shape[1:]), tf.float32)
    scalar = tf.TensorSpec((), tf.float32)
    return count_flops(purifier.make_train_step(generator, discriminator, features,
                                                *optimizers), image, image, scalar, scalar)


def paper_budget(step_flops_per_pair: float, gradient_flops: float) -> pd.DataFrame:
    """The paper preset's work in counted FLOPs, by stage, and its projected hours on one
    H100 at :data:`UTILISATION` of the bf16 peak. Gradient evaluations of the attacks are
    counted from the preset (18,000 training and 5,000 test images); C&W L2 at its upper
    bound (5 x 1,000 steps; it drops each image once its loss stalls, so it does less) and
    ART's AutoAttack as its APGD-CE (100 steps x 5 restarts; the later attacks only see the
    few points still robust)."""
    train, test = PAPER_IMAGES, 5_000
    iterative = 40
    per_image = {"FGSM": 1, "BIM": iterative, "PGD": iterative, "MI-FGSM": iterative,
                 "C&W L2 (upper bound)": 5 * 1_000, "AutoAttack (APGD-CE)": 100 * 5}
    rows = [{"stage": f"purifier training ({PAPER_PURIFIERS} x {PAPER_EPOCHS} epochs x "
                      f"{PAPER_IMAGES:,} pairs)",
             "flops": PAPER_PURIFIERS * PAPER_EPOCHS * PAPER_IMAGES * step_flops_per_pair}]
    for name, grads in per_image.items():
        rows.append({"stage": f"attack {name}, training + test images",
                     "flops": (train + test) * grads * gradient_flops})
    rows.append({"stage": "attack DeepFool (unseen), test images, 50 steps x 10 classes",
                 "flops": test * 50 * 10 * gradient_flops})
    # Fig 4: 2 attacks x 3 eps, one 100-step run each whose iterates give the 10 lengths
    robust = 2 * 3 * 100 * test
    rows.append({"stage": "Fig 4 sweep (PGD, MI-FGSM: one 100-step run per eps, 3 eps)",
                 "flops": robust * gradient_flops})
    rows.append({"stage": "adaptive table (500 images x 40 steps x 6 defenses, EOT 8 on 2)",
                 "flops": 500 * 40 * (4 + 2 * 8) * gradient_flops})
    table = pd.DataFrame(rows)
    table["hours_h100_projected"] = table.flops / (H100_BF16_TFLOPS * 1e12 * UTILISATION) / 3600
    return table


def paper_storage() -> pd.DataFrame:
    """The paper preset's cache (GB) and host RAM at its largest stages (GB), computed from
    its sizes (256x256 RGB; 18,000 training pairs, 5,000 test images of 15,000 screened; 7
    purifiers of 64 filters; shards float16 where the preset says so): projections, stated
    as such. Host RAM leaves out TensorFlow's own few GB."""
    image = 256 * 256 * 3
    gb = 1e9
    unet = 54.4e6 + 2.8e6  # parameters: U-Net 64 filters at 256 + PatchGAN (counted by Keras)
    rows = [
        ("disk", "training sets: 6 attacks x 18,000, float16 shards", 6 * 18_000 * image * 2),
        ("disk", "test sets: 7 attacks x 5,000, float16 shards", 7 * 5_000 * image * 2),
        ("disk", "adaptive gray-box PGD: 500, float32", 500 * image * 4),
        ("disk", "Fig 4: 60 sweeps x 5,000 x 3 defenses, one byte each", 60 * 5_000 * 3),
        ("disk", "7 purifiers (.keras, float32 U-Net)", 7 * 54.4e6 * 4),
        ("disk", "training checkpoints (both networks + 2 Adams, 2 kept, one purifier)",
         2 * unet * 4 * 3),
        ("host RAM", "training images kept as uint8 (18,000)", 18_000 * image),
        ("host RAM", "test pool screened as uint8 (15,000; freed after picking)", 15_000 * image),
        ("host RAM", "purifier training: prefetched batches (2 x 16 pairs, float32)",
         2 * 16 * 2 * image * 4),
        ("host RAM", "evaluation: 3 float32 chunks of 1,000 (set, defended, clean) + uint8 test",
         3 * 1_000 * image * 4 + 5_000 * image),
        ("host RAM", "SR network's pairs: 2,000 images + their halves, float32",
         2_000 * image * 4 * 1.25),
    ]
    return pd.DataFrame([{"kind": k, "what": w, "gb_projected": b / gb} for k, w, b in rows])
