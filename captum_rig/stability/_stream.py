"""Image batches of one size from an image tensor or any iterable of batches.

The comparison and the feature-map spectra read their images as
:func:`~captum_rig._checks.check_batches` does (a tensor, an ``(images, labels)`` pair or
a DataLoader), then cut them again into batches of exactly ``batch_size``: memory holds
about one batch, and a stream gives the batches a tensor would, so the results are the
same however the images came.
"""

from typing import Any, Iterable, Iterator, List, Optional, Tuple

import torch
from torch import Tensor

from captum_rig._checks import Batch, check_batches, check_int, check_pixels

__all__ = ["image_batches"]


def image_batches(
    data: Any, labels: Any, batch_size: Any, *, labels_required: bool = False
) -> Tuple[Iterator[Batch], Optional[int]]:
    """Checked batches of ``batch_size`` images in [0, 1], and the number of images.

    Args:
        data: an image tensor ``(N, C, H, W)``, an ``(images, labels)`` pair, or an
            iterable of ``(images, labels)`` batches such as a DataLoader.
        labels: ``(N,)`` class indices when ``data`` is a tensor; None otherwise.
        batch_size (int): images per batch, ``>= 1``.
        labels_required (bool): every image needs a label.

    Returns:
        ``(batches, n_images)``: ``(images, labels or None)`` pairs, each checked when it
        is reached; ``n_images`` for a tensor, else None.

    Examples:
        >>> loader = [(torch.rand(3, 1, 4, 4), torch.tensor([0, 1, 2]))] * 2
        >>> batches, n = image_batches(loader, None, 4)
        >>> [tuple(x.shape) for x, _ in batches], n
        ([(4, 1, 4, 4), (2, 1, 4, 4)], None)
    """
    if isinstance(data, Tensor):
        check_pixels(data, "images")  # a tensor's message names the images, as it did
    batch_size = check_int(batch_size, name="batch_size", low=1)
    checked = check_batches(data, labels, batch_size, labels_required=labels_required, box=True)
    n_images = data.shape[0] if isinstance(data, Tensor) else None
    return _rebatched(checked.batches, batch_size), n_images


def _rebatched(batches: Iterable[Batch], batch_size: int) -> Iterator[Batch]:
    """The images of ``batches`` in the same order, ``batch_size`` at a time."""
    held: List[Batch] = []
    n_held = 0
    first = None
    for index, (images, labels) in enumerate(batches):
        if first is None:
            first = (tuple(images.shape[1:]), labels is not None)
        else:
            _check_like_first(index, images, labels, first)
        held.append((images, labels))
        n_held += images.shape[0]
        while n_held >= batch_size:
            images, labels = _joined(held)
            yield images[:batch_size], None if labels is None else labels[:batch_size]
            n_held -= batch_size
            rest = (images[batch_size:], None if labels is None else labels[batch_size:])
            held = [rest] if n_held else []
    if first is None:
        raise ValueError("data must not be empty: it yielded no batch")
    if n_held:
        yield _joined(held)


def _joined(held: List[Batch]) -> Batch:
    if len(held) == 1:
        return held[0]
    labels = [y for _, y in held]
    joined = None if labels[0] is None else torch.cat(labels)
    return torch.cat([x for x, _ in held]), joined


def _check_like_first(
    index: int, images: Tensor, labels: Optional[Tensor], first: Tuple[Tuple[int, ...], bool]
) -> None:
    # Each batch was checked on its own (check_batches); here, against the first.
    shape, has_labels = first
    if tuple(images.shape[1:]) != shape:
        raise ValueError(
            f"data batch {index} has images of shape (C, H, W) = {tuple(images.shape[1:])}, "
            f"but the first batch had {shape}; every batch must have the same image shape"
        )
    if (labels is not None) != has_labels:
        raise ValueError(
            f"data batch {index} {'has' if labels is not None else 'has no'} labels, "
            "unlike the first batch: give labels for every batch or for none"
        )
