"""The Fourier heat map: a model's error rate under each single-frequency perturbation.

Yin et al.'s map: for every 2-D DFT frequency ``f`` the real Fourier basis image
``U_f`` (unit L2 norm, its DFT supported on ``f`` and ``-f``) is added to every image,
``x + eps · s · U_f`` with a random sign ``s`` per image and colour channel, and the
error rate on these images is the map's entry at ``f``, with the zero frequency at the
centre as :func:`torch.fft.fftshift` places it.

References:
    Yin, Lopes, Shlens, Cubuk, Gilmer. A Fourier Perspective on Model Robustness in
    Computer Vision. NeurIPS 2019.
"""

import math
from typing import Callable, Dict, Iterator, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from captum_rig._checks import (
    check_int,
    check_labels,
    check_model,
    check_pixels,
    check_real,
    model_device,
)
from captum_rig._context import eval_mode
from captum_rig._filter_axis import predict

__all__ = ["fourier_heat_map", "fourier_basis"]


def fourier_basis(height: int, width: int, fy: Tensor, fx: Tensor) -> Tensor:
    r"""Real unit-norm Fourier basis images ``U_f ∝ cos(2π (f_y y / H + f_x x / W))``.

    ``U_f`` and ``U_{-f}`` are the same image: its DFT is supported on ``f`` and ``-f``.

    Args:
        height (int): H.
        width (int): W.
        fy (Tensor): integer vertical frequencies ``(m,)``.
        fx (Tensor): integer horizontal frequencies ``(m,)``.

    Returns:
        Tensor: ``(m, H, W)`` float64 on ``fy``'s device, each of L2 norm 1.

    Examples:
        >>> u = fourier_basis(8, 8, torch.tensor([0, 1]), torch.tensor([0, 3]))
        >>> u.shape, torch.linalg.vector_norm(u, dim=(-2, -1)).tolist()
        (torch.Size([2, 8, 8]), [1.0, 1.0])
    """
    y = torch.arange(height, dtype=torch.float64, device=fy.device) / height
    x = torch.arange(width, dtype=torch.float64, device=fy.device) / width
    phase = 2 * math.pi * (fy.double()[:, None, None] * y[:, None] + fx.double()[:, None, None] * x)
    u = torch.cos(phase)
    return u / torch.linalg.vector_norm(u, dim=(-2, -1), keepdim=True)


