"""Tests for captum_rig.synthetic: the shapes dataset and the fake CIFAR-10 writer."""

import pickle

import numpy as np
import pytest
import torch

from captum_rig.lowrank import low_rank
from captum_rig.synthetic import (
    CIFAR10_CLASSES,
    SHAPES,
    SyntheticShapes,
    make_shapes,
    write_cifar10_folder,
)


def test_make_shapes_shapes_and_ranges():
    """Images (n, 3, s, s) float32 in [0, 1], int64 labels, bool masks."""
    batch = make_shapes(60, size=24, seed=0)
    assert batch.images.shape == (60, 3, 24, 24), batch.images.shape
    assert batch.images.dtype == torch.float32, batch.images.dtype
    assert 0.0 <= float(batch.images.min()) and float(batch.images.max()) <= 1.0, "out of [0, 1]"
    assert batch.labels.shape == (60,) and batch.labels.dtype == torch.int64, batch.labels
    assert batch.masks.shape == (60, 24, 24) and batch.masks.dtype == torch.bool, batch.masks.dtype


def test_make_shapes_deterministic():
    """The same seed gives the same images, labels and masks; another seed does not."""
    a, b = make_shapes(50, seed=3, cue=0.1), make_shapes(50, seed=3, cue=0.1)
    for x, y, name in zip(a, b, a._fields):
        assert torch.equal(x, y), f"{name} differs between two runs with one seed"
    c = make_shapes(50, seed=4, cue=0.1)
    assert not torch.equal(a.images, c.images), "different seeds gave the same images"


def test_make_shapes_leaves_global_rng_alone():
    """Generating does not consume the global torch RNG."""
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    make_shapes(10, seed=0)
    assert torch.equal(torch.rand(3), expected), "make_shapes used the global RNG"


def test_make_shapes_balanced_labels():
    """Labels are balanced over the classes asked for."""
    batch = make_shapes(61, seed=0, shapes=("disk", "cross", "ring"))
    counts = torch.bincount(batch.labels, minlength=3).tolist()
    assert sorted(counts) == [20, 20, 21], f"label counts {counts}"


def test_make_shapes_masks_mark_the_object():
    """Every mask is non-empty and not the whole image; object pixels look like one colour."""
    batch = make_shapes(40, seed=1, noise=0.0)
    area = batch.masks.flatten(1).float().mean(1)
    assert bool((area > 0.02).all() and (area < 0.6).all()), f"mask areas {area.tolist()}"
    for i in range(40):
        inside = batch.images[i][:, batch.masks[i]]  # (3, pixels)
        # interior pixels (coverage > 1/2) are the flat object colour, up to anti-aliasing
        spread = (inside - inside.median(dim=1, keepdim=True).values).abs()
        assert float(spread.quantile(0.8)) < 0.05, f"image {i}: object pixels not uniform"


def test_make_shapes_classes_differ_in_shape():
    """Masks differ between classes: the mean mask of each class is distinct."""
    batch = make_shapes(600, seed=0, max_rotation=0.0)
    # normalised area (area / radius² would need the radius; use area ratios of disk vs ring)
    area = batch.masks.flatten(1).float().sum(1)
    disk = area[batch.labels == SHAPES.index("disk")].mean()
    ring = area[batch.labels == SHAPES.index("ring")].mean()
    assert float(ring) < 0.9 * float(disk), f"ring area {ring} not below disk area {disk}"


@pytest.mark.parametrize("cue_rank", [4, 8])
def test_make_shapes_cue_lives_above_cue_rank(cue_rank):
    """Truncating to rank <= cue_rank removes the cue; dropping the top ranks keeps it."""
    plain = make_shapes(20, seed=2, cue=0.0, cue_rank=cue_rank)
    cued = make_shapes(20, seed=2, cue=0.1, cue_rank=cue_rank)
    cue = cued.images - plain.images
    assert float(cue.abs().mean()) > 0.005, "the cue did not change the images"
    for k in (1, cue_rank):
        left = (low_rank(cued.images, k) - low_rank(plain.images, k)).norm() / cue.norm()
        assert float(left) < 0.2, f"rank-{k} images keep {float(left):.2f} of the cue"
    late = (low_rank(cued.images, 2 * cue_rank) - low_rank(plain.images, 2 * cue_rank)).norm()
    assert float(late / cue.norm()) > 0.5, "the cue should show up above cue_rank"


def test_make_shapes_cue_direction_depends_on_class():
    """With no other noise the cue's colour direction identifies the class."""
    kwargs = dict(seed=0, noise=0.0, shapes=("disk", "square", "ring"))
    plain = make_shapes(30, cue=0.0, **kwargs)
    cued = make_shapes(30, cue=0.05, **kwargs)
    diff = (cued.images - plain.images).flatten(2)  # (n, 3, pixels)
    energy = diff.pow(2).mean(2)  # (n, 3)
    # classes 0, 1, 2 put the cue in the red, green, blue channel
    assert torch.equal(energy.argmax(1), plain.labels), "cue channel does not follow the label"


def test_make_shapes_plain_cue_is_mostly_high_rank():
    """The plain cue loses most of its energy at rank 4, about k(2w - k)/w² kept."""
    plain, cued = make_shapes(20, seed=2), make_shapes(20, seed=2, cue=0.1)
    cue = cued.images - plain.images
    kept = (low_rank(cued.images, 4) - low_rank(plain.images, 4)).norm() / cue.norm()
    assert float(kept) < 0.75, f"rank-4 images keep {float(kept):.2f} of the cue's norm"


