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

import contextlib
import csv
import hashlib
import os
import signal
import threading
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from captum_rig._checks import (
    Batches,
    check_batches,
    check_int,
    check_model,
    model_device,
    model_logits,
)
from captum_rig._context import atomic_path, check_writable, eval_mode
from captum_rig.lowrank import RankPath

__all__ = [
    "rank_spectrum",
    "RankSpectrum",
    "accuracy_gap",
]

PathLike = Union[str, "os.PathLike[str]"]

_CHECKPOINT_FORMAT = "captum_rig.rank_spectrum/2"
_CSV_COLUMNS = ["rank", "agreement", "accuracy", "n_images", "reverse"]


# --------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------


@dataclass
class RankSpectrum:
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

    # -- serialisation -----------------------------------------------------------------

    def to_dict(self) -> Dict[str, Any]:
        """Plain Python types only (JSON-ready): the inverse of :meth:`from_dict`."""
        return {
            "ranks": list(self.ranks),
            "agreement": list(self.agreement),
            "accuracy": None if self.accuracy is None else list(self.accuracy),
            "n_images": self.n_images,
            "reverse": self.reverse,
        }

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
        path = os.fspath(path)
        rows = [
            [
                k,
                repr(self.agreement[i]),
                "" if self.accuracy is None else repr(self.accuracy[i]),
                self.n_images,
                self.reverse,
            ]
            for i, k in enumerate(self.ranks)
        ]
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(_CSV_COLUMNS)
            w.writerows(rows)

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


