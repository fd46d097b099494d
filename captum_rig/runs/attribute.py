"""Attributions over a whole data set: one HDF5 file, shared by processes, resumable.

Each batch's maps are saved as soon as they are computed, one file per batch in a parts
folder beside the output (``.NAME.parts``), written whole or not at all; a checkpoint
per process records which batches are done and a digest of each batch's images and
labels (:mod:`captum_rig._checkpoint`). When every batch is done, process 0 merges the
parts, in the data's order, into the HDF5 file (:func:`~captum_rig.runs.write_maps`)
and removes the folder. So the file does not depend on how many processes computed it,
and a process that dies loses at most the batch it was computing.
"""

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from captum_rig._checkpoint import (
    Checkpoint,
    Shard,
    count_batches,
    model_digest,
    read_state,
    run_identity,
    world,
    write_state,
)
from captum_rig._checks import check_batches, check_int, check_model, model_device, model_logits
from captum_rig._context import PathLike, check_writable, eval_mode
from captum_rig.attr.registry import AttributionMethod, parse_methods
from captum_rig.runs.maps_file import image_names, write_maps

__all__ = ["attribute_dataset", "parts_folder", "saved_batches"]

_STATE_FORMAT = "captum_rig.attribute_dataset/1"
_PART_FORMAT = "captum_rig.attribute_dataset.batch/1"


def parts_folder(path: PathLike) -> Path:
    """The folder of a run's partial results: ``.NAME.parts`` beside the output ``NAME``."""
    path = Path(path)
    return path.parent / f".{path.name}.parts"


def saved_batches(path: PathLike) -> int:
    """How many batches a stopped run towards ``path`` has saved (0: none, or no run)."""
    return len(list(parts_folder(path).glob("batch-*.pt")))


