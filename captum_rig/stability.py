r"""Stability analysis: "Intriguing properties of neural networks" revisited.

How far can a small input change move a model? Three views, and a table comparing models:

- **Layer operator norms and the Lipschitz upper bound** (Szegedy et al. 2013, Sec. 4.3).
  Every layer's L2 → L2 operator norm (exact for ``nn.Linear``; power iteration, or a
  certified upper bound by Gram iteration, for ``nn.Conv2d``; known constants for
  BatchNorm in eval mode, pooling and activations), combined along the model's graph
  (``torch.fx``): a chain multiplies, a residual addition adds, a concatenation takes the
  root of the sum of squares. :func:`lipschitz_bound` works through ResNets, VGG,
  DenseNet and MobileNetV2; an operation with no known constant gives ``None`` and a
  note naming it.
- **Average minimal distortion**: per image, the smallest perturbation found that changes
  the prediction, by bisection over the PGD radius (L2 and L∞, through
  :func:`captum_rig.robustness.pgd_attack`) and over the standard deviation of Gaussian
  noise; then the mean over images.
- **Spectra**: the singular values of every weight (:func:`weight_spectra`) and of every
  feature map (:func:`feature_map_spectra`).

:func:`compare_stability` puts several models side by side (one row per model and
attack, with clean accuracy and the Lipschitz bound), as in the comparison of a network
trained from scratch with one fine-tuned from ImageNet.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.

    Szegedy, Zaremba, Sutskever, Bruna, Erhan, Goodfellow, Fergus. Intriguing properties
    of neural networks. arXiv:1312.6199 (2013).

    Delattre, Barthélemy, Araujo, Allauzen. Efficient Bound of Lipschitz Constant for
    Convolutional Layers by Gram Iteration. ICML 2023, arXiv:2305.16173.
"""

import csv
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captum_rig._checks import (
    check_choice,
    check_images,
    check_int,
    check_labels,
    check_model,
    check_models,
    check_norm,
    check_pixels,
    check_real,
    model_device,
    model_logits,
)
from captum_rig._context import atomic_path, eval_mode
from captum_rig.metrics import accuracy as model_accuracy
from captum_rig.robustness import pgd_attack

__all__ = [
    "OperatorNorm",
    "conv2d_operator_norm",
    "conv2d_norm_bound",
    "layer_operator_norms",
    "LipschitzReport",
    "lipschitz_analysis",
    "lipschitz_bound",
    "MinimalDistortion",
    "minimal_distortion",
    "gaussian_minimal_distortion",
    "StabilityReport",
    "stability_analysis",
    "weight_spectra",
    "feature_map_spectra",
    "StabilityRow",
    "StabilityTable",
    "compare_stability",
]

BAD_INPUT_SIZE = (
    "input_size must be (H, W), (C, H, W) or (N, C, H, W) with C = {channels}, got {got}"
)
UNKNOWN_LAYERS = (
    "layers must name modules of the model (names from model.named_modules()), got "
    "unknown names {unknown}; some valid names: {valid}"
)
ATTACKS = ("pgd", "gaussian")

# Activations with a known Lipschitz constant (the sup of |derivative|, rounded up).
_ACTIVATIONS: Dict[type, Callable[[nn.Module], float]] = {
    nn.ReLU: lambda m: 1.0,
    nn.ReLU6: lambda m: 1.0,
    nn.Hardtanh: lambda m: 1.0,
    nn.Tanh: lambda m: 1.0,
    nn.Softplus: lambda m: 1.0,
    nn.Sigmoid: lambda m: 0.25,
    nn.Hardsigmoid: lambda m: 1 / 6,
    nn.Hardswish: lambda m: 1.5,
    nn.GELU: lambda m: 1.129,  # max of Φ(x) + xφ(x), 1.1289 at x = √2
    nn.SiLU: lambda m: 1.1,  # max of σ(x)(1 + x(1 − σ(x))), 1.0998
    nn.LeakyReLU: lambda m: max(1.0, abs(float(m.negative_slope))),
    nn.ELU: lambda m: max(1.0, float(m.alpha)),
}
# Layers that are isometries in eval mode (reshapes, and dropout, which is the identity).
_ISOMETRIES = (
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_AVGPOOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
             nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)  # fmt: skip
# Interpolation modes whose weights are non-negative (so the Schur test applies).
_POSITIVE_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "trilinear", "area")
# Bytes of complex matrices one Gram-iteration chunk may hold.
_CHUNK_BYTES = 1 << 27
# Weights up to this many entries get an exact SVD; larger ones an iteration.
_EXACT_SVD_ENTRIES = 1 << 22
# Convolutions whose matrix has at most this many entries also get a bound from it.
_EXPLICIT_ENTRIES = 1 << 18


# --------------------------------------------------------------------------- power iteration


def _power_iteration(
    forward: Callable[[Tensor], Tensor],
    adjoint: Callable[[Tensor], Tensor],
    example_shape: Sequence[int],
    n_iter: int,
    seed: int,
    dtype: torch.dtype,
    device: torch.device,
    block: int = 8,
) -> float:
    """Largest singular value of a linear map by ``n_iter`` block power iterations.

    Subspace iteration on ``AᵀA`` with ``block`` orthonormal vectors (one batch; QR after
    every step) from a seeded Gaussian start drawn on the CPU, then Rayleigh–Ritz: the
    largest singular value of ``A`` restricted to the final subspace. That is a lower
    estimate of ``‖A‖₂`` that converges like ``(σ_{block+1}/σ_1)^{2·n_iter}``, much
    faster than single-vector power iteration when the top singular values are close.
    """
    n = math.prod(example_shape)
    b = min(block, n)
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn((n, b), generator=generator, dtype=dtype)
    q = torch.linalg.qr(start).Q.T.contiguous().to(device)  # (b, n), orthonormal rows
    with torch.no_grad():
        for _ in range(n_iter):
            w = adjoint(forward(q.view(b, *example_shape))).reshape(b, n)
            q = torch.linalg.qr(w.T).Q.T.contiguous()
        image = forward(q.view(b, *example_shape)).reshape(b, -1)
        return float(torch.linalg.matrix_norm(image, 2))


def _autograd_adjoint(
    forward: Callable[[Tensor], Tensor], example_shape: Sequence[int], dtype, device
) -> Callable[[Tensor], Tensor]:
    """``u ↦ Aᵀu`` for a linear ``forward``: the vector-Jacobian product at any point."""

    def adjoint(u: Tensor) -> Tensor:
        with torch.enable_grad():
            shape = (u.shape[0],) + tuple(example_shape)
            z = torch.zeros(shape, dtype=dtype, device=device, requires_grad=True)
            (grad,) = torch.autograd.grad(forward(z), z, grad_outputs=u)
        return grad

    return adjoint


