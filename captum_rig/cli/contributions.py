"""``captum-rig contributions``: how much of ``F(x) - F(0)`` each singular component
(:func:`captum_rig.rank_contributions`, ``--axis rank``) or each band of spatial
frequencies (:func:`captum_rig.fourier.frequency_contributions`, ``--axis frequency``) of
each image accounts for, as a CSV and a figure.
"""

import argparse
import sys
from pathlib import Path
from typing import Any, List, Sequence, Tuple

import torch

from captum_rig._tables import write_csv
from captum_rig.cli._common import (
    EXIT_OK,
    UsageError,
    class_name,
    interruptible,
    model_and_images,
    output_folder,
    parse_device,
    parse_target,
    predictions,
    save_figure,
)
from captum_rig.cli._numbers import radius_bands
from captum_rig.cli._options import image_model_options, parse_ranks, positive_int

# Per axis: the CSV and the figure written into --out.
_FILES = {
    "rank": ("contributions.csv", "rank_contributions.png"),
    "frequency": ("frequency_contributions.csv", "frequency_contributions.png"),
}


def _band_edges(text: str) -> List[int]:
    """``--bands`` of ``--axis rank``: edges ``0 = r_0 < ... < r_m``, written like ``--ranks``."""
    try:
        edges = parse_ranks(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e).replace("--ranks", "band edges")) from None
    if len(edges) < 2 or edges[0] != 0:
        raise argparse.ArgumentTypeError(
            f"expected at least two edges starting at 0, e.g. 0,1,2,4,8,16,32, got {text!r}"
        )
    return edges


def _parse_bands(args: argparse.Namespace) -> None:
    """``--bands`` read for the axis (rank: integer edges from 0; frequency: radii
    ``r_1 < ... < r_m``); a mistake is a usage error naming ``--bands``."""
    if args.bands is None:
        return
    parse = _band_edges if args.axis == "rank" else radius_bands
    try:
        args.bands = parse(args.bands)
    except argparse.ArgumentTypeError as e:
        raise UsageError(f"argument --bands: {e}") from None


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Adds ``contributions`` to the sub-commands ``sub``; returns its parser."""
    p = sub.add_parser(
        "contributions",
        help="how much of F(x) - F(0) each singular component (or frequency band) of each "
        "image accounts for",
        parents=[image_model_options()],
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG files")
    p.add_argument(
        "--axis",
        choices=tuple(_FILES),
        default="rank",
        help="split by singular component (rank) or by radius of the spatial frequencies "
        "(frequency) (default: %(default)s)",
    )
    p.add_argument(
        "--bands",
        metavar="EDGES",
        help="--axis rank: band edges 0 = r_0 < ... < r_m = min(H, W), comma-separated or "
        "a:b[:step] ranges, e.g. 0,1,2,4,8,16,32 or 0:32:8 (default: one band per rank); "
        "--axis frequency: radii r_1 < ... < r_m, band j the frequencies of radius in "
        "(r_(j-1), r_j], the first from 0, the last at least the largest radius "
        "sqrt((H/2)² + (W/2)²), e.g. 0,1,2,4,8,16,23 (default: 0, 1, 2, ...: the mean, "
        "then rings of width 1)",
    )
    p.add_argument(
        "--n-steps",
        type=positive_int,
        metavar="N",
        help="gradient evaluations per image, at least one per band (default: 4 per rank "
        "for --axis rank without --bands, 5 per band otherwise)",
    )
    p.add_argument(
        "--cumulative",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the figure shows the cumulative share of the top k components (of the "
        "frequencies up to each radius), or each band's own share (default: cumulative)",
    )
    p.add_argument(
        "--out", default="contributions", metavar="DIR", help="output folder (default: %(default)s)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _unique_labels(paths: Sequence[str]) -> List[str]:
    """Each image's file name, numbered when two share one (labels of the figure)."""
    labels: List[str] = []
    for path in paths:
        base = label = Path(path).name
        i = 2
        while label in labels:
            label, i = f"{base} #{i}", i + 1
        labels.append(label)
    return labels


def _default_edges(args: argparse.Namespace, x: torch.Tensor) -> List[float]:
    """The band edges of one image: ``--bands``, else the library's default for its size."""
    if args.bands is not None:
        return list(args.bands)
    if args.axis == "rank":
        return list(range(min(x.shape[-2:]) + 1))
    from captum_rig.fourier import default_radii

    return default_radii(*x.shape[-2:])


def _contributions(
    model: Any, rows: List, args: argparse.Namespace, device: Any
) -> List[Tuple[torch.Tensor, float]]:
    """Per image: (its contributions ``(C, m)`` on the CPU, ``F(x) - F(0)`` at its target)."""
    from tqdm.auto import tqdm

    if args.axis == "rank":
        from captum_rig import rank_contributions as split
    else:
        from captum_rig.fourier import frequency_contributions as split

    results = []
    bar = tqdm(rows, desc="contributions", unit="image", disable=True if args.no_progress else None)
    for row in bar:
        x = row["x"].unsqueeze(0).to(device)
        values = split(model, x, target=row["target"], bands=args.bands, n_steps=args.n_steps)
        with torch.no_grad():
            logits = model(torch.cat([x, torch.zeros_like(x)]))
        delta = float(logits[0, row["target"]] - logits[1, row["target"]])
        results.append((values.detach()[0].cpu(), delta))
    return results


_CSV_FIELDS = ("image", "target", "channel", "band_start", "band_end", "value")


