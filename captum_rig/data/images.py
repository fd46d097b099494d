"""One image file in and out: reading (formats, modes, size limit) and writing.

Everything here returns float tensors in [0, 1] pixel space, the space where captum-rig
truncates ranks; normalization belongs inside the model
(:func:`captum_rig.models.with_normalization`, which also explains why). Nothing here
downloads anything. :func:`save_image` writes an image back out.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from captum_rig._checks import check_int
from captum_rig._context import atomic_path

__all__ = [
    "MAX_PIXELS",
    "load_image",
    "load_images",
    "image_format",
    "save_image",
]

PathLike = Union[str, os.PathLike]
Size = Union[int, Tuple[int, int]]

MAX_PIXELS = 4096 * 4096
"""Default limit on the pixels (H×W) of an image :func:`load_image` returns: 16.8 Mpx.

An H×W image's SVD costs about H·W·min(H, W) operations per channel: a 6000×4000 photo
takes minutes and gigabytes, where a 224×224 crop takes milliseconds.
"""

_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R 601-2, as PIL's convert("L")

# Error templates, in one place so that tests can match them.
NO_FILE = "no such image file: {path}"
A_FOLDER = "{path} is a folder, expected an image file"
NOT_AN_IMAGE = "{path} is not an image file that Pillow can read"
UNREADABLE = "could not read image file {path}: {why}"
CHANNELS = (
    "image {path} is {have} (mode {mode}) but {want} was asked for; pass convert=True to convert it"
)
TOO_BIG = (
    "image {path} is {width}×{height} = {pixels:,} pixels, more than max_pixels = {limit:,} "
    "(its SVD would take minutes and gigabytes); pass a larger max_pixels, or None for no "
    "limit, or shrink the image"
)
SIZES = (
    "image {path} is {shape} but {first} is {first_shape}; pass size=N to bring "
    "every image to one size"
)


def _check_size(size: Optional[Size], name: str) -> Optional[Tuple[int, int]]:
    if size is None:
        return None
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise ValueError(f"{name} must be an int or a pair (H, W), got {size!r}")
        return check_int(size[0], name=name, low=1), check_int(size[1], name=name, low=1)
    s = check_int(size, name=name, low=1)
    return s, s


def _to_float_array(img: Image.Image) -> np.ndarray:
    """PIL image → float32 array (H, W) for grey or (H, W, 3) for colour, in [0, 1].

    Grey modes: ``1``, ``L``, ``LA`` (alpha dropped), 16- and 32-bit integers (divided
    by 65535) and ``F`` (float, clipped); every other mode is converted to RGB.
    """
    mode = img.mode
    if mode in ("LA", "La"):
        img = img.convert("L")
    elif mode not in ("1", "L", "F", "RGB") and mode not in _SIXTEEN_BIT_MODES:
        img = img.convert("RGB")  # palette, alpha, CMYK, YCbCr, ...: alpha dropped
    array = np.asarray(img, dtype=np.float32)
    if img.mode in _SIXTEEN_BIT_MODES:
        return array.clip(0, 65535) / 65535.0
    if img.mode in ("L", "RGB"):
        return array / 255.0
    return array.clip(0.0, 1.0)  # "1" is 0/1 already; "F" is clipped


class _TooBig(Exception):
    """An image above ``max_pixels``; turned into a ValueError outside the decoder's handlers."""


def _read(path: Path, max_pixels: Optional[int] = None) -> Tuple[Tensor, str]:
    """The decoded file, EXIF orientation applied, as ``(C, H, W)`` float32 and its mode.

    An image of more than ``max_pixels`` pixels is refused from its header, before decoding.
    """
    if not path.exists():
        raise ValueError(NO_FILE.format(path=path))
    if path.is_dir():
        raise ValueError(A_FOLDER.format(path=path))
    try:
        with Image.open(path) as img:
            width, height = img.size
            if max_pixels is not None and width * height > max_pixels:
                raise _TooBig(
                    TOO_BIG.format(
                        path=path,
                        width=width,
                        height=height,
                        pixels=width * height,
                        limit=max_pixels,
                    )
                )
            img.load()  # decode now: truncated files fail here, not later
            img = ImageOps.exif_transpose(img) or img  # as the image is shown
            array, mode = _to_float_array(img), img.mode
    except _TooBig as e:
        raise ValueError(str(e)) from None
    except UnidentifiedImageError:
        raise ValueError(NOT_AN_IMAGE.format(path=path)) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(UNREADABLE.format(path=path, why=e)) from None
    x = torch.from_numpy(np.ascontiguousarray(array))
    return (x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)), mode


