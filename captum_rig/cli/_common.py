"""What every sub-command of ``captum-rig`` shares: exit codes, one-line errors, output
checks, the device, models and data loaded through the library, and the Ctrl-C runner.
"""

import argparse
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, List, NoReturn, Optional, Sequence, Tuple

import torch

from captum_rig._context import check_writable
from captum_rig.cli._errors import UsageError, one_line
from captum_rig.data import MAX_PIXELS, image_dataset, image_format, load_image
from captum_rig.loading import ModelSpec, load_pixel_model

PROG = "captum-rig"
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
ABANDONED: List[Any] = []  # "done" events of worker threads left running after a Ctrl-C


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C, with the line to print about it (what is saved, how to resume)."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        command = self.prog[len(PROG) :].strip()
        hint = f" (see '{PROG} {command} --help')" if command else f" (see '{PROG} --help')"
        raise UsageError(message + hint)


def output_file(text: str, what: str, suffixes: Optional[Sequence[str]] = None) -> Path:
    """Checks an output path before any work: its folder exists, its extension is known.

    ``suffixes``: the extensions allowed (lower case); None: the image formats
    :func:`~captum_rig.data.save_image` writes (:func:`~captum_rig.data.image_format`).
    """
    path = Path(text).expanduser()
    if path.is_dir():
        raise UsageError(f"{what} {text!r} is a folder, expected a file name")
    if not path.parent.is_dir():
        raise UsageError(f"the folder of {what} {text!r} does not exist")
    if suffixes is None:
        try:
            image_format(text)
        except ValueError as e:
            raise UsageError(f"{what} {e}") from None
    elif path.suffix.lower() not in suffixes:
        raise UsageError(
            f"{what} {text!r} must end in one of {', '.join(sorted(suffixes))}, "
            f"got {path.suffix.lower() or 'no extension'!r}"
        )
    check_writable(path, what)  # a folder we cannot write in fails now, not after the work
    return path


def output_folder(text: str) -> Path:
    """Checks an output folder before any work: not a file, its parent exists, writable."""
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


def save_figure(fig: Any, path: Path) -> None:
    """Writes a figure (:func:`captum_rig.viz.save_figure`, format from the suffix) as the
    command always has: 120 dpi, cropped to what is drawn (a title wider than the figure
    included)."""
    from captum_rig.viz import save_figure as save

    save(fig, path, dpi=120, tight=True)


