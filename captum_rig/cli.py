"""``captum-rig``: low-rank images, attributions, rank spectra and PGD robustness from a shell.

Subcommands (``captum-rig <command> --help`` for each; the reference is ``docs/cli.md``):

- ``demo``: the self-contained demo (synthetic data, a small model, every figure).
- ``explain``: attribution maps of images for a model, side by side per method.
- ``lowrank``: the rank-k (or top-k-removed) version of an image.
- ``spectrum``: the paper's Algorithm 1 over a data set: agreement and accuracy per rank.
- ``robustness``: targeted or untargeted PGD, the paper's Table 2, for several models.

Exit codes: 0 success; 2 a usage or input error (one line ``captum-rig: error: ...`` on
stderr, no traceback, no output file written); 130 interrupted. Output files are written
under a temporary name in their folder and renamed when complete.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

import argparse
import importlib
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, NoReturn, Optional, Sequence, Tuple

import numpy as np
import torch

from captum_rig._context import atomic_path

__all__ = ["main", "parse_ranks", "build_parser"]

PROG = "captum-rig"
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


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
        parts = item.split(":")
        try:
            numbers = [int(p) for p in parts]
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


def _eps(text: str) -> float:
    """``4/255`` or ``0.0157``: a non-negative number."""
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
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    return values


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
        help="torchvision:<name> or <module or file.py>:<factory>"
        + ("; repeat to compare several models" if several else ""),
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
    g.add_argument("--num-classes", type=_positive_int, metavar="N", help="model outputs")
    g.add_argument(
        "--image-size",
        type=_positive_int,
        metavar="N",
        help="resize the shorter side to N and centre-crop N×N (default: the model's "
        "own preprocessing; factory models: images as they are)",
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


def build_parser() -> argparse.ArgumentParser:
    """The ``captum-rig`` argument parser (one subparser per command)."""
    from captum_rig.methods import METHOD_NAMES

    parser = _Parser(
        prog=PROG,
        description="The singular value perspective on model robustness: low-rank images, "
        "Rank Integrated Gradients, rank spectra and PGD robustness.",
        epilog="Exit codes: 0 success, 2 usage or input error, 130 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("demo", help="run the offline demo and write its figures")
    p.add_argument("--out", default="captum-rig-demo", metavar="DIR", help="output folder")
    p.add_argument(
        "--methods",
        help=f"comma-separated, from: {', '.join(METHOD_NAMES)} (default: all)",
    )
    p.set_defaults(run=_cmd_demo)

    p = sub.add_parser("explain", help="attribution maps of images, one column per method")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG files")
    _add_model_options(p)
    p.add_argument(
        "--target",
        default="auto",
        help="class index to explain, or 'auto' for each image's predicted class",
    )
    p.add_argument(
        "--methods",
        default=",".join(METHOD_NAMES),
        help=f"comma-separated, from: {', '.join(METHOD_NAMES)} (default: all)",
    )
    p.add_argument(
        "--n-steps",
        type=_positive_int,
        metavar="N",
        help="path steps of each method (default: each method's own)",
    )
    p.add_argument("--out", default="explain.png", metavar="FILE", help="figure (.png/.pdf/.svg)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_cmd_explain)

    p = sub.add_parser("lowrank", help="the rank-K version of an image")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--rank", type=int, required=True, metavar="K", help="0..min(H, W)")
    p.add_argument(
        "--reverse", action="store_true", help="remove the K largest singular values instead"
    )
    p.add_argument(
        "--rescale",
        action="store_true",
        help="map the image's min..max to 0..255 instead of clipping to [0, 1]",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="output image (.png)")
    p.set_defaults(run=_cmd_lowrank)

    p = sub.add_parser("spectrum", help="rank spectrum (Algorithm 1) of a model on a data set")
    _add_model_options(p)
    _add_data_options(p)
    p.add_argument(
        "--ranks",
        type=parse_ranks,
        metavar="RANKS",
        help="e.g. 0:224:8 (b included when on the grid) or 0,1,2,4,8 (default: all)",
    )
    p.add_argument("--reverse", action="store_true", help="remove the top ranks instead")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its checkpoint in --out",
    )
    p.add_argument("--out", default="spectrum", metavar="DIR", help="output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_cmd_spectrum)

    p = sub.add_parser("robustness", help="PGD robustness of one or several models (Table 2)")
    _add_model_options(p, several=True)
    _add_data_options(p)
    p.add_argument("--eps", type=_eps, default=4 / 255, help="radius in pixels (default 4/255)")
    p.add_argument("--alpha", type=_eps, help="step size (default eps/4)")
    p.add_argument("--steps", type=_positive_int, default=20, help="PGD steps (default 20)")
    p.add_argument("--norm", type=str.lower, choices=("linf", "l2"), default="linf")
    p.add_argument("--untargeted", action="store_true", help="untargeted attack")
    p.add_argument("--seed", type=int, default=0, help="seed of targets and random starts")
    p.add_argument("--out", metavar="FILE", help="also write the table as CSV")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_cmd_robustness)
    return parser


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
        "--split",
        choices=("test", "train"),
        default="test",
        help="CIFAR-10 split (default: test)",
    )
    g.add_argument("--limit", type=_positive_int, metavar="N", help="use the first N images")
    g.add_argument("--batch-size", type=_positive_int, default=64, metavar="N")


# --------------------------------------------------------------------------- files


def _output_file(text: str, formats: Dict[str, str], what: str) -> Tuple[Path, str]:
    """Checks an output path before any work: folder exists, known extension."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise UsageError(f"{what} {text!r} is a folder, expected a file name")
    if not path.parent.is_dir():
        raise UsageError(f"the folder of {what} {text!r} does not exist")
    ext = path.suffix.lower()
    if ext not in formats:
        raise UsageError(
            f"{what} {text!r} must end in one of {', '.join(sorted(formats))}, "
            f"got {ext or 'no extension'!r}"
        )
    return path, formats[ext]


