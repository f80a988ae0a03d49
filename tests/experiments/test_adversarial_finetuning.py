"""Paper 001 (experiments/adversarial_finetuning.py): the table summary, the JSMA budget
table, and the smoke run end to end.

Every run here uses a temporary cache root (``--cache_dir``, the ``cache`` fixture of
conftest.py), never the checkout's data/.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments import adversarial_finetuning as aft
from helpers import run_module

TABLE_COLUMNS = ["attack", "metric", "n_images", "accuracy", "std", "paper"]


# --------------------------------------------------------------------------- summarise

def test_summarise_means_ratios_and_paper_column():
    rows = []
    values = {("FGSM", "ORIG"): [80.0, 90.0], ("FGSM", "ADV"): [40.0, 50.0],
              ("JSMA", "ORIG"): [60.0, 70.0], ("JSMA", "ADV"): [30.0, 20.0]}
    for (attack, metric), accs in values.items():
        for n, offset in ((20, 5.0), (50, 0.0)):       # 50 is a paper size, 20 is not
            for seed, acc in enumerate(accs):
                rows.append({"model": "base", "attack": attack, "metric": metric,
                             "n_images": n, "seed": seed, "accuracy": acc + offset})
    table = aft.summarise(pd.DataFrame(rows), "base")

    assert list(table.columns) == TABLE_COLUMNS
    assert len(table) == 2 * 3 * 2                      # attacks x ORIG/ADV/RATIO x sizes
    # Ordered: attack, then ORIG, ADV, RATIO, then image count.
    assert list(table.metric[:6]) == ["ORIG", "ORIG", "ADV", "ADV", "RATIO", "RATIO"]
    assert list(table.attack) == ["FGSM"] * 6 + ["JSMA"] * 6
    assert list(table.n_images[:2]) == [20, 50]

    def row(attack, metric, n):
        hit = table[(table.attack == attack) & (table.metric == metric) & (table.n_images == n)]
        assert len(hit) == 1
        return hit.iloc[0]

    assert row("FGSM", "ORIG", 50).accuracy == pytest.approx(85.0)   # mean over seeds
    assert row("FGSM", "ORIG", 50)["std"] == pytest.approx(np.std([80, 90], ddof=1))
    assert row("FGSM", "ADV", 20).accuracy == pytest.approx(50.0)
    assert row("JSMA", "ADV", 50).accuracy == pytest.approx(25.0)
    assert row("FGSM", "RATIO", 50).accuracy == pytest.approx(45.0 / 85.0)
    assert row("JSMA", "RATIO", 20).accuracy == pytest.approx(30.0 / 70.0)
    assert np.isnan(row("JSMA", "RATIO", 20)["std"])
    # The paper's Table I beside each paper-sized row; NaN for other sizes.
    paper = aft.PAPER_TABLES["base"]
    assert row("FGSM", "ORIG", 50).paper == pytest.approx(paper["FGSM"]["ORIG"][0])
    assert row("JSMA", "ADV", 50).paper == pytest.approx(paper["JSMA"]["ADV"][0])
    assert row("JSMA", "RATIO", 50).paper == pytest.approx(
        paper["JSMA"]["ADV"][0] / paper["JSMA"]["ORIG"][0])
    assert table[table.n_images == 20].paper.isna().all()


def test_summarise_ratio_is_nan_when_original_accuracy_is_zero():
    rows = [{"model": "aft_fgsm", "attack": "FGSM", "metric": m, "n_images": 100, "seed": s,
             "accuracy": 0.0} for m in ("ORIG", "ADV") for s in range(2)]
    table = aft.summarise(pd.DataFrame(rows), "aft_fgsm")
    ratio = table[table.metric == "RATIO"].iloc[0]
    assert np.isnan(ratio.accuracy)
    paper = aft.PAPER_TABLES["aft_fgsm"]["FGSM"]
    assert ratio.paper == pytest.approx(paper["ADV"][1] / paper["ORIG"][1])  # 100: index 1


def test_jsma_budget_table_matches_rerunning_with_a_smaller_gamma():
    """The budget table claims that a smaller gamma only truncates each image's path: check it
    against real re-runs on the digits model."""
    from helpers import trained_digits_model
    from tfadv import attacks
    from tfadv.evaluation import predict
    trained = trained_digits_model()
    x, y = trained.test.images[:150], trained.test.labels[:150]
    x_adv = attacks.make("jsma", theta=1.0, gamma=0.5)(trained.model, x, y)
    per_image = pd.DataFrame({
        "model": "base", "attack": "JSMA", "seed": 0, "label": y,
        "pred_orig": predict(trained.model, x), "pred_adv": predict(trained.model, x_adv),
        "l0": np.count_nonzero((x_adv != x).reshape(len(x), -1), axis=1)})
    table = aft.jsma_budget_table(per_image, n_features=64, max_budget=32).set_index(
        "budget_features")
    for gamma in (4 / 64, 8 / 64, 16 / 64):
        budget = int(gamma * 64)
        rerun = attacks.make("jsma", theta=1.0, gamma=gamma)(trained.model, x, y)
        measured = 100 * np.mean(predict(trained.model, rerun) == y)
        assert table.loc[budget, "accuracy"] == pytest.approx(measured)
    assert table["accuracy"].is_monotonic_decreasing


# --------------------------------------------------------------------------- smoke run

@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, cache):
    """``--preset=smoke`` end to end (trains and caches its digits models in the temporary
    cache; about 15-30 s on a 2-core CPU)."""
    out = tmp_path_factory.mktemp("aft_smoke")
    proc = run_module("experiments.adversarial_finetuning", "--preset=smoke", f"--out={out}",
                      cache=cache)
    return out, proc


def test_smoke_run_writes_every_output(smoke_run):
    out, _ = smoke_run
    for stem in ("table1_base", "table2_aft_fgsm", "table3_aft_jsma", "ratios"):
        assert (out / f"{stem}.csv").is_file() and (out / f"{stem}.md").is_file(), stem
    for name in ("base", "aft_fgsm", "aft_jsma"):
        png = out / f"confusion_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert (out / "run.json").is_file()


@pytest.mark.parametrize("stem", ["table1_base", "table2_aft_fgsm", "table3_aft_jsma"])
def test_smoke_tables(stem, smoke_run):
    out, _ = smoke_run
    sizes = aft.PRESETS["smoke"]["sizes"]
    table = pd.read_csv(out / f"{stem}.csv")
    assert list(table.columns) == TABLE_COLUMNS
    expected = {(a, m, n) for a in ("FGSM", "JSMA") for m in ("ORIG", "ADV", "RATIO")
                for n in sizes}
    assert set(zip(table.attack, table.metric, table.n_images)) == expected
    assert len(table) == len(expected)
    acc = table[table.metric != "RATIO"]
    assert acc.accuracy.between(0, 100).all()
    assert acc["std"].notna().all() and (acc["std"] >= 0).all()   # 3 seeds
    for (attack, n), group in table.groupby(["attack", "n_images"]):
        by_metric = group.set_index("metric").accuracy
        if by_metric["ORIG"] > 0:
            assert by_metric["RATIO"] == pytest.approx(by_metric["ADV"] / by_metric["ORIG"])
    # Paper numbers only for the paper's image counts (smoke: 50 is one, 20 is not).
    for n in sizes:
        assert table[table.n_images == n].paper.notna().all() == (n in aft.PAPER_SIZES)
    markdown = (out / f"{stem}.md").read_text()
    assert markdown.startswith("### Table") and "| FGSM" in markdown and "RATIO" in markdown
    per_seed = pd.read_csv(out / f"{stem}_per_seed.csv")
    assert set(per_seed.seed) == set(range(aft.PRESETS["smoke"]["seeds"]))


def test_smoke_ratios_and_run_json(smoke_run):
    out, _ = smoke_run
    ratios = pd.read_csv(out / "ratios.csv")
    assert list(ratios.columns) == ["model", "attack", "ratio_adv_over_orig", "paper"]
    assert set(zip(ratios.model, ratios.attack)) == {
        (m, a) for m in ("base", "aft_fgsm", "aft_jsma") for a in ("FGSM", "JSMA")}
    info = json.loads((out / "run.json").read_text())
    for key in ("config", "versions", "git_commit", "timings_s"):
        assert key in info, key
    assert info["config"]["preset"] == "smoke"
    assert info["config"]["out"] == str(out)
    assert info["versions"]["tensorflow"] and info["versions"]["keras"]
    assert set(info["timings_s"]) >= {"load_data", "base_model", "finetune", "evaluate_base"}
    assert all(v >= 0 for v in info["timings_s"].values())
    assert set(info["clean_accuracy"]) == {"base", "aft_fgsm", "aft_jsma"}


def test_smoke_artifacts_live_in_the_cache_given(smoke_run, cache):
    """The base model (zoo), the fine-tuned models and the adversarial sets are all under
    --cache_dir: models/ and adversarial/<model file stem>/."""
    out, _ = smoke_run
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["cache_dir"] == str(cache.root)
    files = {name: Path(path) for name, path in info["model_files"].items()}
    assert set(files) == {"base", "aft_fgsm", "aft_jsma"}
    for path in files.values():
        assert path.parent == cache.root / "models" and path.is_file(), path
        sets = list((cache.root / "adversarial" / path.stem).glob("*/shard00000.npy"))
        assert len(sets) == 2 * aft.PRESETS["smoke"]["seeds"] + (2 if path == files["base"]
                                                                 else 0), path
    assert not cache.unused.exists()
