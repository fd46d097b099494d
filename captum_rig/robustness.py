"""Robustness to PGD attacks, side by side: the paper's Table 2 as a tool.

:func:`evaluate_robustness` attacks every image of a data set with projected gradient
descent (PGD, Madry et al. 2018, through ``torchattacks``) and reports, for each model,
the three columns of the paper's Table 2: clean top-1 accuracy, attack success rate and
recovery rate. All models of one comparison see the same images, the same attack
targets and the same random starts.

Conventions: images are in [0, 1] pixel space and every model contains its own
normalization (torchattacks' convention and ours), so that ``eps`` is measured in pixel
units: ``eps = 4/255`` is four grey levels.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.

    Madry, Makelov, Schmidt, Tsipras, Vladu. Towards Deep Learning Models Resistant to
    Adversarial Attacks. arXiv:1706.06083.
"""

import contextlib
import csv
import io
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import torch
import torchattacks
from torch import Tensor, nn

from captum_rig._checks import (
    check_batches,
    check_int,
    check_labels,
    check_model,
    check_models,
    check_norm,
    check_pixels,
    check_real,
    model_device,
    model_logits,
)
from captum_rig._context import atomic_path, eval_mode

__all__ = [
    "attack_targets",
    "pgd_attack",
    "evaluate_robustness",
    "RobustnessReport",
    "RobustnessRow",
]

# Message templates (the shared ones live in captum_rig._checks).
NOT_NON_NEGATIVE = "{name} must be a finite number >= 0, got {value}"
LABEL_RANGE = "{name} must be class indices in 0..{high}, got values in {low_got}..{high_got}"
NO_DATA = "data must not be empty: it yielded no images"
CLASS_MISMATCH = (
    "all models must predict the same number of classes, got {got} for model {name!r} "
    "and {expected} for the others"
)
TOO_FEW_CLASSES = "a targeted attack needs at least 2 classes, the model predicts {got}"
PER_IMAGE_EPS = "per-image eps needs random_start=False"


# --------------------------------------------------------------------------- checks


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


# --------------------------------------------------------------------------- attack


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


# --------------------------------------------------------------------------- report


@dataclass
class RobustnessRow:
    r"""One model's line of the table.

    With N images :math:`x_i`, labels :math:`y_i`, targets :math:`t_i`, the model's
    top-1 prediction :math:`f` and adversarial images :math:`x'_i`:

    - ``clean_accuracy`` = #{i : f(x_i) = y_i} / N
    - ``attack_success_rate`` = #{i : f(x'_i) = t_i} / N for a targeted attack,
      #{i : f(x'_i) ≠ y_i} / N for an untargeted one
    - ``recovery_rate`` = #{i : f(x'_i) = y_i} / N (robust accuracy)

    All three count every image, including those misclassified before the attack.
    ``clean_predictions`` and ``adversarial_predictions`` hold the ``(N,)`` predictions
    in data order (CPU).
    """

    model: str
    n_images: int
    clean_accuracy: float
    attack_success_rate: float
    recovery_rate: float
    clean_predictions: Tensor = field(repr=False, compare=False)
    adversarial_predictions: Tensor = field(repr=False, compare=False)

    def to_dict(self) -> Dict[str, Any]:
        """The summary numbers (no per-image predictions)."""
        return {
            "model": self.model,
            "n_images": self.n_images,
            "clean_accuracy": self.clean_accuracy,
            "attack_success_rate": self.attack_success_rate,
            "recovery_rate": self.recovery_rate,
        }


