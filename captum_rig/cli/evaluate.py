"""``captum-rig evaluate``: deletion and insertion AUC of a data set's attribution maps.

Reads the HDF5 file of ``captum-rig attribute`` beside the same data, a batch at a time,
and prints the means and confidence intervals per method as a Markdown table; ``--out``
writes the table as CSV or JSON and ``--figure`` the per-image distributions.
"""

import argparse
from pathlib import Path
from typing import Any

from captum_rig.cli._common import (
    EXIT_OK,
    UsageError,
    load_spec,
    model_entries,
    open_data,
    output_file,
    parse_device,
    parse_spec,
    show_progress,
)
from captum_rig.cli._options import data_options, model_options, positive_int
from captum_rig.viz import FIGURE_FORMATS

TABLE_SUFFIXES = (".csv", ".json")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Adds ``evaluate`` to the sub-commands ``sub``; returns its parser."""
    p = sub.add_parser(
        "evaluate",
        help="deletion and insertion AUC of the maps of 'captum-rig attribute', per method",
        parents=[model_options(), data_options()],
    )
    p.add_argument("maps", metavar="MAPS", help="the HDF5 file written by 'captum-rig attribute'")
    p.add_argument(
        "--methods",
        metavar="NAMES",
        help="comma-separated methods of the file to score (default: all)",
    )
    p.add_argument(
        "--n-steps",
        type=positive_int,
        default=16,
        metavar="N",
        help="steps of the deletion and insertion curves (default: %(default)s)",
    )
    p.add_argument(
        "--confidence",
        type=float,
        default=0.95,
        metavar="P",
        help="level of the confidence intervals (default: %(default)s)",
    )
    p.add_argument("--out", metavar="FILE", help="also write the table (.csv or .json)")
    p.add_argument(
        "--figure", metavar="FILE", help="the per-image score distributions (.png, .pdf, .svg)"
    )
    return p


def run(args: argparse.Namespace) -> int:
    """Scores the maps of ``MAPS`` on ``--data``; prints the table, writes the files."""
    from captum_rig.runs import evaluate_attributions
    from captum_rig.viz.scores import save_score_distributions

    if not Path(args.maps).expanduser().is_file():
        raise UsageError(f"MAPS {args.maps!r} is not a file")
    if not 0 < args.confidence < 1:
        raise UsageError(f"--confidence must be in (0, 1), got {args.confidence}")
    out = None if args.out is None else output_file(args.out, "--out", TABLE_SUFFIXES)
    figure = (
        None if args.figure is None else output_file(args.figure, "--figure", tuple(FIGURE_FORMATS))
    )
    methods = None if args.methods is None else [m.strip() for m in args.methods.split(",")]
    (entry,) = model_entries(args)
    spec = parse_spec(entry)
    device = parse_device(args.device)
    model, prep = load_spec(spec, args, device)
    loader, _ = open_data(args, prep, need_labels=False)
    table = evaluate_attributions(
        Path(args.maps).expanduser(),
        model,
        loader,
        methods=methods,
        n_steps=args.n_steps,
        batch_size=args.batch_size,
        confidence=args.confidence,
        device=device,
        progress=show_progress(args),
    )
    print(table.to_markdown())
    if out is not None:
        (table.to_json if out.suffix.lower() == ".json" else table.to_csv)(out)
        print(f"wrote {out}")
    if figure is not None:
        save_score_distributions(table, figure)
        print(f"wrote {figure}")
    return EXIT_OK
