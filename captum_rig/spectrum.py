"""The rank spectrum: how a model's predictions depend on the rank of its input.

The paper's Algorithm 1: for every image and every rank ``k``, keep the ``k`` largest
singular values of each colour channel (or, in reverse, remove them), predict, and count
how often the prediction equals the prediction on the full-rank image (``agreement``)
and how often it equals the label (``accuracy``). Naturally trained models keep their
prediction down to a low rank; robust ones depend on the top ranks even more.

Every rank image of a batch comes from one SVD (:class:`~captum_rig.RankPath`) and is
streamed through the model in chunks of ``batch_size`` images. This module counts; the
figures (:func:`~captum_rig.viz.plot_spectra`, :func:`~captum_rig.viz.plot_accuracy_gap`)
are drawn in :mod:`captum_rig.viz`.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

import csv
import io
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from captum_rig._checkpoint import (
    Checkpoint,
    Shard,
    count_batches,
    run_identity,
    totals,
    world,
)
from captum_rig._checks import check_batches, check_int, check_model, model_device, model_logits
from captum_rig._context import PathLike, eval_mode
from captum_rig._tables import Record, write_text
from captum_rig.lowrank import RankPath

__all__ = [
    "rank_spectrum",
    "RankSpectrum",
    "accuracy_gap",
]

_CHECKPOINT_FORMAT = "captum_rig.rank_spectrum/2"
_CSV_COLUMNS = ["rank", "agreement", "accuracy", "n_images", "reverse"]


# --------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------


@dataclass
class RankSpectrum(Record):
    r"""The result of :func:`rank_spectrum`: agreement and accuracy per rank.

    Args:
        ranks (list of int): the ranks ``k`` evaluated, in the order asked for.
        agreement (list of float): per rank, the fraction of images whose prediction on
            the rank-k image (reverse: with the ``k`` top ranks removed) equals their
            prediction on the full-rank image.
        accuracy (list of float or None): per rank, top-1 accuracy against the labels;
            None when no labels were given.
        n_images (int): number of images counted.
        reverse (bool): True when the ``k`` largest singular values were removed instead
            of kept.

    Examples:
        >>> s = RankSpectrum(ranks=[0, 4, 8], agreement=[0.25, 0.5, 1.0], accuracy=None,
        ...                  n_images=4)
        >>> RankSpectrum.from_dict(s.to_dict()) == s
        True
    """

    ranks: List[int]
    agreement: List[float]
    accuracy: Optional[List[float]]
    n_images: int
    reverse: bool = False

    def __post_init__(self) -> None:
        self.ranks = [check_int(k, name="ranks") for k in _as_list(self.ranks, "ranks")]
        self.agreement = _fractions(self.agreement, "agreement")
        if self.accuracy is not None:
            self.accuracy = _fractions(self.accuracy, "accuracy")
        self.n_images = check_int(self.n_images, name="n_images", low=1)
        if not isinstance(self.reverse, bool):
            raise TypeError(f"reverse must be a bool, got {self.reverse!r}")
        for name in ("agreement", "accuracy"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.ranks):
                raise ValueError(
                    f"{name} must have one value per rank ({len(self.ranks)}), got {len(values)}"
                )

    # -- serialisation (to_dict: Record's, field by field) -------------------------------

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RankSpectrum":
        """Builds a spectrum from :meth:`to_dict`'s output (validated)."""
        if not isinstance(d, Mapping):
            raise TypeError(f"d must be a mapping, got {type(d).__name__}")
        missing = [k for k in ("ranks", "agreement", "n_images") if k not in d]
        if missing:
            raise ValueError(f"d is missing the keys {missing}")
        return cls(
            ranks=d["ranks"],
            agreement=d["agreement"],
            accuracy=d.get("accuracy"),
            n_images=d["n_images"],
            reverse=d.get("reverse", False),
        )

    def to_csv(self, path: PathLike) -> None:
        """Writes one row per rank: ``rank, agreement, accuracy, n_images, reverse``.

        The file is written under a temporary name and renamed when complete, so a
        crash never leaves a half-written file at ``path``. Floats are written exactly
        (``repr``): :meth:`from_csv` gives back an equal spectrum. ``accuracy`` is empty
        when there were no labels.
        """
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        for i, k in enumerate(self.ranks):
            accuracy = "" if self.accuracy is None else repr(self.accuracy[i])
            writer.writerow([k, repr(self.agreement[i]), accuracy, self.n_images, self.reverse])
        write_text(path, buffer.getvalue())

    @classmethod
    def from_csv(cls, path: PathLike) -> "RankSpectrum":
        """Reads a file written by :meth:`to_csv`."""
        path = os.fspath(path)
        try:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                header = reader.fieldnames or []
                rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise ValueError(f"path {path!r} could not be read as a CSV file: {e}") from e
        if any(c not in header for c in _CSV_COLUMNS) or not rows:
            raise ValueError(
                f"path {path!r} is not a rank spectrum CSV: expected the columns "
                f"{_CSV_COLUMNS} and at least one row, got {header} and {len(rows)} rows"
            )
        try:
            accuracies = [r["accuracy"] for r in rows]
            if any(a == "" for a in accuracies) and any(a != "" for a in accuracies):
                raise ValueError("accuracy is given for some ranks only")
            n_images = {int(r["n_images"]) for r in rows}
            reverse = {r["reverse"] for r in rows}
            if len(n_images) != 1 or len(reverse) != 1 or not reverse <= {"True", "False"}:
                raise ValueError("n_images and reverse must be one value on every row")
            return cls(
                ranks=[int(r["rank"]) for r in rows],
                agreement=[float(r["agreement"]) for r in rows],
                accuracy=None if accuracies[0] == "" else [float(a) for a in accuracies],
                n_images=n_images.pop(),
                reverse=reverse.pop() == "True",
            )
        except (TypeError, ValueError) as e:
            raise ValueError(f"path {path!r} is not a valid rank spectrum CSV: {e}") from e

    # -- pictures ----------------------------------------------------------------------

    def plot(
        self,
        ax: Optional[Any] = None,
        metric: str = "agreement",
        label: Optional[str] = None,
        **plot_kwargs: Any,
    ) -> Tuple[Any, Any]:
        """Plots ``metric`` against the rank (see :func:`captum_rig.viz.plot_spectra`).

        Args:
            ax (matplotlib Axes, optional): where to draw; a new standalone figure (no
                pyplot state) when None.
            metric (str): ``"agreement"`` (Algorithm 1) or ``"accuracy"``.
            label (str, optional): legend entry for this curve (a legend is drawn when
                given).
            **plot_kwargs: passed to ``ax.plot`` (``color``, ``linestyle``, ...).

        Returns:
            (Figure, Axes): the figure and the axes drawn on.
        """
        from captum_rig.viz import plot_spectra  # figures live downstream, in viz

        spectra = [self] if label is None else {label: self}
        return plot_spectra(spectra, ax=ax, metric=metric, **plot_kwargs)


