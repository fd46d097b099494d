"""Tests for captum_rig.viz: grid shapes, real pixels, shared scales, galleries, errors."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from captum_rig.viz import (
    plot_attributions,
    plot_curves,
    plot_rank_gallery,
    plot_rig_channel_max,
)


def _pixels(fig: Figure) -> np.ndarray:
    """The rendered RGBA canvas as an (H, W, 4) uint8 array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())


def _n_colours(fig: Figure) -> int:
    rgb = _pixels(fig)[..., :3].reshape(-1, 3)
    return len(np.unique(rgb, axis=0))


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
    ]


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
    assert axes[0, -1].get_title() == "full (rank 32)"
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
    assert "removed" in axes[0, 2].get_title() and "×" in axes[0, 2].get_title()
    assert _n_colours(fig) > 200, "reverse gallery looks blank"


def test_curves():
    """Line plot of named curves, with a legend."""
    fig, ax = plot_curves({"a": ([0, 1], [1, 0]), "b": ([0, 1], [0, 1])}, xlabel="x")
    assert len(ax.lines) == 2 and ax.get_legend() is not None


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
            "images must have shape",
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
        (lambda im: plot_rank_gallery(im, ranks=(1, 40)), ValueError, r"ranks must lie in 0\.\.32"),
        (lambda im: plot_rank_gallery(im, ranks=(1.5,)), TypeError, "ranks"),
        (lambda im: plot_rank_gallery(im, ranks=()), ValueError, "ranks"),
        (lambda im: plot_rank_gallery(im, reverse="yes"), TypeError, "reverse"),
        (lambda im: plot_rank_gallery(torch.rand(2, 32, 32)), ValueError, "channels"),
    ],
)
def test_bad_input_errors(image, call, error, match):
    """Bad input raises a clear error naming the argument."""
    with pytest.raises(error, match=match):
        call(image)