@dataclass
class RobustnessReport:
    """The paper's Table 2 for some models under one attack.

    Attributes:
        rows (list[RobustnessRow]): one per model, in the order given.
        norm, eps, alpha, steps, targeted, random_start, seed: the attack's settings.
        labels (Tensor): ``(N,)`` true labels in data order (CPU).
        targets (Tensor or None): ``(N,)`` targets shared by every model (CPU), or None
            for an untargeted attack.
    """

    rows: List[RobustnessRow]
    norm: str
    eps: float
    alpha: float
    steps: int
    targeted: bool
    random_start: bool
    seed: int
    labels: Tensor = field(repr=False, compare=False)
    targets: Optional[Tensor] = field(repr=False, compare=False)

    _SETTINGS = ("norm", "eps", "alpha", "steps", "targeted", "random_start", "seed")

    def __getitem__(self, model: str) -> RobustnessRow:
        for row in self.rows:
            if row.model == model:
                return row
        raise KeyError(f"no model named {model!r}; models: {[r.model for r in self.rows]}")

    @property
    def models(self) -> List[str]:
        """The model names, in order."""
        return [row.model for row in self.rows]

    def to_dict(self) -> Dict[str, Any]:
        """Settings and one summary dict per model, JSON-ready.

        Examples:
            >>> report.to_dict()["rows"][0]["recovery_rate"]  # doctest: +SKIP
            0.25
        """
        out: Dict[str, Any] = {name: getattr(self, name) for name in self._SETTINGS}
        out["rows"] = [row.to_dict() for row in self.rows]
        return out

    def to_csv(self, path: Union[str, os.PathLike]) -> None:
        """Writes one line per model (summary and settings), atomically.

        The file is written under a temporary name in the same folder and renamed when
        complete, so a failure never leaves a half-written file at ``path``.
        """
        settings = {name: getattr(self, name) for name in self._SETTINGS}
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            header = list(self.rows[0].to_dict()) if self.rows else ["model"]
            writer = csv.DictWriter(f, fieldnames=header + list(settings))
            writer.writeheader()
            for row in self.rows:
                writer.writerow({**row.to_dict(), **settings})

    def to_markdown(self) -> str:
        """A Markdown table in percent, like the paper's Table 2, with the settings below.

        Examples:
            >>> print(report.to_markdown())  # doctest: +SKIP
            | model | clean accuracy (%) | attack success (%) | recovery (%) |
            |---|---:|---:|---:|
            | natural | 92.0 | 97.5 | 1.0 |
        """
        lines = [
            "| model | clean accuracy (%) | attack success (%) | recovery (%) |",
            "|---|---:|---:|---:|",
        ]
        for row in self.rows:
            lines.append(
                f"| {row.model} | {100 * row.clean_accuracy:.1f} | "
                f"{100 * row.attack_success_rate:.1f} | {100 * row.recovery_rate:.1f} |"
            )
        kind = "targeted" if self.targeted else "untargeted"
        grey = f" ({255 * self.eps:.3g}/255)" if self.norm == "Linf" else ""
        n = self.rows[0].n_images if self.rows else 0
        lines.append("")
        lines.append(
            f"{kind} {self.norm} PGD, eps = {self.eps:.4g}{grey}, "
            f"alpha = {self.alpha:.4g}, {self.steps} steps, "
            f"random start: {self.random_start}, seed {self.seed}, {n} images."
        )
        return "\n".join(lines)


# --------------------------------------------------------------------------- evaluate


def evaluate_robustness(
    models: Union[Mapping[str, nn.Module], nn.Module],
    data: Union[Tensor, Tuple[Tensor, Tensor], Iterable[Tuple[Tensor, Tensor]]],
    labels: Optional[Tensor] = None,
    eps: float = 4 / 255,
    steps: int = 20,
    alpha: Optional[float] = None,
    norm: str = "Linf",
    targeted: bool = True,
    random_start: bool = True,
    batch_size: int = 64,
    device: Union[str, torch.device, None] = None,
    progress: bool = True,
    seed: int = 0,
) -> RobustnessReport:
    r"""Attacks every image with PGD and reports Table 2 of the paper for each model.

    For every batch, each model is evaluated on the clean images and on its own PGD
    adversarial images. Every model of the comparison sees the same images, the same
    targets and the same random start: the data is read once, and for each batch the
    targets are drawn once (see :func:`attack_targets`) and the random start is seeded
    with ``seed`` and the batch index.

    Columns, over all N images (misclassified ones included), see :class:`RobustnessRow`:

    - clean accuracy: fraction of clean images predicted as their label;
    - attack success rate: targeted, fraction of adversarial images predicted as their
      target; untargeted, fraction predicted as anything but their label;
    - recovery rate: fraction of adversarial images still predicted as their label.

    Args:
        models (nn.Module or dict[str, nn.Module]): the model, or named models to compare.
            Each maps ``(N, C, H, W)`` images in [0, 1] to ``(N, classes)`` logits and
            contains its normalization. Run in eval mode; training flags are restored.
        data (Tensor, (Tensor, Tensor) or iterable): images ``(N, C, H, W)`` in [0, 1]
            (then ``labels`` is required), a pair ``(images, labels)``, or an iterable of
            ``(images, labels)`` batches such as a DataLoader (read once).
        labels (Tensor, optional): ``(N,)`` class indices when ``data`` is a tensor.
        eps (float): L∞ or L2 radius in pixel units, ``>= 0``; default ``4/255``.
        steps (int): PGD steps, ``>= 1``; default 20.
        alpha (float, optional): step size; default ``eps / 4`` (``1/255`` at the default
            ``eps``, the step the paper's setting suggests).
        norm (str): ``"Linf"`` (``torchattacks.PGD``) or ``"L2"`` (``torchattacks.PGDL2``).
        targeted (bool): targeted attack towards a random wrong class (default), or
            untargeted.
        random_start (bool): start PGD at a random point of the ball.
        batch_size (int): images per batch when ``data`` is a tensor.
        device (str or torch.device, optional): where to run; default each model's own
            device. Models are never moved: with ``device`` given they must live there.
        progress (bool): show a tqdm progress bar over batches.
        seed (int): seed of the targets and the random starts.

    Returns:
        RobustnessReport: ``rows`` (one :class:`RobustnessRow` per model), settings,
        ``labels`` and ``targets``; ``to_markdown()``, ``to_csv(path)``, ``to_dict()``.

    Examples:
        >>> natural = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10))
        >>> low_rank_trained = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10))
        >>> x, y = torch.rand(32, 3, 16, 16), torch.randint(0, 10, (32,))
        >>> report = evaluate_robustness(
        ...     {"natural": natural, "low-rank": low_rank_trained}, x, y, progress=False
        ... )
        >>> report.models, report.targets.shape
        (['natural', 'low-rank'], torch.Size([32]))

    References:
        Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
        arXiv:2012.03516, Table 2.
    """
    models = check_models(models, device)
    device = None if device is None else torch.device(device)
    eps = check_real(eps, "eps")
    attack = {
        "eps": eps,
        "steps": check_int(steps, name="steps", low=1),
        "alpha": eps / 4 if alpha is None else check_real(alpha, "alpha", strict=True),
        "norm": check_norm(norm),
        "random_start": bool(random_start),
    }
    batch_size = check_int(batch_size, name="batch_size", low=1)
    seed = check_int(seed, name="seed")
    data = check_batches(data, labels, batch_size, labels_required=True, box=True)

    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed)
    num_classes: Optional[int] = None
    all_labels: List[Tensor] = []
    all_targets: List[Tensor] = []
    predictions: Dict[str, List[Tuple[Tensor, Tensor]]] = {name: [] for name in models}
    bar = tqdm(data.batches, total=data.length, disable=not progress, desc="PGD", unit="batch")
    with eval_mode(*models.values()):
        for index, (images, batch_labels) in enumerate(bar):
            batch_labels = batch_labels.cpu()
            inputs = {
                n: images.to(model_device(m) if device is None else device)
                for n, m in models.items()
            }
            clean = {n: _clean_logits(m, inputs[n], n) for n, m in models.items()}
            num_classes = _num_classes(clean, num_classes, targeted)
            _check_label_range(batch_labels, num_classes)
            # One draw per batch: every model is attacked towards the same targets.
            targets = attack_targets(batch_labels, num_classes, generator) if targeted else None
            batch_seed = (seed * 1_000_003 + index) % (2**63)
            for name, model in models.items():
                adv = _attack(model, inputs[name], batch_labels, targets, attack, batch_seed, name)
                predictions[name].append((clean[name].argmax(1).cpu(), adv))
            all_labels.append(batch_labels)
            if targets is not None:
                all_targets.append(targets)
    return _report(predictions, all_labels, all_targets if targeted else None, attack, seed)


