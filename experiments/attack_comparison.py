"""Paper 002 (survey), Figure 4: C&W's comparison of attacks, best / average / worst case.

Li & Namiot, "A Survey of Adversarial Attacks and Defenses for image data on Deep Learning"
(shared/papers/002), Figure 4, reproduced from Carlini & Wagner 2017 (Table IV): for each
attack, the mean distortion in the attack's own norm and the success probability of
*targeted* attacks on a normally trained model, where each correctly classified image is
attacked towards every other class and

- best case: the easiest target of each image (smallest distortion among its successes;
  success when any target succeeds),
- average case: one target drawn at random per image (seeded),
- worst case: the hardest target (largest distortion; success only when every target
  succeeds).

Rows: C&W L0 and JSMA (L0, counted in pixels: a pixel is changed when any of its channels is,
as C&W count), C&W L2 and DeepFool (L2; DeepFool is untargeted, so only its untargeted
minimum fills the best-case column, as in the paper), C&W Linf, fast gradient sign and
iterative gradient sign (Linf). For the two gradient-sign methods, as in C&W, the distortion
is the smallest eps on the preset's grid at which the targeted attack succeeds.

Commands:

    python -m experiments.attack_comparison --preset=cifar --data=../shared/data/cifar10-jpeg.tar.gz
    python -m experiments.attack_comparison --preset=smoke

Presets: smoke (digits, the zoo's ``digits_tiny_cnn_smoke``, paper 001's smoke base model, a
few images, cheap attack settings), quick (digits, ``digits_tiny_cnn``, more images), cifar
(the zoo's ``cifar10_resnet18_w32``, paper 001's cifar base model, from its cache). Writes ``<out>/table_attack_comparison.csv`` (+ ``.md``), the
per-(image, target) results ``per_example.csv`` and ``run.json``.

Expected (paper, CIFAR column, mean distortion, all 100% unless stated): best / average /
worst: C&W L0 5.9 / 13 / 24 pixels; JSMA-Z 20 / 58 / 150; C&W L2 0.17 / 0.33 / 0.51; DeepFool
0.85 (best); C&W Linf 0.0092 / 0.013 / 0.019; FGS 0.015 (95%) / 0.029 (51%) / 0.34 (1%); IGS
0.0078 / 0.014 / 0.023. Measured: notes/RESULTS.md.
Runtime: cifar 16 minutes on the 2-core CPU (5 images x 9 targets, model from cache; measured
C&W L0 5.4 / 16 / 28 pixels, L2 0.20 / 0.36 / 0.50, Linf 0.0074 / 0.016 / 0.021); smoke
about 30 seconds.

From Python: ``run(dict(PRESETS["smoke"], preset="smoke", cache_dir=None), Path("out"))``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from experiments import common
from tfadv import cache

# Paper 002 Figure 4 (= C&W 2017 Table IV), CIFAR columns: (mean, success %) per case.
PAPER_CIFAR = {
    "C&W L0": {"best": (5.9, 100), "average": (13, 100), "worst": (24, 100)},
    "JSMA": {"best": (20, 100), "average": (58, 100), "worst": (150, 100)},  # JSMA-Z
    "C&W L2": {"best": (0.17, 100), "average": (0.33, 100), "worst": (0.51, 100)},
    "DeepFool": {"best": (0.85, 100)},
    "C&W Linf": {"best": (0.0092, 100), "average": (0.013, 100), "worst": (0.019, 100)},
    "FGS": {"best": (0.015, 95), "average": (0.029, 51), "worst": (0.34, 1)},
    "IGS": {"best": (0.0078, 100), "average": (0.014, 100), "worst": (0.023, 100)},
}
CASES = ("best", "average", "worst")

# row -> (attack name in tfadv.attacks, norm, preset key holding its parameters)
ROWS = {
    "C&W L0": ("cw_l0", "l0", "cw_l0"),
    "JSMA": ("jsma", "l0", "jsma"),
    "C&W L2": ("cw_l2", "l2", "cw_l2"),
    "DeepFool": ("deepfool", "l2", "deepfool"),
    "C&W Linf": ("cw_linf", "linf", "cw_linf"),
    "FGS": ("fgsm", "linf", None),
    "IGS": ("bim", "linf", "igs"),
}

_SMOKE_ATTACKS = dict(
    cw_l0=dict(binary_search_steps=3, max_iterations=50, initial_const=1.0),
    jsma=dict(theta=1.0, gamma=1.0),
    cw_l2=dict(binary_search_steps=4, max_iterations=100, initial_const=1.0),
    deepfool=dict(),
    cw_linf=dict(max_iterations=100),
    igs=dict(nb_iter=10),
)
PRESETS = {
    "smoke": dict(classifier="digits_tiny_cnn_smoke", data="digits", images=4,
                  eps_grid_max=0.5, eps_grid_steps=20, seed=0, precision="float32",
                  data_dir=None, attacks=_SMOKE_ATTACKS),
    "quick": dict(classifier="digits_tiny_cnn", data="digits", images=20,
                  eps_grid_max=0.5, eps_grid_steps=50, seed=0, precision="float32",
                  data_dir=None,
                  attacks=dict(_SMOKE_ATTACKS, cw_l2=dict(binary_search_steps=6,
                                                           max_iterations=500))),
    # C&W's budgets cut to what a 2-core CPU affords for 5 images x 9 targets on ResNet-18
    # (their L2: 9 binary steps x 10,000 Adam steps; here 5 x 200; L0 and Linf likewise).
    "cifar": dict(classifier="cifar10_resnet18_w32", data="cifar10", images=5,
                  eps_grid_max=64 / 255, eps_grid_steps=128, seed=0, precision="auto",
                  data_dir=None,
                  attacks=dict(cw_l0=dict(binary_search_steps=2, max_iterations=100,
                                          initial_const=0.1, remove_fraction=0.5),
                               jsma=dict(theta=1.0, gamma=1.0),
                               cw_l2=dict(binary_search_steps=5, max_iterations=200),
                               deepfool=dict(), cw_linf=dict(max_iterations=100, max_rounds=30),
                               igs=dict(nb_iter=10))),
}


def run(config: dict, out: Path) -> dict:
    """The comparison table for a resolved preset; writes it, the per-(image, target) rows
    and run.json to ``out``. ``config["cache_dir"]``: the cache root (None: ``$TFADV_CACHE``,
    else data/). Returns the table and the per-example rows."""
    from tfadv import report
    from tfadv.models.train import set_precision

    out, timer = cache.path(out), report.Timer()
    config = dict(config, precision=set_precision(config["precision"]))
    with timer("model"):
        model, model_name, x, y = load_model_and_images(config)
    num_classes = int(model.output_shape[-1])
    rng = np.random.default_rng(config["seed"] + 1)
    average_target = (y + rng.integers(1, num_classes, len(y))) % num_classes
    per_example = per_example_results(model, x, y, config, timer)
    table = summarise(per_example, average_target)
    report.save_table(per_example, out, "per_example")
    report.save_table(table, out, "table_attack_comparison",
                      table_markdown(table, model_name, config))
    report.save_json(out / "run.json", report.run_info(config, timer.seconds, model=model_name,
                                                       images=len(y)))
    print(table_markdown(table, model_name, config))
    print(f"wrote {out}")
    return {"table": table, "per_example": per_example}


def load_model_and_images(config):
    """The zoo classifier, its file name and ``images`` correctly classified test images
    (a seeded draw)."""
    from tfadv import cache, data
    from tfadv.evaluation import predict
    from tfadv.models import zoo
    root = cache.root(config.get("cache_dir"))
    train = data.load(config["data"], "train", data_dir=config["data_dir"], cache_dir=root)
    test = data.load(config["data"], "test", data_dir=config["data_dir"], cache_dir=root)
    # The zoo's seed-0 model, the one paper 001 trains: --seed changes the draws, not it.
    classifier = zoo.load(config["classifier"], data=config["data"], train=train, test=test,
                          cache_dir=root)
    model = classifier.model
    correct = np.flatnonzero(predict(model, test.images) == test.labels)
    if len(correct) < config["images"]:
        raise ValueError(f"only {len(correct)} correctly classified test images, the preset "
                         f"asks for {config['images']}")
    idx = np.sort(np.random.default_rng(config["seed"]).choice(correct, config["images"],
                                                               replace=False))
    return model, classifier.path.name, test.images[idx], test.labels[idx]


def pixel_l0(diff: np.ndarray) -> np.ndarray:
    """Changed pixels per image (a pixel counts once however many channels changed)."""
    return np.count_nonzero(np.any(diff != 0, axis=-1).reshape(len(diff), -1), axis=1)


def distortion(x, x_adv, norm: str) -> np.ndarray:
    diff = (x_adv.astype(np.float64) - x).reshape(x.shape)
    if norm == "l0":
        return pixel_l0(diff).astype(np.float64)
    flat = diff.reshape(len(x), -1)
    return np.linalg.norm(flat, axis=1) if norm == "l2" else np.abs(flat).max(axis=1)


def all_targets(y: np.ndarray, num_classes: int):
    """Every (image, other class) pair: image indices and targets, image-major."""
    image = np.repeat(np.arange(len(y)), num_classes - 1)
    target = np.array([t for label in y for t in range(num_classes) if t != label])
    return image, target


def eps_search(model, attack_name, params, x, labels, eps_grid, targeted=True):
    """Smallest eps on the grid at which the attack succeeds, per image (inf if none), and
    that eps's adversarial image. Images leave once they succeed (the grid ascends)."""
    from tfadv import attacks
    from tfadv.evaluation import predict
    found = np.full(len(x), np.inf)
    x_adv = x.copy()
    for eps in eps_grid:
        todo = np.flatnonzero(np.isinf(found))
        if not len(todo):
            break
        step = dict(params)
        if attack_name == "bim":
            step["eps_iter"] = eps / step["nb_iter"] * 1.25  # Kurakin: a little more than eps/n
        adv = attacks.make(attack_name, eps=float(eps), **step)(
            model, x[todo], labels[todo], labels[todo] if targeted else None)
        hit = predict(model, adv) == labels[todo]
        found[todo[hit]], x_adv[todo[hit]] = eps, adv[hit]
    return found, x_adv


