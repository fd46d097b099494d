"""Tests for captum_rig.transforms: LowRank, DropTopRanks and RankTruncatedDataset."""

import math
import os
import tempfile

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from captum_rig.lowrank import drop_top_ranks, low_rank
from captum_rig.transforms import DropTopRanks, LowRank, RankTruncatedDataset


class _Pairs(torch.utils.data.Dataset):
    """A tiny map-style dataset of (image, label) pairs."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


@pytest.fixture
def pairs():
    """Ten random 3×8×8 images with labels 0..2."""
    g = torch.Generator().manual_seed(1)
    return _Pairs(torch.rand(10, 3, 8, 8, generator=g), torch.arange(10) % 3)


@pytest.fixture
def svd_calls(monkeypatch):
    """Counts calls of torch.linalg.svd (the list holds the batch size of each call)."""
    calls = []
    real = torch.linalg.svd

    def counting(x, *args, **kwargs):
        calls.append(x.shape[0] if x.dim() == 4 else 1)
        return real(x, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "svd", counting)
    return calls


# LowRank / DropTopRanks ----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 8, 8), (2, 3, 8, 6)])
@pytest.mark.parametrize("k", [0, 1, 3, 6, 8])
def test_modules_equal_functions(shape, k):
    """LowRank(k)(x) == low_rank(x, k) and DropTopRanks(k)(x) == drop_top_ranks(x, k)."""
    x = torch.rand(shape)
    assert torch.equal(LowRank(k)(x), low_rank(x, k)), "LowRank differs from low_rank"
    assert torch.allclose(DropTopRanks(k)(x), drop_top_ranks(x, k), atol=1e-6), (
        "DropTopRanks differs from drop_top_ranks"
    )
    assert LowRank(k)(x).shape == x.shape, "LowRank changed the shape"


def test_modules_rank_and_sum():
    """LowRank keeps rank k per channel and LowRank + DropTopRanks gives x back."""
    x = torch.rand(2, 3, 10, 10, dtype=torch.float64)
    low, high = LowRank(4)(x), DropTopRanks(4)(x)
    ranks = torch.linalg.matrix_rank(low).flatten().tolist()
    assert ranks == [4] * 6, f"rank-4 images have ranks {ranks}"
    assert torch.allclose(low + high, x), "low + high != x"


def test_modules_in_compose_after_to_tensor():
    """LowRank and DropTopRanks work in a torchvision Compose after ToTensor, before Normalize."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    norm = T.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x = T.ToTensor()(img)
    out = T.Compose([T.ToTensor(), LowRank(3), norm])(img)
    assert torch.allclose(out, norm(low_rank(x, 3))), "Compose(ToTensor, LowRank, Normalize)"
    out = T.Compose([T.ToTensor(), DropTopRanks(3)])(img)
    assert torch.allclose(out, drop_top_ranks(x, 3), atol=1e-6), "Compose(ToTensor, DropTopRanks)"