def _distinct_frequencies(height: int, width: int) -> Tuple[Tensor, Tensor, Tensor]:
    """One index per pair ``{f, -f}`` (both give one basis image), and every entry's pair.

    Returns:
        (fy, fx, which): the distinct integer frequencies ``(F,)`` each, and ``(H, W)``
        the index into them of every DFT entry, in the DFT's order.
    """
    rows = torch.arange(height)[:, None].expand(height, width)
    cols = torch.arange(width)[None, :].expand(height, width)
    flat = rows * width + cols
    mirrored = ((-rows) % height) * width + (-cols) % width
    canonical = torch.minimum(flat, mirrored)
    distinct, which = torch.unique(canonical.reshape(-1), return_inverse=True)
    to_freq = torch.fft.fftfreq
    fy = (to_freq(height, 1.0 / height)[distinct // width]).round().long()
    fx = (to_freq(width, 1.0 / width)[distinct % width]).round().long()
    return fy, fx, which.reshape(height, width)


def _signs(seed: int, frequency: int, n: int, channels: int) -> Tensor:
    """``±1`` per image and channel for one frequency, ``(n, C)``, independent of batching."""
    # numpy's SeedSequence mixes (seed, frequency) into independent streams; torch's CPU
    # generator would keep only 32 bits of one combined seed
    bits = np.random.default_rng([seed, frequency]).integers(0, 2, (n, channels))
    return torch.from_numpy(bits * 2 - 1)


def _pair_chunks(n_freq: int, n_images: int, batch_size: int) -> Iterator[Tuple[Tensor, Tensor]]:
    """(frequency index, image index) of ``batch_size`` (frequency, image) pairs at a time."""
    total = n_freq * n_images
    for start in range(0, total, batch_size):
        pairs = torch.arange(start, min(start + batch_size, total))
        yield pairs // n_images, pairs % n_images


def fourier_heat_map(
    model: Callable[[Tensor], Tensor],
    images: Tensor,
    labels: Optional[Tensor],
    eps: float,
    batch_size: int = 64,
    seed: int = 0,
    clip: bool = True,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = True,
) -> Tensor:
    r"""Yin et al.'s Fourier heat map: error rate per single-frequency perturbation.

    For every 2-D DFT frequency ``f = (f_y, f_x)`` (integer frequencies, as
    :func:`~captum_rig.fourier.low_pass` uses them) and every image ``x`` the model sees
    ``x + eps · s · U_f``, where ``U_f`` is the real unit-L2-norm basis image
    :func:`fourier_basis` and ``s = ±1`` is drawn at random for each image and colour
    channel (``clip=True``: then clipped to [0, 1], the range of pixels). The map's entry
    at ``f`` is the fraction of images whose prediction differs from the label (without
    labels: from the prediction on ``x``). ``U_f`` and ``U_{-f}`` are the same image,
    so each pair is evaluated once and the map is point-symmetric about its centre.

    The signs of frequency ``f`` come from a generator seeded with ``seed`` and ``f``:
    the map depends on ``seed`` only, not on ``batch_size`` or the device. Perturbed
    images go through the model ``batch_size`` at a time, whatever the frequency they
    belong to, so memory is bounded by one batch. Under ``torch.no_grad()`` with the
    model in eval mode (training flags restored).

    Args:
        model (callable): maps images ``(B, C, H, W)`` in [0, 1] to logits ``(B, classes)``.
        images (Tensor): ``(N, C, H, W)`` with pixel values in [0, 1].
        labels (Tensor or None): ``(N,)`` class indices; None: the clean predictions.
        eps (float): the L2 norm of the perturbation of each image channel, ``> 0``.
        batch_size (int): images per forward pass.
        seed (int): seed of the random signs, ``>= 0``.
        clip (bool): clip the perturbed images to [0, 1].
        device (str or torch.device, optional): where the forward passes run; the model
            must already live there. Default: the model's device.
        progress (bool): show a tqdm progress bar.

    Returns:
        Tensor: ``(H, W)`` float64 error rates in [0, 1] on the CPU, the zero frequency
        at ``(H // 2, W // 2)`` (``torch.fft.fftshift``'s order).

    Examples:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
        >>> x = torch.rand(4, 3, 8, 8)
        >>> y = torch.randint(10, (4,))
        >>> heat = fourier_heat_map(model, x, y, eps=2.0, progress=False)
        >>> heat.shape, bool(((heat >= 0) & (heat <= 1)).all())
        (torch.Size([8, 8]), True)

    References:
        Yin, Lopes, Shlens, Cubuk, Gilmer. A Fourier Perspective on Model Robustness in
        Computer Vision. NeurIPS 2019, Sec. 3.
    """
    check_model(model, module=False)
    check_pixels(images, name="images")
    eps = check_real(eps, name="eps", strict=True)
    batch_size = check_int(batch_size, name="batch_size", low=1)
    seed = check_int(seed, name="seed")
    if not isinstance(clip, bool):
        raise TypeError(f"clip must be a bool, got {clip!r}")
    if labels is not None:
        labels = check_labels(labels, images.shape[0])
    device = model_device(model) if device is None else torch.device(device)
    x = images.detach().to(device)
    height, width = x.shape[-2:]
    fy, fx, which = _distinct_frequencies(height, width)
    settings = (eps, seed, clip, batch_size)
    with eval_mode(model), torch.no_grad():
        if labels is None:
            labels = predict(model, x, batch_size)
        errors = _count_errors(model, x, labels.to(device), (fy, fx), settings, progress)
    rates = errors.double() / x.shape[0]
    return torch.fft.fftshift(rates[which], dim=(0, 1))


def _count_errors(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    labels: Tensor,
    frequencies: Tuple[Tensor, Tensor],
    settings: Tuple[float, int, bool, int],
    progress: bool,
) -> Tensor:
    """Misclassified images per distinct frequency, ``(F,)`` int64 on the CPU."""
    eps, seed, clip, batch_size = settings
    fy, fx = frequencies
    n, channels, height, width = x.shape
    errors = torch.zeros(len(fy), dtype=torch.int64)
    # a chunk's frequencies are consecutive: keep the basis images and signs of those
    # still to come, each made once
    cache: Dict[int, Tuple[Tensor, Tensor]] = {}
    total = math.ceil(len(fy) * n / batch_size)
    chunks = tqdm(
        _pair_chunks(len(fy), n, batch_size),
        total=total,
        desc="Fourier heat map",
        unit="batch",
        disable=not progress,
    )
    for f_index, i_index in chunks:
        low, high = int(f_index[0]), int(f_index[-1])
        for f in [f for f in cache if f < low]:
            del cache[f]
        new = [f for f in range(low, high + 1) if f not in cache]
        if new:
            bases = fourier_basis(height, width, fy[new], fx[new]).to(x.device, x.dtype)
            for f, u in zip(new, bases):
                cache[f] = (u, _signs(seed, f, n, channels).to(x.device, x.dtype))
        basis = torch.stack([cache[f][0] for f in range(low, high + 1)])
        signs = torch.stack([cache[f][1] for f in range(low, high + 1)])
        local, images = (f_index - low).to(x.device), i_index.to(x.device)
        perturbed = x[images] + eps * signs[local, images][..., None, None] * basis[local][:, None]
        if clip:
            perturbed = perturbed.clamp_(0.0, 1.0)
        wrong = predict(model, perturbed, batch_size) != labels[images]
        errors.index_add_(0, f_index, wrong.long().cpu())
    return errors
