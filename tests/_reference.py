"""Independent references the tests compare against: written literally, not fast."""

import numpy as np
import torch
from torch import nn

try:
    from captum.testing.helpers.basic_models import BasicModel_ConvNet_One_Conv
except ImportError:  # captum < 0.8 ships no captum.testing; the same model, copied

    class BasicModel_ConvNet_One_Conv(nn.Module):  # noqa: N801 - Captum's name
        """Captum's one-conv test model: relu(conv) then relu(linear), fixed weights."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 2, 3, 1)
            self.fc1 = nn.Linear(8, 4)
            with torch.no_grad():
                self.conv1.weight.fill_(1.0)
                self.conv1.bias.copy_(torch.tensor([-50.0, -75.0]))
                self.fc1.weight.copy_(torch.cat([torch.ones(4, 5), -torch.ones(4, 3)], dim=1))
                self.fc1.bias.zero_()

        def forward(self, x, x2=None):
            if x2 is not None:
                x = x + x2
            x = torch.relu(self.conv1(x)).view(-1, 8)
            return torch.relu(self.fc1(x))


def numpy_rank_k(x: np.ndarray, k: int) -> np.ndarray:
    """Algorithm 1 as written: one SVD per image and channel, keep the top k terms."""
    out = np.zeros_like(x, dtype=np.float64)
    for index in np.ndindex(*x.shape[:-2]):
        u, s, vh = np.linalg.svd(x[index].astype(np.float64), full_matrices=False)
        s[k:] = 0
        out[index] = (u * s) @ vh
    return out


class SinModel(nn.Module):
    """F(x) = Σ sin(x) per example: every complete path method from 0 to x must give
    exactly sin(x_i) to pixel i, whatever the path."""

    def forward(self, x):
        return torch.sin(x).flatten(1).sum(1, keepdim=True)


class TinyConvNet(nn.Module):
    """A small smooth CNN: (N, C, H, W) -> (N, classes) for any H, W >= 3.

    An identity at the input, a conv of ``width`` channels, the activation ``act``, an
    average pool to ``grid × grid``, a linear head; ``forward(x, scale=1.0)`` scales the logits (an
    additional forward argument). The identity and ``act`` are layers to attribute to.
    """

    def __init__(
        self,
        channels: int = 3,
        classes: int = 5,
        width: int = 6,
        padding: int = 1,
        act: type = nn.Softplus,
        grid: int = 2,
    ) -> None:
        super().__init__()
        self.inp = nn.Identity()
        self.conv = nn.Conv2d(channels, width, 3, padding=padding)
        self.act = act()
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.fc = nn.Linear(width * grid * grid, classes)

    def forward(self, x, scale=1.0):
        return self.fc(self.pool(self.act(self.conv(self.inp(x)))).flatten(1)) * scale


class CallLog(nn.Module):
    """Records every batch the wrapped model sees (for asserting the path itself)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.seen = []

    def forward(self, x, *args):
        self.seen.append(x.detach().clone())
        return self.model(x, *args)

    @property
    def calls(self) -> int:
        """Forward passes so far."""
        return len(self.seen)

    @property
    def examples(self) -> int:
        """Examples seen so far, over all passes."""
        return sum(len(x) for x in self.seen)


class LinearTwoClass(nn.Module):
    """Logits ``[0, w·x + b]``: predicts class 1 exactly where ``w·x + b > 0``, so the
    smallest perturbation that flips it has a closed form (distance to a hyperplane)."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.linear = nn.Linear(w.numel(), 1).to(w.dtype)
        with torch.no_grad():
            self.linear.weight.copy_(w.reshape(1, -1))
            self.linear.bias.fill_(b)

    def forward(self, x):
        z = self.linear(x.flatten(1))
        return torch.cat([torch.zeros_like(z), z], dim=1)


# The source of a user's model file: a small CNN factory ``make(num_classes=5)`` for
# 3×H×W images. CLI and loading tests append their own factories and write it to disk.
USER_MODEL_SOURCE = """
import os

import torch
from torch import nn

def make(num_classes=5):
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, num_classes),
    )
"""


# --------------------------------------------------------------------------- stability


class BufferNormalize(nn.Module):
    """``(x - mean) / std`` with buffers, like captum_rig.models.Normalize."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(-1, 1, 1))

    def forward(self, x):
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


def chain_model(dtype=torch.float64) -> nn.Sequential:
    """A plain chain with every kind of layer the stability analysis knows, on
    (N, 3, 8, 8) images; its BatchNorm has non-trivial statistics."""
    model = nn.Sequential(
        BufferNormalize([0.5, 0.4, 0.3], [0.2, 0.25, 0.3]),
        nn.Conv2d(3, 4, 3, stride=1, padding=1),
        nn.BatchNorm2d(4),
        nn.LeakyReLU(0.1),
        nn.MaxPool2d(3, stride=1, padding=1),
        nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1),
        nn.ReLU(inplace=True),
        nn.AvgPool2d(3, stride=1, padding=1),
        nn.Dropout(0.3),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 10),
        nn.Tanh(),
        nn.Linear(10, 5),
    ).to(dtype)
    with torch.no_grad():
        model[2].running_mean.uniform_(-0.5, 0.5)
        model[2].running_var.uniform_(0.1, 3.0)
        model[2].weight.uniform_(-2, 2)
    return model


def full_matrix(forward, shape) -> torch.Tensor:
    """The matrix of a linear map, by pushing an identity basis through it."""
    n = int(np.prod(shape))
    basis = torch.eye(n, dtype=torch.float64).view(n, *shape)
    return forward(basis).reshape(n, -1).T


def exact_conv_norm(conv: nn.Conv2d, shape) -> float:
    """The conv's largest singular value from its full matrix on ``shape`` inputs."""
    w = conv.weight.detach().double()
    return torch.linalg.matrix_norm(
        full_matrix(lambda v: conv._conv_forward(v, w, None), shape), 2
    ).item()


def empirical_ratio(model: nn.Module, x: torch.Tensor) -> float:
    """Largest ‖f(x) − f(y)‖ / ‖x − y‖ over random and close pairs around ``x``."""
    model.eval()
    y = torch.rand_like(x)
    close = x + 1e-3 * torch.randn_like(x)
    with torch.no_grad():
        ratios = [
            ((model(x) - model(o)).flatten(1).norm(dim=1) / (x - o).flatten(1).norm(dim=1)).max()
            for o in (y, close)
        ]
    return max(r.item() for r in ratios)


def hooks_left(model: nn.Module) -> list:
    """Names of submodules that still carry forward (pre-)hooks."""
    return [name for name, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks]
