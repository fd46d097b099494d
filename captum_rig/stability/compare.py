"""Several models side by side: clean accuracy, Lipschitz bound, minimal distortions.

:func:`compare_stability` makes the table (one row per model and attack), as in the
comparison of a network trained from scratch with one fine-tuned from ImageNet;
:func:`write_stability` writes it, with a summary of the run, as Markdown, CSV and JSON.

References:
    Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Table 1.

    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from torch import Tensor, nn

from captum_rig._checks import check_choice, check_int, check_models, check_norm, model_device
from captum_rig._context import PathLike, check_writable
from captum_rig._tables import Table, markdown_table, number, write_json, write_text
from captum_rig.metrics import accuracy as model_accuracy
from captum_rig.stability._stream import image_batches
from captum_rig.stability.distortion import DistortionSearch, gaussian_search, pgd_search
from captum_rig.stability.lipschitz import LipschitzReport, lipschitz_analysis

__all__ = ["ATTACKS", "StabilityRow", "StabilityTable", "compare_stability", "write_stability"]

ATTACKS = ("pgd", "gaussian")
"""The attacks of :func:`compare_stability`: PGD, and Gaussian noise along a fixed direction."""
UNITS = (
    "Distortions: mean norm (L2 or L∞, per row) of the smallest prediction-changing "
    "perturbation found, images in [0, 1]; the [0, 255] column is the same × 255."
)
# The summary entries that write_stability's JSON puts last (long lists of numbers).
_LONG = ("weight_spectra", "feature_map_spectra")


@dataclass
class StabilityRow:
    """One model under one attack.

    Attributes:
        model (str): the model's name in the ``models`` mapping.
        attack (str): ``"pgd"`` or ``"gaussian"``.
        norm (str): the norm of the distortion, ``"L2"`` or ``"Linf"``.
        average_distortion (float): mean norm of the smallest prediction-changing
            perturbation found, over the images whose prediction changed; pixels in
            [0, 1] (NaN if none changed).
        lipschitz_bound (float or None): the model's L2 Lipschitz upper bound.
        clean_accuracy (float): accuracy on the clean images.
        n_changed (int): images whose prediction the attack changed.
        n_images (int): images attacked.
    """

    model: str
    attack: str
    norm: str
    average_distortion: float
    lipschitz_bound: Optional[float]
    clean_accuracy: float
    n_changed: int
    n_images: int

    @property
    def average_distortion_255(self) -> float:
        """``average_distortion`` on the 0-255 pixel scale (× 255)."""
        return self.average_distortion * 255

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict, with the 0-255 distortion after the 0-1 one."""
        return {
            "model": self.model,
            "attack": self.attack,
            "norm": self.norm,
            "average_distortion": self.average_distortion,
            "average_distortion_255": self.average_distortion_255,
            "lipschitz_bound": self.lipschitz_bound,
            "clean_accuracy": self.clean_accuracy,
            "n_changed": self.n_changed,
            "n_images": self.n_images,
        }


@dataclass
class StabilityTable(Table):
    """:func:`compare_stability`'s table: one row per model and attack.

    Attributes:
        rows (list[StabilityRow]): models in the order given, attacks in the order given.
        lipschitz (dict[str, LipschitzReport]): per model, how its bound was obtained.
        units (str): what the distortion numbers measure.
    """

    _COLUMNS = (*StabilityRow.__dataclass_fields__, "average_distortion_255")

    rows: List[StabilityRow]
    lipschitz: Dict[str, LipschitzReport]
    units: str

    def to_dict(self) -> Dict[str, Any]:
        """``{"units", "rows", "lipschitz"}``, JSON-ready."""
        return {
            "units": self.units,
            "rows": [row.to_dict() for row in self.rows],
            "lipschitz": {name: report.to_dict() for name, report in self.lipschitz.items()},
        }

    def to_markdown(self) -> str:
        """A Markdown table, with the units and the bound's method underneath."""
        header = [
            "model", "attack", "norm", "avg. distortion [0, 1]", "avg. distortion [0, 255]",
            "changed", "Lipschitz bound", "clean accuracy",
        ]  # fmt: skip
        rows = [
            [r.model, r.attack, r.norm, number(r.average_distortion),
             number(r.average_distortion_255), f"{r.n_changed}/{r.n_images}",
             number(r.lipschitz_bound), number(r.clean_accuracy, 3, fixed=True)]
            for r in self.rows
        ]  # fmt: skip
        methods = sorted({report.method for report in self.lipschitz.values()})
        table = markdown_table(header, rows, align="lllrrrrr")
        return f"{table}\n\n{self.units} Lipschitz bounds: {'; '.join(methods)}."


