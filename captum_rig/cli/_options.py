"""The argument types and the option groups the sub-commands share.

The groups are argparse *parent parsers* (``parents=[model_options()]`` in
``add_parser``): the model options, the data options, and the model options with
``--target`` of the commands that explain image files.
"""

import argparse
from fractions import Fraction
from typing import Any, List, Optional, Tuple

from captum_rig.cli._common import UsageError
from captum_rig.data import MAX_PIXELS
from captum_rig.loading import ModelSpec


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


def pixels(text: str) -> float:
    """``4/255`` or ``0.0157``: a finite number >= 0 (a distance in [0, 1] pixel units)."""
    try:
        value = float(Fraction(text.strip())) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a number such as 4/255, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def floats(text: str) -> Tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def pixel_limit(text: str) -> Optional[int]:
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


def add_max_pixels(g: Any) -> None:
    """``--max-pixels N`` on a parser or group (image files above N pixels are refused)."""
    g.add_argument(
        "--max-pixels",
        type=pixel_limit,
        default=MAX_PIXELS,
        metavar="N",
        help=f"refuse image files of more than N pixels (H×W), whose SVD takes minutes "
        f"and gigabytes; 0: no limit (default: {MAX_PIXELS} = 4096×4096)",
    )


def steps_or_all(text: str) -> Optional[int]:
    """``--n-steps``: a positive integer, or ``all`` (None: RIG's sum over every rank)."""
    if text.strip().lower() == "all":
        return None
    return positive_int(text)


class ModelAction(argparse.Action):
    """Collects ``--model`` / ``--weights`` / ``--pretrained`` into one entry per model.

    ``--weights`` and ``--pretrained`` belong to the nearest ``--model`` before them, or
    to the first ``--model`` when they come before every one.
    """

    def __call__(self, parser, namespace, values, option_string=None):
        models = list(getattr(namespace, "models", None) or [])
        pending = dict(getattr(namespace, "_pending", None) or {})
        if self.dest == "models":
            # Parsed here, so a malformed spec ('resnet18': did you mean
            # torchvision:resnet18?) fails alike in every command, before any other check.
            ModelSpec.parse(values)
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


def _add_model_choice(g: Any, several: bool) -> None:
    """``--model`` (and ``--name`` for several), ``--weights``, ``--pretrained``."""
    g.add_argument(
        "--model",
        dest="models",
        action=ModelAction,
        required=True,  # shown as required in the usage line; argparse checks it
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
        action=ModelAction,
        metavar="PATH",
        help="state_dict checkpoint for the preceding --model (loaded with weights_only=True)",
    )
    g.add_argument(
        "--pretrained",
        dest="pretrained",
        action=ModelAction,
        nargs=0,
        help="torchvision's pretrained weights (from the torch hub cache; needs network otherwise)",
    )


def _add_model_input(g: Any) -> None:
    """How images reach the model: classes, size, normalization, channels, pixel limit."""
    g.add_argument(
        "--num-classes",
        type=positive_int,
        metavar="N",
        help="model outputs (default: the builder's)",
    )
    g.add_argument(
        "--image-size",
        type=positive_int,
        metavar="N",
        help="resize the shorter side to N and centre-crop N×N (default: the model's "
        "own input: 224 for most torchvision models, 32 for the demo models; factory "
        "models: images as they are)",
    )
    g.add_argument("--mean", type=floats, help="normalization mean, e.g. 0.5,0.5,0.5")
    g.add_argument("--std", type=floats, help="normalization std, e.g. 0.25,0.25,0.25")
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
    add_max_pixels(g)


def model_options(several: bool = False) -> argparse.ArgumentParser:
    """The parent parser of the ``model`` options (``several``: repeatable ``--model``)."""
    parent = argparse.ArgumentParser(add_help=False)
    g = parent.add_argument_group("model")
    _add_model_choice(g, several)
    _add_model_input(g)
    g.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of random weights"
        + (", attack targets and random starts" if several else "")
        + " (default: %(default)s)",
    )
    return parent


def data_options() -> argparse.ArgumentParser:
    """The parent parser of the ``data`` options: ``--data SOURCE`` and how to read it."""
    parent = argparse.ArgumentParser(add_help=False)
    g = parent.add_argument_group("data")
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
    g.add_argument(
        "--limit",
        type=positive_int,
        metavar="N",
        help="use the first N images (with --balanced: N drawn evenly from the classes)",
    )
    g.add_argument(
        "--balanced",
        action="store_true",
        help="with --limit N on labelled data: take N images spread evenly over the "
        "classes, drawn at random with --seed (the same images for the same seed), "
        "instead of the first N (which, on class folders, come from the first classes)",
    )
    g.add_argument(
        "--batch-size",
        type=positive_int,
        default=64,
        metavar="N",
        help="images per batch (default: %(default)s)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parent


def image_model_options() -> argparse.ArgumentParser:
    """The parent parser of the commands that explain image files: one model, ``--target``."""
    parent = argparse.ArgumentParser(add_help=False, parents=[model_options()])
    parent.add_argument(
        "--target",
        default="auto",
        help="class index to explain, or 'auto' for each image's predicted class "
        "(default: %(default)s)",
    )
    return parent
