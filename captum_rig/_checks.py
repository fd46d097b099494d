"""Input checks shared by every public entry point.

The message templates live here, in one place, so that tests can match them and every
function words the same problem the same way.
"""

import math
import numbers
import operator
from typing import Any, Optional

import torch
from torch import Tensor

NOT_A_TENSOR = "{name} must be a torch.Tensor, got {got}"
NOT_FLOAT = (
    "{name} must be a floating point tensor of pixel values (e.g. in [0, 1]), got dtype "
    "{dtype}; convert integer images with x.float() / 255"
)
TOO_FEW_DIMS = "{name} must have at least {min_dim} dims {layout}, got shape {shape}"
WRONG_DIMS = "{name} must have {ndim} dims {layout}, got shape {shape}"
EMPTY = "{name} must not be empty, got shape {shape}"
NOT_FINITE = "{name} contains NaN or Inf values"
NOT_AN_INT = "{name} must be an integer, got {got!r}"
NEGATIVE = "{name} must be >= {low}, got {value}"
OUT_OF_RANGE = "{name} must be in {low}..{high}, got {value}"
NOT_A_REAL = "{name} must be a real number, got {got!r}"
NOT_FINITE_NUMBER = "{name} must be finite, got {value}"
NOT_POSITIVE = "{name} must be > 0, got {value}"


def check_images(
    x: Any,
    name: str = "inputs",
    min_dim: int = 2,
    ndim: Optional[int] = None,
    layout: str = "(..., H, W)",
) -> Tensor:
    """Raises a TypeError/ValueError naming ``name`` unless ``x`` is a usable image tensor.

    Usable means: a finite, non-empty floating point tensor with ``ndim`` dims (or at
    least ``min_dim``), whose trailing two dims are the image height and width.
    """
    if not isinstance(x, Tensor):
        raise TypeError(NOT_A_TENSOR.format(name=name, got=type(x).__name__))
    if not torch.is_floating_point(x):
        raise TypeError(NOT_FLOAT.format(name=name, dtype=x.dtype))
    if ndim is not None and x.dim() != ndim:
        raise ValueError(
            WRONG_DIMS.format(name=name, ndim=ndim, layout=layout, shape=tuple(x.shape))
        )
    if x.dim() < min_dim:
        raise ValueError(
            TOO_FEW_DIMS.format(name=name, min_dim=min_dim, layout=layout, shape=tuple(x.shape))
        )
    if x.numel() == 0:
        raise ValueError(EMPTY.format(name=name, shape=tuple(x.shape)))
    if not bool(torch.isfinite(x).all()):
        raise ValueError(NOT_FINITE.format(name=name))
    return x


def check_int(value: Any, name: str, low: int = 0, high: Optional[int] = None) -> int:
    """Returns ``value`` as a Python int, or raises naming ``name``.

    Accepts Python and NumPy integers and 0-dim integer tensors; rejects bools, floats
    (even 3.0: a rank is a count) and anything outside ``low..high``.
    """
    if isinstance(value, bool) or (
        isinstance(value, Tensor) and (value.dim() != 0 or value.is_floating_point())
    ):
        raise TypeError(NOT_AN_INT.format(name=name, got=value))
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(NOT_AN_INT.format(name=name, got=value)) from None
    if value < low:
        raise ValueError(NEGATIVE.format(name=name, low=low, value=value))
    if high is not None and value > high:
        raise ValueError(OUT_OF_RANGE.format(name=name, low=low, high=high, value=value))
    return value


def check_real(value: object, name: str, low: float = 0.0, strict: bool = False) -> float:
    """Returns ``value`` as a Python float, or raises naming ``name``.

    Accepts Python/NumPy reals and 0-dim real tensors; rejects bools, NaN, Inf, and values
    below ``low`` (or equal to it when ``strict``).
    """
    if isinstance(value, Tensor) and value.dim() == 0 and not value.is_complex():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(NOT_A_REAL.format(name=name, got=value))
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(NOT_FINITE_NUMBER.format(name=name, value=value))
    if strict and value <= low:
        raise ValueError(NOT_POSITIVE.format(name=name, value=value))
    if value < low:
        raise ValueError(NEGATIVE.format(name=name, low=low, value=value))
    return value