class _ModelRun:
    """One model's part of a comparison: its bound, correct predictions and searches."""

    def __init__(
        self, model: nn.Module, report: LipschitzReport, searches: Dict[str, DistortionSearch]
    ) -> None:
        self.model, self.report, self.searches = model, report, searches
        self.correct = 0

    def add(
        self, images: Tensor, labels: Tensor, batch_size: int, describe: Callable[[str], None]
    ) -> None:
        """Counts and attacks one batch."""
        describe("accuracy")
        # metrics.accuracy of one batch, back as a count (exact: the count is an integer)
        self.correct += round(model_accuracy(self.model, images, labels, batch_size) * len(images))
        for attack, search in self.searches.items():
            describe(f"{attack} minimal distortion")
            search.add(images)

    def rows(self, name: str, n_images: int) -> List[StabilityRow]:
        """One row per attack, in the order given."""
        rows = []
        for attack, search in self.searches.items():
            result = search.result()
            rows.append(StabilityRow(
                name, attack, result.norm, result.mean, self.report.bound,
                self.correct / n_images, result.n_found, int(result.values.numel()),
            ))  # fmt: skip
        return rows


def _check_attacks(attacks: Any) -> List[str]:
    if isinstance(attacks, str):
        attacks = (attacks,)
    attacks = [check_choice(a, "attacks", ATTACKS) for a in attacks]
    if not attacks:
        raise ValueError(f"attacks must name at least one of {list(ATTACKS)}")
    return attacks


def compare_stability(
    models: Mapping[str, nn.Module],
    data: Any,
    labels: Optional[Tensor] = None,
    attacks: Sequence[str] = ATTACKS,
    norm: str = "L2",
    steps: int = 20,
    n_bisect: int = 12,
    max_eps: Optional[float] = None,
    max_sigma: float = 1.0,
    n_iter: int = 100,
    certified: bool = False,
    batch_size: int = 64,
    seed: int = 0,
    example_input: Optional[Tensor] = None,
    progress: bool = True,
) -> StabilityTable:
    r"""Several models side by side: accuracy, Lipschitz bound, minimal distortions.

    Per model: the clean accuracy on the labelled images, the Lipschitz upper bound
    (:func:`lipschitz_analysis` on ``example_input``, default the first image), and per
    attack the average minimal distortion: ``"pgd"`` by :func:`minimal_distortion` in
    ``norm``, ``"gaussian"`` by :func:`gaussian_minimal_distortion` (always L2). The
    Szegedy et al. / "scratch vs fine-tuned" table, one row per model and attack.

    The images are read once, ``batch_size`` at a time (an iterable is cut again into
    batches of that size), and every model counts and attacks each batch before the
    next is read: memory holds one batch, not the data set, and the table equals the
    one of the concatenated images as a tensor (the attacks work per image; the noise is
    drawn per batch of ``batch_size``, in data order).

    Units: distortions are norms of perturbations of images in [0, 1]
    (``average_distortion``) and the same × 255 (``average_distortion_255``), the scale
    such tables often use; divide an L2 value by ``√(C·H·W)`` for a per-pixel RMS.

    Args:
        models (Mapping[str, nn.Module]): name → model mapping ``(N, C, H, W)`` images in
            [0, 1] to logits (normalization inside). Training flags are restored.
        data (Tensor or iterable): images ``(N, C, H, W)`` in [0, 1] (then ``labels``),
            an ``(images, labels)`` pair, or an iterable of ``(images, labels)`` batches
            such as a DataLoader (read once).
        labels (Tensor, optional): ``(N,)`` class indices when ``data`` is a tensor.
        attacks (sequence of str): among ``"pgd"`` and ``"gaussian"``.
        norm (str): the PGD norm, ``"L2"`` or ``"Linf"``.
        steps (int): PGD steps per radius.
        n_bisect (int): bisection steps of both searches.
        max_eps (float, optional): as in :func:`minimal_distortion`.
        max_sigma (float): as in :func:`gaussian_minimal_distortion`.
        n_iter (int): power iterations per convolution for the bound.
        certified (bool): certified bounds (Gram iteration) instead of power iteration.
        batch_size (int): images per batch.
        seed (int): seed of the power iterations and the noise.
        example_input (Tensor, optional): the input size for the bound.
        progress (bool): a tqdm progress bar over the images.

    Returns:
        StabilityTable: ``rows``, ``lipschitz`` reports, ``to_markdown()``,
        ``to_csv(path)``, ``to_dict()``.

    Raises:
        ValueError: an empty ``models``, images outside [0, 1], labels of the wrong
            length or missing, batches of different image shapes, an unknown attack or
            norm.

    Examples:
        >>> nets = {"a": nn.Sequential(nn.Flatten(), nn.Linear(12, 3)),
        ...         "b": nn.Sequential(nn.Flatten(), nn.Linear(12, 3))}
        >>> table = compare_stability(nets, torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0]),
        ...                           n_bisect=3, steps=2, progress=False)
        >>> [(r.model, r.attack) for r in table.rows]
        [('a', 'pgd'), ('a', 'gaussian'), ('b', 'pgd'), ('b', 'gaussian')]
        >>> loader = [(torch.rand(2, 3, 2, 2), torch.tensor([0, 1]))] * 2
        >>> compare_stability(nets, loader, attacks="gaussian", progress=False).rows[0].n_images
        4

    References:
        Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Table 1.
        Jere, Kumar, Koushanfar. arXiv:2012.03516.
    """
    from tqdm.auto import tqdm

    models = check_models(models)
    batches, total = image_batches(data, labels, batch_size, labels_required=True)
    attacks = _check_attacks(attacks)
    norm = check_norm(norm)
    batch_size = check_int(batch_size, name="batch_size", low=1)  # checked: now an int
    n_bisect = check_int(n_bisect, name="n_bisect", low=1)

    def start(model: nn.Module, first: Tensor) -> _ModelRun:
        # the searches first: they check their arguments before the bound's work
        searches = {
            attack: pgd_search(model, first[0].numel(), norm, steps, n_bisect, max_eps)
            if attack == "pgd"
            else gaussian_search(model, n_bisect, max_sigma, seed)
            for attack in attacks
        }
        x0 = first[:1] if example_input is None else example_input
        report = lipschitz_analysis(model, x0.to(model_device(model)), n_iter, seed, certified)
        return _ModelRun(model, report, searches)

    runs: Dict[str, _ModelRun] = {}
    n_images = 0
    bar = tqdm(total=total, disable=not progress, unit="image")
    try:
        for images, batch_labels in batches:
            for name, model in models.items():
                describe = _describer(bar, name)
                if name not in runs:
                    describe("Lipschitz bound")
                    runs[name] = start(model, images)
                runs[name].add(images, batch_labels, batch_size, describe)
            n_images += images.shape[0]
            bar.update(images.shape[0])
    finally:
        bar.close()
    rows = [row for name, run in runs.items() for row in run.rows(name, n_images)]
    reports = {name: run.report for name, run in runs.items()}
    return StabilityTable(rows, reports, UNITS)


