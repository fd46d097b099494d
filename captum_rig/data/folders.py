"""Folders of image files as data sets: flat folders, class folders, ``cifar10:`` sources.

Image files are read on access with :func:`~captum_rig.data.load_image`, as float
tensors in [0, 1] pixel space.
"""

import os
from functools import cache, partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from torch.utils.data import Dataset

from captum_rig.data.cifar10 import CIFAR10_PREFIX, _cifar_transform, load_cifar10
from captum_rig.data.images import MAX_PIXELS, SIZES, PathLike, Size, _check_size, load_image

__all__ = ["IMAGE_EXTENSIONS", "ImageFiles", "image_folder", "image_dataset"]

IMAGE_EXTENSIONS = (
    ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"
)  # fmt: skip
"""File name endings read as images in folders (any case)."""


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
            f"{root} is a file, but source takes a folder of images, "
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
