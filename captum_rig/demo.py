"""The demo: attribution figures, rank galleries, rank spectra and contributions, scores.

:func:`run_demo` (``captum-rig demo --out DIR``) needs nothing but the package: the
synthetic shapes (:mod:`captum_rig.synthetic`), two small CNNs trained on them and three
public-domain / CC0 photographs, shipped in ``captum_rig/assets/`` (rebuilt by
``scripts/make_demo_assets.py``). This module only orchestrates: the maps come from
:mod:`captum_rig.methods`, their scores from :mod:`captum_rig.metrics`, the split of the
evidence by rank from :func:`captum_rig.rank_contributions`, every figure from
:mod:`captum_rig.viz`.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

import math
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from captum_rig._checks import check_int
from captum_rig.metrics import accuracy, deletion_insertion, mask_energy
from captum_rig.models import ASSETS, DEMO_MODELS, build_demo_model, load_demo_model

__all__ = [
    "ASSETS",
    "PHOTOS",
    "DEMO_MODELS",
    "build_demo_model",
    "load_demo_model",
    "load_photo",
    "run_demo",
]

PHOTOS: Dict[str, Dict[str, str]] = {
    "chelsea": {
        "skimage": "chelsea",
        "title": "Chelsea the cat",
        "author": "Stefan van der Walt",
        "license": "CC0 1.0 (public domain dedication)",
    },
    "coffee": {
        "skimage": "coffee",
        "title": "Coffee cup (courtesy of Pikolo Espresso Bar)",
        "author": "Rachel Michetti",
        "license": "CC0 1.0 (public domain dedication)",
    },
    "astronaut": {
        "skimage": "astronaut",
        "title": "Astronaut Eileen Collins",
        "author": "NASA",
        "license": "Public domain (NASA; no known copyright restrictions)",
    },
}
"""The shipped photographs: ``assets/<name>.png``, 128×128 RGB, from scikit-image."""

SHAPES_TEST_SEED = 2
"""Seed of the synthetic test split the demo models were scored on (train seed: 1)."""


def load_photo(name: str = "chelsea") -> Tensor:
    r"""A shipped photograph as a float tensor ``(3, 128, 128)`` in [0, 1].

    Args:
        name (str): one of :data:`PHOTOS` (``"chelsea"``, ``"coffee"``, ``"astronaut"``).

    Examples:
        >>> load_photo("coffee").shape
        torch.Size([3, 128, 128])
    """
    import numpy as np
    from PIL import Image

    if name not in PHOTOS:
        raise ValueError(f"name must be one of {list(PHOTOS)}, got {name!r}")
    with Image.open(ASSETS / f"{name}.png") as im:
        array = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


# --------------------------------------------------------------------------------------
# The demo job
# --------------------------------------------------------------------------------------

OUTPUTS = {
    "comparison_shapes": "comparison_shapes.png",
    "comparison_photo": "comparison_photo.png",
    "rig_channel_max": "rig_channel_max.png",
    "rank_gallery": "rank_gallery.png",
    "rank_gallery_reverse": "rank_gallery_reverse.png",
    "rank_spectra": "rank_spectra.png",
    "rank_contributions": "rank_contributions.png",
    "deletion_insertion": "deletion_insertion.png",
    "scores": "scores.csv",
    "report": "report.md",
}
"""What :func:`run_demo` writes: key → file name, in the order of the returned list."""

_SPECTRUM_RANKS = (1, 2, 4, 8, 16, 32)
# Ranks the spectra are computed at: every rank up to 6, then sparser (32 is full).
_SPECTRUM_GRID = (0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32)
_MODEL_TITLES = {"natural": "natural", "lowrank8": "trained on rank 8"}
# Rank bands of the contribution overview (the shapes are 32×32, so w = 32) and gradient
# evaluations per image for all of them: a tenth of the 4 · 32 one entry per rank costs.
_CONTRIBUTION_BANDS = (0, 1, 2, 4, 8, 16, 32)
_CONTRIBUTION_STEPS = 40


@dataclass
class _State:
    """What the demo's stages share: the settings, the inputs, and results so far."""

    methods: List[Any]
    n_images: int
    n_eval: int
    n_spectrum: int
    n_steps: int
    score_steps: int
    photo: str
    dpi: int
    paths: Dict[str, Path] = field(default_factory=dict)
    timings: Dict[str, float] = field(default_factory=dict)
    models: Dict[str, nn.Module] = field(default_factory=dict)
    data: Any = None  # the synthetic shapes: images, labels, masks
    picture: Optional[Tensor] = None
    shape_names: Sequence[str] = ()
    photo_class: str = ""
    spectra: Dict[bool, Dict[str, Any]] = field(default_factory=dict)
    contributions: Dict[str, Tensor] = field(default_factory=dict)  # title -> (N, C, bands)
    rises: Dict[str, float] = field(default_factory=dict)  # title -> Σ F(x) - F(0)
    rows: List[Dict[str, Any]] = field(default_factory=list)
    accuracies: Dict[str, float] = field(default_factory=dict)

    @property
    def model(self) -> nn.Module:
        """The model every attribution explains."""
        return self.models["natural"]

    @property
    def titles(self) -> str:
        """The methods' titles, comma-separated."""
        return ", ".join(m.title for m in self.methods)


