"""The operator norm of every layer call of one forward pass (Szegedy et al.'s Table 5).

Forward pre-hooks record the input each leaf module sees; :data:`~captum_rig.stability.RULES`
gives its norm, and a leaf without a rule is traced like a whole model.

References:
    Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Sec. 4.3.
"""

from typing import Any, List, Optional, Tuple

import torch
from torch import Tensor, nn

from captum_rig._context import eval_mode
from captum_rig.stability._graph import graph_bound
from captum_rig.stability._options import Options, check_analysis_args
from captum_rig.stability.layers import OperatorNorm, layer_norm

__all__ = ["layer_operator_norms", "layer_list"]


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
            model(example_input.detach().clone())  # a copy: it may be changed in place
    finally:
        for handle in handles:
            handle.remove()
    return calls


def layer_operator_norms(
    model: nn.Module,
    example_input: Tensor,
    n_iter: int = 100,
    seed: int = 0,
    certified: bool = True,
    gram_iter: Optional[int] = None,
    tol: float = 1e-6,
) -> List[OperatorNorm]:
    r"""The L2 operator norm of every layer call of one forward pass.

    Runs ``model`` once (eval mode, no grad) on ``example_input`` with forward hooks on
    every leaf module to record the input shape each layer sees, removes the hooks, and
    computes per call (the rules of :data:`RULES`):

    - ``nn.Linear``: the largest singular value of the weight, certified (largest
      eigenvalue of its Gram matrix, checked by a Cholesky factorization), or with
      ``certified=False`` ``torch.linalg.matrix_norm(W, 2)``.
    - ``nn.Conv2d``: :func:`conv2d_norm_bound` on the recorded input size (a certified
      upper bound, tight to about 10⁻⁶; the default), or with ``certified=False``
      :func:`conv2d_operator_norm` (power iteration, an estimate from below).
    - ``nn.BatchNorm*d`` (eval mode, a diagonal affine map): ``max |γ/√(running_var + ε)|``.
    - average pooling (plain and adaptive) and ``nn.Upsample`` (nearest, (bi/tri)linear):
      linear maps, by power iteration or (``certified``) the Schur test
      ``√(max row sum · max column sum)``; ``1/k`` for non-overlapping ``k×k`` windows.
    - ``nn.MaxPool2d``: the bound ``√m`` with ``m`` the most windows any pixel is in,
      ``min(k, ⌊(k−1)·dilation/stride⌋ + 1)`` per dim: 1 when stride ≥ kernel; likewise
      ``nn.AdaptiveMaxPool2d``.
    - activations: ReLU, ReLU6, Hardtanh, Tanh, Softplus: 1; Sigmoid: 1/4; Hardsigmoid:
      1/6; Hardswish: 1.5; GELU: 1.129; SiLU: 1.1; LeakyReLU: ``max(1, |slope|)``; ELU:
      ``max(1, |α|)``. Identity, Flatten, Unflatten, Dropout (eval): 1.
    - :class:`captum_rig.models.Normalize` and torchvision's ``Normalize``
      (``(x − mean)/std``): ``max 1/|std|``.
    - any other leaf module: the bound of its traced graph
      (:func:`~captum_rig.stability.lipschitz_bound`), or ``norm=None``.

    Biases do not matter: the Lipschitz constant of an affine map is the norm of its
    linear part. Modules with children are not hooked: only what leaves compute counts.

    Args:
        model (nn.Module): the model; training flags are restored afterwards.
        example_input (Tensor): one input batch, e.g. ``images[:1]``.
        n_iter (int): most power iterations per layer when not ``certified``.
        seed (int): seed of the power iterations' random start.
        certified (bool): certified upper bounds (the default); ``False``: power
            iteration, estimates from below.
        gram_iter: deprecated and ignored (certified norms no longer use Gram
            iteration); passing it warns.
        tol (float): relative change at which power iteration stops.

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
    opts = check_analysis_args(model, example_input, n_iter, seed, certified, tol, gram_iter)
    return layer_list(model, example_input, opts)


def layer_list(model: nn.Module, example_input: Tensor, opts: Options) -> List[OperatorNorm]:
    """:func:`layer_operator_norms` with checked arguments."""
    layers = []
    with eval_mode(model):
        for name, module, x in _leaf_calls(model, example_input):
            if x is None:
                norm, method, shape = None, "unknown: does not take one tensor", ()
            else:
                shape = tuple(x.shape)
                norm, method = layer_norm(module, shape, x.device, opts)
                if norm is None:  # an unknown leaf: its behaviour, traced
                    norm, traced, _, graph = graph_bound(module, x, opts)
                    method = traced if graph is not None else method
            layers.append(OperatorNorm(name, type(module).__name__, shape, norm, method))
    return layers
