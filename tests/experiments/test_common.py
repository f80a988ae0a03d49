"""What the experiments share (experiments/common.py): ``--set`` parsing, the preset pick,
user errors as one line with exit status 2, and the layout (no experiment imports another;
presets name zoo classifiers).
"""

from __future__ import annotations

import ast
import sys

import pytest

from experiments import common
from helpers import REPO_ROOT, one_error_line, run_module


# --------------------------------------------------------------------------- flags, presets

def test_set_overrides_parse_numbers_lists_and_refuse_code():
    from experiments.common import _parse_like
    assert _parse_like("16/255", 0.1) == pytest.approx(16 / 255)
    assert _parse_like("1e-3", 0.1) == pytest.approx(1e-3)
    assert _parse_like("50,100", [1]) == [50, 100]
    assert _parse_like("false", True) is False
    with pytest.raises(ValueError, match="number"):
        _parse_like("__import__('os').getcwd()", 0.1)


def test_pick_preset_takes_the_accelerated_one_when_a_device_is_visible(monkeypatch):
    import tensorflow as tf

    class Device:
        def __init__(self, name):
            self.name = name

    visible = {"GPU": [], "TPU": []}
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind: visible.get(kind, []))
    picked, why = common.pick_preset("paper", "quick", "it needs a GPU")
    assert picked == "quick" and why == "no GPU or TPU is visible: it needs a GPU"
    visible["GPU"] = [Device("/physical_device:GPU:0")]
    picked, why = common.pick_preset("paper", "quick", "it needs a GPU")
    assert picked == "paper" and "/physical_device:GPU:0" in why


# --------------------------------------------------------------------------- user errors

@pytest.mark.parametrize("args, message", [
    (["--preset=nope"], "unknown preset 'nope'"),
    (["--preset=smoke", "--set=sizes=abc"], "--set expected a number"),
])
def test_user_error_is_one_line_and_exit_status_2(tmp_path, args, message):
    proc = run_module("experiments.adversarial_finetuning", *args, f"--out={tmp_path / 'o'}",
                      expect=2, timeout=300)
    assert message in one_error_line(proc, "adversarial_finetuning")
    assert not (tmp_path / "o").exists()


def test_common_main_turns_a_value_error_into_one_line_and_status_2(monkeypatch, capsys):
    """In-process (the subprocess tests show the same from the command line): a URL
    cache root, refused by tfadv.cache, ends the run with one line on stderr, no traceback."""
    from tfadv import cache
    monkeypatch.delenv("TFADV_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["versatile_defense"])

    def experiment_main(argv):
        cache.root("s3://bucket/cache")

    with pytest.raises(SystemExit) as exit_info:
        common.main(experiment_main, "versatile_defense")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [lines[0]] and "Traceback" not in err
    assert lines[0].startswith("versatile_defense: error: s3://bucket/cache is a URL of a "
                               "kind the suite cannot write to")
    monkeypatch.setenv("TFADV_DEBUG", "1")  # the traceback, for debugging
    with pytest.raises(ValueError, match="is a URL of a kind"):
        common.main(experiment_main, "versatile_defense")


# --------------------------------------------------------------------------- layout

EXPERIMENTS = ("adversarial_finetuning", "attack_comparison", "gradient_sign_confidence")


@pytest.mark.parametrize("name", EXPERIMENTS + ("benchmark", "benchmark_purifier"))
def test_no_experiment_imports_another(name):
    """Experiments share only experiments/common.py (flags); models come from the zoo."""
    tree = ast.parse((REPO_ROOT / "experiments" / f"{name}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "experiments":
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("experiments."):
            imported.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            imported |= {a.name.split(".")[1] for a in node.names
                         if a.name.startswith("experiments.")}
    assert imported <= {"common"}, imported


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_presets_name_zoo_classifiers(name):
    import importlib
    from tfadv.models import zoo
    module = importlib.import_module(f"experiments.{name}")
    for preset, config in module.PRESETS.items():
        assert config["classifier"] in zoo.NAMES, (preset, config["classifier"])
