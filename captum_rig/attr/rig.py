"""Rank Integrated Gradients: attribution along the path of low-rank images.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516, Sec. 6, Eq. (3).
"""

import typing
from typing import Callable, List, Literal, Optional, Tuple, Union

from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor

from captum_rig._captum import TargetType, TensorOrTupleOfTensorsGeneric
from captum_rig.attr._guards import attribute_checks
from captum_rig.attr._idgi import idgi_path_sum, match_nodes
from captum_rig.attr._path import (
    attribution_result,
    cell_sums,
    example_bytes,
    format_inputs,
    input_gradients,
    path_gradients,
    path_sum,
)
from captum_rig.attr.rank_path import (
    PAPER,
    BaselineType,
    RankNodes,
    check_method,
    rank_nodes,
)

__all__ = ["RankIntegratedGradients", "RIG"]

CHANNEL_REDUCTIONS = (None, "max")


class RankIntegratedGradients(GradientAttribution):
    r"""Rank Integrated Gradients (RIG): gradients averaged over the low-rank images.

    For an image ``x`` of width ``w = min(H, W)``, a baseline ``b`` (zeros by default) and
    the rank-k images ``x_k = b + low_rank(x - b, k)`` (see :func:`captum_rig.low_rank`):

    - ``method="paper"`` is Eq. (3) of the paper, per channel:
      ``RIG(x) = Σ_{k=1}^{w} (w - k)/w · ∂F(x_k)/∂x_k``, same shape as the input;
      ``channel_reduction="max"`` takes each rank's gradient's maximum over channels
      before the weighted sum, the paper's exact form, shape ``(N, 1, H, W)``. Low ranks
      weigh most: the map shows what the model looks at in the coarse structure of the
      image.
    - ``method`` set to any Captum approximation method (``"gausslegendre"``,
      ``"riemann_trapezoid"``, ...) integrates gradients along the continuous rank path
      ``x(t)``, ``t ∈ [0, w]``, from ``x(0) = b`` through every ``x(k) = x_k`` (linear in
      between) to ``x(w) = x``. This variant is complete: the attributions of an example
      sum to ``F(x) - F(b)`` up to the quadrature error, which
      ``return_convergence_delta`` reports.

    One SVD per input gives every rank image; the images are streamed through the model
    in chunks of ``internal_batch_size`` examples.

    Args:
        forward_func (Callable): the model, or any function returning a tensor of
            outputs; it should contain its own input normalization, because ranks are
            taken in pixel space.
        multiply_by_inputs (bool): for ``method="paper"`` only: if True, each rank's
            gradient is multiplied by ``x - b`` (the input, for the zero baseline) before
            the (optional) channel reduction, a "global" attribution like gradient ×
            input. The path methods always multiply by the path's velocity, which is
            what makes them complete.

    Examples:
        >>> from captum.testing.helpers.basic_models import BasicModel_ConvNet_One_Conv
        >>> model = BasicModel_ConvNet_One_Conv()
        >>> rig = RankIntegratedGradients(model)
        >>> rig.attribute(torch.rand(2, 1, 4, 4), target=0).shape
        torch.Size([2, 1, 4, 4])

    References:
        Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
        arXiv:2012.03516.
    """

    def __init__(self, forward_func: Callable, multiply_by_inputs: bool = False) -> None:
        GradientAttribution.__init__(self, forward_func)
        self._multiply_by_inputs = multiply_by_inputs

    @typing.overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: Optional[int] = None,
        method: str = PAPER,
        channel_reduction: Optional[str] = None,
        internal_batch_size: Optional[int] = None,
        *,
        return_convergence_delta: Literal[True],
        baselines: BaselineType = None,
        idgi: bool = False,
    ) -> Tuple[TensorOrTupleOfTensorsGeneric, Tensor]: ...

    @typing.overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: Optional[int] = None,
        method: str = PAPER,
        channel_reduction: Optional[str] = None,
        internal_batch_size: Optional[int] = None,
        return_convergence_delta: Literal[False] = False,
        *,
        baselines: BaselineType = None,
        idgi: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric: ...

    @log_usage()
    @attribute_checks("RankIntegratedGradients")
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: Optional[int] = None,
        method: str = PAPER,
        channel_reduction: Optional[str] = None,
        internal_batch_size: Optional[int] = None,
        return_convergence_delta: bool = False,
        *,
        baselines: BaselineType = None,
        idgi: bool = False,
    ) -> Union[TensorOrTupleOfTensorsGeneric, Tuple[TensorOrTupleOfTensorsGeneric, Tensor]]:
        r"""Attributes the target output to every pixel of every channel.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): images ``(N, C, H, W)`` in pixel space,
                or a tuple of such tensors with one ``N``, each with ``min(H, W) >= 2``;
                each is truncated in rank on its own.
            target (int, tuple, Tensor or list, optional): as in Captum's
                IntegratedGradients.
            additional_forward_args (Any, optional): as in Captum's IntegratedGradients.
            n_steps (int, optional): ``method="paper"``: number of ranks evaluated, each
                standing for a group of ranks of equal weight mass (see
                :func:`~captum_rig.attr.rank_path.paper_rank_weights`; None: all
                ``w - 1`` ranks that carry weight).
                Path methods: quadrature points (None: ``w``).
            method (str): ``"paper"`` (Eq. 3) or a Captum approximation method
                (``"gausslegendre"``, ``"riemann_left"``, ``"riemann_right"``,
                ``"riemann_middle"``, ``"riemann_trapezoid"``) for the complete
                path-integral variant.
            channel_reduction (str, optional): ``"max"``: maximum of each rank's gradient
                over channels, the paper's exact Eq. (3), output ``(N, 1, H, W)``; only
                with ``method="paper"``.
            internal_batch_size (int, optional): examples per forward/backward pass, as
                in Captum's IntegratedGradients; None: at most 64 examples and at most
                ``captum_rig.attr._path.DEFAULT_PASS_BYTES`` bytes of path points.
            return_convergence_delta (bool): also return, per example,
                ``Σ attributions - (F(x) - F(b))``: about 0 for the path methods (their
                quadrature error); for ``"paper"`` it measures how far Eq. (3) is from
                complete.
            baselines (float, Tensor or tuple, optional): keyword only. Where the path
                starts: None (zeros), a number, a tensor broadcastable to every input
                (e.g. ``(1, C, H, W)`` or ``(C, 1, 1)``), or a tuple with one number or
                tensor per input. The path runs along the rank path of ``x - b``:
                ``x_k = b + low_rank(x - b, k)``. Captum's IntegratedGradients takes
                baselines second; here a baseline passed second (a floating tensor shaped
                like the inputs) raises a TypeError naming this keyword.
            idgi (bool): keyword only, path methods only. IDGI (Yang et al. 2023,
                Eq. 5): each cell's output change ``F(x(cell end)) - F(x(cell start))``
                is split over the features in proportion to the squared gradient at its
                node, ``g² / ‖g‖²``. Complete by construction (the attributions sum to
                ``F(x) - F(b)`` for any ``n_steps``); for a linear model ``w·x`` they
                are ``w² / ‖w‖² · (F(x) - F(b))``. With ``"riemann_left"`` (the paper's
                form) the outputs come with the gradients and only ``F(x)`` costs an extra
                forward pass; other rules add a forward pass (no backward) per cell edge.

        Returns:
            attributions (Tensor or tuple[Tensor, ...]): shape of ``inputs``
                (``(N, 1, H, W)`` with ``channel_reduction="max"``), tuple in, tuple
                out; with ``return_convergence_delta``, the pair
                ``(attributions, delta)``, delta of shape ``(N,)``. For a path method a
                delta above 5 % of ``|F(x) - F(b)|`` warns: raise ``n_steps``.

        A model in train mode runs the path in train mode (BatchNorm uses each pass's
        batch statistics, as it does for Captum's IG); the running statistics of its
        training-mode modules are put back afterwards, so the model is left unchanged.

        Examples:
            >>> from captum.testing.helpers.basic_models import BasicModel_ConvNet_One_Conv
            >>> rig = RankIntegratedGradients(BasicModel_ConvNet_One_Conv())
            >>> x = torch.rand(2, 1, 4, 4)
            >>> attr, delta = rig.attribute(
            ...     x, target=1, method="riemann_trapezoid", n_steps=64,
            ...     return_convergence_delta=True, baselines=0.5)
            >>> attr.shape, delta.shape
            (torch.Size([2, 1, 4, 4]), torch.Size([2]))
        """
        is_inputs_tuple, formatted = format_inputs(inputs)
        check_method(method)
        if channel_reduction not in CHANNEL_REDUCTIONS:
            raise ValueError(f"channel_reduction must be None or 'max', got {channel_reduction!r}")
        if channel_reduction is not None and method != PAPER:
            raise ValueError(
                f"channel_reduction={channel_reduction!r} needs method='paper', got {method!r}"
            )
        if idgi and method == PAPER:
            raise ValueError("idgi=True needs a path method (e.g. method='riemann_left')")
        nodes = rank_nodes(formatted, baselines, method, n_steps)
        attributions = self._attribute(
            formatted,
            nodes,
            channel_reduction,
            bool(idgi),
            target=target,
            additional_forward_args=additional_forward_args,
            internal_batch_size=internal_batch_size,
            point_bytes=example_bytes(formatted),
        )
        return attribution_result(
            self,
            is_inputs_tuple,
            attributions,
            formatted,
            lambda: tuple(p.start() for p in nodes.paths),  # x(0) = b
            target=target,
            additional_forward_args=additional_forward_args,
            return_convergence_delta=return_convergence_delta,
            complete=None if nodes.paper else "RankIntegratedGradients",
        )

    def _attribute(
        self,
        inputs: Tuple[Tensor, ...],
        nodes: RankNodes,
        channel_reduction: Optional[str],
        idgi: bool,
        **run,
    ) -> Tuple[Tensor, ...]:
        """Σ over the nodes of each node's gradient times its weight or its cell's change
        (with ``idgi``: its squared gradient's share of its cell's output change)."""
        if idgi:
            edge_node = match_nodes(nodes.nodes, nodes.edges)
            nodes = nodes.on_edges(edge_node)
            return idgi_path_sum(
                input_gradients(self, outputs=True),
                self.forward_func,
                nodes.points,
                nodes.edge_points_at,
                edge_node,
                inputs[0].shape[0],
                **run,
            )
        chunks = path_gradients(
            input_gradients(self), len(nodes), nodes.points, inputs[0].shape[0], **run
        )
        if not nodes.paper:
            # The node's gradient multiplies the exact path increment over its cell.
            return path_sum(
                chunks, lambda start, stop, grads: cell_sums(grads, nodes.increments(start, stop))
            )
        # multiply_by_inputs multiplies by the path's extent x - b, as Captum's IG does.
        extents = [x if p.baseline is None else x - p.baseline for x, p in zip(inputs, nodes.paths)]

        def term(start: int, stop: int, grads: Tuple[Tensor, ...]) -> List[Tensor]:
            if self.multiplies_by_inputs:
                grads = tuple(g * e for g, e in zip(grads, extents))
            if channel_reduction == "max":
                grads = tuple(g.amax(dim=2, keepdim=True) for g in grads)
            return nodes.weighted(start, stop, grads)

        return path_sum(chunks, term)

    def has_convergence_delta(self) -> bool:
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs


RIG = RankIntegratedGradients
