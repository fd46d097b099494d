"""The rank view beside the Fourier view: spectra, Fourier heat maps, contributions.

The same models drawn in both views, so that one figure shows whether a model's
dependence on input rank (:func:`~captum_rig.rank_spectrum`,
:func:`~captum_rig.rank_contributions`) and on spatial frequency
(:func:`~captum_rig.fourier.frequency_spectrum`,
:func:`~captum_rig.fourier.frequency_contributions`,
:func:`~captum_rig.fourier.fourier_heat_map`) tell the same story. A model keeps its
colour in every panel of a figure; heat maps share one colour scale.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
    Yin, Lopes, Shlens, Cubuk, Gilmer. A Fourier Perspective on Model Robustness in
    Computer Vision. NeurIPS 2019.
"""

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from captum_rig._checks import check_choice, check_real
from captum_rig.fourier import FrequencySpectrum
from captum_rig.spectrum import RankSpectrum
from captum_rig.viz._figure import figure_and_axes, set_title, standalone_figure

__all__ = [
    "plot_filter_spectra",
    "plot_rank_and_frequency_spectra",
    "plot_fourier_heat_maps",
    "plot_frequency_contributions",
    "plot_rank_and_frequency_contributions",
]

Spectra = Union[RankSpectrum, FrequencySpectrum, Mapping[str, Any]]
Contributions = Union[Tensor, Mapping[str, Tensor]]

_METRICS = ("agreement", "accuracy")
# The y label of a share: the curves are divided by the sum over the bands, which is
# F(x) - F(0) only up to the quadrature error.
SHARE_LABEL = "share of the bands' sum\n(≈ F(x) − F(0))"


def _title(fig: Any, title: Optional[str]) -> None:
    """The title of a figure (wrapped to its width) or of a subfigure (as given)."""
    if title and not hasattr(fig, "get_figwidth"):  # a SubFigure: its parent sets the width
        fig.suptitle(title)
    else:
        set_title(fig, title)


def _items(values: Any, name: str, kinds: Tuple[type, ...]) -> List[Tuple[Optional[str], Any]]:
    """``[(label or None, value)]`` of one value or a non-empty ``{label: value}``."""
    if isinstance(values, kinds):
        return [(None, values)]
    if not isinstance(values, Mapping) or not values:
        raise TypeError(f"{name} must be a non-empty dict of label -> value, or one value")
    for label, value in values.items():
        if not isinstance(value, kinds):
            want = " or ".join(k.__name__ for k in kinds)
            raise TypeError(f"{name}[{label!r}] must be a {want}, got {type(value).__name__}")
    return [(str(label), value) for label, value in values.items()]


def _axis(spectrum: Any) -> Tuple[List[float], str]:
    """A spectrum's axis values and its x label."""
    kept = "removed" if spectrum.reverse else "kept"
    if isinstance(spectrum, FrequencySpectrum):
        return list(spectrum.radii), f"r (frequencies of radius ≤ r {kept})"
    return list(spectrum.ranks), f"k (top k ranks {kept})"


def _ylabel(spectrum: Any, metric: str) -> str:
    if metric == "accuracy":
        return "top-1 accuracy"
    if isinstance(spectrum, FrequencySpectrum):
        return "agreement with the unfiltered prediction"
    return "agreement with full-rank prediction"


