"""The HDF5 file of attributions over a data set: its layout, its writer, its lazy reader.

Layout (one file, read with ``h5py`` or :class:`AttributionFile`):

- one dataset per method, named after it (``rig``, ``ig``, ...): ``(N, C, H, W)``
  float32, chunked one image per chunk, gzip-compressed;
- ``targets``, ``predictions``, ``labels``: int64 ``(N,)`` (labels -1 when the source
  has none);
- ``files``: the source path of each image, or its index in the source (text);
- attributes of the root: ``format``, ``version`` (of captum-rig), ``model`` (the model
  spec, or the class name of a model object), ``model_digest``, ``methods``, ``target``,
  ``n_steps`` (absent: each method's default), ``batch_size``, ``source``, ...

Images are in the order of the data. The file is written under a temporary name and
renamed when complete, so a half-written file never stands at the final path.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

import torch
from torch import Tensor

from captum_rig._context import PathLike, atomic_path

__all__ = [
    "FILE_FORMAT",
    "MapBatch",
    "AttributionFile",
    "read_attributions",
    "write_maps",
    "image_names",
]

FILE_FORMAT = "captum_rig.attributions/1"
"""The ``format`` attribute of a file written by :func:`write_maps`."""

_INDEX = ("targets", "predictions", "labels")


def _h5py() -> Any:
    import h5py  # imported on use: the rest of the package does not need it

    return h5py


def write_maps(
    path: PathLike,
    batches: Iterable[Mapping[str, Any]],
    n_images: int,
    files: Sequence[str],
    attributes: Mapping[str, Any],
) -> Path:
    """Writes the batches' maps, in order, into one HDF5 file at ``path`` (atomically).

    Args:
        path (str or PathLike): the file; its folder must exist.
        batches (iterable of mappings): each ``{"maps": {method: (B, C, H, W)},
            "targets": (B,), "predictions": (B,), "labels": (B,)}``, read one at a time.
        n_images (int): the images all batches hold together.
        files (sequence of str): one name per image.
        attributes (mapping): the root attributes (None values are left out).

    Returns:
        Path: ``path``.
    """
    h5py = _h5py()
    if len(files) != n_images:
        raise ValueError(f"files must name each of the {n_images} images, got {len(files)}")
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=True) as f:
        for key, value in {"format": FILE_FORMAT, **attributes}.items():
            if value is not None:
                f.attrs[key] = value
        start = 0
        for batch in batches:
            if start == 0:
                _create(f, batch, n_images)
            n = len(batch["targets"])
            if start + n > n_images:
                raise ValueError(f"the batches hold more than the {n_images} images expected")
            for name, maps in batch["maps"].items():
                f[name][start : start + n] = maps.to(torch.float32).numpy()
            for name in _INDEX:
                f[name][start : start + n] = batch[name].to(torch.int64).numpy()
            start += n
        if start != n_images:
            raise ValueError(f"the batches hold {start} images, not the {n_images} expected")
        f.create_dataset("files", data=list(files), dtype=h5py.string_dtype(), track_times=False)
    return path


def _create(f: Any, batch: Mapping[str, Any], n_images: int) -> None:
    """The datasets of the file, shaped from the first batch."""
    for name, maps in batch["maps"].items():
        shape = tuple(maps.shape[1:])
        f.create_dataset(
            name,
            shape=(n_images, *shape),
            dtype="float32",
            chunks=(1, *shape),
            compression="gzip",
            compression_opts=4,
            shuffle=True,
            track_times=False,
        )
    for name in _INDEX:
        f.create_dataset(name, shape=(n_images,), dtype="int64", track_times=False)


@dataclass
class MapBatch:
    """Consecutive images of an :class:`AttributionFile`, from image ``start`` on."""

    start: int
    maps: Dict[str, Tensor]
    """method → ``(B, C, H, W)`` float32."""
    targets: Tensor
    predictions: Tensor
    labels: Tensor
    files: List[str]


class AttributionFile:
    r"""Reads a file written by :func:`~captum_rig.runs.attribute_dataset`, lazily.

    Nothing is read but the attributes until asked for: :meth:`maps` reads a slice of
    one method's maps, :meth:`batches` yields consecutive images a batch at a time (the
    memory holds one batch, whatever the file's size). Use it as a context manager, or
    call :meth:`close`.

    Args:
        path (str or PathLike): the HDF5 file.

    Attributes:
        methods (tuple of str): the methods whose maps the file holds, in order.
        attributes (dict): the root attributes (model, settings, version).

    Raises:
        ValueError: the file cannot be read, or was not written by captum-rig.

    Examples:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "maps.h5")
        >>> batch = {"maps": {"saliency": torch.ones(2, 3, 4, 4)},
        ...          "targets": torch.tensor([1, 0]), "predictions": torch.tensor([1, 0]),
        ...          "labels": torch.tensor([-1, -1])}
        >>> _ = write_maps(path, [batch], 2, ["a.png", "b.png"], {"model": "demo"})
        >>> with AttributionFile(path) as maps:
        ...     len(maps), maps.methods, maps.maps("saliency", 1).shape, maps.files
        (2, ('saliency',), torch.Size([1, 3, 4, 4]), ['a.png', 'b.png'])
    """

    def __init__(self, path: PathLike) -> None:
        h5py = _h5py()
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
        except (OSError, TypeError) as e:
            raise ValueError(f"path {str(path)!r} could not be read as an HDF5 file: {e}") from e
        self.attributes = {k: _plain(v) for k, v in self._file.attrs.items()}
        if self.attributes.get("format") != FILE_FORMAT:
            self.close()
            raise ValueError(
                f"path {str(path)!r} is not an attribution file of captum-rig (its format "
                f"attribute is {self.attributes.get('format')!r}, not {FILE_FORMAT!r})"
            )
        self.methods = tuple(k for k in self._file.keys() if k not in (*_INDEX, "files"))

    def __len__(self) -> int:
        return int(self._file["targets"].shape[0])

    def __enter__(self) -> "AttributionFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def column(self, name: str, start: int = 0, stop: Optional[int] = None) -> Tensor:
        """Images ``start..stop-1`` of one dataset of the file (``targets``, a method, ...)."""
        return torch.from_numpy(self._file[name][start:stop])

    @property
    def targets(self) -> Tensor:
        """The class each map explains, int64 ``(N,)``."""
        return self.column("targets")

    @property
    def predictions(self) -> Tensor:
        """The model's prediction for each image, int64 ``(N,)``."""
        return self.column("predictions")

    @property
    def labels(self) -> Tensor:
        """The label of each image (-1: none), int64 ``(N,)``."""
        return self.column("labels")

    @property
    def files(self) -> List[str]:
        """Each image's source path, or its index in the source."""
        return [_plain(v) for v in self._file["files"][:]]

    def maps(self, method: str, start: int = 0, stop: Optional[int] = None) -> Tensor:
        """The maps of images ``start..stop-1`` (default: to the end) of ``method``."""
        if method not in self.methods:
            raise ValueError(f"method must be one of {list(self.methods)}, got {method!r}")
        return self.column(method, start, stop)

    def batches(
        self, batch_size: int = 64, methods: Optional[Sequence[str]] = None
    ) -> Iterator[MapBatch]:
        """Consecutive images, ``batch_size`` at a time, read as they are reached."""
        methods = list(self.methods if methods is None else methods)
        files = self.files
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            yield MapBatch(
                start,
                {m: self.maps(m, start, stop) for m in methods},
                *(self.column(name, start, stop) for name in _INDEX),
                files[start:stop],
            )


