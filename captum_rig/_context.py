"""What the modules share about files and modes: output paths, atomic writes, staging
folders, eval mode.

Every output path the library takes (CSV, PNG, checkpoints, caches, CIFAR pickles) is
proved writable by :func:`check_writable` before any work, and every file is written
through :func:`atomic_path`, so an interrupted run never leaves a half-written file. A
job that writes several files together (the demo) writes them into a staging folder
(:func:`staged_output`) and moves them into place with :func:`publish` once all are done.
"""

import contextlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator, List, Sequence, Union

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


# --------------------------------------------------------------------------------------
# Staging folders: several files moved into place together, or none
# --------------------------------------------------------------------------------------

STAGING = ".captum-rig-demo-"
"""Name prefix of staging folders: ``<STAGING><host>-<pid>-<random>``."""
# <prefix><host>-<pid>-<tempfile's random part: letters, digits, underscores>
_STAGING_NAME = re.compile(re.escape(STAGING) + r"(?P<host>[A-Za-z0-9._]+)-(?P<pid>\d+)-\w+")


def host_name() -> str:
    """This machine's name with every character but letters, digits and dots as ``_``."""
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "localhost"


def _staging_prefix() -> str:
    return f"{STAGING}{host_name()}-{os.getpid()}-"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists here; True when that cannot be told."""
    if os.name != "posix":
        # os.kill(pid, 0) would terminate the process on Windows: keep the folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, owned by someone else
        return True
    return True


def remove_stale_staging(out: Path) -> None:
    """Removes staging folders in ``out`` left by killed runs on this host.

    Only folders named after this host whose process is gone: a live run's folder, a
    folder of another host (on a shared disk) and any other name are left alone.
    """
    host = host_name()
    for path in Path(out).glob(STAGING + "*"):
        match = _STAGING_NAME.fullmatch(path.name)
        if (
            match is not None
            and match["host"] == host
            and path.is_dir()
            and not pid_alive(int(match["pid"]))
        ):
            shutil.rmtree(path, ignore_errors=True)


def make_folder(out: Path) -> List[Path]:
    """Creates ``out`` and missing parents; returns the folders created, deepest first."""
    missing = []
    folder = Path(out).absolute()
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    Path(out).mkdir(parents=True, exist_ok=True)
    return missing


def remove_empty(folders: Sequence[Path]) -> None:
    """Removes each of ``folders`` (deepest first) that is empty; stops at the first not."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


@contextlib.contextmanager
def staged_output(out: PathLike) -> Iterator[Path]:
    """Yields a fresh staging folder inside the output folder ``out``; removes it after.

    ``out`` is created with its missing parents, and staging folders left there by
    killed runs on this host (:func:`remove_stale_staging`) are removed first. Write
    into the staging folder, then :func:`publish` the files inside the ``with`` block.
    On any error (Ctrl-C included) the staging folder goes, and the folders this call
    created are removed again while still empty: a failed run leaves ``out`` as it was.

    Examples:
        >>> root = Path(tempfile.mkdtemp())
        >>> with staged_output(root / "run") as staging:
        ...     _ = (staging / "report.md").write_text("done")
        ...     [p.name for p in publish([staging / "report.md"], root / "run")]
        ['report.md']
        >>> sorted(p.name for p in (root / "run").iterdir())
        ['report.md']
    """
    out = Path(out)
    created = make_folder(out)
    try:
        remove_stale_staging(out)
        staging = Path(tempfile.mkdtemp(dir=out, prefix=_staging_prefix()))
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        remove_empty(created)
        raise


def publish(files: Sequence[Path], out: PathLike) -> List[Path]:
    """Moves each staged file into ``out`` under its name (``os.replace``: a file of the
    same name is replaced whole), readable by everyone; returns the new paths in order."""
    written = []
    for tmp in files:
        os.chmod(tmp, 0o644)
        os.replace(tmp, Path(out) / Path(tmp).name)
        written.append(Path(out) / Path(tmp).name)
    return written


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
