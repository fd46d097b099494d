"""Rank truncation as torchvision-style transforms.

``LowRank(k)`` and ``DropTopRanks(k)`` are thin ``nn.Module`` wrappers around
:func:`~captum_rig.low_rank` and :func:`~captum_rig.drop_top_ranks`, so they fit in a
``torchvision.transforms.Compose`` (after ``ToTensor``, in [0, 1] pixel space, before
``Normalize``) or in front of a model. :class:`RankTruncatedDataset` precomputes (and
caches on disk) the truncated copies of a whole dataset, for training on low-rank or
high-rank-only images.
"""

import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from captum_rig._checkpoint import (
    StateError,
    TensorHash,
    describe_difference,
    differences,
    read_state,
    write_state,
)
from captum_rig._checks import check_images, check_int
from captum_rig._context import check_writable
from captum_rig.lowrank import drop_top_ranks, low_rank

__all__ = ["LowRank", "DropTopRanks", "RankTruncatedDataset"]


class LowRank(nn.Module):
    r"""Keeps the ``k`` largest singular values of every image channel.

    Args:
        k (int): rank to keep, ``k >= 0``.

    Shape:
        - Input: ``(C, H, W)`` or ``(N, C, H, W)``, float.
        - Output: same as input.

    Examples:
        >>> LowRank(8)(torch.rand(3, 32, 32)).shape
        torch.Size([3, 32, 32])
    """

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = check_int(k, name="k")

    def forward(self, images: Tensor) -> Tensor:
        check_images(images, name="images", min_dim=3, layout="(C, H, W) or (N, C, H, W)")
        if images.dim() > 4:
            raise ValueError(
                f"images must have 3 or 4 dims (C, H, W) or (N, C, H, W), got shape "
                f"{tuple(images.shape)}"
            )
        return low_rank(images, self.k)

    def extra_repr(self) -> str:
        return f"k={self.k}"


class DropTopRanks(LowRank):
    r"""Removes the ``k`` largest singular values of every image channel.

    The paper's "reverse" images: ``x - LowRank(k)(x)``.

    Args:
        k (int): number of leading ranks to remove, ``k >= 0``.

    Shape:
        - Input: ``(C, H, W)`` or ``(N, C, H, W)``, float.
        - Output: same as input.

    Examples:
        >>> DropTopRanks(8)(torch.rand(3, 32, 32)).shape
        torch.Size([3, 32, 32])
    """

    def forward(self, images: Tensor) -> Tensor:
        return images - super().forward(images)


_KEY_CHARS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CACHE_FORMAT = 3  # 3: also records a digest of its own images and labels
# Pixel values may exceed [0, 1] by this much (rounding in the dataset's own transforms).
_PIXEL_SLACK = 1e-3


