"""Shared pytest configuration: the ``slow`` marker and the real CIFAR-10 archive fixture."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long tests, run by hand with -m slow")


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
