"""Runs rank_spectrum under torchrun (gloo, CPU); each process writes its results as JSON.

Usage: python -m torch.distributed.run --standalone --nproc_per_node 2 \
    tests/_torchrun_spectrum.py OUT_DIR

Also importable: ``tiny_model``, ``tiny_data`` and ``problems`` give the same model and
data to the single-process side of the test.
"""

import json
import os
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


class Centre(nn.Module):
    """The model's own normalization: [0, 1] pixels to roughly [-2, 2]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - 0.5) * 4


def tiny_model() -> nn.Module:
    """A small float64 CNN, seeded so that its spectrum is far from flat."""
    torch.manual_seed(2)
    return nn.Sequential(
        Centre(),
        nn.Conv2d(3, 6, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, stride=2, bias=False),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 5, bias=False),
    ).double()


def tiny_data():
    """9 images (odd count: uneven shards) of 3x8x10, with labels."""
    g = torch.Generator().manual_seed(2)
    return torch.rand(9, 3, 8, 10, generator=g, dtype=torch.float64), torch.randint(
        5, (9,), generator=g
    )


def problems(distributed: bool):
    """name -> keyword arguments of rank_spectrum (besides model)."""
    x, y = tiny_data()
    loader = DataLoader(TensorDataset(x, y), batch_size=2)
    out = {
        "tensor": dict(data=x, labels=y, batch_size=4),
        "loader": dict(data=loader, reverse=True, ranks=[0, 1, 3, 8]),
    }
    # 8 images over 2 processes: DistributedSampler pads nothing, so counts are exact.
    sampler = (
        DistributedSampler(TensorDataset(x[:8], y[:8]), shuffle=False) if distributed else None
    )
    out["sampler"] = dict(
        data=DataLoader(TensorDataset(x[:8], y[:8]), batch_size=3, sampler=sampler)
    )
    return out


class Interrupted:
    """Yields the batches, but raises RuntimeError instead of batch number ``stop``."""

    def __init__(self, batches, stop: int) -> None:
        self.batches, self.stop = batches, stop

    def __iter__(self):
        for i, batch in enumerate(self.batches):
            if i == self.stop:
                raise RuntimeError("interrupted")
            yield batch


def main() -> None:
    import torch.distributed as dist

    from captum_rig.spectrum import rank_spectrum

    out_dir = sys.argv[1]
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = tiny_model()
    results = {}
    for name, kwargs in problems(distributed=True).items():
        results[name] = rank_spectrum(model, progress=False, **kwargs).to_dict()
    # Interrupted after 3 of 5 batches, then resumed: each process has its own file.
    x, y = tiny_data()
    batches = [(x[i : i + 2], y[i : i + 2]) for i in range(0, 9, 2)]
    checkpoint = os.path.join(out_dir, "spectrum.ckpt")
    try:
        rank_spectrum(model, Interrupted(batches, 3), progress=False, checkpoint=checkpoint)
    except RuntimeError:
        pass
    results["checkpoint_written"] = os.path.exists(f"{checkpoint}.{rank}-of-2")
    results["resumed"] = rank_spectrum(
        model, batches, progress=False, checkpoint=checkpoint
    ).to_dict()
    results["checkpoint_left"] = os.path.exists(f"{checkpoint}.{rank}-of-2")
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
