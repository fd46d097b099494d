"""Rank galleries: an image at ranks 1..full (the paper's Figs. 2-3), or with its top
ranks removed (Fig. 9).

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516 (Figs. 2, 3 and 9).
"""

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from captum_rig._checks import check_int, check_real
from captum_rig.lowrank import RankPath
from captum_rig.viz._figure import (
    LABEL_ROOM,
    check_row_labels,
    hwc,
    image_batch,
    panel_grid,
    panel_inches,
    row_label,
    set_title,
    show_image,
)

__all__ = ["plot_rank_gallery", "DEFAULT_GALLERY_RANKS"]

DEFAULT_GALLERY_RANKS: Tuple[Optional[int], ...] = (1, 5, 10, 20, 50, None)
"""The ranks of the paper's Figs. 2-3; ``None`` stands for the full-rank image."""


def _gallery_ranks(
    ranks: Optional[Sequence[Optional[int]]], width: int, reverse: bool
) -> List[Optional[int]]:
    if ranks is None:
        ranks = [k for k in DEFAULT_GALLERY_RANKS if k is None or k < width]
        return ranks[-1:] + ranks[:-1] if reverse else ranks  # reverse: original first
    if isinstance(ranks, (str, bytes)) or not isinstance(ranks, Sequence) or not ranks:
        raise ValueError(f"ranks must be a non-empty sequence of ints or None, got {ranks!r}")
    return [
        None if k is None else check_int(k, f"ranks[{i}]", high=width) for i, k in enumerate(ranks)
    ]


def _reverse_display(x: np.ndarray, percentile: float = 99.0) -> Tuple[np.ndarray, float]:
    """Zero-mean image → ``0.5 + gain·x`` in [0, 1]: mid-grey is 0, symmetric range."""
    spread = float(np.percentile(np.abs(x), percentile))
    gain = 0.5 / spread if spread > 0 else 1.0
    return np.clip(0.5 + gain * x, 0.0, 1.0), gain


def _panel(
    rank_image: Tensor, image: Tensor, k: Optional[int], width: int, reverse: bool
) -> Tuple[np.ndarray, str]:
    """The picture shown for rank ``k`` and its column title."""
    picture = hwc(rank_image)
    if not reverse:
        return picture, f"full (rank {width})" if k is None or k == width else f"rank {k}"
    if k is None or k == 0:
        return hwc(image), "original"
    picture, gain = _reverse_display(picture)
    return picture, f"top {k} removed\n(shown ×{gain:.1f})"


def plot_rank_gallery(
    images: Tensor,
    ranks: Optional[Sequence[Optional[int]]] = None,
    reverse: bool = False,
    *,
    row_labels: Optional[Sequence[str]] = None,
    panel_size: float = 1.8,
    title: Optional[str] = None,
    use_pyplot: bool = False,
) -> Tuple[Figure, np.ndarray]:
    r"""The rank-k images of each image (the paper's Figs. 2-3), or the reverse (Fig. 9).

    All rank images come from one SVD per image (:class:`~captum_rig.RankPath`), per
    colour channel, in pixel space.

    - ``reverse=False``: panel ``k`` shows the best rank-k approximation ``x_k``
      (clipped to [0, 1] for display: truncation overshoots a little); ``None`` is the
      full image.
    - ``reverse=True``: panel ``k`` shows ``x - x_k``, the image with its ``k`` largest
      singular values removed; ``None`` (and 0) shows the original image. These images
      are roughly zero-mean with a small range, so each panel is displayed as
      ``0.5 + g·(x - x_k)`` clipped to [0, 1]: mid-grey is zero, and the gain
      ``g = 0.5 / p99(|x - x_k|)`` (the panel's 99th percentile of absolute values)
      stretches it to the full range. The gain is printed in the panel title: it grows
      as more ranks are removed, because the remaining energy shrinks.

    Args:
        images (Tensor): ``(C, H, W)`` or ``(N, C, H, W)``, float in [0, 1].
        ranks (sequence of int or None, optional): one panel per entry, in order, each
            in ``0..min(H, W)`` or None (full). Default: ``(1, 5, 10, 20, 50, None)``
            without the ranks ``>= min(H, W)``; with ``reverse=True`` the original
            (``None``) comes first.
        reverse (bool): remove the top ranks instead of keeping them. Default: False.
        row_labels (sequence of str, optional): one label per image.
        panel_size (float): inches of a panel's longer side. Default: 1.8.
        title (str, optional): figure title.
        use_pyplot (bool): create the figure with ``pyplot``. Default: False.

    Returns:
        (fig, axes): the ``Figure`` and an ``(N, len(ranks))`` array of ``Axes``.

    Examples:
        >>> fig, axes = plot_rank_gallery(torch.rand(3, 32, 32), ranks=(1, 4, None))
        >>> axes.shape
        (1, 3)
    """
    batch = image_batch(images)
    if not isinstance(reverse, bool):
        raise TypeError(f"reverse must be a bool, got {reverse!r}")
    path = RankPath(batch.to(torch.float64))
    width = path.width
    ks = _gallery_ranks(ranks, width, reverse)
    n, _, h, w = batch.shape
    row_labels = check_row_labels(row_labels, n)
    panel = panel_inches(check_real(panel_size, "panel_size", strict=True), h, w)
    rank_images = path.images([width if k is None else k for k in ks], reverse=reverse).float()

    fig, axes = panel_grid(
        n,
        len(ks),
        panel,
        use_pyplot,
        extra_width=LABEL_ROOM * (row_labels is not None),
        column_title_lines=2 if reverse and any(k not in (None, 0) for k in ks) else 1,
        title=title,
    )
    for i in range(n):
        for j, k in enumerate(ks):
            picture, label = _panel(rank_images[j, i], batch[i], k, width, reverse)
            show_image(fig, axes[i, j], picture, label if i == 0 else None)
        if row_labels is not None:
            row_label(axes[i, 0], row_labels[i], 0.95 * panel[1])
    set_title(fig, title)
    return fig, axes