def accuracy_gap(first: RankSpectrum, second: RankSpectrum) -> Tuple[List[int], List[float]]:
    """Per rank, ``first.accuracy - second.accuracy`` (the paper's Fig. 7c/d).

    Only the ranks both spectra have are compared, in ``first``'s order.

    Args:
        first (RankSpectrum): e.g. the model trained on low-rank images.
        second (RankSpectrum): e.g. the naturally trained model.

    Returns:
        (list of int, list of float): the common ranks and the accuracy differences.

    Examples:
        >>> a = RankSpectrum([0, 4, 8], [0.2, 0.6, 1.0], [0.1, 0.5, 0.75], 4)
        >>> b = RankSpectrum([0, 8], [0.2, 1.0], [0.25, 0.5], 4)
        >>> accuracy_gap(a, b)
        ([0, 8], [-0.15, 0.25])
    """
    for name, s in (("first", first), ("second", second)):
        if not isinstance(s, RankSpectrum):
            raise TypeError(f"{name} must be a RankSpectrum, got {type(s).__name__}")
        if s.accuracy is None:
            raise ValueError(f"{name} has no accuracy: compute it with labels")
    if first.reverse != second.reverse:
        raise ValueError("first and second must have the same reverse flag")
    other = dict(zip(second.ranks, second.accuracy))
    ranks = [k for k in first.ranks if k in other]
    if not ranks:
        raise ValueError(f"first and second share no rank: {first.ranks} vs {second.ranks}")
    mine = dict(zip(first.ranks, first.accuracy))
    return ranks, [mine[k] - other[k] for k in ranks]


