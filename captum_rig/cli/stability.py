"""``captum-rig stability``: minimal distortions, Lipschitz bounds and layer spectra of
several models (:func:`captum_rig.stability.compare_stability`), as tables and figures.
"""

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import torch

from captum_rig._tables import write_json, write_text
from captum_rig.cli._common import (
    EXIT_OK,
    load_models,
    one_line,
    open_data,
    output_folder,
    parse_device,
    save_figure,
    show_progress,
)
from captum_rig.cli._options import data_options, model_options, pixels, positive_int


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


def _add_distortion_options(p: argparse.ArgumentParser) -> None:
    """The attacks and the searches for the smallest distortion that changes a prediction."""
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
        type=pixels,
        help="largest PGD radius tried (default: 1 for linf, the [0, 1] box's diagonal "
        "√(C·H·W) for l2)",
    )
    p.add_argument(
        "--max-sigma",
        type=pixels,
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
    return p


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
    bar = tqdm(models.items(), desc="layer spectra", unit="model", disable=not show_progress(args))
    for name, model in bar:
        weights[name] = weight_spectra(model)
        try:
            maps[name] = feature_map_spectra(
                model, images, layers=layers, batch_size=args.batch_size
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


def _write_stability(out: Path, table: Any, summary: Dict[str, Any], figures: Dict) -> List[Path]:
    """stability.md, .csv and .json, then the figures: the files written."""
    out.mkdir(exist_ok=True)
    md_path, csv_path, json_path = (out / f"stability.{ext}" for ext in ("md", "csv", "json"))
    heading = f"# Stability: {summary['n_images']} images from {summary['data']}\n\n"
    write_text(md_path, heading + table.to_markdown() + "\n")
    table.to_csv(csv_path)
    record = {**summary, **table.to_dict()}
    for key in ("weight_spectra", "feature_map_spectra"):  # the long lists last
        record[key] = record.pop(key)
    write_json(json_path, record)
    written = [md_path, csv_path, json_path]
    for file_name, fig in figures.items():
        save_figure(fig, out / file_name, "png")
        written.append(out / file_name)
    return written


def run(args: argparse.Namespace) -> int:
    """Compares the models; writes the table (.md, .csv, .json) and figures to ``--out``."""
    from captum_rig.stability import compare_stability

    out = output_folder(args.out)
    device = parse_device(args.device)
    models, prep = load_models(args, device)
    loader, _ = open_data(args, prep, need_labels=True)
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
        progress=show_progress(args),
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