class RankTruncatedDataset(Dataset):
    r"""A dataset of rank-k (or top-k-removed) copies of another dataset's images.

    Takes a map-style dataset of ``(image, label)`` items, images float tensors
    ``(C, H, W)`` in [0, 1] pixel space (e.g. ``ToTensor()`` output, *before*
    ``Normalize``), and precomputes, in batches of ``batch_size``, one SVD per image:
    ``low_rank(image, k)``, or with ``reverse=True`` ``drop_top_ranks(image, k)``, the
    paper's high-rank-only images (Sec. 5). Computing this once instead of in every epoch
    is what makes training on low-rank data (paper Tables 2-3) cheap.

    With ``cache_dir``, the truncated images are saved to
    ``cache_dir/{key}_{mode}{k}.pt`` (``mode`` is ``lowrank`` or ``droptop``), written to a
    temporary file and renamed when complete, and loaded (``weights_only=True``) on the
    next construction instead of recomputed. The cache records a SHA-256 digest of every
    source image and label, the ``storage_dtype``, and a digest of its own truncated
    images and labels; a cache file whose rank, mode, dtype, length, image shape or
    source digest does not match, or whose content does not match its own digest (a
    damaged file), is rebuilt, with a warning naming what differs. Checking the digest
    reads the whole dataset once (no SVD). A valid cache is loaded even from a read-only
    folder; when it must be (re)built, ``cache_dir`` is created and checked for
    writability before any SVD, and a folder at the cache file's path is refused at once.

    ``transform`` and ``target_transform`` are applied on access, *after* the truncation:
    put ``Normalize`` and augmentation (random crops, flips) there.

    Args:
        dataset (Dataset): map-style dataset of ``(image, label)`` items; images float
            tensors ``(C, H, W)``, all of one shape; labels ints (or 0-dim int tensors).
        k (int): rank kept (or, with ``reverse=True``, number of top ranks removed).
        reverse (bool): if True, drop the top ``k`` ranks instead of keeping them.
        cache_dir (str or PathLike, optional): folder for the cache file; None keeps
            everything in memory only.
        key (str, optional): names ``dataset`` in the cache file name, e.g.
            ``"cifar10-train"``; required with ``cache_dir``. Letters, digits, ``.``,
            ``_`` and ``-``.
        batch_size (int): images per SVD batch. Default: 256.
        transform (callable, optional): applied to each truncated image on access.
        target_transform (callable, optional): applied to each label on access.
        device (str or torch.device, optional): where to compute the SVDs (results are
            kept on the CPU). Default: CPU.
        storage_dtype (torch.dtype): dtype the truncated images are kept and cached in,
            ``torch.float32`` (default) or ``torch.float16`` (half the memory and disk).

    Attributes:
        images (Tensor): ``(N, C, H, W)`` truncated images, before ``transform``.
        labels (Tensor): ``(N,)`` int64.
        cache_path (Path or None): the cache file.

    Examples:
        >>> data = [(torch.rand(3, 8, 8), i % 2) for i in range(5)]
        >>> low = RankTruncatedDataset(data, k=2, batch_size=4)
        >>> image, label = low[0]
        >>> image.shape, int(torch.linalg.matrix_rank(image[0]))
        (torch.Size([3, 8, 8]), 2)

    References:
        Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
        arXiv:2012.03516.
    """

    def __init__(
        self,
        dataset: Dataset,
        k: int,
        reverse: bool = False,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        key: Optional[str] = None,
        batch_size: int = 256,
        transform: Optional[Callable] = None,
        target_transform: Optional[Callable] = None,
        device: Optional[Union[str, torch.device]] = None,
        storage_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.k = check_int(k, name="k")
        self.reverse = bool(reverse)
        batch_size = check_int(batch_size, name="batch_size", low=1)
        for name, fn in (("transform", transform), ("target_transform", target_transform)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable or None, got {type(fn).__name__}")
        if storage_dtype not in (torch.float32, torch.float16):
            raise ValueError(
                f"storage_dtype must be torch.float32 or torch.float16, got {storage_dtype}"
            )
        try:
            n = len(dataset)
        except TypeError:
            raise TypeError(
                f"dataset must be a map-style dataset with __len__ and __getitem__, got "
                f"{type(dataset).__name__}"
            ) from None
        if n == 0:
            raise ValueError("dataset must not be empty")
        self.transform = transform
        self.target_transform = target_transform
        self.cache_path: Optional[Path] = None
        if cache_dir is not None:
            if not isinstance(key, str) or not _KEY_CHARS.match(key):
                raise ValueError(
                    "key must be a name for the dataset made of letters, digits, '.', '_' "
                    f"and '-' (e.g. 'cifar10-train') when cache_dir is given, got {key!r}"
                )
            mode = "droptop" if self.reverse else "lowrank"
            self.cache_path = Path(cache_dir) / f"{key}_{mode}{self.k}.pt"
            if self.cache_path.is_dir():
                raise ValueError(
                    f"cache_dir {str(cache_dir)!r} holds a folder at the cache file's path "
                    f"{str(self.cache_path)!r}; remove it or pass another cache_dir or key"
                )

        self.storage_dtype = storage_dtype
        loaded = self._load(dataset, n) if self.cache_path else None
        if loaded is None:
            if cache_dir is not None:  # only a cache to be written needs a writable folder
                check_writable(cache_dir, "cache_dir", folder=True, create=True)
            images, labels, digest = self._compute(dataset, n, batch_size, device)
            if self.cache_path is not None:
                self._save(images, labels, digest)
        else:
            images, labels = loaded
        self.images, self.labels = images, labels

    @staticmethod
    def _item(dataset: Dataset, index: int) -> Tuple[Tensor, int]:
        item = dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise TypeError(
                f"dataset items must be (image, label) pairs, got {type(item).__name__} at "
                f"index {index}"
            )
        image, label = item[0], item[1]
        if not isinstance(image, Tensor):
            raise TypeError(
                f"dataset images must be float tensors (C, H, W) in [0, 1], got "
                f"{type(image).__name__} at index {index}; add transforms.ToTensor() to the "
                "dataset (and keep Normalize for this wrapper's transform)"
            )
        _check_pixels(image, index)
        if isinstance(label, Tensor):
            if label.dim() != 0 or label.is_floating_point():
                raise TypeError(f"dataset labels must be ints, got {label!r} at index {index}")
            label = int(label)
        elif isinstance(label, bool) or not isinstance(label, (int, np.integer)):
            raise TypeError(f"dataset labels must be ints, got {label!r} at index {index}")
        return image, int(label)

    def _compute(
        self,
        dataset: Dataset,
        n: int,
        batch_size: int,
        device: Optional[Union[str, torch.device]],
    ) -> Tuple[Tensor, Tensor, str]:
        """Truncates every image, one SVD per batch; returns images, labels and digest."""
        first, _ = self._item(dataset, 0)
        images = torch.empty((n, *first.shape), dtype=self.storage_dtype)
        labels = torch.empty(n, dtype=torch.int64)
        digest = TensorHash(repr(tuple(first.shape)))
        truncate = drop_top_ranks if self.reverse else low_rank
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            batch = []
            for i in range(start, stop):
                image, label = self._checked_item(dataset, i, first.shape)
                digest.tensor(image, dtype=torch.float32).integer(label)
                batch.append(image)
                labels[i] = label
            x = torch.stack(batch)
            if device is not None:
                x = x.to(device)
            with torch.no_grad():
                images[start:stop] = truncate(x, self.k).to("cpu", self.storage_dtype)
        return images, labels, digest.hexdigest()

    def _checked_item(self, dataset: Dataset, i: int, shape: torch.Size) -> Tuple[Tensor, int]:
        image, label = self._item(dataset, i)
        if image.shape != shape:
            raise ValueError(
                f"dataset images must all have one shape, got {tuple(shape)} at index 0 and "
                f"{tuple(image.shape)} at index {i}"
            )
        return image, label

    def _digest(self, dataset: Dataset, n: int) -> str:
        first, _ = self._item(dataset, 0)
        digest = TensorHash(repr(tuple(first.shape)))
        for i in range(n):
            image, label = self._checked_item(dataset, i, first.shape)
            digest.tensor(image, dtype=torch.float32).integer(label)
        return digest.hexdigest()

    def _load(self, dataset: Dataset, n: int) -> Optional[Tuple[Tensor, Tensor]]:
        path = self.cache_path
        try:
            state = read_state(path, _CACHE_FORMAT) if path is not None else None
        except StateError as e:  # corrupt or foreign file: rebuild
            warnings.warn(f"rebuilding the rank cache {path}: {e}", stacklevel=3)
            return None
        if state is None:
            return None
        problem = _damage(state) or self._mismatch(state, dataset, n)
        if problem is not None:
            warnings.warn(f"rebuilding the rank cache {path}: {problem}", stacklevel=3)
            return None
        return state["images"], state["labels"]

    def _mismatch(self, state: Dict[str, Any], dataset: Dataset, n: int) -> Optional[str]:
        """What makes the cached ``state`` another run's, or None when it is this one's."""
        images, labels = state.get("images"), state.get("labels")
        if not isinstance(images, Tensor) or not isinstance(labels, Tensor):
            return "images or labels are missing"
        first, _ = self._item(dataset, 0)
        saved = {
            "k": state.get("k"),
            "reverse": state.get("reverse"),
            "storage_dtype": images.dtype,
            "shape": (tuple(images.shape), tuple(labels.shape)),
        }
        now = {
            "k": self.k,
            "reverse": self.reverse,
            "storage_dtype": self.storage_dtype,
            "shape": ((n, *first.shape), (n,)),
        }
        found = differences(saved, now, _cache_difference)
        # The digest reads the whole dataset: only when everything else agrees.
        if not found and state.get("digest") != self._digest(dataset, n):
            found = ["the dataset's images or labels differ from those it was built from"]
        return "; ".join(found) or None

    def _save(self, images: Tensor, labels: Tensor, digest: str) -> None:
        content = {
            "k": self.k,
            "reverse": self.reverse,
            "images": images,
            "labels": labels,
            "digest": digest,
            "content": _content_digest(images, labels),
        }
        write_state(self.cache_path, _CACHE_FORMAT, content)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> Tuple[Any, Any]:
        image = self.images[index].float()
        label: Any = int(self.labels[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(k={self.k}, reverse={self.reverse}, n={len(self)}, "
            f"cache_path={str(self.cache_path) if self.cache_path else None!r})"
        )


def _cache_difference(key: str, saved: Any, now: Any) -> Optional[str]:
    """How a cache file's settings differ from this dataset's, or None."""
    if saved == now:
        return None
    if key == "storage_dtype":
        return f"it holds {saved}, storage_dtype is {now}"
    if key == "shape":
        return f"it holds images of shape {saved[0]}, the dataset {now[0]}"
    return describe_difference(key, saved, now)


def _content_digest(images: Tensor, labels: Tensor) -> str:
    """SHA-256 of the cache's own images and labels (dtype, shape and bytes)."""
    return TensorHash().tensor(images, described=True).tensor(labels, described=True).hexdigest()


def _damage(state: Dict[str, Any]) -> Optional[str]:
    """Why a cache file's content cannot be trusted, or None when it matches its digest."""
    images, labels = state.get("images"), state.get("labels")
    if not isinstance(images, Tensor) or not isinstance(labels, Tensor):
        return "images or labels are missing"
    if state.get("content") != _content_digest(images, labels):
        return "its images or labels do not match its own digest (the file is damaged)"
    return None


def _check_pixels(image: Tensor, index: int) -> None:
    """Raises unless ``image`` is a float (C, H, W) tensor in [0, 1], naming ``dataset``."""
    name = f"dataset image {index}"
    check_images(image, name=name, ndim=3, layout="(C, H, W)")
    low, high = float(image.min()), float(image.max())
    if low < -_PIXEL_SLACK or high > 1 + _PIXEL_SLACK:
        hint = (
            "; values up to 255 mean the images were not scaled: transforms.ToTensor() "
            "divides by 255"
            if high > 2
            else "; pass images before Normalize (keep it for this wrapper's transform)"
        )
        raise ValueError(
            f"{name} must hold pixel values in [0, 1], got values in [{low:.4g}, {high:.4g}]{hint}"
        )