def _figure_formats() -> Dict[str, str]:
    return {".png": "png", ".pdf": "pdf", ".svg": "svg", ".jpg": "jpg", ".jpeg": "jpg"}


def _image_formats() -> Dict[str, str]:
    from PIL import Image

    return {ext: fmt for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}


def _save_figure(fig: Any, path: Path, fmt: str) -> None:
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- images


def _read_image(path: str, channels: Optional[int] = None, convert: bool = False) -> torch.Tensor:
    """Reads an image file as a float tensor ``(C, H, W)`` in [0, 1].

    Colour images (RGB, RGBA, palette, CMYK, ...) give ``C = 3`` (alpha dropped),
    greyscale ones ``C = 1``; 16-bit images are scaled by 65535.

    Args:
        path (str): the file.
        channels (int, optional): channels the model takes; a mismatch (a greyscale image
            for an RGB model, or the other way round) is a ValueError unless ``convert``.
        convert (bool): repeat a grey channel three times for an RGB model; take the
            ITU-R 601 luma of a colour image for a greyscale model.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, a file Pillow cannot read, a channel mismatch.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"no such image file: {path}")
    if p.is_dir():
        raise ValueError(f"{path} is a folder, expected an image file")
    try:
        with Image.open(p) as img:
            img.load()  # decode now: a truncated file fails here
            img = ImageOps.exif_transpose(img) or img  # as the image is shown
            grey = img.mode in _GREY_MODES
            if img.mode == "LA":
                img = img.convert("L")
            elif not grey:
                img = img.convert("RGB")
            array = np.asarray(img)
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image file that Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data
        raise ValueError(f"cannot read image {path}: {e}") from None
    if array.dtype == np.uint8:
        x = torch.from_numpy(array.astype(np.float32) / 255)
    elif array.dtype == np.bool_:
        x = torch.from_numpy(array.astype(np.float32))
    elif np.issubdtype(array.dtype, np.integer):
        x = torch.from_numpy(array.astype(np.float32) / 65535).clamp(0, 1)
    else:
        x = torch.from_numpy(array.astype(np.float32)).clamp(0, 1)
    x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
    if convert and (x.shape[0], channels) == (1, 3):
        x = x.expand(3, -1, -1)
    elif convert and (x.shape[0], channels) == (3, 1):
        x = (x * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
    if channels is not None and x.shape[0] != channels:
        kind = {1: "greyscale", 3: "RGB"}
        have, want = (
            kind.get(x.shape[0], f"{x.shape[0]}-channel"),
            kind.get(channels, f"{channels}-channel"),
        )
        raise ValueError(
            f"{path} is a {have} image but the model takes {want} images; pass --convert "
            "to convert it"
        )
    return x.contiguous()


def _prepare(x: torch.Tensor, prep: Any) -> torch.Tensor:
    """Resize (shorter side) and centre-crop ``(C, H, W)`` as ``prep`` says; stays in [0, 1]."""
    from torchvision.transforms.v2 import functional as F

    if prep.resize_size is not None:
        x = F.resize(x, [prep.resize_size], antialias=True).clamp(0, 1)
    if prep.crop_size is not None:
        if min(x.shape[-2:]) < prep.crop_size:
            x = F.resize(x, [prep.crop_size], antialias=True).clamp(0, 1)
        x = F.center_crop(x, [prep.crop_size, prep.crop_size])
    return x.contiguous()


def _write_image(x: torch.Tensor, path: Path, fmt: str, rescale: bool) -> None:
    from PIL import Image

    if rescale:
        low, high = float(x.min()), float(x.max())
        x = (x - low) / (high - low) if high > low else x * 0
    array = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    array = array[0].numpy() if array.shape[0] == 1 else array.permute(1, 2, 0).numpy()
    img = Image.fromarray(np.ascontiguousarray(array))
    if fmt == "JPEG" and img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt)


# --------------------------------------------------------------------------- models


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
    from dataclasses import replace

    from captum_rig.loading import load_pixel_model

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


def _model_name(entry: Dict[str, Any], taken: Iterable[str]) -> str:
    name = entry["spec"].rpartition(":")[2]
    if entry["weights"]:
        name = Path(entry["weights"]).stem
    elif entry["pretrained"]:
        name += " (pretrained)"
    taken = set(taken)
    base, i = name, 2
    while name in taken:
        name, i = f"{base} #{i}", i + 1
    return name


# --------------------------------------------------------------------------- data


def _image_files(folder: Path) -> List[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


class _FileDataset:
    """Image files (and labels) → preprocessed ``(C, H, W)`` tensors of one size."""

    def __init__(
        self, paths: List[Path], labels: Optional[List[int]], prep: Any, convert: bool
    ) -> None:
        self.paths, self.labels, self.prep, self.convert = paths, labels, prep, convert
        self.size: Optional[Tuple[int, ...]] = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        x = _read_image(str(self.paths[i]), self.prep.in_channels, self.convert)
        x = _prepare(x, self.prep)
        if self.size is None:
            self.size = tuple(x.shape)
        elif tuple(x.shape) != self.size:
            raise ValueError(
                f"{self.paths[i]} gives a {tuple(x.shape)} image, the first one {self.size}: "
                "pass --image-size N to bring every image to N×N"
            )
        return x if self.labels is None else (x, self.labels[i])


def _open_data(args: argparse.Namespace, prep: Any, need_labels: bool) -> Tuple[Any, bool]:
    """(DataLoader of images or (images, labels) batches, whether there are labels)."""
    from torch.utils.data import DataLoader, Subset

    source = args.data
    if source.startswith("cifar10:"):
        dataset = _cifar10(source[len("cifar10:") :], args.split, prep)
        labelled = True
    else:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"--data {source}: no such folder")
        classes = sorted(d for d in folder.iterdir() if d.is_dir() and _image_files(d))
        if classes:
            paths, labels = [], []
            for index, d in enumerate(classes):
                files = _image_files(d)
                paths += files
                labels += [index] * len(files)
            labelled = True
        else:
            paths, labels, labelled = _image_files(folder), None, False
        if not paths:
            raise ValueError(
                f"--data {source}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the folder "
                "or its class subfolders"
            )
        dataset = _FileDataset(paths, labels, prep, args.convert)
    if need_labels and not labelled:
        raise ValueError(
            f"--data {source} has no labels: use a folder with one subfolder per class, or "
            "cifar10:PATH"
        )
    if args.limit is not None and args.limit < len(dataset):
        dataset = Subset(dataset, range(args.limit))
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=False,
        num_workers=0,
        collate_fn=None if labelled else torch.stack,
    )
    return loader, labelled


def _cifar10(root: str, split: str, prep: Any) -> Any:
    """CIFAR-10 in torchvision's folder format (``root/cifar-10-batches-py``)."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"--data cifar10:{root}: no such folder")
    try:
        data = importlib.import_module("captum_rig.data")
        load = data.load_cifar10
    except (ImportError, AttributeError):  # before captum_rig.data: torchvision's loader
        load = None
    if load is not None:
        dataset = load(path, train=split == "train")
    else:
        from torchvision.datasets import CIFAR10
        from torchvision.transforms import ToTensor

        try:
            dataset = CIFAR10(
                str(path), train=split == "train", download=False, transform=ToTensor()
            )
        except RuntimeError as e:
            raise ValueError(f"--data cifar10:{root}: {e}") from None
    if prep.resize_size is None and prep.crop_size is None:
        return dataset
    return _Mapped(dataset, lambda x: _prepare(x, prep))


