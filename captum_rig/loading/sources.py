"""The registry of model sources: where a ``--model`` spec's network comes from.

Each :class:`ModelSource` carries its builder, its preprocessing and its class names (as
torchvision's ``get_model`` and weights registry do for its builders), so that
:class:`~captum_rig.loading.ModelSpec` parses, builds and describes every source the same
way, and a new source is one entry of :data:`SOURCES`.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

from torch import nn

from captum_rig.loading.factories import _close, factory_model
from captum_rig.loading.preprocessing import Preprocessing, first_conv_channels
from captum_rig.loading.pretrained import _pretrained_state_dict, _weights_enum
from captum_rig.models import (
    DEMO_INPUT_SIZE,
    DEMO_MODELS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_demo_model,
    load_demo_model,
)
from captum_rig.synthetic import SHAPES

if TYPE_CHECKING:  # the spec is built from this registry; only its type is needed here
    from captum_rig.loading.spec import ModelSpec

__all__ = ["ModelSource", "SOURCES", "TORCHVISION_PREFIX", "DEMO_PREFIX"]

TORCHVISION_PREFIX = "torchvision:"
DEMO_PREFIX = "demo:"

# Error templates, in one place so that tests can match them.
UNKNOWN_TORCHVISION = "unknown torchvision model {name!r}{hint}"
UNKNOWN_DEMO = "unknown demo model {name!r}: choose from {names}"


@dataclass(frozen=True)
class ModelSource:
    """One place models come from: how a spec of it is built, fed and labelled.

    Attributes:
        name (str): the source's name, a :class:`~captum_rig.loading.ModelSpec`'s
            ``source`` (``"torchvision"``, ``"demo"``, ``"python"``).
        form (str): how a spec of this source is written, for error messages
            (``"torchvision:<name>"``).
        prefix (str, optional): the text a spec of this source starts with; None for the
            source of ``<module>:<factory>`` specs, tried when no prefix matches.
        build (callable): ``(spec, num_classes or None) -> nn.Module``, weights not yet
            loaded from ``spec.weights``.
        preprocessing (callable): ``(spec, model or None) -> Preprocessing`` (sizes,
            mean, std, input channels; not the class names).
        classes (callable): ``spec -> tuple of str or None``, the class names.
        names (callable, optional): ``() -> names`` of the models it has, to suggest the
            right spec for a bare name (``resnet18`` → ``torchvision:resnet18``).
        check (callable, optional): ``name -> None``, raises a ValueError for a name it
            does not have; called when a spec is parsed.
        pretrained (bool): it offers pretrained weights (``pretrained=True``).
        random_init (bool): without a weights file or pretrained weights, its models
            have random weights.
    """

    name: str
    form: str
    prefix: Optional[str]
    build: Callable[["ModelSpec", Optional[int]], nn.Module]
    preprocessing: Callable[["ModelSpec", Optional[nn.Module]], Preprocessing]
    classes: Callable[["ModelSpec"], Optional[Tuple[str, ...]]]
    names: Optional[Callable[[], Sequence[str]]] = None
    check: Optional[Callable[[str], None]] = None
    pretrained: bool = False
    random_init: bool = False


# -- torchvision -----------------------------------------------------------------------


def _torchvision_names() -> List[str]:
    import torchvision.models

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _torchvision_name(name: str) -> str:
    names = _torchvision_names()
    if name not in names:
        raise ValueError(
            UNKNOWN_TORCHVISION.format(name=name, hint=_close(name, names))
            + f" (list: {len(names)} classifiers in torchvision.models.list_models())"
        )
    return name


def _torchvision_model(spec: "ModelSpec", num_classes: Optional[int]) -> nn.Module:
    import torchvision.models

    name = _torchvision_name(spec.name)
    if not spec.pretrained:
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        return torchvision.models.get_model(name, weights=None, **kwargs)
    entry = _weights_enum(name)
    categories = len(entry.meta.get("categories", ())) if entry is not None else 0
    if num_classes is not None and categories and num_classes != categories:
        raise ValueError(
            f"pretrained {name} has {categories} classes, got num_classes={num_classes}"
        )
    state = _pretrained_state_dict(name)  # fails fast offline, before building
    model = torchvision.models.get_model(name, weights=None)
    model.load_state_dict(state)
    return model


def _torchvision_preprocessing(spec: "ModelSpec", model: Optional[nn.Module]) -> Preprocessing:
    """The evaluation transform of the builder's DEFAULT weights (metadata only)."""
    in_channels = first_conv_channels(model) if model is not None else None
    prep = Preprocessing(
        crop_size=224,
        resize_size=256,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        in_channels=in_channels or 3,
    )
    weights = _weights_enum(_torchvision_name(spec.name))
    if weights is None:
        return prep
    t = weights.transforms()
    return Preprocessing(
        crop_size=int(t.crop_size[0]),
        resize_size=int(t.resize_size[0]),
        mean=tuple(float(v) for v in t.mean),
        std=tuple(float(v) for v in t.std),
        in_channels=prep.in_channels,
    )


def _torchvision_classes(spec: "ModelSpec") -> Optional[Tuple[str, ...]]:
    """ImageNet's class names, for the pretrained weights only."""
    if not spec.pretrained:
        return None
    weights = _weights_enum(_torchvision_name(spec.name))
    categories = weights.meta.get("categories") if weights is not None else None
    return tuple(categories) if categories else None


# -- the demo's CNNs -------------------------------------------------------------------


def _check_demo(name: str) -> None:
    if name not in DEMO_MODELS:
        raise ValueError(UNKNOWN_DEMO.format(name=name, names=", ".join(DEMO_MODELS)))


def _demo_model(spec: "ModelSpec", num_classes: Optional[int]) -> nn.Module:
    if num_classes not in (None, len(SHAPES)):
        raise ValueError(
            f"the demo models have {len(SHAPES)} classes, got num_classes={num_classes}"
        )
    return build_demo_model() if spec.weights is not None else load_demo_model(spec.name)


# -- the user's code -------------------------------------------------------------------


def _python_model(spec: "ModelSpec", num_classes: Optional[int]) -> nn.Module:
    return factory_model(spec.module, spec.name, spec.text, num_classes)


SOURCES: Dict[str, ModelSource] = {
    "torchvision": ModelSource(
        name="torchvision",
        form=f"{TORCHVISION_PREFIX}<name>",
        prefix=TORCHVISION_PREFIX,
        build=_torchvision_model,
        preprocessing=_torchvision_preprocessing,
        classes=_torchvision_classes,
        names=_torchvision_names,
        pretrained=True,
        random_init=True,
    ),
    "demo": ModelSource(
        name="demo",
        form=f"{DEMO_PREFIX}<name>",
        prefix=DEMO_PREFIX,
        build=_demo_model,
        # 32×32 inputs (resized to cover, centre-cropped), normalization inside the model
        preprocessing=lambda spec, model: Preprocessing(crop_size=DEMO_INPUT_SIZE, in_channels=3),
        classes=lambda spec: SHAPES,
        names=lambda: list(DEMO_MODELS),
        check=_check_demo,
    ),
    "python": ModelSource(
        name="python",
        form="<module or file.py>:<factory>",
        prefix=None,
        build=_python_model,
        # images at their own size; the model takes [0, 1] images or normalizes inside
        preprocessing=lambda spec, model: Preprocessing(
            in_channels=first_conv_channels(model) if model is not None else None
        ),
        classes=lambda spec: None,
    ),
}
"""The model sources, by name, in the order a spec is matched against their prefixes
(the source without a prefix last). A new source is one more entry."""