def attribute_dataset(
    model: Callable[[Tensor], Tensor],
    data: Any,
    path: PathLike,
    methods: Union[str, Sequence[str]] = "rig",
    *,
    n_steps: Optional[int] = None,
    target: Union[str, int] = "auto",
    labels: Optional[Tensor] = None,
    batch_size: int = 64,
    files: Optional[Sequence[str]] = None,
    device: Optional[Union[str, torch.device]] = None,
    resume: bool = False,
    progress: bool = True,
    model_spec: Optional[str] = None,
    source: Optional[str] = None,
) -> Path:
    r"""Attribution maps of every image of ``data`` by each method, into one HDF5 file.

    For each batch the model predicts, the target is chosen (``"auto"``: the prediction;
    ``"label"``: the label; an int: that class) and each method of the registry
    (:data:`~captum_rig.attr.registry.METHODS`) attributes it with
    :meth:`~captum_rig.attr.registry.AttributionMethod.attribute`, so each stored map is
    that method's ``attribute`` on the image with the same settings (batching does not
    change it). The file's layout is described in :mod:`captum_rig.runs.maps_file`.

    **Resuming.** The maps of each batch are saved in the parts folder
    (:func:`parts_folder`) as soon as they are computed; with ``resume=True`` a run
    that was stopped (Ctrl-C, an exception, SIGKILL) skips the batches done, after
    checking each one's images and labels against the digest recorded, and ends with
    the same file as an uninterrupted run. A resume with another model, data, methods
    or settings raises a ValueError naming what differs. With ``resume=False`` partial
    results of an earlier run are deleted first.

    **Distributed.** Called from every process of a ``torch.distributed`` group (e.g.
    under ``torchrun``), each process computes every ``world_size``-th batch from its
    rank, and process 0 writes the file: the same file as one process. Every process
    returns once the file is there.

    Args:
        model (callable): maps images ``(B, C, H, W)`` in [0, 1] to logits; an
            ``nn.Module`` is put in eval mode for the run.
        data (Tensor or iterable): images ``(N, C, H, W)`` (with ``labels``), or an
            iterable of ``(images, labels)`` batches (or images alone) such as a
            DataLoader, in a fixed order.
        path (str or PathLike): the HDF5 file; its folder must exist.
        methods (str or sequence of str): registry names, e.g. ``"rig,ig"`` or
            ``["rig", "saliency"]``.
        n_steps (int, optional): path steps of the methods that take them; None: each
            method's default.
        target (str or int): ``"auto"``, ``"label"`` or a class index.
        labels (Tensor, optional): ``(N,)`` labels when ``data`` is a tensor.
        batch_size (int): images per batch when ``data`` is a tensor.
        files (sequence of str, optional): a name per image for the ``files`` dataset.
            Default: a DataLoader's image paths (of an :class:`~captum_rig.data.ImageFiles`
            data set, through any ``Subset``), else each image's index.
        device (str or torch.device, optional): where the work runs (the model must be
            there). Default: the model's device.
        resume (bool): continue a stopped run from its parts folder.
        progress (bool): show a progress bar in images/s (process 0 only).
        model_spec (str, optional): recorded as the ``model`` attribute (default: the
            model's class name).
        source (str, optional): recorded as the ``source`` attribute.

    Returns:
        Path: ``path``.

    Examples:
        >>> import tempfile, os
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
        >>> x = torch.rand(5, 3, 8, 8)  # (N, C, H, W)
        >>> path = os.path.join(tempfile.mkdtemp(), "maps.h5")
        >>> _ = attribute_dataset(model, x, path, "saliency,ig", n_steps=4, batch_size=2,
        ...                       progress=False)
        >>> from captum_rig.runs import read_attributions
        >>> with read_attributions(path) as maps:
        ...     maps.methods, maps.maps("ig").shape, maps.labels.tolist()
        (('saliency', 'ig'), torch.Size([5, 3, 8, 8]), [-1, -1, -1, -1, -1])
    """
    check_model(model, module=False)
    chosen = parse_methods([methods] if isinstance(methods, str) else list(methods))
    if n_steps is not None:
        n_steps = check_int(n_steps, name="n_steps", low=1)
    target = _check_target(target)
    batch_size = check_int(batch_size, name="batch_size", low=1)
    path = check_writable(path, "path")
    device = model_device(model) if device is None else torch.device(device)
    world_size, process = world()
    checked = check_batches(data, labels, batch_size, labels_required=target == "label")
    if checked.presharded:
        raise ValueError(
            "data must not have a DistributedSampler: attribute_dataset shares the batches "
            "out itself (every world_size-th batch), so that the file keeps the data's order"
        )
    parts = _prepare_parts(path, resume, process, world_size)
    identity = run_identity(model, data, checked, batch_size, world_size, process)
    identity["model_spec"] = model_spec
    record = Checkpoint.open(
        parts / "state",
        identity,
        format=_STATE_FORMAT,
        what="attribute_dataset",
        world_size=world_size,
        process=process,
    )
    writer = _BatchMaps(model, chosen, n_steps, target, device, parts)
    total = identity["n_images"] if world_size == 1 else None
    bar = tqdm(total=total, desc="attributions", unit="img", disable=not progress or process)
    shard = Shard(checked, world_size, process)
    try:
        with eval_mode(model):  # every batch of the share, computed or skipped, moves the bar
            count_batches(checked, writer, shard, record, 1, lambda: bar.update(writer.sizes[-1]))
    finally:
        bar.close()
    _all_done(parts, process, world_size)
    if process == 0:
        attributes = _attributes(model, model_spec, source, writer, identity["batch_size"])
        names = _file_names(data, files, sum(writer.sizes))
        write_maps(
            path, _read_parts(parts, len(writer.sizes)), sum(writer.sizes), names, attributes
        )
        shutil.rmtree(parts, ignore_errors=True)
    else:
        while parts.exists():  # the others return once process 0 has written the file
            time.sleep(0.2)
    return path


def _check_target(target: Any) -> Union[str, int]:
    if isinstance(target, str):
        if target not in ("auto", "label"):
            raise ValueError(f"target must be 'auto', 'label' or a class index, got {target!r}")
        return target
    return check_int(target, name="target")


def _prepare_parts(path: Path, resume: bool, process: int, world_size: int) -> Path:
    """The parts folder, emptied first unless resuming (by process 0, the others wait)."""
    parts = parts_folder(path)
    if process == 0 and not resume and parts.exists():
        shutil.rmtree(parts)
    if process == 0:
        parts.mkdir(exist_ok=True)
        for marker in parts.glob("done.*"):  # a stopped run's: each process says it again
            marker.unlink()
    _barrier(world_size)
    return parts


def _all_done(parts: Path, process: int, world_size: int) -> None:
    """Marks this process's share done; process 0 waits for every process's mark.

    Files, not a collective: a barrier would time out (gloo after 30 minutes, NCCL's
    watchdog sooner) while a slower process still computes its share.
    """
    if world_size == 1:
        return
    (parts / f"done.{process}-of-{world_size}").touch()
    if process == 0:
        marks = [parts / f"done.{p}-of-{world_size}" for p in range(world_size)]
        while not all(m.exists() for m in marks):
            time.sleep(0.2)


def _barrier(world_size: int) -> None:
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def _part(parts: Path, index: int) -> Path:
    return parts / f"batch-{index:07d}.pt"


