"""Tests for captum_rig.stability.compare: the table, streams of batches, its files."""

import csv
import json

import numpy as np
import pytest
import torch
from _reference import chain_model

from captum_rig.stability import (
    compare_stability,
    gaussian_minimal_distortion,
    lipschitz_bound,
    minimal_distortion,
    weight_spectra,
)


def two_models():
    """Two small convnets with different weights."""
    torch.manual_seed(1)
    a = chain_model(torch.float32).eval()
    b = chain_model(torch.float32).eval()
    return {"scratch": a, "finetuned": b}


def test_compare_stability_rows_match_the_single_model_functions(tmp_path):
    """Each row equals minimal_distortion / gaussian / lipschitz_bound / accuracy."""
    models = two_models()
    images = torch.rand(6, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    kw = dict(n_bisect=4, steps=3, n_iter=10)
    table = compare_stability(models, images, labels, max_sigma=2.0, progress=False, **kw)
    assert [(r.model, r.attack) for r in table.rows] == [
        ("scratch", "pgd"), ("scratch", "gaussian"), ("finetuned", "pgd"),
        ("finetuned", "gaussian"),
    ], table.rows  # fmt: skip
    for row in table.rows:
        model = models[row.model]
        with torch.no_grad():
            accuracy = (model(images).argmax(1) == labels).float().mean().item()
        assert row.clean_accuracy == pytest.approx(accuracy), row
        assert row.lipschitz_bound == pytest.approx(
            lipschitz_bound(model, images[:1], n_iter=10), rel=1e-12
        ), row
        if row.attack == "pgd":
            ref = minimal_distortion(model, images, norm="L2", steps=3, n_bisect=4)
        else:
            ref = gaussian_minimal_distortion(model, images, n_bisect=4, max_sigma=2.0)
        assert row.average_distortion == pytest.approx(ref.mean, nan_ok=True), row
        assert row.average_distortion_255 == pytest.approx(255 * ref.mean, nan_ok=True), row
        assert (row.n_changed, row.n_images) == (ref.n_found, 6), row
    md = table.to_markdown()
    assert md.count("\n| scratch |") == 2 and "[0, 255]" in md and "power iteration" in md, md
    d = table.to_dict()
    json.dumps(d)
    assert d["rows"][0]["average_distortion_255"] == table.rows[0].average_distortion_255
    path = tmp_path / "table.csv"
    table.to_csv(path)
    with open(path) as f:
        read = list(csv.DictReader(f))
    assert [r["model"] for r in read] == [r.model for r in table.rows], read
    assert float(read[0]["average_distortion"]) == pytest.approx(
        table.rows[0].average_distortion, nan_ok=True
    ), read
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"], "temporary file left"


def test_compare_stability_bad_input():
    """Empty models, wrong label count, pixels outside [0, 1], unknown attack: ValueError."""
    models = two_models()
    x, y = torch.rand(3, 3, 8, 8), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="models must not be empty"):
        compare_stability({}, x, y)
    with pytest.raises(TypeError, match="models must be .*a mapping"):
        compare_stability([models["scratch"]], x, y)
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        compare_stability(models, x, y[:2])
    with pytest.raises(ValueError, match=r"images must hold pixel values in \[0, 1\]"):
        compare_stability(models, x - 0.5, y)
    with pytest.raises(ValueError, match="attacks must be one of"):
        compare_stability(models, x, y, attacks=("fgsm",))
    with pytest.raises(TypeError, match=r"models\['bad'\] must be a torch.nn.Module"):
        compare_stability({"bad": lambda t: t}, x, y)


def test_spectra_figures_are_drawn():
    """The layer-by-layer figures draw one line per model, and are not blank."""
    from captum_rig.viz import plot_layer_norms, plot_layer_spectra

    models = two_models()
    spectra = {name: weight_spectra(m) for name, m in models.items()}
    fig, axes = plot_layer_spectra(spectra, max_layers=3)
    assert axes.ndim == 2 and len(axes[0, 0].get_lines()) == 2, axes
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())
    assert pixels.std() > 1, "blank figure"
    fig, ax = plot_layer_norms(spectra)
    assert len(ax.get_lines()) == 2, ax.get_lines()
    with pytest.raises(ValueError, match="spectra"):
        plot_layer_spectra({})