def per_example_results(model, x, y, config, timer) -> pd.DataFrame:
    """One row per (attack row, image, target): success and distortion."""
    from tfadv import attacks
    from tfadv.evaluation import predict
    num_classes = int(model.output_shape[-1])
    image, target = all_targets(y, num_classes)
    xt = x[image]
    eps_grid = np.linspace(0, config["eps_grid_max"], config["eps_grid_steps"] + 1)[1:]
    frames = []
    for row, (name, norm, key) in ROWS.items():
        params = config["attacks"].get(key, {}) if key else {}
        print(f"  {row}: {name} {params}", flush=True)
        with timer(row):
            if name == "deepfool":  # untargeted only: the best case is its untargeted minimum
                adv = attacks.make(name, **params)(model, x, y)
                frames.append(pd.DataFrame({
                    "row": row, "image": np.arange(len(y)), "target": -1,
                    "success": predict(model, adv) != y, "distortion": distortion(x, adv, norm)}))
                continue
            if name in ("fgsm", "bim"):
                found, adv = eps_search(model, name, params, xt, target, eps_grid)
                success = np.isfinite(found)
            else:
                adv = attacks.make(name, **params)(model, xt, y[image], target)
                success = predict(model, adv) == target
            frames.append(pd.DataFrame({"row": row, "image": image, "target": target,
                                        "success": success,
                                        "distortion": distortion(xt, adv, norm)}))
    return pd.concat(frames, ignore_index=True)


