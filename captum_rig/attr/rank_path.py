"""The rank path that RIG, Layer RIG and rank contributions share, and its nodes.

One :class:`BaselineRankPath` per input (one SVD each) gives every point of the path;
:class:`RankNodes` says where a rank method evaluates gradients: the ranks of Eq. (3)
with their weights (``method="paper"``), or a Captum rule's nodes and the cells around
them (the complete path variants).

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516, Sec. 6, Eq. (3).
"""

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from captum_rig._captum import SUPPORTED_METHODS, approximation_parameters
from captum_rig._checks import check_int
from captum_rig.attr._path import format_baselines
from captum_rig.lowrank import RankPath

__all__ = [
    "BaselineRankPath",
    "RankNodes",
    "paper_rank_weights",
    "path_nodes",
    "rank_nodes",
    "rank_paths",
]

PAPER = "paper"

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
    if n_steps < 2 and method.startswith("riemann"):
        # Captum's Riemann rules assert n > 1; say so naming the argument.
        raise ValueError(f"n_steps must be at least 2 for method={method!r}, got {n_steps}")
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


def check_method(method: str) -> None:
    """Raises a ValueError naming ``method`` unless it is ``"paper"`` or a Captum rule.

    Examples:
        >>> check_method("gausslegendre")
        >>> check_method("simpson")
        Traceback (most recent call last):
        ...
        ValueError: method must be 'paper' or one of [...], got 'simpson'
    """
    if method != PAPER and method not in SUPPORTED_METHODS:
        raise ValueError(
            f"method must be 'paper' or one of {sorted(SUPPORTED_METHODS)}, got {method!r}"
        )


class RankNodes:
    r"""Where a rank method evaluates gradients along the inputs' rank paths.

    - ``method="paper"``: the ranks of Eq. (3) (see :func:`paper_rank_weights`) and their
      weights; every input has the same width, so a node is one rank for all of them.
    - a Captum rule: its nodes ``α`` (fractions of the path) and the cells around them
      (see :func:`path_nodes`); input ``i`` runs along its own path at its own speed,
      ``t_i = α · w_i``, so the joint path starts at the baselines and ends at the inputs.

    Built by :func:`rank_nodes`.

    Args:
        paths (tuple[BaselineRankPath, ...]): one path per input.
        nodes (Tensor): ``(S,)`` float64: ranks (``"paper"``) or fractions of the path.
        weights (Tensor, optional): ``(S,)`` float64, Eq. (3)'s weights; ``"paper"`` only.
        edges (Tensor, optional): ``(S + 1,)`` float64, the cells' edges as fractions of
            the path; path methods only.

    Examples:
        >>> x = torch.rand(2, 3, 4, 4)
        >>> nodes = rank_nodes((x,), method="paper")
        >>> len(nodes), nodes.paper
        (3, True)
        >>> nodes.points(0, 2)[0].shape  # (stop - start, N, C, H, W)
        torch.Size([2, 2, 3, 4, 4])
        >>> nodes = rank_nodes((x,), method="gausslegendre", n_steps=5)
        >>> len(nodes), nodes.paper
        (5, False)
        >>> steps = nodes.increments(0, 5)[0]  # x(cell end) - x(cell start), (5, N, C, H, W)
        >>> bool(torch.allclose(steps.sum(0), x, atol=1e-5))  # the cells cover the path
        True
    """

    def __init__(
        self,
        paths: Tuple[BaselineRankPath, ...],
        nodes: Tensor,
        weights: Optional[Tensor] = None,
        edges: Optional[Tensor] = None,
    ) -> None:
        self.paths = paths
        self.nodes = nodes
        self.weights = weights
        self.edges = edges

    @property
    def paper(self) -> bool:
        """Whether these are Eq. (3)'s weighted ranks (else a path rule's nodes)."""
        return self.weights is not None

    def __len__(self) -> int:
        return len(self.nodes)

    def _at(self, t: Tensor) -> Tuple[Tensor, ...]:
        if self.paper:
            return tuple(p.images(t) for p in self.paths)
        return tuple(p.images(t * p.width) for p in self.paths)

    def points(self, start: int, stop: int) -> Tuple[Tensor, ...]:
        """Nodes ``start..stop`` of every input, each ``(stop - start, N, C, H, W)``."""
        return self._at(self.nodes[start:stop])

    def edge_points(self, start: int, stop: int) -> Tuple[Tensor, ...]:
        """Cell edges ``start..stop`` of every input (path methods)."""
        return self._at(self.edges[start:stop])

    def edge_points_at(self, index: Tensor) -> Tuple[Tensor, ...]:
        """The cell edges ``index`` (a 1-D long tensor) of every input (path methods)."""
        return self._at(self.edges[index])

    def on_edges(self, edge_node: Tensor) -> "RankNodes":
        """These nodes, those within float error of an edge moved onto it exactly.

        Args:
            edge_node (Tensor): ``(S + 1,)``, the node at each edge or -1 (see
                :func:`captum_rig.attr._idgi.match_nodes`).
        """
        nodes = self.nodes.clone()
        on = edge_node >= 0
        nodes[edge_node[on]] = self.edges[on]
        return RankNodes(self.paths, nodes, self.weights, self.edges)

    def increments(self, start: int, stop: int) -> Tuple[Tensor, ...]:
        """Exact path increments over the cells of nodes ``start..stop`` (path methods).

        Inside a linear piece of the path an increment is step × velocity; across the
        kinks at integer ranks it keeps a linear model's attributions exactly complete.
        """
        return tuple(
            p.displacement(
                self.edges[start:stop] * p.width, self.edges[start + 1 : stop + 1] * p.width
            )
            for p in self.paths
        )

    def weighted(self, start: int, stop: int, grads: Sequence[Tensor]) -> List[Tensor]:
        """``Σ_s weights[s] · grads[s]`` over nodes ``start..stop`` (``"paper"``).

        Args:
            grads: one tensor per input, ``(stop - start, N, ...)``.

        Returns:
            list[Tensor]: one ``(N, ...)`` tensor per input.
        """
        return [
            torch.tensordot(self.weights[start:stop].to(g.device, g.dtype), g, dims=1)
            for g in grads
        ]


