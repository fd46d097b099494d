"""The paper's Table 2 as a tool: clean accuracy, attack success and recovery per model.

All models of one comparison see the same images, the same attack targets and the same
random starts; the table is written as Markdown, CSV or JSON through
:mod:`captum_rig._tables`.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516, Table 2.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from captum_rig._checks import (
    check_batches,
    check_int,
    check_models,
    check_norm,
    check_real,
    model_device,
    model_logits,
)
from captum_rig._context import eval_mode
from captum_rig._tables import SKIP, Record, Table, markdown_table, number
from captum_rig.robustness.pgd import _check_label_range, attack_targets, pgd_attack

__all__ = ["evaluate_robustness", "RobustnessReport", "RobustnessRow"]

# Message templates (the shared ones live in captum_rig._checks).
NO_DATA = "data must not be empty: it yielded no images"
CLASS_MISMATCH = (
    "all models must predict the same number of classes, got {got} for model {name!r} "
    "and {expected} for the others"
)
TOO_FEW_CLASSES = "a targeted attack needs at least 2 classes, the model predicts {got}"


@dataclass
class RobustnessRow(Record):
    r"""One model's line of the table.

    With N images :math:`x_i`, labels :math:`y_i`, targets :math:`t_i`, the model's
    top-1 prediction :math:`f` and adversarial images :math:`x'_i`:

    - ``clean_accuracy`` = #{i : f(x_i) = y_i} / N
    - ``attack_success_rate`` = #{i : f(x'_i) = t_i} / N for a targeted attack; for an
      untargeted one the flips of correct predictions,
      #{i : f(x_i) = y_i, f(x'_i) ≠ y_i} / #{i : f(x_i) = y_i} (NaN if none is correct:
      an image the model already gets wrong is no success of the attack)
    - ``recovery_rate`` = #{i : f(x'_i) = y_i} / N (robust accuracy)

    Clean accuracy, recovery and targeted success count every image, misclassified ones
    included.
    ``clean_predictions`` and ``adversarial_predictions`` hold the ``(N,)`` predictions
    in data order (CPU); ``to_dict()`` holds the summary numbers only.
    """

    model: str
    n_images: int
    clean_accuracy: float
    attack_success_rate: float
    recovery_rate: float
    clean_predictions: Tensor = field(repr=False, compare=False, metadata=SKIP)
    adversarial_predictions: Tensor = field(repr=False, compare=False, metadata=SKIP)


@dataclass
class RobustnessReport(Table):
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
    labels: Tensor = field(repr=False, compare=False, metadata=SKIP)
    targets: Optional[Tensor] = field(repr=False, compare=False, metadata=SKIP)

    _SETTINGS = ("norm", "eps", "alpha", "steps", "targeted", "random_start", "seed")
    _SUMMARY = ("model", "n_images", "clean_accuracy", "attack_success_rate", "recovery_rate")
    _COLUMNS = _SUMMARY + _SETTINGS  # the CSV's: each row's summary, then the settings

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

    def csv_rows(self) -> List[Dict[str, Any]]:
        """One line per model: its summary, then the attack's settings."""
        settings = {name: getattr(self, name) for name in self._SETTINGS}
        return [{**row.to_dict(), **settings} for row in self.rows]

    def to_markdown(self) -> str:
        """A Markdown table in percent, like the paper's Table 2, with the settings below.

        Examples:
            >>> print(report.to_markdown())  # doctest: +SKIP
            | model | clean accuracy (%) | attack success (%) | recovery (%) |
            |---|---:|---:|---:|
            | natural | 92.0 | 97.5 | 1.0 |
        """
        success = "attack success (%)" if self.targeted else "flips of correct (%)"
        header = ["model", "clean accuracy (%)", success, "recovery (%)"]
        percents = [
            [row.model]
            + [
                number(100 * value, 1, fixed=True)
                for value in (row.clean_accuracy, row.attack_success_rate, row.recovery_rate)
            ]
            for row in self.rows
        ]
        lines = [markdown_table(header, percents)]
        kind = "targeted" if self.targeted else "untargeted"
        grey = f" ({255 * self.eps:.3g}/255)" if self.norm == "Linf" else ""
        n = self.rows[0].n_images if self.rows else 0
        lines.append("")
        lines.append(
            f"{kind} {self.norm} PGD, eps = {self.eps:.4g}{grey}, "
            f"alpha = {self.alpha:.4g}, {self.steps} steps, "
            f"random start: {self.random_start}, seed {self.seed}, {n} images."
        )
        if not self.targeted:
            lines.append(
                "Attack success: correctly classified images whose prediction changed, "
                "over the correctly classified images."
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

    Columns (see :class:`RobustnessRow`):

    - clean accuracy: fraction of clean images predicted as their label;
    - attack success rate: targeted, fraction of all adversarial images predicted as
      their target; untargeted, fraction of the correctly classified images whose
      prediction the attack changed (the images already misclassified are left out);
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


def _success_rate(pred: Tensor, adv_pred: Tensor, y: Tensor, t: Optional[Tensor]) -> float:
    """Targeted: hits of the target over all images; untargeted: flips of correct ones."""
    if t is not None:
        return (adv_pred == t).double().mean().item()
    correct = pred == y
    if not bool(correct.any()):
        return float("nan")
    return (adv_pred[correct] != y[correct]).double().mean().item()


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
        rows.append(
            RobustnessRow(
                model=name,
                n_images=len(y),
                clean_accuracy=(pred == y).double().mean().item(),
                attack_success_rate=_success_rate(pred, adv_pred, y, t),
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
