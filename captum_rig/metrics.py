"""Scores: a model's accuracy, and attribution maps' mask energy and deletion/insertion.

Both scores rank pixels by their *importance*, the absolute attribution summed over the
channel dim, so a map's sign convention does not matter. :func:`mask_energy` needs a
known object mask (synthetic data such as :func:`captum_rig.synthetic.make_shapes`);
:func:`deletion_insertion` needs only the model.

References:
    Zhang et al. Top-down Neural Attention by Excitation Backprop. ECCV 2016 (the
    pointing game); Wang et al. Score-CAM. CVPR Workshops 2020 (its energy-based form).

    Petsiuk, Das, Saenko. RISE: Randomized Input Sampling for Explanation of Black-box
    Models. BMVC 2018 (deletion and insertion).
"""

from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from captum_rig._checks import (
    check_images,
    check_int,
    check_labels,
    model_device,
    model_logits,
)
from captum_rig._context import eval_mode

__all__ = ["accuracy", "mask_energy", "deletion_insertion", "mean_colour_baseline"]


def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 256) -> float:
    r"""Top-1 accuracy of ``model`` on ``images`` ``(N, C, H, W)`` and ``labels`` ``(N,)``.

    In eval mode (each module's flag restored afterwards), without gradients, in batches
    of ``batch_size`` moved to the model's device.

    Raises:
        TypeError: ``images`` is not a tensor, or ``labels`` are not integer class indices
            (float labels would never equal a predicted class).
        ValueError: ``labels`` do not hold one label per image, or hold a class the
            model cannot output (below 0 or not below its number of logits).

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
        >>> 0.0 <= accuracy(model, torch.rand(5, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1])) <= 1.0
        True
    """
    batch_size = check_int(batch_size, name="batch_size", low=1)
    if not isinstance(images, Tensor) or images.dim() < 1:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise TypeError(f"images must be a tensor (N, C, H, W), got {got}")
    labels = check_labels(labels, images.shape[0])
    device = model_device(model)
    correct = 0
    with eval_mode(model), torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(device)
            y = labels[start : start + batch_size].to(device)
            logits = model_logits(model, x)
            _check_classes(y, logits.shape[1])
            correct += int((logits.argmax(1) == y).sum())
    return correct / max(images.shape[0], 1)


def _check_classes(labels: Tensor, classes: int) -> None:
    """Raises a ValueError naming ``labels`` unless every label is in [0, classes)."""
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        raise ValueError(
            f"labels must be class indices in [0, {classes - 1}] (the model has {classes} "
            f"outputs), got labels in [{low}, {high}]"
        )


def _pixel_importance(attributions: Any) -> Tensor:
    """``(N, C, H, W)`` → ``(N, H·W)`` float64: absolute attribution summed over channels.

    NaN or infinite attributions raise a ValueError naming the maps that hold them.
    """
    if not isinstance(attributions, Tensor):
        raise TypeError(f"attributions must be a torch.Tensor, got {type(attributions).__name__}")
    if attributions.dim() != 4:
        raise ValueError(
            f"attributions must have 4 dims (N, C, H, W), got shape {tuple(attributions.shape)}"
        )
    bad = ~torch.isfinite(attributions.detach())
    if bool(bad.any()):
        maps = sorted({int(i) for i in bad.flatten(1).any(1).nonzero().flatten()})
        raise ValueError(
            f"attributions must be finite, got {int(bad.sum())} NaN or infinite values in "
            f"map(s) {maps[:10]}{' ...' if len(maps) > 10 else ''}"
        )
    return attributions.detach().abs().sum(1).flatten(1).double()


def _dilate(masks: Tensor, pixels: int) -> Tensor:
    """Grows ``(N, H, W)`` bool masks by ``pixels`` in every direction (a square)."""
    region = masks.unsqueeze(1).double()
    return torch.nn.functional.max_pool2d(region, 2 * pixels + 1, 1, pixels)[:, 0] > 0


