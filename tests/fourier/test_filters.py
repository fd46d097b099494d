"""low_pass, high_pass, FrequencyPath and the modules against a literal numpy FFT."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from captum_rig.fourier import (
    FrequencyPath,
    HighPass,
    LowPass,
    frequency_radius,
    high_pass,
    low_pass,
    max_radius,
)

from ._numpy_fourier import numpy_low_pass, radius_grid

SHAPES = [(2, 3, 8, 8), (1, 3, 7, 12), (2, 1, 12, 5), (9, 4), (1, 1, 1, 1)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_literal_numpy_fft(shape, dtype, device):
    """Every low- and high-pass image equals a per-matrix numpy FFT with the radius mask."""
    x = torch.rand(shape, dtype=dtype)
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    largest = max_radius(*shape[-2:])
    radii = [0, 1, math.sqrt(2), 2.5, 3, max(0, largest - 1e-9), 100]
    for r in radii:
        expected = numpy_low_pass(x.numpy(), r)
        low = low_pass(x.to(device), r)
        high = high_pass(x.to(device), r)
        assert low.dtype == dtype and low.shape == x.shape and low.device.type == device.type
        assert not low.is_complex() and not high.is_complex(), "real output"
        np.testing.assert_allclose(low.double().cpu().numpy(), expected, atol=tol, err_msg=f"{r}")
        np.testing.assert_allclose(
            high.double().cpu().numpy(), x.numpy() - expected, atol=tol, err_msg=f"r={r}"
        )


def test_radius_grid_is_the_integer_dft_frequencies():
    """fftfreq(n) * n on both axes, sqrt of the squares; the one-sided grid is its left part."""
    for h, w in [(8, 8), (7, 12), (5, 1)]:
        np.testing.assert_allclose(frequency_radius(h, w).numpy(), radius_grid(h, w))
        onesided = frequency_radius(h, w, onesided=True)
        np.testing.assert_allclose(onesided.numpy(), radius_grid(h, w)[:, : w // 2 + 1])
        assert max_radius(h, w) == pytest.approx(radius_grid(h, w).max())


def test_low_plus_high_is_x_and_the_two_are_orthogonal():
    """low + high == x; ||low||² + ||high||² == ||x||² (disjoint sets of frequencies)."""
    x = torch.rand(3, 2, 9, 10, dtype=torch.float64)
    for r in [0, 0.5, 1, 2.2, 4, 6, 7]:
        low, high = low_pass(x, r), high_pass(x, r)
        torch.testing.assert_close(low + high, x, atol=1e-12, rtol=0)
        energy = low.pow(2).sum((-2, -1)) + high.pow(2).sum((-2, -1))
        torch.testing.assert_close(energy, x.pow(2).sum((-2, -1)))


def test_endpoints():
    """r = 0 keeps the mean; r >= the largest radius gives x back exactly, high-pass 0."""
    x = torch.rand(2, 3, 6, 9)
    mean = x.mean((-2, -1), keepdim=True).expand_as(x)
    torch.testing.assert_close(low_pass(x, 0), mean)
    torch.testing.assert_close(high_pass(x, 0), x - mean)
    for r in [max_radius(6, 9), 50]:
        assert torch.equal(low_pass(x, r), x) and bool((high_pass(x, r) == 0).all())
    assert low_pass(x, 100) is not x, "a copy"


def test_idempotent_and_monotone():
    """A low-pass image of a low-pass image is itself; a smaller radius filters it further."""
    x = torch.rand(2, 3, 10, 10, dtype=torch.float64)
    low = low_pass(x, 3)
    torch.testing.assert_close(low_pass(low, 3), low)
    torch.testing.assert_close(low_pass(low, 2), low_pass(x, 2))
    torch.testing.assert_close(high_pass(high_pass(x, 3), 3), high_pass(x, 3))


def test_gradcheck():
    """Both filters are differentiable, the gradients match finite differences."""
    x = torch.rand(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: low_pass(t, 1.5), (x,))
    assert torch.autograd.gradcheck(lambda t: high_pass(t, 2), (x,))
    assert torch.autograd.gradgradcheck(lambda t: low_pass(t, 1.5), (x,))


def test_linear_and_self_adjoint():
    """<low(x), y> == <x, low(y)>: the filter is an orthogonal projection."""
    x, y = torch.rand(2, 1, 3, 8, 7, dtype=torch.float64)
    torch.testing.assert_close((low_pass(x, 2) * y).sum(), (x * low_pass(y, 2)).sum())
    torch.testing.assert_close(low_pass(2 * x - y, 2), 2 * low_pass(x, 2) - low_pass(y, 2))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_keeps_its_dtype(dtype):
    """Half inputs are filtered in float32 and come back in their dtype."""
    x = torch.rand(1, 3, 8, 8)
    got = low_pass(x.to(dtype), 2)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), low_pass(x.to(dtype).float(), 2), atol=1e-2, rtol=0)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    radius=st.floats(0, 8, allow_nan=False),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_property_shape_dtype_radius(batch, h, w, radius, dtype):
    """For any shape, dtype and radius: shape and dtype kept, numpy's result, low + high == x."""
    x = torch.rand(*batch, h, w, dtype=torch.float64).to(dtype)
    low, high = low_pass(x, radius), high_pass(x, radius)
    assert low.shape == x.shape and low.dtype == dtype and high.dtype == dtype
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    expected = torch.from_numpy(numpy_low_pass(x.double().numpy(), radius))
    torch.testing.assert_close(low.double(), expected, atol=tol, rtol=0)
    torch.testing.assert_close((low + high).double(), x.double(), atol=tol, rtol=0)


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    cuts=st.lists(st.floats(0, 7, allow_nan=False), min_size=0, max_size=4, unique=True),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_property_band_path_passes_the_low_pass_images(h, w, cuts, dtype):
    """For any shape and bands: x(0) = 0, x(j) = low_pass(x, r_j), x(m) = x."""
    bands = sorted(c for c in cuts if c < max_radius(h, w)) + [max_radius(h, w) + 0.5]
    x = torch.rand(2, 2, h, w, dtype=torch.float64).to(dtype)
    points = FrequencyPath(x).points(list(range(len(bands) + 1)), bands)
    assert points.shape == (len(bands) + 1, *x.shape) and points.dtype == dtype
    tol = dict(atol=1e-9, rtol=0) if dtype == torch.float64 else dict(atol=1e-5, rtol=0)
    torch.testing.assert_close(points[0], torch.zeros_like(x), **tol)
    for j, r in enumerate(bands):
        torch.testing.assert_close(points[j + 1], low_pass(x, r), **tol)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda x: low_pass(x, -1), ValueError, "radius must be >= 0"),
        (lambda x: high_pass(x, -0.5), ValueError, "radius must be >= 0"),
        (lambda x: low_pass(x, float("nan")), ValueError, "radius must be finite"),
        (lambda x: low_pass(x, "2"), TypeError, "radius must be a real number"),
        (lambda x: low_pass(x.long(), 2), TypeError, "x must be a floating point tensor"),
        (lambda x: low_pass(x[0, 0, 0], 2), ValueError, "x must have at least 2 dims"),
        (lambda x: LowPass(-2), ValueError, "radius must be >= 0"),
        (lambda x: LowPass(2)(x[0, 0]), ValueError, "images must have 3 or 4 dims"),
        (lambda x: FrequencyPath(x * float("inf")), ValueError, "images contains NaN or Inf"),
    ],
    ids=["low", "high", "nan", "str", "int", "1-d", "module", "module dims", "path inf"],
)
def test_bad_input_names_the_argument(call, error, message):
    """Negative or non-real radii, non-float or too small inputs: errors naming them."""
    with pytest.raises(error, match=message):
        call(torch.rand(2, 3, 8, 8))


