"""AutoAttack cross-check: our native standard AutoAttack and its components beside
torchattacks' (a PyTorch port of the reference code) on a PyTorch copy of the same Keras
model, and beside ART's APGD-CE.

:func:`autoattack_crosscheck` returns one row per (component, implementation) with the robust
accuracy on the same images at the same eps, measured by the Keras model, and the wall time:

- ``apgd-ce``: ours, torchattacks ``APGD(loss="ce")``, ART ``AutoProjectedGradientDescent``
  (cross-entropy, ``eps_step=2 * eps``: the paper's initial step; ART's default is 0.1);
- ``apgd-t``: ours, torchattacks ``APGDT``;
- ``fab-t``: ours, torchattacks ``FAB(multi_targeted=True)`` (a result counts within eps);
- ``square``: ours, torchattacks ``Square``;
- ``autoattack``: ours (``version="standard"``), torchattacks ``AutoAttack(version=
  "standard")``.

Each component runs alone on every image (not only on those the previous ones left robust).
torchattacks' defaults are not the reference's: 10 steps for APGD, APGD-T and FAB (100 in
AutoAttack), ``n_classes - 1`` target classes, and a Square schedule rescaled to the query
budget (AutoAttack's is not). Here every torchattacks attack, also inside its AutoAttack, gets
the budgets given (the reference's by default) and the unrescaled schedule, so both sides run
the same algorithm with the same budgets; only the random numbers differ.

Needs ``torch`` and ``torchattacks`` (not in requirements.txt): ``pip install torch==2.13.0``
(a CPU build) and ``pip install --no-deps torchattacks``. The PyTorch copy supports chains
of Rescaling, Conv2D, BatchNormalization, ReLU/Activation, pooling, Flatten, Dropout and Dense
layers (the zoo's ``tiny_cnn``); its logits are checked against the Keras model's first.
"""

from __future__ import annotations

import importlib
import time

import numpy as np
import pandas as pd

from tfadv import checks
from tfadv.attacks import art_bridge
from tfadv.evaluation import predict

COMPONENTS = ("apgd-ce", "apgd-t", "fab-t", "square", "autoattack")


def autoattack_crosscheck(model, x, y, eps: float, *, apgd_max_iter: int = 100,
                          n_target_classes: int = 9, fab_max_iter: int = 100,
                          square_max_iter: int = 5000, seed: int = 0, batch_size: int = 256,
                          components=COMPONENTS, art: bool = True) -> pd.DataFrame:
    """Robust accuracy (%) per component and implementation (see the module docstring) on
    float32 NHWC ``x`` in [0, 1] with labels ``y``; columns ``component``,
    ``implementation``, ``robust_accuracy``, ``clean_accuracy``, ``max_linf``, ``seconds``,
    ``n``, ``eps`` and the budgets. ``art=False`` skips ART's APGD-CE."""
    import torch
    import torchattacks

    x = checks.images(x, shape=model.input_shape[1:])
    y = checks.labels(y, len(x), int(model.output_shape[-1]))
    eps = checks.positive("eps", eps)
    unknown = set(components) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"components must be among {COMPONENTS}, got {sorted(unknown)}")
    net = torch_copy(model)
    classes = int(model.output_shape[-1])
    budgets = dict(apgd_max_iter=apgd_max_iter, n_target_classes=n_target_classes,
                   fab_max_iter=fab_max_iter, square_max_iter=square_max_iter)
    ours = _ours(model, eps, seed=seed, batch_size=batch_size, **budgets)
    theirs = _torchattacks(torchattacks, net, eps, classes, seed=seed, **budgets)
    xt, yt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y)

    def torch_run(attack):
        with torch.random.fork_rng():
            return attack(xt, yt).detach().numpy().transpose(0, 2, 3, 1)

    runs = []
    for name in components:
        runs.append((name, "tfadv", lambda name=name: ours[name](x, y)))
        runs.append((name, "torchattacks", lambda name=name: torch_run(theirs[name])))
        if name == "apgd-ce" and art:
            runs.append((name, "ART AutoProjectedGradientDescent",
                         lambda: _art_apgd_ce(model, x, y, eps, apgd_max_iter, seed,
                                              batch_size)))
    clean = float(np.mean(predict(model, x) == y) * 100)
    rows = []
    for name, implementation, run in runs:
        tic = time.perf_counter()
        x_adv = np.asarray(run(), np.float32)
        seconds = time.perf_counter() - tic
        linf = float(np.abs(x_adv - x).max()) if len(x) else 0.0
        # Measured on exactly the eps-ball (torch rounds a perturbation to eps + 1 ulp).
        x_adv = np.clip(np.clip(x_adv, x - eps, x + eps), 0.0, 1.0)
        rows.append(dict(component=name, implementation=implementation,
                         robust_accuracy=float(np.mean(predict(model, x_adv) == y) * 100),
                         clean_accuracy=clean, max_linf=linf, seconds=round(seconds, 2),
                         n=len(x), eps=eps, **budgets))
    return pd.DataFrame(rows)


