"""Context managers the modules share: files written whole or not at all, eval mode.

Every file the library writes (CSV, PNG, checkpoints, caches, CIFAR pickles) goes
through :func:`atomic_path`, so an interrupted run never leaves a half-written file.
"""

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Union

from torch import nn

PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` on success only.

    The temporary file is in the same folder (so the rename is atomic), keeps the
    extension (so writers that infer the format from it, like ``savefig``, still do) and
    gets the permissions a plain ``open`` would give (``mkstemp`` makes 0600). On any
    error, the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}"
    )
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)


@contextlib.contextmanager
def eval_mode(*models: Any) -> Iterator[None]:
    """Puts every ``nn.Module`` given in eval mode; restores each submodule's own flag.

    Anything that is not an ``nn.Module`` (a plain function) is left alone.
    """
    modules = [m for model in models if isinstance(model, nn.Module) for m in model.modules()]
    flags = [(m, m.training) for m in modules]
    try:
        for model in models:
            if isinstance(model, nn.Module):
                model.eval()
        yield
    finally:
        for m, training in flags:
            m.training = training