def load_image(
    path: PathLike,
    size: Optional[Size] = None,
    resize: Optional[int] = None,
    channels: Optional[int] = 3,
    convert: bool = False,
    max_pixels: Optional[int] = MAX_PIXELS,
) -> Tensor:
    r"""Reads an image file (PNG, JPEG, anything Pillow reads) as a float tensor in [0, 1].

    Preprocessing, in order: EXIF orientation applied; alpha channels dropped; palette and
    other colour modes converted to RGB (grey modes stay grey: 1-bit, 8-bit, 16- and
    32-bit integer, float); 8-bit values divided by 255, 16- and 32-bit by 65535, float
    images clipped to [0, 1];
    if ``size`` is given, the image is resized (bilinear, antialiased) so that it covers
    ``size`` — its shorter side becomes ``resize`` if given — and then centre-cropped to
    ``size``: ``size=32`` for CIFAR models, ``size=224, resize=256`` for ImageNet models
    (torchvision's ``Resize(256)`` + ``CenterCrop(224)``).

    Greyscale policy: with ``channels=3`` (an RGB model) a greyscale image raises a
    ``ValueError`` unless ``convert=True``, which repeats the grey channel three times;
    with ``channels=1`` a colour image raises unless ``convert=True``, which takes the
    ITU-R 601 luma (as Pillow's ``convert("L")``); ``channels=None`` keeps the file's.

    Size limit: a file of more than ``max_pixels`` pixels (default :data:`MAX_PIXELS`,
    4096×4096) is refused from its header, before it is decoded, unless ``size`` is given
    (the image is then brought to ``size``, and ``size`` must be within the limit); Pillow's
    own decompression-bomb limit still applies to every file.

    Args:
        path (str or PathLike): the image file.
        size (int or (int, int), optional): output ``(H, W)`` (an int means square).
            Default: the file's size.
        resize (int, optional): shorter side before the centre crop; at least
            ``max(size)``. Default: just enough to cover ``size``.
        channels (int, optional): 3 (RGB, default), 1 (grey) or None (as stored).
        convert (bool): allow converting between grey and RGB. Default: False.
        max_pixels (int, optional): the most pixels (H×W) of the returned image; None:
            no limit. Default: :data:`MAX_PIXELS`.

    Returns:
        Tensor: float32 ``(C, H, W)`` in [0, 1].

    Raises:
        ValueError: the file does not exist, is a folder, is not an image Pillow can
            read, is truncated, has more than ``max_pixels`` pixels, or its channels do
            not match ``channels`` (the message names the path).

    Examples:
        >>> import tempfile, PIL.Image
        >>> p = os.path.join(tempfile.mkdtemp(), "x.png")
        >>> PIL.Image.new("RGB", (40, 30), (255, 0, 0)).save(p)
        >>> load_image(p, size=32).shape
        torch.Size([3, 32, 32])
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path).expanduser()
    out_size = _check_size(size, "size")
    if resize is not None:
        resize = check_int(resize, name="resize", low=1)
        if out_size is None:
            raise ValueError("resize needs size (the centre crop after resizing)")
        if resize < max(out_size):
            raise ValueError(f"resize must be >= max(size) = {max(out_size)}, got {resize}")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    if max_pixels is not None:
        max_pixels = check_int(max_pixels, name="max_pixels", low=1)
        if out_size is not None and out_size[0] * out_size[1] > max_pixels:
            raise ValueError(
                f"size {out_size[0]}×{out_size[1]} is more than max_pixels = {max_pixels:,} "
                "pixels; pass a larger max_pixels"
            )
    # With a size, the file is only decoded and shrunk: Pillow's own limit guards that.
    x, mode = _read(path, max_pixels if out_size is None else None)
    if channels is not None and x.shape[0] != channels:
        if not convert:
            have = "greyscale" if x.shape[0] == 1 else "colour"
            want = "RGB (channels=3)" if channels == 3 else "greyscale (channels=1)"
            raise ValueError(CHANNELS.format(path=path, have=have, mode=mode, want=want))
        x = x.expand(3, -1, -1) if channels == 3 else (x * _LUMA.view(3, 1, 1)).sum(0, True)
    if out_size is not None:
        x = _resize_crop(x, out_size, resize)
    return x.contiguous().clamp(0.0, 1.0)


def _resize_crop(x: Tensor, size: Tuple[int, int], resize: Optional[int]) -> Tensor:
    from torchvision.transforms import functional as TF

    h, w = x.shape[-2:]
    if resize is not None:  # torchvision's Resize(int): the longer side rounds down
        new_h, new_w = (resize, int(resize * w / h)) if h <= w else (int(resize * h / w), resize)
    else:
        scale = max(size[0] / h, size[1] / w)
        new_h, new_w = round(h * scale), round(w * scale)
    new_h, new_w = max(size[0], new_h), max(size[1], new_w)
    if (new_h, new_w) != (h, w):
        x = TF.resize(x, [new_h, new_w], antialias=True)
    return TF.center_crop(x, list(size))


def load_images(paths: Sequence[PathLike], **kwargs) -> Tensor:
    r"""Reads several image files into one batch with :func:`load_image`.

    Args:
        paths (sequence of str or PathLike): image files.
        **kwargs: arguments of :func:`load_image` (``size``, ``resize``, ``channels``,
            ``convert``). Without ``size`` the files must share one size.

    Returns:
        Tensor: float32 ``(N, C, H, W)`` in [0, 1].
    """
    if isinstance(paths, (str, os.PathLike)) or not isinstance(paths, Sequence):
        raise TypeError(f"paths must be a sequence of paths, got {type(paths).__name__}")
    if len(paths) == 0:
        raise ValueError("paths must not be empty")
    images = [load_image(p, **kwargs) for p in paths]
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) > 1:
        raise ValueError(
            f"the images have different shapes {sorted(shapes)}; pass size=... to resize "
            "and crop them to one size"
        )
    return torch.stack(images)


def image_format(path: PathLike) -> str:
    r"""The Pillow format that the extension of ``path`` asks for (``"PNG"``, ``"JPEG"``, ...).

    Raises:
        ValueError: an extension Pillow cannot write; the message lists the known ones.

    Examples:
        >>> image_format("out/rank8.png")
        'PNG'
    """
    formats = {e: f for e, f in Image.registered_extensions().items() if f in Image.SAVE}
    ext = Path(path).suffix.lower()
    if ext not in formats:
        raise ValueError(
            f"{path} must end in one of {', '.join(sorted(formats))}, got {ext or 'no extension'!r}"
        )
    return formats[ext]


def save_image(image: Tensor, path: PathLike, rescale: bool = False) -> None:
    r"""Writes a ``(C, H, W)`` image (``C`` 1 or 3) to ``path``, whole or not at all.

    Values are taken as [0, 1] pixels: clipped to [0, 1], or with ``rescale=True`` the
    image's own min..max is stretched to 0..1 first (for images centred on 0, such as an
    image with its top ranks removed). Stored as 8 bits; greyscale stays greyscale. The
    format follows the extension (:func:`image_format`); the file is written under a
    temporary name and renamed when complete.

    Args:
        image (Tensor): ``(C, H, W)`` float, ``C`` 1 or 3.
        path (str or PathLike): the output file.
        rescale (bool): stretch min..max to the full range instead of clipping.

    Examples:
        >>> import tempfile
        >>> save_image(torch.rand(3, 8, 8), os.path.join(tempfile.mkdtemp(), "x.png"))
    """
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
        got = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"image must be a (C, H, W) tensor with C 1 or 3, got {got}")
    fmt = image_format(path)
    x = image.detach().cpu().float()
    if rescale:
        low, high = float(x.min()), float(x.max())
        x = (x - low) / (high - low) if high > low else x * 0
    array = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    array = array[0].numpy() if array.shape[0] == 1 else array.permute(1, 2, 0).numpy()
    img = Image.fromarray(np.ascontiguousarray(array))
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt)