def _clean_logits(model: nn.Module, x: Tensor, name: str) -> Tensor:
    with torch.no_grad():
        return model_logits(model, x, name=f"model {name!r}")


def _num_classes(logits: Mapping[str, Tensor], expected: Optional[int], targeted: bool) -> int:
    """The class count every model agrees on (``expected``: the earlier batches')."""
    for name, out in logits.items():
        if expected is None:
            expected = out.shape[1]
            if targeted and expected < 2:
                raise ValueError(TOO_FEW_CLASSES.format(got=expected))
        elif out.shape[1] != expected:
            raise ValueError(CLASS_MISMATCH.format(got=out.shape[1], name=name, expected=expected))
    assert expected is not None  # models is never empty
    return expected


def _attack(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    targets: Optional[Tensor],
    attack: Mapping[str, Any],
    seed: int,
    name: str,
) -> Tensor:
    """The model's predictions ``(N,)`` (CPU) on its own PGD images of ``x``."""
    adv = pgd_attack(
        model,
        x,
        labels.to(x.device),
        targets=None if targets is None else targets.to(x.device),
        seed=seed,
        **attack,
    )
    with torch.no_grad():
        return model_logits(model, adv, name=f"model {name!r}").argmax(1).cpu()


def _report(
    predictions: Mapping[str, List[Tuple[Tensor, Tensor]]],
    labels: List[Tensor],
    targets: Optional[List[Tensor]],
    attack: Mapping[str, Any],
    seed: int,
) -> RobustnessReport:
    """Table 2's rows from the per-batch (clean, adversarial) predictions of each model."""
    if not labels or sum(len(y) for y in labels) == 0:
        raise ValueError(NO_DATA)
    y = torch.cat(labels)
    t = None if targets is None else torch.cat(targets)
    rows = []
    for name, pairs in predictions.items():
        pred = torch.cat([clean for clean, _ in pairs])
        adv_pred = torch.cat([adv for _, adv in pairs])
        success = adv_pred != y if t is None else adv_pred == t
        rows.append(
            RobustnessRow(
                model=name,
                n_images=len(y),
                clean_accuracy=(pred == y).double().mean().item(),
                attack_success_rate=success.double().mean().item(),
                recovery_rate=(adv_pred == y).double().mean().item(),
                clean_predictions=pred,
                adversarial_predictions=adv_pred,
            )
        )
    return RobustnessReport(
        rows=rows,
        norm=attack["norm"],
        eps=attack["eps"],
        alpha=attack["alpha"],
        steps=attack["steps"],
        targeted=t is not None,
        random_start=attack["random_start"],
        seed=seed,
        labels=y,
        targets=t,
    )
