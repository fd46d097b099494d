"""Tests for captum_rig.viz._figure: layout (colour bar, labels, titles, aspect ratio),
standalone figures, and save_figure."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from captum_rig.spectrum import RankSpectrum
from captum_rig.viz import plot_attributions, plot_rank_gallery, plot_spectra

from ._helpers import LONG_NAME, inside_figure, pixels

# -- layout: colour bar, labels, titles, aspect ratio ----------------------------------


def test_one_colour_bar_beside_the_maps(image):
    """A colour bar is an extra axes with the heat map's colours and limits, and a label."""
    images = torch.stack([image, image.flip(-1)])
    attrs = {"IG": torch.randn(2, 3, 32, 32), "RIG": torch.randn(2, 3, 32, 32)}
    fig, axes = plot_attributions(images, attrs, sign="all")
    extra = [ax for ax in fig.axes if ax not in set(axes.ravel())]
    assert len(extra) == 1, f"expected one colour bar axes, got {len(extra)}"
    bar = extra[0]
    heat = axes[0, 1].images[-1]
    assert bar.get_ylim() == pytest.approx((-1.0, 1.0)), "sign='all' maps span -1..1"
    assert heat.get_clim() == pytest.approx((-1.0, 1.0)), "the bar reads the maps' limits"
    assert "per-map" in bar.get_ylabel(), f"label must name the scale: {bar.get_ylabel()!r}"
    assert inside_figure(fig, bar), "the colour bar is cut off"
    assert inside_figure(fig, bar.yaxis.label), "the colour bar's label is cut off"
    column = pixels(fig)[::-1][:, int(bar.get_window_extent().x0) + 3]
    assert len(np.unique(column[..., :3], axis=0)) > 20, "the colour bar shows a gradient"

    small, small_axes = plot_attributions(image, {"IG": torch.randn(3, 32, 32)}, panel_size=1.0)
    small_bar = [ax for ax in small.axes if ax not in set(small_axes.ravel())][0]
    assert inside_figure(small, small_bar.yaxis.label), "the label fits a one-row bar"

    _, shared_axes = plot_attributions(images, attrs, shared_scale=True)
    shared_bar = [ax for ax in shared_axes[0, 0].figure.axes if ax not in set(shared_axes.ravel())]
    assert "one scale" in shared_bar[0].get_ylabel(), "a shared scale says so"

    fig, axes = plot_attributions(images, attrs, show_colorbar=False)
    assert len(fig.axes) == axes.size, "show_colorbar=False draws no colour bar"


def test_long_row_labels_stay_inside_the_figure(image):
    """File names as row labels are shortened to the panel: start and end stay visible."""
    images = torch.stack([image, image.flip(-1)])
    fig, axes = plot_attributions(
        images, {"IG": torch.randn(2, 3, 32, 32)}, row_labels=[LONG_NAME, "short.png"]
    )
    label = axes[0, 0].yaxis.label
    assert inside_figure(fig, label), "a long row label runs off the figure"
    text = label.get_text()
    assert text.startswith("holiday") and text.endswith(".jpeg"), f"lost start or end: {text}"
    assert "…" in text, "a shortened label shows where text was left out"
    assert axes[1, 0].get_ylabel() == "short.png", "a label that fits is left alone"

    fig, axes = plot_rank_gallery(image, ranks=(1, None), row_labels=[LONG_NAME])
    assert inside_figure(fig, axes[0, 0].yaxis.label), "gallery row label runs off"


@pytest.mark.parametrize("n_methods", [1, 3])
def test_titles_fit_the_figure(image, n_methods):
    """A long figure title and long method names stay inside the figure, even one column."""
    title = "Rank Integrated Gradients next to Integrated Gradients on a photo of a cat"
    attrs = {
        f"Method number {j} with a long name": torch.randn(3, 32, 32) for j in range(n_methods)
    }
    fig, axes = plot_attributions(image, attrs, title=title)
    suptitle = fig.get_suptitle()
    assert suptitle.replace("\n", " ") == title, "the title is wrapped, not cut"
    assert inside_figure(fig, fig._suptitle), "the figure title is clipped"
    for j in range(1, n_methods + 1):
        assert inside_figure(fig, axes[0, j].title), f"column {j} title is clipped"
        assert axes[0, j].get_title().replace("\n", " ").startswith("Method number"), (
            "method names keep their start"
        )


