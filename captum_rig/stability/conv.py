"""Convolutions as linear maps: their L2 operator norm, estimated and certified.

A ``Conv2d`` on inputs of a given size is a linear map (its bias aside).
:func:`conv2d_operator_norm` estimates its largest singular value from below by power
iteration; :func:`conv2d_norm_bound` bounds it from above by Gram iteration on the
circular convolution that contains it (Delattre et al. 2023).

References:
    Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Sec. 4.3.

    Delattre, Barthélemy, Araujo, Allauzen. Efficient Bound of Lipschitz Constant for
    Convolutional Layers by Gram Iteration. ICML 2023, arXiv:2305.16173.
"""

import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captum_rig._checks import check_int
from captum_rig.stability._linalg import (
    autograd_adjoint,
    gram_bound,
    max_gram_bound,
    power_iteration,
)

__all__ = ["BAD_INPUT_SIZE", "conv2d_operator_norm", "conv2d_norm_bound"]

BAD_INPUT_SIZE = (
    "input_size must be (H, W), (C, H, W) or (N, C, H, W) with C = {channels}, got {got}"
)
# Bytes of complex matrices one Gram-iteration chunk may hold.
_CHUNK_BYTES = 1 << 27
# Convolutions whose matrix has at most this many entries also get a bound from it.
_EXPLICIT_ENTRIES = 1 << 18


def _conv_input_size(conv: nn.Module, input_size: Sequence[int]) -> Tuple[int, int, int]:
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be a torch.nn.Conv2d, got {type(conv).__name__}")
    size = tuple(int(s) for s in input_size)
    if len(size) == 2:
        size = (conv.in_channels,) + size
    if len(size) == 4:
        size = size[1:]
    if len(size) != 3 or size[0] != conv.in_channels or min(size) < 1:
        raise ValueError(BAD_INPUT_SIZE.format(channels=conv.in_channels, got=tuple(input_size)))
    return size


def conv2d_operator_norm(
    conv: nn.Conv2d,
    input_size: Sequence[int],
    n_iter: int = 100,
    seed: int = 0,
    tol: float = 0.0,
) -> float:
    r"""L2 operator norm of a convolution as a linear map on inputs of a given size.

    The convolution without its bias, with its stride, padding (any ``padding_mode``),
    dilation and groups, is a linear map ``A`` from ``C × H × W`` inputs to its outputs;
    this returns its largest singular value ``‖A‖₂``, estimated in float64 by ``n_iter``
    block power iterations on ``AᵀA`` (8 vectors at once, QR-orthonormalized, seeded
    Gaussian start; a Rayleigh–Ritz step each time, stopping early once it changes by
    at most ``tol``, relative). The adjoint ``Aᵀ`` is
    ``conv_transpose2d`` with the matching ``output_padding`` (zero padding) or the
    vector-Jacobian product (other padding modes and ``padding="same"``). The estimate
    approaches ``‖A‖₂`` from below; more iterations, a closer estimate. For a certified
    upper bound see :func:`conv2d_norm_bound`.

    Args:
        conv (nn.Conv2d): the layer.
        input_size (sequence of int): ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``.
        n_iter (int): block power iterations, ``>= 1``.
        seed (int): seed of the random start.
        tol (float): relative change at which the iteration stops (0: all ``n_iter``).

    Returns:
        float: the operator norm (an estimate from below).

    Examples:
        >>> conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        >>> norm = conv2d_operator_norm(conv, (3, 16, 16))
        >>> norm > 0
        True

    References:
        Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Sec. 4.3.
    """
    size = _conv_input_size(conv, input_size)
    n_iter = check_int(n_iter, name="n_iter", low=1)
    seed = check_int(seed, name="seed")
    shape = (1,) + size
    device = conv.weight.device
    weight = conv.weight.detach().double()

    def forward(v: Tensor) -> Tensor:
        return conv._conv_forward(v, weight, None)

    with torch.no_grad():
        out_size = forward(torch.zeros(shape, dtype=torch.float64, device=device)).shape[-2:]
    if conv.padding_mode == "zeros" and not isinstance(conv.padding, str):
        # the input size minus conv_transpose2d's output size without output_padding
        output_padding = tuple(
            size[1 + d] - (out_size[d] - 1) * conv.stride[d] + 2 * conv.padding[d]
            - conv.dilation[d] * (conv.kernel_size[d] - 1) - 1
            for d in range(2)
        )  # fmt: skip

        def adjoint(u: Tensor) -> Tensor:
            return F.conv_transpose2d(
                u, weight, None, conv.stride, conv.padding, output_padding, conv.groups,
                conv.dilation,
            )  # fmt: skip
    else:
        adjoint = autograd_adjoint(forward, size, torch.float64, device)
    return power_iteration(
        forward, adjoint, size, n_iter, seed, torch.float64, device, tol=float(tol)
    )


