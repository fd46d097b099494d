"""The demo job: eight stages run into a staging folder, then moved into place together.

:func:`run_demo` (``captum-rig demo --out DIR``) needs nothing but the package: the
synthetic shapes (:mod:`captum_rig.synthetic`), two small CNNs trained on them and three
public-domain / CC0 photographs, shipped in ``captum_rig/assets/`` (rebuilt by
``scripts/make_demo_assets.py``). This module only orchestrates: the maps come from
:mod:`captum_rig.attr.registry`, their scores from :mod:`captum_rig.metrics`, the split
of the evidence by rank from :func:`captum_rig.rank_contributions`, the frequency view
from :mod:`captum_rig.fourier` (:mod:`~captum_rig.demo._fourier`), every figure from
:mod:`captum_rig.viz`, the prose from :mod:`captum_rig.demo.report`.

The work is shared between stages: each method's maps are computed once, on the scored
images, and the comparison figure shows the first of them; the models run with their
BatchNorm folded into the convolutions, channels-last
(:func:`~captum_rig.demo._inference.inference_model`).

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from captum_rig._checks import check_int
from captum_rig._context import publish, staged_output
from captum_rig._tables import write_text
from captum_rig.data import PHOTOS, load_photo
from captum_rig.demo._fourier import fourier_detail, fourier_view
from captum_rig.demo._inference import inference_model
from captum_rig.demo._panels import save, two_panels
from captum_rig.demo._scores import scores
from captum_rig.demo._state import (
    CONTRIBUTION_BANDS,
    CONTRIBUTION_STEPS,
    MODEL_TITLES,
    OUTPUTS,
    SHAPES_TEST_SEED,
    SPECTRUM_GRID,
    DemoState,
)
from captum_rig.demo.report import report
from captum_rig.metrics import accuracy
from captum_rig.models import DEMO_MODELS, load_demo_model

__all__ = ["run_demo"]

Log = Optional[Callable[[str], None]]


def run_demo(
    out_dir: Union[str, "os.PathLike[str]"],
    *,
    methods: Optional[Sequence[str]] = None,
    n_images: int = 4,
    n_eval: int = 60,
    n_spectrum: int = 200,
    n_steps: int = 32,
    score_steps: int = 16,
    photo: str = "chelsea",
    dpi: int = 110,
    timings: Optional[Dict[str, float]] = None,
    log: Log = None,
) -> List[Path]:
    r"""Runs the demo and writes its figures, scores and a Markdown report to ``out_dir``.

    Everything comes from the package: the synthetic shapes test split (seed
    :data:`~captum_rig.demo.SHAPES_TEST_SEED`), the two shipped CNNs and a shipped photo;
    no network. Attributions are for the *natural* model and the true class.

    Written (see :data:`~captum_rig.demo.OUTPUTS`):

    - ``comparison_shapes.png``: ``n_images`` synthetic images, object outlined, and the
      maps of every method (shared colour scale: equal colour = equal share of the
      map's attribution mass); ``comparison_photo.png``: the same on the photo.
    - ``rig_channel_max.png``: RIG in the paper's exact Eq. (3) form (channel max);
      only when RIG is among ``methods``.
    - ``rank_gallery.png`` / ``rank_gallery_reverse.png``: the photo at ranks 1..full,
      and with its top ranks removed.
    - ``rank_spectra.png``: accuracy against rank, kept and removed, for both models.
    - ``rank_contributions.png``: where in the spectrum each model's evidence for the true
      class comes from: :func:`captum_rig.rank_contributions` of both models on the
      ``n_eval`` scored images, in rank bands (40 gradient evaluations per image), as the
      cumulative share of the bands' sum (``F(x) - F(0)`` up to the quadrature error)
      carried by the top k components, and per band.
    - ``rank_or_frequency.png``: the same models in the frequency view beside the rank
      view: accuracy with the top ranks / low frequencies kept and removed, rank next to
      frequency contributions, and each model's Fourier heat map (see
      :mod:`captum_rig.fourier`).
    - ``deletion_insertion.png`` and ``scores.csv``: mean deletion/insertion curves and
      per-method scores on ``n_eval`` images (see
      :func:`captum_rig.metrics.mask_energy` and
      :func:`captum_rig.metrics.deletion_insertion`; deleted pixels become the image's
      mean colour).
    - ``report.md``: ties it together, with the numbers; its text follows the methods
      that were run.

    All files are first written to a staging folder inside ``out_dir`` (named after the
    host and process id) and moved into place (``os.replace``) only when every one is
    complete: a failed or interrupted run (Ctrl-C included) leaves no partial output,
    and an ``out_dir`` it created is removed again while still empty. A staging folder
    left by a killed run (SIGKILL, power loss) is removed by the next run in the same
    folder once its process is gone (see :func:`captum_rig._context.staged_output`).

    Args:
        out_dir (str or PathLike): output folder, created if missing; files of the same
            names are replaced.
        methods (sequence of str, optional): registry names (``rig``, ``ig``,
            ``blurig``, ``saliency``; see :mod:`captum_rig.attr.registry`); None: all.
        n_images (int): synthetic images in the comparison figure. Default: 4.
        n_eval (int): synthetic images scored, and split by rank. Default: 60.
        n_spectrum (int): synthetic images for the rank spectra and accuracies.
            Default: 200.
        n_steps (int): path steps of RIG (ranks), IG and BlurIG. Default: 32.
        score_steps (int): deletion/insertion steps. Default: 16.
        photo (str): which shipped photo (see :data:`captum_rig.data.PHOTOS`).
            Default: ``"chelsea"``.
        dpi (int): figure resolution, at least 10. Default: 110.
        timings (dict, optional): filled with the seconds each stage took.
        log (Callable[[str], None], optional): called with one line as each of the eight
            stages starts, e.g. ``"[2/7] attributions: RIG, Saliency on 4 synthetic
            images and the photo chelsea"``; ``print`` shows the progress.

    Returns:
        list[Path]: the written files, in the order of :data:`~captum_rig.demo.OUTPUTS`
        (``report.md`` last; ``rig_channel_max.png`` left out when RIG did not run).

    Examples:
        >>> paths = run_demo("demo-output", methods=["saliency"], n_images=1, n_eval=2,
        ...                  n_spectrum=4, n_steps=2, score_steps=2, dpi=20, log=print)
        [1/8] setup: 2 demo models, 4 synthetic shapes, the photo chelsea
        [2/8] attributions: Saliency on 1 synthetic image and the photo chelsea
        [3/8] rank galleries: the photo chelsea, top ranks kept and removed
        [4/8] rank spectra: 2 models on 4 synthetic images, 16 ranks, kept and removed
        [5/8] rank contributions: 2 models on 2 synthetic images, 6 bands, 40 gradients per image
        [6/8] rank or frequency: 8 radii on 4 images, contributions on 2, heat maps on 2
        [7/8] scores: mask energy and deletion/insertion of Saliency on 2 synthetic images
        [8/8] report: report.md
        >>> paths[-1].name
        'report.md'
    """
    state = _check_arguments(
        out_dir, methods, n_images, n_eval, n_spectrum, n_steps, score_steps, photo, dpi
    )
    if log is not None and not callable(log):
        raise TypeError(f"log must be a callable taking one str, got {type(log).__name__}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {str(out)!r} exists and is not a folder")
    try:
        with staged_output(out) as staging:
            rig = any(m.name == "rig" for m in state.methods)
            state.paths = {
                key: staging / name
                for key, name in OUTPUTS.items()
                if rig or key != "rig_channel_max"
            }
            _run_stages(state, log)
            return publish(list(state.paths.values()), out)
    finally:
        if timings is not None:
            timings.update(state.timings)


def _check_arguments(
    out_dir, methods, n_images, n_eval, n_spectrum, n_steps, score_steps, photo, dpi
) -> DemoState:
    """run_demo's arguments checked, as a fresh state; raises before anything is written."""
    from captum_rig.attr.registry import METHOD_NAMES, parse_methods

    chosen = parse_methods(list(METHOD_NAMES) if methods is None else list(methods))
    if photo not in PHOTOS:
        raise ValueError(f"photo must be one of {list(PHOTOS)}, got {photo!r}")
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir must be a path, got {type(out_dir).__name__}")
    return DemoState(
        methods=chosen,
        n_images=check_int(n_images, "n_images", low=1),
        n_eval=check_int(n_eval, "n_eval", low=1),
        n_spectrum=check_int(n_spectrum, "n_spectrum", low=1),
        n_steps=check_int(n_steps, "n_steps", low=1),
        score_steps=check_int(score_steps, "score_steps", low=1),
        photo=photo,
        dpi=check_int(dpi, "dpi", low=10),
    )