def _as_list(values: Any, name: str) -> list:
    if isinstance(values, Tensor):
        return values.reshape(-1).tolist()
    if hasattr(values, "tolist"):  # numpy
        return list(values.tolist())
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a sequence, got {type(values).__name__}")
    return list(values)


def _fractions(values: Any, name: str) -> List[float]:
    out = [float(v) for v in _as_list(values, name)]
    if any(not (0.0 <= v <= 1.0) for v in out):
        raise ValueError(f"{name} must hold fractions in [0, 1], got {out}")
    return out


def rank_spectrum(
    model: Callable[[Tensor], Tensor],
    data: Union[Tensor, Iterable[Any]],
    ranks: Optional[Sequence[int]] = None,
    labels: Optional[Tensor] = None,
    reverse: bool = False,
    batch_size: int = 64,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = True,
    checkpoint: Optional[PathLike] = None,
    checkpoint_every: int = 10,
) -> RankSpectrum:
    r"""The paper's Algorithm 1: prediction agreement and accuracy per input rank.

    For every image ``x`` and rank ``k`` the rank-k image ``x_k`` keeps the ``k``
    largest singular values of every colour channel (``reverse=True``: ``x - x_k``,
    the ``k`` largest removed, as :func:`~captum_rig.drop_top_ranks`). Then

    - ``agreement[k]`` = fraction of images with ``argmax model(x_k) == argmax model(x)``,
    - ``accuracy[k]`` = fraction of images with ``argmax model(x_k) == label``.

    One SVD per image (:class:`~captum_rig.RankPath`); rank images are streamed into the
    model ``batch_size`` images per forward, never all ranks at once. The full-rank image
    is ``x`` itself, so ``agreement`` at ``k = w`` (reverse: ``k = 0``) is exactly 1.
    The run is under ``torch.no_grad()`` with the model in eval mode; every module's
    training flag is restored afterwards and the inputs are not modified.

    **Resuming.** With ``checkpoint=PATH`` the counts so far are saved to ``PATH``
    (atomically: temporary file, then ``os.replace``) every ``checkpoint_every``
    batches and, whenever at least one batch was counted, when the run is interrupted
    by an exception or Ctrl-C (a second Ctrl-C during that save is held back). The
    folder of ``PATH`` is created if missing and proved writable before any batch.
    Calling again with the same arguments loads it (``torch.load(...,
    weights_only=True)``), skips the batches already counted and returns the same
    result as an uninterrupted run; the file is removed once the run completes. The
    checkpoint records what makes a run the same run, and resuming checks it all:

    - the model: a SHA-256 of the names, dtypes, shapes and bytes of an ``nn.Module``'s
      parameters and buffers (a model that is not an ``nn.Module`` is recorded as None
      and then not checked);
    - the data: the number of images and of batches (when ``len`` tells them) and the
      batch size (a tensor's ``batch_size``, a DataLoader's own), and a SHA-256 of the
      images and of the labels of every batch counted; each skipped batch is hashed
      again and compared, so the data must come in the same order (no shuffling);
    - ``ranks``, ``reverse``, the image shape and whether there are labels.

    Any difference raises a ValueError that names it (e.g. "batch 3's images differ
    from the checkpoint's", "the model's weights differ from the checkpoint's", "the
    data has 40 images, the checkpoint 10"), and leaves the file as it was. Hashing
    reads each counted batch once more: a small cost next to its forward passes.

    **Distributed.** Called from every process of a ``torch.distributed`` group (e.g.
    under ``torchrun``, gloo on CPU, nccl on GPU), each process counts its share of the
    batches and the integer counts are all-reduced, so every process returns the
    single-process result. The share is every ``world_size``-th batch, starting at the
    process's rank, which gives exactly the single-process counts for any data (every
    process still iterates over the whole loader, loading the batches it skips). When
    ``data`` is a DataLoader with a ``DistributedSampler`` it is taken as already
    sharded and every batch is used; note that such a sampler pads the dataset to a
    multiple of the world size by repeating images (unless ``drop_last=True``), which
    then are counted twice. With a checkpoint, each process writes its own file,
    ``PATH.<rank>-of-<world_size>``.

    Args:
        model (callable): maps images ``(B, C, H, W)`` in [0, 1] pixel space to logits
            ``(B, classes)``; it should contain its own normalization. An ``nn.Module``
            is put in eval mode for the run.
        data (Tensor, pair or iterable): images ``(N, C, H, W)``, a tuple
            ``(images, labels)``, or an iterable of ``(images, labels)`` batches such as
            a DataLoader (a batch may also be ``images`` alone or ``(images,)``; then
            there is no accuracy). Every batch must have the same ``(C, H, W)``.
        ranks (sequence of int, optional): ranks ``k`` in ``0..w``, ``w = min(H, W)``.
            Default: all of ``0..w``.
        labels (Tensor, optional): integer labels ``(N,)`` when ``data`` is a tensor.
        reverse (bool): remove the ``k`` largest singular values instead of keeping them.
        batch_size (int): images per forward pass; a tensor ``data`` is also cut into
            SVD batches of this size.
        device (str or torch.device, optional): where the SVD and forward passes run.
            The model is not moved: it must already live there. Default: the device of
            the model's first parameter or buffer, else CPU.
        progress (bool): show a tqdm progress bar (only on process 0 when distributed).
        checkpoint (str or PathLike, optional): file for resumable partial counts; its
            folder is created if missing.
        checkpoint_every (int): save the checkpoint every this many batches.

    Returns:
        RankSpectrum: ``ranks``, ``agreement``, ``accuracy`` (None without labels),
        ``n_images`` and ``reverse``.

    Examples:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
        >>> x = torch.rand(16, 3, 8, 8)  # (N, C, H, W), w = 8
        >>> y = torch.randint(10, (16,))
        >>> s = rank_spectrum(model, x, labels=y, progress=False)
        >>> s.ranks, len(s.agreement), s.agreement[-1], s.n_images
        ([0, 1, 2, 3, 4, 5, 6, 7, 8], 9, 1.0, 16)
        >>> rank_spectrum(model, x, ranks=[0, 2], reverse=True, progress=False).agreement[0]
        1.0

    References:
        Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
        arXiv:2012.03516, Algorithm 1.
    """
    check_model(model, module=False)
    batch_size = check_int(batch_size, name="batch_size", low=1)
    checkpoint_every = check_int(checkpoint_every, name="checkpoint_every", low=1)
    if not isinstance(reverse, bool):
        raise TypeError(f"reverse must be a bool, got {reverse!r}")
    device = model_device(model) if device is None else torch.device(device)
    world_size, process = world()
    checked = check_batches(data, labels, batch_size)
    shard = Shard(checked, world_size, process)
    record = None
    if checkpoint is not None:  # before any batch: a bad path or another run fails now
        identity = run_identity(model, data, checked, batch_size, world_size, process)
        record = Checkpoint.open(
            checkpoint,
            identity,
            format=_CHECKPOINT_FORMAT,
            what="rank_spectrum",
            world_size=world_size,
            process=process,
        )
    counter = _RankCounter(model, ranks, reverse, batch_size, device)
    bar = tqdm(
        total=shard.length,
        desc="rank spectrum",
        unit="batch",
        disable=not progress or process != 0,
    )
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
    return RankSpectrum(
        ranks=list(counter.ranks),
        agreement=[a / n_images for a in counts["agree"].tolist()],
        accuracy=[c / n_images for c in counts["correct"].tolist()] if counter.has_labels else None,
        n_images=n_images,
        reverse=reverse,
    )


