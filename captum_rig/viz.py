"""Every figure: attribution maps side by side, Eq. (3), rank galleries, rank spectra.

Attribution maps are drawn with Captum's ``captum.attr.visualization.visualize_image_attr``
(its signs, colour maps, outlier clipping and heat-map modes); this module adds the grid
(images as rows, methods as columns), a colour bar, an optional colour scale shared by
all maps, object outlines, the low-rank images of the paper and its rank-spectrum curves.
Functions take images as float tensors ``(C, H, W)`` or ``(N, C, H, W)`` with values in
[0, 1], draw on standalone ``matplotlib.figure.Figure`` objects (no pyplot state unless
``use_pyplot=True``), return ``(fig, axes)`` and never call ``plt.show()``.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516 (Figs. 2, 3, 7 and 9; Eq. 3; Algorithm 1).
"""

from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import matplotlib as mpl
import numpy as np
import torch
from captum.attr import visualization as _captum_viz
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath
from torch import Tensor

from captum_rig._checks import check_choice, check_int, check_pixels, check_real
from captum_rig.lowrank import RankPath
from captum_rig.spectrum import RankSpectrum, accuracy_gap

__all__ = [
    "plot_attributions",
    "plot_rig_channel_max",
    "plot_rank_gallery",
    "plot_spectra",
    "plot_accuracy_gap",
    "plot_curves",
    "plot_rank_contributions",
    "plot_layer_spectra",
    "plot_layer_norms",
    "DEFAULT_GALLERY_RANKS",
]

DEFAULT_GALLERY_RANKS: Tuple[Optional[int], ...] = (1, 5, 10, 20, 50, None)
"""The ranks of the paper's Figs. 2-3; ``None`` stands for the full-rank image."""

_SIGNS = ("absolute_value", "positive", "negative", "all")
_HEAT_METHODS = ("heat_map", "blended_heat_map")
_METRICS = ("agreement", "accuracy")
_YLABELS = {"agreement": "agreement with full-rank prediction", "accuracy": "top-1 accuracy"}
# Resampling and SVD round-off can put pixels a hair outside [0, 1]; they are clipped.
_RANGE_SLACK = 1e-3
# Inches: a line of a column title or of the figure title (12 pt with its spacing), the
# pads around them, row labels left of the panels, a colour bar right of them. Rows sit
# close only when the figure has no height to spare: constrained layout spreads it.
_LINE, _PAD, _LABEL_ROOM, _COLORBAR_ROOM = 0.2, 0.12, 0.35, 0.8


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------


def _image_batch(images: Any, name: str = "images") -> Tensor:
    """``(C, H, W)`` or ``(N, C, H, W)`` float in [0, 1] → ``(N, C, H, W)`` float32, CPU."""
    check_pixels(
        images, name=name, ndim=(3, 4), layout="(C, H, W) or (N, C, H, W)", slack=_RANGE_SLACK
    )
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.shape[1] not in (1, 3):
        raise ValueError(
            f"{name} must have 1 or 3 channels (dim -3), got shape {tuple(images.shape)}"
        )
    return images.detach().to("cpu", torch.float32).clamp(0, 1)


def _check_attributions(attributions: Any, images: Tensor) -> Dict[str, Tensor]:
    if not isinstance(attributions, Mapping):
        raise TypeError(
            "attributions must be a dict mapping method names to tensors, got "
            f"{type(attributions).__name__}"
        )
    if not attributions:
        raise ValueError("attributions must hold at least one map, got an empty dict")
    n, _, h, w = images.shape
    out: Dict[str, Tensor] = {}
    for key, attr in attributions.items():
        label = f"attributions[{key!r}]"
        if not isinstance(attr, Tensor):
            raise TypeError(f"{label} must be a torch.Tensor, got {type(attr).__name__}")
        if not attr.is_floating_point():
            raise TypeError(f"{label} must be a floating point tensor, got dtype {attr.dtype}")
        if attr.dim() == 3:
            attr = attr.unsqueeze(0)
        if attr.dim() != 4 or attr.shape[0] != n or tuple(attr.shape[2:]) != (h, w):
            raise ValueError(
                f"{label} must have shape ({n}, C, {h}, {w}) like images (C may be 1), "
                f"got shape {tuple(attr.shape)}"
            )
        attr = attr.detach().to("cpu", torch.float64)
        if not bool(torch.isfinite(attr).all()):
            raise ValueError(f"{label} contains NaN or Inf values")
        out[str(key)] = attr
    return out