def plot_filter_spectra(
    spectra: Spectra,
    metric: str = "agreement",
    ax: Optional[Axes] = None,
    *,
    chance: Optional[float] = None,
    title: Optional[str] = None,
    colors: Optional[Mapping[str, Any]] = None,
    legend: bool = True,
) -> Tuple[Figure, Axes]:
    r"""Rank spectra or frequency spectra of several models, one curve each.

    Args:
        spectra (spectrum or dict[str, spectrum]): :class:`~captum_rig.RankSpectrum` or
            :class:`~captum_rig.fourier.FrequencySpectrum` objects, all of one kind and
            one ``reverse``, labelled by model.
        metric (str): ``"agreement"`` or ``"accuracy"`` (needs labels).
        ax (Axes, optional): draw here; None: a new figure.
        chance (float, optional): draws a dotted line at this accuracy (e.g.
            ``1 / classes``).
        title (str, optional): axes title.
        colors (dict[str, colour], optional): a colour per label (default: the colour
            cycle in order).
        legend (bool): draw a legend right of the axes when the curves are labelled.

    Returns:
        (Figure, Axes): the figure and the axes drawn on.

    Examples:
        >>> from captum_rig.fourier import FrequencySpectrum
        >>> a = FrequencySpectrum([0, 2, 4], [0.2, 0.7, 1.0], None, 10)
        >>> b = FrequencySpectrum([0, 2, 4], [0.1, 0.4, 1.0], None, 10)
        >>> fig, ax = plot_filter_spectra({"natural": a, "robust": b})
        >>> len(ax.lines), ax.get_xlabel()
        (2, 'r (frequencies of radius ≤ r kept)')
    """
    items = _items(spectra, "spectra", (RankSpectrum, FrequencySpectrum))
    metric = check_choice(metric, "metric", _METRICS)
    first = items[0][1]
    if any(type(s) is not type(first) or s.reverse != first.reverse for _, s in items):
        raise ValueError("spectra must be of one kind (rank or frequency) and one reverse flag")
    fig, ax = figure_and_axes(ax, (5, 3.5))
    for i, (label, s) in enumerate(items):
        values = getattr(s, metric)
        if values is None:
            raise ValueError(f"spectra[{label!r}] has no accuracy: count it with labels")
        x, _ = _axis(s)
        color = (colors or {}).get(label, f"C{i}")
        ax.plot(x, values, marker="o" if len(x) <= 40 else None, ms=3, color=color, label=label)
    if chance is not None:
        chance = check_real(chance, "chance")
        ax.axhline(chance, color="0.5", lw=0.8, ls=":", label="chance")
    ax.set_xlabel(_axis(first)[1])
    ax.set_ylabel(_ylabel(first, metric))
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    if legend and (chance is not None or items[0][0] is not None):
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, fontsize="small")
    return fig, ax


def _pair_axes(axes: Optional[Sequence[Axes]], figsize: Tuple[float, float]) -> Tuple[Figure, Any]:
    """Two axes side by side: ``axes`` as given, or a new standalone figure's."""
    if axes is None:
        fig = standalone_figure(figsize)
        return fig, fig.subplots(1, 2)
    if len(axes) != 2:
        raise ValueError(f"axes must be two Axes (rank, frequency), got {len(axes)}")
    return axes[0].figure, axes


def _colors(*labelled: Mapping[str, Any]) -> Dict[str, str]:
    """One colour per label, in the order the labels first appear."""
    labels = dict.fromkeys(str(k) for d in labelled if isinstance(d, Mapping) for k in d)
    return {label: f"C{i}" for i, label in enumerate(labels)}


