"""The demo's report: report.md's prose, tables and numbers, from what the stages found.

Every section's text follows the methods that were run. The report reads the demo's
record (:class:`~captum_rig.demo._state.DemoState`) and computes nothing but shares and
ratios of its numbers; its tables go through :mod:`captum_rig._tables`.
"""

import math
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import Tensor

from captum_rig._tables import MISSING, markdown_table, number
from captum_rig.demo._fourier import fourier_counts
from captum_rig.demo._state import (
    CONTRIBUTION_BANDS,
    CONTRIBUTION_STEPS,
    FOURIER_BANDS,
    FOURIER_STEPS,
    HEAT_MAP_EPS,
    MODEL_TITLES,
    OUTPUTS,
    DemoState,
)

__all__ = ["report"]

# Ranks of the spectrum tables (the spectra have more; the figure shows them all).
_SPECTRUM_RANKS = (1, 2, 4, 8, 16, 32)


def report(s: DemoState) -> str:
    """report.md: every section, its text following the methods that were run."""
    sections = (
        _report_intro,
        _report_spectra,
        _report_contributions,
        _report_fourier,
        _report_galleries,
        _report_attributions,
        _report_scores,
        _report_run,
    )
    return "\n".join(line for section in sections for line in [*section(s), ""])


def _report_intro(s: DemoState) -> List[str]:
    return [
        "# captum-rig demo",
        "",
        "The singular value perspective on model robustness (Jere, Kumar, Koushanfar, "
        "arXiv:2012.03516) on a toy problem that ships with captum-rig: 32×32 synthetic "
        "shapes (six classes, known object masks) and two small CNNs, one trained on the "
        "images as they are (*natural*) and one on their rank-8 approximations.",
    ]


def _spectrum_sentence(label: str, s: Any) -> str:
    acc = s.accuracy
    best = max(range(len(acc)), key=lambda i: (acc[i], -i))
    reach = next(k for k, a in zip(s.ranks, acc) if a >= 0.9 * acc[best])
    full = acc[s.ranks.index(max(s.ranks))]
    return (
        f"*{label}* reaches 90% of its best accuracy ({acc[best]:.2f}, at rank "
        f"{s.ranks[best]}) from rank {reach} on, and scores {full:.2f} on the full images."
    )


def _lowrank_remark(kept: Dict[str, Any]) -> str:
    s = kept.get(MODEL_TITLES["lowrank8"])
    if s is None or s.accuracy is None:
        return ""
    at = dict(zip(s.ranks, s.accuracy))
    if 8 in at and at[max(s.ranks)] < at[8] - 0.05:
        return (
            " The rank-8 model does worse on full images than on rank-8 ones "
            f"({at[max(s.ranks)]:.2f} vs {at[8]:.2f}): the ranks above 8 carry detail it "
            "never saw in training."
        )
    return ""


def _spectrum_table(spectra: Dict[str, Any]) -> List[str]:
    rows = []
    for label, spectrum in spectra.items():
        acc = dict(zip(spectrum.ranks, spectrum.accuracy))
        rows.append([label, *(_fixed(acc.get(k), 2) for k in _SPECTRUM_RANKS)])
    header = ["model", *(f"k={k}" for k in _SPECTRUM_RANKS)]
    return _table(header, rows)


def _table(header: Sequence[str], rows: List[List[Any]]) -> List[str]:
    """A Markdown table's lines, columns unaligned (``|---|``), cells as given."""
    return markdown_table(header, rows, align="l" * len(header)).split("\n")


def _fixed(value: Optional[float], digits: int = 3) -> str:
    """A number with ``digits`` decimals; a missing one (None, NaN) as ``—``."""
    return number(value, digits, fixed=True)


def _report_spectra(s: DemoState) -> List[str]:
    kept, removed = s.spectra[False], s.spectra[True]
    sentences = " ".join(_spectrum_sentence(label, sp) for label, sp in kept.items())
    return [
        "## The models and their rank spectra",
        "",
        f"Test accuracy on {s.n_spectrum} held-out synthetic images: natural "
        f"**{s.accuracies['natural']:.3f}**, trained on rank 8 "
        f"**{s.accuracies['lowrank8']:.3f}** (chance: {1 / len(s.shape_names):.3f}).",
        "",
        f"![rank spectra]({OUTPUTS['rank_spectra']})",
        "",
        sentences + _lowrank_remark(kept),
        "",
        "Accuracy on rank-k images (top k singular values of every channel kept):",
        "",
        *_spectrum_table(kept),
        "",
        "and with the top k removed:",
        "",
        *_spectrum_table(removed),
    ]


