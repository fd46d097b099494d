"""Every way images come in: image files, image folders, CIFAR-10 from a local folder.

Everything here returns float tensors in [0, 1] pixel space, the space where captum-rig
truncates ranks; normalization belongs inside the model
(:func:`captum_rig.models.with_normalization`, which also explains why). Nothing here
downloads anything. :func:`save_image` writes an image back out.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

import os
import pickle
from functools import cache, partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from captum_rig._checks import check_int
from captum_rig._context import atomic_path

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "load_image",
    "load_images",
    "ImageFiles",
    "image_folder",
    "load_cifar10",
    "image_dataset",
    "image_format",
    "save_image",
]

PathLike = Union[str, os.PathLike]
Size = Union[int, Tuple[int, int]]

IMAGE_EXTENSIONS = (
    ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"
)  # fmt: skip
"""File name endings read as images in folders (any case)."""

CIFAR10_PREFIX = "cifar10:"

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
    "image {path} is {have} (mode {mode}) but {want} was asked for; pass convert=True "
    "(captum-rig: --convert) to convert it"
)
TOO_BIG = (
    "image {path} is {width}×{height} = {pixels:,} pixels, more than max_pixels = {limit:,} "
    "(its SVD would take minutes and gigabytes); pass a larger max_pixels, or None for no "
    "limit (captum-rig: --max-pixels N, 0 for no limit), or shrink the image"
)
SIZES = (
    "image {path} is {shape} but {first} is {first_shape}; pass size=N (captum-rig: "
    "--image-size N) to bring every image to one size"
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
                "pixels; pass a larger max_pixels (captum-rig: --max-pixels N)"
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


def _is_image_file(path: PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _images_in(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and _is_image_file(p))


class ImageFiles(Dataset):
    r"""A data set of image files, read on access with :func:`load_image`.

    Items are ``image`` tensors ``(C, H, W)``, or ``(image, label)`` when ``labels`` are
    given. Without ``size``, every image must have the shape of the first one (so that
    batches stack); a file that does not raises a ``ValueError`` naming both files.

    Args:
        paths (sequence of str or PathLike): the image files.
        labels (sequence of int, optional): one label per file.
        classes (sequence of str, optional): class names, kept as ``.classes``.
        size, resize, channels, convert, max_pixels: as in :func:`load_image`.

    Examples:
        >>> import tempfile, PIL.Image
        >>> p = os.path.join(tempfile.mkdtemp(), "x.png")
        >>> PIL.Image.new("RGB", (40, 30)).save(p)
        >>> ImageFiles([p], labels=[3], size=16)[0][0].shape
        torch.Size([3, 16, 16])
    """

    def __init__(
        self,
        paths: Sequence[PathLike],
        labels: Optional[Sequence[int]] = None,
        classes: Optional[Sequence[str]] = None,
        size: Optional[Size] = None,
        resize: Optional[int] = None,
        channels: Optional[int] = 3,
        convert: bool = False,
        max_pixels: Optional[int] = MAX_PIXELS,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        if labels is not None and len(labels) != len(self.paths):
            raise ValueError(f"labels must have one entry per path, got {len(labels)}")
        self.labels = None if labels is None else [int(y) for y in labels]
        self.classes = None if classes is None else list(classes)
        self.size = _check_size(size, "size")
        self._load = partial(
            load_image,
            size=size,
            resize=resize,
            channels=channels,
            convert=convert,
            max_pixels=max_pixels,
        )
        self._first_shape: Optional[Tuple[int, ...]] = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        x = self._load(self.paths[i])
        if self.size is None:
            if self._first_shape is None:
                self._first_shape = tuple(self._load(self.paths[0]).shape) if i else x.shape
            if tuple(x.shape) != tuple(self._first_shape):
                raise ValueError(
                    SIZES.format(
                        path=self.paths[i],
                        shape=tuple(x.shape),
                        first=self.paths[0],
                        first_shape=tuple(self._first_shape),
                    )
                )
        return x if self.labels is None else (x, self.labels[i])


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

    Layout: ``root/<class name>/<image file>``, classes sorted by name as in torchvision
    (hidden folders, named ``.*``, are not classes); image files are those ending in one
    of :data:`IMAGE_EXTENSIONS`.
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
        return _image_folder_class()(
            str(root),
            transform=transform,
            target_transform=target_transform,
            loader=loader,
            is_valid_file=_is_image_file,
        )
    except FileNotFoundError as e:
        raise ValueError(
            f"image folder {root} has no images in the expected layout "
            f"root/<class>/<image file> ({e})"
        ) from None


@cache
def _image_folder_class():
    """torchvision's ImageFolder, with hidden folders (``.ipynb_checkpoints``) not classes."""
    from torchvision.datasets import ImageFolder

    class VisibleImageFolder(ImageFolder):
        def find_classes(self, directory: str) -> Tuple[List[str], Dict[str, int]]:
            classes = _class_folders(Path(directory))
            if not classes:
                raise FileNotFoundError(f"Couldn't find any class folder in {directory}.")
            return classes, {name: i for i, name in enumerate(classes)}

    return VisibleImageFolder


