"""Tests for captum_rig.viz.attributions: grid shapes, real pixels, shared scales, Eq. (3)."""

import ast
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from captum_rig.viz import plot_attributions, plot_rig_channel_max

from ._helpers import n_colours


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
    assert n_colours(fig) > 200, "figure looks blank"


def test_plot_attributions_blended_and_signs(image):
    """Captum's blended heat map and every sign render."""
    for sign in ("absolute_value", "positive", "negative", "all"):
        fig, _ = plot_attributions(
            image, {"IG": torch.randn(1, 3, 32, 32)}, method="blended_heat_map", sign=sign
        )
        assert n_colours(fig) > 100, f"blank figure for sign={sign}"


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
    assert n_colours(fig) > 50, "figure looks blank"


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
    ],
)
def test_bad_input_errors(image, call, error, match):
    """Bad input raises a clear error naming the argument."""
    with pytest.raises(error, match=match):
        call(image)


# -- Eq. (3) from given maps -------------------------------------------------------------


def test_rig_channel_max_draws_given_maps(image):
    """With the maps given, nothing is computed: one column titled as Eq. (3), signed."""
    images = torch.stack([image, image.flip(-1)])
    maps = torch.randn(2, 1, 32, 32)
    fig, axes = plot_rig_channel_max(images, maps, masks=torch.zeros(2, 32, 32, dtype=torch.bool))
    assert axes.shape == (2, 2), f"got {axes.shape}"
    assert axes[0, 1].get_title() == "RIG, Eq. 3 (max)", "the column names the form"
    assert axes[0, 1].images[-1].get_clim() == (-1, 1), "sign='all' by default: signed map"
    assert n_colours(fig) > 50, "figure looks blank"


def test_rig_channel_max_old_and_new_forms_agree(image):
    """plot_rig_channel_max(model, images, ...) draws what the maps of RIG's max give."""
    from captum_rig import RIG

    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    conv(image[None])
    images = torch.stack([image, image.flip(-1)])
    _, old = plot_rig_channel_max(conv, images, target=1, n_steps=4)
    maps = RIG(conv).attribute(images, target=1, n_steps=4, channel_reduction="max")
    _, new = plot_rig_channel_max(images, maps)
    for i in range(2):
        np.testing.assert_allclose(
            np.asarray(old[i, 1].images[-1].get_array()),
            np.asarray(new[i, 1].images[-1].get_array()),
            err_msg="the old form draws RIG's channel maximum",
        )


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda im: plot_rig_channel_max(im, None), TypeError, "attributions must be a torch"),
        (
            lambda im: plot_rig_channel_max(im, torch.rand(1, 3, 32, 32)),
            ValueError,
            r"attributions must have shape \(N, 1, H, W\)",
        ),
        (
            lambda im: plot_rig_channel_max(im, torch.rand(1, 1, 32, 32), n_steps=4),
            TypeError,
            "plot_rig_channel_max\\(model, images, ...\\)",
        ),
    ],
)
def test_rig_channel_max_bad_maps(image, call, error, match):
    """Missing or many-channel maps, or the old form's settings without a model, raise."""
    with pytest.raises(error, match=match):
        call(image)


def test_figures_do_not_import_the_attribution_methods_at_module_level():
    """viz draws maps it is given: captum_rig.attr is imported inside a function only."""
    viz = Path(__file__).resolve().parents[2] / "captum_rig" / "viz"
    offenders = []
    for path in sorted(viz.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("captum_rig.attr")]
    assert not offenders, f"module-level imports of captum_rig.attr in viz: {offenders}"
