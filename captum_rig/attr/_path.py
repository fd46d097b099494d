"""The one loop every path method here shares: gradients at path points, in chunks.

A path method evaluates ∂F_target/∂x at S points of a path and combines them with
per-point multipliers. This module streams the points in chunks of at most
``internal_batch_size`` examples through Captum's own gradient machinery, laid out as
Captum's IntegratedGradients lays them out (step-major: all N examples of step 0, then
step 1, ...), so targets and additional forward arguments behave exactly as there.
"""

import warnings
from typing import Callable, Iterator, Optional, Tuple, Union

import torch
from captum._utils.common import (
    _expand_additional_forward_args,
    _expand_target,
    _format_additional_forward_args,
    _format_output,
)
from captum._utils.typing import TargetType
from captum.attr._utils.attribution import GradientAttribution
from torch import Tensor

from captum_rig._checks import check_images, check_int

# Examples per forward/backward pass when the caller gives no internal_batch_size:
# bounded, so that the w rank images of a batch are never all in memory at once.
DEFAULT_EXAMPLES_PER_PASS = 64

INPUTS_LAYOUT = "(N, C, H, W)"

# make_points(start, stop) -> one tensor per input, shape (stop - start, N, C, H, W)
PointMaker = Callable[[int, int], Tuple[Tensor, ...]]


def format_inputs(inputs: object) -> Tuple[bool, Tuple[Tensor, ...]]:
    """``(is_tuple, inputs as a tuple)``, after checking every tensor (see check_inputs).

    Raises a TypeError for anything but a tensor or a tuple of tensors (Captum only
    asserts, which ``python -O`` removes).
    """
    is_tuple = isinstance(inputs, tuple)
    formatted = inputs if is_tuple else (inputs,)
    if not formatted:
        raise ValueError("inputs must not be an empty tuple")
    for x in formatted:
        if not isinstance(x, Tensor):
            got = f"a tuple holding {type(x).__name__}" if is_tuple else type(x).__name__
            raise TypeError(f"inputs must be a torch.Tensor or a tuple of torch.Tensor, got {got}")
    check_inputs(formatted)
    return is_tuple, formatted


def check_inputs(inputs: Tuple[Tensor, ...]) -> None:
    """Raises unless every input is a finite float (N, C, H, W) tensor with one N."""
    for i, x in enumerate(inputs):
        name = "inputs" if len(inputs) == 1 else f"inputs[{i}]"
        check_images(x, name=name, ndim=4, layout=INPUTS_LAYOUT)
    sizes = {x.shape[0] for x in inputs}
    if len(sizes) > 1:
        raise ValueError(
            f"all inputs must have the same batch size, got {[x.shape[0] for x in inputs]}"
        )


def points_per_pass(num_examples: int, internal_batch_size: Optional[int]) -> int:
    """Path points per forward pass, as Captum's ``_batch_attribution`` computes it."""
    if internal_batch_size is None:
        return max(1, DEFAULT_EXAMPLES_PER_PASS // num_examples)
    internal_batch_size = check_int(internal_batch_size, name="internal_batch_size", low=1)
    if internal_batch_size < num_examples:
        warnings.warn(
            "Internal batch size cannot be less than the number of input examples. "
            f"Defaulting to internal batch size of {num_examples} equal to the number "
            "of examples.",
            stacklevel=3,
        )
    return max(1, internal_batch_size // num_examples)


def path_gradients(
    attribution: GradientAttribution,
    n_points: int,
    make_points: PointMaker,
    num_examples: int,
    target: TargetType = None,
    additional_forward_args: Optional[object] = None,
    internal_batch_size: Optional[int] = None,
) -> Iterator[Tuple[int, int, Tuple[Tensor, ...]]]:
    """Yields ``(start, stop, grads)`` for consecutive chunks of the ``n_points`` points.

    Args:
        attribution: the method; its ``forward_func`` and ``gradient_func`` are used.
        n_points: number of path points S.
        make_points: builds the points ``start..stop`` of every input, each of shape
            ``(stop - start, N, C, H, W)``.
        num_examples: N.
        target, additional_forward_args: as in Captum's IntegratedGradients.
        internal_batch_size: examples per pass (None: a bounded default).

    Yields:
        ``grads``: one tensor per input, shape ``(stop - start, N, C, H, W)``, detached.
    """
    step = points_per_pass(num_examples, internal_batch_size)
    additional_forward_args = _format_additional_forward_args(additional_forward_args)
    for start in range(0, n_points, step):
        stop = min(start + step, n_points)
        count = stop - start
        points = tuple(
            p.reshape(count * num_examples, *p.shape[2:]).requires_grad_()
            for p in make_points(start, stop)
        )
        expanded_args = (
            _expand_additional_forward_args(additional_forward_args, count)
            if additional_forward_args is not None
            else None
        )
        with torch.enable_grad():
            grads = attribution.gradient_func(
                forward_fn=attribution.forward_func,
                inputs=points,
                target_ind=_expand_target(target, count),
                additional_forward_args=expanded_args,
            )
        yield (
            start,
            stop,
            tuple(g.detach().reshape(count, num_examples, *g.shape[1:]) for g in grads),
        )


def attribution_result(
    attribution: GradientAttribution,
    is_inputs_tuple: bool,
    attributions: Tuple[Tensor, ...],
    inputs: Tuple[Tensor, ...],
    start_points: Callable[[], Tuple[Tensor, ...]],
    target: TargetType = None,
    additional_forward_args: Optional[object] = None,
    return_convergence_delta: bool = False,
) -> Union[Tensor, Tuple[Tensor, ...], Tuple[Union[Tensor, Tuple[Tensor, ...]], Tensor]]:
    """What ``attribute`` returns: tuple in, tuple out, and the delta when asked for.

    Args:
        attribution: the method; its ``compute_convergence_delta`` gives the delta.
        is_inputs_tuple: whether the caller passed a tuple of inputs.
        attributions: one tensor per input.
        inputs: the formatted inputs, the path's end points.
        start_points: builds the path's start points (called only for the delta).
        target, additional_forward_args: as in Captum's IntegratedGradients.
        return_convergence_delta: also return ``Σ attributions - (F(end) - F(start))``
            per example, shape ``(N,)``.
    """
    output = _format_output(is_inputs_tuple, attributions)
    if not return_convergence_delta:
        return output
    delta = attribution.compute_convergence_delta(
        attributions,
        start_points(),
        inputs,
        additional_forward_args=additional_forward_args,
        target=target,
    )
    return output, delta
