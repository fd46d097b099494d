"""The comparison table of :func:`~captum_rig.stability.compare_stability` and its files.

One row per model and attack (:class:`StabilityRow`) in a :class:`StabilityTable`;
:func:`write_stability` writes it, with a summary of the run, as Markdown, CSV and JSON
(and any figures), all together or none; :func:`check_stability_outputs` checks those
files can be written before the work.

References:
    Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199, Table 1.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from captum_rig._context import PathLike, check_writable, publish, staged_output
from captum_rig._tables import Table, markdown_table, number, write_json, write_text
from captum_rig.stability.lipschitz import LipschitzReport

__all__ = [
    "STABILITY_FILES",
    "UNITS",
    "StabilityRow",
    "StabilityTable",
    "check_stability_outputs",
    "write_stability",
]

STABILITY_FILES = ("stability.md", "stability.csv", "stability.json")
"""The files :func:`write_stability` writes, in order."""
UNITS = (
    "Distortions: mean norm (L2 or L∞, per row) of the smallest prediction-changing "
    "perturbation found, over the images changed, images in [0, 1]; ± is the search's "
    "resolution (0: an attack with no search); [0, 255] is the same × 255 and RMS the L2 "
    "value per pixel, √(‖δ‖²/(C·H·W)), Szegedy et al.'s unit; best: per image, the "
    "smallest over the attacks in that norm."
)
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
        >>> from captum_rig.stability import compare_stability
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
