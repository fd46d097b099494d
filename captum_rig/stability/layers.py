"""Per-layer L2 operator norms and Lipschitz constants: one table of rules.

:data:`RULES` lists every kind of layer with a known constant, each with its module
classes, its ``torch`` / ``torch.nn.functional`` functions and its ``Tensor`` methods
(``nn.ReLU``, ``F.relu``, ``torch.relu``, ``x.relu()``). :func:`layer_operator_norms`
reads it for the modules of a model; the graph interpreter behind
:func:`~captum_rig.stability.lipschitz_bound` reads it for the functions and methods, so
a constant is written once.

References:
    Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Sec. 4.3.
"""

import math
import operator
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captum_rig._tables import Record
from captum_rig.stability._linalg import (
    autograd_adjoint,
    certified_norm,
    gram_matrix,
    power_iteration,
    schur_bound,
)
from captum_rig.stability._options import NormMethod, Options
from captum_rig.stability.conv import conv2d_norm_bound, conv2d_operator_norm

__all__ = ["Rule", "RULES", "OperatorNorm"]

# Rule kinds: how a rule's norm is found (see Rule.kind).
ACTIVATION, ISOMETRY, AVERAGE, RESAMPLE = "activation", "isometry", "average", "resample"
REDUCE = "reduce"
MAX_POOL, ADAPTIVE_MAX_POOL = "max_pool", "adaptive_max_pool"
LINEAR, CONV, BATCH_NORM = "linear", "conv", "batch_norm"
# Interpolation modes whose weights are non-negative (so the Schur test applies).
POSITIVE_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "trilinear", "area")
# Weights up to this many entries get an exact SVD; larger ones an iteration.
_EXACT_SVD_ENTRIES = 1 << 22
# Pooling maps whose one-channel matrix has at most this many entries get a bound from it.
_EXPLICIT_ENTRIES = 1 << 18


@dataclass(frozen=True)
class Rule:
    """One kind of layer with a known L2 Lipschitz constant, in every spelling.

    Attributes:
        name (str): the kind's name.
        kind (str): how its constant is found: ``"activation"`` and ``"isometry"``
            (``constant``), ``"average"`` and ``"resample"`` (a non-negative linear map,
            measured on the input it sees), ``"max_pool"`` and ``"adaptive_max_pool"``
            (``√(windows per pixel)``), ``"linear"``, ``"conv"``, ``"batch_norm"`` (from
            the weights).
        modules (tuple of type): its ``nn.Module`` classes (activations match the
            exact class, the others subclasses too).
        functions (tuple of callables): its ``torch`` and ``torch.nn.functional`` forms.
        methods (tuple of str): its ``Tensor`` methods.
        constant (float): the constant of an activation or isometry.
        parameter (str, optional): the argument the constant depends on (a module
            attribute; in a function its keyword or second positional argument): the
            constant is then ``max(constant, |value|)``.
        default (float): that argument's default in the functions.
    """

    name: str
    kind: str
    modules: Tuple[type, ...] = ()
    functions: Tuple[Callable[..., Any], ...] = ()
    methods: Tuple[str, ...] = ()
    constant: float = 1.0
    parameter: Optional[str] = None
    default: float = 0.0

    def matches(self, module: nn.Module) -> bool:
        """Whether ``module`` is one of this rule's layers."""
        if self.kind == ACTIVATION:  # a subclass may change forward
            return type(module) in self.modules
        return isinstance(module, self.modules)

    def constant_for(self, value: Any = None) -> float:
        """The constant, given the parameter's value (ignored without a parameter)."""
        if self.parameter is None:
            return self.constant
        return max(self.constant, abs(float(value)))


_ACT = "Lipschitz constant of the activation"

try:  # torchvision's stochastic depth: the identity in eval mode, else as dropout
    from torchvision.ops import StochasticDepth, stochastic_depth

    _STOCHASTIC_DEPTH: Tuple["Rule", ...] = (
        Rule("stochastic_depth", ISOMETRY, (StochasticDepth,), (stochastic_depth,)),
    )
except ImportError:  # pragma: no cover - torchvision is optional
    _STOCHASTIC_DEPTH = ()

