"""Every script in examples/ runs, at small settings, and says how to use it.

The scripts are listed from the folder, so a new example cannot escape: each must have a
module docstring, expose ``main(argv)`` and say how to run it small, either with a
module-level ``SMOKE_ARGV`` list (``{tmp}`` stands for an empty output folder) or with an
entry in :data:`SMOKE_ARGS` below. ``main`` is called in-process, in that empty folder,
and must return 0 or None and write at least one file.
"""

import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Dict, List

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))

# Small-settings arguments for examples that do not define SMOKE_ARGV themselves.
SMOKE_ARGS: Dict[str, List[str]] = {
    "train_lowrank.py": [
        "--data", "synthetic", "--model", "small_cnn", "--rank", "4", "--epochs", "1",
        "--synthetic-train", "32", "--synthetic-test", "16", "--batch-size", "16",
        "--out", "{tmp}/run", "--quiet",
    ],
    "miniature_study.py": [
        "--n-train", "24", "--n-test", "12", "--epochs", "1", "--out", "{tmp}", "--quiet",
    ],
}  # fmt: skip


def load_example(path: Path) -> ModuleType:
    """Imports ``examples/<name>.py`` as a module (its ``__main__`` block does not run)."""
    spec = importlib.util.spec_from_file_location(f"_example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return module


def smoke_argv(path: Path, module: ModuleType, tmp: Path) -> List[str]:
    argv = getattr(module, "SMOKE_ARGV", None)
    if argv is None:
        argv = SMOKE_ARGS.get(path.name)
    assert argv is not None, (
        f"examples/{path.name} says nothing about a small run: give it a module-level "
        "SMOKE_ARGV list (use '{tmp}' for an output folder) or add it to SMOKE_ARGS in "
        "tests/test_examples.py"
    )
    assert isinstance(argv, (list, tuple)) and all(isinstance(a, str) for a in argv), (
        f"examples/{path.name}: SMOKE_ARGV must be a list of strings, got {argv!r}"
    )
    return [a.replace("{tmp}", str(tmp)) for a in argv]


def _id(path: Path) -> str:
    return path.name


def test_examples_folder_is_not_empty():
    """There is at least one example (the listing below is not vacuous)."""
    assert EXAMPLES, "examples/ holds no script"


@pytest.mark.parametrize("path", EXAMPLES, ids=_id)
def test_example_has_docstring_and_main(path: Path):
    """The example documents itself and exposes ``main(argv)``."""
    module = load_example(path)
    assert (module.__doc__ or "").strip(), f"examples/{path.name} has no module docstring"
    main = getattr(module, "main", None)
    assert callable(main), f"examples/{path.name} has no main(argv) function"
    params = list(inspect.signature(main).parameters)
    assert params, f"examples/{path.name}: main must take argv (a list of arguments)"


@pytest.mark.parametrize("path", EXAMPLES, ids=_id)
def test_example_help(path: Path, capsys: pytest.CaptureFixture):
    """``main(["--help"])`` prints a usage and exits 0."""
    module = load_example(path)
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code in (0, None), f"examples/{path.name} --help exited {exit_.value}"
    assert "usage" in capsys.readouterr().out.lower(), f"examples/{path.name}: no usage"


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=_id)
def test_example_runs_small(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The example runs end to end at small settings and writes its output."""
    module = load_example(path)
    out = tmp_path / "out"
    out.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = smoke_argv(path, module, out)
    try:
        result = module.main(argv)
    finally:
        plt.close("all")
    assert result in (0, None), f"examples/{path.name} {' '.join(argv)} returned {result!r}"
    written = [p for d in (out, work) for p in d.rglob("*") if p.is_file()]
    assert written, f"examples/{path.name} {' '.join(argv)} wrote no file"
