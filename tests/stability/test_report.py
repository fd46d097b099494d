"""Tests for captum_rig.stability.report: one model's report, state, bad input, devices."""

import json

import pytest
import torch
from _reference import chain_model, hooks_left
from torch import nn

from captum_rig.stability import (
    StabilityReport,
    conv2d_operator_norm,
    gaussian_minimal_distortion,
    layer_operator_norms,
    lipschitz_bound,
    minimal_distortion,
    stability_analysis,
)


def test_stability_report(tmp_path):
    """stability_analysis returns layers, bound and three distortions; dict and markdown."""
    model = chain_model()
    images = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    report = stability_analysis(model, images, n_bisect=4, steps=3, n_iter=20)
    assert isinstance(report, StabilityReport), "wrong return type"
    assert sorted(report.distortions) == ["gaussian", "pgd_l2", "pgd_linf"], report.distortions
    assert report.lipschitz_bound is not None, report.lipschitz_note
    d = report.to_dict()
    json.dumps(d)  # JSON-ready (NaN allowed)
    assert len(d["layers"]) == len(model), "one layer entry per call"
    assert d["distortions"]["pgd_l2"]["n_images"] == 4, d["distortions"]
    md = report.to_markdown()
    assert "| 1 | Conv2d | 1×3×8×8 |" in md, md
    assert "Lipschitz upper bound (L2)" in md and "| pgd_linf | Linf |" in md, md
    for line in md.splitlines():
        if line.startswith("| 2 | BatchNorm2d"):
            assert line.replace("\\|", "").count("|") == 6, f"unescaped | in {line}"


def test_no_hooks_left_even_on_error():
    """Hooks are removed after the analysis and after a forward pass that raises."""
    model = chain_model()
    stability_analysis(model, torch.rand(2, 3, 8, 8, dtype=torch.float64), n_bisect=2)
    assert hooks_left(model) == [], "hooks left after stability_analysis"

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(4, 4)

        def forward(self, x):
            self.layer(x)
            raise RuntimeError("forward failed")

    broken = Broken()
    with pytest.raises(ValueError, match="does not fit the model: forward failed"):
        layer_operator_norms(broken, torch.rand(1, 4))
    assert hooks_left(broken) == [], "hooks left after a failing forward"


def test_model_state_restored():
    """Training flags, parameters and the global RNG are left as they were."""
    model = chain_model().train()
    model[2].eval()
    flags = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    images_copy = images.clone()
    rng = torch.get_rng_state()
    stability_analysis(model, images, n_bisect=2, steps=2)
    assert [m.training for m in model.modules()] == flags, "training flags changed"
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), f"model state {k} changed"
    assert torch.equal(images, images_copy), "images modified"
    assert torch.equal(torch.get_rng_state(), rng), "global RNG state changed"
    assert all(p.grad is None for p in model.parameters()), "parameter gradients left"


def test_bad_input():
    """Bad arguments raise TypeError/ValueError naming the argument."""
    model = chain_model(torch.float32)
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(TypeError, match="images must be a floating point"):
        stability_analysis(model, (x * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r"images must hold pixel values in \[0, 1\]"):
        minimal_distortion(model, x + 1)
    with pytest.raises(ValueError, match="images must not be empty"):
        gaussian_minimal_distortion(model, x[:0])
    with pytest.raises(ValueError, match="norm must be one of"):
        minimal_distortion(model, x, norm="L0")
    with pytest.raises(ValueError, match="norm must be one of"):
        stability_analysis(model, x, norms=("L2", "fro"))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        minimal_distortion(model, x, steps=0)
    with pytest.raises(ValueError, match="n_bisect must be >= 1"):
        minimal_distortion(model, x, n_bisect=0)
    with pytest.raises(ValueError, match="max_eps must be"):
        minimal_distortion(model, x, max_eps=-1.0)
    with pytest.raises(ValueError, match="max_sigma must be"):
        gaussian_minimal_distortion(model, x, max_sigma=0.0)
    with pytest.raises(ValueError, match="n_iter must be >= 1"):
        lipschitz_bound(model, x[:1], n_iter=0)
    with pytest.raises(ValueError, match="input_size must be"):
        conv2d_operator_norm(nn.Conv2d(3, 4, 3), (4, 8, 8))
    with pytest.raises(TypeError, match="conv must be a torch.nn.Conv2d"):
        conv2d_operator_norm(nn.Linear(3, 4), (8, 8))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        layer_operator_norms(lambda t: t, x)


def test_same_numbers_on_every_device(device):
    """Layer norms and the bound on the device equal the CPU ones; distortions run there."""
    model = chain_model(torch.float32)
    x = torch.rand(3, 3, 8, 8)
    cpu = stability_analysis(model, x, n_bisect=3, steps=2, n_iter=30)
    moved = chain_model(torch.float32)
    moved.load_state_dict(model.state_dict())
    on_device = stability_analysis(moved.to(device), x.to(device), n_bisect=3, steps=2, n_iter=30)
    for a, b in zip(cpu.layers, on_device.layers):
        if a.norm is not None:
            assert b.norm == pytest.approx(a.norm, rel=1e-6), f"{a.name}: {a.norm} vs {b.norm}"
    assert on_device.lipschitz_bound == pytest.approx(cpu.lipschitz_bound, rel=1e-6), "bound"
    for name, result in on_device.distortions.items():
        assert result.values.shape == (3,) and result.values.device.type == "cpu", name