def _schur_bound(
    forward: Callable[[Tensor], Tensor], example_shape: Sequence[int], device: torch.device
) -> float:
    """Certified ``‖A‖₂ ≤ √(‖A‖₁ ‖A‖∞)`` for a linear map with non-negative entries.

    The row sums are ``A·1`` and the column sums ``Aᵀ·1`` (one forward, one backward).
    Exact for average pooling over disjoint windows (``1/k`` for ``k×k``).
    """
    with torch.enable_grad():
        ones = torch.ones(
            (1,) + tuple(example_shape), dtype=torch.float64, device=device, requires_grad=True
        )
        out = forward(ones)
        (cols,) = torch.autograd.grad(out, ones, grad_outputs=torch.ones_like(out))
    return math.sqrt(float(out.max()) * float(cols.max()))


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
    conv: nn.Conv2d, input_size: Sequence[int], n_iter: int = 100, seed: int = 0
) -> float:
    r"""L2 operator norm of a convolution as a linear map on inputs of a given size.

    The convolution without its bias, with its stride, padding (any ``padding_mode``),
    dilation and groups, is a linear map ``A`` from ``C × H × W`` inputs to its outputs;
    this returns its largest singular value ``‖A‖₂``, estimated in float64 by ``n_iter``
    block power iterations on ``AᵀA`` (8 vectors at once, QR-orthonormalized, seeded
    Gaussian start) and a final Rayleigh–Ritz step. The adjoint ``Aᵀ`` is
    ``conv_transpose2d`` with the matching ``output_padding`` (zero padding) or the
    vector-Jacobian product (other padding modes and ``padding="same"``). The estimate
    approaches ``‖A‖₂`` from below; more iterations, a closer estimate. For a certified
    upper bound see :func:`conv2d_norm_bound`.

    Args:
        conv (nn.Conv2d): the layer.
        input_size (sequence of int): ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``.
        n_iter (int): block power iterations, ``>= 1``.
        seed (int): seed of the random start.

    Returns:
        float: the operator norm.

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
        adjoint = _autograd_adjoint(forward, size, torch.float64, device)
    return _power_iteration(forward, adjoint, size, n_iter, seed, torch.float64, device)


# --------------------------------------------------------------------------- Gram iteration


def _gram_bound(matrices: Tensor, n_iter: int) -> Tensor:
    """Certified upper bound on the largest singular value of each matrix of a batch.

    Gram iteration: ``G ← Gᴴ G``, ``n_iter`` times, each time rescaled by the Frobenius
    norm (the scale is kept as a logarithm, so nothing overflows). After ``t`` steps
    ``σ₁(G₀)^{2^t} = σ₁(G_t) ≤ ‖G_t‖_F``, a bound within a factor ``rank^{1/2^{t+1}}``.
    """
    g = matrices
    if g.shape[-2] < g.shape[-1]:
        g = g.mH  # the smaller Gram matrix; same singular values
    log_scale = torch.zeros(g.shape[:-2], dtype=torch.float64, device=g.device)
    tiny = torch.finfo(torch.float64).tiny
    for _ in range(n_iter):
        frob = torch.linalg.matrix_norm(g).clamp_min(tiny)
        log_scale = 2 * (log_scale + frob.log())
        g = g / frob[..., None, None]
        g = g.mH @ g
    frob = torch.linalg.matrix_norm(g).clamp_min(tiny)
    return torch.exp((log_scale + frob.log()) / 2**n_iter)


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
    best = 0.0
    for start in range(0, blocks.shape[0], chunk):
        best = max(best, float(_gram_bound(blocks[start : start + chunk], n_iter).max()))
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
    return float(_gram_bound(matrix[None], n_iter)[0])


# --------------------------------------------------------------------------- layers


@dataclass
class OperatorNorm:
    """One layer call's (or block's) L2 → L2 operator norm or Lipschitz constant.

    Attributes:
        name (str): the module's qualified name in the model.
        kind (str): its class name.
        input_shape (tuple): the shape of the input it saw.
        norm (float or None): the norm, or None for a layer type with no known bound.
        method (str): how ``norm`` was obtained, and what it assumes.
    """

    name: str
    kind: str
    input_shape: Tuple[int, ...]
    norm: Optional[float]
    method: str

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "norm": self.norm,
            "method": self.method,
        }


@dataclass
class _Options:
    """Settings of one analysis and the layer norms computed so far (shared by blocks)."""

    n_iter: int = 100
    seed: int = 0
    certified: bool = False
    gram_iter: int = 10
    cache: Dict[Tuple[int, Tuple[int, ...]], Tuple[Optional[float], str]] = field(
        default_factory=dict
    )

    def describe(self) -> str:
        if self.certified:
            return (
                f"certified: Gram iteration ({self.gram_iter} its) for convolutions, "
                "Schur test for pooling and resampling"
            )
        return f"power iteration ({self.n_iter} its, approaches each norm from below)"


def _one(shape: Tuple[int, ...], spatial: int) -> Tuple[int, ...]:
    """The shape of one example: batch 1, channels and the ``spatial`` trailing dims."""
    return (1,) + tuple(shape[-(spatial + 1) :])


def _linear_norm(
    forward: Callable[[Tensor], Tensor], example: Tuple[int, ...], device, opts: _Options
) -> Tuple[float, str]:
    """Norm of a non-negative linear map on one ``example``-shaped input."""
    if opts.certified:
        return _schur_bound(forward, example, device), (
            f"certified: Schur test √(max row sum · max column sum) on the {example} input"
        )
    adjoint = _autograd_adjoint(forward, example, torch.float64, device)
    norm = _power_iteration(
        forward, adjoint, example, opts.n_iter, opts.seed, torch.float64, device
    )
    return norm, f"power iteration ({opts.n_iter} its) on the {example} input (linear map)"


def _linear_layer_norm(weight: Tensor, device, opts: _Options) -> Tuple[float, str]:
    """An ``nn.Linear`` weight's norm: exact SVD unless the matrix is large."""
    if weight.numel() <= _EXACT_SVD_ENTRIES:
        return float(torch.linalg.matrix_norm(weight, 2)), (
            "exact: largest singular value of the weight"
        )
    if opts.certified:
        return float(_gram_bound(weight[None], opts.gram_iter)[0]), (
            f"certified: Gram iteration ({opts.gram_iter} its) on the weight"
        )
    shape = (weight.shape[1],)
    norm = _power_iteration(
        lambda v: v @ weight.T, lambda u: u @ weight, shape, opts.n_iter, opts.seed,
        torch.float64, device,
    )  # fmt: skip
    return norm, f"power iteration ({opts.n_iter} its) on the weight"


