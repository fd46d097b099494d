"""``captum-rig stability``: minimal distortions, Lipschitz bounds and layer spectra of
several models (:func:`captum_rig.stability.compare_stability`), as tables and figures.
"""

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from captum_rig.cli._common import (
    EXIT_OK,
    UsageError,
    load_models,
    model_entries,
    one_line,
    open_data,
    output_folder,
    parse_device,
    save_figure,
    show_progress,
)
from captum_rig.cli._options import data_options, model_options, pixels, positive_int

FIGURES = ("weight_spectra.png", "weight_norms.png", "feature_map_spectra.png")
SEED_HELP = (
    "seed of random weights, of the Lipschitz bound's power iterations, of the Gaussian "
    "noise directions and of the --balanced subset (default: %(default)s)"
)


def _positive_pixels(text: str) -> float:
    """``--max-eps``/``--max-sigma``: a distance in pixel units, > 0 (checked at once)."""
    value = pixels(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _attack_names(text: str) -> List[str]:
    """``--attacks``: names from :data:`captum_rig.stability.ATTACKS`, in order, unique."""
    from captum_rig.stability import ATTACKS

    names = [a.strip().lower() for a in text.split(",") if a.strip()]
    unknown = [a for a in names if a not in ATTACKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated names from {', '.join(ATTACKS)}, got {text!r}"
        )
    return list(dict.fromkeys(names))


_NORMS = {"l2": "L2", "linf": "Linf"}


def _norm_names(text: str) -> List[str]:
    """``--norm``: ``l2``, ``linf`` or both, comma-separated, in order, unique."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if not names or any(n not in _NORMS for n in names):
        raise argparse.ArgumentTypeError(f"expected l2, linf or l2,linf, got {text!r}")
    return list(dict.fromkeys(names))


def _check_attack_norms(attacks: List[str], norms: List[str]) -> None:
    """A minimal-norm attack with no norm it minimises (with one --norm: with a norm it
    does not minimise): a usage error, before any model is loaded."""
    from captum_rig.stability import MINIMAL_NORM_ATTACKS

    for attack in attacks:
        own = MINIMAL_NORM_ATTACKS.get(attack)
        wrong = [n for n in norms if own is not None and _NORMS[n] not in own]
        if wrong and (len(norms) == 1 or wrong == norms):
            raise UsageError(
                f"--attacks {attack} minimises {' or '.join(own)}, not --norm "
                f"{','.join(norms)}: use pgd or fab for linf"
            )


def _add_distortion_options(p: argparse.ArgumentParser) -> None:
    """The attacks and the searches for the smallest distortion that changes a prediction."""
    p.add_argument(
        "--attacks",
        type=_attack_names,
        default="pgd,gaussian",
        help="comma-separated: pgd (the smallest PGD radius that changes the prediction), "
        "gaussian (the smallest noise level that does), and the minimal-norm attacks "
        "deepfool and cw (L2) and fab (L2 or Linf); two adversarial ones or more add a "
        "best-per-image row (default: %(default)s)",
    )
    p.add_argument(
        "--norm",
        type=_norm_names,
        default="l2",
        metavar="NORMS",
        help="norm of the adversarial distortions, or both (l2,linf: each attack in the "
        "norms it minimises, rows per norm); gaussian is always L2 (default: %(default)s)",
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        default=20,
        help="PGD steps per radius (default: %(default)s)",
    )
    p.add_argument(
        "--n-bisect",
        type=positive_int,
        default=12,
        metavar="N",
        help="bisection steps of both searches (default: %(default)s)",
    )
    p.add_argument(
        "--max-eps",
        type=_positive_pixels,
        help="largest PGD radius tried (default: 1 for linf, the [0, 1] box's diagonal "
        "√(C·H·W) for l2)",
    )
    p.add_argument(
        "--max-sigma",
        type=_positive_pixels,
        default=1.0,
        help="largest noise standard deviation tried (default: %(default)s)",
    )


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Adds ``stability`` to the sub-commands ``sub``; returns its parser."""
    p = sub.add_parser(
        "stability",
        help="minimal distortions, Lipschitz bounds and layer spectra of one or several models",
        parents=[model_options(several=True), data_options()],
    )
    _add_distortion_options(p)
    p.add_argument(
        "--n-iter",
        type=positive_int,
        default=100,
        metavar="N",
        help="power iterations per layer for --estimate (default: %(default)s)",
    )
    bound = p.add_mutually_exclusive_group()
    bound.add_argument(
        "--certified",
        action="store_true",
        help="certified Lipschitz upper bounds (Cholesky-checked Gram matrices; the default)",
    )
    bound.add_argument(
        "--estimate",
        action="store_true",
        help="power-iteration estimates of the layer norms instead (each from below: "
        "not a bound; often slower than the certified bound)",
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
    for action in p._actions:  # the shared --seed's help names robustness's uses
        if "--seed" in action.option_strings:
            action.help = SEED_HELP
    return p


def _layer_names(args: argparse.Namespace) -> Optional[List[str]]:
    if args.layers is None:
        return None
    return [name.strip() for name in args.layers.split(",") if name.strip()]


def _check_layers(models: Dict[str, Any], layers: Optional[List[str]]) -> None:
    """``--layers`` must name modules of every model: checked before any work."""
    for name, model in models.items() if layers else ():
        known = dict(model.named_modules())
        unknown = [layer for layer in layers if layer not in known]
        if unknown:
            some = [n for n in known if n][:6]
            raise UsageError(
                f"--layers for model {name}: unknown module names {unknown}; "
                f"some of its names: {some}"
            )


def _load_models(args: argparse.Namespace, device: Any) -> Tuple[Dict[str, Any], Any]:
    """The models and the first one's Preprocessing; they must take the same input size.

    Models that take the same crop (ResNet-18 and MobileNetV2: 224×224) but resize
    differently before it are compared on the images prepared for the first one, with
    a note; :func:`load_models` would refuse them.
    """
    entries = model_entries(args, several=True)
    names = list(args.names or [])
    models: Dict[str, Any] = {}
    first = None
    for index, entry in enumerate(entries):
        one = copy.copy(args)
        one.models, one.names = [entry], names[index : index + 1] or None
        loaded, prep = load_models(one, device)
        ((label, model),) = loaded.items()
        base, number = label, 2
        while label in models:
            label, number = f"{base} #{number}", number + 1
        models[label] = model
        if first is None:
            first = prep
        elif (prep.crop_size, prep.in_channels) != (first.crop_size, first.in_channels):
            raise UsageError(
                f"the models take different inputs ({first.crop_size} px for the first, "
                f"{prep.crop_size} px for {label}); pass --image-size N for all of them"
            )
        elif prep.resize_size != first.resize_size:
            print(
                f"note: {label} resizes to {prep.resize_size} px before its "
                f"{prep.crop_size} px crop; every model gets the images prepared for the "
                f"first (resized to {first.resize_size} px)",
                file=sys.stderr,
            )
    return models, first


def _layer_spectra(
    models: Dict[str, Any], loader: Any, args: argparse.Namespace
) -> Tuple[Dict[str, Dict], Dict[str, Dict]]:
    """({model: weight spectra}, {model: feature-map spectra}), the images read from
    ``loader`` once per model.

    Without ``--layers``, a model with no convolution gets no feature-map spectra (a note
    on stderr) rather than failing the whole comparison.
    """
    from tqdm.auto import tqdm

    from captum_rig.stability import feature_map_spectra, weight_spectra

    layers = _layer_names(args)
    weights, maps = {}, {}
    bar = tqdm(models.items(), desc="layer spectra", unit="model", disable=not show_progress(args))
    for name, model in bar:
        if not show_progress(args):
            _log(f"layer spectra: {name}")
        weights[name] = weight_spectra(model)
        try:
            maps[name] = feature_map_spectra(
                model, loader, layers=layers, batch_size=args.batch_size
            )
        except ValueError as e:
            if layers is not None:
                raise ValueError(f"--layers for model {name}: {one_line(e)}") from None
            print(f"note: no feature-map spectra for {name}: {one_line(e)}", file=sys.stderr)
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
            print(f"note: no {file_name}: {one_line(e)}", file=sys.stderr)
    return figures


def _probe(models: Dict[str, Any], loader: Any) -> None:
    """Each model on the first image, before the work: an image size or device it
    cannot take fails now (with the model's own error), not minutes later."""
    import torch

    from captum_rig._context import eval_mode

    images = next(iter(loader))[0][:1]
    with torch.no_grad(), eval_mode(*models.values()):
        for model in models.values():
            device = next((p.device for p in model.parameters()), images.device)
            model(images.to(device))


def _log(message: str) -> None:
    """A progress line on stderr (when tqdm's bars are off), with the wall time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _plan(args: argparse.Namespace, models: Dict[str, Any], n_images: Optional[int]) -> str:
    """What the run will cost, printed before the work: the evaluations per image."""
    from captum_rig.stability import LADDER

    searches = LADDER + 1 + args.n_bisect
    costs = []
    for attack in args.attacks:
        if attack == "pgd":
            costs.append(f"pgd: at most {searches} radii × {args.steps} gradient steps")
        elif attack == "gaussian":
            costs.append(f"gaussian: at most {searches} forward passes")
        else:
            costs.append(f"{attack}: one minimal-norm attack")
    images = "all images of --data" if n_images is None else f"{n_images} images"
    bound = (
        f"the Lipschitz estimate (at most {args.n_iter} power iterations per layer)"
        if args.estimate
        else "the certified Lipschitz bound"
    )
    return (
        f"stability: {len(models)} model(s) × {images}; per image and model "
        f"{'; '.join(costs)}; the local Lipschitz constant (power iteration, at most 50 "
        f"Jacobian products); {bound} and the layer spectra once per model"
    )


def _writers(figures: Dict[str, Any]) -> Dict[str, Callable[[Path], None]]:
    return {name: (lambda path, fig=fig: save_figure(fig, path)) for name, fig in figures.items()}


def run(args: argparse.Namespace) -> int:
    """Compares the models; writes the table (.md, .csv, .json) and figures to ``--out``.

    Everything is checked before the work (the output files, ``--layers``), and the
    files are written together at the end, or none of them.
    """
    from captum_rig.stability import check_stability_outputs, compare_stability, write_stability

    out = output_folder(args.out)
    check_stability_outputs(out, FIGURES, name="--out")
    _check_attack_norms(args.attacks, args.norm)
    device = parse_device(args.device)
    models, prep = _load_models(args, device)
    _check_layers(models, _layer_names(args))
    loader, _ = open_data(args, prep, need_labels=True)
    _probe(models, loader)
    progress = show_progress(args)
    print(_plan(args, models, len(loader.dataset)), file=sys.stderr, flush=True)
    table = compare_stability(
        models,
        loader,
        attacks=args.attacks,
        norm=_NORMS[args.norm[0]] if len(args.norm) == 1 else [_NORMS[n] for n in args.norm],
        steps=args.steps,
        n_bisect=args.n_bisect,
        max_eps=args.max_eps,
        max_sigma=args.max_sigma,
        n_iter=args.n_iter,
        certified=not args.estimate,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=progress,
        log=None if progress else _log,
    )
    weights, maps = _layer_spectra(models, loader, args)
    figures = _stability_figures(weights, maps)
    summary = {
        "data": args.data,
        "n_images": table.rows[0].n_images,
        "weight_spectra": weights,
        "feature_map_spectra": maps,
    }
    written = write_stability(out, table, summary, files=_writers(figures))
    print(table.to_markdown())
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK
