"""captum_rig.viz.fourier: rank and frequency views side by side, heat maps on one scale."""

import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex

from captum_rig import RankSpectrum
from captum_rig.fourier import FrequencySpectrum
from captum_rig.viz.fourier import (
    plot_filter_spectra,
    plot_fourier_heat_maps,
    plot_frequency_contributions,
    plot_rank_and_frequency_contributions,
    plot_rank_and_frequency_spectra,
)

RANKS = {
    "natural": RankSpectrum([0, 4, 8], [0.2, 0.9, 1.0], [0.1, 0.8, 0.9], 10),
    "robust": RankSpectrum([0, 4, 8], [0.2, 0.5, 1.0], [0.1, 0.4, 0.7], 10),
}
RADII = {
    "natural": FrequencySpectrum([0, 2.5, 6], [0.2, 0.6, 1.0], [0.1, 0.5, 0.9], 10),
    "robust": FrequencySpectrum([0, 2.5, 6], [0.2, 0.7, 1.0], [0.1, 0.6, 0.7], 10),
}


def _colours(ax, label):
    return {to_hex(line.get_color()) for line in ax.lines if line.get_label() == label}


def test_spectra_side_by_side_share_colours_and_values():
    """Each model one colour in both panels; the curves are the spectra's own values."""
    fig, (left, right) = plot_rank_and_frequency_spectra(RANKS, RADII, chance=0.1)
    for label in RANKS:
        assert _colours(left, label) == _colours(right, label), label
    assert _colours(left, "natural") != _colours(left, "robust")
    natural = next(line for line in right.lines if line.get_label() == "natural")
    assert natural.get_xdata().tolist() == [0.0, 2.5, 6.0]
    assert natural.get_ydata().tolist() == [0.1, 0.5, 0.9]
    assert left.get_xlabel() == "k (top k ranks kept)"
    assert right.get_xlabel() == "r (frequencies of radius ≤ r kept)"
    assert right.get_legend() is not None and left.get_legend() is None, "one legend"
    assert [line.get_ydata()[0] for line in left.lines if line.get_label() == "chance"] == [0.1]


def test_filter_spectra_agreement_labels_and_refusals():
    """The agreement axis names its reference; mixed kinds, no accuracy: errors."""
    _, ax = plot_filter_spectra(RADII, metric="agreement")
    assert ax.get_ylabel() == "agreement with the unfiltered prediction"
    reverse = FrequencySpectrum([0, 2], [1.0, 0.5], None, 4, reverse=True)
    _, ax = plot_filter_spectra(reverse)
    assert ax.get_xlabel() == "r (frequencies of radius ≤ r removed)"
    with pytest.raises(ValueError, match="one kind"):
        plot_filter_spectra({"a": RANKS["natural"], "b": RADII["natural"]})
    with pytest.raises(ValueError, match="no accuracy"):
        plot_filter_spectra({"a": reverse}, metric="accuracy")
    with pytest.raises(TypeError, match="spectra"):
        plot_filter_spectra({"a": [0.1, 0.2]})


def test_heat_maps_share_one_colour_scale():
    """One scale from 0 to the largest rate of all maps; the zero frequency at (0, 0)."""
    low = torch.zeros(8, 8, dtype=torch.float64)
    low[4, 4] = 0.25  # the zero frequency (fftshift order)
    high = torch.full((8, 8), 0.5, dtype=torch.float64)
    fig, axes = plot_fourier_heat_maps({"a": low, "b": high})
    assert {ax.images[0].get_clim() for ax in axes} == {(0.0, 0.5)}
    image = axes[0].images[0]
    left, right, bottom, top = image.get_extent()
    assert (left, right, bottom, top) == (-4.5, 3.5, -4.5, 3.5)
    # the pixel drawn at (f_x, f_y) = (0, 0) holds the zero frequency's rate
    drawn = np.asarray(image.get_array())
    row = int(top - 0.5)  # drawn top row is f_y = 3; origin upper
    assert drawn[row - 0, 4] == 0.25 and drawn.sum() == 0.25
    fig, axes = plot_fourier_heat_maps({"a": low}, vmax=1.0)
    assert axes[0].images[0].get_clim() == (0.0, 1.0)
    with pytest.raises(ValueError, match="error rates in"):
        plot_fourier_heat_maps({"a": low + 2})
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        plot_fourier_heat_maps({"a": torch.rand(2, 8, 8)})


def test_frequency_contributions_cumulative_and_per_band():
    """Shares of the bands' sum at each band edge; per band as steps over (r_j-1, r_j]."""
    c = torch.tensor([[[1.0, -1.0, 4.0]], [[1.0, 1.0, 2.0]]])  # (N=2, C=1, m=3): sum 8
    _, ax = plot_frequency_contributions(c, bands=[0, 3, 8])
    curve = ax.lines[-1]
    assert curve.get_xdata().tolist() == [0.0, 3.0, 8.0]
    assert curve.get_ydata().tolist() == [0.25, 0.25, 1.0]
    assert ax.get_ylabel().startswith("cumulative share of the bands' sum")
    _, ax = plot_frequency_contributions({"m": c}, bands=[0, 3, 8], cumulative=False)
    steps = ax.lines[-1]
    assert steps.get_xdata().tolist() == [0.0, 0.0, 3.0, 8.0]
    assert steps.get_ydata().tolist() == [0.25, 0.25, 0.0, 0.75]
    with pytest.raises(ValueError, match="increasing radii"):
        plot_frequency_contributions(c, bands=[0, 8, 3])
    with pytest.raises(ValueError, match="no total"):
        plot_frequency_contributions(torch.zeros(1, 1, 3))


def test_contributions_side_by_side():
    """Rank shares left, frequency shares right, one colour per model, axes as asked."""
    from matplotlib.figure import Figure

    ranks = {
        "a": torch.tensor([[[3.0, 1.0, 0.0, 0.0]]]),
        "b": torch.tensor([[[1.0, 1.0, 1.0, 1.0]]]),
    }
    radii = {"a": torch.tensor([[[2.0, 1.0, 1.0]]]), "b": torch.tensor([[[1.0, 1.0, 2.0]]])}
    fig = Figure()
    axes = fig.subplots(1, 2)
    got_fig, got_axes = plot_rank_and_frequency_contributions(ranks, radii, axes=axes)
    assert got_fig is fig and list(got_axes) == list(axes)
    for label in ranks:
        assert _colours(axes[0], label) == _colours(axes[1], label), label
    a = next(line for line in axes[1].lines if line.get_label() == "a")
    assert a.get_ydata().tolist() == [0.5, 0.75, 1.0]
    assert axes[0].get_ylabel() == axes[1].get_ylabel()
