"""The package as users install it: a wheel built from the checkout, installed elsewhere.

The wheel is built offline from a copy of the checkout's files (what ``pip install git+URL``
clones, plus files not committed yet), so nothing is written into the working tree, and
installed with ``pip install --no-deps --target``. A subprocess whose working folder is a
temporary one and whose PYTHONPATH is only the target then imports every module of tfadv and
reads the wnid list: a package or a resource file the wheel left out fails here, while the
checkout's own folders cannot stand in for it. Also: the metadata leaves TensorFlow to the
extras (a TPU VM's tensorflow-tpu must not get a second, CPU TensorFlow beside it), the
generic name ``experiments`` is not installed, and ``import tfadv`` without TensorFlow names
the extras. About 20-40 s on 2 CPU cores, most of it importing TensorFlow in the subprocess.
"""

from __future__ import annotations

import email.parser
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("setuptools")
from packaging.requirements import Requirement  # noqa: E402 (pip and TensorFlow need it)

REPO_ROOT = Path(__file__).resolve().parents[1]
WNIDS = "imagenet2012_wnids.txt"
TENSORFLOWS = {"tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-tpu",
               "tensorflow-macos", "tf-nightly", "tensorflow-intel"}
# Top-level folders of the checkout that are no part of a build (caches, results, docs).
NOT_SOURCES = {".git", "data", "results", "notes", "notebooks", "tests", "build", ".venv",
               ".pytest_cache"}


def _source_files() -> list[Path]:
    """The checkout's files relative to its root: git's tracked and not-ignored ones, else a
    walk that skips caches and build products."""
    if (REPO_ROOT / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], cwd=REPO_ROOT, capture_output=True,
                                check=True).stdout.decode().split("\0")
        files = [Path(name) for name in listed if name]
    else:
        files = [path.relative_to(REPO_ROOT) for path in REPO_ROOT.rglob("*") if path.is_file()]
    return [f for f in files if f.parts[0] not in NOT_SOURCES and "__pycache__" not in f.parts
            and not any(part.endswith(".egg-info") for part in f.parts)
            and (REPO_ROOT / f).is_file()]


def _pip(*args: str, cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check",
                           "--no-input", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"pip {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the wheel, the --target folder it was installed into, the copied sources)."""
    root = tmp_path_factory.mktemp("install")
    source, wheels, target = root / "src", root / "wheels", root / "target"
    for name in _source_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, source / name)
    assert (source / "setup.cfg").is_file() and (source / "tfadv" / "__init__.py").is_file()
    _pip("wheel", str(source), "--no-deps", "--no-build-isolation", "--no-index", "-w",
         str(wheels), cwd=root)
    (wheel,) = wheels.glob("tfadv-*.whl")
    _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel), cwd=root)
    return wheel, target, source


def _run_isolated(code: str, target: Path, cwd: Path, *args: str):
    """``python -c code`` from ``cwd`` with only ``target`` on PYTHONPATH. This machine's
    editable install of the checkout (a finder that setuptools adds to sys.meta_path, or the
    checkout's folder on sys.path) is taken out first: a clean environment has neither."""
    prelude = (
        "import sys\n"
        "from pathlib import Path\n"
        f"_checkout = Path({str(REPO_ROOT)!r}).resolve()\n"
        "sys.meta_path[:] = [f for f in sys.meta_path\n"
        "                    if '__editable__' not in getattr(f, '__module__', '')]\n"
        "sys.path[:] = [p for p in sys.path if Path(p or '.').resolve() != _checkout]\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(target), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-c", prelude + code, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_wheel_holds_the_library_and_its_resources_only(installed):
    wheel, _, source = installed
    names = zipfile.ZipFile(wheel).namelist()
    modules = {str(p.relative_to(source)) for p in (source / "tfadv").rglob("*.py")}
    assert modules and modules <= set(names), sorted(modules - set(names))
    resources = {str(p.relative_to(source)) for p in (source / "tfadv").glob("*.txt")}
    assert resources <= set(names), sorted(resources - set(names))
    # experiments/ runs from a checkout; a top-level "experiments" would clash with others'
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"tfadv"}, tops


