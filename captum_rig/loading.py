"""Loading a classifier from a short spec: a torchvision builder or a user factory.

A *model spec* names where the network comes from:

- ``demo:<name>``: a CNN that ships with the package (``demo:natural``,
  ``demo:lowrank8``; :func:`captum_rig.models.load_demo_model`), classifying the six
  synthetic shapes in 32×32 images, normalization included.
- ``torchvision:<name>``: any classification builder of ``torchvision.models``
  (``torchvision:resnet18``, ``torchvision:vit_b_16``, ...), built with ``weights=None``
  unless ``pretrained=True``.
- ``<module>:<factory>``: ``module`` is an importable module (``mypkg.nets``) or a path
  to a ``.py`` file (``nets/small.py``); ``factory`` is a callable in it (a function or an
  ``nn.Module`` class, dotted attributes allowed) that returns an ``nn.Module``.
  Such a spec imports, that is *runs*, that module or file, as ``python file.py`` would:
  give only code you trust.

:func:`load_model` builds the network, loads a checkpoint into it if asked
(``torch.load(..., weights_only=True)``), moves it to a device and returns it in eval
mode. :func:`model_preprocessing` says what the network expects of its inputs: the
image size, the number of channels and, for torchvision models, the ImageNet mean and
std.

Why the normalization goes *inside* the model: captum-rig takes ranks in [0, 1] pixel
space, as the paper does. The SVD is not shift-invariant (subtracting a channel mean
subtracts a rank-one matrix and changes every singular value), so the rank-k image of a
normalized image is a different image. Wrapping the model as
``Sequential(Normalize(mean, std), model)`` lets low-rank images, RIG's rank path and
rank spectra work on the pixels the user sees while the network still gets its
normalized inputs (:func:`captum_rig.models.with_normalization`).
:func:`load_pixel_model` does both steps.

References:
    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import os
import pickle
import socket
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlparse

import torch
from torch import nn

from captum_rig.models import (
    DEMO_INPUT_SIZE,
    DEMO_MODELS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_demo_model,
    load_demo_model,
    with_normalization,
)
from captum_rig.synthetic import SHAPES

__all__ = [
    "TORCHVISION_PREFIX",
    "DEMO_PREFIX",
    "WeightsUnavailableError",
    "Preprocessing",
    "load_model",
    "load_state_dict",
    "model_preprocessing",
    "load_pixel_model",
    "normalized",
]

TORCHVISION_PREFIX = "torchvision:"
DEMO_PREFIX = "demo:"

PathLike = Union[str, "os.PathLike[str]"]

# Error templates, in one place so that tests can match them.
BAD_SPEC = (
    "model spec must be 'torchvision:<name>', 'demo:<name>' or '<module or file.py>:<factory>', "
    "got {spec!r}"
)
UNKNOWN_TORCHVISION = "unknown torchvision model {name!r}{hint}"
UNKNOWN_DEMO = "unknown demo model {name!r}: choose from {names}"
NO_MODULE = "cannot import {module!r} for model spec {spec!r}: {why}"
NO_FACTORY = "{module!r} has no attribute {factory!r} (model spec {spec!r}){hint}"
NOT_A_MODULE = "model spec {spec!r} returned {got}, expected a torch.nn.Module"
NO_NUM_CLASSES = "the factory of {spec!r} does not take a num_classes argument"
BAD_CHECKPOINT = "cannot read checkpoint {path}: {why}"
CHECKPOINT_MISFIT = "checkpoint {path} does not fit {spec}: {details}"
OFFLINE = (
    "cannot download the pretrained weights of {name} ({url}): no network. Put the file "
    "at {cache} or pass --weights PATH"
)
DOWNLOAD_FAILED = "cannot download the pretrained weights of {name} ({url}): {why}"


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights that are neither cached nor downloadable (e.g. offline)."""


