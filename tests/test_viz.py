"""Tests for captum_rig.viz: grid shapes, real pixels, layout, shared scales, spectra."""

import re

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from captum_rig._checks import OUT_OF_RANGE, UNKNOWN_CHOICE
from captum_rig.spectrum import RankSpectrum, accuracy_gap
from captum_rig.viz import (
    plot_accuracy_gap,
    plot_attributions,
    plot_curves,
    plot_rank_gallery,
    plot_rig_channel_max,
    plot_spectra,
)

LONG_NAME = "holiday_photos_2024/second_week/IMG_20240517_183512_portrait_of_the_cat.jpeg"


def _pixels(fig: Figure) -> np.ndarray:
    """The rendered RGBA canvas as an (H, W, 4) uint8 array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())


def _n_colours(fig: Figure) -> int:
    """Number of distinct RGB colours on the rendered canvas."""
    rgb = _pixels(fig)[..., :3].reshape(-1, 3)
    return len(np.unique(rgb, axis=0))


def _inside_figure(fig: Figure, artist) -> bool:
    """True when the drawn artist (text, axes) lies within the figure's pixels."""
    fig.canvas.draw()
    box = artist.get_window_extent(fig.canvas.get_renderer())
    tol = 0.5  # pixels of rounding
    return (
        box.x0 >= -tol
        and box.y0 >= -tol
        and box.x1 <= fig.bbox.width + tol
        and box.y1 <= fig.bbox.height + tol
    )


@pytest.fixture
def image() -> torch.Tensor:
    """A smooth 3×32×32 image in [0, 1] with a bright square: low rank, full of colour."""
    y, x = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    img = torch.stack([x, y, 0.5 * (x + y)])
    img[:, 10:20, 8:22] = torch.tensor([0.9, 0.2, 0.1]).view(3, 1, 1)
    return (img + 0.05 * torch.rand(3, 32, 32)).clamp(0, 1)


def test_plot_attributions_grid_shape_and_types(image):
    """One row per image, image column plus one column per method, Axes in a 2-d array."""
    images = torch.stack([image, image.flip(-1), image.flip(-2)])
    attrs = {name: torch.randn(3, 3, 32, 32) for name in ("RIG", "IG", "Blur IG", "Saliency")}
    fig, axes = plot_attributions(images, attrs)
    assert isinstance(fig, Figure), "a matplotlib Figure comes back"
    assert isinstance(axes, np.ndarray) and axes.shape == (3, 5), f"got {axes.shape}"
    assert all(isinstance(ax, Axes) for ax in axes.ravel()), "every cell is an Axes"
    assert [axes[0, j].get_title() for j in range(5)] == [
        "image",
        "RIG",
        "IG",
        "Blur IG",
        "Saliency",
    ], "column titles: image, then the methods in dict order"


def test_plot_attributions_single_chw_image(image):
    """A (C, H, W) image with (C, H, W) maps gives a single row."""
    fig, axes = plot_attributions(image, {"Saliency": torch.randn(3, 32, 32)})
    assert axes.shape == (1, 2), f"got {axes.shape}"


def test_plot_attributions_renders_many_colours(image):
    """The canvas is not blank: the image and heat maps bring many distinct colours."""
    attrs = {"IG": torch.randn(1, 3, 32, 32), "RIG": torch.rand(1, 1, 32, 32)}
    fig, _ = plot_attributions(image, attrs, masks=torch.zeros(32, 32, dtype=torch.bool))
    assert _n_colours(fig) > 200, "figure looks blank"


def test_plot_attributions_blended_and_signs(image):
    """Captum's blended heat map and every sign render."""
    for sign in ("absolute_value", "positive", "negative", "all"):
        fig, _ = plot_attributions(
            image, {"IG": torch.randn(1, 3, 32, 32)}, method="blended_heat_map", sign=sign
        )
        assert _n_colours(fig) > 100, f"blank figure for sign={sign}"