class _Mapped:
    """A dataset of ``(image, label)`` with ``fn`` applied to each image."""

    def __init__(self, dataset: Any, fn: Callable[[Any], Any]) -> None:
        self.dataset, self.fn = dataset, fn

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        x, y = self.dataset[i]
        return self.fn(x), y


# --------------------------------------------------------------------------- commands


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars on a terminal only (tqdm's own rule), and never with --no-progress."""
    return not args.no_progress and sys.stderr.isatty()


def _cmd_demo(args: argparse.Namespace) -> int:
    from captum_rig.demo import run_demo
    from captum_rig.methods import parse_methods

    out = Path(args.out).expanduser()
    kwargs = {}
    if args.methods is not None:
        kwargs["methods"] = [m.name for m in parse_methods([args.methods])]
    result = run_demo(out, **kwargs)
    files = result if isinstance(result, (list, tuple)) else None
    if isinstance(result, dict):
        files = list(result.values())
    if files is None:
        files = sorted(p for p in out.rglob("*") if p.is_file())
    print(f"demo files in {out}/:")
    for f in files:
        print(f"  {f}")
    return EXIT_OK


def _parse_target(text: str) -> Optional[int]:
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--target must be a class index or 'auto', got {text!r}") from None


def _cmd_explain(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from captum_rig.methods import parse_methods

    methods = parse_methods([args.methods])
    target = _parse_target(args.target)
    out, fmt = _output_file(args.out, _figure_formats(), "--out")
    device = _device(args.device)
    (entry,) = _models(args)
    for path in args.images:  # every file checked before the model is built
        if not Path(path).expanduser().is_file():
            _read_image(path)  # raises the right error
    model, prep = _load(entry, args, device)
    images = [_prepare(_read_image(p, prep.in_channels, args.convert), prep) for p in args.images]

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
            n_classes = logits.shape[1]
            predicted = int(logits.argmax(1))
            t = predicted if target is None else target
            if not 0 <= t < n_classes:
                raise ValueError(
                    f"--target {t} is out of range: the model has {n_classes} classes "
                    f"(0..{n_classes - 1})"
                )
            prob = float(logits.softmax(1)[0, t])
            rows.append({"path": path, "x": x, "target": t, "predicted": predicted, "p": prob})

    maps: Dict[Tuple[int, str], Any] = {}
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
                attr = method.attribute(
                    model,
                    row["x"].unsqueeze(0).to(device),
                    target=row["target"],
                    n_steps=args.n_steps,
                )
                maps[i, method.name] = attr.detach()[0].cpu()
                bar.update()
    finally:
        bar.close()

    fig = _explain_figure(rows, methods, maps, prep.categories)
    if hasattr(fig, "__len__"):  # viz returned (fig, axes)
        fig = fig[0]
    _save_figure(fig, out, fmt)
    for row in rows:
        name = _class_name(row["target"], prep.categories)
        print(
            f"{row['path']}: target {name} (p = {row['p']:.3f}), predicted "
            f"{_class_name(row['predicted'], prep.categories)}"
        )
    print(f"wrote {out}")
    return EXIT_OK


def _class_name(index: int, categories: Optional[Sequence[str]]) -> str:
    return (
        f"{index} ({categories[index]})" if categories and index < len(categories) else str(index)
    )


def _explain_figure(rows: List[Dict[str, Any]], methods: List[Any], maps: Dict, categories) -> Any:
    """A grid: one row per image, the image then one heat map per method."""
    labels = [
        f"{Path(r['path']).name}\ntarget {_class_name(r['target'], categories)}" for r in rows
    ]
    try:
        from captum_rig.viz import plot_attributions
    except ImportError:
        plot_attributions = None
    if plot_attributions is not None and len({tuple(r["x"].shape) for r in rows}) == 1:
        images = torch.stack([r["x"] for r in rows])
        attributions = {
            m.title: torch.stack([maps[i, m.name] for i in range(len(rows))]) for m in methods
        }
        return plot_attributions(images, attributions, row_labels=labels)
    # images of different sizes: one panel per image, each at its own size
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), 1 + len(methods)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.4 * n_cols, 2.4 * n_rows), squeeze=False)
    for i, row in enumerate(rows):
        x = row["x"]
        image = x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()
        axes[i, 0].imshow(image, cmap="gray" if x.shape[0] == 1 else None, vmin=0, vmax=1)
        axes[i, 0].set_title(labels[i], fontsize=8)
        for j, method in enumerate(methods, start=1):
            heat = maps[i, method.name].abs().sum(0)
            scale = float(heat.flatten().quantile(0.995)) if heat.numel() > 1 else 0.0
            scale = scale if scale > 0 else float(heat.max()) or 1.0
            axes[i, j].imshow((heat / scale).clamp(0, 1).numpy(), cmap="Blues", vmin=0, vmax=1)
            axes[i, j].set_title(method.title, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def _cmd_lowrank(args: argparse.Namespace) -> int:
    from captum_rig.lowrank import drop_top_ranks, low_rank

    out, fmt = _output_file(args.out, _image_formats(), "--out")
    x = _read_image(args.image)
    width = min(x.shape[-2:])
    if not 0 <= args.rank <= width:
        raise ValueError(
            f"--rank must be in 0..{width} (min(H, W) of {args.image}), got {args.rank}"
        )
    y = (drop_top_ranks if args.reverse else low_rank)(x.double(), args.rank).float()
    _write_image(y, out, fmt, rescale=args.rescale)
    what = "top ranks removed" if args.reverse else "rank"
    print(f"wrote {out} ({what} {args.rank} of {width}, {x.shape[-1]}×{x.shape[-2]})")
    return EXIT_OK


def _cmd_spectrum(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from captum_rig.spectrum import rank_spectrum

    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out!r} is a file, expected a folder")
    if not out.parent.is_dir():
        raise UsageError(f"the folder of --out {args.out!r} does not exist")
    device = _device(args.device)
    (entry,) = _models(args)
    model, prep = _load(entry, args, device)
    loader, labelled = _open_data(args, prep, need_labels=False)

    checkpoint = out / ".spectrum.ckpt"
    if not args.resume and checkpoint.exists():
        checkpoint.unlink()
    elif args.resume and not checkpoint.exists():
        print(f"no checkpoint in {out}/: starting from the beginning", file=sys.stderr)
    created = not out.exists()
    out.mkdir(exist_ok=True)
    try:
        spectrum = rank_spectrum(
            model,
            loader,
            ranks=args.ranks,
            reverse=args.reverse,
            batch_size=args.batch_size,
            device=device,
            progress=_progress(args),
            checkpoint=checkpoint,
        )
    except BaseException:
        if created and not any(out.iterdir()):  # nothing to resume from: leave no trace
            out.rmdir()
        raise
    csv_path, png_path = out / "spectrum.csv", out / "spectrum.png"
    spectrum.to_csv(csv_path)
    fig, ax = spectrum.plot(label="agreement with full rank")
    if spectrum.accuracy is not None:
        spectrum.plot(ax=ax, metric="accuracy", label="accuracy")
    ax.set_title(f"{_model_name(entry, [])}: {spectrum.n_images} images")
    _save_figure(fig, png_path, "png")
    plt.close("all")
    print(f"{spectrum.n_images} images, {len(spectrum.ranks)} ranks")
    print(f"wrote {csv_path}")
    print(f"wrote {png_path}")
    return EXIT_OK


def _cmd_robustness(args: argparse.Namespace) -> int:
    from captum_rig.robustness import evaluate_robustness

    out = None
    if args.out is not None:
        out, _ = _output_file(args.out, {".csv": "csv"}, "--out")
    device = _device(args.device)
    entries = _models(args, several=True)
    models, prep = {}, None
    for entry in entries:
        model, p = _load(entry, args, device)
        if prep is not None and (p.crop_size, p.resize_size) != (prep.crop_size, prep.resize_size):
            raise UsageError(
                "the models expect different input sizes; pass --image-size N for all of them"
            )
        prep = p
        models[_model_name(entry, models)] = model
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
    ``FileNotFoundError``, ``OSError`` and ``WeightsUnavailableError`` from the library)
    print one line
    ``captum-rig: error: ...`` to stderr and return 2; other exceptions are bugs and
    propagate with their traceback.

    Examples:
        >>> main(["lowrank", "no-such.png", "--rank", "1", "--out", "x.png"])
        2
    """
    from captum_rig.loading import WeightsUnavailableError

    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help, --version
            return e.code if isinstance(e.code, int) else EXIT_OK
        return args.run(args)
    except (
        UsageError,
        ValueError,
        TypeError,
        FileNotFoundError,
        OSError,
        WeightsUnavailableError,
    ) as e:
        print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
