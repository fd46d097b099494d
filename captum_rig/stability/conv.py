"""Convolutions as linear maps: their L2 operator norm, estimated and certified.

A ``Conv2d`` on inputs of a given size is a linear map (its bias aside).
:func:`conv2d_operator_norm` estimates its largest singular value from below by power
iteration; :func:`conv2d_norm_bound` bounds it from above, certified to rounding, through
the circular convolution that contains it.

References:
    Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Sec. 4.3.

    Delattre, Barthélemy, Allauzen. Spectral Norm of Convolutional Layers with Circular
    and Zero Paddings. arXiv:2402.00240.
"""

import math
from typing import Iterator, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captum_rig._checks import check_int
from captum_rig.stability._linalg import (
    UNIT_ROUNDOFF,
    autograd_adjoint,
    certified_norm,
    gram_matrix,
    power_iteration,
)

__all__ = ["BAD_INPUT_SIZE", "conv2d_operator_norm", "conv2d_norm_bound"]

BAD_INPUT_SIZE = (
    "input_size must be (H, W), (C, H, W) or (N, C, H, W) with C = {channels}, got {got}"
)
# Bytes of the per-frequency Gram matrices held at once.
_CHUNK_BYTES = 1 << 28
# Convolutions whose own matrix has at most this many entries are certified through it
# (their exact norm; the circular embedding is loose on small inputs).
_EXPLICIT_ENTRIES = 1 << 20


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


def _phase_taps(conv: nn.Conv2d, weight: Tensor) -> Tuple[Tensor, Tuple[int, int]]:
    """``(out, in/groups · phases, q_h, q_w)``: the convolution as a stride-1 one.

    A stride-``s`` correlation reads ``x[s·o + d·t]``; splitting the input into its
    phases ``x_a[m] = x[s·m + a]`` makes it a stride-1 correlation of those phases (as
    extra input channels) on the grid divided by the stride. Phases no tap reads are
    left out (a 1×1 convolution with stride 2 reads one).
    """
    out_c, in_g, kh, kw = weight.shape
    (sh, sw), (dh, dw) = conv.stride, conv.dilation
    rows = [divmod(i * dh, sh) for i in range(kh)]  # (q, a): tap i reads phase a, offset q
    cols = [divmod(j * dw, sw) for j in range(kw)]
    phases = sorted({(a, b) for _, a in rows for _, b in cols})
    taps = weight.new_zeros((out_c, in_g, len(phases), rows[-1][0] + 1, cols[-1][0] + 1))
    for i, (q, a) in enumerate(rows):
        for j, (r, b) in enumerate(cols):
            taps[:, :, phases.index((a, b)), q, r] = weight[:, :, i, j]
    return taps.reshape(out_c, -1, *taps.shape[-2:]), (sh, sw)


