"""What the demo's figure-drawing stages share: two panels side by side, and saving."""

from typing import Any, Tuple

from captum_rig.demo._state import DemoState
from captum_rig.viz import save_figure

__all__ = ["save", "two_panels"]


def save(s: DemoState, fig: Any, key: str) -> None:
    """Writes ``fig`` to the staged file of ``key`` (PNG at the demo's dpi)."""
    save_figure(fig, s.paths[key], dpi=s.dpi, format="png")


def two_panels() -> Tuple[Any, Any]:
    """A standalone figure with two axes side by side (no pyplot state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4), layout="constrained")
    return fig, fig.subplots(1, 2)