def _check_masks(masks: Any, images: Tensor) -> Optional[Tensor]:
    if masks is None:
        return None
    if not isinstance(masks, Tensor):
        raise TypeError(f"masks must be a torch.Tensor or None, got {type(masks).__name__}")
    n, _, h, w = images.shape
    if masks.dim() == 2:
        masks = masks.unsqueeze(0)
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.dim() != 3 or tuple(masks.shape) != (n, h, w):
        raise ValueError(
            f"masks must have shape ({n}, {h}, {w}) (or (H, W) for one image), got shape "
            f"{tuple(masks.shape)}"
        )
    return masks.detach().to("cpu").bool()


def _check_row_labels(labels: Any, n: int) -> Optional[List[str]]:
    """Display strings, one per image row (not class indices)."""
    if labels is None:
        return None
    if isinstance(labels, str) or not isinstance(labels, Sequence) or len(labels) != n:
        raise ValueError(f"row_labels must be a sequence of {n} strings, got {labels!r}")
    return [str(s) for s in labels]


# --------------------------------------------------------------------------------------
# Text that fits
# --------------------------------------------------------------------------------------

_TEXT_TO_PATH = TextToPath()


def _font_size(rc_key: str) -> float:
    return FontProperties(size=mpl.rcParams[rc_key]).get_size_in_points()


def _text_width(text: str, size: float) -> float:
    """Width in points of ``text`` set in the default font at ``size`` points."""
    width, _, _ = _TEXT_TO_PATH.get_text_width_height_descent(
        text, FontProperties(size=size), ismath=False
    )
    return width


def _fit_text(text: str, inches: float, rc_key: str, max_lines: int = 2) -> str:
    """``text`` wrapped into lines no longer than ``inches``; past ``max_lines``, "…tail".

    Words are kept whole where they fit; a word longer than a line (a file name) is cut.
    The last line ends with the text's end (a file name's extension) after an ellipsis.
    """
    size, room = _font_size(rc_key), 72.0 * inches
    if _text_width(text, size) <= room:
        return text
    lines: List[str] = []
    rest = text.strip()
    while rest and len(lines) < max_lines - 1:
        cut = _longest_prefix(rest, room, size)
        space = rest.rfind(" ", 0, cut + 1)
        if cut < len(rest) and space > cut // 2:
            cut = space  # break between words when that keeps half the line
        lines.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        if _text_width(rest, size) > room:
            keep = len(rest)
            while keep > 1 and _text_width("…" + rest[-keep:], size) > room:
                keep -= 1
            rest = "…" + rest[-keep:]
        lines.append(rest)
    return "\n".join(lines)


def _longest_prefix(text: str, room: float, size: float) -> int:
    low, high = 1, len(text)
    while low < high:  # the longest prefix whose width fits: binary search
        mid = (low + high + 1) // 2
        if _text_width(text[:mid], size) <= room:
            low = mid
        else:
            high = mid - 1
    return low


# --------------------------------------------------------------------------------------
# Drawing helpers
# --------------------------------------------------------------------------------------