def _save_figure(fig, path: Path, dpi: int) -> None:
    fig.savefig(path, dpi=dpi, format="png", facecolor="white")
    import matplotlib.pyplot as plt

    plt.close(fig)  # a no-op for standalone Figures, frees pyplot ones


def _two_panels() -> Tuple[Any, Any]:
    """A standalone figure with two axes side by side (no pyplot state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4), layout="constrained")
    return fig, fig.subplots(1, 2)


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"


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
    log: Optional[Callable[[str], None]] = None,
) -> List[Path]:
    r"""Runs the demo and writes its figures, scores and a Markdown report to ``out_dir``.

    Everything comes from the package: the synthetic shapes test split (seed
    :data:`SHAPES_TEST_SEED`), the two shipped CNNs and a shipped photo; no network.
    Attributions are for the *natural* model and the true class.

    Written (see :data:`OUTPUTS`):

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
      cumulative share of ``F(x) - F(0)`` carried by the top k components and per band.
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
    folder once its process is gone.

    Args:
        out_dir (str or PathLike): output folder, created if missing; files of the same
            names are replaced.
        methods (sequence of str, optional): registry names (``rig``, ``ig``,
            ``blurig``, ``saliency``; see :mod:`captum_rig.methods`); None: all.
        n_images (int): synthetic images in the comparison figure. Default: 4.
        n_eval (int): synthetic images scored, and split by rank. Default: 60.
        n_spectrum (int): synthetic images for the rank spectra and accuracies.
            Default: 200.
        n_steps (int): path steps of RIG (ranks), IG and BlurIG. Default: 32.
        score_steps (int): deletion/insertion steps. Default: 16.
        photo (str): which shipped photo (see :data:`PHOTOS`). Default: ``"chelsea"``.
        dpi (int): figure resolution, at least 10. Default: 110.
        timings (dict, optional): filled with the seconds each stage took.
        log (Callable[[str], None], optional): called with one line as each of the seven
            stages starts, e.g. ``"[2/7] attributions: RIG, Saliency on 4 synthetic
            images and the photo chelsea"``; ``print`` shows the progress.

    Returns:
        list[Path]: the written files, in the order of :data:`OUTPUTS` (``report.md``
        last; ``rig_channel_max.png`` left out when RIG did not run).

    Examples:
        >>> paths = run_demo("demo-output", methods=["saliency"], n_images=1, n_eval=2,
        ...                  n_spectrum=4, n_steps=2, score_steps=2, dpi=20, log=print)
        [1/7] setup: 2 demo models, 4 synthetic shapes, the photo chelsea
        [2/7] attributions: Saliency on 1 synthetic image and the photo chelsea
        [3/7] rank galleries: the photo chelsea, top ranks kept and removed
        [4/7] rank spectra: 2 models on 4 synthetic images, 16 ranks, kept and removed
        [5/7] rank contributions: 2 models on 2 synthetic images, 6 bands, 40 gradients per image
        [6/7] scores: mask energy and deletion/insertion of Saliency on 2 synthetic images
        [7/7] report: report.md
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
    created = _make_folder(out)
    try:
        _remove_stale_staging(out)
        return _run_in_staging(state, out, log)
    except BaseException:
        # Ctrl-C or a failure before anything was moved into place: a folder this run
        # created must not outlive it (it is only removed while empty)
        _remove_empty(created)
        raise
    finally:
        if timings is not None:
            timings.update(state.timings)


