"""Literal numpy references for the Fourier tests: masks and filters written out."""

import numpy as np


def radius_grid(h: int, w: int) -> np.ndarray:
    """sqrt(fy² + fx²) for the integer DFT frequencies, numpy's order."""
    fy = np.fft.fftfreq(h) * h
    fx = np.fft.fftfreq(w) * w
    return np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def numpy_low_pass(x: np.ndarray, radius: float) -> np.ndarray:
    """Per trailing H×W matrix: full complex FFT, mask, inverse, real part."""
    x = np.asarray(x, dtype=np.float64)
    h, w = x.shape[-2:]
    keep = radius_grid(h, w) <= radius
    out = np.empty_like(x)
    flat_in, flat_out = x.reshape(-1, h, w), out.reshape(-1, h, w)
    for i in range(flat_in.shape[0]):
        spectrum = np.fft.fft2(flat_in[i])
        back = np.fft.ifft2(spectrum * keep)
        assert np.abs(back.imag).max() <= 1e-9 * max(1.0, np.abs(back.real).max())
        flat_out[i] = back.real
    return out


def numpy_basis(h: int, w: int, i: int, j: int) -> np.ndarray:
    """Yin et al.'s basis image: a DFT of 1 at (i, j) and at (-i, -j), inverted, unit norm."""
    spectrum = np.zeros((h, w), dtype=complex)
    spectrum[i, j] = 1.0
    spectrum[(-i) % h, (-j) % w] = 1.0
    u = np.fft.ifft2(spectrum).real
    return u / np.linalg.norm(u)
