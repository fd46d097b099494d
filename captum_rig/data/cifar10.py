"""CIFAR-10 from a local folder in torchvision's format, read without running pickles.

Nothing is downloaded: the folder holds the extracted ``cifar-10-python.tar.gz``.
"""

import os
import pickle
from functools import cache
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np
from torch import Tensor

from captum_rig.data.images import _LUMA, CHANNELS, PathLike, Size, _check_size, _resize_crop

__all__ = ["load_cifar10"]

CIFAR10_PREFIX = "cifar10:"
"""A data source ``cifar10:PATH`` names CIFAR-10 under ``PATH``."""

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