def test_shared_scale_really_shares(image):
    """With shared_scale a diffuse map is dimmer than a focused one; per map both saturate."""
    focused = torch.zeros(1, 1, 32, 32)
    focused[..., 14:18, 14:18] = 1.0
    diffuse = torch.ones(1, 1, 32, 32)
    attrs = {"focused": focused, "diffuse": 5.0 * diffuse}

    fig, axes = plot_attributions(image, attrs, shared_scale=True, outlier_perc=0)
    heat = [axes[0, j].images[-1] for j in (1, 2)]
    assert heat[0].get_clim() == heat[1].get_clim(), "shared maps share vmin/vmax"
    shown = [np.asarray(h.get_array()) for h in heat]
    # shares of mass: focused pixel 1/16, diffuse pixel 1/1024; threshold = the max share
    assert shown[0].max() == pytest.approx(1.0), "the most concentrated map saturates"
    assert shown[1].max() == pytest.approx(16 / 1024), "the diffuse map is scaled by the same"

    fig, axes = plot_attributions(image, attrs, shared_scale=False, outlier_perc=0)
    own = [np.asarray(axes[0, j].images[-1].get_array()) for j in (1, 2)]
    assert own[1].max() == pytest.approx(1.0), "per-map scale saturates every map"


def test_shared_scale_is_unit_free(image):
    """Multiplying one method's attributions by a constant does not change its panel."""
    a = torch.randn(1, 3, 32, 32)
    b = torch.randn(1, 3, 32, 32)
    _, axes1 = plot_attributions(image, {"a": a, "b": b}, shared_scale=True)
    _, axes2 = plot_attributions(image, {"a": 1000 * a, "b": b}, shared_scale=True)
    for j in (1, 2):
        np.testing.assert_allclose(
            np.asarray(axes1[0, j].images[-1].get_array()),
            np.asarray(axes2[0, j].images[-1].get_array()),
            rtol=1e-5,
            err_msg="shared scale must not depend on a method's units",
        )


def test_all_zero_map_is_drawn_empty(image):
    """An all-zero map (Captum cannot scale it) gives an empty, labelled panel."""
    fig, axes = plot_attributions(image, {"zero": torch.zeros(1, 3, 32, 32)})
    assert any(t.get_text() == "all zero" for t in axes[0, 1].texts), "labelled empty panel"


def test_rig_channel_max_view(image):
    """Eq. (3) with the channel max: one map of shape (N, 1, H, W) per image, drawn."""
    torch.manual_seed(0)
    conv = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 32 * 32, 2),
    )
    fig, axes = plot_rig_channel_max(conv, torch.stack([image, image]), target=1, n_steps=4)
    assert axes.shape == (2, 2), f"got {axes.shape}"
    assert _n_colours(fig) > 50, "figure looks blank"


def test_rank_gallery_panels_differ_and_sharpen(image):
    """Each rank gives a different panel, closer to the image as the rank grows."""
    fig, axes = plot_rank_gallery(image, ranks=(1, 2, 5, None))
    assert axes.shape == (1, 4), f"got {axes.shape}"
    panels = [np.asarray(ax.images[0].get_array(), dtype=float) for ax in axes[0]]
    for a, b in zip(panels, panels[1:]):
        assert np.abs(a - b).mean() > 0.1, "neighbouring ranks must look different"
    errors = [np.abs(p - panels[-1]).mean() for p in panels]
    assert errors == sorted(errors, reverse=True), f"error must shrink with rank: {errors}"
    assert axes[0, -1].get_title() == "full (rank 32)", "the last panel is the full image"
    assert _n_colours(fig) > 200, "gallery looks blank"


def test_rank_gallery_default_ranks_fit_small_images(image):
    """Defaults (1, 5, 10, 20, 50, full) drop the ranks a 32×32 image does not have."""
    _, axes = plot_rank_gallery(image)
    titles = [ax.get_title() for ax in axes[0]]
    assert titles == ["rank 1", "rank 5", "rank 10", "rank 20", "full (rank 32)"], titles


def test_rank_gallery_reverse_display_scaling(image):
    """Reverse panels are residues around mid-grey, stretched, with the gain in the title."""
    fig, axes = plot_rank_gallery(torch.stack([image, image.flip(-1)]), reverse=True)
    assert axes.shape == (2, 5), f"got {axes.shape}"
    assert axes[0, 0].get_title() == "original", "the original comes first"
    residue = np.asarray(axes[0, 2].images[0].get_array(), dtype=float)
    assert abs(np.median(residue) - 127.5) < 40, "zero shows as mid-grey"
    assert residue.max() - residue.min() > 150, "the residue is stretched for display"
    assert "removed" in axes[0, 2].get_title() and "×" in axes[0, 2].get_title(), (
        "reverse titles say what was removed and the gain"
    )
    assert _n_colours(fig) > 200, "reverse gallery looks blank"


