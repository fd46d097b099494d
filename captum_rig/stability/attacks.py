"""Minimal-norm attacks (DeepFool, FAB, Carlini-Wagner) and the best result per image.

PGD bisection (:mod:`captum_rig.stability.distortion`) searches a radius; the attacks
here are made to find a close adversarial example directly. Each runs through
``torchattacks`` against the model's own clean prediction, and the norm of the
perturbation it found is the image's distortion (``inf`` where the prediction did not
change). :func:`best_distortion` keeps, per image, the smallest over several attacks,
as AttackBench does: every attack gives an upper bound on the true minimal distortion,
so the smallest is the best bound.

References:
    Moosavi-Dezfooli, Fawzi, Frossard. DeepFool: a simple and accurate method to fool
    deep neural networks. CVPR 2016, arXiv:1511.04599.

    Croce, Hein. Minimally distorted adversarial examples with a fast adaptive boundary
    attack. ICML 2020, arXiv:1907.02044.

    Carlini, Wagner. Towards evaluating the robustness of neural networks. IEEE S&P
    2017, arXiv:1608.04644.

    Cinà et al. AttackBench: evaluating gradient-based attacks for adversarial examples.
    arXiv:2404.19460.
"""

import contextlib
import io
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from captum_rig._checks import check_choice, check_int, check_norm, model_device, model_logits
from captum_rig._context import eval_mode
from captum_rig.stability.minimal import MinimalDistortion, distortion_norms

__all__ = ["MINIMAL_NORM_ATTACKS", "AttackSearch", "best_distortion"]

MINIMAL_NORM_ATTACKS: Dict[str, Tuple[str, ...]] = {
    "deepfool": ("L2",),
    "fab": ("L2", "Linf"),
    "cw": ("L2",),
}
"""Each minimal-norm attack and the norms it minimises (``torchattacks.DeepFool``,
``torchattacks.FAB``, ``torchattacks.CW``)."""
_DEFAULT_STEPS = {"deepfool": 50, "fab": 20, "cw": 100}


def _check_attack(attack: str, norm: str) -> Tuple[str, str]:
    attack = check_choice(attack, "attack", tuple(MINIMAL_NORM_ATTACKS))
    norm = check_norm(norm)
    if norm not in MINIMAL_NORM_ATTACKS[attack]:
        raise ValueError(
            f"attack {attack!r} minimises the {' or '.join(MINIMAL_NORM_ATTACKS[attack])} "
            f"norm, not {norm}: use 'pgd' or 'fab' for {norm}"
        )
    return attack, norm


def _torchattack(model: nn.Module, attack: str, norm: str, steps: int, classes: int, seed: int):
    import torchattacks

    with contextlib.redirect_stdout(io.StringIO()):  # its note on parameter-free models
        if attack == "deepfool":
            made = torchattacks.DeepFool(model, steps=steps, overshoot=0.02)
        elif attack == "fab":
            # eps only caps what FAB accepts: no cap, the search is for the smallest
            made = torchattacks.FAB(
                model, norm=norm, eps=1e6, steps=steps, n_classes=classes, seed=seed
            )
        else:
            made = torchattacks.CW(model, c=1.0, kappa=0.0, steps=steps, lr=0.01)
    return made


