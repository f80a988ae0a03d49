"""Fixtures shared by the experiment tests of tests/experiments/ (experiments/)."""

from pathlib import Path
from typing import NamedTuple

import pytest


class Cache(NamedTuple):
    root: Path    # --cache_dir of every run
    unused: Path  # $TFADV_CACHE: a run that ignored --cache_dir would write here


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    """One temporary cache root for the runs of every file here (the digits models train
    once). The tests check that ``unused`` stays absent: the flag is honoured everywhere."""
    root = tmp_path_factory.mktemp("cache")
    return Cache(root, root.parent / f"{root.name}_unused_env_cache")
