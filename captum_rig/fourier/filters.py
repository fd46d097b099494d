r"""Low- and high-pass images: the 2-D DFT of every trailing H×W matrix, split by radius.

For an image channel X (H×W) with 2-D DFT :math:`\hat X(f_y, f_x)`, where ``f_y`` and
``f_x`` are the integer DFT frequencies ``torch.fft.fftfreq(n) * n`` (``0, 1, ...,
-2, -1``), the low-pass image of radius ``r`` keeps the frequencies with
``sqrt(f_y² + f_x²) <= r`` and the high-pass image the others, so that
``low_pass(x, r) + high_pass(x, r) == x``. The radius of ``f`` and ``-f`` is the same,
so both images are real. ``r = 0`` keeps the mean of every channel, and every radius of
at least :func:`max_radius` keeps everything.

References:
    Yin, Lopes, Shlens, Cubuk, Gilmer. A Fourier Perspective on Model Robustness in
    Computer Vision. NeurIPS 2019.
"""

import math
from typing import Iterator, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from captum_rig._checks import check_images, check_real, compute_dtype

__all__ = [
    "low_pass",
    "high_pass",
    "max_radius",
    "frequency_radius",
    "FrequencyPath",
    "LowPass",
    "HighPass",
]

Radii = Union[Tensor, Sequence[float]]


