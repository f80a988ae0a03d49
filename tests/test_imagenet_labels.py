"""ImageNet class ids (tfadv.data): a folder or tar holding any subset of ImageNet's classes is
labelled with the canonical ImageNet-1k ids (the wnid's place in the sorted list of the 1,000
ILSVRC2012 wnids, which is Keras' and tensorflow-datasets' order), never by the wnid's place
among the folder's own classes; a folder class that is not a wnid is refused. Also Fig 5's
labels for predictions the dataset's names do not cover (tfadv.report.figures.plot_visual).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest

from tfadv import data, imagenet

# first, last and one in between of the 1,000 ILSVRC2012 wnids (Keras: tench, toilet tissue,
# rotisserie)
WNIDS = {"n01440764": 0, "n15075141": 999, "n04111531": 766}


def _imagenet_folder(root: Path, wnids=WNIDS, per_split=(("train", 3), ("val", 2))) -> Path:
    """root/{train,val}/<wnid>/*.JPEG: tiny images whose colour says their wnid's id."""
    from PIL import Image
    for split, n in per_split:
        for wnid in wnids:
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                # red channel = class id mod 256 (+ i): the test can tell images apart
                pixels = np.full((12, 10, 3), (WNIDS.get(wnid, 0) % 256, 40 * i, 90), np.uint8)
                Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG", quality=100)
    return root


def test_shipped_wnids_are_tensorflow_datasets_imagenet2012_labels():
    import importlib.resources
    shipped = imagenet.imagenet_wnids()
    tfds_labels = (importlib.resources.files("tensorflow_datasets") / "datasets" /
                   "imagenet2012" / "labels.txt").read_text().split()
    assert shipped == tuple(tfds_labels)
    assert len(shipped) == len(set(shipped)) == 1000 and list(shipped) == sorted(shipped)
    assert {w: shipped.index(w) for w in WNIDS} == WNIDS


@pytest.mark.parametrize("as_tar", [False, True], ids=["folder", "tar.gz"])
def test_a_subset_of_imagenet_classes_gets_canonical_ids(tmp_path, as_tar):
    source = _imagenet_folder(tmp_path / "imagenet")
    if as_tar:
        source = tmp_path / "imagenet.tar.gz"
        with tarfile.open(source, "w:gz") as tar:
            tar.add(tmp_path / "imagenet", arcname="imagenet")
    train = imagenet.imagenet_subset(source, "train", 2, seed=0, size=8)
    val = imagenet.imagenet_subset(source, "test", 5, seed=0, size=8)  # only 2 there: all
    # class order (sorted wnids), ids as in the 1,000-class list, not 0, 1, 2
    assert train.labels.tolist() == [0, 0, 766, 766, 999, 999]
    assert val.labels.tolist() == [0, 0, 766, 766, 999, 999]
    assert train.class_names == val.class_names == imagenet.imagenet_wnids()
    assert train.num_classes == 1000
    assert train.class_names[999] == "n15075141"
    # each image is its own class's: the red channel holds the id (mod 256)
    red = np.round(train.images[:, 0, 0, 0] * 255)
    np.testing.assert_allclose(red, train.labels % 256, atol=3)


def test_imagenet_chunks_mix_the_classes_and_decode_a_chunk_at_a_time(tmp_path):
    root = _imagenet_folder(tmp_path / "imagenet", per_split=(("val", 4),))
    chunks = list(imagenet.imagenet_chunks(root, "test", 3, seed=0, size=8, chunk=4))
    assert [len(c.labels) for c in chunks] == [4, 4, 1]  # 3 classes x 3 images
    labels = np.concatenate([c.labels for c in chunks])
    assert sorted(labels.tolist()) == [0] * 3 + [766] * 3 + [999] * 3
    assert labels.tolist() != sorted(labels.tolist())  # seeded order, classes mixed
    whole = imagenet.imagenet_subset(root, "test", 3, seed=0, size=8)
    # the same images as imagenet_subset's, in another order
    images = np.concatenate([c.images for c in chunks])
    assert sorted(map(bytes, images)) == sorted(map(bytes, whole.images))
    again = np.concatenate([c.labels for c in imagenet.imagenet_chunks(root, "test", 3, seed=0,
                                                                      size=8, chunk=4)])
    np.testing.assert_array_equal(again, labels)  # same seed, same order


def test_a_class_folder_that_is_not_a_wnid_is_refused(tmp_path):
    root = _imagenet_folder(tmp_path / "imagenet", wnids=("n01440764", "cats", "dogs"))
    with pytest.raises(ValueError, match=r"\['cats', 'dogs'\].*train/<wnid>/\*\.JPEG and "
                                         r"val/<wnid>/\*\.JPEG"):
        imagenet.imagenet_subset(root, "train", 1, seed=0, size=8)
    with pytest.raises(ValueError, match="not ILSVRC2012 wnids"):
        imagenet.imagenet_chunks(root, "test", 1, seed=0, size=8)  # at the call, not at next()


def test_imagenet_problem_checks_the_splits_asked_for(tmp_path):
    root = _imagenet_folder(tmp_path / "imagenet", per_split=(("val", 1),))
    assert "train/" in imagenet.imagenet_problem(str(root), None)
    assert imagenet.imagenet_problem(str(root), None, splits=("val",)) is None
    assert "does not exist" in imagenet.imagenet_problem(str(tmp_path / "nowhere"), None)


def test_plot_visual_names_any_prediction(tmp_path):
    """A 1,000-way classifier's prediction is named by its wnid; one the names do not cover is
    shown as its number instead of raising IndexError."""
    from tfadv.report import figures
    image = np.full((8, 8, 3), 0.5, np.float32)
    example = {"attack": "FGSM", "clean": image, "adversarial": image + 0.01,
               "purified": image, "label": 999, "pred_clean": 999, "pred_adv": 0,
               "pred_purified": 999}
    figures.plot_visual([example], imagenet.imagenet_wnids(), tmp_path / "visual.png", "test")
    assert (tmp_path / "visual.png").stat().st_size > 0
    figures.plot_visual([example], ("a", "b", "c"), tmp_path / "few_names.png", "test")
    assert (tmp_path / "few_names.png").stat().st_size > 0
    assert figures._class_name(("a", "b"), 1) == "b" and figures._class_name(("a",), 999) == "999"


def test_pick_per_class_counts_only_the_classes_an_imagenet_subset_holds(tmp_path):
    """Paper 003 picks test images per class: of 1,000 named classes only the 3 held count
    (before: 997 empty classes were reported as short of correctly classified images)."""
    pool = imagenet.imagenet_subset(_imagenet_folder(tmp_path / "imagenet"), "test", 2, seed=0,
                                size=8)
    right = pool.labels == 999  # a classifier right on class 999 only
    picked, short = data.pick_per_class(pool, 1, seed=0, prefer=right)
    assert sorted(picked.labels.tolist()) == [0, 766, 999] and short == 2
