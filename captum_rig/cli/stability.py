"""``captum-rig stability``: minimal distortions, Lipschitz bounds and layer spectra of
several models (:func:`captum_rig.stability.compare_stability`), as tables and figures.
"""

import argparse
import sys
from typing import Any, Dict, List, Tuple

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

    layers = None
    if args.layers is not None:
        layers = [name.strip() for name in args.layers.split(",") if name.strip()]
    weights, maps = {}, {}
    bar = tqdm(models.items(), desc="layer spectra", unit="model", disable=not show_progress(args))
    for name, model in bar:
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


def run(args: argparse.Namespace) -> int:
    """Compares the models; writes the table (.md, .csv, .json) and figures to ``--out``."""
    from captum_rig.stability import compare_stability, write_stability

    out = output_folder(args.out)
    device = parse_device(args.device)
    models, prep = load_models(args, device)
    loader, _ = open_data(args, prep, need_labels=True)
    table = compare_stability(
        models,
        loader,
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
    weights, maps = _layer_spectra(models, loader, args)
    figures = _stability_figures(weights, maps)
    summary = {
        "data": args.data,
        "n_images": table.rows[0].n_images,
        "weight_spectra": weights,
        "feature_map_spectra": maps,
    }
    written = write_stability(out, table, summary)
    for file_name, fig in figures.items():
        save_figure(fig, out / file_name)
        written.append(out / file_name)
    print(table.to_markdown())
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK
