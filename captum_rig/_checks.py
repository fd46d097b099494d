"""Input checks shared by every public entry point.

The message templates live here, in one place, so that tests can match them and every
function words the same problem the same way.
"""

import itertools
import math
import numbers
import operator
from typing import (
    Any,
    Dict,
    Iterable,
    Iterator,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import torch
from torch import Tensor, nn

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
NOT_IN_BOX = (
    "{name} must hold pixel values in [0, 1] (pass images before normalization; the model "
    "should contain it), got values in [{low:.4g}, {high:.4g}]"
)
NOT_LABELS = "{name} must be an integer tensor of class indices, got {got}"
WRONG_LENGTH = "{name} must have shape ({n},), one class index per image, got shape {shape}"
UNKNOWN_CHOICE = "{name} must be one of {choices}, got {got!r}"
NOT_A_MODEL = "{name} must be a torch.nn.Module, got {got}"
NOT_CALLABLE = "{name} must be callable (an nn.Module or a function), got {got}"
NOT_MODELS = "models must be an nn.Module or a mapping name -> nn.Module, got {got}"
NO_MODELS = "models must not be empty"
WRONG_DEVICE = "device is {device} but model {name!r} lives on {got}; move the model there"
BAD_LOGITS = (
    "{name} must return logits of shape (B, classes) for images (B, C, H, W); "
    "for B = {n} it returned {got}"
)
NOT_DATA = (
    "data must be an image tensor (N, C, H, W), an (images, labels) pair or an iterable "
    "of (images, labels) batches such as a DataLoader, got {got}"
)
NEED_LABELS = "labels is required when data is an image tensor"
EXTRA_LABELS = (
    "labels must be None when data is an (images, labels) pair or an iterable of batches: "
    "give (images, labels) batches instead"
)
NOT_A_BATCH = "data batch {index} must be {expected}, got {got}"

NORMS = ("Linf", "L2")
"""The perturbation norms of the attacks (``torchattacks.PGD`` and ``PGDL2``)."""


def check_images(
    x: Any,
    name: str = "inputs",
    min_dim: int = 2,
    ndim: Union[int, Sequence[int], None] = None,
    layout: str = "(..., H, W)",
) -> Tensor:
    """Raises a TypeError/ValueError naming ``name`` unless ``x`` is a usable image tensor.

    Usable means: a finite, non-empty floating point tensor with ``ndim`` dims (one of
    them when ``ndim`` is a sequence; else at least ``min_dim``), whose trailing two dims
    are the image height and width.
    """
    if not isinstance(x, Tensor):
        raise TypeError(NOT_A_TENSOR.format(name=name, got=type(x).__name__))
    if not torch.is_floating_point(x):
        raise TypeError(NOT_FLOAT.format(name=name, dtype=x.dtype))
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if allowed is not None and x.dim() not in allowed:
        ndims = " or ".join(str(d) for d in allowed)
        raise ValueError(
            WRONG_DIMS.format(name=name, ndim=ndims, layout=layout, shape=tuple(x.shape))
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


def check_pixels(
    x: Any,
    name: str = "images",
    ndim: Union[int, Sequence[int]] = 4,
    layout: str = "(N, C, H, W)",
    slack: float = 0.0,
) -> Tensor:
    """:func:`check_images`, and values in [0, 1] (within ``slack``): pixel space.

    Every model the library runs contains its own normalization, so images outside
    [0, 1] are almost always normalized twice; the error says so.
    """
    check_images(x, name=name, ndim=ndim, layout=layout)
    low, high = float(x.min()), float(x.max())
    if low < -slack or high > 1 + slack:
        raise ValueError(NOT_IN_BOX.format(name=name, low=low, high=high))
    return x


def check_labels(labels: Any, n: int, name: str = "labels") -> Tensor:
    """Returns ``labels`` as an int64 tensor of shape ``(n,)`` (same device), or raises.

    Accepts integer tensors and anything ``torch.as_tensor`` makes one of (lists, NumPy
    arrays); rejects float, complex and bool labels and any other shape.
    """
    if not isinstance(labels, Tensor):
        try:
            labels = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(NOT_LABELS.format(name=name, got=type(labels).__name__)) from None
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(NOT_LABELS.format(name=name, got=f"dtype {labels.dtype}"))
    if tuple(labels.shape) != (n,):
        raise ValueError(WRONG_LENGTH.format(name=name, n=n, shape=tuple(labels.shape)))
    return labels.long()


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """Returns the entry of ``choices`` that ``value`` names (ignoring case), or raises."""
    if isinstance(value, str):
        for choice in choices:
            if value.lower() == choice.lower():
                return choice
    raise ValueError(UNKNOWN_CHOICE.format(name=name, choices=list(choices), got=value))


def check_norm(norm: Any) -> str:
    """``"Linf"`` or ``"L2"`` (any case), spelled as :data:`NORMS` spells it."""
    return check_choice(norm, "norm", NORMS)


def check_model(model: Any, name: str = "model", module: bool = True) -> Any:
    """Returns ``model`` if it is an ``nn.Module`` (any callable if not ``module``)."""
    if module and not isinstance(model, nn.Module):
        raise TypeError(NOT_A_MODEL.format(name=name, got=type(model).__name__))
    if not callable(model):
        raise TypeError(NOT_CALLABLE.format(name=name, got=type(model).__name__))
    return model


def check_models(models: Any, device: Any = None) -> Dict[str, nn.Module]:
    """``{name: model}`` from one ``nn.Module`` (named "model") or a mapping of them.

    With ``device`` given, every model must already live there (models are never moved).
    """
    if isinstance(models, nn.Module):
        models = {"model": models}
    if not isinstance(models, Mapping):
        raise TypeError(NOT_MODELS.format(got=type(models).__name__))
    if not models:
        raise ValueError(NO_MODELS)
    checked = {str(name): check_model(m, f"models[{name!r}]") for name, m in models.items()}
    if device is not None:
        device = torch.device(device)
        for name, m in checked.items():
            got = model_device(m)
            if got.type != device.type or (device.index is not None and got.index != device.index):
                raise ValueError(WRONG_DEVICE.format(device=device, name=name, got=got))
    return checked


def model_device(model: Any) -> torch.device:
    """The device of the model's first parameter or buffer; CPU for anything else."""
    if isinstance(model, nn.Module):
        for t in itertools.chain(model.parameters(), model.buffers()):
            return t.device
    return torch.device("cpu")


def model_logits(model: Any, x: Tensor, name: str = "model") -> Tensor:
    """``model(x)``, checked to be logits ``(B, classes)`` for the ``B`` images of ``x``."""
    out = model(x)
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(BAD_LOGITS.format(name=name, n=x.shape[0], got=got))
    return out


Batch = Tuple[Tensor, Optional[Tensor]]


class Batches(NamedTuple):
    """What :func:`check_batches` makes of a ``data`` argument."""

    batches: Iterator[Batch]
    """``(images, labels or None)`` pairs, each checked when it is reached."""
    length: Optional[int]
    """The number of batches, or None when ``data`` has no ``len``."""
    from_tensor: bool
    """True when ``data`` was one tensor (checked whole, cut into ``batch_size``)."""
    presharded: bool
    """True for a DataLoader with a ``DistributedSampler`` (each process has its share)."""


def check_batches(
    data: Any,
    labels: Any,
    batch_size: int,
    *,
    labels_required: bool = False,
    box: bool = False,
) -> Batches:
    """Checks the ``data`` (and ``labels``) argument of a function that reads image batches.

    ``data`` is an image tensor ``(N, C, H, W)`` (with ``labels`` ``(N,)``), a pair
    ``(images, labels)`` of tensors, or an iterable of batches such as a DataLoader, each
    ``(images, labels)``, ``(images,)`` or ``images`` alone. A tensor is checked whole
    now; the batches of an iterable are checked one by one as they are reached (images
    named ``images in data batch i``, labels ``labels in data batch i``).

    Args:
        data: the images, as above.
        labels: ``(N,)`` class indices when ``data`` is a tensor; None otherwise.
        batch_size (int): images per batch when ``data`` is a tensor or a pair.
        labels_required (bool): every image needs a label.
        box (bool): images must hold pixel values in [0, 1] (:func:`check_pixels`).

    Returns:
        Batches: the checked batches, their number, and how ``data`` came.
    """
    if _is_pair(data):
        if labels is not None:
            raise ValueError(EXTRA_LABELS)
        data, labels = data
    if isinstance(data, Tensor):
        _check_batch_images(data, "data", box)
        if labels is None and labels_required:
            raise ValueError(NEED_LABELS)
        n = data.shape[0]
        if labels is not None:
            labels = check_labels(labels, n)
        batches = (
            (data[i : i + batch_size], None if labels is None else labels[i : i + batch_size])
            for i in range(0, n, batch_size)
        )
        return Batches(batches, math.ceil(n / batch_size), True, False)
    if isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Iterable):
        raise TypeError(NOT_DATA.format(got=type(data).__name__))
    if labels is not None:
        raise ValueError(EXTRA_LABELS)
    try:
        length: Optional[int] = len(data)  # type: ignore[arg-type]
    except TypeError:
        length = None
    batches = (
        _checked_batch(index, batch, labels_required, box) for index, batch in enumerate(data)
    )
    return Batches(batches, length, False, _presharded(data))


def _is_pair(data: Any) -> bool:
    # A tuple of two image batches is two batches; a pair's second tensor is not images.
    return (
        isinstance(data, tuple)
        and len(data) == 2
        and isinstance(data[0], Tensor)
        and not (isinstance(data[1], Tensor) and data[1].dim() == 4)
    )


def _check_batch_images(images: Any, name: str, box: bool) -> Tensor:
    if box:
        return check_pixels(images, name=name)
    return check_images(images, name=name, ndim=4, layout="(N, C, H, W)")


def _checked_batch(index: int, batch: Any, labels_required: bool, box: bool) -> Batch:
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        images, labels = batch[0], batch[1]
    elif not labels_required and isinstance(batch, Tensor):
        images, labels = batch, None
    elif not labels_required and isinstance(batch, (tuple, list)) and len(batch) == 1:
        images, labels = batch[0], None
    else:
        expected = "an (images, labels) pair" if labels_required else "images or (images, labels)"
        length = f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""
        got = f"{type(batch).__name__}{length}"
        raise TypeError(NOT_A_BATCH.format(index=index, expected=expected, got=got))
    images = _check_batch_images(images, f"images in data batch {index}", box)
    if labels is not None:
        labels = check_labels(labels, images.shape[0], f"labels in data batch {index}")
    return images, labels


def _presharded(data: Any) -> bool:
    from torch.utils.data import DistributedSampler

    samplers = (
        getattr(data, "sampler", None),
        getattr(getattr(data, "batch_sampler", None), "sampler", None),
    )
    return any(isinstance(s, DistributedSampler) for s in samplers)


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


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype to compute an SVD or a blur in: float64 stays, anything else is float32.

    LAPACK/cuSOLVER have no half kernels, and half precision would lose the small singular
    values and the tails of a blur kernel: half and bfloat16 are upcast to float32.

    Examples:
        >>> compute_dtype(torch.bfloat16), compute_dtype(torch.float64)
        (torch.float32, torch.float64)
    """
    return torch.float64 if dtype == torch.float64 else torch.float32
