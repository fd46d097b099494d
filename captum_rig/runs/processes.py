"""The ``torch.distributed`` group of a program started by ``torchrun``.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (and where to meet) in
each process's environment; :func:`process_group` joins the group they describe for the
duration of a run, so that the library's data-set jobs share the batches out.
"""

import contextlib
import os
from typing import Iterator, Union

import torch

__all__ = ["process_group", "launched_by_torchrun"]


def launched_by_torchrun() -> bool:
    """Whether this process is one of several started by ``torchrun``."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


@contextlib.contextmanager
def process_group(device: Union[str, torch.device] = "cpu") -> Iterator[torch.device]:
    """Joins ``torchrun``'s process group for the block; yields this process's device.

    Outside ``torchrun`` (or when a group exists already) nothing is joined and
    ``device`` is yielded as it is. Under ``torchrun`` the backend is NCCL for a CUDA
    ``device``, each process taking the GPU ``cuda:LOCAL_RANK``, and gloo otherwise; the
    group is left when the block ends.

    Examples:
        >>> with process_group("cpu") as device:  # not under torchrun: nothing to join
        ...     device
        device(type='cpu')
    """
    import torch.distributed as dist

    device = torch.device(device)
    if not launched_by_torchrun() or not dist.is_available() or dist.is_initialized():
        yield device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()
