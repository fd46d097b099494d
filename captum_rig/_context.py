"""What the modules share about files and modes: output paths, atomic writes, eval mode.

Every output path the library takes (CSV, PNG, checkpoints, caches, CIFAR pickles) is
proved writable by :func:`check_writable` before any work, and every file is written
through :func:`atomic_path`, so an interrupted run never leaves a half-written file.
"""

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Union

from torch import nn

PathLike = Union[str, "os.PathLike[str]"]


def check_writable(
    path: PathLike, name: str, *, folder: bool = False, create: bool = False
) -> Path:
    """Proves that the output path ``path`` can be written, before any work is done.

    A file path needs a folder to write into (and must not be a folder itself); a
    folder path must be a folder. A missing folder (a file's parent, or the folder
    itself) is created with its parents only when ``create`` is True. Writability is
    tested by creating a temporary file in the folder and removing it at once; an
    existing file at ``path`` is left untouched.

    Args:
        path (str or PathLike): the output file, or with ``folder=True`` the output folder.
        name (str): the argument's name, for the error message.
        folder (bool): ``path`` is a folder rather than a file.
        create (bool): create the missing folder and its parents.

    Returns:
        Path: ``path`` as a :class:`~pathlib.Path`.

    Raises:
        TypeError: ``path`` is not a str or PathLike.
        ValueError: the folder is missing (and ``create`` is False), cannot be
            created, or is not writable; or ``path`` is of the wrong kind.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> check_writable(root / "new" / "run.ckpt", "checkpoint", create=True).parent.is_dir()
        True
        >>> check_writable(root / "missing" / "run.csv", "out")
        Traceback (most recent call last):
        ...
        ValueError: out '...run.csv' is not a writable file: the folder '...' does not exist
    """
    try:
        path = Path(os.fspath(path))
    except TypeError:
        raise TypeError(f"{name} must be a str or PathLike, got {type(path).__name__}") from None
    where = path if folder else path.parent
    kind = "folder" if folder else "file"
    if not folder and path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a folder; a file path is expected")
    if where.exists() and not where.is_dir():
        raise ValueError(f"{name} {str(path)!r} is not a writable {kind}: {str(where)!r} is a file")
    if not where.is_dir() and not create:
        raise ValueError(
            f"{name} {str(path)!r} is not a writable {kind}: the folder {str(where)!r} "
            "does not exist"
        )
    try:
        where.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=where, prefix=".write-test.")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ValueError(
            f"{name} {str(path)!r} is not a writable {kind}: {e.strerror or e}"
        ) from None
    return path


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
