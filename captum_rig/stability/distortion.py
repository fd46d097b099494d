"""Average minimal distortion: the smallest perturbation that changes a prediction.

Per image, bisection over a budget (the PGD radius, or the standard deviation of
Gaussian noise along a fixed direction) for the smallest one at which the model's
prediction differs from its clean one. Both attacks share one search
(:class:`DistortionSearch`), fed batch by batch.

References:
    Szegedy, Zaremba, Sutskever, Bruna, Erhan, Goodfellow, Fergus. Intriguing properties
    of neural networks. arXiv:1312.6199 (2013).
"""

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from captum_rig._checks import (
    check_int,
    check_model,
    check_norm,
    check_pixels,
    check_real,
    model_device,
    model_logits,
)
from captum_rig._context import eval_mode
from captum_rig.robustness import pgd_attack

__all__ = [
    "MinimalDistortion",
    "DistortionSearch",
    "pgd_search",
    "gaussian_search",
    "minimal_distortion",
    "gaussian_minimal_distortion",
]

Perturb = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]
"""``perturb(x, y0, budget, index)``: perturbed images of a subset ``index`` of a batch."""


@dataclass
class MinimalDistortion:
    """Per image, the smallest perturbation found that changes the prediction.

    Attributes:
        method (str): ``"pgd_l2"``, ``"pgd_linf"`` or ``"gaussian"``.
        norm (str): the norm of ``values``: ``"L2"`` or ``"Linf"``.
        values (Tensor): ``(N,)`` norm of the flipping perturbation found (at radius or
            σ ``budgets``), ``inf`` where none was found up to the maximum.
        budgets (Tensor): ``(N,)`` PGD radius or noise σ at the upper end of the final
            bisection bracket (the prediction flips there and not ``tolerance`` below),
            ``inf`` where none was found.
        tolerance (float): width of the final bisection bracket.
    """

    method: str
    norm: str
    values: Tensor = field(repr=False)
    budgets: Tensor = field(repr=False)
    tolerance: float

    @property
    def found(self) -> Tensor:
        """``(N,)`` bool: images whose prediction could be changed."""
        return torch.isfinite(self.values)

    @property
    def n_found(self) -> int:
        """How many images' predictions could be changed."""
        return int(self.found.sum())

    @property
    def mean(self) -> float:
        """Mean distortion over the images whose prediction changed (NaN if none)."""
        return float(self.values[self.found].double().mean()) if self.n_found else math.nan

    def to_dict(self) -> Dict[str, Any]:
        """Summary: mean, counts and tolerance."""
        return {
            "method": self.method,
            "norm": self.norm,
            "mean": self.mean,
            "mean_budget": float(self.budgets[self.found].double().mean())
            if self.n_found
            else math.nan,
            "n_found": self.n_found,
            "n_images": int(self.values.numel()),
            "tolerance": self.tolerance,
        }


def _check_distortion_args(model, images, n_bisect, batch_size):
    model = check_model(model)
    check_pixels(images, "images")
    n_bisect = check_int(n_bisect, name="n_bisect", low=1)
    batch_size = check_int(batch_size, name="batch_size", low=1)
    return model, n_bisect, batch_size


def _norms(delta: Tensor, norm: str) -> Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "Linf" else flat.norm(dim=1)


def _bisect(
    model: nn.Module,
    images: Tensor,
    perturb: Callable[[Tensor, Tensor, Tensor, Tensor], Tensor],
    high: float,
    n_bisect: int,
) -> Tuple[Tensor, Tensor]:
    """Per image, bisection over a budget in ``[0, high]`` for a prediction change.

    ``perturb(x, y0, budget, index)`` returns perturbed images for a subset ``index`` of
    the batch at per-image budgets. Invariant: flips at ``hi``, not at ``lo`` (``lo = 0``
    is the clean image). Returns ``(best perturbed images, hi)``, ``hi = inf`` where the
    prediction does not change even at ``high``.
    """
    n = images.shape[0]
    with torch.no_grad():
        y0 = model_logits(model, images).argmax(1)
    index = torch.arange(n, device=images.device)
    hi = torch.full((n,), high, dtype=torch.float64, device=images.device)
    lo = torch.zeros_like(hi)
    best = perturb(images, y0, hi, index)
    with torch.no_grad():
        found = model_logits(model, best).argmax(1) != y0
    hi[~found] = math.inf
    index = index[found]
    for _ in range(n_bisect):
        if index.numel() == 0:
            break
        mid = (lo[index] + hi[index]) / 2
        candidate = perturb(images[index], y0[index], mid, index)
        with torch.no_grad():
            flip = model_logits(model, candidate).argmax(1) != y0[index]
        hi[index[flip]] = mid[flip]
        lo[index[~flip]] = mid[~flip]
        best[index[flip]] = candidate[flip]
    return best, hi


