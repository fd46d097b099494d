"""Tests for captum_rig.stability.conv: power iteration and Gram-iteration bounds."""

import pytest
import torch
from _reference import exact_conv_norm, full_matrix
from torch import nn

from captum_rig.stability import conv2d_norm_bound, conv2d_operator_norm

CONVS = {
    "plain": dict(in_channels=2, out_channels=3, kernel_size=3),
    "stride2-pad1": dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1),
    "stride3-k2": dict(in_channels=1, out_channels=2, kernel_size=2, stride=3),
    "dilation2-pad2": dict(in_channels=2, out_channels=2, kernel_size=3, padding=2, dilation=2),
    "groups2": dict(in_channels=4, out_channels=2, kernel_size=3, padding=1, groups=2),
    "rect": dict(in_channels=2, out_channels=3, kernel_size=(1, 3), stride=(2, 1)),
    "circular": dict(
        in_channels=2, out_channels=3, kernel_size=3, padding=1, padding_mode="circular"
    ),
    "reflect-stride2": dict(
        in_channels=2,
        out_channels=2,
        kernel_size=3,
        stride=2,
        padding=1,
        padding_mode="reflect",
    ),  # fmt: skip
    "same": dict(in_channels=2, out_channels=3, kernel_size=4, padding="same"),
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("size", [(6, 6), (7, 5)], ids=["6x6", "7x5"])
@pytest.mark.parametrize("name", list(CONVS))
def test_conv_norm_matches_full_matrix(name, size):
    """Power iteration equals the largest singular value of the conv's full matrix."""
    conv = nn.Conv2d(**CONVS[name])
    shape = (conv.in_channels,) + size
    weight = conv.weight.detach().double()
    matrix = full_matrix(lambda v: conv._conv_forward(v, weight, None), shape)
    exact = torch.linalg.matrix_norm(matrix, 2).item()
    estimate = conv2d_operator_norm(conv, size)
    assert estimate == pytest.approx(exact, rel=1e-9), f"{name}: {estimate} vs exact {exact}"
    assert estimate <= exact * (1 + 1e-9), "power iteration must approach from below"


def test_conv_norm_is_seeded_and_shape_forms_agree():
    """Same seed, same number; (H, W), (C, H, W) and (N, C, H, W) sizes agree."""
    conv = nn.Conv2d(3, 4, 3, padding=1)
    a = conv2d_operator_norm(conv, (8, 8), n_iter=20, seed=1)
    b = conv2d_operator_norm(conv, (3, 8, 8), n_iter=20, seed=1)
    c = conv2d_operator_norm(conv, (5, 3, 8, 8), n_iter=20, seed=1)
    assert a == b == c, f"input size forms disagree: {a}, {b}, {c}"


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("size", [(6, 6), (7, 5), (12, 12)], ids=["6x6", "7x5", "12x12"])
@pytest.mark.parametrize("name", list(CONVS))
def test_gram_bound_is_above_the_exact_norm(name, size):
    """Gram iteration never falls below the full matrix's norm, and stays close to it."""
    conv = nn.Conv2d(**CONVS[name])
    exact = exact_conv_norm(conv, (conv.in_channels,) + size)
    bound = conv2d_norm_bound(conv, size)
    assert bound >= exact * (1 - 1e-12), f"{name}: bound {bound} < exact {exact}"
    assert bound <= 2.0 * exact, f"{name}: bound {bound} far above exact {exact}"


@pytest.mark.parametrize("stride", [1, 2])
def test_gram_bound_is_exact_for_circular_convolutions(stride):
    """Circular padding is a circular convolution: the bound equals the exact norm."""
    conv = nn.Conv2d(3, 4, 3, padding=1, stride=stride, padding_mode="circular")
    exact = exact_conv_norm(conv, (3, 8, 8))
    assert conv2d_norm_bound(conv, (8, 8), n_iter=12) == pytest.approx(exact, rel=1e-3)
