"""Curves: rank spectra (Algorithm 1, Fig. 7), their accuracy gap, rank contributions,
and any labelled line plot (deletion / insertion curves).

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516 (Algorithm 1, Fig. 7).
"""

from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from captum_rig._checks import check_choice, check_real
from captum_rig.spectrum import RankSpectrum, accuracy_gap
from captum_rig.viz._figure import figure_and_axes

__all__ = [
    "plot_curves",
    "plot_spectra",
    "plot_accuracy_gap",
    "plot_rank_contributions",
]

_METRICS = ("agreement", "accuracy")
_YLABELS = {"agreement": "agreement with full-rank prediction", "accuracy": "top-1 accuracy"}


def plot_curves(
    curves: Mapping[str, Tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str = "",
    ylabel: str = "",
    title: Optional[str] = None,
    ax: Optional[Axes] = None,
) -> Tuple[Figure, Axes]:
    r"""Labelled line plot of ``name → (x, y)`` curves, e.g. deletion/insertion curves.

    Args:
        curves (dict[str, (sequence, sequence)]): legend label → x and y values.
        xlabel (str): x-axis label.
        ylabel (str): y-axis label.
        title (str, optional): axes title.
        ax (Axes, optional): draw here; None: a new figure.

    Returns:
        (fig, ax): the figure and the axes drawn on.
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves must be a non-empty dict of name -> (x, y)")
    fig, ax = figure_and_axes(ax, (4.2, 3.2))
    for name, xy in curves.items():
        if not isinstance(xy, (tuple, list)) or len(xy) != 2 or len(xy[0]) != len(xy[1]):
            raise ValueError(f"curves[{name!r}] must be a pair (x, y) of equal lengths")
        ax.plot(np.asarray(xy[0], float), np.asarray(xy[1], float), label=str(name), lw=1.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig, ax


def plot_spectra(
    spectra: Union[RankSpectrum, Mapping[str, RankSpectrum], Sequence[RankSpectrum]],
    ax: Optional[Axes] = None,
    metric: str = "agreement",
    *,
    chance: Optional[float] = None,
    title: Optional[str] = None,
    **plot_kwargs: Any,
) -> Tuple[Figure, Axes]:
    """Several spectra on one axis, e.g. natural vs robust vs low-rank-trained models.

    The x axis is the rank ``k`` (kept, or removed for reverse spectra), the y axis the
    metric, labelled "agreement with full-rank prediction" or "top-1 accuracy". The
    legend sits right of the axes, where it covers no curve.

    Args:
        spectra (RankSpectrum, dict or sequence): ``{label: RankSpectrum}`` (labels go
            in the legend), a sequence of spectra, or one spectrum. All must have the
            same ``reverse`` flag.
        ax (matplotlib Axes, optional): where to draw; a new standalone figure when None.
        metric (str): ``"agreement"`` or ``"accuracy"``.
        chance (float, optional): the chance level, e.g. ``1 / n_classes``, drawn as a
            dashed grey line (in the legend as "chance"); None: no line.
        title (str, optional): axes title, e.g. the models and the data they were
            counted on.
        **plot_kwargs: passed to every ``ax.plot`` (``color``, ``linestyle``, ...).

    Returns:
        (Figure, Axes): the figure and the axes drawn on.

    Examples:
        >>> natural = RankSpectrum([0, 8, 16], [0.1, 0.9, 1.0], None, 10)
        >>> robust = RankSpectrum([0, 8, 16], [0.1, 0.5, 1.0], None, 10)
        >>> fig, ax = plot_spectra({"natural": natural, "robust": robust}, chance=1 / 10)
        >>> len(ax.lines), ax.get_ylabel()
        (3, 'agreement with full-rank prediction')
    """
    items = _labelled(spectra, "spectra")
    metric = check_choice(metric, "metric", _METRICS)
    if len({s.reverse for _, s in items}) > 1:
        raise ValueError("spectra must all have the same reverse flag to share an axis")
    curves = [(label, s.ranks, _values(s, metric)) for label, s in items]
    if chance is not None:
        chance = check_real(chance, "chance")
        if chance > 1:
            raise ValueError(f"chance must be in [0, 1], got {chance}")
    fig, ax = figure_and_axes(ax, (5, 3.5))
    for label, ranks, values in curves:
        kwargs = dict(plot_kwargs)
        kwargs.setdefault("marker", "o" if len(ranks) <= 40 else None)
        kwargs.setdefault("markersize", 3)
        ax.plot(ranks, values, label=label, **kwargs)
    if chance is not None:
        ax.axhline(chance, color="0.45", linestyle="--", linewidth=1.0, label="chance")
    ax.set_xlabel(_xlabel(items[0][1].reverse))
    ax.set_ylabel(_YLABELS[metric])
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    if chance is not None or any(label is not None for label, _ in items):
        _legend_outside(ax)
    return fig, ax


def _legend_outside(ax: Axes) -> None:
    """The legend right of the axes (constrained layout makes room): it covers no curve."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small")