def _figure(figsize: Tuple[float, float], use_pyplot: bool = False) -> Figure:
    """A standalone Figure (no pyplot state) with an Agg canvas, so it can be drawn."""
    if use_pyplot:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize, layout="constrained")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _panel_inches(panel_size: float, height: int, width: int) -> Tuple[float, float]:
    """(width, height) of a panel: the image's aspect ratio, longer side ``panel_size``."""
    if width >= height:
        return panel_size, panel_size * height / width
    return panel_size * width / height, panel_size


def _new_figure(
    nrows: int,
    ncols: int,
    panel: Tuple[float, float],
    use_pyplot: bool,
    *,
    extra_width: float = 0.0,
    column_title_lines: int = 1,
    title: Optional[str] = None,
) -> Tuple[Figure, np.ndarray]:
    """A grid of ``nrows × ncols`` panels of ``panel`` inches with room for the titles."""
    width = panel[0] * ncols + extra_width
    top = _PAD + _LINE * column_title_lines
    lines = _title_lines(title, width)
    if lines:
        top += _PAD + _LINE * lines
    fig = _figure((width, panel[1] * nrows + top), use_pyplot)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _title(fig: Figure, title: Optional[str]) -> None:
    if title:
        fig.suptitle(_fit_text(str(title), 0.95 * fig.get_figwidth(), "figure.titlesize", 3))


def _title_lines(title: Optional[str], inches: float) -> int:
    """How many lines :func:`_title` will use for ``title`` in a figure ``inches`` wide."""
    if not title:
        return 0
    return _fit_text(str(title), 0.95 * inches, "figure.titlesize", 3).count("\n") + 1


def _hwc(image: Tensor) -> np.ndarray:
    """``(C, H, W)`` → ``(H, W, 3)`` numpy in [0, 1]; grey images become three channels."""
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return image.permute(1, 2, 0).numpy()


def _show_image(fig: Figure, ax: Axes, image_hwc: np.ndarray, title: Optional[str]) -> None:
    # Captum's "original_image" mode ignores the attribution but still normalises it, so
    # it gets a constant map (an all-zero one would make its scale zero).
    _captum_viz.visualize_image_attr(
        np.ones(image_hwc.shape[:2]),
        np.clip(image_hwc, 0.0, 1.0),
        method="original_image",
        plt_fig_axis=(fig, ax),
        use_pyplot=False,
        title=title,
    )


def _outline(ax: Axes, mask: Optional[Tensor], color: str = "orange") -> None:
    if mask is not None and bool(mask.any()):
        ax.contour(mask.numpy().astype(float), levels=[0.5], colors=color, linewidths=1.0)


def _signed(attr2d: np.ndarray, sign: str) -> np.ndarray:
    # The same sign selection as Captum's visualize_image_attr.
    if sign == "positive":
        return np.maximum(attr2d, 0)
    if sign == "negative":
        return np.minimum(attr2d, 0)
    if sign == "absolute_value":
        return np.abs(attr2d)
    return attr2d


# --------------------------------------------------------------------------------------
# Attribution grids
# --------------------------------------------------------------------------------------