def _adaptive_windows(size: int, out: int) -> int:
    """Most adaptive-pooling windows any of ``size`` positions lies in."""
    counts = [0] * size
    for i in range(out):
        for p in range((i * size) // out, -((-(i + 1) * size) // out)):
            counts[p] += 1
    return max(counts)


def _layer_norm(
    module: nn.Module, shape: Tuple[int, ...], device: torch.device, opts: _Options
) -> Tuple[Optional[float], str]:
    """``(norm, method)`` for one module seen on inputs of ``shape``, cached per shape."""
    key = (id(module), tuple(shape[1:]))
    if key not in opts.cache:
        opts.cache[key] = _uncached_layer_norm(module, shape, device, opts)
    return opts.cache[key]


def _uncached_layer_norm(
    module: nn.Module, shape: Tuple[int, ...], device: torch.device, opts: _Options
) -> Tuple[Optional[float], str]:
    if isinstance(module, nn.Linear):
        return _linear_layer_norm(module.weight.detach().double(), device, opts)
    if isinstance(module, nn.Conv2d):
        if opts.certified:
            norm = conv2d_norm_bound(module, shape[-3:], n_iter=opts.gram_iter)
            return norm, (
                f"certified: Gram iteration ({opts.gram_iter} its) on the {tuple(shape[-3:])} input"
            )
        norm = conv2d_operator_norm(module, shape[-3:], n_iter=opts.n_iter, seed=opts.seed)
        return norm, f"power iteration ({opts.n_iter} its) on the {tuple(shape[-3:])} input"
    if isinstance(module, _BATCHNORMS):
        if module.running_var is None:
            return None, "unknown: BatchNorm without running statistics uses batch statistics"
        scale = 1 / torch.sqrt(module.running_var.detach().double() + module.eps)
        if module.weight is not None:
            scale = scale * module.weight.detach().double()
        return float(scale.abs().max()), "exact (eval mode): max |γ/√(running_var + ε)|"
    if isinstance(module, _AVGPOOLS):
        one = _one(shape, int(type(module).__name__[-2]))
        return _linear_norm(module, one[1:], device, opts)
    if isinstance(module, nn.Upsample) and module.mode in _POSITIVE_MODES:
        return _linear_norm(module, tuple(shape[1:]), device, opts)
    if isinstance(module, nn.MaxPool2d) and not module.return_indices:
        windows = 1
        for d in range(2):
            k = _pair(module.kernel_size)[d]
            s = _pair(module.stride)[d]
            dil = _pair(module.dilation)[d]
            windows *= min(k, (k - 1) * dil // s + 1)
        return math.sqrt(windows), (
            f"bound: √(windows per pixel) = √{windows} (1 when stride ≥ kernel)"
        )
    if isinstance(module, nn.AdaptiveMaxPool2d) and not module.return_indices:
        out = _pair(module.output_size)
        windows = math.prod(
            _adaptive_windows(shape[-2 + d], out[d] or shape[-2 + d]) for d in range(2)
        )
        return math.sqrt(windows), f"bound: √(windows per pixel) = √{windows}"
    for kind, constant in _ACTIVATIONS.items():
        if type(module) is kind:
            return constant(module), "Lipschitz constant of the activation"
    if isinstance(module, _ISOMETRIES):
        return 1.0, "isometry in eval mode"
    stats = _normalize_stats(module)
    if stats is not None:
        return float((1 / stats.abs()).max()), "normalization (x - mean) / std: max 1/|std|"
    return None, "unknown layer type: no bound"


def _pair(value: Any) -> Tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _normalize_stats(module: nn.Module) -> Optional[Tensor]:
    """``std`` of a parameter-free ``(x - mean) / std`` layer named ``*Normaliz*``.

    Matches :class:`captum_rig.models.Normalize` and torchvision's ``Normalize``.
    """
    if (
        "normaliz" not in type(module).__name__.lower()
        or list(module.parameters())
        or not (hasattr(module, "mean") and hasattr(module, "std"))
    ):
        return None
    try:
        std = torch.as_tensor(module.std, dtype=torch.float64).cpu()
        torch.as_tensor(module.mean, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return None
    return std if std.numel() and bool((std != 0).all()) else None


def _leaf_calls(model: nn.Module, example_input: Tensor) -> List[Tuple[str, nn.Module, Any]]:
    """``(name, module, input)`` of every leaf-module call of one forward pass.

    Hooks are registered on every module without children and removed afterwards, even
    when the forward pass raises.
    """
    calls: List[Tuple[str, nn.Module, Any]] = []
    handles = []

    def pre_hook(name: str):
        def hook(module: nn.Module, args: Tuple[Any, ...]) -> None:
            x = args[0] if len(args) == 1 and isinstance(args[0], Tensor) else None
            calls.append((name, module, x))

        return hook

    try:
        for name, module in model.named_modules():
            if next(module.children(), None) is None:
                handles.append(module.register_forward_pre_hook(pre_hook(name or "(model)")))
        with torch.no_grad():
            model(example_input.detach())
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _check_analysis_args(model, example_input, n_iter, seed, gram_iter, certified) -> _Options:
    check_model(model)
    check_images(example_input, name="example_input", min_dim=1, layout="(N, ...)")
    return _Options(
        n_iter=check_int(n_iter, name="n_iter", low=1),
        seed=check_int(seed, name="seed"),
        certified=bool(certified),
        gram_iter=check_int(gram_iter, name="gram_iter", low=1),
    )


def layer_operator_norms(
    model: nn.Module,
    example_input: Tensor,
    n_iter: int = 100,
    seed: int = 0,
    certified: bool = False,
    gram_iter: int = 10,
) -> List[OperatorNorm]:
    r"""The L2 operator norm of every layer call of one forward pass.

    Runs ``model`` once (eval mode, no grad) on ``example_input`` with forward hooks on
    every leaf module to record the input shape each layer sees, removes the hooks, and
    computes per call:

    - ``nn.Linear``: exact, the largest singular value ``torch.linalg.matrix_norm(W, 2)``.
    - ``nn.Conv2d``: :func:`conv2d_operator_norm` on the recorded input size (power
      iteration, from below), or with ``certified=True`` :func:`conv2d_norm_bound`
      (Gram iteration, a certified upper bound).
    - ``nn.BatchNorm*d`` (eval mode, a diagonal affine map): ``max |γ/√(running_var + ε)|``.
    - average pooling (plain and adaptive) and ``nn.Upsample`` (nearest, (bi/tri)linear):
      linear maps, by power iteration or (``certified``) the Schur test
      ``√(max row sum · max column sum)``; ``1/k`` for non-overlapping ``k×k`` windows.
    - ``nn.MaxPool2d``: the bound ``√m`` with ``m`` the most windows any pixel is in,
      ``min(k, ⌊(k−1)·dilation/stride⌋ + 1)`` per dim: 1 when stride ≥ kernel; likewise
      ``nn.AdaptiveMaxPool2d``.
    - activations: ReLU, ReLU6, Hardtanh, Tanh, Softplus: 1; Sigmoid: 1/4; Hardsigmoid:
      1/6; Hardswish: 1.5; GELU: 1.129; SiLU: 1.1; LeakyReLU: ``max(1, |slope|)``; ELU:
      ``max(1, α)``. Identity, Flatten, Unflatten, Dropout (eval): 1.
    - a parameter-free ``*Normalize*`` layer with ``mean`` and ``std`` (``(x − mean)/std``,
      :class:`captum_rig.models.Normalize`, torchvision's ``Normalize``): ``max 1/|std|``.
    - anything else: ``norm=None``.

    Biases do not matter: the Lipschitz constant of an affine map is the norm of its
    linear part. Modules with children are not hooked: only what leaves compute counts.

    Args:
        model (nn.Module): the model; training flags are restored afterwards.
        example_input (Tensor): one input batch, e.g. ``images[:1]``.
        n_iter (int): power iterations for convolutions and pooling.
        seed (int): seed of the power iterations' random start.
        certified (bool): certified upper bounds (Gram iteration, Schur test) instead of
            power iteration.
        gram_iter (int): Gram iterations per convolution when ``certified``.

    Returns:
        list[OperatorNorm]: one per leaf-module call, in call order.

    Examples:
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
        ...                       nn.Linear(4 * 6 * 6, 10))
        >>> [layer.kind for layer in layer_operator_norms(model, torch.rand(1, 3, 8, 8))]
        ['Conv2d', 'ReLU', 'Flatten', 'Linear']

    References:
        Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Sec. 4.3.
    """
    opts = _check_analysis_args(model, example_input, n_iter, seed, gram_iter, certified)
    return _layer_list(model, example_input, opts)


def _layer_list(model: nn.Module, example_input: Tensor, opts: _Options) -> List[OperatorNorm]:
    layers = []
    with eval_mode(model):
        for name, module, x in _leaf_calls(model, example_input):
            if x is None:
                norm, method, shape = None, "unknown: does not take one tensor", ()
            else:
                shape = tuple(x.shape)
                norm, method = _layer_norm(module, shape, x.device, opts)
            layers.append(OperatorNorm(name, type(module).__name__, shape, norm, method))
    return layers


# --------------------------------------------------------------------------- the graph


def _is_normalize(module: nn.Module) -> bool:
    return _normalize_stats(module) is not None


class _Tracer(torch.fx.Tracer):
    """torch.fx's tracer, keeping normalization layers whole (their checks do not trace)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return super().is_leaf_module(m, module_qualified_name) or _is_normalize(m)


_UNARY_ONE = {
    F.relu, torch.relu, F.relu6, F.hardtanh, torch.tanh, F.tanh, F.softplus, torch.flatten,
    torch.reshape, torch.squeeze, torch.unsqueeze, torch.transpose, torch.permute, torch.t,
    torch.clone, torch.neg, operator.neg, operator.pos, F.dropout, F.dropout1d, F.dropout2d,
    F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
}  # fmt: skip
_UNARY_ONE_METHODS = {
    "relu", "relu_", "tanh", "tanh_", "flatten", "view", "reshape", "permute", "transpose",
    "contiguous", "squeeze", "unsqueeze", "clone", "neg", "t", "float", "double", "to",
}  # fmt: skip
_UNARY_CONSTANT = {torch.sigmoid: 0.25, F.sigmoid: 0.25, F.hardsigmoid: 1 / 6,
                   F.hardswish: 1.5, F.gelu: 1.129, F.silu: 1.1}  # fmt: skip
_UNARY_CONSTANT_METHODS = {"sigmoid": 0.25, "sigmoid_": 0.25}
_LINEAR = {F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d,
           F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, torch.mean, F.interpolate}  # fmt: skip
_LINEAR_METHODS = {"mean"}
_ADD = {operator.add, operator.sub, operator.iadd, operator.isub, torch.add, torch.sub}
_ADD_METHODS = {"add", "add_", "sub", "sub_"}
_MUL = {operator.mul, operator.imul, torch.mul}
_MUL_METHODS = {"mul", "mul_"}
_DIV = {operator.truediv, operator.itruediv, torch.div, torch.true_divide}
_DIV_METHODS = {"div", "div_"}
_CAT = {torch.cat, torch.concat, torch.stack}
_MAXPOOL = {F.max_pool2d: nn.MaxPool2d, F.adaptive_max_pool2d: nn.AdaptiveMaxPool2d}
_LEAKY = {F.leaky_relu: ("negative_slope", 0.01), F.elu: ("alpha", 1.0)}


def _op_name(node: torch.fx.Node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return getattr(node.target, "__name__", str(node.target))


def _holds_tensor(value: Any) -> bool:
    if isinstance(value, Tensor):
        return value.is_floating_point() or value.is_complex()
    if isinstance(value, (tuple, list)):
        return any(_holds_tensor(v) for v in value)
    return False


def _simple_index(index: Any) -> bool:
    """Slices, integers, None and Ellipsis: a sub-array, each entry at most once."""
    if isinstance(index, tuple):
        return all(_simple_index(i) for i in index)
    return index is None or index is Ellipsis or isinstance(index, (int, slice))


class _Lipschitz(torch.fx.Interpreter):
    """Runs the traced model once and, node by node, a Lipschitz constant of the map from
    the model input to that node's value (None where an operation has no known one)."""

    def __init__(self, module: torch.fx.GraphModule, opts: _Options) -> None:
        super().__init__(module)
        self.opts = opts
        self.lip: Dict[torch.fx.Node, Optional[float]] = {}
        self.layers: List[OperatorNorm] = []
        self.unknown: Optional[str] = None
        self.inputs_seen = 0

    def run_node(self, n: torch.fx.Node) -> Any:
        value = super().run_node(n)
        self.lip[n] = self._node_constant(n, value)
        return value

    def _fail(self, why: str) -> None:
        if self.unknown is None:
            self.unknown = why

    def _node_constant(self, n: torch.fx.Node, value: Any) -> Optional[float]:
        if n.op == "placeholder":
            self.inputs_seen += 1
            return 1.0 if self.inputs_seen == 1 else 0.0
        if n.op == "output":
            leaves = [m for m in n.all_input_nodes if _holds_tensor(self.env.get(m))]
            ls = [self.lip[m] for m in leaves]
            return None if None in ls else math.sqrt(sum(v * v for v in ls))
        if n.op == "get_attr" or not _holds_tensor(value):
            return 0.0  # parameters, buffers, sizes: not moved by the input
        ls = [self.lip[m] for m in n.all_input_nodes]
        if None in ls:
            return None
        if not any(ls):
            return 0.0
        result = self._rule(n, value)
        if result is None:
            self._fail(f"no known Lipschitz constant for {_op_name(n)} (node {n.name!r})")
        return result

    def _dependent(self, n: torch.fx.Node) -> List[torch.fx.Node]:
        return [m for m in n.all_input_nodes if self.lip[m]]

    def _unary(self, n: torch.fx.Node) -> Optional[float]:
        """The Lipschitz constant of the first argument, if it is the only moving one."""
        x = n.args[0] if n.args else None
        if not isinstance(x, torch.fx.Node) or self._dependent(n) != [x]:
            return None
        return self.lip[x]

    def _rule(self, n: torch.fx.Node, value: Any) -> Optional[float]:
        target, method = n.target, n.op == "call_method"
        if n.op == "call_module":
            return self._module(n)
        if n.op not in ("call_function", "call_method"):
            return None
        if target is operator.getitem:
            source = self.env[n.args[0]]
            if isinstance(source, Tensor) and not _simple_index(n.args[1]):
                return None
            return self._unary(n)
        if target in _ADD or (method and target in _ADD_METHODS):
            return self._add(n, value)
        if target in _CAT:
            parts = n.args[0] if n.args else n.kwargs.get("tensors", ())
            if self._dependent(n) != [m for m in parts if isinstance(m, torch.fx.Node)
                                      and self.lip[m]]:  # fmt: skip
                return None
            return math.sqrt(sum(self.lip[m] ** 2 for m in parts if isinstance(m, torch.fx.Node)))
        if target in _MUL or (method and target in _MUL_METHODS):
            return self._scale(n, value, divide=False)
        if target in _DIV or (method and target in _DIV_METHODS):
            return self._scale(n, value, divide=True)
        factor = self._unary_factor(n)
        lip = self._unary(n)
        return None if factor is None or lip is None else factor * lip

    def _unary_factor(self, n: torch.fx.Node) -> Optional[float]:
        target = n.target
        if n.op == "call_method":
            if target in _UNARY_ONE_METHODS:
                return 1.0
            if target in _UNARY_CONSTANT_METHODS:
                return _UNARY_CONSTANT_METHODS[target]
            return self._linear(n) if target in _LINEAR_METHODS else None
        if target in _UNARY_ONE:
            return 1.0
        if target in _UNARY_CONSTANT:
            return _UNARY_CONSTANT[target]
        if target in _LEAKY:
            key, default = _LEAKY[target]
            value = n.args[1] if len(n.args) > 1 else n.kwargs.get(key, default)
            return max(1.0, abs(float(value)))
        if target in _MAXPOOL:
            x = self.env[n.args[0]]
            args = torch.fx.node.map_arg(n.args[1:], lambda m: self.env[m])
            kwargs = torch.fx.node.map_arg(n.kwargs, lambda m: self.env[m])
            module = _MAXPOOL[target](*args, **kwargs)
            return _uncached_layer_norm(module, tuple(x.shape), x.device, self.opts)[0]
        if target is F.interpolate:
            mode = n.kwargs.get("mode", n.args[3] if len(n.args) > 3 else "nearest")
            if mode not in _POSITIVE_MODES:
                return None
        return self._linear(n) if target in _LINEAR else None

    def _linear(self, n: torch.fx.Node) -> float:
        """Norm of a linear op (pooling, mean, resampling) on one example's input."""
        x = self.env[n.args[0]]
        args = torch.fx.node.map_arg(n.args[1:], lambda m: self.env[m])
        kwargs = torch.fx.node.map_arg(n.kwargs, lambda m: self.env[m])
        if n.op == "call_method":

            def forward(v: Tensor) -> Tensor:
                return getattr(v, n.target)(*args, **kwargs)
        else:

            def forward(v: Tensor) -> Tensor:
                return n.target(v, *args, **kwargs)

        return _linear_norm(forward, tuple(x.shape[1:]), x.device, self.opts)[0]

    def _module(self, n: torch.fx.Node) -> Optional[float]:
        module = self.module.get_submodule(n.target)
        lip = self._unary(n)
        x = self.env[n.args[0]] if n.args else None
        if lip is None or not isinstance(x, Tensor):
            norm, method, shape = None, "unknown: does not take one tensor", ()
        else:
            shape = tuple(x.shape)
            norm, method = _layer_norm(module, shape, x.device, self.opts)
        self.layers.append(OperatorNorm(n.target, type(module).__name__, shape, norm, method))
        if norm is None:
            self._fail(f"no known Lipschitz constant for layer {n.target!r} "
                       f"({type(module).__name__})")  # fmt: skip
            return None
        return norm * lip

    def _add(self, n: torch.fx.Node, value: Tensor) -> Optional[float]:
        """``x ± y``: ``L_x + |α| L_y``; a moving operand must not be broadcast."""
        alpha = abs(float(n.kwargs.get("alpha", 1)))
        total = 0.0
        for i, arg in enumerate(n.args[:2]):
            if isinstance(arg, torch.fx.Node) and self.lip[arg]:
                if self.env[arg].numel() != value.numel():
                    return None
                total += self.lip[arg] * (alpha if i == 1 else 1.0)
        if len([m for m in self._dependent(n) if m not in n.args[:2]]):
            return None
        return total

    def _scale(self, n: torch.fx.Node, value: Tensor, divide: bool) -> Optional[float]:
        """``x · c`` or ``x / c`` with a constant ``c``: ``max|c|`` or ``1 / min|c|``."""
        if len(n.args) != 2 or n.kwargs:
            return None
        moving = [i for i, a in enumerate(n.args) if isinstance(a, torch.fx.Node) and self.lip[a]]
        if len(moving) != 1 or (divide and moving[0] != 0):
            return None
        x = n.args[moving[0]]
        other = n.args[1 - moving[0]]
        c = self.env[other] if isinstance(other, torch.fx.Node) else other
        if isinstance(c, Tensor):
            if self.env[x].numel() != value.numel():
                return None  # x broadcast over c: copies of x, not a scaling
            c = c.detach().abs()
            c = float(c.min()) if divide else float(c.max())
        elif isinstance(c, (int, float)):
            c = abs(float(c))
        else:
            return None
        if divide:
            return None if c == 0 else self.lip[x] / c
        return self.lip[x] * c


def _trace_graph(model: nn.Module) -> torch.fx.GraphModule:
    graph = _Tracer().trace(model)
    return torch.fx.GraphModule(model, graph)


def _graph_bound(
    model: nn.Module, example_input: Tensor, opts: _Options
) -> Tuple[Optional[float], str, List[OperatorNorm], Optional[torch.fx.GraphModule]]:
    """``(bound, note, layers, graph)`` of one module on ``example_input``."""
    if _Tracer().is_leaf_module(model, ""):
        norm, method = _layer_norm(model, tuple(example_input.shape), example_input.device, opts)
        layer = OperatorNorm("(model)", type(model).__name__, tuple(example_input.shape), norm,
                             method)  # fmt: skip
        note = (
            method
            if norm is not None
            else (f"not computed: no known Lipschitz constant for {type(model).__name__}")
        )
        return norm, note, [layer], None
    try:
        graph = _trace_graph(model)
    except Exception as e:  # torch.fx raises many kinds on untraceable Python
        why = (str(e).splitlines() or [""])[0]
        return None, (
            f"not computed: torch.fx could not trace {type(model).__name__} "
            f"({type(e).__name__}: {why})"
        ), [], None  # fmt: skip
    interpreter = _Lipschitz(graph, opts)
    with torch.no_grad():
        interpreter.run(example_input.detach())
    output = next(n for n in reversed(graph.graph.nodes) if n.op == "output")
    bound = interpreter.lip[output]
    if bound is None:
        return None, f"not computed: {interpreter.unknown}", interpreter.layers, graph
    return bound, "composed along the model's graph", interpreter.layers, graph


def _block_names(
    graph: torch.fx.GraphModule, lip: Dict[torch.fx.Node, Optional[float]]
) -> List[str]:
    """Modules whose forward adds or concatenates two moving tensors (residual and dense
    blocks), outermost first: the innermost module around each such operation, keeping
    only those not inside another."""
    found = []
    for n in graph.graph.nodes:
        merges = (
            n.target in _ADD
            or n.target in _CAT
            or (n.op == "call_method" and n.target in _ADD_METHODS)
        )
        moving = [m for m in n.all_input_nodes if lip.get(m)]
        if n.op in ("call_function", "call_method") and merges and len(moving) >= 2:
            stack = list((n.meta.get("nn_module_stack") or {}).values())
            if stack and stack[-1][0] and stack[-1][0] not in found:
                found.append(stack[-1][0])
    return [b for b in found if not any(b.startswith(o + ".") for o in found if o != b)]


def _block_norms(
    model: nn.Module, example_input: Tensor, names: List[str], opts: _Options
) -> List[OperatorNorm]:
    """Each block's own bound, from the input it receives in one forward pass."""
    inputs: Dict[str, Any] = {}
    handles = []

    def hook(name: str):
        def record(module: nn.Module, args: Tuple[Any, ...]) -> None:
            if name not in inputs:
                inputs[name] = args[0] if len(args) == 1 and isinstance(args[0], Tensor) else None

        return record

    try:
        for name in names:
            handles.append(model.get_submodule(name).register_forward_pre_hook(hook(name)))
        with torch.no_grad():
            model(example_input.detach())
    finally:
        for handle in handles:
            handle.remove()
    blocks = []
    for name in names:
        module, x = model.get_submodule(name), inputs.get(name)
        if x is None:
            blocks.append(OperatorNorm(name, type(module).__name__, (), None,
                                       "unknown: does not take one tensor"))  # fmt: skip
            continue
        bound, note, _, _ = _graph_bound(module, x, opts)
        blocks.append(OperatorNorm(name, type(module).__name__, tuple(x.shape), bound, note))
    return blocks


@dataclass
class LipschitzReport:
    """The Lipschitz upper bound of a model, how it was obtained, its layers and blocks.

    Attributes:
        bound (float or None): upper bound on ``‖f(x) − f(y)‖₂ / ‖x − y‖₂``, or None.
        note (str): how the bound was composed, or which operation stopped it.
        method (str): how convolution and pooling norms were computed (power iteration,
            from below, or certified upper bounds).
        layers (list[OperatorNorm]): every layer call of the traced graph, in order.
        blocks (list[OperatorNorm]): every residual or dense block (a module whose
            forward adds or concatenates), with the bound of the block alone.
    """

    bound: Optional[float]
    note: str
    method: str
    layers: List[OperatorNorm] = field(default_factory=list)
    blocks: List[OperatorNorm] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "bound": self.bound,
            "note": self.note,
            "method": self.method,
            "layers": [layer.to_dict() for layer in self.layers],
            "blocks": [block.to_dict() for block in self.blocks],
        }

    def to_markdown(self) -> str:
        """The bound, then a Markdown table of the blocks (or of the layers if none)."""
        bound = "—" if self.bound is None else f"{self.bound:.4g}"
        lines = [f"Lipschitz upper bound (L2): {bound} ({self.note}; {self.method}).", ""]
        rows = self.blocks or self.layers
        lines += [
            f"| {'block' if self.blocks else 'layer'} | type | input shape | bound |",
            "|---|---|---|---:|",
        ]
        for row in rows:
            norm = "—" if row.norm is None else f"{row.norm:.4g}"
            shape = "×".join(str(s) for s in row.input_shape)
            lines.append(f"| {row.name} | {row.kind} | {shape} | {norm} |")
        return "\n".join(lines)


def lipschitz_analysis(
    model: nn.Module,
    example_input: Tensor,
    n_iter: int = 100,
    seed: int = 0,
    certified: bool = False,
    gram_iter: int = 10,
    blocks: bool = True,
) -> LipschitzReport:
    r"""Upper bound on a model's L2 Lipschitz constant along its graph, with its parts.

    The model is traced with ``torch.fx`` (normalization layers and ``torch.nn`` layers
    kept whole) and run once on ``example_input`` (eval mode, no grad). Node by node, a
    constant ``L`` of the map from the input to that node is composed:

    - a layer: ``‖layer‖ · L_in`` (:func:`layer_operator_norms` lists the norms);
    - ``x + y``, ``x − y`` (residual connections): ``L_x + L_y``;
    - ``torch.cat`` / ``torch.stack`` (dense connections): ``√(L_a² + L_b² + …)``;
    - functional activations (``F.relu``, ``torch.sigmoid``, …), reshapes (``flatten``,
      ``view``, …), dropout (eval), slicing: their constants; ``F.max_pool2d`` as the
      layer; ``F.avg_pool2d``, ``F.adaptive_avg_pool2d``, ``mean``, ``F.interpolate``
      (non-negative modes) as linear maps; ``x · c`` and ``x / c`` with a constant ``c``:
      ``max|c|``, ``1/min|c|``; anything computed from constants only: 0.

    Anything else that depends on the input (a product of two activations, an unknown
    layer or function) stops the bound: ``bound=None`` and ``note`` names the operation.
    With ``blocks=True`` each residual or dense block (a module whose own forward adds or
    concatenates moving tensors: a ResNet ``BasicBlock``, a DenseNet ``_DenseBlock``, a
    MobileNetV2 ``InvertedResidual``) gets its own bound, from the input it receives.

    Convolution norms come from power iteration (``certified=False``: each approaches the
    true norm from below, so the product is an estimate of the bound, tight in practice)
    or, with ``certified=True``, from Gram iteration (:func:`conv2d_norm_bound`) and
    pooling from the Schur test: then the bound is a certified upper bound.

    Args:
        model (nn.Module): the model; training flags are restored and no hooks are left.
        example_input (Tensor): one input batch, e.g. ``images[:1]``; sets the input size
            each convolution sees.
        n_iter (int): power iterations per convolution and pooling layer.
        seed (int): seed of the power iterations.
        certified (bool): certified upper bounds instead of power iteration.
        gram_iter (int): Gram iterations per convolution when ``certified``.
        blocks (bool): also the bound of every residual or dense block.

    Returns:
        LipschitzReport: ``bound``, ``note``, ``method``, ``layers``, ``blocks``.

    Examples:
        >>> import torchvision
        >>> net = torchvision.models.resnet18(weights=None, num_classes=4)
        >>> report = lipschitz_analysis(net, torch.rand(1, 3, 32, 32), n_iter=2)
        >>> report.bound > 0, len(report.blocks)
        (True, 8)

    References:
        Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Sec. 4.3.
        Delattre et al. arXiv:2305.16173 (Gram iteration).
    """
    opts = _check_analysis_args(model, example_input, n_iter, seed, gram_iter, certified)
    return _lipschitz_report(model, example_input, opts, blocks)


def _lipschitz_report(
    model: nn.Module, example_input: Tensor, opts: _Options, blocks: bool
) -> LipschitzReport:
    with eval_mode(model):
        bound, note, layers, graph = _graph_bound(model, example_input, opts)
        names = []
        if blocks and graph is not None:
            names = _block_names(graph, _moving_nodes(graph))
        block_list = _block_norms(model, example_input, names, opts) if names else []
    return LipschitzReport(bound, note, opts.describe(), layers, block_list)


def _moving_nodes(graph: torch.fx.GraphModule) -> Dict[Any, float]:
    """Which nodes depend on the input (1.0) and which do not (0.0), by the graph alone."""
    moving: Dict[Any, float] = {}
    first = True
    for n in graph.graph.nodes:
        if n.op == "placeholder":
            moving[n] = 1.0 if first else 0.0
            first = False
        else:
            moving[n] = 1.0 if any(moving.get(m) for m in n.all_input_nodes) else 0.0
    return moving


def lipschitz_bound(
    model: nn.Module,
    example_input: Tensor,
    n_iter: int = 100,
    seed: int = 0,
    certified: bool = False,
    gram_iter: int = 10,
) -> Optional[float]:
    r"""Upper bound on the model's L2 Lipschitz constant, composed along its graph.

    ``‖f(x) − f(y)‖₂ ≤ L ‖x − y‖₂`` for every pair of inputs of ``example_input``'s size.
    Layers multiply, residual additions add (``L_a + L_b``), concatenations combine as
    ``√(L_a² + L_b²)``; see :func:`lipschitz_analysis` for the rules, the per-block
    norms and the note that says why the bound is None when an operation has no known
    constant. Works through torchvision's ResNet, VGG, DenseNet and MobileNetV2.

    Args:
        model (nn.Module): the model.
        example_input (Tensor): one input batch, e.g. ``images[:1]``.
        n_iter (int): power iterations for convolutions and pooling.
        seed (int): seed of the power iterations.
        certified (bool): certified per-layer upper bounds (Gram iteration for
            convolutions, Schur test for pooling) instead of power iteration, which
            approaches each convolution's norm from below.
        gram_iter (int): Gram iterations per convolution when ``certified``.

    Returns:
        float or None: the bound, or None when it is not computed.

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 2))
        >>> lipschitz_bound(model, torch.rand(1, 3, 2, 2)) > 0
        True

    References:
        Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Sec. 4.3.
    """
    return lipschitz_analysis(
        model, example_input, n_iter, seed, certified, gram_iter, blocks=False
    ).bound


# --------------------------------------------------------------------------- distortion


@dataclass
class MinimalDistortion:
    """Per image, the smallest perturbation found that changes the prediction.

    Attributes:
        method (str): ``"pgd_l2"``, ``"pgd_linf"`` or ``"gaussian"``.
        norm (str): the norm of ``values``: ``"L2"`` or ``"Linf"``.
        values (Tensor): ``(N,)`` norm of the flipping perturbation found (at radius or
            σ ``budgets``), ``inf`` where none was found up to the maximum.
        budgets (Tensor): ``(N,)`` PGD radius or noise σ at the upper end of the final
            bisection bracket (the prediction flips there and not ``tolerance`` below),
            ``inf`` where none was found.
        tolerance (float): width of the final bisection bracket.
    """

    method: str
    norm: str
    values: Tensor = field(repr=False)
    budgets: Tensor = field(repr=False)
    tolerance: float

    @property
    def found(self) -> Tensor:
        """``(N,)`` bool: images whose prediction could be changed."""
        return torch.isfinite(self.values)

    @property
    def n_found(self) -> int:
        """How many images' predictions could be changed."""
        return int(self.found.sum())

    @property
    def mean(self) -> float:
        """Mean distortion over the images whose prediction changed (NaN if none)."""
        return float(self.values[self.found].double().mean()) if self.n_found else math.nan

    def to_dict(self) -> Dict[str, Any]:
        """Summary: mean, counts and tolerance."""
        return {
            "method": self.method,
            "norm": self.norm,
            "mean": self.mean,
            "mean_budget": float(self.budgets[self.found].double().mean())
            if self.n_found
            else math.nan,
            "n_found": self.n_found,
            "n_images": int(self.values.numel()),
            "tolerance": self.tolerance,
        }


def _check_distortion_args(model, images, n_bisect, batch_size):
    model = check_model(model)
    check_pixels(images, "images")
    n_bisect = check_int(n_bisect, name="n_bisect", low=1)
    batch_size = check_int(batch_size, name="batch_size", low=1)
    return model, n_bisect, batch_size


def _norms(delta: Tensor, norm: str) -> Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "Linf" else flat.norm(dim=1)


def _bisect(
    model: nn.Module,
    images: Tensor,
    perturb: Callable[[Tensor, Tensor, Tensor, Tensor], Tensor],
    high: float,
    n_bisect: int,
) -> Tuple[Tensor, Tensor]:
    """Per image, bisection over a budget in ``[0, high]`` for a prediction change.

    ``perturb(x, y0, budget, index)`` returns perturbed images for a subset ``index`` of
    the batch at per-image budgets. Invariant: flips at ``hi``, not at ``lo`` (``lo = 0``
    is the clean image). Returns ``(best perturbed images, hi)``, ``hi = inf`` where the
    prediction does not change even at ``high``.
    """
    n = images.shape[0]
    with torch.no_grad():
        y0 = model_logits(model, images).argmax(1)
    index = torch.arange(n, device=images.device)
    hi = torch.full((n,), high, dtype=torch.float64, device=images.device)
    lo = torch.zeros_like(hi)
    best = perturb(images, y0, hi, index)
    with torch.no_grad():
        found = model_logits(model, best).argmax(1) != y0
    hi[~found] = math.inf
    index = index[found]
    for _ in range(n_bisect):
        if index.numel() == 0:
            break
        mid = (lo[index] + hi[index]) / 2
        candidate = perturb(images[index], y0[index], mid, index)
        with torch.no_grad():
            flip = model_logits(model, candidate).argmax(1) != y0[index]
        hi[index[flip]] = mid[flip]
        lo[index[~flip]] = mid[~flip]
        best[index[flip]] = candidate[flip]
    return best, hi


def minimal_distortion(
    model: nn.Module,
    images: Tensor,
    norm: str = "L2",
    steps: int = 20,
    n_bisect: int = 12,
    max_eps: Optional[float] = None,
    batch_size: int = 64,
) -> MinimalDistortion:
    r"""Smallest PGD perturbation found that changes each image's prediction.

    For each image, bisection over the radius ``eps ∈ [0, max_eps]`` of an untargeted
    PGD attack (:func:`~captum_rig.robustness.pgd_attack`, ``steps`` steps of size
    ``eps/4``, no random start, so the result is deterministic) against the model's own
    clean prediction. The result is the norm of the flipping perturbation found at the
    final bracket's upper end: an upper bound on the true minimal distortion (PGD may
    miss closer adversarial examples; bisection assumes a larger radius does not
    un-flip).

    Args:
        model (nn.Module): maps ``(N, C, H, W)`` images in [0, 1] to logits.
        images (Tensor): ``(N, C, H, W)`` in [0, 1].
        norm (str): ``"L2"`` or ``"Linf"``.
        steps (int): PGD steps per radius.
        n_bisect (int): bisection steps; the bracket ends ``max_eps / 2**n_bisect`` wide.
        max_eps (float, optional): largest radius tried; default 1 for L∞ and
            ``√(C·H·W)`` (the diagonal of the [0, 1] box) for L2.
        batch_size (int): images per attack batch.

    Returns:
        MinimalDistortion: per-image values (``inf`` if no flip up to ``max_eps``), its
        ``mean`` over the images that flipped.

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
        >>> result = minimal_distortion(model, torch.rand(4, 3, 8, 8), norm="Linf")
        >>> result.values.shape
        torch.Size([4])

    References:
        Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199.
    """
    model, n_bisect, batch_size = _check_distortion_args(model, images, n_bisect, batch_size)
    norm = check_norm(norm)
    steps = check_int(steps, name="steps", low=1)
    if max_eps is None:
        max_eps = 1.0 if norm == "Linf" else math.sqrt(images[0].numel())
    max_eps = check_real(max_eps, "max_eps", strict=True)
    device = model_device(model)

    def perturb(x: Tensor, y0: Tensor, eps: Tensor, index: Tensor) -> Tensor:
        return pgd_attack(
            model, x, y0, eps=eps.to(x.dtype), steps=steps, norm=norm, random_start=False
        )

    values, budgets = [], []
    with eval_mode(model):
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(device)
            best, hi = _bisect(model, x, perturb, max_eps, n_bisect)
            value = _norms(best - x, norm).double()
            value[~torch.isfinite(hi)] = math.inf
            values.append(value.cpu())
            budgets.append(hi.cpu())
    return MinimalDistortion(
        method=f"pgd_{norm.lower()}",
        norm=norm,
        values=torch.cat(values),
        budgets=torch.cat(budgets),
        tolerance=max_eps / 2**n_bisect,
    )


def gaussian_minimal_distortion(
    model: nn.Module,
    images: Tensor,
    n_bisect: int = 12,
    max_sigma: float = 1.0,
    batch_size: int = 64,
    seed: int = 0,
) -> MinimalDistortion:
    r"""Smallest Gaussian noise level that changes each image's prediction.

    Each image ``x`` gets one fixed noise direction ``z ~ N(0, I)`` (drawn on the CPU in
    data order from a ``torch.Generator`` seeded with ``seed``: ``torch.randn(batch.shape,
    generator=g, dtype=images.dtype)`` per batch of ``batch_size``), and bisection over
    ``σ ∈ [0, max_sigma]`` finds the smallest σ at which the prediction on
    ``clamp(x + σ z, 0, 1)`` differs from the clean one. ``values`` is the L2 norm of that
    perturbation (after clamping) and ``budgets`` the σ. Bisection assumes the
    prediction, once changed along the ray, stays changed.

    Args:
        model (nn.Module): maps ``(N, C, H, W)`` images in [0, 1] to logits.
        images (Tensor): ``(N, C, H, W)`` in [0, 1].
        n_bisect (int): bisection steps; the σ bracket ends ``max_sigma / 2**n_bisect``
            wide.
        max_sigma (float): largest noise standard deviation tried (pixel units).
        batch_size (int): images per batch.
        seed (int): seed of the noise.

    Returns:
        MinimalDistortion: per-image L2 distortions and σ, ``inf`` if no change up to
        ``max_sigma``.

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
        >>> gaussian_minimal_distortion(model, torch.rand(4, 3, 8, 8)).budgets.shape
        torch.Size([4])

    References:
        Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199.
    """
    model, n_bisect, batch_size = _check_distortion_args(model, images, n_bisect, batch_size)
    max_sigma = check_real(max_sigma, "max_sigma", strict=True)
    seed = check_int(seed, name="seed")
    device = model_device(model)
    generator = torch.Generator().manual_seed(seed)

    values, budgets = [], []
    with eval_mode(model):
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size]
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(device)
            x = x.to(device)

            def perturb(xs: Tensor, y0: Tensor, sigma: Tensor, index: Tensor) -> Tensor:
                sigma = sigma.to(xs.dtype).view(-1, 1, 1, 1)
                return (xs + sigma * noise[index]).clamp(0, 1)  # noqa: B023

            best, hi = _bisect(model, x, perturb, max_sigma, n_bisect)
            value = _norms(best - x, "L2").double()
            value[~torch.isfinite(hi)] = math.inf
            values.append(value.cpu())
            budgets.append(hi.cpu())
    return MinimalDistortion(
        method="gaussian",
        norm="L2",
        values=torch.cat(values),
        budgets=torch.cat(budgets),
        tolerance=max_sigma / 2**n_bisect,
    )


# --------------------------------------------------------------------------- report


@dataclass
class StabilityReport:
    """Layer norms, the Lipschitz bound and average minimal distortions of one model.

    Attributes:
        layers (list[OperatorNorm]): per layer call, in order.
        lipschitz_bound (float or None): the bound of :func:`lipschitz_bound`, or None.
        lipschitz_note (str): how the bound was computed, or why it was not.
        distortions (dict[str, MinimalDistortion]): by method (``"pgd_l2"``,
            ``"pgd_linf"``, ``"gaussian"``).
        blocks (list[OperatorNorm]): the bound of every residual or dense block.
    """

    layers: List[OperatorNorm]
    lipschitz_bound: Optional[float]
    lipschitz_note: str
    distortions: Dict[str, MinimalDistortion]
    blocks: List[OperatorNorm] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict (distortion summaries, no per-image values)."""
        return {
            "layers": [layer.to_dict() for layer in self.layers],
            "blocks": [block.to_dict() for block in self.blocks],
            "lipschitz_bound": self.lipschitz_bound,
            "lipschitz_note": self.lipschitz_note,
            "distortions": {k: v.to_dict() for k, v in self.distortions.items()},
        }

    def to_markdown(self) -> str:
        """Two Markdown tables (layers, distortions) and the bound.

        Examples:
            >>> print(report.to_markdown())  # doctest: +SKIP
            | layer | type | input shape | operator norm | method |
            ...
        """
        lines = [
            "| layer | type | input shape | operator norm | method |",
            "|---|---|---|---:|---|",
        ]
        for layer in self.layers:
            norm = "—" if layer.norm is None else f"{layer.norm:.4g}"
            shape = "×".join(str(s) for s in layer.input_shape)
            method = layer.method.replace("|", "\\|")  # a literal | in a table cell
            lines.append(f"| {layer.name} | {layer.kind} | {shape} | {norm} | {method} |")
        bound = "—" if self.lipschitz_bound is None else f"{self.lipschitz_bound:.4g}"
        lines += ["", f"Lipschitz upper bound (L2): {bound} ({self.lipschitz_note})."]
        if self.distortions:
            lines += [
                "",
                "| minimal distortion | norm | mean | images changed | tolerance |",
                "|---|---|---:|---:|---:|",
            ]
            for name, d in self.distortions.items():
                lines.append(
                    f"| {name} | {d.norm} | {d.mean:.4g} | {d.n_found}/{d.values.numel()} "
                    f"| {d.tolerance:.2g} |"
                )
        return "\n".join(lines)


def stability_analysis(
    model: nn.Module,
    images: Tensor,
    example_input: Optional[Tensor] = None,
    norms: Sequence[str] = ("L2", "Linf"),
    gaussian: bool = True,
    steps: int = 20,
    n_bisect: int = 12,
    n_iter: int = 100,
    max_sigma: float = 1.0,
    batch_size: int = 64,
    seed: int = 0,
    certified: bool = False,
) -> StabilityReport:
    r"""The "Intriguing properties revisited" analysis of one model.

    Layer operator norms and the Lipschitz upper bound (:func:`layer_operator_norms`,
    :func:`lipschitz_analysis`), then the average minimal distortion under PGD for each
    of ``norms`` (:func:`minimal_distortion`) and under Gaussian noise
    (:func:`gaussian_minimal_distortion`). Compare a naturally trained model with one
    trained on low-rank images by running this on both, or use
    :func:`compare_stability`.

    Args:
        model (nn.Module): maps ``(N, C, H, W)`` images in [0, 1] to logits and contains
            its normalization. Run in eval mode; training flags are restored; no hooks
            are left behind.
        images (Tensor): ``(N, C, H, W)`` in [0, 1].
        example_input (Tensor, optional): input for the layer shapes; default
            ``images[:1]``.
        norms (sequence of str): PGD norms for the minimal distortion, ``()`` for none.
        gaussian (bool): also the Gaussian-noise minimal distortion.
        steps (int): as in :func:`minimal_distortion`.
        n_bisect (int): as in :func:`minimal_distortion`.
        n_iter (int): power iterations per convolution.
        max_sigma (float): as in :func:`gaussian_minimal_distortion`.
        batch_size (int): images per batch.
        seed (int): seed of the power iterations and the noise.
        certified (bool): certified layer bounds, as in :func:`lipschitz_bound`.

    Returns:
        StabilityReport: with ``to_markdown()`` and ``to_dict()``.

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
        >>> report = stability_analysis(model, torch.rand(4, 3, 8, 8), n_bisect=4)
        >>> sorted(report.distortions)
        ['gaussian', 'pgd_l2', 'pgd_linf']

    References:
        Jere, Kumar, Koushanfar. arXiv:2012.03516. Szegedy et al. arXiv:1312.6199.
    """
    model = check_model(model)
    check_pixels(images, "images")
    if isinstance(norms, str):
        norms = (norms,)
    norms = [check_norm(norm) for norm in norms]
    if example_input is None:
        example_input = images[:1].to(model_device(model))
    opts = _check_analysis_args(model, example_input, n_iter, seed, 10, certified)
    layers = _layer_list(model, example_input, opts)
    report = _lipschitz_report(model, example_input, opts, blocks=True)
    distortions: Dict[str, MinimalDistortion] = {}
    for norm in norms:
        result = minimal_distortion(
            model, images, norm=norm, steps=steps, n_bisect=n_bisect, batch_size=batch_size
        )
        distortions[result.method] = result
    if gaussian:
        distortions["gaussian"] = gaussian_minimal_distortion(
            model, images, n_bisect=n_bisect, max_sigma=max_sigma, batch_size=batch_size,
            seed=seed,
        )  # fmt: skip
    note = f"{report.note}; {report.method}"
    return StabilityReport(layers, report.bound, note, distortions, report.blocks)


# --------------------------------------------------------------------------- spectra


def weight_spectra(model: nn.Module) -> Dict[str, Tensor]:
    r"""Singular values of every ``Conv2d`` and ``Linear`` weight, by module name.

    A convolution's weight ``(out, in/groups, kh, kw)`` is reshaped to ``(out,
    in/groups·kh·kw)`` (the matrix that multiplies each unfolded input patch); a linear
    layer's ``(out, in)`` weight is taken as it is. Half-precision weights are upcast to
    float32.

    Args:
        model (nn.Module): the model (not modified).

    Returns:
        dict[str, Tensor]: ``named_modules()`` name (``"(model)"`` for the model itself)
        → singular values, descending, shape ``(min(out, in·kh·kw),)``, on the CPU.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 2))
        >>> {name: tuple(s.shape) for name, s in weight_spectra(net).items()}
        {'0': (8,), '2': (2,)}

    References:
        Jere, Kumar, Koushanfar. arXiv:2012.03516. Szegedy et al. arXiv:1312.6199.
    """
    model = check_model(model)
    spectra = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            weight = module.weight.detach()
            if weight.dtype in (torch.float16, torch.bfloat16):
                weight = weight.float()
            matrix = weight.reshape(weight.shape[0], -1)
            spectra[name or "(model)"] = torch.linalg.svdvals(matrix).cpu()
    return spectra


def _spectrum_layers(model: nn.Module, layers: Any) -> List[str]:
    modules = dict(model.named_modules())
    if layers is None:
        names = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
        if not names:
            raise ValueError("layers: the model has no Conv2d layer; name the layers to use")
        return names
    if isinstance(layers, str):
        layers = [layers]
    names = list(layers)
    unknown = [n for n in names if not isinstance(n, str) or n not in modules]
    if not names or unknown:
        valid = [n for n in modules if n][:6]
        raise ValueError(UNKNOWN_LAYERS.format(unknown=unknown or "(none given)", valid=valid))
    return names


def feature_map_spectra(
    model: nn.Module,
    images: Tensor,
    layers: Optional[Sequence[str]] = None,
    batch_size: int = 64,
) -> Dict[str, Tensor]:
    r"""Mean singular values of every H×W feature map of the given layers' outputs.

    The model runs on ``images`` (eval mode, no grad, in batches) with forward hooks on
    the layers (removed afterwards). Each layer output ``(N, C, H, W)`` gives ``N·C``
    matrices of size ``H×W``; their singular values (descending, computed in at least
    float32) are averaged over images and channels: the feature-map counterpart of the
    paper's image spectra.

    Args:
        model (nn.Module): maps ``(N, C, H, W)`` images in [0, 1] to anything.
        images (Tensor): ``(N, C, H, W)`` in [0, 1].
        layers (sequence of str, optional): ``named_modules()`` names whose outputs are
            4-d; default every ``nn.Conv2d``. A layer called several times counts every
            call.
        batch_size (int): images per forward pass.

    Returns:
        dict[str, Tensor]: layer name → float64 ``(min(H, W),)`` on the CPU.

    Raises:
        ValueError: a name that is not a module of the model, a layer whose output is
            not ``(N, C, H, W)``, images outside [0, 1].

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3))
        >>> {k: tuple(v.shape) for k, v in feature_map_spectra(net, torch.rand(2, 3, 8, 8)).items()}
        {'0': (8,), '2': (6,)}
    """
    model = check_model(model)
    check_pixels(images, "images")
    batch_size = check_int(batch_size, name="batch_size", low=1)
    names = _spectrum_layers(model, layers)
    sums: Dict[str, Tensor] = {}
    counts: Dict[str, int] = {name: 0 for name in names}

    def hook(name: str):
        def record(module: nn.Module, args: Any, output: Any) -> None:
            if not isinstance(output, Tensor) or output.dim() != 4:
                shape = tuple(output.shape) if isinstance(output, Tensor) else type(output)
                raise ValueError(
                    f"layers: the output of {name!r} is {shape}, not a (N, C, H, W) tensor"
                )
            maps = output.detach()
            if maps.dtype not in (torch.float32, torch.float64):
                maps = maps.float()
            s = torch.linalg.svdvals(maps).sum((0, 1)).double().cpu()
            if name in sums and sums[name].shape != s.shape:
                raise ValueError(f"layers: {name!r} is called on inputs of different sizes")
            sums[name] = sums[name] + s if name in sums else s
            counts[name] += maps.shape[0] * maps.shape[1]

        return record

    device = model_device(model)
    handles = []
    try:
        for name in names:
            handles.append(model.get_submodule(name).register_forward_hook(hook(name)))
        with eval_mode(model), torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                model(images[start : start + batch_size].to(device))
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in names if not counts[name]]
    if missing:
        raise ValueError(f"layers {missing} were not called by the model's forward pass")
    return {name: sums[name] / counts[name] for name in names}


# --------------------------------------------------------------------------- comparison


@dataclass
class StabilityRow:
    """One model under one attack.

    Attributes:
        model (str): the model's name in the ``models`` mapping.
        attack (str): ``"pgd"`` or ``"gaussian"``.
        norm (str): the norm of the distortion, ``"L2"`` or ``"Linf"``.
        average_distortion (float): mean norm of the smallest prediction-changing
            perturbation found, over the images whose prediction changed; pixels in
            [0, 1] (NaN if none changed).
        lipschitz_bound (float or None): the model's L2 Lipschitz upper bound.
        clean_accuracy (float): accuracy on the clean images.
        n_changed (int): images whose prediction the attack changed.
        n_images (int): images attacked.
    """

    model: str
    attack: str
    norm: str
    average_distortion: float
    lipschitz_bound: Optional[float]
    clean_accuracy: float
    n_changed: int
    n_images: int

    @property
    def average_distortion_255(self) -> float:
        """``average_distortion`` on the 0-255 pixel scale (× 255)."""
        return self.average_distortion * 255

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict, with the 0-255 distortion too."""
        return {
            "model": self.model,
            "attack": self.attack,
            "norm": self.norm,
            "average_distortion": self.average_distortion,
            "average_distortion_255": self.average_distortion_255,
            "lipschitz_bound": self.lipschitz_bound,
            "clean_accuracy": self.clean_accuracy,
            "n_changed": self.n_changed,
            "n_images": self.n_images,
        }