def _write_contributions(path: Path, rows: List, results: List, args: argparse.Namespace) -> None:
    """One CSV line per image, channel and band: its edges and its contribution (a radius
    band runs from ``band_start`` exclusive, the first from 0 inclusive, to ``band_end``)."""
    lines = []
    for row, (values, _) in zip(rows, results):
        edges = _default_edges(args, row["x"])
        if args.axis == "frequency":  # m edges for m bands: each band starts at the last
            edges = [0.0, *edges]
        for channel, per_band in enumerate(values.tolist()):
            for j, value in enumerate(per_band):
                cells = (row["path"], row["target"], channel, edges[j], edges[j + 1], value)
                lines.append(dict(zip(_CSV_FIELDS, cells)))
    write_csv(path, lines, _CSV_FIELDS)


# Above this relative gap between the contributions' sum and F(x) - F(0), say so.
_CONTRIBUTIONS_GAP = 0.05


def _check_bands(args: argparse.Namespace, images: List[torch.Tensor]) -> None:
    """``--bands`` end at each image's width (largest radius); ``--n-steps`` give each
    band a step."""
    from captum_rig.fourier import max_radius

    for path, x in zip(args.images, images):
        width, largest = min(x.shape[-2:]), max_radius(*x.shape[-2:])
        if args.axis == "rank" and args.bands is not None and args.bands[-1] != width:
            raise UsageError(
                f"--bands must end at min(H, W) = {width} of {path} as the model sees it, "
                f"got {args.bands[-1]}"
            )
        if args.axis == "frequency" and args.bands is not None and args.bands[-1] < largest:
            raise UsageError(
                f"--bands must end at or above the largest radius {largest:.4g} of {path} as "
                f"the model sees it, got {args.bands[-1]:g}"
            )
        n_bands = len(_default_edges(args, x)) - (args.axis == "rank")
        if args.n_steps is not None and args.n_steps < n_bands:
            raise UsageError(
                f"--n-steps must be at least the number of bands ({n_bands} for {path}), "
                f"got {args.n_steps}"
            )


def _evaluations(args: argparse.Namespace, images: List[torch.Tensor]) -> str:
    """``896 (4 per rank, 224 ranks) per image, 1 image``: the gradient evaluations to spend."""
    from captum_rig.attr.rank_contributions import NODES_PER_BAND, NODES_PER_RANK

    counts = []
    for x in images:
        n_bands = len(_default_edges(args, x)) - (args.axis == "rank")
        if args.n_steps is not None:
            counts.append(f"{args.n_steps}")
        elif args.axis == "rank" and args.bands is None:
            counts.append(
                f"{NODES_PER_RANK * n_bands} ({NODES_PER_RANK} per rank, {n_bands} ranks)"
            )
        else:
            counts.append(
                f"{NODES_PER_BAND * n_bands} ({NODES_PER_BAND} per band, {n_bands} bands)"
            )
    plural = "s" if len(images) > 1 else ""
    return f"{' / '.join(dict.fromkeys(counts))} per image, {len(images)} image{plural}"


def _figure(args: argparse.Namespace, results: List, title: str) -> Any:
    """One curve per image: shares by rank (or radius) band, cumulative or per band."""
    curves = {
        label: values.unsqueeze(0)
        for label, (values, _) in zip(_unique_labels(args.images), results)
    }
    if args.axis == "rank":
        from captum_rig.viz import plot_rank_contributions as plot
    else:
        from captum_rig.viz.fourier import plot_frequency_contributions as plot
    fig, _ = plot(curves, bands=args.bands, cumulative=args.cumulative, title=title)
    return fig


def _report(rows: List, results: List, categories: Any) -> None:
    """Each image's sum of contributions next to its ``F(x) - F(0)``; a note on a gap."""
    worst = 0.0
    for row, (values, delta) in zip(rows, results):
        total = float(values.double().sum())
        print(
            f"{row['path']}: target {class_name(row['target'], categories)}, "
            f"sum of contributions {total:.6g}, F(x) - F(0) = {delta:.6g}"
        )
        worst = max(worst, abs(total - delta) / max(abs(delta), 1e-12))
    if worst > _CONTRIBUTIONS_GAP:
        print(
            f"note: the sums miss F(x) - F(0) by up to {worst:.0%} (quadrature error): "
            "raise --n-steps, or use narrower --bands",
            file=sys.stderr,
        )


def run(args: argparse.Namespace) -> int:
    """Splits each image's ``F(x) - F(0)`` by band; writes the CSV and the figure."""
    _parse_bands(args)
    parse_target(args.target)  # a bad --target fails before any work
    out = output_folder(args.out)
    device = parse_device(args.device)
    spec, model, prep, images = model_and_images(args, device)
    _check_bands(args, images)
    rows = predictions(model, images, args, device)
    print(f"gradient evaluations: {_evaluations(args, images)}", file=sys.stderr, flush=True)
    # in a worker thread: Ctrl-C is answered at once, even inside a big image's SVD
    results = interruptible(_contributions, model, rows, args, device)
    fig = _figure(args, results, f"{spec.label}: where F(x) - F(0) comes from")
    out.mkdir(exist_ok=True)
    csv_path, png_path = (out / name for name in _FILES[args.axis])
    _write_contributions(csv_path, rows, results, args)
    save_figure(fig, png_path)
    _report(rows, results, prep.categories)
    print(f"wrote {csv_path}")
    print(f"wrote {png_path}")
    return EXIT_OK
