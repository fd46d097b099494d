"""``captum-rig``: low-rank images, attributions, rank spectra and PGD robustness from a shell.

Subcommands (``captum-rig <command> --help`` for each; the reference is ``docs/cli.md``):

- ``demo``: the self-contained demo (synthetic data, a small model, every figure).
- ``explain``: attribution maps of images for a model, side by side per method.
- ``lowrank``: the rank-k (or top-k-removed) version of an image.
- ``spectrum``: the paper's Algorithm 1 over a data set, for one or several models.
- ``robustness``: targeted or untargeted PGD, the paper's Table 2, for several models.

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
import re
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, Iterable, List, NoReturn, Optional, Sequence, Tuple

import torch

from captum_rig import __version__
from captum_rig._context import atomic_path
from captum_rig.data import image_dataset, image_format, load_image, save_image
from captum_rig.loading import WeightsUnavailableError, load_pixel_model

__all__ = ["main", "parse_ranks", "build_parser"]

PROG = "captum-rig"
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_FIGURE_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg", ".jpg": "jpg", ".jpeg": "jpg"}


class UsageError(ValueError):
    """A command-line mistake; reported as one line, exit code 2."""


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
        "<module or file.py>:<factory>" + ("; repeat to compare several models" if several else ""),
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


def _add_explain(sub: Any, method_names: Sequence[str]) -> None:
    p = sub.add_parser("explain", help="attribution maps of images, one column per method")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG files")
    _add_model_options(p)
    p.add_argument(
        "--target",
        default="auto",
        help="class index to explain, or 'auto' for each image's predicted class "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--methods",
        default=",".join(method_names),
        help=f"comma-separated, from: {', '.join(method_names)} (default: all)",
    )
    p.add_argument(
        "--n-steps",
        type=_positive_int,
        metavar="N",
        help="path steps of each method (default: each method's own)",
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
        "--out", required=True, metavar="FILE", help="output image (.png recommended: lossless)"
    )
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
            return path, image_format(text)
        except ValueError as e:
            raise UsageError(f"{what} {e}") from None
    ext = path.suffix.lower()
    if ext not in formats:
        raise UsageError(
            f"{what} {text!r} must end in one of {', '.join(sorted(formats))}, "
            f"got {ext or 'no extension'!r}"
        )
    return path, formats[ext]


def _output_folder(text: str) -> Path:
    out = Path(text).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {text!r} is a file, expected a folder")
    if not out.parent.is_dir():
        raise UsageError(f"the folder of --out {text!r} does not exist")
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


def _image_options(prep: Any, convert: bool) -> Dict[str, Any]:
    """Arguments of :func:`captum_rig.data.load_image` for a model's Preprocessing."""
    size = prep.crop_size
    resize = None if size is None or prep.resize_size is None else max(prep.resize_size, size)
    return {"size": size, "resize": resize, "channels": prep.in_channels, "convert": convert}


def _open_data(args: argparse.Namespace, prep: Any, need_labels: bool) -> Tuple[Any, bool]:
    """(DataLoader of images or (images, labels) batches, whether there are labels)."""
    from torch.utils.data import DataLoader, Subset

    dataset, labelled = image_dataset(
        args.data, train=args.split == "train", **_image_options(prep, args.convert)
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

    out = Path(args.out).expanduser()
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


def _cmd_explain(args: argparse.Namespace) -> int:
    from captum_rig.methods import parse_methods

    methods = parse_methods([args.methods])
    _parse_target(args.target)  # a bad --target fails before any work
    out, fmt = _output_file(args.out, "--out", _FIGURE_FORMATS)
    device = _device(args.device)
    (entry,) = _models(args)
    for path in args.images:  # every file checked before the model is built
        if not Path(path).expanduser().is_file():
            load_image(path, channels=None)  # raises the error that fits
    model, prep = _load(entry, args, device)
    options = _image_options(prep, args.convert)
    images = [load_image(p, **options) for p in args.images]
    rows = _predictions(model, images, args, device)
    maps = _attributions(model, rows, methods, args, device)
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
    x = load_image(args.image, channels=None)
    width = min(x.shape[-2:])
    if not 0 <= args.rank <= width:
        raise ValueError(
            f"--rank must be in 0..{width} (min(H, W) of {args.image}), got {args.rank}"
        )
    y = (drop_top_ranks if args.reverse else low_rank)(x.double(), args.rank).float()
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
        spectra[name] = rank_spectrum(
            model,
            loader,
            ranks=args.ranks,
            reverse=args.reverse,
            batch_size=args.batch_size,
            device=device,
            progress=_progress(args),
            checkpoint=checkpoint,
        )
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
        return args.run(args)
    except (UsageError, ValueError, TypeError, OSError, WeightsUnavailableError) as e:
        print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
