"""What every figure shares: input checks, text that fits, figures and panels, saving.

Figures are standalone ``matplotlib.figure.Figure`` objects with an Agg canvas (no
pyplot state unless asked) and constrained layout. Text that would run off a figure (a
long file name as a row label, a long title) is wrapped and shortened with "…" to the
room it has, measured in the default font. :func:`save_figure` writes any of them.
"""

import os
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import matplotlib as mpl
import numpy as np
import torch
from captum.attr import visualization as captum_viz
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath
from matplotlib.ticker import NullLocator
from torch import Tensor

from captum_rig._checks import check_pixels, check_real
from captum_rig._context import PathLike, atomic_path

__all__ = ["FIGURE_FORMATS", "save_figure"]

FIGURE_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg", ".jpg": "jpg", ".jpeg": "jpg"}
"""Suffix → the format :func:`save_figure` writes (``format=`` may name any of them)."""
_FORMAT_NAMES = ("png", "pdf", "svg", "jpg", "jpeg")

# Resampling and SVD round-off can put pixels a hair outside [0, 1]; they are clipped.
RANGE_SLACK = 1e-3
# Inches: a line of a column title or of the figure title (12 pt with its spacing), the
# pads around them, row labels left of the panels, a colour bar right of them. Rows sit
# close only when the figure has no height to spare: constrained layout spreads it.
_LINE, _PAD = 0.2, 0.12
LABEL_ROOM, COLORBAR_ROOM = 0.35, 0.8


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------


def image_batch(images: Any, name: str = "images") -> Tensor:
    """``(C, H, W)`` or ``(N, C, H, W)`` float in [0, 1] → ``(N, C, H, W)`` float32, CPU."""
    check_pixels(
        images, name=name, ndim=(3, 4), layout="(C, H, W) or (N, C, H, W)", slack=RANGE_SLACK
    )
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.shape[1] not in (1, 3):
        raise ValueError(
            f"{name} must have 1 or 3 channels (dim -3), got shape {tuple(images.shape)}"
        )
    return images.detach().to("cpu", torch.float32).clamp(0, 1)


def check_row_labels(labels: Any, n: int) -> Optional[List[str]]:
    """Display strings, one per image row (not class indices)."""
    if labels is None:
        return None
    if isinstance(labels, str) or not isinstance(labels, Sequence) or len(labels) != n:
        raise ValueError(f"row_labels must be a sequence of {n} strings, got {labels!r}")
    return [str(s) for s in labels]


# --------------------------------------------------------------------------------------
# Text that fits
# --------------------------------------------------------------------------------------

_TEXT_TO_PATH = TextToPath()


def _font_size(rc_key: str) -> float:
    return FontProperties(size=mpl.rcParams[rc_key]).get_size_in_points()


def _text_width(text: str, size: float) -> float:
    """Width in points of ``text`` set in the default font at ``size`` points."""
    width, _, _ = _TEXT_TO_PATH.get_text_width_height_descent(
        text, FontProperties(size=size), ismath=False
    )
    return width


def fit_text(text: str, inches: float, rc_key: str, max_lines: int = 2) -> str:
    """``text`` wrapped into lines no longer than ``inches``; past ``max_lines``, "…tail".

    Words are kept whole where they fit; a word longer than a line (a file name) is cut.
    The last line ends with the text's end (a file name's extension) after an ellipsis;
    with ``max_lines=1`` the line keeps the text's start and end around the ellipsis.
    Line breaks already in ``text`` are kept: each of its lines is fitted to one line (a
    file name over "target 3" stays two phrases, never one wrapped into the other).
    """
    if "\n" in text:
        return "\n".join(fit_text(line, inches, rc_key, 1) for line in text.split("\n"))
    size, room = _font_size(rc_key), 72.0 * inches
    if _text_width(text, size) <= room:
        return text
    if max_lines <= 1:
        return _middle_ellipsis(text.strip(), room, size)
    lines: List[str] = []
    rest = text.strip()
    while rest and len(lines) < max_lines - 1:
        cut = _longest_prefix(rest, room, size)
        space = rest.rfind(" ", 0, cut + 1)
        if cut < len(rest) and space > cut // 2:
            cut = space  # break between words when that keeps half the line
        lines.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        if _text_width(rest, size) > room:
            keep = len(rest)
            while keep > 1 and _text_width("…" + rest[-keep:], size) > room:
                keep -= 1
            rest = "…" + rest[-keep:]
        lines.append(rest)
    return "\n".join(lines)


