"""What a model expects of its input images, and the wrapper that normalizes inside it."""

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from torch import nn

from captum_rig.models import with_normalization

__all__ = ["Preprocessing", "normalized"]


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects of its input images.

    Images are first brought to [0, 1] pixel values; then, if ``resize_size`` is set,
    resized so that their shorter side is ``resize_size``, and if ``crop_size`` is set,
    centre-cropped to ``crop_size × crop_size`` (torchvision's ImageNet evaluation
    transform). ``mean`` and ``std`` are *not* applied to the images: they belong inside
    the model (see :func:`normalized`).

    Attributes:
        crop_size (int, optional): side of the square input; None: any size.
        resize_size (int, optional): shorter side before the crop; None: no resize.
        mean (tuple of float, optional): per-channel mean of the model's training data.
        std (tuple of float, optional): per-channel std of the model's training data.
        in_channels (int, optional): channels the model takes (3 for RGB, 1 for
            greyscale); None: unknown.
        categories (tuple of str, optional): class names, when known.
    """

    crop_size: Optional[int] = None
    resize_size: Optional[int] = None
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    in_channels: Optional[int] = None
    categories: Optional[Tuple[str, ...]] = None


def first_conv_channels(model: nn.Module) -> Optional[int]:
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return int(m.in_channels)
    return None


def normalized(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    r"""``Sequential(Normalize(mean, std), model)``: a model that takes [0, 1] images.

    :func:`captum_rig.models.with_normalization`, moved to ``model``'s device and mode;
    see the module docstring for why the normalization belongs inside the model.

    Args:
        model (nn.Module): a model that expects normalized inputs.
        mean (sequence of float): per-channel mean.
        std (sequence of float): per-channel std.

    Returns:
        nn.Module: the wrapped model, on ``model``'s device, in ``model``'s mode.
    """
    wrapped = with_normalization(model, mean, std)
    param = next(model.parameters(), None)
    if param is not None:
        wrapped = wrapped.to(param.device)
    return wrapped.train(model.training)
