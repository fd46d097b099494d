"""The blur path: zero-padded Gaussian blurs of images at many sigmas, by FFT.

The blurs are those of ``scipy.ndimage.gaussian_filter`` with zero padding and a kernel
truncated at 4σ, the blur of PAIR's BlurIG; :class:`BlurPath` gives the images along the
path and their σ-derivative, which Blur IG integrates against.

References:
    Xu, Venugopalan, Sundararajan. Attribution in Scale and Space. CVPR 2020,
    arXiv:2004.03383.
"""

import math
import numbers
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from captum_rig._checks import check_images, check_real, compute_dtype

__all__ = ["gaussian_blur", "blur_sigmas"]

# scipy.ndimage.gaussian_filter's default: the kernel is cut at 4 sigma.
TRUNCATE = 4.0


Sigmas = Union[float, Sequence[float], Tensor]


def _kernels(sigmas: Sequence[float], length: int) -> np.ndarray:
    """scipy's truncated Gaussian ``g_σ(d)`` at offsets ``d = -(L-1)..L-1``: ``(S, 2L-1)``.

    As ``scipy.ndimage.gaussian_filter``: radius ``int(4σ + 0.5)``, normalised over the
    whole truncated support (zero padding does not renormalise at the border), and the
    identity when the radius is 0 (σ = 0 included). Offsets beyond the image are dropped:
    they never meet a pixel.
    """
    out = np.zeros((len(sigmas), 2 * length - 1))
    centre = length - 1
    for s, sigma in enumerate(sigmas):
        radius = int(TRUNCATE * sigma + 0.5)
        if radius == 0:
            out[s, centre] = 1.0
            continue
        # The same float64 expression as scipy's _gaussian_kernel1d.
        phi = np.exp(-0.5 / (sigma * sigma) * np.arange(-radius, radius + 1) ** 2)
        phi = phi / phi.sum()
        keep = min(radius, centre)
        out[s, centre - keep : centre + keep + 1] = phi[radius - keep : radius + keep + 1]
    return out


def _fast_length(n: int) -> int:
    """The smallest ``2^a · 3^b · 5^c >= n``: a length every FFT library does fast."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def _kind(kernel: np.ndarray, identity: np.ndarray) -> str:
    """``"zero"``, ``"identity"`` or ``"fft"``: how a kernel is applied."""
    if not kernel.any():
        return "zero"
    return "identity" if np.array_equal(kernel, identity) else "fft"


class _AxisBlur:
    """Zero-padded 1-D convolutions along one axis of ``(M, H, W)`` tensors, by FFT.

    Holds, per σ, the spectra of several kernel sets (each ``(S, 2L-1)`` from
    ``_kernels``) at one FFT length ``n_σ >= L + r_σ``, ``r_σ`` the largest radius among the
    sets' kernels of that σ: the circular convolution of that length never wraps a kernel
    tail onto a kept pixel, so its first ``L`` outputs are the zero-padded convolution. The
    length depends on σ alone, so a blur does not depend on the other sigmas it is computed
    with. Identity and zero kernels skip the FFT, which keeps σ = 0 exact.
    """

    def __init__(
        self, kernel_sets: Sequence[np.ndarray], length: int, dim: int, dtype: torch.dtype, device
    ) -> None:
        self.length, self.dim = length, dim
        centre = length - 1
        offsets = np.abs(np.arange(2 * length - 1) - centre)
        stacked = np.stack(kernel_sets)  # (sets, S, 2L - 1)
        radii = np.where(stacked.any(axis=0), offsets, 0).max(axis=1)
        self.n = [_fast_length(length + int(r)) for r in radii]
        identity = (offsets == 0).astype(stacked.dtype)
        self.kinds = [[_kind(k, identity) for k in kernels] for kernels in kernel_sets]
        complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        self.spectra: List[List[Tensor]] = [[] for _ in kernel_sets]
        for s, n in enumerate(self.n):
            # Offset d goes to index d mod n, the layout of a circular convolution.
            circular = np.zeros((len(kernel_sets), n))
            circular[:, :length] = stacked[:, s, centre:]
            circular[:, n - centre :] += stacked[:, s, :centre]
            spectra = torch.from_numpy(np.fft.rfft(circular)).to(device, complex_dtype)
            for which, spectrum in enumerate(spectra):
                self.spectra[which].append(spectrum[:, None] if dim == -2 else spectrum)

    def needs_fft(self, s: int, *sets: int) -> bool:
        """Whether kernel ``s`` of any of ``sets`` is a true convolution."""
        return any(self.kinds[i][s] == "fft" for i in sets)

    def rfft(self, t: Tensor, s: int) -> Tensor:
        """The spectrum of ``t`` along this axis at σ number ``s``'s length, to share."""
        return torch.fft.rfft(t, n=self.n[s], dim=self.dim)

    def apply(
        self, which: int, s: int, t: Tensor, t_hat: Optional[Tensor] = None
    ) -> Optional[Tensor]:
        """Kernel ``s`` of set ``which`` applied to ``t`` (None for a zero kernel)."""
        kind = self.kinds[which][s]
        if kind != "fft":
            return None if kind == "zero" else t
        t_hat = self.rfft(t, s) if t_hat is None else t_hat
        out = torch.fft.irfft(t_hat * self.spectra[which][s], n=self.n[s], dim=self.dim)
        return out.narrow(self.dim, 0, self.length)


