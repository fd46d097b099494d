"""Singular values layer by layer: of every weight and of every feature map.

The feature-map counterpart of the paper's image spectra: how much of each layer's
signal lives in its top ranks.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.

    Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199.
"""

from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from captum_rig._checks import check_model, model_device
from captum_rig._context import eval_mode
from captum_rig.stability._stream import image_batches

__all__ = ["UNKNOWN_LAYERS", "weight_spectra", "feature_map_spectra"]

UNKNOWN_LAYERS = (
    "layers must name modules of the model (names from model.named_modules()), got "
    "unknown names {unknown}; some valid names: {valid}"
)


def weight_spectra(model: nn.Module) -> Dict[str, Tensor]:
    r"""Singular values of every ``Conv2d`` and ``Linear`` weight, by module name.

    A convolution's weight ``(out, in/groups, kh, kw)`` is reshaped to ``(out,
    in/groups·kh·kw)`` (the matrix that multiplies each unfolded input patch); a linear
    layer's ``(out, in)`` weight is taken as it is. Half-precision weights are upcast to
    float32.

    Args:
        model (nn.Module): the model (not modified).

    Returns:
        dict[str, Tensor]: ``named_modules()`` name (``"(model)"`` for the model itself)
        → singular values, descending, shape ``(min(out, in·kh·kw),)``, on the CPU.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 2))
        >>> {name: tuple(s.shape) for name, s in weight_spectra(net).items()}
        {'0': (8,), '2': (2,)}

    References:
        Jere, Kumar, Koushanfar. arXiv:2012.03516. Szegedy et al. arXiv:1312.6199.
    """
    model = check_model(model)
    spectra = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            weight = module.weight.detach()
            if weight.dtype in (torch.float16, torch.bfloat16):
                weight = weight.float()
            matrix = weight.reshape(weight.shape[0], -1)
            spectra[name or "(model)"] = torch.linalg.svdvals(matrix).cpu()
    return spectra


def _spectrum_layers(model: nn.Module, layers: Any) -> List[str]:
    modules = dict(model.named_modules())
    if layers is None:
        names = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
        if not names:
            raise ValueError("layers: the model has no Conv2d layer; name the layers to use")
        return names
    if isinstance(layers, str):
        layers = [layers]
    names = list(layers)
    unknown = [n for n in names if not isinstance(n, str) or n not in modules]
    if not names or unknown:
        valid = [n for n in modules if n][:6]
        raise ValueError(UNKNOWN_LAYERS.format(unknown=unknown or "(none given)", valid=valid))
    return names


def feature_map_spectra(
    model: nn.Module,
    data: Any,
    layers: Optional[Sequence[str]] = None,
    batch_size: int = 64,
) -> Dict[str, Tensor]:
    r"""Mean singular values of every H×W feature map of the given layers' outputs.

    The model runs on the images (eval mode, no grad, ``batch_size`` at a time) with
    forward hooks on the layers (removed afterwards). Each layer output ``(N, C, H, W)``
    gives ``N·C`` matrices of size ``H×W``; their singular values (descending, computed
    in at least float32) are averaged over images and channels: the feature-map
    counterpart of the paper's image spectra. Images from an iterable are read once and
    cut again into batches of ``batch_size``: memory holds one batch, and the result
    equals the call on the concatenated images.

    Args:
        model (nn.Module): maps ``(N, C, H, W)`` images in [0, 1] to anything.
        data (Tensor or iterable): images ``(N, C, H, W)`` in [0, 1], an ``(images,
            labels)`` pair, or an iterable of ``(images, labels)`` batches (or of images)
            such as a DataLoader; labels are not used.
        layers (sequence of str, optional): ``named_modules()`` names whose outputs are
            4-d; default every ``nn.Conv2d``. A layer called several times counts every
            call.
        batch_size (int): images per forward pass.

    Returns:
        dict[str, Tensor]: layer name → float64 ``(min(H, W),)`` on the CPU.

    Raises:
        ValueError: a name that is not a module of the model, a layer whose output is
            not ``(N, C, H, W)``, images outside [0, 1], batches of different image
            shapes, no image at all.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3))
        >>> {k: tuple(v.shape) for k, v in feature_map_spectra(net, torch.rand(2, 3, 8, 8)).items()}
        {'0': (8,), '2': (6,)}
        >>> loader = [(torch.rand(2, 3, 8, 8), torch.tensor([0, 1]))] * 3
        >>> feature_map_spectra(net, loader, layers=["2"])["2"].shape
        torch.Size([6])
    """
    model = check_model(model)
    batches, _ = image_batches(data, None, batch_size)
    names = _spectrum_layers(model, layers)
    sums = _MapSpectra(names)
    device = model_device(model)
    handles = []
    try:
        for name in names:
            handles.append(model.get_submodule(name).register_forward_hook(sums.hook(name)))
        with eval_mode(model), torch.no_grad():
            for images, _ in batches:
                model(images.to(device))
    finally:
        for handle in handles:
            handle.remove()
    return sums.means()


class _MapSpectra:
    """Sums of feature-map singular values per layer, and how many maps each adds up."""

    def __init__(self, names: List[str]) -> None:
        self.names = names
        self.sums: Dict[str, Tensor] = {}
        self.counts: Dict[str, int] = {name: 0 for name in names}

    def hook(self, name: str):
        """A forward hook that adds the singular values of the layer's output maps."""

        def record(module: nn.Module, args: Any, output: Any) -> None:
            if not isinstance(output, Tensor) or output.dim() != 4:
                shape = tuple(output.shape) if isinstance(output, Tensor) else type(output)
                raise ValueError(
                    f"layers: the output of {name!r} is {shape}, not a (N, C, H, W) tensor"
                )
            maps = output.detach()
            if maps.dtype not in (torch.float32, torch.float64):
                maps = maps.float()
            s = torch.linalg.svdvals(maps).sum((0, 1)).double().cpu()
            if name in self.sums and self.sums[name].shape != s.shape:
                raise ValueError(f"layers: {name!r} is called on inputs of different sizes")
            self.sums[name] = self.sums[name] + s if name in self.sums else s
            self.counts[name] += maps.shape[0] * maps.shape[1]

        return record

    def means(self) -> Dict[str, Tensor]:
        """Layer name → mean singular values; every layer must have been called."""
        missing = [name for name in self.names if not self.counts[name]]
        if missing:
            raise ValueError(f"layers {missing} were not called by the model's forward pass")
        return {name: self.sums[name] / self.counts[name] for name in self.names}
