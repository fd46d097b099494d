"""Shared helpers of the figure tests: rendered pixels, colours, what lies inside."""

import numpy as np
from matplotlib.figure import Figure

LONG_NAME = "holiday_photos_2024/second_week/IMG_20240517_183512_portrait_of_the_cat.jpeg"


def pixels(fig: Figure) -> np.ndarray:
    """The rendered RGBA canvas as an (H, W, 4) uint8 array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())


def n_colours(fig: Figure) -> int:
    """Number of distinct RGB colours on the rendered canvas."""
    rgb = pixels(fig)[..., :3].reshape(-1, 3)
    return len(np.unique(rgb, axis=0))


def inside_figure(fig: Figure, artist) -> bool:
    """True when the drawn artist (text, axes) lies within the figure's pixels."""
    fig.canvas.draw()
    box = artist.get_window_extent(fig.canvas.get_renderer())
    tol = 0.5  # pixels of rounding
    return (
        box.x0 >= -tol
        and box.y0 >= -tol
        and box.x1 <= fig.bbox.width + tol
        and box.y1 <= fig.bbox.height + tol
    )
