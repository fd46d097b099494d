"""The demo: attribution figures, rank galleries, rank spectra and a scored comparison.

:func:`run_demo` (``captum-rig demo --out DIR``) needs nothing but the package: the
synthetic shapes (:mod:`captum_rig.synthetic`), two small CNNs trained on them and three
public-domain / CC0 photographs, shipped in ``captum_rig/assets/`` (rebuilt by
``scripts/make_demo_assets.py``).

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from captum_rig.models import Normalize

__all__ = [
    "ASSETS",
    "PHOTOS",
    "DEMO_MODELS",
    "build_demo_model",
    "load_demo_model",
    "load_photo",
    "evaluate_accuracy",
    "mask_energy",
    "deletion_insertion",
    "run_demo",
]

ASSETS = Path(__file__).resolve().parent / "assets"
"""Folder of the shipped demo data."""

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

DEMO_MODELS: Dict[str, str] = {
    "natural": "demo_natural.pt",
    "lowrank8": "demo_lowrank8.pt",
}
"""Demo model name → weights file in :data:`ASSETS` (a ``state_dict``)."""

SHAPES_TEST_SEED = 2
"""Seed of the synthetic test split the demo models were scored on (train seed: 1)."""

SHAPES_MEAN = (0.5, 0.5, 0.5)
SHAPES_STD = (0.25, 0.25, 0.25)


def build_demo_model(num_classes: int = 6) -> nn.Sequential:
    r"""The demo's tiny CNN (≈ 24k parameters), randomly initialised.

    Per-channel standardization first (the model takes [0, 1] pixels, so that ranks are
    truncated in pixel space), then three 3×3 conv + BatchNorm + ReLU blocks (16, 32, 64
    channels, max-pooling after the first two), global average pooling and a linear head.
    Works on any image size ``>= 4``; trained on 32×32.

    Args:
        num_classes (int): number of outputs. Default: 6, the synthetic shapes.

    Returns:
        nn.Sequential: maps ``(N, 3, H, W)`` images in [0, 1] to ``(N, num_classes)``
        logits.

    Examples:
        >>> build_demo_model()(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 6])
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")

    def block(c_in: int, c_out: int, pool: bool) -> list:
        layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)]
        return layers + [nn.ReLU()] + ([nn.MaxPool2d(2)] if pool else [])

    return nn.Sequential(
        Normalize(SHAPES_MEAN, SHAPES_STD),
        *block(3, 16, True),
        *block(16, 32, True),
        *block(32, 64, False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )


def load_demo_model(name: str = "natural") -> nn.Sequential:
    r"""A shipped demo model, in eval mode, weights loaded with ``weights_only=True``.

    Args:
        name (str): ``"natural"`` (trained on the synthetic shapes as they are) or
            ``"lowrank8"`` (trained on their rank-8 approximations).

    Returns:
        nn.Sequential: :func:`build_demo_model` with the trained weights.

    Examples:
        >>> load_demo_model("natural")(torch.rand(1, 3, 32, 32)).shape
        torch.Size([1, 6])
    """
    if name not in DEMO_MODELS:
        raise ValueError(f"name must be one of {list(DEMO_MODELS)}, got {name!r}")
    model = build_demo_model()
    state = torch.load(ASSETS / DEMO_MODELS[name], map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


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


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 256
) -> float:
    r"""Top-1 accuracy of ``model`` on ``images`` ``(N, C, H, W)`` and ``labels`` ``(N,)``."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        logits = model(images[i : i + batch_size])
        correct += int((logits.argmax(1) == labels[i : i + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(images), 1)


# --------------------------------------------------------------------------------------
# Scoring attributions against known object masks
# --------------------------------------------------------------------------------------


def _pixel_importance(attributions: Tensor) -> Tensor:
    """``(N, C, H, W)`` → ``(N, H·W)``: absolute attribution summed over channels."""
    if not isinstance(attributions, Tensor) or attributions.dim() != 4:
        raise ValueError(
            "attributions must be a tensor of shape (N, C, H, W), got "
            f"{getattr(attributions, 'shape', type(attributions).__name__)}"
        )
    return attributions.detach().abs().sum(1).flatten(1).double()


def mask_energy(attributions: Tensor, masks: Tensor, tolerance: int = 0) -> Tensor:
    r"""Share of each map's absolute attribution that lies on the object mask.

    The energy-based pointing game: ``Σ_{p ∈ mask} Σ_c |a_{c,p}| / Σ_p Σ_c |a_{c,p}|``.
    1 means all attribution is on the object; a map spread evenly over the image scores
    the mask's area fraction. An all-zero map scores NaN.

    Args:
        attributions (Tensor): ``(N, C, H, W)``.
        masks (Tensor): ``(N, H, W)`` bool, True on the object.
        tolerance (int): grow each mask by this many pixels first (a square
            neighbourhood), so that attribution on the object's outline counts as on
            the object, like the pointing game's tolerance margin. Default: 0.

    Returns:
        Tensor: ``(N,)`` float64 in [0, 1].

    Examples:
        >>> a = torch.zeros(1, 3, 4, 4); a[0, :, 0, 0] = 1.0
        >>> m = torch.zeros(1, 4, 4, dtype=torch.bool); m[0, :2, :2] = True
        >>> mask_energy(a, m)
        tensor([1.], dtype=torch.float64)
    """
    mass = _pixel_importance(attributions)
    if not isinstance(masks, Tensor) or tuple(masks.shape) != (
        attributions.shape[0],
        *attributions.shape[2:],
    ):
        raise ValueError(
            f"masks must have shape (N, H, W) = {(attributions.shape[0], *attributions.shape[2:])}"
            f", got {getattr(masks, 'shape', type(masks).__name__)}"
        )
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        raise ValueError(f"tolerance must be an int >= 0, got {tolerance!r}")
    region = _dilate(masks, tolerance) if tolerance else masks
    on = (mass * region.flatten(1).to(mass.device, mass.dtype)).sum(1)
    total = mass.sum(1)
    return torch.where(total > 0, on / total.clamp_min(1e-300), torch.nan)


def _dilate(masks: Tensor, pixels: int) -> Tensor:
    region = masks.unsqueeze(1).double()
    return torch.nn.functional.max_pool2d(region, 2 * pixels + 1, 1, pixels)[:, 0] > 0


def mean_colour_baseline(images: Tensor) -> Tensor:
    """Each image replaced by its per-channel mean colour (shape information removed)."""
    return images.mean(dim=(-2, -1), keepdim=True).expand_as(images)


@torch.no_grad()
def deletion_insertion(
    model: Callable[[Tensor], Tensor],
    images: Tensor,
    attributions: Tensor,
    target: Tensor,
    n_steps: int = 16,
    baseline: Optional[Tensor] = None,
    batch_size: int = 512,
) -> Dict[str, Tensor]:
    r"""Deletion and insertion curves (Petsiuk et al., RISE, 2018) and their AUCs.

    Pixels are ranked by absolute attribution summed over channels (most important
    first; ties by pixel index). At step ``s = 0..n_steps`` the top
    ``round(s / n_steps · H·W)`` pixels (all channels) are

    - **deleted**: replaced by the baseline in the image: the target's softmax
      probability should fall fast, so a *lower* area under the curve is better;
    - **inserted**: copied from the image into the baseline: the probability should rise
      fast, a *higher* area is better.

    The area is the trapezoid rule over the deleted/inserted fraction in [0, 1].

    Args:
        model (Callable): takes ``(N, C, H, W)`` images, returns logits ``(N, classes)``.
        images (Tensor): ``(N, C, H, W)``.
        attributions (Tensor): ``(N, C', H, W)``, ``C'`` = ``C`` or 1.
        target (Tensor): ``(N,)`` class indices scored.
        n_steps (int): number of steps. Default: 16.
        baseline (Tensor, optional): ``(N, C, H, W)`` what deleted pixels become and
            insertion starts from. Default: :func:`mean_colour_baseline` (each image's
            mean colour: no shape left, not far from the image's colour statistics).
        batch_size (int): images per forward pass.

    Returns:
        dict: ``fractions`` ``(n_steps + 1,)``; ``deletion`` and ``insertion`` curves
        ``(N, n_steps + 1)``; ``deletion_auc`` and ``insertion_auc`` ``(N,)``.
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(
            f"images must be a tensor (N, C, H, W), got {getattr(images, 'shape', images)}"
        )
    n, c, h, w = images.shape
    importance = _pixel_importance(attributions)
    if importance.shape != (n, h * w):
        raise ValueError(
            f"attributions must have shape ({n}, C, {h}, {w}), got {tuple(attributions.shape)}"
        )
    target = torch.as_tensor(target, device=images.device).reshape(-1)
    if target.numel() != n:
        raise ValueError(f"target must hold one class per image ({n}), got {target.numel()}")
    if baseline is None:
        baseline = mean_colour_baseline(images)
    if baseline.shape != images.shape:
        raise ValueError(
            f"baseline must have the images' shape {tuple(images.shape)}, "
            f"got {tuple(baseline.shape)}"
        )
    # position of every pixel in the ranking (0 = most important), stable for ties
    order = torch.argsort(-importance, dim=1, stable=True)
    position = torch.empty_like(order)
    position.scatter_(1, order, torch.arange(h * w).expand(n, -1).contiguous())
    counts = [round(s / n_steps * h * w) for s in range(n_steps + 1)]
    fractions = torch.tensor([k / (h * w) for k in counts], dtype=torch.float64)

    def curve(start: Tensor, end: Tensor) -> Tensor:
        # step s: the top counts[s] pixels taken from `end`, the rest from `start`
        chosen = torch.stack([position < k for k in counts], 1).view(n, -1, 1, h, w)
        mixed = torch.where(chosen, end.unsqueeze(1), start.unsqueeze(1)).reshape(-1, c, h, w)
        probs = []
        for i in range(0, mixed.shape[0], batch_size):
            probs.append(torch.softmax(model(mixed[i : i + batch_size]).double(), dim=1))
        p = torch.cat(probs).view(n, n_steps + 1, -1)
        return p.gather(2, target.view(n, 1, 1).expand(n, n_steps + 1, 1))[..., 0]

    deletion = curve(images, baseline)
    insertion = curve(baseline, images)
    return {
        "fractions": fractions,
        "deletion": deletion,
        "insertion": insertion,
        "deletion_auc": torch.trapezoid(deletion, fractions, dim=1),
        "insertion_auc": torch.trapezoid(insertion, fractions, dim=1),
    }


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
    "deletion_insertion": "deletion_insertion.png",
    "scores": "scores.csv",
    "report": "report.md",
}
"""What :func:`run_demo` writes: key of the returned dict → file name."""

_SPECTRUM_RANKS = (1, 2, 4, 8, 16, 32)
# Ranks the spectra are computed at: every rank up to 6, then sparser (32 is full).
_SPECTRUM_GRID = (0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32)


class _Stage:
    """Times the demo's stages into a dict, in seconds."""

    def __init__(self, timings: Dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.timings[self.name] = time.perf_counter() - self.t0


def _check_count(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def _save_figure(fig, path: Path, dpi: int) -> None:
    fig.savefig(path, dpi=dpi, format="png", facecolor="white")
    import matplotlib.pyplot as plt

    plt.close(fig)  # a no-op for standalone Figures, frees pyplot ones


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
) -> Dict[str, Path]:
    r"""Runs the demo and writes its figures, scores and a Markdown report to ``out_dir``.

    Everything comes from the package: the synthetic shapes test split (seed
    :data:`SHAPES_TEST_SEED`), the two shipped CNNs and a shipped photo; no network.
    Attributions are for the *natural* model and the true class.

    Written (see :data:`OUTPUTS`):

    - ``comparison_shapes.png``: ``n_images`` synthetic images, object outlined, and the
      maps of every method (shared colour scale: equal colour = equal share of the
      map's attribution mass); ``comparison_photo.png``: the same on the photo.
    - ``rig_channel_max.png``: RIG in the paper's exact Eq. (3) form (channel max).
    - ``rank_gallery.png`` / ``rank_gallery_reverse.png``: the photo at ranks 1..full,
      and with its top ranks removed.
    - ``rank_spectra.png``: accuracy against rank, kept and removed, for both models.
    - ``deletion_insertion.png`` and ``scores.csv``: mean deletion/insertion curves and
      per-method scores on ``n_eval`` images (see :func:`mask_energy`,
      :func:`deletion_insertion`; deleted pixels become the image's mean colour).
    - ``report.md``: ties it together, with the numbers.

    All files are first written to a temporary folder inside ``out_dir`` and moved into
    place (``os.replace``) only when every one is complete: a failed run leaves no
    partial output.

    Args:
        out_dir (str or PathLike): output folder, created if missing; files of the same
            names are replaced.
        methods (sequence of str, optional): registry names (``rig``, ``ig``,
            ``blurig``, ``saliency``; see :mod:`captum_rig.methods`); None: all.
        n_images (int): synthetic images in the comparison figure. Default: 4.
        n_eval (int): synthetic images scored. Default: 60.
        n_spectrum (int): synthetic images for the rank spectra and accuracies.
            Default: 200.
        n_steps (int): path steps of RIG (ranks), IG and BlurIG. Default: 32.
        score_steps (int): deletion/insertion steps. Default: 16.
        photo (str): which shipped photo (see :data:`PHOTOS`). Default: ``"chelsea"``.
        dpi (int): figure resolution. Default: 110.
        timings (dict, optional): filled with the seconds each stage took.

    Returns:
        dict[str, Path]: :data:`OUTPUTS` key → path of the written file.
    """
    from captum_rig.methods import METHOD_NAMES, parse_methods
    from captum_rig.synthetic import SHAPES, make_shapes

    chosen = parse_methods(list(METHOD_NAMES) if methods is None else list(methods))
    n_images = _check_count(n_images, "n_images", 1)
    n_eval = _check_count(n_eval, "n_eval", 1)
    n_spectrum = _check_count(n_spectrum, "n_spectrum", 1)
    n_steps = _check_count(n_steps, "n_steps", 1)
    score_steps = _check_count(score_steps, "score_steps", 1)
    dpi = _check_count(dpi, "dpi", 10)
    if photo not in PHOTOS:
        raise ValueError(f"photo must be one of {list(PHOTOS)}, got {photo!r}")
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir must be a path, got {type(out_dir).__name__}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {str(out)!r} exists and is not a folder")
    timings = {} if timings is None else timings
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=".captum-rig-demo-"))
    try:
        paths = _run_demo(
            staging,
            chosen,
            n_images,
            n_eval,
            n_spectrum,
            n_steps,
            score_steps,
            photo,
            dpi,
            timings,
            make_shapes,
            SHAPES,
        )
        written = {}
        for key, tmp in paths.items():
            os.chmod(tmp, 0o644)
            os.replace(tmp, out / tmp.name)
            written[key] = out / tmp.name
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _run_demo(
    staging: Path,
    chosen: List[Any],
    n_images: int,
    n_eval: int,
    n_spectrum: int,
    n_steps: int,
    score_steps: int,
    photo: str,
    dpi: int,
    timings: Dict[str, float],
    make_shapes: Callable,
    shape_names: Sequence[str],
) -> Dict[str, Path]:
    from matplotlib.figure import Figure

    from captum_rig.spectrum import plot_spectra, rank_spectrum
    from captum_rig.viz import (
        plot_attributions,
        plot_curves,
        plot_rank_gallery,
        plot_rig_channel_max,
    )

    paths = {key: staging / name for key, name in OUTPUTS.items()}
    steps = {m.name: n_steps for m in chosen}

    with _Stage(timings, "setup"):
        models = {name: load_demo_model(name) for name in DEMO_MODELS}
        model = models["natural"]
        data = make_shapes(max(n_images, n_eval, n_spectrum), seed=SHAPES_TEST_SEED)
        picture = load_photo(photo)

    # (i) comparison figures -----------------------------------------------------------
    with _Stage(timings, "comparison figures"):
        x, y, masks = data.images[:n_images], data.labels[:n_images], data.masks[:n_images]
        with torch.no_grad():
            probs = torch.softmax(model(x), 1)
        attrs = {m.title: _attribute(m, model, x, y, steps[m.name]) for m in chosen}
        labels = [f"{shape_names[int(t)]} (p={float(p[t]):.2f})" for t, p in zip(y, probs)]
        fig, _ = plot_attributions(
            x,
            attrs,
            masks=masks,
            row_labels=labels,
            shared_scale=True,
            title="Natural model, true class; object outlined; shared scale",
        )
        _save_figure(fig, paths["comparison_shapes"], dpi)

        xp = picture.unsqueeze(0)
        with torch.no_grad():
            photo_class = int(model(xp).argmax(1))
        photo_attrs = {
            m.title: _attribute(m, model, xp, photo_class, steps[m.name]) for m in chosen
        }
        fig, _ = plot_attributions(
            xp,
            photo_attrs,
            method="blended_heat_map",
            row_labels=[f"{photo} → {shape_names[photo_class]}"],
            title="The shapes model on a photo (per-map scale)",
            panel_size=2.4,
        )
        _save_figure(fig, paths["comparison_photo"], dpi)

        fig, _ = plot_rig_channel_max(
            model,
            x,
            target=y,
            n_steps=n_steps,
            masks=masks,
            row_labels=labels,
            title="RIG, Eq. (3): max over channels",
        )
        _save_figure(fig, paths["rig_channel_max"], dpi)

    # (ii) rank galleries ---------------------------------------------------------------
    with _Stage(timings, "rank galleries"):
        fig, _ = plot_rank_gallery(picture, title=f"{photo}: rank-k images (kept)")
        _save_figure(fig, paths["rank_gallery"], dpi)
        fig, _ = plot_rank_gallery(
            picture, reverse=True, title=f"{photo}: top k ranks removed (mid-grey = 0)"
        )
        _save_figure(fig, paths["rank_gallery_reverse"], dpi)

    # (iii) rank spectra ------------------------------------------------------------------
    with _Stage(timings, "rank spectra"):
        xs, ys = data.images[:n_spectrum], data.labels[:n_spectrum]
        titles = {"natural": "natural", "lowrank8": "trained on rank 8"}
        spectra = {
            reverse: {
                titles[name]: rank_spectrum(
                    m,
                    xs,
                    ranks=list(_SPECTRUM_GRID),
                    labels=ys,
                    reverse=reverse,
                    batch_size=512,
                    progress=False,
                )
                for name, m in models.items()
            }
            for reverse in (False, True)
        }
        fig = Figure(figsize=(9, 3.4), layout="constrained")
        axes = fig.subplots(1, 2)
        for ax, reverse in zip(axes, (False, True)):
            plot_spectra(spectra[reverse], ax=ax, metric="accuracy")
            ax.axhline(1 / len(shape_names), color="grey", lw=0.8, ls=":")
        axes[0].set_title("rank-k images (top k kept)")
        axes[1].set_title("top k ranks removed")
        fig.suptitle(f"Accuracy on {len(xs)} synthetic test images; dotted: chance")
        _save_figure(fig, paths["rank_spectra"], dpi)

    # (v) quantitative comparison ---------------------------------------------------------
    with _Stage(timings, "scores"):
        xe, ye, me = data.images[:n_eval], data.labels[:n_eval], data.masks[:n_eval]
        rows, curves_del, curves_ins = [], {}, {}
        g = torch.Generator().manual_seed(0)
        candidates = [(m.title, m.name, m) for m in chosen] + [("random order", "random", None)]
        for title, name, m in candidates:
            t0 = time.perf_counter()
            if m is None:
                a = torch.rand(xe.shape[0], 1, *xe.shape[2:], generator=g)
            else:
                a = _attribute(m, model, xe, ye, steps[m.name])
            seconds = time.perf_counter() - t0
            if m is not None:
                energy, energy_tol = mask_energy(a, me), mask_energy(a, me, tolerance=2)
            else:  # a random map's expected share: the mask's area
                energy = me.flatten(1).double().mean(1)
                energy_tol = _dilate(me, 2).flatten(1).double().mean(1)
            di = deletion_insertion(model, xe, a, ye, n_steps=score_steps)
            curves_del[title] = (di["fractions"].tolist(), di["deletion"].mean(0).tolist())
            curves_ins[title] = (di["fractions"].tolist(), di["insertion"].mean(0).tolist())
            rows.append(
                {
                    "method": name,
                    "title": title,
                    "mask_energy": float(energy.nanmean()),
                    "mask_energy_sd": float(energy[~energy.isnan()].std())
                    if int((~energy.isnan()).sum()) > 1
                    else float("nan"),
                    "mask_energy_2px": float(energy_tol.nanmean()),
                    "deletion_auc": float(di["deletion_auc"].mean()),
                    "insertion_auc": float(di["insertion_auc"].mean()),
                    "seconds": seconds if m is not None else float("nan"),
                }
            )
        fig = Figure(figsize=(9, 3.4), layout="constrained")
        axes = fig.subplots(1, 2)
        plot_curves(
            curves_del,
            ax=axes[0],
            xlabel="fraction of pixels deleted",
            ylabel="p(true class)",
            title="Deletion (lower is better)",
        )
        plot_curves(
            curves_ins,
            ax=axes[1],
            xlabel="fraction of pixels inserted",
            ylabel="p(true class)",
            title="Insertion (higher is better)",
        )
        fig.suptitle(f"Mean over {len(xe)} synthetic images; baseline: each image's mean colour")
        _save_figure(fig, paths["deletion_insertion"], dpi)
        _write_scores(paths["scores"], rows)

    # (iv) the report -------------------------------------------------------------------
    with _Stage(timings, "report"):
        accuracies = {
            name: evaluate_accuracy(m, data.images[:n_spectrum], data.labels[:n_spectrum])
            for name, m in models.items()
        }
        area = float(me.flatten(1).double().mean())
        text = _report(
            rows,
            accuracies,
            spectra,
            area,
            photo,
            shape_names[photo_class],
            n_images,
            n_eval,
            n_spectrum,
            n_steps,
            score_steps,
            timings,
        )
        paths["report"].write_text(text, encoding="utf-8")
    return paths


def _attribute(method: Any, model: nn.Module, x: Tensor, target: Any, n_steps: int) -> Tensor:
    """One registered method's attributions; path methods batch 8 steps of all images."""
    if not method.takes_steps:
        return method.attribute(model, x, target=target)
    return method.attribute(
        model, x, target=target, n_steps=n_steps, internal_batch_size=8 * x.shape[0]
    )


def _write_scores(path: Path, rows: List[Dict[str, Any]]) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _lowrank_remark(kept) -> str:
    s = kept.get("trained on rank 8")
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


def _report(
    rows,
    accuracies,
    spectra,
    area,
    photo,
    photo_class,
    n_images,
    n_eval,
    n_spectrum,
    n_steps,
    score_steps,
    timings,
) -> str:
    import captum

    methods = [r for r in rows if r["method"] != "random"]
    random = next(r for r in rows if r["method"] == "random")
    best_energy = max(methods, key=lambda r: r["mask_energy"])
    best_del = min(methods, key=lambda r: r["deletion_auc"])
    best_ins = max(methods, key=lambda r: r["insertion_auc"])
    rig = next((r for r in methods if r["method"] == "rig"), None)

    def spectrum_row(label: str, s) -> str:
        acc = dict(zip(s.ranks, s.accuracy))
        return (
            f"| {label} | "
            + " | ".join(_fmt(acc.get(k, float("nan")), 2) for k in _SPECTRUM_RANKS)
            + " |"
        )

    kept, removed = spectra[False], spectra[True]

    def spectrum_sentence(label: str, s) -> str:
        acc = s.accuracy
        best = max(range(len(acc)), key=lambda i: (acc[i], -i))
        reach = next(k for k, a in zip(s.ranks, acc) if a >= 0.9 * acc[best])
        full = acc[s.ranks.index(max(s.ranks))]
        return (
            f"*{label}* reaches 90% of its best accuracy ({acc[best]:.2f}, at rank "
            f"{s.ranks[best]}) from rank {reach} on, and scores {full:.2f} on the full "
            "images."
        )

    lines = [
        "# captum-rig demo",
        "",
        "The singular value perspective on model robustness (Jere, Kumar, Koushanfar, "
        "arXiv:2012.03516) on a toy problem that ships with captum-rig: 32×32 synthetic "
        "shapes (six classes, known object masks) and two small CNNs, one trained on the "
        "images as they are (*natural*) and one on their rank-8 approximations.",
        "",
        "## The models and their rank spectra",
        "",
        f"Test accuracy on {n_spectrum} held-out synthetic images: natural "
        f"**{accuracies['natural']:.3f}**, trained on rank 8 **{accuracies['lowrank8']:.3f}** "
        "(chance: 0.167).",
        "",
        "![rank spectra](rank_spectra.png)",
        "",
        " ".join(spectrum_sentence(label, s) for label, s in kept.items()) + _lowrank_remark(kept),
        "",
        "Accuracy on rank-k images (top k singular values of every channel kept):",
        "",
        "| model | " + " | ".join(f"k={k}" for k in _SPECTRUM_RANKS) + " |",
        "|---|" + "---|" * len(_SPECTRUM_RANKS),
        *(spectrum_row(label, s) for label, s in kept.items()),
        "",
        "and with the top k removed:",
        "",
        "| model | " + " | ".join(f"k={k}" for k in _SPECTRUM_RANKS) + " |",
        "|---|" + "---|" * len(_SPECTRUM_RANKS),
        *(spectrum_row(label, s) for label, s in removed.items()),
        "",
        "## Low-rank images",
        "",
        f"The photo *{photo}* (128×128) keeps its outline from a few ranks on and gets "
        "sharper as ranks are added; removing the top ranks leaves the high-rank residue "
        "(edges and texture). The residues are roughly zero-mean and shrink as more ranks "
        "are removed, so each panel is shown as mid-grey + gain × residue with its gain "
        "in the title.",
        "",
        "![rank gallery](rank_gallery.png)",
        "",
        "![rank gallery, reverse](rank_gallery_reverse.png)",
        "",
        "## Attributions",
        "",
        f"Maps for the natural model and the true class on {n_images} synthetic images "
        "(object outlined in orange). All maps share one colour scale: each map is divided "
        "by its total absolute attribution, so equal colour means an equal share of the "
        "map's attribution mass. Column titles name the methods: "
        + ", ".join(r["title"] for r in methods)
        + ".",
        "",
        "![comparison](comparison_shapes.png)",
        "",
        "Blur IG blurs with zero padding (as PAIR's reference implementation does), so its "
        "path darkens the image border and part of its attribution can land there.",
        "",
        "RIG in the exact form of the paper's Eq. (3), each rank's gradient maxed over the "
        "colour channels (one map per image; signed, red negative, green positive):",
        "",
        "![RIG channel max](rig_channel_max.png)",
        "",
        f"The same methods on the photo ({photo}); the model has only seen shapes (it calls "
        f"the photo a *{photo_class}*), so this shows what the methods do on a natural "
        "image, not what a photo classifier looks at. Per-map colour scale.",
        "",
        "![photo](comparison_photo.png)",
        "",
        "## Scores against the object masks",
        "",
        f"On {n_eval} held-out synthetic images, true class. *Mask energy*: the share of a "
        "map's absolute attribution (summed over channels) that falls on the object; a "
        f"map spread evenly would score the mask's mean area, **{area:.3f}**. The ±2 px "
        "column counts the object grown by 2 pixels (edges sit on the outline; a random "
        "map scores the grown area). "
        "*Deletion / insertion* (Petsiuk et al. 2018): pixels ranked by absolute "
        f"attribution are replaced in {score_steps} equal steps by the image's mean colour "
        "(deletion: the true class's probability should fall, lower area is better), or "
        "copied into the mean-colour image (insertion: higher is better); areas by the "
        "trapezoid rule over the fraction of pixels. *Random order* ranks pixels at random. "
        f"RIG, IG and BlurIG used {n_steps} steps (RIG: ranks).",
        "",
        "| method | mask energy ↑ | mask energy ±2 px ↑ | deletion AUC ↓ | insertion AUC ↑ "
        "| time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        energy = _fmt(r["mask_energy"])
        if r["method"] != "random" and r["mask_energy_sd"] == r["mask_energy_sd"]:
            energy += f" ± {r['mask_energy_sd']:.3f}"
        lines.append(
            f"| {r['title']} | {energy} | {_fmt(r['mask_energy_2px'])} | "
            f"{_fmt(r['deletion_auc'])} | "
            f"{_fmt(r['insertion_auc'])} | {_fmt(r['seconds'], 2)} |"
        )
    lines += [
        "",
        f"Most mass on the object: **{best_energy['title']}** "
        f"({best_energy['mask_energy']:.3f}); fastest drop under deletion: "
        f"**{best_del['title']}** ({best_del['deletion_auc']:.3f}); fastest rise under "
        f"insertion: **{best_ins['title']}** ({best_ins['insertion_auc']:.3f}). Random "
        f"order: deletion {random['deletion_auc']:.3f}, insertion "
        f"{random['insertion_auc']:.3f}.",
    ]
    if rig is not None:
        lines += [
            "",
            f"RIG puts {rig['mask_energy']:.1%} of its attribution mass on the object "
            f"against {area:.1%} for an even spread.",
        ]
    lines += [
        "",
        "![deletion and insertion](deletion_insertion.png)",
        "",
        "Per-method numbers are also in `scores.csv`. These are scores on one toy "
        "problem and one small model, seeded and reproducible, not a benchmark.",
        "",
        "## Run",
        "",
        f"captum-rig demo, torch {torch.__version__}, captum {captum.__version__}. "
        "Seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()) + ".",
        "",
    ]
    return "\n".join(lines)