def test_make_shapes_zero_images():
    """n = 0 gives empty tensors of the right shapes."""
    batch = make_shapes(0)
    assert batch.images.shape == (0, 3, 32, 32) and batch.labels.shape == (0,), batch.images.shape


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n": -1}, ValueError, "n must be >= 0"),
        ({"n": 2.0}, TypeError, "n must be an integer"),
        ({"n": 4, "size": 4}, ValueError, "size must be >= 8"),
        ({"n": 4, "shapes": ("disk", "blob")}, ValueError, "shapes must be distinct names"),
        ({"n": 4, "shapes": ("disk", "disk")}, ValueError, "shapes must be distinct names"),
        ({"n": 4, "shapes": ()}, ValueError, "shapes must be distinct names"),
        ({"n": 4, "shapes": "disk"}, TypeError, "shapes must be a sequence"),
        ({"n": 4, "cue": 2.0}, ValueError, r"cue must be in \[0, 1"),
        ({"n": 4, "cue_rank": 32}, ValueError, "cue_rank must be in 0..31"),
        ({"n": 4, "noise": -0.1}, ValueError, r"noise must be in \[0, 1"),
        ({"n": 4, "scale": (0.4, 0.2)}, ValueError, "scale must satisfy"),
        ({"n": 4, "scale": 0.3}, TypeError, "scale must be a pair"),
    ],
)
def test_make_shapes_errors(kwargs, error, match):
    """Bad arguments raise errors naming the argument."""
    with pytest.raises(error, match=match):
        make_shapes(**kwargs)


def test_dataset_items_and_masks():
    """SyntheticShapes gives (image, label) pairs, or triples with return_masks."""
    data = SyntheticShapes(12, size=16, seed=0, transform=lambda x: x * 2)
    image, label = data[3]
    assert image.shape == (3, 16, 16) and isinstance(label, int), (image.shape, type(label))
    assert torch.equal(image, data.images[3] * 2), "transform not applied"
    assert len(data) == 12 and data.classes == SHAPES, (len(data), data.classes)
    triple = SyntheticShapes(12, size=16, seed=0, return_masks=True)[3]
    assert torch.equal(triple[2], data.masks[3]), "mask item differs from .masks"


def test_dataset_in_dataloader():
    """SyntheticShapes batches in a DataLoader."""
    loader = torch.utils.data.DataLoader(SyntheticShapes(10, seed=0), batch_size=4)
    x, y = next(iter(loader))
    assert (
        x.shape == (4, 3, 32, 32) and y.tolist() == SyntheticShapes(10, seed=0).labels[:4].tolist()
    ), "DataLoader batch differs from the dataset"


def test_write_cifar10_folder_format(tmp_path):
    """The files are torchvision's CIFAR-10 pickles: uint8 (n, 3072) data, labels, meta."""
    root = write_cifar10_folder(tmp_path, n_train=23, n_test=7, seed=0)
    folder = root / "cifar-10-batches-py"
    names = sorted(p.name for p in folder.iterdir())
    expected = ["batches.meta"] + [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    assert names == expected, f"files {names}"
    total = 0
    for name in expected[1:]:
        with open(folder / name, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        assert entry["data"].dtype == np.uint8, entry["data"].dtype
        assert entry["data"].ndim == 2 and entry["data"].shape[1] == 3072, entry["data"].shape
        assert len(entry["labels"]) == entry["data"].shape[0], "labels and data differ in length"
        if name != "test_batch":
            total += entry["data"].shape[0]
    assert total == 23, f"{total} training images written"
    with open(folder / "batches.meta", "rb") as f:
        meta = pickle.load(f, encoding="latin1")
    assert meta["label_names"] == list(CIFAR10_CLASSES), meta["label_names"]


def test_write_cifar10_folder_pixels_match_make_shapes(tmp_path):
    """Training pixels are make_shapes(seed) quantised, in CIFAR's planar RGB order."""
    write_cifar10_folder(tmp_path, n_train=10, n_test=3, seed=4)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    batch = make_shapes(10, seed=4)
    expected = (batch.images[:2] * 255).round().to(torch.uint8).reshape(2, 3072).numpy()
    assert np.array_equal(entry["data"], expected), "pixels differ from make_shapes"
    assert entry["labels"] == batch.labels[:2].tolist(), "labels differ from make_shapes"


def test_write_cifar10_folder_loads_with_torchvision(tmp_path, monkeypatch):
    """torchvision's own CIFAR10 reads the folder (its MD5 check aside)."""
    from torchvision.datasets import CIFAR10

    write_cifar10_folder(tmp_path, n_train=12, n_test=5, seed=0)
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda path, md5: True)
    train, test = CIFAR10(tmp_path, train=True), CIFAR10(tmp_path, train=False)
    assert len(train) == 12 and len(test) == 5, (len(train), len(test))
    image, label = train[0]
    assert image.size == (32, 32) and 0 <= label < 10, (image.size, label)
    assert train.classes == list(CIFAR10_CLASSES), train.classes


def test_write_cifar10_folder_errors(tmp_path):
    """Negative sizes are rejected, naming the argument."""
    with pytest.raises(ValueError, match="n_train must be >= 0"):
        write_cifar10_folder(tmp_path, n_train=-1)
