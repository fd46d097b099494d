"""The Lipschitz upper bound of a model, composed along its graph, and its report.

:func:`lipschitz_bound` gives the number; :func:`lipschitz_analysis` also the layers
and the residual and dense blocks it was composed from, and how every norm was found.

References:
    Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Sec. 4.3.

    Sedghi, Gupta, Long. The Singular Values of Convolutional Layers. ICLR 2019.
"""

import math
from dataclasses import dataclass, field
from typing import List, Optional

from torch import Tensor, nn

from captum_rig._context import eval_mode
from captum_rig._tables import Record, markdown_table, number
from captum_rig.stability._graph import (
    block_names,
    block_norms,
    graph_bound,
    moving_nodes,
    unwrap,
)
from captum_rig.stability._options import Options, check_analysis_args
from captum_rig.stability.layers import OperatorNorm
from captum_rig.stability.local import local_lipschitz

__all__ = ["LipschitzReport", "lipschitz_analysis", "lipschitz_bound"]


@dataclass
class LipschitzReport(Record):
    """The Lipschitz constant of a model, bracketed: how it was obtained, layers and blocks.

    Attributes:
        bound (float or None): with ``certified`` methods an upper bound on
            ``‖f(x) − f(y)‖₂ / ‖x − y‖₂``; with power iteration an estimate of that
            bound (each layer's norm approached from below); None when not computed.
        note (str): how the bound was composed, or which operation stopped it.
        method (str): how convolution and pooling norms were computed; starts with
            ``"certified"`` or ``"estimate"``.
        layers (list[OperatorNorm]): every layer call of the traced graph, in order.
        blocks (list[OperatorNorm]): every residual or dense block (a module whose
            forward adds or concatenates), with the bound of the block alone.
        lower (float or None): :func:`~captum_rig.stability.local_lipschitz` at the
            example input, a lower bound on the Lipschitz constant (None: not computed).
    """

    bound: Optional[float]
    note: str
    method: str
    layers: List[OperatorNorm] = field(default_factory=list)
    blocks: List[OperatorNorm] = field(default_factory=list)
    lower: Optional[float] = None

    @property
    def certified(self) -> bool:
        """Whether ``bound`` is a certified upper bound (not an estimate)."""
        return self.method.startswith("certified")

    def title(self) -> str:
        """One line: the bound (or estimate) and the lower bound beside it."""
        kind = "upper bound" if self.certified else "estimate of the upper bound (not a bound)"
        text = f"Lipschitz {kind} (L2): {number(self.bound)} ({self.note}; {self.method})."
        if self.lower is not None:
            text += f" Lower bound (input-Jacobian norm at the example): {number(self.lower)}."
        return text

    def factors(self) -> List[OperatorNorm]:
        """The layers outside every block and the blocks, in call order: the factors whose
        product is the bound when the model is a chain of them."""
        rows: List[OperatorNorm] = []
        blocks = {b.name: b for b in self.blocks}
        for layer in self.layers:
            inside = next((b for b in blocks if layer.name.startswith(b + ".")), None)
            if inside is None:
                rows.append(layer)
            elif all(r is not blocks[inside] for r in rows):
                rows.append(blocks[inside])
        return rows + [b for b in self.blocks if all(r is not b for r in rows)]

    def to_markdown(self) -> str:
        """The bound, then a Markdown table of its factors (Szegedy et al.'s Table 5):
        per layer (and block) its norm, its share ``|ln norm| / Σ|ln norm|`` of the
        product's orders of magnitude, and the running product."""
        rows = self.factors()
        logs = [abs(math.log(r.norm)) if r.norm else math.nan for r in rows]
        total = sum(logs) if all(v == v for v in logs) else 0.0
        table, running = [], 1.0
        for row, log in zip(rows, logs):
            running = running * row.norm if row.norm is not None else math.nan
            share = f"{100 * log / total:.1f}%" if total else ""
            shape = "×".join(str(s) for s in row.input_shape)
            table.append([row.name, row.kind, shape, number(row.norm), share, number(running)])
        norm = "certified norm" if self.certified else "estimated norm"
        header = ["layer or block", "type", "input shape", norm, "share", "running product"]
        return self.title() + "\n\n" + markdown_table(header, table, align="lllrrr")


