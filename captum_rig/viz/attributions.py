"""Attribution maps side by side: images as rows, methods as columns, one colour bar.

Every panel is drawn by Captum's ``captum.attr.visualization.visualize_image_attr`` (its
signs, colour maps, outlier clipping and heat-map modes); this module adds the grid, a
colour bar, an optional colour scale shared by all maps and object outlines.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516 (Eq. 3).
"""

from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from captum.attr import visualization as captum_viz
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from captum_rig._checks import check_choice, check_real
from captum_rig.viz._figure import (
    COLORBAR_ROOM,
    LABEL_ROOM,
    bare,
    check_row_labels,
    fit_text,
    hwc,
    image_batch,
    panel_grid,
    panel_inches,
    row_label,
    set_title,
    show_image,
)

__all__ = ["plot_attributions", "plot_rig_channel_max"]

_SIGNS = ("absolute_value", "positive", "negative", "all")
_HEAT_METHODS = ("heat_map", "blended_heat_map")
_CHANNEL_MAX_TITLE = "RIG, Eq. 3 (max)"


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
            its label says which scale is used. With ``shared_scale`` the bar reads a
            pixel's share of its map's attribution mass, in percent, over the range the
            maps span (e.g. 0 to 0.3 %). Default: True.
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
    images = image_batch(images)
    attrs = _check_attributions(attributions, images)
    method = check_choice(method, "method", _HEAT_METHODS)
    sign = check_choice(sign, "sign", _SIGNS)
    outlier_perc = check_real(outlier_perc, "outlier_perc")
    if not outlier_perc < 100:
        raise ValueError(f"outlier_perc must be in [0, 100), got {outlier_perc}")
    masks = _check_masks(masks, images)
    n, _, h, w = images.shape
    row_labels = check_row_labels(row_labels, n)
    panel = panel_inches(check_real(panel_size, "panel_size", strict=True), h, w)

    # (N, H, W) maps with channels summed, as Captum sums them.
    maps = {k: a.sum(dim=1).numpy() for k, a in attrs.items()}
    shared, threshold = (None, 1.0)
    if shared_scale:
        shared, threshold = _shared_normalised(maps, sign, outlier_perc)
    columns = [fit_text(name, 0.95 * panel[0], "axes.titlesize") for name in maps]
    fig, axes = panel_grid(
        n,
        1 + len(maps),
        panel,
        use_pyplot,
        extra_width=LABEL_ROOM * (row_labels is not None) + COLORBAR_ROOM * bool(show_colorbar),
        column_title_lines=max(c.count("\n") + 1 for c in columns),
        title=title,
    )
    style = (method, sign, outlier_perc, cmap)
    heat = None
    for i in range(n):
        image = hwc(images[i])
        mask = None if masks is None else masks[i]
        show_image(fig, axes[i, 0], image, "image" if i == 0 else None)
        _outline(axes[i, 0], mask)
        if row_labels is not None:
            row_label(axes[i, 0], row_labels[i], 0.95 * panel[1])
        for j, (name, m) in enumerate(maps.items(), start=1):
            column = columns[j - 1] if i == 0 else None
            drawn = _draw_map(fig, axes[i, j], m[i], image, column, style)
            if drawn is not None:
                heat = drawn
                if shared is not None:
                    # Captum drew the panel (cmap, limits, overlay) with its own per-map
                    # scale; put the shared-scale values in its heat map.
                    drawn.set_data(shared[name][i])
            _outline(axes[i, j], mask)
    if show_colorbar and heat is not None:
        _colour_bar(fig, axes, heat, threshold if shared_scale else None, 0.85 * panel[1] * n)
    set_title(fig, title)
    return fig, axes


