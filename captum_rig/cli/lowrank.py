"""``captum-rig lowrank``: the rank-K (or top-K-removed) version of an image."""

import argparse
import sys
from functools import partial
from typing import Any

from captum_rig.cli._common import EXIT_OK, interruptible, output_file
from captum_rig.cli._options import add_max_pixels
from captum_rig.data import load_image, save_image

_SLOW_PIXELS = 1024 * 1024  # lowrank warns above this: its SVD takes seconds and more


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Adds ``lowrank`` to the sub-commands ``sub``; returns its parser."""
    p = sub.add_parser("lowrank", help="the rank-K version of an image")
    p.add_argument(
        "image",
        metavar="IMAGE",
        help="image file to truncate (any format Pillow reads; colour or greyscale, kept as it is)",
    )
    p.add_argument("--rank", type=int, required=True, metavar="K", help="0..min(H, W)")
    p.add_argument(
        "--reverse", action="store_true", help="remove the K largest singular values instead"
    )
    p.add_argument(
        "--rescale",
        action=argparse.BooleanOptionalAction,
        help="stretch the image's min..max to 0..255 instead of clipping to [0, 1] "
        "(default: on with --reverse, whose images are centred on 0; off otherwise)",
    )
    p.add_argument(
        "--svd",
        choices=("exact", "randomized"),
        default="exact",
        help="exact: the full SVD (Eckart-Young optimal); randomized: a seeded truncated SVD "
        "for small K on big images, within about 1%% of the optimal error and far faster "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--out", required=True, metavar="FILE", help="output image (.png recommended: lossless)"
    )
    add_max_pixels(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Writes the rank-K (``--reverse``: top-K-removed) image to ``--out``."""
    from captum_rig.lowrank import drop_top_ranks, low_rank

    out = output_file(args.out, "--out")
    x = load_image(args.image, channels=None, max_pixels=args.max_pixels)
    width = min(x.shape[-2:])
    if not 0 <= args.rank <= width:
        raise ValueError(
            f"--rank must be in 0..{width} (min(H, W) of {args.image}), got {args.rank}"
        )
    if x.shape[-1] * x.shape[-2] > _SLOW_PIXELS and args.svd == "exact":
        print(
            f"SVD of a {x.shape[-1]}×{x.shape[-2]} image: this takes a while (Ctrl-C stops it; "
            "--svd randomized is far faster for small --rank)",
            file=sys.stderr,
            flush=True,
        )
    transform = drop_top_ranks if args.reverse else low_rank
    y = interruptible(partial(transform, method=args.svd), x.double(), args.rank).float()
    # An image without its top ranks is centred on 0: clipped, it is almost black.
    rescale = args.reverse if args.rescale is None else args.rescale
    save_image(y, out, rescale=rescale)
    what = "top ranks removed" if args.reverse else "rank"
    how = ", min..max stretched to 0..255" if rescale else ""
    print(f"wrote {out} ({what} {args.rank} of {width}, {x.shape[-1]}×{x.shape[-2]}{how})")
    return EXIT_OK
