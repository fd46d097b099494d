"""Real-number lists of the Fourier options: radii and radius band edges.

``--radii`` (``spectrum --axis frequency``) and ``--bands`` (``contributions``) take
comma-separated numbers and ``a:b[:step]`` ranges, like ``--ranks`` but not only integers.
"""

import argparse
import math
from typing import List


def _range(item: str, option: str) -> List[float]:
    """``a:b[:step]``: ``a, a + step, ...`` up to ``b``, ``b`` included when on the grid."""
    parts = [float(p) for p in item.split(":")]
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"{option} range {item!r} must be a:b or a:b:step")
    start, stop, step = (*parts, 1.0) if len(parts) == 2 else parts
    if not step > 0 or stop < start:
        raise argparse.ArgumentTypeError(
            f"{option} range {item!r} must have start <= stop and step > 0"
        )
    count = math.floor((stop - start) / step + 1e-9) + 1
    return [start + i * step for i in range(count)]


def parse_numbers(text: str, option: str) -> List[float]:
    """Comma-separated finite numbers ``>= 0`` and ``a:b[:step]`` ranges, in the order given.

    Examples:
        >>> parse_numbers("0:4:2,5.5", "--radii")
        [0.0, 2.0, 4.0, 5.5]
    """
    values: List[float] = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        try:
            found = _range(item, option) if ":" in item else [float(item)]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{option} must be numbers or a:b[:step] ranges separated by commas, got {item!r}"
            ) from None
        if any(not math.isfinite(v) for v in found):
            raise argparse.ArgumentTypeError(f"{option} must be finite, got {item!r}")
        if any(v < 0 for v in found):
            raise argparse.ArgumentTypeError(f"{option} must be >= 0, got {item!r}")
        values += found
    if not values:
        raise argparse.ArgumentTypeError(f"{option} must name at least one number")
    return values


def radii(text: str) -> List[float]:
    """``--radii``: radii ``>= 0`` of the frequencies kept (or removed), sorted, unique."""
    return sorted(set(parse_numbers(text, "radii")))


def radius_bands(text: str) -> List[float]:
    """Radius band edges ``r_1 < ... < r_m``: ``>= 0`` and strictly increasing as given."""
    edges = parse_numbers(text, "band edges")
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise argparse.ArgumentTypeError(
            f"band edges must be strictly increasing, got {', '.join(f'{e:g}' for e in edges)}"
        )
    return edges