def _middle_ellipsis(text: str, room: float, size: float) -> str:
    """``start…end`` of ``text``, as long as fits ``room`` points; the end gets the extra
    character (a file name's extension and its last word stay)."""
    keep = len(text) - 1
    while keep > 1:
        head = keep // 2
        short = text[:head] + "…" + text[len(text) - (keep - head) :]
        if _text_width(short, size) <= room:
            return short
        keep -= 1
    return "…" + text[-1:]


def _longest_prefix(text: str, room: float, size: float) -> int:
    low, high = 1, len(text)
    while low < high:  # the longest prefix whose width fits: binary search
        mid = (low + high + 1) // 2
        if _text_width(text[:mid], size) <= room:
            low = mid
        else:
            high = mid - 1
    return low


# --------------------------------------------------------------------------------------
# Figures and panels
# --------------------------------------------------------------------------------------


def standalone_figure(figsize: Tuple[float, float], use_pyplot: bool = False) -> Figure:
    """A standalone Figure (no pyplot state) with an Agg canvas, so it can be drawn."""
    if use_pyplot:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize, layout="constrained")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_and_axes(ax: Optional[Axes], figsize: Tuple[float, float]) -> Tuple[Figure, Axes]:
    """``ax`` and its figure, or a new standalone figure with one axes."""
    if ax is None:
        fig = standalone_figure(figsize)
        return fig, fig.add_subplot()
    return ax.figure, ax


def panel_inches(panel_size: float, height: int, width: int) -> Tuple[float, float]:
    """(width, height) of a panel: the image's aspect ratio, longer side ``panel_size``."""
    if width >= height:
        return panel_size, panel_size * height / width
    return panel_size * width / height, panel_size


def panel_grid(
    nrows: int,
    ncols: int,
    panel: Tuple[float, float],
    use_pyplot: bool,
    *,
    extra_width: float = 0.0,
    column_title_lines: int = 1,
    title: Optional[str] = None,
) -> Tuple[Figure, np.ndarray]:
    """A grid of ``nrows × ncols`` panels of ``panel`` inches with room for the titles."""
    width = panel[0] * ncols + extra_width
    top = _PAD + _LINE * column_title_lines
    lines = _title_lines(title, width)
    if lines:
        top += _PAD + _LINE * lines
    fig = standalone_figure((width, panel[1] * nrows + top), use_pyplot)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def set_title(fig: Figure, title: Optional[str]) -> None:
    """The figure's title, wrapped to its width (three lines at most)."""
    if title:
        fig.suptitle(fit_text(str(title), 0.95 * fig.get_figwidth(), "figure.titlesize", 3))


def _title_lines(title: Optional[str], inches: float) -> int:
    """How many lines :func:`set_title` will use for ``title`` in a figure ``inches`` wide."""
    if not title:
        return 0
    return fit_text(str(title), 0.95 * inches, "figure.titlesize", 3).count("\n") + 1


def hwc(image: Tensor) -> np.ndarray:
    """``(C, H, W)`` → ``(H, W, 3)`` numpy in [0, 1]; grey images become three channels."""
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return image.permute(1, 2, 0).numpy()


def bare(ax: Axes) -> None:
    """Drops the tick positions of a picture panel (Captum hides their marks and labels).

    Hidden ticks still cost: every layout pass places them and measures their empty
    labels. Without them a figure of picture panels draws the same pixels in about two
    thirds of the time.
    """
    ax.xaxis.set_major_locator(NullLocator())
    ax.yaxis.set_major_locator(NullLocator())


def row_label(ax: Axes, text: str, inches: float) -> None:
    """``text`` left of a bare panel, fitted to ``inches``, where tick labels would put it."""
    # The label sits left of the (empty) tick labels: keep that gap without the ticks.
    tick = mpl.rcParams["ytick.major.pad"] + mpl.rcParams["ytick.major.size"] * {
        "in": 0.0,
        "inout": 0.5,
        "out": 1.0,
    }.get(mpl.rcParams["ytick.direction"], 1.0)
    ax.set_ylabel(fit_text(text, inches, "axes.labelsize"), labelpad=ax.yaxis.labelpad + tick)