def read_attributions(path: PathLike) -> AttributionFile:
    """Opens the attribution file at ``path`` for lazy reading (:class:`AttributionFile`)."""
    return AttributionFile(path)


def _plain(value: Any) -> Any:
    """An HDF5 attribute or string as plain Python (str, int, list)."""
    if isinstance(value, bytes):
        return value.decode()
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def image_names(data: Any) -> Optional[List[str]]:
    """The ``files`` entries of a DataLoader's images: their paths, or their indices.

    The paths of an :class:`~captum_rig.data.ImageFiles` data set (or any with ``paths``
    or ImageFolder's ``samples``), through any ``Subset``; the index of each item for a
    data set without paths (CIFAR-10); None when ``data`` is not a DataLoader.

    Examples:
        >>> from torch.utils.data import DataLoader, Subset, TensorDataset
        >>> image_names(DataLoader(Subset(TensorDataset(torch.rand(5, 3)), [3, 1])))
        ['3', '1']
    """
    dataset = getattr(data, "dataset", None)
    try:
        return None if dataset is None else _dataset_names(dataset)
    except (TypeError, NotImplementedError):  # an iterable data set: no len, no indices
        return None


def _dataset_names(dataset: Any) -> List[str]:
    from torch.utils.data import Subset

    if isinstance(dataset, Subset):
        inner = _dataset_names(dataset.dataset)
        return [inner[i] for i in dataset.indices]
    paths = getattr(dataset, "paths", None) or [s[0] for s in getattr(dataset, "samples", [])]
    if paths:
        return [os.fspath(p) for p in paths]
    return [str(i) for i in range(len(dataset))]