def _top_shares(contributions: Tensor) -> Dict[int, float]:
    """Band edge k -> share of the total carried by the top k components."""
    per_band = contributions.double().sum(dim=(0, 1))
    shares = (per_band.cumsum(0) / per_band.sum()).tolist()
    return dict(zip(CONTRIBUTION_BANDS[1:], shares))


def _report_contributions(s: DemoState) -> List[str]:
    shares = {title: _top_shares(c) for title, c in s.contributions.items()}
    edges = CONTRIBUTION_BANDS[1:-1]
    lines = [
        "## Where in the spectrum the evidence comes from",
        "",
        "`rank_contributions` splits each model's evidence for the true class, F(x) − F(0) "
        "(the logit's rise from the black image), by singular component along RIG's rank "
        f"path: here in the bands {_band_names()} ({CONTRIBUTION_STEPS} gradient "
        f"evaluations per image), summed over the {s.n_eval} scored images and the colour "
        "channels. Share of the bands' sum carried by the top k components (the sum is "
        "F(x) − F(0) up to the quadrature error; the last column compares the two):",
        "",
    ]
    rows = []
    for title, share in shares.items():
        total = float(s.contributions[title].double().sum())
        rise = s.rises[title]
        ratio = _fixed(total / rise if rise else math.nan, 2)
        rows.append([title, *(_percent(share[k]) for k in edges), ratio])
    header = ["model", *(f"top {k}" for k in edges), "bands' sum / (F(x) − F(0))"]
    lines += _table(header, rows)
    by_model = list(shares.items())
    return lines + [
        "",
        f"![rank contributions]({OUTPUTS['rank_contributions']})",
        "",
        "The top 4 components carry "
        + _join([f"{_percent(sh[4])} (*{title}*)" for title, sh in by_model])
        + " of the bands' sum; the top 8, "
        + _join([_percent(sh[8]) for _, sh in by_model])
        + "."
        + _overshoot_remark(shares.get(MODEL_TITLES["lowrank8"])),
    ]


def _percent(share: float) -> str:
    return MISSING if share != share else f"{share:.0%}"


def _band_names() -> str:
    return _join([f"{a}–{b}" for a, b in zip(CONTRIBUTION_BANDS, CONTRIBUTION_BANDS[1:])])


def _overshoot_remark(share: Optional[Dict[int, float]]) -> str:
    """A sentence when the rank-8 model has more than its whole evidence by rank 8."""
    if share is None or not share[8] >= 1.005:  # not NaN either
        return ""
    return (
        f" The model trained on rank 8 has more than its whole evidence ({share[8]:.0%}) by "
        "rank 8: the higher components, which it never saw in training, take some back."
    )


# Ranks and radii of the rank-or-frequency table; radius bands of the heat-map summary.
_COMPARED_RANKS = (4, 8)
_COMPARED_RADII = (4, 8, 11)
_HEAT_BANDS = ((-1.0, 4.0), (4.0, 11.0), (11.0, math.inf))  # (a, b]: the first from 0


def _reach(values: Sequence[Any], accuracy: Sequence[float]) -> Any:
    """The first rank (radius) from which accuracy stays within 90% of its best."""
    best = max(accuracy)
    return next(v for v, a in zip(values, accuracy) if a >= 0.9 * best)


def _kept(rank: Optional[int] = None, radius: Optional[float] = None, size: int = 32) -> float:
    """Share of the numbers of a size×size channel that a rank-k (low-pass) image keeps:
    ``k(2·size − k)`` free parameters of a rank-k matrix, or the DFT coefficients of
    radius ``<= r``."""
    from captum_rig.fourier import frequency_radius

    if rank is not None:
        return min(rank * (2 * size - rank), size * size) / size**2
    return float((frequency_radius(size, size) <= radius).double().mean())


def _rank_or_frequency_table(s: DemoState) -> List[str]:
    rows = []
    for title, freq in s.frequency_spectra.items():
        by_rank = dict(zip(s.spectra[False][title].ranks, s.spectra[False][title].accuracy))
        by_radius = dict(zip(freq.radii, freq.accuracy))
        cells = [_fixed(by_rank.get(k), 2) for k in _COMPARED_RANKS]
        cells += [_fixed(by_radius.get(float(r)), 2) for r in _COMPARED_RADII]
        rows.append([title, *cells, _fixed(by_radius[max(freq.radii)], 2)])
    header = ["model", *(f"rank {k}" for k in _COMPARED_RANKS)]
    header += [*(f"radius {r}" for r in _COMPARED_RADII), "full image"]
    return _table(header, rows)


def _reach_sentence(s: DemoState) -> str:
    parts = []
    for title, freq in s.frequency_spectra.items():
        ranks = s.spectra[False][title]
        k, r = _reach(ranks.ranks, ranks.accuracy), _reach(freq.radii, freq.accuracy)
        parts.append(
            f"*{title}* comes within 90% of its best accuracy from rank {k} on (a rank-{k} "
            f"image keeps {_kept(rank=k):.0%} of a channel's numbers) and from radius {r:g} "
            f"on ({_kept(radius=r):.0%} of its DFT coefficients)"
        )
    return "; ".join(parts) + "."