def test_metadata_leaves_tensorflow_to_the_extras(installed):
    wheel, _, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        (meta,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(archive.read(meta).decode())
    requirements = [Requirement(r) for r in metadata.get_all("Requires-Dist")]
    always = {r.name.lower() for r in requirements if r.marker is None}
    assert always and not always & TENSORFLOWS, always & TENSORFLOWS
    assert "keras" in always  # TensorFlow >= 2.16 runs Keras 3, which the code is written for
    by_extra = {}
    for r in requirements:
        for extra in ("cpu", "gpu", "tpu"):
            if r.marker is not None and r.marker.evaluate({"extra": extra}):
                by_extra.setdefault(extra, []).append(r)
    assert set(metadata.get_all("Provides-Extra")) >= {"cpu", "gpu", "tpu"}
    (cpu,), (gpu,), (tpu,) = by_extra["cpu"], by_extra["gpu"], by_extra["tpu"]
    assert cpu.name == "tensorflow" and cpu.specifier.contains("2.16.1")
    assert gpu.name == "tensorflow" and gpu.extras == {"and-cuda"}
    assert tpu.name == "tensorflow-tpu" and tpu.specifier.contains("2.20.0")
    # every floor accepts what Colab and TPU VMs run: TensorFlow 2.16 .. 2.21, Python 3.10
    assert Requirement(f"x{metadata['Requires-Python']}").specifier.contains("3.10")


def test_installed_package_imports_from_anywhere(installed, tmp_path):
    _, target, source = installed
    code = (
        "import importlib, importlib.resources, json, pkgutil\n"
        "target = Path(sys.argv[1]).resolve()\n"
        "import tfadv\n"
        "modules = [m.name for m in pkgutil.walk_packages(tfadv.__path__, 'tfadv.')]\n"
        "where = {name: str(Path(importlib.import_module(name).__file__).resolve())\n"
        "         for name in ['tfadv', *modules]}\n"
        "outside = {k: v for k, v in where.items() if not Path(v).is_relative_to(target)}\n"
        "wnids = importlib.resources.files('tfadv').joinpath(sys.argv[2])\n"
        "try:\n"
        "    import experiments\n"
        "    experiments_found = str(experiments.__file__)\n"
        "except ModuleNotFoundError:\n"
        "    experiments_found = None\n"
        "print(json.dumps(dict(modules=sorted(where), outside=outside,\n"
        "                      wnids=wnids.read_text() if wnids.is_file() else None,\n"
        "                      experiments=experiments_found)))\n")
    proc = _run_isolated(code, target, tmp_path, str(target), WNIDS)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = {".".join(p.relative_to(source).with_suffix("").parts).removesuffix(".__init__")
            for p in (source / "tfadv").rglob("*.py")}
    assert set(found["modules"]) == ours, set(found["modules"]) ^ ours
    assert not found["outside"], found["outside"]
    assert found["experiments"] is None, found["experiments"]
    if (source / "tfadv" / WNIDS).is_file():  # the wnid list ships as a package resource
        assert found["wnids"] == (source / "tfadv" / WNIDS).read_text()
        assert len(found["wnids"].split()) == 1000


def test_import_without_tensorflow_names_the_extras(installed, tmp_path):
    _, target, _ = installed
    proc = _run_isolated("sys.modules['tensorflow'] = None  # as if not installed\n"
                         "import tfadv\n", target, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: tfadv needs TensorFlow"), proc.stderr[-2000:]
    for extra in ("tfadv[cpu]", "tfadv[gpu]", "tfadv[tpu]", "tensorflow-tpu"):
        assert extra in last, (extra, last)
