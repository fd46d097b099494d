"""The registry of attribution methods: one name → one way to attribute.

:data:`METHODS` feeds the CLI's ``--methods`` defaults, the demo's figure columns and the
tests' parametrisation, so every method offered is also tested, without a second list.
:data:`VARIANTS` holds variants of those methods (IDGI) that are computed only when named
(``--methods rig-idgi``); :func:`get_method` and :func:`parse_methods` know both.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from captum.attr import IntegratedGradients, Saliency
from torch import Tensor, nn

from captum_rig._captum import TargetType
from captum_rig.attr.blur_ig import BlurIntegratedGradients
from captum_rig.attr.rig import RankIntegratedGradients

__all__ = [
    "AttributionMethod",
    "METHODS",
    "METHOD_NAMES",
    "VARIANTS",
    "VARIANT_NAMES",
    "get_method",
    "parse_methods",
]

UNKNOWN_METHOD = "unknown attribution method {name!r}; choose from {names}{hint}"


@dataclass(frozen=True)
class AttributionMethod:
    """One registered attribution method.

    Attributes:
        name (str): the registry key, as typed on the command line.
        title (str): a short title for figure columns.
        build (Callable): ``build(model)`` returns a Captum ``Attribution``.
        defaults (Mapping): keyword arguments always passed to ``attribute``.
        takes_steps (bool): whether ``attribute`` takes ``n_steps``.
    """

    name: str
    title: str
    build: Callable[[nn.Module], Any]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    takes_steps: bool = True

    def attribute(
        self,
        model: nn.Module,
        inputs: Tensor,
        target: TargetType = None,
        n_steps: Optional[int] = None,
        **kwargs: Any,
    ) -> Tensor:
        """Attributions of ``model``'s ``target`` output for ``inputs`` ``(N, C, H, W)``.

        Args:
            model (nn.Module): takes [0, 1] images (normalization inside).
            inputs (Tensor): images ``(N, C, H, W)`` in [0, 1].
            target (int, tuple, Tensor or list, optional): as in Captum's
                IntegratedGradients.
            n_steps (int, optional): path steps, for methods that take them; None: the
                method's default.
            **kwargs: further arguments of the method's ``attribute``.

        Returns:
            Tensor: attributions, ``(N, C, H, W)`` (or ``(N, 1, H, W)`` for reductions).
        """
        args = dict(self.defaults)
        if self.takes_steps and n_steps is not None:
            args["n_steps"] = n_steps
        args.update(kwargs)
        if not self.takes_steps:
            # Captum's Saliency warns unless its input already requires grad; a detached
            # copy does, and the caller's tensor is left alone.
            inputs = inputs.detach().requires_grad_()
        return self.build(model).attribute(inputs, target=target, **args)


METHODS: Dict[str, AttributionMethod] = {
    m.name: m
    for m in (
        AttributionMethod("rig", "RIG", RankIntegratedGradients, {"internal_batch_size": 16}),
        AttributionMethod(
            "ig", "Integrated Gradients", IntegratedGradients, {"internal_batch_size": 16}
        ),
        AttributionMethod(
            "blurig", "Blur IG", BlurIntegratedGradients, {"internal_batch_size": 16}
        ),
        AttributionMethod("saliency", "Saliency", Saliency, {}, takes_steps=False),
    )
}
METHOD_NAMES = tuple(METHODS)

# IDGI (Yang et al. 2023) on the rank path with the paper's own points (left Riemann:
# the outputs come with the gradients), and on the blur path.
VARIANTS: Dict[str, AttributionMethod] = {
    m.name: m
    for m in (
        AttributionMethod(
            "rig-idgi",
            "RIG + IDGI",
            RankIntegratedGradients,
            {"method": "riemann_left", "idgi": True, "internal_batch_size": 16},
        ),
        AttributionMethod(
            "blurig-idgi",
            "Blur IG + IDGI",
            BlurIntegratedGradients,
            {"idgi": True, "internal_batch_size": 16},
        ),
    )
}
VARIANT_NAMES = tuple(VARIANTS)


def get_method(name: str) -> AttributionMethod:
    """The registered method (or variant) called ``name``; a ValueError listing close
    names if none.

    Examples:
        >>> get_method("rig").title
        'RIG'
        >>> get_method("rig-idgi").defaults["idgi"]
        True
    """
    if name in METHODS:
        return METHODS[name]
    if name in VARIANTS:
        return VARIANTS[name]
    names = METHOD_NAMES + VARIANT_NAMES
    close = difflib.get_close_matches(str(name), names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(UNKNOWN_METHOD.format(name=name, names=", ".join(names), hint=hint))


def parse_methods(names: Sequence[str]) -> List[AttributionMethod]:
    """Methods from names or comma lists (``["rig,ig", "saliency"]``), in order, no repeats.

    Examples:
        >>> [m.name for m in parse_methods(["rig, ig", "rig"])]
        ['rig', 'ig']
    """
    out: List[AttributionMethod] = []
    for item in names:
        for name in str(item).split(","):
            name = name.strip()
            if not name:
                continue
            method = get_method(name)
            if method not in out:
                out.append(method)
    if not out:
        raise ValueError(f"no attribution method given; choose from {', '.join(METHOD_NAMES)}")
    return out