def plot_attributions(
    images: Tensor,
    attributions: Mapping[str, Tensor],
    *,
    method: str = "heat_map",
    sign: str = "absolute_value",
    outlier_perc: float = 2.0,
    shared_scale: bool = False,
    masks: Optional[Tensor] = None,
    row_labels: Optional[Sequence[str]] = None,
    cmap: Optional[Any] = None,
    show_colorbar: bool = True,
    panel_size: float = 2.0,
    title: Optional[str] = None,
    use_pyplot: bool = False,
) -> Tuple[Figure, np.ndarray]:
    r"""Each image, then one attribution map per method, side by side; one row per image.

    Every panel is drawn by Captum's ``visualize_image_attr`` (with ``method``, ``sign``,
    ``outlier_perc`` and ``cmap`` passed through); channels are summed as Captum does.
    Panels take the images' aspect ratio; long row labels and titles are wrapped and
    shortened with "…" so they stay inside the figure.

    **Colour scale.** Captum normalises each map on its own: it divides the map by the
    value above which the top ``outlier_perc`` % of its absolute attribution lies and
    clips to [-1, 1], so every panel has the same colour limits (0..1 or -1..1) yet a
    different scale, and a diffuse map looks as bright as a focused one. With
    ``shared_scale=True`` all maps of the figure share one scale instead. Because the
    methods' attributions come in different units (a gradient, a gradient × path length,
    a sum of ``w - 1`` weighted gradients), each map is first divided by its total
    absolute attribution, so a pixel's value is its *share* of the map's attribution
    mass; one threshold is then computed with Captum's rule over the pooled values of all
    maps, every map is divided by it and clipped to [-1, 1]. Equal colours then mean
    equal shares of attribution mass, across methods and images: a method that puts its
    mass on few pixels looks brighter than one that spreads it.

    Args:
        images (Tensor): ``(C, H, W)`` or ``(N, C, H, W)``, float in [0, 1], ``C`` 1 or 3.
        attributions (dict[str, Tensor]): column title → attributions ``(N, C', H, W)``
            (``C'`` = ``C`` or 1, e.g. RIG with ``channel_reduction="max"``), or
            ``(C', H, W)`` for one image. Columns follow the dict's order.
        method (str): Captum's visualization method for the maps: ``"heat_map"`` or
            ``"blended_heat_map"`` (heat map over the grey image). Default: heat map.
        sign (str): ``"absolute_value"``, ``"positive"``, ``"negative"`` or ``"all"``,
            as in Captum. Default: absolute value.
        outlier_perc (float): percentage of the attribution mass treated as outliers
            (saturated), as in Captum. Default: 2.
        shared_scale (bool): one colour scale for every map (see above). Default: False
            (Captum's per-map scale).
        masks (Tensor, optional): ``(N, H, W)`` bool object masks, outlined on every
            panel of their row.
        row_labels (sequence of str, optional): one label per image, left of each row
            (e.g. file names; long ones keep their start and their end).
        cmap (str or Colormap, optional): heat-map colour map; None: Captum's default
            for ``sign``.
        show_colorbar (bool): one colour bar right of the maps. Every map has Captum's
            colour limits (0..1, or -1..1 for ``sign="all"``), so one bar reads them all;
            its label says which scale is used. Default: True.
        panel_size (float): inches of a panel's longer side. Default: 2.
        title (str, optional): figure title.
        use_pyplot (bool): create the figure with ``pyplot`` (so ``plt.show()`` shows
            it) instead of a standalone ``Figure``. Default: False.

    Returns:
        (fig, axes): the ``Figure`` and a ``(N, 1 + len(attributions))`` array of
        ``Axes``; column 0 holds the images.

    Examples:
        >>> x = torch.rand(2, 3, 16, 16)
        >>> fig, axes = plot_attributions(x, {"Saliency": torch.randn(2, 3, 16, 16)})
        >>> axes.shape
        (2, 2)
    """
    images = _image_batch(images)
    attrs = _check_attributions(attributions, images)
    method = check_choice(method, "method", _HEAT_METHODS)
    sign = check_choice(sign, "sign", _SIGNS)
    outlier_perc = check_real(outlier_perc, "outlier_perc")
    if not outlier_perc < 100:
        raise ValueError(f"outlier_perc must be in [0, 100), got {outlier_perc}")
    masks = _check_masks(masks, images)
    n, _, h, w = images.shape
    row_labels = _check_row_labels(row_labels, n)
    panel = _panel_inches(check_real(panel_size, "panel_size", strict=True), h, w)

    # (N, H, W) maps with channels summed, as Captum sums them.
    maps = {k: a.sum(dim=1).numpy() for k, a in attrs.items()}
    shared: Optional[Dict[str, np.ndarray]] = None
    if shared_scale:
        shared = _shared_normalised(maps, sign, outlier_perc)

    columns = [_fit_text(name, 0.95 * panel[0], "axes.titlesize") for name in maps]
    fig, axes = _new_figure(
        n,
        1 + len(maps),
        panel,
        use_pyplot,
        extra_width=_LABEL_ROOM * (row_labels is not None) + _COLORBAR_ROOM * bool(show_colorbar),
        column_title_lines=max(c.count("\n") + 1 for c in columns),
        title=title,
    )
    heat = None
    for i in range(n):
        image = _hwc(images[i])
        _show_image(fig, axes[i, 0], image, "image" if i == 0 else None)
        _outline(axes[i, 0], None if masks is None else masks[i])
        if row_labels is not None:
            axes[i, 0].set_ylabel(_fit_text(row_labels[i], 0.95 * panel[1], "axes.labelsize"))
        for j, (name, m) in enumerate(maps.items(), start=1):
            ax = axes[i, j]
            title_j = columns[j - 1] if i == 0 else None
            drawn = _draw_map(fig, ax, m[i], image, title_j, method, sign, outlier_perc, cmap)
            if drawn is not None:
                heat = drawn
                if shared is not None:
                    # Captum drew the panel (cmap, limits, overlay) with its own per-map
                    # scale; put the shared-scale values in its heat map.
                    drawn.set_data(shared[name][i])
            _outline(ax, None if masks is None else masks[i])
    if show_colorbar and heat is not None:
        label = "share of attribution, one scale" if shared_scale else "attribution, per-map scale"
        bar = fig.colorbar(heat, ax=axes[:, 1:].ravel().tolist(), shrink=0.9)
        bar.set_label(_fit_text(label, 0.85 * panel[1] * n, "axes.labelsize"))
    _title(fig, title)
    return fig, axes