def test_curves():
    """Line plot of named curves, with a legend."""
    fig, ax = plot_curves({"a": ([0, 1], [1, 0]), "b": ([0, 1], [0, 1])}, xlabel="x")
    assert len(ax.lines) == 2 and ax.get_legend() is not None, "two curves and a legend"


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda im: plot_attributions(im.numpy(), {"a": torch.rand(3, 32, 32)}),
            TypeError,
            "images",
        ),
        (
            lambda im: plot_attributions((im * 255).byte(), {"a": torch.rand(3, 32, 32)}),
            TypeError,
            "floating",
        ),
        (
            lambda im: plot_attributions(im * 3, {"a": torch.rand(3, 32, 32)}),
            ValueError,
            r"\[0, 1\]",
        ),
        (
            lambda im: plot_attributions(im[0], {"a": torch.rand(32, 32)}),
            ValueError,
            r"images must have 3 or 4 dims \(C, H, W\) or \(N, C, H, W\)",
        ),
        (
            lambda im: plot_attributions(im - 0.5, {"a": torch.rand(3, 32, 32)}),
            ValueError,
            r"images must hold pixel values in \[0, 1\] \(pass images before normalization",
        ),
        (
            lambda im: plot_attributions(im, {"a": torch.rand(3, 32, 32)}, panel_size=0),
            ValueError,
            "panel_size must be > 0",
        ),
        (
            lambda im: plot_attributions(im, {"a": torch.rand(3, 32, 32)}, outlier_perc="2"),
            TypeError,
            "outlier_perc must be a real number",
        ),
        (lambda im: plot_attributions(im, {}), ValueError, "attributions"),
        (lambda im: plot_attributions(im, [torch.rand(3, 32, 32)]), TypeError, "attributions"),
        (
            lambda im: plot_attributions(im, {"a": torch.rand(3, 16, 16)}),
            ValueError,
            r"attributions\['a'\]",
        ),
        (
            lambda im: plot_attributions(im, {"a": torch.full((3, 32, 32), float("nan"))}),
            ValueError,
            "NaN",
        ),
        (
            lambda im: plot_attributions(im, {"a": torch.rand(3, 32, 32)}, sign="abs"),
            ValueError,
            "sign",
        ),
        (
            lambda im: plot_attributions(im, {"a": torch.rand(3, 32, 32)}, method="x"),
            ValueError,
            "method",
        ),
        (
            lambda im: plot_attributions(im, {"a": torch.rand(3, 32, 32)}, masks=torch.ones(8, 8)),
            ValueError,
            "masks",
        ),
        (
            lambda im: plot_attributions(im, {"a": torch.rand(3, 32, 32)}, row_labels=["a", "b"]),
            ValueError,
            "row_labels",
        ),
        (
            lambda im: plot_attributions(im, {"a": torch.rand(3, 32, 32)}, outlier_perc=100),
            ValueError,
            "outlier_perc",
        ),
        (
            lambda im: plot_rank_gallery(im, ranks=(1, 40)),
            ValueError,
            re.escape(OUT_OF_RANGE.format(name="ranks[1]", low=0, high=32, value=40)),
        ),
        (
            lambda im: plot_rank_gallery(im, ranks=(1.5,)),
            TypeError,
            r"ranks\[0\] must be an integer",
        ),
        (lambda im: plot_rank_gallery(im, ranks=()), ValueError, "ranks"),
        (lambda im: plot_rank_gallery(im, reverse="yes"), TypeError, "reverse"),
        (lambda im: plot_rank_gallery(torch.rand(2, 32, 32)), ValueError, "channels"),
    ],
)
def test_bad_input_errors(image, call, error, match):
    """Bad input raises a clear error naming the argument."""
    with pytest.raises(error, match=match):
        call(image)


# -- layout: colour bar, labels, titles, aspect ratio ----------------------------------


