"""Loading users' images offline: image files, image folders, CIFAR-10 from a local folder.

Everything here returns float tensors in [0, 1] pixel space, the space where captum-rig
truncates ranks; normalization belongs inside the model (:func:`with_normalization`, which
also explains why). Nothing here downloads anything.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

import os
import pickle
from functools import cache, partial
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from captum_rig._checks import check_int
from captum_rig.models import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    with_normalization,
)

__all__ = [
    "load_image",
    "load_images",
    "image_folder",
    "load_cifar10",
    "Normalize",
    "with_normalization",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

PathLike = Union[str, os.PathLike]
Size = Union[int, Tuple[int, int]]

_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N"}
_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R 601-2, as PIL's convert("L")


def _check_size(size: Optional[Size], name: str) -> Optional[Tuple[int, int]]:
    if size is None:
        return None
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise ValueError(f"{name} must be an int or a pair (H, W), got {size!r}")
        return check_int(size[0], name=name, low=1), check_int(size[1], name=name, low=1)
    s = check_int(size, name=name, low=1)
    return s, s


def _to_float_array(img: Image.Image, path: Path) -> np.ndarray:
    """PIL image → float32 array (H, W) for grey or (H, W, 3) for colour, in [0, 1]."""
    mode = img.mode
    if mode in ("LA", "La", "PA"):  # alpha dropped
        img = img.convert("L" if mode != "PA" else "RGB")
    elif mode == "P":
        img = img.convert("RGB")
    elif mode in ("RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")  # alpha dropped; other colour spaces converted
    if img.mode in _SIXTEEN_BIT_MODES:
        return np.asarray(img, dtype=np.float32).clip(0, 65535) / 65535.0
    if img.mode == "1":
        return np.asarray(img, dtype=np.float32)
    if img.mode in ("L", "RGB"):
        return np.asarray(img, dtype=np.float32) / 255.0
    raise ValueError(f"image {path} has the unsupported PIL mode {img.mode!r}")


def load_image(
    path: PathLike,
    size: Optional[Size] = None,
    resize: Optional[int] = None,
    channels: Optional[int] = 3,
    convert: bool = False,
) -> Tensor:
    r"""Reads an image file (PNG, JPEG, anything Pillow reads) as a float tensor in [0, 1].

    Preprocessing, in order: EXIF orientation applied; alpha channels dropped; palette and
    other colour modes converted to RGB; 8-bit values divided by 255, 16-bit by 65535;
    if ``size`` is given, the image is resized (bilinear, antialiased) so that it covers
    ``size`` — its shorter side becomes ``resize`` if given — and then centre-cropped to
    ``size``: ``size=32`` for CIFAR models, ``size=224, resize=256`` for ImageNet models
    (torchvision's ``Resize(256)`` + ``CenterCrop(224)``).

    Greyscale policy: with ``channels=3`` (an RGB model) a greyscale image raises a
    ``ValueError`` unless ``convert=True``, which repeats the grey channel three times;
    with ``channels=1`` a colour image raises unless ``convert=True``, which takes the
    ITU-R 601 luma (as Pillow's ``convert("L")``); ``channels=None`` keeps the file's.

    Args:
        path (str or PathLike): the image file.
        size (int or (int, int), optional): output ``(H, W)`` (an int means square).
            Default: the file's size.
        resize (int, optional): shorter side before the centre crop; at least
            ``max(size)``. Default: just enough to cover ``size``.
        channels (int, optional): 3 (RGB, default), 1 (grey) or None (as stored).
        convert (bool): allow converting between grey and RGB. Default: False.

    Returns:
        Tensor: float32 ``(C, H, W)`` in [0, 1].

    Raises:
        ValueError: the file does not exist, is not an image Pillow can read, is
            truncated, or its channels do not match ``channels`` (message names the path).

    Examples:
        >>> import tempfile, PIL.Image
        >>> p = os.path.join(tempfile.mkdtemp(), "x.png")
        >>> PIL.Image.new("RGB", (40, 30), (255, 0, 0)).save(p)
        >>> load_image(p, size=32).shape
        torch.Size([3, 32, 32])
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    out_size = _check_size(size, "size")
    if resize is not None:
        resize = check_int(resize, name="resize", low=1)
        if out_size is None:
            raise ValueError("resize needs size (the centre crop after resizing)")
        if resize < max(out_size):
            raise ValueError(f"resize must be >= max(size) = {max(out_size)}, got {resize}")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    if not path.is_file():
        raise ValueError(f"image file {path} does not exist or is not a file")
    try:
        with Image.open(path) as img:
            img.load()  # decode now: truncated files fail here, not later
            img = ImageOps.exif_transpose(img) or img
            array = _to_float_array(img, path)
            mode = img.mode
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"could not read image file {path}: {e}") from None

    x = torch.from_numpy(np.ascontiguousarray(array))
    x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
    if channels is not None and x.shape[0] != channels:
        if not convert:
            kind = "greyscale" if x.shape[0] == 1 else "colour"
            want = "RGB (channels=3)" if channels == 3 else "greyscale (channels=1)"
            raise ValueError(
                f"image {path} is {kind} (mode {mode}) but {want} was asked for; pass "
                "convert=True to convert it"
            )
        x = x.expand(3, -1, -1) if channels == 3 else (x * _LUMA.view(3, 1, 1)).sum(0, True)
    if out_size is not None:
        x = _resize_crop(x, out_size, resize)
    return x.contiguous().clamp(0.0, 1.0)


def _resize_crop(x: Tensor, size: Tuple[int, int], resize: Optional[int]) -> Tensor:
    from torchvision.transforms import functional as TF

    h, w = x.shape[-2:]
    if resize is not None:
        scale = resize / min(h, w)
    else:
        scale = max(size[0] / h, size[1] / w)
    new_h, new_w = max(size[0], round(h * scale)), max(size[1], round(w * scale))
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


def image_folder(
    root: PathLike,
    size: Optional[Size] = None,
    resize: Optional[int] = None,
    channels: Optional[int] = 3,
    convert: bool = False,
    transform: Optional[Callable] = None,
    target_transform: Optional[Callable] = None,
):
    r"""A torchvision ``ImageFolder`` whose images are [0, 1] tensors from :func:`load_image`.

    Layout: ``root/<class name>/<image file>``, classes sorted by name as in torchvision.
    Files are read on access, so a broken file raises (a ``ValueError`` naming it) when
    its item is loaded.

    Args:
        root (str or PathLike): the folder.
        size (int or tuple, optional): as in :func:`load_image`; give it when the files
            differ in size and you batch them.
        resize (int, optional): as in :func:`load_image`.
        channels (int, optional): as in :func:`load_image`.
        convert (bool): as in :func:`load_image`.
        transform (callable, optional): applied to each image tensor after loading.
        target_transform (callable, optional): applied to each label.

    Returns:
        torchvision.datasets.ImageFolder: items ``(image (C, H, W) float32, label int)``.

    Raises:
        ValueError: ``root`` is not a folder, or holds no class folder with an image.
    """
    from torchvision.datasets import ImageFolder

    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a str or os.PathLike, got {type(root).__name__}")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"image folder {root} does not exist or is not a folder")
    _check_size(size, "size")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    loader = partial(load_image, size=size, resize=resize, channels=channels, convert=convert)
    try:
        return ImageFolder(
            str(root), transform=transform, target_transform=target_transform, loader=loader
        )
    except FileNotFoundError as e:
        raise ValueError(
            f"image folder {root} has no images in the expected layout "
            f"root/<class>/<image file> ({e})"
        ) from None


@cache
def _layout_only_cifar10():
    """torchvision's CIFAR10 with the MD5s unset: its checks then test that files exist."""
    from torchvision.datasets import CIFAR10

    class LocalCIFAR10(CIFAR10):
        train_list = [[name, None] for name, _ in CIFAR10.train_list]
        test_list = [[name, None] for name, _ in CIFAR10.test_list]
        meta = {**CIFAR10.meta, "md5": None}

    return LocalCIFAR10


def load_cifar10(
    root: PathLike,
    train: bool = True,
    transform: Optional[Callable] = None,
    target_transform: Optional[Callable] = None,
    check_md5: bool = False,
):
    r"""CIFAR-10 from a local folder in torchvision's format, as [0, 1] tensors. No download.

    ``root`` holds ``cifar-10-batches-py/`` (``data_batch_1`` … ``data_batch_5``,
    ``test_batch``, ``batches.meta``), i.e. the extracted ``cifar-10-python.tar.gz``; the
    ``cifar-10-batches-py`` folder itself is accepted too. Loading is torchvision's own
    ``CIFAR10(download=False)``; by default it checks that the files are there rather than
    their MD5 checksums (so tiny stand-ins such as
    :func:`captum_rig.synthetic.write_cifar10_folder` load too); ``check_md5=True`` uses
    the stock class, checksums included.

    The batch files are Python pickles: load only folders you trust.

    Args:
        root (str or PathLike): the folder.
        train (bool): the 50,000 training images (True) or the 10,000 test images.
        transform (callable, optional): applied after ``ToTensor``, to ``(3, 32, 32)``
            [0, 1] tensors.
        target_transform (callable, optional): applied to each label.
        check_md5 (bool): verify the files against the real dataset's checksums.

    Returns:
        torchvision.datasets.CIFAR10: items ``(image (3, 32, 32) float32, label int)``.

    Raises:
        ValueError: the folder or one of its files is missing, unreadable or (with
            ``check_md5``) not the real dataset; the message names it.
    """
    from torchvision import transforms as T
    from torchvision.datasets import CIFAR10

    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a str or os.PathLike, got {type(root).__name__}")
    root = Path(root)
    base = CIFAR10.base_folder
    if not (root / base).is_dir() and (root / CIFAR10.meta["filename"]).is_file():
        root = root.parent  # given the cifar-10-batches-py folder itself
    folder = root / base
    names = [n for n, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        where = f"{folder} lacks {', '.join(missing)}" if folder.is_dir() else f"no {folder}"
        raise ValueError(
            f"CIFAR-10 not found under root={str(root)!r}: {where}. Extract "
            "cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) there; "
            "nothing is downloaded"
        )
    to_tensor = T.ToTensor()
    tf = to_tensor if transform is None else T.Compose([to_tensor, transform])
    cls = CIFAR10 if check_md5 else _layout_only_cifar10()
    try:
        data = cls(str(root), train=bool(train), transform=tf, target_transform=target_transform)
    except RuntimeError as e:
        raise ValueError(
            f"CIFAR-10 under {folder} failed torchvision's checksum check ({e})"
        ) from None
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, OSError, UnicodeError) as e:
        raise ValueError(
            f"could not read CIFAR-10 from {folder}: {type(e).__name__}: {e}"
        ) from None
    if len(data.targets) != len(data.data):
        raise ValueError(
            f"could not read CIFAR-10 from {folder}: {len(data.data)} images but "
            f"{len(data.targets)} labels"
        )
    return data
