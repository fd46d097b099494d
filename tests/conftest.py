"""Shared fixtures: devices and dtypes, a CPU-friendly torch set-up."""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

# One thread per test process: the tests' tensors are tiny, and on a busy 2-core machine
# two threads made small ops ~25x slower (contention). Under pytest-xdist, two workers on
# two cores then use the machine fully.
torch.set_num_threads(1)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Every available device: CPU always, CUDA when present."""
    return torch.device(request.param)


@pytest.fixture
def cuda_device() -> torch.device:
    """A CUDA device, or the test is skipped."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return torch.device("cuda")


@pytest.fixture(params=[torch.float32, torch.float64], ids=["f32", "f64"])
def dtype(request) -> torch.dtype:
    """The float dtypes every op must support exactly."""
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    torch.manual_seed(0)