def test_modules_repr_and_dtype():
    """extra_repr shows k; float64 stays float64."""
    assert "k=5" in repr(LowRank(5)), repr(LowRank(5))
    assert LowRank(2)(torch.rand(3, 4, 4, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(
    "k, error, match",
    [
        (-1, ValueError, "k must be >= 0"),
        (2.0, TypeError, "k must be an integer"),
        (True, TypeError, "k must be an integer"),
    ],
)
def test_modules_bad_k(k, error, match):
    """A negative, float or bool k is rejected, naming k."""
    with pytest.raises(error, match=match):
        LowRank(k)
    with pytest.raises(error, match=match):
        DropTopRanks(k)


@pytest.mark.parametrize(
    "x, error, match",
    [
        (torch.rand(8, 8), ValueError, "images must have at least 3 dims"),
        (torch.rand(1, 2, 3, 8, 8), ValueError, "images must have 3 or 4 dims"),
        (torch.zeros(3, 8, 8, dtype=torch.uint8), TypeError, "floating point"),
        (np.zeros((3, 8, 8)), TypeError, "must be a torch.Tensor"),
        (torch.full((3, 4, 4), float("nan")), ValueError, "NaN or Inf"),
    ],
)
def test_modules_bad_images(x, error, match):
    """Bad images raise with a message naming them."""
    for module in (LowRank(2), DropTopRanks(2)):
        with pytest.raises(error, match=match):
            module(x)


# RankTruncatedDataset ------------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True])
def test_dataset_values(pairs, reverse):
    """Every item is the truncated image of the source item, label unchanged."""
    data = RankTruncatedDataset(pairs, k=3, reverse=reverse, batch_size=4)
    f = drop_top_ranks if reverse else low_rank
    assert len(data) == len(pairs), "length differs from the source"
    for i in range(len(pairs)):
        image, label = data[i]
        assert torch.allclose(image, f(pairs.images[i], 3), atol=1e-5), f"image {i} differs"
        assert label == int(pairs.labels[i]), f"label {i} differs"
        assert image.dtype == torch.float32, "images should come back as float32"


def test_dataset_one_svd_per_image_in_batches(pairs, svd_calls):
    """The SVD runs once per batch of batch_size images: ceil(n / batch_size) calls."""
    RankTruncatedDataset(pairs, k=2, batch_size=4)
    assert len(svd_calls) == math.ceil(len(pairs) / 4), f"SVD calls: {svd_calls}"
    assert sum(svd_calls) == len(pairs), f"SVD batch sizes {svd_calls} do not sum to n"


@pytest.mark.parametrize("reverse, mode", [(False, "lowrank"), (True, "droptop")])
def test_dataset_cache_written_and_reused(pairs, tmp_path, svd_calls, reverse, mode):
    """The cache file name shows key, mode and rank; a second construction skips the SVD."""
    first = RankTruncatedDataset(pairs, k=3, reverse=reverse, cache_dir=tmp_path, key="toy")
    path = tmp_path / f"toy_{mode}3.pt"
    assert first.cache_path == path, f"cache path {first.cache_path}"
    assert sorted(os.listdir(tmp_path)) == [path.name], f"files: {os.listdir(tmp_path)}"
    n_calls = len(svd_calls)
    assert n_calls > 0, "the first construction should compute SVDs"
    second = RankTruncatedDataset(pairs, k=3, reverse=reverse, cache_dir=tmp_path, key="toy")
    assert len(svd_calls) == n_calls, "the second construction recomputed the SVD"
    assert torch.equal(first.images, second.images), "cached images differ"
    assert torch.equal(first.labels, second.labels), "cached labels differ"
    state = torch.load(path, weights_only=True)
    assert state["k"] == 3 and state["reverse"] == reverse, "cache metadata wrong"


def test_dataset_cache_keys_do_not_collide(pairs, tmp_path):
    """Different ranks and modes get different files."""
    RankTruncatedDataset(pairs, k=2, cache_dir=tmp_path, key="toy")
    RankTruncatedDataset(pairs, k=3, cache_dir=tmp_path, key="toy")
    RankTruncatedDataset(pairs, k=3, reverse=True, cache_dir=tmp_path, key="toy")
    names = sorted(os.listdir(tmp_path))
    assert names == ["toy_droptop3.pt", "toy_lowrank2.pt", "toy_lowrank3.pt"], names


def test_dataset_cache_rebuilt_on_length_mismatch(pairs, tmp_path, svd_calls):
    """A cache for a dataset of another length is rebuilt, with a warning."""
    RankTruncatedDataset(_Pairs(pairs.images[:4], pairs.labels[:4]), 2, cache_dir=tmp_path, key="t")
    with pytest.warns(UserWarning, match="rebuilding the rank cache"):
        data = RankTruncatedDataset(pairs, k=2, cache_dir=tmp_path, key="t")
    assert len(data) == len(pairs), "the rebuilt dataset has the wrong length"
    again = len(svd_calls)
    RankTruncatedDataset(pairs, k=2, cache_dir=tmp_path, key="t")
    assert len(svd_calls) == again, "the rebuilt cache was not saved"


def test_dataset_cache_rebuilt_on_other_content(pairs, tmp_path):
    """A cache for other images of the same shape and length is rebuilt, with a warning."""
    RankTruncatedDataset(pairs, k=2, cache_dir=tmp_path, key="t")
    other = _Pairs(torch.rand(10, 3, 8, 8), pairs.labels)
    with pytest.warns(UserWarning, match="images or labels differ"):
        data = RankTruncatedDataset(other, k=2, cache_dir=tmp_path, key="t")
    assert torch.allclose(data[0][0], low_rank(other.images[0], 2), atol=1e-5), "stale cache"


@pytest.mark.parametrize("where", ["image", "label"])
def test_dataset_cache_rebuilt_when_a_later_item_changed(pairs, tmp_path, where):
    """Changing one pixel or one label of the last item (not the first) rebuilds the cache."""
    RankTruncatedDataset(pairs, k=2, cache_dir=tmp_path, key="t")
    images, labels = pairs.images.clone(), pairs.labels.clone()
    if where == "image":
        images[-1, 0, 0, 0] += 0.25
    else:
        labels[-1] = labels[-1] + 1
    with pytest.warns(UserWarning, match="images or labels differ"):
        data = RankTruncatedDataset(_Pairs(images, labels), k=2, cache_dir=tmp_path, key="t")
    assert torch.allclose(data[9][0], low_rank(images[9], 2), atol=1e-5), "stale image served"
    assert data[9][1] == int(labels[9]), "stale label served"


def test_dataset_cache_keyed_on_storage_dtype(pairs, tmp_path):
    """A float32 cache is not served when float16 is asked for (and the reverse)."""
    RankTruncatedDataset(pairs, k=2, cache_dir=tmp_path, key="t")
    with pytest.warns(UserWarning, match="storage_dtype is torch.float16"):
        half = RankTruncatedDataset(
            pairs, k=2, cache_dir=tmp_path, key="t", storage_dtype=torch.float16
        )
    assert half.images.dtype == torch.float16, "float32 cache served for float16"
    again = RankTruncatedDataset(
        pairs, k=2, cache_dir=tmp_path, key="t", storage_dtype=torch.float16
    )
    assert again.images.dtype == torch.float16, "the float16 cache was not saved"


def test_dataset_cache_dir_checked_before_work(pairs, tmp_path, svd_calls):
    """A cache_dir that cannot be a folder fails at once, naming cache_dir, before any SVD."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cache_dir .* is not a writable folder"):
        RankTruncatedDataset(pairs, k=2, cache_dir=blocker / "sub", key="t")
    assert svd_calls == [], "work was done before the cache_dir check"


def test_dataset_cache_dir_created(pairs, tmp_path):
    """A missing cache_dir (and its parents) is created."""
    data = RankTruncatedDataset(pairs, k=2, cache_dir=tmp_path / "a" / "b", key="t")
    assert data.cache_path.exists(), "cache not written into the new folder"


def test_dataset_cache_rebuilt_on_shape_mismatch(pairs, tmp_path):
    """A cache of other-sized images is rebuilt, with a warning naming the shapes."""
    small = _Pairs(torch.rand(10, 3, 6, 6), pairs.labels)
    RankTruncatedDataset(small, k=2, cache_dir=tmp_path, key="t")
    with pytest.warns(UserWarning, match=r"shape \(10, 3, 6, 6\)"):
        data = RankTruncatedDataset(pairs, k=2, cache_dir=tmp_path, key="t")
    assert data[0][0].shape == (3, 8, 8), "rebuilt images have the wrong shape"


def test_dataset_cache_rebuilt_when_corrupt(pairs, tmp_path):
    """An unreadable cache file is replaced, with a warning."""
    (tmp_path / "t_lowrank2.pt").write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="could not be read"):
        RankTruncatedDataset(pairs, k=2, cache_dir=tmp_path, key="t")
    state = torch.load(tmp_path / "t_lowrank2.pt", weights_only=True)
    assert state["images"].shape == (10, 3, 8, 8), "the corrupt cache was not replaced"


def test_dataset_write_is_atomic(pairs, tmp_path, monkeypatch):
    """A failing save leaves neither a cache file nor a temporary file behind."""

    def failing_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        RankTruncatedDataset(pairs, k=2, cache_dir=tmp_path, key="t")
    assert os.listdir(tmp_path) == [], f"left behind: {os.listdir(tmp_path)}"


def test_dataset_transforms_apply_after_truncation(pairs):
    """transform sees the truncated image; target_transform the label."""
    norm = T.Normalize((0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    data = RankTruncatedDataset(
        pairs, k=2, transform=norm, target_transform=lambda y: y + 100, batch_size=3
    )
    image, label = data[1]
    expected = norm(low_rank(pairs.images[1], 2))
    assert torch.allclose(image, expected, atol=1e-5), "transform was not applied after truncation"
    assert label == int(pairs.labels[1]) + 100, "target_transform not applied"


def test_dataset_float16_storage(pairs):
    """storage_dtype=float16 halves memory and still returns float32 images."""
    data = RankTruncatedDataset(pairs, k=2, storage_dtype=torch.float16)
    assert data.images.dtype == torch.float16, "storage dtype ignored"
    assert data[0][0].dtype == torch.float32, "items should be float32"
    assert torch.allclose(data[0][0], low_rank(pairs.images[0], 2), atol=2e-3), "values off"


def test_dataset_works_with_dataloader(pairs):
    """A DataLoader batches the truncated images."""
    loader = torch.utils.data.DataLoader(RankTruncatedDataset(pairs, k=1), batch_size=4)
    x, y = next(iter(loader))
    assert x.shape == (4, 3, 8, 8) and y.shape == (4,), f"batch shapes {x.shape}, {y.shape}"
    assert int(torch.linalg.matrix_rank(x[0, 0])) == 1, "not rank 1"


def test_dataset_errors(pairs, tmp_path):
    """Bad arguments and items raise errors naming what is wrong."""
    with pytest.raises(ValueError, match="key must be"):
        RankTruncatedDataset(pairs, k=2, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="key must be"):
        RankTruncatedDataset(pairs, k=2, cache_dir=tmp_path, key="../evil")
    with pytest.raises(ValueError, match="k must be >= 0"):
        RankTruncatedDataset(pairs, k=-1)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        RankTruncatedDataset(pairs, k=1, batch_size=0)
    with pytest.raises(ValueError, match="must not be empty"):
        RankTruncatedDataset([], k=1)
    with pytest.raises(TypeError, match="map-style dataset"):
        RankTruncatedDataset(iter([]), k=1)
    with pytest.raises(TypeError, match="ToTensor"):
        RankTruncatedDataset([(Image.new("RGB", (4, 4)), 0)], k=1)
    with pytest.raises(TypeError, match="labels must be ints"):
        RankTruncatedDataset([(torch.rand(3, 4, 4), 0.5)], k=1)
    with pytest.raises(TypeError, match=r"\(image, label\) pairs"):
        RankTruncatedDataset([torch.rand(3, 4, 4)], k=1)
    with pytest.raises(ValueError, match="must all have one shape"):
        RankTruncatedDataset([(torch.rand(3, 4, 4), 0), (torch.rand(3, 5, 5), 1)], k=1)
    with pytest.raises(ValueError, match="storage_dtype"):
        RankTruncatedDataset(pairs, k=1, storage_dtype=torch.int8)
    with pytest.raises(TypeError, match="transform must be callable"):
        RankTruncatedDataset(pairs, k=1, transform=3)


def _flip_bytes(path, n=64):
    """Flips n bytes in the middle of the file (inside the image data of a cache)."""
    data = bytearray(path.read_bytes())
    start = len(data) // 2
    for i in range(start, start + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_dataset_cache_damaged_content_rebuilt(pairs, tmp_path, svd_calls):
    """A cache whose images were altered on disk is not served: it is rebuilt, with a warning."""
    first = RankTruncatedDataset(pairs, k=2, cache_dir=tmp_path, key="t")
    _flip_bytes(first.cache_path)
    before = len(svd_calls)
    with pytest.warns(UserWarning, match="do not match its own digest"):
        data = RankTruncatedDataset(pairs, k=2, cache_dir=tmp_path, key="t")
    assert len(svd_calls) > before, "the damaged cache was served"
    assert torch.equal(data.images, first.images), "the rebuilt images differ"


def test_dataset_cache_loads_from_read_only_folder(pairs, tmp_path, svd_calls, monkeypatch):
    """A valid cache in a read-only folder is loaded (no SVD); building one there is refused."""
    first = RankTruncatedDataset(pairs, k=2, cache_dir=tmp_path, key="t")
    before = len(svd_calls)

    def read_only(*args, **kwargs):  # what a read-only folder does to any new file (root too)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    again = RankTruncatedDataset(pairs, k=2, cache_dir=tmp_path, key="t")
    assert len(svd_calls) == before, "the valid read-only cache was recomputed"
    assert torch.equal(again.images, first.images), "read-only cache served other images"
    with pytest.raises(ValueError, match="cache_dir .* is not a writable folder"):
        RankTruncatedDataset(pairs, k=3, cache_dir=tmp_path, key="t")
    assert len(svd_calls) == before, "work was done before the writability check"


def test_dataset_cache_path_folder_fails_before_work(pairs, tmp_path, svd_calls):
    """A folder where the cache file should be fails at once, naming cache_dir, before any SVD."""
    (tmp_path / "t_lowrank2.pt").mkdir()
    with pytest.raises(ValueError, match="cache_dir .* holds a folder"):
        RankTruncatedDataset(pairs, k=2, cache_dir=tmp_path, key="t")
    assert svd_calls == [], "work was done before the folder was found"


@pytest.mark.parametrize("scale, match", [(255.0, "ToTensor"), (-1.0, "before Normalize")])
def test_dataset_refuses_images_outside_pixel_range(pairs, scale, match):
    """Images x255 (or normalized ones) fail with a ValueError naming the dataset image."""
    bad = _Pairs(pairs.images * scale, pairs.labels)
    with pytest.raises(ValueError, match=rf"dataset image 0 must hold pixel values .*{match}"):
        RankTruncatedDataset(bad, k=2)
