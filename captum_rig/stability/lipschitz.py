"""The Lipschitz upper bound of a model, composed along its graph, and its report.

:func:`lipschitz_bound` gives the number; :func:`lipschitz_analysis` also the layers
and the residual and dense blocks it was composed from, and how every norm was found.

References:
    Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Sec. 4.3.

    Delattre, Barthélemy, Araujo, Allauzen. Efficient Bound of Lipschitz Constant for
    Convolutional Layers by Gram Iteration. ICML 2023, arXiv:2305.16173.
"""

from dataclasses import dataclass, field
from typing import List, Optional

from torch import Tensor, nn

from captum_rig._context import eval_mode
from captum_rig._tables import Record, markdown_table, number
from captum_rig.stability._graph import block_names, block_norms, graph_bound, moving_nodes
from captum_rig.stability.layers import OperatorNorm, Options, check_analysis_args

__all__ = ["LipschitzReport", "lipschitz_analysis", "lipschitz_bound"]


@dataclass
class LipschitzReport(Record):
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

    def to_markdown(self) -> str:
        """The bound, then a Markdown table of the blocks (or of the layers if none)."""
        title = f"Lipschitz upper bound (L2): {number(self.bound)} ({self.note}; {self.method})."
        rows = [
            [row.name, row.kind, "×".join(str(s) for s in row.input_shape), number(row.norm)]
            for row in self.blocks or self.layers
        ]
        header = ["block" if self.blocks else "layer", "type", "input shape", "bound"]
        return title + "\n\n" + markdown_table(header, rows, align="lllr")


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
    opts = check_analysis_args(model, example_input, n_iter, seed, gram_iter, certified)
    return lipschitz_report(model, example_input, opts, blocks)


def lipschitz_report(
    model: nn.Module, example_input: Tensor, opts: Options, blocks: bool
) -> LipschitzReport:
    """:func:`lipschitz_analysis` with checked arguments."""
    with eval_mode(model):
        bound, note, layers, graph = graph_bound(model, example_input, opts)
        names = []
        if blocks and graph is not None:
            names = block_names(graph, moving_nodes(graph))
        block_list = block_norms(model, example_input, names, opts) if names else []
    return LipschitzReport(bound, note, opts.describe(), layers, block_list)


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
