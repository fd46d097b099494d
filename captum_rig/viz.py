"""Figures: attribution maps side by side, the Eq. (3) channel-max view, rank galleries.

Everything is drawn with Captum's ``captum.attr.visualization.visualize_image_attr``
(its signs, colour maps, outlier clipping and heat-map modes); this module adds the grid
(images as rows, methods as columns), an optional colour scale shared by all maps, object
outlines, and the low-rank images of the paper. Functions take images as float tensors
``(C, H, W)`` or ``(N, C, H, W)`` with values in [0, 1], return ``(fig, axes)`` with
``axes`` a 2-d array of ``Axes`` (rows × columns) and never call ``plt.show()``.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516 (Figs. 2, 3 and 9; Eq. 3).
"""

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from captum.attr import visualization as _captum_viz
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from captum_rig.lowrank import RankPath

__all__ = [
    "plot_attributions",
    "plot_rig_channel_max",
    "plot_rank_gallery",
    "plot_curves",
    "DEFAULT_GALLERY_RANKS",
]

DEFAULT_GALLERY_RANKS: Tuple[Optional[int], ...] = (1, 5, 10, 20, 50, None)
"""The ranks of the paper's Figs. 2-3; ``None`` stands for the full-rank image."""

_SIGNS = ("absolute_value", "positive", "negative", "all")
_HEAT_METHODS = ("heat_map", "blended_heat_map")
_RANGE_SLACK = 1e-3


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------


def _check_images(images: Any, name: str = "images") -> Tensor:
    """``(C, H, W)`` or ``(N, C, H, W)`` float in [0, 1] → ``(N, C, H, W)`` float, CPU."""
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(
            f"{name} must be a floating point tensor with values in [0, 1], got dtype "
            f"{images.dtype}; convert integer images with x.float() / 255"
        )
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4:
        raise ValueError(
            f"{name} must have shape (C, H, W) or (N, C, H, W), got shape {tuple(images.shape)}"
        )
    if images.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(images.shape)}")
    if images.shape[1] not in (1, 3):
        raise ValueError(
            f"{name} must have 1 or 3 channels (dim -3), got shape {tuple(images.shape)}"
        )
    images = images.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} contains NaN or Inf values")
    lo, hi = float(images.min()), float(images.max())
    if lo < -_RANGE_SLACK or hi > 1 + _RANGE_SLACK:
        raise ValueError(
            f"{name} must hold pixel values in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
            "pass images before normalization"
        )
    return images.clamp(0, 1)


def _check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _check_positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


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


def _check_labels(labels: Any, n: int, name: str) -> Optional[List[str]]:
    if labels is None:
        return None
    if isinstance(labels, str) or not isinstance(labels, Sequence) or len(labels) != n:
        raise ValueError(f"{name} must be a sequence of {n} strings, got {labels!r}")
    return [str(s) for s in labels]


# --------------------------------------------------------------------------------------
# Drawing helpers
# --------------------------------------------------------------------------------------