def _draw_map(
    fig: Figure,
    ax: Axes,
    attr2d: np.ndarray,
    image: np.ndarray,
    title: Optional[str],
    style: Tuple[str, str, float, Optional[Any]],
) -> Optional[Any]:
    """Draws one map with Captum; returns its heat-map image, None for an all-zero map.

    ``style`` is ``(method, sign, outlier_perc, cmap)``, as Captum takes them.
    """
    method, sign, outlier_perc, cmap = style
    if not np.any(_signed(attr2d, sign)):
        # Captum cannot scale an all-zero map; show it as an empty panel.
        ax.imshow(np.zeros(attr2d.shape), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title)
        ax.text(0.5, 0.5, "all zero", ha="center", va="center", transform=ax.transAxes)
        return None
    captum_viz.visualize_image_attr(
        attr2d[:, :, None],  # (H, W, 1): channels last, as every Captum release takes it
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
    bare(ax)
    return ax.images[-1]


def _colour_bar(
    fig: Figure, axes: np.ndarray, heat: Any, threshold: Optional[float], inches: float
) -> None:
    """One colour bar beside the maps, labelled with the scale; ``threshold``: the shared
    scale's, so the bar reads a pixel's share of its map's mass (e.g. 0 to 0.3 %)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.ticker import PercentFormatter

    if threshold is None:
        head, tail, mappable = "attribution", "per-map scale", heat
    else:
        # The panels hold shares divided by the threshold (Captum's 0..1 or -1..1); the
        # bar shows the shares themselves, the same colours over the data's range.
        low, high = heat.get_clim()
        mappable = ScalarMappable(Normalize(low * threshold, high * threshold), heat.get_cmap())
        head, tail = "share of the map's attribution per pixel", "one scale for all maps"
    bar = fig.colorbar(mappable, ax=axes[:, 1:].ravel().tolist(), shrink=0.9)
    if threshold is not None:
        bar.formatter = PercentFormatter(xmax=1.0)
        bar.update_ticks()
    label = f"{head}, {tail}"
    if "\n" in fit_text(label, inches, "axes.labelsize"):  # two lines: break at the comma
        label = f"{head}\n({tail})"
    bar.set_label(fit_text(label, inches, "axes.labelsize"))


def _shared_normalised(
    maps: Mapping[str, np.ndarray], sign: str, outlier_perc: float
) -> Tuple[Dict[str, np.ndarray], float]:
    """Each map as shares of its absolute mass, over one pooled Captum threshold; and
    that threshold (a share)."""
    shares = {}
    for name, m in maps.items():
        total = np.abs(m).reshape(m.shape[0], -1).sum(1).reshape(-1, 1, 1)
        shares[name] = _signed(m / np.where(total > 0, total, 1.0), sign)
    pooled = np.concatenate([np.abs(s).ravel() for s in shares.values()])
    if not np.any(pooled):
        return {name: s for name, s in shares.items()}, 1.0
    threshold = captum_viz._cumulative_sum_threshold(pooled, 100.0 - outlier_perc)
    if not threshold > 0:  # pathological: most mass in a single pixel
        threshold = float(pooled.max())
    out = {}
    for name, s in shares.items():
        v = np.clip(s / threshold, -1.0, 1.0)
        out[name] = -v if sign == "negative" else v  # Captum shows negatives as 0..1
    return out, float(threshold)


def plot_rig_channel_max(
    images: Tensor,
    attributions: Optional[Tensor] = None,
    target: Any = None,
    n_steps: Optional[int] = None,
    internal_batch_size: Optional[int] = None,
    **kwargs: Any,
) -> Tuple[Figure, np.ndarray]:
    r"""RIG exactly as the paper's Eq. (3), each rank's gradient maxed over channels.

    Draws ``attributions = RIG(model).attribute(images, target,
    channel_reduction="max")`` (shape ``(N, 1, H, W)``, one value per pixel:
    ``Σ_k (w - k)/w · max_c ∂F(x_k)/∂x_k``) next to the images with
    :func:`plot_attributions`.

    The older form ``plot_rig_channel_max(model, images, target=None, n_steps=None,
    internal_batch_size=None, **kwargs)`` still works: it computes the attributions
    first, with :class:`~captum_rig.RankIntegratedGradients`.

    Args:
        images (Tensor): ``(C, H, W)`` or ``(N, C, H, W)``, float in [0, 1].
        attributions (Tensor): ``(N, 1, H, W)`` (or ``(1, H, W)`` for one image), RIG
            with ``channel_reduction="max"``.
        target, n_steps, internal_batch_size: only in the older form, passed to
            :meth:`~captum_rig.RankIntegratedGradients.attribute`.
        **kwargs: passed to :func:`plot_attributions` (default ``sign="all"``: the
            gradients' maximum keeps its sign).

    Returns:
        (fig, axes): as :func:`plot_attributions`, with one map column.

    Examples:
        >>> x = torch.rand(2, 3, 16, 16)
        >>> fig, axes = plot_rig_channel_max(x, torch.randn(2, 1, 16, 16))
        >>> axes.shape, axes[0, 1].get_title()
        ((2, 2), 'RIG, Eq. 3 (max)')
    """
    if not isinstance(images, Tensor) and callable(images):
        # the older form: (model, images, ...) computes the maps first
        batch = image_batch(attributions)
        attributions = _channel_max(images, batch, target, n_steps, internal_batch_size)
    else:
        if target is not None or n_steps is not None or internal_batch_size is not None:
            raise TypeError(
                "target, n_steps and internal_batch_size are for the form "
                "plot_rig_channel_max(model, images, ...); pass the attributions instead"
            )
        batch = image_batch(images)
        if not isinstance(attributions, Tensor):
            raise TypeError(
                "attributions must be a torch.Tensor (N, 1, H, W) from RIG with "
                f'channel_reduction="max", got {type(attributions).__name__}'
            )
        if attributions.dim() not in (3, 4) or attributions.shape[-3] != 1:
            raise ValueError(
                "attributions must have shape (N, 1, H, W): RIG's maximum over channels, "
                f"got shape {tuple(attributions.shape)}"
            )
    kwargs.setdefault("sign", "all")
    return plot_attributions(batch, {_CHANNEL_MAX_TITLE: attributions}, **kwargs)


def _channel_max(
    model: Callable[..., Tensor],
    images: Tensor,
    target: Any,
    n_steps: Optional[int],
    internal_batch_size: Optional[int],
) -> Tensor:
    """RIG with the channel maximum, for the older call form of plot_rig_channel_max."""
    # Figures take maps; only this old form computes one, so attr is imported here.
    from captum_rig.attr.rig import RankIntegratedGradients

    return RankIntegratedGradients(model).attribute(
        images,
        target=target,
        n_steps=n_steps,
        channel_reduction="max",
        internal_batch_size=internal_batch_size,
    )
