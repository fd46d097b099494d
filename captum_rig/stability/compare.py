"""Several models side by side: clean accuracy, Lipschitz bounds, minimal distortions.

:func:`compare_stability` makes the table (one row per model and attack), as in the
comparison of a network trained from scratch with one fine-tuned from ImageNet;
:func:`write_stability` writes it, with a summary of the run, as Markdown, CSV and JSON
(and any figures), all together or none; :func:`check_stability_outputs` checks those
files can be written before the work.

References:
    Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Table 1.

    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from torch import Tensor, nn

from captum_rig._checks import check_choice, check_int, check_models, check_norm, model_device
from captum_rig._context import PathLike, check_writable, publish, staged_output
from captum_rig._tables import Table, markdown_table, number, write_json, write_text
from captum_rig.metrics import accuracy as model_accuracy
from captum_rig.stability._stream import image_batches
from captum_rig.stability.attacks import MINIMAL_NORM_ATTACKS, AttackSearch, best_distortion
from captum_rig.stability.distortion import DistortionSearch, gaussian_search, pgd_search
from captum_rig.stability.lipschitz import LipschitzReport, lipschitz_analysis
from captum_rig.stability.local import local_lipschitz

__all__ = [
    "ATTACKS",
    "STABILITY_FILES",
    "StabilityRow",
    "StabilityTable",
    "check_stability_outputs",
    "compare_stability",
    "write_stability",
]

ATTACKS = ("pgd", "gaussian", *MINIMAL_NORM_ATTACKS)
"""The attacks of :func:`compare_stability`: PGD (a search over the radius), Gaussian
noise along a fixed direction, and the minimal-norm attacks DeepFool, FAB and CW."""
STABILITY_FILES = ("stability.md", "stability.csv", "stability.json")
"""The files :func:`write_stability` writes, in order."""
UNITS = (
    "Distortions: mean norm (L2 or L∞, per row) of the smallest prediction-changing "
    "perturbation found, over the images changed, images in [0, 1]; ± is the search's "
    "resolution (0: an attack with no search); [0, 255] is the same × 255 and RMS the L2 "
    "value per pixel, √(‖δ‖²/(C·H·W)), Szegedy et al.'s unit; best: per image, the "
    "smallest over the attacks in that norm."
)
Search = Union[DistortionSearch, AttackSearch]
# The summary entries that write_stability's JSON puts last (long lists of numbers).
_LONG = ("weight_spectra", "feature_map_spectra")


@dataclass
class StabilityRow:
    """One model under one attack.

    Attributes:
        model (str): the model's name in the ``models`` mapping.
        attack (str): ``"pgd"``, ``"gaussian"``, ``"deepfool"``, ``"fab"``, ``"cw"`` or
            ``"best"`` (per image, the smallest over the adversarial attacks run).
        norm (str): the norm of the distortion, ``"L2"`` or ``"Linf"``.
        average_distortion (float): mean norm of the smallest prediction-changing
            perturbation found, over the images whose prediction changed; pixels in
            [0, 1] (NaN if none changed).
        lipschitz_bound (float or None): the model's L2 Lipschitz upper bound.
        clean_accuracy (float): accuracy on the clean images.
        n_changed (int): images whose prediction the attack changed.
        n_images (int): images attacked.
        tolerance (float): the resolution of the distortions: the widest final search
            bracket (0 for a minimal-norm attack; NaN if none changed).
        local_lipschitz (float or None): the largest input-Jacobian norm measured at the
            images, a lower bound on the Lipschitz constant (None if not measured).
        size (int): values per image ``C·H·W`` (for the per-pixel RMS).
    """

    model: str
    attack: str
    norm: str
    average_distortion: float
    lipschitz_bound: Optional[float]
    clean_accuracy: float
    n_changed: int
    n_images: int
    tolerance: float = math.nan
    local_lipschitz: Optional[float] = None
    size: int = 0

    @property
    def average_distortion_255(self) -> float:
        """``average_distortion`` on the 0-255 pixel scale (× 255)."""
        return self.average_distortion * 255

    @property
    def average_distortion_rms(self) -> float:
        """An L2 ``average_distortion`` per pixel, ``/ √(C·H·W)`` (NaN for L∞)."""
        if self.norm != "L2" or not self.size:
            return math.nan
        return self.average_distortion / math.sqrt(self.size)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict, with the 0-255 and per-pixel RMS distortions after the rest."""
        return {
            "model": self.model,
            "attack": self.attack,
            "norm": self.norm,
            "average_distortion": self.average_distortion,
            "average_distortion_255": self.average_distortion_255,
            "average_distortion_rms": self.average_distortion_rms,
            "tolerance": self.tolerance,
            "lipschitz_bound": self.lipschitz_bound,
            "local_lipschitz": self.local_lipschitz,
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

    _COLUMNS = (
        *(f for f in StabilityRow.__dataclass_fields__ if f != "size"),
        "average_distortion_255", "average_distortion_rms",
    )  # fmt: skip

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
        """Two Markdown tables (per model; per model and attack), the units underneath."""
        firsts = {r.model: r for r in reversed(self.rows)}
        models = [
            [r.model, number(r.clean_accuracy, 3, fixed=True), number(r.lipschitz_bound),
             number(r.local_lipschitz)]
            for r in reversed(list(firsts.values()))
        ]  # fmt: skip
        header = ["model", "clean accuracy", "Lipschitz upper bound", "local Lipschitz (lower)"]
        distortions = [
            [r.model, r.attack, r.norm, number(r.average_distortion), number(r.tolerance, 2),
             number(r.average_distortion_255), number(r.average_distortion_rms),
             f"{r.n_changed}/{r.n_images}"]
            for r in self.rows
        ]  # fmt: skip
        columns = ["model", "attack", "norm", "avg. distortion [0, 1]", "±", "[0, 255]",
                   "RMS per pixel", "changed"]  # fmt: skip
        methods = sorted({report.method for report in self.lipschitz.values()})
        return (
            f"{markdown_table(header, models, align='lrrr')}\n\n"
            f"{markdown_table(columns, distortions, align='lllrrrrr')}\n\n"
            f"{self.units} Lipschitz bounds: {'; '.join(methods)}; local Lipschitz: the "
            "largest input-Jacobian norm at the images (power iteration), a lower bound."
        )


class _ModelRun:
    """One model's part of a comparison: its bounds, correct predictions and searches."""

    def __init__(
        self, model: nn.Module, report: LipschitzReport, searches: Dict[str, Search], local: bool
    ) -> None:
        self.model, self.report, self.searches = model, report, searches
        self.local: Optional[float] = 0.0 if local else None
        self.correct = 0

    def add(
        self, images: Tensor, labels: Tensor, batch_size: int, describe: Callable[[str], None]
    ) -> None:
        """Counts and attacks one batch."""
        describe("accuracy")
        # metrics.accuracy of one batch, back as a count (exact: the count is an integer)
        self.correct += round(model_accuracy(self.model, images, labels, batch_size) * len(images))
        if self.local is not None:
            describe("local Lipschitz")
            x = images.to(model_device(self.model))
            self.local = max(self.local, local_lipschitz(self.model, x, batch_size=batch_size))
        for attack, search in self.searches.items():
            describe(f"{attack} minimal distortion")
            search.add(images)

    def rows(self, name: str, n_images: int) -> List[StabilityRow]:
        """One row per attack, in the order given, and ``best`` after them."""
        results = {attack: search.result() for attack, search in self.searches.items()}
        adversarial = [r for a, r in results.items() if a != "gaussian"]
        if len(adversarial) > 1:
            results["best"] = best_distortion(adversarial)
        return [
            StabilityRow(
                name, attack, result.norm, result.mean, self.report.bound,
                self.correct / n_images, result.n_found, int(result.values.numel()),
                result.tolerance, self.local, result.size,
            )
            for attack, result in results.items()
        ]  # fmt: skip


def _check_attacks(attacks: Any, norm: str) -> List[str]:
    if isinstance(attacks, str):
        attacks = (attacks,)
    attacks = [check_choice(a, "attacks", ATTACKS) for a in attacks]
    if not attacks:
        raise ValueError(f"attacks must name at least one of {list(ATTACKS)}")
    for attack in attacks:
        if attack in MINIMAL_NORM_ATTACKS and norm not in MINIMAL_NORM_ATTACKS[attack]:
            raise ValueError(
                f"attacks: {attack!r} minimises {' or '.join(MINIMAL_NORM_ATTACKS[attack])}, "
                f"not norm={norm!r}; use 'pgd' or 'fab' for {norm}"
            )
    return list(dict.fromkeys(attacks))


def compare_stability(
    models: Mapping[str, nn.Module],
    data: Any,
    labels: Optional[Tensor] = None,
    attacks: Sequence[str] = ("pgd", "gaussian"),
    norm: str = "L2",
    steps: int = 20,
    n_bisect: int = 12,
    max_eps: Optional[float] = None,
    max_sigma: float = 1.0,
    n_iter: int = 100,
    certified: Optional[bool] = None,
    batch_size: int = 64,
    seed: int = 0,
    example_input: Optional[Tensor] = None,
    progress: bool = True,
    local: bool = True,
    log: Optional[Callable[[str], None]] = None,
) -> StabilityTable:
    r"""Several models side by side: accuracy, Lipschitz bounds, minimal distortions.

    Per model: the clean accuracy on the labelled images, the Lipschitz upper bound
    (:func:`lipschitz_analysis` on ``example_input``, default the first image), the
    local Lipschitz lower bound (:func:`local_lipschitz`: the largest input-Jacobian
    norm over the images), and per attack the average minimal distortion: ``"pgd"`` by
    :func:`minimal_distortion` in ``norm`` (a search over the radius), ``"gaussian"`` by
    :func:`gaussian_minimal_distortion` (always L2), ``"deepfool"``, ``"fab"`` and
    ``"cw"`` by the minimal-norm attacks (:func:`minimal_distortion` with ``attack=``;
    DeepFool and CW need ``norm="L2"``). With two adversarial attacks or more, a
    ``"best"`` row keeps each image's smallest distortion over them. The Szegedy et
    al. / "scratch vs fine-tuned" table, one row per model and attack.

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
        attacks (sequence of str): among ``"pgd"``, ``"gaussian"``, ``"deepfool"``,
            ``"fab"`` and ``"cw"`` (:data:`ATTACKS`); default PGD and Gaussian noise.
        norm (str): the PGD norm, ``"L2"`` or ``"Linf"``.
        steps (int): PGD steps per radius.
        n_bisect (int): bisection steps of both searches.
        max_eps (float, optional): as in :func:`minimal_distortion`.
        max_sigma (float): as in :func:`gaussian_minimal_distortion`.
        n_iter (int): power iterations per convolution for the bound.
        certified (bool, optional): certified bounds or power
            iteration; default :func:`lipschitz_analysis`'s.
        batch_size (int): images per batch.
        seed (int): seed of the power iterations and the noise.
        example_input (Tensor, optional): the input size for the bound.
        progress (bool): a tqdm progress bar over the images.
        local (bool): measure the local Lipschitz lower bound.
        log (callable, optional): called with a line per model and stage of each batch
            (``"name: stage, images a-b"``), e.g. ``print`` when there is no progress bar.

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
    norm = check_norm(norm)
    attacks = _check_attacks(attacks, norm)
    batch_size = check_int(batch_size, name="batch_size", low=1)  # checked: now an int
    n_bisect = check_int(n_bisect, name="n_bisect", low=1)
    bound_options = {} if certified is None else {"certified": bool(certified)}

    def search(model: nn.Module, attack: str, first: Tensor) -> Search:
        if attack == "pgd":
            return pgd_search(model, first[0].numel(), norm, steps, n_bisect, max_eps)
        if attack == "gaussian":
            return gaussian_search(model, n_bisect, max_sigma, seed)
        return AttackSearch(model, attack, norm, seed=seed)

    def start(model: nn.Module, first: Tensor) -> _ModelRun:
        # the searches first: they check their arguments before the bound's work
        searches = {attack: search(model, attack, first) for attack in attacks}
        x0 = (first[:1] if example_input is None else example_input).to(model_device(model))
        report = lipschitz_analysis(model, x0, n_iter, seed, **bound_options)
        return _ModelRun(model, report, searches, local)

    runs: Dict[str, _ModelRun] = {}
    n_images = 0
    bar = tqdm(total=total, disable=not progress, unit="image")
    try:
        for images, batch_labels in batches:
            for name, model in models.items():
                span = f"images {n_images + 1}-{n_images + images.shape[0]}"
                describe = _describer(bar, name, log, span)
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


def _describer(
    bar: Any, name: str, log: Optional[Callable[[str], None]], span: str
) -> Callable[[str], None]:
    def describe(step: str) -> None:
        bar.set_description(f"{name}: {step}")
        if log is not None:
            log(f"{name}: {step}, {span}")

    return describe


def check_stability_outputs(
    folder: PathLike, extra: Sequence[str] = (), name: str = "folder"
) -> Path:
    """Checks, before any work, that :func:`write_stability` can write into ``folder``.

    The folder must be a folder (or missing, with an existing parent) and writable, and
    no file it will write (:data:`STABILITY_FILES` and ``extra``, e.g. figure names) may
    be a folder there. Nothing is created (a missing folder: its nearest existing
    parent must be a writable folder).

    Args:
        folder (str or PathLike): the output folder.
        extra (sequence of str): more file names to be written there.
        name (str): the argument's name for the messages.

    Returns:
        Path: ``folder``.

    Raises:
        ValueError: a file's path is a folder; the folder is a file, is missing with
            its parent, or is not writable.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> _ = (root / "run" / "stability.csv").mkdir(parents=True)
        >>> check_stability_outputs(root / "run")
        Traceback (most recent call last):
        ...
        ValueError: folder '...stability.csv' is a folder; a file path is expected
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{name} {str(folder)!r} is a file, expected a folder")
    if not folder.exists():  # made later, with its parents: the nearest existing one
        existing = next(p for p in folder.absolute().parents if p.exists())
        check_writable(existing, name, folder=True)
        return folder
    for file_name in (*STABILITY_FILES, *extra):
        check_writable(folder / file_name, name)
    return folder


def write_stability(
    folder: PathLike,
    table: StabilityTable,
    summary: Mapping[str, Any],
    lipschitz: bool = False,
    files: Optional[Mapping[str, Callable[[Path], None]]] = None,
) -> List[Path]:
    r"""Writes a comparison's ``stability.md``, ``stability.csv`` and ``stability.json``.

    ``stability.md``: a heading naming the images (``# Stability: {n_images} images from
    {data}``), then :meth:`StabilityTable.to_markdown` and, with ``lipschitz=True``, every
    model's Lipschitz report (its blocks or layers). ``stability.csv``:
    :meth:`StabilityTable.to_csv`. ``stability.json``: the summary and
    :meth:`StabilityTable.to_dict` in one object, the spectra (``weight_spectra``,
    ``feature_map_spectra``, when given) last; tensors as lists, NaN as null. ``files``
    adds more (a figure's name → a function that writes it to the path it is given).
    Everything is written into a staging folder first and moved into ``folder`` at the
    end: all the files, or (on any error) none, ``folder`` left as it was.

    Args:
        folder (str or PathLike): the output folder, created if missing.
        table (StabilityTable): what :func:`compare_stability` returned.
        summary (Mapping[str, Any]): ``data`` (where the images came from) and
            ``n_images``, and anything else to record, e.g. ``weight_spectra`` and
            ``feature_map_spectra`` (model name → layer → singular values).
        lipschitz (bool): add every model's Lipschitz report to ``stability.md``.
        files (Mapping[str, callable], optional): more files, written after the three.

    Returns:
        list[Path]: the files written, ``.md``, ``.csv``, ``.json``, then ``files``.

    Raises:
        ValueError: a ``summary`` without ``data`` or ``n_images``; a folder that cannot
            be written, or a folder where a file goes (:func:`check_stability_outputs`).

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
    files = dict(files or {})
    folder = check_stability_outputs(folder, tuple(files))
    text = f"# Stability: {summary['n_images']} images from {summary['data']}\n\n"
    text += table.to_markdown()
    if lipschitz:
        for name, report in table.lipschitz.items():
            text += f"\n\n**{name}**\n\n{report.to_markdown()}"
    record = {**summary, **table.to_dict()}
    for key in _LONG:
        if key in record:
            record[key] = record.pop(key)
    with staged_output(folder) as staging:
        paths = [staging / file_name for file_name in (*STABILITY_FILES, *files)]
        write_text(paths[0], text)
        table.to_csv(paths[1])
        write_json(paths[2], record)
        for path, write in zip(paths[3:], files.values()):
            write(path)
        return publish(paths, folder)
