"""State files of resumable runs: read, written, and compared with this call's settings.

A state file is a dict saved with ``torch.save`` and read with ``torch.load(...,
weights_only=True)``; its ``format`` names the kind of job that wrote it. Resuming with
other settings is refused naming what differs (:func:`differences`). A counting run
keeps its :class:`Progress` in a :class:`Checkpoint`.
"""

import os
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch
from torch import Tensor

from captum_rig._checkpoint.digests import BATCH_PARTS, model_digest
from captum_rig._checks import Batches
from captum_rig._context import PathLike, atomic_path, check_writable

__all__ = [
    "StateError",
    "read_state",
    "write_state",
    "describe_difference",
    "differences",
    "run_identity",
    "Progress",
    "Checkpoint",
    "saved_batches",
]


class StateError(ValueError):
    """A state file that cannot be read, or that another kind of job wrote."""


def read_state(path: PathLike, format: Any) -> Optional[Dict[str, Any]]:
    """The dict saved at ``path`` by :func:`write_state`; None when there is no file.

    Read with ``torch.load(..., weights_only=True)`` on the CPU.

    Raises:
        StateError: the file cannot be read, is not a dict, or has another ``format``;
            the message says which.
    """
    if not os.path.exists(path):
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged pickle fails in many ways
        raise StateError(f"it could not be read ({type(e).__name__}: {e})") from e
    got = saved.get("format") if isinstance(saved, dict) else type(saved).__name__
    if not isinstance(saved, dict) or got != format:
        raise StateError(f"it has format {got!r}, not {format!r}")
    return saved


def write_state(path: PathLike, format: Any, content: Mapping[str, Any]) -> None:
    """Saves ``{"format": format, **content}`` at ``path`` atomically (``torch.save``)."""
    with atomic_path(path) as tmp:
        torch.save({"format": format, **content}, tmp)


def describe_difference(key: str, saved: Any, now: Any) -> Optional[str]:
    """How a recorded value differs from this call's, or None (unknown is no difference).

    ``model`` (a :func:`model_digest`), ``n_images``, ``n_batches`` and ``batch_size``
    are a run's identity (:func:`run_identity`) and worded as such; any other key as
    ``it was written with key=..., but this call has key=...``.

    Examples:
        >>> describe_difference("ranks", [0, 8], [0, 4])
        'it was written with ranks=[0, 8], but this call has ranks=[0, 4]'
        >>> describe_difference("n_images", 40, 30)
        'the data has 30 images, the checkpoint 40'
    """
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


def differences(
    saved: Mapping[str, Any],
    now: Mapping[str, Any],
    describe: Callable[[str, Any, Any], Optional[str]] = describe_difference,
) -> List[str]:
    """One sentence per key of ``now`` whose value differs from the recorded one.

    Args:
        saved (mapping): the settings a state file recorded.
        now (mapping): this call's settings; its keys, in order, are compared.
        describe (callable): ``(key, saved value, value now)`` → a sentence, or None
            when the difference does not count. Default: :func:`describe_difference`.

    Returns:
        list of str: empty when the settings agree.

    Examples:
        >>> differences({"k": 2, "reverse": False}, {"k": 3, "reverse": False})
        ['it was written with k=2, but this call has k=3']
    """
    found = (describe(key, saved.get(key), value) for key, value in now.items())
    return [d for d in found if d]


def run_identity(
    model: Any, data: Any, checked: Batches, batch_size: int, world_size: int, process: int
) -> Dict[str, Any]:
    """What makes a streaming run over ``data`` with ``model`` the same run, before a batch.

    The :func:`model_digest`, the number of images and batches (when ``data`` tells),
    the batch size (a tensor's ``batch_size``, a DataLoader's own) and the process's place
    in the ``torch.distributed`` world.
    """
    return {
        "model": model_digest(model),
        "n_images": _n_images(data, checked),
        "n_batches": checked.length,
        "batch_size": batch_size if checked.from_tensor else getattr(data, "batch_size", None),
        "world_size": world_size,
        "process": process,
    }


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


# -- a counting run's progress and its file --------------------------------------------

_PROGRESS_KEYS = ("next_batch", "batches_counted", "n_images", "digests")


class Progress:
    """Counts so far; immutable, so that one assignment replaces it whole.

    ``counts`` maps a name to an int64 tensor of counts (the spectrum's ``agree`` and
    ``correct`` per rank). ``digests`` holds one :func:`batch_digest` per batch counted;
    the list is shared and only appended to, and a progress reads its first
    ``batches_counted`` entries, so an older one stays valid (and adding a batch copies
    no list).
    """

    def __init__(
        self,
        next_batch: int,
        batches_counted: int,
        n_images: int,
        counts: Dict[str, Tensor],
        digests: List[bytes],
    ) -> None:
        self.next_batch = next_batch
        self.batches_counted = batches_counted
        self.n_images = n_images
        self.counts = counts
        self.digests = digests

    @classmethod
    def zeros(cls, counts: Mapping[str, Tensor]) -> "Progress":
        return cls(0, 0, 0, {k: torch.zeros_like(v) for k, v in counts.items()}, [])

    def add(
        self, index: int, n: int, counts: Mapping[str, Tensor], digest: Optional[bytes]
    ) -> "Progress":
        if digest is not None:
            del self.digests[self.batches_counted :]  # left by an interrupted add
            self.digests.append(digest)
        summed = {k: v + counts[k] for k, v in self.counts.items()}
        return Progress(
            index + 1, self.batches_counted + 1, self.n_images + n, summed, self.digests
        )

    def to_dict(self) -> Dict[str, Any]:
        digests = b"".join(self.digests[: self.batches_counted])
        return {
            "next_batch": self.next_batch,
            "batches_counted": self.batches_counted,
            "n_images": self.n_images,
            **self.counts,
            # uint8 (batches, 64): loadable with weights_only=True
            "digests": torch.frombuffer(bytearray(digests), dtype=torch.uint8).view(-1, 64),
        }

    @classmethod
    def from_dict(cls, s: Mapping[str, Any]) -> "Progress":
        raw = s["digests"].to(torch.uint8).reshape(-1, 64).numpy().tobytes()
        progress = cls(
            int(s["next_batch"]),
            int(s["batches_counted"]),
            int(s["n_images"]),
            {k: v.to(torch.int64) for k, v in s.items() if k not in _PROGRESS_KEYS},
            [raw[i : i + 64] for i in range(0, len(raw), 64)],
        )
        if len(progress.digests) != progress.batches_counted:
            raise ValueError(
                f"{len(progress.digests)} digests for {progress.batches_counted} batches"
            )
        return progress


