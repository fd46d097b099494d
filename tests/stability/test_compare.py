"""Tests for captum_rig.stability.compare: the table, streams of batches, its files."""

import csv
import json

import numpy as np
import pytest
import torch
from _reference import chain_model
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from captum_rig.stability import (
    STABILITY_FILES,
    check_stability_outputs,
    compare_stability,
    gaussian_minimal_distortion,
    lipschitz_bound,
    local_lipschitz,
    minimal_distortion,
    weight_spectra,
    write_stability,
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
    # one line in the models' table, one per attack in the distortions'
    assert md.count("\n| scratch |") == 3 and "[0, 255]" in md and "RMS per pixel" in md, md
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


# --------------------------------------------------------------------------- streams


def near_linear_models():
    """Two nearly linear convnets: small perturbations change their predictions."""
    torch.manual_seed(2)
    return {
        name: nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
        ).eval()
        for name in ("first", "second")
    }


STREAM_KW = dict(n_bisect=4, steps=3, n_iter=5, max_sigma=3.0, batch_size=3, progress=False)


def test_compare_stability_of_a_stream_equals_the_tensor_call():
    """A DataLoader (batches of 5), a one-shot iterator, a pair, uneven batches: the table
    of the concatenated tensor, Gaussian noise included (batches of batch_size again)."""
    models = near_linear_models()
    images = torch.rand(8, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    whole = compare_stability(models, images, labels, **STREAM_KW)
    assert all(r.n_changed for r in whole.rows), "nothing changed, nothing compared"
    loader = DataLoader(TensorDataset(images, labels), batch_size=5)
    streams = {
        "loader": loader,
        "iterator": iter(loader),
        "pair": (images, labels),
        "uneven": [(images[:1], labels[:1]), (images[1:7], labels[1:7]), (images[7:], labels[7:])],
    }
    for kind, data in streams.items():
        table = compare_stability(models, data, **STREAM_KW)
        assert json.dumps(table.to_dict()) == json.dumps(whole.to_dict()), kind
        assert table.to_markdown() == whole.to_markdown(), kind


def test_compare_stability_holds_one_batch_at_a_time():
    """Loader batches of 8 are cut to batch_size 3: no forward pass sees more images."""
    models = near_linear_models()
    seen = []
    for model in models.values():
        model[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    data = DataLoader(TensorDataset(torch.rand(8, 3, 8, 8), torch.zeros(8, dtype=torch.long)), 8)
    table = compare_stability(models, data, **STREAM_KW)
    assert max(seen) == 3 and [r.n_images for r in table.rows] == [8] * 4, (seen, table.rows)


def test_compare_stability_bad_streams():
    """Labels are required; labels beside a stream, unlabelled batches, shapes that change."""
    models = near_linear_models()
    x, y = torch.rand(3, 3, 8, 8), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="labels is required"):
        compare_stability(models, x)
    with pytest.raises(ValueError, match="labels must be None when data is"):
        compare_stability(models, [(x, y)], y)
    with pytest.raises(TypeError, match=r"data batch 0 must be an \(images, labels\) pair"):
        compare_stability(models, [x], progress=False)
    with pytest.raises(ValueError, match="data batch 1 has images of shape"):
        compare_stability(models, [(x, y), (torch.rand(3, 3, 9, 9), y)], progress=False)


# --------------------------------------------------------------------------- files


def test_write_stability_writes_md_csv_and_json(tmp_path):
    """A heading and the table; the CSV rows; the summary then the table, spectra last."""
    models = near_linear_models()
    images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    table = compare_stability(models, images, labels, attacks="gaussian", **STREAM_KW)
    spectra = {name: weight_spectra(m) for name, m in models.items()}
    summary = {"data": "shapes/", "n_images": 4, "weight_spectra": spectra,
               "feature_map_spectra": {}, "seed": 0}  # fmt: skip
    paths = write_stability(tmp_path / "out", table, summary)
    assert [p.name for p in paths] == ["stability.md", "stability.csv", "stability.json"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)
    md = paths[0].read_text(encoding="utf-8")
    assert md == f"# Stability: 4 images from shapes/\n\n{table.to_markdown()}\n", md
    with open(paths[1], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["attack"]) for r in rows] == [
        ("first", "gaussian"),
        ("second", "gaussian"),
    ]
    assert list(rows[0])[-2:] == ["average_distortion_255", "average_distortion_rms"], rows[0]
    record = json.loads(paths[2].read_text())
    assert list(record) == [
        "data", "n_images", "seed", "units", "rows", "lipschitz", "weight_spectra",
        "feature_map_spectra",
    ], list(record)  # fmt: skip
    assert record["weight_spectra"]["first"]["0"] == pytest.approx(spectra["first"]["0"].tolist())
    assert paths[2].read_text().endswith("\n") and "NaN" not in paths[2].read_text()