def mask_energy(attributions: Tensor, masks: Tensor, tolerance: int = 0) -> Tensor:
    r"""Share of each map's absolute attribution that lies on the object mask.

    The energy-based pointing game: with :math:`a_{c,p}` the attribution of channel
    :math:`c` at pixel :math:`p`,

    .. math::
        E = \frac{\sum_{p \in \text{mask}} \sum_c |a_{c,p}|}{\sum_p \sum_c |a_{c,p}|}.

    1 means all attribution is on the object; a map spread evenly over the image scores
    the mask's area fraction. An all-zero map scores NaN.

    Args:
        attributions (Tensor): ``(N, C, H, W)``, any ``C`` (1 for channel-reduced maps).
        masks (Tensor): ``(N, H, W)``, True (or nonzero) on the object.
        tolerance (int): grow each mask by this many pixels first (a square
            neighbourhood), so that attribution on the object's outline counts as on
            the object, like the pointing game's tolerance margin. Default: 0.

    Returns:
        Tensor: ``(N,)`` float64 in [0, 1], NaN for an all-zero map.

    Examples:
        >>> a = torch.zeros(2, 3, 4, 4)
        >>> a[0, :, 0, 0] = 1.0                  # all mass in the mask's corner
        >>> a[1] = 1.0                           # spread evenly
        >>> m = torch.zeros(2, 4, 4, dtype=torch.bool)
        >>> m[:, :2, :2] = True                  # a quarter of the image
        >>> mask_energy(a, m)
        tensor([1.0000, 0.2500], dtype=torch.float64)
        >>> mask_energy(a, m, tolerance=1)[1]    # the mask grown to 3×3 pixels
        tensor(0.5625, dtype=torch.float64)
    """
    mass = _pixel_importance(attributions)
    expected = (attributions.shape[0], *attributions.shape[2:])
    if not isinstance(masks, Tensor):
        raise TypeError(f"masks must be a torch.Tensor, got {type(masks).__name__}")
    if tuple(masks.shape) != expected:
        raise ValueError(f"masks must have shape (N, H, W) = {expected}, got {tuple(masks.shape)}")
    tolerance = check_int(tolerance, "tolerance", low=0)
    masks = masks if masks.dtype == torch.bool else masks != 0
    region = _dilate(masks, tolerance) if tolerance else masks
    on = (mass * region.flatten(1).to(mass.device, mass.dtype)).sum(1)
    total = mass.sum(1)
    return torch.where(total > 0, on / total.clamp_min(1e-300), torch.nan)


def mean_colour_baseline(images: Tensor) -> Tensor:
    r"""Each image replaced by its per-channel mean colour: no shape left.

    Args:
        images (Tensor): ``(..., C, H, W)``.

    Returns:
        Tensor: same shape, constant over ``H, W`` (an expanded view, not a copy).

    Examples:
        >>> x = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])      # (1, 1, 2, 2)
        >>> mean_colour_baseline(x)
        tensor([[[[0.7500, 0.7500],
                  [0.7500, 0.7500]]]])
    """
    return images.mean(dim=(-2, -1), keepdim=True).expand_as(images)


def _check_target(target: Any, n: int, device: torch.device) -> Tensor:
    """One class index per image, as a ``(N,)`` int64 tensor; an int is used for all."""
    if isinstance(target, bool):
        raise TypeError(f"target must be class indices, got {target!r}")
    t = torch.as_tensor(target, device=device)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"target must be integer class indices, got dtype {t.dtype}")
    t = t.reshape(-1).long()
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"target must hold one class per image ({n}), got {t.numel()}")
    if bool((t < 0).any()):
        raise ValueError(f"target must be class indices >= 0, got {t.tolist()}")
    return t


def _ranks(importance: Tensor) -> Tensor:
    """Each pixel's place in the ranking, 0 = most important; ties by pixel index."""
    order = torch.argsort(-importance, dim=1, stable=True)
    places = torch.arange(importance.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, places.contiguous())


def _curve(
    model: Callable[[Tensor], Tensor],
    start: Tensor,
    end: Tensor,
    position: Tensor,
    counts: Sequence[int],
    target: Tensor,
    batch_size: int,
) -> Tensor:
    """``(N, steps)``: p(target) at each step, the top ``counts[s]`` pixels from ``end``."""
    n, _, h, w = start.shape
    steps = len(counts)
    k = torch.tensor(counts, device=start.device)
    probs: List[Tensor] = []
    # (image, step) pairs in chunks of batch_size, so memory holds one batch of images
    for first in range(0, n * steps, batch_size):
        flat = torch.arange(first, min(first + batch_size, n * steps), device=start.device)
        img, step = flat // steps, flat % steps
        chosen = (position[img] < k[step, None]).view(-1, 1, h, w)
        logits = model(torch.where(chosen, end[img], start[img]))
        if int(target.max()) >= logits.shape[1]:
            raise ValueError(
                f"target must be < the number of classes ({logits.shape[1]}), "
                f"got {int(target.max())}"
            )
        p = torch.softmax(logits.double(), dim=1)
        probs.append(p.gather(1, target[img, None])[:, 0])
    return torch.cat(probs).view(n, steps)