def max_radius(height: int, width: int) -> float:
    """The largest radius ``sqrt(f_y² + f_x²)`` of the DFT frequencies of an H×W image.

    Examples:
        >>> max_radius(32, 32) == (16**2 + 16**2) ** 0.5
        True
    """
    return math.hypot(height // 2, width // 2)


def frequency_radius(
    height: int, width: int, device: Optional[torch.device] = None, onesided: bool = False
) -> Tensor:
    """The radius ``sqrt(f_y² + f_x²)`` of every DFT frequency, float64.

    Args:
        height (int): H.
        width (int): W.
        device (torch.device, optional): where the grid lives.
        onesided (bool): the ``W // 2 + 1`` columns of :func:`torch.fft.rfft2` instead of
            all ``W``.

    Returns:
        Tensor: ``(H, W)`` (or ``(H, W // 2 + 1)``), in the DFT's order (zero first).

    Examples:
        >>> frequency_radius(4, 4)[:, 0].tolist()  # f_y = 0, 1, -2, -1
        [0.0, 1.0, 2.0, 1.0]
    """
    fy = torch.fft.fftfreq(height, 1.0 / height, dtype=torch.float64, device=device)
    if onesided:
        fx = torch.fft.rfftfreq(width, 1.0 / width, dtype=torch.float64, device=device)
    else:
        fx = torch.fft.fftfreq(width, 1.0 / width, dtype=torch.float64, device=device)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def low_pass(x: Tensor, radius: float) -> Tensor:
    r"""Keeps the DFT frequencies of radius ``<= radius`` of every trailing H×W matrix.

    Differentiable in ``x``. Computed with ``rfft2``/``irfft2`` in at least float32
    (half precision is upcast) and returned in ``x``'s dtype.

    Args:
        x (Tensor): float tensor of shape ``(..., H, W)``, e.g. images ``(N, C, H, W)``.
        radius (float): ``>= 0``; ``0`` keeps each matrix's mean, ``>=``
            :func:`max_radius` gives ``x`` back (a copy).

    Returns:
        Tensor: shape, dtype and device of ``x``, real.

    Examples:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> low_pass(x, 4).shape
        torch.Size([2, 3, 32, 32])
        >>> bool(torch.allclose(low_pass(x, 0), x.mean((-2, -1), keepdim=True).expand_as(x)))
        True
    """
    check_images(x, name="x")
    radius = check_real(radius, name="radius")
    height, width = x.shape[-2:]
    if radius >= max_radius(height, width):
        return x.clone()
    keep = frequency_radius(height, width, x.device, onesided=True) <= radius
    dtype = compute_dtype(x.dtype)
    spectrum = torch.fft.rfft2(x.to(dtype))
    return torch.fft.irfft2(spectrum * keep.to(dtype), s=(height, width)).to(x.dtype)


def high_pass(x: Tensor, radius: float) -> Tensor:
    r"""Removes the DFT frequencies of radius ``<= radius``: ``x - low_pass(x, radius)``.

    Args:
        x (Tensor): float tensor of shape ``(..., H, W)``.
        radius (float): ``>= 0``; ``0`` removes each matrix's mean, ``>=``
            :func:`max_radius` gives zeros.

    Returns:
        Tensor: shape, dtype and device of ``x``, real.

    Examples:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> bool(torch.allclose(low_pass(x, 5) + high_pass(x, 5), x, atol=1e-6))
        True
        >>> high_pass(x, 0).mean((-2, -1)).abs().max() < 1e-6
        tensor(True)
    """
    return x - low_pass(x, radius)


class FrequencyPath:
    r"""Low-pass images of many radii, and the band-by-band path, from one DFT.

    With band edges ``r_1 < ... < r_m`` (the last at least :func:`max_radius`), band
    ``j`` holds the frequencies with ``r_{j-1} < radius <= r_j`` (``r_0 = -∞``) and its
    part of the image is ``d_j = low_pass(x, r_j) - low_pass(x, r_{j-1})``. The path

    .. math::
        x(t) = Σ_{j=1}^{m} \mathrm{clamp}(t - j + 1, 0, 1)\, d_j, \qquad t ∈ [0, m],

    starts at ``x(0) = 0``, passes ``x(j) = low_pass(x, r_j)`` and ends at ``x(m) = x``,
    linear between integers. The DFT is computed once, without gradient.

    Args:
        images (Tensor): float tensor of shape ``(..., H, W)``.

    Examples:
        >>> x = torch.rand(4, 3, 32, 32)
        >>> path = FrequencyPath(x)
        >>> path.low_pass([0, 4, 8]).shape  # (radii, N, C, H, W)
        torch.Size([3, 4, 3, 32, 32])
        >>> path.points([0.5, 2.0], bands=[0, 4, 23]).shape
        torch.Size([2, 4, 3, 32, 32])
    """

    def __init__(self, images: Tensor) -> None:
        check_images(images, name="images")
        self._images = images.detach()
        self._shape = tuple(images.shape[-2:])
        self._dtype = compute_dtype(images.dtype)
        self._radius = frequency_radius(*self._shape, images.device, onesided=True)
        with torch.no_grad():
            self._spectrum = torch.fft.rfft2(self._images.to(self._dtype))

    @property
    def max_radius(self) -> float:
        """:func:`max_radius` of the images: every radius from here keeps everything."""
        return max_radius(*self._shape)

    def _synthesise(self, weights: Tensor) -> Tensor:
        # weights: (m, H, W // 2 + 1), one factor per frequency and point
        extra = (1,) * (self._spectrum.dim() - 2)
        w = weights.to(self._dtype).reshape(weights.shape[0], *extra, *weights.shape[1:])
        out = torch.fft.irfft2(self._spectrum.unsqueeze(0) * w, s=self._shape)
        return out.to(self._images.dtype)

    def low_pass(self, radii: Radii, reverse: bool = False) -> Tensor:
        """``low_pass(x, r)`` (``reverse``: ``high_pass``) of every radius, ``(m, ...)``."""
        r = torch.as_tensor(radii, dtype=torch.float64, device=self._radius.device).reshape(-1)
        keep = (self._radius[None] <= r[:, None, None]).to(self._dtype)
        images = self._synthesise(keep)
        full = r >= self.max_radius
        if bool(full.any()):  # exactly x (and exactly 0 in reverse), as low_pass gives
            images[full.to(images.device)] = self._images
        return self._images.unsqueeze(0) - images if reverse else images

    def chunks(
        self, radii: Sequence[float], per_chunk: int, reverse: bool = False
    ) -> Iterator[Tuple[int, Tensor]]:
        """``(start, images)`` for ``per_chunk`` radii at a time, as :meth:`low_pass`."""
        for start in range(0, len(radii), per_chunk):
            yield start, self.low_pass(radii[start : start + per_chunk], reverse=reverse)

    def _band_weights(self, t: Radii, bands: Radii) -> Tensor:
        # frequency in band j (0-based) enters over [j, j + 1]: weight clamp(t - j, 0, 1)
        edges = torch.as_tensor(bands, dtype=torch.float64, device=self._radius.device)
        band = torch.searchsorted(edges, self._radius.contiguous(), side="left")
        t = torch.as_tensor(t, dtype=torch.float64, device=band.device).reshape(-1)
        return (t[:, None, None] - band[None].to(torch.float64)).clamp(0.0, 1.0)

    def points(self, t: Radii, bands: Radii) -> Tensor:
        """Points ``x(t)`` of the band path, shape ``(m, ..., H, W)``."""
        return self._synthesise(self._band_weights(t, bands))

    def displacement(self, start: Radii, stop: Radii, bands: Radii) -> Tensor:
        """Exact increments ``x(stop) - x(start)``, pairwise, shape ``(m, ..., H, W)``."""
        return self._synthesise(self._band_weights(stop, bands) - self._band_weights(start, bands))


class LowPass(nn.Module):
    r"""Keeps the DFT frequencies of radius ``<= radius`` of every image channel.

    Args:
        radius (float): ``>= 0``.

    Shape:
        - Input: ``(C, H, W)`` or ``(N, C, H, W)``, float.
        - Output: same as input.

    Examples:
        >>> LowPass(4)(torch.rand(3, 32, 32)).shape
        torch.Size([3, 32, 32])
    """

    def __init__(self, radius: float) -> None:
        super().__init__()
        self.radius = check_real(radius, name="radius")

    def forward(self, images: Tensor) -> Tensor:
        check_images(images, name="images", ndim=(3, 4), layout="(C, H, W) or (N, C, H, W)")
        return low_pass(images, self.radius)

    def extra_repr(self) -> str:
        return f"radius={self.radius}"


class HighPass(LowPass):
    r"""Removes the DFT frequencies of radius ``<= radius``: ``x - LowPass(radius)(x)``.

    Args:
        radius (float): ``>= 0``.

    Shape:
        - Input: ``(C, H, W)`` or ``(N, C, H, W)``, float.
        - Output: same as input.

    Examples:
        >>> HighPass(4)(torch.rand(3, 32, 32)).shape
        torch.Size([3, 32, 32])
    """

    def forward(self, images: Tensor) -> Tensor:
        return images - super().forward(images)
