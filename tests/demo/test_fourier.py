"""The demo's rank-or-frequency stage: its report numbers are the library's, its figure
puts the two views side by side, and the contribution axes say what the shares are of."""

import pytest
import torch
from matplotlib.colors import to_hex

from captum_rig.demo import SHAPES_TEST_SEED
from captum_rig.fourier import fourier_heat_map, frequency_contributions, frequency_spectrum
from captum_rig.models import load_demo_model
from captum_rig.synthetic import make_shapes

from ._helpers import SMALL, by_key

MODELS = (("natural", "natural"), ("lowrank8", "trained on rank 8"))


def _table(report, heading, first_column):
    """The table of ``heading``'s section whose header starts with ``first_column``:
    row title -> {column header: cell}."""
    section = report.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return {row[0]: dict(zip(rows[0][1:], row[1:])) for row in rows[2:]}


def test_rank_or_frequency_report_numbers_are_the_librarys(demo_out):
    """Low-pass accuracies, the share of radius <= 4 and the heat maps' band means equal
    direct calls on the same images (the small run: 24, 6 and 4 images)."""
    report = by_key(demo_out[1])["report"].read_text(encoding="utf-8")
    heading = "## Rank or frequency?"
    accuracy = _table(report, heading, "model")
    shapes = make_shapes(SMALL["n_spectrum"], seed=SHAPES_TEST_SEED)
    x, y = shapes.images, shapes.labels
    for name, title in MODELS:
        model = load_demo_model(name)
        s = frequency_spectrum(model, x, [0, 2, 4, 6, 8, 11, 16, 23], y, progress=False)
        at = dict(zip(s.radii, s.accuracy))
        for r in (4, 8, 11):
            assert float(accuracy[title][f"radius {r}"]) == pytest.approx(at[r], abs=0.005)
        assert float(accuracy[title]["full image"]) == pytest.approx(at[23], abs=0.005)
        c = frequency_contributions(
            model, x[:6], target=y[:6], bands=[0, 2, 4, 8, 16, 23], n_steps=12
        ).double()
        per_band = c.sum((0, 1))
        assert f"{float(per_band[:3].sum() / per_band.sum()):.0%} (*{title}*)" in report
        heat = fourier_heat_map(model, x[:4], y[:4], 2.0, progress=False)
        centre = torch.arange(32) - 16
        radius = (centre[:, None] ** 2 + centre[None, :] ** 2).double().sqrt()
        shown = _table(report, "Mean error rate of the Fourier heat maps", "model")[title]
        assert float(shown["radius ≤ 4"]) == pytest.approx(
            float(heat[radius <= 4].mean()), abs=0.005
        )
        assert float(shown["radius > 11"]) == pytest.approx(
            float(heat[radius > 11].mean()), abs=0.005
        )


def _drawn(monkeypatch, tmp_path):
    """The demo state after setup, rank spectra and contributions; the figures it saves."""
    import captum_rig.demo._fourier as fourier_stage
    import captum_rig.demo.stages as stages
    from captum_rig.demo._state import OUTPUTS

    figures = {}
    for module in (stages, fourier_stage):
        monkeypatch.setattr(module, "save", lambda s, fig, key: figures.__setitem__(key, fig))
    s = stages._check_arguments(tmp_path, ["saliency"], 1, 3, 8, 2, 2, "chelsea", 20)
    s.paths = {key: tmp_path / name for key, name in OUTPUTS.items()}
    stages._setup(s)
    stages._rank_spectra(s)
    stages._rank_contributions(s)
    return s, figures


def test_contribution_axes_name_the_bands_sum(monkeypatch, tmp_path):
    """The curves are divided by the bands' sum: the y axes say so (not "F(x) − F(0)")."""
    from captum_rig.demo._fourier import fourier_view

    s, figures = _drawn(monkeypatch, tmp_path)
    fourier_view(s)
    labels = [ax.get_ylabel() for ax in figures["rank_contributions"].axes]
    assert labels == [
        "cumulative share of the bands' sum (≈ F(x) − F(0))",
        "share of the bands' sum (≈ F(x) − F(0))",
    ], labels
    grid = figures["rank_or_frequency"].axes
    for ax in grid[2:4]:  # the contributions row, rank and frequency
        assert ax.get_ylabel().startswith("cumulative share of the bands' sum"), ax.get_ylabel()
    assert [ax.get_xlabel() for ax in grid[:2]] == [
        "k (top k ranks kept)",
        "r (frequencies of radius ≤ r kept)",
    ]
    assert [ax.get_title() for ax in grid[4:6]] == [
        "natural: Fourier heat map",
        "trained on rank 8: Fourier heat map",
    ]
    # one colour per model in every panel
    for ax in grid[:4]:
        colours = {to_hex(line.get_color()) for line in ax.lines if line.get_label() == "natural"}
        assert colours == {to_hex("C0")}, colours