def _images(n: int) -> str:
    return f"{n} synthetic image" + ("" if n == 1 else "s")


def _stages(s: DemoState) -> List[Tuple[str, str, Callable[[DemoState], None]]]:
    """The demo's stages in order: name, what it does (for the log), function."""
    n_data = max(s.n_images, s.n_eval, s.n_spectrum)
    return [
        ("setup", f"2 demo models, {n_data} synthetic shapes, the photo {s.photo}", _setup),
        (
            "attributions",
            f"{s.titles} on {_images(s.n_images)} and the photo {s.photo}",
            _attribution_figures,
        ),
        ("rank galleries", f"the photo {s.photo}, top ranks kept and removed", _rank_galleries),
        (
            "rank spectra",
            f"2 models on {_images(s.n_spectrum)}, {len(SPECTRUM_GRID)} ranks, kept and removed",
            _rank_spectra,
        ),
        (
            "rank contributions",
            f"2 models on {_images(s.n_eval)}, {len(CONTRIBUTION_BANDS) - 1} bands, "
            f"{CONTRIBUTION_STEPS} gradients per image",
            _rank_contributions,
        ),
        ("rank or frequency", fourier_detail(s), fourier_view),
        (
            "scores",
            f"mask energy and deletion/insertion of {s.titles} on {_images(s.n_eval)}",
            scores,
        ),
        ("report", OUTPUTS["report"], _write_report),
    ]