@pytest.mark.parametrize("shape", [(48, 64), (64, 48)], ids=["4:3 landscape", "3:4 portrait"])
def test_panels_follow_the_image_aspect_ratio(image, shape):
    """Rows and columns of non-square images sit close: no large gaps between panels."""
    images = torch.rand(3, 3, *shape)
    fig, axes = plot_attributions(images, {"IG": torch.randn(3, 3, *shape)}, show_colorbar=False)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    boxes = [[ax.get_window_extent(r) for ax in row] for row in axes]
    height, width = boxes[1][0].height, boxes[1][0].width
    assert width / height == pytest.approx(shape[1] / shape[0], rel=0.05), "image aspect"
    row_gap = boxes[1][0].y0 - boxes[2][0].y1
    col_gap = boxes[1][1].x0 - boxes[1][0].x1
    assert row_gap < 0.2 * height, f"gap of {row_gap:.0f}px between rows {height:.0f}px high"
    assert col_gap < 0.2 * width, f"gap of {col_gap:.0f}px between columns {width:.0f}px wide"
    fig, axes = plot_rank_gallery(images[:2], ranks=(1, 4, None))
    fig.canvas.draw()
    a, b = axes[0, 0].get_window_extent(), axes[1, 0].get_window_extent()
    assert a.y0 - b.y1 < 0.2 * a.height, "gallery rows of non-square images sit close"


def test_figures_are_standalone(image):
    """Figures are made without pyplot state unless use_pyplot=True."""
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plot_attributions(image, {"IG": torch.randn(3, 32, 32)})
    plot_rank_gallery(image, ranks=(1, None))
    plot_spectra(RankSpectrum([0, 1], [0.5, 1.0], None, 2))
    assert plt.get_fignums() == before, "a figure was registered with pyplot"
    fig, _ = plot_attributions(image, {"IG": torch.randn(3, 32, 32)}, use_pyplot=True)
    assert fig.number in plt.get_fignums(), "use_pyplot=True makes a pyplot figure"
    plt.close(fig)


# -- panels without ticks ----------------------------------------------------------------


def test_bare_panels_keep_the_row_label_where_ticks_put_it(image):
    """A bare picture panel's row label sits exactly where Captum's tick-ful panel had it."""
    from captum.attr import visualization as captum_viz

    from captum_rig.viz._figure import row_label, show_image, standalone_figure

    boxes = []
    for bare in (False, True):
        fig = standalone_figure((3, 2))
        ax = fig.add_subplot()
        picture = image.permute(1, 2, 0).numpy()
        if bare:
            show_image(fig, ax, picture, "t")
            row_label(ax, "circle (p=0.91)", 1.9)
        else:
            captum_viz.visualize_image_attr(
                np.ones((32, 32)),
                picture,
                method="original_image",
                plt_fig_axis=(fig, ax),
                use_pyplot=False,
                title="t",
            )
            ax.set_ylabel("circle (p=0.91)")
        assert bare == (len(ax.get_xticks()) == 0), "bare panels have no tick positions"
        pixels(fig)
        boxes.append([*ax.yaxis.label.get_window_extent().bounds, *ax.get_position().bounds])
    assert boxes[0] == pytest.approx(boxes[1], abs=1e-6), "label and panel did not move"


# -- save_figure -------------------------------------------------------------------------


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1.5))
    fig.add_subplot().plot([0, 1], [1, 0])
    return fig


_MAGIC = {"png": b"\x89PNG", "pdf": b"%PDF", "svg": b"<?xml", "jpg": b"\xff\xd8\xff"}


@pytest.mark.parametrize(
    "name, kind",
    [("a.png", "png"), ("a.pdf", "pdf"), ("a.svg", "svg"), ("a.jpg", "jpg"), ("a.JPEG", "jpg")],
)
def test_save_figure_takes_the_format_from_the_suffix(tmp_path, name, kind):
    """The suffix (any case) picks the format; the path comes back; nothing else is left."""
    from captum_rig.viz import save_figure

    got = save_figure(_figure(), str(tmp_path / name))
    assert got == tmp_path / name, "the path comes back as a Path"
    assert got.read_bytes().startswith(_MAGIC[kind]), f"{name} is not a {kind} file"
    assert [p.name for p in tmp_path.iterdir()] == [name], "no temporary file is left"


