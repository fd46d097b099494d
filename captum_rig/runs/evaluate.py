"""Scores of a data set's attribution maps: deletion and insertion AUC per method.

The maps are read from the file a batch at a time beside the same batches of images
(:func:`~captum_rig.metrics.deletion_insertion`), so memory holds one batch whatever
the number of images; what is kept is one score per image, method and metric, for the
means, their confidence intervals and the figure of the distributions
(:func:`captum_rig.viz.scores.plot_score_distributions`).
"""

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from captum_rig._checkpoint import model_digest
from captum_rig._checks import check_batches, check_int, check_model, model_device
from captum_rig._context import PathLike, eval_mode
from captum_rig._tables import SKIP, Record, Table, markdown_table
from captum_rig.metrics import deletion_insertion
from captum_rig.runs.maps_file import AttributionFile, image_names

__all__ = [
    "SCORES",
    "ScoreRow",
    "ScoreTable",
    "evaluate_attributions",
    "mean_interval",
    "sparseness",
]

SCORES = ("deletion_auc", "insertion_auc", "sparseness")
"""The per-image scores: deletion AUC (lower is better), insertion AUC (higher), and
the sparseness of the map (:func:`sparseness`; no model pass)."""


def sparseness(attributions: Tensor) -> Tensor:
    r"""The Gini index of each map's pixel importance: 0 spread evenly, near 1 on one pixel.

    Pixel importance is the absolute attribution summed over channels (as the deletion
    curve ranks pixels); with the ``n`` values ``x_i`` sorted ascending,
    ``G = sum_i (2i - n - 1) x_i / (n sum_i x_i)`` (Chalasani et al. 2020, Quantus's
    Sparseness). An all-zero map scores 0.

    Args:
        attributions (Tensor): ``(N, C, H, W)``.

    Returns:
        Tensor: ``(N,)`` float64.

    Examples:
        >>> a = torch.zeros(2, 1, 2, 2)
        >>> a[0] = 1.0          # even
        >>> a[1, 0, 0, 0] = 5.0  # one pixel
        >>> sparseness(a)
        tensor([0.0000, 0.7500], dtype=torch.float64)
    """
    x = attributions.detach().double().abs().sum(1).flatten(1).sort(dim=1).values
    n = x.shape[1]
    i = torch.arange(1, n + 1, dtype=torch.float64, device=x.device)
    total = x.sum(1)
    gini = ((2 * i - n - 1) * x).sum(1) / (n * total)
    return torch.where(total > 0, gini, torch.zeros_like(gini))


@dataclass
class ScoreRow(Record):
    """One method's mean of one score over the images, with its confidence interval."""

    method: str
    score: str
    mean: float
    low: float
    high: float
    n_images: int


@dataclass
class ScoreTable(Table):
    """The result of :func:`evaluate_attributions`: a row per method and score.

    Args:
        rows (list of ScoreRow): ``method, score, mean, low, high, n_images``.
        confidence (float): the level of the intervals ``[low, high]``.
        per_image (dict): method → score → ``(N,)`` float64, the image's scores in the
            file's order (not in :meth:`to_dict`).

    Examples:
        >>> t = ScoreTable.from_scores({"rig": {"deletion_auc": torch.tensor([0.25, 0.75])}})
        >>> t.rows[0].mean, t.to_dict()["rows"][0]["score"]
        (0.5, 'deletion_auc')
    """

    rows: List[ScoreRow]
    confidence: float = 0.95
    per_image: Dict[str, Dict[str, Tensor]] = field(default_factory=dict, repr=False, metadata=SKIP)

    @classmethod
    def from_scores(
        cls, per_image: Dict[str, Dict[str, Tensor]], confidence: float = 0.95
    ) -> "ScoreTable":
        """The means and intervals of per-image scores (:func:`mean_interval`)."""
        rows = []
        for method, scores in per_image.items():
            for score, values in scores.items():
                mean, low, high = mean_interval(values, confidence)
                rows.append(ScoreRow(method, score, mean, low, high, int(values.numel())))
        return cls(rows, confidence, per_image)

    def to_markdown(self) -> str:
        """The table in Markdown: method, score, mean and the interval."""
        percent = f"{100 * self.confidence:g}% interval"
        return markdown_table(
            ["method", "score", "mean", percent, "images"],
            [
                [r.method, r.score, r.mean, f"[{_num(r.low)}, {_num(r.high)}]", r.n_images]
                for r in self.rows
            ],
        )


