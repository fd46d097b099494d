"""Average minimal distortion: the smallest perturbation that changes a prediction.

Per image, a search over a budget (the PGD radius, or the standard deviation of
Gaussian noise along a fixed direction) for the smallest one at which the model's
prediction differs from its clean one: budgets from small up (``max / 2**10``, then
doubling), then bisection between the last rung that does not flip and the first that
does. Both attacks share one search (:class:`DistortionSearch`), fed batch by batch;
each result carries its resolution (the final bracket's width per image).

References:
    Szegedy, Zaremba, Sutskever, Bruna, Erhan, Goodfellow, Fergus. Intriguing properties
    of neural networks. arXiv:1312.6199 (2013).
"""

import math
from typing import Callable, List, Optional, Tuple

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
from captum_rig.stability.attacks import AttackSearch
from captum_rig.stability.minimal import MinimalDistortion, distortion_norms

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


def _check_distortion_args(model, images, n_bisect, batch_size):
    model = check_model(model)
    check_pixels(images, "images")
    n_bisect = check_int(n_bisect, name="n_bisect", low=1)
    batch_size = check_int(batch_size, name="batch_size", low=1)
    return model, n_bisect, batch_size


LADDER = 10
"""Rungs below the largest budget: the search tries ``high / 2**k`` for ``k = LADDER … 0``."""


def _flips(model: nn.Module, candidate: Tensor, y0: Tensor) -> Tensor:
    with torch.no_grad():
        return model_logits(model, candidate).argmax(1) != y0


def _ladder(
    model: nn.Module, images: Tensor, y0: Tensor, perturb: Perturb, high: float
) -> Tuple[Tensor, Tensor, Tensor]:
    """The smallest rung ``high / 2**k`` (``k = LADDER … 0``) at which each image flips.

    Returns ``(best, lo, hi)``: the flipping images found, the rung below (0 for the
    first rung) and the flipping rung (``inf`` where no rung flips, then ``lo = high``).
    A search from small budgets up: an attack that fails at a large budget (PGD's steps
    of ``eps/4`` overshoot) cannot hide a flip at a small one.
    """
    n = images.shape[0]
    pending = torch.arange(n, device=images.device)
    hi = torch.full((n,), math.inf, dtype=torch.float64, device=images.device)
    lo = torch.zeros_like(hi)
    best = images.clone()
    for k in range(LADDER, -1, -1):
        if pending.numel() == 0:
            break
        rung = torch.full((pending.numel(),), high / 2**k, dtype=torch.float64, device=hi.device)
        candidate = perturb(images[pending], y0[pending], rung, pending)
        flip = _flips(model, candidate, y0[pending])
        hi[pending[flip]] = rung[flip]
        best[pending[flip]] = candidate[flip]
        lo[pending[~flip]] = rung[~flip]
        pending = pending[~flip]
    return best, lo, hi


