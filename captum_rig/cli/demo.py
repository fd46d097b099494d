"""``captum-rig demo``: the offline demo (synthetic data, a small model, every figure)."""

import argparse
from pathlib import Path
from typing import Any

from captum_rig._context import check_writable
from captum_rig.cli._common import EXIT_OK


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Adds ``demo`` to the sub-commands ``sub``; returns its parser."""
    from captum_rig.attr.registry import METHOD_NAMES

    p = sub.add_parser("demo", help="run the offline demo and write its figures and report")
    p.add_argument(
        "--out",
        default="captum-rig-demo",
        metavar="DIR",
        help="output folder (default: %(default)s)",
    )
    p.add_argument(
        "--methods", help=f"comma-separated, from: {', '.join(METHOD_NAMES)} (default: all)"
    )
    return p


def run(args: argparse.Namespace) -> int:
    """Runs the demo into ``--out``, printing its stages and the files it wrote."""
    from captum_rig.attr.registry import parse_methods
    from captum_rig.demo import run_demo

    out = check_writable(Path(args.out).expanduser(), "--out", folder=True, create=True)
    kwargs = {}
    if args.methods is not None:
        kwargs["methods"] = [m.name for m in parse_methods([args.methods])]
    files = run_demo(out, log=print, **kwargs)
    print(f"wrote {len(files)} files to {out}/:")
    for f in files:
        print(f"  {f}")
    reports = [Path(f) for f in files if Path(f).name == "report.md"]
    if reports:
        print(f"open {reports[0]} to read the report")
    return EXIT_OK
