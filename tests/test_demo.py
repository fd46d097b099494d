"""Tests for captum_rig.demo: shipped assets, demo models, scores, and the demo job."""

import csv

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from PIL import Image

from captum_rig import low_rank
from captum_rig.demo import (
    ASSETS,
    DEMO_MODELS,
    OUTPUTS,
    PHOTOS,
    SHAPES_TEST_SEED,
    build_demo_model,
    deletion_insertion,
    evaluate_accuracy,
    load_demo_model,
    load_photo,
    mask_energy,
    run_demo,
)
from captum_rig.methods import METHODS
from captum_rig.synthetic import make_shapes

SMALL = dict(n_images=2, n_eval=6, n_spectrum=24, n_steps=4, score_steps=4, dpi=40)


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    """One small demo run shared by the tests that only read its output."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, **SMALL)


# -- assets ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(DEMO_MODELS))
def test_demo_weights_load_with_weights_only(name):
    """Each shipped state_dict loads with weights_only=True into build_demo_model()."""
    state = torch.load(ASSETS / DEMO_MODELS[name], map_location="cpu", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    assert set(state) == set(build_demo_model().state_dict()), "keys match the factory"
    model = load_demo_model(name)
    assert not model.training, "loaded in eval mode"
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 6)


def test_assets_are_small():
    """All shipped demo data together stays under 5 MB."""
    total = sum(p.stat().st_size for p in ASSETS.iterdir() if p.is_file())
    assert total < 5 * 2**20, f"assets take {total / 2**20:.1f} MB"


@pytest.fixture(scope="module")
def shapes_test():
    """The held-out synthetic test split the demo models are scored on."""
    return make_shapes(300, seed=SHAPES_TEST_SEED)


def test_natural_model_well_above_chance(shapes_test):
    """The natural model classifies the synthetic test set far above chance (1/6)."""
    acc = evaluate_accuracy(load_demo_model("natural"), shapes_test.images, shapes_test.labels)
    assert acc > 0.8, f"natural model accuracy {acc:.3f}"


def test_lowrank_model_well_above_chance_on_low_rank(shapes_test):
    """The rank-8 model classifies rank-8 test images far above chance."""
    model = load_demo_model("lowrank8")
    acc = evaluate_accuracy(model, low_rank(shapes_test.images, 8), shapes_test.labels)
    assert acc > 0.8, f"low-rank model accuracy on rank-8 images {acc:.3f}"


@pytest.mark.parametrize("name", list(PHOTOS))
def test_photos_load_and_are_licensed(name):
    """Each photo is a 3×128×128 float image in [0, 1], listed in PHOTOS_LICENSE.md."""
    x = load_photo(name)
    assert x.shape == (3, 128, 128) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and float(x.std()) > 0.05
    text = (ASSETS / "PHOTOS_LICENSE.md").read_text(encoding="utf-8")
    assert f"`{name}.png`" in text and PHOTOS[name]["author"] in text


def test_asset_loader_errors():
    """Unknown names raise a ValueError naming the argument."""
    with pytest.raises(ValueError, match="name must be one of"):
        load_demo_model("robust")
    with pytest.raises(ValueError, match="name must be one of"):
        load_photo("lena")
    with pytest.raises(ValueError, match="num_classes"):
        build_demo_model(0)


# -- scores ------------------------------------------------------------------------------


def test_mask_energy_oracle():
    """All mass on the mask scores 1, none scores 0, uniform scores the mask's area."""
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[:, :2, :] = True
    a = torch.zeros(3, 3, 4, 4)
    a[0, :, 0, 0] = -2.0  # sign does not matter
    a[1, :, 3, 3] = 1.0
    a[2] = 1.0
    np.testing.assert_allclose(mask_energy(a, masks).numpy(), [1.0, 0.0, 0.5])
    assert torch.isnan(mask_energy(torch.zeros(1, 3, 4, 4), masks[:1])).all(), "zero map: NaN"
    with pytest.raises(ValueError, match="masks must have shape"):
        mask_energy(a, masks[:, :3])


class _RegionModel(torch.nn.Module):
    """Class 1 logit grows with the brightness of the top-left quadrant; class 0 is 0."""

    def forward(self, x):
        s = 20 * (x[:, :, :4, :4].mean((1, 2, 3)) - 0.5)
        return torch.stack([torch.zeros_like(s), s], 1)


