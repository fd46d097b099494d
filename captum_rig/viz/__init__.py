"""Every figure: attribution maps side by side, Eq. (3), rank galleries, rank spectra.

Attribution maps are drawn with Captum's ``captum.attr.visualization.visualize_image_attr``
(its signs, colour maps, outlier clipping and heat-map modes); this package adds the grid
(images as rows, methods as columns), a colour bar, an optional colour scale shared by
all maps, object outlines, the low-rank images of the paper and its rank-spectrum curves.
Functions take images as float tensors ``(C, H, W)`` or ``(N, C, H, W)`` with values in
[0, 1], draw on standalone ``matplotlib.figure.Figure`` objects (no pyplot state unless
``use_pyplot=True``), return ``(fig, axes)`` and never call ``plt.show()``;
:func:`save_figure` writes any of them to a file, whole or not at all.

One module per family: ``attributions`` (maps side by side), ``ranks`` (rank galleries),
``curves`` (spectra, accuracy gap, rank contributions, labelled curves), ``layers``
(layer spectra and norms), ``fourier`` (the frequency view beside the rank view),
``scores`` (distributions of attribution scores), and ``_figure`` (what they share, and
:func:`save_figure`).

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516 (Figs. 2, 3, 7 and 9; Eq. 3; Algorithm 1).
"""

from captum_rig.viz._figure import FIGURE_FORMATS, save_figure
from captum_rig.viz.attributions import plot_attributions, plot_rig_channel_max
from captum_rig.viz.curves import (
    plot_accuracy_gap,
    plot_curves,
    plot_rank_contributions,
    plot_spectra,
)
from captum_rig.viz.fourier import (
    plot_filter_spectra,
    plot_fourier_heat_maps,
    plot_frequency_contributions,
    plot_rank_and_frequency_contributions,
    plot_rank_and_frequency_spectra,
)
from captum_rig.viz.layers import plot_layer_norms, plot_layer_spectra
from captum_rig.viz.ranks import DEFAULT_GALLERY_RANKS, plot_rank_gallery
from captum_rig.viz.scores import plot_score_distributions, save_score_distributions

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
    "plot_filter_spectra",
    "plot_rank_and_frequency_spectra",
    "plot_fourier_heat_maps",
    "plot_frequency_contributions",
    "plot_rank_and_frequency_contributions",
    "plot_score_distributions",
    "save_score_distributions",
    "DEFAULT_GALLERY_RANKS",
    "save_figure",
    "FIGURE_FORMATS",
]
