"""Rank Integrated Gradients: attribution along the path of low-rank images.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516, Sec. 6, Eq. (3).
"""

import typing
from typing import Callable, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor

from captum_rig._captum import (
    SUPPORTED_METHODS,
    TargetType,
    TensorOrTupleOfTensorsGeneric,
    approximation_parameters,
)
from captum_rig._checks import check_int
from captum_rig.attr._path import (
    attribution_result,
    example_bytes,
    format_baselines,
    format_inputs,
    path_gradients,
)
from captum_rig.lowrank import RankPath

__all__ = [
    "RankIntegratedGradients",
    "RIG",
    "BaselineRankPath",
    "rank_paths",
    "paper_rank_weights",
]

PAPER = "paper"
CHANNEL_REDUCTIONS = (None, "max")

# None (zeros), a number, a tensor broadcastable to every input, or one per input.
BaselineType = Union[None, float, Tensor, Tuple[Union[float, Tensor], ...]]


def paper_rank_weights(width: int, n_steps: Optional[int] = None) -> Tuple[List[int], List[float]]:
    r"""The ranks Eq. (3) evaluates and the weight each one carries.

    Eq. (3) sums ``(w - k) / w · ∂F(x_k)/∂x_k`` over ``k = 1..w``; rank ``w`` has weight 0
    and is skipped. With ``n_steps = m < w - 1`` the ranks ``1..w-1`` are split into ``m``
    contiguous groups of near-equal weight mass: group ``j`` (``j = 1..m-1``) ends at the
    rank whose cumulative weight is closest to ``j/m`` of the total (the lower one on a
    tie; every group keeps at least one rank). Each group is evaluated at the rank nearest
    its weighted mean rank ``Σ w_k k / Σ w_k`` (the lower one on a tie), with the summed
    weight of the group, so the grouped sum is exact when the gradient changes linearly
    with the rank inside a group, and approximates the full sum otherwise.

    Args:
        width (int): ``w = min(H, W)``.
        n_steps (int, optional): number of ranks to evaluate, ``>= 1``; None: all
            ``w - 1``.

    Returns:
        (ranks, weights): two lists of equal length, ranks increasing.

    Examples:
        >>> paper_rank_weights(4)
        ([1, 2, 3], [0.75, 0.5, 0.25])
        >>> paper_rank_weights(4, n_steps=2)
        ([1, 2], [0.75, 0.75])
        >>> paper_rank_weights(4, n_steps=1)
        ([2], [1.5])
    """
    width = check_int(width, name="width")
    ranks = np.arange(1, max(width, 1), dtype=np.int64)
    weights = ((width - ranks) / width).tolist()
    if n_steps is None or check_int(n_steps, name="n_steps", low=1) >= len(ranks):
        return ranks.tolist(), weights
    # Integer masses w·weight = w - k, so that ties and the nearest rank are exact.
    mass = width - ranks
    bounds = [0, *_group_ends(np.cumsum(mass), n_steps)]
    out_ranks, out_weights = [], []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        m, k = mass[lo:hi], ranks[lo:hi]
        num, den = int((m * k).sum()), int(m.sum())
        # The integer nearest num / den, the lower one on a tie: ceil(num / den - 1/2).
        out_ranks.append(-((den - 2 * num) // (2 * den)))
        out_weights.append(den / width)
    return out_ranks, out_weights


def _group_ends(cumulative: np.ndarray, groups: int) -> List[int]:
    """Ends (exclusive indices) of ``groups`` contiguous groups of near-equal mass.

    ``cumulative`` is the increasing cumulative mass of the items; group ``j`` ends after
    the item whose cumulative mass is closest to ``j / groups`` of the total.
    """
    n, total = len(cumulative), int(cumulative[-1])
    scaled = cumulative * groups  # compare c · groups with j · total: integers, exact
    ends, previous = [], 0
    for j in range(1, groups):
        target = j * total
        i = int(np.searchsorted(scaled, target))  # first item with c · groups >= target
        if i > 0 and (i == n or target - scaled[i - 1] <= scaled[i] - target):
            i -= 1  # the item before is at least as close
        # Item i ends the group (end index i + 1); leave one item for every later group.
        end = min(max(i + 1, previous + 1), n - (groups - j))
        ends.append(end)
        previous = end
    return [*ends, n]


class BaselineRankPath:
    r"""The rank path of ``x - b``, started from the baseline: ``x(t) = b + RankPath(x - b)(t)``.

    ``x(0) = b``, ``x(k) = b + low_rank(x - b, k)`` and ``x(w) = x`` (the input itself,
    bit for bit); without a baseline it is :class:`captum_rig.RankPath` of ``x``.

    Args:
        images (Tensor): ``(N, C, H, W)``.
        baseline (Tensor, optional): broadcastable to ``images``; None: zeros.
    """

    def __init__(self, images: Tensor, baseline: Optional[Tensor] = None) -> None:
        self.baseline = baseline
        self._images = images.detach()
        self.path = RankPath(self._images if baseline is None else self._images - baseline)

    @property
    def width(self) -> int:
        """``w = min(H, W)``."""
        return self.path.width

    def images(self, t: Union[Tensor, Sequence[float]]) -> Tensor:
        """Points ``x(t)``, shape ``(m, N, C, H, W)``, the input's dtype and device."""
        points = self.path.images(t)
        if self.baseline is None:
            return points
        points = points + self.baseline
        full = torch.as_tensor(t, dtype=torch.float64).reshape(-1) >= self.width
        if bool(full.any()):
            points[full.to(points.device)] = self._images
        return points

    def displacement(
        self, start: Union[Tensor, Sequence[float]], stop: Union[Tensor, Sequence[float]]
    ) -> Tensor:
        """Exact increments ``x(stop) - x(start)``, pairwise, shape ``(m, N, C, H, W)``."""
        return self.path.displacement(start, stop)

    def start(self, like: Optional[Tensor] = None) -> Tensor:
        """``x(0)``: the baseline (or zeros) expanded to the input's shape (or ``like``'s)."""
        like = self._images if like is None else like
        if self.baseline is None:
            return torch.zeros_like(like)
        return self.baseline.expand_as(like).to(like.dtype).clone()


def path_nodes(method: str, n_steps: int) -> Tuple[Tensor, Tensor]:
    """The path variant's nodes ``alphas`` ``(S,)`` and their cells' edges ``(S + 1,)``.

    Both are fractions of the path, in ``[0, 1]``. The edges are the cumulative quadrature
    weights of Captum's rule ``method``, which separate the nodes for every rule (Gauss
    nodes included), normalised to end at 1: Captum's trapezoid weights sum to
    ``1 - 1/n``, which would leave part of the path out.
    """
    step_sizes_func, alphas_func = approximation_parameters(method)
    alphas = torch.tensor(alphas_func(n_steps), dtype=torch.float64)
    edges = torch.cumsum(torch.tensor([0.0, *step_sizes_func(n_steps)], dtype=torch.float64), 0)
    return alphas, edges / edges[-1]


def _check_rank_widths(inputs: Tuple[Tensor, ...]) -> None:
    """Raises a ValueError naming the input unless every image has ``min(H, W) >= 2``.

    With ``w = min(H, W) = 1`` the rank path has a single rank: Eq. (3)'s weights
    ``(w - k)/w`` are all zero, and the path methods reduce to Integrated Gradients on
    the straight line; either way there are no low-rank images to attribute along.
    """
    for i, x in enumerate(inputs):
        if min(x.shape[-2:]) < 2:
            name = "inputs" if len(inputs) == 1 else f"inputs[{i}]"
            raise ValueError(
                f"{name} must have min(H, W) >= 2 for the rank path (a single rank has "
                f"no low-rank images, and every rank weight (w - k)/w is 0), got shape "
                f"{tuple(x.shape)}"
            )


def rank_paths(
    inputs: Tuple[Tensor, ...], baselines: BaselineType = None
) -> Tuple[BaselineRankPath, ...]:
    """One :class:`BaselineRankPath` per input (one SVD each), after checking baselines.

    Args:
        inputs (tuple[Tensor, ...]): formatted inputs, each ``(N, C, H, W)``.
        baselines: None (zeros), a number, a tensor broadcastable to every input, or a
            tuple of those, one per input.

    Raises:
        ValueError: naming ``inputs`` (or ``inputs[i]``) for an image with
            ``min(H, W) < 2``.
        ValueError, TypeError: naming ``baselines``.
    """
    _check_rank_widths(inputs)
    return tuple(
        BaselineRankPath(x, b) for x, b in zip(inputs, format_baselines(baselines, inputs))
    )


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
    ) -> TensorOrTupleOfTensorsGeneric: ...

    @log_usage()
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
                :func:`paper_rank_weights`; None: all ``w - 1`` ranks that carry weight).
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
                ``x_k = b + low_rank(x - b, k)``.

        Returns:
            attributions (Tensor or tuple[Tensor, ...]): shape of ``inputs``
                (``(N, 1, H, W)`` with ``channel_reduction="max"``), tuple in, tuple
                out; with ``return_convergence_delta``, the pair
                ``(attributions, delta)``, delta of shape ``(N,)``.

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
        if method != PAPER and method not in SUPPORTED_METHODS:
            raise ValueError(
                f"method must be 'paper' or one of {sorted(SUPPORTED_METHODS)}, got {method!r}"
            )
        if channel_reduction not in CHANNEL_REDUCTIONS:
            raise ValueError(f"channel_reduction must be None or 'max', got {channel_reduction!r}")
        if channel_reduction is not None and method != PAPER:
            raise ValueError(
                f"channel_reduction={channel_reduction!r} needs method='paper', got {method!r}"
            )
        if n_steps is not None:
            n_steps = check_int(n_steps, name="n_steps", low=1)

        paths = rank_paths(formatted, baselines)
        run = dict(
            target=target,
            additional_forward_args=additional_forward_args,
            internal_batch_size=internal_batch_size,
            point_bytes=example_bytes(formatted),
        )
        if method == PAPER:
            attributions = self._attribute_paper(
                formatted, paths, n_steps, channel_reduction, **run
            )
        else:
            attributions = self._attribute_path(formatted, paths, n_steps, method, **run)

        return attribution_result(
            self,
            is_inputs_tuple,
            attributions,
            formatted,
            lambda: tuple(p.start() for p in paths),  # x(0) = b
            target=target,
            additional_forward_args=additional_forward_args,
            return_convergence_delta=return_convergence_delta,
        )

    def _attribute_paper(
        self,
        inputs: Tuple[Tensor, ...],
        paths: Tuple[BaselineRankPath, ...],
        n_steps: Optional[int],
        channel_reduction: Optional[str],
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
        num_examples = inputs[0].shape[0]
        totals = [
            torch.zeros(
                (num_examples, 1 if channel_reduction else x.shape[1], *x.shape[2:]),
                dtype=x.dtype,
                device=x.device,
            )
            for x in inputs
        ]
        # multiply_by_inputs multiplies by the path's extent x - b, as Captum's IG does.
        extents = [x if p.baseline is None else x - p.baseline for x, p in zip(inputs, paths)]

        def make_points(start: int, stop: int) -> Tuple[Tensor, ...]:
            return tuple(p.images(ranks[start:stop]) for p in paths)

        for start, stop, grads in path_gradients(
            self, len(ranks), make_points, num_examples, **run
        ):
            for total, grad, extent in zip(totals, grads, extents):
                if self.multiplies_by_inputs:
                    grad = grad * extent
                if channel_reduction == "max":
                    grad = grad.amax(dim=2, keepdim=True)
                w = weights[start:stop].to(grad.device, grad.dtype)
                total += torch.tensordot(w, grad, dims=1)
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
        # The node's gradient multiplies the exact path increment over its cell: inside
        # a linear piece that is step × velocity, and across the kinks at integer ranks
        # it keeps the attributions of a linear model exactly complete.
        alphas, edges = path_nodes(method, n_steps)
        totals = [torch.zeros_like(x) for x in inputs]

        # Each input runs along its own rank path at its own speed, t_i = α · w_i, so the
        # joint path still starts at the baselines and ends at the inputs.
        def make_points(start: int, stop: int) -> Tuple[Tensor, ...]:
            return tuple(p.images(alphas[start:stop] * p.width) for p in paths)

        for start, stop, grads in path_gradients(
            self, n_steps, make_points, inputs[0].shape[0], **run
        ):
            for total, grad, p in zip(totals, grads, paths):
                increments = p.displacement(
                    edges[start:stop] * p.width, edges[start + 1 : stop + 1] * p.width
                )
                total += (grad * increments.to(grad.dtype)).sum(0)
        return tuple(totals)

    def has_convergence_delta(self) -> bool:
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs


RIG = RankIntegratedGradients
