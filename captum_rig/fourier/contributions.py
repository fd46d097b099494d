"""Frequency contributions: the complete low-pass path integral, split by radius band.

The counterpart of :func:`~captum_rig.attr.rank_contributions.rank_contributions` along
the low-pass path of :class:`~captum_rig.fourier.filters.FrequencyPath`: the image built
up band by band of DFT frequency radius, from 0.

References:
    Yin, Lopes, Shlens, Cubuk, Gilmer. A Fourier Perspective on Model Robustness in
    Computer Vision. NeurIPS 2019.
"""

import math
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from captum_rig._captum import TargetType, TensorOrTupleOfTensorsGeneric, format_output
from captum_rig._checks import check_int, check_real
from captum_rig.attr._bands import NODES_PER_BAND, allocate_nodes, band_nodes, integrate_bands
from captum_rig.attr._path import example_bytes, format_baselines, format_inputs
from captum_rig.fourier.filters import FrequencyPath, max_radius

__all__ = ["frequency_contributions"]


class _BandPath:
    """The band path of ``x - b`` from ``b``, walked as a rank path is (``integrate_bands``)."""

    def __init__(self, images: Tensor, baseline: Optional[Tensor], bands: List[float]) -> None:
        self.baseline, self.bands = baseline, bands
        self.path = FrequencyPath(images if baseline is None else images - baseline)

    def images(self, t: Tensor) -> Tensor:
        points = self.path.points(t, self.bands)
        return points if self.baseline is None else points + self.baseline

    def displacement(self, start: Tensor, stop: Tensor) -> Tensor:
        return self.path.displacement(start, stop, self.bands)


def _check_bands(bands: object, largest: float) -> List[float]:
    """``bands`` as increasing floats ``r_1 < ... < r_m`` with ``r_m >= largest``, or raises."""
    if isinstance(bands, Tensor):
        if bands.dim() != 1 or bands.is_complex() or bands.dtype == torch.bool:
            raise TypeError(f"bands must be a 1-D sequence of radii, got a tensor {bands!r}")
        bands = bands.tolist()
    if isinstance(bands, (str, bytes)) or not isinstance(bands, Sequence):
        raise TypeError(f"bands must be a sequence of radii, got {type(bands).__name__}")
    edges = [check_real(r, name=f"bands[{i}]") for i, r in enumerate(bands)]
    if not edges:
        raise ValueError("bands must not be empty")
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"bands must be strictly increasing, got {edges}")
    if edges[-1] < largest:
        raise ValueError(
            f"bands must end at or beyond the largest radius sqrt((H // 2)² + (W // 2)²) = "
            f"{largest:.6g}, so that every frequency is in a band, got {edges}"
        )
    return edges


def frequency_contributions(
    forward_func: Callable,
    inputs: TensorOrTupleOfTensorsGeneric,
    target: TargetType = None,
    additional_forward_args: Optional[object] = None,
    baselines: Union[None, float, Tensor, Tuple[Union[float, Tensor], ...]] = None,
    bands: Optional[Sequence[float]] = None,
    n_steps: Optional[int] = None,
    internal_batch_size: Optional[int] = None,
) -> Union[Tensor, Tuple[Tensor, ...]]:
    r"""How much of ``F(x) - F(0)`` each band of spatial frequencies of each channel accounts for.

    With band edges ``r_1 < ... < r_m`` (radii of the 2-D DFT frequencies, the last at
    least the largest radius) band ``j`` holds the frequencies with
    ``r_{j-1} < sqrt(f_y² + f_x²) <= r_j`` and its part of each channel is
    ``d_j = low_pass(x, r_j) - low_pass(x, r_{j-1})`` (``d_1 = low_pass(x, r_1)``). Along
    the low-pass path ``x(t) = Σ_j clamp(t - j + 1, 0, 1) d_j``, ``t ∈ [0, m]`` (``b +``
    the path of ``x - b`` with baselines), which passes every low-pass image
    ``x(j) = low_pass(x, r_j)``,

    .. math::
        c_{n,c,j} = \int_{j-1}^{j} ∇F(x(t)) · d_j \, dt

    splits the complete path integral by band: ``Σ_{c,j} c = F(x) - F(x(0))`` up to the
    quadrature error, and ``c`` is exact for a linear model (then ``c_j = ∇F · d_j``).

    The path and gradient machinery is
    :func:`~captum_rig.attr.rank_contributions.rank_contributions`'s: ``n_steps``
    Gauss-Legendre nodes spread evenly over the bands (at least one each), each node's
    gradient times the exact path increment over its cell.

    Args:
        forward_func (Callable): the model; it should contain its own normalization.
        inputs (Tensor or tuple[Tensor, ...]): images ``(N, C, H, W)`` in pixel space, or
            a tuple of such tensors with one ``N``.
        target (int, tuple, Tensor or list, optional): as in Captum's
            IntegratedGradients.
        additional_forward_args (Any, optional): as in Captum's IntegratedGradients.
        baselines (float, Tensor or tuple, optional): the path's start ``b``, broadcastable
            to each input; None: zeros.
        bands (sequence of float, optional): band edges, strictly increasing, ``>= 0``,
            the last ``>= sqrt((H // 2)² + (W // 2)²)`` for every input. None: ``0, 1,
            ..., ceil`` of that radius: the mean alone, then rings of width 1.
        n_steps (int, optional): gradient evaluations per example, at least one per
            band; None: ``5 · m``.
        internal_batch_size (int, optional): examples per forward/backward pass, as in
            Captum; None: bounded by count and bytes as in ``rank_contributions``.

    Returns:
        Tensor or tuple[Tensor, ...]: ``(N, C, m)`` in the input's dtype; a tuple for
        tuple inputs.

    Examples:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
        >>> x = torch.rand(2, 3, 8, 8)
        >>> c = frequency_contributions(model, x, target=0)
        >>> c.shape  # 7 bands: radius 0, (0, 1], ..., (5, 6]
        torch.Size([2, 3, 7])
        >>> delta = model(x)[:, 0] - model(torch.zeros_like(x))[:, 0]
        >>> bool(torch.allclose(c.sum((1, 2)), delta, atol=1e-5))
        True
        >>> frequency_contributions(model, x, target=0, bands=[1, 6]).shape
        torch.Size([2, 3, 2])
    """
    is_inputs_tuple, formatted = format_inputs(inputs)
    largest = max(max_radius(*x.shape[-2:]) for x in formatted)
    if bands is None:  # the mean alone, then rings of width 1
        edges = [float(r) for r in range(math.ceil(largest) + 1)]
    else:
        edges = _check_bands(bands, largest)
    n_bands = len(edges)
    n_steps = NODES_PER_BAND * n_bands if n_steps is None else n_steps
    n_steps = check_int(n_steps, name="n_steps", low=n_bands)
    paths = tuple(
        _BandPath(x, b, edges) for x, b in zip(formatted, format_baselines(baselines, formatted))
    )
    counts = allocate_nodes(n_steps, torch.ones(n_bands, dtype=torch.float64))
    quadrature = band_nodes(list(range(n_bands + 1)), counts)
    totals = integrate_bands(
        forward_func,
        formatted,
        paths,  # type: ignore[arg-type]
        quadrature,
        n_bands,
        target=target,
        additional_forward_args=additional_forward_args,
        internal_batch_size=internal_batch_size,
        point_bytes=example_bytes(formatted),
    )
    return format_output(is_inputs_tuple, totals)