def test_one_colour_bar_beside_the_maps(image):
    """A colour bar is an extra axes with the heat map's colours and limits, and a label."""
    images = torch.stack([image, image.flip(-1)])
    attrs = {"IG": torch.randn(2, 3, 32, 32), "RIG": torch.randn(2, 3, 32, 32)}
    fig, axes = plot_attributions(images, attrs, sign="all")
    extra = [ax for ax in fig.axes if ax not in set(axes.ravel())]
    assert len(extra) == 1, f"expected one colour bar axes, got {len(extra)}"
    bar = extra[0]
    heat = axes[0, 1].images[-1]
    assert bar.get_ylim() == pytest.approx((-1.0, 1.0)), "sign='all' maps span -1..1"
    assert heat.get_clim() == pytest.approx((-1.0, 1.0)), "the bar reads the maps' limits"
    assert "per-map" in bar.get_ylabel(), f"label must name the scale: {bar.get_ylabel()!r}"
    assert _inside_figure(fig, bar), "the colour bar is cut off"
    assert _inside_figure(fig, bar.yaxis.label), "the colour bar's label is cut off"
    column = _pixels(fig)[::-1][:, int(bar.get_window_extent().x0) + 3]
    assert len(np.unique(column[..., :3], axis=0)) > 20, "the colour bar shows a gradient"

    small, small_axes = plot_attributions(image, {"IG": torch.randn(3, 32, 32)}, panel_size=1.0)
    small_bar = [ax for ax in small.axes if ax not in set(small_axes.ravel())][0]
    assert _inside_figure(small, small_bar.yaxis.label), "the label fits a one-row bar"

    _, shared_axes = plot_attributions(images, attrs, shared_scale=True)
    shared_bar = [ax for ax in shared_axes[0, 0].figure.axes if ax not in set(shared_axes.ravel())]
    assert "one scale" in shared_bar[0].get_ylabel(), "a shared scale says so"

    fig, axes = plot_attributions(images, attrs, show_colorbar=False)
    assert len(fig.axes) == axes.size, "show_colorbar=False draws no colour bar"


def test_long_row_labels_stay_inside_the_figure(image):
    """File names as row labels are shortened to the panel: start and end stay visible."""
    images = torch.stack([image, image.flip(-1)])
    fig, axes = plot_attributions(
        images, {"IG": torch.randn(2, 3, 32, 32)}, row_labels=[LONG_NAME, "short.png"]
    )
    label = axes[0, 0].yaxis.label
    assert _inside_figure(fig, label), "a long row label runs off the figure"
    text = label.get_text()
    assert text.startswith("holiday") and text.endswith(".jpeg"), f"lost start or end: {text}"
    assert "…" in text, "a shortened label shows where text was left out"
    assert axes[1, 0].get_ylabel() == "short.png", "a label that fits is left alone"

    fig, axes = plot_rank_gallery(image, ranks=(1, None), row_labels=[LONG_NAME])
    assert _inside_figure(fig, axes[0, 0].yaxis.label), "gallery row label runs off"


@pytest.mark.parametrize("n_methods", [1, 3])
def test_titles_fit_the_figure(image, n_methods):
    """A long figure title and long method names stay inside the figure, even one column."""
    title = "Rank Integrated Gradients next to Integrated Gradients on a photo of a cat"
    attrs = {
        f"Method number {j} with a long name": torch.randn(3, 32, 32) for j in range(n_methods)
    }
    fig, axes = plot_attributions(image, attrs, title=title)
    suptitle = fig.get_suptitle()
    assert suptitle.replace("\n", " ") == title, "the title is wrapped, not cut"
    assert _inside_figure(fig, fig._suptitle), "the figure title is clipped"
    for j in range(1, n_methods + 1):
        assert _inside_figure(fig, axes[0, j].title), f"column {j} title is clipped"
        assert axes[0, j].get_title().replace("\n", " ").startswith("Method number"), (
            "method names keep their start"
        )


@pytest.mark.parametrize("shape", [(48, 64), (64, 48)], ids=["4:3 landscape", "3:4 portrait"])
def test_panels_follow_the_image_aspect_ratio(image, shape):
    """Rows and columns of non-square images sit close: no large gaps between panels."""
    images = torch.rand(3, 3, *shape)
    fig, axes = plot_attributions(images, {"IG": torch.randn(3, 3, *shape)}, show_colorbar=False)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    boxes = [[ax.get_window_extent(r) for ax in row] for row in axes]
    height, width = boxes[1][0].height, boxes[1][0].width
    assert width / height == pytest.approx(shape[1] / shape[0], rel=0.05), "image aspect"
    row_gap = boxes[1][0].y0 - boxes[2][0].y1
    col_gap = boxes[1][1].x0 - boxes[1][0].x1
    assert row_gap < 0.2 * height, f"gap of {row_gap:.0f}px between rows {height:.0f}px high"
    assert col_gap < 0.2 * width, f"gap of {col_gap:.0f}px between columns {width:.0f}px wide"
    fig, axes = plot_rank_gallery(images[:2], ranks=(1, 4, None))
    fig.canvas.draw()
    a, b = axes[0, 0].get_window_extent(), axes[1, 0].get_window_extent()
    assert a.y0 - b.y1 < 0.2 * a.height, "gallery rows of non-square images sit close"