class BlurPath:
    """The blur path of one image batch ``x`` of shape ``(..., H, W)``.

    Blurring every channel with a zero-padded separable Gaussian is a 1-D convolution along
    H, then one along W. Both run by FFT, one σ at a time into the preallocated result, so
    the memory besides the result stays a few images' worth at any image size and kernel
    width. On the device of ``x``, in float32 at least; differentiable in ``x`` unless
    ``detach``.
    """

    # Kernel sets of images_and_velocity: the blur, its σ-derivative, the blur at σ + h.
    BLUR, DIFF, STEP = 0, 1, 2

    def __init__(self, x: Tensor, detach: bool = True) -> None:
        self.shape = x.shape
        self.dtype = compute_dtype(x.dtype)
        self.h, self.w = x.shape[-2:]
        self._x = (x.detach() if detach else x).to(self.dtype).reshape(-1, self.h, self.w)

    def _axes(
        self, sets_h: List[np.ndarray], sets_w: List[np.ndarray]
    ) -> Tuple[_AxisBlur, _AxisBlur]:
        device = self._x.device
        return (
            _AxisBlur(sets_h, self.h, -2, self.dtype, device),
            _AxisBlur(sets_w, self.w, -1, self.dtype, device),
        )

    def _x_hat(self, rows: _AxisBlur, s: int, sets: Sequence[int], cache: dict) -> Optional[Tensor]:
        """X's spectrum along H at σ number ``s``'s length; consecutive sigmas share it."""
        if not rows.needs_fft(s, *sets):
            return None
        if cache.get("n") != rows.n[s]:
            cache.clear()  # the last length only: the spectrum is a whole image's size
            cache.update(n=rows.n[s], hat=rows.rfft(self._x, s))
        return cache["hat"]

    def images(self, sigmas: Sequence[float]) -> Tensor:
        """``blur(x, σ)`` for every σ: ``(S, ..., H, W)`` in the compute dtype."""
        rows, cols = self._axes([_kernels(sigmas, self.h)], [_kernels(sigmas, self.w)])
        out = self._x.new_empty((len(sigmas), *self._x.shape))
        cache: dict = {}
        for s in range(len(sigmas)):
            x_hat = self._x_hat(rows, s, [0], cache)
            out[s] = cols.apply(0, s, rows.apply(0, s, self._x, x_hat))
        return out.reshape(len(sigmas), *self.shape)

    def images_and_velocity(
        self, sigmas: Sequence[float], grad_step: float
    ) -> Tuple[Tensor, Tensor]:
        """``blur(x, σ)`` and ``(blur(x, σ + h) - blur(x, σ)) / h``, each ``(S, ..., H, W)``.

        With ``B' = B(σ + h)`` and ``D = (B' - B) / h`` the difference is
        ``D_H X B'_Wᵀ + B_H X D_Wᵀ``; ``D`` is taken from the float64 kernels, so the
        cancellation of the finite difference never happens in float32.
        """
        blur, diff, step = self.BLUR, self.DIFF, self.STEP
        stepped = [sigma + grad_step for sigma in sigmas]
        k_h, k_w = _kernels(sigmas, self.h), _kernels(sigmas, self.w)
        k_step_h, k_step_w = _kernels(stepped, self.h), _kernels(stepped, self.w)
        rows, cols = self._axes(
            [k_h, (k_step_h - k_h) / grad_step],
            [k_w, (k_step_w - k_w) / grad_step, k_step_w],
        )
        images = self._x.new_empty((len(sigmas), *self._x.shape))
        velocity = torch.empty_like(images)
        cache: dict = {}
        for s in range(len(sigmas)):
            x_hat = self._x_hat(rows, s, [blur, diff], cache)
            rows_x = rows.apply(blur, s, self._x, x_hat)
            diff_x = rows.apply(diff, s, self._x, x_hat)
            hat = cols.rfft(rows_x, s) if cols.needs_fft(s, blur, diff) else None
            images[s] = cols.apply(blur, s, rows_x, hat)
            terms = [cols.apply(diff, s, rows_x, hat)]
            if diff_x is not None:
                terms.append(cols.apply(step, s, diff_x))
            terms = [t for t in terms if t is not None]
            velocity[s] = sum(terms[1:], terms[0]) if terms else 0.0
        shape = (len(sigmas), *self.shape)
        return images.reshape(shape), velocity.reshape(shape)


