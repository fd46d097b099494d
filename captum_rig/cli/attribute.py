"""``captum-rig attribute``: every image's attribution maps over a data set, one HDF5 file.

Runs as one process or under ``torchrun --nproc_per_node=K`` (each process a share of
the batches, the same file); ``--resume`` continues a stopped run.
"""

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from captum_rig._checkpoint import world
from captum_rig.attr.registry import METHOD_NAMES, parse_methods
from captum_rig.cli._common import (
    EXIT_OK,
    PROG,
    Interrupted,
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

MAP_SUFFIXES = (".h5", ".hdf5")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Adds ``attribute`` to the sub-commands ``sub``; returns its parser."""
    p = sub.add_parser(
        "attribute",
        help="attribution maps of every image of a data set, into one HDF5 file",
        parents=[model_options(), data_options()],
    )
    p.add_argument(
        "--methods",
        default="rig",
        metavar="NAMES",
        help=f"comma-separated methods, from {', '.join(METHOD_NAMES)} (default: %(default)s)",
    )
    p.add_argument(
        "--n-steps",
        type=positive_int,
        metavar="N",
        help="path steps of the methods that take them (default: each method's own)",
    )
    p.add_argument(
        "--target",
        choices=("auto", "label"),
        default="auto",
        help="the class each map explains: each image's prediction, or its label "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue a stopped run from what it saved beside --out",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="the HDF5 file (.h5 or .hdf5)")
    return p


def _resume_hint(args: argparse.Namespace, out: Path, n_batches: int) -> str:
    """The line printed on Ctrl-C: what is saved, and the command line that resumes."""
    from captum_rig.runs import saved_batches

    argv = list(getattr(args, "argv", None) or [])
    command = shlex.join([PROG, *argv, *([] if "--resume" in argv else ["--resume"])])
    saved = saved_batches(out)
    if not saved:
        return "interrupted before the first batch was saved; nothing to resume"
    return f"interrupted: {saved} of {n_batches} batches saved; resume with: {command}"


def run(args: argparse.Namespace) -> int:
    """Computes the maps of every image of ``--data`` into ``--out``."""
    from captum_rig.runs import AttributionFile, attribute_dataset, parts_folder, process_group

    out = output_file(args.out, "--out", MAP_SUFFIXES)
    try:
        methods = [m.name for m in parse_methods([args.methods])]
    except ValueError as e:
        raise UsageError(f"--methods: {e}") from None
    (entry,) = model_entries(args)
    spec = parse_spec(entry)
    with process_group(parse_device(args.device)) as device:
        model, prep = load_spec(spec, args, device)
        loader, _ = open_data(args, prep, need_labels=args.target == "label")
        if args.resume and not parts_folder(out).exists() and world()[1] == 0:
            print(f"note: no stopped run to resume for {out}: starting from the beginning",
                  file=sys.stderr)  # fmt: skip
        started = time.perf_counter()
        try:
            attribute_dataset(
                model,
                loader,
                out,
                methods,
                n_steps=args.n_steps,
                target=args.target,
                device=device,
                resume=args.resume,
                progress=show_progress(args),
                model_spec=spec.text,
                source=args.data,
            )
        except KeyboardInterrupt:
            raise Interrupted(_resume_hint(args, out, len(loader))) from None
        seconds = time.perf_counter() - started
        if world()[1] == 0:
            with AttributionFile(out) as maps:
                n = len(maps)
            print(f"{n} images, {', '.join(methods)}: {n / seconds:.1f} images/s", file=sys.stderr)
            print(f"wrote {out}")
    return EXIT_OK