@dataclass
class StabilityTable:
    """:func:`compare_stability`'s table: one row per model and attack.

    Attributes:
        rows (list[StabilityRow]): models in the order given, attacks in the order given.
        lipschitz (dict[str, LipschitzReport]): per model, how its bound was obtained.
        units (str): what the distortion numbers measure.
    """

    rows: List[StabilityRow]
    lipschitz: Dict[str, LipschitzReport]
    units: str

    def to_dict(self) -> Dict[str, Any]:
        """``{"units", "rows", "lipschitz"}``, JSON-ready."""
        return {
            "units": self.units,
            "rows": [row.to_dict() for row in self.rows],
            "lipschitz": {name: report.to_dict() for name, report in self.lipschitz.items()},
        }

    def to_markdown(self) -> str:
        """A Markdown table, with the units and the bound's method underneath."""
        lines = [
            "| model | attack | norm | avg. distortion [0, 1] | avg. distortion [0, 255] "
            "| changed | Lipschitz bound | clean accuracy |",
            "|---|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in self.rows:
            bound = "—" if r.lipschitz_bound is None else f"{r.lipschitz_bound:.4g}"
            lines.append(
                f"| {r.model} | {r.attack} | {r.norm} | {r.average_distortion:.4g} "
                f"| {r.average_distortion_255:.4g} | {r.n_changed}/{r.n_images} | {bound} "
                f"| {r.clean_accuracy:.3f} |"
            )
        methods = sorted({report.method for report in self.lipschitz.values()})
        lines += ["", f"{self.units} Lipschitz bounds: {'; '.join(methods)}."]
        return "\n".join(lines)

    def to_csv(self, path: Any) -> None:
        """Writes the rows (the columns of :meth:`StabilityRow.to_dict`), atomically."""
        fields = list(StabilityRow.__dataclass_fields__) + ["average_distortion_255"]
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            for row in self.rows:
                writer.writerow(row.to_dict())


def compare_stability(
    models: Mapping[str, nn.Module],
    images: Tensor,
    labels: Tensor,
    attacks: Sequence[str] = ATTACKS,
    norm: str = "L2",
    steps: int = 20,
    n_bisect: int = 12,
    max_eps: Optional[float] = None,
    max_sigma: float = 1.0,
    n_iter: int = 100,
    certified: bool = False,
    batch_size: int = 64,
    seed: int = 0,
    example_input: Optional[Tensor] = None,
    progress: bool = True,
) -> StabilityTable:
    r"""Several models side by side: accuracy, Lipschitz bound, minimal distortions.

    Per model: the clean accuracy on ``(images, labels)``, the Lipschitz upper bound
    (:func:`lipschitz_analysis` on ``example_input``, default ``images[:1]``), and per
    attack the average minimal distortion: ``"pgd"`` by :func:`minimal_distortion` in
    ``norm``, ``"gaussian"`` by :func:`gaussian_minimal_distortion` (always L2). The
    Szegedy et al. / "scratch vs fine-tuned" table, one row per model and attack.

    Units: distortions are norms of perturbations of images in [0, 1]
    (``average_distortion``) and the same × 255 (``average_distortion_255``), the scale
    such tables often use; divide an L2 value by ``√(C·H·W)`` for a per-pixel RMS.

    Args:
        models (Mapping[str, nn.Module]): name → model mapping ``(N, C, H, W)`` images in
            [0, 1] to logits (normalization inside). Training flags are restored.
        images (Tensor): ``(N, C, H, W)`` in [0, 1].
        labels (Tensor): ``(N,)`` class indices.
        attacks (sequence of str): among ``"pgd"`` and ``"gaussian"``.
        norm (str): the PGD norm, ``"L2"`` or ``"Linf"``.
        steps (int): PGD steps per radius.
        n_bisect (int): bisection steps of both searches.
        max_eps (float, optional): as in :func:`minimal_distortion`.
        max_sigma (float): as in :func:`gaussian_minimal_distortion`.
        n_iter (int): power iterations per convolution for the bound.
        certified (bool): certified bounds (Gram iteration) instead of power iteration.
        batch_size (int): images per batch.
        seed (int): seed of the power iterations and the noise.
        example_input (Tensor, optional): the input size for the bound.
        progress (bool): a tqdm progress bar over models and attacks.

    Returns:
        StabilityTable: ``rows``, ``lipschitz`` reports, ``to_markdown()``,
        ``to_csv(path)``, ``to_dict()``.

    Raises:
        ValueError: an empty ``models``, images outside [0, 1], labels of the wrong
            length, an unknown attack or norm.

    Examples:
        >>> nets = {"a": nn.Sequential(nn.Flatten(), nn.Linear(12, 3)),
        ...         "b": nn.Sequential(nn.Flatten(), nn.Linear(12, 3))}
        >>> table = compare_stability(nets, torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0]),
        ...                           n_bisect=3, steps=2, progress=False)
        >>> [(r.model, r.attack) for r in table.rows]
        [('a', 'pgd'), ('a', 'gaussian'), ('b', 'pgd'), ('b', 'gaussian')]

    References:
        Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Table 1.
        Jere, Kumar, Koushanfar. arXiv:2012.03516.
    """
    from tqdm.auto import tqdm

    models = check_models(models)
    check_pixels(images, "images")
    labels = check_labels(labels, images.shape[0])
    if isinstance(attacks, str):
        attacks = (attacks,)
    attacks = [check_choice(a, "attacks", ATTACKS) for a in attacks]
    if not attacks:
        raise ValueError(f"attacks must name at least one of {list(ATTACKS)}")
    norm = check_norm(norm)
    batch_size = check_int(batch_size, name="batch_size", low=1)
    rows, reports = [], {}
    bar = tqdm(total=len(models) * (1 + len(attacks)), disable=not progress, unit="step")
    try:
        for name, model in models.items():
            bar.set_description(f"{name}: accuracy and Lipschitz bound")
            x0 = images[:1] if example_input is None else example_input
            reports[name] = lipschitz_analysis(
                model, x0.to(model_device(model)), n_iter, seed, certified
            )
            accuracy = model_accuracy(model, images, labels, batch_size)
            bar.update()
            for attack in attacks:
                bar.set_description(f"{name}: {attack} minimal distortion")
                if attack == "pgd":
                    result = minimal_distortion(
                        model, images, norm=norm, steps=steps, n_bisect=n_bisect,
                        max_eps=max_eps, batch_size=batch_size,
                    )  # fmt: skip
                else:
                    result = gaussian_minimal_distortion(
                        model, images, n_bisect=n_bisect, max_sigma=max_sigma,
                        batch_size=batch_size, seed=seed,
                    )  # fmt: skip
                rows.append(StabilityRow(
                    name, attack, result.norm, result.mean, reports[name].bound, accuracy,
                    result.n_found, int(result.values.numel()),
                ))  # fmt: skip
                bar.update()
    finally:
        bar.close()
    units = (
        "Distortions: mean norm (L2 or L∞, per row) of the smallest prediction-changing "
        "perturbation found, images in [0, 1]; the [0, 255] column is the same × 255."
    )
    return StabilityTable(rows, reports, units)