def test_deletion_insertion_oracle():
    """Deleting the region the model reads first drops p fastest; ends are the two images."""
    images = torch.ones(2, 3, 8, 8)
    good = torch.zeros(2, 1, 8, 8)
    good[..., :4, :4] = 1.0  # the region the model reads
    bad = 1.0 - good
    target = torch.tensor([1, 1])
    baseline = torch.zeros_like(images)
    r_good = deletion_insertion(_RegionModel(), images, good, target, 4, baseline=baseline)
    r_bad = deletion_insertion(_RegionModel(), images, bad, target, 4, baseline=baseline)
    p_image, p_base = torch.sigmoid(torch.tensor(10.0)), torch.sigmoid(torch.tensor(-10.0))
    for r in (r_good, r_bad):
        assert r["deletion"].shape == (2, 5) and r["fractions"].tolist() == [0, 0.25, 0.5, 0.75, 1]
        torch.testing.assert_close(r["deletion"][:, 0].float(), p_image.expand(2))
        torch.testing.assert_close(r["deletion"][:, -1].float(), p_base.expand(2))
        torch.testing.assert_close(r["insertion"][:, 0].float(), p_base.expand(2))
    assert (r_good["deletion_auc"] < r_bad["deletion_auc"] - 0.3).all(), "good map deletes faster"
    assert (r_good["insertion_auc"] > r_bad["insertion_auc"] + 0.3).all(), "and inserts faster"


def test_deletion_insertion_errors():
    """Mismatched shapes and bad step counts raise ValueErrors naming the argument."""
    x = torch.rand(2, 3, 8, 8)
    model = _RegionModel()
    with pytest.raises(ValueError, match="n_steps"):
        deletion_insertion(model, x, x, torch.tensor([0, 1]), n_steps=0)
    with pytest.raises(ValueError, match="attributions"):
        deletion_insertion(model, x, x[:, :, :4], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="target"):
        deletion_insertion(model, x, x, torch.tensor([0]))
    with pytest.raises(ValueError, match="baseline"):
        deletion_insertion(model, x, x, torch.tensor([0, 1]), baseline=x[:1])


# -- the demo job ------------------------------------------------------------------------


def test_run_demo_writes_every_file(demo_out):
    """Every output exists, nothing else (no temporary folder) is left behind."""
    out, paths = demo_out
    assert set(paths) == set(OUTPUTS), f"got {sorted(paths)}"
    for key, path in paths.items():
        assert path.parent == out and path.name == OUTPUTS[key]
        assert path.is_file() and path.stat().st_size > 0, f"{key} missing or empty"
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS.values()), "stray files"


@pytest.mark.parametrize("key", [k for k, name in OUTPUTS.items() if name.endswith(".png")])
def test_run_demo_figures_not_blank(demo_out, key):
    """Every figure has many distinct colours, not one flat colour."""
    _, paths = demo_out
    with Image.open(paths[key]) as im:
        rgb = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(rgb, axis=0)) > 100, f"{key} looks blank"


def test_run_demo_report_and_scores(demo_out):
    """The report names every method, holds the score table; scores.csv has every row."""
    _, paths = demo_out
    report = paths["report"].read_text(encoding="utf-8")
    assert "| method | mask energy" in report, "score table header"
    for m in METHODS.values():
        assert f"| {m.title} |" in report, f"{m.title} missing from the table"
    for name in OUTPUTS.values():
        if name.endswith(".png"):
            assert f"({name})" in report, f"report does not embed {name}"
    with open(paths["scores"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == [*METHODS, "random"]
    for r in rows:
        assert 0 <= float(r["mask_energy"]) <= 1 and 0 <= float(r["deletion_auc"]) <= 1


def test_run_demo_failure_leaves_nothing(tmp_path, monkeypatch):
    """A failure in the last stage leaves no file and no temporary folder behind."""
    import captum_rig.demo as demo

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(demo, "_report", boom)
    with pytest.raises(RuntimeError, match="boom"):
        run_demo(tmp_path, methods=["saliency"], **SMALL)
    assert list(tmp_path.iterdir()) == [], "partial output left behind"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(photo="lena"), "photo"),
        (dict(n_eval=0), "n_eval"),
        (dict(n_steps=1.5), "n_steps"),
        (dict(methods=["rigg"]), "unknown attribution method"),
    ],
)
def test_run_demo_bad_arguments(tmp_path, kwargs, match):
    """Bad arguments raise a ValueError before anything is written."""
    with pytest.raises(ValueError, match=match):
        run_demo(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists(), "nothing written for bad arguments"


def test_run_demo_out_dir_is_a_file(tmp_path):
    """An out_dir that is a file is a clear ValueError."""
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="out_dir"):
        run_demo(f, **SMALL)