# --------------------------------------------------------------------------------------
# Algorithm 1
# --------------------------------------------------------------------------------------


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
    world_size, process = _world()
    checked = check_batches(data, labels, batch_size)
    # This process counts the batches with index % stride == offset.
    stride, offset = (1, 0) if checked.presharded else (world_size, process)
    n_mine = None if checked.length is None else len(range(offset, checked.length, stride))
    record = None
    if checkpoint is not None:  # before any batch: a bad path or another run fails now
        record = _Record.open(checkpoint, model, data, checked, batch_size, world_size, process)

    bar = tqdm(
        total=n_mine,
        desc="rank spectrum",
        unit="batch",
        disable=not progress or process != 0,
    )
    setting: Optional[_Setting] = None
    state: Optional[_State] = None
    index = -1
    try:
        with eval_mode(model), torch.no_grad():
            for index, (images, batch_labels) in enumerate(checked.batches):
                if setting is None:
                    setting = _Setting.first(images, batch_labels, ranks, reverse)
                    m = len(setting.ranks)
                    state = _State.zeros(m) if record is None else record.start(setting, m)
                else:
                    setting.check_batch(index, images, batch_labels)
                if index % stride != offset:
                    continue
                digest = None if record is None else _batch_digest(images, batch_labels)
                if index < state.next_batch:  # counted before the interruption
                    record.verify(state, (index - offset) // stride, index, digest)
                    bar.update()
                    continue
                agree, correct = _count_batch(
                    model, images, batch_labels, setting, batch_size, device
                )
                # one assignment: an interrupt never leaves the counts half-updated
                state = state.add(index, images.shape[0], agree, correct, digest)
                bar.update()
                if record is not None and state.batches_counted % checkpoint_every == 0:
                    record.save(state)
    except BaseException:
        # Whatever was counted since the last save (none: e.g. a refused resume) is kept.
        if record is not None and state is not None and state.batches_counted > record.counted:
            with _interrupts_held():
                record.save(state)
        raise
    finally:
        bar.close()
    if setting is None:
        raise ValueError("data must not be empty: it yielded no batch")
    if record is not None:
        record.check_complete(state, index + 1)

    counts = torch.cat([torch.tensor([state.n_images]), state.agree, state.correct])
    if world_size > 1:
        counts = _all_reduce(counts)
    n_images = int(counts[0])
    if n_images == 0:  # defensive: batches are checked to be non-empty
        raise ValueError("data must not be empty: no image was counted")
    m = len(setting.ranks)
    agree, correct = counts[1 : 1 + m].tolist(), counts[1 + m :].tolist()
    if record is not None and os.path.exists(record.path):
        os.remove(record.path)
    return RankSpectrum(
        ranks=list(setting.ranks),
        agreement=[a / n_images for a in agree],
        accuracy=[c / n_images for c in correct] if setting.has_labels else None,
        n_images=n_images,
        reverse=reverse,
    )


class _Setting:
    """What the first batch fixes for the whole run: image shape, ranks, labels."""

    def __init__(
        self, shape: Tuple[int, ...], ranks: List[int], has_labels: bool, reverse: bool
    ) -> None:
        self.shape = shape
        self.ranks = ranks
        self.has_labels = has_labels
        self.reverse = reverse
        width = min(shape[-2:])
        # The rank whose image is x itself: its prediction is the reference, no forward.
        identity = 0 if reverse else width
        self.identity = [i for i, k in enumerate(ranks) if k == identity]
        self.computed = [i for i, k in enumerate(ranks) if k != identity]

    @classmethod
    def first(
        cls, images: Tensor, labels: Optional[Tensor], ranks: Any, reverse: bool
    ) -> "_Setting":
        width = min(images.shape[-2:])
        return cls(tuple(images.shape[1:]), _check_ranks(ranks, width), labels is not None, reverse)

    def check_batch(self, index: int, images: Tensor, labels: Optional[Tensor]) -> None:
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

    def fingerprint(self) -> Dict[str, Any]:
        """What the first batch fixes, as a checkpoint records it."""
        return {
            "ranks": list(self.ranks),
            "reverse": self.reverse,
            "image_shape": list(self.shape),
            "labels": self.has_labels,
        }


class _State:
    """Counts so far; immutable, so that one assignment replaces it whole.

    ``digests`` holds one 64-byte digest (images, labels) per batch counted; the list is
    shared and only appended to, and a state reads its first ``batches_counted`` entries,
    so an older state stays valid (and adding a batch costs no copy of the list).
    """

    def __init__(
        self,
        next_batch: int,
        batches_counted: int,
        n_images: int,
        agree: Tensor,
        correct: Tensor,
        digests: List[bytes],
    ) -> None:
        self.next_batch = next_batch
        self.batches_counted = batches_counted
        self.n_images = n_images
        self.agree = agree
        self.correct = correct
        self.digests = digests

    @classmethod
    def zeros(cls, m: int) -> "_State":
        z = torch.zeros(m, dtype=torch.int64)
        return cls(0, 0, 0, z, z.clone(), [])

    def add(
        self, index: int, n: int, agree: Tensor, correct: Tensor, digest: Optional[bytes]
    ) -> "_State":
        if digest is not None:
            del self.digests[self.batches_counted :]  # left by an interrupted add
            self.digests.append(digest)
        return _State(
            index + 1,
            self.batches_counted + 1,
            self.n_images + n,
            self.agree + agree,
            self.correct + correct,
            self.digests,
        )

    def to_dict(self) -> Dict[str, Any]:
        digests = b"".join(self.digests[: self.batches_counted])
        return {
            "next_batch": self.next_batch,
            "batches_counted": self.batches_counted,
            "n_images": self.n_images,
            "agree": self.agree,
            "correct": self.correct,
            # uint8 (batches, 64): loadable with weights_only=True
            "digests": torch.frombuffer(bytearray(digests), dtype=torch.uint8).view(-1, 64),
        }

    @classmethod
    def from_dict(cls, s: Mapping[str, Any]) -> "_State":
        raw = s["digests"].to(torch.uint8).reshape(-1, 64).numpy().tobytes()
        state = cls(
            int(s["next_batch"]),
            int(s["batches_counted"]),
            int(s["n_images"]),
            s["agree"].to(torch.int64),
            s["correct"].to(torch.int64),
            [raw[i : i + 64] for i in range(0, len(raw), 64)],
        )
        if len(state.digests) != state.batches_counted:
            raise ValueError(f"{len(state.digests)} digests for {state.batches_counted} batches")
        return state


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


def _count_batch(
    model: Callable[[Tensor], Tensor],
    images: Tensor,
    labels: Optional[Tensor],
    setting: _Setting,
    batch_size: int,
    device: torch.device,
) -> Tuple[Tensor, Tensor]:
    """Agreement and correct counts per rank, ``(m,)`` int64 on CPU, for one batch."""
    # A copy, so that a model that works in place on its input never touches the data.
    x = images.to(device=device, copy=True)
    n = x.shape[0]
    reference = _predict(model, x, batch_size)
    predictions = torch.empty(len(setting.ranks), n, dtype=torch.long, device=reference.device)
    predictions[setting.identity] = reference
    if setting.computed:
        path = RankPath(x)
        ranks = [setting.ranks[i] for i in setting.computed]
        ranks_per_chunk = max(1, batch_size // n)
        for start, x_t in path.chunks(ranks, ranks_per_chunk, reverse=setting.reverse):
            m = x_t.shape[0]
            p = _predict(model, x_t.reshape(m * n, *x.shape[1:]), batch_size)
            predictions[setting.computed[start : start + m]] = p.view(m, n)
    agree = (predictions == reference).sum(1).cpu()
    if labels is None:
        return agree, torch.zeros_like(agree)
    correct = (predictions == labels.to(predictions.device)).sum(1).cpu()
    return agree, correct


def _predict(model: Callable[[Tensor], Tensor], x: Tensor, batch_size: int) -> Tensor:
    chunks = (x[start : start + batch_size] for start in range(0, x.shape[0], batch_size))
    return torch.cat([model_logits(model, chunk).argmax(1) for chunk in chunks])


# -- checkpoints and processes ---------------------------------------------------------


class _Record:
    """A run's checkpoint file: what makes a run the same run, and its counts so far."""

    def __init__(self, path: str, identity: Dict[str, Any], saved: Optional[Dict]) -> None:
        self.path = path
        self.identity = identity
        self.saved = saved
        self.fingerprint: Dict[str, Any] = {}
        self.counted = 0  # batches the file holds

    @classmethod
    def open(
        cls,
        checkpoint: PathLike,
        model: Callable[[Tensor], Tensor],
        data: Any,
        checked: Batches,
        batch_size: int,
        world_size: int,
        process: int,
    ) -> "_Record":
        """Checks the path and, when the file exists, the model and data against it."""
        check_writable(checkpoint, "checkpoint", create=True)
        path = os.fspath(checkpoint)
        if world_size > 1:
            path = f"{path}.{process}-of-{world_size}"
        identity = {
            "model": _model_digest(model),
            "n_images": _n_images(data, checked),
            "n_batches": checked.length,
            "batch_size": batch_size if checked.from_tensor else getattr(data, "batch_size", None),
            "world_size": world_size,
            "process": process,
        }
        record = cls(path, identity, _read_checkpoint(path))
        if record.saved is not None:
            record._compare(record.saved["identity"], identity)
        return record

    def start(self, setting: _Setting, m: int) -> _State:
        """The counts to resume from (zeros without a file), once the first batch is known."""
        self.fingerprint = setting.fingerprint()
        if self.saved is None:
            return _State.zeros(m)
        self._compare(self.saved["fingerprint"], self.fingerprint)
        state = self.saved["state"]
        if state.agree.shape != (m,) or state.correct.shape != (m,):
            self._fail("it holds counts of the wrong shape")
        self.counted = state.batches_counted
        return state

    def verify(self, state: _State, ordinal: int, index: int, digest: bytes) -> None:
        """Compares a skipped batch with the digest recorded when it was counted."""
        saved = state.digests[ordinal]
        for what, part in (("images", slice(0, 32)), ("labels", slice(32, 64))):
            if saved[part] != digest[part]:
                self._fail(f"batch {index}'s {what} differ from the checkpoint's")

    def check_complete(self, state: _State, n_batches: int) -> None:
        """The data ran out before the batches the checkpoint counted: another data set."""
        if state.next_batch > n_batches:
            self._fail(
                f"the data has {n_batches} batches, but the checkpoint counted {state.next_batch}"
            )

    def save(self, state: _State) -> None:
        content = {
            "format": _CHECKPOINT_FORMAT,
            "identity": self.identity,
            "fingerprint": self.fingerprint,
            "state": state.to_dict(),
        }
        with atomic_path(self.path) as tmp:
            torch.save(content, tmp)
        self.counted = state.batches_counted

    def _compare(self, saved: Mapping[str, Any], now: Dict[str, Any]) -> None:
        differences = [_difference(key, saved.get(key), value) for key, value in now.items()]
        differences = [d for d in differences if d]
        if differences:
            self._fail("; ".join(differences))

    def _fail(self, reason: str) -> None:
        raise ValueError(
            f"checkpoint {self.path!r} does not match this call: {reason}. Pass the same "
            f"model, data and arguments to resume, or delete the file to start over"
        )


def _difference(key: str, saved: Any, now: Any) -> Optional[str]:
    """How a recorded value differs from this call's, or None (unknown is no difference)."""
    if saved == now:
        return None
    unknown = saved is None or now is None
    if key == "model":
        return None if unknown else "the model's weights differ from the checkpoint's"
    if key in ("n_images", "n_batches"):
        what = key[2:]
        return None if unknown else f"the data has {now} {what}, the checkpoint {saved}"
    if key == "batch_size" and unknown:
        return None
    return f"it was written with {key}={saved!r}, but this call has {key}={now!r}"


def _read_checkpoint(path: str) -> Optional[Dict[str, Any]]:
    """The file's content with its state parsed; None when there is no file."""
    if not os.path.exists(path):
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"format {saved.get('format')!r}, not {_CHECKPOINT_FORMAT!r}")
        saved["state"] = _State.from_dict(saved["state"])
        dict(saved["identity"]), dict(saved["fingerprint"])
    except Exception as e:
        raise ValueError(
            f"checkpoint {path!r} is not a rank_spectrum checkpoint ({type(e).__name__}: "
            f"{e}); delete it to start over"
        ) from e
    return saved


def _model_digest(model: Callable[[Tensor], Tensor]) -> Optional[str]:
    """SHA-256 of an nn.Module's parameter and buffer names, dtypes, shapes and bytes.

    None for a callable that is not an ``nn.Module``: its weights cannot be seen.
    """
    if not isinstance(model, nn.Module):
        return None
    h = hashlib.sha256()
    named = list(model.named_parameters()) + list(model.named_buffers())
    for name, tensor in named:
        h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        h.update(_tensor_bytes(tensor))
    return h.hexdigest()


def _batch_digest(images: Tensor, labels: Optional[Tensor]) -> bytes:
    """64 bytes: the SHA-256 of the images and that of the labels (dtype, shape, bytes)."""
    out = b""
    for tensor in (images, labels):
        h = hashlib.sha256()
        if tensor is not None:
            h.update(f"{tensor.dtype}:{tuple(tensor.shape)};".encode())
            h.update(_tensor_bytes(tensor))
        out += h.digest()
    return out


def _tensor_bytes(tensor: Tensor) -> memoryview:
    # uint8 view: every dtype (bfloat16 included) without a numpy conversion of values
    flat = tensor.detach().reshape(-1).contiguous().view(torch.uint8).cpu()
    return memoryview(flat.numpy())


def _n_images(data: Any, checked: Batches) -> Optional[int]:
    """The number of images ``data`` holds, when it tells (a tensor, a DataLoader)."""
    if checked.from_tensor:
        return int((data[0] if isinstance(data, tuple) else data).shape[0])
    sampler = getattr(getattr(data, "batch_sampler", None), "sampler", None)
    for source in (sampler, getattr(data, "dataset", None)):
        try:
            return len(source)  # type: ignore[arg-type]
        except (TypeError, NotImplementedError):  # no sampler, or an iterable dataset
            continue
    return None


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Ignores Ctrl-C for the block (a second Ctrl-C must not cut the final save short)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def _world() -> Tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _all_reduce(counts: Tensor) -> Tensor:
    import torch.distributed as dist

    on = torch.device("cpu")
    if "nccl" in str(dist.get_backend()):
        on = torch.device("cuda", torch.cuda.current_device())
    counts = counts.to(on)
    dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    return counts.cpu()