def test_write_stability_with_lipschitz_reports_and_bad_summaries(tmp_path):
    """``lipschitz=True`` adds each model's report under the table; a summary without
    ``data`` or ``n_images`` is refused before anything is written."""
    models = near_linear_models()
    table = compare_stability(models, torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), **STREAM_KW)
    (md, _, _) = write_stability(tmp_path, table, {"data": "x", "n_images": 2}, lipschitz=True)
    text = md.read_text(encoding="utf-8")
    for name, report in table.lipschitz.items():
        assert f"**{name}**\n\n{report.to_markdown()}" in text, text
    with pytest.raises(ValueError, match="summary must be a mapping with 'data' and 'n_images'"):
        write_stability(tmp_path / "bad", table, {"data": "x"})
    assert not (tmp_path / "bad").exists(), "a folder made for a refused summary"


# --------------------------------------------------------------------------- attacks, bounds


def test_minimal_norm_attacks_and_the_best_row():
    """DeepFool, FAB and CW rows equal minimal_distortion(attack=...); ``best`` keeps each
    image's smallest value, so its mean over the same images is no larger."""
    models = near_linear_models()
    images, labels = torch.rand(5, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1])
    attacks = ("pgd", "deepfool", "fab", "cw", "gaussian")
    table = compare_stability(models, images, labels, attacks=attacks, local=False, **STREAM_KW)
    first = [r for r in table.rows if r.model == "first"]
    assert [r.attack for r in first] == [*attacks, "best"], first
    by_attack = {r.attack: r for r in first}
    for attack in ("deepfool", "fab", "cw"):
        ref = minimal_distortion(models["first"], images, attack=attack, batch_size=3)
        assert by_attack[attack].average_distortion == pytest.approx(ref.mean, rel=1e-5)
        assert by_attack[attack].tolerance == 0.0
        assert by_attack[attack].local_lipschitz is None
    best = by_attack["best"]
    changed = max(by_attack[a].n_changed for a in ("pgd", "deepfool", "fab", "cw"))
    assert best.n_changed >= changed
    if best.n_changed == by_attack["fab"].n_changed:
        assert best.average_distortion <= by_attack["fab"].average_distortion + 1e-9
    assert best.average_distortion_rms == pytest.approx(
        best.average_distortion / (3 * 8 * 8) ** 0.5
    )


def test_local_lipschitz_beside_the_certified_bound():
    """The local column is the largest input-Jacobian norm over all images (whatever the
    batches), a lower bound: at most the certified upper bound."""
    models = two_models()
    images, labels = torch.rand(5, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4])
    table = compare_stability(
        models, images, labels, attacks="gaussian", certified=True, n_bisect=2,
        batch_size=2, progress=False,
    )  # fmt: skip
    for row in table.rows:
        local = local_lipschitz(models[row.model], images)
        assert row.local_lipschitz == pytest.approx(local, rel=1e-3), row
        assert row.local_lipschitz <= row.lipschitz_bound * (1 + 1e-6), row
    assert "local Lipschitz (lower)" in table.to_markdown()


