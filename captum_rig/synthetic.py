"""Synthetic data: seeded shape images with known object masks, and a fake CIFAR-10 folder.

:func:`make_shapes` draws one shape per image (the class) at a random position, size,
rotation and colour on a smooth random background with a little pixel noise. The class
lives in the object's *shape*, which the large singular values of an image carry. An
optional *high-rank cue* adds iid per-pixel noise whose colour direction depends on the
class: noise has a flat singular value spectrum, so low-rank truncation removes most of
it (a rank-k copy of a w×w noise matrix keeps about k(2w - k)/w² of its energy) while
dropping the top ranks keeps most of it. With ``cue_rank=r`` the cue is confined exactly
to the ranks above ``r`` (and capped by the image's spectrum, so it is much weaker). A
model trained on full-rank images can lean on the cue; one trained on low-rank images
sees much less of it and has to learn the shape. The cue is planted on purpose, a known
"high-rank feature" for rank spectra to detect: the paper's effect in miniature (see
``docs/miniature_study.md``).

:func:`write_cifar10_folder` writes a tiny dataset in torchvision's exact CIFAR-10
format, so that code which loads real CIFAR-10 can be tested offline.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

import math
import os
import pickle
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from captum_rig._checks import check_int
from captum_rig._context import atomic_path

__all__ = [
    "SHAPES",
    "ShapesBatch",
    "make_shapes",
    "SyntheticShapes",
    "CIFAR10_CLASSES",
    "write_cifar10_folder",
]

SHAPES = ("disk", "square", "triangle", "cross", "ring", "diamond")

# Colour directions of the high-rank cue, one per class (fixed, independent of the seed,
# so that a train and a test set drawn with different seeds share the same cue).
_CUE_COLOURS = torch.tensor(
    [
        [1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 0.0, 1.0],
        [1.0, -1.0, 0.0],
        [0.0, 1.0, -1.0],
        [-1.0, 0.0, 1.0],
    ]
)
_CUE_COLOURS = _CUE_COLOURS / _CUE_COLOURS.norm(dim=1, keepdim=True)


class ShapesBatch(NamedTuple):
    """What :func:`make_shapes` returns."""

    images: Tensor
    """``(N, 3, H, W)`` float32 in [0, 1]."""
    labels: Tensor
    """``(N,)`` int64, index into the ``shapes`` drawn."""
    masks: Tensor
    """``(N, H, W)`` bool, True on the object's pixels (coverage above one half)."""


def _sdf(shape: str, px: Tensor, py: Tensor) -> Tensor:
    """Signed distance-like function of a unit-sized shape (negative inside)."""
    if shape == "disk":
        return torch.sqrt(px**2 + py**2) - 1.0
    if shape == "ring":
        return (torch.sqrt(px**2 + py**2) - 0.7).abs() - 0.3
    if shape == "square":
        return torch.maximum(px.abs(), py.abs()) - 0.8
    if shape == "diamond":
        return (px.abs() + py.abs() - 1.0) / math.sqrt(2.0)
    if shape == "triangle":  # equilateral, circumradius 1, flat side up (y grows downwards)
        d = None
        for angle in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3):
            side = px * math.cos(angle) - py * math.sin(angle) - 0.5
            d = side if d is None else torch.maximum(d, side)
        return d
    if shape == "cross":
        w = 0.3
        bar_h = torch.maximum(px.abs() - 1.0, py.abs() - w)
        bar_v = torch.maximum(px.abs() - w, py.abs() - 1.0)
        return torch.minimum(bar_h, bar_v)
    raise ValueError(f"unknown shape {shape!r}")  # pragma: no cover - checked by callers


def _check_shapes(shapes: Sequence[str]) -> Tuple[str, ...]:
    if isinstance(shapes, str) or not isinstance(shapes, Sequence):
        raise TypeError(f"shapes must be a sequence of names from {list(SHAPES)}, got {shapes!r}")
    shapes = tuple(shapes)
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown or len(shapes) < 1 or len(set(shapes)) != len(shapes):
        raise ValueError(f"shapes must be distinct names from {list(SHAPES)}, got {list(shapes)}")
    return shapes


