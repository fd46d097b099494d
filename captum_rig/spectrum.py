"""The rank spectrum: how a model's predictions depend on the rank of its input.

The paper's Algorithm 1: for every image and every rank ``k``, keep the ``k`` largest
singular values of each colour channel (or, in reverse, remove them), predict, and count
how often the prediction equals the prediction on the full-rank image (``agreement``)
and how often it equals the label (``accuracy``). Naturally trained models keep their
prediction down to a low rank; robust ones depend on the top ranks even more.

Every rank image of a batch comes from one SVD (:class:`~captum_rig.RankPath`) and is
streamed through the model in chunks of ``batch_size`` images. The counting itself is
shared with the frequency spectrum (:func:`captum_rig.fourier.frequency_spectrum`), whose
result is a :class:`Spectrum` too. This module counts; the figures
(:func:`~captum_rig.viz.plot_spectra`, :func:`~captum_rig.viz.plot_accuracy_gap`) are
drawn in :mod:`captum_rig.viz`.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

import csv
import io
import os
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    ClassVar,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

import torch
from torch import Tensor

from captum_rig._checks import check_int
from captum_rig._context import PathLike
from captum_rig._filter_axis import count_spectrum
from captum_rig._tables import Record, write_text
from captum_rig.lowrank import RankPath

__all__ = [
    "rank_spectrum",
    "RankSpectrum",
    "Spectrum",
    "accuracy_gap",
]

_CHECKPOINT_FORMAT = "captum_rig.rank_spectrum/2"
_COLUMNS = ["agreement", "accuracy", "n_images", "reverse"]

S = TypeVar("S", bound="Spectrum")


# --------------------------------------------------------------------------------------
# The results
# --------------------------------------------------------------------------------------


class Spectrum(Record):
    r"""What every spectrum has: agreement and accuracy per value of its filter axis.

    A dataclass subclass names its axis: the field holding the values (``_FIELD``,
    e.g. ``"ranks"``), one value's CSV column (``_AXIS``, e.g. ``"rank"``) and what the
    file is (``_KIND``); the fields ``agreement``, ``accuracy``, ``n_images`` and
    ``reverse`` follow. :class:`RankSpectrum` and
    :class:`~captum_rig.fourier.FrequencySpectrum` are the two.
    """

    _FIELD: ClassVar[str] = "ranks"
    _AXIS: ClassVar[str] = "rank"
    _KIND: ClassVar[str] = "rank spectrum"

    agreement: List[float]
    accuracy: Optional[List[float]]
    n_images: int
    reverse: bool

    @classmethod
    def _check_values(cls, values: Any) -> list:
        """The axis values, checked (a subclass's own kind of number)."""
        return [check_int(k, name=cls._FIELD) for k in _as_list(values, cls._FIELD)]

    @classmethod
    def _parse_value(cls, text: str) -> Any:
        return int(text)

    @property
    def _values(self) -> list:
        return getattr(self, self._FIELD)

    def __post_init__(self) -> None:
        setattr(self, self._FIELD, self._check_values(self._values))
        self.agreement = _fractions(self.agreement, "agreement")
        if self.accuracy is not None:
            self.accuracy = _fractions(self.accuracy, "accuracy")
        self.n_images = check_int(self.n_images, name="n_images", low=1)
        if not isinstance(self.reverse, bool):
            raise TypeError(f"reverse must be a bool, got {self.reverse!r}")
        for name in ("agreement", "accuracy"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self._values):
                raise ValueError(
                    f"{name} must have one value per {self._AXIS} ({len(self._values)}), "
                    f"got {len(values)}"
                )

    # -- serialisation (to_dict: Record's, field by field) -------------------------------

    @classmethod
    def from_dict(cls: "type[S]", d: Mapping[str, Any]) -> S:
        """Builds a spectrum from :meth:`to_dict`'s output (validated)."""
        if not isinstance(d, Mapping):
            raise TypeError(f"d must be a mapping, got {type(d).__name__}")
        missing = [k for k in (cls._FIELD, "agreement", "n_images") if k not in d]
        if missing:
            raise ValueError(f"d is missing the keys {missing}")
        return cls(  # type: ignore[call-arg]
            d[cls._FIELD],
            agreement=d["agreement"],
            accuracy=d.get("accuracy"),
            n_images=d["n_images"],
            reverse=d.get("reverse", False),
        )

    def to_csv(self, path: PathLike) -> None:
        """Writes one row per value: e.g. ``rank, agreement, accuracy, n_images, reverse``.

        The file is written under a temporary name and renamed when complete, so a
        crash never leaves a half-written file at ``path``. Floats are written exactly
        (``repr``): :meth:`from_csv` gives back an equal spectrum. ``accuracy`` is empty
        when there were no labels.
        """
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([self._AXIS, *_COLUMNS])
        for i, k in enumerate(self._values):
            accuracy = "" if self.accuracy is None else repr(self.accuracy[i])
            writer.writerow([k, repr(self.agreement[i]), accuracy, self.n_images, self.reverse])
        write_text(path, buffer.getvalue())

    @classmethod
    def from_csv(cls: "type[S]", path: PathLike) -> S:
        """Reads a file written by :meth:`to_csv`."""
        path = os.fspath(path)
        try:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                header = reader.fieldnames or []
                rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise ValueError(f"path {path!r} could not be read as a CSV file: {e}") from e
        columns = [cls._AXIS, *_COLUMNS]
        if any(c not in header for c in columns) or not rows:
            raise ValueError(
                f"path {path!r} is not a {cls._KIND} CSV: expected the columns "
                f"{columns} and at least one row, got {header} and {len(rows)} rows"
            )
        try:
            accuracies = [r["accuracy"] for r in rows]
            if any(a == "" for a in accuracies) and any(a != "" for a in accuracies):
                raise ValueError(f"accuracy is given for some {cls._FIELD} only")
            n_images = {int(r["n_images"]) for r in rows}
            reverse = {r["reverse"] for r in rows}
            if len(n_images) != 1 or len(reverse) != 1 or not reverse <= {"True", "False"}:
                raise ValueError("n_images and reverse must be one value on every row")
            return cls(  # type: ignore[call-arg]
                [cls._parse_value(r[cls._AXIS]) for r in rows],
                agreement=[float(r["agreement"]) for r in rows],
                accuracy=None if accuracies[0] == "" else [float(a) for a in accuracies],
                n_images=n_images.pop(),
                reverse=reverse.pop() == "True",
            )
        except (TypeError, ValueError) as e:
            raise ValueError(f"path {path!r} is not a valid {cls._KIND} CSV: {e}") from e

    # -- pictures ----------------------------------------------------------------------

    def plot(
        self,
        ax: Optional[Any] = None,
        metric: str = "agreement",
        label: Optional[str] = None,
        **plot_kwargs: Any,
    ) -> Tuple[Any, Any]:
        """Plots ``metric`` against the axis (see :func:`captum_rig.viz.plot_spectra`).

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
        from captum_rig.viz.curves import plot_spectra  # figures live downstream, in viz

        if isinstance(self, RankSpectrum):
            spectra = [self] if label is None else {label: self}
            return plot_spectra(spectra, ax=ax, metric=metric, **plot_kwargs)
        # plot_spectra draws rank spectra: another axis borrows its styling on rank
        # stand-ins and names its own x axis.
        stand_in = RankSpectrum(
            list(range(len(self._values))), self.agreement, self.accuracy, self.n_images
        )
        fig, ax = plot_spectra(
            {label: stand_in} if label else [stand_in], ax, metric, **plot_kwargs
        )
        ax.lines[-1].set_xdata(self._values)
        ax.relim()
        ax.autoscale_view()
        ax.set_xlabel(self._xlabel())
        if metric == "agreement":
            ax.set_ylabel("agreement with the unfiltered prediction")
        return fig, ax

    def _xlabel(self) -> str:
        return f"{self._AXIS} ({'removed' if self.reverse else 'kept'})"


@dataclass
class RankSpectrum(Spectrum):
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


def accuracy_gap(first: S, second: S) -> Tuple[List[Any], List[float]]:
    """Per rank (or radius), ``first.accuracy - second.accuracy`` (the paper's Fig. 7c/d).

    Only the values both spectra have are compared, in ``first``'s order. Both must be
    spectra of one axis: two :class:`RankSpectrum` or two
    :class:`~captum_rig.fourier.FrequencySpectrum`.

    Args:
        first (RankSpectrum): e.g. the model trained on low-rank images.
        second (RankSpectrum): e.g. the naturally trained model.

    Returns:
        (list of int, list of float): the common ranks (radii) and the accuracy
        differences.

    Examples:
        >>> a = RankSpectrum([0, 4, 8], [0.2, 0.6, 1.0], [0.1, 0.5, 0.75], 4)
        >>> b = RankSpectrum([0, 8], [0.2, 1.0], [0.25, 0.5], 4)
        >>> accuracy_gap(a, b)
        ([0, 8], [-0.15, 0.25])
    """
    for name, s in (("first", first), ("second", second)):
        if not isinstance(s, Spectrum):
            got = type(s).__name__
            raise TypeError(f"{name} must be a RankSpectrum or FrequencySpectrum, got {got}")
        if s.accuracy is None:
            raise ValueError(f"{name} has no accuracy: compute it with labels")
    if type(first) is not type(second):
        raise TypeError(
            f"first and second must be spectra of one axis, got {type(first).__name__} and "
            f"{type(second).__name__}"
        )
    if first.reverse != second.reverse:
        raise ValueError("first and second must have the same reverse flag")
    other = dict(zip(second._values, second.accuracy))
    values = [k for k in first._values if k in other]
    if not values:
        raise ValueError(
            f"first and second share no {first._AXIS}: {first._values} vs {second._values}"
        )
    mine = dict(zip(first._values, first.accuracy))
    return values, [mine[k] - other[k] for k in values]


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
    if not isinstance(reverse, bool):
        raise TypeError(f"reverse must be a bool, got {reverse!r}")
    counts = count_spectrum(
        model,
        data,
        _RankAxis(reverse),
        ranks,
        labels,
        batch_size,
        device,
        progress,
        checkpoint,
        checkpoint_every,
        what="rank_spectrum",
        format=_CHECKPOINT_FORMAT,
    )
    return RankSpectrum(
        ranks=counts.values,
        agreement=counts.agreement,
        accuracy=counts.accuracy,
        n_images=counts.n_images,
        reverse=reverse,
    )


class _RankAxis:
    """The rank axis of :func:`count_spectrum`: rank images from one SVD per batch."""

    name, key = "rank", "ranks"

    def __init__(self, reverse: bool) -> None:
        self.reverse = reverse

    def values(self, asked: Any, shape: Tuple[int, ...]) -> List[int]:
        return _check_ranks(asked, min(shape[-2:]))

    def identity(self, value: int, shape: Tuple[int, ...]) -> bool:
        return value == (0 if self.reverse else min(shape[-2:]))

    def chunks(self, x: Tensor, values: List[int], per_chunk: int) -> Iterator[Tuple[int, Tensor]]:
        return RankPath(x).chunks(values, per_chunk, reverse=self.reverse)


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
