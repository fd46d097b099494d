"""Tests for captum_rig.viz.curves: labelled curves, rank spectra, the accuracy gap."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from captum_rig._checks import UNKNOWN_CHOICE
from captum_rig.spectrum import RankSpectrum, accuracy_gap
from captum_rig.viz import plot_accuracy_gap, plot_curves, plot_spectra

from ._helpers import n_colours


def test_curves():
    """Line plot of named curves, with a legend."""
    fig, ax = plot_curves({"a": ([0, 1], [1, 0]), "b": ([0, 1], [0, 1])}, xlabel="x")
    assert len(ax.lines) == 2 and ax.get_legend() is not None, "two curves and a legend"


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
    assert ax.get_legend() is not None and n_colours(fig) > 5, "legend and visible curves"

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
    assert ax.get_legend() is not None and n_colours(fig) > 5, "legend and visible curve"


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


def test_plot_spectra_chance_title_and_a_legend_beside_the_curves():
    """chance= draws a dashed line in the legend; the legend sits right of the axes (it
    covers no curve) inside the figure; title= names the data."""
    from ._helpers import inside_figure

    natural, low_rank = _spectra()
    fig, ax = plot_spectra(
        {"natural": natural, "low rank": low_rank}, chance=1 / 6, title="on data/shapes"
    )
    chance = ax.lines[-1]
    assert chance.get_linestyle() == "--" and list(chance.get_ydata()) == [1 / 6, 1 / 6]
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["natural", "low rank", "chance"]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
    assert inside_figure(fig, legend), "the legend is cut off"
    assert ax.get_title() == "on data/shapes"
    with pytest.raises(ValueError, match="chance must be in"):
        plot_spectra(natural, chance=2)


def test_rank_contributions_log_axis_for_geometric_bands():
    """Doubling bands (0, 1, 2, 4, ..., 128, 224) get a base-2 log axis with a tick at each
    edge, so the top bands are not squeezed; even bands keep a linear one."""
    import torch

    from captum_rig.viz import plot_rank_contributions

    bands = [0, 1, 2, 4, 8, 16, 32, 64, 128, 224]
    c = torch.rand(2, 3, len(bands) - 1)
    for cumulative in (True, False):
        _, ax = plot_rank_contributions(c, bands=bands, cumulative=cumulative)
        assert ax.get_xscale() == "symlog"
        assert list(ax.get_xticks()) == bands and ax.get_xlim() == (0, 224)
    _, ax = plot_rank_contributions(torch.rand(1, 3, 4), bands=[0, 8, 16, 24, 32])
    assert ax.get_xscale() == "linear", "even bands: linear"
    _, ax = plot_rank_contributions(torch.rand(1, 3, 32), xscale="log")
    assert ax.get_xscale() == "symlog" and list(ax.get_xticks()) == [0, 1, 2, 4, 8, 16, 32]
    with pytest.raises(ValueError, match="xscale"):
        plot_rank_contributions(c, bands=bands, xscale="loglog")
