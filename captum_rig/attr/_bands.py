"""Band quadrature on a path: nodes per band, Gauss–Legendre cells, sums by band.

:func:`~captum_rig.attr.rank_contributions` (bands of ranks) and
:func:`~captum_rig.fourier.frequency_contributions` (bands of frequencies) integrate the
gradient along a path the same way; the path only has to give its images at given
positions and the change of the image over a cell.
"""

from typing import Callable, List, Protocol, Tuple

import torch
from captum.attr import GradientAttribution
from torch import Tensor

from captum_rig.attr._guards import kept_buffers
from captum_rig.attr._path import input_gradients, path_gradients
from captum_rig.attr.rank_path import path_nodes

__all__ = ["NODES_PER_BAND", "BandPath", "allocate_nodes", "band_nodes", "integrate_bands"]

# Gradient evaluations per band when the caller gives no n_steps.
NODES_PER_BAND = 5


class BandPath(Protocol):
    """A path from a baseline to an input, indexed by position (rank or frequency)."""

    def images(self, positions: Tensor) -> Tensor:
        """``(S·N, C, H, W)``: the path's images at ``S`` positions."""

    def displacement(self, starts: Tensor, stops: Tensor) -> Tensor:
        """``(S, N, C, H, W)``: the image's change from each start to its stop."""


def allocate_nodes(budget: int, sizes: Tensor) -> List[int]:
    """``budget`` nodes over the bands: one each, the rest in proportion to ``sizes``.

    Largest remainders, so the counts sum to ``budget`` exactly.
    """
    counts = torch.ones(len(sizes), dtype=torch.long)
    spare = budget - len(sizes)
    if spare > 0:
        share = sizes.double() / sizes.double().sum().clamp_min(1e-300) * spare
        extra = share.floor().long()
        order = torch.argsort(share - extra, descending=True)
        extra[order[: spare - int(extra.sum())]] += 1
        counts += extra
    return counts.tolist()


def band_nodes(edges: List[int], counts: List[int]) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gauss-Legendre nodes in every band and the cells they stand for.

    Returns:
        (nodes, cell starts, cell stops, band index), each of shape ``(S,)``: ranks in
        ``[0, w]`` and, for the last, the band of each node.
    """
    nodes, starts, stops, band = [], [], [], []
    for j, (low, high, count) in enumerate(zip(edges, edges[1:], counts)):
        length = high - low
        alphas, cells = path_nodes("gausslegendre", count)
        cells = low + length * cells
        cells[-1] = high  # the band's end, exactly
        nodes.append(low + length * alphas)
        starts.append(cells[:-1])
        stops.append(cells[1:])
        band.append(torch.full((count,), j, dtype=torch.long))
    return torch.cat(nodes), torch.cat(starts), torch.cat(stops), torch.cat(band)


def integrate_bands(
    forward_func: Callable,
    inputs: Tuple[Tensor, ...],
    paths: Tuple[BandPath, ...],
    quadrature: Tuple[Tensor, Tensor, Tensor, Tensor],
    n_bands: int,
    **run,
) -> Tuple[Tensor, ...]:
    """Σ over nodes of ∇F(node) · (x(cell stop) - x(cell start)), by band: (N, C, m)."""
    nodes, starts, stops, band = quadrature
    num_examples = inputs[0].shape[0]
    totals = [
        torch.zeros((num_examples, x.shape[1], n_bands), dtype=torch.float64, device=x.device)
        for x in inputs
    ]

    def make_points(start: int, stop: int) -> Tuple[Tensor, ...]:
        return tuple(p.images(nodes[start:stop]) for p in paths)

    chunks = path_gradients(
        input_gradients(GradientAttribution(forward_func)),
        len(nodes),
        make_points,
        num_examples,
        **run,
    )
    # A train-mode model's BatchNorm statistics are put back afterwards.
    with kept_buffers(forward_func):
        for start, stop, grads, _ in chunks:
            for total, grad, p in zip(totals, grads, paths):
                increments = p.displacement(starts[start:stop], stops[start:stop])
                # (S, N, C): each node's share, summed over the H×W plane of its channel
                shares = (grad.to(increments.dtype) * increments).sum((-2, -1))
                index = band[start:stop].to(total.device)
                total.index_add_(2, index, shares.to(torch.float64).permute(1, 2, 0))
    return tuple(t.to(x.dtype) for t, x in zip(totals, inputs))