def _ours(model, eps, *, seed, batch_size, **budgets):
    """name -> run(x, y) -> x_adv for our components alone and the standard ensemble."""
    aa = importlib.import_module("tfadv.attacks.autoattack")  # the package exports the function
    settings = dict(eps=eps, apgd_max_iter=budgets["apgd_max_iter"], nb_random_init=1,
                    seed=seed, batch_size=batch_size, jit_compile=False,
                    n_target_classes=budgets["n_target_classes"],
                    fab_max_iter=budgets["fab_max_iter"],
                    square_max_iter=budgets["square_max_iter"], square_restarts=1)
    parts = aa.components("standard", **settings)
    runs = {name: (lambda x, y, run=run: run(model, x, y, np.arange(len(x)))[0])
            for name, run in parts.items()}
    runs["autoattack"] = lambda x, y: aa.run_native(model, x, y, version="standard",
                                                    **settings)[0]
    return runs


def _torchattacks(torchattacks, net, eps, classes, *, seed, apgd_max_iter, n_target_classes,
                  fab_max_iter, square_max_iter):
    """name -> torchattacks attack with the reference's budgets (see the module docstring)."""
    targets = min(n_target_classes, classes - 1)

    def configure(attack):
        name = type(attack).__name__
        if name in ("APGD", "APGDT"):
            attack.steps = apgd_max_iter
        if name == "FAB":
            attack.steps = fab_max_iter
        if name in ("APGDT", "FAB"):
            attack.n_target_classes = targets
        if name == "Square":
            attack.n_queries, attack.rescale_schedule = square_max_iter, False
        return attack

    common = dict(norm="Linf", eps=eps, seed=seed)
    ensemble = torchattacks.AutoAttack(net, version="standard", n_classes=classes, **common)
    for attack in ensemble._autoattack.attacks:
        configure(attack)
    return {
        "apgd-ce": configure(torchattacks.APGD(net, loss="ce", n_restarts=1, **common)),
        "apgd-t": configure(torchattacks.APGDT(net, n_restarts=1, n_classes=classes, **common)),
        "fab-t": configure(torchattacks.FAB(net, multi_targeted=True, n_restarts=1,
                                            n_classes=classes, **common)),
        "square": configure(torchattacks.Square(net, n_restarts=1, p_init=0.8, **common)),
        "autoattack": ensemble,
    }


def _art_apgd_ce(model, x, y, eps, max_iter, seed, batch_size):
    from art.attacks.evasion import AutoProjectedGradientDescent
    classifier = art_bridge.art_classifier(model)
    attack = AutoProjectedGradientDescent(
        estimator=classifier, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=max_iter,
        targeted=False, nb_random_init=1, batch_size=batch_size, loss_type="cross_entropy",
        verbose=False)
    with art_bridge.seeded_numpy(seed):
        return attack.generate(x.copy(), art_bridge.one_hot(y, classifier.nb_classes))


# --------------------------------------------------------------------------- the PyTorch copy