def _draw_map(
    fig: Figure,
    ax: Axes,
    attr2d: np.ndarray,
    image: np.ndarray,
    title: Optional[str],
    method: str,
    sign: str,
    outlier_perc: float,
    cmap: Optional[Any],
) -> Optional[Any]:
    """Draws one map with Captum; returns its heat-map image, None for an all-zero map."""
    if not np.any(_signed(attr2d, sign)):
        # Captum cannot scale an all-zero map; show it as an empty panel.
        ax.imshow(np.zeros(attr2d.shape), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title)
        ax.text(0.5, 0.5, "all zero", ha="center", va="center", transform=ax.transAxes)
        return None
    _captum_viz.visualize_image_attr(
        attr2d,
        image,
        method=method,
        sign=sign,
        plt_fig_axis=(fig, ax),
        outlier_perc=outlier_perc,
        cmap=cmap,
        show_colorbar=False,
        title=title,
        use_pyplot=False,
    )
    return ax.images[-1]


def _shared_normalised(
    maps: Mapping[str, np.ndarray], sign: str, outlier_perc: float
) -> Dict[str, np.ndarray]:
    """Each map as shares of its absolute mass, over one pooled Captum threshold."""
    shares = {}
    for name, m in maps.items():
        total = np.abs(m).reshape(m.shape[0], -1).sum(1).reshape(-1, 1, 1)
        shares[name] = _signed(m / np.where(total > 0, total, 1.0), sign)
    pooled = np.concatenate([np.abs(s).ravel() for s in shares.values()])
    if not np.any(pooled):
        return {name: s for name, s in shares.items()}
    threshold = _captum_viz._cumulative_sum_threshold(pooled, 100.0 - outlier_perc)
    if not threshold > 0:  # pathological: most mass in a single pixel
        threshold = float(pooled.max())
    out = {}
    for name, s in shares.items():
        v = np.clip(s / threshold, -1.0, 1.0)
        out[name] = -v if sign == "negative" else v  # Captum shows negatives as 0..1
    return out