def _num(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.4f}"


def mean_interval(values: Union[Tensor, Sequence[float]], confidence: float = 0.95) -> tuple:
    """``(mean, low, high)``: the mean and its Student-t confidence interval.

    The interval is ``mean ± t · sd / sqrt(n)`` with ``t`` the ``(1 + confidence) / 2``
    quantile of Student's t with ``n - 1`` degrees of freedom; NaN bounds for one value.

    Examples:
        >>> mean, low, high = mean_interval([1.0, 2.0, 3.0, 4.0])
        >>> mean, round(low, 3), round(high, 3)
        (2.5, 0.446, 4.554)
    """
    x = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    n = x.numel()
    if n == 0:
        raise ValueError("values must not be empty")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    mean = float(x.mean())
    if n == 1:
        return mean, math.nan, math.nan
    half = _t_quantile((1 + confidence) / 2, n - 1) * float(x.std()) / math.sqrt(n)
    return mean, mean - half, mean + half


def _t_quantile(p: float, df: int) -> float:
    """Student's t quantile: the root of the exact CDF for integer ``df`` up to 200
    (bisection), else the Cornish-Fisher expansion about the normal quantile (its error
    is below 1e-7 there)."""
    z = statistics.NormalDist().inv_cdf(p)
    if df > 200:
        g = [
            (z**3 + z) / 4,
            (5 * z**5 + 16 * z**3 + 3 * z) / 96,
            (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
        ]
        return z + sum(gi / df ** (i + 1) for i, gi in enumerate(g))
    low, high = -1.0, 1.0
    while _t_cdf(low, df) > p:
        low *= 2
    while _t_cdf(high, df) < p:
        high *= 2
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if _t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


def _t_cdf(t: float, df: int) -> float:
    """Student's t CDF for an integer ``df`` (Abramowitz and Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2:
        term, total = math.cos(theta), 0.0
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= c2 * (2 * k) / (2 * k + 1)
        inside = (2 / math.pi) * (theta + s * total) if df > 1 else 2 * theta / math.pi
    else:
        term, total = 1.0, 0.0
        for k in range(1, df // 2 + 1):
            total += term
            term *= c2 * (2 * k - 1) / (2 * k)
        inside = s * total
    return (1 + inside) / 2


def evaluate_attributions(
    maps: Union[PathLike, AttributionFile],
    model: Callable[[Tensor], Tensor],
    data: Any,
    *,
    methods: Optional[Sequence[str]] = None,
    n_steps: int = 16,
    batch_size: int = 64,
    confidence: float = 0.95,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = True,
    same_model: bool = True,
) -> ScoreTable:
    r"""Deletion and insertion AUC and sparseness of every method's maps over a data set.

    The images come from ``data`` in the order the maps were computed (the same source,
    limit and order as :func:`~captum_rig.runs.attribute_dataset` had); each map scores
    its image for the class it explains (the file's ``targets``). Per image the scores
    are :func:`~captum_rig.metrics.deletion_insertion`'s AUCs and the map's
    :func:`sparseness` (which needs no model pass); the table has their mean
    and confidence interval per method (:func:`mean_interval`).

    Args:
        maps (str, PathLike or AttributionFile): the file of maps.
        model (callable): the model the maps explain, taking [0, 1] images.
        data (Tensor or iterable): the images, as for ``attribute_dataset``.
        methods (sequence of str, optional): the methods to score (default: all).
        n_steps (int): steps of the deletion and insertion curves.
        batch_size (int): images per batch of a tensor ``data``, and per forward pass
            of the curves.
        confidence (float): the level of the intervals.
        device (str or torch.device, optional): where the model runs.
        progress (bool): show a progress bar.
        same_model (bool): refuse a model whose weights differ from those the maps
            were computed with (the file's ``model_digest``, when both are known).

    Returns:
        ScoreTable: the means and intervals, and every image's scores (``per_image``).

    Raises:
        ValueError: the data has another number of images, or of another shape, than the
            file's maps.

    Examples:
        >>> import tempfile, os
        >>> from captum_rig.runs import attribute_dataset
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
        >>> x = torch.rand(6, 3, 8, 8)
        >>> path = os.path.join(tempfile.mkdtemp(), "maps.h5")
        >>> _ = attribute_dataset(model, x, path, "saliency", batch_size=4, progress=False)
        >>> table = evaluate_attributions(path, model, x, n_steps=4, batch_size=4,
        ...                               progress=False)
        >>> [(r.score, r.n_images) for r in table.rows]
        [('deletion_auc', 6), ('insertion_auc', 6), ('sparseness', 6)]
    """
    check_model(model, module=False)
    n_steps = check_int(n_steps, name="n_steps", low=1)
    batch_size = check_int(batch_size, name="batch_size", low=1)
    device = model_device(model) if device is None else torch.device(device)
    owned = not isinstance(maps, AttributionFile)
    reader = AttributionFile(maps) if owned else maps
    try:
        chosen = list(reader.methods if methods is None else methods)
        for m in chosen:
            if m not in reader.methods:
                raise ValueError(f"methods: the file has no maps of {m!r} ({list(reader.methods)})")
        _check_names(image_names(data), reader.files)
        recorded = reader.attributes.get("model_digest")
        if same_model and recorded is not None and model_digest(model) not in (None, recorded):
            raise ValueError(
                "model: its weights differ from those the maps were computed with (the "
                "file's model_digest); give the same model, or same_model=False"
            )
        scores = _score(reader, model, data, chosen, n_steps, batch_size, device, progress)
    finally:
        if owned:
            reader.close()
    return ScoreTable.from_scores(scores, confidence)


def _check_names(names: Optional[List[str]], files: List[str]) -> None:
    """The data's images are those the maps were computed on (by class folder and name).

    Only the last two parts of each path are compared, so that a folder that moved
    still matches; a data set of another size is left to the count check.
    """
    if names is None or len(names) != len(files):
        return
    for i, (name, file) in enumerate(zip(names, files)):
        if Path(name).parts[-2:] != Path(file).parts[-2:]:
            raise ValueError(
                f"data image {i} is {name!r}, but the file's maps of image {i} are of "
                f"{file!r}: give the data the maps were computed on"
            )


def _score(
    reader: AttributionFile,
    model: Callable[[Tensor], Tensor],
    data: Any,
    methods: List[str],
    n_steps: int,
    batch_size: int,
    device: torch.device,
    progress: bool,
) -> Dict[str, Dict[str, Tensor]]:
    """Per method and score, the images' scores, one batch of images and maps at a time."""
    found: Dict[str, Dict[str, List[Tensor]]] = {m: {s: [] for s in SCORES} for m in methods}
    start, total = 0, len(reader)
    bar = tqdm(total=total, desc="scores", unit="img", disable=not progress)
    with eval_mode(model), bar:
        for images, _ in check_batches(data, None, batch_size).batches:
            stop = start + images.shape[0]
            if stop > total:
                raise ValueError(f"data has more images than the file's {total} maps")
            x = images.to(device)
            targets = reader.column("targets", start, stop).to(device)
            for m in methods:
                a = reader.maps(m, start, stop)
                if a.shape[-2:] != x.shape[-2:]:
                    raise ValueError(
                        f"data images are {tuple(x.shape[-2:])}, the maps {tuple(a.shape[-2:])}: "
                        "give the data the maps were computed on"
                    )
                r = deletion_insertion(
                    model, x, a.to(device), targets, n_steps, batch_size=batch_size
                )
                r["sparseness"] = sparseness(a)
                for s in SCORES:
                    found[m][s].append(r[s].cpu())
            bar.update(images.shape[0])
            start = stop
    if start != total:
        raise ValueError(f"data has {start} images, but the file holds maps of {total}")
    return {m: {s: torch.cat(v) for s, v in d.items()} for m, d in found.items()}