def _run_in_staging(state: _State, out: Path, log: Optional[Callable[[str], None]]) -> List[Path]:
    """Runs the stages into a fresh staging folder in ``out``, then moves the files out."""
    staging = Path(tempfile.mkdtemp(dir=out, prefix=_staging_prefix()))
    try:
        rig = any(m.name == "rig" for m in state.methods)
        state.paths = {
            key: staging / name for key, name in OUTPUTS.items() if rig or key != "rig_channel_max"
        }
        _run_demo(state, log)
        written = []
        for tmp in state.paths.values():
            os.chmod(tmp, 0o644)
            os.replace(tmp, out / tmp.name)
            written.append(out / tmp.name)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- output folder housekeeping ----------------------------------------------------------

_STAGING = ".captum-rig-demo-"
# <prefix><host>-<pid>-<tempfile's random part: letters, digits, underscores>
_STAGING_NAME = re.compile(re.escape(_STAGING) + r"(?P<host>[A-Za-z0-9._]+)-(?P<pid>\d+)-\w+")


def _host() -> str:
    """This machine's name with every character but letters, digits and dots as ``_``."""
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "localhost"


def _staging_prefix() -> str:
    return f"{_STAGING}{_host()}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists here; True when that cannot be told."""
    if os.name != "posix":
        # os.kill(pid, 0) would terminate the process on Windows: keep the folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, owned by someone else
        return True
    return True


def _remove_stale_staging(out: Path) -> None:
    """Removes staging folders in ``out`` left by killed runs on this host."""
    host = _host()
    for path in out.glob(_STAGING + "*"):
        match = _STAGING_NAME.fullmatch(path.name)
        if (
            match is not None
            and match["host"] == host
            and path.is_dir()
            and not _pid_alive(int(match["pid"]))
        ):
            shutil.rmtree(path, ignore_errors=True)


def _make_folder(out: Path) -> List[Path]:
    """Creates ``out`` and missing parents; returns the folders created, deepest first."""
    missing = []
    folder = out.absolute()
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    out.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(folders: Sequence[Path]) -> None:
    """Removes each of ``folders`` (deepest first) that is empty; stops at the first not."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _check_arguments(
    out_dir, methods, n_images, n_eval, n_spectrum, n_steps, score_steps, photo, dpi
) -> _State:
    """run_demo's arguments checked, as a fresh state; raises before anything is written."""
    from captum_rig.methods import METHOD_NAMES, parse_methods

    chosen = parse_methods(list(METHOD_NAMES) if methods is None else list(methods))
    if photo not in PHOTOS:
        raise ValueError(f"photo must be one of {list(PHOTOS)}, got {photo!r}")
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir must be a path, got {type(out_dir).__name__}")
    return _State(
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


def _stages(s: _State) -> List[Tuple[str, str, Callable[[_State], None]]]:
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
            f"2 models on {_images(s.n_spectrum)}, {len(_SPECTRUM_GRID)} ranks, kept and removed",
            _rank_spectra,
        ),
        (
            "rank contributions",
            f"2 models on {_images(s.n_eval)}, {len(_CONTRIBUTION_BANDS) - 1} bands, "
            f"{_CONTRIBUTION_STEPS} gradients per image",
            _rank_contributions,
        ),
        (
            "scores",
            f"mask energy and deletion/insertion of {s.titles} on {_images(s.n_eval)}",
            _scores,
        ),
        ("report", OUTPUTS["report"], _write_report),
    ]


def _run_demo(state: _State, log: Optional[Callable[[str], None]]) -> None:
    """Runs every stage, announcing each through ``log`` and timing it."""
    stages = _stages(state)
    for i, (name, detail, stage) in enumerate(stages, 1):
        if log is not None:
            log(f"[{i}/{len(stages)}] {name}: {detail}")
        t0 = time.perf_counter()
        stage(state)
        state.timings[name] = time.perf_counter() - t0


# -- stage 1: setup ---------------------------------------------------------------------


