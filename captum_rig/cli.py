"""``captum-rig``: low-rank images, attributions, rank spectra and PGD robustness from a shell.

Subcommands (``captum-rig <command> --help`` for each; the reference is ``docs/cli.md``):

- ``demo``: the self-contained demo (synthetic data, a small model, every figure).
- ``explain``: attribution maps of images for a model, side by side per method.
- ``lowrank``: the rank-k (or top-k-removed) version of an image.
- ``spectrum``: the paper's Algorithm 1 over a data set, for one or several models.
- ``robustness``: targeted or untargeted PGD, the paper's Table 2, for several models.
- ``contributions``: how much of ``F(x) - F(0)`` each singular component accounts for.
- ``stability``: minimal distortions, Lipschitz bounds and layer spectra of models.

This module parses arguments and calls the library: images, folders and CIFAR-10 are
read by :mod:`captum_rig.data`, models by :mod:`captum_rig.loading`, figures drawn by
:mod:`captum_rig.viz`.

Exit codes: 0 success; 2 a usage or input error (one line ``captum-rig: error: ...`` on
stderr, no traceback, no output file written); 130 interrupted. Output files are written
under a temporary name in their folder and renamed when complete.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

import argparse
import csv
import json
import math
import os
import re
import shlex
import sys
import threading
from dataclasses import replace
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, NoReturn, Optional, Sequence, Tuple

import torch

from captum_rig import __version__
from captum_rig._context import atomic_path, check_writable
from captum_rig.data import MAX_PIXELS, image_dataset, image_format, load_image, save_image
from captum_rig.loading import WeightsUnavailableError, load_pixel_model

__all__ = ["main", "parse_ranks", "build_parser"]

PROG = "captum-rig"
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXPLAIN_STEPS = 50  # Captum IntegratedGradients' default: explain costs what IG costs
_SLOW_PIXELS = 1024 * 1024  # lowrank warns above this: its SVD takes seconds and more
_ABANDONED: List[Any] = []  # "done" events of worker threads left running after a Ctrl-C

_FIGURE_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg", ".jpg": "jpg", ".jpeg": "jpg"}


class UsageError(ValueError):
    """A command-line mistake; reported as one line, exit code 2."""


class _Interrupted(KeyboardInterrupt):
    """A Ctrl-C, with the line to print about it (what is saved, how to resume)."""


# --------------------------------------------------------------------------- parsing


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        command = self.prog[len(PROG) :].strip()
        hint = f" (see '{PROG} {command} --help')" if command else f" (see '{PROG} --help')"
        raise UsageError(message + hint)


def parse_ranks(text: str) -> List[int]:
    """Parses ``--ranks``: comma-separated integers and ``a:b[:s]`` ranges, sorted, unique.

    A range ``a:b:s`` is ``a, a+s, a+2s, ...`` up to and *including* ``b`` when ``b`` lies
    on that grid (``0:224:8`` ends at 224, the full rank of a 224×224 image); ``a:b`` has
    step 1. Whether the ranks fit the images (``0..min(H, W)``) is checked later.

    Examples:
        >>> parse_ranks("0:16:4")
        [0, 4, 8, 12, 16]
        >>> parse_ranks("0:10:4,32,1")
        [0, 1, 4, 8, 32]
    """
    ranks = set()
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        try:
            numbers = [int(p) for p in item.split(":")]
        except ValueError:
            raise UsageError(
                f"--ranks must be integers or a:b[:step] ranges separated by commas, got {item!r}"
            ) from None
        if len(numbers) == 1:
            values = numbers
        elif len(numbers) in (2, 3):
            start, stop, step = (*numbers, 1) if len(numbers) == 2 else numbers
            if step < 1 or stop < start:
                raise UsageError(f"--ranks range {item!r} must have start <= stop and step >= 1")
            values = list(range(start, stop + 1, step))
        else:
            raise UsageError(f"--ranks range {item!r} must be a:b or a:b:step")
        if any(v < 0 for v in values):
            raise UsageError(f"--ranks must be >= 0, got {item!r}")
        ranks.update(values)
    if not ranks:
        raise UsageError("--ranks must name at least one rank")
    return sorted(ranks)


def _pixels(text: str) -> float:
    """``4/255`` or ``0.0157``: a finite number >= 0 (a distance in [0, 1] pixel units)."""
    try:
        value = float(Fraction(text.strip())) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a number such as 4/255, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _floats(text: str) -> Tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _max_pixels(text: str) -> Optional[int]:
    """``--max-pixels``: a pixel count, ``0`` for no limit (None)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of pixels (0 for no limit), got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of pixels >= 0, got {text!r}")
    return value or None


def _add_max_pixels(g: Any) -> None:
    g.add_argument(
        "--max-pixels",
        type=_max_pixels,
        default=MAX_PIXELS,
        metavar="N",
        help=f"refuse image files of more than N pixels (H×W), whose SVD takes minutes "
        f"and gigabytes; 0: no limit (default: {MAX_PIXELS} = 4096×4096)",
    )


def _steps(text: str) -> Optional[int]:
    """``--n-steps``: a positive integer, or ``all`` (None: RIG's sum over every rank)."""
    if text.strip().lower() == "all":
        return None
    return _positive_int(text)


