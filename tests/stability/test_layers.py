"""Tests for captum_rig.stability.layers: layer norms and the one table of rules."""

import pytest
import torch
from _reference import chain_model, full_matrix
from torch import nn

from captum_rig.stability import layer_operator_norms


def test_linear_norm_is_exact():
    """nn.Linear's norm is its largest singular value."""
    model = nn.Sequential(nn.Linear(7, 5))
    (layer,) = layer_operator_norms(model, torch.rand(2, 7))
    exact = torch.linalg.svdvals(model[0].weight.detach().double())[0].item()
    assert layer.norm == pytest.approx(exact, rel=1e-12), "Linear norm is not exact"
    assert layer.kind == "Linear" and layer.input_shape == (2, 7), layer


def test_layer_norms_of_every_kind_match_full_matrices():
    """Conv, BatchNorm, avg-pool norms equal their full matrices' on the seen sizes."""
    model = chain_model().eval()
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    layers = {layer.name: layer for layer in layer_operator_norms(model, x)}
    assert list(layers) == [str(i) for i in range(len(model))], "a layer call is missing"
    # BatchNorm in eval mode: a diagonal scaling
    bn = model[2]
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).abs().max().item()
    assert layers["2"].norm == pytest.approx(scale), "BatchNorm norm"
    # the avg-pool is linear: compare with its full matrix on the 6 × 4 × 4 input it sees
    assert layers["7"].input_shape == (1, 6, 4, 4), layers["7"]
    exact = torch.linalg.matrix_norm(full_matrix(model[7], (6, 4, 4)), 2).item()
    assert layers["7"].norm == pytest.approx(exact, rel=1e-9), "avg-pool norm"
    conv = model[5]
    w = conv.weight.detach()
    exact = torch.linalg.matrix_norm(
        full_matrix(lambda v: conv._conv_forward(v, w, None), (4, 8, 8)), 2
    ).item()
    assert layers["5"].norm == pytest.approx(exact, rel=1e-9), "strided conv norm"
    assert layers["0"].norm == pytest.approx(1 / 0.2), "normalization: max 1/std"
    assert layers["3"].norm == 1.0 and layers["11"].norm == 1.0, "LeakyReLU(0.1), Tanh: 1"
    assert layers["4"].norm == pytest.approx(3.0), "3×3 max-pool, stride 1: √9"
    assert layers["8"].norm == 1.0 and layers["9"].norm == 1.0, "Dropout, Flatten: 1"


@pytest.mark.parametrize(
    "pool, expected",
    [
        (nn.MaxPool2d(2), 1.0),
        (nn.MaxPool2d(3, stride=2), 2.0),
        (nn.MaxPool2d(2, stride=1), 2.0),
        (nn.AvgPool2d(2), 0.5),
        (nn.AdaptiveAvgPool2d(1), 1 / 8),
    ],
    ids=["max2", "max3s2", "max2s1", "avg2", "adaptive-avg"],
)
def test_pooling_norms(pool, expected):
    """Max-pool: √(windows per pixel); avg-pool over k×k disjoint windows: 1/k."""
    (layer,) = layer_operator_norms(nn.Sequential(pool), torch.rand(1, 2, 8, 8))
    assert layer.norm == pytest.approx(expected, rel=1e-6), f"{pool}: {layer.norm}"


def test_torchvision_normalize_and_unnamed_root():
    """torchvision's Normalize counts as max 1/std; a bare layer as model gets a name."""
    transforms = pytest.importorskip("torchvision.transforms")
    model = nn.Sequential(transforms.Normalize([0.5, 0.5], [0.25, 0.5]))
    (layer,) = layer_operator_norms(model, torch.rand(1, 2, 4, 4))
    assert layer.norm == pytest.approx(4.0), f"Normalize norm {layer.norm}"
    (root,) = layer_operator_norms(nn.Linear(3, 2), torch.rand(1, 3))
    assert root.name == "(model)" and root.norm is not None, root