def test_save_figure_format_and_dpi(tmp_path):
    """format= overrides the suffix; dpi sets the pixel size (default: the figure's own)."""
    from PIL import Image

    from captum_rig.viz import save_figure

    save_figure(_figure(), tmp_path / "a.out", format="png", dpi=50)
    with Image.open(tmp_path / "a.out") as im:
        assert im.format == "PNG" and im.size == (100, 75), (im.format, im.size)
    save_figure(_figure(), tmp_path / "b.png")
    with Image.open(tmp_path / "b.png") as im:
        assert im.size == (200, 150), f"the figure's 100 dpi by default, got {im.size}"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(path="figure.gif"), ValueError, r"path '.*figure.gif' has an unknown suffix '.gif'"),
        (dict(path="figure"), ValueError, r"path '.*figure' has an unknown suffix ''"),
        (dict(format="bmp"), ValueError, "format must be one of png, pdf, svg, jpg, jpeg"),
        (dict(dpi=0), ValueError, "dpi must be > 0"),
        (dict(dpi="high"), TypeError, "dpi must be a real number"),
        (dict(path=3), TypeError, "path must be a str or PathLike, got int"),
        (dict(tight="yes"), TypeError, "tight must be a bool, got str"),
    ],
)
def test_save_figure_refuses_bad_arguments_and_still_closes(tmp_path, kwargs, error, match):
    """Unknown suffixes and formats, bad dpi or path: an error naming it, no file, closed."""
    import matplotlib.pyplot as plt

    from captum_rig.viz import save_figure

    fig = plt.figure()
    path = kwargs.pop("path", "figure.png")
    path = tmp_path / path if isinstance(path, str) else path
    with pytest.raises(error, match=match):
        save_figure(fig, path, **kwargs)
    assert fig.number not in plt.get_fignums(), "the figure is closed on error too"
    assert list(tmp_path.iterdir()) == [], "nothing is written"


def test_save_figure_tight_crops_to_what_is_drawn(tmp_path):
    """tight=True: a title wider than the figure is kept whole (the file grows past the
    figure's width), the same file as savefig.bbox='tight'; False keeps the figure's size."""
    from PIL import Image

    from captum_rig.viz import FIGURE_FORMATS, save_figure

    def titled():
        fig = _figure()
        fig.suptitle("a title far wider than the two-inch figure that it belongs to")
        return fig

    save_figure(titled(), tmp_path / "plain.png", dpi=50)
    save_figure(titled(), tmp_path / "tight.png", dpi=50, tight=True)
    with matplotlib.rc_context({"savefig.bbox": "tight"}):
        save_figure(titled(), tmp_path / "rc.png", dpi=50)
    with Image.open(tmp_path / "plain.png") as plain, Image.open(tmp_path / "tight.png") as tight:
        assert plain.size == (100, 75), f"the figure's own size without tight, got {plain.size}"
        assert tight.size[0] > 100, f"the wide title is cropped away: {tight.size}"
    assert (tmp_path / "tight.png").read_bytes() == (tmp_path / "rc.png").read_bytes()
    assert set(FIGURE_FORMATS) == {".png", ".pdf", ".svg", ".jpg", ".jpeg"}


def test_save_figure_is_atomic_and_closes_the_figure(tmp_path, monkeypatch):
    """A failing savefig leaves the old file intact and no temporary; the figure is closed."""
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from captum_rig.viz import save_figure

    target = tmp_path / "figure.png"
    target.write_bytes(b"old")
    fig = plt.figure()
    fig.add_subplot().plot([0, 1])

    def half_then_fail(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_figure(fig, target)
    assert target.read_bytes() == b"old", "the old file is untouched"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"], "no partial file left"
    assert fig.number not in plt.get_fignums(), "the figure is closed after a failure"
    monkeypatch.undo()
    fig = plt.figure()
    save_figure(fig, target)
    assert target.read_bytes().startswith(b"\x89PNG"), "replaced whole on success"
    assert fig.number not in plt.get_fignums(), "a pyplot figure is closed after saving"


def test_save_figure_refuses_what_is_not_a_figure(tmp_path):
    """fig must be a matplotlib Figure (an Axes or a tuple is a TypeError)."""
    from captum_rig.viz import save_figure

    fig = _figure()
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure, got Axes"):
        save_figure(fig.axes[0], tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []


def test_fit_text_keeps_given_lines_and_both_ends():
    """Lines already in the text are fitted one by one; one line keeps start and end."""
    from captum_rig.viz._figure import fit_text

    text = fit_text(LONG_NAME + "\ntarget 3 (cat)", 1.5, "axes.labelsize")
    first, second = text.split("\n")
    assert first.startswith("holiday") and first.endswith(".jpeg") and "…" in first, first
    assert second == "target 3 (cat)", "a line that fits is left alone"
    assert fit_text("short", 1.5, "axes.labelsize", 1) == "short"


def test_shared_colour_bar_reads_the_shares(image):
    """With shared_scale the bar spans the maps' shares of their mass (a few per cent at
    most here), in per cent, not Captum's 0..1."""
    attrs = {"IG": torch.randn(1, 3, 32, 32), "RIG": torch.randn(1, 3, 32, 32)}
    fig, axes = plot_attributions(image, attrs, shared_scale=True)
    bar = [ax for ax in fig.axes if ax not in set(axes.ravel())][0]
    low, high = bar.get_ylim()
    assert low == 0 and 1 / 1024 < high < 0.05, (low, high)
    fig.canvas.draw()
    ticks = [t.get_text() for t in bar.get_yticklabels() if t.get_text()]
    assert ticks and all(t.endswith("%") for t in ticks), ticks
