"""The ``captum-rig`` program: the registry of sub-commands, the parser, ``main``."""

import os
import sys
from types import ModuleType
from typing import Dict, Optional, Sequence

import torch

from captum_rig import __version__
from captum_rig.cli import (
    attribute,
    contributions,
    demo,
    evaluate,
    explain,
    heatmap,
    lowrank,
    robustness,
    spectrum,
    stability,
)
from captum_rig.cli._common import (
    ABANDONED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    Interrupted,
    Parser,
    UsageError,
)
from captum_rig.cli._errors import cli_message

COMMANDS: Dict[str, ModuleType] = {
    "demo": demo,
    "explain": explain,
    "lowrank": lowrank,
    "spectrum": spectrum,
    "robustness": robustness,
    "contributions": contributions,
    "heatmap": heatmap,
    "stability": stability,
    "attribute": attribute,
    "evaluate": evaluate,
}
"""The sub-commands, in the order ``--help`` lists them: name → module with
``add_parser(subparsers)`` (adds the sub-command, returns its parser) and
``run(args) -> int`` (runs it, returns the exit code)."""


def build_parser() -> Parser:
    """The ``captum-rig`` argument parser (one subparser per command)."""
    parser = Parser(
        prog=PROG,
        description="The singular value perspective on model robustness: low-rank images, "
        "Rank Integrated Gradients, rank spectra and PGD robustness.",
        epilog="Exit codes: 0 success, 2 usage or input error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for command in COMMANDS.values():
        command.add_parser(sub).set_defaults(run=command.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs ``captum-rig`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Usage and input errors (``UsageError``, and ``ValueError``, ``TypeError``,
    ``OSError`` and ``WeightsUnavailableError`` from the library, and a model's error
    for images of a size it cannot take) print one line ``captum-rig: error: ...`` to
    stderr, in the command line's words (``--convert`` where the library says
    ``convert=True``), and return 2; other exceptions are bugs and propagate with their
    traceback. Commands that build models seed torch's generator
    with ``--seed`` first, so random weights are the same from run to run.

    Examples:
        >>> main(["lowrank", "no-such.png", "--rank", "1", "--out", "x.png"])
        2
    """
    parser = build_parser()
    args = None
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help, --version
            return e.code if isinstance(e.code, int) else EXIT_OK
        if getattr(args, "seed", None) is not None:
            torch.manual_seed(args.seed)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # to print a resume command
        return args.run(args)
    except (UsageError, ValueError, TypeError, OSError, RuntimeError) as e:
        message = cli_message(e, args)
        if message is None:  # a bug: its traceback
            raise
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        text = str(e) if isinstance(e, Interrupted) else "interrupted"
        print(f"{PROG}: {text}", file=sys.stderr)
        if argv is None and not all(done.is_set() for done in ABANDONED):
            # Run as the program: Python's own exit would wait seconds for the abandoned
            # computation (an SVD inside LAPACK); nothing is left to write, so end now.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