def plot_accuracy_gap(
    first: RankSpectrum,
    second: RankSpectrum,
    ax: Optional[Axes] = None,
    label: Optional[str] = None,
    **plot_kwargs: Any,
) -> Tuple[Figure, Axes]:
    """Plots :func:`~captum_rig.spectrum.accuracy_gap` against the rank, with a line at zero.

    The paper's Fig. 7c/d: per rank, ``first``'s accuracy minus ``second``'s, over the
    ranks both spectra have.

    Args:
        first (RankSpectrum): e.g. the model trained on low-rank images (with labels).
        second (RankSpectrum): e.g. the naturally trained model (with labels).
        ax (matplotlib Axes, optional): where to draw; a new standalone figure when None.
        label (str, optional): legend entry (a legend is drawn when given).
        **plot_kwargs: passed to ``ax.plot``.

    Returns:
        (Figure, Axes): the figure and the axes drawn on.

    Examples:
        >>> a = RankSpectrum([0, 4, 8], [0.2, 0.6, 1.0], [0.1, 0.5, 0.75], 4)
        >>> b = RankSpectrum([0, 4, 8], [0.2, 0.9, 1.0], [0.1, 0.25, 0.5], 4)
        >>> fig, ax = plot_accuracy_gap(a, b)
        >>> ax.lines[-1].get_ydata().tolist(), ax.get_ylabel()
        ([0.0, 0.25, 0.25], 'top-1 accuracy difference')
    """
    ranks, gap = accuracy_gap(first, second)
    fig, ax = figure_and_axes(ax, (5, 3.5))
    ax.axhline(0.0, color="0.6", linewidth=0.8)
    plot_kwargs.setdefault("marker", "o" if len(ranks) <= 40 else None)
    plot_kwargs.setdefault("markersize", 3)
    ax.plot(ranks, gap, label=label, **plot_kwargs)
    ax.set_xlabel(_xlabel(first.reverse))
    ax.set_ylabel("top-1 accuracy difference")
    ax.grid(True, alpha=0.3)
    if label is not None:
        ax.legend()
    return fig, ax


def _xlabel(reverse: bool) -> str:
    return "k (top k singular values removed)" if reverse else "k (top k singular values kept)"


def _values(spectrum: RankSpectrum, metric: str) -> List[float]:
    values = getattr(spectrum, metric)
    if values is None:
        raise ValueError(
            f"metric={metric!r} needs a spectrum computed with labels; this one has none"
        )
    return values


def _labelled(spectra: Any, name: str) -> List[Tuple[Optional[str], RankSpectrum]]:
    if isinstance(spectra, RankSpectrum):
        spectra = [spectra]
    if isinstance(spectra, Mapping):
        items = [(str(label), s) for label, s in spectra.items()]
    elif isinstance(spectra, (str, bytes)) or not isinstance(spectra, (Sequence, Iterable)):
        raise TypeError(f"{name} must be a dict or a sequence of RankSpectrum objects")
    else:
        items = [(None, s) for s in spectra]
    if not items:
        raise ValueError(f"{name} must not be empty")
    for _, s in items:
        if not isinstance(s, RankSpectrum):
            raise TypeError(f"{name} must hold RankSpectrum objects, got {type(s).__name__}")
    return items


def _contribution_curve(
    values: Any, bands: Optional[Sequence[int]], cumulative: bool, name: str
) -> Tuple[np.ndarray, np.ndarray]:
    """(x, y) of one model: shares of the total over images and channels, by rank/band."""
    if not isinstance(values, Tensor) or values.dim() != 3 or values.shape[-1] < 1:
        got = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(f"{name} must be a tensor (N, C, m) from rank_contributions, got {got}")
    per_band = values.detach().double().sum(dim=(0, 1)).cpu().numpy()
    m = per_band.shape[0]
    edges = np.arange(m + 1) if bands is None else np.asarray(list(bands), dtype=float)
    if edges.shape != (m + 1,) or np.any(np.diff(edges) <= 0):
        raise ValueError(
            f"bands must be the {m + 1} increasing band edges of {name}, got {list(edges)}"
        )
    total = per_band.sum()
    if not np.isfinite(total) or abs(total) < 1e-12:
        raise ValueError(f"{name} sums to {total}: there is no total to take shares of")
    shares = per_band / total
    if cumulative:
        return edges, np.concatenate([[0.0], np.cumsum(shares)])
    return edges, np.concatenate([shares, shares[-1:]])


