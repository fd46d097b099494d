"""Each layer rule is an upper bound, checked against hand-computed or explicit values.

Every test here fails for one wrong rule that once went unnoticed: a tensor constant
taken by its min/max the wrong way, an unknown function taken as 1-Lipschitz,
BatchNorm's scale without its absolute value, wrapped polyphase taps overwritten
instead of added, a tuple output summed instead of root-sum-squared, adaptive
max-pool windows computed with floor.
"""

import math

import pytest
import torch
from _reference import exact_conv_norm
from torch import nn

from captum_rig.stability import (
    conv2d_norm_bound,
    layer_operator_norms,
    lipschitz_analysis,
    lipschitz_bound,
)

C = torch.tensor([0.5, -4.0, 2.0], dtype=torch.float64).view(1, 3, 1)


class _Times(nn.Module):
    def forward(self, x):
        return x * C


class _Over(nn.Module):
    def forward(self, x):
        return x / C


class _Exp(nn.Module):
    def forward(self, x):
        return torch.exp(x)


class _Pair(nn.Module):
    """A tuple output ``(3x, 4x)``: constant √(3² + 4²) = 5, not 3 + 4."""

    def forward(self, x):
        return x * 3, x * 4


@pytest.mark.parametrize("model, expected", [(_Times(), 4.0), (_Over(), 2.0)], ids=["mul", "div"])
def test_tensor_constant_scaling(model, expected):
    """``x · c``: max|c| = 4; ``x / c``: 1/min|c| = 2 (c = 0.5, −4, 2 per channel)."""
    bound = lipschitz_bound(model, torch.rand(1, 3, 5, dtype=torch.float64))
    assert bound == pytest.approx(expected), bound


def test_unknown_function_is_not_one_lipschitz():
    """``torch.exp`` has no rule: None, and the note names it."""
    report = lipschitz_analysis(_Exp(), torch.rand(1, 4, dtype=torch.float64))
    assert report.bound is None and "exp" in report.note, report.note


def test_batch_norm_scale_uses_its_magnitude():
    """A negative γ counts by |γ|/√(σ² + ε): here 3/√(1 + ε), not the positive 0.5."""
    bn = nn.BatchNorm1d(2).double().eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([-3.0, 0.5]))
        bn.running_var.fill_(1.0)
    (layer,) = layer_operator_norms(bn, torch.rand(2, 2, dtype=torch.float64))
    assert layer.norm == pytest.approx(3 / math.sqrt(1 + bn.eps)), layer


def test_wrapped_polyphase_taps_add_up():
    """A dilated kernel wider than the strided grid wraps around: its taps add, so the
    certified bound stays above the explicit matrix's norm."""
    torch.manual_seed(3)
    conv = nn.Conv2d(1, 1, 3, stride=2, dilation=3, padding=3, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(torch.ones_like(conv.weight))
    for size in ((4, 4), (5, 3)):
        exact = exact_conv_norm(conv, (1,) + size)
        assert conv2d_norm_bound(conv, size) >= exact * (1 - 1e-12), size


def test_tuple_output_is_root_sum_square():
    """A tuple output combines as √(3² + 4²) = 5."""
    bound = lipschitz_bound(_Pair(), torch.rand(1, 4, dtype=torch.float64))
    assert bound == pytest.approx(5.0), bound


@pytest.mark.parametrize("size, out, windows", [(5, 3, 2), (7, 4, 2), (10, 3, 2), (6, 4, 2)])
def test_adaptive_max_pool_windows_use_ceil(size, out, windows):
    """Adaptive windows end at ⌈(i+1)·n/out⌉: 5 → 3 puts pixel 2 in two windows per dim,
    so √(2·2) = 2; a spike there moves two outputs per dim."""
    pool = nn.AdaptiveMaxPool2d(out)
    (layer,) = layer_operator_norms(pool, torch.rand(1, 1, size, size))
    assert layer.norm == pytest.approx(math.sqrt(windows * windows)), (size, out, layer)
    spike = torch.zeros(1, 1, size, size)
    counts = [
        float(pool(spike.index_put((torch.tensor([0]), torch.tensor([0]), torch.tensor([i]),
                                    torch.tensor([j])), torch.tensor(1.0))).sum())
        for i in range(size) for j in range(size)
    ]  # fmt: skip
    assert max(counts) ** 0.5 <= layer.norm + 1e-9, (max(counts), layer.norm)


@pytest.mark.parametrize("size", [(12, 12), (32, 32)], ids=["12x12", "32x32"])
@pytest.mark.parametrize(
    "conv",
    [
        dict(in_channels=3, out_channels=8, kernel_size=3, padding=1),
        dict(in_channels=4, out_channels=4, kernel_size=3, stride=2, padding=1),
        dict(in_channels=4, out_channels=8, kernel_size=1),
        dict(in_channels=4, out_channels=4, kernel_size=3, padding=1, groups=4),
    ],
    ids=["3x3", "stride2", "1x1", "depthwise"],
)
def test_certified_conv_is_tight(conv, size):
    """Certified conv bound between the explicit matrix's norm and 1.15× it."""
    torch.manual_seed(0)
    layer = nn.Conv2d(**conv).double()
    shape = (layer.in_channels,) + size
    if math.prod(shape) > 1500:  # the explicit matrix: a power-iteration stand-in above
        from captum_rig.stability import conv2d_operator_norm

        exact = conv2d_operator_norm(layer, shape, n_iter=300)
    else:
        exact = exact_conv_norm(layer, shape)
    bound = conv2d_norm_bound(layer, size)
    assert exact * (1 - 1e-9) <= bound <= 1.15 * exact, (bound, exact)


@pytest.mark.parametrize(
    "pool",
    [nn.AvgPool2d(3, stride=1, padding=1), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(5),
     nn.Upsample(scale_factor=2, mode="bilinear")],
    ids=["avg3s1", "avg2", "adaptive", "bilinear"],
)  # fmt: skip
def test_certified_pooling_is_tight_at_12(pool):
    """Certified pooling bound between the explicit norm and 1.15× it at 12×12."""
    x = torch.rand(1, 2, 12, 12, dtype=torch.float64)
    (layer,) = layer_operator_norms(pool, x)
    exact = layer_operator_norms(pool, x, certified=False, n_iter=300, tol=0)[0].norm
    assert exact * (1 - 1e-9) <= layer.norm <= 1.15 * exact, (layer, exact)
