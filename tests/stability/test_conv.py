"""Tests for captum_rig.stability.conv: power iteration and certified bounds."""

import pytest
import torch
from _reference import exact_conv_norm, full_matrix
from torch import nn

import captum_rig.stability.conv as conv_module
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
@pytest.mark.parametrize("explicit", [True, False], ids=["explicit", "frequencies"])
@pytest.mark.parametrize("size", [(6, 6), (7, 5), (12, 12)], ids=["6x6", "7x5", "12x12"])
@pytest.mark.parametrize("name", list(CONVS))
def test_norm_bound_is_above_the_exact_norm(name, size, explicit, monkeypatch):
    """Never below the full matrix's norm; the layer's own matrix gives that norm to
    10⁻⁶; the per-frequency route (forced) stays close to it."""
    if not explicit:
        monkeypatch.setattr(conv_module, "_EXPLICIT_ENTRIES", 0)
    conv = nn.Conv2d(**CONVS[name])
    exact = exact_conv_norm(conv, (conv.in_channels,) + size)
    bound = conv2d_norm_bound(conv, size)
    assert bound >= exact * (1 - 1e-12), f"{name}: bound {bound} < exact {exact}"
    assert bound <= (1 + 2e-6 if explicit else 2.0) * exact, f"{name}: {bound} vs {exact}"


@pytest.mark.parametrize("stride", [1, 2])
def test_norm_bound_is_exact_for_circular_convolutions(stride, monkeypatch):
    """Circular padding is a circular convolution: the per-frequency bound is its norm."""
    monkeypatch.setattr(conv_module, "_EXPLICIT_ENTRIES", 0)
    conv = nn.Conv2d(3, 4, 3, padding=1, stride=stride, padding_mode="circular")
    exact = exact_conv_norm(conv, (3, 8, 8))
    bound = conv2d_norm_bound(conv, (8, 8))
    assert exact <= bound <= exact * (1 + 2e-6), (bound, exact)


def test_norm_bound_of_a_depthwise_convolution_is_its_largest_frequency_response():
    """One channel per group: the norm is max |K̂(ω)| over the circular grid, by hand."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 3, 3, padding=1, groups=3, padding_mode="circular")
    response = torch.fft.fft2(conv.weight.detach().double()[:, 0], s=(10, 10)).abs()
    bound = conv2d_norm_bound(conv, (10, 10))
    assert float(response.max()) <= bound <= float(response.max()) * (1 + 2e-6)


def test_norm_bound_of_zero_or_non_finite_weights():
    """Zero weights: 0 (to rounding); a NaN weight: inf (no bound), not an error."""
    conv = nn.Conv2d(2, 3, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
    assert conv2d_norm_bound(conv, (20, 20)) < 1e-100
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = float("nan")
    assert conv2d_norm_bound(conv, (20, 20)) == float("inf")
