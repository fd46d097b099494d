"""The one loop every path method here shares: gradients at path points, in chunks.

A path method evaluates ∂F_target/∂x (or ∂F_target/∂a for a layer's value a) at S
points of a path and combines them with per-point multipliers. This module streams the
points in chunks of at most ``internal_batch_size`` examples through Captum's own
gradient machinery (:func:`path_gradients`), laid out as Captum's IntegratedGradients
lays them out (step-major: all N examples of step 0, then step 1, ...), so targets and
additional forward arguments behave exactly as there; :func:`path_sum` adds up each
chunk's share. A gradient function may also hand back ``F_target`` at the points from the
same forward pass (:func:`input_gradients` with ``outputs=True``), or only the outputs
(:func:`forward_outputs`, no backward pass): IDGI needs both, through this same loop.
"""

import math
import warnings
from typing import Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from captum.attr import GradientAttribution
from torch import Tensor, nn

from captum_rig._captum import (
    TargetType,
    compute_layer_gradients_and_eval,
    expand_additional_forward_args,
    expand_target,
    format_additional_forward_args,
    format_output,
    run_forward,
)
from captum_rig._checks import check_images, check_int, check_real
from captum_rig.attr._guards import warn_if_incomplete

# When the caller gives no internal_batch_size, a forward/backward pass takes at most
# DEFAULT_EXAMPLES_PER_PASS examples and at most DEFAULT_PASS_BYTES bytes of path points
# (one point of every input, in the inputs' dtype): the model's activations grow with
# both, so small images get the usual batch and a 1024×1024 image one or two per pass.
DEFAULT_EXAMPLES_PER_PASS = 64
DEFAULT_PASS_BYTES = 32 * 2**20

INPUTS_LAYOUT = "(N, C, H, W)"

# make_points(start, stop) -> one tensor per input, shape (stop - start, N, C, H, W)
PointMaker = Callable[[int, int], Tuple[Tensor, ...]]

# gradients(points, target, args) -> (one gradient per input (or per layer value) at the
# stacked points (S · N, ...), the target outputs (S · N,) or None), the target and
# arguments already expanded to match.
GradientFunc = Callable[
    [Tuple[Tensor, ...], TargetType, Optional[object]],
    Tuple[Tuple[Tensor, ...], Optional[Tensor]],
]


class GradientChunk(NamedTuple):
    """What :func:`path_gradients` yields for the points ``start..stop``."""

    start: int
    stop: int
    grads: Tuple[Tensor, ...]  # one per input (or layer value), (stop - start, N, ...)
    outputs: Optional[Tensor]  # F_target at the points, (stop - start, N), when asked for


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


def example_bytes(inputs: Tuple[Tensor, ...]) -> int:
    """Bytes of one path point of one example: one ``(C, H, W)`` slice of every input."""
    return sum(x[0].numel() * x.element_size() for x in inputs)


