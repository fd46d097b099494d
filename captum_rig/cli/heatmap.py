"""``captum-rig heatmap``: Yin et al.'s Fourier heat maps of one or several models.

For every 2-D DFT frequency, the error rate of each model when the images are perturbed
along that frequency's Fourier basis image with L2 norm ``--eps``
(:func:`captum_rig.fourier.fourier_heat_map`); the maps side by side on one colour
scale, and a CSV.
"""

import argparse
import sys
from typing import Any, Dict, List, Optional, Tuple

import torch

from captum_rig._tables import write_csv
from captum_rig.cli._common import (
    EXIT_OK,
    interruptible,
    load_models,
    open_data,
    output_folder,
    parse_device,
    save_figure,
    show_progress,
)
from captum_rig.cli._options import data_options, model_options

_CSV_FIELDS = ("model", "fy", "fx", "error_rate")


def positive_number(text: str) -> float:
    """``--eps``: a finite number ``> 0``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Adds ``heatmap`` to the sub-commands ``sub``; returns its parser."""
    p = sub.add_parser(
        "heatmap",
        help="Fourier heat maps (Yin et al.) of one or several models on a data set",
        parents=[model_options(several=True), data_options()],
    )
    p.add_argument(
        "--eps",
        type=positive_number,
        required=True,
        metavar="EPS",
        help="L2 norm of the perturbation of each image channel, in [0, 1] pixel units "
        "(Yin et al. use 4 on CIFAR-10's 32×32 images)",
    )
    p.add_argument(
        "--no-clip",
        action="store_true",
        help="do not clip the perturbed images to [0, 1]",
    )
    p.add_argument(
        "--out", default="heatmap", metavar="DIR", help="output folder (default: %(default)s)"
    )
    return p


def _images(loader: Any, labelled: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Every image of ``--data`` in memory (the heat map perturbs each at every frequency),
    with its labels when there are labels."""
    images, labels = [], []
    for batch in loader:
        x, y = batch if isinstance(batch, (tuple, list)) else (batch, None)
        images.append(x)
        if labelled and y is not None:
            labels.append(y)
    return torch.cat(images), (torch.cat(labels) if labels else None)


def distinct_frequencies(height: int, width: int) -> int:
    """The number of distinct basis images of an ``H × W`` DFT (``f`` and ``-f`` are one).

    Examples:
        >>> distinct_frequencies(32, 32), distinct_frequencies(5, 5)
        (514, 13)
    """
    self_conjugate = (1 + (height % 2 == 0)) * (1 + (width % 2 == 0))
    return (height * width + self_conjugate) // 2


def _maps(
    args: argparse.Namespace, models: Dict, images: torch.Tensor, labels: Any, device: Any
) -> Dict[str, torch.Tensor]:
    """{label: (H, W) error rates} of every model."""
    from captum_rig.fourier import fourier_heat_map

    return {
        name: fourier_heat_map(
            model,
            images.to(device),
            None if labels is None else labels.to(device),
            args.eps,
            batch_size=args.batch_size,
            seed=args.seed,
            clip=not args.no_clip,
            device=device,
            progress=show_progress(args),
        )
        for name, model in models.items()
    }


def _rows(maps: Dict[str, torch.Tensor]) -> List[Dict[str, Any]]:
    """One CSV row per model and frequency, the zero frequency at ``(0, 0)``."""
    rows = []
    for name, heat in maps.items():
        height, width = heat.shape
        for i in range(height):
            for j in range(width):
                fy, fx = i - height // 2, j - width // 2
                rows.append(dict(zip(_CSV_FIELDS, (name, fy, fx, float(heat[i, j])))))
    return rows


def _summary(name: str, heat: torch.Tensor) -> str:
    """``natural: mean error rate 0.213, largest 0.9 at (f_y, f_x) = (0, 16)``."""
    height, width = heat.shape
    flat = int(heat.argmax())
    fy, fx = flat // width - height // 2, flat % width - width // 2
    return (
        f"{name}: mean error rate {float(heat.mean()):.3f}, largest {float(heat.max()):.3f} "
        f"at (f_y, f_x) = ({fy}, {fx})"
    )


def run(args: argparse.Namespace) -> int:
    """Computes each model's Fourier heat map; writes ``heatmap.csv`` and ``heatmap.png``."""
    from captum_rig.viz.fourier import plot_fourier_heat_maps

    out = output_folder(args.out)
    device = parse_device(args.device)
    models, prep = load_models(args, device)
    loader, labelled = open_data(args, prep, need_labels=False)
    images, labels = _images(loader, labelled)
    n, height, width = images.shape[0], *images.shape[-2:]
    k = distinct_frequencies(height, width)
    print(
        f"forward passes: {n} images × {k} frequencies = {n * k} per model, "
        f"{n * k * len(models)} in all",
        file=sys.stderr,
        flush=True,
    )
    # in a worker thread: Ctrl-C is answered at once
    maps = interruptible(_maps, args, models, images, labels, device)
    against = "the labels" if labels is not None else "the clean predictions"
    title = (
        f"Fourier heat maps: error rate (vs {against}) under a perturbation of L2 norm "
        f"{args.eps:g} along each frequency; {n} images {height}×{width}"
    )
    fig, _ = plot_fourier_heat_maps(maps, title=title)
    out.mkdir(exist_ok=True)
    csv_path, png_path = out / "heatmap.csv", out / "heatmap.png"
    write_csv(csv_path, _rows(maps), _CSV_FIELDS)
    save_figure(fig, png_path)
    for name, heat in maps.items():
        print(_summary(name, heat))
    print(f"wrote {csv_path}")
    print(f"wrote {png_path}")
    return EXIT_OK