class DistortionSearch:
    """One minimal-distortion search, fed batch by batch: the loop both attacks share.

    Each batch is moved to the model's device, searched by bisection (:func:`_bisect`)
    with the perturbation that ``perturber(batch)`` returns, and its per-image results
    kept on the CPU; :meth:`result` puts them together. Images are searched one by one,
    so how the images are cut into batches changes nothing (the Gaussian search draws
    its noise per batch, in data order: cut them alike for the same noise).

    Args:
        model (nn.Module): maps ``(N, C, H, W)`` images in [0, 1] to logits.
        method (str): the result's ``method``.
        norm (str): the norm of the distortion, ``"L2"`` or ``"Linf"``.
        high (float): the largest budget tried.
        n_bisect (int): bisection steps.
        perturber (callable): ``batch ↦ perturb(x, y0, budget, index)``, perturbed
            images of a subset ``index`` of that batch at per-image budgets.

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10))
        >>> search = pgd_search(model, 3 * 4 * 4, norm="Linf", steps=2, n_bisect=3)
        >>> for batch in torch.rand(5, 3, 4, 4).split(2):
        ...     search.add(batch)
        >>> search.result().values.shape
        torch.Size([5])
    """

    def __init__(
        self,
        model: nn.Module,
        method: str,
        norm: str,
        high: float,
        n_bisect: int,
        perturber: Callable[[Tensor], Perturb],
    ) -> None:
        self.model, self.method, self.norm = model, method, norm
        self.high, self.n_bisect, self.perturber = high, n_bisect, perturber
        self.device = model_device(model)
        self.values: List[Tensor] = []
        self.budgets: List[Tensor] = []

    def add(self, images: Tensor) -> None:
        """Searches one batch ``(B, C, H, W)`` (eval mode, flags restored)."""
        with eval_mode(self.model):
            x = images.to(self.device)
            best, hi = _bisect(self.model, x, self.perturber(x), self.high, self.n_bisect)
            value = _norms(best - x, self.norm).double()
            value[~torch.isfinite(hi)] = math.inf
        self.values.append(value.cpu())
        self.budgets.append(hi.cpu())

    def run(self, images: Tensor, batch_size: int) -> MinimalDistortion:
        """Searches ``images`` in batches of ``batch_size``; the result."""
        for start in range(0, images.shape[0], batch_size):
            self.add(images[start : start + batch_size])
        return self.result()

    def result(self) -> MinimalDistortion:
        """The images searched so far, in the order they came."""
        return MinimalDistortion(
            method=self.method,
            norm=self.norm,
            values=torch.cat(self.values),
            budgets=torch.cat(self.budgets),
            tolerance=self.high / 2**self.n_bisect,
        )


def pgd_search(
    model: nn.Module,
    image_size: int,
    norm: str = "L2",
    steps: int = 20,
    n_bisect: int = 12,
    max_eps: Optional[float] = None,
) -> DistortionSearch:
    """The search of :func:`minimal_distortion` for images of ``image_size`` values.

    Checks ``norm``, ``steps`` and ``max_eps`` (``n_bisect`` is the caller's to check).
    """
    norm = check_norm(norm)
    steps = check_int(steps, name="steps", low=1)
    if max_eps is None:
        max_eps = 1.0 if norm == "Linf" else math.sqrt(image_size)
    max_eps = check_real(max_eps, "max_eps", strict=True)

    def perturb(x: Tensor, y0: Tensor, eps: Tensor, index: Tensor) -> Tensor:
        return pgd_attack(
            model, x, y0, eps=eps.to(x.dtype), steps=steps, norm=norm, random_start=False
        )

    return DistortionSearch(
        model, f"pgd_{norm.lower()}", norm, max_eps, n_bisect, lambda x: perturb
    )