def plot_rig_channel_max(
    model: Callable[..., Tensor],
    images: Tensor,
    target: Any = None,
    n_steps: Optional[int] = None,
    internal_batch_size: Optional[int] = None,
    **kwargs: Any,
) -> Tuple[Figure, np.ndarray]:
    r"""RIG exactly as the paper's Eq. (3): each rank's gradient maxed over channels.

    Computes ``RIG(model).attribute(images, target, channel_reduction="max")``
    (shape ``(N, 1, H, W)``, one value per pixel: ``Σ_k (w - k)/w · max_c ∂F(x_k)/∂x_k``)
    and draws it next to the images with :func:`plot_attributions`.

    Args:
        model (Callable): the model, taking [0, 1] images (normalization inside).
        images (Tensor): ``(C, H, W)`` or ``(N, C, H, W)``, float in [0, 1].
        target (int, tuple, Tensor or list, optional): as in Captum's
            IntegratedGradients.
        n_steps (int, optional): ranks evaluated, as in
            :meth:`~captum_rig.RankIntegratedGradients.attribute`; None: all.
        internal_batch_size (int, optional): as in Captum.
        **kwargs: passed to :func:`plot_attributions` (default ``sign="all"``: the
            gradients' maximum keeps its sign).

    Returns:
        (fig, axes): as :func:`plot_attributions`, with one map column.
    """
    from captum_rig.attr.rig import RankIntegratedGradients

    batch = _image_batch(images)
    attr = RankIntegratedGradients(model).attribute(
        batch,
        target=target,
        n_steps=n_steps,
        channel_reduction="max",
        internal_batch_size=internal_batch_size,
    )
    kwargs.setdefault("sign", "all")
    return plot_attributions(batch, {"RIG, Eq. 3 (max)": attr}, **kwargs)


# --------------------------------------------------------------------------------------
# Rank galleries
# --------------------------------------------------------------------------------------


def _gallery_ranks(
    ranks: Optional[Sequence[Optional[int]]], width: int, reverse: bool
) -> List[Optional[int]]:
    if ranks is None:
        ranks = [k for k in DEFAULT_GALLERY_RANKS if k is None or k < width]
        return ranks[-1:] + ranks[:-1] if reverse else ranks  # reverse: original first
    if isinstance(ranks, (str, bytes)) or not isinstance(ranks, Sequence) or not ranks:
        raise ValueError(f"ranks must be a non-empty sequence of ints or None, got {ranks!r}")
    return [
        None if k is None else check_int(k, f"ranks[{i}]", high=width) for i, k in enumerate(ranks)
    ]


def _reverse_display(x: np.ndarray, percentile: float = 99.0) -> Tuple[np.ndarray, float]:
    """Zero-mean image → ``0.5 + gain·x`` in [0, 1]: mid-grey is 0, symmetric range."""
    spread = float(np.percentile(np.abs(x), percentile))
    gain = 0.5 / spread if spread > 0 else 1.0
    return np.clip(0.5 + gain * x, 0.0, 1.0), gain