def _class_folders(root: Path) -> List[str]:
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


# The globals a CIFAR-10 batch needs: numpy's array reconstruction (under its NumPy 1 and
# NumPy 2 module names) and codecs.encode, which protocol-2 pickles use for bytes.
_CIFAR_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class _CifarUnpickler(pickle.Unpickler):
    """Admits only the arrays, lists, strings and dicts a CIFAR-10 batch holds.

    A batch file is a pickle, and a plain ``pickle.load`` runs whatever callable a crafted
    file names; here any other global is refused before it is looked up.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, but a CIFAR-10 batch holds only arrays, lists, "
                "strings and dicts (a crafted file?)"
            )
        return super().find_class(module, name)


def _unpickle_cifar(path: str) -> Dict[str, Any]:
    """One CIFAR-10 batch or meta file, read with :class:`_CifarUnpickler`."""
    try:
        with open(path, "rb") as f:
            entry = _CifarUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, OSError, UnicodeError) as e:
        raise ValueError(f"could not read CIFAR-10 file {path}: {e}") from None
    if not isinstance(entry, dict):
        raise ValueError(f"could not read CIFAR-10 file {path}: not a dict of arrays")
    return entry


@cache
def _cifar10_class(check_md5: bool):
    """torchvision's CIFAR10, files read by :func:`_unpickle_cifar` instead of ``pickle.load``.

    With ``check_md5=False`` the MD5s are unset, so torchvision's checks test only that the
    files exist.
    """
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.vision import VisionDataset

    class LocalCIFAR10(CIFAR10):
        if not check_md5:
            train_list = [[name, None] for name, _ in CIFAR10.train_list]
            test_list = [[name, None] for name, _ in CIFAR10.test_list]
            meta = {**CIFAR10.meta, "md5": None}

        def __init__(self, root: str, train: bool = True, transform=None, target_transform=None):
            # CIFAR10.__init__ would pickle.load the files; the same steps, read safely.
            VisionDataset.__init__(
                self, root, transform=transform, target_transform=target_transform
            )
            self.train = train
            if not self._check_integrity():
                raise RuntimeError("Dataset not found or corrupted.")
            data, self.targets = [], []
            for file_name, _ in self.train_list if train else self.test_list:
                entry = _unpickle_cifar(os.path.join(self.root, self.base_folder, file_name))
                data.append(np.asarray(entry["data"], dtype=np.uint8))
                self.targets.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
            self.data = np.vstack(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))
            self._load_meta()

        def _load_meta(self) -> None:
            from torchvision.datasets.utils import check_integrity

            path = os.path.join(self.root, self.base_folder, self.meta["filename"])
            if not check_integrity(path, self.meta["md5"]):
                raise RuntimeError("Dataset metadata file not found or corrupted.")
            self.classes = _unpickle_cifar(path)[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

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
    :func:`captum_rig.synthetic.write_cifar10_folder` load too); ``check_md5=True`` checks
    them against the real dataset's checksums too.

    The batch files are Python pickles, which a plain ``pickle.load`` would let run code:
    they are read with an unpickler that admits only the NumPy arrays, lists, strings and
    dicts the format has, and a file naming anything else is refused.

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
        ValueError: the folder or one of its files is missing, unreadable, holds objects
            other than CIFAR-10's, or (with ``check_md5``) is not the real dataset; the
            message names it.
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
    cls = _cifar10_class(bool(check_md5))
    try:
        data = cls(str(root), train=bool(train), transform=tf, target_transform=target_transform)
    except RuntimeError as e:
        raise ValueError(
            f"CIFAR-10 under {folder} failed torchvision's checksum check ({e})"
        ) from None
    except ValueError as e:
        if str(e).startswith("could not read CIFAR-10"):
            raise
        raise ValueError(f"could not read CIFAR-10 from {folder}: {e}") from None
    except (KeyError, TypeError, OSError) as e:
        raise ValueError(
            f"could not read CIFAR-10 from {folder}: {type(e).__name__}: {e}"
        ) from None
    if len(data.targets) != len(data.data):
        raise ValueError(
            f"could not read CIFAR-10 from {folder}: {len(data.data)} images but "
            f"{len(data.targets)} labels"
        )
    return data


def _cifar_transform(
    size: Optional[Size], resize: Optional[int], channels: Optional[int], convert: bool
) -> Optional[Callable[[Tensor], Tensor]]:
    """Brings CIFAR-10's ``(3, 32, 32)`` tensors to the size and channels asked for."""
    out_size = _check_size(size, "size")
    if channels == 1 and not convert:
        raise ValueError(
            CHANNELS.format(
                path="CIFAR-10", have="colour", mode="RGB", want="greyscale (channels=1)"
            )
        )
    if out_size is None and channels != 1:
        return None

    def transform(x: Tensor) -> Tensor:
        if channels == 1:
            x = (x * _LUMA.view(3, 1, 1)).sum(0, True)
        if out_size is not None:
            x = _resize_crop(x, out_size, resize).clamp(0.0, 1.0)
        return x.contiguous()

    return transform