def _figure(figsize: Tuple[float, float]) -> Figure:
    """A standalone Figure (no pyplot state) with an Agg canvas, so it can be drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _new_figure(
    nrows: int, ncols: int, panel_size: float, use_pyplot: bool
) -> Tuple[Figure, np.ndarray]:
    # room above the panels for column titles (two lines) and a figure title
    figsize = (panel_size * ncols, panel_size * nrows + 0.9)
    if use_pyplot:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=figsize, layout="constrained")
    else:
        fig = _figure(figsize)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


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
    show_colorbar: bool = False,
    panel_size: float = 2.0,
    title: Optional[str] = None,
    use_pyplot: bool = False,
) -> Tuple[Figure, np.ndarray]:
    r"""Each image, then one attribution map per method, side by side; one row per image.

    Every panel is drawn by Captum's ``visualize_image_attr`` (with ``method``, ``sign``,
    ``outlier_perc``, ``cmap``, ``show_colorbar`` passed through); channels are summed
    as Captum does.

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
        row_labels (sequence of str, optional): one label per image, left of each row.
        cmap (str or Colormap, optional): heat-map colour map; None: Captum's default
            for ``sign``.
        show_colorbar (bool): a colour bar under every map. Default: False.
        panel_size (float): inches per panel. Default: 2.
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
    images = _check_images(images)
    attrs = _check_attributions(attributions, images)
    method = _check_choice(method, "method", _HEAT_METHODS)
    sign = _check_choice(sign, "sign", _SIGNS)
    if isinstance(outlier_perc, bool) or not isinstance(outlier_perc, (int, float)):
        raise TypeError(f"outlier_perc must be a number, got {outlier_perc!r}")
    if not 0 <= outlier_perc < 100:
        raise ValueError(f"outlier_perc must be in [0, 100), got {outlier_perc}")
    masks = _check_masks(masks, images)
    n = images.shape[0]
    row_labels = _check_labels(row_labels, n, "row_labels")
    panel_size = _check_positive(panel_size, "panel_size")

    # (N, H, W) maps with channels summed, as Captum sums them.
    maps = {k: a.sum(dim=1).numpy() for k, a in attrs.items()}
    shared: Optional[Dict[str, np.ndarray]] = None
    if shared_scale:
        shared = _shared_normalised(maps, sign, outlier_perc)

    fig, axes = _new_figure(n, 1 + len(maps), panel_size, use_pyplot)
    for i in range(n):
        image = _hwc(images[i])
        _show_image(fig, axes[i, 0], image, "image" if i == 0 else None)
        _outline(axes[i, 0], None if masks is None else masks[i])
        if row_labels is not None:
            axes[i, 0].set_ylabel(row_labels[i])
        for j, (name, m) in enumerate(maps.items(), start=1):
            ax = axes[i, j]
            if not np.any(_signed(m[i], sign)):
                # Captum cannot scale an all-zero map; show it as an empty panel.
                ax.imshow(np.zeros(m[i].shape), cmap="gray_r", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(name if i == 0 else None)
                ax.text(0.5, 0.5, "all zero", ha="center", va="center", transform=ax.transAxes)
            else:
                _captum_viz.visualize_image_attr(
                    m[i],
                    image,
                    method=method,
                    sign=sign,
                    plt_fig_axis=(fig, ax),
                    outlier_perc=outlier_perc,
                    cmap=cmap,
                    show_colorbar=show_colorbar,
                    title=name if i == 0 else None,
                    use_pyplot=False,
                )
                if shared is not None:
                    # Captum drew the panel (cmap, limits, overlay, colour bar) with its
                    # own per-map scale; put the shared-scale values in its heat map.
                    ax.images[-1].set_data(shared[name][i])
            _outline(ax, None if masks is None else masks[i])
    if title:
        fig.suptitle(title)
    return fig, axes


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

    batch = _check_images(images)
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
    out: List[Optional[int]] = []
    for k in ranks:
        if k is None:
            out.append(None)
            continue
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"ranks must hold ints or None (full rank), got {k!r}")
        if not 0 <= int(k) <= width:
            raise ValueError(f"ranks must lie in 0..{width} (min(H, W)) or be None, got {int(k)}")
        out.append(int(k))
    return out


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
        panel_size (float): inches per panel. Default: 1.8.
        title (str, optional): figure title.
        use_pyplot (bool): create the figure with ``pyplot``. Default: False.

    Returns:
        (fig, axes): the ``Figure`` and an ``(N, len(ranks))`` array of ``Axes``.

    Examples:
        >>> fig, axes = plot_rank_gallery(torch.rand(3, 32, 32), ranks=(1, 4, None))
        >>> axes.shape
        (1, 3)
    """
    batch = _check_images(images)
    if not isinstance(reverse, bool):
        raise TypeError(f"reverse must be a bool, got {reverse!r}")
    path = RankPath(batch.to(torch.float64))
    width = path.width
    ks = _gallery_ranks(ranks, width, reverse)
    n = batch.shape[0]
    row_labels = _check_labels(row_labels, n, "row_labels")
    panel_size = _check_positive(panel_size, "panel_size")
    ks_int = [width if k is None else k for k in ks]
    rank_images = path.images(ks_int, reverse=reverse).float()  # (m, N, C, H, W)

    fig, axes = _new_figure(n, len(ks), panel_size, use_pyplot)
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
            axes[i, 0].set_ylabel(row_labels[i])
    if title:
        fig.suptitle(title)
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
    if ax is None:
        fig = _figure((4.2, 3.2))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
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
