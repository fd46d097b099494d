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
    table = compare_stability(
        models, images, labels, steps=2, n_bisect=3, n_iter=3, certified=True, progress=False
    )
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


def test_stability_in_both_norms(capsys, work, labelled_folder):
    """--norm l2,linf: the L2 rows (with Gaussian noise), then the L-inf rows of the
    attacks that minimise it; DeepFool (L2 only) is left out of L-inf, not refused."""
    code, _, err = run(
        capsys, "stability", "--model", "net.py:make", "--data", labelled_folder,
        "--attacks", "pgd,deepfool,gaussian", "--norm", "l2,linf", "--out", "st",
        *STABILITY_FAST,
    )  # fmt: skip
    assert code == 0, err
    record = json.loads((work / "st" / "stability.json").read_text())
    assert [(r["attack"], r["norm"]) for r in record["rows"]] == [
        ("pgd", "L2"), ("deepfool", "L2"), ("gaussian", "L2"), ("best", "L2"), ("pgd", "Linf"),
    ], record["rows"]  # fmt: skip


@pytest.mark.parametrize(
    "data, extra, match",
    [
        ("flat", [], "has no labels"),
        ("data", ["--attacks", "fgsm"], "argument --attacks"),
        ("data", ["--norm", "l1"], "expected l2, linf or l2,linf"),
        ("data", ["--attacks", "pgd,cw", "--norm", "linf"], "cw minimises L2, not --norm linf"),
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


# --------------------------------------------------------------------------- checks before work


POOLED = """
from torch import nn

def pooled():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 2)
    )
"""


@pytest.fixture
def no_work(monkeypatch):
    """compare_stability fails the test if it is reached: the error must come first."""
    import captum_rig.stability as stability

    def reached(*args, **kwargs):
        raise AssertionError("the comparison started before the error")

    monkeypatch.setattr(stability, "compare_stability", reached)


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--max-eps", "0"], "argument --max-eps: must be > 0"),
        (["--max-sigma", "-1"], "argument --max-sigma"),
        (["--layers", "nope"], "--layers for model make: unknown module names ['nope']"),
        (["--model", "pool.py:pooled", "--image-size", "1"], "give a larger --image-size"),
        (["--device", "meta"], "--device"),
    ],
)
def test_stability_refuses_bad_settings_before_any_work(
    capsys, work, labelled_folder, no_work, extra, match
):
    """Bad radii, unknown layers, tiny images, a meta device: exit 2, one line, before the
    comparison, nothing written."""
    (work / "pool.py").write_text(POOLED)
    code, _, err = run(
        capsys, "stability", "--model", "net.py:make", "--data", labelled_folder,
        "--out", "st", *STABILITY_FAST, *extra,
    )  # fmt: skip
    assert_user_error(code, err, match)
    assert not (work / "st").exists(), "nothing may be written on an error"


@pytest.mark.parametrize("busy", ["stability.csv", "weight_norms.png"])
def test_stability_checks_every_output_file_first(capsys, work, labelled_folder, no_work, busy):
    """A folder where an output file goes fails before the work, and leaves --out as it
    was (no stability.md written beside it)."""
    (work / "st" / busy).mkdir(parents=True)
    code, _, err = run(
        capsys, "stability", "--model", "net.py:make", "--data", labelled_folder,
        "--out", "st", *STABILITY_FAST,
    )  # fmt: skip
    assert_user_error(code, err, f"{busy}' is a folder")
    assert files_in(work / "st") == [busy]


def test_stability_writes_all_files_or_none(capsys, work, labelled_folder, monkeypatch):
    """A figure that fails to save after the work leaves no table behind."""
    import captum_rig.cli.stability as command

    def broken(fig, path):
        raise OSError("disk full")

    monkeypatch.setattr(command, "save_figure", broken)
    code, _, err = run(
        capsys, "stability", "--model", "net.py:make", "--data", labelled_folder,
        "--attacks", "gaussian", "--out", "st", *STABILITY_FAST,
    )  # fmt: skip
    assert code == 2 and err.strip().splitlines()[-1] == "captum-rig: error: disk full", err
    assert not (work / "st").exists(), files_in(work / "st")


def test_stability_announces_its_plan_and_logs_each_stage(capsys, work, labelled_folder):
    """Without progress bars: the evaluation plan first, then a line per model and stage."""
    code, out, err = run(
        capsys, "stability", "--model", "net.py:make", "--name", "a", "--model",
        "net.py:make", "--name", "b", "--data", labelled_folder, "--attacks", "pgd,gaussian",
        "--out", "st", *STABILITY_FAST,
    )  # fmt: skip
    assert code == 0, err
    lines = [line for line in err.splitlines() if not line.startswith("note:")]
    assert lines[0].startswith("stability: 2 model(s) × 6 images"), lines
    assert "pgd: at most 14 radii × 2 gradient steps" in lines[0], lines[0]
    for expected in ("a: accuracy, images 1-6", "b: pgd minimal distortion, images 1-6",
                     "b: local Lipschitz, images 1-6", "layer spectra: b"):  # fmt: skip
        assert any(line.endswith(expected) for line in lines), (expected, lines)


def test_stability_models_with_one_input_size_but_different_resizes(
    capsys, work, labelled_folder, monkeypatch
):
    """Same crop, different resize before it (ResNet-18 and MobileNetV2 at 224 px): the
    comparison runs, with a note; a different crop is refused."""
    from dataclasses import replace

    import captum_rig.cli._common as common

    real, calls = common.load_pixel_model, []

    def loader(spec, **kwargs):
        model, prep = real(spec, **kwargs)
        calls.append(spec)
        crop = 8 if len(calls) == 1 or "second" in spec.text else 6
        return model, replace(prep, crop_size=crop, resize_size=8 + 4 * (len(calls) - 1))

    monkeypatch.setattr(common, "load_pixel_model", loader)
    (work / "second.py").write_text((work / "net.py").read_text())
    code, _, err = run(
        capsys, "stability", "--model", "net.py:make", "--model", "second.py:make",
        "--data", labelled_folder, "--attacks", "gaussian", "--out", "st", *STABILITY_FAST,
    )  # fmt: skip
    assert code == 0, err
    assert "resizes to 12 px before its 8 px crop" in err, err
    calls.clear()
    code, _, err = run(
        capsys, "stability", "--model", "net.py:make", "--model", "net.py:make",
        "--data", labelled_folder, "--out", "st2", *STABILITY_FAST,
    )  # fmt: skip
    assert_user_error(code, err, "the models take different inputs (8 px for the first, 6 px")


def test_stability_seed_help_names_its_own_uses(capsys):
    code, out, _ = run(capsys, "stability", "--help")
    assert code == 0
    out = " ".join(out.split())
    assert "Lipschitz bound's power iterations" in out and "attack targets" not in out, out