def lipschitz_analysis(
    model: nn.Module,
    example_input: Tensor,
    n_iter: int = 100,
    seed: int = 0,
    certified: bool = True,
    gram_iter: Optional[int] = None,
    blocks: bool = True,
    tol: float = 1e-6,
    lower: bool = True,
) -> LipschitzReport:
    r"""Upper bound on a model's L2 Lipschitz constant along its graph, with its parts.

    The model is traced with ``torch.fx`` (``torch.nn`` layers and the known
    normalization layers kept whole; anything else traced into, so its behaviour counts,
    not its name) and run once on a copy of ``example_input`` (eval mode, no grad; the
    note says so when the model was training). Node by node, a constant ``L`` of the map
    from the input to that node is composed:

    - a layer: ``‖layer‖ · L_in`` (:func:`layer_operator_norms` lists the norms);
    - ``x + y``, ``x − y`` (residual connections): ``L_x + L_y``, an operand broadcast to
      ``k`` copies of each entry counts ``√k`` times;
    - ``torch.cat`` / ``torch.stack`` (dense connections) and tuple outputs:
      ``√(L_a² + L_b² + …)``;
    - activations, reshapes, ``chunk``/``split``, dropout (eval; ``1/(1 − p)`` for a
      call with ``training=True``), slicing: their constants (one table,
      :data:`RULES`, for module and functional forms); pooling and ``F.interpolate``
      (non-negative modes) as linear maps; ``mean`` / ``sum`` of ``m`` entries:
      ``1/√m`` / ``√m``; ``x · c`` and ``x / c`` with a constant ``c``: ``max|c|``,
      ``1/min|c|``; anything computed from constants only: 0;
    - an in-place operation: every tensor it changed takes the new constant.

    Anything else that depends on the input stops the bound (``bound=None``, ``note``
    names the operation): a product of two activations, an unknown layer or function,
    an integer or boolean tensor computed from the input (thresholds, ``argmax``,
    rounding: discontinuous), a module with forward hooks (invisible to ``torch.fx``),
    a TorchScript model. ``DataParallel`` wrappers are looked through. With
    ``blocks=True`` each residual or dense block (a module whose own forward adds or
    concatenates moving tensors: a ResNet ``BasicBlock``, a DenseNet ``_DenseBlock``, a
    MobileNetV2 ``InvertedResidual``) gets its own bound, from the input it receives.

    By default (``certified=True``) every layer norm is an upper bound (convolutions:
    :func:`conv2d_norm_bound`, tight to about 10⁻⁶; the Schur test on pooling), so ``bound``
    is a certified upper bound. ``certified=False`` uses power iteration to ``tol``:
    each norm is approached from below, so the product is an estimate of the bound
    (tight in practice, not certified; ``method`` starts with ``"estimate"``). ``lower``
    is a lower bound beside it (:func:`local_lipschitz` at the example).

    Args:
        model (nn.Module): the model; training flags are restored and no hooks are left.
        example_input (Tensor): one input batch, e.g. ``images[:1]``; sets the input size
            each convolution sees.
        n_iter (int): most power iterations per layer when not ``certified``.
        seed (int): seed of the power iterations.
        certified (bool): certified upper bounds (the default); ``False``: power
            iteration, an estimate of the bound (labelled so in ``method``).
        gram_iter: deprecated and ignored (certified norms no longer use Gram
            iteration); passing it warns.
        blocks (bool): also the bound of every residual or dense block.
        tol (float): relative change at which power iteration stops.
        lower (bool): also :func:`local_lipschitz` at ``example_input`` (a lower bound,
            10 power iterations).

    Returns:
        LipschitzReport: ``bound``, ``note``, ``method``, ``layers``, ``blocks``,
        ``lower``.

    Examples:
        >>> import torchvision
        >>> net = torchvision.models.resnet18(weights=None, num_classes=4)
        >>> report = lipschitz_analysis(net, torch.rand(1, 3, 16, 16))
        >>> report.certified, len(report.blocks), 0 < report.lower <= report.bound
        (True, 8, True)

    References:
        Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Sec. 4.3.
        Sedghi et al. ICLR 2019 (convolutions per frequency).
    """
    opts = check_analysis_args(model, example_input, n_iter, seed, certified, tol, gram_iter)
    report = lipschitz_report(model, example_input, opts, blocks)
    if lower:
        report.lower = _lower(model, example_input, seed)
    return report


def _lower(model: nn.Module, example_input: Tensor, seed: int) -> Optional[float]:
    """local_lipschitz at the example, or None where the model cannot be differentiated."""
    try:
        return local_lipschitz(model, example_input, n_iter=10, tol=1e-3, seed=seed)
    except RuntimeError:
        return None


def lipschitz_report(
    model: nn.Module, example_input: Tensor, opts: Options, blocks: bool
) -> LipschitzReport:
    """:func:`lipschitz_analysis` with checked arguments (no lower bound)."""
    model = unwrap(model)
    mode = "; in eval mode (the model was in training mode)" if model.training else ""
    with eval_mode(model):
        bound, note, layers, graph = graph_bound(model, example_input, opts)
        names = []
        if blocks and graph is not None:
            names = block_names(graph, moving_nodes(graph))
        block_list = block_norms(model, example_input, names, opts) if names else []
    return LipschitzReport(bound, note + mode, opts.describe(), layers, block_list)


def lipschitz_bound(
    model: nn.Module,
    example_input: Tensor,
    n_iter: int = 100,
    seed: int = 0,
    certified: bool = True,
    gram_iter: Optional[int] = None,
    tol: float = 1e-6,
) -> Optional[float]:
    r"""Certified upper bound on the model's L2 Lipschitz constant, along its graph.

    ``‖f(x) − f(y)‖₂ ≤ L ‖x − y‖₂`` for every pair of inputs of ``example_input``'s size
    (``certified=True``, the default; ``certified=False`` gives an estimate of that
    bound, from per-layer power iteration, which may lie below it).
    Layers multiply, residual additions add (``L_a + L_b``), concatenations combine as
    ``√(L_a² + L_b²)``; see :func:`lipschitz_analysis` for the rules, the per-block
    norms and the note that says why the bound is None when an operation has no known
    constant. Works through torchvision's ResNet, VGG, DenseNet and MobileNetV2.

    Args:
        model (nn.Module): the model.
        example_input (Tensor): one input batch, e.g. ``images[:1]``.
        n_iter (int): most power iterations per layer when not ``certified``.
        seed (int): seed of the power iterations.
        certified (bool): certified per-layer upper bounds (Cholesky-checked Gram
            matrices for convolutions, Schur test for pooling); ``False``: power iteration, which
            approaches each norm from below (an estimate).
        gram_iter: deprecated and ignored (certified norms no longer use Gram
            iteration); passing it warns.
        tol (float): relative change at which power iteration stops.

    Returns:
        float or None: the bound (or estimate), or None when it is not computed.

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 2))
        >>> lipschitz_bound(model, torch.rand(1, 3, 2, 2)) > 0
        True

    References:
        Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Sec. 4.3.
    """
    return lipschitz_analysis(
        model, example_input, n_iter, seed, certified, gram_iter, blocks=False, tol=tol,
        lower=False,
    ).bound  # fmt: skip