_SHOWN_KEYS = 3  # how many mismatching keys an error message names


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects of its input images.

    Images are first brought to [0, 1] pixel values; then, if ``resize_size`` is set,
    resized so that their shorter side is ``resize_size``, and if ``crop_size`` is set,
    centre-cropped to ``crop_size × crop_size`` (torchvision's ImageNet evaluation
    transform). ``mean`` and ``std`` are *not* applied to the images: they belong inside
    the model (see :func:`normalized`).

    Attributes:
        crop_size (int, optional): side of the square input; None: any size.
        resize_size (int, optional): shorter side before the crop; None: no resize.
        mean (tuple of float, optional): per-channel mean of the model's training data.
        std (tuple of float, optional): per-channel std of the model's training data.
        in_channels (int, optional): channels the model takes (3 for RGB, 1 for
            greyscale); None: unknown.
        categories (tuple of str, optional): class names, when known.
    """

    crop_size: Optional[int] = None
    resize_size: Optional[int] = None
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    in_channels: Optional[int] = None
    categories: Optional[Tuple[str, ...]] = None


def _torchvision_names() -> List[str]:
    import torchvision.models

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _close(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    return f"; did you mean: {', '.join(close)}?" if close else ""


def _parse_spec(spec: Any) -> Tuple[str, str]:
    """Splits a spec into ``("torchvision", name)``, ``("demo", name)`` or ``(module, factory)``."""
    if not isinstance(spec, str):
        raise TypeError(BAD_SPEC.format(spec=spec))
    for prefix in (TORCHVISION_PREFIX, DEMO_PREFIX):
        if spec.startswith(prefix):
            name = spec[len(prefix) :]
            if not name:
                raise ValueError(BAD_SPEC.format(spec=spec))
            if prefix == DEMO_PREFIX and name not in DEMO_MODELS:
                raise ValueError(UNKNOWN_DEMO.format(name=name, names=", ".join(DEMO_MODELS)))
            return prefix[:-1], name
    module, sep, factory = spec.rpartition(":")
    if not sep or not module or not factory:
        raise ValueError(BAD_SPEC.format(spec=spec))
    return module, factory


def _torchvision_name(name: str) -> str:
    names = _torchvision_names()
    if name not in names:
        raise ValueError(
            UNKNOWN_TORCHVISION.format(name=name, hint=_close(name, names))
            + f" (list: {len(names)} classifiers in torchvision.models.list_models())"
        )
    return name


def _import(module: str, spec: str) -> Any:
    is_file = module.endswith(".py") or os.sep in module or "/" in module
    if not is_file:
        try:
            return importlib.import_module(module)
        except ModuleNotFoundError as e:
            raise ValueError(NO_MODULE.format(module=module, spec=spec, why=e)) from None
    path = Path(module).expanduser()
    if not path.is_file():
        raise FileNotFoundError(NO_MODULE.format(module=module, spec=spec, why="no such file"))
    # A stable name per file, registered in sys.modules so that pickling and dataclasses
    # inside the user's file work.
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"_captum_rig_user_{path.stem}_{digest}"
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ValueError(NO_MODULE.format(module=module, spec=spec, why="not a Python file"))
    mod = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = mod
    try:
        loader_spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


def _factory(module: str, factory: str, spec: str) -> Any:
    obj = _import(module, spec)
    for part in factory.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(obj) if not n.startswith("_")]
            raise ValueError(
                NO_FACTORY.format(
                    module=module, factory=factory, spec=spec, hint=_close(part, public)
                )
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{factory!r} in {module!r} is not callable (model spec {spec!r})")
    return obj


def _takes_num_classes(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins and some C callables
        return True
    return any(p.name == "num_classes" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _weights_enum(name: str) -> Any:
    """The DEFAULT weights entry of a torchvision builder, or None (metadata only)."""
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None


def _online(url: str, timeout: float = 3.0) -> bool:
    """True if the host of ``url`` accepts a TCP connection within ``timeout`` seconds."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pretrained_state_dict(name: str) -> Dict[str, Any]:
    """torchvision's DEFAULT weights of ``name``: from the hub cache, else downloaded.

    Checks the cache first and, when the file is absent, probes the network with a short
    timeout, so that an offline machine fails at once with one clear line instead of
    hanging in a download.
    """
    weights = _weights_enum(name)
    if weights is None:
        raise ValueError(f"torchvision has no pretrained weights for {name!r}")
    url = weights.url
    cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    if not cache.is_file() and not _online(url):
        raise WeightsUnavailableError(OFFLINE.format(name=name, url=url, cache=cache))
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as e:  # URLError is an OSError
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightsUnavailableError(DOWNLOAD_FAILED.format(name=name, url=url, why=why)) from None