# fmt: off
RULES: Tuple[Rule, ...] = (
    Rule("linear", LINEAR, (nn.Linear,)),
    Rule("conv2d", CONV, (nn.Conv2d,)),
    Rule("batch_norm", BATCH_NORM, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)),
    Rule("avg_pool", AVERAGE,
         (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
          nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d),
         (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
          F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)),
    # a mean of m entries per output: 1/√m; a sum: √m (the exponent of m)
    Rule("mean", REDUCE, (), (torch.mean,), ("mean",), constant=-0.5),
    Rule("sum", REDUCE, (), (torch.sum,), ("sum",), constant=0.5),
    Rule("upsample", RESAMPLE, (nn.Upsample,), (F.interpolate,)),
    Rule("max_pool2d", MAX_POOL, (nn.MaxPool2d,), (F.max_pool2d,)),
    Rule("adaptive_max_pool2d", ADAPTIVE_MAX_POOL, (nn.AdaptiveMaxPool2d,),
         (F.adaptive_max_pool2d,)),
    Rule("relu", ACTIVATION, (nn.ReLU,), (F.relu, torch.relu, torch.relu_), ("relu", "relu_")),
    Rule("relu6", ACTIVATION, (nn.ReLU6,), (F.relu6,)),
    Rule("hardtanh", ACTIVATION, (nn.Hardtanh,), (F.hardtanh,)),
    Rule("tanh", ACTIVATION, (nn.Tanh,), (torch.tanh, F.tanh), ("tanh", "tanh_")),
    Rule("softplus", ACTIVATION, (nn.Softplus,), (F.softplus,)),
    Rule("sigmoid", ACTIVATION, (nn.Sigmoid,), (torch.sigmoid, F.sigmoid),
         ("sigmoid", "sigmoid_"), constant=0.25),
    Rule("hardsigmoid", ACTIVATION, (nn.Hardsigmoid,), (F.hardsigmoid,), constant=1 / 6),
    Rule("hardswish", ACTIVATION, (nn.Hardswish,), (F.hardswish,), constant=1.5),
    # max of Φ(x) + xφ(x), 1.1289 at x = √2
    Rule("gelu", ACTIVATION, (nn.GELU,), (F.gelu,), constant=1.129),
    # max of σ(x)(1 + x(1 − σ(x))), 1.0998
    Rule("silu", ACTIVATION, (nn.SiLU,), (F.silu,), constant=1.1),
    # slopes 1 and the parameter
    Rule("leaky_relu", ACTIVATION, (nn.LeakyReLU,), (F.leaky_relu,),
         parameter="negative_slope", default=0.01),
    Rule("elu", ACTIVATION, (nn.ELU,), (F.elu,), parameter="alpha", default=1.0),
    # reshapes, negation and copies move no entry closer or further
    Rule("reshape", ISOMETRY, (nn.Identity, nn.Flatten, nn.Unflatten),
         (torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.transpose,
          torch.permute, torch.t, torch.clone, torch.neg, operator.neg, operator.pos,
          torch.chunk, torch.split, torch.unbind, torch.tensor_split),
         ("flatten", "view", "reshape", "permute", "transpose", "contiguous", "squeeze",
          "unsqueeze", "clone", "neg", "t", "float", "double", "to", "chunk", "split",
          "unbind", "tensor_split")),
    # dropout is the identity in eval mode; a call with training=True scales the kept
    # entries by 1/(1 − p) (alpha dropout: refused)
    Rule("dropout", ISOMETRY,
         (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
          nn.FeatureAlphaDropout),
         (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
          F.feature_alpha_dropout)),
    *_STOCHASTIC_DEPTH,
)
# fmt: on
"""Every layer kind with a known constant: the one table the analysis reads."""

_BY_FUNCTION = {f: rule for rule in RULES for f in rule.functions}
_BY_METHOD = {m: rule for rule in RULES for m in rule.methods}


def module_rule(module: nn.Module) -> Optional[Rule]:
    """The rule of a module, or None."""
    return next((rule for rule in RULES if rule.matches(module)), None)


