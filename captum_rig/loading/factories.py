"""Models from the user's code: a factory in an importable module or in a ``.py`` file.

Such a spec imports, that is *runs*, the module or file, as ``python file.py`` would.
"""

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from torch import nn

__all__ = ["factory_model"]

# Error templates, in one place so that tests can match them.
NO_MODULE = "cannot import {module!r} for model spec {spec!r}: {why}"
NO_FACTORY = "{module!r} has no attribute {factory!r} (model spec {spec!r}){hint}"
NOT_A_MODULE = "model spec {spec!r} returned {got}, expected a torch.nn.Module"
NO_NUM_CLASSES = "the factory of {spec!r} does not take a num_classes argument"
EXITED = (
    "model spec {spec!r}: {what} called sys.exit({code}) instead of {instead} (a model file "
    "should build the model only; keep a script's work under if __name__ == '__main__')"
)


def _exited(e: SystemExit, spec: str, what: str, instead: str) -> ValueError:
    """A SystemExit raised by the user's code, as an error: never a silent exit of the caller."""
    return ValueError(EXITED.format(spec=spec, what=what, code=e.code, instead=instead))


def _close(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    return f"; did you mean: {', '.join(close)}?" if close else ""


def _import(module: str, spec: str) -> Any:
    is_file = module.endswith(".py") or os.sep in module or "/" in module
    if not is_file:
        try:
            return importlib.import_module(module)
        except ModuleNotFoundError as e:
            raise ValueError(NO_MODULE.format(module=module, spec=spec, why=e)) from None
        except SystemExit as e:
            raise _exited(e, spec, f"importing {module!r}", "defining the factory") from None
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
    except SystemExit as e:
        del sys.modules[name]
        raise _exited(e, spec, f"running {module!r}", "defining the factory") from None
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


def factory_model(module: str, factory: str, spec: str, num_classes: Optional[int]) -> nn.Module:
    fn = _factory(module, factory, spec)
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if kwargs and not _takes_num_classes(fn):
        raise ValueError(NO_NUM_CLASSES.format(spec=spec))
    try:
        model = fn(**kwargs)
    except SystemExit as e:
        raise _exited(e, spec, "the factory", "returning a model") from None
    if not isinstance(model, nn.Module):
        raise TypeError(NOT_A_MODULE.format(spec=spec, got=type(model).__name__))
    return model
