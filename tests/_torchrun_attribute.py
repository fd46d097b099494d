"""Runs attribute_dataset under torchrun (gloo, CPU): one file, written by process 0.

Usage: python -m torch.distributed.run --standalone --nproc_per_node 2 \
    tests/_torchrun_attribute.py OUT_FILE [FAIL_RANK]

With FAIL_RANK, that process raises when it reaches batch 3 (after computing its batch
1), so torchrun stops the run; a second launch without it resumes. Each process writes
how many images it predicted (its batches computed, not skipped) to OUT_FILE.<rank>.json.

Also importable: ``tiny_model``, ``tiny_data`` and ``SETTINGS`` give the same model, data
and arguments to the single-process side of the test.
"""

import json
import os
import sys

import torch
from torch import nn

SETTINGS = dict(methods="rig,saliency,ig", n_steps=3, progress=False)


class Counted(nn.Module):
    """A small float64 CNN; counts the images it predicts (forwards without gradients)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.Softplus(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(16, 5),
        ).double()
        self.predicted = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            self.predicted += x.shape[0]
        return self.net(x)


def tiny_model() -> Counted:
    return Counted()


def tiny_data():
    """5 batches (the last of 1 image): 9 float64 images 3x8x8 with labels."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(9, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(5, (9,), generator=g)
    return [(x[i : i + 2], y[i : i + 2]) for i in range(0, 9, 2)]


class FailAt:
    """The batches, but raising RuntimeError instead of batch ``stop``."""

    def __init__(self, batches, stop: int) -> None:
        self.batches, self.stop = batches, stop

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for i, batch in enumerate(self.batches):
            if i == self.stop:
                raise RuntimeError(f"process fails at batch {i}")
            yield batch


def main() -> None:
    import torch.distributed as dist

    from captum_rig.runs import attribute_dataset

    out = sys.argv[1]
    fail_rank = int(sys.argv[2]) if len(sys.argv) > 2 else None
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = tiny_model()
    data = tiny_data()
    if rank == fail_rank:
        data = FailAt(data, 3)
    attribute_dataset(model, data, out, resume=True, **SETTINGS)
    with open(f"{out}.{rank}.json", "w") as f:
        json.dump({"predicted": model.predicted, "exists": os.path.exists(out)}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