def call_rule(target: Any, method: bool) -> Optional[Rule]:
    """The rule of a ``torch.fx`` call: a function, or (``method``) a Tensor method name."""
    try:
        return _BY_METHOD.get(target) if method else _BY_FUNCTION.get(target)
    except TypeError:  # an unhashable target
        return None


@dataclass
class OperatorNorm(Record):
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


def linear_norm(
    forward: Callable[[Tensor], Tensor], example: Tuple[int, ...], device, opts: Options
) -> Tuple[float, str]:
    """Norm of a non-negative linear map acting on each channel alike (pooling,
    resampling) on one ``example``-shaped input ``(C, ...)``."""
    if opts.certified:
        schur = schur_bound(forward, example, device)
        explicit = _explicit_channel_bound(forward, example, device)
        if explicit < schur * (1 - 1e-9):  # the matrix only where it is tighter
            return explicit, f"certified: one channel's matrix on the {example} input"
        return schur, (
            f"certified: Schur test √(max row sum · max column sum) on the {example} input"
        )
    adjoint = autograd_adjoint(forward, example, torch.float64, device)
    norm = power_iteration(forward, adjoint, example, opts.n_iter, opts.seed, torch.float64,
                           device, tol=opts.tol)  # fmt: skip
    return norm, f"estimate: power iteration on the {example} input (linear map)"


def _explicit_channel_bound(forward, example: Tuple[int, ...], device) -> float:
    """The certified norm of one channel's matrix when it is small (else ``inf``): the map
    acts on every channel alike, so its norm is that of one channel's map. Near the
    borders of small inputs the Schur test is loose; the matrix is then small."""
    channel = (1,) + tuple(example[1:])
    n_in = math.prod(channel)
    with torch.no_grad():
        n_out = forward(torch.zeros((1,) + channel, dtype=torch.float64, device=device)).numel()
        if n_in * n_out > _EXPLICIT_ENTRIES:
            return math.inf
        basis = torch.eye(n_in, dtype=torch.float64, device=device).view(n_in, *channel)
        matrix = forward(basis).reshape(n_in, n_out)
    gram, error = gram_matrix(matrix)
    return certified_norm([gram[None]], error)


def _linear_layer_norm(module: nn.Linear, shape, device, opts: Options) -> NormMethod:
    """An ``nn.Linear`` weight's norm: certified, or an SVD unless the matrix is large."""
    weight = module.weight.detach().double()
    if opts.certified:
        gram, error = gram_matrix(weight)
        return certified_norm([gram[None]], error), (
            "certified: the weight's Gram matrix, Cholesky test"
        )
    if weight.numel() <= _EXACT_SVD_ENTRIES:
        return float(torch.linalg.matrix_norm(weight, 2)), (
            "exact (to rounding): largest singular value of the weight"
        )
    norm = power_iteration(
        lambda v: v @ weight.T, lambda u: u @ weight, (weight.shape[1],), opts.n_iter,
        opts.seed, torch.float64, device, tol=opts.tol,
    )  # fmt: skip
    return norm, "estimate: power iteration on the weight"


def _conv_norm(module: nn.Conv2d, shape, device, opts: Options) -> NormMethod:
    size = tuple(shape[-3:])
    if opts.certified:
        return conv2d_norm_bound(module, size), (
            f"certified: per-frequency Gram matrices, Cholesky test, on the {size} input"
        )
    norm = conv2d_operator_norm(module, size, n_iter=opts.n_iter, seed=opts.seed, tol=opts.tol)
    return norm, f"estimate: power iteration on the {size} input"


def _batch_norm(module: nn.Module, shape, device, opts: Options) -> NormMethod:
    if module.running_var is None:
        return None, "unknown: BatchNorm without running statistics uses batch statistics"
    scale = 1 / torch.sqrt(module.running_var.detach().double() + module.eps)
    if module.weight is not None:
        scale = scale * module.weight.detach().double()
    return float(scale.abs().max()), "exact (eval mode): max |γ/√(running_var + ε)|"


def _average_norm(module: nn.Module, shape, device, opts: Options) -> NormMethod:
    # one example: channels and the pooled dims (the digit in the class name)
    spatial = int(type(module).__name__[-2])
    return linear_norm(module, tuple(shape[-(spatial + 1) :]), device, opts)


