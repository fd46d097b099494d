"""What the forward-only benchmarks share: their models, a timer and the bound itself.

``bench_spectrum.py`` and ``bench_fourier.py`` time a spectrum against the same number of
images pushed through the same model with nothing else done (the forward-only bound).
"""

import time
from typing import Callable, Dict, Sequence, Tuple

import torch
from torch import nn


def small_cnn(num_classes: int = 10) -> nn.Module:
    """A cheap CIFAR-style CNN: the worst case for the transform's share of the time."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 8 * 8, num_classes),
    )


def resnet18(num_classes: int) -> nn.Module:
    """torchvision ResNet-18, random weights (nothing is downloaded)."""
    import torchvision

    return torchvision.models.resnet18(weights=None, num_classes=num_classes)


CONFIGS: Dict[str, Tuple[Callable[[], nn.Module], int]] = {
    "cnn-32": (lambda: small_cnn(10), 32),
    "resnet18-32": (lambda: resnet18(10), 32),
    "resnet18-224": (lambda: resnet18(1000), 224),
}
"""Configuration name: (model builder, image size)."""


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Best wall-clock time of ``repeats`` calls (CUDA synchronized around each)."""
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def forward_only(
    model: nn.Module, n_images: int, image_shape: Sequence[int], batch_size: int, device
) -> None:
    """The bound: ``n_images`` images through the model, ``batch_size`` per forward."""
    x = torch.rand(min(batch_size, n_images), *image_shape, device=device)
    with torch.no_grad():
        for start in range(0, n_images, batch_size):
            model(x[: min(batch_size, n_images - start)]).argmax(1)
