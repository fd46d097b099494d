"""``captum-rig explain``: attribution maps of images, one column per method."""

import argparse
import inspect
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from captum_rig.cli._common import (
    EXIT_OK,
    class_name,
    interruptible,
    model_and_images,
    output_file,
    parse_device,
    parse_target,
    predictions,
)
from captum_rig.cli._options import image_model_options, steps_or_all

EXPLAIN_STEPS = 50  # Captum IntegratedGradients' default: explain costs what IG costs


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Adds ``explain`` to the sub-commands ``sub``; returns its parser."""
    from captum_rig.attr.registry import METHOD_NAMES

    p = sub.add_parser(
        "explain",
        help="attribution maps of images, one column per method",
        parents=[image_model_options()],
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG files")
    p.add_argument(
        "--methods",
        default=",".join(METHOD_NAMES),
        help=f"comma-separated, from: {', '.join(METHOD_NAMES)} (default: all)",
    )
    p.add_argument(
        "--n-steps",
        type=steps_or_all,
        default=EXPLAIN_STEPS,
        metavar="N",
        help="gradient evaluations (path steps) per method and image; RIG has at most "
        "min(H, W) - 1 ranks to evaluate; 'all': RIG's full sum over every rank (the "
        "paper's), the other methods their own default (default: %(default)s, Captum "
        "IG's default)",
    )
    p.add_argument(
        "--out",
        default="explain.png",
        metavar="FILE",
        help="figure: .png, .pdf, .svg or .jpg (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _attributions(model: Any, rows: List, methods: List, args: argparse.Namespace, device: Any):
    """``{(image index, method name): attribution (C, H, W) on the CPU}``."""
    from tqdm.auto import tqdm

    maps = {}
    bar = tqdm(
        total=len(rows) * len(methods),
        desc="explain",
        unit="map",
        disable=True if args.no_progress else None,
    )
    try:
        for i, row in enumerate(rows):
            for method in methods:
                bar.set_postfix_str(f"{method.name} {Path(row['path']).name}")
                x = row["x"].unsqueeze(0).to(device)
                attr = method.attribute(model, x, target=row["target"], n_steps=args.n_steps)
                maps[i, method.name] = attr.detach()[0].cpu()
                bar.update()
    finally:
        bar.close()
    return maps


def _explain_figure(rows: List, methods: List, maps: Dict, categories: Any, spec: Any) -> Any:
    """One row per image: the image, then one map per method (:func:`plot_attributions`).

    Images of different sizes are shown top-left on a white canvas of the largest size,
    their maps padded with zeros (no attribution) to match. Each row is labelled with its
    file name over its target (two lines, each shortened on its own); the title names the
    model and says when its weights are random.
    """
    from torch.nn.functional import pad

    from captum_rig.viz import plot_attributions

    height = max(r["x"].shape[-2] for r in rows)
    width = max(r["x"].shape[-1] for r in rows)

    def fit(t: torch.Tensor, value: float = 0.0) -> torch.Tensor:
        return pad(t, (0, width - t.shape[-1], 0, height - t.shape[-2]), value=value)

    images = torch.stack([fit(r["x"], 1.0) for r in rows])  # a white canvas
    attributions = {
        m.title: torch.stack([fit(maps[i, m.name]) for i in range(len(rows))]) for m in methods
    }
    labels = [f"{Path(r['path']).name}\ntarget {class_name(r['target'], categories)}" for r in rows]
    title = spec.text + (f", weights {Path(spec.weights).name}" if spec.weights else "")
    title += ", pretrained" if spec.pretrained else ""
    if spec.random_weights:
        title += " with random weights: maps of an untrained model"
    fig, _ = plot_attributions(images, attributions, row_labels=labels, title=title)
    return fig


def _evaluations(model: Any, methods: List, n_steps: Optional[int], widths: List[int]) -> str:
    """``rig 31 (every rank), ig 50, ...``: the gradient evaluations each method spends.

    RIG's paper sum evaluates ranks ``1..w-1`` (rank ``w`` has weight 0), at most
    ``n_steps`` of them; a rank path by quadrature (RIG + IDGI) ``w`` nodes unless
    ``n_steps`` says; ``n_steps=None`` leaves every other method its own default.
    """
    parts = []
    for method in methods:
        default = None
        if method.takes_steps:
            signature = inspect.signature(method.build(model).attribute)
            default = signature.parameters["n_steps"].default
        if not method.takes_steps:
            text = "1"
        elif default is None:  # a rank path
            if method.defaults.get("method", "paper") == "paper":
                full = [max(w - 1, 1) for w in widths]  # the paper sum: ranks 1..w-1
                counts = full if n_steps is None else [min(n_steps, f) for f in full]
            else:  # by quadrature (rig-idgi): w nodes unless n_steps says
                full = list(widths)
                counts = full if n_steps is None else [n_steps]
            text = "/".join(str(c) for c in sorted(set(counts)))
            text += " (every rank)" if counts == full else ""
        else:
            text = str(default if n_steps is None else n_steps)
        parts.append(f"{method.name} {text}")
    return ", ".join(parts)


def run(args: argparse.Namespace) -> int:
    """Explains the images with each method; writes one figure, prints each target."""
    from captum_rig.attr.registry import parse_methods
    from captum_rig.viz import FIGURE_FORMATS, save_figure

    methods = parse_methods([args.methods])
    parse_target(args.target)  # a bad --target fails before any work
    out = output_file(args.out, "--out", tuple(FIGURE_FORMATS))
    device = parse_device(args.device)
    spec, model, prep, images = model_and_images(args, device)
    rows = predictions(model, images, args, device)
    widths = sorted({min(x.shape[-2:]) for x in images})
    counts = _evaluations(model, methods, args.n_steps, widths)
    print(f"gradient evaluations per image: {counts}", file=sys.stderr, flush=True)
    maps = interruptible(_attributions, model, rows, methods, args, device)
    # 120 dpi, cropped to what is drawn: a title wider than the figure is kept whole
    fig = _explain_figure(rows, methods, maps, prep.categories, spec)
    save_figure(fig, out, dpi=120, tight=True)
    for row in rows:
        print(
            f"{row['path']}: target {class_name(row['target'], prep.categories)} "
            f"(p = {row['p']:.3f}), predicted {class_name(row['predicted'], prep.categories)}"
        )
    print(f"wrote {out}")
    return EXIT_OK
