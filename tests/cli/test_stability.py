"""``captum-rig stability``: tables, spectra and figures equal the library's."""

import json

import numpy as np
import pytest
import torch

from captum_rig.loading import load_model

from ._helpers import (
    assert_user_error,
    figure_pixels,
    files_in,
    load_image_like_the_cli,
    read_csv,
    run,
    write_png,
)

STABILITY_FAST = ["--steps", 2, "--n-bisect", 3, "--n-iter", 3, "--no-progress"]


CONV_NET = """
from torch import nn

def convnet():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
    )
"""


def test_stability_matches_compare_stability(capsys, work, labelled_folder):
    """Table (stdout, .md, .csv, .json) and spectra equal direct library calls."""
    from captum_rig.stability import compare_stability, feature_map_spectra, weight_spectra

    # Nearly linear, so that small perturbations change predictions and distortions are finite.
    (work / "conv.py").write_text(CONV_NET)
    spec = f"{work / 'conv.py'}:convnet"
    for seed, file in ((0, "first.pt"), (1, "second.pt")):
        torch.manual_seed(seed)
        torch.save(load_model(spec).state_dict(), work / file)
    code, out, err = run(
        capsys, "stability", "--model", "conv.py:convnet", "--weights", "first.pt", "--name",
        "first", "--model", "conv.py:convnet", "--weights", "second.pt", "--name", "second",
        "--data", labelled_folder, "--out", "st", *STABILITY_FAST,
    )  # fmt: skip
    assert code == 0, err
    assert files_in(work / "st") == [
        "feature_map_spectra.png", "stability.csv", "stability.json", "stability.md",
        "weight_norms.png", "weight_spectra.png",
    ]  # fmt: skip
    models = {
        "first": load_model(spec, weights=work / "first.pt"),
        "second": load_model(spec, weights=work / "second.pt"),
    }
    images = torch.stack(
        [load_image_like_the_cli(p, 8) for p in sorted(labelled_folder.rglob("*.png"))]
    )
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    table = compare_stability(models, images, labels, steps=2, n_bisect=3, n_iter=3, progress=False)
    assert table.to_markdown() in out, out
    assert table.to_markdown() in (work / "st" / "stability.md").read_text()
    rows = read_csv(work / "st" / "stability.csv")
    assert [(r["model"], r["attack"]) for r in rows] == [
        (r.model, r.attack) for r in table.rows
    ], rows  # fmt: skip
    got = [float(r["average_distortion"]) for r in rows]
    assert np.isfinite(got).all(), f"no prediction changed, nothing compared: {got}"
    assert got == pytest.approx([r.average_distortion for r in table.rows], rel=1e-6), got
    record = json.loads((work / "st" / "stability.json").read_text())
    assert record["n_images"] == 6 and len(record["rows"]) == 4, record["rows"]
    for name, model in models.items():
        for layer, s in weight_spectra(model).items():
            got = record["weight_spectra"][name][layer]
            assert np.allclose(got, s.numpy(), rtol=1e-6), (name, layer)
        for layer, s in feature_map_spectra(model, images).items():
            got = record["feature_map_spectra"][name][layer]
            assert np.allclose(got, s.numpy(), rtol=1e-6), (name, layer)
    for figure in ("weight_spectra.png", "weight_norms.png", "feature_map_spectra.png"):
        assert figure_pixels(work / "st" / figure).std() > 10, f"blank {figure}"


def test_stability_model_without_convolutions(capsys, work, labelled_folder):
    """A model with no Conv2d gets no feature-map figure, a note instead; JSON is valid."""
    code, out, err = run(
        capsys, "stability", "--model", "net.py:flat", "--data", labelled_folder,
        "--attacks", "gaussian", "--out", "st", *STABILITY_FAST,
    )  # fmt: skip
    assert code == 0, err
    assert "note: no feature-map spectra for flat" in err, err
    assert "feature_map_spectra.png" not in files_in(work / "st")
    record = json.loads((work / "st" / "stability.json").read_text())
    assert [r["attack"] for r in record["rows"]] == ["gaussian"], record["rows"]
    assert record["feature_map_spectra"] == {}, record["feature_map_spectra"]


@pytest.mark.parametrize(
    "data, extra, match",
    [
        ("flat", [], "has no labels"),
        ("data", ["--attacks", "fgsm"], "argument --attacks"),
        ("data", ["--norm", "l1"], "invalid choice"),
        ("data", ["--layers", "nosuch"], "--layers for model make"),
        ("missing", [], "missing"),
    ],
)
def test_stability_errors(capsys, work, labelled_folder, data, extra, match):
    """Unlabelled data, unknown attacks, norms and layers: exit 2, one line, nothing written."""
    (work / "flat").mkdir()
    write_png(work / "flat" / "x.png", 8, 8)
    code, _, err = run(
        capsys, "stability", "--model", "net.py:make", "--data", work / data, "--out", "st",
        *STABILITY_FAST, *extra,
    )  # fmt: skip
    assert_user_error(code, err, match)
    assert not (work / "st").exists(), "nothing may be written on an error"
