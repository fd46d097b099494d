"""A model spec, parsed once: ``ModelSpec``, and the functions that take one or its text.

A spec's source (:data:`~captum_rig.loading.SOURCES`) builds the network, says what it
expects of its inputs and names its classes; see :mod:`captum_rig.loading` for the forms.
"""

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from captum_rig._context import PathLike
from captum_rig.loading.preprocessing import Preprocessing, normalized
from captum_rig.loading.sources import SOURCES, ModelSource
from captum_rig.loading.weights import load_state_dict

__all__ = ["ModelSpec", "load_model", "model_preprocessing", "load_pixel_model"]

NOT_BOTH = "pass either pretrained weights or a weights file, not both"
NOT_PRETRAINED = (
    "pretrained weights are for {sources} specs only, got {spec!r}; pass --weights PATH"
)
PART_OF_SPEC = (
    "weights and pretrained are part of a ModelSpec: give them to ModelSpec.parse, not "
    "with a parsed spec"
)


def _bad_spec(spec: Any) -> str:
    """The message for a spec that is none of the registered forms (the forms listed).

    Examples:
        >>> print(_bad_spec("resnet18"))
        model spec must be 'torchvision:<name>', 'demo:<name>' or '<module or file.py>:<factory>',
        got 'resnet18'
    """
    # the sources with a prefix first, then the one tried when none matches
    ordered = sorted(SOURCES.values(), key=lambda source: source.prefix is None)
    forms = [repr(source.form) for source in ordered]
    listed = forms[0] if len(forms) == 1 else f"{', '.join(forms[:-1])} or {forms[-1]}"
    return f"model spec must be {listed}, got {spec!r}"


def _bare_name_hint(text: str) -> str:
    """``"; did you mean torchvision:resnet18?"`` for a name a prefixed source has."""
    for source in SOURCES.values():
        if source.prefix and source.names is not None and text in source.names():
            return f"; did you mean {source.prefix}{text}?"
    return ""


@dataclass(frozen=True)
class ModelSpec:
    r"""A ``--model`` spec, parsed once: its source, its name, and its weights.

    Build one with :meth:`parse`; then :meth:`load` builds the network,
    :meth:`preprocessing` says what it expects of its inputs, :attr:`label` names it in
    tables and :attr:`random_weights` tells whether it would explain nothing.

    Attributes:
        text (str): the spec as given (``"torchvision:resnet18"``).
        source (str): the name of its :class:`ModelSource` in
            :data:`~captum_rig.loading.SOURCES`: ``"torchvision"``, ``"demo"`` or
            ``"python"``.
        name (str): the builder, demo model or factory name (``"resnet18"``).
        weights (str or PathLike, optional): a checkpoint to load into the network.
        pretrained (bool): load the source's pretrained weights (torchvision).
        module (str, optional): the module or ``.py`` file of a ``"python"`` spec.

    Examples:
        >>> spec = ModelSpec.parse("torchvision:resnet18", pretrained=True)
        >>> spec.source, spec.name, spec.label, spec.random_weights
        ('torchvision', 'resnet18', 'resnet18 (pretrained)', False)
        >>> ModelSpec.parse("nets/small.py:make", weights="runs/best.pt").label
        'best'
        >>> model = ModelSpec.parse("torchvision:resnet18").load(num_classes=10)
        >>> model(torch.rand(1, 3, 64, 64)).shape  # (N, classes)
        torch.Size([1, 10])
    """

    text: str
    source: str
    name: str
    weights: Optional[PathLike] = None
    pretrained: bool = False
    module: Optional[str] = None

    @classmethod
    def parse(
        cls, text: str, weights: Optional[PathLike] = None, pretrained: bool = False
    ) -> "ModelSpec":
        """Parses ``text`` against the registered sources (their prefixes, in order).

        Args:
            text (str): ``"torchvision:<name>"``, ``"demo:<name>"`` or
                ``"<module or path/to/file.py>:<factory>"``.
            weights (str or PathLike, optional): a checkpoint to load.
            pretrained (bool): load the source's pretrained weights.

        Returns:
            ModelSpec: the parsed spec.

        Raises:
            TypeError: ``text`` is not a str.
            ValueError: ``text`` is none of the forms (a bare torchvision or demo name
                gets a "did you mean" hint), names an unknown demo model, or asks for
                pretrained weights with a weights file or from a source without them.
        """
        if not isinstance(text, str):
            raise TypeError(_bad_spec(text))
        source = next(
            (s for s in SOURCES.values() if s.prefix and text.startswith(s.prefix)),
            next(s for s in SOURCES.values() if s.prefix is None),
        )
        module = None
        if source.prefix is not None:
            name = text[len(source.prefix) :]
        else:
            module, sep, name = text.rpartition(":")
            if not sep or not module:
                name = ""
        if not name:
            hint = "" if ":" in text else _bare_name_hint(text)
            raise ValueError(_bad_spec(text) + hint)
        if source.check is not None:
            source.check(name)
        pretrained = bool(pretrained)
        if pretrained and weights is not None:
            raise ValueError(NOT_BOTH)
        if pretrained and not source.pretrained:
            offered = " or ".join(s.name for s in SOURCES.values() if s.pretrained)
            raise ValueError(NOT_PRETRAINED.format(sources=offered, spec=text))
        return cls(text, source.name, name, weights, pretrained, module)

    @property
    def model_source(self) -> ModelSource:
        """The :class:`ModelSource` this spec comes from."""
        return SOURCES[self.source]

    @property
    def label(self) -> str:
        """The default name of the model in tables: the weights file's stem, else
        :attr:`name`, with ``" (pretrained)"`` for pretrained weights."""
        if self.weights:
            return Path(os.fspath(self.weights)).stem
        return f"{self.name} (pretrained)" if self.pretrained else self.name

    @property
    def random_weights(self) -> bool:
        """True when the network would have random weights (a torchvision builder with
        neither a weights file nor pretrained weights): it explains nothing."""
        return self.model_source.random_init and not (self.weights or self.pretrained)

    def load(
        self,
        num_classes: Optional[int] = None,
        device: Optional[Union[str, torch.device]] = None,
    ) -> nn.Module:
        """Builds the network, loads :attr:`weights` into it, in eval mode on ``device``.

        See :func:`load_model` for the arguments and errors.
        """
        if num_classes is not None:
            if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
                raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        model = self.model_source.build(self, num_classes)
        if self.weights is not None:
            load_state_dict(model, self.weights, spec=self.text)
        if device is not None:
            model = model.to(device)
        return model.eval()

    def preprocessing(self, model: Optional[nn.Module] = None) -> Preprocessing:
        """What the network expects of its input images, with its class names.

        See :func:`model_preprocessing`; ``model``, the loaded network, gives the input
        channels of a factory's model.
        """
        source = self.model_source
        return replace(source.preprocessing(self, model), categories=source.classes(self))