def _as_sigmas(sigma: Sigmas) -> Tuple[List[float], bool]:
    """``(sigmas, is_scalar)`` from a number, a sequence or a 0/1-dim tensor."""
    if isinstance(sigma, Tensor):
        if sigma.dim() > 1:
            raise ValueError(f"sigma must be a number or 1-d, got shape {tuple(sigma.shape)}")
        is_scalar = sigma.dim() == 0
        values = sigma.reshape(-1).tolist()
    elif isinstance(sigma, (numbers.Number, str, bytes)) or not hasattr(sigma, "__iter__"):
        is_scalar, values = True, [sigma]  # a non-number fails in check_real, naming sigma
    else:
        is_scalar, values = False, list(sigma)
    name = "sigma" if is_scalar else "sigma[{}]"
    return [check_real(v, name.format(i)) for i, v in enumerate(values)], is_scalar


def gaussian_blur(x: Tensor, sigma: Sigmas) -> Tensor:
    r"""Zero-padded Gaussian blur of every trailing H×W matrix, as scipy computes it.

    The same numbers as ``scipy.ndimage.gaussian_filter(image, [σ, σ, 0],
    mode="constant")`` on an ``(H, W, C)`` image, which is the blur of PAIR's BlurIG:
    zero padding, kernel truncated at ``4σ`` (radius ``int(4σ + 0.5)``) and normalised
    over that support, σ = 0 the identity. Any σ works, also beyond the image size.
    Computed as two 1-D convolutions (along H, then W) by FFT, one σ at a time, so memory
    stays a few images' worth at any size; on the device of ``x``, differentiable in ``x``;
    half and bfloat16 inputs are blurred in float32.

    Args:
        x (Tensor): float tensor ``(..., H, W)``, e.g. images ``(N, C, H, W)``.
        sigma (float, sequence of floats or Tensor): standard deviation(s) in pixels,
            ``>= 0``.

    Returns:
        Tensor: ``x.shape`` for a single σ; ``(S, *x.shape)`` for S sigmas. Dtype and
        device of ``x``.

    Examples:
        >>> x = torch.rand(2, 3, 8, 10)
        >>> gaussian_blur(x, 1.5).shape, gaussian_blur(x, [0.0, 1.0, 4.0]).shape
        (torch.Size([2, 3, 8, 10]), torch.Size([3, 2, 3, 8, 10]))
        >>> torch.equal(gaussian_blur(x, 0.0), x)
        True
    """
    check_images(x, name="x")
    sigmas, is_scalar = _as_sigmas(sigma)
    if not sigmas:
        return x.new_empty((0, *x.shape))
    blurred = BlurPath(x, detach=False).images(sigmas).to(x.dtype)
    return blurred[0] if is_scalar else blurred


def blur_sigmas(max_sigma: float, n_steps: int, sqrt: bool = False) -> List[float]:
    """The ``n_steps + 1`` sigmas of the blur path, exactly as PAIR's BlurIG spaces them.

    ``σ_i = i · max_sigma / n_steps`` (or its square root when ``sqrt``), ``i = 0..n_steps``.
    With ``sqrt`` the path therefore ends at ``σ = sqrt(max_sigma)``, as in PAIR.

    Examples:
        >>> blur_sigmas(4.0, 4), blur_sigmas(4.0, 4, sqrt=True)
        ([0.0, 1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 1.4142135623730951, 1.7320508075688772, 2.0])
    """
    linear = [float(i) * max_sigma / float(n_steps) for i in range(n_steps + 1)]
    return [math.sqrt(s) for s in linear] if sqrt else linear