def _check_unit(value: float, name: str, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {value!r}")
    if not 0.0 <= float(value) <= high:
        raise ValueError(f"{name} must be in [0, {high}], got {value}")
    return float(value)


def make_shapes(
    n: int,
    size: int = 32,
    seed: int = 0,
    shapes: Sequence[str] = SHAPES,
    noise: float = 0.03,
    cue: float = 0.0,
    cue_rank: Optional[int] = None,
    max_rotation: float = 15.0,
    scale: Tuple[float, float] = (0.22, 0.38),
) -> ShapesBatch:
    r"""Draws ``n`` RGB images of shapes with their labels and object masks.

    Each image: a smooth background (a random colour plus a random linear ramp), one
    filled shape (class = index of its name in ``shapes``) with a random centre, radius
    ``scale·size``, rotation within ``±max_rotation`` degrees and a colour well apart from
    the background's, anti-aliased edges, then iid Gaussian pixel noise of std ``noise``
    and, if ``cue > 0``, the high-rank cue: iid Gaussian noise of std ``cue`` along a
    class-specific RGB direction over the whole image. With ``cue_rank`` set, each
    channel's noise ``N`` is replaced by ``(I - U Uᵀ) N (I - V Vᵀ)`` (``U``, ``V``: the
    channel's top ``cue_rank`` left and right singular vectors); where the image's tail
    (ranks above ``cue_rank``) plus that noise would outgrow the channel's
    ``cue_rank``-th singular value, both are shrunk together. The rank-``k`` images,
    ``k <= cue_rank``, of a cued image then equal those without the cue (up to the final
    clipping): the cue lives in the ranks above ``cue_rank`` only, and its strength is
    capped by the image's spectrum. Values are clipped to [0, 1].
    Labels are balanced (``n // len(shapes)`` or one more per class) and shuffled.

    Deterministic given the arguments; fast (vectorised torch on CPU, a few thousand
    32×32 images per second or better).

    Args:
        n (int): number of images, ``n >= 0``.
        size (int): height and width in pixels, ``size >= 8``. Default: 32.
        seed (int): seed of a private ``torch.Generator``; the global RNG is untouched.
        shapes (sequence of str): class names, distinct, from :data:`SHAPES`.
            Default: all six.
        noise (float): std of the class-independent pixel noise, in [0, 1].
        cue (float): std of the class-dependent high-rank cue, in [0, 1]. Default: 0
            (no cue).
        cue_rank (int, optional): confine the cue to the ranks above this one,
            ``0 <= cue_rank < size``. Default: None (plain iid cue).
        max_rotation (float): largest rotation in degrees, in [0, 180].
        scale (tuple of float): range of the shape's radius as a fraction of ``size``,
            ``0 < low <= high <= 0.5``.

    Returns:
        ShapesBatch: ``images`` ``(n, 3, size, size)`` float32 in [0, 1], ``labels``
        ``(n,)`` int64, ``masks`` ``(n, size, size)`` bool.

    Examples:
        >>> batch = make_shapes(12, seed=1)
        >>> batch.images.shape, batch.labels.shape, batch.masks.shape
        (torch.Size([12, 3, 32, 32]), torch.Size([12]), torch.Size([12, 32, 32]))
        >>> bool(batch.masks.flatten(1).any(1).all())  # every image has its object
        True
    """
    n = check_int(n, name="n")
    size = check_int(size, name="size", low=8)
    seed = check_int(seed, name="seed")
    shapes = _check_shapes(shapes)
    noise = _check_unit(noise, "noise")
    cue = _check_unit(cue, "cue")
    if cue_rank is not None:
        cue_rank = check_int(cue_rank, name="cue_rank", high=size - 1)
    max_rotation = _check_unit(max_rotation, "max_rotation", high=180.0)
    _check_scale(scale)

    # One private generator, drawn from in a fixed order: the images depend on it alone.
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % len(shapes))[torch.randperm(n, generator=g)]
    bg, ramp_dir, ramp_amp, fg = _colours(g, n)
    radius = _uniform(g, n, low=scale[0] * size, high=scale[1] * size)
    cx = _uniform(g, n) * (size - 2 * radius) + radius
    cy = _uniform(g, n) * (size - 2 * radius) + radius
    theta = _uniform(g, n, low=-1.0, high=1.0) * math.radians(max_rotation)
    pixel_noise = torch.randn(n, 3, size, size, generator=g)
    cue_noise = torch.randn(n, 1, size, size, generator=g)

    coords = torch.arange(size, dtype=torch.float32) + 0.5
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # (H, W), y grows downwards
    dx, dy = xx - cx.view(n, 1, 1), yy - cy.view(n, 1, 1)  # (n, H, W) from the centre
    coverage = _coverage(shapes, labels, dx, dy, radius, theta)
    masks = coverage > 0.5

    ramp = (torch.cos(ramp_dir) * (xx / size - 0.5) + torch.sin(ramp_dir) * (yy / size - 0.5)) * 2
    background = bg + ramp_amp * ramp  # (n, 3, H, W)
    images = background + coverage.unsqueeze(1) * (fg - background)
    images = images + noise * pixel_noise
    if cue > 0 and n > 0:
        colours = _CUE_COLOURS[labels]  # (n, 3)
        noise_c = cue * cue_noise * colours.view(n, 3, 1, 1)
        images = images + noise_c if cue_rank is None else _add_high_rank(images, noise_c, cue_rank)
    images = images.clamp(0.0, 1.0)
    return ShapesBatch(images.contiguous(), labels.to(torch.int64), masks)


