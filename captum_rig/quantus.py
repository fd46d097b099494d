"""An ``explain_func`` for Quantus: RIG, Blur IG and Captum's methods, NumPy in and out.

`Quantus <https://github.com/understandable-machine-intelligence-lab/Quantus>`_ scores
attribution maps (randomisation sanity checks, localisation, faithfulness, robustness,
...). Its metrics call ``explain_func(model=model, inputs=x_batch, targets=y_batch,
**explain_func_kwargs)`` with NumPy arrays, add ``device=...`` when the metric was given
a device, and expect a NumPy array back; localisation metrics compare it with
``(N, 1, H, W)`` masks. :func:`explain` is that function for every method of
:mod:`captum_rig.attr.registry`, so no wrapper has to be written by hand::

    metric = quantus.PointingGame()
    metric(model=model, x_batch=x, y_batch=y, s_batch=masks,
           explain_func=explain, explain_func_kwargs={"method": "rig", "n_steps": 16})

Nothing here imports Quantus: install it with ``pip install captum-rig[quantus]``.

References:
    Hedström et al. Quantus: An Explainable AI Toolkit for Responsible Evaluation of
    Neural Network Explanations and Beyond. JMLR 24(34), 2023.

    Jere, Kumar, Koushanfar. A Singular Value Perspective on Model Robustness.
    arXiv:2012.03516.
"""

from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from captum_rig._checks import check_images, check_model, check_models, model_device
from captum_rig.attr.registry import get_method

__all__ = ["explain", "CHANNEL_REDUCTIONS"]

CHANNEL_REDUCTIONS = ("sum", "max", None)
"""What :func:`explain` does with the channel dim: ``"sum"`` (Quantus's own default),
``"max"`` (RIG only: the paper's Eq. 3) or None (kept)."""


def explain(
    model: nn.Module,
    inputs: Union[np.ndarray, Tensor],
    targets: Any,
    method: str = "rig",
    channel_reduction: Optional[str] = "sum",
    device: Union[str, torch.device, None] = None,
    n_steps: Optional[int] = None,
    **kwargs: Any,
) -> np.ndarray:
    r"""Attributions of ``model``'s ``targets`` for ``inputs``, as Quantus calls and wants.

    The maps are exactly those of the registered method (``get_method(method).attribute``,
    the same numbers as calling RIG, Blur IG or Captum directly), reduced over the
    channel dim and returned as a NumPy array on the CPU.

    Args:
        model (nn.Module): takes [0, 1] images (normalization inside); used where it is,
            never moved or put in another mode.
        inputs (ndarray or Tensor): images ``(N, C, H, W)``, channels first. NumPy
            arrays become tensors of the model's float dtype (Quantus hands float32
            arrays over); tensors keep their dtype.
        targets (int, sequence, ndarray or Tensor): the output index explained, one for
            all or one per image ``(N,)``, as Quantus's ``y_batch``.
        method (str): a name of :data:`captum_rig.attr.registry.METHODS`: ``"rig"``,
            ``"ig"``, ``"blurig"`` or ``"saliency"``. Default: ``"rig"``.
        channel_reduction (str, optional): ``"sum"``: the channels' sum, ``(N, 1, H, W)``,
            as ``quantus.explain`` returns by default and localisation metrics need
            (their masks are ``(N, 1, H, W)``); ``"max"``: RIG in the paper's exact
            Eq. (3) form, each rank's gradient maxed over channels, ``(N, 1, H, W)``
            (``method="rig"`` only); None: per channel, ``(N, C, H, W)``.
            Default: ``"sum"``.
        device (str or torch.device, optional): where the inputs go; the model must
            already be there (Quantus passes its metric's ``device``). None: the
            model's device.
        n_steps (int, optional): path steps of RIG (ranks), IG and Blur IG; ignored by
            Saliency. None: the method's default.
        **kwargs: further arguments of the method's ``attribute`` (e.g.
            ``internal_batch_size``, ``baselines``).

    Returns:
        ndarray: attributions, ``(N, 1, H, W)`` (``"sum"``, ``"max"``) or
        ``(N, C, H, W)`` (None), in the dtype of the computation (float32 for a float32
        model).

    Examples:
        >>> from captum_rig.models import load_demo_model
        >>> x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
        >>> a = explain(load_demo_model("natural"), x, np.array([0, 3]), n_steps=4)
        >>> a.shape, a.dtype
        ((2, 1, 32, 32), dtype('float32'))
    """
    chosen = get_method(method)
    if channel_reduction not in CHANNEL_REDUCTIONS:
        raise ValueError(
            f"channel_reduction must be one of {list(CHANNEL_REDUCTIONS)}, "
            f"got {channel_reduction!r}"
        )
    if channel_reduction == "max" and chosen.name != "rig":
        raise ValueError(
            f"channel_reduction='max' is RIG's Eq. (3) form and needs method='rig', "
            f"got method={method!r}; use 'sum' or None"
        )
    check_model(model)
    if device is None:
        device = model_device(model)
    else:
        check_models({"model": model}, device=device)
        device = torch.device(device)
    x = _as_images(inputs, model, device)
    target = _as_targets(targets, device)
    if channel_reduction == "max":
        kwargs["channel_reduction"] = "max"
    maps = chosen.attribute(model, x, target=target, n_steps=n_steps, **kwargs)
    if channel_reduction == "sum":
        maps = maps.sum(1, keepdim=True)
    return maps.detach().cpu().numpy()


def _as_images(inputs: Any, model: nn.Module, device: torch.device) -> Tensor:
    """``inputs`` as a checked ``(N, C, H, W)`` float tensor on ``device``."""
    if isinstance(inputs, np.ndarray):
        if not np.issubdtype(inputs.dtype, np.floating):
            raise TypeError(f"inputs must hold floats (pixels in [0, 1]), got {inputs.dtype}")
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
        inputs = torch.as_tensor(inputs, dtype=dtype or torch.float32)
    x = check_images(inputs, name="inputs", ndim=4, layout="(N, C, H, W)")
    return x.to(device)


def _as_targets(targets: Any, device: torch.device) -> Any:
    """Quantus's ``y_batch`` (a NumPy array) as a tensor on ``device``; others as given."""
    if isinstance(targets, np.ndarray):
        if not np.issubdtype(targets.dtype, np.integer):
            raise TypeError(f"targets must hold class indices (integers), got {targets.dtype}")
        return torch.as_tensor(targets, device=device)
    if isinstance(targets, np.integer):
        return int(targets)
    if isinstance(targets, Tensor):
        return targets.to(device)
    return targets