def _heat_table(s: DemoState) -> List[str]:
    from captum_rig.fourier import frequency_radius

    rows = []
    for title, heat in s.heat_maps.items():
        radius = torch.fft.fftshift(frequency_radius(*heat.shape), dim=(0, 1))
        cells = [float(heat[(radius > a) & (radius <= b)].mean()) for a, b in _HEAT_BANDS]
        rows.append([title, _fixed(s.heat_clean[title], 2), *(_fixed(c, 2) for c in cells)])
    names = ["radius ≤ 4", "4 < radius ≤ 11", "radius > 11"]
    return _table(["model", "unperturbed", *names], rows)


def _report_fourier(s: DemoState) -> List[str]:
    n_spectrum, n_contributions, n_heat = fourier_counts(s)
    first = {t: c.double().sum((0, 1)) for t, c in s.frequency_contributions.items()}
    low = {t: float(v[: FOURIER_BANDS.index(4) + 1].sum() / v.sum()) for t, v in first.items()}
    return [
        "## Rank or frequency?",
        "",
        "The same models in the frequency view of Yin et al. (NeurIPS 2019): "
        "`frequency_spectrum` keeps the 2-D DFT frequencies of radius ≤ r of every channel "
        "(low-pass images; the largest radius of a 32×32 image is ≈ 22.6), "
        "`frequency_contributions` splits F(x) − F(0) by radius band along the low-pass "
        f"path, and `fourier_heat_map` perturbs the images along each Fourier basis image. "
        f"Accuracy with the top k ranks kept ({s.n_spectrum} images) and with the "
        f"frequencies of radius ≤ r kept (the first {n_spectrum}):",
        "",
        *_rank_or_frequency_table(s),
        "",
        f"![rank or frequency]({OUTPUTS['rank_or_frequency']})",
        "",
        _reach_sentence(s),
        "",
        f"On the first {n_contributions} images (a rough guide: a few images' shares move a "
        "lot) the frequencies of radius ≤ 4 carry "
        + _join([f"{_percent(v)} (*{t}*)" for t, v in low.items()])
        + " of the bands' sum of the frequency contributions (bands "
        f"{', '.join(f'{b:g}' for b in FOURIER_BANDS)}, {FOURIER_STEPS} gradient "
        "evaluations per image). Mean error rate of the Fourier heat maps (perturbation of "
        f"L2 norm {HEAT_MAP_EPS:g} per channel, {n_heat} images; the first column is the "
        "error without a perturbation, the floor of the map):",
        "",
        *_heat_table(s),
    ]


def _report_galleries(s: DemoState) -> List[str]:
    return [
        "## Low-rank images",
        "",
        f"The photo *{s.photo}* (128×128) keeps its outline from a few ranks on and gets "
        "sharper as ranks are added; removing the top ranks leaves the high-rank residue "
        "(edges and texture). The residues are roughly zero-mean and shrink as more ranks "
        "are removed, so each panel is shown as mid-grey + gain × residue with its gain "
        "in the title.",
        "",
        f"![rank gallery]({OUTPUTS['rank_gallery']})",
        "",
        f"![rank gallery, reverse]({OUTPUTS['rank_gallery_reverse']})",
    ]


def _report_attributions(s: DemoState) -> List[str]:
    names = [m.name for m in s.methods]
    one = len(s.methods) == 1
    lines = [
        "## Attributions",
        "",
        f"Maps for the natural model and the true class on {s.n_images} synthetic images "
        "(object outlined in orange). All maps share one colour scale: each map is divided "
        "by its total absolute attribution, so equal colour means an equal share of the "
        "map's attribution mass. "
        + (f"Method: {s.titles}." if one else f"Column titles name the methods: {s.titles}."),
        "",
        f"![comparison]({OUTPUTS['comparison_shapes']})",
    ]
    if "blurig" in names:
        lines += [
            "",
            "Blur IG blurs with zero padding (as PAIR's reference implementation does), so "
            "its path darkens the image border and part of its attribution can land there.",
        ]
    if "rig_channel_max" in s.paths:
        lines += [
            "",
            "RIG in the exact form of the paper's Eq. (3), each rank's gradient maxed over "
            "the colour channels (one map per image; signed, red negative, green positive):",
            "",
            f"![RIG channel max]({OUTPUTS['rig_channel_max']})",
        ]
    return lines + [
        "",
        f"The same {'method' if one else 'methods'} on the photo ({s.photo}); the model has "
        f"only seen shapes (it calls the photo a *{s.photo_class}*), so this shows what "
        f"{'the method does' if one else 'the methods do'} on a natural image, not what a "
        "photo classifier looks at. Per-map colour scale.",
        "",
        f"![photo]({OUTPUTS['comparison_photo']})",
    ]


