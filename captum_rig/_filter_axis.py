"""Algorithm 1 along any filter axis: streamed, resumable and distributed counts.

A spectrum asks, for every image ``x`` and every value ``v`` of a filter axis (a rank
``k`` of :func:`~captum_rig.rank_spectrum`, a radius ``r`` of
:func:`~captum_rig.fourier.frequency_spectrum`), whether the model's prediction on the
filtered image equals its prediction on ``x`` (agreement) and the label (accuracy).
:func:`count_spectrum` does the counting once for every axis: the batches are streamed,
the filtered images of each batch come from one :class:`FilterAxis` decomposition and
go through the model ``batch_size`` images per forward, and the counts are resumable
from a checkpoint and shared by the processes of a ``torch.distributed`` group (see
:mod:`captum_rig._checkpoint`).
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Protocol, Tuple, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from captum_rig._checkpoint import Checkpoint, Shard, count_batches, run_identity, totals, world
from captum_rig._checks import check_batches, check_int, check_model, model_device, model_logits
from captum_rig._context import PathLike, eval_mode

__all__ = ["FilterAxis", "SpectrumCounts", "count_spectrum"]


class FilterAxis(Protocol):
    """One filter axis: its values and the filtered images of a batch along it."""

    name: str
    """What one value is called (``"rank"``, ``"radius"``): the progress bar's label."""
    key: str
    """The argument naming the values (``"ranks"``, ``"radii"``): checkpoints record it."""
    reverse: bool
    """Whether the filter removes what it keeps otherwise."""

    def values(self, asked: Any, shape: Tuple[int, ...]) -> List[Any]:
        """The checked values for images of shape ``(C, H, W)`` (``asked`` None: all)."""

    def identity(self, value: Any, shape: Tuple[int, ...]) -> bool:
        """True when the filtered image at ``value`` is ``x`` itself: no forward needed."""

    def chunks(self, x: Tensor, values: List[Any], per_chunk: int) -> Iterator[Tuple[int, Tensor]]:
        """``(start, images)`` with images ``(m, N, C, H, W)`` for ``values[start:start+m]``."""


@dataclass
class SpectrumCounts:
    """What :func:`count_spectrum` returns: the values and the fractions per value."""

    values: List[Any]
    agreement: List[float]
    accuracy: Optional[List[float]]
    n_images: int


def count_spectrum(
    model: Callable[[Tensor], Tensor],
    data: Union[Tensor, Iterable[Any]],
    axis: FilterAxis,
    asked: Any,
    labels: Optional[Tensor],
    batch_size: int,
    device: Optional[Union[str, torch.device]],
    progress: bool,
    checkpoint: Optional[PathLike],
    checkpoint_every: int,
    *,
    what: str,
    format: str,
) -> SpectrumCounts:
    """Agreement and accuracy per value of ``axis`` (the rest as :func:`rank_spectrum`).

    ``what`` names the job in the checkpoint's messages (``"rank_spectrum"``) and
    ``format`` is the checkpoint's format tag; both tell runs of different axes apart.
    """
    check_model(model, module=False)
    batch_size = check_int(batch_size, name="batch_size", low=1)
    checkpoint_every = check_int(checkpoint_every, name="checkpoint_every", low=1)
    device = model_device(model) if device is None else torch.device(device)
    world_size, process = world()
    checked = check_batches(data, labels, batch_size)
    shard = Shard(checked, world_size, process)
    record = None
    if checkpoint is not None:  # before any batch: a bad path or another run fails now
        identity = run_identity(model, data, checked, batch_size, world_size, process)
        record = Checkpoint.open(
            checkpoint, identity, format=format, what=what, world_size=world_size, process=process
        )
    counter = _AxisCounter(model, axis, asked, batch_size, device)
    disable = not progress or process != 0
    bar = tqdm(total=shard.length, desc=f"{axis.name} spectrum", unit="batch", disable=disable)
    try:
        with eval_mode(model), torch.no_grad():
            counted = count_batches(checked, counter, shard, record, checkpoint_every, bar.update)
    finally:
        bar.close()
    n_images, counts = totals(counted, world_size)
    if n_images == 0:  # defensive: batches are checked to be non-empty
        raise ValueError("data must not be empty: no image was counted")
    if record is not None:
        record.remove()
    return SpectrumCounts(
        values=list(counter.values),
        agreement=[a / n_images for a in counts["agree"].tolist()],
        accuracy=[c / n_images for c in counts["correct"].tolist()] if counter.has_labels else None,
        n_images=n_images,
    )


