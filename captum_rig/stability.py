r"""Stability analysis: "Intriguing properties" revisited (DESIGN item 5).

Two views of how far a small input change can move a model:

- **Per-layer operator norms and the Lipschitz upper bound** (Szegedy et al. 2013,
  Sec. 4.3). Every layer's L2 → L2 operator norm: exact for ``nn.Linear`` (largest
  singular value), power iteration for ``nn.Conv2d`` and average pooling (the norm of the
  layer as a linear map on inputs of the size it really sees), ``max |γ/√(var+ε)|`` for
  BatchNorm in eval mode, known constants for activations. For a model that is a plain
  chain of layers the product of the norms bounds ``‖f(x) − f(y)‖₂ / ‖x − y‖₂``.
- **Average minimal distortion**: per image, the smallest perturbation found that changes
  the prediction, by bisection over the PGD radius (L2 and L∞, through
  :func:`captum_rig.robustness.pgd_attack`) and over the standard deviation of Gaussian
  noise; then the mean over images.

The paper applies both to naturally trained models and to models trained on low-rank
images; :func:`stability_analysis` computes everything for one model.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.

    Szegedy, Zaremba, Sutskever, Bruna, Erhan, Goodfellow, Fergus. Intriguing properties
    of neural networks. arXiv:1312.6199 (2013).
"""

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captum_rig._checks import check_images, check_int, check_real
from captum_rig._context import eval_mode
from captum_rig.robustness import (
    _check_model,
    _check_norm,
    _check_pixels,
    _logits,
    _model_device,
    pgd_attack,
)

__all__ = [
    "OperatorNorm",
    "conv2d_operator_norm",
    "layer_operator_norms",
    "lipschitz_bound",
    "MinimalDistortion",
    "minimal_distortion",
    "gaussian_minimal_distortion",
    "StabilityReport",
    "stability_analysis",
]

BAD_INPUT_SIZE = (
    "input_size must be (H, W), (C, H, W) or (N, C, H, W) with C = {channels}, got {got}"
)