def plot_rank_gallery(
    images: Tensor,
    ranks: Optional[Sequence[Optional[int]]] = None,
    reverse: bool = False,
    *,
    row_labels: Optional[Sequence[str]] = None,
    panel_size: float = 1.8,
    title: Optional[str] = None,
    use_pyplot: bool = False,
) -> Tuple[Figure, np.ndarray]:
    r"""The rank-k images of each image (the paper's Figs. 2-3), or the reverse (Fig. 9).

    All rank images come from one SVD per image (:class:`~captum_rig.RankPath`), per
    colour channel, in pixel space.

    - ``reverse=False``: panel ``k`` shows the best rank-k approximation ``x_k``
      (clipped to [0, 1] for display: truncation overshoots a little); ``None`` is the
      full image.
    - ``reverse=True``: panel ``k`` shows ``x - x_k``, the image with its ``k`` largest
      singular values removed; ``None`` (and 0) shows the original image. These images
      are roughly zero-mean with a small range, so each panel is displayed as
      ``0.5 + g·(x - x_k)`` clipped to [0, 1]: mid-grey is zero, and the gain
      ``g = 0.5 / p99(|x - x_k|)`` (the panel's 99th percentile of absolute values)
      stretches it to the full range. The gain is printed in the panel title: it grows
      as more ranks are removed, because the remaining energy shrinks.

    Args:
        images (Tensor): ``(C, H, W)`` or ``(N, C, H, W)``, float in [0, 1].
        ranks (sequence of int or None, optional): one panel per entry, in order, each
            in ``0..min(H, W)`` or None (full). Default: ``(1, 5, 10, 20, 50, None)``
            without the ranks ``>= min(H, W)``; with ``reverse=True`` the original
            (``None``) comes first.
        reverse (bool): remove the top ranks instead of keeping them. Default: False.
        row_labels (sequence of str, optional): one label per image.
        panel_size (float): inches of a panel's longer side. Default: 1.8.
        title (str, optional): figure title.
        use_pyplot (bool): create the figure with ``pyplot``. Default: False.

    Returns:
        (fig, axes): the ``Figure`` and an ``(N, len(ranks))`` array of ``Axes``.

    Examples:
        >>> fig, axes = plot_rank_gallery(torch.rand(3, 32, 32), ranks=(1, 4, None))
        >>> axes.shape
        (1, 3)
    """
    batch = _image_batch(images)
    if not isinstance(reverse, bool):
        raise TypeError(f"reverse must be a bool, got {reverse!r}")
    path = RankPath(batch.to(torch.float64))
    width = path.width
    ks = _gallery_ranks(ranks, width, reverse)
    n, _, h, w = batch.shape
    row_labels = _check_row_labels(row_labels, n)
    panel = _panel_inches(check_real(panel_size, "panel_size", strict=True), h, w)
    ks_int = [width if k is None else k for k in ks]
    rank_images = path.images(ks_int, reverse=reverse).float()  # (m, N, C, H, W)

    fig, axes = _new_figure(
        n,
        len(ks),
        panel,
        use_pyplot,
        extra_width=_LABEL_ROOM * (row_labels is not None),
        column_title_lines=2 if reverse and any(k not in (None, 0) for k in ks) else 1,
        title=title,
    )
    for i in range(n):
        for j, k in enumerate(ks):
            picture = _hwc(rank_images[j, i])
            if not reverse:
                label = f"full (rank {width})" if k is None or k == width else f"rank {k}"
            elif k is None or k == 0:
                picture, label = _hwc(batch[i]), "original"
            else:
                picture, gain = _reverse_display(picture)
                label = f"top {k} removed\n(shown ×{gain:.1f})"
            _show_image(fig, axes[i, j], picture, label if i == 0 else None)
        if row_labels is not None:
            axes[i, 0].set_ylabel(_fit_text(row_labels[i], 0.95 * panel[1], "axes.labelsize"))
    _title(fig, title)
    return fig, axes


# --------------------------------------------------------------------------------------
# Curves
# --------------------------------------------------------------------------------------


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
    fig, ax = _figure_and_axes(ax, (4.2, 3.2))
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


# --------------------------------------------------------------------------------------
# Rank spectra (Algorithm 1, Fig. 7)
# --------------------------------------------------------------------------------------


