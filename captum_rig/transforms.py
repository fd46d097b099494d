"""Rank truncation as torchvision-style transforms.

``LowRank(k)`` and ``DropTopRanks(k)`` are thin ``nn.Module`` wrappers around
:func:`~captum_rig.low_rank` and :func:`~captum_rig.drop_top_ranks`, so they fit in a
``torchvision.transforms.Compose`` (after ``ToTensor``, in [0, 1] pixel space, before
``Normalize``) or in front of a model.
"""

import torch
from torch import Tensor, nn

from captum_rig._checks import check_images, check_int
from captum_rig.lowrank import drop_top_ranks, low_rank

__all__ = ["LowRank", "DropTopRanks"]


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