def _padded_grid(conv: nn.Conv2d, size: Tuple[int, int, int]) -> Tuple[int, int, float]:
    """``(N, M, p)``: the layer is at most ``p`` × a circular convolution on an N×M grid.

    The convolution pads (an injective copy map of norm ``p``, 1 for zero padding),
    correlates over the padded grid keeping only outputs that need no wrap-around (rows
    of the circular correlation on that grid; more zeros appended to make the grid a
    multiple of the stride change none of them) and subsamples by its stride. Circular
    padding of ``dilation·(k − 1)`` in all is exactly a circular convolution on the input
    grid itself (when the stride divides it).
    """
    _, h, w = size
    extent = [conv.dilation[d] * (conv.kernel_size[d] - 1) for d in range(2)]
    if isinstance(conv.padding, str):
        valid = conv.padding == "valid"
        pads = [(0, 0) if valid else (e // 2, e - e // 2) for e in extent]
    else:
        pads = [(p, p) for p in conv.padding]
    if (
        conv.padding_mode == "circular"
        and all(sum(pads[d]) == extent[d] for d in range(2))
        and h % conv.stride[0] == 0
        and w % conv.stride[1] == 0
    ):
        return h, w, 1.0
    grid = [-(-(n + sum(p)) // s) * s for n, p, s in zip((h, w), pads, conv.stride)]
    if conv.padding_mode == "zeros" or not any(sum(p) for p in pads):
        return grid[0], grid[1], 1.0
    # reflect / replicate / other circular: √(most copies of one input pixel)
    ones = torch.ones((1, 1, h, w), dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        padded = F.pad(ones, (*pads[1], *pads[0]), mode=conv.padding_mode)
        (copies,) = torch.autograd.grad(padded.sum(), ones)
    return grid[0], grid[1], math.sqrt(float(copies.max()))


def _polyphase_spectra(conv: nn.Conv2d, weight: Tensor, grid: Tuple[int, int]) -> Tensor:
    """``(frequencies, out, in/groups·s_h·s_w)``: the per-frequency kernel matrices.

    A stride-``s`` correlation reads ``x[s·o + d·t]``; splitting the input into its
    ``s_h·s_w`` phases ``x_a[m] = x[s·m + a]`` makes it a stride-1 correlation of the
    phases (as extra input channels) on the grid divided by the stride, whose DFT
    block-diagonalises it. Taps that wrap around the grid add up, as they would.
    """
    out_c, in_g, kh, kw = weight.shape
    (sh, sw), (dh, dw) = conv.stride, conv.dilation
    nh, nw = grid[0] // sh, grid[1] // sw
    kernel = weight.new_zeros((out_c, in_g, sh, sw, nh, nw))
    for i in range(kh):
        for j in range(kw):
            a, q = (i * dh) % sh, (i * dh) // sh
            b, r = (j * dw) % sw, (j * dw) // sw
            kernel[:, :, a, b, q % nh, r % nw] += weight[:, :, i, j]
    kernel = kernel.reshape(out_c, in_g * sh * sw, nh, nw)
    # rfft2: K̂(-u, -v) is the conjugate of K̂(u, v), with the same singular values
    return torch.fft.rfft2(kernel).permute(2, 3, 0, 1).reshape(-1, out_c, in_g * sh * sw)


def conv2d_norm_bound(conv: nn.Conv2d, input_size: Sequence[int], n_iter: int = 10) -> float:
    r"""Certified upper bound on a convolution's L2 operator norm (Gram iteration).

    The convolution (any stride, padding mode, dilation and groups, no bias) on ``C × H
    × W`` inputs is at most ``p`` times a circular convolution on the padded ``N × M``
    grid (``p = 1`` for zero padding; see the source for the other modes). A circular
    convolution is block-diagonalised by the 2-D DFT: its norm is the largest norm of the
    ``N·M`` per-frequency kernel matrices ``K̂(u, v)`` (``out × in/groups``, per group).
    Each is bounded from above by ``n_iter`` Gram iterations (Delattre et al. 2023), so
    the result is ``>=`` the exact norm (to float64 rounding) and close to it: within a
    factor ``rank^{1/2^{n_iter+1}}`` of the circular norm. A stride ``s`` is handled by
    splitting the input into its ``s²`` phases (a stride-1 convolution of more channels
    on a grid ``s`` times smaller). When the layer's own matrix is small (at most 2¹⁸
    entries: small inputs, where the circular embedding is loose) the smaller of that
    bound and Gram iteration on the matrix itself is returned. Unlike
    :func:`conv2d_operator_norm` (power iteration, from below) this is a certificate.

    Args:
        conv (nn.Conv2d): the layer.
        input_size (sequence of int): ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``.
        n_iter (int): Gram iterations, ``>= 1``.

    Returns:
        float: an upper bound on ``‖conv‖₂``.

    Examples:
        >>> conv = nn.Conv2d(3, 8, 3, padding=1)
        >>> conv2d_norm_bound(conv, (16, 16)) >= conv2d_operator_norm(conv, (16, 16))
        True

    References:
        Delattre, Barthélemy, Araujo, Allauzen. Efficient Bound of Lipschitz Constant for
        Convolutional Layers by Gram Iteration. ICML 2023, arXiv:2305.16173.
    """
    size = _conv_input_size(conv, input_size)
    n_iter = check_int(n_iter, name="n_iter", low=1)
    grid_h, grid_w, pad_norm = _padded_grid(conv, size)
    weight = conv.weight.detach().double()
    out_c, in_g, kh, kw = weight.shape
    if kh == kw == 1:
        spectra = weight.reshape(1, out_c, in_g)  # the same matrix at every frequency
    else:
        spectra = _polyphase_spectra(conv, weight, (grid_h, grid_w))
    groups = conv.groups
    blocks = spectra.reshape(spectra.shape[0], groups, out_c // groups, -1).flatten(0, 1)
    chunk = max(1, _CHUNK_BYTES // (16 * max(blocks.shape[-2:]) ** 2))
    best = max_gram_bound(blocks, n_iter, chunk)
    return min(pad_norm * best, _explicit_bound(conv, weight, size, n_iter))


def _explicit_bound(conv: nn.Conv2d, weight: Tensor, size: Tuple[int, ...], n_iter: int) -> float:
    """Gram iteration on the layer's own matrix, when it is small (else ``inf``).

    On small inputs (late layers of a network) the circular embedding is loose: a 3×3
    convolution on a 1×1 input only uses its centre tap. The matrix itself is then small.
    """
    n_in = math.prod(size)
    with torch.no_grad():
        n_out = conv._conv_forward(weight.new_zeros((1,) + tuple(size)), weight, None).numel()
        if n_in * n_out > _EXPLICIT_ENTRIES:
            return math.inf
        basis = torch.eye(n_in, dtype=weight.dtype, device=weight.device).view(n_in, *size)
        matrix = conv._conv_forward(basis, weight, None).reshape(n_in, n_out)
    return float(gram_bound(matrix[None], n_iter)[0])