def _as_spec(spec: Any, weights: Optional[PathLike], pretrained: bool) -> ModelSpec:
    if isinstance(spec, ModelSpec):
        if weights is not None or pretrained:
            raise TypeError(PART_OF_SPEC)
        return spec
    return ModelSpec.parse(spec, weights=weights, pretrained=pretrained)


def load_model(
    spec: Union[str, ModelSpec],
    weights: Optional[PathLike] = None,
    pretrained: bool = False,
    num_classes: Optional[int] = None,
    device: Optional[Union[str, torch.device]] = None,
) -> nn.Module:
    r"""Builds the classifier named by ``spec``, in eval mode.

    Args:
        spec (str or ModelSpec): ``"torchvision:<name>"``, ``"demo:<name>"`` or
            ``"<module or path/to/file.py>:<factory>"`` (see the module docstring), or
            a :class:`ModelSpec` (which holds its weights and pretrained flag).
        weights (str or PathLike, optional): a checkpoint to load (see
            :func:`load_state_dict`); for a demo spec, loaded over the shipped weights.
        pretrained (bool): torchvision specs only (text specs only): load torchvision's
            DEFAULT weights,
            from the torch hub cache or downloaded. Offline and not cached, this fails at
            once with a RuntimeError.
        num_classes (int, optional): number of outputs, passed to the builder or factory
            as ``num_classes=``; None: the builder's default (1000 for torchvision, 6
            for the demo models, which take no other).
        device (str or torch.device, optional): where to put the model; None: leave it
            on the CPU.

    Returns:
        nn.Module: the model, in eval mode. It takes whatever inputs its builder's
        network takes (torchvision models: normalized images); see
        :func:`load_pixel_model` for a model that takes [0, 1] images.

    Raises:
        ValueError: a malformed spec, an unknown torchvision name (the message lists
            close names), a module or factory that cannot be found, a checkpoint that
            does not fit, ``weights`` together with ``pretrained``.
        FileNotFoundError: a factory file or checkpoint that does not exist.
        WeightsUnavailableError: a RuntimeError: pretrained weights that cannot be had
            (offline and not in the torch hub cache, or a failed download).

    Examples:
        >>> model = load_model("torchvision:resnet18", num_classes=10)
        >>> model.training, model.fc.out_features
        (False, 10)
    """
    return _as_spec(spec, weights, pretrained).load(num_classes, device)