def test_several_norms_give_each_norm_the_rows_of_its_own_call():
    """norm=("L2", "Linf"): per model the L2 rows (Gaussian noise among them, once), then
    the L-inf rows of the attacks that minimise it, each group with its best row; the
    numbers are those of one call per norm."""
    models = near_linear_models()
    images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    attacks = ("pgd", "deepfool", "fab", "gaussian")
    kw = dict(local=False, **STREAM_KW)
    both = compare_stability(models, images, labels, attacks=attacks, norm=("L2", "Linf"), **kw)
    first = [(r.attack, r.norm) for r in both.rows if r.model == "first"]
    assert first == [
        ("pgd", "L2"), ("deepfool", "L2"), ("fab", "L2"), ("gaussian", "L2"), ("best", "L2"),
        ("pgd", "Linf"), ("fab", "Linf"), ("best", "Linf"),
    ], first  # fmt: skip
    l2 = compare_stability(models, images, labels, attacks=attacks, norm="L2", **kw)
    linf = compare_stability(models, images, labels, attacks=("pgd", "fab"), norm="Linf", **kw)
    for row, ref in zip(both.rows, [*l2.rows[:5], *linf.rows[:3]]):
        assert (row.attack, row.norm) == (ref.attack, ref.norm)
        assert row.average_distortion == pytest.approx(ref.average_distortion, rel=1e-6), row
    with pytest.raises(ValueError, match="'deepfool' minimises L2"):
        compare_stability(models, images, labels, attacks=("deepfool",), norm=["Linf"], **kw)


def test_attacks_that_do_not_minimise_the_norm_are_refused_up_front():
    with pytest.raises(ValueError, match="'deepfool' minimises L2, not norm='Linf'"):
        compare_stability(two_models(), torch.rand(2, 3, 8, 8), torch.tensor([0, 1]),
                          attacks=("pgd", "deepfool"), norm="Linf", progress=False)  # fmt: skip


def test_compare_stability_logs_a_line_per_model_and_stage():
    lines = []
    compare_stability(
        two_models(), torch.rand(3, 3, 8, 8), torch.tensor([0, 1, 2]), attacks="gaussian",
        n_bisect=2, batch_size=2, progress=False, local=False, log=lines.append,
    )  # fmt: skip
    assert "scratch: accuracy, images 1-2" in lines, lines
    assert "finetuned: gaussian minimal distortion, images 3-3" in lines, lines


def test_write_stability_all_or_nothing(tmp_path):
    """A folder where a file goes is refused before anything is written; a figure writer
    that fails leaves the folder as it was; the figures come after the three tables."""
    table = compare_stability(
        near_linear_models(), torch.rand(2, 3, 8, 8), torch.tensor([0, 1]),
        attacks="gaussian", local=False, **STREAM_KW,
    )  # fmt: skip
    summary = {"data": "x", "n_images": 2}
    (tmp_path / "busy" / "stability.csv").mkdir(parents=True)
    with pytest.raises(ValueError, match="stability.csv' is a folder"):
        write_stability(tmp_path / "busy", table, summary)
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["stability.csv"]

    def broken(path):
        raise RuntimeError("figure failed")

    with pytest.raises(RuntimeError, match="figure failed"):
        write_stability(tmp_path / "new", table, summary, files={"fig.png": broken})
    assert not (tmp_path / "new").exists(), "a failed write left files behind"
    paths = write_stability(
        tmp_path / "ok", table, summary, files={"fig.png": lambda p: p.write_bytes(b"png")}
    )
    assert [p.name for p in paths] == [*STABILITY_FILES, "fig.png"]
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == sorted(p.name for p in paths)
    with pytest.raises(ValueError, match="fig.png' is a folder"):
        (tmp_path / "ok2" / "fig.png").mkdir(parents=True)
        check_stability_outputs(tmp_path / "ok2", ["fig.png"])
