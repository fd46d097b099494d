"""``captum-rig robustness``: targeted or untargeted PGD, the paper's Table 2."""

import argparse
from typing import Any

from captum_rig.cli._common import (
    EXIT_OK,
    UsageError,
    load_models,
    open_data,
    output_file,
    parse_device,
    show_progress,
)
from captum_rig.cli._options import data_options, model_options, pixels, positive_int


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Adds ``robustness`` to the sub-commands ``sub``; returns its parser."""
    p = sub.add_parser(
        "robustness",
        help="PGD robustness of one or several models (Table 2)",
        parents=[model_options(several=True), data_options()],
    )
    p.add_argument(
        "--eps",
        type=pixels,
        default="4/255",
        help="radius in [0, 1] pixel units, a number or a fraction (default: %(default)s); "
        "at most 1 for linf",
    )
    p.add_argument("--alpha", type=pixels, help="step size (default: eps/4)")
    p.add_argument(
        "--steps", type=positive_int, default=20, help="PGD steps (default: %(default)s)"
    )
    p.add_argument(
        "--norm",
        type=str.lower,
        choices=("linf", "l2"),
        default="linf",
        help="the ball (default: %(default)s)",
    )
    p.add_argument("--untargeted", action="store_true", help="untargeted attack")
    p.add_argument("--out", metavar="FILE", help="also write the table as CSV")
    return p


def run(args: argparse.Namespace) -> int:
    """Attacks every model; prints the table, and writes it to ``--out`` when given."""
    from captum_rig.robustness import evaluate_robustness

    if args.norm == "linf":  # an L-inf radius of 1 already allows any image
        for flag, value in (("--eps", args.eps), ("--alpha", args.alpha)):
            if value is not None and value > 1:
                raise UsageError(
                    f"{flag} must be in [0, 1] for --norm linf (pixels are in [0, 1]), "
                    f"got {value:.4g}"
                )
    out = None if args.out is None else output_file(args.out, "--out", [".csv"])
    device = parse_device(args.device)
    models, prep = load_models(args, device)
    loader, _ = open_data(args, prep, need_labels=True)
    report = evaluate_robustness(
        models,
        loader,
        eps=args.eps,
        steps=args.steps,
        alpha=args.alpha,
        norm={"linf": "Linf", "l2": "L2"}[args.norm],
        targeted=not args.untargeted,
        batch_size=args.batch_size,
        device=device,
        progress=show_progress(args),
        seed=args.seed,
    )
    print(report.to_markdown())
    if out is not None:
        report.to_csv(out)
        print(f"wrote {out}")
    return EXIT_OK
