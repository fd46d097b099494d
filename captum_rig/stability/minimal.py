"""The result of a minimal-distortion search: per image, the smallest change found.

Every search fills one (:mod:`~captum_rig.stability.distortion`'s PGD and Gaussian
searches, :mod:`~captum_rig.stability.attacks`' minimal-norm attacks).

References:
    Szegedy, Zaremba, Sutskever, Bruna, Erhan, Goodfellow, Fergus. Intriguing properties
    of neural networks. arXiv:1312.6199 (2013).
"""

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch
from torch import Tensor

__all__ = ["MinimalDistortion", "distortion_norms"]


@dataclass
class MinimalDistortion:
    """Per image, the smallest perturbation found that changes the prediction.

    Attributes:
        method (str): ``"pgd_l2"``, ``"pgd_linf"``, ``"gaussian"``, a minimal-norm
            attack's name (``"deepfool"``, ``"fab_l2"``, ``"cw"``, ...) or ``"best"``.
        norm (str): the norm of ``values``: ``"L2"`` or ``"Linf"``.
        values (Tensor): ``(N,)`` norm of the flipping perturbation found (at radius or
            σ ``budgets``), ``inf`` where none was found up to the maximum.
        budgets (Tensor): ``(N,)`` PGD radius or noise σ at the upper end of the final
            search bracket (the prediction flips there and not ``resolutions`` below; a
            minimal-norm attack's budget is its value), ``inf`` where none was found.
        tolerance (float): the widest final bracket over the changed images, in the
            budget's units (NaN if none changed; 0 for an attack with no search).
        resolutions (Tensor, optional): ``(N,)`` width of each image's final bracket
            (NaN where none was found); default ``tolerance`` everywhere.
        size (int): values per image ``C·H·W`` (for the per-pixel RMS); 0 if unknown.
    """

    method: str
    norm: str
    values: Tensor = field(repr=False)
    budgets: Tensor = field(repr=False)
    tolerance: float
    resolutions: Optional[Tensor] = field(default=None, repr=False)
    size: int = 0

    def __post_init__(self) -> None:
        if self.resolutions is None:
            self.resolutions = torch.full_like(self.budgets, float(self.tolerance))

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

    @property
    def relative_tolerance(self) -> float:
        """The largest ``resolution / budget`` over the changed images (NaN if none)."""
        if not self.n_found:
            return math.nan
        found = self.found & (self.budgets > 0)
        ratio = self.resolutions[found].double() / self.budgets[found].double()
        return float(ratio.max()) if ratio.numel() else 0.0

    @property
    def mean_rms(self) -> float:
        """Szegedy et al.'s unit: the mean L2 value per pixel, ``√(‖δ‖²/(C·H·W))``.

        NaN for an L∞ result or an unknown ``size``.
        """
        if self.norm != "L2" or not self.size:
            return math.nan
        return self.mean / math.sqrt(self.size)

    def to_dict(self) -> Dict[str, Any]:
        """Summary: means (also × 255 and, for L2, per-pixel RMS), counts and resolution."""
        return {
            "method": self.method,
            "norm": self.norm,
            "mean": self.mean,
            "mean_255": self.mean * 255,
            "mean_rms": self.mean_rms,
            "mean_budget": float(self.budgets[self.found].double().mean())
            if self.n_found
            else math.nan,
            "n_found": self.n_found,
            "n_images": int(self.values.numel()),
            "tolerance": self.tolerance,
            "relative_tolerance": self.relative_tolerance,
        }


def distortion_norms(delta: Tensor, norm: str) -> Tensor:
    """``(N,)``: the L∞ or L2 norm of each perturbation of a batch ``(N, ...)``."""
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "Linf" else flat.norm(dim=1)
