"""Model checkpoints: a state dict read safely into a network, with a clear error."""

import os
import pickle
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from captum_rig._context import PathLike

__all__ = ["load_state_dict"]

# Error templates, in one place so that tests can match them.
BAD_CHECKPOINT = "cannot read checkpoint {path}: {why}"
CHECKPOINT_MISFIT = "checkpoint {path} does not fit {spec}: {details}"

_SHOWN_KEYS = 3  # how many mismatching keys an error message names


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
