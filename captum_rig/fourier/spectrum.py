"""The frequency spectrum: how a model's predictions depend on the spatial frequencies.

The counterpart of the paper's Algorithm 1 over the radius of the 2-D DFT frequencies:
for every image and radius ``r``, keep the frequencies of radius ``<= r`` of each colour
channel (:func:`~captum_rig.fourier.low_pass`; in reverse, remove them), predict, and
count agreement with the prediction on the image and accuracy against the label: the
low- and high-pass filtered accuracy of Yin et al. The counting, its streaming,
checkpoints and ``torch.distributed`` support are :func:`~captum_rig.rank_spectrum`'s.

References:
    Yin, Lopes, Shlens, Cubuk, Gilmer. A Fourier Perspective on Model Robustness in
    Computer Vision. NeurIPS 2019.
"""

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from captum_rig._checks import check_real
from captum_rig._context import PathLike
from captum_rig._filter_axis import count_spectrum
from captum_rig.fourier.filters import FrequencyPath, max_radius
from captum_rig.spectrum import Spectrum

__all__ = ["frequency_spectrum", "FrequencySpectrum", "default_radii"]

_CHECKPOINT_FORMAT = "captum_rig.frequency_spectrum/1"


@dataclass
class FrequencySpectrum(Spectrum):
    r"""The result of :func:`frequency_spectrum`: agreement and accuracy per radius.

    The same kind of object as :class:`~captum_rig.RankSpectrum` (``to_dict``,
    ``from_dict``, ``to_csv`` with a ``radius`` column, ``from_csv``, ``plot``), over
    radii instead of ranks.

    Args:
        radii (list of float): the radii ``r`` evaluated, in the order asked for.
        agreement (list of float): per radius, the fraction of images whose prediction on
            the low-pass image (reverse: high-pass) equals their prediction on the image.
        accuracy (list of float or None): per radius, top-1 accuracy against the labels;
            None when no labels were given.
        n_images (int): number of images counted.
        reverse (bool): True when the frequencies of radius ``<= r`` were removed
            (high-pass) instead of kept.

    Examples:
        >>> s = FrequencySpectrum(radii=[0, 4, 23], agreement=[0.25, 0.5, 1.0],
        ...                       accuracy=None, n_images=4)
        >>> s.radii, FrequencySpectrum.from_dict(s.to_dict()) == s
        ([0.0, 4.0, 23.0], True)
    """

    _FIELD = "radii"
    _AXIS = "radius"
    _KIND = "frequency spectrum"

    radii: List[float]
    agreement: List[float]
    accuracy: Optional[List[float]]
    n_images: int
    reverse: bool = False

    @classmethod
    def _check_values(cls, values: Any) -> list:
        return _check_radii(values, math.inf)

    @classmethod
    def _parse_value(cls, text: str) -> Any:
        return float(text)

    def _xlabel(self) -> str:
        kept = "removed" if self.reverse else "kept"
        return f"r (frequencies of radius <= r {kept})"


def default_radii(height: int, width: int) -> List[float]:
    """``0, 1, ..., ceil(max_radius)``: the last keeps every frequency.

    Examples:
        >>> default_radii(8, 8)
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    """
    return [float(r) for r in range(math.ceil(max_radius(height, width)) + 1)]


def _check_radii(radii: Any, largest: float) -> List[float]:
    if isinstance(radii, Tensor):
        if radii.is_complex() or radii.dtype == torch.bool or radii.dim() > 1:
            raise TypeError(f"radii must hold real numbers >= 0, got a {radii.dtype} tensor")
        radii = radii.reshape(-1).tolist()
    elif hasattr(radii, "tolist") and not isinstance(radii, (str, bytes)):  # numpy
        radii = list(radii.tolist())
    if isinstance(radii, (str, bytes)) or not isinstance(radii, Iterable):
        got = type(radii).__name__
        raise TypeError(f"radii must be a sequence of real numbers >= 0, got {got}")
    radii = [check_real(r, name=f"radii[{i}]") for i, r in enumerate(radii)]
    if not radii:
        raise ValueError(f"radii must not be empty: give real numbers in 0..{largest:.4g}")
    return radii


class _FrequencyAxis:
    """The radius axis of :func:`count_spectrum`: low-pass images from one DFT per batch."""

    name, key = "frequency", "radii"

    def __init__(self, reverse: bool) -> None:
        self.reverse = reverse

    def values(self, asked: Any, shape: Tuple[int, ...]) -> List[float]:
        if asked is None:
            return default_radii(*shape[-2:])
        return _check_radii(asked, max_radius(*shape[-2:]))

    def identity(self, value: float, shape: Tuple[int, ...]) -> bool:
        # a high-pass image always loses the mean: only low-pass images can be x itself
        return not self.reverse and value >= max_radius(*shape[-2:])

    def chunks(
        self, x: Tensor, values: List[float], per_chunk: int
    ) -> Iterator[Tuple[int, Tensor]]:
        return FrequencyPath(x).chunks(values, per_chunk, reverse=self.reverse)