def _first(keys: Sequence[str]) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:_SHOWN_KEYS])
    more = f", ... ({len(keys)} in all)" if len(keys) > _SHOWN_KEYS else ""
    return shown + more


def _unwrap(obj: Any) -> Any:
    """The state dict inside a training checkpoint; strips a DataParallel prefix."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if (
        isinstance(obj, Mapping)
        and obj
        and all(isinstance(k, str) and k.startswith("module.") for k in obj)
    ):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def _load_failure(error: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in one line, with the fix."""
    text = str(error)
    if "weights only load failed" in text.lower():
        # torch's own message suggests weights_only=False, which runs the file's code.
        return (
            "it holds Python objects other than tensors (a whole pickled model, or custom "
            "classes), which are not loaded because unpickling them can run code; re-save "
            "a plain state dict where the file was made: torch.save(model.state_dict(), PATH)"
        )
    first = (text.splitlines() or [""])[0]
    if isinstance(error, (pickle.UnpicklingError, EOFError, RuntimeError, OSError)) and first:
        return first
    return f"not a PyTorch checkpoint ({type(error).__name__}: {first})"


def load_state_dict(model: nn.Module, path: PathLike, spec: str = "the model") -> nn.Module:
    r"""Loads the checkpoint at ``path`` into ``model``, strictly, with a clear error.

    The file is read with ``torch.load(path, map_location="cpu", weights_only=True)``: no
    arbitrary code runs. It may hold a state dict, or a dict with a ``"state_dict"``,
    ``"model_state_dict"`` or ``"model"`` entry holding one (a training checkpoint); a
    ``"module."`` prefix on every key (``nn.DataParallel``) is removed.

    Args:
        model (nn.Module): the network to load into; changed in place.
        path (str or PathLike): the checkpoint file.
        spec (str): how to name the model in error messages.

    Returns:
        nn.Module: ``model``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a folder, a device or an empty file, holds objects other
            than tensors (re-save it with ``torch.save(model.state_dict(), path)``), is
            not a readable checkpoint, or does not fit ``model``
            (missing or unexpected keys, shape mismatches); the message names the file
            and the first mismatching keys.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(BAD_CHECKPOINT.format(path=path, why="no such file"))
    if not os.path.isfile(path):
        why = "a folder" if os.path.isdir(path) else "not a regular file (a device or pipe?)"
        raise ValueError(BAD_CHECKPOINT.format(path=path, why=f"it is {why}"))
    if os.path.getsize(path) == 0:
        raise ValueError(BAD_CHECKPOINT.format(path=path, why="the file is empty"))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged pickle fails in many ways (KeyError, IndexError, ...)
        raise ValueError(BAD_CHECKPOINT.format(path=path, why=_load_failure(e))) from None
    state = _unwrap(obj)
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(
            BAD_CHECKPOINT.format(
                path=path, why=f"expected a state dict of tensors, got {type(obj).__name__}"
            )
        )
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_first(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch (checkpoint vs model) {_first(mismatched)}")
        if not missing and not unexpected:
            problems.append("a different number of classes? try --num-classes")
    if problems:
        raise ValueError(
            CHECKPOINT_MISFIT.format(path=path, spec=spec, details="; ".join(problems))
        )
    model.load_state_dict(state, strict=True)
    return model


def load_model(
    spec: str,
    weights: Optional[PathLike] = None,
    pretrained: bool = False,
    num_classes: Optional[int] = None,
    device: Optional[Union[str, torch.device]] = None,
) -> nn.Module:
    r"""Builds the classifier named by ``spec``, in eval mode.

    Args:
        spec (str): ``"torchvision:<name>"``, ``"demo:<name>"`` or
            ``"<module or path/to/file.py>:<factory>"`` (see the module docstring).
        weights (str or PathLike, optional): a checkpoint to load (see
            :func:`load_state_dict`); for a demo spec, loaded over the shipped weights.
        pretrained (bool): torchvision specs only: load torchvision's DEFAULT weights,
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
    module, factory = _parse_spec(spec)
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if pretrained and weights is not None:
        raise ValueError("pass either pretrained weights or a weights file, not both")
    if pretrained and module != "torchvision":
        raise ValueError(
            f"pretrained weights are for torchvision specs only, got {spec!r}; pass --weights PATH"
        )
    if module == "torchvision":
        model = _torchvision_model(factory, pretrained, num_classes)
    elif module == "demo":
        if num_classes not in (None, len(SHAPES)):
            raise ValueError(
                f"the demo models have {len(SHAPES)} classes, got num_classes={num_classes}"
            )
        model = build_demo_model() if weights is not None else load_demo_model(factory)
    else:
        model = _factory_model(module, factory, spec, num_classes)
    if weights is not None:
        load_state_dict(model, weights, spec=spec)
    if device is not None:
        model = model.to(device)
    return model.eval()