def plot_rank_and_frequency_spectra(
    rank_spectra: Spectra,
    frequency_spectra: Spectra,
    metric: str = "accuracy",
    *,
    chance: Optional[float] = None,
    title: Optional[str] = None,
    axes: Optional[Sequence[Axes]] = None,
) -> Tuple[Figure, Any]:
    r"""The rank spectrum (left) and the frequency spectrum (right) of the same models.

    Each model has one colour in both panels, so that a model that holds its accuracy
    down to a low rank but not to a low radius (or the other way round) shows at a
    glance. The legend sits right of the right panel.

    Args:
        rank_spectra (dict[str, RankSpectrum]): per model, from
            :func:`~captum_rig.rank_spectrum`.
        frequency_spectra (dict[str, FrequencySpectrum]): per model, from
            :func:`~captum_rig.fourier.frequency_spectrum`.
        metric (str): ``"accuracy"`` (default) or ``"agreement"``.
        chance (float, optional): a dotted chance line in both panels.
        title (str, optional): the figure's title.
        axes (pair of Axes, optional): draw here (e.g. one row of a larger grid); None:
            a new figure.

    Returns:
        (Figure, array of two Axes): the figure and the (rank, frequency) axes.

    Examples:
        >>> from captum_rig import RankSpectrum
        >>> from captum_rig.fourier import FrequencySpectrum
        >>> ranks = {"a": RankSpectrum([0, 4, 8], [0.2, 0.9, 1.0], [0.1, 0.8, 0.9], 10)}
        >>> radii = {"a": FrequencySpectrum([0, 3, 6], [0.2, 0.5, 1.0], [0.1, 0.4, 0.9], 10)}
        >>> fig, (left, right) = plot_rank_and_frequency_spectra(ranks, radii, chance=0.1)
        >>> left.get_xlabel(), right.get_ylabel()
        ('k (top k ranks kept)', 'top-1 accuracy')
    """
    fig, axes = _pair_axes(axes, (9, 3.4))
    colors = _colors(rank_spectra, frequency_spectra)
    plot_filter_spectra(
        rank_spectra, metric, axes[0], chance=chance, colors=colors, legend=False,
        title="by rank (SVD)",
    )  # fmt: skip
    plot_filter_spectra(
        frequency_spectra, metric, axes[1], chance=chance, colors=colors,
        title="by spatial frequency (DFT)",
    )  # fmt: skip
    _title(fig, title)
    return fig, axes


