"""Tests for captum_rig.viz.layers: the per-layer norm figure and the spectra panels."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from captum_rig.stability import lipschitz_analysis, weight_spectra  # noqa: E402
from captum_rig.viz.layers import plot_layer_norms, plot_layer_spectra  # noqa: E402


def _net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))


def test_layer_norms_from_reports():
    """A report's factors: one point per layer, each the certified norm."""
    net = _net()
    report = lipschitz_analysis(net, torch.rand(1, 3, 6, 6))
    fig, ax = plot_layer_norms({"net": report, "again": report})
    (line, _) = ax.get_lines()
    assert np.allclose(line.get_ydata(), [r.norm for r in report.factors()]), "not the norms"
    assert "operator norm" in ax.get_ylabel(), ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "layer 0", labels
    assert ax.get_ylim()[1] >= max(line.get_ydata()), "a peak above the axis"


def test_layer_norms_within_two_decades_read_plain_numbers():
    """Norms between 1.5 and 5: the log axis labels 2, 3, 5 and 10, not 2×10⁰."""
    spectra = {"net": {"a": np.array([1.5]), "b": np.array([5.0])}}
    fig, ax = plot_layer_norms(spectra)
    fig.canvas.draw()
    labels = {t.get_text() for t in ax.get_yticklabels(minor=True) + ax.get_yticklabels()}
    assert {"2", "3", "5", "10"} <= labels, labels
    assert not any("times" in t or "^" in t for t in labels), labels


def test_spectra_panels_name_layers_and_show_points():
    """Panels titled without a shared wrapper prefix; a 2-value head drawn as points."""

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = _net()

    fig, axes = plot_layer_spectra({"a": weight_spectra(Wrapped())})
    titles = [ax.get_title() for ax in axes.flat if ax.get_visible()]
    assert titles[0].startswith("layer 0") and not any("model." in t for t in titles), titles
    head = axes.flat[len(titles) - 1].get_lines()[0]
    assert head.get_linestyle() in ("None", "") and head.get_marker() == "o", "a 2-point curve"
    for ax in axes.flat[: len(titles)]:
        top = max(line.get_ydata().max() for line in ax.get_lines())
        assert ax.get_ylim()[1] >= top, "a peak above the last tick"