# Activations with a known Lipschitz constant (the sup of |derivative|).
_ACTIVATIONS: Dict[type, Callable[[nn.Module], float]] = {
    nn.ReLU: lambda m: 1.0,
    nn.ReLU6: lambda m: 1.0,
    nn.Hardtanh: lambda m: 1.0,
    nn.Tanh: lambda m: 1.0,
    nn.Softplus: lambda m: 1.0,
    nn.Sigmoid: lambda m: 0.25,
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
    approaches ``‖A‖₂`` from below; more iterations, a closer estimate.

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
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be a torch.nn.Conv2d, got {type(conv).__name__}")
    size = tuple(int(s) for s in input_size)
    if len(size) == 2:
        size = (conv.in_channels,) + size
    if len(size) == 4:
        size = size[1:]
    if len(size) != 3 or size[0] != conv.in_channels or min(size) < 1:
        raise ValueError(BAD_INPUT_SIZE.format(channels=conv.in_channels, got=tuple(input_size)))
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


# --------------------------------------------------------------------------- layers


@dataclass
class OperatorNorm:
    """One layer call's L2 → L2 operator norm (or Lipschitz constant).

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


def _one(shape: Tuple[int, ...], spatial: int) -> Tuple[int, ...]:
    """The shape of one example: batch 1, channels and the ``spatial`` trailing dims."""
    return (1,) + tuple(shape[-(spatial + 1) :])


def _layer_norm(
    module: nn.Module, shape: Tuple[int, ...], device: torch.device, n_iter: int, seed: int
) -> Tuple[Optional[float], str]:
    """``(norm, method)`` for one module seen on inputs of ``shape``."""
    if isinstance(module, nn.Linear):
        return float(torch.linalg.matrix_norm(module.weight.detach().double(), 2)), (
            "exact: largest singular value of the weight"
        )
    if isinstance(module, nn.Conv2d):
        norm = conv2d_operator_norm(module, shape[-3:], n_iter=n_iter, seed=seed)
        return norm, f"power iteration ({n_iter} its) on the {tuple(shape[-3:])} input"
    if isinstance(module, _BATCHNORMS):
        if module.running_var is None:
            return None, "unknown: BatchNorm without running statistics uses batch statistics"
        scale = 1 / torch.sqrt(module.running_var.detach().double() + module.eps)
        if module.weight is not None:
            scale = scale * module.weight.detach().double()
        return float(scale.abs().max()), "exact (eval mode): max |γ/√(running_var + ε)|"
    if isinstance(module, _AVGPOOLS):
        spatial = int(type(module).__name__[-2])
        one = _one(shape, spatial)

        def forward(v: Tensor) -> Tensor:
            return module(v)

        adjoint = _autograd_adjoint(forward, one[1:], torch.float64, device)
        norm = _power_iteration(forward, adjoint, one[1:], n_iter, seed, torch.float64, device)
        return norm, f"power iteration ({n_iter} its) on the {one[1:]} input (linear map)"
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


@dataclass
class _Call:
    name: str
    module: nn.Module
    input: Optional[Tensor]
    in_version: int
    output: Any = None
    out_version: int = -1


def _same_tensor(a: Any, b: Any) -> bool:
    """The same data: one tensor, or views of one contiguous buffer with all its elements."""
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
        return False
    if a is b:
        return True
    return (
        a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
        and a.storage_offset() == b.storage_offset()
        and a.numel() == b.numel()
        and a.is_contiguous()
        and b.is_contiguous()
    )


def _trace(model: nn.Module, example_input: Tensor) -> Tuple[List[_Call], Optional[str]]:
    """Runs ``model`` once with hooks on every leaf module, then removes them.

    Returns the leaf calls in order and, when the model is not a plain chain, why not.
    """
    calls: List[_Call] = []
    handles = []

    def pre_hook(name: str):
        def hook(module: nn.Module, args: Tuple[Any, ...]) -> None:
            x = args[0] if len(args) == 1 and isinstance(args[0], Tensor) else None
            calls.append(_Call(name, module, x, x._version if x is not None else -1))

        return hook

    def post_hook(module: nn.Module, args: Tuple[Any, ...], output: Any) -> None:
        for call in reversed(calls):
            if call.module is module and call.out_version == -1:
                call.output = output
                call.out_version = output._version if isinstance(output, Tensor) else -2
                return

    try:
        for name, module in model.named_modules():
            if next(module.children(), None) is None:
                handles.append(module.register_forward_pre_hook(pre_hook(name or "(model)")))
                handles.append(module.register_forward_hook(post_hook))
        x = example_input.detach()
        version = x._version
        with torch.no_grad():
            output = model(x)
    finally:
        for handle in handles:
            handle.remove()

    # A plain chain: each layer gets exactly what the previous one gave, untouched.
    previous, previous_version, previous_name = x, version, "the model input"
    for call in calls:
        if call.input is None:
            return calls, f"{call.name} ({type(call.module).__name__}) takes no single tensor"
        if not _same_tensor(call.input, previous) or call.in_version != previous_version:
            return calls, (
                f"the input of {call.name} is not the output of {previous_name}: the model "
                "is not a plain chain of layers (residual connections or functional ops)"
            )
        previous, previous_version = call.output, call.out_version
        previous_name = call.name
    if not _same_tensor(output, previous) or output._version != previous_version:
        return calls, (
            f"the model output is not the output of {previous_name}: the model is not a "
            "plain chain of layers (functional ops after the last layer)"
        )
    return calls, None


def _analyse(
    model: nn.Module, example_input: Tensor, n_iter: int, seed: int
) -> Tuple[List[OperatorNorm], Optional[float], str]:
    model = _check_model(model)
    check_images(example_input, name="example_input", min_dim=1, layout="(N, ...)")
    n_iter = check_int(n_iter, name="n_iter", low=1)
    seed = check_int(seed, name="seed")
    with eval_mode(model):
        calls, broken = _trace(model, example_input)
        layers = []
        for call in calls:
            if call.input is None:
                norm, method, shape = None, "unknown: does not take one tensor", ()
            else:
                shape = tuple(call.input.shape)
                norm, method = _layer_norm(call.module, shape, call.input.device, n_iter, seed)
            layers.append(OperatorNorm(call.name, type(call.module).__name__, shape, norm, method))
    if broken is not None:
        return layers, None, f"not computed: {broken}"
    unknown = [layer.name for layer in layers if layer.norm is None]
    if unknown:
        return layers, None, f"not computed: no bound for layers {unknown}"
    bound = math.prod(layer.norm for layer in layers)
    return (
        layers,
        bound,
        (f"product of the {len(layers)} layer norms of a plain chain of layers (L2 → L2)"),
    )


def layer_operator_norms(
    model: nn.Module, example_input: Tensor, n_iter: int = 100, seed: int = 0
) -> List[OperatorNorm]:
    r"""The L2 operator norm of every layer call of one forward pass.

    Runs ``model`` once (eval mode, no grad) on ``example_input`` with forward hooks on
    every leaf module to record the input shape each layer sees, removes the hooks, and
    computes per call:

    - ``nn.Linear``: exact, the largest singular value ``torch.linalg.matrix_norm(W, 2)``.
    - ``nn.Conv2d``: :func:`conv2d_operator_norm` on the recorded input size.
    - ``nn.BatchNorm*d`` (eval mode, a diagonal affine map): ``max |γ/√(running_var + ε)|``.
    - average pooling (plain and adaptive): power iteration; it is linear (``1/k`` for
      non-overlapping ``k×k`` windows).
    - ``nn.MaxPool2d``: the bound ``√m`` with ``m`` the most windows any pixel is in,
      ``min(k, ⌊(k−1)·dilation/stride⌋ + 1)`` per dim: 1 when stride ≥ kernel.
    - activations: ReLU, ReLU6, Hardtanh, Tanh, Softplus: 1; Sigmoid: 1/4; LeakyReLU:
      ``max(1, |slope|)``; ELU: ``max(1, α)``. Identity, Flatten, Unflatten, Dropout
      (eval): 1.
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
    return _analyse(model, example_input, n_iter, seed)[0]


def lipschitz_bound(
    model: nn.Module, example_input: Tensor, n_iter: int = 100, seed: int = 0
) -> Optional[float]:
    r"""Upper bound on the model's L2 Lipschitz constant: the product of its layer norms.

    ``‖f(x) − f(y)‖₂ ≤ L ‖x − y‖₂`` with ``L = Π ‖layer‖`` (see
    :func:`layer_operator_norms`) holds when the model is a plain chain of layers:
    each leaf module, in call order, receives exactly the previous one's output (or a
    reshaped view of it) and the model returns the last one's. This is checked during
    the forward pass (tensor identity and in-place version counters). Residual networks,
    functional ops in ``forward`` (``F.relu``, ``x + skip``) or layers with no known norm
    give ``None``: a bound that ignored them would be wrong. Convolution norms come from
    power iteration, which approaches the true norm from below.

    Args:
        model (nn.Module): the model.
        example_input (Tensor): one input batch, e.g. ``images[:1]``.
        n_iter (int): power iterations for convolutions and pooling.
        seed (int): seed of the power iterations.

    Returns:
        float or None: the bound, or None when it is not computed.

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 2))
        >>> lipschitz_bound(model, torch.rand(1, 3, 2, 2)) > 0
        True

    References:
        Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Sec. 4.3.
    """
    return _analyse(model, example_input, n_iter, seed)[1]


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
    model = _check_model(model)
    _check_pixels(images, "images")
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
        y0 = _logits(model, images).argmax(1)
    index = torch.arange(n, device=images.device)
    hi = torch.full((n,), high, dtype=torch.float64, device=images.device)
    lo = torch.zeros_like(hi)
    best = perturb(images, y0, hi, index)
    with torch.no_grad():
        found = _logits(model, best).argmax(1) != y0
    hi[~found] = math.inf
    index = index[found]
    for _ in range(n_bisect):
        if index.numel() == 0:
            break
        mid = (lo[index] + hi[index]) / 2
        candidate = perturb(images[index], y0[index], mid, index)
        with torch.no_grad():
            flip = _logits(model, candidate).argmax(1) != y0[index]
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
    norm = _check_norm(norm)
    steps = check_int(steps, name="steps", low=1)
    if max_eps is None:
        max_eps = 1.0 if norm == "Linf" else math.sqrt(images[0].numel())
    max_eps = check_real(max_eps, "max_eps", strict=True)
    device = _model_device(model)

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
    device = _model_device(model)
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
        lipschitz_bound (float or None): product of the layer norms, or None.
        lipschitz_note (str): how the bound was computed, or why it was not.
        distortions (dict[str, MinimalDistortion]): by method (``"pgd_l2"``,
            ``"pgd_linf"``, ``"gaussian"``).
    """

    layers: List[OperatorNorm]
    lipschitz_bound: Optional[float]
    lipschitz_note: str
    distortions: Dict[str, MinimalDistortion]

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict (distortion summaries, no per-image values)."""
        return {
            "layers": [layer.to_dict() for layer in self.layers],
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
) -> StabilityReport:
    r"""The "Intriguing properties revisited" analysis of one model.

    Layer operator norms and the Lipschitz upper bound (:func:`layer_operator_norms`,
    :func:`lipschitz_bound`), then the average minimal distortion under PGD for each of
    ``norms`` (:func:`minimal_distortion`) and under Gaussian noise
    (:func:`gaussian_minimal_distortion`). Compare a naturally trained model with one
    trained on low-rank images by running this on both.

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
    model = _check_model(model)
    _check_pixels(images, "images")
    if isinstance(norms, str):
        norms = (norms,)
    norms = [_check_norm(norm) for norm in norms]
    if example_input is None:
        example_input = images[:1].to(_model_device(model))
    layers, bound, note = _analyse(model, example_input, n_iter, seed)
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
    return StabilityReport(layers, bound, note, distortions)