def _torchvision_model(name: str, pretrained: bool, num_classes: Optional[int]) -> nn.Module:
    import torchvision.models

    name = _torchvision_name(name)
    if not pretrained:
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


def _factory_model(module: str, factory: str, spec: str, num_classes: Optional[int]) -> nn.Module:
    fn = _factory(module, factory, spec)
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if kwargs and not _takes_num_classes(fn):
        raise ValueError(NO_NUM_CLASSES.format(spec=spec))
    model = fn(**kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(NOT_A_MODULE.format(spec=spec, got=type(model).__name__))
    return model


def _first_conv_channels(model: nn.Module) -> Optional[int]:
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return int(m.in_channels)
    return None


def model_preprocessing(
    spec: str, model: Optional[nn.Module] = None, pretrained: bool = False
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
        spec (str): as in :func:`load_model`.
        model (nn.Module, optional): the loaded model, to read the input channels from.
        pretrained (bool): whether the model carries torchvision's pretrained weights.

    Returns:
        Preprocessing: the expected input.

    Examples:
        >>> p = model_preprocessing("torchvision:resnet18")
        >>> p.crop_size, p.resize_size, p.mean
        (224, 256, (0.485, 0.456, 0.406))
    """
    module, factory = _parse_spec(spec)
    in_channels = _first_conv_channels(model) if model is not None else None
    if module == "demo":
        return Preprocessing(crop_size=DEMO_INPUT_SIZE, in_channels=3, categories=SHAPES)
    if module != "torchvision":
        return Preprocessing(in_channels=in_channels)
    weights = _weights_enum(_torchvision_name(factory))
    prep = Preprocessing(
        crop_size=224,
        resize_size=256,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        in_channels=in_channels or 3,
    )
    if weights is None:
        return prep
    t = weights.transforms()
    categories = weights.meta.get("categories") if pretrained else None
    return replace(
        prep,
        crop_size=int(t.crop_size[0]),
        resize_size=int(t.resize_size[0]),
        mean=tuple(float(v) for v in t.mean),
        std=tuple(float(v) for v in t.std),
        categories=tuple(categories) if categories else None,
    )


def normalized(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    r"""``Sequential(Normalize(mean, std), model)``: a model that takes [0, 1] images.

    :func:`captum_rig.models.with_normalization`, moved to ``model``'s device and mode;
    see the module docstring for why the normalization belongs inside the model.

    Args:
        model (nn.Module): a model that expects normalized inputs.
        mean (sequence of float): per-channel mean.
        std (sequence of float): per-channel std.

    Returns:
        nn.Module: the wrapped model, on ``model``'s device, in ``model``'s mode.
    """
    wrapped = with_normalization(model, mean, std)
    param = next(model.parameters(), None)
    if param is not None:
        wrapped = wrapped.to(param.device)
    return wrapped.train(model.training)


def load_pixel_model(
    spec: str,
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
        spec (str): as in :func:`load_model`.
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
    model = load_model(spec, weights, pretrained, num_classes, device)
    prep = model_preprocessing(spec, model, pretrained=pretrained)
    if mean is not None:
        prep = replace(prep, mean=tuple(mean), std=tuple(std))
    if not normalize or prep.mean is None:
        return model, replace(prep, mean=None, std=None)
    return normalized(model, prep.mean, prep.std), prep
