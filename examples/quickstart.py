#!/usr/bin/env python
"""RIG next to IG, Blur IG and Saliency on generated shapes, in one figure.

Draws a few 32×32 images of the synthetic shapes (:mod:`captum_rig.synthetic`), explains
the demo CNN's prediction for each with the four attribution methods of the registry
(:data:`captum_rig.attr.registry.METHODS`) and saves a grid: images as rows, methods as
columns, every map on one colour scale, the object outlined. Also prints, per method,
the share of the attribution mass that falls on the object. Runs offline, in seconds.

Usage::

    python examples/quickstart.py                          # writes quickstart.png
    python examples/quickstart.py --model lowrank8 --n-images 6 --out lowrank8.png
    python examples/quickstart.py --n-images 1 --n-steps 4  # smallest run

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

import argparse
import os
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import torch

from captum_rig.attr.registry import METHOD_NAMES, parse_methods
from captum_rig.models import DEMO_MODELS, load_demo_model
from captum_rig.synthetic import SHAPES, make_shapes
from captum_rig.viz import plot_attributions

# A tiny run, for the tests (tests/test_examples.py); {tmp} is an empty folder.
SMOKE_ARGV = ["--n-images", "1", "--n-steps", "4", "--out", "{tmp}/quickstart.png"]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(DEMO_MODELS), default="natural")
    parser.add_argument("--n-images", type=_positive, default=4, help="rows (default 4)")
    parser.add_argument(
        "--n-steps", type=_positive, default=32, help="path steps of each method (default 32)"
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHOD_NAMES),
        help=f"comma-separated, from {', '.join(METHOD_NAMES)} (default: all)",
    )
    parser.add_argument("--seed", type=int, default=2, help="seed of the images (default 2)")
    parser.add_argument("--out", default="quickstart.png", help="figure file (.png/.pdf/.svg)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise SystemExit(f"quickstart: error: folder {out.parent} does not exist")

    model = load_demo_model(args.model)
    images, labels, masks = make_shapes(args.n_images, seed=args.seed)
    with torch.no_grad():
        predicted = model(images).argmax(1)
    methods = parse_methods([args.methods])
    maps = {
        m.title: m.attribute(model, images, target=predicted, n_steps=args.n_steps) for m in methods
    }

    area = masks.float().flatten(1).mean(1)
    print(f"object area: {area.mean():.2f} of each image on average")
    for title, attr in maps.items():
        mass = attr.detach().abs().sum(1)
        share = (mass * masks).flatten(1).sum(1) / mass.flatten(1).sum(1).clamp_min(1e-12)
        print(f"{title:22s} share of attribution on the object: {share.mean():.2f}")

    rows = [f"{SHAPES[int(y)]} → {SHAPES[int(p)]}" for y, p in zip(labels, predicted)]
    fig, _ = plot_attributions(
        images,
        maps,
        masks=masks,
        shared_scale=True,
        row_labels=rows,
        title=f"demo model {args.model!r}: label → prediction",
    )
    # Written under a temporary name and renamed when complete.
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=out.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=90)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