def _setup(s: _State) -> None:
    from captum_rig.synthetic import SHAPES, make_shapes

    s.models = {name: load_demo_model(name) for name in DEMO_MODELS}
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


def _attribution_figures(s: _State) -> None:
    from captum_rig.viz import plot_attributions, plot_rig_channel_max

    x, y = s.data.images[: s.n_images], s.data.labels[: s.n_images]
    masks = s.data.masks[: s.n_images]
    with torch.no_grad():
        probs = torch.softmax(s.model(x), 1)
    labels = [f"{s.shape_names[int(t)]} (p={float(p[t]):.2f})" for t, p in zip(y, probs)]
    attrs = {m.title: _attribute(m, s.model, x, y, s.n_steps) for m in s.methods}
    fig, _ = plot_attributions(
        x,
        attrs,
        masks=masks,
        row_labels=labels,
        shared_scale=True,
        title="Natural model, true class; object outlined; shared scale",
    )
    _save_figure(fig, s.paths["comparison_shapes"], s.dpi)

    if "rig_channel_max" in s.paths:
        fig, _ = plot_rig_channel_max(
            s.model,
            x,
            target=y,
            n_steps=s.n_steps,
            masks=masks,
            row_labels=labels,
            title="RIG, Eq. (3): max over channels",
        )
        _save_figure(fig, s.paths["rig_channel_max"], s.dpi)
    _photo_figure(s)


def _photo_figure(s: _State) -> None:
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
    _save_figure(fig, s.paths["comparison_photo"], s.dpi)


# -- stage 3: rank galleries ------------------------------------------------------------


def _rank_galleries(s: _State) -> None:
    from captum_rig.viz import plot_rank_gallery

    fig, _ = plot_rank_gallery(s.picture, title=f"{s.photo}: rank-k images (kept)")
    _save_figure(fig, s.paths["rank_gallery"], s.dpi)
    fig, _ = plot_rank_gallery(
        s.picture, reverse=True, title=f"{s.photo}: top k ranks removed (mid-grey = 0)"
    )
    _save_figure(fig, s.paths["rank_gallery_reverse"], s.dpi)


# -- stage 4: rank spectra --------------------------------------------------------------


def _rank_spectra(s: _State) -> None:
    from captum_rig.spectrum import rank_spectrum
    from captum_rig.viz import plot_spectra

    xs, ys = s.data.images[: s.n_spectrum], s.data.labels[: s.n_spectrum]
    s.spectra = {
        reverse: {
            _MODEL_TITLES[name]: rank_spectrum(
                m,
                xs,
                ranks=list(_SPECTRUM_GRID),
                labels=ys,
                reverse=reverse,
                batch_size=512,
                progress=False,
            )
            for name, m in s.models.items()
        }
        for reverse in (False, True)
    }
    fig, axes = _two_panels()
    for ax, reverse in zip(axes, (False, True)):
        plot_spectra(s.spectra[reverse], ax=ax, metric="accuracy")
        ax.axhline(1 / len(s.shape_names), color="grey", lw=0.8, ls=":")
    axes[0].set_title("rank-k images (top k kept)")
    axes[1].set_title("top k ranks removed")
    fig.suptitle(f"Accuracy on {len(xs)} synthetic test images; dotted: chance")
    _save_figure(fig, s.paths["rank_spectra"], s.dpi)


# -- stage 5: rank contributions --------------------------------------------------------


def _rank_contributions(s: _State) -> None:
    from captum_rig.attr.rank_contributions import rank_contributions
    from captum_rig.viz import plot_rank_contributions

    x, y = s.data.images[: s.n_eval], s.data.labels[: s.n_eval]
    bands = list(_CONTRIBUTION_BANDS)
    for name, m in s.models.items():
        title = _MODEL_TITLES[name]
        s.contributions[title] = rank_contributions(
            m, x, target=y, bands=bands, n_steps=_CONTRIBUTION_STEPS
        )
        with torch.no_grad():
            rise = m(x) - m(torch.zeros_like(x))
        s.rises[title] = float(rise.gather(1, y[:, None]).sum())
    fig, axes = _two_panels()
    plot_rank_contributions(
        s.contributions, bands=bands, ax=axes[0], title="top k components, cumulative"
    )
    plot_rank_contributions(
        s.contributions, bands=bands, cumulative=False, ax=axes[1], title="per band"
    )
    for ax in axes:
        # the bands double in width: a log2 axis gives each the same room
        ax.set_xscale("symlog", base=2, linthresh=1, linscale=0.5)
        ax.set_xticks(bands, [str(b) for b in bands])
        ax.set_xlim(0, bands[-1])
    fig.suptitle(f"Evidence for the true class, F(x) - F(0), split by rank; {_images(len(x))}")
    _save_figure(fig, s.paths["rank_contributions"], s.dpi)