def torch_copy(model, atol: float = 1e-4):
    """A PyTorch ``nn.Module`` (NCHW pixels in [0, 1] -> logits, float32, eval mode) with the
    Keras ``model``'s weights; raises if its logits differ from Keras' by more than ``atol``
    on random images. Keras kernels are HWIO, PyTorch's OIHW; Dense kernels are (in, out),
    PyTorch's (out, in); a Flatten flattens in NHWC order (the copy transposes back first);
    "same" padding is TensorFlow's (the extra row and column at the bottom and right)."""
    import torch

    layers = [_torch_layer(torch, layer) for layer in model.layers]
    net = torch.nn.Sequential(*[m for m in layers if m is not None]).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    probe = np.random.default_rng(0).uniform(0, 1, (8, *model.input_shape[1:])).astype(np.float32)
    ours = np.asarray(model(probe, training=False), np.float32)
    with torch.no_grad():
        theirs = net(torch.from_numpy(probe.transpose(0, 3, 1, 2).copy())).numpy()
    if not np.allclose(ours, theirs, rtol=0, atol=atol):
        raise ValueError(f"the PyTorch copy's logits differ from the Keras model's by "
                         f"{np.abs(ours - theirs).max():.3g} (> {atol})")
    return net


def _torch_layer(torch, layer):
    """The PyTorch module of one Keras layer (None: nothing to do)."""
    nn = torch.nn
    kind = type(layer).__name__
    if len(getattr(layer, "_inbound_nodes", [])) > 1:
        raise ValueError(f"layer {layer.name} is shared: only plain chains are supported")
    if kind in ("InputLayer", "Dropout"):
        return None
    if kind == "Rescaling":
        return _Lambda(lambda t, s=float(layer.scale), o=float(layer.offset): t * s + o)
    if kind == "Conv2D":
        kernel, *bias = layer.get_weights()
        kh, kw = kernel.shape[:2]
        conv = nn.Conv2d(kernel.shape[2], kernel.shape[3], (kh, kw), stride=layer.strides,
                         dilation=layer.dilation_rate, bias=bool(bias))
        conv.weight.data = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        if bias:
            conv.bias.data = torch.from_numpy(bias[0].copy())
        parts = [_same_padding(torch, layer, kh, kw)] if layer.padding == "same" else []
        return nn.Sequential(*parts, conv, _activation(torch, layer))
    if kind == "Dense":
        kernel, *bias = layer.get_weights()
        dense = nn.Linear(kernel.shape[0], kernel.shape[1], bias=bool(bias))
        dense.weight.data = torch.from_numpy(kernel.T.copy())
        if bias:
            dense.bias.data = torch.from_numpy(bias[0].copy())
        return nn.Sequential(dense, _activation(torch, layer))
    if kind == "BatchNormalization":
        gamma, beta, mean, var = layer.get_weights()
        scale = gamma / np.sqrt(var + layer.epsilon)
        shift = beta - mean * scale
        return _Lambda(lambda t, s=torch.from_numpy(scale), b=torch.from_numpy(shift):
                       t * s.view(1, -1, 1, 1) + b.view(1, -1, 1, 1))
    if kind in ("ReLU", "Activation"):
        return _activation(torch, layer)
    if kind == "GlobalAveragePooling2D":
        return _Lambda(lambda t: t.mean(dim=(2, 3)))
    if kind == "Flatten":
        return _Lambda(lambda t: t.permute(0, 2, 3, 1).flatten(1) if t.dim() == 4 else t)
    raise ValueError(f"no PyTorch copy of a {kind} layer ({layer.name})")


def _activation(torch, layer):
    name = getattr(layer, "activation", None)
    name = getattr(name, "__name__", "relu" if type(layer).__name__ == "ReLU" else name)
    if name in (None, "linear"):
        return torch.nn.Identity()
    if name == "relu":
        return torch.nn.ReLU()
    raise ValueError(f"no PyTorch copy of activation {name!r} ({layer.name})")


def _same_padding(torch, layer, kh, kw):
    """TensorFlow's "same" padding: the total split with the extra pixel after."""
    (h, w), (dh, dw) = layer.input.shape[1:3], layer.dilation_rate
    pads = []
    for size, k, s in ((w, (kw - 1) * dw + 1, layer.strides[1]),
                       (h, (kh - 1) * dh + 1, layer.strides[0])):
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return torch.nn.ZeroPad2d(tuple(pads))  # (left, right, top, bottom)


class _Lambda:
    """A parameter-free PyTorch module from a function (built lazily: torch is optional)."""

    def __new__(cls, fn):
        import torch

        class Lambda(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fn = fn

            def forward(self, t):
                return self.fn(t)

        return Lambda()
