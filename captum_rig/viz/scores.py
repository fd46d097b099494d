"""The distributions of per-image attribution scores over a data set, method by method.

One panel per score (deletion AUC, insertion AUC, sparseness), one box per method with
every image's score drawn over it, and the mean with its confidence interval beside it: a
mean alone hides whether a method is better on most images or on a few.
"""

from pathlib import Path
from typing import Any, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure

from captum_rig._context import PathLike
from captum_rig.runs.evaluate import SCORES, ScoreTable
from captum_rig.viz._figure import save_figure, standalone_figure

__all__ = ["plot_score_distributions", "save_score_distributions"]

_TITLES = {
    "deletion_auc": "deletion AUC\n(lower is better)",
    "insertion_auc": "insertion AUC\n(higher is better)",
    "sparseness": "sparseness\n(Gini index of the map)",
}


def plot_score_distributions(
    table: ScoreTable,
    scores: Optional[Sequence[str]] = None,
    use_pyplot: bool = False,
) -> Tuple[Figure, Any]:
    r"""Box plots of each method's per-image scores, one panel per score.

    Args:
        table (ScoreTable): from :func:`~captum_rig.runs.evaluate_attributions`.
        scores (sequence of str, optional): the scores to draw (default: all of
            :data:`~captum_rig.runs.SCORES` the table has).
        use_pyplot (bool): make a pyplot figure instead of a standalone one.

    Returns:
        (Figure, array of Axes): the figure and its panels.

    Examples:
        >>> import torch
        >>> from captum_rig.runs import ScoreTable
        >>> t = ScoreTable.from_scores({m: {"deletion_auc": torch.rand(20)} for m in ("rig", "ig")})
        >>> fig, axes = plot_score_distributions(t)
        >>> len(axes), [x.get_text() for x in axes[0].get_xticklabels()]
        (1, ['rig', 'ig'])
    """
    if not isinstance(table, ScoreTable):
        raise TypeError(f"table must be a ScoreTable, got {type(table).__name__}")
    methods = list(table.per_image)
    if not methods:
        raise ValueError("table must hold per-image scores (from evaluate_attributions)")
    have = list(table.per_image[methods[0]])
    scores = [s for s in SCORES if s in have] if scores is None else list(scores)
    for s in scores:
        if s not in have:
            raise ValueError(f"scores: the table has no {s!r}, only {have}")
    panel = max(2.4, 0.6 + 0.9 * len(methods))
    fig = standalone_figure((panel * len(scores), 3.4), use_pyplot)
    axes = np.atleast_1d(fig.subplots(1, len(scores), squeeze=False)[0])
    rows = {(r.method, r.score): r for r in table.rows}
    rng = np.random.default_rng(0)  # jitter of the dots only
    for ax, score in zip(axes, scores):
        values = [table.per_image[m][score].double().numpy() for m in methods]
        ax.boxplot(values, showfliers=False, widths=0.5)
        for i, v in enumerate(values, start=1):
            ax.plot(i + rng.uniform(-0.12, 0.12, v.size), v, ".", ms=3, alpha=0.4, color="0.3")
            r = rows.get((methods[i - 1], score))
            if r is not None:
                ax.errorbar(
                    i + 0.36,
                    r.mean,
                    yerr=[[r.mean - r.low], [r.high - r.mean]] if r.n_images > 1 else None,
                    fmt="o",
                    color="C3",
                    ms=4,
                    capsize=3,
                )
        ax.set_xticks(range(1, len(methods) + 1), methods)
        ax.set_title(_TITLES.get(score, score), fontsize="medium")
    n = table.rows[0].n_images if table.rows else 0
    fig.suptitle(
        f"{n} images; red: mean and {100 * table.confidence:g}% interval", fontsize="small"
    )
    return fig, axes


def save_score_distributions(
    table: ScoreTable, path: PathLike, scores: Optional[Sequence[str]] = None
) -> Path:
    """Draws :func:`plot_score_distributions` into ``path`` (format from its suffix),
    whole or not at all (:func:`~captum_rig.viz.save_figure`)."""
    fig, _ = plot_score_distributions(table, scores)
    return save_figure(fig, path, dpi=120, tight=True)