# -- stage 6: scores against the object masks -------------------------------------------


def _mean_sd(values: Tensor) -> Tuple[float, float]:
    """Mean and standard deviation of the finite values (sd NaN for fewer than two)."""
    finite = values[~values.isnan()]
    sd = float(finite.std()) if finite.numel() > 1 else float("nan")
    return float(finite.mean()) if finite.numel() else float("nan"), sd


def _score(s: _State, title: str, name: str, maps: Tensor, seconds: float) -> Dict[str, Any]:
    """One row of scores.csv, and the mean deletion/insertion curves of ``maps``."""
    x, y = s.data.images[: s.n_eval], s.data.labels[: s.n_eval]
    masks = s.data.masks[: s.n_eval]
    if name == "random":
        # a random map's expected share of the mask is that of an even spread
        maps_for_energy = torch.ones(len(x), 1, *x.shape[2:])
    else:
        maps_for_energy = maps
    energy, energy_sd = _mean_sd(mask_energy(maps_for_energy, masks))
    energy_2px, _ = _mean_sd(mask_energy(maps_for_energy, masks, tolerance=2))
    di = deletion_insertion(s.model, x, maps, y, n_steps=s.score_steps)
    return {
        "method": name,
        "title": title,
        "mask_energy": energy,
        "mask_energy_sd": energy_sd if name != "random" else float("nan"),
        "mask_energy_2px": energy_2px,
        "deletion_auc": float(di["deletion_auc"].mean()),
        "insertion_auc": float(di["insertion_auc"].mean()),
        "seconds": seconds,
        "curves": {
            key: (di["fractions"].tolist(), di[key].mean(0).tolist())
            for key in ("deletion", "insertion")
        },
    }


def _scores(s: _State) -> None:
    x, y = s.data.images[: s.n_eval], s.data.labels[: s.n_eval]
    for m in s.methods:
        t0 = time.perf_counter()
        maps = _attribute(m, s.model, x, y, s.n_steps)
        s.rows.append(_score(s, m.title, m.name, maps, time.perf_counter() - t0))
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(x.shape[0], 1, *x.shape[2:], generator=g)
    s.rows.append(_score(s, "random order", "random", noise, float("nan")))
    _deletion_insertion_figure(s)
    _write_scores(s.paths["scores"], s.rows)


def _deletion_insertion_figure(s: _State) -> None:
    from captum_rig.viz import plot_curves

    fig, axes = _two_panels()
    for ax, key, verb, better in zip(
        axes, ("deletion", "insertion"), ("deleted", "inserted"), ("lower", "higher")
    ):
        plot_curves(
            {r["title"]: r["curves"][key] for r in s.rows},
            ax=ax,
            xlabel=f"fraction of pixels {verb}",
            ylabel="p(true class)",
            title=f"{key.capitalize()} ({better} is better)",
        )
    fig.suptitle(f"Mean over {s.n_eval} synthetic images; baseline: each image's mean colour")
    _save_figure(fig, s.paths["deletion_insertion"], s.dpi)


