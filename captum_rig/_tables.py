"""One home for the tables every result writes: Markdown, CSV and JSON.

Result classes are dataclasses that mix in :class:`Record` (``to_dict`` from their
fields) or :class:`Table` (a ``rows`` list of records, written as CSV and JSON). Markdown
tables are built by :func:`markdown_table`, numbers in them formatted by :func:`number`.
Every file is written through :func:`~captum_rig._context.atomic_path`, so an interrupted
run never leaves a half-written table.
"""

import csv
import dataclasses
import json
import math
import numbers
from pathlib import Path
from typing import Any, ClassVar, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from captum_rig._context import PathLike, atomic_path

__all__ = [
    "SKIP",
    "Record",
    "Table",
    "plain",
    "json_ready",
    "number",
    "markdown_table",
    "write_text",
    "write_csv",
    "write_json",
]

SKIP = {"record": False}
"""Field metadata for a dataclass field that :meth:`Record.to_dict` leaves out (per-image
tensors and the like): ``field(repr=False, metadata=SKIP)``."""

MISSING = "—"
"""How a missing number (None or NaN) reads in a Markdown table."""


def plain(value: Any) -> Any:
    """``value`` in plain Python types: tensors and arrays as (nested) lists or scalars,
    tuples as lists, records as their ``to_dict()``, mapping keys as strings.

    Examples:
        >>> plain({"a": torch.tensor([1.5, 2.0]), "b": (1, np.float64(0.5))})
        {'a': [1.5, 2.0], 'b': [1, 0.5]}
    """
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def json_ready(value: Any) -> Any:
    """:func:`plain`, with NaN and infinities (which JSON has no numbers for) as None.

    Examples:
        >>> json_ready([1.0, float("nan"), {"x": float("inf")}])
        [1.0, None, {'x': None}]
    """
    value = plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_ready(v) for v in value]
    return value


def number(value: Any, digits: int = 4, fixed: bool = False) -> str:
    """A number as a table cell: ``digits`` significant digits (``fixed``: decimals),
    integers in full, None and NaN as ``—``.

    Examples:
        >>> number(0.123456), number(0.5, 2, fixed=True), number(None), number(12)
        ('0.1235', '0.50', '—', '12')
    """
    if value is None or isinstance(value, bool):
        return MISSING if value is None else str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    value = float(value)
    if math.isnan(value):
        return MISSING
    return f"{value:.{digits}f}" if fixed else f"{value:.{digits}g}"


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else number(value)
    return text.replace("|", "\\|")  # a literal | would split the cell


def markdown_table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], align: Optional[str] = None
) -> str:
    """A Markdown table; numbers formatted by :func:`number`, strings as they are.

    Args:
        header (sequence of str): the column titles.
        rows (iterable of sequences): one sequence of cells per row, as long as ``header``.
        align (str, optional): one letter per column, ``"l"``, ``"r"`` or ``"c"``;
            default: the first column left, the others right.

    Returns:
        str: the table's lines joined by newlines (no trailing newline).

    Examples:
        >>> print(markdown_table(["model", "accuracy"], [["natural", 0.91234]]))
        | model | accuracy |
        |---|---:|
        | natural | 0.9123 |
    """
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header):
        raise ValueError(f"align must have one letter per column ({len(header)}), got {align!r}")
    rules = {"l": "---", "r": "---:", "c": ":---:"}
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(rules[a] for a in align) + "|",
    ]
    for row in rows:
        cells = list(row)
        if len(cells) != len(header):
            raise ValueError(f"a row has {len(cells)} cells, the header {len(header)}")
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def write_text(path: PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8, a newline at the end) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def write_csv(path: PathLike, rows: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> None:
    """Writes one line per mapping (the columns ``fields``, in that order) atomically.

    Keys of a row that are not in ``fields`` are left out; missing ones are empty.
    """
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(
            f, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def write_json(path: PathLike, value: Any) -> None:
    """Writes ``value`` as JSON (:func:`json_ready`, one space indents) atomically."""
    write_text(path, json.dumps(json_ready(value), indent=1))


class Record:
    """A mixin for result dataclasses: :meth:`to_dict` from the fields.

    Fields whose metadata is :data:`SKIP` are left out; the properties named in the
    class attribute ``_EXTRA`` are added after the fields.
    """

    _EXTRA: ClassVar[Tuple[str, ...]] = ()

    def to_dict(self) -> Dict[str, Any]:
        """A dict of plain Python values (tensors as lists), field by field."""
        out = {
            f.name: plain(getattr(self, f.name))
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if f.metadata.get("record", True)
        }
        out.update((name, plain(getattr(self, name))) for name in self._EXTRA)
        return out


class Table(Record):
    """A mixin for results with a ``rows`` list of :class:`Record`: CSV and JSON files.

    ``to_csv`` writes one line per row, the columns of the rows' ``to_dict`` (the first
    row's keys, or the ``_COLUMNS`` class attribute when set).
    """

    _COLUMNS: ClassVar[Optional[Tuple[str, ...]]] = None
    rows: List[Any]

    def csv_rows(self) -> List[Dict[str, Any]]:
        """The CSV lines as dicts (default: each row's ``to_dict``)."""
        return [row.to_dict() for row in self.rows]

    def to_csv(self, path: PathLike) -> None:
        """Writes one line per row, atomically (a failure never leaves a partial file)."""
        rows = self.csv_rows()
        columns = self._COLUMNS or (list(rows[0]) if rows else [])
        write_csv(path, rows, columns)

    def to_json(self, path: PathLike) -> None:
        """Writes :meth:`to_dict` as JSON (NaN as null), atomically."""
        write_json(path, self.to_dict())