class _RankCounter:
    """Algorithm 1 for one batch at a time (:class:`~captum_rig._checkpoint.BatchCounter`).

    The first batch fixes the image shape, the ranks and whether there are labels.
    """

    def __init__(
        self,
        model: Callable[[Tensor], Tensor],
        ranks: Any,
        reverse: bool,
        batch_size: int,
        device: torch.device,
    ) -> None:
        self.model, self.reverse = model, reverse
        self.batch_size, self.device = batch_size, device
        self.asked = ranks
        self.ranks: List[int] = []
        self.shape: Tuple[int, ...] = ()
        self.has_labels = False
        self.identity: List[int] = []
        self.computed: List[int] = []

    def first(
        self, images: Tensor, labels: Optional[Tensor]
    ) -> Tuple[Dict[str, Any], Dict[str, Tensor]]:
        self.shape = tuple(images.shape[1:])
        width = min(images.shape[-2:])
        self.ranks = _check_ranks(self.asked, width)
        self.has_labels = labels is not None
        # The rank whose image is x itself: its prediction is the reference, no forward.
        same = 0 if self.reverse else width
        self.identity = [i for i, k in enumerate(self.ranks) if k == same]
        self.computed = [i for i, k in enumerate(self.ranks) if k != same]
        settings = {
            "ranks": list(self.ranks),
            "reverse": self.reverse,
            "image_shape": list(self.shape),
            "labels": self.has_labels,
        }
        zeros = torch.zeros(len(self.ranks), dtype=torch.int64)
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
        """Agreement and correct counts per rank, ``(m,)`` int64 on CPU."""
        # A copy, so that a model that works in place on its input never touches the data.
        x = images.to(device=self.device, copy=True)
        n = x.shape[0]
        reference = _predict(self.model, x, self.batch_size)
        predictions = torch.empty(len(self.ranks), n, dtype=torch.long, device=reference.device)
        predictions[self.identity] = reference
        if self.computed:
            path = RankPath(x)
            ranks = [self.ranks[i] for i in self.computed]
            ranks_per_chunk = max(1, self.batch_size // n)
            for start, x_t in path.chunks(ranks, ranks_per_chunk, reverse=self.reverse):
                m = x_t.shape[0]
                p = _predict(self.model, x_t.reshape(m * n, *x.shape[1:]), self.batch_size)
                predictions[self.computed[start : start + m]] = p.view(m, n)
        agree = (predictions == reference).sum(1).cpu()
        if labels is None:
            return {"agree": agree, "correct": torch.zeros_like(agree)}
        correct = (predictions == labels.to(predictions.device)).sum(1).cpu()
        return {"agree": agree, "correct": correct}


def _check_ranks(ranks: Any, width: int) -> List[int]:
    if ranks is None:
        return list(range(width + 1))
    if isinstance(ranks, Tensor):
        if ranks.is_floating_point() or ranks.dtype == torch.bool or ranks.dim() > 1:
            raise TypeError(f"ranks must hold integers in 0..{width}, got a {ranks.dtype} tensor")
        ranks = ranks.reshape(-1).tolist()
    if isinstance(ranks, (str, bytes)) or not isinstance(ranks, Iterable):
        raise TypeError(
            f"ranks must be a sequence of integers in 0..{width}, got {type(ranks).__name__}"
        )
    ranks = [check_int(k, name=f"ranks[{i}]", low=0, high=width) for i, k in enumerate(ranks)]
    if not ranks:
        raise ValueError(f"ranks must not be empty: give integers in 0..{width}")
    return ranks


def _predict(model: Callable[[Tensor], Tensor], x: Tensor, batch_size: int) -> Tensor:
    chunks = (x[start : start + batch_size] for start in range(0, x.shape[0], batch_size))
    return torch.cat([model_logits(model, chunk).argmax(1) for chunk in chunks])
