"""Paper 003's outputs (the versatile defense): Tables 1-2, Fig 3 (quality), Fig 4
(robustness), Fig 5 (visual), the adaptive table and the purifier training log, each as
CSV + Markdown (+ PNG), with the notes that say what differs from the paper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tfadv import report
from tfadv.report import figures, tables

# ---------------------------------------------------------------------------- the paper's tables

TRAIN_ATTACKS = ("fgsm", "bim", "pgd", "mifgsm", "cw_l2", "autoattack")  # Table 1's columns
TEST_ATTACKS = TRAIN_ATTACKS + ("deepfool",)  # DeepFool: never seen in training
ROWS = ("clean",) + TEST_ATTACKS
LABELS = {"clean": "Clean", "fgsm": "FGSM", "bim": "BIM", "pgd": "PGD", "mifgsm": "MI-FGSM",
          "cw_l2": "C&W", "autoattack": "AutoAttack", "deepfool": "DeepFool",
          "average": "Average"}
DEFENSE_LABELS = {"none": "No defense", "versatile": "Versatile purifier",
                  "random_resize": "Random Resizing", "pd_wd": "Pixel Deflection + WD",
                  "sr_wd": "Super-Resolution + WD",
                  **{f"specific_{a}": f"{LABELS[a]}-specific purifier" for a in TRAIN_ATTACKS}}

nan = float("nan")
# Paper 003, Table 1 (accuracy %, ImageNet / Inception-v3, 5,000 validation images): columns
# No defense, then the purifier trained on FGSM, BIM, PGD, MI-FGSM, C&W, AutoAttack. Our copy
# of the paper lost the column headers; this order follows from Table 2's "Atk-specific"
# column (this table's diagonal; its Clean and DeepFool cells are the means of the six
# columns) and from the text ("81.43% when trained on MI-FGSM"). Average: over all 8 rows.
PAPER_TABLE1 = {
    "clean": (100, 95.3, 96.5, 96.3, 95.6, 93.1, 91.7),
    "fgsm": (25.8, 83.2, 70.6, 80.7, 85.74, 60.35, 80.6),
    "bim": (1.8, 75.72, 90.42, 73.2, 71.3, 75.8, 70.3),
    "pgd": (2.4, 84.3, 83.7, 88.4, 77.45, 76.6, 83.14),
    "mifgsm": (0.1, 83.6, 77.36, 65.3, 86.34, 64.5, 67.8),
    "cw_l2": (0, 77.1, 77.4, 78.5, 76.4, 89.1, 78.1),
    "autoattack": (0.5, 67.1, 70.15, 77.8, 79.5, 79.7, 88.4),
    "deepfool": (0.4, 78.56, 73.3, 76.1, 79.1, 70.3, 80.7),
    "average": (nan, 80.61, 79.93, 79.54, 81.43, 76.18, 80.09),
}
# Paper 003, Table 2: No defense, Ours (the versatile purifier), Atk-specific (the matching
# purifier of Table 1; Clean and DeepFool: the mean of the six), Random (resizing + padding,
# Xie et al.), WD+PD (Prakash et al.), WD+SR (Mustafa et al.).
PAPER_TABLE2 = {
    "clean": (100, 92.1, 94.75, 97.3, 96.5, 86.3),
    "fgsm": (25.8, 80.4, 83.2, 51.3, 37.5, 70.7),
    "bim": (1.8, 87.3, 90.42, 19.72, 28.9, 73.2),
    "pgd": (2.4, 86.76, 88.4, 21.3, 29.2, 79.4),
    "mifgsm": (0.1, 89.3, 86.34, 14.5, 15.44, 70.58),
    "cw_l2": (0, 88.4, 89.1, 90.1, 35.4, 87.5),
    "autoattack": (0.5, 83.7, 88.4, 20.1, 15.6, 71.8),
    "deepfool": (0.4, 80.3, 76.34, 88.9, 37.8, 73.36),
    "average": (nan, 86.03, 87.12, 50.4, 37.04, 76.6),
}
TABLE1_COLUMNS = [("none", "No defense")] + [(f"specific_{a}", f"M_{LABELS[a]}")
                                             for a in TRAIN_ATTACKS]
TABLE2_COLUMNS = [("none", "No defense"), ("versatile", "Versatile (ours)"),
                  ("specific", "Atk-specific"), ("random_resize", "Random Resizing"),
                  ("pd_wd", "Pixel Deflection + WD"), ("sr_wd", "Super-Resolution + WD")]

def build_tables(acc: dict, n_images: int, evaluations) -> tuple[pd.DataFrame | None,
                                                                  pd.DataFrame]:
    """Tidy Table 1 and Table 2 from ``acc[(evaluation, row, defense)]`` (accuracy %).
    Without attack-specific purifiers (a versatile-only run) Table 1 is None and Table 2's
    Atk-specific column is empty (NaN)."""
    with_specific = all(("tensor" if "tensor" in evaluations else evaluations[0], "clean",
                         f"specific_{a}") in acc for a in TRAIN_ATTACKS)
    t1, t2 = [], []
    for evaluation in evaluations:
        cells1 = {(row, key): acc[(evaluation, row, key)] for row in ROWS
                  for key, _ in TABLE1_COLUMNS} if with_specific else {}
        cells2 = {}
        for row in ROWS:  # Atk-specific: the row's own purifier; Clean, DeepFool: the mean
            specific = nan if not with_specific else (
                acc[(evaluation, row, f"specific_{row}")] if row in TRAIN_ATTACKS else
                float(np.mean([acc[(evaluation, row, f"specific_{a}")] for a in TRAIN_ATTACKS])))
            for key, _ in TABLE2_COLUMNS:
                cells2[(row, key)] = specific if key == "specific" else acc[(evaluation, row,
                                                                             key)]
        extra = dict(evaluation=evaluation, attack_saw_defense=False, images=n_images)
        if with_specific:
            t1 += tables.grid(cells1, ROWS, TABLE1_COLUMNS, LABELS, PAPER_TABLE1, **extra)
        t2 += tables.grid(cells2, ROWS, TABLE2_COLUMNS, LABELS, PAPER_TABLE2, **extra)
    return (pd.DataFrame(t1) if with_specific else None), pd.DataFrame(t2)


# ---------------------------------------------------------------------------- outputs

HOW = {"tensor": "adversarial tensors evaluated directly (the paper's protocol, 3.4.1)",
       "png": "after saving the adversarial images as 8-bit PNG and reloading them (3.4.1)"}


def dataset_name(config) -> str:
    source = str(config["data"])
    name = ("scikit-learn digits" if source == "digits" else
            "CIFAR-10" if "cifar10" in source.lower().replace("-", "") else "ImageNet"
            if config["classifier"] == "inception_v3" else source)
    return name if source in (name, "digits") else f"{name} ({source})"


def evaluate_rows(classifier, defended: dict, test, rows: dict, *, evaluations, n_quality: int,
                  seed_of, chunk: int = 0):
    """Tables 1-2's accuracy (%) ``acc[(evaluation, row, defense)]`` of every defense on every
    attacked test set (``rows[row]()`` loads it: an array or a lazily read shard set), Fig 3's
    quality rows (each defense but the other rows' attack-specific purifiers, on the first
    ``n_quality`` images) and Fig 5's examples (the versatile purifier on image
    ``row index - 1`` of each attack). Random defenses draw ``seed_of(row index, evaluation)``
    (+ the chunk's index): a fresh draw per row and mode. ``chunk``: images defended at a time
    (0: all at once); at the paper's 5,000 images of 256x256, three float32 copies of a set
    would take 12 GB."""
    from tfadv import data
    from tfadv.batching import pixels
    from tfadv.evaluation import image_quality, image_quality_summary, predict
    acc, quality_rows, examples = {}, [], []
    n = len(test.labels)
    size = chunk or n
    for r_index, (row, load) in enumerate(rows.items()):
        x_row = load()
        for evaluation in evaluations:
            right = {name: 0 for name in defended}
            quality = {name: [] for name in defended}
            for c_index, start in enumerate(range(0, n, size)):
                part = slice(start, min(n, start + size))
                x_in = pixels(x_row[part])
                x_in = x_in if evaluation == "tensor" else data.png_roundtrip(x_in)
                clean = pixels(test.images[part])
                for name, defense in defended.items():
                    x_def = defense(x_in, seed_of(r_index, evaluation) + c_index)
                    right[name] += int(np.sum(predict(classifier, x_def, batch_size=128)
                                              == test.labels[part]))
                    if evaluation != "tensor":
                        continue
                    if start < n_quality:
                        q = min(n_quality, part.stop) - start
                        quality[name].append(image_quality(clean[:q], x_def[:q]))
                    k = (r_index - 1) % n
                    if name == "versatile" and row != "clean" and part.start <= k < part.stop:
                        examples.append({"attack": LABELS[row], "clean": clean[k - start],
                                         "adversarial": x_in[k - start],
                                         "purified": x_def[k - start],
                                         "label": int(test.labels[k])})
            for name in defended:
                acc[(evaluation, row, name)] = 100.0 * (right[name] / n)  # as accuracy_percent
                label = ("Atk-specific purifier" if name == f"specific_{row}" else None
                         if name.startswith("specific_") else DEFENSE_LABELS[name])
                if label and evaluation == "tensor":
                    quality_rows.append({
                        "attack": LABELS[row], "defense": label, "defense_key": name,
                        **image_quality_summary(_joined(quality[name])),
                        "evaluation": "tensor", "attack_saw_defense": False})
            print(f"  {evaluation} {LABELS[row]:10s} " + " ".join(
                f"{k}={acc[(evaluation, row, k)]:.1f}" for k in defended), flush=True)
    return acc, quality_rows, examples


def _joined(parts: list):
    """The per-image quality of the chunks as one frame (no chunk: an empty frame)."""
    if not parts:
        return pd.DataFrame(columns=["mae", "psnr", "ssim"])
    if len(parts) == 1:
        return parts[0]
    return pd.concat(parts, ignore_index=True)


def write_outputs(out: Path, config: dict, *, table1, table2, histories, quality_rows,
                  examples, robustness, adaptive, test, classifier, classifier_name: str,
                  perceptual_note: str, n_pairs: int, n_specific_pairs: int | None = None,
                  diagnostics=None, second_name: str | None = None) -> None:
    """Every table and figure of the run under ``out``."""
    from tfadv.attacks.autoattack import ART_DEFAULT_SET_NOTE
    from tfadv.defenses.purifier import schedule_text
    from tfadv.evaluation import predict
    n_test = len(test.labels)
    for ex in examples:
        ex["pred_clean"], ex["pred_adv"], ex["pred_purified"] = (int(v) for v in predict(
            classifier, np.stack([ex["clean"], ex["adversarial"], ex["purified"]])))
    subtitle = f"{config['preset']} preset, {dataset_name(config)}"
    notes = [
        f"Ours: ImageNet, {classifier_name} (the paper: Inception-v3 with ImageNet weights, "
        "5,000 validation images)." if config["preset"] == "paper"
        else f"Ours are {dataset_name(config)} / {classifier_name}, NOT the paper's ImageNet / "
             "Inception-v3: the paper's numbers are in brackets for the trends, not as targets.",
        "Protocol: gray-box, as the paper: every attack saw the classifier only "
        "(attack_saw_defense = False); table_adaptive has attacks that see the defense.",
        f"Preset {config['preset']}, {n_test} test images (correctly classified: "
        f"{config['test_correct_only']}), {n_pairs} training pairs for the versatile "
        f"purifier, {n_specific_pairs or n_pairs} for each attack-specific one, "
        f"{config['epochs']} epochs, {config['steps']}-step loss weights, eps "
        f"{config['eps'] * 255:.0f}/255. {ART_DEFAULT_SET_NOTE}.", perceptual_note]
    if table1 is not None:  # None: a versatile-only run (purifiers="versatile")
        report.save_table(table1, out, "table1_generalizability", tables.markdown_by_evaluation(
            table1, "Table 1: generalizability of the attack-specific purifiers", notes + [
                "Columns M_X: the purifier trained on attack X only. DeepFool was never seen "
                "in training. Average: over the 8 rows, as the paper."], HOW))
    report.save_table(table2, out, "table2_comparison", tables.markdown_by_evaluation(
        table2, "Table 2: the versatile purifier beside the attack-specific ones and earlier "
        "defenses", notes + [
            "Atk-specific: the purifier trained on the row's attack (Clean, DeepFool: the mean "
            "of the six, as the paper). Baselines: tfadv.defenses (Xie et al. random resize + "
            "pad, resized back; Prakash et al. deflection scaled to the image size + wavelet "
            "denoising; wavelet denoising + the suite's x2 SR network, resized back)."], HOW))
    training = pd.DataFrame([{"purifier": k if k == "versatile" else f"specific_{k}", **record}
                             for k, history in histories.items() for record in history])
    monitored = "recovered_accuracy" in training
    report.save_table(training, out, "purifier_training", (
        "### Purifier training, epoch by epoch (beyond the paper)\n\nLosses are epoch means "
        "(gen_l1 in [0, 1] pixel units, gen_perc the perceptual term before lambda_perc). "
        + (f"recovered_accuracy: the classifier's accuracy (%) on the first "
           f"{config['monitor_n']} validation images (training-split images that no purifier "
           "trains on; never the test images) attacked by the purifier's attack "
           "(versatile: image i by the (i mod 6)-th of the six), purified by the purifier as "
           "it was at the end of the epoch; logged only, nothing is chosen with it. "
           if monitored else "No recovered_accuracy column: monitor_n is 0 or the purifiers "
           "came from a cache made without it. ")
        + f"Schedule: {schedule_text(config['epochs'], config['steps'])}.\n\n"
        f"{training.to_markdown(index=False, floatfmt='.4g')}\n\n"
        "The weighted terms of the generator's loss, mean over each phase's epochs (how much "
        "each term weighs in that phase):\n\n"
        f"{loss_terms(training).to_markdown(index=False, floatfmt='.3g')}\n\n"
        + "\n\n".join(notes) + "\n"))
    if monitored:
        figures.plot_purifier_training(training, out / "purifier_training.png", subtitle)
    quality = pd.DataFrame(quality_rows)
    n_quality = int(quality.images.iloc[0]) if len(quality) else 0
    report.save_table(quality, out, "quality", (
        f"### Fig 3: purified vs clean images ({n_quality} images per row)\n\nMAE in [0, 1] "
        "pixel units, PSNR in dB (identical images left out of the mean, counted in "
        "`identical`), SSIM. 'No defense': the attacked image itself.\n\n"
        f"{quality.to_markdown(index=False, floatfmt='.4f')}\n\n" + "\n\n".join(notes) + "\n"))
    figures.plot_quality(quality, out / "quality.png", subtitle)
    figures.plot_visual(examples, test.class_names, out / "visual.png", subtitle)
    shown = robustness.drop(columns=["eps", "eps_iter"]).assign(
        eps_iter_255=robustness.eps_iter * 255)
    report.save_table(robustness, out, "robustness", (
        f"### Fig 4: accuracy (%) under PGD and MI-FGSM of growing strength\n\n"
        f"{shown.to_markdown(index=False, floatfmt='.1f')}\n\n" + "\n\n".join(notes) + "\n"))
    figures.plot_robustness(robustness, out / "robustness.png", subtitle)
    report.save_table(adaptive, out, "table_adaptive", (
        "### Beyond the paper: attacks that see the defense\n\n"
        f"PGD (eps {config['eps'] * 255:.0f}/255, {config['adaptive_nb_iter']} steps of "
        f"{config['eps_iter']}) on the first {int(adaptive.images.iloc[0])} test images. "
        "attack_saw_defense False: the paper's gray-box PGD (classifier only); "
        "True: PGD through defense + classifier, chosen from the defense's declared "
        "properties (full gradients through differentiable ones such as the purifiers, BPDA "
        f"with the identity for the others, EOT over {config['adaptive_eot']} draws for the "
        "random ones; the random defenses are evaluated with a fresh draw). sanity: the "
        f"checks of tfadv.evaluation.adaptive on the first {config['sanity_n']} images (half "
        "the steps must not do better, eps 0.5 must reach <= 10%, gradients finite and not "
        "zero, transfer no stronger than white-box); 'ok' or what failed.\n\n"
        f"{adaptive.to_markdown(index=False, floatfmt='.1f')}\n\n" + "\n\n".join(notes) + "\n"))
    if diagnostics is not None:
        report.save_table(diagnostics, out, "diagnostics", (
            "### Beyond the paper: why the versatile purifier recovers an input or not\n\n"
            f"First {int(diagnostics.images.iloc[0])} test images. acc: the classifier's "
            "accuracy (%) on the input; acc_purified: after the versatile purifier (inference "
            "mode: no dropout, BatchNorm's moving statistics); acc_purified_dropout: with "
            "pix2pix's test-time dropout on. second_acc(_purified): "
            + (f"a second classifier, {second_name}, trained independently and never "
               "attacked, on the same inputs (high there while acc_purified is low: the "
               "leftover perturbation fools only the attacked classifier). "
               if second_name else "no second classifier in this preset. ")
            + "leftover_ratio: mean ||purified - clean|| / ||input - clean||; leftover_cosine: "
            "mean cosine between purified - clean and input - clean (near 1: what is left is "
            "the perturbation itself). The noise row has the Linf attacks' eps without their "
            "structure: restored noise but unrestored attacks means the purifier fails on "
            "adversarial structure, not on perturbations of that size.\n\n"
            f"{diagnostics.to_markdown(index=False, floatfmt='.3g')}\n\n"
            + "\n\n".join(notes) + "\n"))
    print(report.ours_and_paper(table2[table2.evaluation == "tensor"]).to_string(index=False))


def loss_terms(training: pd.DataFrame) -> pd.DataFrame:
    """Per purifier and loss-weight phase: the mean weighted terms of the generator's loss
    (GAN, lambda_pix x L1, lambda_perc x perceptual) over the phase's epochs."""
    if training.empty:
        return pd.DataFrame(columns=["purifier", "lambda_perc", "epochs", "gan",
                                     "lambda_pix_x_l1", "lambda_perc_x_perc"])
    weighted = training.assign(lambda_pix_x_l1=training.lambda_pix * training.gen_l1,
                               lambda_perc_x_perc=training.lambda_perc * training.gen_perc)
    return (weighted.groupby(["purifier", "lambda_perc"], sort=False)
            .agg(epochs=("epoch", "size"), gan=("gen_gan", "mean"),
                 lambda_pix_x_l1=("lambda_pix_x_l1", "mean"),
                 lambda_perc_x_perc=("lambda_perc_x_perc", "mean")).reset_index())


def run_record(config: dict, timer, *, classifier, perceptual: dict, attacks: dict,
               train_labels, assign, n_test: int, short_classes: int, n_quality: int,
               n_specific_pairs: int | None = None, n_val: int = 0,
               paths: dict, histories: dict, defended: dict, log: dict,
               purifier_batch: dict | None = None) -> dict:
    """run.json's contents: config, versions, device, timings (tfadv.report.run_info) and what
    this experiment decided: schedule, seeds, classifier, perceptual network, attacks, sizes,
    purifiers, baselines (with their declared properties), cache use, the paper's tables."""
    from tfadv import cache
    from tfadv.attacks.autoattack import ART_DEFAULT_SET_NOTE
    from tfadv.defenses.purifier import schedule_table
    seed = config["seed"]
    return report.run_info(
        config, timer.seconds, preset_pick=config["preset_source"], steps=config["steps"],
        schedule=schedule_table(config["epochs"], config["steps"]),
        seeds={"base": seed, "training images": seed + 1, "test images": seed + 2,
               "validation images": seed + 3, "second classifier": seed + 1,
               "sr images": seed + 5, "attack shards": "seed * 100000 + shard index (PGD, "
               "AutoAttack)", "random defenses": "seed * 10000 + row (+100 for png)"},
        classifier={"name": classifier.description, "id": classifier.id},
        perceptual=perceptual, attacks=attacks, autoattack_note=ART_DEFAULT_SET_NOTE,
        sizes={"training_pairs_versatile": int(len(train_labels)),
               "training_pairs_per_specific_purifier": int(n_specific_pairs or len(train_labels)),
               "specific_pairs": config.get("specific_pairs", "all"),
               "validation_images": int(n_val),
               "versatile_pairs_per_attack": {a: int(np.sum(assign == i))
                                              for i, a in enumerate(TRAIN_ATTACKS)},
               "test_images": int(n_test), "classes_short_of_correct": int(short_classes),
               "quality_images": int(n_quality)},
        purifiers={k: {"file": str(p), "last_epoch": histories[k][-1] if histories[k] else None}
                   for k, p in paths.items()},
        purifier_batch=purifier_batch,
        defenses={k: {"description": d.description, "params": d.params, "randomized":
                      d.randomized, "differentiable": d.differentiable}
                  for k, d in defended.items() if not k.startswith("specific")},
        cache={"dir": str(cache.root(config["cache_dir"])),
               "adversarial_shards_generated": len(log["shards"].get("generated", ())),
               "adversarial_shards_reused": len(log["shards"].get("reused", ())),
               "purifiers_trained": log.get("trained", []),
               "purifiers_cached": log.get("cached", []), "sr_network": log["sr"]},
        png_roundtrip=config["png_roundtrip"],
        paper_tables={"table1": PAPER_TABLE1, "table2": PAPER_TABLE2})