def _read_parts(parts: Path, n_batches: int) -> Any:
    """The saved batches, in order, one at a time."""
    for index in range(n_batches):
        saved = read_state(_part(parts, index), _PART_FORMAT)
        if saved is None:
            raise ValueError(
                f"the results of batch {index} are missing from {str(parts)!r}; "
                "delete the folder to start over"
            )
        yield saved


class _BatchMaps:
    """Computes and saves one batch's maps (a :class:`~captum_rig._checkpoint.BatchCounter`
    whose counts are empty: its results are the files it writes).

    ``count_batches`` shows every batch to :meth:`first` or :meth:`check` before
    :meth:`count`, so the index of the batch in hand and the size of every batch are
    known here.
    """

    def __init__(
        self,
        model: Callable[[Tensor], Tensor],
        methods: List[AttributionMethod],
        n_steps: Optional[int],
        target: Union[str, int],
        device: torch.device,
        parts: Path,
    ) -> None:
        self.model, self.methods, self.n_steps = model, methods, n_steps
        self.target, self.device, self.parts = target, device, parts
        self.sizes: List[int] = []
        self.shape: Tuple[int, ...] = ()
        self.has_labels = False

    def first(
        self, images: Tensor, labels: Optional[Tensor]
    ) -> Tuple[Dict[str, Any], Dict[str, Tensor]]:
        self.shape, self.has_labels = tuple(images.shape[1:]), labels is not None
        self.sizes = [images.shape[0]]
        settings = {
            "methods": [m.name for m in self.methods],
            "n_steps": self.n_steps,
            "target": self.target,
            "image_shape": list(self.shape),
            "dtype": str(images.dtype),
            "labels": self.has_labels,
        }
        return settings, {}

    def check(self, index: int, images: Tensor, labels: Optional[Tensor]) -> None:
        if tuple(images.shape[1:]) != self.shape:
            raise ValueError(
                f"data batch {index} has images of shape (C, H, W) = {tuple(images.shape[1:])}, "
                f"but the first batch had {self.shape}; every batch must have the same shape"
            )
        if (labels is not None) != self.has_labels:
            raise ValueError(
                f"data batch {index} {'has' if labels is not None else 'has no'} labels, "
                "unlike the first batch: give labels for every batch or for none"
            )
        self.sizes.append(images.shape[0])

    def count(self, images: Tensor, labels: Optional[Tensor]) -> Dict[str, Tensor]:
        """Computes the batch in hand and saves it whole; no counts."""
        # A copy, so that a model that works in place on its input never touches the data.
        x = images.to(device=self.device, copy=True)
        with torch.no_grad():
            predictions = model_logits(self.model, x).argmax(1)
        if self.target == "auto":
            targets = predictions
        elif self.target == "label":
            targets = labels.to(predictions.device)
        else:
            targets = torch.full_like(predictions, self.target)
        maps = {
            m.name: m.attribute(self.model, x, target=targets, n_steps=self.n_steps)
            .detach()
            .to(device="cpu", dtype=torch.float32)
            for m in self.methods
        }
        none = torch.full((x.shape[0],), -1, dtype=torch.int64)
        content = {
            "maps": maps,
            "targets": targets.cpu(),
            "predictions": predictions.cpu(),
            "labels": none if labels is None else labels.to(torch.int64).cpu(),
        }
        write_state(_part(self.parts, len(self.sizes) - 1), _PART_FORMAT, content)
        return {}


def _attributes(
    model: Any,
    model_spec: Optional[str],
    source: Optional[str],
    writer: "_BatchMaps",
    batch_size: Optional[int],
) -> Dict[str, Any]:
    """The root attributes of the file: the model, the settings, the package version."""
    # the package's __init__ (a layer above) is loaded before any of its modules runs
    version = getattr(sys.modules.get("captum_rig"), "__version__", None)
    return {
        "version": version,
        "model": model_spec or type(model).__name__,
        "model_digest": model_digest(model),
        "source": source,
        "methods": [m.name for m in writer.methods],
        "n_steps": writer.n_steps,
        "target": str(writer.target),
        "batch_size": batch_size,
        "image_shape": list(writer.shape),
        "has_labels": writer.has_labels,
    }


def _file_names(data: Any, files: Optional[Sequence[str]], n_images: int) -> List[str]:
    """The ``files`` dataset: as given, a data set's image paths, or the indices."""
    if files is not None:
        names = [os.fspath(f) for f in files]
        if len(names) != n_images:
            raise ValueError(f"files must name each of the {n_images} images, got {len(names)}")
        return names
    found = image_names(data)
    if found is not None and len(found) == n_images:
        return found
    return [str(i) for i in range(n_images)]
