"""Shared pytest configuration: the ``slow`` marker, the real CIFAR-10 archive fixture, and a
private cache root.

At import, when ``$TFADV_CACHE`` is unset, it is set to a fresh temporary folder: no test, and
no subprocess a test starts (they inherit the environment), writes into the checkout's data/.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_OWN_CACHE = None
if not os.environ.get("TFADV_CACHE"):
    _OWN_CACHE = os.environ["TFADV_CACHE"] = tempfile.mkdtemp(prefix="tfadv-test-cache-")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long tests, run by hand with -m slow")


def pytest_unconfigure(config):
    """Removes the temporary cache root made above (never one the user set)."""
    if _OWN_CACHE:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def cifar_archive() -> Path:
    """The CIFAR-10 JPEG ImageFolder archive (``$TFADV_CIFAR10`` overrides); skips if absent."""
    path = Path(os.environ.get("TFADV_CIFAR10") or SHARED_CIFAR10).expanduser()
    if not path.is_file():
        pytest.skip(f"CIFAR-10 archive not found at {path} (set TFADV_CIFAR10 to its path)")
    return path


@pytest.fixture(scope="module")
def trained():
    """The small digits classifier of tests/helpers.py (trained once per session)."""
    from helpers import trained_digits_model
    return trained_digits_model()


@pytest.fixture(scope="module")
def model(trained):
    return trained.model