@torch.no_grad()
def deletion_insertion(
    model: Callable[[Tensor], Tensor],
    images: Tensor,
    attributions: Tensor,
    target: Any,
    n_steps: int = 16,
    baseline: Optional[Tensor] = None,
    batch_size: int = 512,
) -> Dict[str, Tensor]:
    r"""Deletion and insertion curves (Petsiuk et al., RISE, 2018) and their AUCs.

    Pixels are ranked by absolute attribution summed over channels (most important
    first; ties by pixel index, row-major). At step ``s = 0..n_steps`` the top
    ``round(s / n_steps · H·W)`` pixels (all channels) are

    - **deleted**: replaced by the baseline in the image: the target's softmax
      probability should fall fast, so a *lower* area under the curve is better;
    - **inserted**: copied from the image into the baseline: the probability should rise
      fast, a *higher* area is better.

    The area is the trapezoid rule over the deleted/inserted fraction in [0, 1].

    Args:
        model (Callable): takes ``(B, C, H, W)`` images, returns logits ``(B, classes)``;
            put it in eval mode first.
        images (Tensor): ``(N, C, H, W)``.
        attributions (Tensor): ``(N, C', H, W)``, any ``C'`` (``C`` or 1), finite (a
            NaN or infinite value has no place in a ranking: ValueError).
        target (int, list or Tensor): class scored, one per image (an int: the same
            class for all).
        n_steps (int): number of steps. Default: 16.
        baseline (Tensor, optional): ``(N, C, H, W)`` what deleted pixels become and
            insertion starts from. Default: :func:`mean_colour_baseline`.
        batch_size (int): images per forward pass; ``N · (n_steps + 1)`` images are
            scored for each curve. Default: 512.

    Returns:
        dict: ``fractions`` ``(n_steps + 1,)`` float64; ``deletion`` and ``insertion``
        curves ``(N, n_steps + 1)`` float64; ``deletion_auc`` and ``insertion_auc``
        ``(N,)`` float64. All on the images' device.

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> x = torch.rand(3, 1, 2, 2)
        >>> r = deletion_insertion(model, x, torch.rand(3, 1, 2, 2), target=1, n_steps=4)
        >>> r["fractions"]
        tensor([0.0000, 0.2500, 0.5000, 0.7500, 1.0000], dtype=torch.float64)
        >>> r["deletion"].shape, r["insertion_auc"].shape
        (torch.Size([3, 5]), torch.Size([3]))
    """
    if not callable(model):
        raise TypeError(f"model must be callable, got {type(model).__name__}")
    images = check_images(images, "images", ndim=4, layout="(N, C, H, W)")
    n, _, h, w = images.shape
    n_steps = check_int(n_steps, "n_steps", low=1)
    batch_size = check_int(batch_size, "batch_size", low=1)
    importance = _pixel_importance(attributions)
    if importance.shape != (n, h * w):
        raise ValueError(
            f"attributions must have shape ({n}, C, {h}, {w}), got {tuple(attributions.shape)}"
        )
    target = _check_target(target, n, images.device)
    if baseline is None:
        baseline = mean_colour_baseline(images)
    if not isinstance(baseline, Tensor) or baseline.shape != images.shape:
        raise ValueError(
            f"baseline must have the images' shape {tuple(images.shape)}, "
            f"got {tuple(getattr(baseline, 'shape', ())) or type(baseline).__name__}"
        )
    baseline = baseline.to(images.device, images.dtype)
    position = _ranks(importance.to(images.device))
    counts = [round(s / n_steps * h * w) for s in range(n_steps + 1)]
    fractions = torch.tensor([k / (h * w) for k in counts], dtype=torch.float64)
    fractions = fractions.to(images.device)
    deletion = _curve(model, images, baseline, position, counts, target, batch_size)
    insertion = _curve(model, baseline, images, position, counts, target, batch_size)
    return {
        "fractions": fractions,
        "deletion": deletion,
        "insertion": insertion,
        "deletion_auc": torch.trapezoid(deletion, fractions, dim=1),
        "insertion_auc": torch.trapezoid(insertion, fractions, dim=1),
    }
