"""Projected gradient descent (PGD) through ``torchattacks``, seeded, with its targets.

Images are in [0, 1] pixel space and every model contains its own normalization
(torchattacks' convention and ours), so that ``eps`` is measured in pixel units.

References:
    Madry, Makelov, Schmidt, Tsipras, Vladu. Towards Deep Learning Models Resistant to
    Adversarial Attacks. arXiv:1706.06083.
"""

import contextlib
import io
from typing import Optional, Union

import torch
import torchattacks
from torch import Tensor, nn

from captum_rig._checks import (
    check_int,
    check_labels,
    check_model,
    check_norm,
    check_pixels,
    check_real,
)
from captum_rig._context import eval_mode

__all__ = ["attack_targets", "pgd_attack"]

# Message templates (the shared ones live in captum_rig._checks).
NOT_NON_NEGATIVE = "{name} must be a finite number >= 0, got {value}"
LABEL_RANGE = "{name} must be class indices in 0..{high}, got values in {low_got}..{high_got}"
PER_IMAGE_EPS = "per-image eps needs random_start=False"


def _check_label_range(labels: Tensor, num_classes: int, name: str = "labels") -> None:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            LABEL_RANGE.format(
                name=name,
                high=num_classes - 1,
                low_got=int(labels.min()),
                high_got=int(labels.max()),
            )
        )


def attack_targets(
    labels: Tensor, num_classes: int, generator: Union[int, torch.Generator] = 0
) -> Tensor:
    r"""Deterministic random attack targets, never equal to the true label.

    ``target_i = (label_i + 1 + offset_i) mod num_classes`` with
    ``offset_i ~ Uniform{0, ..., num_classes - 2}`` drawn on the CPU from ``generator``
    (a ``torch.Generator`` or an int seed), so every wrong class is equally likely and
    the same seed gives the same targets for every model.

    Args:
        labels (Tensor): integer class indices, shape ``(N,)``.
        num_classes (int): number of classes, at least 2.
        generator (int or torch.Generator): seed, or a generator to draw from (it
            advances, so consecutive batches get fresh offsets).

    Returns:
        Tensor: int64 targets, shape ``(N,)``, on the device of ``labels``.

    Examples:
        >>> labels = torch.tensor([0, 1, 2, 9])
        >>> targets = attack_targets(labels, num_classes=10, generator=0)
        >>> targets.shape, bool((targets != labels).all())
        (torch.Size([4]), True)
    """
    num_classes = check_int(num_classes, name="num_classes", low=2)
    n = labels.shape[0] if isinstance(labels, Tensor) and labels.dim() else 1
    labels = check_labels(labels, n)
    _check_label_range(labels, num_classes)
    if not isinstance(generator, torch.Generator):
        generator = torch.Generator().manual_seed(check_int(generator, name="generator"))
    offsets = torch.randint(0, num_classes - 1, labels.shape, generator=generator)
    return (labels + 1 + offsets.to(labels.device)) % num_classes


def _per_image(value: Tensor, n: int, name: str) -> Tensor:
    if value.dim() > 1 or value.numel() not in (1, n):
        raise ValueError(
            f"{name} must be a float or a tensor of shape ({n},), got shape {tuple(value.shape)}"
        )
    if not bool(torch.isfinite(value).all()) or bool((value < 0).any()):
        raise ValueError(NOT_NON_NEGATIVE.format(name=name, value=value.tolist()))
    return value.reshape(-1).expand(n).contiguous()


