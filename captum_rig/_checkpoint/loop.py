"""The resumable counting loop over a stream of batches, shared by its processes.

:func:`count_batches` counts this process's :class:`Shard` of the batches with a
:class:`BatchCounter`, skipping (and re-verifying) those a :class:`Checkpoint` already
holds, saving every few batches and, with Ctrl-C held back, when interrupted.
"""

import contextlib
import signal
import threading
from typing import Any, Callable, Dict, Iterator, Optional, Protocol, Tuple

import torch
from torch import Tensor

from captum_rig._checkpoint.digests import batch_digest
from captum_rig._checkpoint.state import Checkpoint, Progress
from captum_rig._checks import Batches

__all__ = [
    "BatchCounter",
    "count_batches",
    "Shard",
    "totals",
    "world",
    "all_reduce",
    "interrupts_held",
]


class BatchCounter(Protocol):
    """What :func:`count_batches` asks of a job: settings from the first batch, counts."""

    def first(
        self, images: Tensor, labels: Optional[Tensor]
    ) -> Tuple[Dict[str, Any], Dict[str, Tensor]]:
        """The settings the first batch fixes (as a checkpoint records them), and zero counts."""

    def check(self, index: int, images: Tensor, labels: Optional[Tensor]) -> None:
        """Raises unless batch ``index`` agrees with the first batch."""

    def count(self, images: Tensor, labels: Optional[Tensor]) -> Dict[str, Tensor]:
        """The counts of one batch, int64 on the CPU, as shaped as the zero counts."""


def count_batches(
    checked: Batches,
    counter: BatchCounter,
    shard: "Shard",
    checkpoint: Optional[Checkpoint] = None,
    every: int = 10,
    on_batch: Callable[[], Any] = lambda: None,
) -> Progress:
    """Counts this process's share of the batches, resuming from ``checkpoint``.

    Batches counted before an interruption are skipped, each hashed again and compared
    with its recorded digest; the progress is saved every ``every`` batches and, when an
    exception or Ctrl-C stops the loop after a batch was counted, once more (a second
    Ctrl-C during that save is held back). ``on_batch`` is called after each batch of the
    share (a progress bar's ``update``).

    Raises:
        ValueError: ``data`` yielded no batch, or the checkpoint does not match.
    """
    progress: Optional[Progress] = None
    index = -1
    try:
        for index, (images, labels) in enumerate(checked.batches):
            if progress is None:
                settings, zeros = counter.first(images, labels)
                progress = (
                    Progress.zeros(zeros)
                    if checkpoint is None
                    else checkpoint.start(settings, zeros)
                )
            else:
                counter.check(index, images, labels)
            if not shard.mine(index):
                continue
            digest = None if checkpoint is None else batch_digest(images, labels)
            if index < progress.next_batch:  # counted before the interruption
                checkpoint.verify(progress, shard.ordinal(index), index, digest)
            else:
                counts = counter.count(images, labels)
                # one assignment: an interrupt never leaves the counts half-updated
                progress = progress.add(index, images.shape[0], counts, digest)
                if checkpoint is not None and progress.batches_counted % every == 0:
                    checkpoint.save(progress)
            on_batch()
    except BaseException:
        # Whatever was counted since the last save (none: e.g. a refused resume) is kept.
        if (
            checkpoint is not None
            and progress is not None
            and progress.batches_counted > checkpoint.counted
        ):
            with interrupts_held():
                checkpoint.save(progress)
        raise
    if progress is None:
        raise ValueError("data must not be empty: it yielded no batch")
    if checkpoint is not None:
        checkpoint.check_complete(progress, index + 1)
    return progress


# -- processes -------------------------------------------------------------------------


class Shard:
    """The batches one process of a ``torch.distributed`` world takes: every
    ``stride``-th, from ``offset``.

    Args:
        checked (Batches): the data; a DataLoader with a ``DistributedSampler`` is
            sharded already, so every one of its batches is taken.
        world_size (int): processes in the world (:func:`world`).
        process (int): this process's rank.
    """

    def __init__(self, checked: Batches, world_size: int, process: int) -> None:
        self.stride, self.offset = (1, 0) if checked.presharded else (world_size, process)
        self.length = (
            None if checked.length is None else len(range(self.offset, checked.length, self.stride))
        )

    def mine(self, index: int) -> bool:
        return index % self.stride == self.offset

    def ordinal(self, index: int) -> int:
        """The place of batch ``index`` among this process's batches."""
        return (index - self.offset) // self.stride


def totals(progress: Progress, world_size: int) -> Tuple[int, Dict[str, Tensor]]:
    """``(n_images, counts)`` of ``progress`` summed over the processes (one all-reduce)."""
    counts = progress.counts
    flat = torch.cat([torch.tensor([progress.n_images])] + [v.reshape(-1) for v in counts.values()])
    if world_size > 1:
        flat = all_reduce(flat)
    out, start = {}, 1
    for name, v in counts.items():
        out[name] = flat[start : start + v.numel()].view(v.shape)
        start += v.numel()
    return int(flat[0]), out


def world() -> Tuple[int, int]:
    """``(world_size, rank)`` of the ``torch.distributed`` group; ``(1, 0)`` without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def all_reduce(counts: Tensor) -> Tensor:
    """The sum of ``counts`` over the processes, on the CPU (via CUDA under nccl)."""
    import torch.distributed as dist

    on = torch.device("cpu")
    if "nccl" in str(dist.get_backend()):
        on = torch.device("cuda", torch.cuda.current_device())
    counts = counts.to(on)
    dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    return counts.cpu()


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Ignores Ctrl-C for the block (a second Ctrl-C must not cut the final save short)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
