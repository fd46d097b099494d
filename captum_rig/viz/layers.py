"""Stability figures: weight and feature-map spectra of several models, layer by layer.

For the output of :func:`captum_rig.stability.weight_spectra` or
:func:`captum_rig.stability.feature_map_spectra` of each model.
"""

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from captum_rig.viz._figure import figure_and_axes, standalone_figure

__all__ = ["plot_layer_spectra", "plot_layer_norms"]


def _check_model_spectra(spectra: Any) -> Dict[str, Dict[str, np.ndarray]]:
    """``{model: {layer: 1-d array}}`` from a mapping of mappings of singular values."""
    if not isinstance(spectra, Mapping) or not spectra:
        raise ValueError("spectra must be a non-empty dict: model name -> {layer: values}")
    checked = {}
    for model, layers in spectra.items():
        if not isinstance(layers, Mapping) or not layers:
            raise ValueError(f"spectra[{model!r}] must be a non-empty dict: layer -> values")
        checked[str(model)] = {
            str(k): np.asarray(torch.as_tensor(v).detach().cpu().double()).ravel()
            for k, v in layers.items()
        }
    return checked


def plot_layer_spectra(
    spectra: Mapping[str, Mapping[str, Any]],
    layers: Optional[Sequence[str]] = None,
    max_layers: int = 8,
    ncols: int = 4,
    normalize: bool = False,
    title: Optional[str] = None,
) -> Tuple[Figure, np.ndarray]:
    r"""Singular values of several models, one panel per layer, one line per model.

    For the output of :func:`captum_rig.stability.weight_spectra` or
    :func:`captum_rig.stability.feature_map_spectra` of each model (e.g. trained from
    scratch vs fine-tuned): each panel shows ``σ_i`` against ``i`` on a log scale.

    Args:
        spectra (dict[str, dict[str, Tensor]]): model name → layer name → ``(k,)``
            singular values.
        layers (sequence of str, optional): the layers to show; default the layers all
            models have, in the first model's order, ``max_layers`` of them evenly spaced.
        max_layers (int): panels at most, when ``layers`` is None.
        ncols (int): panels per row.
        normalize (bool): divide each curve by its largest value (compare shapes).
        title (str, optional): figure title.

    Returns:
        (fig, axes): the figure and a 2-d array of Axes (unused panels hidden).

    Examples:
        >>> from captum_rig.stability import weight_spectra
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 4, 3))
        >>> fig, axes = plot_layer_spectra({"a": weight_spectra(net)})
        >>> axes.shape
        (1, 2)
    """
    data = _check_model_spectra(spectra)
    first = next(iter(data.values()))
    if layers is None:
        common = [k for k in first if all(k in d for d in data.values())]
        if not common:
            raise ValueError("spectra: the models have no layer name in common")
        count = min(int(max_layers), len(common))
        picks = np.unique(np.linspace(0, len(common) - 1, max(count, 1)).round().astype(int))
        layers = [common[i] for i in picks]
    missing = [k for k in layers if not all(k in d for d in data.values())]
    if missing or not layers:
        raise ValueError(f"layers must be layers every model has, got unknown {missing}")
    ncols = max(1, min(int(ncols), len(layers)))
    nrows = -(-len(layers) // ncols)
    fig = standalone_figure((3.0 * ncols, 2.4 * nrows + (0.4 if title else 0.0)))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, layer in zip(axes.flat, layers):
        for model, values in data.items():
            y = values[layer]
            if normalize and y.size and y.max() > 0:
                y = y / y.max()
            ax.semilogy(np.arange(1, y.size + 1), np.maximum(y, 1e-12), label=model, lw=1.4)
        ax.set_title(layer, fontsize="small")
        ax.set_xlabel("index i", fontsize="small")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(layers) :]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("σ_i / σ_1" if normalize else "σ_i")
    axes[0, 0].legend(fontsize="x-small")
    if title:
        fig.suptitle(title)
    return fig, axes


def plot_layer_norms(
    spectra: Mapping[str, Mapping[str, Any]],
    title: Optional[str] = None,
    ax: Optional[Axes] = None,
) -> Tuple[Figure, Axes]:
    r"""The largest singular value of every layer, one line per model.

    With :func:`captum_rig.stability.weight_spectra` this is each weight's spectral
    norm layer by layer (the factors of the Lipschitz bound's product, up to the
    convolution's input size), with :func:`~captum_rig.stability.feature_map_spectra`
    the mean top singular value of the feature maps.

    Args:
        spectra (dict[str, dict[str, Tensor]]): model name → layer name → values.
        title (str, optional): axes title.
        ax (Axes, optional): draw here; None: a new figure.

    Returns:
        (fig, ax): the figure and the axes drawn on.

    Examples:
        >>> from captum_rig.stability import weight_spectra
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 4, 3))
        >>> fig, ax = plot_layer_norms({"a": weight_spectra(net)})
        >>> len(ax.get_lines())
        1
    """
    data = _check_model_spectra(spectra)
    fig, ax = figure_and_axes(ax, (6.4, 3.4))
    names: List[str] = []
    for values in data.values():
        names += [k for k in values if k not in names]
    for model, values in data.items():
        x = [names.index(k) for k in values]
        top = [v.max() if v.size else np.nan for v in values.values()]
        ax.plot(x, top, "o-", label=model, lw=1.4, ms=3)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize="x-small")
    ax.set_ylabel("largest singular value")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return fig, ax
