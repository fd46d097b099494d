"""Tests for BlurIG's FFT blur: scipy's numbers at any σ, per σ, in bounded memory.

Oracles independent of the code under test: ``scipy.ndimage.gaussian_filter`` with
``mode="constant"`` and ``truncate=4.0`` on every channel, its finite difference in σ,
a brute-force search for FFT lengths, and ``torch.autograd.gradcheck``.
"""

import numpy as np
import pytest
import torch
from scipy import ndimage

from captum_rig.attr.blur_path import BlurPath, _fast_length, gaussian_blur

# σ ≈ 0 (radius 0: the identity), radii just below/at/above the image sizes used
# below (5, 6, 16, 17), and kernels far wider than any image.
SIGMAS = [0.0, 1e-3, 0.1, 0.13, 0.9, 1.2, 1.4, 4.0, 4.2, 9.0, 50.0, 300.0]


def scipy_channels(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """scipy's zero-padded 4σ Gaussian on every (H, W) channel of x (..., H, W)."""
    flat = x.reshape(-1, *x.shape[-2:]).numpy()
    out = [ndimage.gaussian_filter(c, sigma, mode="constant", truncate=4.0) for c in flat]
    return torch.from_numpy(np.stack(out)).reshape(x.shape)


@pytest.mark.parametrize("shape", [(2, 3, 17, 6), (1, 2, 6, 17), (1, 1, 1, 9), (3, 5, 12)])
def test_blur_matches_scipy_per_channel(shape):
    """Every σ of one batched call == scipy per channel, f64, kernels wider than the image too."""
    x = torch.rand(shape, dtype=torch.float64)
    blurred = gaussian_blur(x, SIGMAS)
    assert blurred.shape == (len(SIGMAS), *shape)
    for sigma, got in zip(SIGMAS, blurred):
        ref = scipy_channels(x, sigma)
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-13, msg=f"sigma={sigma}")


def test_small_sigmas_are_exactly_the_identity():
    """σ with radius int(4σ + 0.5) == 0 returns x bit for bit, float32 too (no FFT noise)."""
    x = torch.rand(2, 3, 11, 7)
    for sigma in [0.0, 1e-6, 0.1, 0.124]:
        assert torch.equal(gaussian_blur(x, sigma), x), f"sigma={sigma}"
    assert not torch.equal(gaussian_blur(x, 0.13), x), "radius 1 must blur"


def test_one_sigma_does_not_depend_on_its_batch():
    """A σ's blur is bitwise the same alone or with other sigmas, so chunking cannot matter."""
    x = torch.rand(2, 3, 40, 33)
    sigmas = [0.0, 0.5, 2.0, 7.5, 30.0]
    together = gaussian_blur(x, sigmas)
    for sigma, got in zip(sigmas, together):
        assert torch.equal(got, gaussian_blur(x, sigma)), f"sigma={sigma}"
    images, velocity = BlurPath(x).images_and_velocity(sigmas, 0.01)
    alone = [BlurPath(x).images_and_velocity([s], 0.01) for s in sigmas]
    assert torch.equal(images, torch.cat([a[0] for a in alone])), "images per sigma"
    assert torch.equal(velocity, torch.cat([a[1] for a in alone])), "velocity per sigma"


@pytest.mark.parametrize("grad_step", [0.01, 0.3])
def test_velocity_is_scipys_finite_difference(grad_step):
    """images_and_velocity == scipy blur and (blur(σ + h) - blur(σ)) / h, radius jumps included."""
    x = torch.rand(2, 2, 15, 10, dtype=torch.float64)
    # 0.12 + 0.01 and 1.12 + 0.01 cross a radius step; 0.0 + 0.01 stays the identity.
    sigmas = [0.0, 0.12, 1.12, 2.0, 6.0, 40.0]
    images, velocity = BlurPath(x).images_and_velocity(sigmas, grad_step)
    for s, sigma in enumerate(sigmas):
        ref = scipy_channels(x, sigma)
        ref_velocity = (scipy_channels(x, sigma + grad_step) - ref) / grad_step
        torch.testing.assert_close(images[s], ref, rtol=0, atol=1e-13, msg=f"sigma={sigma}")
        torch.testing.assert_close(
            velocity[s], ref_velocity, rtol=0, atol=1e-11, msg=f"velocity, sigma={sigma}"
        )
    if grad_step < 0.125:  # σ 0 and 0 + h both have radius 0: the blur does not move
        assert torch.equal(velocity[0], torch.zeros_like(velocity[0])), "σ 0 → h: no change"


def test_float32_blur_of_a_large_image_matches_float64():
    """A 300×260 image with a kernel wider than it: float32 FFT error stays at float32 level."""
    x = torch.rand(1, 2, 300, 260, dtype=torch.float64)
    sigmas = [0.7, 12.0, 90.0]
    ref = gaussian_blur(x, sigmas)
    got = gaussian_blur(x.float(), sigmas)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref, rtol=0, atol=2e-6)


def test_blur_is_differentiable_in_the_image():
    """gradcheck in float64 through the FFT blur, several sigmas and a non-square image."""
    x = torch.rand(1, 2, 7, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: gaussian_blur(t, [0.0, 0.6, 3.0]), (x,))
    assert torch.autograd.gradgradcheck(lambda t: gaussian_blur(t, 1.1), (x,))


def test_path_points_are_detached():
    """The attribution path does not keep the input's graph: its points are fresh leaves."""
    x = torch.rand(1, 1, 6, 6, requires_grad=True)
    images, velocity = BlurPath(x).images_and_velocity([0.5, 2.0], 0.01)
    assert not images.requires_grad and not velocity.requires_grad


def test_fast_length_is_the_smallest_5_smooth_length():
    """_fast_length(n) == the smallest 2^a·3^b·5^c >= n, by brute force up to 3000."""

    def smooth(m: int) -> bool:
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    for n in range(1, 3001):
        expected = next(m for m in range(n, 2 * n + 1) if smooth(m))
        assert _fast_length(n) == expected, n
