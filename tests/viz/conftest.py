"""Fixtures of the figure tests: a smooth colour image with a bright square."""

import pytest
import torch


@pytest.fixture
def image() -> torch.Tensor:
    """A smooth 3×32×32 image in [0, 1] with a bright square: low rank, full of colour."""
    y, x = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    img = torch.stack([x, y, 0.5 * (x + y)])
    img[:, 10:20, 8:22] = torch.tensor([0.9, 0.2, 0.1]).view(3, 1, 1)
    return (img + 0.05 * torch.rand(3, 32, 32)).clamp(0, 1)