class _ModelAction(argparse.Action):
    """Collects ``--model`` / ``--weights`` / ``--pretrained`` into one entry per model.

    ``--weights`` and ``--pretrained`` belong to the nearest ``--model`` before them, or
    to the first ``--model`` when they come before every one.
    """

    def __call__(self, parser, namespace, values, option_string=None):
        models = list(getattr(namespace, "models", None) or [])
        pending = dict(getattr(namespace, "_pending", None) or {})
        if self.dest == "models":
            models.append({"spec": values, "weights": None, "pretrained": False, **pending})
            pending = {}
        else:
            key, value = ("weights", values) if self.dest == "weights" else ("pretrained", True)
            if models and models[-1].get(key) in (None, False):
                models[-1][key] = value
            elif not models and key not in pending:
                pending[key] = value
            else:
                owner = models[-1]["spec"] if models else "the first model"
                raise UsageError(f"{option_string} given twice for --model {owner}")
        namespace.models = models
        namespace._pending = pending


def _add_model_options(p: argparse.ArgumentParser, several: bool = False) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        dest="models",
        action=_ModelAction,
        metavar="SPEC",
        help="demo:natural, demo:lowrank8 (the shipped CNNs), torchvision:<name> or "
        "<module or file.py>:<factory> (this imports, that is RUNS, the module or file: "
        "give only code you trust)" + ("; repeat to compare several models" if several else ""),
    )
    if several:
        g.add_argument(
            "--name",
            dest="names",
            action="append",
            metavar="LABEL",
            help="label of a model in tables and figures; the i-th --name labels the i-th "
            "--model (default: the weights file's name, else the factory's)",
        )
    g.add_argument(
        "--weights",
        dest="weights",
        action=_ModelAction,
        metavar="PATH",
        help="state_dict checkpoint for the preceding --model (loaded with weights_only=True)",
    )
    g.add_argument(
        "--pretrained",
        dest="pretrained",
        action=_ModelAction,
        nargs=0,
        help="torchvision's pretrained weights (from the torch hub cache; needs network otherwise)",
    )
    g.add_argument(
        "--num-classes",
        type=_positive_int,
        metavar="N",
        help="model outputs (default: the builder's)",
    )
    g.add_argument(
        "--image-size",
        type=_positive_int,
        metavar="N",
        help="resize the shorter side to N and centre-crop N×N (default: the model's "
        "own input: 224 for most torchvision models, 32 for the demo models; factory "
        "models: images as they are)",
    )
    g.add_argument("--mean", type=_floats, help="normalization mean, e.g. 0.5,0.5,0.5")
    g.add_argument("--std", type=_floats, help="normalization std, e.g. 0.25,0.25,0.25")
    g.add_argument(
        "--no-normalize",
        action="store_true",
        help="do not put Normalize(mean, std) in front of the model",
    )
    g.add_argument(
        "--convert",
        action="store_true",
        help="convert greyscale images for an RGB model (and colour images for a "
        "greyscale one) instead of refusing them",
    )
    _add_max_pixels(g)
    g.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of random weights"
        + (", attack targets and random starts" if several else "")
        + " (default: %(default)s)",
    )