def plot_spectra(
    spectra: Union[RankSpectrum, Mapping[str, RankSpectrum], Sequence[RankSpectrum]],
    ax: Optional[Axes] = None,
    metric: str = "agreement",
    **plot_kwargs: Any,
) -> Tuple[Figure, Axes]:
    """Several spectra on one axis, e.g. natural vs robust vs low-rank-trained models.

    The x axis is the rank ``k`` (kept, or removed for reverse spectra), the y axis the
    metric, labelled "agreement with full-rank prediction" or "top-1 accuracy".

    Args:
        spectra (RankSpectrum, dict or sequence): ``{label: RankSpectrum}`` (labels go
            in the legend), a sequence of spectra, or one spectrum. All must have the
            same ``reverse`` flag.
        ax (matplotlib Axes, optional): where to draw; a new standalone figure when None.
        metric (str): ``"agreement"`` or ``"accuracy"``.
        **plot_kwargs: passed to every ``ax.plot`` (``color``, ``linestyle``, ...).

    Returns:
        (Figure, Axes): the figure and the axes drawn on.

    Examples:
        >>> natural = RankSpectrum([0, 8, 16], [0.1, 0.9, 1.0], None, 10)
        >>> robust = RankSpectrum([0, 8, 16], [0.1, 0.5, 1.0], None, 10)
        >>> fig, ax = plot_spectra({"natural": natural, "robust": robust})
        >>> len(ax.lines), ax.get_ylabel()
        (2, 'agreement with full-rank prediction')
    """
    items = _labelled(spectra, "spectra")
    metric = check_choice(metric, "metric", _METRICS)
    if len({s.reverse for _, s in items}) > 1:
        raise ValueError("spectra must all have the same reverse flag to share an axis")
    curves = [(label, s.ranks, _values(s, metric)) for label, s in items]
    fig, ax = _figure_and_axes(ax, (5, 3.5))
    for label, ranks, values in curves:
        kwargs = dict(plot_kwargs)
        kwargs.setdefault("marker", "o" if len(ranks) <= 40 else None)
        kwargs.setdefault("markersize", 3)
        ax.plot(ranks, values, label=label, **kwargs)
    ax.set_xlabel(_xlabel(items[0][1].reverse))
    ax.set_ylabel(_YLABELS[metric])
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    if any(label is not None for label, _ in items):
        ax.legend()
    return fig, ax


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
    fig, ax = _figure_and_axes(ax, (5, 3.5))
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


def _figure_and_axes(ax: Optional[Axes], figsize: Tuple[float, float]) -> Tuple[Figure, Axes]:
    if ax is None:
        fig = _figure(figsize)
        return fig, fig.add_subplot()
    return ax.figure, ax


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


# --------------------------------------------------------------------------------------
# Rank contributions
# --------------------------------------------------------------------------------------


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

    Returns:
        (Figure, Axes): the figure and the axes drawn on.

    Examples:
        >>> c = torch.tensor([[[3.0, 1.0, 0.0, 0.0]]])  # (N=1, C=1, w=4)
        >>> fig, ax = plot_rank_contributions({"model": c})
        >>> ax.lines[-1].get_ydata().tolist()
        [0.0, 0.75, 1.0, 1.0, 1.0]
    """
    if isinstance(contributions, Mapping):
        items = [(str(k), v) for k, v in contributions.items()]
        if not items:
            raise ValueError("contributions must not be an empty dict")
    else:
        items = [(None, contributions)]
    fig, ax = _figure_and_axes(ax, (5, 3.5))
    ax.axhline(1.0 if cumulative else 0.0, color="0.6", linewidth=0.8)
    for label, values in items:
        name = "contributions" if label is None else f"contributions[{label!r}]"
        x, y = _contribution_curve(values, bands, cumulative, name)
        if cumulative:
            ax.plot(x, y, marker="o" if len(x) <= 40 else None, markersize=3, label=label)
        else:
            ax.step(x, y, where="post", label=label)
    ax.set_xlabel("k (top k singular components)" if cumulative else "rank")
    ax.set_ylabel("share of F(x) - F(0), cumulative" if cumulative else "share of F(x) - F(0)")
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    if any(label is not None for label, _ in items):
        ax.legend(fontsize="small")
    return fig, ax


# --------------------------------------------------------------------------------------
# Stability: weight and feature-map spectra of several models, layer by layer
# --------------------------------------------------------------------------------------


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
    fig = _figure((3.0 * ncols, 2.4 * nrows + (0.4 if title else 0.0)))
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
    if ax is None:
        fig = _figure((6.4, 3.4))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
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
