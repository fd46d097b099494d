"""The demo's scores stage: mask energy and deletion/insertion of every method's maps
against the synthetic shapes' object masks (:mod:`captum_rig.metrics`), ``scores.csv``
and the mean deletion/insertion curves."""

from typing import Any, Dict, Tuple

import torch
from torch import Tensor

from captum_rig._tables import write_csv
from captum_rig.demo._panels import save, two_panels
from captum_rig.demo._state import DemoState
from captum_rig.metrics import deletion_insertion, mask_energy

__all__ = ["scores"]


def _mean_sd(values: Tensor) -> Tuple[float, float]:
    """Mean and standard deviation of the finite values (sd NaN for fewer than two)."""
    finite = values[~values.isnan()]
    sd = float(finite.std()) if finite.numel() > 1 else float("nan")
    return float(finite.mean()) if finite.numel() else float("nan"), sd


def _score(s: DemoState, title: str, name: str, maps: Tensor, seconds: float) -> Dict[str, Any]:
    """One row of scores.csv, and the mean deletion/insertion curves of ``maps``."""
    x, y = s.data.images[: s.n_eval], s.data.labels[: s.n_eval]
    masks = s.data.masks[: s.n_eval]
    if name == "random":
        # a random map's expected share of the mask is that of an even spread
        maps_for_energy = torch.ones(len(x), 1, *x.shape[2:])
    else:
        maps_for_energy = maps
    energy, energy_sd = _mean_sd(mask_energy(maps_for_energy, masks))
    energy_2px, _ = _mean_sd(mask_energy(maps_for_energy, masks, tolerance=2))
    di = deletion_insertion(s.model, x, maps, y, n_steps=s.score_steps)
    return {
        "method": name,
        "title": title,
        "mask_energy": energy,
        "mask_energy_sd": energy_sd if name != "random" else float("nan"),
        "mask_energy_2px": energy_2px,
        "deletion_auc": float(di["deletion_auc"].mean()),
        "insertion_auc": float(di["insertion_auc"].mean()),
        "seconds": seconds,
        "curves": {
            key: (di["fractions"].tolist(), di[key].mean(0).tolist())
            for key in ("deletion", "insertion")
        },
    }


def scores(s: DemoState) -> None:
    x = s.data.images[: s.n_eval]
    for m in s.methods:  # the maps of stage 2, and the time they took there
        s.rows.append(_score(s, m.title, m.name, s.maps[m.name], s.seconds[m.name]))
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(x.shape[0], 1, *x.shape[2:], generator=g)
    s.rows.append(_score(s, "random order", "random", noise, float("nan")))
    _deletion_insertion_figure(s)
    fields = [k for k in s.rows[0] if k != "curves"]
    write_csv(s.paths["scores"], s.rows, fields)


def _deletion_insertion_figure(s: DemoState) -> None:
    from captum_rig.viz import plot_curves

    fig, axes = two_panels()
    for ax, key, verb, better in zip(
        axes, ("deletion", "insertion"), ("deleted", "inserted"), ("lower", "higher")
    ):
        plot_curves(
            {r["title"]: r["curves"][key] for r in s.rows},
            ax=ax,
            xlabel=f"fraction of pixels {verb}",
            ylabel="p(true class)",
            title=f"{key.capitalize()} ({better} is better)",
        )
    fig.suptitle(f"Mean over {s.n_eval} synthetic images; baseline: each image's mean colour")
    save(s, fig, "deletion_insertion")
