"""Cached adversarial sets (tfadv.evaluation.adversarial): ``adversarial_set`` generates in
seeded shards once, then reuses them; the key covers the attack's parameters, the model id and
the images."""

import numpy as np

from helpers import trained_digits_model
from tfadv import attacks


def test_adversarial_set_is_cached_by_attack_params_model_and_images(tmp_path):
    from tfadv.evaluation.adversarial import adversarial_set
    trained = trained_digits_model()
    x, y = trained.test.images[:12], trained.test.labels[:12]
    params = dict(eps=0.2, eps_iter=0.05, nb_iter=3, seed=1)
    log = {}
    first = adversarial_set("pgd", params, trained.model, "digits-model", x, y, tag="t",
                            cache_dir=tmp_path, shard_size=5, log=log, verbose=False)
    assert first.shape == x.shape and len(log["generated"]) == 3 and not log["reused"]
    assert np.abs(first - x).max() <= 0.2 + 1e-6
    folders = list((tmp_path / "adversarial" / "digits-model").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("t-pgd-")
    # Shard i draws seed * 100000 + i: the first shard is PGD with seed 100000.
    np.testing.assert_allclose(
        first[:5], attacks.make("pgd", **dict(params, seed=100_000))(trained.model, x[:5], y[:5]),
        atol=1e-6)
    again = {}
    second = adversarial_set("pgd", params, trained.model, "digits-model", x, y, tag="t",
                             cache_dir=tmp_path, shard_size=5, log=again, verbose=False)
    np.testing.assert_array_equal(second, first)
    assert not again["generated"] and len(again["reused"]) == 3
    # A changed parameter, model id or image set is another entry.
    for changed in (dict(params=dict(params, nb_iter=4)), dict(model_id="other-model"),
                    dict(x=x[::-1].copy())):
        kwargs = dict(dict(params=params, model_id="digits-model", x=x), **changed)
        log = {}
        adversarial_set("pgd", kwargs["params"], trained.model, kwargs["model_id"],
                        kwargs["x"], y, tag="t", cache_dir=tmp_path, shard_size=5, log=log,
                        verbose=False)
        assert len(log["generated"]) == 3, changed
