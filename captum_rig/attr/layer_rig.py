"""Layer Rank Integrated Gradients: RIG's rank path, attributed to a hidden layer.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516, Sec. 6, Eq. (3).
"""

import typing
from typing import Callable, Iterator, List, Literal, Optional, Tuple, Union

import torch
from captum.attr import GradientAttribution, LayerAttribution
from captum.log import log_usage
from torch import Tensor, nn

from captum_rig._captum import (
    SUPPORTED_METHODS,
    TargetType,
    TensorOrTupleOfTensorsGeneric,
    compute_layer_gradients_and_eval,
    expand_target,
    format_additional_forward_args,
    format_output,
    forward_layer_eval,
    run_forward,
)
from captum_rig._checks import check_int
from captum_rig.attr._path import (
    PointMaker,
    example_bytes,
    expand_args,
    format_inputs,
    path_chunks,
)
from captum_rig.attr.rig import (
    PAPER,
    BaselineRankPath,
    BaselineType,
    paper_rank_weights,
    path_nodes,
    rank_paths,
)

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
            output's first dim must be the batch dim.
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
    ) -> Union[Tensor, Tuple[Tensor, ...]]: ...

    @log_usage()
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
                ``x - b``. None: zeros.

        Returns:
            attributions (Tensor or tuple[Tensor, ...]): the layer's output (or input)
                shape, a tuple when the layer has several; with
                ``return_convergence_delta``, the pair ``(attributions, delta)``.

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
        if method != PAPER and method not in SUPPORTED_METHODS:
            raise ValueError(
                f"method must be 'paper' or one of {sorted(SUPPORTED_METHODS)}, got {method!r}"
            )
        if n_steps is not None:
            n_steps = check_int(n_steps, name="n_steps", low=1)
        paths = rank_paths(formatted, baselines)
        run = dict(
            target=target,
            additional_forward_args=additional_forward_args,
            internal_batch_size=internal_batch_size,
            attribute_to_layer_input=attribute_to_layer_input,
            point_bytes=example_bytes(formatted),
        )
        if method == PAPER:
            attributions = self._attribute_paper(formatted, paths, n_steps, **run)
        else:
            attributions = self._attribute_path(formatted, paths, n_steps, method, **run)
        output = format_output(len(attributions) > 1, attributions)
        if not return_convergence_delta:
            return output
        delta = self.compute_convergence_delta(
            attributions,
            tuple(p.start(x) for p, x in zip(paths, formatted)),
            formatted,
            additional_forward_args=additional_forward_args,
            target=target,
        )
        return output, delta

    def _gradients(
        self,
        n_points: int,
        make_points: PointMaker,
        num_examples: int,
        target: TargetType,
        additional_forward_args: Optional[object],
        internal_batch_size: Optional[int],
        attribute_to_layer_input: bool,
        point_bytes: int,
    ) -> Iterator[Tuple[int, int, Tuple[Tensor, ...]]]:
        """Yields ``(start, stop, layer gradients (stop - start, N, ...))`` in chunks."""
        for start, stop, points, args in path_chunks(
            n_points,
            make_points,
            num_examples,
            additional_forward_args,
            internal_batch_size,
            point_bytes,
        ):
            count = stop - start
            grads, _ = compute_layer_gradients_and_eval(
                self.forward_func,
                self.layer,
                points,
                target_ind=expand_target(target, count),
                additional_forward_args=args,
                device_ids=self.device_ids,
                attribute_to_layer_input=attribute_to_layer_input,
            )
            yield start, stop, tuple(_by_step(g.detach(), count) for g in grads)

    def _layer_values(
        self,
        points: Tuple[Tensor, ...],
        count: int,
        additional_forward_args: Optional[object],
        attribute_to_layer_input: bool,
    ) -> Tuple[Tensor, ...]:
        """The layer's output (or input) at ``count`` stacked points, ``(count, N, ...)``.

        Runs the model only up to the layer (a hook stops the forward pass there), with
        no gradient; a ``DataParallel`` run goes through Captum's full forward instead.
        """
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
            return tuple(_by_step(v.detach(), count) for v in values)
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
        return tuple(_by_step(v.detach(), count) for v in captured[0])

    def _attribute_paper(
        self,
        inputs: Tuple[Tensor, ...],
        paths: Tuple[BaselineRankPath, ...],
        n_steps: Optional[int],
        **run,
    ) -> Tuple[Tensor, ...]:
        widths = {p.width for p in paths}
        if len(widths) > 1:
            raise ValueError(
                "method='paper' needs every input to have the same min(H, W), got "
                f"{[p.width for p in paths]}; use a path method for mixed sizes"
            )
        ranks, weights = paper_rank_weights(widths.pop(), n_steps)
        weights = torch.tensor(weights, dtype=torch.float64)
        totals: Optional[List[Tensor]] = None

        def make_points(start: int, stop: int) -> Tuple[Tensor, ...]:
            return tuple(p.images(ranks[start:stop]) for p in paths)

        for start, stop, grads in self._gradients(
            len(ranks), make_points, inputs[0].shape[0], **run
        ):
            terms = [
                torch.tensordot(weights[start:stop].to(g.device, g.dtype), g, dims=1) for g in grads
            ]
            totals = terms if totals is None else [t + s for t, s in zip(totals, terms)]
        if self.multiplies_by_inputs:
            ends = tuple(torch.stack((p.start(x), x)) for p, x in zip(paths, inputs))
            values = self._layer_values(
                ends, 2, run["additional_forward_args"], run["attribute_to_layer_input"]
            )
            totals = [t * (v[1] - v[0]).to(t.dtype) for t, v in zip(totals, values)]
        return tuple(totals)

    def _attribute_path(
        self,
        inputs: Tuple[Tensor, ...],
        paths: Tuple[BaselineRankPath, ...],
        n_steps: Optional[int],
        method: str,
        **run,
    ) -> Tuple[Tensor, ...]:
        if n_steps is None:
            n_steps = max(p.width for p in paths)
        alphas, edges = path_nodes(method, n_steps)

        # Each input runs along its own rank path at its own speed, t_i = α · w_i, as in
        # RIG, so the joint path starts at x(0) and ends at the inputs.
        def points_at(fractions: Tensor) -> Tuple[Tensor, ...]:
            return tuple(p.images(fractions * p.width) for p in paths)

        def layer_at(fractions: Tensor) -> Tuple[Tensor, ...]:
            return self._layer_values(
                points_at(fractions),
                len(fractions),
                run["additional_forward_args"],
                run["attribute_to_layer_input"],
            )

        totals: Optional[List[Tensor]] = None
        # The layer's value at the cells' edges, computed chunk by chunk with the nodes:
        # the end edge of one chunk is the start edge of the next.
        previous = tuple(v[-1:] for v in layer_at(edges[:1]))
        for start, stop, grads in self._gradients(
            n_steps, lambda a, b: points_at(alphas[a:b]), inputs[0].shape[0], **run
        ):
            current = layer_at(edges[start + 1 : stop + 1])
            terms = []
            for g, prev, cur in zip(grads, previous, current):
                change = torch.diff(torch.cat((prev, cur)), dim=0)
                terms.append((g * change.to(g.dtype)).sum(0))
            totals = terms if totals is None else [t + s for t, s in zip(totals, terms)]
            previous = tuple(v[-1:] for v in current)
        return tuple(totals)

    def has_convergence_delta(self) -> bool:
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs


def _by_step(value: Tensor, count: int) -> Tensor:
    """``(count · N, ...)`` -> ``(count, N, ...)``; the layer must keep the batch dim."""
    if value.shape[0] % count:
        raise ValueError(
            "layer must keep the batch dimension first: its value has first dim "
            f"{value.shape[0]} for {count} stacked path points"
        )
    return value.reshape(count, value.shape[0] // count, *value.shape[1:])


LayerRIG = LayerRankIntegratedGradients