def _describer(bar: Any, name: str) -> Callable[[str], None]:
    def describe(step: str) -> None:
        bar.set_description(f"{name}: {step}")

    return describe


def write_stability(
    folder: PathLike,
    table: StabilityTable,
    summary: Mapping[str, Any],
    lipschitz: bool = False,
) -> List[Path]:
    r"""Writes a comparison's ``stability.md``, ``stability.csv`` and ``stability.json``.

    ``stability.md``: a heading naming the images (``# Stability: {n_images} images from
    {data}``), then :meth:`StabilityTable.to_markdown` and, with ``lipschitz=True``, every
    model's Lipschitz report (its blocks or layers). ``stability.csv``:
    :meth:`StabilityTable.to_csv`. ``stability.json``: the summary and
    :meth:`StabilityTable.to_dict` in one object, the spectra (``weight_spectra``,
    ``feature_map_spectra``, when given) last; tensors as lists, NaN as null. Each file
    is written atomically. Figures are the caller's to save.

    Args:
        folder (str or PathLike): the output folder, created if missing.
        table (StabilityTable): what :func:`compare_stability` returned.
        summary (Mapping[str, Any]): ``data`` (where the images came from) and
            ``n_images``, and anything else to record, e.g. ``weight_spectra`` and
            ``feature_map_spectra`` (model name → layer → singular values).
        lipschitz (bool): add every model's Lipschitz report to ``stability.md``.

    Returns:
        list[Path]: the files written, ``.md``, ``.csv``, ``.json``.

    Raises:
        ValueError: a ``summary`` without ``data`` or ``n_images``; a folder that cannot
            be written.

    Examples:
        >>> import tempfile
        >>> nets = {"a": nn.Sequential(nn.Flatten(), nn.Linear(12, 3))}
        >>> table = compare_stability(nets, torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0]),
        ...                           n_bisect=3, steps=2, progress=False)
        >>> paths = write_stability(tempfile.mkdtemp(), table, {"data": "random", "n_images": 4})
        >>> [p.name for p in paths]
        ['stability.md', 'stability.csv', 'stability.json']
        >>> paths[0].read_text().splitlines()[0]
        '# Stability: 4 images from random'
    """
    if not isinstance(summary, Mapping) or not {"data", "n_images"} <= set(summary):
        raise ValueError(f"summary must be a mapping with 'data' and 'n_images', got {summary!r}")
    folder = check_writable(folder, "folder", folder=True, create=True)
    paths = [folder / f"stability.{ext}" for ext in ("md", "csv", "json")]
    text = f"# Stability: {summary['n_images']} images from {summary['data']}\n\n"
    text += table.to_markdown()
    if lipschitz:
        for name, report in table.lipschitz.items():
            text += f"\n\n**{name}**\n\n{report.to_markdown()}"
    write_text(paths[0], text)
    table.to_csv(paths[1])
    record = {**summary, **table.to_dict()}
    for key in _LONG:
        if key in record:
            record[key] = record.pop(key)
    write_json(paths[2], record)
    return paths