def _run_stages(state: DemoState, log: Log) -> None:
    """Runs every stage, announcing each through ``log`` and timing it."""
    stages = _stages(state)
    for i, (name, detail, stage) in enumerate(stages, 1):
        if log is not None:
            log(f"[{i}/{len(stages)}] {name}: {detail}")
        t0 = time.perf_counter()
        stage(state)
        state.timings[name] = time.perf_counter() - t0


# -- stage 1: setup ---------------------------------------------------------------------


def _setup(s: DemoState) -> None:
    from captum_rig.synthetic import SHAPES, make_shapes

    s.models = {name: inference_model(load_demo_model(name)) for name in DEMO_MODELS}
    s.data = make_shapes(max(s.n_images, s.n_eval, s.n_spectrum), seed=SHAPES_TEST_SEED)
    s.picture = load_photo(s.photo)
    s.shape_names = SHAPES


# -- stage 2: attribution figures -------------------------------------------------------


def _attribute(method: Any, model: nn.Module, x: Tensor, target: Any, n_steps: int) -> Tensor:
    """One registered method's attributions; path methods batch 8 steps of all images."""
    if not method.takes_steps:
        return method.attribute(model, x, target=target)
    return method.attribute(
        model, x, target=target, n_steps=n_steps, internal_batch_size=8 * x.shape[0]
    )


def _method_maps(s: DemoState) -> Dict[str, Tensor]:
    """Each method's maps of the scored images (kept, with their time, for the scores);
    returns the maps of the figure's ``n_images`` images."""
    x, y = s.data.images[: s.n_eval], s.data.labels[: s.n_eval]
    shown = {}
    for m in s.methods:
        t0 = time.perf_counter()
        s.maps[m.name] = _attribute(m, s.model, x, y, s.n_steps)
        s.seconds[m.name] = time.perf_counter() - t0
        # a batch's maps are its images' own maps: the figure's images are the first
        if s.n_images <= s.n_eval:
            shown[m.title] = s.maps[m.name][: s.n_images]
        else:
            x_shown, y_shown = s.data.images[: s.n_images], s.data.labels[: s.n_images]
            shown[m.title] = _attribute(m, s.model, x_shown, y_shown, s.n_steps)
    return shown


def _attribution_figures(s: DemoState) -> None:
    from captum_rig.viz import plot_attributions, plot_rig_channel_max

    x, y = s.data.images[: s.n_images], s.data.labels[: s.n_images]
    masks = s.data.masks[: s.n_images]
    with torch.no_grad():
        probs = torch.softmax(s.model(x), 1)
    labels = [f"{s.shape_names[int(t)]} (p={float(p[t]):.2f})" for t, p in zip(y, probs)]
    fig, _ = plot_attributions(
        x,
        _method_maps(s),
        masks=masks,
        row_labels=labels,
        shared_scale=True,
        title="Natural model, true class; object outlined; shared scale",
    )
    save(s, fig, "comparison_shapes")

    if "rig_channel_max" in s.paths:
        from captum_rig.attr.rig import RankIntegratedGradients

        eq3 = RankIntegratedGradients(s.model).attribute(
            x, target=y, n_steps=s.n_steps, channel_reduction="max"
        )
        fig, _ = plot_rig_channel_max(
            x, eq3, masks=masks, row_labels=labels, title="RIG, Eq. (3): max over channels"
        )
        save(s, fig, "rig_channel_max")
    _photo_figure(s)