def image_dataset(
    source: PathLike,
    train: bool = False,
    size: Optional[Size] = None,
    resize: Optional[int] = None,
    channels: Optional[int] = 3,
    convert: bool = False,
    max_pixels: Optional[int] = MAX_PIXELS,
) -> Tuple[Dataset, bool]:
    r"""The data set a source names, and whether it has labels.

    ``source`` is one of:

    - ``"cifar10:PATH"``: CIFAR-10 in torchvision's format under ``PATH``
      (:func:`load_cifar10`); labelled.
    - a folder with class subfolders ``root/<class>/<image file>`` (hidden folders
      ignored; classes sorted by name, labels 0, 1, ... as in torchvision); labelled.
    - a flat folder of image files; items are images only, no labels.

    Image files are those ending in one of :data:`IMAGE_EXTENSIONS`, read on access with
    :func:`load_image` (:class:`ImageFiles`).

    Args:
        source (str or PathLike): as above.
        train (bool): CIFAR-10's training split (True) or its test split. Default: False.
        size, resize, channels, convert, max_pixels: as in :func:`load_image`
            (``max_pixels`` applies to image files; CIFAR-10 images are 32×32).

    Returns:
        (Dataset, bool): items ``(image (C, H, W), label)`` when labelled, else ``image``;
        and whether there are labels.

    Raises:
        ValueError: a missing folder, a folder without images, an empty class folder, a
            missing or broken CIFAR-10 folder (the message names it).

    Examples:
        >>> import tempfile, PIL.Image
        >>> root = tempfile.mkdtemp()
        >>> PIL.Image.new("RGB", (8, 8)).save(os.path.join(root, "x.png"))
        >>> data, labelled = image_dataset(root)
        >>> len(data), labelled, data[0].shape
        (1, False, torch.Size([3, 8, 8]))
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a str or os.PathLike, got {type(source).__name__}")
    text = os.fspath(source)
    if text.startswith(CIFAR10_PREFIX):
        transform = _cifar_transform(size, resize, channels, convert)
        root = Path(text[len(CIFAR10_PREFIX) :]).expanduser()
        return load_cifar10(root, train=train, transform=transform), True
    root = Path(text).expanduser()
    if root.exists() and not root.is_dir():
        raise ValueError(
            f"{root} is a file, but source (captum-rig: --data) takes a folder of images, "
            f"a folder of class subfolders, or {CIFAR10_PREFIX}PATH; put the image in a folder"
        )
    if not root.is_dir():
        raise ValueError(f"image folder {root} does not exist or is not a folder")
    options = dict(
        size=size, resize=resize, channels=channels, convert=convert, max_pixels=max_pixels
    )
    folders = [root / name for name in _class_folders(root)]
    if not folders:
        paths = _images_in(root)
        if not paths:
            raise ValueError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {root} or its class subfolders"
            )
        return ImageFiles(paths, **options), False
    paths, labels = [], []
    for label, folder in enumerate(folders):
        files = _images_in(folder)
        if not files:
            raise ValueError(
                f"class folder {folder} has no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "each subfolder of an image folder is a class"
            )
        paths += files
        labels += [label] * len(files)
    return ImageFiles(paths, labels, [d.name for d in folders], **options), True


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