class Checkpoint:
    """A run's checkpoint file: what makes a run the same run, and its progress so far.

    The file holds ``format``, ``identity`` (fixed before any batch: see
    :func:`run_identity`), ``fingerprint`` (the settings the first batch fixes: ranks,
    image shape, ...) and ``state`` (:meth:`Progress.to_dict`). Opening it checks the
    identity, :meth:`start` the settings; any difference is a ValueError naming it.
    """

    def __init__(
        self, path: str, format: str, identity: Dict[str, Any], saved: Optional[Dict]
    ) -> None:
        self.path = path
        self.format = format
        self.identity = identity
        self.saved = saved
        self.settings: Dict[str, Any] = {}
        self.counted = 0  # batches the file holds

    @classmethod
    def open(
        cls,
        checkpoint: PathLike,
        identity: Dict[str, Any],
        *,
        format: str,
        what: str,
        world_size: int = 1,
        process: int = 0,
    ) -> "Checkpoint":
        """Checks the path and, when the file exists, ``identity`` against the recorded one.

        Under ``torch.distributed`` each process has its own file,
        ``PATH.<process>-of-<world_size>``. ``what`` names the job in the message for a
        file that is not its checkpoint.
        """
        check_writable(checkpoint, "checkpoint", create=True)
        path = os.fspath(checkpoint)
        if world_size > 1:
            path = f"{path}.{process}-of-{world_size}"
        try:
            saved = read_state(path, format)
            if saved is not None:
                saved["state"] = Progress.from_dict(saved["state"])
                dict(saved["identity"]), dict(saved["fingerprint"])
        except Exception as e:
            why = e if isinstance(e, StateError) else f"{type(e).__name__}: {e}"
            raise ValueError(
                f"checkpoint {path!r} is not a {what} checkpoint: {why}; delete it to start over"
            ) from e
        record = cls(path, format, identity, saved)
        if saved is not None:
            record._compare(saved["identity"], identity)
        return record

    def start(self, settings: Dict[str, Any], zeros: Mapping[str, Tensor]) -> Progress:
        """The progress to resume from (zeros without a file), once the first batch is known."""
        self.settings = settings
        if self.saved is None:
            return Progress.zeros(zeros)
        self._compare(self.saved["fingerprint"], settings)
        progress = self.saved["state"]
        saved_counts = progress.counts
        if set(saved_counts) != set(zeros) or any(
            saved_counts[k].shape != v.shape for k, v in zeros.items()
        ):
            self._fail("it holds counts of the wrong shape")
        self.counted = progress.batches_counted
        return progress

    def verify(self, progress: Progress, ordinal: int, index: int, digest: bytes) -> None:
        """Compares a skipped batch with the digest recorded when it was counted."""
        saved = progress.digests[ordinal]
        for what, part in BATCH_PARTS:
            if saved[part] != digest[part]:
                self._fail(f"batch {index}'s {what} differ from the checkpoint's")

    def check_complete(self, progress: Progress, n_batches: int) -> None:
        """The data ran out before the batches the checkpoint counted: another data set."""
        if progress.next_batch > n_batches:
            self._fail(
                f"the data has {n_batches} batches, but the checkpoint counted "
                f"{progress.next_batch}"
            )

    def save(self, progress: Progress) -> None:
        content = {
            "identity": self.identity,
            "fingerprint": self.settings,
            "state": progress.to_dict(),
        }
        write_state(self.path, self.format, content)
        self.counted = progress.batches_counted

    def remove(self) -> None:
        """Deletes the file (the run completed)."""
        if os.path.exists(self.path):
            os.remove(self.path)

    def _compare(self, saved: Mapping[str, Any], now: Dict[str, Any]) -> None:
        found = differences(saved, now)
        if found:
            self._fail("; ".join(found))

    def _fail(self, reason: str) -> None:
        raise ValueError(
            f"checkpoint {self.path!r} does not match this call: {reason}. Pass the same "
            f"model, data and arguments to resume, or delete the file to start over"
        )


def saved_batches(path: PathLike) -> int:
    """How many batches the counting checkpoint at ``path`` holds; 0 without a readable one.

    For a message after an interruption ("3 of 10 batches counted and saved"): a missing,
    damaged or foreign file counts as none saved (resuming it is checked properly).

    Examples:
        >>> saved_batches("no-such-checkpoint.ckpt")
        0
    """
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return int(saved["state"]["batches_counted"])
    except Exception:  # no file, or another layout: nothing saved that we can use
        return 0