def parse_device(text: Optional[str]) -> torch.device:
    """``--device``: a torch device that exists here and holds data (default: cuda if
    available); ``meta`` and other devices without storage are refused."""
    if text is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device must be cpu, cuda or cuda:N, got {text!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {text}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UsageError(f"--device {text}: this machine has {count} CUDA device(s)")
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise UsageError(f"--device {text}: MPS is not available on this machine")
    elif device.type != "cpu":
        raise UsageError(
            f"--device must be cpu, cuda or cuda:N (or mps), got {text!r}"
            + (": a meta device holds no data to compute with" if device.type == "meta" else "")
        )
    return device


def model_entries(args: argparse.Namespace, several: bool = False) -> List[Dict[str, Any]]:
    """The ``--model`` options as given (``spec``, ``weights``, ``pretrained`` of each),
    checked: at least one, and one only unless ``several``."""
    entries = list(getattr(args, "models", None) or [])
    if getattr(args, "_pending", None):
        raise UsageError("--weights/--pretrained need a --model")
    if not entries:
        raise UsageError("--model SPEC is required")
    if len(entries) > 1 and not several:
        raise UsageError(f"{args.command} takes one --model, got {len(entries)}")
    return entries


def parse_spec(entry: Dict[str, Any]) -> ModelSpec:
    """A ``--model`` entry (its spec, ``--weights``, ``--pretrained``) as a ModelSpec."""
    return ModelSpec.parse(entry["spec"], weights=entry["weights"], pretrained=entry["pretrained"])


def load_spec(spec: ModelSpec, args: argparse.Namespace, device: Any) -> Tuple[Any, Any]:
    """(model taking [0, 1] images on ``device``, its Preprocessing)."""
    model, prep = load_pixel_model(
        spec,
        num_classes=args.num_classes,
        device=device,
        mean=args.mean,
        std=args.std,
        normalize=not args.no_normalize,
    )
    if args.image_size is not None:
        prep = replace(prep, resize_size=args.image_size, crop_size=args.image_size)
    # Named in the error of a model that cannot take images of this size (cli_message).
    args.input_size = (prep.in_channels or 3, prep.crop_size)
    if spec.random_weights:
        # A randomly initialised classifier explains nothing; say so rather than let its
        # noise maps pass for an explanation.
        print(
            f"note: {spec.text} has random weights (give --weights PATH or --pretrained)",
            file=sys.stderr,
        )
    return model, prep


def _check_names(names: Optional[List[str]], n_models: int) -> None:
    """``--name``: at most one per ``--model``, all different."""
    names = list(names or [])
    if len(names) > n_models:
        raise UsageError(f"--name given {len(names)} times for {n_models} --model")
    if len(set(names)) < len(names):
        raise UsageError(f"--name labels must differ, got {names}")


def _labels(specs: List[ModelSpec], names: Optional[List[str]]) -> List[str]:
    """One label per model: its ``--name``, else its spec's label (numbered if taken)."""
    labels = list(names or [])
    for spec in specs[len(labels) :]:
        label, base, i = spec.label, spec.label, 2
        while label in labels:
            label, i = f"{base} #{i}", i + 1
        labels.append(label)
    return labels


def load_models(args: argparse.Namespace, device: Any) -> Tuple[Dict[str, Any], Any]:
    """({label: model}, the shared Preprocessing) for the ``--model`` options."""
    entries = model_entries(args, several=True)
    _check_names(args.names, len(entries))
    specs = [parse_spec(entry) for entry in entries]
    models, prep = {}, None
    for name, spec in zip(_labels(specs, args.names), specs):
        model, p = load_spec(spec, args, device)
        if prep is not None and (p.crop_size, p.resize_size) != (prep.crop_size, prep.resize_size):
            raise UsageError(
                "the models expect different input sizes; pass --image-size N for all of them"
            )
        prep = prep or p
        models[name] = model
    return models, prep


def image_options(
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


def open_data(args: argparse.Namespace, prep: Any, need_labels: bool) -> Tuple[Any, bool]:
    """(DataLoader of images or (images, labels) batches, whether there are labels).

    Checked before any work: labels the model cannot output (more classes in ``--data``
    than the model has, when its classes are known) fail when ``need_labels``, else are
    dropped with a note (no accuracy against them). ``--limit N`` takes the first N
    images, or with ``--balanced`` N spread evenly over the classes, seeded by ``--seed``.
    """
    from torch.utils.data import DataLoader, Subset

    if Path(args.data).expanduser().is_file():
        raise UsageError(
            f"--data {args.data!r} is a file; --data takes a folder of images (one subfolder "
            "per class gives labels) or cifar10:PATH (for single images: captum-rig explain)"
        )
    dataset, labelled = image_dataset(
        args.data,
        train=args.split == "train",
        **image_options(prep, args.convert, args.max_pixels),
    )
    if need_labels and not labelled:
        raise ValueError(
            f"--data {args.data} has no labels: use a folder with one subfolder per class, "
            "or cifar10:PATH"
        )
    fits = not labelled or _labels_fit(args, dataset, prep, need_labels)
    balanced = getattr(args, "balanced", False)
    if balanced and (args.limit is None or not labelled):
        raise UsageError("--balanced needs --limit N and labelled --data (class folders)")
    if args.limit is not None and args.limit < len(dataset):
        if balanced:
            seed = getattr(args, "seed", None) or 0
            dataset = Subset(dataset, balanced_indices(_dataset_labels(dataset), args.limit, seed))
        else:
            dataset = Subset(dataset, range(args.limit))
    if not fits:
        dataset, labelled = _ImagesOnly(dataset), False
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False, num_workers=0)
    return loader, labelled


def _dataset_labels(dataset: Any) -> List[int]:
    """Every label of a labelled data set, read without decoding its images."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = getattr(dataset, "targets", None)  # torchvision's CIFAR10
    if labels is None:
        labels = [int(dataset[i][1]) for i in range(len(dataset))]
    return [int(y) for y in labels]


def _model_classes(args: argparse.Namespace, prep: Any) -> Optional[int]:
    """The model's number of classes when known without running it (--num-classes, or the
    class names its source gives), else None."""
    if getattr(args, "num_classes", None):
        return int(args.num_classes)
    categories = getattr(prep, "categories", None)
    return len(categories) if categories else None


def _labels_fit(args: argparse.Namespace, dataset: Any, prep: Any, need_labels: bool) -> bool:
    """Whether the model can output every label of ``dataset`` (True when its classes are
    unknown). Labels it cannot output (e.g. 10 digit folders for a 6-class model) make
    its accuracy meaningless: an error when ``need_labels``, else a note (False)."""
    classes = _model_classes(args, prep)
    if classes is None:
        return True
    names = getattr(dataset, "classes", None)
    n_data = len(names) if names else max(_dataset_labels(dataset), default=-1) + 1
    if n_data <= classes:
        return True
    problem = (
        f"--data {args.data} has {n_data} classes (labels 0..{n_data - 1}) but the model "
        f"has {classes} (0..{classes - 1})"
    )
    if need_labels:
        raise UsageError(
            f"{problem}: its predictions cannot match those labels; use data labelled with "
            "the model's classes (or --num-classes N for a model trained on N classes)"
        )
    print(f"note: {problem}: the labels are ignored (no accuracy)", file=sys.stderr)
    return False


class _ImagesOnly:
    """A labelled data set's images without their labels (map-style)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index][0]


