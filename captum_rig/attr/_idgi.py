"""IDGI: each path step's output change split over features by the squared gradient.

Integrated Decision Gradients (Yang et al. 2023, Eq. 5) replace a path method's
``Σ_j g_j · (x_{j+1} - x_j)`` by ``Σ_j g_j² / ‖g_j‖² · (F(x_{j+1}) - F(x_j))``: the output
change of every step goes to the features along the gradient, so the attributions add up
to ``F(end) - F(start)`` by construction, for any number of steps.

Here a path is cut into cells, one node per cell (where the gradient is taken), as in
:class:`captum_rig.attr.rank_path.RankNodes`; the step of node ``s`` is its cell, from
edge ``s`` to edge ``s + 1``. For a left Riemann rule the nodes are the edges, and this
is the paper's formula; the outputs at the nodes come from the gradient passes, so only
the path's end costs an extra forward pass. Edges that are not nodes (the other rules)
are evaluated by forward passes, without gradients, through the same path loop.

References:
    Yang, Wang, Bilodeau. Re-calibrating Feature Attributions for Model
    Interpretation (IDGI). CVPR 2023, arXiv:2303.03516, Eq. (5).
"""

from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from captum_rig.attr._path import GradientChunk, GradientFunc, forward_outputs, path_gradients

__all__ = ["idgi_path_sum", "idgi_shares", "match_nodes"]

# A node closer than this (as a fraction of the path) to an edge is taken to be on it:
# Captum's rules give their nodes in float32.
MATCH_TOLERANCE = 1e-6


def match_nodes(nodes: Tensor, edges: Tensor) -> Tensor:
    """For every edge, the index of the node at the same place on the path, or -1.

    Args:
        nodes (Tensor): ``(S,)`` node positions.
        edges (Tensor): ``(S + 1,)`` cell edges, same units.

    Examples:
        >>> match_nodes(torch.tensor([0.0, 0.5]), torch.tensor([0.0, 0.5, 1.0])).tolist()
        [0, 1, -1]
    """
    order = torch.argsort(nodes)
    ordered = nodes[order]
    # The nearest node is one of the two around the edge: O(S log S), not an S × S table.
    right = torch.searchsorted(ordered, edges).clamp(max=len(nodes) - 1)
    left = (right - 1).clamp(min=0)
    use_left = (edges - ordered[left]).abs() < (ordered[right] - edges).abs()
    nearest = torch.where(use_left, left, right)
    close = (ordered[nearest] - edges).abs() <= MATCH_TOLERANCE
    return torch.where(close, order[nearest], torch.full_like(nearest, -1))


def _squares_and_scale(grads: Sequence[Tensor]) -> Tuple[List[Tensor], Tensor]:
    """``g²`` per input and ``1 / ‖g‖²`` per point and example ``(S, N)`` (0 for g = 0)."""
    squares = [g.square() for g in grads]
    norm = sum(s.flatten(2).sum(2) for s in squares)  # (S, N)
    scale = torch.where(norm > 0, 1.0 / norm.clamp_min(torch.finfo(norm.dtype).tiny), 0.0)
    return squares, scale


def idgi_shares(grads: Sequence[Tensor]) -> List[Tensor]:
    """``g² / ‖g‖²`` per point and example, the norm taken over every input's features.

    Args:
        grads: one tensor per input, ``(S, N, ...)``.

    Returns:
        list[Tensor]: one per input, shape of its gradient; the shares of a point and
        example sum to 1 over all inputs (0 where the gradient is 0).
    """
    squares, scale = _squares_and_scale(grads)
    return [s * scale.reshape(*scale.shape, *[1] * (s.dim() - 2)) for s in squares]