def gaussian_search(
    model: nn.Module, n_bisect: int = 12, max_sigma: float = 1.0, seed: int = 0
) -> DistortionSearch:
    """The search of :func:`gaussian_minimal_distortion`; its noise generator is seeded now.

    Checks ``max_sigma`` and ``seed`` (``n_bisect`` is the caller's to check).
    """
    max_sigma = check_real(max_sigma, "max_sigma", strict=True)
    generator = torch.Generator().manual_seed(check_int(seed, name="seed"))

    def perturber(x: Tensor) -> Perturb:
        # drawn on the CPU, one batch after the other: the same noise on every device
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)

        def perturb(xs: Tensor, y0: Tensor, sigma: Tensor, index: Tensor) -> Tensor:
            sigma = sigma.to(xs.dtype).view(-1, 1, 1, 1)
            return (xs + sigma * noise[index]).clamp(0, 1)

        return perturb

    return DistortionSearch(model, "gaussian", "L2", max_sigma, n_bisect, perturber)


def minimal_distortion(
    model: nn.Module,
    images: Tensor,
    norm: str = "L2",
    steps: int = 20,
    n_bisect: int = 12,
    max_eps: Optional[float] = None,
    batch_size: int = 64,
) -> MinimalDistortion:
    r"""Smallest PGD perturbation found that changes each image's prediction.

    For each image, bisection over the radius ``eps ∈ [0, max_eps]`` of an untargeted
    PGD attack (:func:`~captum_rig.robustness.pgd_attack`, ``steps`` steps of size
    ``eps/4``, no random start, so the result is deterministic) against the model's own
    clean prediction. The result is the norm of the flipping perturbation found at the
    final bracket's upper end: an upper bound on the true minimal distortion (PGD may
    miss closer adversarial examples; bisection assumes a larger radius does not
    un-flip).

    Args:
        model (nn.Module): maps ``(N, C, H, W)`` images in [0, 1] to logits.
        images (Tensor): ``(N, C, H, W)`` in [0, 1].
        norm (str): ``"L2"`` or ``"Linf"``.
        steps (int): PGD steps per radius.
        n_bisect (int): bisection steps; the bracket ends ``max_eps / 2**n_bisect`` wide.
        max_eps (float, optional): largest radius tried; default 1 for L∞ and
            ``√(C·H·W)`` (the diagonal of the [0, 1] box) for L2.
        batch_size (int): images per attack batch.

    Returns:
        MinimalDistortion: per-image values (``inf`` if no flip up to ``max_eps``), its
        ``mean`` over the images that flipped.

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
        >>> result = minimal_distortion(model, torch.rand(4, 3, 8, 8), norm="Linf")
        >>> result.values.shape
        torch.Size([4])

    References:
        Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199.
    """
    model, n_bisect, batch_size = _check_distortion_args(model, images, n_bisect, batch_size)
    search = pgd_search(model, images[0].numel(), norm, steps, n_bisect, max_eps)
    return search.run(images, batch_size)


def gaussian_minimal_distortion(
    model: nn.Module,
    images: Tensor,
    n_bisect: int = 12,
    max_sigma: float = 1.0,
    batch_size: int = 64,
    seed: int = 0,
) -> MinimalDistortion:
    r"""Smallest Gaussian noise level that changes each image's prediction.

    Each image ``x`` gets one fixed noise direction ``z ~ N(0, I)`` (drawn on the CPU in
    data order from a ``torch.Generator`` seeded with ``seed``: ``torch.randn(batch.shape,
    generator=g, dtype=images.dtype)`` per batch of ``batch_size``), and bisection over
    ``σ ∈ [0, max_sigma]`` finds the smallest σ at which the prediction on
    ``clamp(x + σ z, 0, 1)`` differs from the clean one. ``values`` is the L2 norm of that
    perturbation (after clamping) and ``budgets`` the σ. Bisection assumes the
    prediction, once changed along the ray, stays changed.

    Args:
        model (nn.Module): maps ``(N, C, H, W)`` images in [0, 1] to logits.
        images (Tensor): ``(N, C, H, W)`` in [0, 1].
        n_bisect (int): bisection steps; the σ bracket ends ``max_sigma / 2**n_bisect``
            wide.
        max_sigma (float): largest noise standard deviation tried (pixel units).
        batch_size (int): images per batch.
        seed (int): seed of the noise.

    Returns:
        MinimalDistortion: per-image L2 distortions and σ, ``inf`` if no change up to
        ``max_sigma``.

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
        >>> gaussian_minimal_distortion(model, torch.rand(4, 3, 8, 8)).budgets.shape
        torch.Size([4])

    References:
        Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199.
    """
    model, n_bisect, batch_size = _check_distortion_args(model, images, n_bisect, batch_size)
    search = gaussian_search(model, n_bisect, max_sigma, seed)
    return search.run(images, batch_size)