def summarise(per_example: pd.DataFrame, average_target: np.ndarray) -> pd.DataFrame:
    """Best / average / worst case per row: mean distortion of successes and success rate."""
    rows = []
    for row, group in per_example.groupby("row", sort=False):
        by_image = group.groupby("image")
        cases = {}
        if (group.target == -1).all():  # untargeted DeepFool: best case only
            cases["best"] = (group.success.to_numpy(), group.distortion.to_numpy())
        else:
            hit = group.assign(d=np.where(group.success, group.distortion, np.inf))
            cases["best"] = (by_image.success.any().to_numpy(), hit.groupby("image").d.min()
                             .to_numpy())
            pick = group[group.target.to_numpy() == average_target[group.image.to_numpy()]]
            cases["average"] = (pick.success.to_numpy(), pick.distortion.to_numpy())
            cases["worst"] = (by_image.success.all().to_numpy(),
                              by_image.distortion.max().to_numpy())
        for case in CASES:
            paper = PAPER_CIFAR[row].get(case)
            success, dist = cases.get(case, (np.zeros(0, bool), np.zeros(0)))
            rows.append({
                "attack": row, "case": case, "images": len(success),
                "mean_distortion": float(dist[success].mean()) if success.any() else np.nan,
                "success_rate": float(success.mean()) if len(success) else np.nan,
                "paper_cifar_mean": paper[0] if paper else np.nan,
                "paper_cifar_success": paper[1] / 100 if paper else np.nan})
    return pd.DataFrame(rows)


def table_markdown(table: pd.DataFrame, model_name: str, config: dict) -> str:
    """Rows attack, columns case; cells 'distortion (success) [paper (success)]'. (Not
    ``report.ours_and_paper``: two numbers per cell, distortions on very different scales.)"""
    def cell(row):
        if np.isnan(row.success_rate):
            return "-"
        mean = "-" if np.isnan(row.mean_distortion) else f"{row.mean_distortion:.4g}"
        ours = f"{mean} ({row.success_rate:.0%})"
        if np.isnan(row.paper_cifar_mean):
            return ours
        return f"{ours} [{row.paper_cifar_mean:g} ({row.paper_cifar_success:.0%})]"
    wide = table.assign(cell=[cell(r) for r in table.itertuples()]).pivot(
        index="attack", columns="case", values="cell").loc[list(ROWS), list(CASES)]
    return (f"### Attack comparison (paper 002 Figure 4): mean distortion (success), "
            f"[paper, CIFAR-10]\n\nModel {model_name}, preset {config.get('preset')}, "
            f"{config['images']} correctly classified test images, every other class as a "
            f"target. L0 in pixels; L2 and Linf in [0, 1] pixel units.\n\n"
            f"{wide.to_markdown()}\n")


def main(argv):
    del argv
    config, out, _ = common.start(PRESETS, "attack_comparison", default_preset="smoke")
    run(config, out)  # run keeps its own timer: it is callable without the command line


if __name__ == "__main__":
    common.main(main, "attack_comparison")
