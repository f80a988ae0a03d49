"""Fixtures shared by the attack tests of tests/attacks/ (tfadv.attacks)."""

import pytest


@pytest.fixture(scope="module")
def batch(trained):
    """10 test images (some may be misclassified: the attacks must cope) and their labels.

    test_iterative.py overrides it with its own 40-image batch."""
    return trained.test.images[:10].copy(), trained.test.labels[:10].copy()
