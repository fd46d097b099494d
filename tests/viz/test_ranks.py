"""Tests for captum_rig.viz.ranks: rank galleries, kept and removed."""

import re

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from captum_rig._checks import OUT_OF_RANGE
from captum_rig.viz import plot_rank_gallery

from ._helpers import n_colours


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
    assert n_colours(fig) > 200, "gallery looks blank"


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
    assert n_colours(fig) > 200, "reverse gallery looks blank"


@pytest.mark.parametrize(
    "call, error, match",
    [
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
def test_bad_gallery_input_errors(image, call, error, match):
    """Bad input raises a clear error naming the argument."""
    with pytest.raises(error, match=match):
        call(image)
