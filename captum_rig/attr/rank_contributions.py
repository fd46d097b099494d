"""Rank contributions: the complete rank-path integral, split by singular component.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

import numbers
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from captum_rig._captum import (
    TargetType,
    TensorOrTupleOfTensorsGeneric,
    format_output,
)
from captum_rig._checks import check_int
from captum_rig.attr._bands import NODES_PER_BAND, allocate_nodes, band_nodes, integrate_bands
from captum_rig.attr._path import example_bytes, format_inputs
from captum_rig.attr.rank_path import BaselineType, rank_paths

__all__ = ["rank_contributions"]

# Gradient evaluations per image when the caller gives no n_steps.
NODES_PER_RANK = 4


def _check_bands(bands: object, width: int) -> List[int]:
    """Returns ``bands`` as a list of ints ``0 = r_0 < ... < r_m = width``, or raises.

    Args:
        bands (sequence of int, or 1-D integer Tensor or numpy array): band edges.
        width (int): ``w = min(H, W)``, the last edge.

    Raises:
        TypeError/ValueError naming ``bands``.
    """
    if isinstance(bands, Tensor):
        if bands.dim() != 1 or bands.is_floating_point() or bands.dtype == torch.bool:
            raise TypeError(f"bands must be a 1-D sequence of ints, got a tensor {bands!r}")
        bands = bands.tolist()
    elif isinstance(bands, np.ndarray):
        if bands.ndim != 1 or bands.dtype.kind not in "iu":
            raise TypeError(f"bands must be a 1-D sequence of ints, got an array {bands!r}")
        bands = bands.tolist()
    if isinstance(bands, (str, bytes)) or not isinstance(bands, Sequence):
        raise TypeError(f"bands must be a sequence of ints, got {type(bands).__name__}")
    for edge in bands:
        if isinstance(edge, bool) or not isinstance(edge, numbers.Integral):
            raise TypeError(f"bands must hold ints, got {edge!r} in {list(bands)}")
    edges = [int(edge) for edge in bands]
    if len(edges) < 2 or edges[0] != 0 or edges[-1] != width:
        raise ValueError(f"bands must start at 0 and end at w = min(H, W) = {width}, got {edges}")
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"bands must be strictly increasing, got {edges}")
    return edges


def rank_contributions(
    forward_func: Callable,
    inputs: TensorOrTupleOfTensorsGeneric,
    target: TargetType = None,
    additional_forward_args: Optional[object] = None,
    baselines: BaselineType = None,
    bands: Optional[Sequence[int]] = None,
    n_steps: Optional[int] = None,
    internal_batch_size: Optional[int] = None,
) -> Union[Tensor, Tuple[Tensor, ...]]:
    r"""How much of ``F(x) - F(0)`` each singular component of each channel accounts for.

    Along RIG's continuous rank path ``x(t) = Σ_i clamp(t - i + 1, 0, 1) σ_i u_i v_iᵀ``
    (per channel; ``b +`` the rank path of ``x - b`` with baselines), the velocity on
    ``[i, i + 1]`` is exactly the (i+1)-th rank-one term, so

    .. math::
        c_{n,c,i} = \int_i^{i+1} ∇F(x(t)) · σ_{i+1} u_{i+1} v_{i+1}ᵀ \, dt

    splits the complete path integral by singular component: ``Σ_{c,i} c = F(x) - F(x(0))``
    up to the quadrature error, and ``c`` is exact for a linear model. With ``bands``
    ``0 = r_0 < ... < r_m = w`` entry ``j`` is the integral over ``[r_j, r_{j+1}]``: a
    cheap overview.

    The ``n_steps`` gradient evaluations are spread over the bands (the ranks without
    ``bands``), at least one each, the rest in proportion to ``Σ 1/(i+1)`` over the band:
    top components move the path most. Each band gets Gauss-Legendre nodes; each node's
    gradient multiplies the exact path increment over its cell, so the entries of a linear
    model are exact whatever the number of nodes.

    Args:
        forward_func (Callable): the model; it should contain its own normalization.
        inputs (Tensor or tuple[Tensor, ...]): images ``(N, C, H, W)`` in pixel space, or
            a tuple of such tensors with one ``N`` and one ``min(H, W) >= 2``.
        target (int, tuple, Tensor or list, optional): as in Captum's
            IntegratedGradients.
        additional_forward_args (Any, optional): as in Captum's IntegratedGradients.
        baselines (float, Tensor or tuple, optional): the path's start ``b``, broadcastable
            to each input; None: zeros.
        bands (sequence of int, optional): band edges ``0 = r_0 < ... < r_m = w`` (a
            list, or a 1-D integer tensor or numpy array); None: one entry per rank.
        n_steps (int, optional): gradient evaluations per example, at least one per
            band; None: ``4 · w`` without ``bands`` (about 1 % from ``F(x) - F(x(0))``
            for small CNNs, a few % for some ReLU networks: raise it and compare the
            sum with the output difference), ``5 · m`` with ``m`` bands.
        internal_batch_size (int, optional): examples per forward/backward pass, as in
            Captum; None: at most 64 examples and at most
            ``captum_rig.attr._path.DEFAULT_PASS_BYTES`` (32 MiB) of path points.

    Returns:
        Tensor or tuple[Tensor, ...]: ``(N, C, w)``, or ``(N, C, m)`` with ``m`` bands,
        in the input's dtype; a tuple for tuple inputs.

    Examples:
        >>> from captum.testing.helpers.basic_models import BasicModel_ConvNet_One_Conv
        >>> model = BasicModel_ConvNet_One_Conv()
        >>> x = torch.rand(2, 1, 4, 4)
        >>> rank_contributions(model, x, target=0).shape
        torch.Size([2, 1, 4])
        >>> rank_contributions(model, x, target=0, bands=[0, 1, 4]).shape
        torch.Size([2, 1, 2])

    References:
        Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
        arXiv:2012.03516.
    """
    is_inputs_tuple, formatted = format_inputs(inputs)
    paths = rank_paths(formatted, baselines)
    widths = {p.width for p in paths}
    if len(widths) > 1:
        raise ValueError(
            "inputs must share one min(H, W) so that their ranks line up, got "
            f"{[p.width for p in paths]}"
        )
    width = widths.pop()
    edges = list(range(width + 1)) if bands is None else _check_bands(bands, width)
    n_bands = len(edges) - 1
    if n_steps is None:
        n_steps = (NODES_PER_RANK * width) if bands is None else (NODES_PER_BAND * n_bands)
    n_steps = check_int(n_steps, name="n_steps", low=n_bands)
    # Nodes go where paths typically move most: the (i+1)-th component moves the path by
    # σ_{i+1}, which falls roughly like 1/(i+1) for natural images. A fixed profile rather
    # than this batch's σ keeps every example's result independent of its batch.
    profile = 1.0 / torch.arange(1, width + 1, dtype=torch.float64)
    band_sizes = torch.stack([profile[a:b].sum() for a, b in zip(edges, edges[1:])])
    nodes, starts, stops, band = band_nodes(edges, allocate_nodes(n_steps, band_sizes))
    totals = integrate_bands(
        forward_func,
        formatted,
        paths,
        (nodes, starts, stops, band),
        n_bands,
        target=target,
        additional_forward_args=additional_forward_args,
        internal_batch_size=internal_batch_size,
        point_bytes=example_bytes(formatted),
    )
    return format_output(is_inputs_tuple, totals)
