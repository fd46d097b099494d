"""Layer Rank Integrated Gradients: RIG's rank path, attributed to a hidden layer.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516, Sec. 6, Eq. (3).
"""

import typing
from typing import Callable, List, Literal, Optional, Tuple, Union

import torch
from captum.attr import GradientAttribution, LayerAttribution
from captum.log import log_usage
from torch import Tensor, nn

from captum_rig._captum import (
    TargetType,
    TensorOrTupleOfTensorsGeneric,
    format_additional_forward_args,
    format_output,
    forward_layer_eval,
    run_forward,
)
from captum_rig.attr._guards import attribute_checks, warn_if_incomplete
from captum_rig.attr._idgi import idgi_path_sum
from captum_rig.attr._path import (
    by_step,
    cell_sums,
    example_bytes,
    expand_args,
    format_inputs,
    layer_gradients,
    path_gradients,
    path_sum,
)
from captum_rig.attr.rank_path import PAPER, BaselineType, RankNodes, check_method, rank_nodes

__all__ = ["LayerRankIntegratedGradients", "LayerRIG"]


class _LayerReached(Exception):
    """Raised by the capture hook: nothing after the layer needs to run."""


class LayerRankIntegratedGradients(LayerAttribution, GradientAttribution):
    r"""Layer RIG: the inputs move along RIG's rank path; attributions go to a layer.

    With ``a`` the layer's output (or input), ``w = min(H, W)`` and ``x_k`` the rank-k
    images (``b + low_rank(x - b, k)`` with baselines ``b``):

    - ``method="paper"``: ``Σ_{k=1}^{w} (w - k)/w · ∂F(x_k)/∂a``, the layer version of
      Eq. (3), shape of ``a``; ``n_steps`` groups ranks exactly as
      :class:`captum_rig.RankIntegratedGradients` does.
    - ``method`` set to a Captum approximation method (``"gausslegendre"``, ...): the
      image runs along RIG's continuous rank path with RIG's nodes and cells; each node's
      layer gradient multiplies the layer's change over its cell,
      ``a(x(cell end)) - a(x(cell start))``, as Captum's LayerConductance does. The
      changes telescope, so the attributions sum to ``F(x) - F(x(0))`` up to the
      quadrature error, and at an identity layer they equal RIG's path variant.

    Args:
        forward_func (Callable): the model, or any function returning outputs; it
            should contain its own input normalization (ranks are taken in pixel space).
        layer (torch.nn.Module): the layer whose output (or input) is attributed; its
            output's first dim must be the batch dim. It must be called once per forward
            pass: a module used twice (the same conv on two feature maps) has no single
            value to attribute to and is refused with a ValueError.
        device_ids (list[int], optional): as in Captum's layer methods, for a
            ``forward_func`` that is not a ``DataParallel`` model but runs one.
        multiply_by_inputs (bool): for ``method="paper"`` only: if True, the weighted
            gradient sum is multiplied by ``a(x) - a(x(0))``, as Captum's layer methods
            multiply by the layer's change from the baseline; at an identity layer
            without baselines this is RIG's gradient × input.

    Examples:
        >>> from captum.testing.helpers.basic_models import BasicModel_ConvNet_One_Conv
        >>> model = BasicModel_ConvNet_One_Conv()
        >>> lrig = LayerRankIntegratedGradients(model, model.conv1)
        >>> lrig.attribute(torch.rand(2, 1, 4, 4), target=0).shape
        torch.Size([2, 2, 2, 2])

    References:
        Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
        arXiv:2012.03516.
    """

    def __init__(
        self,
        forward_func: Callable,
        layer: nn.Module,
        device_ids: Optional[List[int]] = None,
        multiply_by_inputs: bool = False,
    ) -> None:
        if not isinstance(layer, nn.Module):
            raise TypeError(f"layer must be a torch.nn.Module, got {type(layer).__name__}")
        LayerAttribution.__init__(self, forward_func, layer, device_ids)
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
        internal_batch_size: Optional[int] = None,
        attribute_to_layer_input: bool = False,
        *,
        return_convergence_delta: Literal[True],
        baselines: BaselineType = None,
        idgi: bool = False,
    ) -> Tuple[Union[Tensor, Tuple[Tensor, ...]], Tensor]: ...

    @typing.overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: Optional[int] = None,
        method: str = PAPER,
        internal_batch_size: Optional[int] = None,
        attribute_to_layer_input: bool = False,
        return_convergence_delta: Literal[False] = False,
        baselines: BaselineType = None,
        *,
        idgi: bool = False,
    ) -> Union[Tensor, Tuple[Tensor, ...]]: ...

    @log_usage()
    @attribute_checks("LayerRankIntegratedGradients")
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        target: TargetType = None,
        additional_forward_args: Optional[object] = None,
        n_steps: Optional[int] = None,
        method: str = PAPER,
        internal_batch_size: Optional[int] = None,
        attribute_to_layer_input: bool = False,
        return_convergence_delta: bool = False,
        baselines: BaselineType = None,
        *,
        idgi: bool = False,
    ) -> Union[Tensor, Tuple[Tensor, ...], Tuple[Union[Tensor, Tuple[Tensor, ...]], Tensor]]:
        r"""Attributes the target output to every unit of the layer.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): images ``(N, C, H, W)`` in pixel space,
                or a tuple of such tensors with one ``N``, each with ``min(H, W) >= 2``.
            target (int, tuple, Tensor or list, optional): as in Captum's
                IntegratedGradients.
            additional_forward_args (Any, optional): as in Captum's IntegratedGradients.
            n_steps (int, optional): ``"paper"``: ranks evaluated (None: all ``w - 1``
                that carry weight); path methods: quadrature points (None: ``w``).
            method (str): ``"paper"`` or a Captum approximation method.
            internal_batch_size (int, optional): examples per forward/backward pass, as
                in Captum; None: at most 64 examples and at most
                ``captum_rig.attr._path.DEFAULT_PASS_BYTES`` (32 MiB) of path points.
            attribute_to_layer_input (bool): attribute to the layer's input instead of
                its output.
            return_convergence_delta (bool): also return, per example,
                ``Σ attributions - (F(x) - F(x(0)))``, shape ``(N,)``.
            baselines (float, Tensor or tuple, optional): the path's start ``b``
                (broadcastable to each input); the path then runs along the rank path of
                ``x - b``. None: zeros. A baseline passed second (Captum's
                IntegratedGradients order) raises a TypeError naming this keyword.
            idgi (bool): keyword only, path methods only: IDGI (Yang et al. 2023,
                Eq. 5) at the layer: each cell's output change
                ``F(x(cell end)) - F(x(cell start))`` split over the layer's units in
                proportion to the squared layer gradient at its node; complete by
                construction for any ``n_steps``. Costs a forward pass (no backward)
                per cell edge, in place of the layer's values there.

        Returns:
            attributions (Tensor or tuple[Tensor, ...]): the layer's output (or input)
                shape, a tuple when the layer has several; with
                ``return_convergence_delta``, the pair ``(attributions, delta)``; for a
                path method a delta above 5 % of ``|F(x) - F(x(0))|`` warns.

        A model in train mode runs the path in train mode; the running statistics of its
        training-mode modules (BatchNorm) are put back afterwards.

        Examples:
            >>> from captum.testing.helpers.basic_models import BasicModel_ConvNet_One_Conv
            >>> model = BasicModel_ConvNet_One_Conv()
            >>> lrig = LayerRankIntegratedGradients(model, model.relu1)
            >>> x = torch.rand(2, 1, 4, 4)
            >>> attr, delta = lrig.attribute(
            ...     x, target=1, method="riemann_trapezoid", n_steps=32,
            ...     return_convergence_delta=True)
            >>> attr.shape, delta.shape
            (torch.Size([2, 2, 2, 2]), torch.Size([2]))
        """
        _, formatted = format_inputs(inputs)
        check_method(method)
        if idgi and method == PAPER:
            raise ValueError("idgi=True needs a path method (e.g. method='riemann_left')")
        nodes = rank_nodes(formatted, baselines, method, n_steps)
        attributions = self._attribute(
            formatted,
            nodes,
            attribute_to_layer_input,
            bool(idgi),
            target=target,
            additional_forward_args=additional_forward_args,
            internal_batch_size=internal_batch_size,
            point_bytes=example_bytes(formatted),
        )
        output = format_output(len(attributions) > 1, attributions)
        if not return_convergence_delta:
            return output
        delta = self.compute_convergence_delta(
            attributions,
            tuple(p.start(x) for p, x in zip(nodes.paths, formatted)),
            formatted,
            additional_forward_args=additional_forward_args,
            target=target,
        )
        if not nodes.paper:
            warn_if_incomplete("LayerRankIntegratedGradients", attributions, delta)
        return output, delta

    def _attribute(
        self,
        inputs: Tuple[Tensor, ...],
        nodes: RankNodes,
        attribute_to_layer_input: bool,
        idgi: bool,
        **run,
    ) -> Tuple[Tensor, ...]:
        """Σ over the nodes of each node's layer gradient times its weight or the
        layer's change over its cell (with ``idgi``: its squared gradient's share of
        the cell's output change)."""
        gradients = layer_gradients(
            self.forward_func, self.layer, self.device_ids, attribute_to_layer_input
        )
        if idgi:
            # The layer gradients come without outputs: F at every edge by forward passes.
            edge_node = torch.full((len(nodes) + 1,), -1, dtype=torch.long)
            return idgi_path_sum(
                gradients,
                self.forward_func,
                nodes.points,
                nodes.edge_points_at,
                edge_node,
                inputs[0].shape[0],
                **run,
            )
        chunks = path_gradients(gradients, len(nodes), nodes.points, inputs[0].shape[0], **run)

        def layer_at(points: Tuple[Tensor, ...]) -> Tuple[Tensor, ...]:
            args = run["additional_forward_args"]
            return self._layer_values(points, args, attribute_to_layer_input)

        if nodes.paper:
            totals = path_sum(chunks, nodes.weighted)
            if not self.multiplies_by_inputs:
                return totals
            # Captum's layer methods multiply by the layer's change from the baseline.
            ends = tuple(torch.stack((p.start(x), x)) for p, x in zip(nodes.paths, inputs))
            ends = layer_at(ends)
            return tuple(t * (v[1] - v[0]).to(t.dtype) for t, v in zip(totals, ends))

        # The layer's value at the cells' edges, computed chunk by chunk with the nodes:
        # the end edge of one chunk is the start edge of the next.
        previous = tuple(v[-1:] for v in layer_at(nodes.edge_points(0, 1)))

        def term(start: int, stop: int, grads: Tuple[Tensor, ...]) -> List[Tensor]:
            nonlocal previous
            current = layer_at(nodes.edge_points(start + 1, stop + 1))
            changes = [torch.diff(torch.cat(pair), dim=0) for pair in zip(previous, current)]
            previous = tuple(v[-1:] for v in current)
            return cell_sums(grads, changes)

        return path_sum(chunks, term)

    def _layer_values(
        self,
        points: Tuple[Tensor, ...],
        additional_forward_args: Optional[object],
        attribute_to_layer_input: bool,
    ) -> Tuple[Tensor, ...]:
        """The layer's output (or input) at the points ``(count, N, C, H, W)`` of every
        input, shape ``(count, N, ...)``.

        Runs the model only up to the layer (a hook stops the forward pass there), with
        no gradient; a ``DataParallel`` run goes through Captum's full forward instead.
        """
        count = points[0].shape[0]
        flat = tuple(p.reshape(-1, *p.shape[2:]) for p in points)
        args = expand_args(format_additional_forward_args(additional_forward_args), count)
        captured: List[Tuple[Tensor, ...]] = []

        def capture(_module: nn.Module, inp: object, out: object = None) -> None:
            value = inp if attribute_to_layer_input else out
            captured.append(tuple(value) if isinstance(value, (tuple, list)) else (value,))
            raise _LayerReached

        if self.device_ids is not None or isinstance(self.forward_func, nn.DataParallel):
            values = forward_layer_eval(
                self.forward_func,
                flat,
                self.layer,
                additional_forward_args=args,
                device_ids=self.device_ids,
                attribute_to_layer_input=attribute_to_layer_input,
            )
            return tuple(by_step(v.detach(), count) for v in values)
        if attribute_to_layer_input:
            handle = self.layer.register_forward_pre_hook(capture)
        else:
            handle = self.layer.register_forward_hook(capture)
        try:
            with torch.no_grad():
                run_forward(self.forward_func, flat, additional_forward_args=args)
        except _LayerReached:
            pass
        finally:
            handle.remove()
        if not captured:
            raise ValueError("layer was not called by forward_func: it is not part of the model")
        return tuple(by_step(v.detach(), count) for v in captured[0])

    def has_convergence_delta(self) -> bool:
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs


LayerRIG = LayerRankIntegratedGradients