def test_figures_are_standalone(image):
    """Figures are made without pyplot state unless use_pyplot=True."""
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plot_attributions(image, {"IG": torch.randn(3, 32, 32)})
    plot_rank_gallery(image, ranks=(1, None))
    plot_spectra(RankSpectrum([0, 1], [0.5, 1.0], None, 2))
    assert plt.get_fignums() == before, "a figure was registered with pyplot"
    fig, _ = plot_attributions(image, {"IG": torch.randn(3, 32, 32)}, use_pyplot=True)
    assert fig.number in plt.get_fignums(), "use_pyplot=True makes a pyplot figure"
    plt.close(fig)


# -- rank spectra ----------------------------------------------------------------------


def _spectra():
    """Two labelled spectra over the same ranks, natural and low-rank-trained."""
    natural = RankSpectrum([0, 4, 8, 16], [0.1, 0.4, 0.9, 1.0], [0.1, 0.3, 0.7, 0.75], 20)
    low_rank = RankSpectrum([0, 4, 8, 16], [0.1, 0.8, 1.0, 1.0], [0.15, 0.6, 0.7, 0.7], 20)
    return natural, low_rank


def test_plot_spectra_draws_each_curve_with_labelled_axes():
    """One curve per spectrum with its values; the y axis names the metric shown."""
    natural, low_rank = _spectra()
    fig, ax = plot_spectra({"natural": natural, "low-rank": low_rank})
    assert [line.get_label() for line in ax.lines] == ["natural", "low-rank"], (
        "one curve per spectrum, in order, with its label"
    )
    assert list(ax.lines[1].get_ydata()) == low_rank.agreement, "agreement values drawn"
    assert list(ax.lines[0].get_xdata()) == natural.ranks, "x is the rank"
    assert ax.get_ylabel() == "agreement with full-rank prediction", "y axis names the metric"
    assert ax.get_xlabel() == "k (top k singular values kept)", "x axis says ranks are kept"
    assert ax.get_legend() is not None and _n_colours(fig) > 5, "legend and visible curves"

    fig, ax = plot_spectra([natural, low_rank], metric="accuracy")
    assert list(ax.lines[0].get_ydata()) == natural.accuracy, "accuracy values drawn"
    assert ax.get_ylabel() == "top-1 accuracy" and ax.get_legend() is None, (
        "accuracy y label; no labels, no legend"
    )

    removed = RankSpectrum([0, 4], [1.0, 0.3], None, 5, reverse=True)
    _, ax = plot_spectra(removed)
    assert ax.get_xlabel() == "k (top k singular values removed)", "x axis says ranks are removed"

    fig, own = plot_spectra({"a": natural})
    _, again = plot_spectra({"b": low_rank}, ax=own)
    assert again is own and len(own.lines) == 2, "draws on the axes it is given"


def test_plot_accuracy_gap_draws_the_gap():
    """The gap curve equals accuracy_gap, with a zero line and a labelled y axis."""
    natural, low_rank = _spectra()
    fig, ax = plot_accuracy_gap(low_rank, natural, label="low-rank - natural")
    ranks, gap = accuracy_gap(low_rank, natural)
    curve = ax.lines[-1]
    assert list(curve.get_xdata()) == ranks, "x is the shared ranks"
    np.testing.assert_allclose(curve.get_ydata(), gap, err_msg="gap values drawn")
    assert list(ax.lines[0].get_ydata()) == [0.0, 0.0], "a line at zero"
    assert ax.get_ylabel() == "top-1 accuracy difference", "y axis names the difference"
    assert ax.get_legend() is not None and _n_colours(fig) > 5, "legend and visible curve"


def test_spectra_errors():
    """Mixed reverse flags, unknown metrics, missing accuracy and non-spectra raise."""
    natural, _ = _spectra()
    removed = RankSpectrum([0, 4], [1.0, 0.3], None, 5, reverse=True)
    with pytest.raises(ValueError, match="same reverse flag"):
        plot_spectra([natural, removed])
    with pytest.raises(ValueError) as info:
        plot_spectra(natural, metric="loss")
    assert str(info.value) == UNKNOWN_CHOICE.format(
        name="metric", choices=["agreement", "accuracy"], got="loss"
    ), "the shared choice template"
    with pytest.raises(ValueError, match="needs a spectrum computed with labels"):
        plot_spectra(removed, metric="accuracy")
    with pytest.raises(TypeError, match="RankSpectrum"):
        plot_spectra([natural, "spectrum"])
    with pytest.raises(ValueError, match="spectra must not be empty"):
        plot_spectra({})
    with pytest.raises(ValueError, match="share no rank"):
        plot_accuracy_gap(natural, RankSpectrum([1], [1.0], [1.0], 1))