def _add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        required=True,
        metavar="SOURCE",
        help="an image folder (one subfolder per class gives labels) or cifar10:PATH "
        "(the CIFAR-10 folder in torchvision's format)",
    )
    g.add_argument(
        "--split", choices=("test", "train"), default="test", help="CIFAR-10 split (default: test)"
    )
    g.add_argument("--limit", type=_positive_int, metavar="N", help="use the first N images")
    g.add_argument(
        "--batch-size",
        type=_positive_int,
        default=64,
        metavar="N",
        help="images per batch (default: %(default)s)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_demo(sub: Any, method_names: Sequence[str]) -> None:
    p = sub.add_parser("demo", help="run the offline demo and write its figures and report")
    p.add_argument(
        "--out",
        default="captum-rig-demo",
        metavar="DIR",
        help="output folder (default: %(default)s)",
    )
    p.add_argument(
        "--methods", help=f"comma-separated, from: {', '.join(method_names)} (default: all)"
    )
    p.set_defaults(run=_cmd_demo)


def _add_image_model_options(p: argparse.ArgumentParser) -> None:
    """The model options and ``--target`` of the commands that explain image files."""
    _add_model_options(p)
    p.add_argument(
        "--target",
        default="auto",
        help="class index to explain, or 'auto' for each image's predicted class "
        "(default: %(default)s)",
    )


def _add_explain(sub: Any, method_names: Sequence[str]) -> None:
    p = sub.add_parser("explain", help="attribution maps of images, one column per method")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG files")
    _add_image_model_options(p)
    p.add_argument(
        "--methods",
        default=",".join(method_names),
        help=f"comma-separated, from: {', '.join(method_names)} (default: all)",
    )
    p.add_argument(
        "--n-steps",
        type=_steps,
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
    p.set_defaults(run=_cmd_explain)


def _add_lowrank(sub: Any) -> None:
    p = sub.add_parser("lowrank", help="the rank-K version of an image")
    p.add_argument("image", metavar="IMAGE")
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
    _add_max_pixels(p)
    p.set_defaults(run=_cmd_lowrank)


def _add_spectrum(sub: Any) -> None:
    p = sub.add_parser(
        "spectrum", help="rank spectrum (Algorithm 1) of one or several models on a data set"
    )
    _add_model_options(p, several=True)
    _add_data_options(p)
    p.add_argument(
        "--ranks",
        type=parse_ranks,
        metavar="RANKS",
        help="comma-separated ranks and a:b[:step] ranges, b included when on the grid, "
        "e.g. 0:224:8 or 0,1,2,4,8 (default: all, 0..min(H, W))",
    )
    p.add_argument(
        "--metric",
        choices=("agreement", "accuracy"),
        default="agreement",
        help="what the figure shows: agreement with the full-rank prediction, or "
        "accuracy (needs labels) (default: %(default)s)",
    )
    p.add_argument("--reverse", action="store_true", help="remove the top ranks instead")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its checkpoints in --out",
    )
    p.add_argument(
        "--out", default="spectrum", metavar="DIR", help="output folder (default: %(default)s)"
    )
    p.set_defaults(run=_cmd_spectrum)


def _add_robustness(sub: Any) -> None:
    p = sub.add_parser("robustness", help="PGD robustness of one or several models (Table 2)")
    _add_model_options(p, several=True)
    _add_data_options(p)
    p.add_argument(
        "--eps",
        type=_pixels,
        default="4/255",
        help="radius in [0, 1] pixel units, a number or a fraction (default: %(default)s); "
        "at most 1 for linf",
    )
    p.add_argument("--alpha", type=_pixels, help="step size (default: eps/4)")
    p.add_argument(
        "--steps", type=_positive_int, default=20, help="PGD steps (default: %(default)s)"
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
    p.set_defaults(run=_cmd_robustness)


def _band_edges(text: str) -> List[int]:
    """``--bands``: edges ``0 = r_0 < ... < r_m``, written like ``--ranks``."""
    try:
        edges = parse_ranks(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e).replace("--ranks", "band edges")) from None
    if len(edges) < 2 or edges[0] != 0:
        raise argparse.ArgumentTypeError(
            f"expected at least two edges starting at 0, e.g. 0,1,2,4,8,16,32, got {text!r}"
        )
    return edges


def _add_contributions(sub: Any) -> None:
    p = sub.add_parser(
        "contributions",
        help="how much of F(x) - F(0) each singular component of each image accounts for",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG files")
    _add_image_model_options(p)
    p.add_argument(
        "--bands",
        type=_band_edges,
        metavar="EDGES",
        help="band edges 0 = r_0 < ... < r_m = min(H, W), comma-separated or a:b[:step] "
        "ranges, e.g. 0,1,2,4,8,16,32 or 0:32:8 (default: one band per rank)",
    )
    p.add_argument(
        "--n-steps",
        type=_positive_int,
        metavar="N",
        help="gradient evaluations per image, at least one per band (default: 4 per rank "
        "without --bands, 5 per band with them)",
    )
    p.add_argument(
        "--cumulative",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the figure shows the cumulative share of the top k components, or each "
        "rank's (band's) own share (default: cumulative)",
    )
    p.add_argument(
        "--out", default="contributions", metavar="DIR", help="output folder (default: %(default)s)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_cmd_contributions)


def _attack_names(text: str) -> List[str]:
    from captum_rig.stability import ATTACKS

    names = [a.strip().lower() for a in text.split(",") if a.strip()]
    unknown = [a for a in names if a not in ATTACKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated names from {', '.join(ATTACKS)}, got {text!r}"
        )
    return list(dict.fromkeys(names))


def _add_stability(sub: Any) -> None:
    p = sub.add_parser(
        "stability",
        help="minimal distortions, Lipschitz bounds and layer spectra of one or several models",
    )
    _add_model_options(p, several=True)
    _add_data_options(p)
    p.add_argument(
        "--attacks",
        type=_attack_names,
        default="pgd,gaussian",
        help="comma-separated: pgd (the smallest PGD radius that changes the prediction), "
        "gaussian (the smallest noise level that does) (default: %(default)s)",
    )
    p.add_argument(
        "--norm",
        type=str.lower,
        choices=("l2", "linf"),
        default="l2",
        help="norm of the PGD distortion; gaussian is always L2 (default: %(default)s)",
    )
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=20,
        help="PGD steps per radius (default: %(default)s)",
    )
    p.add_argument(
        "--n-bisect",
        type=_positive_int,
        default=12,
        metavar="N",
        help="bisection steps of both searches (default: %(default)s)",
    )
    p.add_argument(
        "--max-eps",
        type=_pixels,
        help="largest PGD radius tried (default: 1 for linf, the [0, 1] box's diagonal "
        "√(C·H·W) for l2)",
    )
    p.add_argument(
        "--max-sigma",
        type=_pixels,
        default=1.0,
        help="largest noise standard deviation tried (default: %(default)s)",
    )
    p.add_argument(
        "--n-iter",
        type=_positive_int,
        default=100,
        metavar="N",
        help="power iterations per layer for the Lipschitz bound (default: %(default)s)",
    )
    p.add_argument(
        "--certified",
        action="store_true",
        help="certified Lipschitz bounds (Gram iteration) instead of power iteration",
    )
    p.add_argument(
        "--layers",
        metavar="NAMES",
        help="comma-separated module names for the feature-map spectra, in every model "
        "(default: every Conv2d)",
    )
    p.add_argument(
        "--out", default="stability", metavar="DIR", help="output folder (default: %(default)s)"
    )
    p.set_defaults(run=_cmd_stability)


def build_parser() -> argparse.ArgumentParser:
    """The ``captum-rig`` argument parser (one subparser per command)."""
    from captum_rig.methods import METHOD_NAMES

    parser = _Parser(
        prog=PROG,
        description="The singular value perspective on model robustness: low-rank images, "
        "Rank Integrated Gradients, rank spectra and PGD robustness.",
        epilog="Exit codes: 0 success, 2 usage or input error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_demo(sub, METHOD_NAMES)
    _add_explain(sub, METHOD_NAMES)
    _add_lowrank(sub)
    _add_spectrum(sub)
    _add_robustness(sub)
    _add_contributions(sub)
    _add_stability(sub)
    return parser


# --------------------------------------------------------------------------- files


def _output_file(
    text: str, what: str, formats: Optional[Dict[str, str]] = None
) -> Tuple[Path, str]:
    """Checks an output path before any work: its folder exists, its extension is known.

    ``formats`` maps extensions to formats; None: image formats (:func:`image_format`).
    """
    path = Path(text).expanduser()
    if path.is_dir():
        raise UsageError(f"{what} {text!r} is a folder, expected a file name")
    if not path.parent.is_dir():
        raise UsageError(f"the folder of {what} {text!r} does not exist")
    if formats is None:
        try:
            fmt = image_format(text)
        except ValueError as e:
            raise UsageError(f"{what} {e}") from None
    else:
        ext = path.suffix.lower()
        if ext not in formats:
            raise UsageError(
                f"{what} {text!r} must end in one of {', '.join(sorted(formats))}, "
                f"got {ext or 'no extension'!r}"
            )
        fmt = formats[ext]
    check_writable(path, what)  # a folder we cannot write in fails now, not after the work
    return path, fmt


def _output_folder(text: str) -> Path:
    out = Path(text).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {text!r} is a file, expected a folder")
    if not out.parent.is_dir():
        raise UsageError(f"the folder of --out {text!r} does not exist")
    # Proved writable before any work (its files and checkpoints go there); a folder made
    # only for the test is removed again, so a failed run leaves nothing behind.
    created = not out.exists()
    try:
        check_writable(out, "--out", folder=True, create=True)
    finally:
        if created and out.is_dir():
            out.rmdir()
    return out


def _save_figure(fig: Any, path: Path, fmt: str) -> None:
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- models and data


def _device(text: Optional[str]) -> torch.device:
    if text is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device must be cpu, cuda or cuda:N, got {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {text}: CUDA is not available on this machine")
    return device


def _models(args: argparse.Namespace, several: bool = False) -> List[Dict[str, Any]]:
    entries = list(getattr(args, "models", None) or [])
    if getattr(args, "_pending", None):
        raise UsageError("--weights/--pretrained need a --model")
    if not entries:
        raise UsageError("--model SPEC is required")
    if len(entries) > 1 and not several:
        raise UsageError(f"{args.command} takes one --model, got {len(entries)}")
    return entries


def _load(entry: Dict[str, Any], args: argparse.Namespace, device: Any) -> Tuple[Any, Any]:
    """(model taking [0, 1] images on ``device``, its Preprocessing)."""
    model, prep = load_pixel_model(
        entry["spec"],
        weights=entry["weights"],
        pretrained=entry["pretrained"],
        num_classes=args.num_classes,
        device=device,
        mean=args.mean,
        std=args.std,
        normalize=not args.no_normalize,
    )
    if args.image_size is not None:
        prep = replace(prep, resize_size=args.image_size, crop_size=args.image_size)
    if entry["spec"].startswith("torchvision:") and not (entry["weights"] or entry["pretrained"]):
        # A randomly initialised classifier explains nothing; say so rather than let its
        # noise maps pass for an explanation.
        print(
            f"note: {entry['spec']} has random weights (give --weights PATH or --pretrained)",
            file=sys.stderr,
        )
    return model, prep


def _model_names(entries: List[Dict[str, Any]], names: Optional[List[str]]) -> List[str]:
    """One label per model: its ``--name``, else its weights file's stem, else its factory."""
    names = list(names or [])
    if len(names) > len(entries):
        raise UsageError(f"--name given {len(names)} times for {len(entries)} --model")
    if len(set(names)) < len(names):
        raise UsageError(f"--name labels must differ, got {names}")
    taken = set(names)
    for entry in entries[len(names) :]:
        names.append(_default_name(entry, taken))
        taken.add(names[-1])
    return names


def _default_name(entry: Dict[str, Any], taken: Iterable[str]) -> str:
    name = entry["spec"].rpartition(":")[2]
    if entry["weights"]:
        name = Path(entry["weights"]).stem
    elif entry["pretrained"]:
        name += " (pretrained)"
    base, i = name, 2
    while name in taken:
        name, i = f"{base} #{i}", i + 1
    return name


def _load_models(args: argparse.Namespace, device: Any) -> Tuple[Dict[str, Any], Any]:
    """({label: model}, the shared Preprocessing) for the ``--model`` options."""
    entries = _models(args, several=True)
    names = _model_names(entries, args.names)
    models, prep = {}, None
    for name, entry in zip(names, entries):
        model, p = _load(entry, args, device)
        if prep is not None and (p.crop_size, p.resize_size) != (prep.crop_size, prep.resize_size):
            raise UsageError(
                "the models expect different input sizes; pass --image-size N for all of them"
            )
        prep = prep or p
        models[name] = model
    return models, prep


def _image_options(
    prep: Any, convert: bool, max_pixels: Optional[int] = MAX_PIXELS
) -> Dict[str, Any]:
    """Arguments of :func:`captum_rig.data.load_image` for a model's Preprocessing."""
    size = prep.crop_size
    resize = None if size is None or prep.resize_size is None else max(prep.resize_size, size)
    return {
        "size": size,
        "resize": resize,
        "channels": prep.in_channels,
        "convert": convert,
        "max_pixels": max_pixels,
    }


def _open_data(args: argparse.Namespace, prep: Any, need_labels: bool) -> Tuple[Any, bool]:
    """(DataLoader of images or (images, labels) batches, whether there are labels)."""
    from torch.utils.data import DataLoader, Subset

    if Path(args.data).expanduser().is_file():
        raise UsageError(
            f"--data {args.data!r} is a file; --data takes a folder of images (one subfolder "
            "per class gives labels) or cifar10:PATH (for single images: captum-rig explain)"
        )
    dataset, labelled = image_dataset(
        args.data,
        train=args.split == "train",
        **_image_options(prep, args.convert, args.max_pixels),
    )
    if need_labels and not labelled:
        raise ValueError(
            f"--data {args.data} has no labels: use a folder with one subfolder per class, "
            "or cifar10:PATH"
        )
    if args.limit is not None and args.limit < len(dataset):
        dataset = Subset(dataset, range(args.limit))
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False, num_workers=0)
    return loader, labelled


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars on a terminal only (tqdm's own rule), and never with --no-progress."""
    return not args.no_progress and sys.stderr.isatty()


def _class_name(index: int, categories: Optional[Sequence[str]]) -> str:
    return (
        f"{index} ({categories[index]})" if categories and index < len(categories) else str(index)
    )


# --------------------------------------------------------------------------- demo


def _cmd_demo(args: argparse.Namespace) -> int:
    from captum_rig.demo import run_demo
    from captum_rig.methods import parse_methods

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


# --------------------------------------------------------------------------- explain


def _parse_target(text: str) -> Optional[int]:
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--target must be a class index or 'auto', got {text!r}") from None


def _predictions(model: Any, images: List[Any], args: argparse.Namespace, device: Any) -> List:
    """Per image: ``{"path", "x", "target", "predicted", "p"}``, target checked."""
    target = _parse_target(args.target)
    rows = []
    with torch.no_grad():
        for path, x in zip(args.images, images):
            try:
                logits = model(x.unsqueeze(0).to(device))
            except RuntimeError as e:  # e.g. a Linear layer sized for other images
                raise ValueError(
                    f"the model cannot take {path} as a {tuple(x.shape)} image "
                    f"({_one_line(e)}); try --image-size N"
                ) from None
            if logits.dim() != 2:
                raise ValueError(
                    f"the model must return logits (N, classes), got shape {tuple(logits.shape)}"
                )
            n_classes, predicted = logits.shape[1], int(logits.argmax(1))
            t = predicted if target is None else target
            if not 0 <= t < n_classes:
                raise ValueError(
                    f"--target {t} is out of range: the model has {n_classes} classes "
                    f"(0..{n_classes - 1})"
                )
            prob = float(logits.softmax(1)[0, t])
            rows.append({"path": path, "x": x, "target": t, "predicted": predicted, "p": prob})
    return rows


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


def _explain_figure(rows: List, methods: List, maps: Dict, categories: Any) -> Any:
    """One row per image: the image, then one map per method (:func:`plot_attributions`).

    Images of different sizes are shown top-left on a white canvas of the largest size,
    their maps padded with zeros (no attribution) to match.
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
    labels = [
        f"{Path(r['path']).name}: target {_class_name(r['target'], categories)}" for r in rows
    ]
    fig, _ = plot_attributions(images, attributions, row_labels=labels)
    return fig


def _evaluations(model: Any, methods: List, n_steps: Optional[int], widths: List[int]) -> str:
    """``rig 31 (every rank), ig 50, ...``: the gradient evaluations each method spends.

    RIG's paper sum evaluates ranks ``1..w-1`` (rank ``w`` has weight 0), at most
    ``n_steps`` of them; ``n_steps=None`` leaves every other method its own default.
    """
    import inspect

    parts = []
    for method in methods:
        if method.name == "rig":
            full = [max(w - 1, 1) for w in widths]
            counts = full if n_steps is None else [min(n_steps, f) for f in full]
            text = "/".join(str(c) for c in sorted(set(counts)))
            text += " (every rank)" if counts == full else ""
        elif not method.takes_steps:
            text = "1"
        elif n_steps is None:
            signature = inspect.signature(method.build(model).attribute)
            text = str(signature.parameters["n_steps"].default)
        else:
            text = str(n_steps)
        parts.append(f"{method.name} {text}")
    return ", ".join(parts)


def _interruptible(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a worker thread, so that Ctrl-C is answered within a fraction of a second.

    Python raises KeyboardInterrupt in the main thread between bytecodes, so a long
    LAPACK call there (an SVD of a big image) would keep Ctrl-C waiting for minutes. Here
    the main thread only waits; on Ctrl-C the worker, a daemon, is left to die with the
    process.
    """
    outcome: Dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            outcome["value"] = fn(*args)
        except BaseException as e:  # handed to the main thread below
            outcome["error"] = e
        finally:
            done.set()

    threading.Thread(target=work, name="captum-rig-worker", daemon=True).start()
    try:
        # An Event, not Thread.join: a join interrupted by Ctrl-C marks the thread stopped.
        while not done.wait(0.1):
            pass
    except KeyboardInterrupt:
        _ABANDONED.append(done)
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _model_and_images(args: argparse.Namespace, device: Any) -> Tuple[Any, Any, List[Any]]:
    """The one ``--model`` and the ``IMAGE`` files, prepared as the model expects them."""
    (entry,) = _models(args)
    for path in args.images:  # every file checked before the model is built
        if not Path(path).expanduser().is_file():
            load_image(path, channels=None)  # raises the error that fits
    model, prep = _load(entry, args, device)
    options = _image_options(prep, args.convert, args.max_pixels)
    return model, prep, [load_image(p, **options) for p in args.images]


def _cmd_explain(args: argparse.Namespace) -> int:
    from captum_rig.methods import parse_methods

    methods = parse_methods([args.methods])
    _parse_target(args.target)  # a bad --target fails before any work
    out, fmt = _output_file(args.out, "--out", _FIGURE_FORMATS)
    device = _device(args.device)
    model, prep, images = _model_and_images(args, device)
    rows = _predictions(model, images, args, device)
    widths = sorted({min(x.shape[-2:]) for x in images})
    counts = _evaluations(model, methods, args.n_steps, widths)
    print(f"gradient evaluations per image: {counts}", file=sys.stderr, flush=True)
    maps = _interruptible(_attributions, model, rows, methods, args, device)
    _save_figure(_explain_figure(rows, methods, maps, prep.categories), out, fmt)
    for row in rows:
        print(
            f"{row['path']}: target {_class_name(row['target'], prep.categories)} "
            f"(p = {row['p']:.3f}), predicted {_class_name(row['predicted'], prep.categories)}"
        )
    print(f"wrote {out}")
    return EXIT_OK


# --------------------------------------------------------------------------- lowrank


def _cmd_lowrank(args: argparse.Namespace) -> int:
    from captum_rig.lowrank import drop_top_ranks, low_rank

    out, _ = _output_file(args.out, "--out")
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
    y = _interruptible(partial(transform, method=args.svd), x.double(), args.rank).float()
    # An image without its top ranks is centred on 0: clipped, it is almost black.
    rescale = args.reverse if args.rescale is None else args.rescale
    save_image(y, out, rescale=rescale)
    what = "top ranks removed" if args.reverse else "rank"
    how = ", min..max stretched to 0..255" if rescale else ""
    print(f"wrote {out} ({what} {args.rank} of {width}, {x.shape[-1]}×{x.shape[-2]}{how})")
    return EXIT_OK


# --------------------------------------------------------------------------- spectrum


def _spectrum_files(out: Path, names: List[str]) -> List[Path]:
    """One CSV per model: ``spectrum.csv`` for one model, ``spectrum_<name>.csv`` for several."""
    if len(names) == 1:
        return [out / "spectrum.csv"]
    files: List[Path] = []
    for name in names:
        stem = "spectrum_" + (re.sub(r"[^\w.-]+", "_", name).strip("_.") or "model")
        base, i = stem, 2
        while out / f"{stem}.csv" in files:
            stem, i = f"{base}-{i}", i + 1
        files.append(out / f"{stem}.csv")
    return files


def _batches_saved(checkpoint: Path) -> int:
    """How many batches ``checkpoint`` holds the counts of (0: none, or unreadable)."""
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        return int(saved["state"]["next_batch"])
    except Exception:  # no file, or another layout: report nothing saved
        return 0


def _resume_hint(
    args: argparse.Namespace, name: str, checkpoint: Path, total: int, done: Dict
) -> str:
    """The line printed on Ctrl-C: what is saved, and the command line that resumes."""
    argv = list(getattr(args, "argv", None) or [])
    command = shlex.join([PROG, *argv, *([] if "--resume" in argv else ["--resume"])])
    counted = _batches_saved(checkpoint)
    if counted:
        return (
            f"interrupted: {counted} of {total} batches of {name} counted and saved; "
            f"resume with: {command}"
        )
    if done:
        return (
            f"interrupted: 0 of {total} batches of {name} counted; the spectra of "
            f"{', '.join(done)} are saved; resume with: {command}"
        )
    return f"interrupted before the first batch of {name} was counted; nothing to resume"


def _spectra(args: argparse.Namespace, models: Dict, loader: Any, out: Path, device: Any) -> Dict:
    """{label: RankSpectrum}; each written to its CSV as soon as it is complete.

    With ``--resume``, a model whose CSV is there is read back rather than counted again.
    """
    from captum_rig.spectrum import RankSpectrum, rank_spectrum

    spectra = {}
    for (name, model), csv_path in zip(models.items(), _spectrum_files(out, list(models))):
        checkpoint = out / f".{csv_path.stem}.ckpt"
        if args.resume and csv_path.is_file() and not checkpoint.exists():
            spectra[name] = RankSpectrum.from_csv(csv_path)
            continue
        if not args.resume and checkpoint.exists():
            checkpoint.unlink()
        elif args.resume and not checkpoint.exists():
            print(
                f"no checkpoint {checkpoint}: starting {name} from the beginning", file=sys.stderr
            )
        try:
            spectra[name] = rank_spectrum(
                model,
                loader,
                ranks=args.ranks,
                reverse=args.reverse,
                batch_size=args.batch_size,
                device=device,
                progress=_progress(args),
                checkpoint=checkpoint,
                # a few KB per save: even a SIGKILL loses at most the batch in progress
                checkpoint_every=1,
            )
        except KeyboardInterrupt:
            raise _Interrupted(_resume_hint(args, name, checkpoint, len(loader), spectra)) from None
        spectra[name].to_csv(csv_path)
        print(f"wrote {csv_path}")
    return spectra


def _cmd_spectrum(args: argparse.Namespace) -> int:
    from captum_rig.viz import plot_spectra

    out = _output_folder(args.out)
    device = _device(args.device)
    models, prep = _load_models(args, device)
    loader, _ = _open_data(args, prep, need_labels=args.metric == "accuracy")
    created = not out.exists()
    out.mkdir(exist_ok=True)
    try:
        spectra = _spectra(args, models, loader, out, device)
    except BaseException:
        if created and not any(out.iterdir()):  # nothing to resume from: leave no trace
            out.rmdir()
        raise
    fig, ax = plot_spectra(spectra, metric=args.metric)
    n_images = next(iter(spectra.values())).n_images
    ax.set_title(f"{', '.join(spectra)}: {n_images} images")
    png_path = out / "spectrum.png"
    _save_figure(fig, png_path, "png")
    print(f"{n_images} images, {len(next(iter(spectra.values())).ranks)} ranks")
    print(f"wrote {png_path}")
    return EXIT_OK


# --------------------------------------------------------------------------- robustness


def _cmd_robustness(args: argparse.Namespace) -> int:
    from captum_rig.robustness import evaluate_robustness

    if args.norm == "linf":  # an L-inf radius of 1 already allows any image
        for flag, value in (("--eps", args.eps), ("--alpha", args.alpha)):
            if value is not None and value > 1:
                raise UsageError(
                    f"{flag} must be in [0, 1] for --norm linf (pixels are in [0, 1]), "
                    f"got {value:.4g}"
                )
    out = None if args.out is None else _output_file(args.out, "--out", {".csv": "csv"})[0]
    device = _device(args.device)
    models, prep = _load_models(args, device)
    loader, _ = _open_data(args, prep, need_labels=True)
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
        progress=_progress(args),
        seed=args.seed,
    )
    print(report.to_markdown())
    if out is not None:
        report.to_csv(out)
        print(f"wrote {out}")
    return EXIT_OK


# --------------------------------------------------------------------------- contributions


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


def _rank_contributions(
    model: Any, rows: List, args: argparse.Namespace, device: Any
) -> List[Tuple[torch.Tensor, float]]:
    """Per image: (its contributions ``(C, m)`` on the CPU, ``F(x) - F(0)`` at its target)."""
    from tqdm.auto import tqdm

    from captum_rig import rank_contributions

    results = []
    bar = tqdm(rows, desc="contributions", unit="image", disable=True if args.no_progress else None)
    for row in bar:
        x = row["x"].unsqueeze(0).to(device)
        values = rank_contributions(
            model, x, target=row["target"], bands=args.bands, n_steps=args.n_steps
        )
        with torch.no_grad():
            logits = model(torch.cat([x, torch.zeros_like(x)]))
        delta = float(logits[0, row["target"]] - logits[1, row["target"]])
        results.append((values.detach()[0].cpu(), delta))
    return results


def _write_contributions(path: Path, rows: List, results: List, bands: Optional[List]) -> None:
    """One CSV line per image, channel and band: its edges and its contribution."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "target", "channel", "band_start", "band_end", "value"])
        for row, (values, _) in zip(rows, results):
            edges = bands or list(range(values.shape[-1] + 1))
            for channel, per_band in enumerate(values.tolist()):
                for j, value in enumerate(per_band):
                    writer.writerow(
                        [row["path"], row["target"], channel, edges[j], edges[j + 1], value]
                    )


# Above this relative gap between the contributions' sum and F(x) - F(0), say so.
_CONTRIBUTIONS_GAP = 0.05


def _cmd_contributions(args: argparse.Namespace) -> int:
    from captum_rig.viz import plot_rank_contributions

    _parse_target(args.target)  # a bad --target fails before any work
    out = _output_folder(args.out)
    device = _device(args.device)
    model, prep, images = _model_and_images(args, device)
    for path, x in zip(args.images, images):
        width = min(x.shape[-2:])
        if args.bands is not None and args.bands[-1] != width:
            raise UsageError(
                f"--bands must end at min(H, W) = {width} of {path} as the model sees it, "
                f"got {args.bands[-1]}"
            )
        n_bands = width if args.bands is None else len(args.bands) - 1
        if args.n_steps is not None and args.n_steps < n_bands:
            raise UsageError(
                f"--n-steps must be at least the number of bands ({n_bands} for {path}), "
                f"got {args.n_steps}"
            )
    rows = _predictions(model, images, args, device)
    results = _rank_contributions(model, rows, args, device)
    curves = {
        label: values.unsqueeze(0)
        for label, (values, _) in zip(_unique_labels(args.images), results)
    }
    fig, _ = plot_rank_contributions(
        curves,
        bands=args.bands,
        cumulative=args.cumulative,
        title=f"{_default_name(_models(args)[0], ())}: where F(x) - F(0) comes from",
    )
    out.mkdir(exist_ok=True)
    csv_path, png_path = out / "contributions.csv", out / "rank_contributions.png"
    try:
        _write_contributions(csv_path, rows, results, args.bands)
    except BaseException:
        import matplotlib.pyplot as plt

        plt.close(fig)
        raise
    _save_figure(fig, png_path, "png")
    worst = 0.0
    for row, (values, delta) in zip(rows, results):
        total = float(values.double().sum())
        print(
            f"{row['path']}: target {_class_name(row['target'], prep.categories)}, "
            f"sum of contributions {total:.6g}, F(x) - F(0) = {delta:.6g}"
        )
        worst = max(worst, abs(total - delta) / max(abs(delta), 1e-12))
    if worst > _CONTRIBUTIONS_GAP:
        print(
            f"note: the sums miss F(x) - F(0) by up to {worst:.0%} (quadrature error): "
            "raise --n-steps, or use narrower --bands",
            file=sys.stderr,
        )
    print(f"wrote {csv_path}")
    print(f"wrote {png_path}")
    return EXIT_OK


# --------------------------------------------------------------------------- stability


def _labelled_tensors(loader: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    """All ``(images, labels)`` batches of a loader as two tensors."""
    images, labels = [], []
    for x, y in loader:
        images.append(x)
        labels.append(torch.as_tensor(y))
    return torch.cat(images), torch.cat(labels)


def _layer_spectra(
    models: Dict[str, Any], images: torch.Tensor, args: argparse.Namespace
) -> Tuple[Dict[str, Dict], Dict[str, Dict]]:
    """({model: weight spectra}, {model: feature-map spectra}).

    Without ``--layers``, a model with no convolution gets no feature-map spectra (a note
    on stderr) rather than failing the whole comparison.
    """
    from tqdm.auto import tqdm

    from captum_rig.stability import feature_map_spectra, weight_spectra

    layers = None
    if args.layers is not None:
        layers = [name.strip() for name in args.layers.split(",") if name.strip()]
    weights, maps = {}, {}
    bar = tqdm(models.items(), desc="layer spectra", unit="model", disable=not _progress(args))
    for name, model in bar:
        weights[name] = weight_spectra(model)
        try:
            maps[name] = feature_map_spectra(
                model, images, layers=layers, batch_size=args.batch_size
            )
        except ValueError as e:
            if layers is not None:
                raise ValueError(f"--layers for model {name}: {_one_line(e)}") from None
            print(f"note: no feature-map spectra for {name}: {_one_line(e)}", file=sys.stderr)
    return weights, maps


def _stability_figures(weights: Dict, maps: Dict) -> Dict[str, Any]:
    """{file name: figure}; a figure that cannot be drawn is left out with a note."""
    from captum_rig.viz import plot_layer_norms, plot_layer_spectra

    weights = {name: spectra for name, spectra in weights.items() if spectra}
    plans = [
        ("weight_spectra.png", plot_layer_spectra, weights, "singular values of the weights"),
        ("weight_norms.png", plot_layer_norms, weights, "largest singular value of each weight"),
        (
            "feature_map_spectra.png",
            plot_layer_spectra,
            maps,
            "mean singular values of the feature maps",
        ),
    ]
    figures = {}
    for file_name, plot, spectra, title in plans:
        try:
            if not spectra:
                raise ValueError("no model has such layers")
            figures[file_name] = plot(spectra, title=title)[0]
        except ValueError as e:  # e.g. models with no layer name in common
            print(f"note: no {file_name}: {_one_line(e)}", file=sys.stderr)
    return figures


def _json_ready(value: Any) -> Any:
    """Tensors as lists, and NaN/inf (no such numbers in JSON) as null."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def _write_stability(out: Path, table: Any, summary: Dict[str, Any], figures: Dict) -> List[Path]:
    """stability.md, .csv and .json, then the figures: the files written."""
    import matplotlib.pyplot as plt

    try:
        out.mkdir(exist_ok=True)
        md_path, csv_path, json_path = (out / f"stability.{ext}" for ext in ("md", "csv", "json"))
        heading = f"# Stability: {summary['n_images']} images from {summary['data']}\n\n"
        with atomic_path(md_path) as tmp:
            Path(tmp).write_text(heading + table.to_markdown() + "\n", encoding="utf-8")
        table.to_csv(csv_path)
        with atomic_path(json_path) as tmp:
            record = {**summary, **table.to_dict()}
            for key in ("weight_spectra", "feature_map_spectra"):  # the long lists last
                record[key] = record.pop(key)
            text = json.dumps(_json_ready(record), indent=1)
            Path(tmp).write_text(text + "\n", encoding="utf-8")
    except BaseException:
        for fig in figures.values():
            plt.close(fig)
        raise
    written = [md_path, csv_path, json_path]
    for file_name, fig in figures.items():
        _save_figure(fig, out / file_name, "png")
        written.append(out / file_name)
    return written


def _cmd_stability(args: argparse.Namespace) -> int:
    from captum_rig.stability import compare_stability

    out = _output_folder(args.out)
    device = _device(args.device)
    models, prep = _load_models(args, device)
    loader, _ = _open_data(args, prep, need_labels=True)
    images, labels = _labelled_tensors(loader)
    table = compare_stability(
        models,
        images,
        labels,
        attacks=args.attacks,
        norm={"l2": "L2", "linf": "Linf"}[args.norm],
        steps=args.steps,
        n_bisect=args.n_bisect,
        max_eps=args.max_eps,
        max_sigma=args.max_sigma,
        n_iter=args.n_iter,
        certified=args.certified,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=_progress(args),
    )
    weights, maps = _layer_spectra(models, images, args)
    summary = {
        "data": args.data,
        "n_images": int(images.shape[0]),
        "weight_spectra": weights,
        "feature_map_spectra": maps,
    }
    written = _write_stability(out, table, summary, _stability_figures(weights, maps))
    print(table.to_markdown())
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK


# --------------------------------------------------------------------------- main


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, KeyError):  # str(KeyError) quotes its argument
        text = text.strip("'\"")
    return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs ``captum-rig`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Usage and input errors (``UsageError``, and ``ValueError``, ``TypeError``,
    ``OSError`` and ``WeightsUnavailableError`` from the library) print one line
    ``captum-rig: error: ...`` to stderr and return 2; other exceptions are bugs and
    propagate with their traceback. Commands that build models seed torch's generator
    with ``--seed`` first, so random weights are the same from run to run.

    Examples:
        >>> main(["lowrank", "no-such.png", "--rank", "1", "--out", "x.png"])
        2
    """
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help, --version
            return e.code if isinstance(e.code, int) else EXIT_OK
        if getattr(args, "seed", None) is not None:
            torch.manual_seed(args.seed)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # to print a resume command
        return args.run(args)
    except (UsageError, ValueError, TypeError, OSError, WeightsUnavailableError) as e:
        print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        text = str(e) if isinstance(e, _Interrupted) else "interrupted"
        print(f"{PROG}: {text}", file=sys.stderr)
        if argv is None and not all(done.is_set() for done in _ABANDONED):
            # Run as the program: Python's own exit would wait seconds for the abandoned
            # computation (an SVD inside LAPACK); nothing is left to write, so end now.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
