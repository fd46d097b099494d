"""``captum-rig spectrum``: the paper's Algorithm 1 over a data set, for several models,
by rank (``--axis rank``) or by the radius of the spatial frequencies kept
(``--axis frequency``).

Each model's spectrum is written to its CSV as soon as it is counted; counting is
checkpointed batch by batch, so an interrupted run resumes with ``--resume``.
"""

import argparse
import re
import shlex
import sys
from functools import partial
from pathlib import Path
from typing import Any, Dict, List, Optional

from captum_rig._checkpoint import (
    StateError,
    StreamDigest,
    differences,
    model_digest,
    read_state,
    saved_batches,
    stream_digest,
    write_state,
)
from captum_rig.cli._common import (
    EXIT_OK,
    PROG,
    Interrupted,
    UsageError,
    interruptible,
    load_models,
    open_data,
    output_folder,
    parse_device,
    save_figure,
    show_progress,
)
from captum_rig.cli._numbers import radii
from captum_rig.cli._options import data_options, model_options, parse_ranks

# Per axis: the files' stem, what one value is called, the counting function's module
# and name (imported when counting).
_AXES = {
    "rank": ("spectrum", "ranks", "captum_rig.spectrum", "rank_spectrum", "RankSpectrum"),
    "frequency": (
        "frequency_spectrum",
        "radii",
        "captum_rig.fourier",
        "frequency_spectrum",
        "FrequencySpectrum",
    ),
}


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Adds ``spectrum`` to the sub-commands ``sub``; returns its parser."""
    p = sub.add_parser(
        "spectrum",
        help="rank or frequency spectrum (Algorithm 1) of one or several models on a data set",
        parents=[model_options(several=True), data_options()],
    )
    p.add_argument(
        "--axis",
        choices=tuple(_AXES),
        default="rank",
        help="filter the images by rank (SVD: the top k singular values) or by spatial "
        "frequency (DFT: the frequencies of radius <= r) (default: %(default)s)",
    )
    p.add_argument(
        "--ranks",
        type=parse_ranks,
        metavar="RANKS",
        help="comma-separated ranks and a:b[:step] ranges, b included when on the grid, "
        "e.g. 0:224:8 or 0,1,2,4,8 (default: all, 0..min(H, W)); --axis rank",
    )
    p.add_argument(
        "--radii",
        type=radii,
        metavar="RADII",
        help="comma-separated radii >= 0 and a:b[:step] ranges, e.g. 0:24:2 or 0,1,2,4,8,16 "
        "(default: 0, 1, ... up to the largest radius, sqrt((H/2)² + (W/2)²)); "
        "--axis frequency",
    )
    p.add_argument(
        "--metric",
        choices=("agreement", "accuracy"),
        default="agreement",
        help="what the figure shows: agreement with the unfiltered prediction, or "
        "accuracy (needs labels) (default: %(default)s)",
    )
    p.add_argument(
        "--reverse",
        action="store_true",
        help="remove the top ranks (the frequencies of radius <= r) instead of keeping them",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its checkpoints in --out; a model whose "
        "CSV is complete is read back when it was counted with the same model, data and "
        "settings (refused otherwise)",
    )
    p.add_argument(
        "--out", default="spectrum", metavar="DIR", help="output folder (default: %(default)s)"
    )
    return p


def _spectrum_files(out: Path, names: List[str], prefix: str = "spectrum") -> List[Path]:
    """One CSV per model: ``<prefix>.csv`` for one model, ``<prefix>_<name>.csv`` for several
    (``prefix``: ``spectrum`` or ``frequency_spectrum``)."""
    if len(names) == 1:
        return [out / f"{prefix}.csv"]
    files: List[Path] = []
    for name in names:
        stem = f"{prefix}_" + (re.sub(r"[^\w.-]+", "_", name).strip("_.") or "model")
        base, i = stem, 2
        while out / f"{stem}.csv" in files:
            stem, i = f"{base}-{i}", i + 1
        files.append(out / f"{stem}.csv")
    return files


def _resume_hint(
    args: argparse.Namespace, name: str, checkpoint: Path, total: int, done: Dict
) -> str:
    """The line printed on Ctrl-C: what is saved, and the command line that resumes."""
    argv = list(getattr(args, "argv", None) or [])
    command = shlex.join([PROG, *argv, *([] if "--resume" in argv else ["--resume"])])
    counted = saved_batches(checkpoint)
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


# What a record of finished counts holds: the settings that fix a spectrum's numbers.
_RECORD_FORMAT = "captum_rig.cli.spectrum/1"


def _settings(args: argparse.Namespace, model: Any, loader: Any) -> Dict[str, Any]:
    """What makes two counts of a model's spectrum the same, short of the images' digest."""
    values = _AXES[args.axis][1]
    return {
        "model": model_digest(model),
        "n_images": len(loader.dataset),
        values: getattr(args, values),
        "reverse": args.reverse,
    }


def _describe(key: str, saved: Any, now: Any) -> Optional[str]:
    """A difference between the recorded settings and this call's, in the CLI's words."""
    if saved == now:
        return None
    if key == "model":
        return "the model's weights differ" if None not in (saved, now) else None
    if key == "n_images":
        return f"--data has {now} images, the CSV {saved}"
    if key == "data":
        return "the images of --data differ"
    option = {"ranks": "--ranks", "radii": "--radii", "reverse": "--reverse"}.get(key, key)
    return f"it was counted with {option} {_shown(saved)}, this call has {_shown(now)}"


def _shown(value: Any) -> str:
    """A recorded setting as the command line gives it."""
    if value is None:
        return "all"
    if isinstance(value, bool):
        return "given" if value else "not given"
    return str(value)


def _read_back(
    csv_path: Path, record: Path, settings: Dict, loader: Any, kind: Any
) -> Optional[Any]:
    """The finished spectrum (of class ``kind``) in ``csv_path`` when its record matches
    this call, else None (no record: count again); settings that differ are a UsageError
    naming them."""
    try:
        saved = read_state(record, _RECORD_FORMAT)
    except StateError:
        saved = None
    if saved is None:
        print(f"no record of how {csv_path} was counted: counting it again", file=sys.stderr)
        return None
    found = differences(saved["settings"], settings, _describe)
    if not found:  # the cheap checks agree: now the images themselves
        now = {"data": interruptible(stream_digest, loader)}
        found = differences(saved["settings"], now, _describe)
    if found:
        raise UsageError(
            f"--resume: {csv_path} does not match this call ({'; '.join(found)}): run "
            "without --resume to count again, or give another --out"
        )
    return kind.from_csv(csv_path)


def _spectra(args: argparse.Namespace, models: Dict, loader: Any, out: Path, device: Any) -> Dict:
    """{label: spectrum of the axis}; each written to its CSV as soon as it is complete.

    With ``--resume``, a model whose CSV is there is read back rather than counted again,
    once its record (``.<csv stem>.run``: the model's digest, the settings, the images'
    digest) proves it was counted with this call's model, data and settings.
    """
    import importlib

    prefix, values, module, function, kind = _AXES[args.axis]
    library = importlib.import_module(module)
    spectra = {}
    for (name, model), csv_path in zip(models.items(), _spectrum_files(out, list(models), prefix)):
        checkpoint = out / f".{csv_path.stem}.ckpt"
        record = out / f".{csv_path.stem}.run"
        settings = _settings(args, model, loader)
        if args.resume and csv_path.is_file() and not checkpoint.exists():
            spectra[name] = _read_back(csv_path, record, settings, loader, getattr(library, kind))
            if spectra[name] is not None:
                continue
        record.unlink(missing_ok=True)  # a stale record must never vouch for new counts
        if not args.resume and checkpoint.exists():
            checkpoint.unlink()
        elif args.resume and not checkpoint.exists():
            print(
                f"no checkpoint {checkpoint}: starting {name} from the beginning", file=sys.stderr
            )
        seen = StreamDigest(loader)  # the images' digest, taken as they are counted
        count = partial(
            getattr(library, function),
            **{values: getattr(args, values)},
            reverse=args.reverse,
            batch_size=args.batch_size,
            device=device,
            progress=show_progress(args),
            checkpoint=checkpoint,
            # a few KB per save: even a SIGKILL loses at most the batch in progress
            checkpoint_every=1,
        )
        try:
            # in a worker thread: Ctrl-C is answered at once, even inside a big image's SVD
            spectra[name] = interruptible(count, model, seen)
        except KeyboardInterrupt:
            raise Interrupted(_resume_hint(args, name, checkpoint, len(loader), spectra)) from None
        spectra[name].to_csv(csv_path)
        write_state(record, _RECORD_FORMAT, {"settings": {**settings, "data": seen.hexdigest()}})
        print(f"wrote {csv_path}")
    return spectra


def _check_axis_options(args: argparse.Namespace) -> None:
    """``--ranks`` belongs to ``--axis rank``, ``--radii`` to ``--axis frequency``."""
    other = "radii" if args.axis == "rank" else "ranks"
    if getattr(args, other) is not None:
        wanted = "frequency" if args.axis == "rank" else "rank"
        raise UsageError(f"--{other} is for --axis {wanted}; this run has --axis {args.axis}")


def _figure(args: argparse.Namespace, spectra: Dict) -> Any:
    """One curve per model against its rank (or radius), titled with the models and images."""
    from captum_rig.viz import plot_spectra
    from captum_rig.viz.fourier import plot_filter_spectra

    draw = plot_spectra if args.axis == "rank" else plot_filter_spectra
    fig, ax = draw(spectra, metric=args.metric)
    n_images = next(iter(spectra.values())).n_images
    ax.set_title(f"{', '.join(spectra)}: {n_images} images")
    return fig


def run(args: argparse.Namespace) -> int:
    """Counts each model's spectrum into ``--out``: one CSV per model, one figure."""
    _check_axis_options(args)
    out = output_folder(args.out)
    device = parse_device(args.device)
    models, prep = load_models(args, device)
    loader, _ = open_data(args, prep, need_labels=args.metric == "accuracy")
    created = not out.exists()
    out.mkdir(exist_ok=True)
    try:
        spectra = _spectra(args, models, loader, out, device)
    except BaseException:
        if created and not any(out.iterdir()):  # nothing to resume from: leave no trace
            out.rmdir()
        raise
    prefix, values = _AXES[args.axis][:2]
    png_path = out / f"{prefix}.png"
    save_figure(_figure(args, spectra), png_path)
    first = next(iter(spectra.values()))
    print(f"{first.n_images} images, {len(getattr(first, values))} {values}")
    print(f"wrote {png_path}")
    return EXIT_OK