def pgd_attack(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    targets: Optional[Tensor] = None,
    eps: Union[float, Tensor] = 4 / 255,
    steps: int = 20,
    alpha: Union[float, Tensor, None] = None,
    norm: str = "Linf",
    random_start: bool = True,
    seed: Optional[int] = 0,
) -> Tensor:
    r"""Projected gradient descent in the [0, 1] box, through ``torchattacks``.

    Untargeted (``targets=None``): ``steps`` ascent steps on the cross-entropy of the
    true ``labels``. Targeted: descent steps on the cross-entropy of ``targets``. Each
    step moves by ``alpha`` (L∞: ``alpha · sign(grad)``; L2: ``alpha · grad / ‖grad‖₂``),
    then projects the perturbation onto the ``eps`` ball of ``norm`` and the image onto
    [0, 1]. ``torchattacks.PGD`` / ``torchattacks.PGDL2`` do the work.

    The model is run in eval mode (every module's training flag is restored after);
    ``images`` are not modified and the result does not require grad.

    Args:
        model (nn.Module): maps ``(N, C, H, W)`` images in [0, 1] to ``(N, classes)``
            logits; it must contain its normalization.
        images (Tensor): ``(N, C, H, W)`` floats in [0, 1], on the model's device.
        labels (Tensor): true class indices ``(N,)``.
        targets (Tensor, optional): target class indices ``(N,)`` for a targeted attack.
        eps (float or Tensor): radius of the perturbation ball in pixel units; a tensor
            of shape ``(N,)`` gives every image its own radius (then
            ``random_start=False``). ``eps = 0`` returns a copy of ``images``.
        steps (int): number of PGD steps, ``>= 1``.
        alpha (float or Tensor, optional): step size; default ``eps / 4`` (for the
            default ``eps = 4/255`` that is ``1/255``), so that ``steps >= 4`` can reach
            the ball's boundary from anywhere inside it.
        norm (str): ``"Linf"`` or ``"L2"``.
        random_start (bool): start from a uniform random point of the L∞ ball, or a
            random point of the L2 ball, as torchattacks does.
        seed (int, optional): seed of the random start, drawn under
            ``torch.random.fork_rng`` so that the global random state is left as it
            was; ``None`` draws from the global state.

    Returns:
        Tensor: adversarial images, shape, dtype and device of ``images``.

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
        >>> x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> adv = pgd_attack(model, x, y, targets=(y + 1) % 10, eps=4 / 255)
        >>> adv.shape, bool((adv - x).abs().max() <= 4 / 255 + 1e-6)
        (torch.Size([4, 3, 8, 8]), True)

    References:
        Jere, Kumar, Koushanfar. arXiv:2012.03516, Table 2.
    """
    model = check_model(model)
    images = check_pixels(images, "images")
    n = images.shape[0]
    labels = check_labels(labels, n).to(images.device)
    if targets is not None:
        targets = check_labels(targets, n, name="targets").to(images.device)
    steps = check_int(steps, name="steps", low=1)
    norm = check_norm(norm)
    per_image = isinstance(eps, Tensor)
    if per_image:
        if random_start:
            raise ValueError(PER_IMAGE_EPS)
        eps = _per_image(eps.detach().to(images), n, "eps")
    else:
        eps = check_real(eps, "eps")
        if eps == 0:
            return images.detach().clone()
    if alpha is None:
        alpha = eps / 4
    elif isinstance(alpha, Tensor):
        alpha = _per_image(alpha.detach().to(images), n, "alpha")
    else:
        alpha = check_real(alpha, "alpha", strict=True)
    if isinstance(alpha, Tensor):
        alpha = alpha.view(n, 1, 1, 1)
    if per_image:
        # torchattacks broadcasts eps against the (N, C, H, W) delta for L∞ (torch.clamp
        # takes tensor bounds) and against the (N,) delta norms for L2.
        eps = eps.view(n, 1, 1, 1) if norm == "Linf" else eps

    attack_class = torchattacks.PGD if norm == "Linf" else torchattacks.PGDL2
    # torchattacks prints a warning for models without parameters; we set the device.
    with contextlib.redirect_stdout(io.StringIO()):
        attack = attack_class(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)
    attack.set_device(images.device)
    if targets is not None:
        attack.set_mode_targeted_by_label(quiet=True)

    fork = contextlib.nullcontext()
    if seed is not None:
        cuda = [images.device.index or 0] if images.device.type == "cuda" else []
        fork = torch.random.fork_rng(devices=cuda)
    with eval_mode(model), fork, torch.enable_grad():
        if seed is not None:
            torch.manual_seed(seed)
        adv = attack(images, targets if targets is not None else labels)
    adv = adv.detach().to(images.dtype)
    if per_image:
        # A zero radius is no attack (and 0/0 in torchattacks' L2 projection).
        still = eps.reshape(-1) == 0
        adv[still] = images[still].detach()
    return adv