class AttackSearch:
    """One minimal-norm attack, fed batch by batch (the interface of
    :class:`~captum_rig.stability.distortion.DistortionSearch`).

    Args:
        model (nn.Module): maps ``(N, C, H, W)`` images in [0, 1] to logits.
        attack (str): ``"deepfool"`` (L2), ``"fab"`` (L2 or L∞) or ``"cw"`` (L2).
        norm (str): the norm the attack minimises and the values are measured in.
        steps (int, optional): the attack's iterations; default 50 (DeepFool), 20 (FAB),
            100 (CW).
        seed (int): FAB's random seed (the global random state is left as it was).

    Models run in float32 (torchattacks' DeepFool and FAB make float32 tensors). CW as
    torchattacks 3.5 has it takes the largest other logit after setting the true
    class's to 0: where every other logit is negative it sees no margin to close and
    reports the image unchanged (a miss, never a wrong distance).

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
        >>> search = AttackSearch(model, "deepfool")
        >>> search.run(torch.rand(5, 3, 4, 4), batch_size=2).values.shape
        torch.Size([5])
    """

    def __init__(
        self,
        model: nn.Module,
        attack: str,
        norm: str = "L2",
        steps: Optional[int] = None,
        seed: int = 0,
    ) -> None:
        self.attack, self.norm = _check_attack(attack, norm)
        self.steps = _DEFAULT_STEPS[self.attack] if steps is None else steps
        self.steps = check_int(self.steps, name="steps", low=1)
        self.seed = check_int(seed, name="seed")
        self.model, self.device = model, model_device(model)
        self.method = self.attack if self.attack != "fab" else f"fab_{self.norm.lower()}"
        self.values: List[Tensor] = []
        self.size = 0

    def add(self, images: Tensor) -> None:
        """Attacks one batch ``(B, C, H, W)`` (eval mode, flags restored)."""
        x = images.to(self.device)
        cuda = [x.device.index or 0] if x.device.type == "cuda" else []
        with eval_mode(self.model), torch.random.fork_rng(devices=cuda):
            with torch.no_grad():
                logits = model_logits(self.model, x)
            y0 = logits.argmax(1)
            made = _torchattack(self.model, self.attack, self.norm, self.steps,
                                logits.shape[1], self.seed)  # fmt: skip
            made.set_device(x.device)
            with torch.enable_grad():
                adv = made(x, y0).detach().to(x.dtype)
            with torch.no_grad():
                flip = model_logits(self.model, adv).argmax(1) != y0
        value = distortion_norms(adv - x, self.norm).double()
        value[~flip] = math.inf
        self.size = int(images[0].numel())
        self.values.append(value.cpu())

    def run(self, images: Tensor, batch_size: int) -> MinimalDistortion:
        """Attacks ``images`` in batches of ``batch_size``; the result."""
        for start in range(0, images.shape[0], batch_size):
            self.add(images[start : start + batch_size])
        return self.result()

    def result(self) -> MinimalDistortion:
        """The images attacked so far, in order; no search, so the resolution is 0."""
        values = torch.cat(self.values)
        return MinimalDistortion(
            self.method, self.norm, values, values.clone(), 0.0, torch.zeros_like(values),
            self.size,
        )  # fmt: skip


def best_distortion(results: Sequence[MinimalDistortion]) -> MinimalDistortion:
    """Per image, the smallest distortion over several attacks (all in one norm).

    Every attack's value is the norm of a perturbation that changes the prediction, an
    upper bound on the true minimal distortion: their minimum is the best bound known.
    ``budgets`` and ``resolutions`` are those of the attack that gave each minimum.

    Args:
        results (sequence of MinimalDistortion): the same images, the same norm.

    Returns:
        MinimalDistortion: ``method="best"``; ``inf`` where no attack changed the image.

    Raises:
        ValueError: no result, different norms or different numbers of images.

    Examples:
        >>> a = MinimalDistortion("a", "L2", torch.tensor([1.0, math.inf]),
        ...                       torch.tensor([1.0, math.inf]), 0.1)
        >>> b = MinimalDistortion("b", "L2", torch.tensor([2.0, 3.0]),
        ...                       torch.tensor([2.0, 3.0]), 0.0)
        >>> best_distortion([a, b]).values.tolist()
        [1.0, 3.0]
    """
    results = list(results)
    if not results:
        raise ValueError("results must hold at least one MinimalDistortion")
    norms = {r.norm for r in results}
    counts = {int(r.values.numel()) for r in results}
    if len(norms) > 1 or len(counts) > 1:
        raise ValueError(
            f"results must share one norm and one image count, got norms {sorted(norms)} "
            f"and counts {sorted(counts)}"
        )
    values = torch.stack([r.values.double() for r in results])
    pick = values.argmin(0, keepdim=True)
    budgets = torch.stack([r.budgets.double() for r in results]).gather(0, pick)[0]
    resolutions = torch.stack([r.resolutions.double() for r in results]).gather(0, pick)[0]
    found = torch.isfinite(values.min(0).values)
    tolerance = float(resolutions[found].max()) if bool(found.any()) else math.nan
    return MinimalDistortion(
        "best", results[0].norm, values.min(0).values, budgets, tolerance, resolutions,
        max(r.size for r in results),
    )  # fmt: skip