class _IdgiSum:
    """``Σ_s shares_s · (F(edge s + 1) - F(edge s))``, added chunk by chunk.

    ``edge_outputs`` holds F at the edges known beforehand (``known``); the others are
    nodes (``edge_node``), whose outputs arrive with their chunk. A cell whose end is a
    node of a later chunk waits, its squared gradient kept (one point's worth for a left
    rule).
    """

    def __init__(self, edge_outputs: Tensor, known: Tensor, edge_node: Tensor) -> None:
        self.outputs, self.known, self.edge_node = edge_outputs, known, edge_node
        self.totals: Optional[List[Tensor]] = None
        self.waiting: List[Tuple[int, List[Tensor], Tensor]] = []

    def add(self, chunk: GradientChunk) -> None:
        start, stop, grads, outputs = chunk
        if outputs is not None:
            edges = torch.nonzero((self.edge_node >= start) & (self.edge_node < stop))[:, 0]
            self.outputs[edges] = outputs[self.edge_node[edges] - start].to(self.outputs.dtype)
            self.known[edges] = True
        squares, scale = _squares_and_scale(grads)
        if self.totals is None:
            self.totals = [torch.zeros_like(s[0]) for s in squares]
        cells = torch.arange(start, stop)
        ready = self.known[cells] & self.known[cells + 1]
        if bool(ready.all()):
            self._add(cells, squares, scale)
        else:
            self._add(cells[ready], [s[ready] for s in squares], scale[ready])
            for i in torch.nonzero(~ready)[:, 0].tolist():
                kept = [s[i : i + 1].clone() for s in squares]
                self.waiting.append((start + i, kept, scale[i : i + 1].clone()))
        self._add_waiting()

    def _add(self, cells: Tensor, squares: List[Tensor], scale: Tensor) -> None:
        """Adds ``Σ_s g_s² · (F(edge s + 1) - F(edge s)) / ‖g_s‖²`` over ``cells``."""
        change = self.outputs[cells + 1] - self.outputs[cells]  # (count, N)
        for total, s in zip(self.totals, squares):
            weight = scale * change.to(s.device, scale.dtype)
            total += torch.einsum("sn,sn...->n...", weight.to(s.dtype), s)

    def _add_waiting(self) -> None:
        still = []
        for cell, squares, scale in self.waiting:
            if self.known[cell] and self.known[cell + 1]:
                self._add(torch.tensor([cell]), squares, scale)
            else:
                still.append((cell, squares, scale))
        self.waiting = still

    def result(self) -> Tuple[Tensor, ...]:
        if self.waiting or self.totals is None:
            raise RuntimeError("IDGI: the outputs at some cell edges were never computed")
        return tuple(self.totals)


def idgi_path_sum(
    gradients: GradientFunc,
    forward_func: Callable,
    node_points: Callable[[int, int], Tuple[Tensor, ...]],
    edge_points: Callable[[Tensor], Tuple[Tensor, ...]],
    edge_node: Tensor,
    num_examples: int,
    **run,
) -> Tuple[Tensor, ...]:
    """IDGI over a path of ``S`` nodes and ``S + 1`` cell edges, one total per input.

    Args:
        gradients: the gradient function of :func:`captum_rig.attr._path.path_gradients`;
            if it gives the outputs (``input_gradients(..., outputs=True)``), the edges
            that are nodes take their outputs from it.
        forward_func: the model, for the edges that are not nodes.
        node_points: ``node_points(start, stop)``, the nodes' points of every input,
            ``(stop - start, N, ...)``.
        edge_points: ``edge_points(index)``, the points of the edges ``index`` (a 1-D
            long tensor).
        edge_node: ``(S + 1,)``, the node at each edge or -1 (:func:`match_nodes`); all
            -1 when ``gradients`` gives no outputs.
        num_examples: N.
        **run: ``target``, ``additional_forward_args``, ``internal_batch_size``,
            ``point_bytes``, as for ``path_gradients``.

    Returns:
        tuple[Tensor, ...]: ``Σ_s g_s² / ‖g_s‖² · (F(edge s + 1) - F(edge s))``, shape of
        each gradient's ``(N, ...)``.
    """
    n_nodes = len(edge_node) - 1
    outputs = torch.zeros(n_nodes + 1, num_examples, dtype=torch.float64)
    known = torch.zeros(n_nodes + 1, dtype=torch.bool)
    # Edges that no gradient pass evaluates: forward passes only, through the same loop.
    missing = torch.nonzero(edge_node < 0)[:, 0]
    if len(missing):
        for start, stop, _, values in path_gradients(
            forward_outputs(forward_func),
            len(missing),
            lambda a, b: edge_points(missing[a:b]),
            num_examples,
            **run,
        ):
            outputs[missing[start:stop]] = values.to(outputs.dtype).cpu()
            known[missing[start:stop]] = True
    total = _IdgiSum(outputs, known, edge_node)
    for chunk in path_gradients(gradients, n_nodes, node_points, num_examples, **run):
        total.add(chunk._replace(outputs=None if chunk.outputs is None else chunk.outputs.cpu()))
    return total.result()
