"""What every ``attribute`` here checks around its work, in one decorator.

- Captum's IntegratedGradients takes ``attribute(inputs, baselines, target)``; here the
  second argument is ``target`` (the design keeps ``attribute(x, target)``). A second
  positional argument that can only be a baseline gets one TypeError naming the keyword.
- A model in train mode updates its BatchNorm running statistics on every forward pass,
  path points included; the buffers of its training-mode modules are put back afterwards,
  so attributing leaves the model as it was.
- A path method whose attributions miss ``F(end) - F(start)`` by much (a large
  convergence delta next to the output change) warns, pointing at ``n_steps``.
"""

import contextlib
import functools
import warnings
from typing import Callable, Iterator, List, Tuple

import torch
from torch import Tensor, nn

__all__ = ["attribute_checks", "kept_buffers", "warn_if_incomplete"]

# Above this relative gap between the attributions' sum and F(end) - F(start), warn (the
# same threshold as the contributions command's note).
DELTA_GAP = 0.05
# Deltas below this are rounding, whatever the output change.
DELTA_FLOOR = 1e-4


def _is_baseline_like(value: object, inputs: object) -> bool:
    """Whether ``value`` is a floating tensor shaped like the inputs (or a tuple of them).

    Captum's targets are ints, lists, integer tensors or tuples of ints: a floating
    tensor with the inputs' number of dims that broadcasts to them is never one.
    """
    if isinstance(value, tuple) and isinstance(inputs, tuple):
        return (
            len(value) == len(inputs)
            and len(value) > 0
            and all(_is_baseline_like(v, x) for v, x in zip(value, inputs))
        )
    if not (isinstance(value, Tensor) and isinstance(inputs, Tensor)):
        return False
    if not value.is_floating_point() or value.dim() != inputs.dim() or value.dim() < 2:
        return False
    try:
        return torch.broadcast_shapes(value.shape, inputs.shape) == inputs.shape
    except RuntimeError:
        return False


def _baseline_error(method: str, takes_baselines: bool, value: object) -> TypeError:
    what = "a tuple of floating tensors" if isinstance(value, tuple) else "a floating tensor"
    shape = tuple(value[0].shape if isinstance(value, tuple) else value.shape)
    if takes_baselines:
        fix = (
            "pass it by keyword: attribute(inputs, target, baselines=b) (Captum's "
            "IntegratedGradients takes baselines second; here target comes second)"
        )
    else:
        fix = f"{method} needs no baseline (its path ends at a blurred image): drop it"
    return TypeError(
        f"{method}.attribute's second argument is target, got {what} shaped like the "
        f"inputs ({shape}), which looks like a baseline: {fix}"
    )


def _train_buffers(forward_func: Callable) -> List[Tuple[Tensor, Tensor]]:
    """``(buffer, copy)`` for every buffer of a training-mode module of the model."""
    model = forward_func if isinstance(forward_func, nn.Module) else None
    if model is None and isinstance(getattr(forward_func, "__self__", None), nn.Module):
        model = forward_func.__self__  # a bound method such as model.forward
    if model is None:
        return []
    return [
        (b, b.detach().clone())
        for m in model.modules()
        if m.training
        for b in m.buffers(recurse=False)
    ]


@contextlib.contextmanager
def kept_buffers(forward_func: Callable) -> Iterator[None]:
    """Puts back the buffers of the model's training-mode modules afterwards.

    BatchNorm in train mode updates its running mean and variance (and counts batches)
    on every forward pass; the attributions still use the batch statistics, as the
    model in train mode does, but the model's state is left as it was. Works when
    ``forward_func`` is an ``nn.Module`` or a bound method of one; a plain function
    wrapping a model is not looked into.
    """
    saved = _train_buffers(forward_func)
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, copy in saved:
                buffer.copy_(copy)


def attribute_checks(method: str, takes_baselines: bool = True) -> Callable:
    """Decorates ``attribute(self, inputs, target, ...)``: the checks of this module.

    Args:
        method (str): the class name for messages.
        takes_baselines (bool): whether ``attribute`` has a ``baselines`` keyword.
    """

    def decorate(attribute: Callable) -> Callable:
        @functools.wraps(attribute)
        def checked(self, inputs, *args, **kwargs):
            if args and _is_baseline_like(args[0], inputs):
                raise _baseline_error(method, takes_baselines, args[0])
            with kept_buffers(self.forward_func):
                return attribute(self, inputs, *args, **kwargs)

        return checked

    return decorate


def warn_if_incomplete(
    method: str, attributions: Tuple[Tensor, ...], delta: Tensor, stacklevel: int = 5
) -> None:
    """Warns when a complete method's delta is large next to ``F(end) - F(start)``.

    Args:
        method (str): the class name for the message.
        attributions (tuple[Tensor, ...]): one ``(N, ...)`` tensor per input (or layer
            value).
        delta (Tensor): ``(N,)``, ``Σ attributions - (F(end) - F(start))``.
        stacklevel (int): as for ``warnings.warn``; the default points at the caller of
            a decorated ``attribute`` that calls this directly.
    """
    total = sum(a.detach().double().flatten(1).sum(1) for a in attributions)
    delta = delta.detach().double().reshape(-1).to(total.device)
    change = (total - delta).abs()
    gap = delta.abs()
    large = (gap > DELTA_GAP * change) & (gap > DELTA_FLOOR)
    if not bool(large.any()):
        return
    worst = int(torch.argmax(torch.where(large, gap / change.clamp_min(1e-300), -1.0)))
    warnings.warn(
        f"{method}: the attributions of {int(large.sum())} of {len(delta)} examples miss "
        f"F(end) - F(start) by more than {DELTA_GAP:.0%} (example {worst}: delta "
        f"{float(delta[worst]):.4g} against F(end) - F(start) = "
        f"{float(total[worst] - delta[worst]):.4g}); this is the quadrature error: raise "
        "n_steps (or use idgi=True, complete for any n_steps)",
        stacklevel=stacklevel,
    )