def _join(words: Sequence[str]) -> str:
    """``["a", "b", "c"]`` → ``"a, b and c"``."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _steps_sentence(s: DemoState) -> str:
    """Which methods took ``n_steps`` path steps; empty when none did."""
    path = [m for m in s.methods if m.takes_steps]
    if not path:
        return ""
    rig = " (RIG: ranks)" if any(m.name == "rig" for m in path) else ""
    return f" {_join([m.title for m in path])} used {s.n_steps} steps{rig}."


def _report_scores(s: DemoState) -> List[str]:
    area = float(s.data.masks[: s.n_eval].flatten(1).double().mean())
    lines = [
        "## Scores against the object masks",
        "",
        f"On {s.n_eval} held-out synthetic images, true class. *Mask energy*: the share of "
        "a map's absolute attribution (summed over channels) that falls on the object; a "
        f"map spread evenly would score the mask's mean area, **{area:.3f}**. The ±2 px "
        "column counts the object grown by 2 pixels (edges sit on the outline; a random "
        "map scores the grown area). "
        "*Deletion / insertion* (Petsiuk et al. 2018): pixels ranked by absolute "
        f"attribution are replaced in {s.score_steps} equal steps by the image's mean "
        "colour (deletion: the true class's probability should fall, lower area is "
        "better), or copied into the mean-colour image (insertion: higher is better); "
        "areas by the trapezoid rule over the fraction of pixels. *Random order* ranks "
        "pixels at random." + _steps_sentence(s),
        "",
        *_score_table(s.rows),
        "",
        *_verdict(s.rows, area),
        f"![deletion and insertion]({OUTPUTS['deletion_insertion']})",
        "",
        f"Per-method numbers are also in `{OUTPUTS['scores']}`. These are scores on one "
        "toy problem and one small model, seeded and reproducible, not a benchmark.",
    ]
    return lines


def _score_table(rows: List[Dict[str, Any]]) -> List[str]:
    cells = []
    for r in rows:
        energy = _fixed(r["mask_energy"])
        if r["mask_energy_sd"] == r["mask_energy_sd"]:  # not NaN
            energy += f" ± {r['mask_energy_sd']:.3f}"
        cells.append(
            [
                r["title"],
                energy,
                _fixed(r["mask_energy_2px"]),
                _fixed(r["deletion_auc"]),
                _fixed(r["insertion_auc"]),
                _fixed(r["seconds"], 2),
            ]
        )
    header = [
        "method",
        "mask energy ↑",
        "mask energy ±2 px ↑",
        "deletion AUC ↓",
        "insertion AUC ↑",
        "time (s)",
    ]
    return _table(header, cells)


def _verdict(rows: List[Dict[str, Any]], area: float) -> List[str]:
    """The best method per score (only when several ran), and RIG against an even spread."""
    methods = [r for r in rows if r["method"] != "random"]
    random = next(r for r in rows if r["method"] == "random")
    against = (
        f"Random order: deletion {random['deletion_auc']:.3f}, insertion "
        f"{random['insertion_auc']:.3f}."
    )
    if len(methods) > 1:
        best_energy = max(methods, key=lambda r: r["mask_energy"])
        best_del = min(methods, key=lambda r: r["deletion_auc"])
        best_ins = max(methods, key=lambda r: r["insertion_auc"])
        lines = [
            f"Most mass on the object: **{best_energy['title']}** "
            f"({best_energy['mask_energy']:.3f}); fastest drop under deletion: "
            f"**{best_del['title']}** ({best_del['deletion_auc']:.3f}); fastest rise under "
            f"insertion: **{best_ins['title']}** ({best_ins['insertion_auc']:.3f}). {against}",
            "",
        ]
    else:
        only = methods[0]
        lines = [
            f"{only['title']}: deletion {only['deletion_auc']:.3f}, insertion "
            f"{only['insertion_auc']:.3f}. {against}",
            "",
        ]
    rig = next((r for r in methods if r["method"] == "rig"), None)
    if rig is not None:
        lines += [
            f"RIG puts {rig['mask_energy']:.1%} of its attribution mass on the object "
            f"against {area:.1%} for an even spread.",
            "",
        ]
    return lines


def _report_run(s: DemoState) -> List[str]:
    import captum

    seconds = ", ".join(f"{k} {v:.1f}" for k, v in s.timings.items())
    return [
        "## Run",
        "",
        f"captum-rig demo, torch {torch.__version__}, captum {captum.__version__}. "
        f"Methods: {s.titles}. Seconds per stage: {seconds}.",
    ]