def plot_fourier_heat_maps(
    maps: Union[Tensor, Mapping[str, Tensor]],
    *,
    vmax: Optional[float] = None,
    title: Optional[str] = None,
    panel_size: float = 2.6,
    cmap: str = "viridis",
    axes: Optional[Sequence[Axes]] = None,
) -> Tuple[Figure, Any]:
    r"""Fourier heat maps of several models side by side, on one colour scale.

    Each panel is one model's :func:`~captum_rig.fourier.fourier_heat_map`: the error
    rate under a perturbation along each Fourier basis image, the zero frequency at the
    centre (``f_x`` to the right, ``f_y`` up). One colour scale from 0 to ``vmax`` and
    one colour bar serve every panel, so equal colour means an equal error rate.

    Args:
        maps (Tensor or dict[str, Tensor]): ``(H, W)`` error rates in [0, 1] per model.
        vmax (float, optional): the top of the colour scale; None: the largest rate of
            all maps (at least 0.01, so an all-zero map stays dark).
        title (str, optional): the figure's title (e.g. the ``eps`` and the images).
        panel_size (float): inches per panel.
        cmap (str): matplotlib colour map.
        axes (sequence of Axes, optional): one per map, to draw into (e.g. one row of a
            larger grid); None: a new figure.

    Returns:
        (Figure, array of Axes): the figure and one axes per map.

    Examples:
        >>> import torch
        >>> maps = {"natural": torch.rand(8, 8), "robust": torch.rand(8, 8) / 2}
        >>> fig, axes = plot_fourier_heat_maps(maps, title="eps = 4")
        >>> len(axes), axes[0].get_xlabel()
        (2, 'f_x')
    """
    items = _items(maps, "maps", (Tensor,))
    arrays = []
    for label, heat in items:
        if heat.dim() != 2 or heat.is_complex():
            raise ValueError(f"maps[{label!r}] must be an (H, W) tensor, got {tuple(heat.shape)}")
        arrays.append(heat.detach().double().cpu().numpy())
    if any(not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1 for a in arrays):
        raise ValueError("maps must hold error rates in [0, 1]")
    top = max(max(float(a.max()) for a in arrays), 0.01) if vmax is None else vmax
    top = check_real(top, "vmax", strict=True)
    if axes is None:
        fig = standalone_figure((panel_size * len(items) + 1.0, panel_size + 0.6))
        axes = fig.subplots(1, len(items), squeeze=False)[0]
    elif len(axes) != len(items):
        raise ValueError(f"axes must be one Axes per map ({len(items)}), got {len(axes)}")
    else:
        fig = axes[0].figure
    for ax, (label, _), heat in zip(axes, items, arrays):
        h, w = heat.shape
        extent = (-(w // 2) - 0.5, w - w // 2 - 0.5, -(h // 2) - 0.5, h - h // 2 - 0.5)
        image = ax.imshow(
            heat[::-1], extent=extent, vmin=0.0, vmax=top, cmap=cmap, interpolation="nearest"
        )
        ax.set_xlabel("f_x")
        if label is not None:
            ax.set_title(label, fontsize="medium")
    axes[0].set_ylabel("f_y")
    fig.colorbar(image, ax=list(axes), label="error rate", shrink=0.9)
    _title(fig, title)
    return fig, axes


def _shares(values: Any, n_bands: int, name: str) -> np.ndarray:
    """Per band: the share of the sum over images, channels and bands."""
    if not isinstance(values, Tensor) or values.dim() != 3 or values.shape[-1] != n_bands:
        got = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(f"{name} must be a tensor (N, C, {n_bands}), got {got}")
    per_band = values.detach().double().sum(dim=(0, 1)).cpu().numpy()
    total = per_band.sum()
    if not np.isfinite(total) or abs(total) < 1e-12:
        raise ValueError(f"{name} sums to {total}: there is no total to take shares of")
    return per_band / total


def _radius_edges(bands: Optional[Sequence[float]], m: int) -> np.ndarray:
    """The ``m`` band edges as floats: ``bands`` checked, or ``0, 1, ..., m - 1``."""
    edges = np.arange(m, dtype=float) if bands is None else np.asarray(list(bands), dtype=float)
    if edges.ndim != 1 or len(edges) != m or np.any(edges < 0) or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bands must be the {m} increasing radii >= 0 of the contributions")
    return edges


def plot_frequency_contributions(
    contributions: Contributions,
    bands: Optional[Sequence[float]] = None,
    cumulative: bool = True,
    ax: Optional[Axes] = None,
    title: Optional[str] = None,
    colors: Optional[Mapping[str, Any]] = None,
) -> Tuple[Figure, Axes]:
    r"""Where in the frequencies a model's evidence comes from: frequency contributions
    as shares.

    Each curve sums :func:`~captum_rig.fourier.frequency_contributions` over images and
    channels and divides by the sum over the bands (``F(x) - F(0)`` up to the quadrature
    error): ``cumulative=True`` draws the share carried by the frequencies of radius
    ``<= r`` at each band edge ``r`` (1 at the last); ``cumulative=False`` each band's
    own share as steps over its radii ``(r_{j-1}, r_j]``.

    Args:
        contributions (Tensor or dict[str, Tensor]): ``(N, C, m)`` per model.
        bands (sequence of float, optional): the ``m`` band edges ``r_1 < ... < r_m`` the
            contributions were computed with; None: ``0, 1, ..., m - 1`` (the library's
            default bands).
        cumulative (bool): cumulative shares (True) or per band shares (False).
        ax (Axes, optional): draw here; None: a new figure.
        title (str, optional): axes title.
        colors (dict[str, colour], optional): a colour per label.

    Returns:
        (Figure, Axes): the figure and the axes drawn on.

    Examples:
        >>> import torch
        >>> c = torch.tensor([[[2.0, 1.0, 1.0]]])  # (N=1, C=1, m=3): radii 0, 1, 2
        >>> fig, ax = plot_frequency_contributions({"model": c})
        >>> ax.lines[-1].get_ydata().tolist()
        [0.5, 0.75, 1.0]
    """
    items = _items(contributions, "contributions", (Tensor,))
    fig, ax = figure_and_axes(ax, (5, 3.5))
    ax.axhline(1.0 if cumulative else 0.0, color="0.6", linewidth=0.8)
    for i, (label, values) in enumerate(items):
        name = "contributions" if label is None else f"contributions[{label!r}]"
        m = values.shape[-1] if isinstance(values, Tensor) and values.dim() == 3 else 0
        edges = _radius_edges(bands, m)
        shares = _shares(values, m, name)
        color = (colors or {}).get(label, f"C{i}")
        if cumulative:
            marker = "o" if m <= 40 else None
            ax.plot(edges, np.cumsum(shares), marker=marker, ms=3, color=color, label=label)
        else:  # band j covers (r_{j-1}, r_j]; the first from radius 0
            x = np.concatenate([[0.0], edges])
            y = np.concatenate([shares[:1], shares])
            ax.step(x, y, where="pre", color=color, label=label)
    ax.set_xlabel("r (frequencies of radius ≤ r)" if cumulative else "radius")
    ax.set_ylabel(f"cumulative {SHARE_LABEL}" if cumulative else SHARE_LABEL)
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    if items[0][0] is not None:
        ax.legend(fontsize="small")
    return fig, ax


def plot_rank_and_frequency_contributions(
    rank_contributions: Contributions,
    frequency_contributions: Contributions,
    rank_bands: Optional[Sequence[int]] = None,
    frequency_bands: Optional[Sequence[float]] = None,
    cumulative: bool = True,
    *,
    title: Optional[str] = None,
    axes: Optional[Sequence[Axes]] = None,
) -> Tuple[Figure, Any]:
    r"""Rank contributions (left) next to frequency contributions (right), per model.

    The left panel is :func:`~captum_rig.viz.plot_rank_contributions` (shares by
    singular component), the right :func:`plot_frequency_contributions` (shares by
    radius band); a model has one colour in both.

    Args:
        rank_contributions (dict[str, Tensor]): ``(N, C, m)`` per model from
            :func:`~captum_rig.rank_contributions`.
        frequency_contributions (dict[str, Tensor]): ``(N, C, m')`` per model from
            :func:`~captum_rig.fourier.frequency_contributions`.
        rank_bands (sequence of int, optional): the rank band edges ``0 = r_0 < ... <
            r_m``; None: one band per rank.
        frequency_bands (sequence of float, optional): the radius band edges
            ``r_1 < ... < r_m'``; None: ``0, 1, ..., m' - 1``.
        cumulative (bool): cumulative shares (True) or per band shares (False).
        title (str, optional): the figure's title.
        axes (pair of Axes, optional): draw here; None: a new figure.

    Returns:
        (Figure, array of two Axes): the figure and the (rank, frequency) axes.

    Examples:
        >>> import torch
        >>> ranks = {"a": torch.tensor([[[3.0, 1.0, 0.0, 0.0]]])}
        >>> radii = {"a": torch.tensor([[[2.0, 1.0, 1.0]]])}
        >>> fig, axes = plot_rank_and_frequency_contributions(ranks, radii)
        >>> axes[1].lines[-1].get_ydata().tolist()
        [0.5, 0.75, 1.0]
    """
    from captum_rig.viz.curves import plot_rank_contributions

    fig, axes = _pair_axes(axes, (9, 3.4))
    colors = _colors(rank_contributions, frequency_contributions)
    ranks = dict(_items(rank_contributions, "rank_contributions", (Tensor,)))
    # the rank panel draws its curves in the colour cycle's order: the labels' order
    ordered = {label: ranks[label] for label in colors if label in ranks} if colors else ranks
    plot_rank_contributions(
        ordered if colors else ranks[None], bands=rank_bands, cumulative=cumulative,
        ax=axes[0], title="by rank (singular components)",
    )  # fmt: skip
    axes[0].set_ylabel(f"cumulative {SHARE_LABEL}" if cumulative else SHARE_LABEL)
    plot_frequency_contributions(
        frequency_contributions, frequency_bands, cumulative, axes[1],
        title="by spatial frequency (radius bands)", colors=colors,
    )  # fmt: skip
    _title(fig, title)
    return fig, axes