def model_preprocessing(
    spec: Union[str, ModelSpec], model: Optional[nn.Module] = None, pretrained: bool = False
) -> Preprocessing:
    r"""What the model named by ``spec`` expects of its input images.

    torchvision specs get the evaluation transform of the builder's DEFAULT weights
    (metadata only: nothing is downloaded): resize and crop size (256 → 224 for most,
    342 → 299 for Inception v3, ...) and the ImageNet mean and std; the class names only
    with ``pretrained=True``. Demo specs get their 32×32 input (images resized to cover
    it and centre-cropped), three channels and the shapes' names
    (:data:`captum_rig.synthetic.SHAPES`); no mean and std, since the demo models
    normalize inside. Factory specs get nothing but the input channels, read from
    the model's first convolution: their images are taken at their own size and their
    model is assumed to take [0, 1] images (or to normalize inside).

    Args:
        spec (str or ModelSpec): as in :func:`load_model`.
        model (nn.Module, optional): the loaded model, to read the input channels from.
        pretrained (bool): whether the model carries torchvision's pretrained weights.

    Returns:
        Preprocessing: the expected input.

    Examples:
        >>> p = model_preprocessing("torchvision:resnet18")
        >>> p.crop_size, p.resize_size, p.mean
        (224, 256, (0.485, 0.456, 0.406))
    """
    return _as_spec(spec, None, pretrained).preprocessing(model)


def load_pixel_model(
    spec: Union[str, ModelSpec],
    weights: Optional[PathLike] = None,
    pretrained: bool = False,
    num_classes: Optional[int] = None,
    device: Optional[Union[str, torch.device]] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    normalize: bool = True,
) -> Tuple[nn.Module, Preprocessing]:
    r""":func:`load_model`, wrapped so that it takes [0, 1] images, and its preprocessing.

    Args:
        spec (str or ModelSpec): as in :func:`load_model`.
        weights (str or PathLike, optional): as in :func:`load_model`.
        pretrained (bool): as in :func:`load_model`.
        num_classes (int, optional): as in :func:`load_model`.
        device (str or torch.device, optional): as in :func:`load_model`.
        mean (sequence of float, optional): overrides the preprocessing's mean.
        std (sequence of float, optional): overrides the preprocessing's std.
        normalize (bool): if False, never wrap (the model normalizes itself or takes
            [0, 1] images).

    Returns:
        (model, preprocessing): the model in eval mode, with ``Normalize(mean, std)`` in
        front when a mean and std are known; the preprocessing with the mean and std it
        used (None when the model was not wrapped).

    Examples:
        >>> model, prep = load_pixel_model("torchvision:resnet18", num_classes=10)
        >>> type(model).__name__, prep.crop_size
        ('Sequential', 224)
    """
    if (mean is None) != (std is None):
        raise ValueError("pass both mean and std, or neither")
    spec = _as_spec(spec, weights, pretrained)
    model = spec.load(num_classes, device)
    prep = spec.preprocessing(model)
    if mean is not None:
        mean, std = _check_mean_std(mean, std, prep.in_channels)
        prep = replace(prep, mean=mean, std=std)
    if not normalize or prep.mean is None:
        return model, replace(prep, mean=None, std=None)
    return normalized(model, prep.mean, prep.std), prep


def _check_mean_std(
    mean: Sequence[float], std: Sequence[float], channels: Optional[int]
) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """``mean`` and ``std`` as tuples, one finite value per input channel, std > 0."""
    try:
        mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    except (TypeError, ValueError):
        raise TypeError("mean and std must be sequences of numbers") from None
    want = len(mean) if channels is None else channels
    if len(mean) != want or len(std) != want:
        where = "" if channels is None else f" ({channels} for this model)"
        raise ValueError(
            f"mean and std must have one value per input channel{where}, got {len(mean)} "
            f"and {len(std)} values"
        )
    if not all(math.isfinite(v) for v in mean) or not all(math.isfinite(v) and v > 0 for v in std):
        raise ValueError(f"mean must be finite and std finite and > 0, got {mean} and {std}")
    return mean, std