class _AxisCounter:
    """Algorithm 1 for one batch at a time (:class:`~captum_rig._checkpoint.BatchCounter`).

    The first batch fixes the image shape, the values and whether there are labels.
    """

    def __init__(
        self,
        model: Callable[[Tensor], Tensor],
        axis: FilterAxis,
        asked: Any,
        batch_size: int,
        device: torch.device,
    ) -> None:
        self.model, self.axis, self.asked = model, axis, asked
        self.batch_size, self.device = batch_size, device
        self.values: List[Any] = []
        self.shape: Tuple[int, ...] = ()
        self.has_labels = False
        self.identity: List[int] = []
        self.computed: List[int] = []

    def first(
        self, images: Tensor, labels: Optional[Tensor]
    ) -> Tuple[Dict[str, Any], Dict[str, Tensor]]:
        self.shape = tuple(images.shape[1:])
        self.values = self.axis.values(self.asked, self.shape)
        self.has_labels = labels is not None
        # The values whose image is x itself: the reference prediction, no forward.
        same = [self.axis.identity(v, self.shape) for v in self.values]
        self.identity = [i for i, s in enumerate(same) if s]
        self.computed = [i for i, s in enumerate(same) if not s]
        settings = {
            self.axis.key: list(self.values),
            "reverse": self.axis.reverse,
            "image_shape": list(self.shape),
            "labels": self.has_labels,
        }
        zeros = torch.zeros(len(self.values), dtype=torch.int64)
        return settings, {"agree": zeros, "correct": zeros}

    def check(self, index: int, images: Tensor, labels: Optional[Tensor]) -> None:
        # Each batch was checked on its own (check_batches); here, against the first.
        shape = tuple(images.shape[1:])
        if shape != self.shape:
            raise ValueError(
                f"data batch {index} has images of shape (C, H, W) = {shape}, but the first "
                f"batch had {self.shape}; every batch must have the same image shape"
            )
        if (labels is not None) != self.has_labels:
            raise ValueError(
                f"data batch {index} {'has' if labels is not None else 'has no'} labels, "
                f"unlike the first batch: give labels for every batch or for none"
            )

    def count(self, images: Tensor, labels: Optional[Tensor]) -> Dict[str, Tensor]:
        """Agreement and correct counts per value, ``(m,)`` int64 on CPU."""
        # A copy, so that a model that works in place on its input never touches the data.
        x = images.to(device=self.device, copy=True)
        n = x.shape[0]
        reference = predict(self.model, x, self.batch_size)
        predictions = torch.empty(len(self.values), n, dtype=torch.long, device=reference.device)
        predictions[self.identity] = reference
        if self.computed:
            values = [self.values[i] for i in self.computed]
            per_chunk = max(1, self.batch_size // n)
            for start, x_t in self.axis.chunks(x, values, per_chunk):
                m = x_t.shape[0]
                p = predict(self.model, x_t.reshape(m * n, *x.shape[1:]), self.batch_size)
                predictions[self.computed[start : start + m]] = p.view(m, n)
        agree = (predictions == reference).sum(1).cpu()
        if labels is None:
            return {"agree": agree, "correct": torch.zeros_like(agree)}
        correct = (predictions == labels.to(predictions.device)).sum(1).cpu()
        return {"agree": agree, "correct": correct}


def predict(model: Callable[[Tensor], Tensor], x: Tensor, batch_size: int) -> Tensor:
    """The model's top-1 class of every image, ``batch_size`` images per forward."""
    chunks = (x[start : start + batch_size] for start in range(0, x.shape[0], batch_size))
    return torch.cat([model_logits(model, chunk).argmax(1) for chunk in chunks])