def _check_scale(scale: Any) -> None:
    if (
        not isinstance(scale, (tuple, list))
        or len(scale) != 2
        or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scale)
    ):
        raise TypeError(f"scale must be a pair of floats (low, high), got {scale!r}")
    if not 0.0 < scale[0] <= scale[1] <= 0.5:
        raise ValueError(f"scale must satisfy 0 < low <= high <= 0.5, got {tuple(scale)}")


def _uniform(g: torch.Generator, *shape: int, low: float = 0.0, high: float = 1.0) -> Tensor:
    return low + (high - low) * torch.rand(*shape, generator=g)


def _colours(g: torch.Generator, n: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Background colour, ramp direction and amplitudes, and object colour of ``n`` images."""
    # Background: a colour plus a linear ramp (rank <= 2 per channel before noise).
    bg = _uniform(g, n, 3, 1, 1, low=0.1, high=0.9)
    ramp_dir = _uniform(g, n, 1, 1, 1, high=2 * math.pi)
    ramp_amp = _uniform(g, n, 3, 1, 1, low=-0.15, high=0.15)
    # Object colour: resampled until it differs from the background colour by >= 0.35
    # (Euclidean in RGB); a few rounds suffice, the rest are pushed away deterministically.
    fg = _uniform(g, n, 3, 1, 1)
    for _ in range(8):
        bad = (fg - bg).flatten(1).norm(dim=1) < 0.35
        if not bool(bad.any()):
            break
        fg[bad] = _uniform(g, int(bad.sum()), 3, 1, 1)
    bad = (fg - bg).flatten(1).norm(dim=1) < 0.35
    fg[bad] = torch.where(bg[bad] > 0.5, bg[bad] - 0.4, bg[bad] + 0.4)
    return bg, ramp_dir, ramp_amp, fg


def _coverage(
    shapes: Sequence[str], labels: Tensor, dx: Tensor, dy: Tensor, radius: Tensor, theta: Tensor
) -> Tensor:
    """``(n, H, W)`` fraction of each pixel the object covers (a one-pixel soft edge).

    ``dx``, ``dy``: ``(n, H, W)`` offsets of the pixel centres from the object's centre.
    """
    n = labels.shape[0]
    cos, sin = torch.cos(theta).view(n, 1, 1), torch.sin(theta).view(n, 1, 1)
    r = radius.view(n, 1, 1)
    px = (cos * dx + sin * dy) / r
    py = (-sin * dx + cos * dy) / r
    coverage = torch.empty(dx.shape)
    for c, name in enumerate(shapes):
        idx = labels == c
        if bool(idx.any()):
            # distance in pixels (sdf is in units of the radius)
            d = _sdf(name, px[idx], py[idx]) * r[idx]
            coverage[idx] = (0.5 - d).clamp(0.0, 1.0)
    return coverage


def _add_high_rank(images: Tensor, noise: Tensor, r: int) -> Tensor:
    """``images`` plus ``noise`` confined to the ranks above ``r`` (see :func:`make_shapes`).

    Per channel ``X = A + B`` (``A`` its top-``r`` part, ``B`` the tail) and ``N`` the
    noise projected off ``A``'s row and column spaces: ``B + N`` is orthogonal to ``A``,
    so the SVD of ``A + B + N`` is ``A``'s plus that of ``B + N``; shrinking ``B + N`` below
    ``A``'s ``r``-th singular value makes the top ``r`` ranks exactly ``A``'s.
    """
    if r == 0:
        return images + noise
    u, s, vh = torch.linalg.svd(images, full_matrices=False)
    u, s, vh = u[..., :r], s[..., :r], vh[..., :r, :]
    top = (u * s.unsqueeze(-2)) @ vh
    noise = noise - u @ (u.transpose(-1, -2) @ noise)
    noise = noise - (noise @ vh.transpose(-1, -2)) @ vh
    tail = images - top + noise
    largest = torch.linalg.matrix_norm(tail, ord=2)  # (n, 3)
    limit = 0.9 * s[..., r - 1]
    scale = torch.where(largest > limit, limit / largest.clamp_min(1e-12), torch.ones_like(limit))
    return top + tail * scale[..., None, None]


class SyntheticShapes(Dataset):
    r"""A map-style dataset of :func:`make_shapes` images, generated once up front.

    Items are ``(image, label)`` pairs (``(image, label, mask)`` with
    ``return_masks=True``), so it drops in where CIFAR-10 would go; the object masks are
    also in :attr:`masks` for scoring attributions against ground truth.

    Args:
        n (int): number of images.
        size (int): height and width. Default: 32.
        seed (int): generator seed; two datasets with the same arguments are identical.
        shapes (sequence of str): class names from :data:`SHAPES`.
        noise (float): std of the class-independent pixel noise.
        cue (float): std of the class-dependent high-rank cue (0: none).
        transform (callable, optional): applied to each image tensor on access.
        return_masks (bool): if True, items are ``(image, label, mask)``.
        **kwargs: further arguments of :func:`make_shapes` (``max_rotation``, ``scale``).

    Attributes:
        images (Tensor): ``(n, 3, size, size)`` float32 in [0, 1], before ``transform``.
        labels (Tensor): ``(n,)`` int64.
        masks (Tensor): ``(n, size, size)`` bool.
        classes (tuple of str): the shape names, indexed by label.

    Examples:
        >>> data = SyntheticShapes(100, seed=0)
        >>> image, label = data[0]
        >>> image.shape, data.classes[label] in SHAPES
        (torch.Size([3, 32, 32]), True)
    """

    def __init__(
        self,
        n: int,
        size: int = 32,
        seed: int = 0,
        shapes: Sequence[str] = SHAPES,
        noise: float = 0.03,
        cue: float = 0.0,
        transform=None,
        return_masks: bool = False,
        **kwargs,
    ) -> None:
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        batch = make_shapes(n, size=size, seed=seed, shapes=shapes, noise=noise, cue=cue, **kwargs)
        self.images, self.labels, self.masks = batch
        self.classes = tuple(shapes)
        self.transform = transform
        self.return_masks = bool(return_masks)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int):
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        label = int(self.labels[index])
        if self.return_masks:
            return image, label, self.masks[index]
        return image, label


CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def _dump_atomic(obj, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10_folder(
    root: Union[str, os.PathLike],
    n_train: int = 50,
    n_test: int = 20,
    seed: int = 0,
    cue: float = 0.0,
) -> Path:
    r"""Writes a tiny dataset in torchvision's CIFAR-10 format under ``root``.

    Creates ``root/cifar-10-batches-py/`` with ``data_batch_1`` … ``data_batch_5`` (the
    training images split as evenly as possible), ``test_batch`` and ``batches.meta``,
    pickled like the real files: each batch a dict with ``data`` (uint8 ``(n, 3072)``,
    rows of 1024 red, 1024 green, 1024 blue values, row-major 32×32), ``labels`` (list of
    int), ``filenames`` and ``batch_label``; the meta a dict with ``label_names`` (the ten
    CIFAR-10 names), ``num_cases_per_batch`` and ``num_vis``. The images are
    :func:`make_shapes` images (so labels are 0..5, a learnable task), quantised to uint8.
    Each file is written atomically.

    torchvision's ``CIFAR10`` also checks each file's MD5 against the real dataset's, which
    a generated file cannot pass; :func:`captum_rig.data.load_cifar10` checks the layout
    instead unless asked for checksums.

    Args:
        root (str or PathLike): folder to write into (created if missing).
        n_train (int): number of training images. Default: 50.
        n_test (int): number of test images. Default: 20.
        seed (int): seed; the test split uses ``seed + 1``.
        cue (float): the high-rank cue of :func:`make_shapes`. Default: 0.

    Returns:
        Path: ``root``.

    Examples:
        >>> import tempfile
        >>> root = write_cifar10_folder(tempfile.mkdtemp(), n_train=10, n_test=5)
        >>> sorted(p.name for p in (root / "cifar-10-batches-py").iterdir())[:2]
        ['batches.meta', 'data_batch_1']
    """
    n_train = check_int(n_train, name="n_train")
    n_test = check_int(n_test, name="n_test")
    seed = check_int(seed, name="seed")
    root = Path(root)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def encode(batch: ShapesBatch) -> np.ndarray:
        pixels = (batch.images * 255).round().clamp(0, 255).to(torch.uint8)
        return pixels.reshape(pixels.shape[0], 3 * 32 * 32).numpy()

    train = make_shapes(n_train, size=32, seed=seed, cue=cue)
    test = make_shapes(n_test, size=32, seed=seed + 1, cue=cue)
    train_data, train_labels = encode(train), train.labels.tolist()
    bounds = np.linspace(0, n_train, 6).round().astype(int)
    for i in range(5):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        _dump_atomic(
            {
                "batch_label": f"training batch {i + 1} of 5",
                "labels": train_labels[lo:hi],
                "data": np.ascontiguousarray(train_data[lo:hi]),
                "filenames": [f"synthetic_{j:05d}.png" for j in range(lo, hi)],
            },
            folder / f"data_batch_{i + 1}",
        )
    _dump_atomic(
        {
            "batch_label": "testing batch 1 of 1",
            "labels": test.labels.tolist(),
            "data": encode(test),
            "filenames": [f"synthetic_test_{j:05d}.png" for j in range(n_test)],
        },
        folder / "test_batch",
    )
    _dump_atomic(
        {
            "label_names": list(CIFAR10_CLASSES),
            "num_cases_per_batch": max(int(np.diff(bounds).max()), 1),
            "num_vis": 3072,
        },
        folder / "batches.meta",
    )
    return root