def show_image(fig: Figure, ax: Axes, image_hwc: np.ndarray, title: Optional[str]) -> None:
    """Draws an ``(H, W, 3)`` image in [0, 1] with Captum, as a bare panel."""
    # Captum's "original_image" mode ignores the attribution but still normalises it, so
    # it gets a constant map (an all-zero one would make its scale zero).
    captum_viz.visualize_image_attr(
        np.ones(image_hwc.shape[:2]),
        np.clip(image_hwc, 0.0, 1.0),
        method="original_image",
        plt_fig_axis=(fig, ax),
        use_pyplot=False,
        title=title,
    )
    bare(ax)


# --------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------


def save_figure(
    fig: Figure,
    path: PathLike,
    *,
    dpi: Optional[float] = None,
    format: Optional[str] = None,
    tight: bool = False,
) -> Path:
    r"""Writes ``fig`` to ``path`` whole or not at all, then closes it.

    The file is written to a temporary name beside ``path`` and renamed when complete
    (:func:`captum_rig._context.atomic_path`): a failure never leaves a partial file,
    and an existing file at ``path`` stays as it was. The figure is closed afterwards,
    also on error (a pyplot figure leaves pyplot's list; a standalone one is left to the
    garbage collector).

    Args:
        fig (Figure): the figure, e.g. from any ``plot_*`` function of this package.
        path (str or PathLike): the file; its folder must exist.
        dpi (float, optional): resolution; None: matplotlib's ``savefig.dpi`` setting
            (by default the figure's own, 100).
        format (str, optional): ``"png"``, ``"pdf"``, ``"svg"``, ``"jpg"`` or
            ``"jpeg"``; None: from the suffix of ``path`` (``.png``, ``.pdf``, ``.svg``,
            ``.jpg``, ``.jpeg``, in any case; :data:`FIGURE_FORMATS`).
        tight (bool): crop the file to what is drawn (matplotlib's
            ``bbox_inches="tight"``, with its small pad): a title or label wider than
            the figure is kept whole and empty margins go. False: the figure's own
            size (default: False).

    Returns:
        Path: ``path``.

    Raises:
        TypeError: ``fig`` is not a Figure, ``path`` not a path, ``dpi`` not a number,
            ``tight`` not a bool.
        ValueError: ``path`` has an unknown suffix (and no ``format``), ``format`` is
            unknown, or ``dpi`` is not positive.

    Examples:
        >>> fig = Figure(figsize=(2, 2))
        >>> _ = fig.add_subplot().plot([0, 1], [1, 0])
        >>> save_figure(fig, "line.svg").name
        'line.svg'
        >>> fig = Figure(figsize=(2, 2))
        >>> _ = fig.suptitle("a title wider than the two-inch figure it belongs to")
        >>> save_figure(fig, "title.png", dpi=50, tight=True).name  # the title kept whole
        'title.png'
        >>> save_figure(Figure(), "line.gif")
        Traceback (most recent call last):
        ...
        ValueError: path 'line.gif' has an unknown suffix '.gif': use one of .png, .pdf, ...
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    try:
        try:
            path = Path(os.fspath(path))
        except TypeError:
            raise TypeError(f"path must be a str or PathLike, got {type(path).__name__}") from None
        fmt = _figure_format(path, format)
        if dpi is not None:
            dpi = check_real(dpi, "dpi", strict=True)
        if not isinstance(tight, bool):
            raise TypeError(f"tight must be a bool, got {type(tight).__name__}")
        bbox = {"bbox_inches": "tight"} if tight else {}
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, **bbox)
        return path
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)  # a no-op for standalone figures, frees pyplot ones


def _figure_format(path: Path, format: Optional[str]) -> str:
    """The format to write ``path`` in: ``format`` when given, else from the suffix."""
    if format is not None:
        if not isinstance(format, str) or format.lower() not in _FORMAT_NAMES:
            raise ValueError(f"format must be one of png, pdf, svg, jpg, jpeg, got {format!r}")
        return format.lower()
    suffix = path.suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise ValueError(
            f"path {str(path)!r} has an unknown suffix {path.suffix!r}: use one of "
            f"{', '.join(FIGURE_FORMATS)}, or pass format="
        )
    return FIGURE_FORMATS[suffix]