def frequency_spectrum(
    model: Callable[[Tensor], Tensor],
    data: Union[Tensor, Iterable[Any]],
    radii: Optional[Sequence[float]] = None,
    labels: Optional[Tensor] = None,
    reverse: bool = False,
    batch_size: int = 64,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = True,
    checkpoint: Optional[PathLike] = None,
    checkpoint_every: int = 10,
) -> FrequencySpectrum:
    r"""Prediction agreement and accuracy per radius of the kept (or removed) frequencies.

    For every image ``x`` and radius ``r`` the low-pass image
    :func:`~captum_rig.fourier.low_pass` ``(x, r)`` keeps the 2-D DFT frequencies of
    radius ``sqrt(f_y² + f_x²) <= r`` of every colour channel (``reverse=True``: the
    high-pass image ``x - low_pass(x, r)``, Yin et al.'s high-pass filtered images).
    Then

    - ``agreement[r]`` = fraction of images with ``argmax model(x_r) == argmax model(x)``,
    - ``accuracy[r]`` = fraction of images with ``argmax model(x_r) == label``.

    One DFT per batch; filtered images are streamed into the model ``batch_size``
    images per forward, never all radii at once. A radius of at least the largest,
    ``sqrt((H // 2)² + (W // 2)²)``, keeps ``x`` itself: its agreement is exactly 1 and
    it costs no forward. The run is under ``torch.no_grad()`` with the model in eval
    mode; training flags are restored afterwards and the inputs are not modified.

    Streaming, ``checkpoint=PATH`` (resuming checks the model, the data, ``radii``,
    ``reverse``, the image shape and the labels) and ``torch.distributed`` runs behave
    exactly as in :func:`~captum_rig.rank_spectrum`, which shares this function's loop.

    Args:
        model (callable): maps images ``(B, C, H, W)`` in [0, 1] pixel space to logits
            ``(B, classes)``; it should contain its own normalization.
        data (Tensor, pair or iterable): images ``(N, C, H, W)``, a tuple
            ``(images, labels)``, or an iterable of ``(images, labels)`` batches such as
            a DataLoader (as :func:`~captum_rig.rank_spectrum`).
        radii (sequence of float, optional): radii ``>= 0``. Default: ``0, 1, ...,
            ceil(sqrt((H // 2)² + (W // 2)²))``.
        labels (Tensor, optional): integer labels ``(N,)`` when ``data`` is a tensor.
        reverse (bool): remove the frequencies of radius ``<= r`` instead of keeping them.
        batch_size (int): images per forward pass; a tensor ``data`` is also cut into
            DFT batches of this size.
        device (str or torch.device, optional): where the DFT and forward passes run; the
            model must already live there. Default: the device of the model.
        progress (bool): show a tqdm progress bar (only on process 0 when distributed).
        checkpoint (str or PathLike, optional): file for resumable partial counts.
        checkpoint_every (int): save the checkpoint every this many batches.

    Returns:
        FrequencySpectrum: ``radii``, ``agreement``, ``accuracy`` (None without labels),
        ``n_images`` and ``reverse``.

    Examples:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
        >>> x = torch.rand(16, 3, 8, 8)  # (N, C, H, W): radii up to sqrt(4² + 4²)
        >>> y = torch.randint(10, (16,))
        >>> s = frequency_spectrum(model, x, labels=y, progress=False)
        >>> s.radii, s.agreement[-1], s.n_images
        ([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 1.0, 16)
        >>> frequency_spectrum(model, x, radii=[0, 2.5], reverse=True, progress=False).radii
        [0.0, 2.5]

    References:
        Yin, Lopes, Shlens, Cubuk, Gilmer. A Fourier Perspective on Model Robustness in
        Computer Vision. NeurIPS 2019.
    """
    if not isinstance(reverse, bool):
        raise TypeError(f"reverse must be a bool, got {reverse!r}")
    if radii is not None:  # bad radii fail before any batch is read
        radii = _check_radii(radii, math.inf)
    counts = count_spectrum(
        model,
        data,
        _FrequencyAxis(reverse),
        radii,
        labels,
        batch_size,
        device,
        progress,
        checkpoint,
        checkpoint_every,
        what="frequency_spectrum",
        format=_CHECKPOINT_FORMAT,
    )
    return FrequencySpectrum(
        radii=counts.values,
        agreement=counts.agreement,
        accuracy=counts.accuracy,
        n_images=counts.n_images,
        reverse=reverse,
    )
