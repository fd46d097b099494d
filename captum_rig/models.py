"""Models and their normalization: ``Normalize`` inside the model, CIFAR-sized networks,
the demo's two shipped CNNs.

Rank truncation works on images in [0, 1] pixel space (see :func:`with_normalization`),
so the models here take [0, 1] images and carry their own ``Normalize`` as a first layer.
This module is the one home of ``Normalize``, :func:`with_normalization` and the
CIFAR-10 / ImageNet statistics.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

from pathlib import Path
from typing import Callable, Dict, Sequence

import torch
from torch import Tensor, nn

from captum_rig._checks import check_int

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Normalize",
    "with_normalization",
    "SmallCNN",
    "cifar_model",
    "MODEL_NAMES",
    "ASSETS",
    "DEMO_MODELS",
    "DEMO_INPUT_SIZE",
    "SHAPES_MEAN",
    "SHAPES_STD",
    "build_demo_model",
    "load_demo_model",
]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _as_stat(values: Sequence[float], name: str) -> Tensor:
    try:
        t = torch.as_tensor(values, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a sequence of floats, got {values!r}") from None
    if t.dim() == 0:
        t = t.reshape(1)
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-d sequence (one value per channel)")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf values")
    return t


class Normalize(nn.Module):
    r"""``(x - mean) / std`` per channel, as a layer (torchvision's ``Normalize`` for batches).

    ``mean`` and ``std`` are buffers, so they follow ``.to(device)`` and are saved in the
    ``state_dict``.

    Args:
        mean (sequence of float): one value per channel.
        std (sequence of float): one positive value per channel, as long as ``mean``.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``, float, ``C == len(mean)``.
        - Output: same as input.

    Examples:
        >>> norm = Normalize(CIFAR10_MEAN, CIFAR10_STD)
        >>> norm(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t, std_t = _as_stat(mean, "mean"), _as_stat(std, "std")
        if mean_t.numel() != std_t.numel():
            raise ValueError(
                f"mean and std must have one value per channel each, got {mean_t.numel()} "
                f"and {std_t.numel()}"
            )
        if bool((std_t <= 0).any()):
            raise ValueError(f"std must be positive, got {std_t.tolist()}")
        self.register_buffer("mean", mean_t.view(-1, 1, 1))
        self.register_buffer("std", std_t.view(-1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 3 or x.shape[-3] != self.mean.shape[0]:
            raise ValueError(
                f"x must have shape (N, C, H, W) or (C, H, W) with C = {self.mean.shape[0]}, "
                f"got shape {tuple(x.shape)}"
            )
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def with_normalization(
    model: nn.Module, mean: Sequence[float], std: Sequence[float]
) -> nn.Sequential:
    r"""Returns ``nn.Sequential(Normalize(mean, std), model)``: a model that takes [0, 1] images.

    Why: captum-rig truncates ranks in [0, 1] pixel space, *before* normalization, as the
    paper does. The SVD is not shift-invariant: a normalized channel is
    ``(X - m·1 1ᵀ) / s``, and subtracting the rank-one matrix ``m·1 1ᵀ`` changes every
    singular value and vector, so "the rank-k image" of a normalized image is a different
    image (and its rank 0 is not black but the mean colour). Putting the normalization
    inside the model lets every tool here (low-rank images, RIG's rank path, rank spectra)
    work on the pixels the user sees, while the model still gets its normalized inputs.

    ``model`` is not copied or changed; the returned module shares its parameters.

    Args:
        model (nn.Module): a model that expects normalized inputs.
        mean (sequence of float): per-channel mean used in training, e.g. ``CIFAR10_MEAN``.
        std (sequence of float): per-channel std used in training, e.g. ``CIFAR10_STD``.

    Returns:
        nn.Sequential: ``Normalize`` at index 0, ``model`` at index 1.

    Examples:
        >>> net = with_normalization(nn.Flatten(), IMAGENET_MEAN, IMAGENET_STD)
        >>> net(torch.ones(1, 3, 2, 2)).shape
        torch.Size([1, 12])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return nn.Sequential(Normalize(mean, std), model)


class SmallCNN(nn.Module):
    r"""A small, fast CNN for 32×32-ish images: three conv blocks and a linear head.

    Meant for tests, demos and the miniature study, not for accuracy records.

    Args:
        num_classes (int): number of outputs.
        in_channels (int): input channels. Default: 3.
        width (int): channels of the first block; the next two have 2× and 4×. Default: 16.

    Shape:
        - Input: ``(N, in_channels, H, W)`` with ``H, W >= 8``.
        - Output: ``(N, num_classes)`` logits.

    Examples:
        >>> SmallCNN(10)(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        num_classes = check_int(num_classes, name="num_classes", low=1)
        in_channels = check_int(in_channels, name="in_channels", low=1)
        width = check_int(width, name="width", low=1)
        layers = []
        c_in = in_channels
        for c_out in (width, 2 * width, 4 * width):
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _cifar_resnet(name: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        import torchvision

        net = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        # The usual CIFAR adaptation: a 3×3 stride-1 stem and no max-pool, so that 32×32
        # inputs are not shrunk to 8×8 before the first residual block.
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        return net

    return build


def _torchvision(name: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        import torchvision

        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)

    return build


_MODELS: Dict[str, Callable[[int], nn.Module]] = {
    "small_cnn": lambda num_classes: SmallCNN(num_classes),
    "resnet18": _cifar_resnet("resnet18"),
    "resnet34": _cifar_resnet("resnet34"),
    "resnet50": _cifar_resnet("resnet50"),
    "vgg11_bn": _torchvision("vgg11_bn"),
    "mobilenet_v3_small": _torchvision("mobilenet_v3_small"),
}
MODEL_NAMES = tuple(_MODELS)


def cifar_model(
    name: str,
    num_classes: int = 10,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
) -> nn.Sequential:
    r"""A randomly initialised model for 32×32 images in [0, 1], normalization included.

    ResNets are torchvision's with the common CIFAR stem (3×3 conv, stride 1, no
    max-pool); other torchvision names are used as they are; ``"small_cnn"`` is
    :class:`SmallCNN`. Nothing is downloaded (``weights=None``).

    Args:
        name (str): one of :data:`MODEL_NAMES`.
        num_classes (int): number of outputs. Default: 10.
        mean (sequence of float): normalization mean. Default: CIFAR-10's.
        std (sequence of float): normalization std. Default: CIFAR-10's.

    Returns:
        nn.Sequential: ``with_normalization(net, mean, std)``.

    Examples:
        >>> cifar_model("small_cnn", 6)(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 6])
    """
    if name not in _MODELS:
        raise ValueError(f"name must be one of {list(MODEL_NAMES)}, got {name!r}")
    num_classes = check_int(num_classes, name="num_classes", low=1)
    return with_normalization(_MODELS[name](num_classes), mean, std)


ASSETS = Path(__file__).resolve().parent / "assets"
"""Folder of the shipped demo data (model weights and photographs)."""

DEMO_MODELS: Dict[str, str] = {
    "natural": "demo_natural.pt",
    "lowrank8": "demo_lowrank8.pt",
}
"""Demo model name → weights file in :data:`ASSETS` (a ``state_dict``)."""

DEMO_INPUT_SIZE = 32
"""Side of the square images the demo models were trained on (the synthetic shapes)."""

SHAPES_MEAN = (0.5, 0.5, 0.5)
"""Per-channel mean the demo models standardize with, inside the model."""

SHAPES_STD = (0.25, 0.25, 0.25)
"""Per-channel std the demo models standardize with, inside the model."""


def build_demo_model(num_classes: int = 6) -> nn.Sequential:
    r"""The demo's tiny CNN (≈ 24k parameters), randomly initialised.

    Per-channel standardization first (the model takes [0, 1] pixels, so that ranks are
    truncated in pixel space), then three 3×3 conv + BatchNorm + ReLU blocks (16, 32, 64
    channels, max-pooling after the first two), global average pooling and a linear head.
    Works on any image size ``>= 4``; trained on 32×32.

    Args:
        num_classes (int): number of outputs. Default: 6, the synthetic shapes.

    Returns:
        nn.Sequential: maps ``(N, 3, H, W)`` images in [0, 1] to ``(N, num_classes)``
        logits.

    Examples:
        >>> build_demo_model()(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 6])
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")

    def block(c_in: int, c_out: int, pool: bool) -> list:
        layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)]
        return layers + [nn.ReLU()] + ([nn.MaxPool2d(2)] if pool else [])

    return nn.Sequential(
        Normalize(SHAPES_MEAN, SHAPES_STD),
        *block(3, 16, True),
        *block(16, 32, True),
        *block(32, 64, False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )


def load_demo_model(name: str = "natural") -> nn.Sequential:
    r"""A shipped demo model, in eval mode, weights loaded with ``weights_only=True``.

    Both classify the six synthetic shapes (:data:`captum_rig.synthetic.SHAPES`, in that
    order) in 32×32 images in [0, 1]; on the command line they are ``--model demo:natural``
    and ``--model demo:lowrank8``.

    Args:
        name (str): ``"natural"`` (trained on the synthetic shapes as they are) or
            ``"lowrank8"`` (trained on their rank-8 approximations).

    Returns:
        nn.Sequential: :func:`build_demo_model` with the trained weights.

    Examples:
        >>> load_demo_model("natural")(torch.rand(1, 3, 32, 32)).shape
        torch.Size([1, 6])
    """
    if name not in DEMO_MODELS:
        raise ValueError(f"name must be one of {list(DEMO_MODELS)}, got {name!r}")
    model = build_demo_model()
    state = torch.load(ASSETS / DEMO_MODELS[name], map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