def _photo_figure(s: DemoState) -> None:
    from captum_rig.viz import plot_attributions

    xp = s.picture.unsqueeze(0)
    with torch.no_grad():
        predicted = int(s.model(xp).argmax(1))
    s.photo_class = s.shape_names[predicted]
    attrs = {m.title: _attribute(m, s.model, xp, predicted, s.n_steps) for m in s.methods}
    fig, _ = plot_attributions(
        xp,
        attrs,
        method="blended_heat_map",
        row_labels=[f"{s.photo} → {s.photo_class}"],
        title="The shapes model on a photo (per-map scale)",
        panel_size=2.4,
    )
    save(s, fig, "comparison_photo")


# -- stage 3: rank galleries ------------------------------------------------------------


def _rank_galleries(s: DemoState) -> None:
    from captum_rig.viz import plot_rank_gallery

    fig, _ = plot_rank_gallery(s.picture, title=f"{s.photo}: rank-k images (kept)")
    save(s, fig, "rank_gallery")
    fig, _ = plot_rank_gallery(
        s.picture, reverse=True, title=f"{s.photo}: top k ranks removed (mid-grey = 0)"
    )
    save(s, fig, "rank_gallery_reverse")


# -- stage 4: rank spectra --------------------------------------------------------------


def _rank_spectra(s: DemoState) -> None:
    from captum_rig.spectrum import rank_spectrum
    from captum_rig.viz import plot_spectra

    xs, ys = s.data.images[: s.n_spectrum], s.data.labels[: s.n_spectrum]
    s.spectra = {
        reverse: {
            MODEL_TITLES[name]: rank_spectrum(
                m,
                xs,
                ranks=list(SPECTRUM_GRID),
                labels=ys,
                reverse=reverse,
                batch_size=512,
                progress=False,
            )
            for name, m in s.models.items()
        }
        for reverse in (False, True)
    }
    fig, axes = two_panels()
    for ax, reverse in zip(axes, (False, True)):
        plot_spectra(s.spectra[reverse], ax=ax, metric="accuracy")
        ax.axhline(1 / len(s.shape_names), color="grey", lw=0.8, ls=":")
    axes[0].set_title("rank-k images (top k kept)")
    axes[1].set_title("top k ranks removed")
    fig.suptitle(f"Accuracy on {len(xs)} synthetic test images; dotted: chance")
    save(s, fig, "rank_spectra")


# -- stage 5: rank contributions --------------------------------------------------------


def _rank_contributions(s: DemoState) -> None:
    from captum_rig.attr.rank_contributions import rank_contributions
    from captum_rig.viz import plot_rank_contributions

    x, y = s.data.images[: s.n_eval], s.data.labels[: s.n_eval]
    bands = list(CONTRIBUTION_BANDS)
    for name, m in s.models.items():
        title = MODEL_TITLES[name]
        s.contributions[title] = rank_contributions(
            m, x, target=y, bands=bands, n_steps=CONTRIBUTION_STEPS
        )
        with torch.no_grad():
            rise = m(x) - m(torch.zeros_like(x))
        s.rises[title] = float(rise.gather(1, y[:, None]).sum())
    fig, axes = two_panels()
    plot_rank_contributions(
        s.contributions, bands=bands, ax=axes[0], title="top k components, cumulative"
    )
    plot_rank_contributions(
        s.contributions, bands=bands, cumulative=False, ax=axes[1], title="per band"
    )
    for ax, what in zip(axes, ("cumulative share", "share")):
        # the curves are divided by the bands' sum, F(x) - F(0) up to the quadrature error
        ax.set_ylabel(f"{what} of the bands' sum (≈ F(x) − F(0))")
        # the bands double in width: a log2 axis gives each the same room
        ax.set_xscale("symlog", base=2, linthresh=1, linscale=0.5)
        ax.set_xticks(bands, [str(b) for b in bands])
        ax.set_xlim(0, bands[-1])
    fig.suptitle(f"Evidence for the true class, F(x) - F(0), split by rank; {_images(len(x))}")
    save(s, fig, "rank_contributions")


# -- stage 7: the report ----------------------------------------------------------------


def _write_report(s: DemoState) -> None:
    s.accuracies = {
        name: accuracy(m, s.data.images[: s.n_spectrum], s.data.labels[: s.n_spectrum])
        for name, m in s.models.items()
    }
    write_text(s.paths["report"], report(s))