def _bisect(
    model: nn.Module,
    images: Tensor,
    perturb: Perturb,
    high: float,
    n_bisect: int,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Per image, the smallest budget in ``(0, high]`` found that changes the prediction.

    ``perturb(x, y0, budget, index)`` returns perturbed images for a subset ``index`` of
    the batch at per-image budgets. First the ladder (:func:`_ladder`) brackets each
    image's flip between two rungs a factor 2 apart, then ``n_bisect`` bisection steps
    narrow the bracket (invariant: flips at ``hi``, not at ``lo``). Returns ``(best
    perturbed images, lo, hi)``, ``hi = inf`` where the prediction does not change at
    any rung; the final bracket ``hi - lo`` is at most ``hi / 2**n_bisect``.
    """
    with torch.no_grad():
        y0 = model_logits(model, images).argmax(1)
    best, lo, hi = _ladder(model, images, y0, perturb, high)
    index = torch.nonzero(torch.isfinite(hi)).flatten()
    for _ in range(n_bisect):
        if index.numel() == 0:
            break
        mid = (lo[index] + hi[index]) / 2
        candidate = perturb(images[index], y0[index], mid, index)
        flip = _flips(model, candidate, y0[index])
        hi[index[flip]] = mid[flip]
        lo[index[~flip]] = mid[~flip]
        best[index[flip]] = candidate[flip]
    return best, lo, hi


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
        self.resolutions: List[Tensor] = []
        self.size = 0

    def add(self, images: Tensor) -> None:
        """Searches one batch ``(B, C, H, W)`` (eval mode, flags restored)."""
        with eval_mode(self.model):
            x = images.to(self.device)
            best, lo, hi = _bisect(self.model, x, self.perturber(x), self.high, self.n_bisect)
            value = distortion_norms(best - x, self.norm).double()
            value[~torch.isfinite(hi)] = math.inf
        self.size = int(images[0].numel())
        self.values.append(value.cpu())
        self.budgets.append(hi.cpu())
        self.resolutions.append(torch.where(torch.isfinite(hi), hi - lo, math.nan).cpu())

    def run(self, images: Tensor, batch_size: int) -> MinimalDistortion:
        """Searches ``images`` in batches of ``batch_size``; the result."""
        for start in range(0, images.shape[0], batch_size):
            self.add(images[start : start + batch_size])
        return self.result()

    def result(self) -> MinimalDistortion:
        """The images searched so far, in the order they came."""
        resolutions = torch.cat(self.resolutions)
        found = torch.isfinite(resolutions)
        return MinimalDistortion(
            method=self.method,
            norm=self.norm,
            values=torch.cat(self.values),
            budgets=torch.cat(self.budgets),
            tolerance=float(resolutions[found].max()) if found.any() else math.nan,
            resolutions=resolutions,
            size=self.size,
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
    steps: Optional[int] = None,
    n_bisect: int = 12,
    max_eps: Optional[float] = None,
    batch_size: int = 64,
    attack: str = "pgd",
) -> MinimalDistortion:
    r"""Smallest perturbation found that changes each image's prediction: PGD's search
    or a minimal-norm attack.

    For each image, a search over the radius ``eps ∈ (0, max_eps]`` of an untargeted
    PGD attack (:func:`~captum_rig.robustness.pgd_attack`, ``steps`` steps of size
    ``eps/4``, no random start, so the result is deterministic) against the model's own
    clean prediction: the radii ``max_eps / 2**k`` for ``k = 10, 9, …, 0`` from small up
    until one flips the prediction (PGD often fails at large radii, where its steps
    overshoot: a search from the top would miss such images), then ``n_bisect``
    bisection steps between that radius and the one below. The result is the norm of
    the flipping perturbation found at the final bracket's upper end: an upper bound on
    the true minimal distortion (PGD may miss closer adversarial examples; bisection
    assumes that inside the last factor-2 bracket a larger radius does not un-flip).
    ``resolutions`` holds each image's final bracket width (at most its radius
    ``/ 2**n_bisect``), ``tolerance`` the largest.

    ``attack="deepfool"``, ``"fab"`` or ``"cw"`` runs that minimal-norm attack instead
    (:class:`~captum_rig.stability.attacks.AttackSearch`, through ``torchattacks``;
    ``steps`` its iterations; no search, resolution 0); DeepFool and CW minimise L2, FAB
    L2 or L∞. :func:`~captum_rig.stability.attacks.best_distortion` keeps each image's
    smallest value over several results.

    Args:
        model (nn.Module): maps ``(N, C, H, W)`` images in [0, 1] to logits.
        images (Tensor): ``(N, C, H, W)`` in [0, 1].
        norm (str): ``"L2"`` or ``"Linf"``.
        steps (int, optional): PGD steps per radius (default 20), or the attack's
            iterations (default 50 for DeepFool, 20 for FAB, 100 for CW).
        n_bisect (int): bisection steps after the ladder; each image's bracket ends at
            most ``radius / 2**n_bisect`` wide (relative resolution ``2**-n_bisect``).
        max_eps (float, optional): largest radius tried; default 1 for L∞ and
            ``√(C·H·W)`` (the diagonal of the [0, 1] box) for L2.
        batch_size (int): images per attack batch.
        attack (str): ``"pgd"`` (default), ``"deepfool"``, ``"fab"`` or ``"cw"``.

    Returns:
        MinimalDistortion: per-image values (``inf`` if no flip up to ``max_eps``), its
        ``mean`` over the images that flipped.

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
        >>> result = minimal_distortion(model, torch.rand(4, 3, 8, 8), norm="Linf")
        >>> result.values.shape
        torch.Size([4])
        >>> minimal_distortion(model, torch.rand(4, 3, 8, 8), attack="deepfool").method
        'deepfool'

    References:
        Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199.
    """
    model, n_bisect, batch_size = _check_distortion_args(model, images, n_bisect, batch_size)
    if attack != "pgd":
        return AttackSearch(model, attack, norm, steps).run(images, batch_size)
    search = pgd_search(model, images[0].numel(), norm, 20 if steps is None else steps,
                        n_bisect, max_eps)  # fmt: skip
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
    ``clamp(x + σ z, 0, 1)`` differs from the clean one (σ from ``max_sigma / 2**10``
    up, doubling, then bisection). ``values`` is the L2 norm of that
    perturbation (after clamping) and ``budgets`` the σ. Bisection assumes the
    prediction, once changed along the ray, stays changed.

    Args:
        model (nn.Module): maps ``(N, C, H, W)`` images in [0, 1] to logits.
        images (Tensor): ``(N, C, H, W)`` in [0, 1].
        n_bisect (int): bisection steps after the ladder; the σ bracket ends at most
            ``σ / 2**n_bisect`` wide.
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
