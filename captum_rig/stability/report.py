"""One model's stability report: layer norms, the Lipschitz bound, minimal distortions.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.

    Szegedy et al. Intriguing properties of neural networks. arXiv:1312.6199.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from torch import Tensor, nn

from captum_rig._checks import check_model, check_norm, check_pixels, model_device
from captum_rig._tables import markdown_table, number
from captum_rig.stability._options import check_analysis_args
from captum_rig.stability.distortion import (
    MinimalDistortion,
    gaussian_minimal_distortion,
    minimal_distortion,
)
from captum_rig.stability.layer_norms import layer_list
from captum_rig.stability.layers import OperatorNorm
from captum_rig.stability.lipschitz import lipschitz_report

__all__ = ["StabilityReport", "stability_analysis"]


@dataclass
class StabilityReport:
    """Layer norms, the Lipschitz bound and average minimal distortions of one model.

    Attributes:
        layers (list[OperatorNorm]): per layer call, in order.
        lipschitz_bound (float or None): the bound of :func:`lipschitz_bound`, or None.
        lipschitz_note (str): how the bound was computed, or why it was not.
        distortions (dict[str, MinimalDistortion]): by method (``"pgd_l2"``,
            ``"pgd_linf"``, ``"gaussian"``).
        blocks (list[OperatorNorm]): the bound of every residual or dense block.
    """

    layers: List[OperatorNorm]
    lipschitz_bound: Optional[float]
    lipschitz_note: str
    distortions: Dict[str, MinimalDistortion]
    blocks: List[OperatorNorm] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict (distortion summaries, no per-image values)."""
        return {
            "layers": [layer.to_dict() for layer in self.layers],
            "blocks": [block.to_dict() for block in self.blocks],
            "lipschitz_bound": self.lipschitz_bound,
            "lipschitz_note": self.lipschitz_note,
            "distortions": {k: v.to_dict() for k, v in self.distortions.items()},
        }

    def to_markdown(self) -> str:
        """Two Markdown tables (layers, distortions) and the bound.

        Examples:
            >>> print(report.to_markdown())  # doctest: +SKIP
            | layer | type | input shape | operator norm | method |
            ...
        """
        layers = markdown_table(
            ["layer", "type", "input shape", "operator norm", "method"],
            [
                [
                    layer.name,
                    layer.kind,
                    "×".join(str(s) for s in layer.input_shape),
                    number(layer.norm),
                    layer.method,
                ]
                for layer in self.layers
            ],  # fmt: skip
            align="lllrl",
        )
        kind = "upper bound" if "; certified" in self.lipschitz_note else "estimate (not a bound)"
        text = f"{layers}\n\nLipschitz {kind} (L2): {number(self.lipschitz_bound)} "
        text += f"({self.lipschitz_note})."
        if self.distortions:
            rows = [
                [name, d.norm, number(d.mean), f"{d.n_found}/{d.values.numel()}",
                 number(d.tolerance, 2)]
                for name, d in self.distortions.items()
            ]  # fmt: skip
            header = ["minimal distortion", "norm", "mean", "images changed", "tolerance"]
            text += "\n\n" + markdown_table(header, rows, align="llrrr")
        return text


def stability_analysis(
    model: nn.Module,
    images: Tensor,
    example_input: Optional[Tensor] = None,
    norms: Sequence[str] = ("L2", "Linf"),
    gaussian: bool = True,
    steps: int = 20,
    n_bisect: int = 12,
    n_iter: int = 100,
    max_sigma: float = 1.0,
    batch_size: int = 64,
    seed: int = 0,
    certified: bool = True,
) -> StabilityReport:
    r"""The "Intriguing properties revisited" analysis of one model.

    Layer operator norms and the Lipschitz upper bound (:func:`layer_operator_norms`,
    :func:`lipschitz_analysis`), then the average minimal distortion under PGD for each
    of ``norms`` (:func:`minimal_distortion`) and under Gaussian noise
    (:func:`gaussian_minimal_distortion`). Compare a naturally trained model with one
    trained on low-rank images by running this on both, or use
    :func:`compare_stability`.

    Args:
        model (nn.Module): maps ``(N, C, H, W)`` images in [0, 1] to logits and contains
            its normalization. Run in eval mode; training flags are restored; no hooks
            are left behind.
        images (Tensor): ``(N, C, H, W)`` in [0, 1].
        example_input (Tensor, optional): input for the layer shapes; default
            ``images[:1]``.
        norms (sequence of str): PGD norms for the minimal distortion, ``()`` for none.
        gaussian (bool): also the Gaussian-noise minimal distortion.
        steps (int): as in :func:`minimal_distortion`.
        n_bisect (int): as in :func:`minimal_distortion`.
        n_iter (int): power iterations per convolution.
        max_sigma (float): as in :func:`gaussian_minimal_distortion`.
        batch_size (int): images per batch.
        seed (int): seed of the power iterations and the noise.
        certified (bool): certified layer bounds (the default), as in
            :func:`lipschitz_bound`; ``False``: power-iteration estimates.

    Returns:
        StabilityReport: with ``to_markdown()`` and ``to_dict()``.

    Examples:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
        >>> report = stability_analysis(model, torch.rand(4, 3, 8, 8), n_bisect=4)
        >>> sorted(report.distortions)
        ['gaussian', 'pgd_l2', 'pgd_linf']

    References:
        Jere, Kumar, Koushanfar. arXiv:2012.03516. Szegedy et al. arXiv:1312.6199.
    """
    model = check_model(model)
    check_pixels(images, "images")
    if isinstance(norms, str):
        norms = (norms,)
    norms = [check_norm(norm) for norm in norms]
    if example_input is None:
        example_input = images[:1].to(model_device(model))
    opts = check_analysis_args(model, example_input, n_iter, seed, certified)
    layers = layer_list(model, example_input, opts)
    report = lipschitz_report(model, example_input, opts, blocks=True)
    distortions: Dict[str, MinimalDistortion] = {}
    for norm in norms:
        result = minimal_distortion(
            model, images, norm=norm, steps=steps, n_bisect=n_bisect, batch_size=batch_size
        )
        distortions[result.method] = result
    if gaussian:
        distortions["gaussian"] = gaussian_minimal_distortion(
            model, images, n_bisect=n_bisect, max_sigma=max_sigma, batch_size=batch_size,
            seed=seed,
        )  # fmt: skip
    note = f"{report.note}; {report.method}"
    return StabilityReport(layers, report.bound, note, distortions, report.blocks)
