"""BPDA + EOT PGD (tfadv.attacks.bpda): with the identity it is PGD; each EOT sample of each
step draws the defense with a fresh seed; a defense that changes the shape is refused."""

import numpy as np
import pytest

from tfadv import attacks, defenses
from tfadv.attacks.bpda import bpda_eot_pgd


def test_bpda_eot_pgd_with_the_identity_is_pgd(model, trained):
    x, y = trained.test.images[:40], trained.test.labels[:40]
    settings = dict(eps=0.1, eps_iter=0.02, nb_iter=5)
    ours = bpda_eot_pgd(model, lambda images, seed: images, x, y, seed=3, **settings)
    reference = attacks.make("pgd", seed=3, **settings)(model, x, y)
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    assert np.abs(ours - x).max() <= 0.1 + 1e-6 and ours.min() >= 0 and ours.max() <= 1
    # The identity defense object of tfadv.defenses gives the same.
    np.testing.assert_allclose(
        bpda_eot_pgd(model, defenses.make("none"), x, y, seed=3, **settings), ours, atol=1e-6)


def test_bpda_eot_pgd_draws_a_fresh_defense_per_sample_and_step(model, trained):
    x, y = trained.test.images[:8], trained.test.labels[:8]
    seeds = []

    def noisy(images, seed):
        seeds.append(seed)
        noise = np.random.default_rng(seed).uniform(-0.05, 0.05, images.shape)
        return np.clip(images + noise, 0, 1).astype(np.float32)

    bpda_eot_pgd(model, noisy, x, y, eps=0.1, eps_iter=0.02, nb_iter=3, eot_samples=4, seed=0)
    assert len(seeds) == 12 and len(set(seeds)) == 12
    with pytest.raises(ValueError, match="keeps the image shape"):
        bpda_eot_pgd(model, lambda images, seed: images[:, :4], x, y, eps=0.1, eps_iter=0.02,
                     nb_iter=1)


def test_bpda_eot_pgd_leaves_the_input_and_checks_its_arguments(model, trained):
    x, y = trained.test.images[:8], trained.test.labels[:8]
    before = x.copy()
    defense = defenses.make("random_resize_pad")
    out = bpda_eot_pgd(model, defense, x, y, eps=0.1, eps_iter=0.02, nb_iter=2, eot_samples=2)
    np.testing.assert_array_equal(x, before)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.abs(out - x).max() <= 0.1 + 1e-6
    np.testing.assert_array_equal(
        out, bpda_eot_pgd(model, defense, x, y, eps=0.1, eps_iter=0.02, nb_iter=2,
                          eot_samples=2))  # seeded: the same images again
    np.testing.assert_array_equal(
        bpda_eot_pgd(model, defense, x, y, eps=0.0, eps_iter=0.02, nb_iter=2), x)
    for bad in (dict(eps=-0.1), dict(nb_iter=0), dict(eot_samples=0), dict(eps_iter=np.nan)):
        with pytest.raises(ValueError):
            bpda_eot_pgd(model, defense, x, y, **dict(dict(eps=0.1, eps_iter=0.02, nb_iter=1),
                                                      **bad))