def _gram_taps(taps: Tensor, groups: int) -> Tuple[Tensor, Tensor, float]:
    """The Gram matrix of a stride-1 circular convolution, as a convolution itself.

    With ``R_t`` the ``n × m`` matrix of tap ``t`` (per group; ``n`` the smaller of the
    two channel counts), the per-frequency matrix is ``K̂(ω) = Σ_t R_t e^{−iω·t}`` and its
    Gram matrix ``K̂ K̂ᴴ = Σ_d H_d e^{−iω·d}`` with ``H_d = Σ_{t − t' = d} R_t R_{t'}ᵀ``.
    Returns ``H`` ``(D, groups, n, n)``, the offsets ``d`` ``(D, 2)`` and the rounding
    error bound ``ε`` of every ``Σ_d H_d e^{−iω·d}`` computed from them (spectral norm):
    an entry is a sum of ``m·T`` products, ``T`` taps, combined with ``D`` phases, so
    ``ε ≤ c·u·‖A Aᵀ‖_F ≤ c·u·‖A‖_F²`` with ``A = Σ_t |R_t|`` and ``c = 4(m + T + D + 16)``.
    """
    out_c, in_p, qh, qw = taps.shape
    per_group = taps.reshape(groups, out_c // groups, in_p, qh * qw).permute(3, 0, 1, 2)
    if per_group.shape[-2] > per_group.shape[-1]:
        per_group = per_group.mT  # the smaller Gram matrix: same nonzero eigenvalues
    per_group = per_group.contiguous()  # one copy, not one per product
    n_taps, m = per_group.shape[0], per_group.shape[-1]
    tap_at = [(t // qw, t % qw) for t in range(n_taps)]
    offsets = [(a - c, b - d) for a in range(qh) for b in range(qw)
               for c in range(qh) for d in range(qw)]  # fmt: skip
    offsets = sorted(set(offsets))
    where = {o: k for k, o in enumerate(offsets)}
    gram = per_group.new_zeros((len(offsets),) + per_group.shape[1:3] + per_group.shape[2:3])
    for t in range(n_taps):
        for s in range(t, n_taps):
            block = per_group[t] @ per_group[s].mT  # R_t R_sᵀ, at offset t − s
            d = (tap_at[t][0] - tap_at[s][0], tap_at[t][1] - tap_at[s][1])
            gram[where[d]] += block
            if s != t:
                gram[where[(-d[0], -d[1])]] += block.mT
    absolute = per_group.abs().sum(0)  # A = Σ_t |R_t|, per group
    frob = float(torch.linalg.matrix_norm(absolute).max()) ** 2
    error = 4 * (m + n_taps + len(offsets) + 16) * UNIT_ROUNDOFF * frob
    return gram, torch.tensor(offsets, dtype=torch.float64, device=taps.device), error


def _frequency_grams(
    gram: Tensor, offsets: Tensor, grid: Tuple[int, int], chunk: int
) -> Iterator[Tensor]:
    """``Σ_d H_d e^{−iω·d}`` at the grid's frequencies, ``chunk`` frequencies at a time.

    Only half the frequencies: the other half are complex conjugates (same eigenvalues).
    A single offset (a 1×1 convolution) has one real matrix.
    """
    n_offsets, groups, n, _ = gram.shape
    flat = gram.reshape(n_offsets, -1)
    if n_offsets == 1:
        yield flat[0].reshape(groups, n, n)
        return
    nh, nw = grid
    u = torch.arange(nh, dtype=torch.float64, device=gram.device)
    v = torch.arange(nw // 2 + 1, dtype=torch.float64, device=gram.device)
    freqs = torch.cartesian_prod(u, v)
    # the angle's fraction of a turn, reduced exactly on integers before the cosine
    turns = torch.remainder(freqs[:, :1] * offsets[:, 0], nh) / nh
    turns = turns + torch.remainder(freqs[:, 1:] * offsets[:, 1], nw) / nw
    flat = flat.to(torch.complex128)
    for start in range(0, freqs.shape[0], chunk):
        angle = 2 * math.pi * turns[start : start + chunk]
        phase = torch.polar(torch.ones_like(angle), -angle)  # e^{−iω·d}
        yield (phase @ flat).reshape(-1, n, n)


def conv2d_norm_bound(conv: nn.Conv2d, input_size: Sequence[int], n_iter: int = 4) -> float:
    r"""Certified upper bound on a convolution's L2 operator norm, tight to ~10⁻⁶.

    The convolution (any stride, padding mode, dilation and groups, no bias) on ``C × H
    × W`` inputs is at most ``p`` times a circular convolution on the padded ``N × M``
    grid (``p = 1`` for zero padding; see the source for the other modes). A circular
    convolution is block-diagonalised by the 2-D DFT: its norm is the largest norm of the
    per-frequency kernel matrices ``K̂(ω)`` (per group; a stride ``s`` is handled by
    splitting the input into its ``s²`` phases, a stride-1 convolution of more channels
    on a grid ``s`` times smaller). Their Gram matrices ``K̂ K̂ᴴ`` are themselves a
    convolution's, computed once from the kernel's taps (a cost independent of the
    input size) and evaluated at every frequency; ``n_iter`` power iterations rank them,
    the leaders' largest eigenvalues set a level, and a Cholesky factorization at every
    frequency certifies that no eigenvalue is above it
    (:func:`~captum_rig.stability._linalg.certified_norm`), with floating-point rounding
    bounded and added. The result is ``>=`` the exact norm and exceeds the circular
    convolution's norm by about 10⁻⁶ (relative). When the layer's own matrix is small
    (at most 2²⁰ entries: small inputs, where the circular embedding is loose) that
    matrix is certified instead: the result is then the exact norm, to the same 10⁻⁶.
    Unlike :func:`conv2d_operator_norm` (power iteration, from below) this is a
    certificate.

    Args:
        conv (nn.Conv2d): the layer.
        input_size (sequence of int): ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``.
        n_iter (int): power iterations that rank the per-frequency matrices, ``>= 1``
            (any value gives a certified bound; a better ranking, less work).

    Returns:
        float: an upper bound on ``‖conv‖₂``.

    Examples:
        >>> conv = nn.Conv2d(3, 8, 3, padding=1)
        >>> conv2d_norm_bound(conv, (16, 16)) >= conv2d_operator_norm(conv, (16, 16))
        True

    References:
        Sedghi, Gupta, Long. The Singular Values of Convolutional Layers. ICLR 2019.

        Delattre, Barthélemy, Allauzen. Spectral Norm of Convolutional Layers with
        Circular and Zero Paddings. arXiv:2402.00240 (the Gram matrix as a convolution).

        Rump. Verification of positive definiteness. BIT 46 (2006) 433–452.
    """
    size = _conv_input_size(conv, input_size)
    n_iter = check_int(n_iter, name="n_iter", low=1)
    weight = conv.weight.detach().double()
    explicit = _explicit_bound(conv, weight, size, n_iter)
    if explicit is not None:
        return explicit
    grid_h, grid_w, pad_norm = _padded_grid(conv, size)
    taps, (sh, sw) = _phase_taps(conv, weight)
    gram, offsets, error = _gram_taps(taps, conv.groups)
    if not bool(torch.isfinite(gram).all()):
        return math.inf
    n = gram.shape[-1]
    chunk = max(1, _CHUNK_BYTES // (16 * conv.groups * n * n))
    grams = _frequency_grams(gram, offsets, (grid_h // sh, grid_w // sw), chunk)
    return pad_norm * certified_norm(grams, error, n_iter=n_iter)


def _explicit_bound(
    conv: nn.Conv2d, weight: Tensor, size: Tuple[int, ...], n_iter: int
) -> Optional[float]:
    """The certified norm of the layer's own matrix, when it is small (else None).

    On small inputs (late layers of a network) the circular embedding is loose: a 3×3
    convolution on a 1×1 input only uses its centre tap. The matrix itself is then small,
    and its entries are the weights themselves (a convolution of one-hot inputs).
    """
    n_in = math.prod(size)
    with torch.no_grad():
        shape_only = torch.empty((1,) + tuple(size), dtype=weight.dtype, device="meta")
        n_out = conv._conv_forward(shape_only, weight.to("meta"), None).numel()
        if n_in * n_out > _EXPLICIT_ENTRIES:
            return None
        basis = torch.eye(n_in, dtype=weight.dtype, device=weight.device).view(n_in, *size)
        matrix = conv._conv_forward(basis, weight, None).reshape(n_in, n_out)
    gram, error = gram_matrix(matrix)
    return certified_norm([gram[None]], error, n_iter=n_iter)
