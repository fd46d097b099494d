"""The demo's Fourier stage: the two models in the frequency view beside the rank view.

Frequency spectra (low-pass images) beside the rank spectra, frequency contributions
beside the rank contributions, and a Fourier heat map of each model, in one figure
(:data:`~captum_rig.demo.OUTPUTS` ``rank_or_frequency``). Kept cheap: a few radii and a
few images (:data:`~captum_rig.demo._state.FOURIER_RADII` and the counts beside it).
"""

from typing import Any

import torch

from captum_rig.demo._panels import save
from captum_rig.demo._state import (
    CONTRIBUTION_BANDS,
    FOURIER_BANDS,
    FOURIER_IMAGES,
    FOURIER_RADII,
    FOURIER_SPECTRUM_IMAGES,
    FOURIER_STEPS,
    HEAT_MAP_EPS,
    HEAT_MAP_IMAGES,
    MODEL_TITLES,
    DemoState,
)

__all__ = ["fourier_view", "fourier_detail", "fourier_counts"]


def fourier_counts(s: DemoState) -> Any:
    """Images of the frequency spectra, the contributions and the heat maps."""
    return (
        min(FOURIER_SPECTRUM_IMAGES, s.n_spectrum),
        min(FOURIER_IMAGES, s.n_eval),
        min(HEAT_MAP_IMAGES, s.n_eval),
    )


def fourier_detail(s: DemoState) -> str:
    """What the stage does, for the demo's log line."""
    n_spectrum, n_contributions, n_heat = fourier_counts(s)
    return (
        f"{len(FOURIER_RADII)} radii on {n_spectrum} images, contributions on "
        f"{n_contributions}, heat maps on {n_heat}"
    )


def fourier_view(s: DemoState) -> None:
    """Computes the frequency view of both models and draws it beside the rank view."""
    from captum_rig.fourier import fourier_heat_map, frequency_contributions, frequency_spectrum

    n_spectrum, n_contributions, n_heat = fourier_counts(s)
    xs, ys = s.data.images[:n_spectrum], s.data.labels[:n_spectrum]
    x, y = s.data.images[:n_contributions], s.data.labels[:n_contributions]
    for name, m in s.models.items():
        title = MODEL_TITLES[name]
        s.frequency_spectra[title] = frequency_spectrum(
            m, xs, list(FOURIER_RADII), ys, batch_size=512, progress=False
        )
        s.frequency_contributions[title] = frequency_contributions(
            m, x, target=y, bands=list(FOURIER_BANDS), n_steps=FOURIER_STEPS
        )
        xh, yh = s.data.images[:n_heat], s.data.labels[:n_heat]
        s.heat_maps[title] = fourier_heat_map(
            m, xh, yh, HEAT_MAP_EPS, batch_size=2048, progress=False
        )
        with torch.no_grad():  # the floor of the map: errors without a perturbation
            s.heat_clean[title] = float((m(xh).argmax(1) != yh).double().mean())
    _figure(s)


def _figure(s: DemoState) -> None:
    """Three rows, rank view left and frequency view right: accuracy, contributions; then
    the heat maps of both models."""
    from matplotlib.figure import Figure

    from captum_rig.viz.fourier import (
        plot_fourier_heat_maps,
        plot_rank_and_frequency_contributions,
        plot_rank_and_frequency_spectra,
    )

    n_spectrum, n_contributions, n_heat = fourier_counts(s)
    fig = Figure(figsize=(9, 9.6), layout="constrained")
    axes = fig.subplots(3, 2, height_ratios=(1, 1, 1.1))
    plot_rank_and_frequency_spectra(
        s.spectra[False], s.frequency_spectra, chance=1 / len(s.shape_names), axes=axes[0]
    )
    axes[0, 0].set_title(f"rank-k images ({s.n_spectrum} images)", fontsize="medium")
    axes[0, 1].set_title(f"low-pass images ({n_spectrum} images)", fontsize="medium")
    axes[0, 1].legend(loc="lower right", fontsize="small")  # inside: the columns stay even
    plot_rank_and_frequency_contributions(
        s.contributions, s.frequency_contributions, list(CONTRIBUTION_BANDS),
        list(FOURIER_BANDS), axes=axes[1],
    )  # fmt: skip
    # the rank bands double in width: a log2 axis gives each the same room
    axes[1, 0].set_xscale("symlog", base=2, linthresh=1, linscale=0.5)
    axes[1, 0].set_xticks(CONTRIBUTION_BANDS, [str(b) for b in CONTRIBUTION_BANDS])
    axes[1, 0].set_xlim(0, CONTRIBUTION_BANDS[-1])
    n_rank = next(iter(s.contributions.values())).shape[0]
    axes[1, 0].set_title(f"evidence by singular component ({n_rank} images)", fontsize="medium")
    axes[1, 1].set_title(
        f"evidence by frequency radius ({n_contributions} images)", fontsize="medium"
    )
    plot_fourier_heat_maps(s.heat_maps, axes=axes[2])
    for ax, title in zip(axes[2], s.heat_maps):
        ax.set_title(f"{title}: Fourier heat map", fontsize="medium")
    fig.suptitle(
        "Rank view (left) and frequency view (right)\nheat maps: error rate under a "
        f"perturbation of L2 norm {HEAT_MAP_EPS:g} along each frequency, {n_heat} images"
    )
    save(s, fig, "rank_or_frequency")