def balanced_indices(labels: Sequence[int], limit: int, seed: int = 0) -> List[int]:
    """``limit`` indices drawn evenly from the classes of ``labels``, seeded, sorted.

    Each class is shuffled with ``seed``; then the classes give one index each in turn
    (a class that runs out drops out), so the counts differ by at most one between the
    classes that have enough images.

    Examples:
        >>> picked = balanced_indices([0] * 6 + [1] * 6 + [2] * 2, 7, seed=0)
        >>> [sum(1 for i in picked if i < 6), sum(1 for i in picked if 6 <= i < 12)]
        [3, 2]
        >>> picked == balanced_indices([0] * 6 + [1] * 6 + [2] * 2, 7, seed=0)
        True
    """
    generator = torch.Generator().manual_seed(int(seed))
    by_class: Dict[int, List[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(index)
    queues = []
    for label in sorted(by_class):
        members = by_class[label]
        order = torch.randperm(len(members), generator=generator).tolist()
        queues.append([members[i] for i in order])
    picked: List[int] = []
    depth = 0
    while len(picked) < limit and any(depth < len(q) for q in queues):
        picked += [q[depth] for q in queues if depth < len(q)][: limit - len(picked)]
        depth += 1
    return sorted(picked)


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars on a terminal only (tqdm's own rule), and never with --no-progress."""
    return not args.no_progress and sys.stderr.isatty()


def class_name(index: int, categories: Optional[Sequence[str]]) -> str:
    """``281 (tabby)`` when the model names its classes, else ``281``."""
    return (
        f"{index} ({categories[index]})" if categories and index < len(categories) else str(index)
    )


def interruptible(fn: Callable[..., Any], *args: Any) -> Any:
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
        ABANDONED.append(done)
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def parse_target(text: str) -> Optional[int]:
    """``--target``: a class index, or None for ``auto`` (each image's prediction)."""
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--target must be a class index or 'auto', got {text!r}") from None


def predictions(model: Any, images: List[Any], args: argparse.Namespace, device: Any) -> List:
    """Per image: ``{"path", "x", "target", "predicted", "p"}``, target checked."""
    target = parse_target(args.target)
    rows = []
    with torch.no_grad():
        for path, x in zip(args.images, images):
            try:
                logits = model(x.unsqueeze(0).to(device))
            except RuntimeError as e:  # e.g. a Linear layer sized for other images
                raise ValueError(
                    f"the model cannot take {path} as a {tuple(x.shape)} image "
                    f"({one_line(e)}); try --image-size N"
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


def model_and_images(
    args: argparse.Namespace, device: Any
) -> Tuple[ModelSpec, Any, Any, List[Any]]:
    """The one ``--model`` (its spec, the model, its Preprocessing) and the ``IMAGE`` files,
    prepared as the model expects them."""
    (entry,) = model_entries(args)
    for path in args.images:  # every file checked before the model is built
        if not Path(path).expanduser().is_file():
            load_image(path, channels=None)  # raises the error that fits
    spec = parse_spec(entry)
    model, prep = load_spec(spec, args, device)
    options = image_options(prep, args.convert, args.max_pixels)
    return spec, model, prep, [load_image(p, **options) for p in args.images]
