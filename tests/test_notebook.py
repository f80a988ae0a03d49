"""The Colab notebook of the main job, notebooks/versatile_defense.ipynb, executed here.

There is no Jupyter kernel here: the notebook's JSON is read with the standard library and its
code cells run in order in one namespace, with the values of the cell tagged ``parameters``
replaced after it runs (as papermill injects parameters). The notebook is plain Python (no
``!``/``%`` lines): what only makes sense on Colab is behind ``if IN_COLAB:``. IPython's
display functions are replaced by recorders, so the test needs no IPython and sees what the
notebook shows.

Fast: the file's shape; the Colab branch with Google Drive, git and pip replaced by recorders;
the plan cell, which runs the real command with ``--plan`` (about 10 s); then every cell at
the smoke preset (about 90 s on 2 CPU cores), the tables and figures written and displayed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "versatile_defense.ipynb"
TABLES = ["table1_generalizability", "table2_comparison", "table_adaptive", "quality",
          "robustness", "purifier_training"]
FIGURES = ["quality.png", "robustness.png", "visual.png", "purifier_training.png"]


def _notebook() -> dict:
    return json.loads(NOTEBOOK.read_text())


def _code_cells() -> list[dict]:
    return [cell for cell in _notebook()["cells"] if cell["cell_type"] == "code"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _tags(cell: dict) -> list:
    return cell.get("metadata", {}).get("tags", [])


def _execute(cells, overrides: dict, namespace: dict | None = None) -> dict:
    """Runs ``cells`` in order in one namespace; ``overrides`` after the parameters cell."""
    namespace = {"__name__": "__main__"} if namespace is None else namespace
    for cell in cells:
        index = _code_cells().index(cell)
        exec(compile(_source(cell), f"{NOTEBOOK.name}, code cell {index}", "exec"), namespace)
        if "parameters" in _tags(cell):
            namespace.update(overrides)
    return namespace


class Shown(list):
    """What the notebook displayed, in order: ("markdown", text), ("image", path), objects."""


@pytest.fixture
def shown(monkeypatch) -> Shown:
    """IPython.display replaced by recorders (IPython itself is not a requirement)."""
    record = Shown()
    display_module = types.ModuleType("IPython.display")
    display_module.Markdown = lambda text: ("markdown", text)
    display_module.Image = lambda filename=None, **_: ("image", filename)
    display_module.display = lambda *objects: record.extend(objects)
    ipython = types.ModuleType("IPython")
    ipython.display = display_module
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display_module)
    return record


def _local_overrides(tmp_path) -> dict:
    """The parameters of a run here: smoke preset, results and cache in ``tmp_path``."""
    return dict(PRESET="smoke", OUT=str(tmp_path / "out"), CACHE_DIR=str(tmp_path / "cache"),
                DATA=None, DATA_DIR=None, EXTRA_FLAGS=[])


def test_notebook_is_plain_python_with_a_parameters_cell():
    notebook = _notebook()
    assert notebook["nbformat"] == 4
    assert notebook["metadata"]["kernelspec"]["language"] == "python"
    ids = [cell["id"] for cell in notebook["cells"]]
    assert len(set(ids)) == len(ids)
    cells = _code_cells()
    for index, cell in enumerate(cells):
        # committed without outputs; runs as Python: no shell or magic lines anywhere
        assert cell["outputs"] == [] and cell["execution_count"] is None, index
        compile(_source(cell), f"code cell {index}", "exec")
        assert not [line for line in _source(cell).splitlines()
                    if line.lstrip().startswith(("!", "%"))], index
    parameters = [cell for cell in cells if "parameters" in _tags(cell)]
    assert parameters == cells[:1]
    values = _execute(parameters, {})
    assert values["PRESET"] == "paper" and values["STEPS"] == "multi"
    for name in ("CACHE_DIR", "OUT", "DATA"):  # on Drive by default: they outlive the session
        assert values[name].startswith("/content/drive/"), (name, values[name])
    assert "OWNER" in values["REPO_URL"]  # the placeholder the user replaces
    text = " ".join(_source(c) for c in notebook["cells"] if c["cell_type"] == "markdown")
    assert "Run all again" in text and "resume" in text


def test_colab_branch_mounts_drive_clones_and_installs(tmp_path, monkeypatch):
    mounted, commands = [], []
    colab, drive = types.ModuleType("google.colab"), types.ModuleType("google.colab.drive")
    drive.mount = mounted.append
    colab.drive = drive
    google = types.ModuleType("google")
    google.colab = colab
    for name, module in (("google", google), ("google.colab", colab),
                         ("google.colab.drive", drive)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(subprocess, "run", lambda command, **kw: commands.append(command))
    parameters, setup = _code_cells()[:2]
    checkout = str(tmp_path / "clone")

    with pytest.raises(ValueError, match="REPO_URL"):  # the placeholder stops it, clearly
        _execute([parameters, setup], dict(CHECKOUT=checkout))
    assert mounted == ["/content/drive"] and commands == []

    url = "https://example.invalid/tfadv.git"
    namespace = _execute([parameters, setup], dict(CHECKOUT=checkout, REPO_URL=url))
    assert namespace["IN_COLAB"] is True
    assert commands[0] == ["git", "clone", "--depth=1", url, checkout]
    # Colab's TensorFlow stays: no extra while a tensorflow module is installed
    assert commands[1][1:] == ["-m", "pip", "install", "--quiet", "-e", checkout]

    commands.clear()
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorflow" else find_spec(name, *a))
    _execute([parameters, setup], dict(CHECKOUT=checkout, REPO_URL=url))
    assert commands[0][0] == "git" and commands[1][-1] == checkout + "[gpu]"


def test_plan_cell_runs_the_command_from_the_checkout(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO_ROOT / "notebooks")  # where Jupyter starts a notebook's kernel
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    parameters, setup, plan = _code_cells()[:3]
    assert _source(plan).strip() == 'versatile_defense("--plan")'
    namespace = _execute([parameters, setup, plan], _local_overrides(tmp_path))
    assert namespace["IN_COLAB"] is False
    assert Path(namespace["CHECKOUT"]) == REPO_ROOT  # found above the notebook's folder
    printed = capsys.readouterr().out
    assert "$ python -m experiments.versatile_defense --preset=smoke --steps=multi" in printed
    assert f"--cache_dir={tmp_path / 'cache'}" in printed
    assert "versatile_defense: preset smoke" in printed and "loss-weight schedule" in printed
    assert not (tmp_path / "out").exists()  # a plan writes nothing


def test_every_cell_at_the_smoke_preset(tmp_path, monkeypatch, shown):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    overrides = dict(_local_overrides(tmp_path), CHECKOUT=str(REPO_ROOT))
    namespace = _execute(_code_cells(), overrides)
    out = tmp_path / "out"
    for name in TABLES:
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.md").is_file(), name
    assert set(namespace["tables"]) == set(TABLES)
    markdown = [text for kind, text in (s for s in shown if isinstance(s, tuple))
                if kind == "markdown"]
    for name in TABLES:  # each table shown, as written
        assert (out / f"{name}.md").read_text() in markdown, name
    images = [path for kind, path in (s for s in shown if isinstance(s, tuple))
              if kind == "image"]
    assert images == [str(out / name) for name in FIGURES]
    assert all(Path(path).stat().st_size > 1000 for path in images)
    (grid,) = [s for s in shown if not isinstance(s, tuple)]  # Table 2 as a DataFrame
    assert "Clean" in grid.index and "Versatile (ours)" in grid.columns
    assert grid.notna().any().all()
    assert (tmp_path / "cache").is_dir() and any((tmp_path / "cache").iterdir())