def plot_rank_contributions(
    contributions: Union[Tensor, Mapping[str, Tensor]],
    bands: Optional[Sequence[int]] = None,
    cumulative: bool = True,
    ax: Optional[Axes] = None,
    title: Optional[str] = None,
    xscale: str = "auto",
) -> Tuple[Figure, Axes]:
    r"""Where in the spectrum a model's evidence comes from: rank contributions as shares.

    Each curve sums :func:`captum_rig.rank_contributions` over images and channels and
    divides by the total, ``Σ (F(x) - F(x(0)))``: ``cumulative=True`` draws the share of
    the evidence carried by the top ``k`` singular components against ``k`` (reaching 1
    at ``k = w``); ``cumulative=False`` draws each rank's (or band's) share as steps.

    Args:
        contributions (Tensor or dict[str, Tensor]): ``(N, C, m)`` from
            ``rank_contributions``, or ``label -> (N, C, m)`` for several models.
        bands (sequence of int, optional): the band edges the contributions were
            computed with; None: one entry per rank.
        cumulative (bool): cumulative shares (True) or per rank/band shares (False).
        ax (Axes, optional): draw here; None: a new figure.
        title (str, optional): axes title.
        xscale (str): ``"linear"``, ``"log"`` (base 2, linear below 1 so that rank 0
            shows; ticks at the band edges) or ``"auto"``: log when ``bands`` grow
            geometrically (each edge at least 1.4 times the one before, as
            ``0, 1, 2, 4, ..., 128, 224``), so the narrow top bands are not squeezed into a
            few pixels; linear otherwise.

    Returns:
        (Figure, Axes): the figure and the axes drawn on.

    Examples:
        >>> c = torch.tensor([[[3.0, 1.0, 0.0, 0.0]]])  # (N=1, C=1, w=4)
        >>> fig, ax = plot_rank_contributions({"model": c})
        >>> ax.lines[-1].get_ydata().tolist()
        [0.0, 0.75, 1.0, 1.0, 1.0]
        >>> c = torch.rand(1, 3, 5)  # bands 0, 1, 2, 4, 8, 16: doubling widths
        >>> fig, ax = plot_rank_contributions(c, bands=[0, 1, 2, 4, 8, 16])
        >>> ax.get_xscale()
        'symlog'
    """
    xscale = check_choice(xscale, "xscale", ("auto", "linear", "log"))
    if isinstance(contributions, Mapping):
        items = [(str(k), v) for k, v in contributions.items()]
        if not items:
            raise ValueError("contributions must not be an empty dict")
    else:
        items = [(None, contributions)]
    fig, ax = figure_and_axes(ax, (5, 3.5))
    ax.axhline(1.0 if cumulative else 0.0, color="0.6", linewidth=0.8)
    for label, values in items:
        name = "contributions" if label is None else f"contributions[{label!r}]"
        x, y = _contribution_curve(values, bands, cumulative, name)
        if cumulative:
            ax.plot(x, y, marker="o" if len(x) <= 40 else None, markersize=3, label=label)
        else:
            ax.step(x, y, where="post", label=label)
    if xscale == "log" or (xscale == "auto" and _geometric(bands)):
        _log_rank_axis(ax, bands, x)
    ax.set_xlabel("k (top k singular components)" if cumulative else "rank")
    ax.set_ylabel("share of F(x) - F(0), cumulative" if cumulative else "share of F(x) - F(0)")
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    if any(label is not None for label, _ in items):
        ax.legend(fontsize="small")
    return fig, ax


def _geometric(bands: Optional[Sequence[int]]) -> bool:
    """Whether band edges grow geometrically: 3+ bands, each positive edge >= 1.4x the
    one before (``0, 1, 2, 4, ..., 128, 224``)."""
    if bands is None or len(bands) < 4:
        return False
    edges = np.asarray(list(bands), dtype=float)
    edges = edges[edges > 0]
    return len(edges) >= 3 and bool(np.all(edges[1:] >= 1.4 * edges[:-1]))


def _log_rank_axis(ax: Axes, bands: Optional[Sequence[int]], x: np.ndarray) -> None:
    """A base-2 log rank axis, linear below 1 (rank 0 shows), ticks at the band edges."""
    from matplotlib.ticker import NullLocator

    ax.set_xscale("symlog", base=2, linthresh=1, linscale=0.5)
    edges = [int(e) for e in (bands if bands is not None else x)]
    if len(edges) > 12:  # one entry per rank: powers of two and the width
        edges = sorted({0, *[2**i for i in range(int(np.log2(edges[-1])) + 1)], edges[-1]})
    ax.set_xticks(edges, [str(e) for e in edges])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(edges[0], edges[-1])