def test_non_contiguous_input():
    """A transposed view is filtered like its contiguous copy."""
    x = torch.rand(2, 3, 9, 8, dtype=torch.float64).transpose(-2, -1)
    assert not x.is_contiguous()
    torch.testing.assert_close(low_pass(x, 2), low_pass(x.contiguous(), 2))
    torch.testing.assert_close(FrequencyPath(x).low_pass([2])[0], low_pass(x.contiguous(), 2))


def test_modules():
    """LowPass/HighPass apply the filters to (C, H, W) and (N, C, H, W) images."""
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(LowPass(2)(x), low_pass(x, 2))
    torch.testing.assert_close(HighPass(2)(x[0]), high_pass(x[0], 2))
    assert repr(HighPass(1.5)) == "HighPass(radius=1.5)"


class TestFrequencyPath:
    """Many low-pass images from one DFT, and the band path between them."""

    def test_low_pass_stack(self, dtype, device):
        """Each radius's image equals low_pass (reverse: high_pass); the largest is x."""
        x = torch.rand(2, 3, 7, 8, dtype=dtype, device=device)
        radii = [0, 1.5, 3, max_radius(7, 8)]
        path = FrequencyPath(x)
        tol = dict(atol=1e-10, rtol=0) if dtype == torch.float64 else dict(atol=2e-5, rtol=0)
        stack, reverse = path.low_pass(radii), path.low_pass(radii, reverse=True)
        assert stack.shape == (4, *x.shape) and stack.dtype == dtype
        for r, image, high in zip(radii, stack, reverse):
            torch.testing.assert_close(image, low_pass(x, r), **tol)
            torch.testing.assert_close(high, high_pass(x, r), **tol)
        assert torch.equal(stack[-1], x) and bool((reverse[-1] == 0).all())
        chunks = list(path.chunks(radii, 3))
        assert [start for start, _ in chunks] == [0, 3]
        torch.testing.assert_close(torch.cat([c for _, c in chunks]), stack)

    def test_band_path(self):
        """x(0) = 0, x(j) = low_pass(x, r_j), x(m) = x, linear inside a band."""
        x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
        bands = [0.0, 2.0, 3.5, max_radius(8, 8)]
        path = FrequencyPath(x)
        points = path.points([0, 1, 2, 3, 4], bands)
        assert bool((points[0] == 0).all())
        for j, r in enumerate(bands):
            torch.testing.assert_close(points[j + 1], low_pass(x, r))
        half = path.points([1.5], bands)[0]
        torch.testing.assert_close(half, (points[1] + points[2]) / 2)
        step = path.displacement([0.25, 1.0], [0.75, 3.0], bands)
        torch.testing.assert_close(step[0], points[1] / 2)
        torch.testing.assert_close(step[1], points[3] - points[1])