def rank_nodes(
    inputs: Tuple[Tensor, ...],
    baselines: BaselineType = None,
    method: str = PAPER,
    n_steps: Optional[int] = None,
) -> RankNodes:
    """The rank paths of ``inputs`` (one SVD each) and the nodes of ``method`` on them.

    Args:
        inputs (tuple[Tensor, ...]): formatted inputs, each ``(N, C, H, W)``.
        baselines: as in :func:`rank_paths`.
        method (str): ``"paper"`` or a Captum approximation method (checked by
            :func:`check_method`).
        n_steps (int, optional): ``"paper"``: ranks evaluated (None: all ``w - 1`` that
            carry weight); path methods: nodes (None: the largest ``w`` of the inputs).

    Raises:
        ValueError, TypeError: naming ``n_steps``, ``inputs`` or ``baselines``; a
            ValueError for ``"paper"`` with inputs of different ``min(H, W)``.
    """
    if n_steps is not None:
        n_steps = check_int(n_steps, name="n_steps", low=1)
    paths = rank_paths(inputs, baselines)
    if method != PAPER:
        if n_steps is None:
            n_steps = max(p.width for p in paths)
        alphas, edges = path_nodes(method, n_steps)
        return RankNodes(paths, alphas, edges=edges)
    widths = {p.width for p in paths}
    if len(widths) > 1:
        raise ValueError(
            "method='paper' needs every input to have the same min(H, W), got "
            f"{[p.width for p in paths]}; use a path method for mixed sizes"
        )
    ranks, weights = paper_rank_weights(widths.pop(), n_steps)
    return RankNodes(
        paths,
        torch.tensor(ranks, dtype=torch.float64),
        weights=torch.tensor(weights, dtype=torch.float64),
    )