def _write_scores(path: Path, rows: List[Dict[str, Any]]) -> None:
    import csv

    fields = [k for k in rows[0] if k != "curves"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


# -- stage 7: the report ----------------------------------------------------------------


def _write_report(s: _State) -> None:
    s.accuracies = {
        name: accuracy(m, s.data.images[: s.n_spectrum], s.data.labels[: s.n_spectrum])
        for name, m in s.models.items()
    }
    s.paths["report"].write_text(_report(s), encoding="utf-8")


def _report(s: _State) -> str:
    """report.md: every section, its text following the methods that were run."""
    sections = (
        _report_intro,
        _report_spectra,
        _report_contributions,
        _report_galleries,
        _report_attributions,
        _report_scores,
        _report_run,
    )
    return "\n".join(line for section in sections for line in [*section(s), ""])


def _report_intro(s: _State) -> List[str]:
    return [
        "# captum-rig demo",
        "",
        "The singular value perspective on model robustness (Jere, Kumar, Koushanfar, "
        "arXiv:2012.03516) on a toy problem that ships with captum-rig: 32×32 synthetic "
        "shapes (six classes, known object masks) and two small CNNs, one trained on the "
        "images as they are (*natural*) and one on their rank-8 approximations.",
    ]


def _spectrum_sentence(label: str, s: Any) -> str:
    acc = s.accuracy
    best = max(range(len(acc)), key=lambda i: (acc[i], -i))
    reach = next(k for k, a in zip(s.ranks, acc) if a >= 0.9 * acc[best])
    full = acc[s.ranks.index(max(s.ranks))]
    return (
        f"*{label}* reaches 90% of its best accuracy ({acc[best]:.2f}, at rank "
        f"{s.ranks[best]}) from rank {reach} on, and scores {full:.2f} on the full images."
    )


def _lowrank_remark(kept: Dict[str, Any]) -> str:
    s = kept.get(_MODEL_TITLES["lowrank8"])
    if s is None or s.accuracy is None:
        return ""
    at = dict(zip(s.ranks, s.accuracy))
    if 8 in at and at[max(s.ranks)] < at[8] - 0.05:
        return (
            " The rank-8 model does worse on full images than on rank-8 ones "
            f"({at[max(s.ranks)]:.2f} vs {at[8]:.2f}): the ranks above 8 carry detail it "
            "never saw in training."
        )
    return ""


def _spectrum_table(spectra: Dict[str, Any]) -> List[str]:
    lines = [
        "| model | " + " | ".join(f"k={k}" for k in _SPECTRUM_RANKS) + " |",
        "|---|" + "---|" * len(_SPECTRUM_RANKS),
    ]
    for label, spectrum in spectra.items():
        acc = dict(zip(spectrum.ranks, spectrum.accuracy))
        cells = " | ".join(_fmt(acc.get(k, float("nan")), 2) for k in _SPECTRUM_RANKS)
        lines.append(f"| {label} | {cells} |")
    return lines


def _report_spectra(s: _State) -> List[str]:
    kept, removed = s.spectra[False], s.spectra[True]
    sentences = " ".join(_spectrum_sentence(label, sp) for label, sp in kept.items())
    return [
        "## The models and their rank spectra",
        "",
        f"Test accuracy on {s.n_spectrum} held-out synthetic images: natural "
        f"**{s.accuracies['natural']:.3f}**, trained on rank 8 "
        f"**{s.accuracies['lowrank8']:.3f}** (chance: {1 / len(s.shape_names):.3f}).",
        "",
        f"![rank spectra]({OUTPUTS['rank_spectra']})",
        "",
        sentences + _lowrank_remark(kept),
        "",
        "Accuracy on rank-k images (top k singular values of every channel kept):",
        "",
        *_spectrum_table(kept),
        "",
        "and with the top k removed:",
        "",
        *_spectrum_table(removed),
    ]


def _top_shares(contributions: Tensor) -> Dict[int, float]:
    """Band edge k -> share of the total carried by the top k components."""
    per_band = contributions.double().sum(dim=(0, 1))
    shares = (per_band.cumsum(0) / per_band.sum()).tolist()
    return dict(zip(_CONTRIBUTION_BANDS[1:], shares))


def _report_contributions(s: _State) -> List[str]:
    shares = {title: _top_shares(c) for title, c in s.contributions.items()}
    edges = _CONTRIBUTION_BANDS[1:-1]
    lines = [
        "## Where in the spectrum the evidence comes from",
        "",
        "`rank_contributions` splits each model's evidence for the true class, F(x) − F(0) "
        "(the logit's rise from the black image), by singular component along RIG's rank "
        f"path: here in the bands {_band_names()} ({_CONTRIBUTION_STEPS} gradient "
        f"evaluations per image), summed over the {s.n_eval} scored images and the colour "
        "channels. Share of the evidence carried by the top k components (the last column "
        "checks that the bands add up to F(x) − F(0), up to the quadrature error):",
        "",
        "| model | " + " | ".join(f"top {k}" for k in edges) + " | bands' sum / (F(x) − F(0)) |",
        "|---|" + "---|" * (len(edges) + 1),
    ]
    for title, share in shares.items():
        total = float(s.contributions[title].double().sum())
        rise = s.rises[title]
        cells = " | ".join(_percent(share[k]) for k in edges)
        lines.append(f"| {title} | {cells} | {_fmt(total / rise if rise else math.nan, 2)} |")
    by_model = list(shares.items())
    return lines + [
        "",
        f"![rank contributions]({OUTPUTS['rank_contributions']})",
        "",
        "The top 4 components carry "
        + _join([f"{_percent(sh[4])} (*{title}*)" for title, sh in by_model])
        + " of the evidence; the top 8, "
        + _join([_percent(sh[8]) for _, sh in by_model])
        + "."
        + _overshoot_remark(shares.get(_MODEL_TITLES["lowrank8"])),
    ]


def _percent(share: float) -> str:
    return "n/a" if share != share else f"{share:.0%}"


def _band_names() -> str:
    return _join([f"{a}–{b}" for a, b in zip(_CONTRIBUTION_BANDS, _CONTRIBUTION_BANDS[1:])])


def _overshoot_remark(share: Optional[Dict[int, float]]) -> str:
    """A sentence when the rank-8 model has more than its whole evidence by rank 8."""
    if share is None or not share[8] >= 1.005:  # not NaN either
        return ""
    return (
        f" The model trained on rank 8 has more than its whole evidence ({share[8]:.0%}) by "
        "rank 8: the higher components, which it never saw in training, take some back."
    )


def _report_galleries(s: _State) -> List[str]:
    return [
        "## Low-rank images",
        "",
        f"The photo *{s.photo}* (128×128) keeps its outline from a few ranks on and gets "
        "sharper as ranks are added; removing the top ranks leaves the high-rank residue "
        "(edges and texture). The residues are roughly zero-mean and shrink as more ranks "
        "are removed, so each panel is shown as mid-grey + gain × residue with its gain "
        "in the title.",
        "",
        f"![rank gallery]({OUTPUTS['rank_gallery']})",
        "",
        f"![rank gallery, reverse]({OUTPUTS['rank_gallery_reverse']})",
    ]


def _report_attributions(s: _State) -> List[str]:
    names = [m.name for m in s.methods]
    one = len(s.methods) == 1
    lines = [
        "## Attributions",
        "",
        f"Maps for the natural model and the true class on {s.n_images} synthetic images "
        "(object outlined in orange). All maps share one colour scale: each map is divided "
        "by its total absolute attribution, so equal colour means an equal share of the "
        "map's attribution mass. "
        + (f"Method: {s.titles}." if one else f"Column titles name the methods: {s.titles}."),
        "",
        f"![comparison]({OUTPUTS['comparison_shapes']})",
    ]
    if "blurig" in names:
        lines += [
            "",
            "Blur IG blurs with zero padding (as PAIR's reference implementation does), so "
            "its path darkens the image border and part of its attribution can land there.",
        ]
    if "rig_channel_max" in s.paths:
        lines += [
            "",
            "RIG in the exact form of the paper's Eq. (3), each rank's gradient maxed over "
            "the colour channels (one map per image; signed, red negative, green positive):",
            "",
            f"![RIG channel max]({OUTPUTS['rig_channel_max']})",
        ]
    return lines + [
        "",
        f"The same {'method' if one else 'methods'} on the photo ({s.photo}); the model has "
        f"only seen shapes (it calls the photo a *{s.photo_class}*), so this shows what "
        f"{'the method does' if one else 'the methods do'} on a natural image, not what a "
        "photo classifier looks at. Per-map colour scale.",
        "",
        f"![photo]({OUTPUTS['comparison_photo']})",
    ]


def _join(words: Sequence[str]) -> str:
    """``["a", "b", "c"]`` → ``"a, b and c"``."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _steps_sentence(s: _State) -> str:
    """Which methods took ``n_steps`` path steps; empty when none did."""
    path = [m for m in s.methods if m.takes_steps]
    if not path:
        return ""
    rig = " (RIG: ranks)" if any(m.name == "rig" for m in path) else ""
    return f" {_join([m.title for m in path])} used {s.n_steps} steps{rig}."


def _report_scores(s: _State) -> List[str]:
    area = float(s.data.masks[: s.n_eval].flatten(1).double().mean())
    lines = [
        "## Scores against the object masks",
        "",
        f"On {s.n_eval} held-out synthetic images, true class. *Mask energy*: the share of "
        "a map's absolute attribution (summed over channels) that falls on the object; a "
        f"map spread evenly would score the mask's mean area, **{area:.3f}**. The ±2 px "
        "column counts the object grown by 2 pixels (edges sit on the outline; a random "
        "map scores the grown area). "
        "*Deletion / insertion* (Petsiuk et al. 2018): pixels ranked by absolute "
        f"attribution are replaced in {s.score_steps} equal steps by the image's mean "
        "colour (deletion: the true class's probability should fall, lower area is "
        "better), or copied into the mean-colour image (insertion: higher is better); "
        "areas by the trapezoid rule over the fraction of pixels. *Random order* ranks "
        "pixels at random." + _steps_sentence(s),
        "",
        *_score_table(s.rows),
        "",
        *_verdict(s.rows, area),
        f"![deletion and insertion]({OUTPUTS['deletion_insertion']})",
        "",
        f"Per-method numbers are also in `{OUTPUTS['scores']}`. These are scores on one "
        "toy problem and one small model, seeded and reproducible, not a benchmark.",
    ]
    return lines


def _score_table(rows: List[Dict[str, Any]]) -> List[str]:
    lines = [
        "| method | mask energy ↑ | mask energy ±2 px ↑ | deletion AUC ↓ | insertion AUC ↑ "
        "| time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        energy = _fmt(r["mask_energy"])
        if r["mask_energy_sd"] == r["mask_energy_sd"]:  # not NaN
            energy += f" ± {r['mask_energy_sd']:.3f}"
        lines.append(
            f"| {r['title']} | {energy} | {_fmt(r['mask_energy_2px'])} | "
            f"{_fmt(r['deletion_auc'])} | {_fmt(r['insertion_auc'])} | "
            f"{_fmt(r['seconds'], 2)} |"
        )
    return lines


def _verdict(rows: List[Dict[str, Any]], area: float) -> List[str]:
    """The best method per score (only when several ran), and RIG against an even spread."""
    methods = [r for r in rows if r["method"] != "random"]
    random = next(r for r in rows if r["method"] == "random")
    against = (
        f"Random order: deletion {random['deletion_auc']:.3f}, insertion "
        f"{random['insertion_auc']:.3f}."
    )
    if len(methods) > 1:
        best_energy = max(methods, key=lambda r: r["mask_energy"])
        best_del = min(methods, key=lambda r: r["deletion_auc"])
        best_ins = max(methods, key=lambda r: r["insertion_auc"])
        lines = [
            f"Most mass on the object: **{best_energy['title']}** "
            f"({best_energy['mask_energy']:.3f}); fastest drop under deletion: "
            f"**{best_del['title']}** ({best_del['deletion_auc']:.3f}); fastest rise under "
            f"insertion: **{best_ins['title']}** ({best_ins['insertion_auc']:.3f}). {against}",
            "",
        ]
    else:
        only = methods[0]
        lines = [
            f"{only['title']}: deletion {only['deletion_auc']:.3f}, insertion "
            f"{only['insertion_auc']:.3f}. {against}",
            "",
        ]
    rig = next((r for r in methods if r["method"] == "rig"), None)
    if rig is not None:
        lines += [
            f"RIG puts {rig['mask_energy']:.1%} of its attribution mass on the object "
            f"against {area:.1%} for an even spread.",
            "",
        ]
    return lines


def _report_run(s: _State) -> List[str]:
    import captum

    seconds = ", ".join(f"{k} {v:.1f}" for k, v in s.timings.items())
    return [
        "## Run",
        "",
        f"captum-rig demo, torch {torch.__version__}, captum {captum.__version__}. "
        f"Methods: {s.titles}. Seconds per stage: {seconds}.",
    ]
