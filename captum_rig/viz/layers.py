"""Stability figures: weight and feature-map spectra of several models, layer by layer.

For the output of :func:`captum_rig.stability.weight_spectra` or
:func:`captum_rig.stability.feature_map_spectra` of each model.
"""

import math
import os
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


def _short_names(names: Sequence[str]) -> Dict[str, str]:
    """Panel labels: a prefix every name shares (a wrapper's ``model.``) dropped, and a
    bare module index (``"1"``) spelled as ``"layer 1"``."""
    prefix = os.path.commonprefix([n + "." for n in names]) if len(names) > 1 else ""
    prefix = prefix[: prefix.rfind(".") + 1]
    short = {}
    for name in names:
        label = name[len(prefix) :] or name
        short[name] = f"layer {label}" if label.replace(".", "").isdigit() else label
    return short


def _headroom(ax: Axes, top: float) -> None:
    """A log axis that ends on a labelled decade at or above the largest value."""
    if np.isfinite(top) and top > 0:
        ax.set_ylim(top=10 ** math.ceil(math.log10(top) + 1e-9))


def _plain_log_ticks(ax: Axes) -> None:
    """Tick labels of a log axis as plain numbers (2, 3, 5 rather than 2×10⁰) when it
    spans two decades at most; beyond that, decades only."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    low, high = ax.get_ylim()
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    if high / max(low, 1e-300) > 100:
        ax.yaxis.set_minor_formatter(NullFormatter())
        return

    def minor(value: float, _: Any) -> str:  # 2, 3 and 5 of each decade: room to read
        return f"{value:g}" if f"{value:.0e}"[0] in "235" else ""

    ax.yaxis.set_minor_formatter(FuncFormatter(minor))


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
    labels = _short_names(list(layers))
    for ax, layer in zip(axes.flat, layers):
        top = 0.0
        for model, values in data.items():
            y = values[layer]
            if normalize and y.size and y.max() > 0:
                y = y / y.max()
            # a few values are points, not a curve (a 2-class head has two)
            style = "o" if y.size <= 8 else "-"
            ax.semilogy(np.arange(1, y.size + 1), np.maximum(y, 1e-12), style, label=model,
                        lw=1.4, ms=4)  # fmt: skip
            top = max(top, float(y.max()) if y.size else 0.0)
        _headroom(ax, top)
        size = max(values[layer].size for values in data.values())
        ax.set_title(f"{labels[layer]} ({size} values)", fontsize="small")
        ax.set_xlabel("index i", fontsize="small")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(layers) :]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("σ_i / σ_1" if normalize else "σ_i")
    axes[0, 0].legend(fontsize="x-small")
    if title:
        fig.suptitle(title)
    return fig, axes


def _report_norms(reports: Mapping[str, Any]) -> Dict[str, Dict[str, np.ndarray]]:
    """``{model: {factor: [norm]}}`` from Lipschitz reports (their per-layer table)."""
    data = {}
    for model, report in reports.items():
        rows = report.factors()
        data[str(model)] = {
            r.name: np.array([r.norm if r.norm is not None else np.nan]) for r in rows
        }
    return data


def plot_layer_norms(
    spectra: Any,
    title: Optional[str] = None,
    ax: Optional[Axes] = None,
) -> Tuple[Figure, Axes]:
    r"""Each layer's norm, one line per model: the factors of the Lipschitz bound.

    Given :class:`~captum_rig.stability.LipschitzReport` objects (one, or model name →
    report) it draws the per-layer table of
    :meth:`~captum_rig.stability.LipschitzReport.to_markdown`: every layer's (and
    residual block's) operator norm on the input it sees, certified unless the report
    says "estimate", whose product is the bound for a chain. Given
    :func:`captum_rig.stability.weight_spectra` it draws each weight's largest singular
    value, which is *not* a convolution's operator norm (that depends on the input size),
    and with :func:`~captum_rig.stability.feature_map_spectra` the mean top singular value
    of the feature maps.

    Args:
        spectra (LipschitzReport or dict): a report, model name → report, or model name
            → layer name → values.
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
    if hasattr(spectra, "factors"):
        spectra = {"model": spectra}
    from_reports = isinstance(spectra, Mapping) and all(
        hasattr(v, "factors") for v in spectra.values()
    )
    data = _check_model_spectra(_report_norms(spectra) if from_reports else spectra)
    fig, ax = figure_and_axes(ax, (6.4, 3.4))
    names: List[str] = []
    for values in data.values():
        names += [k for k in values if k not in names]
    top = 0.0
    for model, values in data.items():
        x = [names.index(k) for k in values]
        norms = [v.max() if v.size else np.nan for v in values.values()]
        ax.plot(x, norms, "o-", label=model, lw=1.4, ms=3)
        top = max([top] + [v for v in norms if np.isfinite(v)])
    short = _short_names(names)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([short[n] for n in names], rotation=90, fontsize="x-small")
    ax.set_ylabel("operator norm (bound factor)" if from_reports else "largest singular value")
    ax.set_yscale("log")
    _headroom(ax, top)
    _plain_log_ticks(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return fig, ax
