"""Input defenses behind one contract: ``make(name, **params)(x, seed=None) -> x'``.

A defense object is called on float32 NHWC pixels in [0, 1] and returns a new float32 array of
x's shape in [0, 1] (the caller's array is never modified). It carries:

- ``.params``: every hyperparameter, defaults included (learned models by their id), to
  record in run.json and to key caches on;
- ``.randomized``: whether it draws random numbers; ``seed`` picks the draw (None means 0:
  the same seed gives the same output, always);
- ``.differentiable``: True when attacks may take exact gradients through ``.model`` (a Keras
  model from [0, 1] pixels to [0, 1] pixels; None for the identity); False when they must
  use BPDA, with the identity as the backward pass (:mod:`tfadv.attacks.bpda`).

:mod:`tfadv.evaluation.adaptive` reads these properties, never the name, to choose how to
attack a defense. Defenses today (:data:`NAMES`):

- ``none``: the identity (no defense).
- ``random_resize_pad``: Xie et al. 2017, random resize + zero pad, resized back (random).
- ``pixel_deflection``: Prakash et al. 2018, random local pixel swaps (random).
- ``wavelet_denoise``: soft BayesShrink wavelet denoising in YCbCr.
- ``deflect_and_denoise``: Prakash et al. 2018, deflection + wavelet denoising (random).
- ``sr_and_denoise``: Mustafa et al. 2019, wavelet denoising + x2 super-resolution (needs
  ``sr_model=``, a network from :mod:`tfadv.models.sr`).
- ``purifier``: a learned image-to-image purifier (paper 003's pix2pix generator; needs
  ``generator=``, or :func:`tfadv.defenses.purifier.load` from a file). Differentiable.

A new input defense: a function ``fn(x, **params)`` (with ``seed=`` if random) in a module of
this package, and a line in :data:`NAMES` saying whether it is random and differentiable.
Training-time defenses (adversarial fine-tuning, ...) return a classifier instead: they live
in :mod:`tfadv.defenses.training`.
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

import numpy as np

from tfadv import cache, checks
from tfadv.defenses import purifier, transforms


class Spec(NamedTuple):
    fn: object            # fn(x=..., **params) -> x'
    randomized: bool
    differentiable: bool
    description: str
    defaults: dict = {}   # the registry's defaults where they differ from the function's


def _identity(x):
    return checks.images(x, "x")  # a checked float32 copy, as every defense returns


NAMES = {
    "none": Spec(_identity, False, True, "No defense (the identity)"),
    # resized back by default: a defense returns images of x's shape (resize_back=False
    # keeps Xie et al.'s larger output)
    "random_resize_pad": Spec(transforms.random_resize_pad, True, False,
                              "Random resizing + random zero padding (Xie et al. 2017)",
                              {"resize_back": True}),
    "pixel_deflection": Spec(transforms.pixel_deflection, True, False,
                             "Pixel deflection: random pixels replaced by random neighbours "
                             "(Prakash et al. 2018)"),
    "wavelet_denoise": Spec(transforms.wavelet_denoise, False, False,
                            "Wavelet denoising, soft BayesShrink in YCbCr (skimage)"),
    "deflect_and_denoise": Spec(transforms.deflect_and_denoise, True, False,
                                "Pixel deflection + wavelet denoising (Prakash et al. 2018)"),
    "sr_and_denoise": Spec(transforms.sr_and_denoise, False, False,
                           "Wavelet denoising + x2 super-resolution, resized back "
                           "(Mustafa et al. 2019)"),
    "purifier": Spec(purifier.purify, False, True,
                     "Learned purifier: a pix2pix generator mapping adversarial images to "
                     "clean ones (paper 003)"),
}
# Parameters that are Keras models: recorded by name/id, and the one a differentiable defense
# exposes as ``.model`` for exact gradients.
_MODEL_PARAMS = ("sr_model", "generator")


class Defense:
    """One configured input defense; build it with :func:`make`."""

    def __init__(self, name: str, params: dict, models: dict, model_id: str | None = None):
        spec = NAMES[name]
        self.name, self.description = name, spec.description
        self.randomized, self.differentiable = spec.randomized, spec.differentiable
        self._fn, self._params, self._models = spec.fn, params, models
        self.model = models.get("generator")  # what exact gradients flow through (or None)
        self.params = {**params, **{k: m.name for k, m in models.items()}}
        self.id = model_id or (name if not self.params else
                               f"{name}-{cache.fingerprint(self.params, 8)}")

    def __call__(self, x, seed: int | None = None) -> np.ndarray:
        kwargs = dict(self._params, **self._models)
        if self.randomized:
            kwargs["seed"] = 0 if seed is None else int(seed)
        return self._fn(x=x, **kwargs)  # by keyword: purify takes its generator first

    def __repr__(self):
        return (f"Defense({self.name!r}, randomized={self.randomized}, "
                f"differentiable={self.differentiable}, params={self.params})")


def make(name: str, *, model_id: str | None = None, **params) -> Defense:
    """The defense ``name`` with ``params`` bound (see :data:`NAMES`).

    Random defenses take their seed at call time, not here. Learned ones need their model:
    ``make("purifier", generator=g)``, ``make("sr_and_denoise", sr_model=m)``; ``model_id``
    names the model in cache keys (default: the Keras model's name).
    """
    if name not in NAMES:
        raise ValueError(f"unknown defense {name!r}; available: {sorted(NAMES)}")
    spec = NAMES[name]
    signature = inspect.signature(spec.fn)
    takes = [p for p in signature.parameters if p not in ("x", "seed")]
    unknown = set(params) - set(takes)
    if unknown:
        raise ValueError(f"{name} takes no parameter(s) {sorted(unknown)}; its parameters: "
                         f"{takes}")
    missing = [p.name for p in signature.parameters.values()
               if p.name not in ("x", "seed") and p.default is p.empty and p.name not in params]
    if missing:
        raise ValueError(f"{name} needs {missing}: pass them to make(), e.g. "
                         f"make({name!r}, {missing[0]}=...)")
    models = {k: params.pop(k) for k in _MODEL_PARAMS if k in params}
    defaults = {p.name: p.default for p in signature.parameters.values()
                if p.kind is p.KEYWORD_ONLY and p.default is not p.empty and p.name != "seed"}
    if model_id is None and models:
        model_id = f"{name}-{next(iter(models.values())).name}"
    return Defense(name, {**defaults, **spec.defaults, **params}, models, model_id)