def _resample_norm(module: nn.Module, shape, device, opts: Options) -> Optional[NormMethod]:
    if module.mode not in POSITIVE_MODES:
        return None
    return linear_norm(module, tuple(shape[1:]), device, opts)


def _max_pool_norm(module: nn.Module, shape, device, opts: Options) -> Optional[NormMethod]:
    if module.return_indices:
        return None
    windows = 1
    for d in range(2):
        k = _pair(module.kernel_size)[d]
        s = _pair(module.stride)[d]
        dil = _pair(module.dilation)[d]
        windows *= min(k, (k - 1) * dil // s + 1)
    return math.sqrt(windows), f"bound: √(windows per pixel) = √{windows} (1 when stride ≥ kernel)"


def _adaptive_max_pool_norm(module: nn.Module, shape, device, opts) -> Optional[NormMethod]:
    if module.return_indices:
        return None
    out = _pair(module.output_size)
    windows = math.prod(_adaptive_windows(shape[-2 + d], out[d] or shape[-2 + d]) for d in range(2))
    return math.sqrt(windows), f"bound: √(windows per pixel) = √{windows}"


def _adaptive_windows(size: int, out: int) -> int:
    """Most adaptive-pooling windows any of ``size`` positions lies in."""
    counts = [0] * size
    for i in range(out):
        for p in range((i * size) // out, -((-(i + 1) * size) // out)):
            counts[p] += 1
    return max(counts)


def _pair(value: Any) -> Tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


_MODULE_NORMS: Dict[str, Callable[..., Optional[NormMethod]]] = {
    LINEAR: _linear_layer_norm,
    CONV: _conv_norm,
    BATCH_NORM: _batch_norm,
    AVERAGE: _average_norm,
    RESAMPLE: _resample_norm,
    MAX_POOL: _max_pool_norm,
    ADAPTIVE_MAX_POOL: _adaptive_max_pool_norm,
}


def module_norm(
    module: nn.Module, shape: Tuple[int, ...], device: torch.device, opts: Options
) -> NormMethod:
    """``(norm, method)`` of one module seen on inputs of ``shape`` (not cached)."""
    rule = module_rule(module)
    if rule is not None:
        if rule.kind == ACTIVATION:
            value = getattr(module, rule.parameter) if rule.parameter else None
            return rule.constant_for(value), _ACT
        if rule.kind == ISOMETRY:
            return rule.constant, "isometry in eval mode"
        found = _MODULE_NORMS[rule.kind](module, shape, device, opts)
        if found is not None:
            return found
    stats = normalize_stats(module)
    if stats is not None:
        return float((1 / stats.abs()).max()), "normalization (x - mean) / std: max 1/|std|"
    return None, "unknown layer type: no bound"


def layer_norm(
    module: nn.Module, shape: Tuple[int, ...], device: torch.device, opts: Options
) -> NormMethod:
    """``(norm, method)`` for one module seen on inputs of ``shape``, cached per shape."""
    key = (id(module), tuple(shape[1:]))
    if key not in opts.cache:
        opts.cache[key] = module_norm(module, shape, device, opts)
    return opts.cache[key]


def _normalize_classes() -> Tuple[type, ...]:
    """The ``(x − mean) / std`` layers known by their class (their checks do not trace)."""
    from captum_rig.models import Normalize

    try:
        from torchvision.transforms import Normalize as TorchvisionNormalize
    except ImportError:  # pragma: no cover - torchvision is optional
        return (Normalize,)
    return (Normalize, TorchvisionNormalize)


def normalize_stats(module: nn.Module) -> Optional[Tensor]:
    """``std`` of a ``(x - mean) / std`` layer: :class:`captum_rig.models.Normalize` or
    torchvision's ``Normalize`` exactly (a subclass or a look-alike is traced into, so its
    behaviour, not its name, decides)."""
    if type(module) not in _normalize_classes() or list(module.parameters()):
        return None
    try:
        std = torch.as_tensor(module.std, dtype=torch.float64).cpu()
        torch.as_tensor(module.mean, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return None
    return std if std.numel() and bool((std != 0).all()) else None