def points_per_pass(
    num_examples: int, internal_batch_size: Optional[int], point_bytes: int = 0
) -> int:
    """Path points per forward pass, as Captum's ``_batch_attribution`` computes it.

    Args:
        num_examples: N, the examples every path point holds.
        internal_batch_size: examples per pass; None: at most
            ``DEFAULT_EXAMPLES_PER_PASS`` examples and ``DEFAULT_PASS_BYTES`` bytes.
        point_bytes: bytes of one point of one example (:func:`example_bytes`); 0: the
            byte bound is not applied.

    Returns:
        int: points per pass, at least 1 (one point holds N examples).
    """
    if internal_batch_size is None:
        examples = DEFAULT_EXAMPLES_PER_PASS
        if point_bytes > 0:
            examples = min(examples, DEFAULT_PASS_BYTES // point_bytes)
        return max(1, examples // num_examples)
    internal_batch_size = check_int(internal_batch_size, name="internal_batch_size", low=1)
    if internal_batch_size < num_examples:
        warnings.warn(
            "Internal batch size cannot be less than the number of input examples. "
            f"Defaulting to internal batch size of {num_examples} equal to the number "
            "of examples.",
            stacklevel=3,
        )
    return max(1, internal_batch_size // num_examples)


def format_baselines(baselines: object, inputs: Tuple[Tensor, ...]) -> Tuple[Optional[Tensor], ...]:
    """One baseline per input: None (zeros) or a tensor broadcastable to the input.

    Args:
        baselines: None (zeros), a number, a tensor broadcastable to every input, or a
            tuple of numbers/tensors with one entry per input.
        inputs: the formatted inputs, each ``(N, C, H, W)``.

    Returns:
        tuple: None for a baseline of None, else a finite tensor broadcastable to the
        input (not expanded: a ``(1, C, H, W)`` baseline stays small), in the input's
        dtype and device, detached.

    Raises:
        TypeError, ValueError: naming ``baselines`` (or ``baselines[i]``).
    """
    if baselines is None:
        return (None,) * len(inputs)
    if isinstance(baselines, tuple):
        if len(baselines) != len(inputs):
            raise ValueError(
                f"baselines must have one entry per input ({len(inputs)}), got {len(baselines)}"
            )
        named = [
            (b, f"baselines[{i}]" if len(inputs) > 1 else "baselines")
            for i, b in enumerate(baselines)
        ]
    else:
        named = [(baselines, "baselines")] * len(inputs)
    return tuple(_baseline(b, x, name) for (b, name), x in zip(named, inputs))


def _baseline(baseline: object, x: Tensor, name: str) -> Optional[Tensor]:
    """One checked baseline for input ``x`` (see :func:`format_baselines`)."""
    if baseline is None:
        return None
    if isinstance(baseline, Tensor):
        try:
            shape = torch.broadcast_shapes(baseline.shape, x.shape)
        except RuntimeError:
            shape = None
        if shape != x.shape:
            raise ValueError(
                f"{name} must broadcast to the input's shape {tuple(x.shape)}, got shape "
                f"{tuple(baseline.shape)}"
            )
        if baseline.is_complex() or baseline.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers, got dtype {baseline.dtype}")
        b = baseline.detach().to(device=x.device, dtype=x.dtype)
        if not bool(torch.isfinite(b).all()):
            raise ValueError(f"{name} contains NaN or Inf values")
        return b
    value = check_real(baseline, name=name, low=-math.inf)
    return torch.tensor(value, dtype=x.dtype, device=x.device)


def expand_args(additional_forward_args: Optional[object], count: int) -> Optional[object]:
    """Formatted additional forward arguments repeated for ``count`` stacked path points."""
    if additional_forward_args is None:
        return None
    return expand_additional_forward_args(additional_forward_args, count)


def path_chunks(
    n_points: int,
    make_points: PointMaker,
    num_examples: int,
    additional_forward_args: Optional[object] = None,
    internal_batch_size: Optional[int] = None,
    point_bytes: int = 0,
) -> Iterator[Tuple[int, int, Tuple[Tensor, ...], Optional[object]]]:
    """Yields ``(start, stop, points, args)`` for consecutive chunks of the path points.

    ``points`` holds one tensor per input, shape ``((stop - start) · N, C, H, W)``, laid
    out step-major as Captum's IntegratedGradients lays them out, and ``args`` the
    additional forward arguments expanded to match, so targets expand exactly as there.
    """
    step = points_per_pass(num_examples, internal_batch_size, point_bytes)
    additional_forward_args = format_additional_forward_args(additional_forward_args)
    for start in range(0, n_points, step):
        stop = min(start + step, n_points)
        count = stop - start
        points = tuple(
            p.reshape(count * num_examples, *p.shape[2:]) for p in make_points(start, stop)
        )
        yield start, stop, points, expand_args(additional_forward_args, count)


def input_gradients(attribution: GradientAttribution, outputs: bool = False) -> GradientFunc:
    """∂F_target/∂x at the points, through the method's own ``gradient_func``.

    With ``outputs`` the gradients come from the forward pass that also gives
    ``F_target`` at the points (as Captum's ``compute_gradients`` computes them), so the
    outputs cost nothing extra.
    """

    def gradients(
        points: Tuple[Tensor, ...], target: TargetType, args: Optional[object]
    ) -> Tuple[Tuple[Tensor, ...], Optional[Tensor]]:
        points = tuple(p.requires_grad_() for p in points)
        with torch.enable_grad():
            if not outputs:
                grads = attribution.gradient_func(
                    forward_fn=attribution.forward_func,
                    inputs=points,
                    target_ind=target,
                    additional_forward_args=args,
                )
                return grads, None
            values = _target_outputs(attribution.forward_func, points, target, args)
            grads = torch.autograd.grad(torch.unbind(values), points)
        return grads, values.detach()

    return gradients


def forward_outputs(forward_func: Callable) -> GradientFunc:
    """``F_target`` at the points, without gradients (no gradient per input)."""

    def outputs(
        points: Tuple[Tensor, ...], target: TargetType, args: Optional[object]
    ) -> Tuple[Tuple[Tensor, ...], Optional[Tensor]]:
        with torch.no_grad():
            return (), _target_outputs(forward_func, points, target, args)

    return outputs


def _target_outputs(
    forward_func: Callable, points: Tuple[Tensor, ...], target: TargetType, args: Optional[object]
) -> Tensor:
    """``F_target`` at the stacked points, one scalar per point: shape ``(S · N,)``."""
    values = run_forward(forward_func, points, target=target, additional_forward_args=args)
    if not isinstance(values, Tensor) or values.dim() == 0 or values[0].numel() != 1:
        raise ValueError(
            "target must select one output per example (the forward function returns "
            f"more than one value per example: shape {tuple(torch.as_tensor(values).shape)})"
        )
    return values.reshape(values.shape[0])


def layer_gradients(
    forward_func: Callable,
    layer: nn.Module,
    device_ids: Optional[List[int]] = None,
    attribute_to_layer_input: bool = False,
) -> GradientFunc:
    """∂F_target/∂a at the points for the layer's output (or input) ``a``, via Captum.

    Captum's helper registers the hooks it needs and removes them in a ``finally``; its
    hooks keep one call of the layer per pass, so a layer called more than once in a
    forward pass is refused (a ValueError saying how often it was called).
    """
    calls = [0]

    def count(*_args: object) -> None:
        calls[0] += 1

    def gradients(
        points: Tuple[Tensor, ...], target: TargetType, args: Optional[object]
    ) -> Tuple[Tuple[Tensor, ...], Optional[Tensor]]:
        calls[0] = 0
        handle = layer.register_forward_pre_hook(count)
        try:
            grads, _ = compute_layer_gradients_and_eval(
                forward_func,
                layer,
                points,
                target_ind=target,
                additional_forward_args=args,
                device_ids=device_ids,
                attribute_to_layer_input=attribute_to_layer_input,
            )
        finally:
            handle.remove()
        # DataParallel runs replicas of the layer, whose calls are not counted here.
        if calls[0] > 1:
            raise ValueError(
                f"layer is called {calls[0]} times in one forward pass of forward_func; a "
                "layer attribution needs a layer called once (a reused module has no single "
                "value per example to attribute to): give each use its own module"
            )
        return grads, None

    return gradients


def path_gradients(
    gradients: GradientFunc,
    n_points: int,
    make_points: PointMaker,
    num_examples: int,
    target: TargetType = None,
    additional_forward_args: Optional[object] = None,
    internal_batch_size: Optional[int] = None,
    point_bytes: int = 0,
) -> Iterator[GradientChunk]:
    """Yields ``(start, stop, grads)`` for consecutive chunks of the ``n_points`` points.

    Args:
        gradients: :func:`input_gradients` or :func:`layer_gradients`.
        n_points: number of path points S.
        make_points: builds the points ``start..stop`` of every input, each of shape
            ``(stop - start, N, C, H, W)``.
        num_examples: N.
        target, additional_forward_args: as in Captum's IntegratedGradients.
        internal_batch_size: examples per pass (None: bounded by count and bytes).
        point_bytes: bytes of one point of one example, for the default's byte bound.

    Yields:
        GradientChunk: ``grads``, one tensor per input (or layer value), shape
        ``(stop - start, N, ...)``, detached; ``outputs``, ``F_target`` at the points,
        ``(stop - start, N)``, when ``gradients`` gives them (else None).
    """
    for start, stop, points, args in path_chunks(
        n_points,
        make_points,
        num_examples,
        additional_forward_args,
        internal_batch_size,
        point_bytes,
    ):
        count = stop - start
        grads, outputs = gradients(points, expand_target(target, count), args)
        if outputs is not None:
            outputs = by_step(outputs, count)
        yield GradientChunk(start, stop, tuple(by_step(g.detach(), count) for g in grads), outputs)


def by_step(value: Tensor, count: int) -> Tensor:
    """``(count · N, ...)`` -> ``(count, N, ...)``; a layer must keep the batch dim."""
    if value.shape[0] % count:
        raise ValueError(
            "layer must keep the batch dimension first: its value has first dim "
            f"{value.shape[0]} for {count} stacked path points"
        )
    return value.reshape(count, value.shape[0] // count, *value.shape[1:])


def path_sum(
    chunks: Iterator[GradientChunk],
    term: Callable[[int, int, Tuple[Tensor, ...]], Sequence[Tensor]],
) -> Tuple[Tensor, ...]:
    """``Σ`` over the chunks of ``term(start, stop, grads)``: one total per input.

    Args:
        chunks: what :func:`path_gradients` yields (at least one chunk).
        term: each chunk's share, one ``(N, ...)`` tensor per input.
    """
    totals: Optional[List[Tensor]] = None
    for start, stop, grads, _ in chunks:
        terms = term(start, stop, grads)
        totals = list(terms) if totals is None else [t + s for t, s in zip(totals, terms)]
    return tuple(totals)


def cell_sums(grads: Sequence[Tensor], changes: Sequence[Tensor]) -> List[Tensor]:
    """``Σ_s grads[s] · changes[s]``: each node's gradient times the change over its cell.

    Args:
        grads, changes: one tensor per input, ``(S, N, ...)`` each.

    Returns:
        list[Tensor]: one ``(N, ...)`` tensor per input, in the gradients' dtype.
    """
    return [(g * c.to(g.dtype)).sum(0) for g, c in zip(grads, changes)]


def attribution_result(
    attribution: GradientAttribution,
    is_inputs_tuple: bool,
    attributions: Tuple[Tensor, ...],
    inputs: Tuple[Tensor, ...],
    start_points: Callable[[], Tuple[Tensor, ...]],
    target: TargetType = None,
    additional_forward_args: Optional[object] = None,
    return_convergence_delta: bool = False,
    complete: Optional[str] = None,
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
        complete (str, optional): the method's name when it is meant to be complete: a
            delta large next to ``F(end) - F(start)`` then warns (see
            :func:`captum_rig.attr._guards.warn_if_incomplete`).
    """
    output = format_output(is_inputs_tuple, attributions)
    if not return_convergence_delta:
        return output
    delta = attribution.compute_convergence_delta(
        attributions,
        start_points(),
        inputs,
        additional_forward_args=additional_forward_args,
        target=target,
    )
    if complete is not None:
        warn_if_incomplete(complete, attributions, delta, stacklevel=6)
    return output, delta
